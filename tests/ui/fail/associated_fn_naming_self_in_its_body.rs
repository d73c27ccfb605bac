// An associated fn without `self` whose body names `Self`: that shows it is in an `impl` block,
// so the one error says what to add, at `Self`.
use offload::offload;

struct Scale;

impl Scale {
    const FACTOR: u32 = 3;

    #[offload(process)]
    fn apply(x: u32) -> u32 {
        x * Self::FACTOR
    }
}

fn main() {}

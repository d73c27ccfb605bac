// An associated fn without `self` whose body names `Self`, in a block without #[offload]: one
// error, at the attribute, naming the block; nothing about `Self` in a wrapper's body.
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

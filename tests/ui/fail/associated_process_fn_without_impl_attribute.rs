// As `associated_fn_without_impl_attribute.rs`, in process mode: the static and the
// registration are inside the wrapper's body, where an `impl` block holds them too, so the one
// error is the companion's name, at the attribute. The fix is `#[offload]` on the block.
use offload::offload;

struct Index;

impl Index {
    #[offload(process)]
    fn triple(x: u32) -> u32 {
        x * 3
    }
}

fn main() {}

// As `associated_fn_without_impl_attribute.rs`, in process mode: the expansion also puts the
// function's static and registration beside it, items an `impl` block cannot hold, so rustc
// reports those too. Every error points at the attribute. The fix is `#[offload]` on the block.
use offload::offload;

struct Index;

impl Index {
    #[offload(process)]
    fn triple(x: u32) -> u32 {
        x * 3
    }
}

fn main() {}

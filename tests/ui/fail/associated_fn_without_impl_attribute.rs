// An associated fn whose signature does not show that it is in an `impl` block: the macro
// cannot see the block, so the error is rustc's, with its hint to say `Self::`. The fix is
// `#[offload]` on the block.
use offload::offload;

struct Index;

impl Index {
    #[offload(thread)]
    fn count(path: String) -> usize {
        path.len()
    }
}

fn main() {}

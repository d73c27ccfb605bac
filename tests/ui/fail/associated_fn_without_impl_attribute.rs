// An associated fn whose signature does not show that it is in an `impl` block: the macro sees
// only the fn, so the wrapper calls its companion as a free fn would, and rustc's one error
// points at the attribute. The fix is `#[offload]` on the block.
use offload::offload;

struct Index;

impl Index {
    #[offload(thread)]
    fn count(path: String) -> usize {
        path.len()
    }
}

fn main() {}

// An associated fn whose signature does not show that it is in an `impl` block: the tokens the
// attribute gets look like a free fn, so it reads the file to find the block around it, and its
// one error, at the attribute, names the block and says to write #[offload] above it.
use offload::offload;

struct Index;

impl Index {
    #[offload(thread)]
    fn count(path: String) -> usize {
        path.len()
    }
}

fn main() {}

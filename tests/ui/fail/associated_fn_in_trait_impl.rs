// A trait's fn carrying #[offload(...)] in an `impl ... for` block without #[offload]: the
// error says that a trait's methods cannot be offloaded, naming the block, at the attribute.
use offload::offload;

trait Load {
    fn load(path: String) -> usize;
}

struct Config;

impl Load for Config {
    #[offload(thread)]
    fn load(path: String) -> usize {
        path.len()
    }
}

fn main() {}

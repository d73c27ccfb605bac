use offload::offload;

trait Load {
    fn load(path: String) -> Self;
}

struct Config;

#[offload]
impl Load for Config {
    #[offload(thread)]
    fn load(_path: String) -> Self {
        Config
    }
}

fn main() {}

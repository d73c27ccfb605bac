use offload::offload;

struct Config;

#[offload(thread)]
impl Config {
    #[offload(thread)]
    fn load(_path: String) -> Self {
        Config
    }
}

fn main() {}

use offload::offload;

trait Store {
    #[offload(thread)]
    fn load(key: String) -> Vec<u8>;
}

fn main() {}

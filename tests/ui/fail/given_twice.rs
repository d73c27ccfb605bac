use offload::offload;

#[offload(thread)]
#[offload(process)]
fn hash(data: Vec<u8>) -> u64 {
    data.len() as u64
}

struct Index;

#[offload]
impl Index {
    #[offload(thread)]
    #[offload(thread, pool = "io")]
    fn count(path: String) -> usize {
        path.len()
    }
}

fn main() {}

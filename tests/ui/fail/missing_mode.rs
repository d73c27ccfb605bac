use offload::offload;

#[offload]
fn hash(data: Vec<u8>) -> u64 {
    data.len() as u64
}

#[offload(pool = "io")]
fn read(path: String) -> usize {
    path.len()
}

fn main() {}

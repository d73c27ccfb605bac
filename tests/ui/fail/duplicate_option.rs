use offload::offload;

#[offload(process, pool = "a", timeout = "1s", pool = "b")]
fn hash(data: Vec<u8>) -> u64 {
    data.len() as u64
}

#[offload(thread, thread)]
fn read(path: String) -> usize {
    path.len()
}

fn main() {}

use offload::offload;

#[offload(process, timout = "5s")]
fn hash(data: Vec<u8>) -> u64 {
    data.len() as u64
}

#[offload(thread, colour = "blue")]
fn read(path: String) -> usize {
    path.len()
}

fn main() {}

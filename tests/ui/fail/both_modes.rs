use offload::offload;

#[offload(thread, process)]
fn hash(data: Vec<u8>) -> u64 {
    data.len() as u64
}

fn main() {}

use offload::offload;

#[offload(process, pool = "heavy", workers = 4)]
fn hash(data: Vec<u8>) -> u64 {
    data.len() as u64
}

fn main() {}

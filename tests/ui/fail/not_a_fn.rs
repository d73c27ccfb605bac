use offload::offload;

#[offload(thread)]
struct Worker {
    id: u32,
}

fn main() {}

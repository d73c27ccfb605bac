use offload::offload;

#[offload(thread)]
const fn double(x: u32) -> u32 {
    x * 2
}

fn main() {}

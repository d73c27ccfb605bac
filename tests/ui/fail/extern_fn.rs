use offload::offload;

#[offload(process)]
extern "C" fn callback(x: u32) -> u32 {
    x + 1
}

fn main() {}

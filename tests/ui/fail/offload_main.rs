use offload::offload;

#[offload(process)]
fn main() {}

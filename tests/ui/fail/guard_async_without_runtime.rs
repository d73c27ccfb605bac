#[offload::main]
async fn main() {}

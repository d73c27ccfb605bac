#[offload::main]
struct App;

fn main() {}

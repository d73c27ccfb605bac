// The guard on a function that is not `main`: it would run only when that function is called,
// after whatever `main` did first. One error, at the function's name.
#[offload::main]
#[tokio::main]
async fn run() {}

fn main() {}

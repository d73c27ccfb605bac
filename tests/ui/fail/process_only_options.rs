use offload::offload;

#[offload(thread, retries = 2, name = "stable")]
fn read(path: String) -> usize {
    path.len()
}

fn main() {}

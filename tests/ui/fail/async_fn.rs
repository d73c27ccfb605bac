use offload::offload;

#[offload(thread)]
async fn fetch(url: String) -> usize {
    url.len()
}

fn main() {}

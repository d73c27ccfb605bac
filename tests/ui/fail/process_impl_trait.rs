use offload::offload;

#[offload(process)]
fn total(values: impl IntoIterator<Item = u64>) -> u64 {
    values.into_iter().sum()
}

#[offload(process)]
fn numbers(count: u64) -> impl Iterator<Item = u64> {
    0..count
}

fn main() {}

use offload::offload;

#[offload(process)]
fn largest<T: PartialOrd + Copy>(values: Vec<T>) -> Option<T> {
    values.into_iter().reduce(|a, b| if b > a { b } else { a })
}

fn main() {}

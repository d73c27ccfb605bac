use offload::offload;

#[offload(thread)]
fn count_words(text: &str, separators: &[char]) -> usize {
    text.split(separators).count()
}

#[offload(thread)]
fn first(items: std::borrow::Cow<'_, str>) -> usize {
    items.len()
}

#[offload(thread)]
fn push(buffer: &mut Vec<u8>) {
    buffer.push(1);
}

fn main() {}

use std::rc::Rc;

use offload::offload;

#[offload(thread)]
fn length(text: Rc<String>) -> usize {
    text.len()
}

#[offload(thread)]
fn shared(text: String) -> Rc<String> {
    Rc::new(text)
}

fn main() {}

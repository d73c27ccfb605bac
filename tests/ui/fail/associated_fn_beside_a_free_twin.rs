// A free fn and, in a block without #[offload], an associated fn of the same name and
// signature: the file cannot tell which of the two an attribute is on, so the free fn, which is
// correct, gets no error, and the associated fn gets rustc's own, at its attribute.
use offload::offload;

#[offload(thread)]
fn twin(x: u32) -> u32 {
    x
}

mod inner {
    use offload::offload;

    pub struct T;

    impl T {
        #[offload(thread)]
        fn twin(x: u32) -> u32 {
            x
        }
    }
}

fn main() {
    let _ = twin(1);
}

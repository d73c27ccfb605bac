// Generic thread-mode functions get `Send + 'static` bounds: a caller passing a type that is
// not `Send` is told so at the call.
use std::rc::Rc;

use offload::offload;

#[offload(thread)]
fn describe<T: std::fmt::Debug>(value: T) -> String {
    format!("{value:?}")
}

async fn caller() {
    let _ = describe(Rc::new(1)).await;
}

fn main() {
    drop(caller());
}

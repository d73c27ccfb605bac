use offload::offload;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Stack<T> {
    items: Vec<T>,
}

#[offload]
impl<T: Ord> Stack<T> {
    #[offload(process)]
    fn sorted(mut self) -> Vec<T> {
        self.items.sort();
        self.items
    }
}

fn main() {}

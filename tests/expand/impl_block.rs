use offload::offload;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Matrix {
    cells: Vec<f64>,
}

/// `#[offload]` on the block lets its methods name the block's type.
#[offload]
impl Matrix {
    /// A constructor run on a thread.
    #[offload(thread)]
    pub fn load(path: String) -> std::io::Result<Self> {
        parse(&std::fs::read_to_string(path)?)
    }

    /// `self` by value crosses to a worker process, which works on its own copy.
    #[offload(process)]
    pub fn determinant(self, precision: u32) -> f64 {
        solve(&self.cells, precision)
    }

    /// Methods without the attribute are left alone.
    pub fn len(&self) -> usize {
        self.cells.len()
    }
}

pub struct Stack<T> {
    items: Vec<T>,
}

#[offload]
impl<T: Ord> Stack<T> {
    /// Thread mode works in generic blocks: the wrapper says `Self`.
    #[offload(thread)]
    pub fn sorted(mut self) -> Vec<T> {
        self.items.sort();
        self.items
    }
}

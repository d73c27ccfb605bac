// Associated functions and methods, in both modes, through `#[offload]` on the impl block.
// clippy objects to a `self: Box<Self>` of the user's own, with offload or without it.
#![allow(clippy::boxed_local)]
use offload::offload;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Matrix {
    cells: Vec<f64>,
    size: usize,
}

#[offload]
impl Matrix {
    /// An associated fn returning `Self`, on a thread.
    #[offload(thread)]
    pub fn identity(size: usize) -> Self {
        let mut cells = vec![0.0; size * size];
        for i in 0..size {
            cells[i * size + i] = 1.0;
        }
        Matrix { cells, size }
    }

    /// An associated fn returning `Self`, in a worker process.
    #[offload(process)]
    pub fn filled(size: usize, value: f64) -> Self {
        Matrix {
            cells: vec![value; size * size],
            size,
        }
    }

    /// `self` by value crosses to the worker, which works on its own copy.
    #[offload(process)]
    pub fn trace(self) -> f64 {
        (0..self.size).map(|i| self.cells[i * self.size + i]).sum()
    }

    /// `mut self` on a thread.
    #[offload(thread)]
    fn scaled(mut self, factor: f64) -> Matrix {
        for cell in &mut self.cells {
            *cell *= factor;
        }
        self
    }

    /// A typed receiver.
    #[offload(process)]
    fn boxed_len(self: Box<Self>) -> usize {
        self.cells.len()
    }

    /// Untouched.
    fn size(&self) -> usize {
        self.size
    }
}

mod elsewhere {
    use offload::offload;

    // A second block for the same type, in another module, naming it by path.
    #[offload]
    impl super::Matrix {
        #[offload(process, name = "matrix::sum")]
        pub fn sum(self) -> f64 {
            self.cells.iter().sum()
        }
    }
}

#[derive(Serialize, Deserialize)]
pub struct Wrapper<T>(T);

#[offload]
impl Wrapper<u32> {
    /// A concrete instance of a generic type can be offloaded to a process.
    #[offload(process)]
    fn doubled(self) -> u32 {
        self.0 * 2
    }
}

pub struct Stack<T> {
    items: Vec<T>,
}

// A generic block in thread mode: each method gets `T: Send + 'static`, which the block itself
// need not declare.
#[offload]
impl<T: Ord> Stack<T> {
    #[offload(thread)]
    fn sorted(mut self) -> Vec<T> {
        self.items.sort();
        self.items
    }

    #[offload(thread)]
    fn of(items: Vec<T>) -> Self {
        Stack { items }
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}

#[offload::main]
#[tokio::main]
async fn main() {
    let identity = Matrix::identity(3).await.unwrap();
    assert_eq!(identity.size(), 3);
    assert_eq!(identity.clone().trace().await, Ok(3.0));
    assert_eq!(Matrix::filled(2, 1.5).await.unwrap().trace().await, Ok(3.0));
    assert_eq!(
        identity.clone().scaled(2.0).await.unwrap().trace_blocking(),
        6.0
    );
    assert_eq!(Box::new(identity.clone()).boxed_len().await, Ok(9));
    assert_eq!(identity.sum().await, Ok(3.0));
    assert_eq!(Wrapper(21).doubled().await, Ok(42));
    let stack = Stack::of(vec![3, 1, 2]).await.unwrap();
    assert_eq!(stack.len(), 3);
    assert_eq!(stack.sorted().await, Ok(vec![1, 2, 3]));
    assert_eq!(Matrix::identity_blocking(1).size(), 1);
}

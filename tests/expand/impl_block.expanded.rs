use offload::offload;
use serde::{Deserialize, Serialize};
#[derive(Serialize, Deserialize)]
pub struct Matrix {
    cells: Vec<f64>,
}
/// `#[offload]` on the block lets its methods name the block's type.
impl Matrix {
    /// A constructor run on a thread.
    pub async fn load(
        path: String,
    ) -> ::core::result::Result<std::io::Result<Self>, ::offload::Error> {
        static __OFFLOAD_FN: ::offload::__private::Local = ::offload::__private::Local::new(
            ::core::concat!(::core::module_path!(), "::Matrix::load"),
        );
        ::offload::__private::call_in_thread(
                &__OFFLOAD_FN,
                move || { Self::load_blocking(path) },
            )
            .await
    }
    /// The body of `load`, run on the calling thread and blocking it until done: for synchronous callers and unit tests.
    ///
    /// A constructor run on a thread.
    #[allow(clippy::needless_pass_by_value)]
    pub fn load_blocking(path: String) -> std::io::Result<Self> {
        parse(&std::fs::read_to_string(path)?)
    }
    /// `self` by value crosses to a worker process, which works on its own copy.
    pub async fn determinant(
        self,
        precision: u32,
    ) -> ::core::result::Result<f64, ::offload::Error> {
        ::offload::__private::assert_transferable::<Self>();
        ::offload::__private::assert_transferable::<u32>();
        ::offload::__private::assert_transferable::<f64>();
        __OFFLOAD_MATRIX__DETERMINANT.call((self, precision)).await
    }
    /// The body of `determinant`, run on the calling thread and blocking it until done: for synchronous callers and unit tests.
    ///
    /// `self` by value crosses to a worker process, which works on its own copy.
    #[allow(clippy::needless_pass_by_value)]
    pub fn determinant_blocking(self, precision: u32) -> f64 {
        solve(&self.cells, precision)
    }
    /// Methods without the attribute are left alone.
    pub fn len(&self) -> usize {
        self.cells.len()
    }
}
static __OFFLOAD_MATRIX__DETERMINANT: ::offload::__private::Process<
    (Matrix, u32),
    f64,
> = ::offload::__private::Process::new(
    ::offload::__private::Remote::new(
        ::core::concat!(::core::module_path!(), "::Matrix::determinant"),
        ::offload::__private::fingerprint("(Matrix, u32) -> f64"),
    ),
);
::offload::__private::inventory::submit! {
    __OFFLOAD_MATRIX__DETERMINANT.registration(| args, out |
    __OFFLOAD_MATRIX__DETERMINANT.invoke(args, out, | (__offload_self, precision) :
    (Matrix, u32) | Matrix::determinant_blocking(__offload_self, precision)))
}
pub struct Stack<T> {
    items: Vec<T>,
}
impl<T: Ord> Stack<T> {
    /// Thread mode works in generic blocks: the wrapper says `Self`.
    pub async fn sorted(self) -> ::core::result::Result<Vec<T>, ::offload::Error>
    where
        T: ::core::marker::Send + 'static,
    {
        static __OFFLOAD_FN: ::offload::__private::Local = ::offload::__private::Local::new(
            ::core::concat!(::core::module_path!(), "::Stack::sorted"),
        );
        ::offload::__private::call_in_thread(
                &__OFFLOAD_FN,
                move || { Self::sorted_blocking(self) },
            )
            .await
    }
    /// The body of `sorted`, run on the calling thread and blocking it until done: for synchronous callers and unit tests.
    ///
    /// Thread mode works in generic blocks: the wrapper says `Self`.
    pub fn sorted_blocking(mut self) -> Vec<T> {
        self.items.sort();
        self.items
    }
}

//! facade (docs to come)
#[doc(inline)]
pub use offload_macros::{main, offload};
pub use offload_runtime::{CodecStage, Error, Exit, ProcessPool, ProcessPoolBuilder, ThreadPool, ThreadPoolBuilder, DEFAULT_POOL};
pub use offload_runtime::serve_if_worker;

/// One line of setup for a test crate: `offload::test_setup!();`
#[macro_export]
macro_rules! test_setup {
    () => {
        $crate::__private::inventory::submit! { $crate::__private::TestSetup }
    };
}

#[doc(hidden)]
pub mod __private {
    pub use offload_runtime::__private::*;
}

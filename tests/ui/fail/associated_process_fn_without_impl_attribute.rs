// As `associated_fn_without_impl_attribute.rs`, in process mode, in a generic block inside a
// module, beside a free fn of the same name that is fine: one error, at the method's attribute,
// naming the block.
mod maths {
    use offload::offload;

    pub struct Index<T>(pub T);

    impl<T> Index<T> {
        #[offload(process)]
        pub fn triple(x: u32) -> u32 {
            x * 3
        }
    }

    #[offload(process)]
    pub fn triple(x: u64) -> u64 {
        x * 3
    }
}

fn main() {
    let _ = maths::triple(1);
}

//! Where an offloaded function sits: what validation and expansion both need to know about the
//! item around it.

use syn::ItemImpl;

/// Where an offloaded function is defined.
pub enum Owner<'a> {
    /// At module level, or in an `impl` block that has no `#[offload]` of its own (which the
    /// expansion cannot see).
    Module,
    /// In an `impl` block marked `#[offload]`, whose self type the expansion can name.
    Impl(&'a ItemImpl),
}

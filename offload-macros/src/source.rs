//! Reading the file an attribute sits in, for the one mistake its tokens cannot show: an
//! associated fn that neither takes `self` nor names `Self`, in an `impl` block without
//! `#[offload]`. Only the wording of that error depends on the file; the expansion never does,
//! so where the file cannot be read (a path remapped, code made by a macro) rustc's own error
//! remains.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::SystemTime;

use proc_macro2::Ident;
use quote::ToTokens;
use syn::visit::Visit;
use syn::{ImplItem, ItemFn, ItemImpl};

use crate::show::show;

/// The `impl` block around an offloaded fn, as the file shows it.
#[derive(Clone)]
pub struct Enclosing {
    /// `impl Index` or `impl Load for Config`, as written.
    pub header: String,
    pub is_trait: bool,
}

impl Enclosing {
    /// The error for offloaded fn `name` in this block.
    pub fn mistake(&self, name: &Ident) -> String {
        let header = &self.header;
        if self.is_trait {
            format!("`{name}` is in `{header}`: {}", crate::check::TRAIT_METHOD)
        } else {
            format!(
                "`{name}` is in `{header}`, which has no #[offload]: an offloaded fn in an `impl` \
                 block needs #[offload] on the block as well, so that the generated code can name \
                 the type it belongs to. Write #[offload] on the line above `{header}`"
            )
        }
    }
}

/// The `impl` block without `#[offload]` that holds `item`, if its file shows one.
pub fn unmarked_impl(item: &ItemFn) -> Option<Enclosing> {
    if !proc_macro::is_available() {
        return None;
    }
    let path = proc_macro::Span::call_site().local_file()?;
    let found = scanned(path)?;
    let sig = item.sig.to_token_stream().to_string();
    // A free fn of the same signature may be the one this attribute is on: the file cannot
    // tell which, and a wrong error on a correct fn is worse than rustc's own.
    if found.free.contains(&sig) {
        return None;
    }
    let (_, block) = found.unmarked.iter().find(|(of, _)| *of == sig)?;
    Some(block.clone())
}

/// The offloaded fns of one file, by their printed signatures (name included), which is how
/// an attribute's input is matched: those in `impl` blocks without `#[offload]`, each with its
/// block, and the free ones.
#[derive(Default)]
struct Found {
    unmarked: Vec<(String, Enclosing)>,
    free: Vec<String>,
}

/// Every unmarked offloaded fn of one file, read once per version of the file: the compiler, or
/// an editor's long-lived macro server, expands many attributes of the same file.
fn scanned(path: PathBuf) -> Option<Rc<Found>> {
    type Key = (PathBuf, Option<SystemTime>, u64);
    thread_local! {
        static FILES: RefCell<HashMap<Key, Rc<Found>>> = RefCell::default();
    }
    let meta = std::fs::metadata(&path).ok()?;
    let key = (path, meta.modified().ok(), meta.len());
    if let Some(found) = FILES.with(|files| files.borrow().get(&key).cloned()) {
        return Some(found);
    }
    let text = std::fs::read_to_string(&key.0).ok()?;
    let file = syn::parse_file(&text).ok()?;
    let mut finder = Finder(Found::default());
    finder.visit_file(&file);
    let found = Rc::new(finder.0);
    FILES.with(|files| {
        let mut files = files.borrow_mut();
        files.retain(|(path, ..), _| *path != key.0);
        files.insert(key, found.clone());
    });
    Some(found)
}

struct Finder(Found);

impl<'ast> Visit<'ast> for Finder {
    fn visit_item_impl(&mut self, block: &'ast ItemImpl) {
        if !block.attrs.iter().any(crate::expand::is_offload) {
            let generics = show(&block.generics).replace(" : ", ": ");
            let header = match &block.trait_ {
                Some((path, _)) => {
                    format!("impl{generics} {} for {}", show(path), show(&block.self_ty))
                }
                None => format!("impl{generics} {}", show(&block.self_ty)),
            };
            let enclosing = Enclosing {
                header,
                is_trait: block.trait_.is_some(),
            };
            for item in &block.items {
                if let ImplItem::Fn(f) = item {
                    if f.attrs.iter().any(crate::expand::is_offload) {
                        let sig = f.sig.to_token_stream().to_string();
                        self.0.unmarked.push((sig, enclosing.clone()));
                    }
                }
            }
        }
        syn::visit::visit_item_impl(self, block);
    }

    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        if item.attrs.iter().any(crate::expand::is_offload) {
            self.0.free.push(item.sig.to_token_stream().to_string());
        }
        syn::visit::visit_item_fn(self, item);
    }
}

//! Expansion snapshots: every `tests/expand/NAME.rs` of the workspace, with its attributes
//! expanded and pretty-printed, must equal `tests/expand/NAME.expanded.rs`. After an intended
//! change to the expansion, rewrite them with `OFFLOAD_BLESS=1 cargo test -p offload-macros`
//! and review the diff.

use std::fs;
use std::path::{Path, PathBuf};

use quote::ToTokens;
use syn::{Attribute, Item};

#[test]
fn expansions_match_their_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/expand");
    let mut inputs: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("tests/expand")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.extension().is_some_and(|e| e == "rs")
                && !path.to_string_lossy().ends_with(".expanded.rs")
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no inputs in {}", dir.display());
    let bless = std::env::var_os("OFFLOAD_BLESS").is_some_and(|v| v == "1");

    let mut failures = Vec::new();
    for input in &inputs {
        let source = fs::read_to_string(input).expect("input");
        let mut file =
            syn::parse_file(&source).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        expand_items(&mut file.items);
        let actual = prettyplease::unparse(&file);
        assert!(
            !actual.contains("compile_error"),
            "{} expands with an error:\n{actual}",
            input.display()
        );
        let snapshot = input.with_extension("expanded.rs");
        let expected = fs::read_to_string(&snapshot).unwrap_or_default();
        if actual == expected {
            continue;
        }
        if bless {
            fs::write(&snapshot, &actual).expect("write snapshot");
        } else {
            failures.push(format!(
                "{} differs (- snapshot, + now):\n{}",
                snapshot.display(),
                diff(&expected, &actual)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nif the change is intended, run `OFFLOAD_BLESS=1 cargo test -p offload-macros` and review the snapshots",
        failures.join("\n")
    );
}

/// Expands `#[offload(...)]` and `#[offload::main]` where they appear, as the compiler would.
fn expand_items(items: &mut Vec<Item>) {
    for item in std::mem::take(items) {
        let mut item = item;
        if let Item::Mod(module) = &mut item {
            if let Some((_, content)) = &mut module.content {
                expand_items(content);
            }
        }
        let Some(attrs) = attrs_mut(&mut item) else {
            items.push(item);
            continue;
        };
        let Some(index) = attrs.iter().position(is_ours) else {
            items.push(item);
            continue;
        };
        let attr = attrs.remove(index);
        let args = match &attr.meta {
            syn::Meta::List(list) => list.tokens.clone(),
            _ => proc_macro2::TokenStream::new(),
        };
        let output = if attr
            .path()
            .segments
            .last()
            .is_some_and(|s| s.ident == "main")
        {
            crate::guard::main(args, item.into_token_stream())
        } else {
            crate::expand::offload(args, item.into_token_stream())
        };
        let expanded: syn::File = syn::parse2(output).expect("the expansion parses");
        items.extend(expanded.items);
    }
}

fn is_ours(attr: &Attribute) -> bool {
    let path = attr.path();
    let last = path.segments.last().map(|s| s.ident.to_string());
    last.as_deref() == Some("offload")
        || (path.segments.len() == 2 && path.segments[0].ident == "offload")
}

fn attrs_mut(item: &mut Item) -> Option<&mut Vec<Attribute>> {
    match item {
        Item::Fn(item) => Some(&mut item.attrs),
        Item::Impl(item) => Some(&mut item.attrs),
        _ => None,
    }
}

/// A line diff of two texts: the lines only in `old` prefixed `-`, those only in `new` `+`,
/// with two lines of context around each change.
fn diff(old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    // Longest common subsequence table, from the end.
    let mut lcs = vec![vec![0_usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut lines = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            lines.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            lines.push(('+', b[j]));
            j += 1;
        } else {
            lines.push(('-', a[i]));
            i += 1;
        }
    }
    let changed: Vec<usize> = (0..lines.len()).filter(|&k| lines[k].0 != ' ').collect();
    let near = |k: usize| changed.iter().any(|&c| c.abs_diff(k) <= 2);
    let mut out = String::new();
    let mut skipped = false;
    for (k, (sign, line)) in lines.iter().enumerate() {
        if near(k) {
            out.push_str(&format!("{sign} {line}\n"));
            skipped = false;
        } else if !skipped {
            out.push_str("  …\n");
            skipped = true;
        }
    }
    out
}

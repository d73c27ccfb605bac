//! Parsing `#[offload(...)]` into [`Options`], collecting every mistake in one pass.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{LitInt, LitStr, Path, Token};

use crate::Errors;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Thread,
    Process,
}

pub struct Options {
    pub mode: Mode,
    pub pool: Option<LitStr>,
    pub name: Option<LitStr>,
    pub krate: Option<Path>,
    pub timeout_ms: Option<u64>,
    pub retries: Option<u32>,
}

const VALID: &str = "`thread`, `process`, `pool = \"…\"`, `name = \"…\"`, `timeout = \"…\"`, \
                     `retries = N` or `crate = path`";

/// Parses the attribute's arguments. Returns `None` only when no mode could be determined; every
/// other mistake is recorded in `errors` and parsing goes on.
pub fn parse(args: TokenStream, errors: &mut Errors) -> Option<Options> {
    let mut mode: Option<(Mode, Span)> = None;
    let mut pool = None;
    let mut name = None;
    let mut krate = None;
    let mut timeout_ms = None;
    let mut retries: Option<(u32, Span)> = None;

    let parser = syn::meta::parser(|meta| {
        let key = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
        let span = syn::spanned::Spanned::span(&meta.path);
        match key.as_str() {
            "thread" | "process" => {
                let this = if key == "thread" { Mode::Thread } else { Mode::Process };
                match mode {
                    Some((seen, _)) if seen == this => errors.push(span, format!("`{key}` is given twice")),
                    Some(_) => errors.push(span, "choose one mode: `thread` or `process`, not both"),
                    None => mode = Some((this, span)),
                }
                if meta.input.peek(Token![=]) || meta.input.peek(syn::token::Paren) {
                    errors.push(span, format!("`{key}` takes no value: write `#[offload({key})]`"));
                    skip_value(&meta)?;
                }
            }
            "pool" => set(&mut pool, string(&meta, errors)?, span, "pool", errors),
            "name" => set(&mut name, string(&meta, errors)?, span, "name", errors),
            "crate" => {
                let path: Path = meta.value()?.parse()?;
                set(&mut krate, Some(path), span, "crate", errors);
            }
            "timeout" => {
                let duration = string(&meta, errors)?.and_then(|text| match parse_duration(&text.value()) {
                    Some(0) => {
                        errors.push(text.span(), "a timeout of zero would fail every call; give a positive duration");
                        None
                    }
                    Some(ms) => Some(ms),
                    None => {
                        errors.push(
                            text.span(),
                            "expected a duration such as \"5s\" or \"250ms\" (units: ms, s, m)",
                        );
                        None
                    }
                });
                set(&mut timeout_ms, duration, span, "timeout", errors);
            }
            "retries" => {
                let count: LitInt = meta.value()?.parse()?;
                let parsed = count.base10_parse::<u32>().map_err(|_| {
                    syn::Error::new(count.span(), "expected a whole number of retries, e.g. `retries = 2`")
                })?;
                set(&mut retries, Some((parsed, span)), span, "retries", errors);
            }
            _ => {
                let shown = meta.path.get_ident().map_or_else(|| "this path".to_owned(), |i| format!("`{i}`"));
                errors.push(span, format!("unknown option {shown}; expected {VALID}"));
                skip_value(&meta)?;
            }
        }
        Ok(())
    });
    if let Err(error) = parser.parse2(args) {
        errors.add(error);
    }

    let Some((mode, _)) = mode else {
        errors.push(
            Span::call_site(),
            "missing mode: write #[offload(thread)] for blocking I/O or #[offload(process)] for \
             CPU-heavy work",
        );
        return None;
    };
    if mode == Mode::Thread {
        if let Some((_, span)) = retries {
            errors.push(
                span,
                "`retries` applies to process mode only: it re-runs a call whose worker process \
                 died, and a thread cannot die that way",
            );
        }
        if let Some(name) = &name {
            errors.push(
                name.span(),
                "`name` applies to process mode only: it is the name a worker process looks the \
                 function up by",
            );
        }
    }
    Some(Options { mode, pool, name, krate, timeout_ms, retries: retries.map(|(n, _)| n) })
}

fn set<T>(slot: &mut Option<T>, value: Option<T>, span: Span, key: &str, errors: &mut Errors) {
    if slot.is_some() {
        errors.push(span, format!("`{key}` is given twice"));
    } else {
        *slot = value;
    }
}

/// A non-empty string literal value of `key = "…"`.
fn string(meta: &ParseNestedMeta, errors: &mut Errors) -> syn::Result<Option<LitStr>> {
    let text: LitStr = meta.value()?.parse()?;
    if text.value().trim().is_empty() {
        errors.push(text.span(), "expected a non-empty string");
        return Ok(None);
    }
    Ok(Some(text))
}

fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _content;
        syn::parenthesized!(_content in meta.input);
    }
    Ok(())
}

/// `"250ms"`, `"5s"` or `"2m"` in milliseconds.
fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        _ => return None,
    };
    number.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn errors_of(args: TokenStream) -> Vec<String> {
        let mut errors = Errors::default();
        parse(args, &mut errors);
        errors.messages()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(250));
        assert_eq!(parse_duration("5s"), Some(5_000));
        assert_eq!(parse_duration("2m"), Some(120_000));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("1.5s"), None);
    }

    #[test]
    fn every_mistake_is_reported_at_once() {
        let errors = errors_of(quote!(process, pool = "a", pool = "b", colour = 3, timeout = "soon"));
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("`pool` is given twice"));
        assert!(errors[1].contains("unknown option `colour`"));
        assert!(errors[2].contains("expected a duration"));
    }

    #[test]
    fn options_are_checked_against_the_mode() {
        let errors = errors_of(quote!(thread, retries = 2, name = "x"));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors_of(quote!()).pop().unwrap().contains("missing mode"));
        assert!(errors_of(quote!(thread, process))[0].contains("not both"));
    }
}

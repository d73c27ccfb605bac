//! Parsing `#[offload(...)]` into [`Options`], collecting every mistake in one pass.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, LitStr, Path, Token};

use crate::errors::Errors;
use crate::show::show;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Thread,
    Process,
}

/// The arguments of one `#[offload(...)]` attribute on a function.
pub struct Options {
    pub mode: Mode,
    pub pool: Option<LitStr>,
    pub name: Option<LitStr>,
    pub krate: Option<Path>,
    pub timeout_ms: Option<u64>,
    pub retries: Option<u32>,
}

const OPTIONS: &str = "`thread`, `process`, `pool = \"…\"`, `timeout = \"…\"`, `retries = N`, \
                       `name = \"…\"` or `crate = path`";

/// Parses the arguments of `#[offload(...)]` on a function. Every mistake is recorded in `errors`
/// and parsing goes on; without a mode the result is thread mode, so that the caller can still
/// emit a function with the right signature. `attr` spans the whole attribute.
pub fn parse(args: TokenStream, attr: Span, errors: &mut Errors) -> Options {
    let mut mode: Option<Mode> = None;
    let mut misspelt_mode = false;
    let mut pool = Slot::default();
    let mut name = Slot::default();
    let mut krate = Slot::default();
    let mut timeout_ms = Slot::default();
    let mut retries = Slot::default();

    let parser = syn::meta::parser(|meta| {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        let span = meta.path.span();
        match key.as_str() {
            "thread" | "process" => {
                let this = if key == "thread" {
                    Mode::Thread
                } else {
                    Mode::Process
                };
                match mode {
                    Some(seen) if seen == this => {
                        errors.push(span, format!("`{key}` is given twice"))
                    }
                    Some(_) => {
                        errors.push(span, "choose one mode, `thread` or `process`, not both")
                    }
                    None => mode = Some(this),
                }
                if let Some(value) = value(&meta)? {
                    errors.at(
                        value,
                        format!("`{key}` takes no value: write `#[offload({key})]`"),
                    );
                }
            }
            "pool" => pool.set(&key, span, string(&meta, "pool = \"io\"", errors)?, errors),
            "name" => name.set(
                &key,
                span,
                string(&meta, "name = \"stable_name\"", errors)?,
                errors,
            ),
            "crate" => krate.set(&key, span, path(&meta, errors)?, errors),
            "timeout" => timeout_ms.set(&key, span, timeout(&meta, errors)?, errors),
            "retries" => retries.set(&key, span, count(&meta, errors)?, errors),
            _ => {
                let message = unknown(&meta.path, &key);
                // A misspelt mode is a mode: saying it is missing too would be a second error.
                misspelt_mode |= message.contains("did you mean `thread`")
                    || message.contains("did you mean `process`");
                errors.push(span, message);
                value(&meta)?;
            }
        }
        Ok(())
    });
    if let Err(error) = parser.parse2(args) {
        errors.add(error);
    }

    let mode = mode.unwrap_or_else(|| {
        if misspelt_mode {
            return Mode::Thread;
        }
        errors.push(
            attr,
            "missing mode: write #[offload(thread)] for blocking I/O or #[offload(process)] for \
             CPU-heavy work",
        );
        Mode::Thread
    });
    if mode == Mode::Thread {
        if let Some(span) = retries.span {
            errors.push(
                span,
                "`retries` is for process mode: it re-runs a call whose worker process died, and \
                 a thread cannot die that way. Thread mode takes `pool`, `timeout` and `crate`",
            );
        }
        if let Some(span) = name.span {
            errors.push(
                span,
                "`name` is for process mode: it is the name a worker process looks the function \
                 up by. Thread mode takes `pool`, `timeout` and `crate`",
            );
        }
    }
    Options {
        mode,
        pool: pool.value,
        name: name.value,
        krate: krate.value,
        timeout_ms: timeout_ms.value,
        retries: retries.value,
    }
}

/// Parses the arguments of `#[offload]` on an `impl` block: only `crate = path`, which its
/// methods inherit.
pub fn parse_impl(args: TokenStream, errors: &mut Errors) -> Option<Path> {
    let mut krate = Slot::default();
    let parser = syn::meta::parser(|meta| {
        let span = meta.path.span();
        if meta.path.is_ident("crate") {
            krate.set("crate", span, path(&meta, errors)?, errors);
        } else if meta.path.is_ident("thread") || meta.path.is_ident("process") {
            errors.push(
                span,
                "on an `impl` block write plain #[offload], and give each method to offload its \
                 own #[offload(thread)] or #[offload(process)]",
            );
            value(&meta)?;
        } else {
            errors.push(
                span,
                "#[offload] on an `impl` block takes only `crate = path`; the options of each \
                 method go in that method's #[offload(...)]",
            );
            value(&meta)?;
        }
        Ok(())
    });
    if let Err(error) = parser.parse2(args) {
        errors.add(error);
    }
    krate.value
}

/// An option that may be given once.
struct Slot<T> {
    value: Option<T>,
    span: Option<Span>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            value: None,
            span: None,
        }
    }
}

impl<T> Slot<T> {
    fn set(&mut self, key: &str, span: Span, value: Option<T>, errors: &mut Errors) {
        if self.span.is_some() {
            errors.push(span, format!("`{key}` is given twice"));
        } else {
            self.span = Some(span);
            self.value = value;
        }
    }
}

/// The `= value` after a key, if there is one; a parenthesized list is consumed and returned as
/// a verbatim expression so that the caller can point at it.
pub fn value(meta: &ParseNestedMeta) -> syn::Result<Option<Expr>> {
    if meta.input.peek(Token![=]) {
        return Ok(Some(meta.value()?.parse()?));
    }
    if meta.input.peek(syn::token::Paren) {
        let content;
        let parens = syn::parenthesized!(content in meta.input);
        let _: TokenStream = content.parse()?;
        return Ok(Some(Expr::Verbatim(
            quote::quote_spanned!(parens.span.join()=> ()),
        )));
    }
    Ok(None)
}

/// The value of a `key = value` option, or an error saying how to write it.
fn required(
    meta: &ParseNestedMeta,
    example: &str,
    errors: &mut Errors,
) -> syn::Result<Option<Expr>> {
    let value = value(meta)?;
    if value.is_none() {
        errors.push(meta.path.span(), format!("expected a value: `{example}`"));
    }
    Ok(value)
}

/// A non-empty string literal.
fn string(
    meta: &ParseNestedMeta,
    example: &str,
    errors: &mut Errors,
) -> syn::Result<Option<LitStr>> {
    Ok(match required(meta, example, errors)? {
        Some(Expr::Lit(ExprLit {
            lit: Lit::Str(text),
            ..
        })) if text.value().trim().is_empty() => {
            errors.push(
                text.span(),
                format!("expected a non-empty string: `{example}`"),
            );
            None
        }
        Some(Expr::Lit(ExprLit {
            lit: Lit::Str(text),
            ..
        })) => Some(text),
        // `pool = heavy`: the same word, quoted.
        Some(Expr::Path(path)) if path.path.get_ident().is_some() => {
            let key = show(&meta.path);
            let word = show(&path);
            errors.at(
                path,
                format!("expected a string literal: `{key} = \"{word}\"`"),
            );
            None
        }
        Some(other) => {
            errors.at(other, format!("expected a string literal: `{example}`"));
            None
        }
        None => None,
    })
}

/// `crate = path`, or the string form `crate = "path"` that serde and tokio use.
pub fn path(meta: &ParseNestedMeta, errors: &mut Errors) -> syn::Result<Option<Path>> {
    path_to(
        meta,
        errors,
        "the offload crate",
        "crate = my_crate::offload",
    )
}

/// `key = path` or `key = "path"`, where the path names `what`, as in `example`.
pub fn path_to(
    meta: &ParseNestedMeta,
    errors: &mut Errors,
    what: &str,
    example: &str,
) -> syn::Result<Option<Path>> {
    let expected = format!("expected a path to {what}: `{example}`");
    Ok(match required(meta, example, errors)? {
        Some(Expr::Path(path)) if path.qself.is_none() => Some(path.path),
        Some(Expr::Lit(ExprLit {
            lit: Lit::Str(text),
            ..
        })) => match text.parse::<Path>() {
            Ok(path) => Some(path),
            Err(_) => {
                errors.push(text.span(), expected);
                None
            }
        },
        Some(other) => {
            errors.at(other, expected);
            None
        }
        None => None,
    })
}

/// `timeout = "5s"`, in milliseconds.
fn timeout(meta: &ParseNestedMeta, errors: &mut Errors) -> syn::Result<Option<u64>> {
    const UNITS: &str = "expected a duration with its unit: \"250ms\", \"5s\" or \"2m\"";
    Ok(match required(meta, "timeout = \"5s\"", errors)? {
        Some(Expr::Lit(ExprLit {
            lit: Lit::Str(text),
            ..
        })) => match parse_duration(&text.value()) {
            Some(0) => {
                errors.push(
                    text.span(),
                    "a timeout of zero would fail every call; give a positive duration",
                );
                None
            }
            Some(ms) => Some(ms),
            None => {
                match in_milliseconds(&text.value()) {
                    Some(ms) => errors.push(
                        text.span(),
                        format!("a timeout is a whole number of its unit: write \"{ms}ms\""),
                    ),
                    None => errors.push(text.span(), UNITS),
                }
                None
            }
        },
        Some(Expr::Lit(ExprLit {
            lit: Lit::Int(number),
            ..
        })) => {
            let digits = number.base10_digits();
            errors.push(
                number.span(),
                format!("give the unit as well, in a string: `timeout = \"{digits}s\"` or `timeout = \"{digits}ms\"`"),
            );
            None
        }
        Some(other) => {
            errors.at(other, UNITS);
            None
        }
        None => None,
    })
}

/// `retries = N`.
fn count(meta: &ParseNestedMeta, errors: &mut Errors) -> syn::Result<Option<u32>> {
    const EXPECTED: &str = "expected a whole number of retries: `retries = 2`";
    Ok(match required(meta, "retries = 2", errors)? {
        Some(Expr::Lit(ExprLit {
            lit: Lit::Int(number),
            ..
        })) => match number.base10_parse::<u32>() {
            Ok(count) => Some(count),
            Err(_) => {
                errors.at(number, EXPECTED);
                None
            }
        },
        Some(other) => {
            errors.at(other, EXPECTED);
            None
        }
        None => None,
    })
}

/// The error for an unknown key: the valid options, and the likely intended one.
fn unknown(path: &Path, key: &str) -> String {
    const KEYS: &[&str] = &[
        "thread", "process", "pool", "timeout", "retries", "name", "crate",
    ];
    let shown = if key.is_empty() {
        quote::quote!(#path).to_string().replace(' ', "")
    } else {
        key.to_owned()
    };
    let hint = match key {
        "workers" | "max_workers" | "threads" | "max_threads" | "size" => {
            return format!(
                "unknown option `{shown}`: a pool's size belongs to the pool, not to one function. \
                 Name the pool with `pool = \"…\"` and size it at run time with \
                 `ProcessPool::configure(…).workers(n)` or `ThreadPool::configure(…).max_threads(n)`, \
                 or with OFFLOAD_WORKERS_<POOL> / OFFLOAD_THREADS_<POOL>"
            );
        }
        "blocking" | "io" => " (did you mean `thread`?)".to_owned(),
        "cpu" | "worker" | "subprocess" => " (did you mean `process`?)".to_owned(),
        "executor" => " (did you mean `pool`?)".to_owned(),
        _ => KEYS
            .iter()
            .find(|valid| edit_distance(key, valid) <= 2)
            .map(|valid| format!(" (did you mean `{valid}`?)"))
            .unwrap_or_default(),
    };
    format!("unknown option `{shown}`{hint}; expected {OPTIONS}")
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// `"250ms"`, `"5s"` or `"2m"` in milliseconds.
fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    number.checked_mul(unit_ms(unit)?)
}

/// Milliseconds in one of a duration's units.
fn unit_ms(unit: &str) -> Option<u64> {
    match unit.trim() {
        "ms" => Some(1),
        "s" => Some(1_000),
        "m" | "min" => Some(60_000),
        _ => None,
    }
}

/// A fractional duration such as `"1.5s"` in whole milliseconds, for the error that suggests
/// them; `None` when it is not one, or is not a whole number of milliseconds either.
fn in_milliseconds(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let ms = number * unit_ms(unit)? as f64;
    (ms >= 1.0 && ms.fract() == 0.0 && ms < u64::MAX as f64).then_some(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn a_fractional_timeout_is_told_in_milliseconds() {
        assert_eq!(in_milliseconds("1.5s"), Some(1500));
        assert_eq!(in_milliseconds("0.25s"), Some(250));
        assert_eq!(in_milliseconds("2.5m"), Some(150_000));
        assert_eq!(in_milliseconds("0.5ms"), None);
        assert_eq!(in_milliseconds("1.5 seconds"), None);
        assert_eq!(in_milliseconds("abc"), None);
    }

    fn errors_of(args: TokenStream) -> Vec<String> {
        let mut errors = Errors::default();
        parse(args, Span::call_site(), &mut errors);
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
    fn options_are_read() {
        let mut errors = Errors::default();
        let options = parse(
            quote!(
                process,
                pool = "heavy",
                name = "n",
                timeout = "2s",
                retries = 3,
                crate = ::x::y
            ),
            Span::call_site(),
            &mut errors,
        );
        assert!(errors.is_empty(), "{:?}", errors.messages());
        assert_eq!(options.mode, Mode::Process);
        assert_eq!(options.pool.unwrap().value(), "heavy");
        assert_eq!(options.name.unwrap().value(), "n");
        assert_eq!(options.timeout_ms, Some(2_000));
        assert_eq!(options.retries, Some(3));
        assert!(options.krate.is_some());
        let options = parse(
            quote!(thread, crate = "re::offload"),
            Span::call_site(),
            &mut errors,
        );
        assert!(errors.is_empty() && options.krate.is_some());
    }

    #[test]
    fn every_mistake_is_reported_at_once() {
        let errors = errors_of(quote!(
            process,
            pool = "a",
            pool = "b",
            colour = 3,
            timeout = 5,
            retries = "x"
        ));
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].contains("`pool` is given twice"));
        assert!(errors[1].contains("unknown option `colour`"));
        assert!(errors[2].contains("timeout = \"5s\""));
        assert!(errors[3].contains("whole number"));
    }

    #[test]
    fn unknown_options_suggest_the_intended_one() {
        assert!(errors_of(quote!(process, timout = "5s"))[0].contains("did you mean `timeout`"));
        assert!(errors_of(quote!(treads))[0].contains("did you mean `thread`"));
        assert!(errors_of(quote!(process, workers = 4))[0].contains("ProcessPool::configure"));
        assert!(errors_of(quote!(process, a::b))[0].contains("unknown option `a::b`"));
        // A misspelt mode is one error, not that and a missing mode.
        for misspelt in [quote!(Thread), quote!(proces), quote!(cpu)] {
            let errors = errors_of(misspelt);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].contains("did you mean"), "{errors:?}");
        }
    }

    #[test]
    fn options_are_checked_against_the_mode() {
        let errors = errors_of(quote!(thread, retries = 2, name = "x"));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors_of(quote!()).pop().unwrap().contains("missing mode"));
        assert!(errors_of(quote!(thread, process))[0].contains("not both"));
        assert!(errors_of(quote!(thread = 1))[0].contains("takes no value"));
        assert!(errors_of(quote!(thread(x)))[0].contains("takes no value"));
    }
}

//! Tokens printed the way a person writes them.

use quote::ToTokens;

/// A type or other tokens as a person would write them, for messages and fingerprints.
pub fn show(tokens: &impl ToTokens) -> String {
    const TIGHT: &[(&str, &str)] = &[
        (" :: ", "::"),
        (":: ", "::"),
        (" <", "<"),
        ("< ", "<"),
        (" >", ">"),
        ("& ", "&"),
        (" ,", ","),
        ("[ ", "["),
        (" ]", "]"),
        ("( ", "("),
        (" )", ")"),
    ];
    let text = tokens.to_token_stream().to_string();
    TIGHT
        .iter()
        .fold(text, |text, (from, to)| text.replace(from, to))
}

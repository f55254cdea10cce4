//! Attribute macros of the vibetuner framework, re-exported by the `vibetuner` crate: use
//! `#[vibetuner::test]`, not this crate.

use proc_macro::TokenStream;

/// Marks an async test: a Tokio runtime from the `vibetuner` crate's re-export, so an app's
/// tests need no `tokio` dependency of their own. Arguments pass through to `tokio::test`
/// (`#[vibetuner::test(flavor = "multi_thread")]`).
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = args.to_string();
    let separator = if args.trim().is_empty() { "" } else { ", " };
    let attribute =
        format!("#[::vibetuner::tokio::test(crate = \"::vibetuner::tokio\"{separator}{args})]");
    let mut out: TokenStream = attribute
        .parse()
        .expect("the tokio::test attribute is valid Rust");
    out.extend(item);
    out
}

//! Procedural macros for [`zs-observe`](https://docs.rs/zs-observe).
//!
//! Use them through the runtime crate, which re-exports them as
//! `zs_observe::instrumented`; the expansion refers to `::zs_observe::__private`.

mod ast;
mod attr;
mod catalog;
mod expand;
mod valid;

use proc_macro::TokenStream;

#[doc = include_str!("../../docs/attribute.md")]
#[proc_macro_attribute]
pub fn instrumented(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::instrumented(args.into(), item.into()).into()
}

//! Proc macros of the sync framework. Use them through `sync_runtime::sync_request!`, which forwards here.

mod request;

use proc_macro::TokenStream;

/// The implementation of `sync_request!`. Not for direct use.
#[doc(hidden)]
#[proc_macro]
pub fn sync_request_impl(input: TokenStream) -> TokenStream {
    request::expand(input.into(), &request::ResolveCtx::from_env())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

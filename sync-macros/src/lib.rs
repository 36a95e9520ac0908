//! Proc macros of the sync framework. Use them through `sync_runtime::sync_request!` and
//! `sync_runtime::include_routes!`, which forward here.

mod request;
mod routes;

use proc_macro::TokenStream;

/// The implementation of `sync_request!`. Not for direct use.
#[doc(hidden)]
#[proc_macro]
pub fn sync_request_impl(input: TokenStream) -> TokenStream {
    request::expand_or_error(input.into(), &request::ResolveCtx::from_env()).into()
}

/// The implementation of `include_routes!`. Not for direct use.
#[doc(hidden)]
#[proc_macro]
pub fn include_routes_impl(input: TokenStream) -> TokenStream {
    routes::expand(input.into(), &routes::BuildEnv::from_env())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

//! `sync_request!("name", data, param = value, ..)`: resolve the caller's route at compile time and call
//! the generated, typed `request` function of that route's sync.

use std::path::{Path, PathBuf};

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Expr, Ident, LitStr, Token, bracketed, parenthesized};

use sync_build::RouteTree;

/// `name = "x", data = ( expr ), params = [ id = ( expr ), .. ]`, as the `macro_rules!` front end emits it.
pub struct Input {
    name: LitStr,
    data: Expr,
    params: Vec<(Ident, Expr)>,
}

fn key(input: ParseStream<'_>, expected: &str) -> syn::Result<()> {
    let ident: Ident = input.parse()?;
    if ident != expected {
        return Err(syn::Error::new(
            ident.span(),
            format!("expected `{expected} = ..`"),
        ));
    }
    input.parse::<Token![=]>()?;
    Ok(())
}

impl Parse for Input {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        key(input, "name")?;
        let name: LitStr = input.parse()?;
        input.parse::<Token![,]>()?;
        key(input, "data")?;
        let data_group;
        parenthesized!(data_group in input);
        let data: Expr = data_group.parse()?;
        input.parse::<Token![,]>()?;
        key(input, "params")?;
        let list;
        bracketed!(list in input);
        let mut params = Vec::new();
        while !list.is_empty() {
            let ident: Ident = list.parse()?;
            list.parse::<Token![=]>()?;
            let value_group;
            parenthesized!(value_group in list);
            params.push((ident, value_group.parse()?));
            if !list.is_empty() {
                list.parse::<Token![,]>()?;
            }
        }
        Ok(Input { name, data, params })
    }
}

/// Where the caller is and which routes root applies.
pub struct ResolveCtx {
    /// The routes root set by sync-build (`SYNC_ROUTES_DIR`), if any.
    pub routes_dir: Option<PathBuf>,
    /// Overrides the caller file (tests); otherwise read from the name literal's span.
    pub caller_file: Option<PathBuf>,
}

impl ResolveCtx {
    /// From the environment rustc runs the macro in.
    pub fn from_env() -> Self {
        ResolveCtx {
            routes_dir: std::env::var_os("SYNC_ROUTES_DIR").map(PathBuf::from),
            caller_file: None,
        }
    }
}

/// The routes root for a caller: the configured one, else `src/` of the nearest crate above the file.
fn routes_root(ctx: &ResolveCtx, caller: &Path) -> Option<PathBuf> {
    if let Some(dir) = &ctx.routes_dir {
        return Some(dir.clone());
    }
    caller
        .ancestors()
        .skip(1)
        .find(|dir| dir.join("Cargo.toml").is_file())
        .map(|dir| dir.join("src"))
}

fn list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Expand one `sync_request!`; a call that cannot resolve becomes its compile error.
///
/// The error still mentions the data and param expressions, so that what they name counts as used: a
/// misspelt sync name is one error, not that error plus an "unused import" warning for the `use` of its
/// `Data`. The body is then tainted by the error, so these mentions are never borrow-checked.
pub fn expand_or_error(input: TokenStream, ctx: &ResolveCtx) -> TokenStream {
    let input: Input = match syn::parse2(input) {
        Ok(input) => input,
        Err(e) => return e.into_compile_error(),
    };
    let mentions = {
        let data = &input.data;
        let values = input.params.iter().map(|(_, value)| value);
        quote!(let _ = &(#data); #(let _ = &(#values);)*)
    };
    match resolve(input, ctx) {
        Ok(call) => call,
        Err(e) => {
            let error = e.into_compile_error();
            quote!({ #mentions #error })
        }
    }
}

/// Expand one `sync_request!`.
#[cfg(test)]
pub fn expand(input: TokenStream, ctx: &ResolveCtx) -> syn::Result<TokenStream> {
    resolve(syn::parse2(input)?, ctx)
}

fn resolve(input: Input, ctx: &ResolveCtx) -> syn::Result<TokenStream> {
    let Input { name, data, params } = input;
    let caller = match &ctx.caller_file {
        Some(file) => Some(file.clone()),
        // Inside `macro_rules!` the call site is the macro's own definition; the literal keeps the user's
        // span, and so the user's file.
        None => name.span().local_file(),
    };
    let Some(caller) = caller else {
        return Err(syn::Error::new(
            name.span(),
            "sync_request!: cannot tell which file this call is in, so not which route it belongs to",
        ));
    };
    let caller = caller.canonicalize().unwrap_or(caller);
    let Some(root) = routes_root(ctx, &caller) else {
        return Err(syn::Error::new(
            name.span(),
            "sync_request!: no Cargo.toml above this file, so no routes root",
        ));
    };
    let root = root.canonicalize().unwrap_or(root);
    let tree = RouteTree::discover(&root)
        .map_err(|e| syn::Error::new(name.span(), format!("sync_request!: {e}")))?;
    let Some(route) = tree.route_of_file(&caller) else {
        return Err(syn::Error::new(
            name.span(),
            format!(
                "sync_request! can only be called from files under the routes root `{}`; `{}` is outside it",
                root.display(),
                caller.display()
            ),
        ));
    };

    let requested = name.value();
    let mut errors: Vec<syn::Error> = Vec::new();
    let Some(route_ref) = route.route.filter(|r| r.sync(&requested).is_some()) else {
        let defined: Vec<String> = route.syncs().iter().map(|s| s.name.clone()).collect();
        let mut message = if defined.is_empty() {
            format!(
                "`{}` defines no syncs, so it has no sync named `{requested}`",
                route.pattern
            )
        } else {
            format!(
                "`{}` has no sync named `{requested}`; it defines: {}",
                route.pattern,
                list(&defined)
            )
        };
        let elsewhere: Vec<String> = tree
            .routes_defining(&requested)
            .iter()
            .map(|r| r.pattern.clone())
            .collect();
        if !elsewhere.is_empty() {
            message.push_str(&format!(
                " (`{requested}` is defined on {}; a sync can only be requested from its own route's folder)",
                list(&elsewhere)
            ));
        }
        return Err(syn::Error::new(name.span(), message));
    };

    for (ident, _) in &params {
        if !route.params.iter().any(|p| ident == p) {
            errors.push(syn::Error::new(
                ident.span(),
                if route.params.is_empty() {
                    format!("`{}` has no params; remove `{ident} = ..`", route.pattern)
                } else {
                    format!(
                        "`{}` has no param `{ident}`; its params are: {}",
                        route.pattern,
                        list(&route.params)
                    )
                },
            ));
        }
    }
    let missing: Vec<String> = route
        .params
        .iter()
        .filter(|p| !params.iter().any(|(ident, _)| ident == *p))
        .cloned()
        .collect();
    if !missing.is_empty() {
        let example: Vec<String> = route.params.iter().map(|p| format!("{p} = ..")).collect();
        errors.push(syn::Error::new(
            name.span(),
            format!(
                "`{}` is a dynamic route: give {} (e.g. `sync_request!(\"{requested}\", data, {})`)",
                route.pattern,
                list(&missing),
                example.join(", ")
            ),
        ));
    }
    if let Some(combined) = errors.into_iter().reduce(|mut a, b| {
        a.combine(b);
        a
    }) {
        return Err(combined);
    }

    let module = format_ident!("{}", route_ref.module);
    let sync = format_ident!("{}", requested);
    let values = params.iter().map(|(ident, value)| {
        let key = ident.to_string();
        quote_spanned!(value.span()=> (#key, &(#value) as &dyn ::core::fmt::Display))
    });
    // The call carries the data expression's span, so a wrong type is reported at the user's argument.
    let call = quote_spanned!(data.span()=> crate::__sync_routes::#module::#sync::request);
    // A block, so that the params' `&dyn Display` temporaries are dropped before the caller awaits the
    // `Pending` (they are not `Send`, and would make an async handler's future `!Send`).
    Ok(quote! {
        {
            let pending = #call(#data, &[#(#values),*]);
            pending
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tree(tempfile::TempDir);

    impl Tree {
        fn new(files: &[&str]) -> Tree {
            let dir = tempfile::tempdir().expect("temp dir");
            for file in files {
                let path = dir.path().join("src").join(file);
                std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
                std::fs::write(&path, "").expect("write");
            }
            std::fs::write(dir.path().join("Cargo.toml"), "").expect("Cargo.toml");
            Tree(dir)
        }

        fn ctx(&self, caller: &str) -> ResolveCtx {
            let file = self.0.path().join("src").join(caller);
            std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
            std::fs::write(&file, "").expect("write");
            ResolveCtx {
                routes_dir: None,
                caller_file: Some(file),
            }
        }
    }

    fn tree() -> Tree {
        Tree::new(&[
            "dashboard/_sync/refreshData_client.rs",
            "dashboard/_sync/refreshData_server.rs",
            "dashboard/_dashboardSync/other_client.rs",
            "home/_sync/refreshData_client.rs",
            "home/_sync/homeOnly_client.rs",
            "posts/[id]/_sync/newComment_client.rs",
            "about/page.rs",
        ])
    }

    fn err(input: TokenStream, ctx: &ResolveCtx) -> String {
        expand(input, ctx)
            .expect_err("must not expand")
            .to_compile_error()
            .to_string()
    }

    #[test]
    fn a_defined_name_expands_to_the_routes_request_function() {
        let t = tree();
        let out = expand(
            quote!(name = "refreshData", data = (Data { a: 1 }), params = []),
            &t.ctx("dashboard/page.rs"),
        )
        .expect("expands");
        let text = out.to_string();
        assert!(
            text.contains("crate :: __sync_routes :: dashboard :: refreshData :: request"),
            "{text}"
        );
        // From a `_components` folder the route is the same.
        let out = expand(
            quote!(name = "other", data = (x), params = []),
            &t.ctx("dashboard/_components/w.rs"),
        )
        .expect("expands");
        assert!(out.to_string().contains("dashboard :: other :: request"));
    }

    #[test]
    fn an_unknown_name_lists_the_routes_names() {
        let t = tree();
        let e = err(
            quote!(name = "refreshDta", data = (x), params = []),
            &t.ctx("dashboard/page.rs"),
        );
        assert!(
            e.contains(
                "`/dashboard` has no sync named `refreshDta`; it defines: `other`, `refreshData`"
            ),
            "{e}"
        );
    }

    #[test]
    fn another_routes_name_says_where_it_is_defined() {
        let t = tree();
        let e = err(
            quote!(name = "homeOnly", data = (x), params = []),
            &t.ctx("dashboard/page.rs"),
        );
        assert!(e.contains("`homeOnly` is defined on `/home`"), "{e}");
        let e = err(
            quote!(name = "refreshData", data = (x), params = []),
            &t.ctx("about/page.rs"),
        );
        assert!(e.contains("`/about` defines no syncs"), "{e}");
    }

    #[test]
    fn dynamic_routes_need_exactly_their_params() {
        let t = tree();
        let ctx = t.ctx("posts/[id]/page.rs");
        let e = err(quote!(name = "newComment", data = (x), params = []), &ctx);
        assert!(e.contains("dynamic route: give `id`"), "{e}");
        let e = err(
            quote!(
                name = "newComment",
                data = (x),
                params = [id = (7), page = (2)]
            ),
            &ctx,
        );
        assert!(
            e.contains("has no param `page`; its params are: `id`"),
            "{e}"
        );
        let out = expand(
            quote!(name = "newComment", data = (x), params = [id = (post.id)]),
            &ctx,
        )
        .expect("expands");
        assert!(
            out.to_string()
                .contains("posts__id :: newComment :: request"),
            "{out}"
        );
        assert!(out.to_string().contains("\"id\""), "{out}");
    }

    #[test]
    fn a_failing_call_still_mentions_its_data_and_params() {
        let t = tree();
        let out = expand_or_error(
            quote!(
                name = "refreshDta",
                data = (refreshData::Data { a: 1 }),
                params = [id = (post.id)]
            ),
            &t.ctx("dashboard/page.rs"),
        )
        .to_string();
        assert!(out.contains("compile_error"), "{out}");
        assert!(
            out.contains("let _ = & (refreshData :: Data { a : 1 })"),
            "{out}"
        );
        assert!(out.contains("let _ = & (post . id)"), "{out}");
    }

    #[test]
    fn a_file_outside_the_root_is_an_error() {
        let t = tree();
        let outside = t.0.path().join("tests/it.rs");
        std::fs::create_dir_all(outside.parent().expect("parent")).expect("mkdir");
        std::fs::write(&outside, "").expect("write");
        let ctx = ResolveCtx {
            routes_dir: Some(t.0.path().join("src")),
            caller_file: Some(outside),
        };
        let e = err(quote!(name = "x", data = (x), params = []), &ctx);
        assert!(
            e.contains("can only be called from files under the routes root"),
            "{e}"
        );
    }
}

//! `include_routes!()`: include the route tree sync-build generated, or say exactly what is missing
//! (rustc's own "`OUT_DIR` not defined" points at the wrong fix).

use std::path::PathBuf;

use proc_macro2::{Span, TokenStream};
use quote::quote;

// The generated file's name, as sync-build writes it.
use sync_build::OUTPUT_FILE as FILE;

/// What the build told the compiler, read from the environment rustc runs the macro in.
pub struct BuildEnv {
    /// `SYNC_ROUTES_FILE`: the generated file, as sync-build announces it.
    pub routes_file: Option<PathBuf>,
    /// `OUT_DIR`: set by cargo only for a crate with a build script.
    pub out_dir: Option<PathBuf>,
}

impl BuildEnv {
    pub fn from_env() -> Self {
        BuildEnv {
            routes_file: std::env::var_os("SYNC_ROUTES_FILE").map(PathBuf::from),
            out_dir: std::env::var_os("OUT_DIR").map(PathBuf::from),
        }
    }

    /// The generated file, or why there is none and how to fix it.
    fn file(&self) -> Result<PathBuf, String> {
        const BUILD_RS: &str = "`build.rs` with `fn main() { sync_build::compile().unwrap_or_else(|e| panic!(\"{e}\")); }` and `sync-build` under `[build-dependencies]` in Cargo.toml";
        if let Some(file) = &self.routes_file {
            return Ok(file.clone());
        }
        let Some(out_dir) = &self.out_dir else {
            return Err(format!(
                "include_routes!() includes what sync-build generates when the crate is built, but this crate has no build script: add {BUILD_RS}"
            ));
        };
        let file = out_dir.join(FILE);
        if file.is_file() {
            Ok(file)
        } else {
            Err(format!(
                "include_routes!() found no `{FILE}` in `{}`: the crate's build script does not run sync-build; call `sync_build::compile()` from it ({BUILD_RS})",
                out_dir.display()
            ))
        }
    }
}

/// Expand `include_routes!()`.
pub fn expand(input: TokenStream, env: &BuildEnv) -> syn::Result<TokenStream> {
    if !input.is_empty() {
        return Err(syn::Error::new_spanned(
            input,
            "include_routes!() takes no arguments (the routes root is set in build.rs)",
        ));
    }
    let file = env
        .file()
        .map_err(|message| syn::Error::new(Span::call_site(), message))?;
    let path = file.to_string_lossy();
    Ok(quote! {
        #[doc(hidden)]
        #[allow(missing_docs)]
        pub mod __sync_routes {
            include!(#path);
        }

        /// The syncs of every route, by route module and sync name: `syncs::<route>::<name>::Data`.
        pub use self::__sync_routes as syncs;

        /// Each route's `page.rs`, by route module, with `PATH` for axum's router.
        pub use self::__sync_routes::pages;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(env: &BuildEnv) -> String {
        expand(TokenStream::new(), env)
            .expect_err("must not expand")
            .to_string()
    }

    #[test]
    fn without_a_build_script_the_error_names_build_rs() {
        let m = message(&BuildEnv {
            routes_file: None,
            out_dir: None,
        });
        assert!(m.contains("this crate has no build script"), "{m}");
        assert!(m.contains("sync_build::compile()"), "{m}");
        assert!(m.contains("[build-dependencies]"), "{m}");
    }

    #[test]
    fn a_build_script_that_does_not_run_sync_build_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let m = message(&BuildEnv {
            routes_file: None,
            out_dir: Some(dir.path().to_path_buf()),
        });
        assert!(
            m.contains("the crate's build script does not run sync-build"),
            "{m}"
        );
    }

    #[test]
    fn the_announced_file_is_included_else_the_one_in_out_dir() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(FILE), "").expect("write");
        let env = BuildEnv {
            routes_file: None,
            out_dir: Some(dir.path().to_path_buf()),
        };
        assert_eq!(env.file().expect("found"), dir.path().join(FILE));
        let out = expand(TokenStream::new(), &env)
            .expect("expands")
            .to_string();
        assert!(out.contains("include !"), "{out}");
        assert!(
            out.contains("pub use self :: __sync_routes as syncs"),
            "{out}"
        );
        let elsewhere = BuildEnv {
            routes_file: Some(PathBuf::from("/elsewhere/sync_routes.rs")),
            out_dir: None,
        };
        assert_eq!(
            elsewhere.file().expect("announced"),
            PathBuf::from("/elsewhere/sync_routes.rs")
        );
        assert!(message_of_args().contains("takes no arguments"));
    }

    fn message_of_args() -> String {
        expand(
            quote!(foo),
            &BuildEnv {
                routes_file: None,
                out_dir: None,
            },
        )
        .expect_err("arguments are refused")
        .to_string()
    }
}

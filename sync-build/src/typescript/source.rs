//! A handler file as the declarations generator reads it: its items by name, and what its `use`s bring in.

use std::collections::HashMap;
use std::path::PathBuf;

/// One parsed handler file.
pub struct Source {
    pub path: PathBuf,
    pub file: syn::File,
    /// `use a::b::C;` and `use a::b::D as C;`: `C` -> `["a", "b", "D"]`.
    pub uses: HashMap<String, Vec<String>>,
}

impl Source {
    /// Read and parse `path`; `None` when it cannot be (`inspect` reports that as a build error).
    pub fn read(path: PathBuf) -> Option<Source> {
        let text = std::fs::read_to_string(&path).ok()?;
        Source::parse(path, &text)
    }

    /// Parse `text` as the file at `path`.
    pub fn parse(path: PathBuf, text: &str) -> Option<Source> {
        let file = syn::parse_file(text).ok()?;
        let mut uses = HashMap::new();
        for item in &file.items {
            if let syn::Item::Use(u) = item {
                collect_uses(&u.tree, &mut Vec::new(), &mut uses);
            }
        }
        Some(Source { path, file, uses })
    }

    /// The struct, enum or type alias named `name` in this file.
    pub fn item(&self, name: &str) -> Option<&syn::Item> {
        self.file.items.iter().find(|item| match item {
            syn::Item::Struct(s) => s.ident == name,
            syn::Item::Enum(e) => e.ident == name,
            syn::Item::Type(t) => t.ident == name,
            _ => false,
        })
    }

    /// The function named `name` in this file.
    pub fn function(&self, name: &str) -> Option<&syn::ItemFn> {
        crate::inspect::function(&self.file, name)
    }
}

fn collect_uses(
    tree: &syn::UseTree,
    prefix: &mut Vec<String>,
    out: &mut HashMap<String, Vec<String>>,
) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            collect_uses(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let mut path = prefix.clone();
            path.push(n.ident.to_string());
            out.insert(n.ident.to_string(), path);
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            path.push(r.ident.to_string());
            out.insert(r.rename.to_string(), path);
        }
        syn::UseTree::Group(g) => {
            for t in &g.items {
                collect_uses(t, prefix, out);
            }
        }
        syn::UseTree::Glob(_) => {}
    }
}

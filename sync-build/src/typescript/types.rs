//! Rust types to TypeScript types, as serde_json writes and reads them.
//!
//! What this maps, and why (docs/DESIGN.md, "TypeScript declarations"): integers and floats are `number`
//! (a `u64`, `i64`, `u128` or `i128` past 2^53 loses precision in a JavaScript number: serde_json writes
//! it exactly, `JSON.parse` rounds it); strings, `char`s and paths are `string`; sequences and sets are
//! arrays; maps with string or integer keys are `Record<string, V>` (serde_json writes integer keys as
//! strings); `Box`, `Arc`, `Rc`, `Cow`, `Cell`, `RefCell`, `Mutex`, `RwLock` are what they hold;
//! `serde_json::Value` is `unknown`. Well-known types by their default serde form: chrono's dates and
//! times, `uuid::Uuid`, `url::Url`, IP and socket addresses and `rust_decimal::Decimal` are strings;
//! `std::time::SystemTime` is `{ secs_since_epoch, nanos_since_epoch }` and `Duration` `{ secs, nanos }`.
//! The `time` crate's types depend on its features (a string or a tuple): `unknown`, with a warning,
//! unless the field says `#[serde(with = "time::serde::rfc3339")]` (or `rfc2822`, `iso8601`: a string;
//! `timestamp`: a number).

use std::collections::HashMap;

use super::Warning;
use super::serde_attrs::Side;
use super::source::Source;

/// Maps the types of one sync's files; collects a warning for every part it cannot see.
pub struct Mapper<'a> {
    /// The sync's files: the client file first, then the server file if any.
    pub files: Vec<&'a Source>,
    pub route: &'a str,
    pub sync: &'a str,
    pub warnings: Vec<Warning>,
    /// Where in the value the mapper is, for warnings: `data.items[]`.
    pub at: Vec<String>,
    /// The items being expanded (recursion guard): (file index, name).
    expanding: Vec<(usize, String)>,
}

/// Generic parameters, by name, to their TypeScript types.
pub type Subst = HashMap<String, String>;

pub const UNKNOWN: &str = "unknown";

impl<'a> Mapper<'a> {
    pub fn new(files: Vec<&'a Source>, route: &'a str, sync: &'a str) -> Mapper<'a> {
        Mapper {
            files,
            route,
            sync,
            warnings: Vec::new(),
            at: Vec::new(),
            expanding: Vec::new(),
        }
    }

    /// `unknown`, and a warning naming the file, route, sync and place.
    pub fn unknown(&mut self, file: usize, message: String) -> String {
        self.warnings.push(Warning {
            file: self.files[file].path.clone(),
            route: self.route.to_owned(),
            sync: self.sync.to_owned(),
            field: self.at.join("."),
            message,
        });
        UNKNOWN.to_owned()
    }

    /// The TypeScript type of `ty`, written in file `file`.
    pub fn ty(&mut self, ty: &syn::Type, file: usize, side: Side, subst: &Subst) -> String {
        match ty {
            syn::Type::Reference(r) => self.ty(&r.elem, file, side, subst),
            syn::Type::Paren(p) => self.ty(&p.elem, file, side, subst),
            syn::Type::Group(g) => self.ty(&g.elem, file, side, subst),
            syn::Type::Never(_) => "never".to_owned(),
            syn::Type::Tuple(t) if t.elems.is_empty() => "null".to_owned(),
            syn::Type::Tuple(t) => {
                let items: Vec<String> = t
                    .elems
                    .iter()
                    .map(|e| self.ty(e, file, side, subst))
                    .collect();
                format!("[{}]", items.join(", "))
            }
            syn::Type::Array(a) => array(self.ty(&a.elem, file, side, subst)),
            syn::Type::Slice(s) => array(self.ty(&s.elem, file, side, subst)),
            syn::Type::Path(p) if p.qself.is_none() => self.path(&p.path, file, side, subst),
            other => {
                let text = quote::ToTokens::to_token_stream(other).to_string();
                self.unknown(
                    file,
                    format!("the type `{text}` has no JSON form the generator knows"),
                )
            }
        }
    }

    fn path(&mut self, path: &syn::Path, file: usize, side: Side, subst: &Subst) -> String {
        let last = path.segments.last().expect("a path has a segment");
        let name = last.ident.to_string();
        if path.segments.len() == 1
            && let Some(ts) = subst.get(&name)
        {
            return ts.clone();
        }
        let args: Vec<&syn::Type> = match &last.arguments {
            syn::PathArguments::AngleBracketed(a) => a
                .args
                .iter()
                .filter_map(|arg| match arg {
                    syn::GenericArgument::Type(t) => Some(t),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        // The path as written, with its first segment replaced by what a `use` brought in.
        let mut full: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if let Some(used) = self.files[file].uses.get(&full[0]) {
            full.splice(0..1, used.iter().cloned());
        }
        let prefix = &full[..full.len() - 1];
        if prefix
            .iter()
            .all(|s| matches!(s.as_str(), "self" | "super" | "server" | "client"))
        {
            // Local: this file first, then the sync's other file (`super::Data`, `super::server::Seen`).
            let order = std::iter::once(file).chain((0..self.files.len()).filter(|&i| i != file));
            for i in order.collect::<Vec<_>>() {
                if self.files[i].item(&name).is_some() {
                    let args: Vec<String> =
                        args.iter().map(|a| self.ty(a, file, side, subst)).collect();
                    return self.item(i, &name, args, side);
                }
            }
        }
        let krate = if full.len() > 1 { full[0].as_str() } else { "" };
        if let Some(ts) = self.well_known(krate, &name, &args, file, side, subst) {
            return ts;
        }
        let written = full.join("::");
        if full.len() == 1 {
            self.unknown(
                file,
                format!("`{written}` is not defined in the sync's handler files"),
            )
        } else {
            self.unknown(
                file,
                format!("`{written}` is defined outside the sync's handler files, where the generator cannot see it"),
            )
        }
    }

    /// A std or well-known crate type by name; `krate` is the path's first segment ("" for a bare name).
    fn well_known(
        &mut self,
        krate: &str,
        name: &str,
        args: &[&syn::Type],
        file: usize,
        side: Side,
        subst: &Subst,
    ) -> Option<String> {
        let arg = |i: usize, me: &mut Self| match args.get(i) {
            Some(t) => me.ty(t, file, side, subst),
            None => UNKNOWN.to_owned(),
        };
        let ts = match name {
            "u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "i8" | "i16" | "i32" | "i64"
            | "i128" | "isize" | "f32" | "f64" | "NonZeroU8" | "NonZeroU16" | "NonZeroU32"
            | "NonZeroU64" | "NonZeroU128" | "NonZeroUsize" | "NonZeroI8" | "NonZeroI16"
            | "NonZeroI32" | "NonZeroI64" | "NonZeroI128" | "NonZeroIsize" | "NonZero" => {
                "number".to_owned()
            }
            "Number" if krate == "serde_json" => "number".to_owned(),
            "bool" => "boolean".to_owned(),
            "String" | "str" | "char" | "PathBuf" | "Path" | "IpAddr" | "Ipv4Addr" | "Ipv6Addr"
            | "SocketAddr" | "SocketAddrV4" | "SocketAddrV6" => "string".to_owned(),
            "Uuid" if krate == "uuid" => "string".to_owned(),
            "Url" if krate == "url" => "string".to_owned(),
            "Decimal" if krate == "rust_decimal" => "string".to_owned(),
            "DateTime" | "NaiveDate" | "NaiveDateTime" | "NaiveTime" if krate == "chrono" => {
                "string".to_owned()
            }
            "OffsetDateTime" | "PrimitiveDateTime" | "UtcDateTime" | "Date" | "Time"
                if krate == "time" =>
            {
                return Some(self.unknown(
                    file,
                    format!("`time::{name}` is a string or a tuple depending on the `time` crate's features; add `#[serde(with = \"time::serde::rfc3339\")]`"),
                ));
            }
            "SystemTime" => "{ secs_since_epoch: number; nanos_since_epoch: number }".to_owned(),
            "Duration" if krate != "chrono" && krate != "time" => {
                "{ secs: number; nanos: number }".to_owned()
            }
            "Value" if krate == "serde_json" => UNKNOWN.to_owned(),
            "Map" if krate == "serde_json" => "Record<string, unknown>".to_owned(),
            "PhantomData" => "null".to_owned(),
            "Option" => format!("{} | null", arg(0, self)),
            "Vec" | "VecDeque" | "LinkedList" | "HashSet" | "BTreeSet" | "BinaryHeap"
            | "IndexSet" => array(arg(0, self)),
            "HashMap" | "BTreeMap" | "IndexMap" => {
                let key = arg(0, self);
                let value = arg(1, self);
                if key == "string" || key == "number" || key.starts_with('"') {
                    format!("Record<string, {value}>")
                } else {
                    self.unknown(
                        file,
                        format!("a map whose keys are `{key}`, not strings or numbers"),
                    )
                }
            }
            "Box" | "Arc" | "Rc" | "Cow" | "Cell" | "RefCell" | "Mutex" | "RwLock" | "Reverse"
            | "Wrapping" | "Saturating" => arg(0, self),
            "Result" => format!("{{ Ok: {} }} | {{ Err: {} }}", arg(0, self), arg(1, self)),
            _ => return None,
        };
        Some(ts)
    }

    /// The item `name` of file `file`, with its generic arguments.
    fn item(&mut self, file: usize, name: &str, args: Vec<String>, side: Side) -> String {
        let key = (file, name.to_owned());
        if self.expanding.contains(&key) {
            return self.unknown(
                file,
                format!("`{name}` refers to itself; recursive types are not expanded"),
            );
        }
        let item = self.files[file]
            .item(name)
            .expect("looked up by the caller")
            .clone();
        let generics = match &item {
            syn::Item::Struct(s) => &s.generics,
            syn::Item::Enum(e) => &e.generics,
            syn::Item::Type(t) => &t.generics,
            _ => unreachable!("Source::item finds structs, enums and aliases"),
        };
        let mut subst = Subst::new();
        let mut args = args.into_iter();
        for param in generics.type_params() {
            let ts = match args.next() {
                Some(ts) => ts,
                None => self.unknown(
                    file,
                    format!("`{name}`'s type parameter `{}` is not given", param.ident),
                ),
            };
            subst.insert(param.ident.to_string(), ts);
        }
        self.expanding.push(key);
        let ts = match &item {
            syn::Item::Type(t) => self.ty(&t.ty, file, side, &subst),
            syn::Item::Struct(s) => self.structure(s, file, side, &subst),
            syn::Item::Enum(e) => self.enumeration(e, file, side, &subst),
            _ => unreachable!("Source::item finds structs, enums and aliases"),
        };
        self.expanding.pop();
        ts
    }
}

/// `T[]`, with `T` in parentheses when it is a union or an intersection.
pub fn array(item: String) -> String {
    let mut depth = 0i32;
    let mut compound = false;
    for c in item.chars() {
        match c {
            '{' | '[' | '(' | '<' => depth += 1,
            '}' | ']' | ')' | '>' => depth -= 1,
            '|' | '&' if depth == 0 => compound = true,
            _ => {}
        }
    }
    if compound {
        format!("({item})[]")
    } else {
        format!("{item}[]")
    }
}

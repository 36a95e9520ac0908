//! The `#[serde(...)]` attributes that change a type's JSON form, read from the item's tokens.

/// Which way the JSON goes: what the browser sends (`Deserialize`) or what it receives (`Serialize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The browser sends it: a sync's `data`.
    De,
    /// The browser receives it: an event's payload.
    Ser,
}

/// A `rename_all` case, as serde spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Lower,
    Upper,
    Pascal,
    Camel,
    Snake,
    ScreamingSnake,
    Kebab,
    ScreamingKebab,
}

impl Case {
    fn parse(name: &str) -> Option<Case> {
        Some(match name {
            "lowercase" => Case::Lower,
            "UPPERCASE" => Case::Upper,
            "PascalCase" => Case::Pascal,
            "camelCase" => Case::Camel,
            "snake_case" => Case::Snake,
            "SCREAMING_SNAKE_CASE" => Case::ScreamingSnake,
            "kebab-case" => Case::Kebab,
            "SCREAMING-KEBAB-CASE" => Case::ScreamingKebab,
            _ => return None,
        })
    }

    /// A variant's name (written in PascalCase) in this case, as serde renames it.
    pub fn variant(self, name: &str) -> String {
        match self {
            Case::Pascal => name.to_owned(),
            Case::Lower => name.to_ascii_lowercase(),
            Case::Upper => name.to_ascii_uppercase(),
            Case::Camel => {
                let mut chars = name.chars();
                chars.next().map_or_else(String::new, |first| {
                    first.to_ascii_lowercase().to_string() + chars.as_str()
                })
            }
            Case::Snake | Case::ScreamingSnake | Case::Kebab | Case::ScreamingKebab => {
                let mut snake = String::new();
                for (i, c) in name.char_indices() {
                    if c.is_uppercase() && i > 0 {
                        snake.push('_');
                    }
                    snake.push(c.to_ascii_lowercase());
                }
                self.field(&snake)
            }
        }
    }

    /// A field's name (written in snake_case) in this case, as serde renames it.
    pub fn field(self, name: &str) -> String {
        match self {
            Case::Lower | Case::Snake => name.to_owned(),
            Case::Upper | Case::ScreamingSnake => name.to_ascii_uppercase(),
            Case::Kebab => name.replace('_', "-"),
            Case::ScreamingKebab => name.replace('_', "-").to_ascii_uppercase(),
            Case::Pascal | Case::Camel => {
                let mut out = String::new();
                let mut upper = self == Case::Pascal;
                for c in name.chars() {
                    if c == '_' {
                        upper = true;
                    } else if upper {
                        out.push(c.to_ascii_uppercase());
                        upper = false;
                    } else {
                        out.push(c);
                    }
                }
                out
            }
        }
    }
}

/// A value that serde lets differ by side (`rename(serialize = "a", deserialize = "b")`).
#[derive(Debug, Clone)]
pub struct BySide<T> {
    pub ser: Option<T>,
    pub de: Option<T>,
}

impl<T> Default for BySide<T> {
    fn default() -> Self {
        BySide {
            ser: None,
            de: None,
        }
    }
}

impl<T: Clone> BySide<T> {
    pub fn get(&self, side: Side) -> Option<T> {
        match side {
            Side::Ser => self.ser.clone(),
            Side::De => self.de.clone(),
        }
    }
}

/// What the serde attributes of one item, field or variant say (only the parts that change the JSON).
#[derive(Debug, Clone, Default)]
pub struct SerdeAttrs {
    pub rename: BySide<String>,
    pub rename_all: BySide<Case>,
    /// On an enum: `rename_all` for the fields of each struct variant.
    pub rename_all_fields: BySide<Case>,
    pub tag: Option<String>,
    pub content: Option<String>,
    pub untagged: bool,
    pub transparent: bool,
    pub skip_ser: bool,
    pub skip_de: bool,
    /// `skip_serializing_if`: the field may be missing from what the browser receives.
    pub skip_ser_if: bool,
    pub default: bool,
    pub flatten: bool,
    /// `from` / `try_from`: the type the browser sends instead.
    pub from: Option<syn::Type>,
    /// `into`: the type the browser receives instead.
    pub into: Option<syn::Type>,
    /// `with`, `deserialize_with`, `serialize_with` (the module path, or "" when not given as a string),
    /// per side.
    pub with: BySide<String>,
    /// Attributes that could not be read, with what was wrong (reported as warnings by the caller).
    pub unreadable: Vec<String>,
}

impl SerdeAttrs {
    /// Read every `#[serde(...)]` among `attrs`.
    pub fn of(attrs: &[syn::Attribute]) -> SerdeAttrs {
        let mut out = SerdeAttrs::default();
        for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
            if let Err(e) = attr.parse_nested_meta(|meta| out.read(meta)) {
                out.unreadable.push(e.to_string());
            }
        }
        out
    }

    pub fn skipped(&self, side: Side) -> bool {
        match side {
            Side::Ser => self.skip_ser,
            Side::De => self.skip_de,
        }
    }

    fn read(&mut self, meta: syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        match key.as_str() {
            "rename" => self.rename = by_side(&meta, Ok)?,
            "rename_all" => {
                self.rename_all = by_side(&meta, |s| {
                    Case::parse(&s).ok_or_else(|| meta.error(format!("unknown case `{s}`")))
                })?
            }
            "rename_all_fields" => {
                self.rename_all_fields = by_side(&meta, |s| {
                    Case::parse(&s).ok_or_else(|| meta.error(format!("unknown case `{s}`")))
                })?
            }
            "tag" => self.tag = Some(string(&meta)?),
            "content" => self.content = Some(string(&meta)?),
            "untagged" => self.untagged = true,
            "transparent" => self.transparent = true,
            "flatten" => self.flatten = true,
            "skip" => (self.skip_ser, self.skip_de) = (true, true),
            "skip_serializing" => self.skip_ser = true,
            "skip_deserializing" => self.skip_de = true,
            "skip_serializing_if" => {
                string(&meta)?;
                self.skip_ser_if = true;
            }
            "default" => {
                if meta.input.peek(syn::Token![=]) {
                    string(&meta)?;
                }
                self.default = true;
            }
            "from" | "try_from" => self.from = Some(type_of(&meta)?),
            "into" => self.into = Some(type_of(&meta)?),
            "with" => {
                let module = string(&meta)?;
                self.with = BySide {
                    ser: Some(module.clone()),
                    de: Some(module),
                };
            }
            "serialize_with" => self.with.ser = Some(string(&meta)?),
            "deserialize_with" => self.with.de = Some(string(&meta)?),
            // `bound`, `borrow`, `alias`, `other`, `crate`, `expecting`, ...: no change to the JSON's type
            // (an alias is one more accepted name; the declared name is enough). Their values are skipped.
            _ => {
                if meta.input.peek(syn::Token![=]) {
                    meta.value()?.parse::<syn::Expr>()?;
                } else if meta.input.peek(syn::token::Paren) {
                    meta.parse_nested_meta(|inner| {
                        if inner.input.peek(syn::Token![=]) {
                            inner.value()?.parse::<syn::Expr>()?;
                        }
                        Ok(())
                    })?;
                }
            }
        }
        Ok(())
    }
}

fn string(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<String> {
    Ok(meta.value()?.parse::<syn::LitStr>()?.value())
}

fn type_of(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<syn::Type> {
    meta.value()?.parse::<syn::LitStr>()?.parse()
}

/// `key = "v"`, or `key(serialize = "a", deserialize = "b")`.
fn by_side<T: Clone>(
    meta: &syn::meta::ParseNestedMeta<'_>,
    convert: impl Fn(String) -> syn::Result<T>,
) -> syn::Result<BySide<T>> {
    if meta.input.peek(syn::Token![=]) {
        let value = convert(string(meta)?)?;
        return Ok(BySide {
            ser: Some(value.clone()),
            de: Some(value),
        });
    }
    let mut out = BySide {
        ser: None,
        de: None,
    };
    meta.parse_nested_meta(|inner| {
        let value = convert(string(&inner)?)?;
        if inner.path.is_ident("serialize") {
            out.ser = Some(value);
        } else if inner.path.is_ident("deserialize") {
            out.de = Some(value);
        }
        Ok(())
    })?;
    Ok(out)
}

/// A field's or variant's name in JSON: its `rename`, else the container's `rename_all` of the Rust name
/// (without `r#`).
pub fn json_name(
    ident: &syn::Ident,
    attrs: &SerdeAttrs,
    all: &BySide<Case>,
    side: Side,
    variant: bool,
) -> String {
    if let Some(name) = attrs.rename.get(side) {
        return name;
    }
    let name = ident.to_string();
    let name = name.strip_prefix("r#").unwrap_or(&name).to_owned();
    match all.get(side) {
        Some(case) if variant => case.variant(&name),
        Some(case) => case.field(&name),
        None => name,
    }
}

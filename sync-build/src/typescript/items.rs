//! Structs and enums to TypeScript, with serde's attributes: renames, skips, defaults, flattening, the four
//! enum representations, newtype and tuple structs, `transparent`, `from`/`try_from`/`into`.

use super::serde_attrs::{BySide, Case, SerdeAttrs, Side, json_name};
use super::types::{Mapper, Subst};

/// One property of an object type.
struct Property {
    name: String,
    optional: bool,
    ts: String,
}

/// An object type: its properties and the flattened types it is intersected with.
#[derive(Default)]
struct Object {
    properties: Vec<Property>,
    flattened: Vec<String>,
}

impl Object {
    fn render(self) -> String {
        let mut parts = Vec::new();
        if !self.properties.is_empty() || self.flattened.is_empty() {
            if self.properties.is_empty() {
                parts.push("Record<string, never>".to_owned());
            } else {
                let props: Vec<String> = self
                    .properties
                    .iter()
                    .map(|p| {
                        format!(
                            "{}{}: {}",
                            key(&p.name),
                            if p.optional { "?" } else { "" },
                            p.ts
                        )
                    })
                    .collect();
                parts.push(format!("{{ {} }}", props.join("; ")));
            }
        }
        parts.extend(self.flattened.into_iter().map(|f| {
            if f.contains(" | ") {
                format!("({f})")
            } else {
                f
            }
        }));
        parts.join(" & ")
    }
}

/// A property key: bare when it is an identifier, quoted otherwise.
pub fn key(name: &str) -> String {
    let mut chars = name.chars();
    let ident = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if ident {
        name.to_owned()
    } else {
        literal(name)
    }
}

/// A TypeScript string literal.
pub fn literal(text: &str) -> String {
    let mut out = String::from('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Mapper<'_> {
    fn warn_unreadable(&mut self, file: usize, attrs: &SerdeAttrs) {
        for e in &attrs.unreadable {
            self.unknown(
                file,
                format!("a `#[serde(...)]` attribute does not read: {e}"),
            );
        }
    }

    /// A field's type, honouring `with` / `serialize_with` / `deserialize_with`.
    fn field_type(
        &mut self,
        field: &syn::Field,
        attrs: &SerdeAttrs,
        file: usize,
        side: Side,
        subst: &Subst,
    ) -> String {
        match attrs.with.get(side) {
            None => self.ty(&field.ty, file, side, subst),
            Some(module) => match module.strip_prefix("time::serde::") {
                Some("rfc3339" | "rfc2822" | "iso8601") => "string".to_owned(),
                Some("rfc3339::option" | "rfc2822::option" | "iso8601::option") => {
                    "string | null".to_owned()
                }
                Some("timestamp") => "number".to_owned(),
                Some("timestamp::option") => "number | null".to_owned(),
                _ => self.unknown(
                    file,
                    format!("its JSON is written by `{module}`, which the generator cannot read"),
                ),
            },
        }
    }

    /// Named fields as an object; `rename_all` from the container (or the variant).
    fn object(
        &mut self,
        fields: &syn::FieldsNamed,
        all: &BySide<Case>,
        all_default: bool,
        file: usize,
        side: Side,
        subst: &Subst,
    ) -> Object {
        let mut object = Object::default();
        for field in &fields.named {
            let attrs = SerdeAttrs::of(&field.attrs);
            if attrs.skipped(side) {
                continue;
            }
            let ident = field.ident.as_ref().expect("named fields have names");
            let name = json_name(ident, &attrs, all, side, false);
            self.at.push(name.clone());
            self.warn_unreadable(file, &attrs);
            let ts = self.field_type(field, &attrs, file, side, subst);
            self.at.pop();
            if attrs.flatten {
                object.flattened.push(ts);
                continue;
            }
            let optional = match side {
                // A missing `Option` field is `None` unless a `deserialize_with` decides otherwise.
                Side::De => {
                    attrs.default
                        || all_default
                        || (is_option(&field.ty) && attrs.with.de.is_none())
                }
                Side::Ser => attrs.skip_ser_if,
            };
            object.properties.push(Property { name, optional, ts });
        }
        object
    }

    /// Unnamed fields: the one type of a newtype, or a tuple of the fields not skipped.
    fn tuple(
        &mut self,
        fields: &syn::FieldsUnnamed,
        file: usize,
        side: Side,
        subst: &Subst,
    ) -> String {
        let mut items = Vec::new();
        for (i, field) in fields.unnamed.iter().enumerate() {
            let attrs = SerdeAttrs::of(&field.attrs);
            if attrs.skipped(side) {
                continue;
            }
            self.at.push(i.to_string());
            let ts = self.field_type(field, &attrs, file, side, subst);
            self.at.pop();
            items.push(ts);
        }
        if fields.unnamed.len() == 1 {
            items.pop().unwrap_or_else(|| "null".to_owned())
        } else {
            format!("[{}]", items.join(", "))
        }
    }

    /// The container's `from`/`try_from` (data) or `into` (payloads): the JSON is that type's.
    fn converted(&mut self, attrs: &SerdeAttrs, file: usize, side: Side) -> Option<String> {
        let other = match side {
            Side::De => attrs.from.as_ref(),
            Side::Ser => attrs.into.as_ref(),
        }?;
        Some(self.ty(other, file, side, &Subst::new()))
    }

    pub(super) fn structure(
        &mut self,
        s: &syn::ItemStruct,
        file: usize,
        side: Side,
        subst: &Subst,
    ) -> String {
        let attrs = SerdeAttrs::of(&s.attrs);
        self.warn_unreadable(file, &attrs);
        if let Some(ts) = self.converted(&attrs, file, side) {
            return ts;
        }
        if attrs.transparent {
            // The one field that is not skipped.
            let field = s
                .fields
                .iter()
                .find(|f| !SerdeAttrs::of(&f.attrs).skipped(side));
            return match field {
                Some(field) => self.ty(&field.ty, file, side, subst),
                None => self.unknown(
                    file,
                    format!("`{}` is transparent without a field", s.ident),
                ),
            };
        }
        match &s.fields {
            syn::Fields::Unit => "null".to_owned(),
            syn::Fields::Unnamed(fields) => self.tuple(fields, file, side, subst),
            syn::Fields::Named(fields) => self
                .object(fields, &attrs.rename_all, attrs.default, file, side, subst)
                .render(),
        }
    }

    pub(super) fn enumeration(
        &mut self,
        e: &syn::ItemEnum,
        file: usize,
        side: Side,
        subst: &Subst,
    ) -> String {
        let attrs = SerdeAttrs::of(&e.attrs);
        self.warn_unreadable(file, &attrs);
        if let Some(ts) = self.converted(&attrs, file, side) {
            return ts;
        }
        let mut cases = Vec::new();
        for variant in &e.variants {
            let vattrs = SerdeAttrs::of(&variant.attrs);
            if vattrs.skipped(side) {
                continue;
            }
            self.warn_unreadable(file, &vattrs);
            let name = json_name(&variant.ident, &vattrs, &attrs.rename_all, side, true);
            // A struct variant's fields: its own `rename_all`, else the enum's `rename_all_fields`.
            let fields_case = BySide {
                ser: vattrs.rename_all.ser.or(attrs.rename_all_fields.ser),
                de: vattrs.rename_all.de.or(attrs.rename_all_fields.de),
            };
            self.at.push(name.clone());
            let tag = literal(&name);
            let case = match (
                &attrs.tag,
                &attrs.content,
                attrs.untagged || vattrs.untagged,
            ) {
                (_, _, true) => match &variant.fields {
                    syn::Fields::Unit => "null".to_owned(),
                    syn::Fields::Unnamed(f) => self.tuple(f, file, side, subst),
                    syn::Fields::Named(f) => self
                        .object(f, &fields_case, false, file, side, subst)
                        .render(),
                },
                // Internally tagged: the tag among the variant's own fields.
                (Some(t), None, false) => match &variant.fields {
                    syn::Fields::Unit => format!("{{ {}: {tag} }}", key(t)),
                    syn::Fields::Named(f) => {
                        let mut object = self.object(f, &fields_case, false, file, side, subst);
                        let property = Property {
                            name: t.clone(),
                            optional: false,
                            ts: tag,
                        };
                        object.properties.insert(0, property);
                        object.render()
                    }
                    syn::Fields::Unnamed(f) if f.unnamed.len() == 1 => {
                        let inner = self.tuple(f, file, side, subst);
                        format!("{{ {}: {tag} }} & {inner}", key(t))
                    }
                    syn::Fields::Unnamed(_) => self.unknown(
                        file,
                        "an internally tagged enum cannot hold a tuple variant (serde refuses it)"
                            .to_owned(),
                    ),
                },
                // Adjacently tagged: the tag and the content side by side.
                (Some(t), Some(c), false) => match &variant.fields {
                    syn::Fields::Unit => format!("{{ {}: {tag} }}", key(t)),
                    fields => {
                        let content = self.variant_content(fields, &fields_case, file, side, subst);
                        format!("{{ {}: {tag}; {}: {content} }}", key(t), key(c))
                    }
                },
                // Externally tagged (serde's default): a unit variant is its name.
                _ => match &variant.fields {
                    syn::Fields::Unit => tag,
                    fields => {
                        let content = self.variant_content(fields, &fields_case, file, side, subst);
                        format!("{{ {}: {content} }}", key(&name))
                    }
                },
            };
            self.at.pop();
            cases.push(case);
        }
        if cases.is_empty() {
            return "never".to_owned();
        }
        cases.join(" | ")
    }

    fn variant_content(
        &mut self,
        fields: &syn::Fields,
        fields_case: &BySide<Case>,
        file: usize,
        side: Side,
        subst: &Subst,
    ) -> String {
        match fields {
            syn::Fields::Unit => "null".to_owned(),
            syn::Fields::Unnamed(f) => self.tuple(f, file, side, subst),
            syn::Fields::Named(f) => self
                .object(f, fields_case, false, file, side, subst)
                .render(),
        }
    }
}

/// Whether the type is written `Option<..>` (any path ending in `Option`).
fn is_option(ty: &syn::Type) -> bool {
    matches!(ty, syn::Type::Path(p) if p.qself.is_none()
        && p.path.segments.last().is_some_and(|s| s.ident == "Option"))
}

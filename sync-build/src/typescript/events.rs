//! The events a sync's `react` sends, and their payloads' types where the code shows them.
//!
//! `Reaction::event("lit", payload)` anywhere in `react`'s body (a batch included) is an event named
//! `lit`. Its payload's type is known when the payload is `cx.server` (the filter's type, the second
//! parameter of `ClientCx`), `cx.data`, a field of either (`cx.data.n`), a literal, or one of those
//! behind `&`, `.clone()`, `.to_owned()`, `.as_str()`, `.to_string()`; anything else (a `json!` object,
//! a local variable, a function's result) is `unknown`. An event whose name is not a literal makes the
//! sync's events an open `[event: string]: unknown`.

use std::collections::BTreeMap;

use syn::visit::Visit;

use super::serde_attrs::Side;
use super::types::{Mapper, Subst, UNKNOWN};

/// A sync's events: name -> payload types (a union when several calls send the same name).
#[derive(Debug, Default, PartialEq)]
pub struct Events {
    pub named: BTreeMap<String, Vec<String>>,
    /// Some event's name is computed: any name may arrive.
    pub open: bool,
}

/// The events of the client file's `react` (file 0 of the mapper).
pub fn events(mapper: &mut Mapper<'_>) -> Events {
    let Some(react) = mapper.files[0].function("react").cloned() else {
        return Events::default();
    };
    // `react(cx: ClientCx<Data, S>)`: the context's name and its two type arguments.
    let (cx, data, server) = match react.sig.inputs.first() {
        Some(syn::FnArg::Typed(arg)) => {
            let name = match &*arg.pat {
                syn::Pat::Ident(p) => p.ident.to_string(),
                _ => String::new(),
            };
            let (data, server) = cx_types(&arg.ty);
            (name, data, server)
        }
        _ => (String::new(), None, None),
    };
    let mut calls = Calls::default();
    calls.visit_block(&react.block);
    let mut out = Events::default();
    for (name, payload) in calls.found {
        let Some(name) = name else {
            out.open = true;
            continue;
        };
        mapper.at = vec![format!("events.{name}")];
        let ts = payload
            .map(|p| payload_type(mapper, &p, &cx, data.as_ref(), server.as_ref()))
            .unwrap_or_else(|| "null".to_owned());
        let types = out.named.entry(name).or_default();
        if !types.contains(&ts) {
            types.push(ts);
        }
    }
    mapper.at.clear();
    out
}

/// `ClientCx<D, S>` (whatever the context type is named): `D` and `S`.
fn cx_types(ty: &syn::Type) -> (Option<syn::Type>, Option<syn::Type>) {
    let types = crate::inspect::type_arguments(ty).map_or_else(Vec::new, |(_, types)| types);
    (
        types.first().copied().cloned(),
        types.get(1).copied().cloned(),
    )
}

/// Calls of `Reaction::event(name, payload)`: the name when it is a string literal, and the payload.
#[derive(Default)]
struct Calls {
    found: Vec<(Option<String>, Option<syn::Expr>)>,
}

impl<'ast> Visit<'ast> for Calls {
    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        if let syn::Expr::Path(f) = &*call.func {
            let segments: Vec<String> = f
                .path
                .segments
                .iter()
                .map(|s| s.ident.to_string())
                .collect();
            if segments.ends_with(&["Reaction".to_owned(), "event".to_owned()]) {
                let name = match call.args.first() {
                    Some(syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(s),
                        ..
                    })) => Some(s.value()),
                    _ => None,
                };
                self.found.push((name, call.args.iter().nth(1).cloned()));
            }
        }
        syn::visit::visit_expr_call(self, call);
    }
}

/// The payload's type, or `unknown`.
fn payload_type(
    mapper: &mut Mapper<'_>,
    expr: &syn::Expr,
    cx: &str,
    data: Option<&syn::Type>,
    server: Option<&syn::Type>,
) -> String {
    match expr {
        syn::Expr::Lit(lit) => match &lit.lit {
            syn::Lit::Str(_) | syn::Lit::Char(_) => "string".to_owned(),
            syn::Lit::Int(_) | syn::Lit::Float(_) => "number".to_owned(),
            syn::Lit::Bool(_) => "boolean".to_owned(),
            _ => UNKNOWN.to_owned(),
        },
        syn::Expr::Reference(r) => payload_type(mapper, &r.expr, cx, data, server),
        syn::Expr::Paren(p) => payload_type(mapper, &p.expr, cx, data, server),
        syn::Expr::MethodCall(m) if m.args.is_empty() => match m.method.to_string().as_str() {
            "clone" | "to_owned" => payload_type(mapper, &m.receiver, cx, data, server),
            "as_str" | "to_string" => "string".to_owned(),
            _ => UNKNOWN.to_owned(),
        },
        syn::Expr::Field(_) => match field_chain(expr, cx) {
            Some((root, fields)) => {
                let ty = match root.as_str() {
                    "data" => data,
                    "server" => server,
                    _ => None,
                };
                match ty.and_then(|ty| field_type(mapper, ty, &fields)) {
                    Some(ty) => mapper.ty(&ty, 0, Side::Ser, &Subst::new()),
                    None => UNKNOWN.to_owned(),
                }
            }
            None => UNKNOWN.to_owned(),
        },
        _ => UNKNOWN.to_owned(),
    }
}

/// `cx.server.a.b` -> ("server", ["a", "b"]).
fn field_chain(expr: &syn::Expr, cx: &str) -> Option<(String, Vec<String>)> {
    let syn::Expr::Field(f) = expr else {
        return None;
    };
    let syn::Member::Named(member) = &f.member else {
        return None;
    };
    match &*f.base {
        syn::Expr::Path(p) if p.path.is_ident(cx) => Some((member.to_string(), Vec::new())),
        base => {
            let (root, mut fields) = field_chain(base, cx)?;
            fields.push(member.to_string());
            Some((root, fields))
        }
    }
}

/// The Rust type of `ty.fields[0].fields[1]...`, following the handler files' own structs (and aliases).
fn field_type(mapper: &Mapper<'_>, ty: &syn::Type, fields: &[String]) -> Option<syn::Type> {
    let Some((first, rest)) = fields.split_first() else {
        return Some(ty.clone());
    };
    let syn::Type::Path(p) = ty else {
        return None;
    };
    let name = p.path.segments.last()?.ident.to_string();
    let item = mapper.files.iter().find_map(|f| f.item(&name))?;
    match item {
        syn::Item::Type(alias) => field_type(mapper, &alias.ty, fields),
        syn::Item::Struct(s) if s.generics.params.is_empty() => {
            let field = s
                .fields
                .iter()
                .find(|f| f.ident.as_ref().is_some_and(|i| i == first))?;
            field_type(mapper, &field.ty, rest)
        }
        _ => None,
    }
}

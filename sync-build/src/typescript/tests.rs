//! Each serde attribute and type mapping, from handler files written inline; and the warnings for what
//! the generator cannot see.

use std::path::PathBuf;

use super::events::Events;
use super::serde_attrs::Case;
use super::source::Source;
use super::{CLIENT_API, Warning, sync_types};

fn source(name: &str, text: &str) -> Source {
    Source::parse(PathBuf::from(name), text).expect("the test's Rust parses")
}

/// The data type of a client file.
fn data(client: &str) -> String {
    let (data, _, warnings) = sync_types(&source("c.rs", client), None, "/r", "s");
    assert_eq!(warnings, Vec::new(), "no warnings for {data}");
    data
}

/// The data type and the warnings.
fn data_warned(client: &str) -> (String, Vec<Warning>) {
    let (data, _, warnings) =
        sync_types(&source("src/r/_sync/s_client.rs", client), None, "/r", "s");
    (data, warnings)
}

/// The events of a client file with a server file.
fn events(client: &str, server: &str) -> Events {
    let server = source("server.rs", server);
    let (_, events, warnings) = sync_types(&source("client.rs", client), Some(&server), "/r", "s");
    assert_eq!(warnings, Vec::new());
    events
}

/// The payload of the one event a client sends `Seen` (defined in `items`) as `cx.server`.
fn payload(items: &str) -> String {
    let client = "pub type Data = (); pub fn react(cx: ClientCx<Data, super::server::Seen>) -> Reaction { Reaction::event(\"e\", cx.server) }";
    let events = events(client, items);
    events.named["e"].join(" | ")
}

#[test]
fn fields_and_their_renames() {
    assert_eq!(
        data(
            "pub struct Data { pub team: String, #[serde(rename = \"type\")] pub kind: u8, pub r#for: bool }"
        ),
        "{ team: string; type: number; for: boolean }"
    );
    assert_eq!(
        data(
            "#[serde(rename_all = \"camelCase\")] pub struct Data { pub team_name: String, #[serde(rename = \"x-y\")] pub a: u8 }"
        ),
        "{ teamName: string; \"x-y\": number }"
    );
    assert_eq!(
        data(
            "#[serde(rename(serialize = \"out\", deserialize = \"in\"))] pub struct Data { #[serde(rename(deserialize = \"sent\"))] pub a: u8 }"
        ),
        "{ sent: number }"
    );
}

#[test]
fn every_rename_all_case() {
    let cases = [
        (Case::Lower, "fieldname", "variantname"),
        (Case::Upper, "FIELD_NAME", "VARIANTNAME"),
        (Case::Pascal, "FieldName", "VariantName"),
        (Case::Camel, "fieldName", "variantName"),
        (Case::Snake, "field_name", "variant_name"),
        (Case::ScreamingSnake, "FIELD_NAME", "VARIANT_NAME"),
        (Case::Kebab, "field-name", "variant-name"),
        (Case::ScreamingKebab, "FIELD-NAME", "VARIANT-NAME"),
    ];
    for (case, field, variant) in cases {
        // serde's lowercase of a field is the field as written.
        let field = if case == Case::Lower {
            "field_name"
        } else {
            field
        };
        assert_eq!(case.field("field_name"), field, "{case:?}");
        assert_eq!(case.variant("VariantName"), variant, "{case:?}");
    }
    assert_eq!(
        data("#[serde(rename_all = \"SCREAMING-KEBAB-CASE\")] pub enum Data { FirstOne, Second }"),
        "\"FIRST-ONE\" | \"SECOND\""
    );
}

#[test]
fn skips_defaults_and_options() {
    assert_eq!(
        data(
            "pub struct Data { #[serde(skip)] pub a: u8, #[serde(skip_deserializing)] pub b: u8, #[serde(skip_serializing)] pub c: u8 }"
        ),
        "{ c: number }"
    );
    assert_eq!(
        data(
            "pub struct Data { #[serde(default)] pub a: u8, #[serde(default = \"one\")] pub b: u8, pub c: Option<String>, pub d: std::option::Option<u8> }"
        ),
        "{ a?: number; b?: number; c?: string | null; d?: number | null }"
    );
    assert_eq!(
        data("#[serde(default)] pub struct Data { pub a: u8 }"),
        "{ a?: number }"
    );
    assert_eq!(data("pub struct Data {}"), "Record<string, never>");
    // What the browser receives: an `Option` is there (as `null`), unless skipped when empty.
    assert_eq!(
        payload(
            "pub struct Seen { pub a: Option<u8>, #[serde(skip_serializing_if = \"Option::is_none\")] pub b: Option<u8>, #[serde(skip_serializing)] pub c: u8, #[serde(skip_deserializing)] pub d: u8 }"
        ),
        "{ a: number | null; b?: number | null; d: number }"
    );
}

#[test]
fn flatten_is_an_intersection() {
    assert_eq!(
        data(
            "pub struct Data { pub a: u8, #[serde(flatten)] pub more: More } pub struct More { pub b: String }"
        ),
        "{ a: number } & { b: string }"
    );
    assert_eq!(
        data(
            "pub struct Data { #[serde(flatten)] pub extra: std::collections::HashMap<String, u8> }"
        ),
        "Record<string, number>"
    );
}

#[test]
fn the_four_enum_representations() {
    let variants = "{ Unit, New(u8), Pair(u8, String), Named { x: bool } }";
    assert_eq!(
        data(&format!("pub enum Data {variants}")),
        "\"Unit\" | { New: number } | { Pair: [number, string] } | { Named: { x: boolean } }"
    );
    assert_eq!(
        data(&format!(
            "#[serde(tag = \"t\", content = \"c\")] pub enum Data {variants}"
        )),
        "{ t: \"Unit\" } | { t: \"New\"; c: number } | { t: \"Pair\"; c: [number, string] } | { t: \"Named\"; c: { x: boolean } }"
    );
    assert_eq!(
        data(&format!("#[serde(untagged)] pub enum Data {variants}")),
        "null | number | [number, string] | { x: boolean }"
    );
    assert_eq!(
        data(
            "#[serde(tag = \"kind\", rename_all = \"snake_case\")] pub enum Data { Unit, NewOne(Inner), #[serde(rename_all = \"camelCase\")] Named { the_x: bool } } pub struct Inner { pub y: u8 }"
        ),
        "{ kind: \"unit\" } | { kind: \"new_one\" } & { y: number } | { kind: \"named\"; theX: boolean }"
    );
    assert_eq!(
        data(
            "pub enum Data { Red, #[serde(rename = \"GREEN\")] Green, #[serde(skip)] Blue, #[serde(skip_deserializing)] Grey }"
        ),
        "\"Red\" | \"GREEN\""
    );
    assert_eq!(data("pub enum Data {}"), "never");
    assert_eq!(
        data(
            "#[serde(rename_all_fields = \"camelCase\")] pub enum Data { A { the_x: u8 }, #[serde(rename_all = \"UPPERCASE\")] B { the_y: u8 } }"
        ),
        "{ A: { theX: number } } | { B: { THE_Y: number } }"
    );
}

#[test]
fn newtype_tuple_unit_and_transparent_structs() {
    assert_eq!(data("pub struct Data(pub String);"), "string");
    assert_eq!(
        data("pub struct Data(pub u8, pub Vec<String>);"),
        "[number, string[]]"
    );
    assert_eq!(data("pub struct Data;"), "null");
    assert_eq!(
        data("#[serde(transparent)] pub struct Data { #[serde(skip)] cache: u8, inner: Vec<u8> }"),
        "number[]"
    );
    assert_eq!(data("pub type Data = ();"), "null");
}

#[test]
fn from_try_from_and_into() {
    assert_eq!(
        data("#[serde(try_from = \"String\")] pub struct Data(Checked);"),
        "string"
    );
    assert_eq!(
        data("#[serde(from = \"Vec<u8>\")] pub enum Data { A }"),
        "number[]"
    );
    assert_eq!(
        payload("#[serde(into = \"String\")] pub struct Seen { pub a: u8 }"),
        "string"
    );
}

#[test]
fn std_types() {
    assert_eq!(
        data(
            "pub struct Data { a: u8, b: i64, c: u128, d: f32, e: usize, f: std::num::NonZeroU32, g: bool, h: char, i: &'static str, j: Box<str>, k: std::sync::Arc<String>, l: std::rc::Rc<u8>, m: std::borrow::Cow<'static, str>, n: std::path::PathBuf }"
        ),
        "{ a: number; b: number; c: number; d: number; e: number; f: number; g: boolean; h: string; i: string; j: string; k: string; l: number; m: string; n: string }"
    );
    assert_eq!(
        data(
            "use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque}; pub struct Data { a: Vec<u8>, b: [u8; 4], c: &'static [String], d: HashSet<String>, e: BTreeSet<u8>, f: VecDeque<bool>, g: BTreeMap<String, u8>, h: std::collections::HashMap<u64, Vec<(u8, String)>>, i: (u8, bool), j: Option<Vec<Option<u8>>> }"
        ),
        "{ a: number[]; b: number[]; c: string[]; d: string[]; e: number[]; f: boolean[]; g: Record<string, number>; h: Record<string, [number, string][]>; i: [number, boolean]; j?: (number | null)[] | null }"
    );
}

#[test]
fn well_known_types_by_their_wire_form() {
    assert_eq!(
        data(
            "use chrono::{DateTime, Utc}; pub struct Data { a: DateTime<Utc>, b: chrono::NaiveDate, c: chrono::NaiveDateTime, d: uuid::Uuid, e: std::time::SystemTime, f: std::time::Duration, g: serde_json::Value, h: serde_json::Map<String, serde_json::Value>, i: std::net::IpAddr }"
        ),
        "{ a: string; b: string; c: string; d: string; e: { secs_since_epoch: number; nanos_since_epoch: number }; f: { secs: number; nanos: number }; g: unknown; h: Record<string, unknown>; i: string }"
    );
    assert_eq!(
        data(
            "pub struct Data { #[serde(with = \"time::serde::rfc3339\")] a: time::OffsetDateTime, #[serde(with = \"time::serde::timestamp::option\")] b: Option<time::OffsetDateTime> }"
        ),
        // A field read by a function is required, `Option` or not (serde's rule), unless `default`.
        "{ a: string; b: number | null }"
    );
    let (ts, warnings) = data_warned("pub struct Data { at: time::OffsetDateTime }");
    assert_eq!(ts, "{ at: unknown }");
    assert!(
        warnings[0].message.contains("time::serde::rfc3339"),
        "{warnings:?}"
    );
}

#[test]
fn generics_are_filled_in() {
    assert_eq!(
        data(
            "pub type Data = Page<Item>; pub struct Page<T> { pub items: Vec<T>, pub next: Option<u32> } pub struct Item { pub id: u64 }"
        ),
        "{ items: { id: number }[]; next?: number | null }"
    );
}

#[test]
fn what_the_generator_cannot_see_is_unknown_and_a_warning() {
    let (ts, warnings) = data_warned(
        "use crate::model::Team; pub struct Data { pub team: Team, pub owner: User, pub items: Vec<Item> }",
    );
    assert_eq!(ts, "{ team: unknown; owner: unknown; items: unknown[] }");
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert_eq!(warnings[0].field, "data.team");
    assert_eq!(
        warnings[0].to_string(),
        "src/r/_sync/s_client.rs: route `/r`, sync `s`, `data.team`: `crate::model::Team` is defined outside the sync's handler files, where the generator cannot see it; declared `unknown` in TypeScript"
    );
    assert!(
        warnings[1]
            .message
            .contains("`User` is not defined in the sync's handler files")
    );
    assert_eq!(warnings[2].field, "data.items");

    let (ts, warnings) = data_warned("pub use crate::shared::Form as Data;");
    assert_eq!(ts, "unknown");
    assert_eq!(warnings[0].field, "data");

    let (ts, warnings) = data_warned(
        "pub struct Data { #[serde(deserialize_with = \"parse\")] a: u8, b: Box<dyn Fn()>, c: Tree } pub struct Tree { kids: Vec<Tree> }",
    );
    assert_eq!(ts, "{ a: unknown; b: unknown; c: { kids: unknown[] } }");
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings[2].message.contains("refers to itself"),
        "{warnings:?}"
    );

    let (ts, warnings) = data_warned(
        "pub struct Data { m: std::collections::HashMap<Key, u8> } pub struct Key { a: u8 }",
    );
    assert_eq!(ts, "{ m: unknown }");
    assert!(warnings[0].message.contains("not strings or numbers"));
}

#[test]
fn event_payloads_where_the_code_shows_them() {
    let client = r#"
        use super::server::Seen;
        pub struct Data { pub n: u64, pub note: String }
        pub fn react(cx: ClientCx<Data, Seen>) -> Reaction {
            Reaction::batch([
                Reaction::event("seen", cx.server),
                Reaction::event("n", cx.data.n),
                Reaction::event("note", cx.data.note.as_str()),
                Reaction::event("who", &cx.server.name),
                Reaction::event("lit", "ok"),
                Reaction::event("lit", 1),
                Reaction::event("obj", serde_json::json!({ "a": 1 })),
                Reaction::event(name(), ()),
            ])
        }
    "#;
    let server = "use super::Data; #[derive(Serialize)] pub struct Seen { pub name: String, #[serde(rename = \"t\")] pub token: Option<String> }";
    let events = events(client, server);
    let rendered: Vec<(&str, String)> = events
        .named
        .iter()
        .map(|(k, v)| (k.as_str(), v.join(" | ")))
        .collect();
    assert_eq!(
        rendered,
        [
            ("lit", "string | number".to_owned()),
            ("n", "number".to_owned()),
            ("note", "string".to_owned()),
            ("obj", "unknown".to_owned()),
            ("seen", "{ name: string; t: string | null }".to_owned()),
            ("who", "string".to_owned()),
        ]
    );
    assert!(events.open, "a computed name opens the events");
}

#[test]
fn the_runtimes_client_declarations_carry_the_same_api() {
    let runtime = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sync-runtime/client/sync-client.d.ts");
    let text = std::fs::read_to_string(&runtime).expect("sync-runtime/client/sync-client.d.ts");
    assert!(
        text.contains(CLIENT_API),
        "sync-client.d.ts must hold sync-build's client_api.d.ts unchanged: copy it over"
    );
}

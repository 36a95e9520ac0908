//! The runtime's modules import one another in one direction only (docs/DESIGN.md, "The runtime's module
//! map"): a circle of imports between the top-level modules of `src/` fails this test. Comments (intra-doc
//! links) and tests do not count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Names re-exported at the crate root, and the module each comes from.
const ROOT_NAMES: &[(&str, &str)] = &[
    ("Reaction", "reaction"),
    ("Swap", "reaction"),
    ("Refusal", "handler"),
    ("Location", "handler"),
    ("ClientCx", "handler"),
    ("ServerCx", "handler"),
    ("GateCx", "handler"),
    ("Filter", "handler"),
    ("SyncHub", "hub"),
    ("SyncHubBuilder", "hub"),
    ("ErrorCode", "protocol"),
    ("Outcome", "protocol"),
    ("close_code", "protocol"),
    ("Identity", "auth"),
    ("AuthRequest", "auth"),
    ("Pending", "trigger"),
    ("SyncError", "error"),
    ("Backplane", "broker"),
    ("Stats", "stats"),
    ("Cursor", "history"),
    ("BadCursor", "history"),
];

fn imports(graph: &mut BTreeMap<String, BTreeSet<String>>, module: &str, file: &Path) {
    if file.is_dir() {
        for entry in std::fs::read_dir(file).expect("a source folder") {
            imports(graph, module, &entry.expect("an entry").path());
        }
        return;
    }
    if file.extension().is_none_or(|e| e != "rs") || file.ends_with("tests.rs") {
        return;
    }
    let text = std::fs::read_to_string(file).expect("a source file");
    let code = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    let deps = graph.entry(module.to_owned()).or_default();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (at, _) in line.match_indices("crate::") {
            let rest = &line[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let target = ROOT_NAMES
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(name.as_str(), |(_, m)| m);
            if target != module && !target.is_empty() {
                deps.insert(target.to_owned());
            }
        }
    }
}

#[test]
fn the_runtime_s_modules_import_each_other_in_one_direction() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("src") {
        let path = entry.expect("an entry").path();
        let module = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("a name")
            .to_owned();
        if module == "lib" || module == "test_support" {
            continue;
        }
        imports(&mut graph, &module, &path);
    }
    assert!(graph.len() > 10, "the modules were found: {graph:?}");
    // Depth-first search for a back edge.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, bool>,
        path: &mut Vec<&'a str>,
    ) {
        state.insert(node, true);
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(true) => panic!("a circle of imports: {} -> {next}", path.join(" -> ")),
                Some(false) => {}
                None => visit(next, graph, state, path),
            }
        }
        path.pop();
        state.insert(node, false);
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node.as_str()) {
            visit(node, &graph, &mut state, &mut Vec::new());
        }
    }
    assert!(
        !graph["conn"].contains("hub") && !graph["broker"].contains("hub"),
        "a connection and the broker never see the hub: {graph:?}"
    );
}

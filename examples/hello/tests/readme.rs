//! The README's quick start is this crate's code, block for block.

#[path = "../../../tests/browser/tsc.rs"]
mod tsc;

#[test]
fn the_readme_shows_this_crate_s_code() {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(crate_dir.join("../../README.md")).expect("the README");
    let mut checked = 0;
    // Each block of the quick start starts with `// <path in the crate>` (or `# ` for TOML).
    for block in readme.split("```").skip(1).step_by(2) {
        let Some((_lang, body)) = block.split_once('\n') else {
            continue;
        };
        let Some(file) = body
            .lines()
            .next()
            .and_then(|first| first.strip_prefix("// hello/"))
        else {
            continue;
        };
        let shown: String = body.lines().skip(1).map(|l| format!("{l}\n")).collect();
        let actual = std::fs::read_to_string(crate_dir.join(file))
            .unwrap_or_else(|e| panic!("README shows hello/{file}: {e}"));
        assert_eq!(
            shown, actual,
            "README's hello/{file} differs from the crate's"
        );
        checked += 1;
    }
    assert!(
        checked >= 5,
        "the README's quick start shows {checked} files of hello/"
    );
}

/// The README's TypeScript block, against the declarations of this crate's build, with a real `tsc
/// --strict`: the lines marked `// error:` fail (each with TS2322, the type mismatch), the others compile.
#[test]
fn the_readme_s_typed_page_fails_exactly_where_it_says() {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some(tsc) = tsc::tsc(env!("CARGO_MANIFEST_DIR"), 2) else {
        return;
    };
    let readme = std::fs::read_to_string(crate_dir.join("../../README.md")).expect("the README");
    let page = readme
        .split("```ts\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a TypeScript block in the README");
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("sync-types.d.ts"), hello::syncs::TYPESCRIPT).expect("write");
    std::fs::write(dir.path().join("page.ts"), format!("{page}export {{}};\n")).expect("write");
    let (types, page_file) = (
        dir.path().join("sync-types.d.ts"),
        dir.path().join("page.ts"),
    );
    let (_, printed) = tsc::check(&tsc, &[&types, &page_file]);
    let failing: Vec<usize> = printed
        .lines()
        .filter_map(|l| l.split_once("page.ts(")?.1.split_once(',')?.0.parse().ok())
        .collect();
    let marked: Vec<usize> = page
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("// error:"))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(failing, marked, "tsc printed:\n{printed}");
    assert!(
        printed.lines().all(|l| l.contains("error TS2322")),
        "tsc printed:\n{printed}"
    );
}

//! The README's quick start is this crate's code, block for block.

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

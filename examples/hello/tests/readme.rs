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

/// The README's TypeScript block, against the declarations of this crate's build, with a real `tsc
/// --strict`: the lines marked `// error:` fail (each with TS2322, the type mismatch), the others compile.
#[test]
fn the_readme_s_typed_page_fails_exactly_where_it_says() {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let tsc = crate_dir.join("../../tests/browser/node_modules/.bin/tsc");
    if !tsc.exists() {
        let message = format!(
            "TYPESCRIPT CHECK SKIPPED: {} is missing; run `npm ci` in tests/browser",
            tsc.display()
        );
        assert!(std::env::var_os("CI").is_none(), "{message}");
        eprintln!("\n*** {message} ***\n");
        return;
    }
    let readme = std::fs::read_to_string(crate_dir.join("../../README.md")).expect("the README");
    let page = readme
        .split("```ts\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a TypeScript block in the README");
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("sync-types.d.ts"), hello::syncs::TYPESCRIPT).expect("write");
    std::fs::write(dir.path().join("page.ts"), format!("{page}export {{}};\n")).expect("write");
    let output = std::process::Command::new(&tsc)
        .args(["--noEmit", "--strict", "--pretty", "false"])
        .args(["--target", "es2022", "--lib", "es2022,dom"])
        .args(["--module", "es2022", "--moduleResolution", "bundler"])
        .arg(dir.path().join("sync-types.d.ts"))
        .arg(dir.path().join("page.ts"))
        .output()
        .expect("tsc runs");
    let printed = String::from_utf8_lossy(&output.stdout);
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

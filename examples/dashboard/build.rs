//! Discovers the `_sync` folders under `src/` and generates their registration.
fn main() {
    sync_build::compile().unwrap_or_else(|e| panic!("{e}"));
}

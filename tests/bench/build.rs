//! The bench app's route tree (`src/bench/_sync`).
fn main() {
    sync_build::compile().unwrap_or_else(|e| panic!("{e}"));
}

fn main() {
    sync_build::compile().unwrap_or_else(|e| panic!("{e}"));
}

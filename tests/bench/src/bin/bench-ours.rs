//! This framework's server for the benchmark (started by the harness).
fn main() {
    let hub = sync_bench::hub();
    sync_bench::serve_child(hub.router());
}

//! The quick start in real headless Chromium (`tests/browser/hello.mjs`): two windows on `/`, a wave in one
//! shows once in both.

#[path = "../../../tests/browser/runner.rs"]
mod runner;

#[test]
fn the_quick_start_keeps_two_windows_in_sync() {
    let browser_dir = runner::browser_dir(env!("CARGO_MANIFEST_DIR"));
    runner::run_script_on(&browser_dir, "hello.mjs", 2, |runtime| {
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        let server = runtime.spawn(async move { axum::serve(listener, hello::app()).await });
        (base, AbortOnDrop(server))
    });
}

/// The served app, stopped when the script is done with it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

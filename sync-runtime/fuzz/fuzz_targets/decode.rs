//! Fuzz the server's decoder of inbound client frames:
//! `cargo install cargo-fuzz && cd sync-runtime && cargo +nightly fuzz run decode -- -max_total_time=60`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sync_runtime::__private::fuzz_decode(data);
});

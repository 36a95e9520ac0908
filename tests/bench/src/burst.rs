//! Write coalescing: do several frames queued for one connection leave in one write? For each of the
//! ceiling, the bare broadcaster and this framework (no server file), `--burst N` connects N subscribers
//! and counts the server's socket-write system calls (`sendto`, `write`, `writev`, `sendmsg`, with
//! `perf stat` on the server's pid: kernel tracepoints, so the server runs at full speed, unlike under
//! `strace`) over two windows of `BURST` publishes each:
//!
//! * **closed**: one publish at a time, the next once every subscriber has the last (one frame queued per
//!   connection at a time: one write per delivery is the floor);
//! * **burst**: the `BURST` publishes sent back to back without waiting (open loop, as fast as the
//!   publisher writes), so that several frames queue for each connection; a writer that drains its queue
//!   into one write shows fewer writes than deliveries.
//!
//! The counts include the publisher's own acknowledgements (one small frame per publish). Needs `perf`
//! with the `syscalls` tracepoints (run as root, or with `kernel.perf_event_paranoid` ≤ 1); without it the
//! phase says so and is skipped.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::process::Command;
use tokio_tungstenite::tungstenite::Message;

use super::{Counts, Env, Publisher, Server, connect_all, per_publish, start};

/// Publishes per window.
const BURST: u64 = 20;

/// The write-side system calls counted.
const CALLS: [&str; 4] = ["sendto", "write", "writev", "sendmsg"];

/// Other system calls counted beside them: the runtime's waiting and waking (`epoll_wait`, `futex`) and
/// reads.
const OTHERS: [&str; 4] = ["epoll_wait", "futex", "recvfrom", "read"];

fn events() -> String {
    CALLS
        .iter()
        .chain(OTHERS.iter())
        .map(|c| format!("syscalls:sys_enter_{c}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether `perf stat` can count the syscall tracepoints here.
async fn perf_works() -> bool {
    Command::new("perf")
        .args(["stat", "-x", ",", "-e", &events(), "--", "true"])
        .stdout(std::process::Stdio::null())
        .output()
        .await
        .is_ok_and(|o| {
            let text = String::from_utf8_lossy(&o.stderr);
            o.status.success() && !text.contains("not supported") && !text.contains("<not")
        })
}

/// `perf stat` counting `CALLS` in process `pid` until `stop`.
struct Counting(tokio::process::Child);

impl Counting {
    async fn start(pid: u32) -> Counting {
        let child = Command::new("perf")
            .args(["stat", "-x", ",", "-e", &events(), "-p", &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("perf");
        // perf attaches to every thread of the process before it counts.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Counting(child)
    }

    /// Stop (SIGINT: perf prints its counts) and return the count of each event, `CALLS` then `OTHERS`.
    async fn stop(self) -> Vec<u64> {
        let pid = self.0.id().expect("perf is running").to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status().await;
        let out = self.0.wait_with_output().await.expect("perf's output");
        let text = String::from_utf8_lossy(&out.stderr);
        CALLS
            .iter()
            .chain(OTHERS.iter())
            .map(|call| {
                let event = format!("syscalls:sys_enter_{call},");
                text.lines()
                    .find(|l| l.contains(&event))
                    .and_then(|l| l.split(',').next()?.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .collect()
    }
}

/// Send publishes `ks` back to back, without waiting for the server between them.
async fn burst(publisher: &mut Publisher, ks: std::ops::Range<u64>) {
    match publisher {
        Publisher::Ceiling(ws) => {
            let count = ks.end - ks.start;
            for k in ks {
                ws.feed(Message::text(k.to_string()))
                    .await
                    .expect("publish");
            }
            ws.flush().await.expect("publish");
            for _ in 0..count {
                ws.next().await.expect("ok").expect("ok");
            }
        }
        Publisher::Ours(client, _) => {
            for k in ks {
                // Ids far from the client's own; their outcomes are ignored.
                let frame = format!(
                    r#"{{"t":"req","id":{},"name":"tick","data":{k},"echo":false}}"#,
                    1_000_000 + k
                );
                client.send_raw(frame).await.expect("publish");
            }
        }
        Publisher::SocketIo { .. } => unreachable!("the burst phase runs no Socket.IO row"),
    }
}

pub(crate) async fn phase(env: &Env, n: usize) {
    if n == 0 {
        return;
    }
    if !perf_works().await {
        println!(
            "\n!!! write coalescing (--burst): skipped, `perf stat -e syscalls:sys_enter_sendto` does not work here (needs perf and the syscalls tracepoints)"
        );
        return;
    }
    println!(
        "\n== write coalescing: {n} subscribers, {BURST} publishes one at a time (closed), then {BURST} back to back (burst); server write syscalls ({}) per delivery, and the other calls counted ({}) per delivery",
        CALLS.join(", "),
        OTHERS.join(", ")
    );
    println!(
        "{:<28} {:>8} {:>10} {:>9} {:>10} {:>9} {:>10}  {}",
        "server",
        "window",
        "deliveries",
        "writes",
        "per deliv",
        "ms",
        "deliv/s",
        OTHERS.join(" / ")
    );
    for server in [Server::Ceiling, Server::Bare, Server::Ours] {
        let running = start(server, env).await;
        let per = per_publish(server, n);
        let counts = Arc::new(Counts::new(per, 2 * BURST as usize + 1));
        connect_all(server, &running, n, &counts).await;
        let mut publisher = Publisher::open(server, running.ports[0]).await;
        // Warm-up: publish 0, alone.
        publisher.publish(0).await;
        assert!(counts.wait_for(per).await, "{}: warm-up", server.label());
        for (window, ks) in [
            ("closed", 1..1 + BURST),
            ("burst", 1 + BURST..1 + 2 * BURST),
        ] {
            let counting = Counting::start(running.pids[0]).await;
            let began = Instant::now();
            if window == "closed" {
                for k in ks.clone() {
                    publisher.publish(k).await;
                    assert!(counts.wait_for((k + 1) * per).await, "{}", server.label());
                }
            } else {
                burst(&mut publisher, ks.clone()).await;
                assert!(
                    counts.wait_for(ks.end * per).await,
                    "{}: the burst never reached everyone",
                    server.label()
                );
            }
            let elapsed = began.elapsed();
            let counted = counting.stop().await;
            let (writes, others) = counted.split_at(CALLS.len());
            let writes: u64 = writes.iter().sum();
            let deliveries = BURST * per;
            let others: Vec<String> = others
                .iter()
                .map(|c| format!("{:.3}", *c as f64 / deliveries as f64))
                .collect();
            println!(
                "{:<28} {:>8} {:>10} {:>9} {:>10.3} {:>9.1} {:>10.0}  {}",
                server.label(),
                window,
                deliveries,
                writes,
                writes as f64 / deliveries as f64,
                elapsed.as_secs_f64() * 1e3,
                deliveries as f64 / elapsed.as_secs_f64(),
                others.join(" / ")
            );
        }
        let errors = counts.errors.load(Ordering::Relaxed);
        assert_eq!(errors, 0, "{}: {errors} gaps or duplicates", server.label());
        drop(publisher);
        running.stop().await;
    }
}

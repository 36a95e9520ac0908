//! The filters phase's call count, end to end: a real `bench-ours` process over real sockets, its
//! simulated database's calls read the way the harness reads them (a `db` line on the server's stdin).

use std::process::Stdio;
use std::time::Duration;

use sync_bench::DbStats;
use sync_runtime::client::{ConnectOptions, SyncClient};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// More subscribers than teams, so that classes (teams) are fewer than recipients.
const SUBSCRIBERS: u64 = 25;

/// Wait for `what`, at most 20 s.
async fn within<T>(what: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), what)
        .await
        .expect("done within 20 s")
}

/// Ask the server for its call count, as the harness does.
async fn ask(child: &mut Child, out: &mut BufReader<ChildStdout>) -> DbStats {
    let stdin = child.stdin.as_mut().expect("piped stdin");
    within(stdin.write_all(b"db\n")).await.expect("db asked");
    let mut line = String::new();
    within(out.read_line(&mut line)).await.expect("an answer");
    DbStats::parse_line(&line).unwrap_or_else(|| panic!("not a db line: {line:?}"))
}

#[tokio::test]
async fn calls_per_trigger_are_the_recipients_per_recipient_one_with_prepare_and_the_teams_with_classes()
 {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bench-ours"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("bench-ours starts");
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    within(out.read_line(&mut line)).await.expect("the port");
    let port: u16 = line.trim().parse().expect("a port first");
    let url = format!("ws://127.0.0.1:{port}/_sync/ws");
    let connect = |user: u64| {
        SyncClient::connect(
            &url,
            ConnectOptions::new()
                .token(format!("u{user}"))
                .path("/bench"),
        )
    };
    let mut subscribers = Vec::new();
    for user in 0..SUBSCRIBERS {
        subscribers.push(within(connect(user)).await.expect("a subscriber"));
    }
    let mut publisher = within(connect(999)).await.expect("the publisher");

    let before = ask(&mut child, &mut out).await;
    assert_eq!(before.calls, 0, "no call before any trigger: {before:?}");

    // Two triggers through `dbeach`: one call per recipient each (the publisher opted out).
    for k in 0..2u64 {
        let outcome = within(publisher.request_with("dbeach", k, false))
            .await
            .expect("dbeach is accepted");
        assert_eq!(u64::from(outcome.passed), SUBSCRIBERS, "{outcome:?}");
        assert_eq!(outcome.failed, 0, "{outcome:?}");
    }
    let after = ask(&mut child, &mut out).await;
    let run = after.since(before);
    assert_eq!(run.calls, 2 * SUBSCRIBERS, "{run:?}");
    assert!(
        run.queries > Duration::ZERO && run.total >= run.queries,
        "{run:?}"
    );

    // `dbprepared`: one call per trigger, whatever the recipients; `dbclass`: one per team.
    for (sync, per_trigger) in [("dbprepared", 1), ("dbclass", sync_bench::TEAMS)] {
        let before = ask(&mut child, &mut out).await;
        for k in 0..2u64 {
            let outcome = within(publisher.request_with(sync, k, false))
                .await
                .unwrap_or_else(|e| panic!("{sync} is accepted: {e}"));
            assert_eq!(
                u64::from(outcome.delivered),
                SUBSCRIBERS,
                "{sync}: {outcome:?}"
            );
        }
        let run = ask(&mut child, &mut out).await.since(before);
        assert_eq!(run.calls, 2 * per_trigger, "{sync}: {run:?}");
    }
    let after = ask(&mut child, &mut out).await;

    // The syncs without a database call make none.
    within(publisher.request_with("filtered", (2u64, true), false))
        .await
        .expect("filtered is accepted");
    within(publisher.request_with("tick", 3u64, false))
        .await
        .expect("tick is accepted");
    assert_eq!(ask(&mut child, &mut out).await.since(after).calls, 0);

    // EOF on stdin ends the server, as the harness's `stop` relies on.
    drop(child.stdin.take());
    let status = within(child.wait()).await.expect("bench-ours exits");
    assert!(status.success(), "{status}");
    drop(subscribers);
}

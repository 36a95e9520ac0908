//! A throwaway Redis Cluster on loopback for integration tests: `redis-server` masters (and, on demand,
//! replicas) in a temporary directory, joined with `redis-cli --cluster create`, killed on drop.
//!
//! Every call blocks the calling thread (processes and `redis-cli`); call it from a multi-threaded Tokio
//! runtime, so that the connections under test keep running meanwhile.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the cluster may take to agree (`cluster_state:ok` everywhere) after a change.
const SETTLE: Duration = Duration::from_secs(30);
/// How long a node may take to answer `PING` after it was started.
const BOOT: Duration = Duration::from_secs(10);
/// `cluster-node-timeout`: short, so that a stopped node is noticed within a test.
const NODE_TIMEOUT_MS: u32 = 3000;

/// Tells one cluster's directory from another's in the same process.
static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

/// One cluster at a time per test binary: three masters each for several tests at once on a 2-core
/// machine made commands time out.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One `redis-server` of the cluster.
struct Node {
    port: u16,
    /// `None` while stopped.
    process: Option<Child>,
}

/// A Redis Cluster on `127.0.0.1`, torn down (processes killed, directory removed) on drop.
pub struct RedisCluster {
    dir: PathBuf,
    nodes: Vec<Node>,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl RedisCluster {
    /// A cluster of three masters, or `None` when `redis-server` or `redis-cli` is not installed: a
    /// loud message then says so, and when `CI` is set the call panics instead, so that a CI job cannot
    /// pass without running the cluster tests.
    pub fn start() -> Option<RedisCluster> {
        Self::with_masters(3)
    }

    /// A cluster of `masters` masters (at least three, `redis-cli --cluster create`'s minimum).
    pub fn with_masters(masters: usize) -> Option<RedisCluster> {
        assert!(masters >= 3, "a Redis Cluster needs at least 3 masters");
        if let Some(missing) = missing_tools() {
            let message = format!(
                "\n==================== REDIS CLUSTER TESTS SKIPPED ====================\n\
                 {missing}: install it (Debian/Ubuntu: `apt-get install -y redis-server`).\n\
                 =====================================================================\n"
            );
            if std::env::var_os("CI").is_some() {
                panic!("{message}(CI is set: these tests must run there)");
            }
            eprintln!("{message}");
            return None;
        }
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let dir = std::env::temp_dir().join(format!(
            "sync-runtime-cluster-{}-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |t| t.as_nanos())
        ));
        fs::create_dir_all(&dir).expect("create the cluster's temporary directory");
        let mut cluster = RedisCluster {
            dir,
            nodes: Vec::new(),
            _turn: turn,
        };
        for port in free_ports(masters) {
            cluster.nodes.push(Node {
                port,
                process: None,
            });
            cluster.launch(cluster.nodes.len() - 1);
        }
        let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
        create.extend(
            cluster
                .nodes
                .iter()
                .map(|n| format!("127.0.0.1:{}", n.port)),
        );
        create.push("--cluster-yes".to_owned());
        let output = redis_cli(&create);
        assert!(
            output.status.success() && stdout(&output).contains("All 16384 slots covered"),
            "`redis-cli {}` failed:\n{}{}",
            create.join(" "),
            stdout(&output),
            String::from_utf8_lossy(&output.stderr)
        );
        cluster.wait_ok();
        Some(cluster)
    }

    /// `redis://127.0.0.1:<port>` for every node, masters first, in the order they were started.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The port of node `index`.
    pub fn port(&self, index: usize) -> u16 {
        self.nodes[index].port
    }

    /// How many nodes the cluster has (running or stopped).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The index of the running master that serves `key`'s slot.
    pub fn owner(&self, key: &str) -> usize {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].process.is_some())
            .collect();
        let owners: Vec<usize> = running
            .iter()
            .copied()
            .filter(|&i| !self.cli(i, &["EXISTS", key]).contains("MOVED"))
            .collect();
        assert_eq!(
            owners.len(),
            1,
            "expected exactly one node to serve `{key}`, got {owners:?}"
        );
        owners[0]
    }

    /// Kills node `index` (SIGKILL, as in a crash), keeping its cluster configuration file.
    pub fn stop(&mut self, index: usize) {
        if let Some(mut process) = self.nodes[index].process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts node `index` again, on the same port with the same configuration file, and waits until
    /// every node says `cluster_state:ok`.
    pub fn restart(&mut self, index: usize) {
        assert!(
            self.nodes[index].process.is_none(),
            "node {index} is running: stop it first"
        );
        self.launch(index);
        self.wait_ok();
    }

    /// Starts a new node and makes it a replica of node `master`; returns the new node's index once the
    /// replica is in sync and every node knows it.
    pub fn add_replica(&mut self, master: usize) -> usize {
        let port = free_ports(1)[0];
        self.nodes.push(Node {
            port,
            process: None,
        });
        let index = self.nodes.len() - 1;
        self.launch(index);
        let master_id = self.cli(master, &["CLUSTER", "MYID"]).trim().to_owned();
        let args = [
            "--cluster".to_owned(),
            "add-node".to_owned(),
            format!("127.0.0.1:{port}"),
            format!("127.0.0.1:{}", self.nodes[master].port),
            "--cluster-slave".to_owned(),
            "--cluster-master-id".to_owned(),
            master_id,
        ];
        let output = redis_cli(&args);
        assert!(
            output.status.success(),
            "`redis-cli {}` failed:\n{}{}",
            args.join(" "),
            stdout(&output),
            String::from_utf8_lossy(&output.stderr)
        );
        self.wait_until(&format!("node {index} to replicate node {master}"), |c| {
            c.cli(index, &["INFO", "replication"])
                .contains("master_link_status:up")
        });
        self.wait_ok();
        index
    }

    /// Promotes replica `index` with `CLUSTER FAILOVER` (a manual failover, its master still up), and
    /// waits until it is a master that every node agrees on.
    pub fn failover(&mut self, index: usize) {
        let answer = self.cli(index, &["CLUSTER", "FAILOVER"]);
        assert!(
            answer.trim() == "OK",
            "CLUSTER FAILOVER on node {index}: {answer}"
        );
        let port = self.nodes[index].port;
        self.wait_until(&format!("node {index} to be a master"), |c| {
            c.cli(index, &["ROLE"]).starts_with("master")
                && c.running().all(|i| {
                    c.cli(i, &["CLUSTER", "NODES"]).lines().any(|line| {
                        line.contains(&format!("127.0.0.1:{port}@")) && line.contains("master")
                    })
                })
        });
        self.wait_ok();
    }

    /// `redis-cli -p <port of node index> args…`: its standard output (errors included, as text).
    pub fn cli(&self, index: usize, args: &[&str]) -> String {
        let mut all = vec!["-p".to_owned(), self.nodes[index].port.to_string()];
        all.extend(args.iter().map(|&a| a.to_owned()));
        stdout(&redis_cli(&all))
    }

    /// Waits until every running node says `cluster_state:ok`, knows every running node, and sees all
    /// 16384 slots served; panics after a bounded wait.
    pub fn wait_ok(&self) {
        let expected = self.nodes.len();
        self.wait_until("cluster_state:ok on every node", |c| {
            c.running().all(|i| {
                let info = c.cli(i, &["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_ok:16384")
                    && info.contains(&format!("cluster_known_nodes:{expected}"))
            })
        });
    }

    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].process.is_some())
    }

    fn wait_until(&self, what: &str, ready: impl Fn(&RedisCluster) -> bool) {
        let start = Instant::now();
        while !ready(self) {
            if start.elapsed() > SETTLE {
                let report: String = self
                    .running()
                    .map(|i| {
                        format!(
                            "--- node {i} (port {}):\n{}{}",
                            self.nodes[i].port,
                            self.cli(i, &["CLUSTER", "INFO"]),
                            self.cli(i, &["CLUSTER", "NODES"])
                        )
                    })
                    .collect();
                panic!(
                    "the Redis Cluster in {} did not come to {what} within {SETTLE:?}:\n{report}",
                    self.dir.display()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Spawns node `index`'s `redis-server` and waits until it answers `PING`.
    fn launch(&mut self, index: usize) {
        let port = self.nodes[index].port;
        let log = self.dir.join(format!("redis-{port}.log"));
        let process = Command::new("redis-server")
            .args(server_args(&self.dir, port))
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.nodes[index].process = Some(process);
        let start = Instant::now();
        while self.cli(index, &["PING"]).trim() != "PONG" {
            if let Some(Some(status)) = self.nodes[index]
                .process
                .as_mut()
                .map(|p| p.try_wait().ok().flatten())
            {
                panic!(
                    "redis-server on port {port} exited ({status}):\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < BOOT,
                "redis-server on port {port} did not answer PING within {BOOT:?}:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut process) = node.process.take() {
                let _ = process.kill();
                let _ = process.wait();
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn server_args(dir: &Path, port: u16) -> Vec<String> {
    let config = dir.join(format!("nodes-{port}.conf"));
    [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        &config.to_string_lossy(),
        "--cluster-node-timeout",
        &NODE_TIMEOUT_MS.to_string(),
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir.to_string_lossy(),
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
    ]
    .iter()
    .map(|&a| a.to_owned())
    .collect()
}

/// What is missing to run a cluster, if anything.
fn missing_tools() -> Option<String> {
    ["redis-server", "redis-cli"].into_iter().find_map(|tool| {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        (!found).then(|| format!("`{tool}` was not found on PATH"))
    })
}

fn redis_cli(args: &[String]) -> Output {
    Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `count` distinct free loopback ports whose cluster bus port (port + 10000) is free as well.
fn free_ports(count: usize) -> Vec<u16> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    let mut tries = 0;
    while ports.len() < count {
        tries += 1;
        assert!(tries < 1000, "no free port pair (port, port + 10000) found");
        let Ok(listener) = TcpListener::bind(("127.0.0.1", 0)) else {
            continue;
        };
        let Ok(port) = listener.local_addr().map(|a| a.port()) else {
            continue;
        };
        let Some(bus) = port.checked_add(10000) else {
            continue;
        };
        let Ok(bus_listener) = TcpListener::bind(("127.0.0.1", bus)) else {
            continue;
        };
        if ports.contains(&bus) || ports.iter().any(|&p| p + 10000 == port) {
            continue;
        }
        ports.push(port);
        // Held until every port is chosen, so that none is handed out twice.
        held.push(listener);
        held.push(bus_listener);
    }
    ports
}

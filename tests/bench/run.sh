#!/usr/bin/env bash
# The default benchmark run: raises the open-files soft limit to 20,000 (the memory phase holds ~19,000
# sockets in the load generator and ~19,000 in the server, separate processes with separate limits, both
# inheriting this one), builds the release binaries and runs the harness. Extra arguments go to the
# harness, e.g. `bash tests/bench/run.sh --pin`. Honours CARGO_TARGET_DIR.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
hard="$(ulimit -Hn)"
if [ "$hard" != unlimited ] && [ "$hard" -lt 20000 ]; then
  echo "warning: the open-files hard limit is $hard (< 20000): the 19,000-connection memory row may fail" >&2
  ulimit -n "$hard"
else
  ulimit -n 20000
fi
cargo build --release -p sync-bench
exec "${CARGO_TARGET_DIR:-target}/release/sync-bench" "$@"

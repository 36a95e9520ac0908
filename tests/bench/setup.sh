#!/usr/bin/env bash
# Installs the Socket.IO peer's pinned dependencies (tests/bench/socketio/package-lock.json). Idempotent.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v node >/dev/null || { echo "node is not installed: install Node.js 18+ first" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm is not installed: install it with Node.js" >&2; exit 1; }
cd "$here/socketio"
if [ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  echo "tests/bench/socketio: dependencies already installed"
else
  npm ci --no-audit --no-fund
fi

#!/usr/bin/env bash
# dev.sh — run Reelay on this machine with the web UI: `scripts/dev.sh [reelay dev flags]`
#
# Builds the web UI (when npm is there) and the release binary, then runs `reelay dev`: a
# coordinator and one worker in one process, on the embedded defaults — http://127.0.0.1:7070,
# state in ./reelay-data, jobs as local processes. Extra arguments go to `reelay dev`
# (`--help` lists them).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
if command -v npm >/dev/null 2>&1; then
    if [ ! -d web/node_modules ] || [ web/package-lock.json -nt web/node_modules ]; then
        npm --prefix web ci --no-audit --no-fund
    fi
    npm --prefix web run build
else
    echo "dev: npm not found: the UI is not built (the API still works; install Node.js 20 for the UI)" >&2
fi
cargo build --release --locked -p reelay
# Where cargo put it: target/, or the CARGO_TARGET_DIR of this environment.
exec "${CARGO_TARGET_DIR:-target}/release/reelay" dev "$@"

#!/usr/bin/env bash
# web-e2e.sh — runs the web UI's end-to-end tests in headless Chromium against real processes:
# `reelay dev` started here on a free port with a fresh data dir (stopped by its PID afterwards), then
# the restart, live-nodes, token, upload, several-uploads and jobs-made-of-jobs tests, which start
# their own coordinator and worker.
# Needs: target/debug/reelay built after `npm --prefix web run build`, chromium (setup-test-env.sh).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${REELAY_BIN:-$repo/target/debug/reelay}
[ -x "$bin" ] || { echo "web-e2e: $bin is missing; run cargo build first" >&2; exit 1; }
data=$(mktemp -d /tmp/reelay-web-e2e.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export ARTIFACTS_DIR=${ARTIFACTS_DIR:-$repo/test-artifacts}
mkdir -p "$ARTIFACTS_DIR"
log="$ARTIFACTS_DIR/reelay-dev.log"

"$bin" dev --listen "127.0.0.1:$port" --data-dir "$data" >"$log" 2>&1 &
pid=$!
cleanup() {
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -rf "$data"
}
trap cleanup EXIT

for _ in $(seq 100); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
        "http://127.0.0.1:$port/" >/dev/null 2>&1; then break; fi
    kill -0 "$pid" 2>/dev/null || { echo "web-e2e: reelay dev exited:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
done

export REELAY_URL="http://127.0.0.1:$port" REELAY_BIN="$bin" REELAY_DATA_DIR="$data" REELAY_PID="$pid"
node "$repo/web/e2e/run.mjs" || { echo "web-e2e: failed; reelay dev log: $log" >&2; exit 1; }
# These start their own coordinator and worker (REELAY_BIN): to restart the coordinator, to kill and
# restart the worker under the live nodes page, to require tokens, with a `copy` pipeline for
# uploads, and with `chunky` (split, pieces, join) for a parent's steps.
node "$repo/web/e2e/restart.mjs" || { echo "web-e2e: restart test failed; logs in $ARTIFACTS_DIR" >&2; exit 1; }
node "$repo/web/e2e/nodes.mjs" || { echo "web-e2e: live nodes test failed; logs in $ARTIFACTS_DIR" >&2; exit 1; }
node "$repo/web/e2e/auth.mjs" || { echo "web-e2e: token test failed; logs in $ARTIFACTS_DIR" >&2; exit 1; }
node "$repo/web/e2e/upload.mjs" || { echo "web-e2e: upload test failed; logs in $ARTIFACTS_DIR" >&2; exit 1; }
node "$repo/web/e2e/uploads-many.mjs" || { echo "web-e2e: several-uploads test failed; logs in $ARTIFACTS_DIR" >&2; exit 1; }
node "$repo/web/e2e/steps.mjs" || { echo "web-e2e: jobs-made-of-jobs test failed; logs in $ARTIFACTS_DIR" >&2; exit 1; }

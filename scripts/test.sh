#!/usr/bin/env bash
# test.sh — the whole test suite, from a fresh Debian machine: `scripts/test.sh`
#
# 1. installs and starts what the tests need (scripts/setup-test-env.sh: Debian packages, a Docker
#    daemon, grpcurl, SeaweedFS, npm packages, the pipeline images) — idempotent;
# 2. builds the web UI (embedded in the binary) and the workspace;
# 3. checks formatting and lints (cargo fmt, clippy -D warnings, TypeScript);
# 4. runs the Rust unit and integration tests (real reelay processes, real Docker, real sled files);
# 5. runs the web UI's unit tests and its end-to-end tests in headless Chromium against a real
#    `reelay dev`.
#
# Environment: REELAY_TEST_FILTER (a nextest filter expression, e.g. 'test(lifecycle)'),
# REELAY_SKIP_WEB=1 (skip the web UI steps), ARTIFACTS_DIR (screenshots; default test-artifacts/).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
say() { printf '\n== %s\n' "$*"; }
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export ARTIFACTS_DIR=${ARTIFACTS_DIR:-$repo/test-artifacts}
mkdir -p "$ARTIFACTS_DIR"

say "setting up the machine"
scripts/setup-test-env.sh

if [ "${REELAY_SKIP_WEB:-}" != 1 ]; then
    say "building the web UI"
    npm --prefix web run build
fi

say "checking formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

say "building"
cargo build --workspace --locked

say "Rust tests"
nextest_args=(--workspace --locked --profile "${REELAY_NEXTEST_PROFILE:-default}")
if [ -n "${REELAY_TEST_FILTER:-}" ]; then
    nextest_args+=(-E "$REELAY_TEST_FILTER")
fi
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run "${nextest_args[@]}"
else
    cargo test --workspace --locked
fi

if [ "${REELAY_SKIP_WEB:-}" != 1 ]; then
    say "web UI unit tests"
    npm --prefix web test

    say "web UI end-to-end tests (headless Chromium against reelay dev)"
    scripts/web-e2e.sh
fi

say "all tests passed"

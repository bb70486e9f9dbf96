#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy, then all unit and end-to-end tests (as root: the tests use real
# namespaces, mounts, cgroups and a real registry). Same profile as hack/setup.sh, so its build is reused.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  # shellcheck disable=SC1091
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
# The end-to-end tests drive the real binaries: build them in the profile the tests run in.
cargo build --release --workspace --bins
cargo test --release --workspace

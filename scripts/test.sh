#!/usr/bin/env bash
# Signet's test command (README): installs what is missing, then runs every check CI runs:
# formatting, clippy, the unit and contract tests, the benches in test mode (one quick pass
# each, so they stay runnable), and the integration tests against the real `signet` binary.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }

# Rust components used below (rustup ships them; install them where it does not).
if need rustup; then
  need rustfmt || rustup component add rustfmt
  cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
fi

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The integration tests spawn target/debug/signet: build it first.
cargo build --locked -p signet
cargo test --workspace --all-targets --locked

#!/usr/bin/env bash
# The whole test suite: installs what it needs (scripts/setup.sh), then unit, property, golden and lab
# end-to-end tests, and replays the fuzz corpus. Run as root (the lab needs network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh

# Leftovers of an interrupted earlier run must not collide with this one: every lab namespace the
# tests name (`common::unique_name`: a short tag, the test process id, x, a counter, then the node),
# with whatever still runs in it.
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' \
            | grep -E '^[a-z]{1,8}[0-9]+x[0-9]+-(cli|lb|sw|rs1|rs2|rs3|rtr|fsw|gw[0-9])$' || true); do
  for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
done

export CARGO_TERM_COLOR=never
cargo build --workspace --all-targets
# The fuzz targets run with nightly and cargo-fuzz (fuzz/README.md); here they must at least build
# (on stable, sharing the workspace's build directory), and the test suite replays their corpora.
cargo build --manifest-path fuzz/Cargo.toml --bins --target-dir target
# Every test, unit to end-to-end. Lab tests each create their own namespaces and EAL file prefix, so
# they run in parallel safely.
cargo test --workspace --no-fail-fast -- --test-threads="${TEST_THREADS:-4}"

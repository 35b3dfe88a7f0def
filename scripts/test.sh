#!/usr/bin/env bash
# The whole test suite: installs what it needs (scripts/setup.sh), then unit, property, golden and lab
# end-to-end tests, and replays the fuzz corpus. Run as root (the lab needs network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh

# Leftovers of an interrupted earlier run must not collide with this one.
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^(t|f|g)[a-z]*[0-9]+x[0-9]+-' || true); do
  ip netns del "$ns" 2>/dev/null || true
done

export CARGO_TERM_COLOR=never
cargo build --workspace --all-targets
# Every test, unit to end-to-end. Lab tests each create their own namespaces and EAL file prefix, so
# they run in parallel safely.
cargo test --workspace --no-fail-fast -- --test-threads="${TEST_THREADS:-4}"

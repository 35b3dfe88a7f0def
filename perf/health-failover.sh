#!/bin/bash
# Detection time and failed client requests when a real server dies (issue 11): the failover lab
# tests of gateway/tests/lab_health.rs (a curl loop, a request started every 50 ms; rs1 killed
# after 2 s), RUNS times each, interleaved; each run prints one line. Debug build, as the suite.
# Usage (from the repository root): perf/health-failover.sh [RUNS]   (default 3)
# Output: perf/results/health-failover.txt (raw lines, with the commit).
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-3}
out=$here/perf/results/health-failover.txt
cd "$here" || exit 1
cargo build -q -p gateway --tests || exit 1
{
  echo "# perf/health-failover.sh $runs at $(git rev-parse --short HEAD) on $(date -u +%F)"
  for i in $(seq 1 "$runs"); do
    for t in with_retry_not_one_request_fails_when_a_server_dies \
             without_retry_failures_stop_within_two_seconds \
             probes_alone_take_their_fall_times_interval \
             an_unanswered_syn_goes_to_another_server_and_a_removed_server_returns; do
      cargo test -q -p gateway --test lab_health -- --exact "$t" --nocapture --test-threads 1 2>&1 |
        grep -E "requests, .* failed|FAILED|panicked" | sed "s/^/run $i: /"
    done
  done
} | tee "$out"

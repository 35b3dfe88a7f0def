#!/bin/bash
# How long `ipvsadm -Ln` takes on a large table: 10,000 NAT services of 10 real servers restored
# (perf/lab-dual-stack.sh's nat_rules), then three listings, each timed whole (wall seconds) with
# the daemon's CPU ticks (10 ms) it took. For each round and each binary (A, B), a fresh
# dual-stack lab (2 workers, af_packet). (perf/RESULTS.md, "A listing written straight from its
# view".)
# Usage: perf/list-time.sh GATEWAY_A GATEWAY_B [ROUNDS]   (root; about 30 s a run; each binary's
# gwctl beside it)
set -uo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 rounds=${3:-3}
dir=$(mktemp -d)
trap 'ab_lab_down plt; rm -rf "$dir"' EXIT
. perf/lab-dual-stack.sh
dual_stack_conf >"$dir/conf.toml"
nat_rules >"$dir/nat10k"
echo "# perf/list-time.sh A=$a B=$b rounds=$rounds: ipvsadm -Ln of 10,000 NAT services, three times"
echo "# round binary (seconds daemon_ticks) x 3"
for r in $(seq 1 "$rounds"); do
    for which in A B; do
        ab_lab_up "$r" "$which" plt "$dir/conf.toml" || continue
        pid=$(cat /run/gwlab/plt/gateway.pid)
        $gwctl ipvsadm -C >/dev/null 2>&1
        $gwctl ipvsadm -R <"$dir/nat10k" >/dev/null 2>&1 || echo "$r $which restore-failed"
        sleep 1
        line="$r $which"
        for _ in 1 2 3; do
            read -r _ t0 < <(thread_ticks "$pid")
            s=$(date +%s.%N)
            $gwctl ipvsadm -Ln >/dev/null 2>&1 || line="$line failed"
            read -r _ t1 < <(thread_ticks "$pid")
            line="$line $(echo "$(date +%s.%N) - $s" | bc) $((t1 - t0))"
        done
        echo "$line"
        ab_lab_down plt
    done
done

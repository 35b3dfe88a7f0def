#!/bin/bash
# How long one admin change takes on a large table: 10,000 NAT services of 10 real servers
# restored (perf/lab-dual-stack.sh's nat_rules), then 100 single changes over one connection (a
# service added, then deleted, as perf/control-scale.sh's latency does), each answered once every
# worker runs its generation. For each round and each binary (A, B), a fresh dual-stack lab (2
# workers, af_packet). Also the two workers' CPU ticks (10 ms) during the 100 changes: each commits
# every change in its poll loop, not forwarding meanwhile. (perf/RESULTS.md, "A single change on
# a large table".)
# Usage: perf/change-time.sh GATEWAY_A GATEWAY_B [ROUNDS]   (root; about 1 min a run; each
# binary's gwctl beside it)
set -uo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 rounds=${3:-3}
dir=$(mktemp -d)
trap 'ab_lab_down pct; rm -rf "$dir"' EXIT
. perf/lab-dual-stack.sh
dual_stack_conf >"$dir/conf.toml"
nat_rules >"$dir/nat10k"
echo "# perf/change-time.sh A=$a B=$b rounds=$rounds: 100 single changes on 10,000 NAT services"
for r in $(seq 1 "$rounds"); do
    for which in A B; do
        ab_lab_up "$r" "$which" pct "$dir/conf.toml" || continue
        $gwctl ipvsadm -C >/dev/null 2>&1
        if $gwctl ipvsadm -R <"$dir/nat10k" >/dev/null 2>&1; then
            pid=$(cat /run/gwlab/pct/gateway.pid)
            read -r t0 _ < <(thread_ticks "$pid")
            line=$(single_changes /run/gateway/pct.sock 100 2>&1 | tail -1)
            read -r t1 _ < <(thread_ticks "$pid")
            echo "$r $which $line workers_ticks $((t1 - t0))"
        else
            echo "$r $which restore-failed"
        fi
        ab_lab_down pct
    done
done

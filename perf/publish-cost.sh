#!/bin/bash
# What an idle worker spends with a large rule set: the CPU time of the two workers' threads
# (utime + stime from /proc, in ticks of 10 ms) over 10 s with no traffic, after
# `ipvsadm -R` of 10,000 NAT services of 10 real servers (perf/control-scale.sh's largest rr
# set: 100,000 (service, real server) pairs, whose traffic each worker publishes every 100 ms),
# and before it, with none; then the same for the rest of the daemon (the main thread's
# reports and stats file, the control server's rate samples, the kernel mirror, health). For
# each round and each binary (A, B), a fresh lab (2 workers). (perf/RESULTS.md, "Traffic listed
# in key order", "Counters read without the traffic lists".)
# Usage: perf/publish-cost.sh GATEWAY_A GATEWAY_B [ROUNDS]   (root; about 40 s a run; each
# binary's gwctl beside it)
set -uo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 rounds=${3:-3}
dir=$(mktemp -d)
trap 'ab_lab_down ppc; rm -rf "$dir"' EXIT
. perf/lab-dual-stack.sh
nat_rules >"$dir/rules"
echo "# perf/publish-cost.sh A=$a B=$b rounds=$rounds: CPU ticks (10 ms) in 10 s idle"
echo "# round binary workers:no-services workers:10000-nat-services others:no-services others:10000-nat-services"
for r in $(seq 1 "$rounds"); do
    for which in A B; do
        ab_lab_up "$r" "$which" ppc || continue
        pid=$(cat /run/gwlab/ppc/gateway.pid)
        $gwctl ipvsadm -C >/dev/null 2>&1
        sleep 2
        read -r w0 o0 < <(thread_ticks "$pid"); sleep 10; read -r w1 o1 < <(thread_ticks "$pid")
        $gwctl ipvsadm -R <"$dir/rules" >/dev/null 2>&1 || echo "$r $which restore-failed"
        sleep 3
        read -r w2 o2 < <(thread_ticks "$pid"); sleep 10; read -r w3 o3 < <(thread_ticks "$pid")
        echo "$r $which $((w1 - w0)) $((w3 - w2)) $((o1 - o0)) $((o3 - o2))"
        ab_lab_down ppc
    done
done

#!/bin/bash
# A restore of 2,000 FullNAT services while wrk keeps 100 connections busy through the
# lab's VIP: does preparing the new generation stall forwarding? For each round and each binary
# (A, B), a fresh dual-stack lab (2 workers, af_packet), 8 s of `wrk -t2 -c100 --latency` with
# `Connection: close` through the VIP of FAMILY (new connections: an IPv6 worker builds its local
# address pools at the first SYN after a new generation, an IPv4 one while it prepares it), and 3 s
# in `gwctl ipvsadm -R` of 2,000 services of that family (each -A, -P -z
# one of 8 LIPs, two -a ... -b): the restore's time, wrk's max and p99 latency and rate, and the
# gateway's RSS after. (perf/RESULTS.md, "A large restore stopped forwarding".)
# Usage: perf/restore-stall.sh GATEWAY_A GATEWAY_B [ROUNDS] [4|6]   (root; about 1 min a run;
# each binary's gwctl beside it)
set -uo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 rounds=${3:-3} family=${4:-6}
conf=$(mktemp) rules=$(mktemp)
trap 'scripts/lab.sh down prs >/dev/null 2>&1; rm -f "$conf" "$rules"' EXIT
. perf/lab-dual-stack.sh
dual_stack_conf >"$conf"
fullnat_rules "$family" >"$rules"
url='http://[2001:db8:10::100]/'
[ "$family" = 6 ] || url=http://10.10.0.100/
for r in $(seq 1 "$rounds"); do
    for bin in A B; do
        [ "$bin" = A ] && export GATEWAY_BIN=$a || export GATEWAY_BIN=$b
        gwctl="$(dirname "$GATEWAY_BIN")/gwctl -s /run/gateway/prs.sock"
        scripts/lab.sh down prs >/dev/null 2>&1
        timeout 300 scripts/lab.sh up prs "$conf" >/dev/null 2>&1 && timeout 120 scripts/lab.sh ipv6 prs >/dev/null 2>&1 || { echo "lab failed"; continue; }
        out=$(mktemp)
        ip netns exec prs-cli timeout 30 wrk -t2 -c100 -d8s --latency -H "Connection: close" "$url" >"$out" 2>&1 &
        wrk=$!
        sleep 3
        t0=$(date +%s.%N)
        $gwctl ipvsadm -R <"$rules" >/dev/null
        t1=$(date +%s.%N)
        wait "$wrk"
        services=$($gwctl ipvsadm -Ln | grep -c '^TCP')
        pid=$(pgrep -f "file-prefix prs" | head -1)
        rss=$(ps -o rss= -p "$pid" 2>/dev/null | tr -d ' ')
        max=$(awk '/Latency / {print $4}' "$out")
        p99=$(awk '$1 == "99%" {print $2}' "$out")
        rps=$(awk '/Requests\/sec/ {print $2}' "$out")
        echo "round $r $bin ipv$family restore_s $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}') services $services wrk_max $max wrk_p99 $p99 rps $rps rss_kb $rss"
        rm -f "$out"
    done
done

#!/bin/bash
# A configuration change's stall on the workers, seen from outside (issue 16; perf/RESULTS.md,
# "Connections follow a change without a stop"). Each worker's connection table holds CAPACITY
# entries' room (default 4,000,000) and a 10 s `hping3 --flood` of SYNs from random sources
# (perf/lab-dual-stack.sh's flood_conf: entries kept in SYN_RECV); then, while the client pings
# the VIP 2,500 times 2 ms apart (the worker that holds the ping's queue answers it), 20 times: a
# real server of the lab's service removed (which moves the entries' indices: a walk of the
# table), 100 ms, added back (which moves none), 100 ms. Prints, per round and binary, the
# connections held, the pings' round trips (median, p99, p99.9, max in ms; how many took over 1
# and over 5 ms; how many were lost) and, where the binary counts them, `conn_rebinds` and
# `conn_rebinds_hurried`. A stall of the worker that answers delays every ping sent during it.
# For each round and each binary (A, B, interleaved), a fresh lab (2 workers, af_packet).
# Usage: perf/change-stall.sh GATEWAY_A GATEWAY_B [ROUNDS] [CAPACITY]   (root; about 40 s a run;
# hping3; each binary's gwctl beside it)
set -uo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 rounds=${3:-3} cap=${4:-4000000}
dir=$(mktemp -d)
trap 'ab_lab_down pcs; rm -rf "$dir"' EXIT
. perf/lab-dual-stack.sh
cp conf/lab.toml "$dir/conf.toml"
flood_conf "$dir/conf.toml" 8
sed -i "s/^capacity = 600000/capacity = $cap/" "$dir/conf.toml"
grep -q "^capacity = $cap$" "$dir/conf.toml" || { echo "capacity not set" >&2; exit 1; }
echo "# perf/change-stall.sh A=$a B=$b rounds=$rounds capacity=$cap: 20 removals of a real server during 2,500 pings of the VIP, 2 ms apart"
echo "# round binary conns ping_median_ms p99 p99.9 max over_1ms over_5ms lost conn_rebinds hurried load"
for r in $(seq 1 "$rounds"); do
    for which in A B; do
        ab_lab_up "$r" "$which" pcs "$dir/conf.toml" || continue
        ip netns exec pcs-cli timeout 10 hping3 -q -S -p 8080 --flood --rand-source \
            10.10.0.100 >/dev/null 2>&1
        sleep 1
        conns=$($gwctl stats 2>/dev/null | awk '$1 == "conns" {print $NF}')
        ip netns exec pcs-cli ping -n -i 0.002 -c 2500 -W 1 10.10.0.100 >"$dir/ping" 2>&1 &
        pinger=$!
        sleep 0.5
        for _ in $(seq 1 20); do
            $gwctl ipvsadm -d -t 10.10.0.100:80 -r 10.20.0.12:80 >/dev/null 2>&1 ||
                echo "$r $which remove-failed"
            sleep 0.1
            $gwctl ipvsadm -a -t 10.10.0.100:80 -r 10.20.0.12:80 -b -w 1 >/dev/null 2>&1 ||
                echo "$r $which add-failed"
            sleep 0.1
        done
        wait "$pinger"
        rebinds=$($gwctl stats 2>/dev/null | awk '$1 == "conn_rebinds" {print $NF}')
        hurried=$($gwctl stats 2>/dev/null | awk '$1 == "conn_rebinds_hurried" {print $NF}')
        load=$(cut -d' ' -f1 /proc/loadavg)
        ab_lab_down pcs
        python3 - "$dir/ping" "$r $which ${conns:-?}" "${rebinds:--} ${hurried:--} $load" <<'PY'
import re, sys
rtt = sorted(float(m) for m in re.findall(r"time=([0-9.]+) ms", open(sys.argv[1]).read()))
n = len(rtt)
if n == 0:
    print(sys.argv[2], "no-replies", sys.argv[3])
    sys.exit()
q = lambda p: rtt[min(n - 1, int(n * p))]
print(sys.argv[2], "%.3f %.3f %.3f %.3f" % (q(0.5), q(0.99), q(0.999), rtt[-1]),
      sum(x > 1 for x in rtt), sum(x > 5 for x in rtt), 2500 - n, sys.argv[3])
PY
    done
done

#!/bin/bash
# What a single admin change costs the workers on a large table: 10,000 NAT services of 10 real
# servers restored (perf/lab-dual-stack.sh's nat_rules), then 40 single changes (a service added,
# then deleted) under `perf record -F 2000` of the gateway; counted: the two workers' user-space
# samples outside the poll loop (each worker commits every change in its loop, not forwarding
# meanwhile: those samples are mostly the commits), and the changes' median and p99 latency. For
# each round and each binary (A, B), a fresh dual-stack lab (2 workers, af_packet).
# With FLOOD_SECONDS > 0, the tables first hold connections: that long a `hping3 --flood` of SYNs
# from random sources to VIP:8080 (a service whose real server does not exist, its entries kept in
# SYN_RECV for 10 minutes, 600,000 a worker at most), as perf/conns-listing.sh fills them. With
# FLOOD_LIMIT set (an inline table, e.g. "{ max_conns = 1000 }"), that service has it as its
# client_limit: a limit on open connections, which a change may make the workers count again.
# (perf/RESULTS.md, "A single change on a large table".)
# Usage: perf/commit-cost.sh GATEWAY_A GATEWAY_B [ROUNDS] [FLOOD_SECONDS]   (root; about 30 s a
# run and the flood; perf, hping3; each binary's gwctl beside it)
set -uo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 rounds=${3:-2} flood=${4:-0}
dir=$(mktemp -d)
trap 'ab_lab_down pcc; rm -rf "$dir"' EXIT
. perf/lab-dual-stack.sh
dual_stack_conf >"$dir/conf.toml"
[ "$flood" -gt 0 ] && flood_conf "$dir/conf.toml" 8
[ -n "${FLOOD_LIMIT:-}" ] && sed -i "/^port = 8080$/a client_limit = $FLOOD_LIMIT" "$dir/conf.toml"
nat_rules >"$dir/nat10k"
echo "# perf/commit-cost.sh A=$a B=$b rounds=$rounds flood=${flood}s${FLOOD_LIMIT:+ limit=$FLOOD_LIMIT}: 40 single changes on 10,000 NAT services"
echo "# round binary latency... worker_samples (2000 Hz, both workers, outside the poll loop)"
for r in $(seq 1 "$rounds"); do
    for which in A B; do
        ab_lab_up "$r" "$which" pcc "$dir/conf.toml" || continue
        if [ "$flood" -gt 0 ]; then
            ip netns exec pcc-cli timeout "$flood" hping3 -q -S -p 8080 --flood --rand-source \
                10.10.0.100 >/dev/null 2>&1
            conns=$($gwctl stats 2>/dev/null | awk '$1 == "conns" {print $NF}')
        else
            $gwctl ipvsadm -C >/dev/null 2>&1
            conns=0
        fi
        $gwctl ipvsadm -R <"$dir/nat10k" >/dev/null 2>&1 || echo "$r $which restore-failed"
        sleep 1
        pid=$(cat /run/gwlab/pcc/gateway.pid)
        perf record -F 2000 -g -p "$pid" -o "$dir/perf.data" >/dev/null 2>&1 &
        rec=$!
        sleep 0.3
        line=$(single_changes /run/gateway/pcc.sock 40 2>&1 | tail -1)
        kill -INT "$rec"
        wait "$rec"
        ab_lab_down pcc
        n=$(perf report -i "$dir/perf.data" --no-children --comm rte-worker-1,rte-worker-2 --sort sym -g none -n 2>/dev/null |
            grep -v '^#' | grep -v '^$' |
            grep -v 'finish_task_switch\|nanosleep\|\[k\]\|Worker::run\|rx_burst' |
            awk '{s += $2} END {print s + 0}')
        echo "$r $which conns $conns $line worker_samples $n"
    done
done

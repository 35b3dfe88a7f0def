#!/bin/bash
# Short connections against real servers that hold their closed LIP:lport tuples in TIME_WAIT
# (the lab's 2 LIPs, capacity 65536: the tuples come round again within the servers' 60 s).
# For each round, each binary (A, B) and each family, a fresh dual-stack lab and 20 s of
# wrk -t2 -c100 with Connection: close: requests, the client's SYN retransmissions, the
# servers' PAWS refusals in TIME_WAIT, and the gateway's server_time_wait counter.
# Usage: perf/server-time-wait.sh GATEWAY_A GATEWAY_B [ROUNDS]   (root; about 3 min a round)
set -uo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 rounds=${3:-2}
conf=$(mktemp)
trap 'scripts/lab.sh down pstw >/dev/null 2>&1; rm -f "$conf"' EXIT
. perf/lab-dual-stack.sh
dual_stack_conf >"$conf"
snap() {
    for n in cli rs1 rs2; do
        ip netns exec "pstw-$n" nstat -az 2>/dev/null | awk -v n="$n" '{print n"."$1, $2}'
    done | sort
}
for r in $(seq 1 "$rounds"); do
    for bin in A B; do
        [ "$bin" = A ] && export GATEWAY_BIN=$a || export GATEWAY_BIN=$b
        for url in http://10.10.0.100/ 'http://[2001:db8:10::100]/'; do
            scripts/lab.sh down pstw >/dev/null 2>&1
            timeout 300 scripts/lab.sh up pstw "$conf" >/dev/null 2>&1 && timeout 120 scripts/lab.sh ipv6 pstw >/dev/null 2>&1 || { echo "lab failed"; continue; }
            s1=$(snap)
            n=$(ip netns exec pstw-cli timeout 60 wrk -t2 -c100 -d20s -H "Connection: close" "$url" 2>&1 | awk '/requests in/ {print $1}')
            s2=$(snap)
            d=$(join <(echo "$s1") <(echo "$s2") | awk '$3 != $2 && /SynRetrans|PAWSTimewait/ {printf "%s=%d ", $1, $3 - $2}')
            tw=$(grep -o "server_time_wait [0-9]*" /run/gwlab/pstw/stats.txt 2>/dev/null | awk '{s += $2} END {print s + 0}')
            echo "round $r $bin $url requests=$n $d server_time_wait=$tw"
        done
    done
done

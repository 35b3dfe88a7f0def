#!/bin/bash
# Short connections across a takeover: does the new master hand out local ports the real
# servers still hold in TIME_WAIT? For each round, each binary (A, B) and each family, a fresh
# HA lab (scripts/lab-ha.sh, dual stack, both gateways the same binary, 1M connections a worker
# in each family so that no table fills: a full one lets its oldest TIME_WAIT entries go, whose ports the
# servers may still hold, whatever this measures), 16 s of wrk -t2 -c50
# with Connection: close through the VIP, gateway 1 killed (SIGKILL) 8 s in: the requests, the
# records gateway 2 took as replacing a connection it held (`sync_replaced`: the master scheduled
# a client's reused port afresh), and gateway 2's `server_time_wait` after the takeover (a SYN
# its server answered from TIME_WAIT), with the servers' PAWS refusals in TIME_WAIT and the
# client's SYN retransmissions over the whole run. (perf/RESULTS.md, "A backup parks what a
# record replaces".)
# Usage: perf/ha-time-wait.sh GATEWAY_A GATEWAY_B [ROUNDS]   (root; about 1 min a lab; each
# binary's gwctl beside it)
set -uo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 rounds=${3:-2}
trap 'scripts/lab-ha.sh down phtw >/dev/null 2>&1' EXIT
snap() {
    for n in cli rs1 rs2; do
        ip netns exec "phtw-$n" nstat -az 2>/dev/null | awk -v n="$n" '{print n"."$1, $2}'
    done | sort
}
counter() { # gateway K, counter name: its total
    "$gwctl" -s "/run/gateway/phtw-gw$1.sock" stats 2>/dev/null | awk -v c="$2" '$1 == c {print $2}'
}
for r in $(seq 1 "$rounds"); do
    for which in A B; do
        bin=$a
        [ "$which" = B ] && bin=$b
        gwctl="$(dirname "$bin")/gwctl"
        for url in http://10.10.0.100/ 'http://[2001:db8:10::100]/'; do
            scripts/lab-ha.sh down phtw >/dev/null 2>&1
            GATEWAY_BIN=$bin LAB_IPV6=1 LAB_CAPACITY=1048576 timeout 300 scripts/lab-ha.sh up phtw 1 >/dev/null 2>&1 || {
                echo "round $r $which $url lab-failed"
                continue
            }
            s1=$(snap)
            ip netns exec phtw-cli timeout 60 wrk -t2 -c50 -d16s -H "Connection: close" "$url" >/tmp/phtw-wrk.txt 2>&1 &
            wrk=$!
            sleep 8
            replaced=$(counter 2 sync_replaced)
            tw0=$(counter 2 server_time_wait)
            scripts/lab-ha.sh gateway phtw 1 kill >/dev/null 2>&1
            wait "$wrk"
            sleep 1
            tw1=$(counter 2 server_time_wait)
            s2=$(snap)
            n=$(awk '/requests in/ {print $1}' /tmp/phtw-wrk.txt)
            errors=$(grep -o "Socket errors.*" /tmp/phtw-wrk.txt | tr -d ',' || true)
            d=$(join <(echo "$s1") <(echo "$s2") | awk '$3 != $2 && /SynRetrans|PAWSTimewait/ {printf "%s=%d ", $1, $3 - $2}')
            echo "round $r $which $url requests=$n gw2_sync_replaced_before_kill=$replaced gw2_server_time_wait_after_kill=$((tw1 - tw0)) $d${errors:+ $errors}"
        done
    done
done

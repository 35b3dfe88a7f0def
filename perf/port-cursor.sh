#!/bin/bash
# Short connections after a run of long-lived ones on the same local ports (laddr::pool's cursor).
# The lab with one LIP, one real server (rs2 removed) and a table of 16384 connections a worker
# (closed connections give their ports back early): 600 idle keep-alive connections are opened
# first, so each worker's first 300 local ports stay held, then 25 s of wrk -t1 -c100 with
# Connection: close, whose connections take the ports round the ring again and again.
# For each round and each binary (A, B), a fresh lab: requests, connections created, and the
# gateway's ports_exhausted and evicted_time_wait.
# Usage: perf/port-cursor.sh GATEWAY_A GATEWAY_B [ROUNDS]   (root; about 1 min a run)
set -uo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 rounds=${3:-2}
conf=$(mktemp)
hold=$(mktemp)
trap 'scripts/lab.sh down pcur >/dev/null 2>&1; rm -f "$conf" "$hold"' EXIT
sed -e 's|local_addresses = \["10.20.0.200", "10.20.0.201"\]|local_addresses = ["10.20.0.200"]|' \
    -e 's|^capacity = 65536|capacity = 16384|' conf/lab.toml >"$conf"
grep -q '^capacity = 16384' "$conf" && grep -q '\["10.20.0.200"\]' "$conf" || { echo "conf/lab.toml changed"; exit 1; }
# Connections that send one request each, then stay open and idle.
cat >"$hold" <<'PY'
import socket, sys, time
socks = []
for i in range(int(sys.argv[1])):
    s = socket.create_connection(("10.10.0.100", 80), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n")
    s.recv(4096)
    socks.append(s)
time.sleep(float(sys.argv[2]))
PY
gwctl=target/release/gwctl
[ -x "$gwctl" ] || gwctl=${CARGO_TARGET_DIR:-target}/release/gwctl
counter() { "$gwctl" --socket /run/gateway/pcur.sock stats | awk -v k="$1" '$1 == k {print $4; exit}'; }
echo "# perf/port-cursor.sh A=$a B=$b at $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$rounds"); do
    for bin in A B; do
        [ "$bin" = A ] && export GATEWAY_BIN=$a || export GATEWAY_BIN=$b
        scripts/lab.sh down pcur >/dev/null 2>&1
        timeout 300 scripts/lab.sh up pcur "$conf" >/dev/null 2>&1 || { echo "lab failed"; continue; }
        "$gwctl" --socket /run/gateway/pcur.sock ipvsadm -d -t 10.10.0.100:80 -r 10.20.0.12:80
        timeout 90 ip netns exec pcur-cli python3 "$hold" 600 45 &
        holder=$!
        sleep 3
        req=$(ip netns exec pcur-cli bash -c 'ulimit -n 20000; timeout 60 wrk -t1 -c100 -d25s -H "Connection: close" http://10.10.0.100/' 2>&1 |
            awk '/requests in/ {print $1}')
        echo "round $r $bin: requests ${req:-0} conns_created $(counter conns_created) ports_exhausted $(counter ports_exhausted) evicted_time_wait $(counter evicted_time_wait) load $(cut -d' ' -f1 /proc/loadavg)"
        kill "$holder" 2>/dev/null
        wait "$holder" 2>/dev/null
    done
done

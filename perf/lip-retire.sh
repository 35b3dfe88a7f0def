#!/bin/bash
# ipvsadm -Q of a local address that keep-alive connections use, with two gateway builds: per
# run a fresh lab (scripts/lab.sh up: 2 workers, LIPs 10.20.0.200 and .201), 20 keep-alive
# connections from the client asking once every 0.1 s for 8 s (timeout 2 s; a connection is
# asked no more after its first failure), `ipvsadm -Q ... -z 10.20.0.201` at 2 s. Each run prints
# how many connections stalled, the requests answered, and the drops `ip_not_for_us`.
# Usage (from the repository root, as root): perf/lip-retire.sh OLD_GATEWAY NEW_GATEWAY [RUNS]
# (default 3 runs of each, interleaved); gwctl from GWCTL (default target/release/gwctl).
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
old=$1 new=$2 runs=${3:-3}
gwctl=${GWCTL:-$here/target/release/gwctl}
cd "$here" || exit 1
py=$(mktemp --suffix=.py)
trap 'rm -f "$py"; scripts/lab.sh down qab >/dev/null 2>&1' EXIT
cat > "$py" <<'PY'
import http.client, time
conns = [http.client.HTTPConnection("10.10.0.100", 80, timeout=2) for _ in range(20)]
ok = [0] * 20; failed = [False] * 20
end = time.time() + 8
while time.time() < end:
    for i, c in enumerate(conns):
        if failed[i]:
            continue
        try:
            c.request("GET", "/"); c.getresponse().read(); ok[i] += 1
        except Exception:
            failed[i] = True
    time.sleep(0.1)
print(f"connections 20 stalled {sum(failed)} requests {sum(ok)}")
PY
one() {
    GATEWAY_BIN=$1 timeout 120 scripts/lab.sh up qab >/dev/null 2>&1 || { echo "$2: lab up failed"; return; }
    local g=("$gwctl" --socket /run/gateway/qab.sock)
    scripts/lab.sh exec qab cli timeout 30 python3 "$py" >"$py.out" 2>&1 &
    sleep 2
    "${g[@]}" ipvsadm -Q -t 10.10.0.100:80 -z 10.20.0.201
    wait
    echo "$2: $(cat "$py.out") ip_not_for_us=$("${g[@]}" drops | awk '/ip_not_for_us/ {n = $4} END {print n + 0}')"
    rm -f "$py.out"
    scripts/lab.sh down qab >/dev/null 2>&1
}
for i in $(seq 1 "$runs"); do
    one "$old" "old$i"
    one "$new" "new$i"
done

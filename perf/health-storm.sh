#!/bin/bash
# A failure of many real servers at once: SERVICES FullNAT services (default 2000) of the lab's two
# real servers, each server under a TCP check (every second, down at the first failure), then rs2's
# nginx stopped: every service's rs2 goes down together. Measured: the seconds from the stop until
# every service runs rs2 at weight 0 (`ipvsadm -Ln` polled every 0.2 s), and the generations the
# control plane built meanwhile (`gwctl status`'s generation), and the most services seen at once
# with rs1, which stays up, at weight 0 (the probes go out through the workers' kernel twins: a
# worker that stops to commit can make them time out). For each round and each binary
# (A, B), a fresh lab (conf/lab.toml, 2 workers, af_packet). (perf/RESULTS.md, "Health transitions
# in one generation".)
# Usage: perf/health-storm.sh GATEWAY_A GATEWAY_B [ROUNDS] [SERVICES]   (root; each binary's gwctl
# beside it)
set -uo pipefail
cd "$(dirname "$0")/.."
. perf/lab-dual-stack.sh
a=$1 b=$2 rounds=${3:-2} n=${4:-2000}
dir=$(mktemp -d)
trap 'ab_lab_down phs; rm -rf "$dir"' EXIT
{
    sed '/^\[\[service\]\]/,$d' conf/lab.toml
    python3 - "$n" <<'PY'
import sys
for i in range(int(sys.argv[1])):
    print(f"""[[service]]
vip = "10.10.{8 + i // 250}.{1 + i % 250}"
port = 80
scheduler = "rr"
local_addresses = ["10.20.0.200"]
check = {{ kind = "tcp", interval_ms = 1000, fall = 1, passive_fall = 0 }}
[[service.real]]
address = "10.20.0.11"
[[service.real]]
address = "10.20.0.12"
""")
PY
} >"$dir/conf.toml"
generation() { $gwctl status 2>/dev/null | sed -n 's/.*generation \([0-9]*\).*/\1/p'; }
echo "# perf/health-storm.sh A=$a B=$b rounds=$rounds services=$n: rs2 down under every service at once"
echo "# round binary seconds_until_all_at_weight_0 generations_built most_services_with_rs1_down_at_once"
for r in $(seq 1 "$rounds"); do
    for which in A B; do
        ab_lab_up "$r" "$which" phs "$dir/conf.toml" || continue
        sleep 3
        g0=$(generation)
        s=$(date +%s.%N)
        kill "$(cat /run/gwlab/phs/rs2/nginx.pid)"
        took=timeout
        rs1_down=0
        for _ in $(seq 1 300); do
            list=$($gwctl ipvsadm -Ln 2>/dev/null)
            down=$(echo "$list" | awk '$2 == "10.20.0.12:80" && $4 == 0' | wc -l)
            d1=$(echo "$list" | awk '$2 == "10.20.0.11:80" && $4 == 0' | wc -l)
            [ "$d1" -gt "$rs1_down" ] && rs1_down=$d1
            if [ "$down" -ge "$n" ]; then
                took=$(echo "$(date +%s.%N) - $s" | bc)
                break
            fi
            sleep 0.2
        done
        echo "$r $which $took $(($(generation) - g0)) $rs1_down"
        ab_lab_down phs
    done
done

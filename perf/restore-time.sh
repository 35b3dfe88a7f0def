#!/bin/bash
# How long `ipvsadm -R` takes with nothing else running: 2,000 FullNAT services of each family
# (each -A, -P -z one of 8 LIPs, two -a ... -b, as perf/restore-stall.sh restores them) and
# 10,000 IPv4 NAT services of 10 real servers (perf/control-scale.sh's largest rr set), each
# restored into an empty table (`ipvsadm -C` first). For each round and each binary (A, B), a
# fresh dual-stack lab (2 workers, af_packet). (perf/RESULTS.md, "A restore's services found by
# key".)
# Usage: perf/restore-time.sh GATEWAY_A GATEWAY_B [ROUNDS]   (root; about 30 s a run; each
# binary's gwctl beside it)
set -uo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 rounds=${3:-3}
dir=$(mktemp -d)
trap 'scripts/lab.sh down prt >/dev/null 2>&1; rm -rf "$dir"' EXIT
. perf/lab-dual-stack.sh
dual_stack_conf >"$dir/conf.toml"
python3 - "$dir" <<'PY'
import sys
d = sys.argv[1]
with open(f"{d}/fullnat4", "w") as f4, open(f"{d}/fullnat6", "w") as f6:
    for i in range(2000):
        for v6, f in ((False, f4), (True, f6)):
            if v6:
                vip, lip = f"[2001:db8:10::{0x1000 + i:x}]:80", f"2001:db8:20::{0x300 + i % 8:x}"
                reals = ["[2001:db8:20::11]:80", "[2001:db8:20::12]:80"]
            else:
                vip, lip = f"172.{10 + i // 250}.0.{1 + i % 250}:80", f"10.20.0.{210 + i % 8}"
                reals = ["10.20.0.11:80", "10.20.0.12:80"]
            f.write(f"-A -t {vip} -s rr\n-P -t {vip} -z {lip}\n")
            for r in reals:
                f.write(f"-a -t {vip} -r {r} -b\n")
with open(f"{d}/nat10k", "w") as f:
    for s in range(10000):
        vip = "10.%d.%d.%d:80" % (100 + s // 62500, s // 250 % 250, s % 250 + 1)
        f.write(f"-A -t {vip} -s rr\n")
        for r in range(10):
            f.write(f"-a -t {vip} -r 10.20.0.{11 + r}:80 -m -w 1\n")
PY
echo "# perf/restore-time.sh A=$a B=$b rounds=$rounds; seconds per restore into an empty table"
echo "# round binary fullnat4-2000 fullnat6-2000 nat4-10000"
for r in $(seq 1 "$rounds"); do
    for which in A B; do
        bin=$a
        [ "$which" = B ] && bin=$b
        gwctl="$(dirname "$bin")/gwctl -s /run/gateway/prt.sock"
        GATEWAY_BIN=$bin scripts/lab.sh up prt "$dir/conf.toml" >/dev/null 2>&1 || {
            echo "$r $which lab-failed"
            continue
        }
        line="$r $which"
        for set in fullnat4 fullnat6 nat10k; do
            $gwctl ipvsadm -C >/dev/null 2>&1
            sleep 1
            s=$(date +%s.%N)
            if $gwctl ipvsadm -R <"$dir/$set" >/dev/null 2>&1; then
                line="$line $(echo "$(date +%s.%N) - $s" | bc)"
            else
                line="$line failed"
            fi
        done
        echo "$line"
        scripts/lab.sh down prt >/dev/null 2>&1
    done
done

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
trap 'ab_lab_down prt; rm -rf "$dir"' EXIT
. perf/lab-dual-stack.sh
dual_stack_conf >"$dir/conf.toml"
fullnat_rules 4 >"$dir/fullnat4"
fullnat_rules 6 >"$dir/fullnat6"
nat_rules >"$dir/nat10k"
echo "# perf/restore-time.sh A=$a B=$b rounds=$rounds; seconds per restore into an empty table"
echo "# round binary fullnat4-2000 fullnat6-2000 nat4-10000"
for r in $(seq 1 "$rounds"); do
    for which in A B; do
        ab_lab_up "$r" "$which" prt "$dir/conf.toml" || continue
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
        ab_lab_down prt
    done
done

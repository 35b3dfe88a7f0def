#!/bin/bash
# How long `ipvsadm -R` of SERVICES `mh` services of 10 NAT real servers each takes (the Maglev
# tables' build, 65,537 slots each), into the lab's gateway started without services, for two
# builds interleaved (A B A B ...), a fresh lab each run. (perf/RESULTS.md, "Maglev tables built
# faster".)
# Usage: perf/mh-restore.sh GATEWAY_A GATEWAY_B [ROUNDS] [SERVICES]   (root; each binary's gwctl
# beside it; about 40 s a run at 10,000 services)
# Output: one line per run, "A restore_s=..." or "B restore_s=...".
set -euo pipefail
cd "$(dirname "$0")/.."
. perf/lab-dual-stack.sh
a=${1:?usage: perf/mh-restore.sh GATEWAY_A GATEWAY_B [ROUNDS] [SERVICES]}
b=${2:?usage: perf/mh-restore.sh GATEWAY_A GATEWAY_B [ROUNDS] [SERVICES]}
rounds=${3:-2}
services=${4:-10000}
name=mhr$$
rules=/tmp/$name.rules
cfg=/tmp/$name.toml
cleanup() {
    ab_lab_down "$name" || true
    rm -rf "$rules" "$cfg"
}
trap cleanup EXIT
python3 - "$services" >"$rules" <<'PY'
import sys
out = []
for s in range(int(sys.argv[1])):
    vip = "10.%d.%d.%d:80" % (100 + s // 62500, s // 250 % 250, s % 250 + 1)
    out.append("-A -t %s -s mh" % vip)
    for r in range(10):
        out.append("-a -t %s -r 10.20.0.%d:80 -m -w 1" % (vip, 11 + r))
print("\n".join(out))
PY
# The lab's config without its service.
sed '/^# The lab.s virtual service/,$d' conf/lab.toml >"$cfg"
for r in $(seq "$rounds"); do
    for which in A B; do
        ab_lab_up "$r" "$which" "$name" "$cfg" || continue
        t0=$(date +%s.%N)
        $gwctl ipvsadm -R <"$rules"
        t1=$(date +%s.%N)
        echo "$which restore_s=$(python3 -c "print(round($t1 - $t0, 2))")"
        ab_lab_down "$name"
    done
done

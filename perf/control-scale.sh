#!/bin/bash
# The control plane at scale (issue 20): restore time and resident memory for rule sets of
# SERVICES x 10 NAT real servers (rr and mh), `ipvsadm -Ln` time, and the latency of single changes
# with 1 and 2 workers. The lab's gateway, started without services, release build.
# Usage (from the repository root): perf/control-scale.sh [SIZES...]   (default 100 1000 10000)
# Output: one line per figure on stdout (perf/results/control-scale.txt holds a run).
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${GATEWAY_BIN:-/work/target-perf/release/gateway}
gwctl=$(dirname "$bin")/gwctl
sizes=${*:-100 1000 10000}
. "$here/perf/lab-dual-stack.sh"
rules() { # services, scheduler
  python3 - "$1" "$2" <<'PY'
import sys
n, sched = int(sys.argv[1]), sys.argv[2]
out = []
for s in range(n):
    vip = "10.%d.%d.%d:80" % (100 + s // 62500, s // 250 % 250, s % 250 + 1)
    out.append("-A -t %s -s %s" % (vip, sched))
    for r in range(10):
        out.append("-a -t %s -r 10.20.0.%d:80 -m -w 1" % (vip, 11 + r))
print("\n".join(out))
PY
}
latency() { # socket workers: 1000 single changes (add, then delete, a service) over one connection
  echo "single change, workers=$2: n=1000 $(single_changes "$1" 1000)"
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
run_lab() { # name workers
  local cfg=/tmp/$1.toml
  sed -e "s/^count = 2/count = $2/" -e "s/^cpus = \[0, 1\]/cpus = [$( [ "$2" = 1 ] && echo 1 || echo 0, 1)]/" \
      -e "s/qpairs=2/qpairs=$2/g" "$here/conf/lab.toml" | sed '/^# The lab.s virtual service/,$d' > "$cfg"
  GATEWAY_BIN=$bin "$here/scripts/lab.sh" up "$1" "$cfg" >/dev/null || { echo "lab $1 failed"; exit 1; }
  rm -f "$cfg"
}
# Each size in a gateway of its own: resident memory does not shrink after a clear.
for sched in rr mh; do
  for n in $sizes; do
    name=cs$$-$sched$n
    run_lab "$name" 2
    export GATEWAY_SOCKET=/run/gateway/$name.sock
    pid=$(cat "/run/gwlab/$name/gateway.pid")
    base=$(rss_kb "$pid")
    f=/tmp/$name.rules
    rules "$n" "$sched" > "$f"
    t0=$(date +%s.%N); "$gwctl" ipvsadm -R < "$f" || echo "restore failed"; t1=$(date +%s.%N)
    sleep 0.5
    rss=$(rss_kb "$pid")
    t2=$(date +%s.%N); lines=$("$gwctl" ipvsadm -Ln | wc -l); t3=$(date +%s.%N)
    # One more change on top: the next generation shares every unchanged service.
    "$gwctl" ipvsadm -A -t 10.99.99.1:80 -s rr
    sleep 0.5
    rss2=$(rss_kb "$pid")
    echo "sched=$sched services=$n reals=$((n * 10)) restore_s=$(python3 -c "print(round($t1-$t0,3))") idle_rss_kb=$base rss_kb=$rss per_service_kb=$(python3 -c "print(round(($rss-$base)/$n,1))") after_one_more_change_rss_kb=$rss2 list_s=$(python3 -c "print(round($t3-$t2,3))") list_lines=$lines"
    rm -f "$f"
    if [ "$n" = "${sizes%% *}" ] && [ "$sched" = rr ]; then latency "$GATEWAY_SOCKET" 2; fi
    "$here/scripts/lab.sh" down "$name" >/dev/null; rm -rf "/run/gwlab/$name"
  done
done
name1=cs1$$
run_lab "$name1" 1
latency "/run/gateway/$name1.sock" 1
"$here/scripts/lab.sh" down "$name1" >/dev/null; rm -rf "/run/gwlab/$name1"

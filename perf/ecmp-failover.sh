#!/bin/bash
# Withdrawal time and failed requests when one of two ECMP gateways is drained, and when it is
# SIGKILLed (issue 13), in the ECMP lab (scripts/lab-ecmp.sh). In each case a client load runs for
# 6 s: 8 threads per service, each making one request after another on a new connection (timeout
# 2 s), to the FullNAT service (:80) and the DR service (:8080); 2 s in, gateway 1 is drained (or
# killed) while a poller times how long the router keeps its path. RUNS rounds; one line per case.
# Usage (from the repository root, as root): perf/ecmp-failover.sh [RUNS]   (default 3)
# Output: perf/results/ecmp-failover.txt (raw lines, with the commit and the binary).
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-3}
out=$here/perf/results/ecmp-failover.txt
name=ecmpperf
bin=${GATEWAY_BIN:-$here/target/release/gateway}
gwctl=$(dirname "$bin")/gwctl
cd "$here" || exit 1
trap 'scripts/lab-ecmp.sh down $name >/dev/null 2>&1' EXIT

# Prints "SERVICE ok N failed M" per service after running for $1 seconds.
load_py='
import http.client, sys, threading, time
secs = float(sys.argv[1]); stop = time.time() + secs
res = {}
def worker(port):
    ok = bad = 0
    while time.time() < stop:
        c = http.client.HTTPConnection("10.99.0.100", port, timeout=2)
        try:
            c.request("GET", "/", headers={"Connection": "close"}); c.getresponse().read(); ok += 1
        except Exception:
            bad += 1
        finally:
            c.close()
    res.setdefault(port, []).append((ok, bad))
ts = [threading.Thread(target=worker, args=(p,)) for p in (80, 8080) for _ in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
for p, name in ((80, "fullnat"), (8080, "dr")):
    print("%s ok %d failed %d" % (name, sum(o for o, _ in res[p]), sum(b for _, b in res[p])), end="  ")
print()
'
# Seconds until the router's route to the VIP has one path (polled every 5 ms).
wait_one_path='
import subprocess, sys, time
t = time.time()
while time.time() - t < 10:
    r = subprocess.run(["ip", "netns", "exec", sys.argv[1] + "-rtr", "ip", "-4", "route", "show", "10.99.0.100"],
                       capture_output=True, text=True).stdout
    if "nexthop" not in r and "via" in r:
        print("%.3f" % (time.time() - t)); sys.exit(0)
    time.sleep(0.005)
print("never")
'

one_case() { # $1: drain | kill
  ip netns exec $name-cli python3 -c "$load_py" 6 > /tmp/$name.load &
  local load=$!
  sleep 2
  if [ "$1" = drain ]; then
    "$gwctl" -s /run/gateway/$name-gw1.sock drain --timeout 5 >/dev/null
  else
    kill -KILL "$(cat /run/gwlab/$name/gw1/gateway.pid)"
  fi
  local took; took=$(python3 -c "$wait_one_path" $name)
  wait $load
  echo "$1: withdrawn after ${took} s; $(cat /tmp/$name.load)"
}

{
  echo "# perf/ecmp-failover.sh $runs at $(git rev-parse --short HEAD) on $(date -u +%F), $(basename "$(dirname "$bin")") build, load $(cut -d' ' -f1 /proc/loadavg)"
  for i in $(seq 1 "$runs"); do
    GATEWAY_BIN=$bin scripts/lab-ecmp.sh up $name 2 >/dev/null || { echo "run $i: lab did not come up"; continue; }
    echo "run $i: $(one_case drain)"
    "$gwctl" -s /run/gateway/$name-gw1.sock undrain >/dev/null
    sleep 1
    echo "run $i: $(one_case kill)"
    scripts/lab-ecmp.sh down $name >/dev/null
  done
} | tee "$out"
rm -f /tmp/$name.load

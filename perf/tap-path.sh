#!/bin/bash
# Tap-path capacity: TCP (iperf3) from the client to a listener on the gateway's kernel twin.
set -u
# Usage (from the repository root, after a release build in /work/target-perf): perf/tap-path.sh NAME PUNT_RATE
name=$1; rate=$2
cfg=/tmp/$name.toml
cp conf/lab.toml $cfg
printf '\n[kernel]\npunt_rate = %s\npunt_burst = 512\n' "$rate" >> $cfg
GATEWAY_BIN=/work/target-perf/release/gateway scripts/lab.sh up $name $cfg >/dev/null || exit 1
ip netns exec $name-lb iperf3 -s -1 -B 10.10.0.1 -D >/dev/null 2>&1
sleep 0.5
s0=$(cat /run/gwlab/$name/stats.txt)
t0=$(date +%s.%N)
ip netns exec $name-cli iperf3 -c 10.10.0.1 -t 5 -J > /tmp/$name-iperf.json
t1=$(date +%s.%N)
sleep 0.5
s1=$(cat /run/gwlab/$name/stats.txt)
sum() { echo "$1" | grep "^punt " | awk -v k=$2 '{for(i=1;i<=NF;i++) if($i==k) s+=$(i+1)} END{print s+0}'; }
up=$(( $(sum "$s1" punt_local) - $(sum "$s0" punt_local) ))
down=$(( $(sum "$s1" from_kernel) - $(sum "$s0" from_kernel) ))
lim=$(( $(sum "$s1" punt_limited) - $(sum "$s0" punt_limited) ))
bps=$(python3 -c "import json;d=json.load(open('/tmp/$name-iperf.json'));print(round(d['end']['sum_received']['bits_per_second']/1e6,1))")
el=$(python3 -c "print($t1-$t0)")
echo "punt_rate=$rate iperf3_mbps=$bps frames_up=$up frames_down=$down punt_limited=$lim seconds=$el up_pps=$(python3 -c "print(round($up/$el))") down_pps=$(python3 -c "print(round($down/$el))")"
scripts/lab.sh down $name >/dev/null 2>&1; rm -rf /run/gwlab/$name
rm -f $cfg

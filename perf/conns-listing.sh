#!/bin/bash
# `ipvsadm -Lnc` of about a million connections (issue 20): SYNs from random sources to the VIP,
# held in SYN_RECV for 60 s, listed while curl goes through the VIP; release build, the lab.
# Usage (from the repository root): perf/conns-listing.sh [FLOOD_SECONDS]   (default 12; ~55 for a million)
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${GATEWAY_BIN:-/work/target-perf/release/gateway}
gwctl=$(dirname "$bin")/gwctl
secs=${1:-12}
name=cl$$
cfg=/tmp/$name.toml
# The flood goes to VIP:8080, whose real server does not exist (its entries wait in SYN_RECV,
# kept 10 minutes here), so the real servers behind VIP:80, which curl uses, are not flooded.
. "$here/perf/lab-dual-stack.sh"
cp "$here/conf/lab.toml" "$cfg"
# 16 LIPs x 64,512 local ports: room for a million FullNAT connections.
flood_conf "$cfg" 16
GATEWAY_BIN=$bin "$here/scripts/lab.sh" up "$name" "$cfg" >/dev/null || exit 1
rm -f "$cfg"
export GATEWAY_SOCKET=/run/gateway/$name.sock
t0=$(date +%s.%N)
# hping3 --flood, bounded by time (and by SYNS through the table capacity it fills).
ip netns exec "$name-cli" timeout "$secs" hping3 -q -S -p 8080 --flood --rand-source 10.10.0.100 >/dev/null 2>&1
t1=$(date +%s.%N)
sleep 0.5
conns=$(grep "^conn " /run/gwlab/$name/stats.txt | awk '{for(i=1;i<=NF;i++) if($i=="conns") s+=$(i+1)} END{print s}')
curls() { # the label, 40 requests 50 ms apart through the VIP
  local ok=0
  for i in $(seq 1 40); do ip netns exec "$name-cli" curl -s -m 2 -o /dev/null http://10.10.0.100/ && ok=$((ok+1)); sleep 0.05; done
  echo "$1=$ok/40"
}
(curls curl_ok_during_listing > /tmp/$name.curl) &
t2=$(date +%s.%N)
lines=$("$gwctl" ipvsadm -Lnc | wc -l)
t3=$(date +%s.%N)
wait
before=$(curls curl_ok_after_listing)
echo "flood_s=$(python3 -c "print(round($t1-$t0,1))") conns_in_tables=$conns listed=$((lines - 2)) list_s=$(python3 -c "print(round($t3-$t2,2))") $before $(cat /tmp/$name.curl)"
"$here/scripts/lab.sh" down "$name" >/dev/null; rm -rf /tmp/$name.curl "/run/gwlab/$name"

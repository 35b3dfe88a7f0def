#!/bin/bash
# How often the gateway probes its busy IPv6 real servers (perf/RESULTS.md, "IPv6 neighbours
# confirmed by their traffic"): the dual-stack lab (perf/lab-dual-stack.sh, 2 workers), wrk over
# IPv6 for SECONDS (4 keep-alive connections to the VIP), and on rs1 and rs2 a capture of the
# neighbour solicitations they receive; prints the unicast ones (NUD probes, RFC 4861 7.3.3) to
# each, and the gateway's IPv6 neighbour entries for them at the end.
# Usage: perf/nd6-probes.sh GATEWAY_BIN [NAME] [SECONDS]   (root; gwctl beside the gateway; wrk,
# tcpdump)
set -u
bin=$1 name=${2:-nd6} secs=${3:-70}
cd "$(dirname "$0")/.."
. perf/lab-dual-stack.sh
dir=$(mktemp -d)
trap 'scripts/lab.sh down "$name" >/dev/null 2>&1; rm -rf "/run/gwlab/$name" "$dir"' EXIT
dual_stack_conf >"$dir/conf.toml"
GATEWAY_BIN=$bin scripts/lab.sh up "$name" "$dir/conf.toml" >/dev/null 2>&1 ||
    { echo "lab failed"; exit 1; }
scripts/lab.sh ipv6 "$name" >/dev/null 2>&1 || { echo "ipv6 failed"; exit 1; }
for rs in rs1 rs2; do
    ip netns exec "$name-$rs" timeout $((secs + 5)) \
        tcpdump -i eth0 -n -l 'icmp6 and ip6[40] == 135' >"$dir/ns-$rs.txt" 2>/dev/null &
done
sleep 1
ip netns exec "$name-cli" timeout $((secs + 3)) \
    wrk -t1 -c4 -d${secs}s 'http://[2001:db8:10::100]/' >"$dir/wrk.txt" 2>&1
wait
gwctl="$(dirname "$bin")/gwctl -s /run/gateway/$name.sock"
echo "# $bin, $secs s"
grep -E "Requests/sec|requests in" "$dir/wrk.txt"
for rs in rs1 rs2; do
    ip=2001:db8:20::1${rs#rs}
    uni=$(grep -c "> $ip: ICMP6, neighbor solicitation" "$dir/ns-$rs.txt")
    all=$(grep -c "neighbor solicitation" "$dir/ns-$rs.txt")
    echo "$rs: unicast solicitations to it $uni (all solicitations seen $all)"
done
$gwctl neigh 2>/dev/null | grep -i "2001:db8:20::1[12]" || true

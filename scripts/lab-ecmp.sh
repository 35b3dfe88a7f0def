#!/usr/bin/env bash
# The ECMP lab: N active gateways behind a router that spreads flows over them (DESIGN.md decision
# 16). Every gateway runs BIRD (Debian's bird2, unmodified) in its namespace, speaking BGP and BFD
# through its kernel twin; the router runs BIRD too and installs one multipath route per VIP,
# hashed on L4.
#
#   <name>-cli   client         eth0 10.30.0.2/24, default via 10.30.0.1
#   <name>-rtr   router         eth0 10.30.0.1/24 (client), eth1 10.10.0.254/24 (front switch),
#                               eth2 10.20.0.254/24 (server switch, where DR replies come back);
#                               BIRD AS 65000: BGP + BFD to each gateway, ECMP into the kernel
#                               (merge paths), fib_multipath_hash_policy=1 (source and destination
#                               addresses and ports)
#   <name>-fsw   front switch   br0: the router and every gateway's client port
#   <name>-gwK   gateway K      lbc (DPDK "client") 10.10.0.1K/24, lbs (DPDK "server") 10.20.0.K/24,
#                               LIPs 10.20.0.2K1-10.20.0.2K2 (per box); one worker; BIRD AS 65001
#                               exporting what the gateway puts in kernel table 100 ([announce])
#   <name>-sw    server switch  br0: the router, every gateway's server port, rs1, rs2
#   <name>-rs1/2 real servers   eth0 10.20.0.11-12/24, nginx on :80 and :8080, the VIP on lo with
#                               arp_ignore/arp_announce (DR), default via 10.20.0.254
#
# The VIP 10.99.0.100 is outside every subnet: only BGP makes it reachable. :80 is FullNAT and :8080
# DR, both `mh` with `mh-port`, so every gateway picks the same real server for a flow.
#
# LAB_IPV6=1 at `up`: dual stack. The client 2001:db8:30::2/64 behind the router's
# 2001:db8:30::1/64; the router 2001:db8:10::254/64 on the front switch and 2001:db8:20::254/64 on
# the server switch; gateway K's ports 2001:db8:10::1K/64 and 2001:db8:20::K/64, its LIP
# 2001:db8:20::2K1; the real servers 2001:db8:20::11-12/64, VIP6 on lo and default via
# 2001:db8:20::254 (DR). VIP6 2001:db8:99::100 :80 (FullNAT) and :8080 (DR), both `mh` with
# `mh-port`, announced over a second BGP session per gateway, IPv6 to IPv6, from the IPv6 half of
# table 100 (`ip -6 route show table 100`), into an IPv6 multipath route hashed on L4.
#
# Usage (also as `lab.sh ecmp ...`):
#   lab-ecmp.sh up     [NAME] [N]   build it with N gateways (default NAME gwecmp, N 2; at most 3)
#   lab-ecmp.sh down   [NAME]       stop everything and remove the namespaces (idempotent)
#   lab-ecmp.sh status [NAME]       namespaces, the router's BGP sessions and route to the VIP
#   lab-ecmp.sh demo   [NAME]       curls and wrk through the VIP, each gateway's share, a drain
#   lab-ecmp.sh gateway NAME K start|kill   (re)start or SIGKILL gateway K
# Files: /run/gwlab/NAME/gwK/{gateway.toml,gateway.log,bird.conf,bird.ctl}; admin sockets
# /run/gateway/NAME-gwK.sock (gwctl -s PATH); the router's BIRD at /run/gwlab/NAME/rtr/bird.ctl.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-status}
name=${2:-gwecmp}
run_dir=/run/gwlab/$name
VIP=10.99.0.100
VIP6=2001:db8:99::100
TABLE=100
BGP_TIMERS="hold time 3; keepalive time 1; connect retry time 1; error wait time 1, 5;"

# shellcheck source=scripts/lab-lib.sh
. "$here/scripts/lab-lib.sh"

# Whether the lab was built dual-stack (LAB_IPV6=1 at `up`): every later command follows.
[ -f "$run_dir/ipv6" ] && export LAB_IPV6=1
dual() { [ "${LAB_IPV6:-0}" = 1 ]; }

# BIRD with its control socket, pid file and log in DIR.
start_bird() {
  local n=$1 dir=$2
  nsx "$n" bird -c "$dir/bird.conf" -s "$dir/bird.ctl" -P "$dir/bird.pid"
  for _ in $(seq 1 50); do [ -S "$dir/bird.ctl" ] && return 0; sleep 0.1; done
  echo "lab-ecmp.sh: BIRD did not start in $n" >&2
  cat "$dir/bird.log" >&2 || true
  return 1
}

router_bird_conf() {
  local count=$1
  cat <<BIRD
# The router (AS 65000): one BGP session with BFD per gateway; every gateway's route to a VIP is an
# equal-cost path, merged into one multipath route in the kernel.
log "$run_dir/rtr/bird.log" all;
router id 10.10.0.254;
protocol device { scan time 10; }
protocol bfd {
  interface "eth1" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };
}
BIRD
  router_family ipv4 "" 10.10.0.254 10.10.0.1 "$count"
  # IPv6: a session of its own per gateway, its paths merged as IPv4's.
  if dual; then router_family ipv6 v6 2001:db8:10::254 2001:db8:10::1 "$count"; fi
}

# The router's part for one family (ipv4 or ipv6): its kernel protocol merging the paths, and a
# session from LOCAL to each gateway K at PEER_PREFIX K (protocols gwK SUFFIX).
router_family() {
  local af=$1 suffix=$2 local_addr=$3 peer=$4 count=$5 k
  cat <<BIRD
protocol kernel multipath$suffix {
  merge paths on;
  $af { import none; export all; };
}
template bgp gwpeer$suffix {
  local $local_addr as 65000;
  bfd on;
  $BGP_TIMERS
  $af { import all; export none; };
}
BIRD
  for k in $(seq 1 "$count"); do
    echo "protocol bgp gw$k$suffix from gwpeer$suffix { neighbor $peer$k as 65001; }"
  done
}

gateway_bird_conf() {
  local k=$1
  cat <<BIRD
# Gateway $k (AS 65001): announces what the gateway puts in kernel table $TABLE (conf/bird/gateway.conf).
log "$run_dir/gw$k/bird.log" all;
router id 10.10.0.1$k;
protocol device { scan time 10; }
ipv4 table announced;
protocol kernel announced_vips {
  kernel table $TABLE;
  learn;
  scan time 2;
  ipv4 { table announced; import all; export none; };
}
protocol bfd {
  interface "client" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };
}
protocol bgp uplink {
  local 10.10.0.1$k as 65001;
  neighbor 10.10.0.254 as 65000;
  bfd on;
  $BGP_TIMERS
  ipv4 { table announced; import none; export all; next hop self; };
}
BIRD
  dual || return 0
  cat <<BIRD
# IPv6: the IPv6 half of kernel table $TABLE (the gateway's /128 routes), over an IPv6 session.
ipv6 table announced6;
protocol kernel announced_vips6 {
  kernel table $TABLE;
  learn;
  scan time 2;
  ipv6 { table announced6; import all; export none; };
}
protocol bgp uplink6 {
  local 2001:db8:10::1$k as 65001;
  neighbor 2001:db8:10::254 as 65000;
  bfd on;
  $BGP_TIMERS
  ipv6 { table announced6; import none; export all; next hop self; };
}
BIRD
}

gateway_conf() {
  local k=$1
  echo "# Gateway $k of the ECMP lab (scripts/lab-ecmp.sh)."
  gateway_toml_head "$k" 1
  cat <<TOML

# The client network is behind the router.
[[route]]
prefix = "0.0.0.0/0"
via = "10.10.0.254"
port = "client"

[conn]
capacity = 65536

[announce]
table = $TABLE
drain_timeout_s = 30
withdraw_wait_ms = 500

[[service]]
vip = "$VIP"
port = 80
scheduler = "mh"
scheduler_flags = ["mh-port"]
local_addresses = ["10.20.0.2${k}1", "10.20.0.2${k}2"]
[[service.real]]
address = "10.20.0.11"
[[service.real]]
address = "10.20.0.12"

[[service]]
vip = "$VIP"
port = 8080
scheduler = "mh"
scheduler_flags = ["mh-port"]
[[service.real]]
address = "10.20.0.11"
mode = "dr"
[[service.real]]
address = "10.20.0.12"
mode = "dr"
TOML
  dual || return 0
  cat <<TOML

[[route]]
prefix = "::/0"
via = "2001:db8:10::254"
port = "client"

[[service]]
vip = "$VIP6"
port = 80
scheduler = "mh"
scheduler_flags = ["mh-port"]
local_addresses = ["2001:db8:20::2${k}1"]
[[service.real]]
address = "2001:db8:20::11"
[[service.real]]
address = "2001:db8:20::12"

[[service]]
vip = "$VIP6"
port = 8080
scheduler = "mh"
scheduler_flags = ["mh-port"]
[[service.real]]
address = "2001:db8:20::11"
mode = "dr"
[[service.real]]
address = "2001:db8:20::12"
mode = "dr"
TOML
}

# Starts gateway K (its config and BIRD are in place); waits until it is ready.
start_gateway() { start_gateway_at "gw$1" "$run_dir/gw$1"; }

count_of() { cat "$run_dir/count" 2>/dev/null || echo 3; }

# Waits until the router's route to the VIP (VIP6 with a second argument "6") has N next hops (at
# most 20 s).
wait_paths() {
  local want=$1 family=${2:-4} have=0 vip=$VIP
  [ "$family" = 6 ] && vip=$VIP6
  for _ in $(seq 1 200); do
    have=$(nsx rtr ip "-$family" route show "$vip" 2>/dev/null | grep -c 'nexthop\|via' || true)
    [ "$have" = "$want" ] && return 0
    sleep 0.1
  done
  echo "lab-ecmp.sh: the router has $have paths to $vip, not $want" >&2
  return 1
}

up() {
  local count=${3:-2}
  case "$count" in 1|2|3) ;; *) echo "lab-ecmp.sh: 1 to 3 gateways, not $count" >&2; exit 2 ;; esac
  down >/dev/null 2>&1 || true
  mkdir -p "$run_dir/rtr"
  echo "$count" > "$run_dir/count"
  if dual; then touch "$run_dir/ipv6"; fi
  for n in cli rtr fsw sw rs1 rs2; do new_ns $n; done
  for s in fsw sw; do nsx $s ip link add br0 type bridge; nsx $s ip link set br0 up; done
  # Client and router.
  ip link add eth0 netns "$(ns cli)" type veth peer name eth0 netns "$(ns rtr)"
  quiet_link cli eth0; quiet_link rtr eth0
  nsx cli ip addr add 10.30.0.2/24 dev eth0
  nsx cli ip route add default via 10.30.0.1
  nsx rtr ip addr add 10.30.0.1/24 dev eth0
  ip link add eth1 netns "$(ns rtr)" type veth peer name p-rtr netns "$(ns fsw)"
  ip link add eth2 netns "$(ns rtr)" type veth peer name p-rtr netns "$(ns sw)"
  for s in fsw sw; do nsx $s ip link set p-rtr master br0; quiet_link $s p-rtr; done
  quiet_link rtr eth1; quiet_link rtr eth2
  nsx rtr ip addr add 10.10.0.254/24 dev eth1
  nsx rtr ip addr add 10.20.0.254/24 dev eth2
  # L4 hashing of multipath routes; replies of DR servers come back on eth2, not where the VIP's
  # route points: no reverse-path filtering.
  nsx rtr sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1 \
    net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  for d in eth0 eth1 eth2; do nsx rtr sysctl -qw "net.ipv4.conf.$d.rp_filter=0"; done
  if dual; then
    # nodad: the addresses are usable at once (this lab assigns each once).
    v6on cli
    nsx cli ip -6 addr add 2001:db8:30::2/64 dev eth0 nodad
    nsx cli ip -6 route add default via 2001:db8:30::1
    v6on rtr
    nsx rtr ip -6 addr add 2001:db8:30::1/64 dev eth0 nodad
    nsx rtr ip -6 addr add 2001:db8:10::254/64 dev eth1 nodad
    nsx rtr ip -6 addr add 2001:db8:20::254/64 dev eth2 nodad
    nsx rtr sysctl -qw net.ipv6.conf.all.forwarding=1 net.ipv6.fib_multipath_hash_policy=1
  fi
  # Real servers: DR-ready (the VIP on lo, never answered or announced by ARP).
  local i=11
  for r in rs1 rs2; do
    ip link add eth0 netns "$(ns $r)" type veth peer name "p-$r" netns "$(ns sw)"
    nsx sw ip link set "p-$r" master br0; quiet_link sw "p-$r"
    quiet_link $r eth0
    nsx $r ip addr add 10.20.0.$i/24 dev eth0
    nsx $r ip route add default via 10.20.0.254
    nsx $r ip addr add "$VIP/32" dev lo
    nsx $r sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.eth0.arp_ignore=1 \
      net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.eth0.arp_announce=2
    if dual; then
      v6on $r
      nsx $r ip -6 addr add "2001:db8:20::$i/64" dev eth0 nodad
      # DR: VIP6 on lo, its replies through the router (FullNAT's go to the on-link LIPs).
      nsx $r ip -6 addr add "$VIP6/128" dev lo nodad
      nsx $r ip -6 route add default via 2001:db8:20::254
    fi
    i=$((i + 1))
    start_nginx $r $r
  done
  router_bird_conf "$count" > "$run_dir/rtr/bird.conf"
  start_bird rtr "$run_dir/rtr"
  # Gateways.
  for k in $(seq 1 "$count"); do
    local dir=$run_dir/gw$k
    mkdir -p "$dir"
    add_gateway_node "$k"
    if dual; then gateway_v6on "$k"; fi
    gateway_conf "$k" > "$dir/gateway.toml"
    gateway_bird_conf "$k" > "$dir/bird.conf"
    start_gateway "$k"
    start_bird "gw$k" "$dir"
  done
  wait_paths "$count"
  if dual; then wait_paths "$count" 6; fi
  echo "ecmp lab $name is up: $count gateways, the router has $count paths to $VIP$(dual && echo " and to $VIP6")"
}

down() {
  local k
  for k in 1 2 3; do
    local pidf=$run_dir/gw$k/gateway.pid
    if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
      kill -TERM "$(cat "$pidf")" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$(cat "$pidf")" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$(cat "$pidf")" 2>/dev/null || true
    fi
  done
  for n in cli rtr fsw sw rs1 rs2 gw1 gw2 gw3; do
    if ip netns pids "$(ns $n)" >/dev/null 2>&1; then
      for p in $(ip netns pids "$(ns $n)" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
      ip netns del "$(ns $n)" 2>/dev/null || true
    fi
  done
  for k in 1 2 3; do
    rm -rf "/var/run/dpdk/$name-gw$k"
    rm -f "/run/gateway/$name-gw$k.sock"
  done
  rm -rf "$run_dir"
  echo "ecmp lab $name is down"
}

status() {
  ip netns list | grep -E "^$name-" || { echo "no namespaces for lab $name"; return 0; }
  echo "== router: BGP sessions"
  nsx rtr birdc -s "$run_dir/rtr/bird.ctl" show protocols || true
  echo "== router: route to $VIP"
  nsx rtr ip -4 route show "$VIP" || true
  if dual; then nsx rtr ip -6 route show "$VIP6" || true; fi
  for k in $(seq 1 "$(count_of)"); do
    echo "== gateway $k"
    "$(gwctl_bin)" -s "/run/gateway/$name-gw$k.sock" announce 2>/dev/null || echo "not running"
  done
}

gwctl_bin() {
  local b; b=$(dirname "$(gateway_bin)")/gwctl
  [ -x "$b" ] && echo "$b" || echo gwctl
}

demo() {
  local count; count=$(count_of)
  local gwctl; gwctl=$(gwctl_bin)
  echo "== the router's route to the VIP"
  nsx rtr ip -4 route show "$VIP"
  echo "== 40 curls to the VIP (FullNAT, mh)"
  for _ in $(seq 1 40); do nsx cli curl -s --max-time 3 "http://$VIP/"; done | sort | uniq -c
  echo "== wrk: 5 s, 20 connections, Connection: close, on :8080 (DR)"
  nsx cli timeout 20 wrk -t2 -c20 -d5s -H 'Connection: close' "http://$VIP:8080/" || true
  echo "== connections each gateway created"
  for k in $(seq 1 "$count"); do
    echo "gw$k: $("$gwctl" -s "/run/gateway/$name-gw$k.sock" --json stats \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"]["counters"]["conns_created"])')"
  done
  echo "== drain gw1, wait until the router has $((count - 1)) path(s)"
  "$gwctl" -s "/run/gateway/$name-gw1.sock" drain --timeout 10
  wait_paths $((count - 1)) && nsx rtr ip -4 route show "$VIP"
  echo "== undrain gw1"
  "$gwctl" -s "/run/gateway/$name-gw1.sock" undrain
  wait_paths "$count" && nsx rtr ip -4 route show "$VIP"
}

gateway_cmd() {
  local k=${3:?gateway number} what=${4:?start or kill}
  local pidf=$run_dir/gw$k/gateway.pid
  case "$what" in
    kill) kill -KILL "$(cat "$pidf")" ;;
    start) start_gateway "$k" ;;
    *) echo "lab-ecmp.sh: gateway NAME K start|kill" >&2; exit 2 ;;
  esac
}

case "$cmd" in
  up) up "$@" ;;
  down) down ;;
  status) status ;;
  demo) demo ;;
  gateway) gateway_cmd "$@" ;;
  *) echo "usage: lab-ecmp.sh up|down|status|demo|gateway [NAME] ..." >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# The lab: a network-namespace topology on veth pairs around the gateway.
#
#   <name>-cli  client       eth0 10.10.0.2/24, default via 10.10.0.1 (the gateway)
#   <name>-lb   gateway      lbc (DPDK port "client", af_packet)  lbs (DPDK port "server", af_packet)
#   <name>-sw   switch       br0 joining lbs, rs1, rs2, router
#   <name>-rs1  real server  eth0 10.20.0.11/24, nginx on :80 and :8080 ("rs1")
#   <name>-rs2  real server  eth0 10.20.0.12/24, nginx on :80 and :8080 ("rs2")
#
# The gateway owns 10.10.0.1 (client side), 10.20.0.1 (server side), the VIP 10.10.0.100 and the local
# addresses (LIPs) 10.20.0.200-201. The kernel in <name>-lb has no address on lbc/lbs; its
# interfaces are the gateway's kernel twins `client` and `server` (10.10.0.1/24, 10.20.0.1/24,
# written there by the gateway at start), where its own services (sshd, socat, BIRD) listen.
#
# Usage:
#   lab.sh up     [NAME] [CONFIG]   build the topology, start nginx and the gateway (default NAME gwlab,
#                                   CONFIG conf/lab.toml)
#   lab.sh down   [NAME]            stop everything and remove the namespaces (idempotent)
#   lab.sh status [NAME]            show namespaces, processes and the gateway's counters
#   lab.sh demo   [NAME]            traffic through the gateway: ping, then curl and wrk against the VIP
#   lab.sh exec   NAME NODE CMD...  run CMD in a node's namespace (cli, lb, sw, rs1, rs2, rtr)
#   lab.sh router NAME              add the router for replies that bypass the gateway (DR, TUN):
#                                   <name>-rtr  eth0 10.20.0.254/24 on the switch, eth1 10.10.1.254/24
#                                   to the client's second link (cli eth1 10.10.1.2/24); it routes
#                                   10.10.0.0/24 to the client, which accepts the VIP's replies there
#   lab.sh ipv6   NAME [MODE]       the dual-stack lab (issue 17): IPv6 on the client (eth0
#                                   2001:db8:10::2/64, default via the gateway's 2001:db8:10::1), the
#                                   real servers (2001:db8:20::11, ::12/64, nginx on [::]:80 too) and
#                                   the router (2001:db8:20::254 on the switch, 2001:db8:11::254 to
#                                   the client's eth1 2001:db8:11::2); with MODE dr the real servers
#                                   hold the IPv6 VIP ($LAB_VIP6, default 2001:db8:10::100) on lo and
#                                   reply through the router. The gateway's kernel stays IPv6-free.
#   lab.sh ecmp   up|down|status|demo [NAME] [N]
#                                   the ECMP lab: N gateways behind a BGP router (scripts/lab-ecmp.sh)
#   lab.sh ha     up|down|status|demo|failover [NAME] [WORKERS]
#                                   the HA lab: a keepalived primary/backup pair with connection
#                                   sync (scripts/lab-ha.sh)
#   lab.sh rs     NAME MODE [RS...] set real servers (default rs1 rs2) up for a forwarding mode:
#                                   fullnat  nothing to do (the default lab)
#                                   nat      default route via the gateway (10.20.0.1)
#                                   dr       VIP on lo, arp_ignore=1, arp_announce=2, default route via
#                                            the router (added if missing)
#                                   tun      as dr, plus a TUN device ipip0 fed by scripts/ipip-decap.py
#                                            (the kernel here has no ipip module)
#                                   VIP from $LAB_VIP (default 10.10.0.100)
# Environment: GATEWAY_BIN (default target/release/gateway, else target/debug/gateway).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-status}
name=${2:-gwlab}
run_dir=/run/gwlab/$name

# shellcheck source=scripts/lab-lib.sh
. "$here/scripts/lab-lib.sh"

up() {
  local config=${3:-$here/conf/lab.toml}
  down >/dev/null 2>&1 || true
  # `down` leaves the last run's logs for a look afterwards; a new run starts without them (the
  # real servers' access logs grow by about 100 bytes a request, 400 MB in an afternoon of wrk).
  rm -rf "$run_dir"
  mkdir -p "$run_dir"
  for n in cli lb sw rs1 rs2; do
    ip netns add "$(ns $n)"
    nsx $n ip link set lo up
    nsx $n sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  done
  ip link add eth0 netns "$(ns cli)" type veth peer name lbc netns "$(ns lb)"
  ip link add lbs netns "$(ns lb)" type veth peer name p-lb netns "$(ns sw)"
  nsx sw ip link add br0 type bridge
  nsx sw ip link set br0 up
  for r in rs1 rs2; do
    ip link add eth0 netns "$(ns $r)" type veth peer name "p-$r" netns "$(ns sw)"
  done
  for p in p-lb p-rs1 p-rs2; do
    nsx sw ip link set "$p" master br0
    quiet_link sw "$p"
  done
  quiet_link cli eth0
  nsx cli ip addr add 10.10.0.2/24 dev eth0
  nsx cli ip route add default via 10.10.0.1
  quiet_link lb lbc
  quiet_link lb lbs
  # On a real box DPDK owns the NIC and the kernel never sees its frames. Here lbc/lbs are kernel
  # interfaces the af_packet PMD reads beside the kernel, so the kernel of <name>-lb must not answer
  # on them: the twins (client, server) are its interfaces. Strict reverse-path filtering drops
  # every IP packet arriving on them (no route points back through them) and arp_ignore=8 every
  # ARP request; af_packet still sees all of it.
  for d in lbc lbs; do
    nsx lb sysctl -qw "net.ipv4.conf.$d.rp_filter=1" "net.ipv4.conf.$d.arp_ignore=8"
  done
  local i=11
  for r in rs1 rs2; do
    quiet_link $r eth0
    nsx $r ip addr add 10.20.0.$i/24 dev eth0
    i=$((i + 1))
    start_nginx $r $r
  done
  local bin; bin=$(gateway_bin)
  cp "$config" "$run_dir/gateway.toml"
  # THP for the connection table and other large allocations (glibc >= 2.35 tunable).
  ip netns exec "$(ns lb)" env GLIBC_TUNABLES=glibc.malloc.hugetlb=1 "$bin" --config "$run_dir/gateway.toml" --file-prefix "$name" --stats-file "$run_dir/stats.txt" \
    >"$run_dir/gateway.log" 2>&1 &
  echo $! > "$run_dir/gateway.pid"
  for _ in $(seq 1 100); do
    if grep -q "gateway ready" "$run_dir/gateway.log"; then
      echo "lab $name is up: gateway pid $(cat "$run_dir/gateway.pid"), log $run_dir/gateway.log"
      return 0
    fi
    if ! kill -0 "$(cat "$run_dir/gateway.pid")" 2>/dev/null; then
      echo "lab.sh: the gateway exited:" >&2
      cat "$run_dir/gateway.log" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "lab.sh: the gateway did not become ready in 20 s" >&2
  cat "$run_dir/gateway.log" >&2
  return 1
}

down() {
  if [ -f "$run_dir/gateway.pid" ]; then
    local pid; pid=$(cat "$run_dir/gateway.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  for r in rs1 rs2; do
    if [ -f "$run_dir/$r/nginx.pid" ]; then kill "$(cat "$run_dir/$r/nginx.pid")" 2>/dev/null || true; fi
    if [ -f "$run_dir/$r/decap.pid" ]; then kill "$(cat "$run_dir/$r/decap.pid")" 2>/dev/null || true; fi
  done
  for n in cli lb sw rs1 rs2 rtr rs3; do
    if ip netns pids "$(ns $n)" >/dev/null 2>&1; then
      for p in $(ip netns pids "$(ns $n)" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
      ip netns del "$(ns $n)" 2>/dev/null || true
    fi
  done
  rm -rf "/var/run/dpdk/$name"
  rm -f "/run/gateway/$name.sock"   # the admin socket, if the gateway was killed
  echo "lab $name is down"
}

status() {
  ip netns list | grep -E "^$name-" || echo "no namespaces for lab $name"
  if [ -f "$run_dir/gateway.pid" ] && kill -0 "$(cat "$run_dir/gateway.pid")" 2>/dev/null; then
    echo "gateway running, pid $(cat "$run_dir/gateway.pid")"
    [ -f "$run_dir/stats.txt" ] && cat "$run_dir/stats.txt"
  else
    echo "gateway not running"
  fi
}

router() {
  if ip netns pids "$(ns rtr)" >/dev/null 2>&1; then return 0; fi
  ip netns add "$(ns rtr)"
  nsx rtr ip link set lo up
  nsx rtr sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip link add eth0 netns "$(ns rtr)" type veth peer name p-rtr netns "$(ns sw)"
  nsx sw ip link set p-rtr master br0
  quiet_link sw p-rtr
  ip link add eth1 netns "$(ns rtr)" type veth peer name eth1 netns "$(ns cli)"
  quiet_link rtr eth0
  quiet_link rtr eth1
  quiet_link cli eth1
  nsx rtr ip addr add 10.20.0.254/24 dev eth0
  nsx rtr ip addr add 10.10.1.254/24 dev eth1
  nsx cli ip addr add 10.10.1.2/24 dev eth1
  nsx rtr ip route add 10.10.0.0/24 via 10.10.1.2
  # Replies from the VIP reach the client on eth1 while the VIP's route is on eth0: no strict
  # reverse-path filtering on the way.
  for n in rtr cli; do
    nsx $n sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
    for d in eth0 eth1; do nsx $n sysctl -qw "net.ipv4.conf.$d.rp_filter=0"; done
  done
  nsx rtr sysctl -qw net.ipv4.ip_forward=1
}

vip_on_lo() { # the classic DR real server (seeds): VIP on lo, never answered or announced by ARP
  local r=$1 vip=${LAB_VIP:-10.10.0.100}
  nsx "$r" ip addr replace "$vip/32" dev lo
  nsx "$r" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.lo.arp_ignore=1 net.ipv4.conf.eth0.arp_ignore=1
  nsx "$r" sysctl -qw net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.lo.arp_announce=2 net.ipv4.conf.eth0.arp_announce=2
  nsx "$r" ip route replace default via 10.20.0.254
}

rs_mode() {
  local mode=$1; shift
  local list=("$@")
  [ ${#list[@]} -gt 0 ] || list=(rs1 rs2)
  case "$mode" in
    dr|tun) router ;;
  esac
  for r in "${list[@]}"; do
    case "$mode" in
      fullnat) ;;
      nat) nsx "$r" ip route replace default via 10.20.0.1 ;;
      dr) vip_on_lo "$r" ;;
      tun)
        vip_on_lo "$r"
        nsx "$r" ip tuntap add dev ipip0 mode tun 2>/dev/null || true
        nsx "$r" ip link set ipip0 up
        nsx "$r" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.ipip0.rp_filter=0
        rm -f "$run_dir/$r/decap.ready"
        nsx "$r" python3 "$here/scripts/ipip-decap.py" --tun ipip0 --ready "$run_dir/$r/decap.ready" \
          >"$run_dir/$r/decap.log" 2>&1 &
        echo $! > "$run_dir/$r/decap.pid"
        for _ in $(seq 1 50); do [ -f "$run_dir/$r/decap.ready" ] && break; sleep 0.1; done
        [ -f "$run_dir/$r/decap.ready" ] || { echo "lab.sh: ipip-decap.py did not start in $r" >&2; cat "$run_dir/$r/decap.log" >&2; return 1; }
        ;;
      *) echo "lab.sh: unknown mode $mode (fullnat, nat, dr, tun)" >&2; return 2 ;;
    esac
  done
  echo "lab $name: ${list[*]} set up for $mode"
}

ipv6() {
  local mode=${1:-}
  router
  for n in cli rs1 rs2 rtr; do v6on $n; done
  # nodad: the addresses are usable at once (this lab assigns each once).
  nsx cli ip -6 addr replace 2001:db8:10::2/64 dev eth0 nodad
  nsx cli ip -6 addr replace 2001:db8:11::2/64 dev eth1 nodad
  nsx cli ip -6 route replace default via 2001:db8:10::1 dev eth0
  nsx rtr ip -6 addr replace 2001:db8:20::254/64 dev eth0 nodad
  nsx rtr ip -6 addr replace 2001:db8:11::254/64 dev eth1 nodad
  nsx rtr ip -6 route replace 2001:db8:10::/64 via 2001:db8:11::2
  nsx rtr sysctl -qw net.ipv6.conf.all.forwarding=1
  local i=11
  for r in rs1 rs2; do
    nsx $r ip -6 addr replace "2001:db8:20::$i/64" dev eth0 nodad
    i=$((i + 1))
    if [ "$mode" = dr ]; then
      # Linux answers a neighbour solicitation only for an address of the interface it came in
      # on: the VIP on lo needs no counterpart of arp_ignore.
      nsx $r ip -6 addr replace "${LAB_VIP6:-2001:db8:10::100}/128" dev lo
      nsx $r ip -6 route replace default via 2001:db8:20::254
    fi
    if [ -f "$run_dir/$r/nginx.pid" ]; then kill "$(cat "$run_dir/$r/nginx.pid")" 2>/dev/null || true; fi
    for _ in $(seq 1 50); do [ -f "$run_dir/$r/nginx.pid" ] || break; sleep 0.1; done
    LAB_IPV6=1 start_nginx $r $r
  done
  echo "lab $name: IPv6 up${mode:+ for $mode}"
}

demo() {
  echo "== ping the gateway from the client"
  nsx cli ping -c 3 -i 0.2 -W 1 10.10.0.1
  echo "== 20 requests with curl to the VIP (FullNAT to rs1/rs2)"
  for _ in $(seq 1 20); do nsx cli curl -s --max-time 3 http://10.10.0.100/; done | sort | uniq -c
  echo "== wrk: 5 s, 2 threads, 20 connections"
  nsx cli timeout 20 wrk -t2 -c20 -d5s http://10.10.0.100/ || true
  echo "== peers the real servers saw (the gateway's local addresses)"
  for r in rs1 rs2; do echo "$r: $(cut -d' ' -f1 "$run_dir/$r/peer.log" | sort | uniq -c | tr '\n' ' ')"; done
  echo "== gateway counters"
  kill -USR1 "$(cat "$run_dir/gateway.pid")"; sleep 0.3
  [ -f "$run_dir/stats.txt" ] && cat "$run_dir/stats.txt"
}

case "$cmd" in
  up) up "$@" ;;
  down) down ;;
  status) status ;;
  demo) demo ;;
  exec) shift 2; node=$1; shift; nsx "$node" "$@" ;;
  router) router ;;
  rs) shift 2; rs_mode "$@" ;;
  ipv6) shift 2; ipv6 "$@" ;;
  ecmp) shift; exec "$here/scripts/lab-ecmp.sh" "$@" ;;
  ha) shift; exec "$here/scripts/lab-ha.sh" "$@" ;;
  *) echo "usage: lab.sh up|down|status|demo|exec|router|rs|ipv6|ecmp|ha [NAME] ..." >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# The HA lab: a primary/backup pair of gateways on the same client and server segments (DESIGN.md
# decision 15, issue 12). keepalived (Debian's, unmodified, VRRP only) runs in each gateway's
# namespace on its kernel twins and floats the VIP and the LIPs: both boxes use the same LIPs, so
# the real servers' replies reach whichever holds them. The gateways sync their connections
# ([sync], role auto: the box whose twin holds the VIP is the master), so established FullNAT
# connections survive a failover.
#
#   <name>-cli   client         eth0 10.10.0.2/24 on the front switch
#   <name>-fsw   front switch   br0: the client and each gateway's client port
#   <name>-gwK   gateway K      lbc (DPDK "client") 10.10.0.1K/24, lbs (DPDK "server") 10.20.0.K/24;
#                               keepalived: VRRPv3 instance 51 on the twin "client", advert_int
#                               0.1 s, priority 150 (gw1) / 100 (gw2), preempt (unless nopreempt),
#                               FAULT until `gwctl sync ready` (track_script: resynced);
#                               virtual_ipaddress: the VIP 10.10.0.100 on "client", the LIPs
#                               10.20.0.201-202 on "server"; sync to the other gateway on "server"
#   <name>-sw    server switch  br0: each gateway's server port, rs1, rs2
#   <name>-rs1/2 real servers   eth0 10.20.0.11-12/24, nginx on :80
#
# LAB_IPV6=1 at `up`: dual stack. The client 2001:db8:10::2/64, the gateways' ports
# 2001:db8:10::1K/64 and 2001:db8:20::K/64, the real servers 2001:db8:20::11-12/64; an IPv6
# service too, VIP6 2001:db8:10::100 (owner "kernel", FullNAT from the LIP 2001:db8:20::201),
# which keepalived floats with the VIP (virtual_ipaddress_excluded: an IPv4 VRRP instance's
# addresses of the other family). `failover NAME EVENT ipv6` runs wrk and ping through VIP6.
#
# Usage (also as `lab.sh ha ...`):
#   lab-ha.sh up     [NAME] [WORKERS] [nopreempt]   build it (default NAME gwha, 1 worker per gateway)
#   lab-ha.sh down   [NAME]                         stop everything, remove the namespaces
#   lab-ha.sh status [NAME]                         who holds the VIP, each gateway's sync state
#   lab-ha.sh demo   [NAME]                         wrk keep-alive through the VIP, SIGKILL of the
#                                                   primary mid-run: takeover time, connections kept
#   lab-ha.sh failover NAME kill|keepalived-stop|failback [ipv6]   the same with another event
#   lab-ha.sh measure NAME [SECONDS]                sync's bandwidth and CPU under short connections
#   lab-ha.sh gateway NAME K start|kill|term        (re)start or stop gateway K (keepalived stays)
#   lab-ha.sh keepalived NAME K start|stop          start or stop gateway K's keepalived
# SYNC_GROUP=224.0.0.81 (say) at `up`: sync over that multicast group rather than unicast.
# LAB_CAPACITY=N at `up`: N connections a worker in each family ([conn] capacity and capacity6;
# default 65536).
# Files: /run/gwlab/NAME/gwK/{gateway.toml,gateway.log,keepalived.conf,keepalived.log}; admin
# sockets /run/gateway/NAME-gwK.sock (gwctl -s PATH).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-status}
name=${2:-gwha}
run_dir=/run/gwlab/$name
VIP=10.10.0.100
VIP6=2001:db8:10::100
# The pair's sync key (a lab key; a real pair generates its own: `openssl rand -hex 32`).
SYNC_KEY=67617465776179206861206c6162206b657920666f722074657374696e6721
# The pair's SYN cookie key, the same on both boxes as conf/README.md's [synproxy] asks: a
# client whose handshake straddles a takeover still proves the cookie the old master sent it.
SYNPROXY_KEY=73796e70726f7879206b6579206f66207468652067617465776179206c616221

# shellcheck source=scripts/lab-lib.sh
. "$here/scripts/lab-lib.sh"

workers_of() { cat "$run_dir/workers" 2>/dev/null || echo 1; }
# Whether the lab was built dual-stack (LAB_IPV6=1 at `up`): every later command follows.
[ -f "$run_dir/ipv6" ] && export LAB_IPV6=1

gateway_conf() {
  local k=$1 workers=$2 other=$(( 3 - $1 ))
  echo "# Gateway $k of the HA lab (scripts/lab-ha.sh)."
  gateway_toml_head "$k" "$workers"
  cat <<TOML

[conn]
capacity = ${LAB_CAPACITY:-65536}
capacity6 = ${LAB_CAPACITY:-65536}

# Connections to the other gateway; the box whose twin holds the VIP (keepalived's MASTER) sends.
[sync]
role = "auto"
port = "server"
peer = "${SYNC_GROUP:-10.20.0.$other}"
key = "$SYNC_KEY"
refresh_s = 5

[synproxy]
key = "$SYNPROXY_KEY"

# The VIP is keepalived's: served while it is on a twin. Its LIPs follow it.
[[service]]
vip = "$VIP"
port = 80
owner = "kernel"
scheduler = "rr"
local_addresses = ["10.20.0.201", "10.20.0.202"]
[[service.real]]
address = "10.20.0.11"
[[service.real]]
address = "10.20.0.12"
TOML
  [ "${LAB_IPV6:-0}" = 1 ] || return 0
  cat <<TOML

# The IPv6 VIP is keepalived's too, floated with the IPv4 one; its LIP follows it.
[[service]]
vip = "$VIP6"
port = 80
owner = "kernel"
scheduler = "rr"
local_addresses = ["2001:db8:20::201"]
[[service.real]]
address = "2001:db8:20::11"
[[service.real]]
address = "2001:db8:20::12"
TOML
}

keepalived_conf() {
  local k=$1 preempt=$2 prio=$(( k == 1 ? 150 : 100 ))
  [ -n "$preempt" ] || preempt="# preempts (keepalived's default)"
  cat <<KA
# Gateway $k's keepalived (scripts/lab-ha.sh): VRRP only, on the gateway's kernel twins.
global_defs {
  router_id $name-gw$k
  vrrp_version 3
  # A second round of gratuitous ARPs 1 s after taking over (keepalived's default waits 5 s).
  vrrp_garp_master_delay 1
  # The twins go with their gateway and come back with it (a restart): follow them.
  dynamic_interfaces
  script_user root
}
# FAULT (never MASTER) while the gateway is not ready: a restarted primary that preempts takes
# the VIP back only once it holds the backup's connections (conf/README.md, [sync]).
vrrp_script gateway_ready {
  script "$(gwctl_bin) -s /run/gateway/$name-gw$k.sock sync ready"
  interval 1
  timeout 2
  rise 1
  # At once: a gateway that crashes and is back within a few seconds must not find the script
  # still good and preempt before its resync.
  fall 1
  init_fail
}
vrrp_instance VI_1 {
  state BACKUP
  interface client
  virtual_router_id 51
  priority $prio
  advert_int 0.1
  $preempt
  track_script {
    gateway_ready
  }
  virtual_ipaddress {
    $VIP/24 dev client
    10.20.0.201/24 dev server
    10.20.0.202/24 dev server
  }
KA
  if [ "${LAB_IPV6:-0}" = 1 ]; then
    # Unsolicited neighbour advertisements for these on takeover, as gratuitous ARPs for the
    # others: the client and the real servers learn the new master's MAC at once.
    cat <<KA
  virtual_ipaddress_excluded {
    $VIP6/64 dev client
    2001:db8:20::201/64 dev server
  }
KA
  fi
  echo "}"
}

start_gateway() { start_gateway_at "gw$1" "$run_dir/gw$1"; }

stop_gateway() {
  local k=$1 sig=${2:-TERM} pidf=$run_dir/gw$1/gateway.pid
  [ -f "$pidf" ] || return 0
  local pid; pid=$(cat "$pidf")
  kill -0 "$pid" 2>/dev/null || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  # A killed gateway leaves its hugepage files and admin socket.
  rm -rf "/var/run/dpdk/$name-gw$k"
  rm -f "/run/gateway/$name-gw$k.sock"
}

# keepalived in gateway K's namespace, on its twins (which the gateway must have created).
start_keepalived() {
  local k=$1 dir=$run_dir/gw$1
  ip netns exec "$(ns "gw$k")" keepalived --vrrp --dont-fork --log-console --log-detail \
    -f "$dir/keepalived.conf" -p "$dir/keepalived.pid" -r "$dir/vrrp.pid" \
    >"$dir/keepalived.log" 2>&1 &
  echo $! > "$dir/keepalived.main.pid"
}

stop_keepalived() {
  local pidf=$run_dir/gw$1/keepalived.main.pid
  [ -f "$pidf" ] || return 0
  local pid; pid=$(cat "$pidf")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidf"
}

# The gateway whose client twin holds the VIP (none: empty).
holder() {
  local k
  for k in 1 2; do
    ip netns pids "$(ns "gw$k")" >/dev/null 2>&1 || continue
    if nsx "gw$k" ip -4 -o addr show dev client 2>/dev/null | grep -q " $VIP/"; then
      echo "$k"; return 0
    fi
  done
}

wait_holder() {
  local want=$1
  for _ in $(seq 1 100); do
    [ "$(holder)" = "$want" ] && return 0
    sleep 0.1
  done
  echo "lab-ha.sh: gateway $want does not hold $VIP (holder: $(holder))" >&2
  return 1
}

# Waits (up to 30 s: CI runs several labs at once) until gateway K's sync role is ROLE
# (`gwctl sync`'s first line).
wait_role() {
  local k=$1 want=$2 i
  for i in $(seq 1 300); do
    "$(gwctl_bin)" -s "/run/gateway/$name-gw$k.sock" sync 2>/dev/null | grep -q "^role $want" && return 0
    sleep 0.1
  done
  echo "lab-ha.sh: gateway $k's sync role is not $want after 30 s: $("$(gwctl_bin)" -s "/run/gateway/$name-gw$k.sock" sync 2>&1 | head -1)" >&2
  return 1
}

# Waits until gateway 2's keepalived has settled as the backup. Just after it starts, under
# load (CI runs several labs at once, each gateway's workers polling), gateway 1's adverts can
# reach it later than its master-down interval (three adverts and the skew, 0.36 s at priority
# 100): it then takes the VIPs for a moment, and its gratuitous ARPs and neighbour adverts turn the
# client and the real servers to gateway 2 until keepalived 1, hearing its lower priority, sends
# its own (a second later in CI's log). A test whose connections open in that moment may lose
# them (CI saw such a moment, and 18 of 20 stall). After such a flap the lab's hosts forget the
# VIPs' neighbours, so they ask again and the holder answers.
settle_backup() {
  local log=$run_dir/gw2/keepalived.log i n
  for i in $(seq 1 300); do
    grep -q "Entering BACKUP STATE" "$log" 2>/dev/null && break
    sleep 0.1
  done
  if ! grep -q "Entering BACKUP STATE" "$log" 2>/dev/null; then
    echo "lab-ha.sh: gateway 2's keepalived did not become the backup in 30 s:" >&2
    tail -5 "$log" >&2 || true
    return 1
  fi
  # About three master-down intervals: keepalived 2 is slow too under load.
  sleep 1.1
  if grep -q "Entering MASTER STATE" "$log"; then
    for i in $(seq 1 300); do
      [ "$(grep -o "Entering [A-Z]* STATE" "$log" | tail -1)" = "Entering BACKUP STATE" ] && break
      sleep 0.1
    done
    # Its twins no longer hold the VIPs (the role follows them), so only gateway 1 answers.
    wait_role 2 backup
    for n in cli rs1 rs2; do nsx "$n" ip neigh flush all || true; done
    echo "lab-ha.sh: gateway 2's keepalived was MASTER for a moment as it started; the hosts' neighbours flushed"
  fi
  wait_holder 1
  wait_role 2 backup
}

up() {
  local workers=${3:-1} preempt=""
  [ "${4:-}" = "nopreempt" ] && preempt="nopreempt"
  case "$workers" in 1|2) ;; *) echo "lab-ha.sh: 1 or 2 workers, not $workers" >&2; exit 2 ;; esac
  down >/dev/null 2>&1 || true
  mkdir -p "$run_dir"
  echo "$workers" > "$run_dir/workers"
  [ "${LAB_IPV6:-0}" = 1 ] && touch "$run_dir/ipv6"
  for n in cli fsw sw rs1 rs2; do new_ns $n; done
  for s in fsw sw; do nsx $s ip link add br0 type bridge; nsx $s ip link set br0 up; done
  ip link add eth0 netns "$(ns cli)" type veth peer name p-cli netns "$(ns fsw)"
  nsx fsw ip link set p-cli master br0; quiet_link fsw p-cli; quiet_link cli eth0
  nsx cli ip addr add 10.10.0.2/24 dev eth0
  if [ "${LAB_IPV6:-0}" = 1 ]; then
    v6on cli
    nsx cli ip -6 addr add 2001:db8:10::2/64 dev eth0 nodad
  fi
  local i=11
  for r in rs1 rs2; do
    ip link add eth0 netns "$(ns $r)" type veth peer name "p-$r" netns "$(ns sw)"
    nsx sw ip link set "p-$r" master br0; quiet_link sw "p-$r"
    quiet_link $r eth0
    nsx $r ip addr add 10.20.0.$i/24 dev eth0
    if [ "${LAB_IPV6:-0}" = 1 ]; then
      v6on $r
      nsx $r ip -6 addr add "2001:db8:20::$i/64" dev eth0 nodad
    fi
    i=$((i + 1))
    start_nginx $r $r
  done
  for k in 1 2; do
    local dir=$run_dir/gw$k
    mkdir -p "$dir"
    add_gateway_node "$k"
    [ "${LAB_IPV6:-0}" = 1 ] && gateway_v6on "$k"
    gateway_conf "$k" "$workers" > "$dir/gateway.toml"
    keepalived_conf "$k" "$preempt" > "$dir/keepalived.conf"
    start_gateway "$k"
  done
  # Gateway 1's keepalived first, holding the VIP before gateway 2's starts: with nopreempt,
  # whichever became MASTER first would keep it (CI once saw gateway 2 win the race).
  start_keepalived 1
  wait_holder 1
  # Its sync role follows the twin's VIP a moment later (the kernel mirror): tests read it at once.
  wait_role 1 master
  start_keepalived 2
  settle_backup
  echo "ha lab $name is up: gateway 1 holds $VIP ($workers worker(s) per gateway)"
}

down() {
  local k
  for k in 1 2; do stop_keepalived "$k" 2>/dev/null || true; stop_gateway "$k" 2>/dev/null || true; done
  for r in rs1 rs2; do
    if [ -f "$run_dir/$r/nginx.pid" ]; then kill "$(cat "$run_dir/$r/nginx.pid")" 2>/dev/null || true; fi
  done
  for n in cli fsw sw rs1 rs2 gw1 gw2; do
    if ip netns pids "$(ns $n)" >/dev/null 2>&1; then
      for p in $(ip netns pids "$(ns $n)" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
      ip netns del "$(ns $n)" 2>/dev/null || true
    fi
  done
  for k in 1 2; do
    rm -rf "/var/run/dpdk/$name-gw$k"
    rm -f "/run/gateway/$name-gw$k.sock"
  done
  rm -rf "$run_dir"
  echo "ha lab $name is down"
}

gwctl_bin() {
  local b; b=$(dirname "$(gateway_bin)")/gwctl
  [ -x "$b" ] && echo "$b" || echo gwctl
}

status() {
  ip netns list | grep -E "^$name-" || { echo "no namespaces for lab $name"; return 0; }
  echo "== $VIP is on gateway $(holder)"
  for k in 1 2; do
    echo "== gateway $k"
    "$(gwctl_bin)" -s "/run/gateway/$name-gw$k.sock" sync 2>/dev/null || echo "not running"
  done
}

# wrk with keep-alive (20 connections, 10 s) through the VIP and a ping every 10 ms, with EVENT
# 3 s in: `kill` (SIGKILL of gateway 1's gateway), `keepalived-stop` (gateway 1's keepalived
# stopped, its gateway running: VRRP priority 0), `failback` (gateway 1's gateway started again;
# it resyncs and, unless nopreempt, takes the VIP back). Prints the takeover time (the longest
# gap in the ping's answers) and the connections: those that carried requests in the second
# before the event, how many of them still did from 4 s after it (wrk's last 3 s), and how many
# new ones wrk had to open (each real server logs every request with its connection's
# LIP:lport).
failover() {
  local event=${3:-kill} url="http://$VIP/" target=$VIP
  if [ "${4:-}" = ipv6 ]; then url="http://[$VIP6]/"; target=$VIP6; fi
  local gwctl; gwctl=$(gwctl_bin)
  for r in rs1 rs2; do : > "$run_dir/$r/conns.log"; done
  echo "== wrk: 20 connections, keep-alive, 10 s, to $url; event '$event' 3 s in (VIP on gateway $(holder))"
  nsx cli timeout 30 wrk -t2 -c20 -d10s --timeout 5s "$url" > "$run_dir/wrk.txt" 2>&1 &
  local wrk=$!
  sleep 2.5
  nsx cli ping -n -i 0.01 -W 1 -w 8 "$target" > "$run_dir/ping.txt" 2>&1 &
  local ping=$!
  sleep 0.5
  local at; at=$(date +%s.%N)
  case "$event" in
    kill) stop_gateway 1 KILL ;;
    keepalived-stop) stop_keepalived 1 ;;
    failback) start_gateway 1 ;;
    *) echo "lab-ha.sh: failover EVENT is kill, keepalived-stop or failback" >&2; kill "$wrk" "$ping"; return 2 ;;
  esac
  wait "$wrk" || true
  kill "$ping" 2>/dev/null || true; wait "$ping" 2>/dev/null || true
  cat "$run_dir/wrk.txt"
  echo "== after '$event': $VIP on gateway $(holder)"
  python3 - "$run_dir" "$at" <<'PY'
import re, sys
run, at = sys.argv[1], float(sys.argv[2])
seqs = [int(m.group(1)) for m in re.finditer(r"icmp_seq=(\d+)", open(f"{run}/ping.txt").read())]
gap = max((b - a for a, b in zip(seqs, seqs[1:])), default=0)
print(f"takeover: longest ping gap {gap * 10} ms ({len(seqs)} echoes answered)")
reqs = []
for r in ("rs1", "rs2"):
    for line in open(f"{run}/{r}/conns.log"):
        t, conn = line.split()
        reqs.append((float(t), r + " " + conn))
# wrk runs 7 s more after the event: "after" is its last 3 s (a stalled connection has none).
seen_before = {c for t, c in reqs if t < at}
before = {c for t, c in reqs if at - 1 <= t < at}
after = {c for t, c in reqs if at + 4 <= t}
print(f"connections: {len(before)} established before, {len(before & after)} carried on, "
      f"{len(after - seen_before)} new")
PY
  for k in 1 2; do
    echo "== gateway $k"
    "$gwctl" -s "/run/gateway/$name-gw$k.sock" sync 2>/dev/null | head -3 || echo "not running"
  done
}

# Sync's cost under short connections: wrk with `Connection: close` through the VIP for SECONDS
# (default 10), then, from both gateways' counters and their sync threads' CPU time
# (/proc/PID/task/TID/stat), connections per second, records and bytes sent per connection, and
# the sync threads' CPU; also scaled to 100k new connections per second (linearly).
measure() {
  local secs=${3:-10} gwctl; gwctl=$(gwctl_bin)
  local m; m=$(holder)
  local b=$(( 3 - m ))
  snap() { # gateway K: conns_created sent_bytes sent_records sent_msgs received_records sync-thread-ticks
    local k=$1 pid tid ticks=0
    pid=$(cat "$run_dir/gw$k/gateway.pid")
    for t in /proc/"$pid"/task/*; do
      if [ "$(cat "$t/comm")" = sync ]; then tid=$t; fi
    done
    [ -n "${tid:-}" ] && ticks=$(awk '{print $14 + $15}' "$tid/stat")
    "$gwctl" -s "/run/gateway/$name-gw$k.sock" --json stats \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"]["counters"]["conns_created"])' | tr '\n' ' '
    "$gwctl" -s "/run/gateway/$name-gw$k.sock" --json sync \
      | python3 -c 'import json,sys; s=json.load(sys.stdin)["status"]; print(s["sent_bytes"], s["sent_records"], s["sent_msgs"], s["received_records"], end=" ")'
    echo "$ticks"
  }
  local m0 b0 m1 b1 t0 t1
  m0=$(snap "$m"); b0=$(snap "$b"); t0=$(date +%s.%N)
  nsx cli timeout $((secs + 20)) wrk -t2 -c50 -d"${secs}s" -H 'Connection: close' "http://$VIP/" > "$run_dir/wrk-measure.txt" 2>&1 || true
  sleep 1
  m1=$(snap "$m"); b1=$(snap "$b"); t1=$(date +%s.%N)
  grep -E "Requests/sec|requests in|Socket errors" "$run_dir/wrk-measure.txt" || true
  python3 - "$m0" "$m1" "$b0" "$b1" "$t0" "$t1" "$(getconf CLK_TCK)" <<'PY'
import sys
m0, m1, b0, b1 = ([int(x) for x in a.split()] for a in sys.argv[1:5])
secs = float(sys.argv[6]) - float(sys.argv[5])
hz = int(sys.argv[7])
conns = m1[0] - m0[0]
sent_bytes, sent_recs, sent_msgs = (m1[i] - m0[i] for i in (1, 2, 3))
recv = b1[4] - b0[4]
cpu_m = (m1[5] - m0[5]) / hz
cpu_b = (b1[5] - b0[5]) / hz
rate = conns / secs
print(f"window {secs:.1f} s: {conns} connections ({rate:.0f}/s) on the master")
print(f"sent {sent_recs} records in {sent_msgs} messages, {sent_bytes} bytes; the backup received {recv}")
print(f"per connection: {sent_recs / conns:.2f} records, {sent_bytes / conns:.1f} bytes")
print(f"sync thread CPU: master {cpu_m:.2f} s ({100 * cpu_m / secs:.1f}%), backup {cpu_b:.2f} s ({100 * cpu_b / secs:.1f}%)")
k = 100_000 / rate
print(f"at 100k new connections/s (x{k:.1f}, linear): {8 * sent_bytes / secs * k / 1e6:.0f} Mbit/s, "
      f"{sent_msgs / secs * k:.0f} messages/s, master sync thread {100 * cpu_m / secs * k:.0f}% of a core, "
      f"backup {100 * cpu_b / secs * k:.0f}%")
PY
}

gateway_cmd() {
  local k=${3:?gateway number} what=${4:?start, kill or term}
  case "$what" in
    kill) stop_gateway "$k" KILL ;;
    term) stop_gateway "$k" TERM ;;
    start) start_gateway "$k" ;;
    *) echo "lab-ha.sh: gateway NAME K start|kill|term" >&2; exit 2 ;;
  esac
}

keepalived_cmd() {
  local k=${3:?gateway number} what=${4:?start or stop}
  case "$what" in
    start) start_keepalived "$k" ;;
    stop) stop_keepalived "$k" ;;
    *) echo "lab-ha.sh: keepalived NAME K start|stop" >&2; exit 2 ;;
  esac
}

case "$cmd" in
  up) up "$@" ;;
  down) down ;;
  status) status ;;
  demo) failover "$1" "$name" kill ;;
  failover) failover "$@" ;;
  measure) measure "$@" ;;
  gateway) gateway_cmd "$@" ;;
  keepalived) keepalived_cmd "$@" ;;
  holder) holder ;;
  *) echo "usage: lab-ha.sh up|down|status|demo|failover|gateway|keepalived|holder [NAME] ..." >&2; exit 2 ;;
esac

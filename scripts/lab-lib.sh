# Shared by scripts/lab.sh and scripts/lab-ecmp.sh (sourced): the callers set $here (the repository),
# $name (the lab's name, prefix of its namespaces) and $run_dir.

ns() { echo "$name-$1"; }
nsx() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }

gateway_bin() {
  if [ -n "${GATEWAY_BIN:-}" ]; then echo "$GATEWAY_BIN"; return; fi
  for b in "$here/target/release/gateway" "$here/target/debug/gateway"; do
    [ -x "$b" ] && { echo "$b"; return; }
  done
  echo "$(basename "$0"): no gateway binary; run cargo build --release" >&2
  exit 1
}

quiet_link() { # disable offloads that af_packet cannot see through (partial checksums, TSO/GRO)
  local n=$1 dev=$2
  nsx "$n" ethtool -K "$dev" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
  nsx "$n" ip link set "$dev" up
}

# nginx in namespace $1 serving a page that says $2 on :80 and :8080 (IPv6 too with LAB_IPV6=1,
# for a namespace with IPv6 on), files in $run_dir/$1.
start_nginx() {
  local n=$1 label=$2 dir=$run_dir/$1
  local listen6=""
  if [ "${LAB_IPV6:-0}" = 1 ]; then
    listen6="listen [::]:80 reuseport ipv6only=on; listen [::]:8080 reuseport ipv6only=on;"
  fi
  mkdir -p "$dir/html"
  echo "$label" > "$dir/html/index.html"
  head -c 102400 /dev/zero | tr '\0' 'x' > "$dir/html/100k.bin"
  cat > "$dir/nginx.conf" <<NGX
worker_processes 1;
# Room for many concurrent connections (nginx's 1024 made it close connections beyond them,
# "worker_connections are not enough", under wrk -c3000: the servers' limit, not the gateway's).
# Open files stay as inherited (20000 here).
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 16384; }
http {
  access_log $dir/access.log;
  log_format peer '\$remote_addr \$remote_port \$request';
  log_format ends '\$remote_addr:\$remote_port \$server_addr:\$server_port';
  log_format conns '\$msec \$remote_addr:\$remote_port';
  server {
    listen 80 reuseport; listen 8080 reuseport; $listen6
    access_log $dir/peer.log peer;
    access_log $dir/ends.log ends;
    access_log $dir/conns.log conns;
    root $dir/html;
    keepalive_timeout 65;
    keepalive_requests 100000;
    # A server that answers but is not well (health checks expecting 200 see "HTTP 503").
    location = /busy { return 503; }
  }
}
NGX
  nsx "$n" nginx -c "$dir/nginx.conf" -g 'user root;' 2>/dev/null || nsx "$n" nginx -c "$dir/nginx.conf"
}

# A lab namespace with lo up and IPv6 off.
new_ns() {
  ip netns add "$(ns "$1")"
  nsx "$1" ip link set lo up
  nsx "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# IPv6 on in a namespace (the dual-stack labs, LAB_IPV6=1): its interfaces now and later (a
# gateway's twins).
v6on() {
  local n=$1 d
  nsx "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0
  for d in $(nsx "$n" ls /sys/class/net); do
    nsx "$n" sysctl -qw "net.ipv6.conf.$d.disable_ipv6=0"
  done
}

# Gateway node K of a dual-stack lab: IPv6 on for the twins the gateway makes, which inherit the
# namespace's default. The veths under the DPDK ports stay IPv6-less: the kernel would take the
# frames af_packet reads too and answer a SYN to an IPv6 VIP (on a twin: local to the namespace)
# with a RST, as rp_filter prevents for IPv4.
gateway_v6on() {
  v6on "gw$1"
  nsx "gw$1" sysctl -qw net.ipv6.conf.lbc.disable_ipv6=1 net.ipv6.conf.lbs.disable_ipv6=1
}

# Starts a gateway in namespace node $1 with $2/gateway.toml (log, pid and stats files in $2); waits
# until it is ready (20 s at most).
start_gateway_at() {
  local node=$1 dir=$2 bin
  bin=$(gateway_bin)
  : > "$dir/gateway.log"
  ip netns exec "$(ns "$node")" env GLIBC_TUNABLES=glibc.malloc.hugetlb=1 "$bin" --config "$dir/gateway.toml" \
    --stats-file "$dir/stats.txt" >"$dir/gateway.log" 2>&1 &
  echo $! > "$dir/gateway.pid"
  for _ in $(seq 1 100); do
    grep -q "gateway ready" "$dir/gateway.log" && return 0
    if ! kill -0 "$(cat "$dir/gateway.pid")" 2>/dev/null; then
      echo "$(basename "$0"): the gateway of $node exited:" >&2; cat "$dir/gateway.log" >&2; return 1
    fi
    sleep 0.2
  done
  echo "$(basename "$0"): the gateway of $node did not become ready in 20 s" >&2; cat "$dir/gateway.log" >&2
  return 1
}

# The head of gateway K's config in the multi-gateway labs (ECMP, HA): EAL prefix NAME-gwK, WORKERS
# workers (one: on CPU (K-1) mod 2, so two gateways use both cores; two: on both), and the ports
# lbc (10.10.0.1K/24) and lbs (10.20.0.K/24) on af_packet, a queue pair per worker.
# With LAB_IPV6=1 the ports have IPv6 addresses too (2001:db8:10::1K/64, 2001:db8:20::K/64).
gateway_toml_head() {
  local k=$1 workers=$2 cpus qp="" c6="" s6=""
  if [ "$workers" -gt 1 ]; then cpus=$(seq -s, 0 $((workers - 1))); qp=",qpairs=$workers"; else cpus=$(( (k - 1) % 2 )); fi
  if [ "${LAB_IPV6:-0}" = 1 ]; then c6=", \"2001:db8:10::1$k/64\""; s6=", \"2001:db8:20::$k/64\""; fi
  cat <<TOML
[eal]
file_prefix = "$name-gw$k"
memory_mb = 256

[workers]
count = $workers
cpus = [$cpus]
main_cpu = $(( (k - 1) % 2 ))
idle_sleep_us = 100

[mempool]
mbufs = 8191
cache = 128

[[port]]
name = "client"
device = "net_af_packet0,iface=lbc$qp,framecnt=4096"
addresses = ["10.10.0.1$k/24"$c6]

[[port]]
name = "server"
device = "net_af_packet1,iface=lbs$qp,framecnt=4096"
addresses = ["10.20.0.$k/24"$s6]

[control]
stats_interval_s = 0
TOML
}

# Gateway node K of the multi-gateway labs (ECMP, HA): its namespace, its client port lbc on the front
# switch (fsw) and its server port lbs on the server switch (sw), both bridges' br0, with the kernel
# there answering on its twins only (see lab.sh).
add_gateway_node() {
  local k=$1 d s
  new_ns "gw$k"
  ip link add lbc netns "$(ns "gw$k")" type veth peer name "p-gw$k" netns "$(ns fsw)"
  ip link add lbs netns "$(ns "gw$k")" type veth peer name "p-gw$k" netns "$(ns sw)"
  for s in fsw sw; do nsx $s ip link set "p-gw$k" master br0; quiet_link $s "p-gw$k"; done
  quiet_link "gw$k" lbc; quiet_link "gw$k" lbs
  for d in lbc lbs; do
    nsx "gw$k" sysctl -qw "net.ipv4.conf.$d.rp_filter=1" "net.ipv4.conf.$d.arp_ignore=8"
  done
}

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

# nginx in namespace $1 serving a page that says $2 on :80 and :8080, files in $run_dir/$1.
start_nginx() {
  local n=$1 label=$2 dir=$run_dir/$1
  mkdir -p "$dir/html"
  echo "$label" > "$dir/html/index.html"
  head -c 102400 /dev/zero | tr '\0' 'x' > "$dir/html/100k.bin"
  cat > "$dir/nginx.conf" <<NGX
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
  access_log $dir/access.log;
  log_format peer '\$remote_addr \$remote_port \$request';
  log_format ends '\$remote_addr:\$remote_port \$server_addr:\$server_port';
  log_format conns '\$msec \$remote_addr:\$remote_port';
  server {
    listen 80 reuseport; listen 8080 reuseport;
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

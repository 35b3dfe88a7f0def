#!/bin/bash
# Instructions per established packet with and without the SYN proxy's sequence translation: a
# deterministic count (Valgrind's callgrind) of gateway/examples/synproxy_cost.rs, which opens one
# connection through the DPDK-free datapath and then processes N packets of it each way. The
# difference between two values of N is the per-packet cost alone (setup and exit cancel out).
# Usage: perf/synproxy-cost.sh   (figures on stdout; needs Debian's valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p gateway --example synproxy_cost
bin="${CARGO_TARGET_DIR:-target}/release/examples/synproxy_cost"
ir() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
echo "commit $(git rev-parse --short HEAD)"
for mode in plain proxied; do
    a=$(ir "$mode" 1000)
    b=$(ir "$mode" 3000)
    # 2000 more iterations of one packet each way.
    echo "$mode: $(((b - a) / 4000)) instructions per packet (client->server and server->client averaged; Ir $a at N=1000, $b at N=3000)"
done

#!/bin/bash
# Which functions the established fast path calls out of line, in the worker and in the
# harness that `perf/cost.sh` counts (issue 16). The compiler inlines per buffer type: the
# worker's burst loop is built over `Mbuf`, `datapath_cost` over `VecBuf`, and a function one
# inlines and the other calls makes the harness's instruction count move where the worker's
# does not (perf/RESULTS.md, "Inlining: the harness against the worker").
# - the worker: every direct call in the code of `Worker::run_burst` (static: rare paths
#   included; calls through the GOT, such as libc's memcpy, are not resolved);
# - the harness: every function `datapath_cost established-burst-1k` calls once a packet or
#   more (callgrind's call counts at two packet counts, differenced, so setup is left out).
# Then the functions the harness calls a packet and the worker's burst loop never calls:
# inlined there, their calls are counted here only. (libc's memcpy is the harness writing each
# frame, which `perf/cost.sh` subtracts.)
# Usage: perf/calls.sh   (builds the release gateway and the example first)
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
cargo build -q --release -p gateway --bin gateway --example datapath_cost
gw="$target/release/gateway"
dc="$target/release/examples/datapath_cost"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Generic arguments and the buffer type removed, so that both builds name a function alike.
normalize() { sed -E ':a; s/<[^<>]*>//g; ta' | sed -E 's/ +$//' | grep -v '^$' || true; }

read -r addr size < <(nm -S -C "$gw" | awk '$4 ~ /::Worker::run_burst$/ {print $1, $2; exit}')
objdump -d --no-show-raw-insn -C "$gw" --start-address="0x$addr" \
    --stop-address="$(printf '0x%x' $((0x$addr + 0x$size)))" |
    sed -n -E 's/.*call +[0-9a-f]+ <(.*)>$/\1/p' | grep -v '@plt' | normalize | sort -u >"$tmp/worker"

calls() {
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$1" "$dc" established-burst-1k "$1" \
        >/dev/null 2>&1
    # cfn= names the callee of the `calls=` line that follows (names are compressed: "(id) name"
    # the first time, "(id)" after).
    awk '/^cfn=/ { s = substr($0, 5); id = s; sub(/ .*/, "", id); nm = s; sub(/^\([0-9]+\) ?/, "", nm)
                   if (nm != "") name[id] = nm; cur = id; next }
         /^calls=/ { split(substr($0, 7), c, " "); n[cur] += c[1] }
         END { for (i in n) print n[i] "\t" name[i] }' "$tmp/cg.$1"
}
calls 20000 | sort -t$'\t' -k2 >"$tmp/a"
calls 40000 | sort -t$'\t' -k2 >"$tmp/b"
join -t$'\t' -1 2 -2 2 "$tmp/a" "$tmp/b" |
    awk -F'\t' '($3 - $2) / 20000 >= 0.9 { print $1 }' | normalize | sort -u >"$tmp/harness"

echo "# called by the worker's burst loop (Worker::run_burst, static)"
cat "$tmp/worker"
echo
echo "# called once a packet or more by datapath_cost established-burst-1k"
cat "$tmp/harness"
echo
echo "# called a packet by the harness, never by the worker's burst loop (inlined there)"
comm -23 "$tmp/harness" "$tmp/worker"

#!/bin/bash
# Deterministic cost of the DPDK-free datapath per operation (issue 16): instructions and simulated
# cache misses (Valgrind's callgrind, --cache-sim) of gateway/examples/datapath_cost.rs at two
# operation counts; the difference over the difference of counts is one operation's cost, whatever
# the setup. Writes perf/results/cost-<commit>.txt (with the code changed and not committed, a
# file in $TMPDIR instead, not a record) and compares with the newest earlier record.
# Usage: perf/cost.sh [scenario ...]   (default: established-1k established-burst-1k reply-1k
# reply-burst-1k reply-burst-spread mixed-burst-spread syn syn-rss handshake lifecycle lifecycle-burst
# handoff expire established6-burst-1k syn6 syn6-rss; add established-1m, established-burst-1m and reply-1m,
# slow; established6-1k, reply6-1k, dr6-1k, mixed6-burst-spread)
#        perf/cost.sh --table   (runs nothing: every recorded perf/results/cost-<commit>.txt as one
# Markdown table of instructions per operation, a column per commit, oldest first)
#        perf/cost.sh --history [N]   (runs nothing: the worker's paths, net of the harness's frame
# writing, a row per commit for the last N records (all without N), oldest first: the table
# perf/RESULTS.md opens with)
set -euo pipefail
cd "$(dirname "$0")/.."
# Every commit's own record (not cost-2w-<commit>.txt, a variant with its own section), as
# "<commit time> <file>", oldest first.
records() {
    for f in perf/results/cost-*.txt; do
        c=${f#perf/results/cost-}
        t=$(git show -s --format=%ct "${c%.txt}" 2>/dev/null) || continue
        echo "$t $f"
    done | sort -n
}
if [ "${1:-}" = --history ]; then
    files=()
    while read -r _ f; do files+=("$f"); done < <(records | tail -n "${2:-+1}")
    awk -v cols="established-burst-net reply-burst-net established6-burst-net syn-net syn6-net syn6-rss-net handshake-net expire-net" '
        BEGIN { n = split(cols, col, " ") }
        FNR == 1 { k++; c = FILENAME; sub(/.*cost-/, "", c); sub(/\.txt$/, "", c); name[k] = c }
        /^#/ { next }
        { v[k, $1] = $2 }
        END {
            printf "| commit |"; for (i = 1; i <= n; i++) printf " %s |", col[i]; print ""
            printf "|---|"; for (i = 1; i <= n; i++) printf "---|"; print ""
            for (r = 1; r <= k; r++) {
                any = 0; line = "| " name[r] " |"
                for (i = 1; i <= n; i++) {
                    if ((r, col[i]) in v) { any = 1; line = line " " v[r, col[i]] " |" } else line = line " - |"
                }
                if (any) print line
            }
        }' "${files[@]}"
    exit 0
fi
if [ "${1:-}" = --table ]; then
    files=()
    while read -r _ f; do files+=("$f"); done < <(records)
    awk '
        FNR == 1 { n++; c = FILENAME; sub(/.*cost-/, "", c); sub(/\.txt$/, "", c); col[n] = c }
        /^#/ { next }
        { if (!($1 in seen)) { seen[$1] = 1; rows[++m] = $1 } v[$1, n] = $2 }
        END {
            printf "| operation |"; for (i = 1; i <= n; i++) printf " %s |", col[i]; print ""
            printf "|---|"; for (i = 1; i <= n; i++) printf "---|"; print ""
            for (r = 1; r <= m; r++) {
                printf "| %s |", rows[r]
                for (i = 1; i <= n; i++) printf " %s |", ((rows[r], i) in v) ? v[rows[r], i] : "-"
                print ""
            }
        }' "${files[@]}"
    exit 0
fi
cargo build -q --release -p gateway --example datapath_cost
bin="${CARGO_TARGET_DIR:-target}/release/examples/datapath_cost"
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(established-1k established-burst-1k reply-1k reply-burst-1k reply-burst-spread mixed-burst-spread syn syn-rss handshake lifecycle lifecycle-burst handoff expire established6-burst-1k syn6 syn6-rss)
commit=$(git rev-parse --short HEAD)
out="perf/results/cost-$commit.txt"
# A record names the commit whose code it counted: with the code changed and not committed, the
# counts go to a file of their own outside the records (and are still compared with the last one).
if ! git diff --quiet HEAD -- gateway dpdk-sys Cargo.toml Cargo.lock; then
    out="${TMPDIR:-/tmp}/cost-$commit-dirty.txt"
    echo "perf/cost.sh: uncommitted changes to the code: not a record of $commit, written to $out" >&2
fi
# Totals of one run: Ir D1mr D1mw DLmr DLmw (callgrind's event order with --cache-sim=yes).
# The simulated caches are fixed, not the host's, so that the misses compare across machines (and
# Valgrind reads some virtual CPUs' L3 wrongly: 384 MiB on this one, which hid every miss of the
# 1M scenarios before the model was fixed): 32 KiB 8-way L1s, and a 32 MiB 16-way last level as this EPYC
# guest's L3, with 64-byte lines.
CACHES=(--I1=32768,8,64 --D1=32768,8,64 --LL=33554432,16,64)
totals() {
    valgrind --tool=callgrind --cache-sim=yes "${CACHES[@]}" --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 |
        sed -n 's/.*Collected : //p' | awk '{print $1, $5, $6, $8, $9}'
}
per_op() {
    local a b
    read -r -a a <<<"$(totals "$1" "$2")"
    read -r -a b <<<"$(totals "$1" "$3")"
    local d=$(($3 - $2))
    echo "$(((b[0] - a[0]) / d)) $(((b[1] + b[2] - a[1] - a[2]) * 100 / d)) $(((b[3] + b[4] - a[3] - a[4]) * 100 / d))"
}
{
    echo "# perf/cost.sh at $commit: per operation, instructions, D1 misses x100, LL misses x100"
    for s in "${scenarios[@]}"; do
        case $s in
        established-1m | established-burst-1m | reply-1m) r=$(per_op "$s" 20000 60000) ;;
        *) r=$(per_op "$s" 2000 6000) ;;
        esac
        echo "$s $r"
        if [ "$s" = syn ] || [ "$s" = syn-rss ]; then
            f=$(per_op frames 2000 6000)
            echo "# $s-net: $s minus building its frame ($(echo "$f" | cut -d' ' -f1) instructions)"
            echo "$s-net $(($(echo "$r" | cut -d' ' -f1) - $(echo "$f" | cut -d' ' -f1))) - -"
        fi
        if [ "$s" = established-1k ]; then
            f=$(per_op ack-frames 2000 6000)
            echo "# established-net: established-1k minus picking and writing its frame ($(echo "$f" | cut -d' ' -f1) instructions)"
            echo "established-net $(($(echo "$r" | cut -d' ' -f1) - $(echo "$f" | cut -d' ' -f1))) - -"
        fi
        if [ "$s" = established-burst-1k ]; then
            f=$(per_op ack-frames-burst 2000 6000)
            echo "# established-burst-net: established-burst-1k minus writing and moving its frames ($(echo "$f" | cut -d' ' -f1) instructions)"
            echo "established-burst-net $(($(echo "$r" | cut -d' ' -f1) - $(echo "$f" | cut -d' ' -f1))) - -"
        fi
        if [ "$s" = reply-burst-1k ]; then
            f=$(per_op reply-frames-burst 2000 6000)
            echo "# reply-burst-net: reply-burst-1k minus writing and moving its frames ($(echo "$f" | cut -d' ' -f1) instructions)"
            echo "reply-burst-net $(($(echo "$r" | cut -d' ' -f1) - $(echo "$f" | cut -d' ' -f1))) - -"
        fi
        if [ "$s" = mixed-burst-spread ] || [ "$s" = mixed6-burst-spread ]; then
            f=$(per_op "${s%%-*}-frames-burst-spread" 2000 6000)
            echo "# $s-net: $s minus writing and moving its frames ($(echo "$f" | cut -d' ' -f1) instructions)"
            echo "$s-net $(($(echo "$r" | cut -d' ' -f1) - $(echo "$f" | cut -d' ' -f1))) - -"
        fi
        if [ "$s" = established6-burst-1k ]; then
            f=$(per_op ack6-frames-burst 2000 6000)
            echo "# established6-burst-net: established6-burst-1k minus writing and moving its frames ($(echo "$f" | cut -d' ' -f1) instructions)"
            echo "established6-burst-net $(($(echo "$r" | cut -d' ' -f1) - $(echo "$f" | cut -d' ' -f1))) - -"
        fi
        if [ "$s" = established-burst-1m ]; then
            f=$(per_op ack-frames-burst-1m 20000 60000)
            echo "# established-burst-net-1m: established-burst-1m minus writing and moving its frames among 1M ($f)"
            echo "established-burst-net-1m $(echo "$r $f" | awk '{print $1 - $4, $2 - $5, $3 - $6}')"
        fi
        if [ "$s" = established-1m ]; then
            f=$(per_op ack-frames-1m 20000 60000)
            echo "# established-net-1m: established-1m minus picking and writing its frame among 1M ($f)"
            echo "established-net-1m $(echo "$r $f" | awk '{print $1 - $4, $2 - $5, $3 - $6}')"
        fi
        if [ "$s" = syn6 ] || [ "$s" = syn6-rss ]; then
            f=$(per_op syn6-frames 2000 6000)
            echo "# $s-net: $s minus writing its frame ($(echo "$f" | cut -d' ' -f1) instructions)"
            echo "$s-net $(($(echo "$r" | cut -d' ' -f1) - $(echo "$f" | cut -d' ' -f1))) - -"
        fi
        if [ "$s" = handshake ]; then
            f=$(per_op handshake-frames 2000 6000)
            echo "# handshake-net: handshake minus building its three frames ($(echo "$f" | cut -d' ' -f1) instructions)"
            echo "handshake-net $(($(echo "$r" | cut -d' ' -f1) - $(echo "$f" | cut -d' ' -f1))) - -"
        fi
        if [ "$s" = lifecycle ] || [ "$s" = lifecycle-burst ]; then
            f=$(per_op "${s/lifecycle/lifecycle-frames}" 2000 6000)
            echo "# $s-net: $s minus building its nine frames ($(echo "$f" | cut -d' ' -f1) instructions)"
            echo "$s-net $(($(echo "$r" | cut -d' ' -f1) - $(echo "$f" | cut -d' ' -f1))) - -"
        fi
        if [ "$s" = expire ]; then
            y=$(per_op syn 2000 6000)
            echo "# expire-net: expire minus the SYN that opened it ($(echo "$y" | cut -d' ' -f1) instructions)"
            echo "expire-net $(($(echo "$r" | cut -d' ' -f1) - $(echo "$y" | cut -d' ' -f1))) - -"
        fi
    done
} | tee "$out"
# The newest record of an earlier commit, by the commits' times: a checkout gives every file the
# same mtime, so `ls -t` picked one at random (5387bd4's on a fresh machine, where 58b561e's was
# the newest); and an older commit checked out compares with its own past, not with later ones.
head_t=$(git show -s --format=%ct HEAD)
prev=$(records | grep -v " $out$" | awk -v t="$head_t" '$1 <= t' | tail -1 | cut -d' ' -f2 || true)
if [ -n "$prev" ]; then
    echo "--- against $prev"
    join <(grep -v '^#' "$prev" | sort) <(grep -v '^#' "$out" | sort) |
        awk '{printf "%s: %s -> %s instructions (%+d)\n", $1, $2, $5, $5 - $2}'
fi

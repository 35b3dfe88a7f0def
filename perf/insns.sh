#!/bin/bash
# Where one operation's instructions go, instruction by instruction (issue 16): callgrind's
# per-instruction counts (--dump-instr) of gateway/examples/datapath_cost at two operation
# counts, differenced and divided as perf/cost.sh does, then laid on the disassembly with the
# source line each instruction comes from (objdump -l: the innermost inlined line). The worker's
# paths are inlined into a few large functions, so callgrind's own per-function and per-line
# views lump them; this one does not.
#
# Usage: perf/insns.sh SCENARIO [OUT]   (a datapath_cost scenario: established-burst-1k, syn6, ...)
# Prints the instructions per operation by function and by source file (core library lines
# included: bounds checks show as slice/index.rs), and writes every instruction run at least
# half a time per operation, in address order with its count, function and source line, to OUT
# (default /tmp/insns-SCENARIO.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:?usage: perf/insns.sh SCENARIO [OUT]}
out=${2:-/tmp/insns-$scenario.txt}
cargo build -q --release -p gateway --example datapath_cost
bin="${CARGO_TARGET_DIR:-target}/release/examples/datapath_cost"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for n in 2000 6000; do
    valgrind --tool=callgrind --dump-instr=yes --compress-pos=no --compress-strings=no \
        --callgrind-out-file="$tmp/cg-$n" "$bin" "$scenario" "$n" >/dev/null 2>&1
done
objdump -d -l --no-show-raw-insn -C "$bin" >"$tmp/dis"
python3 - "$tmp/cg-2000" "$tmp/cg-6000" 4000 "$tmp/dis" "$out" <<'EOF'
import collections, re, sys

def counts(path):
    """Self cost per instruction address of the example's own object (a call's line, which
    follows `calls=`, carries the callee's inclusive cost and is skipped)."""
    cost, obj, after_call = collections.Counter(), "", False
    for line in open(path):
        if line.startswith("ob="):
            obj = line[3:].strip()
        elif line.startswith("calls="):
            after_call = True
        elif line.startswith("0x"):
            if after_call:
                after_call = False
                continue
            addr, _, ir = line.split()[:3]
            if "datapath_cost" in obj:
                cost[int(addr, 16)] += int(ir)
    return cost

a, b, ops = counts(sys.argv[1]), counts(sys.argv[2]), int(sys.argv[3])
per_op = {k: (b[k] - a[k]) / ops for k in set(a) | set(b)}
per_op = {k: v for k, v in per_op.items() if v >= 0.5}
by_fn, by_file, listing = collections.Counter(), collections.Counter(), []
fn = src = ""
for line in open(sys.argv[4]):
    m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
    if m:
        fn = m.group(1)
        continue
    m = re.match(r"^(/\S+):(\d+)", line)
    if m:
        src = "/".join(m.group(1).split("/")[-2:]) + ":" + m.group(2)
        continue
    m = re.match(r"\s+([0-9a-f]+):\s+(.*)", line)
    if m and int(m.group(1), 16) in per_op:
        c = per_op[int(m.group(1), 16)]
        by_fn[fn] += c
        by_file[src.rsplit(":", 1)[0]] += c
        listing.append(f"{c:6.2f} {m.group(1)} {m.group(2)[:60]:60s} {src}  {fn[:70]}")
print(f"{sum(per_op.values()):.1f} instructions per operation in the example's code "
      f"(libc's, such as memcpy, not included)")
print("\nby function (inlined code counts in its caller):")
for k, v in by_fn.most_common(25):
    print(f"{v:8.1f}  {k[:110]}")
print("\nby source file (the innermost inlined line's):")
for k, v in by_file.most_common(30):
    print(f"{v:8.1f}  {k}")
open(sys.argv[5], "w").write("\n".join(listing) + "\n")
print(f"\nevery instruction: {sys.argv[5]}")
EOF

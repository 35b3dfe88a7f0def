# Sourced by perf scripts that run the lab dual-stack (perf/server-time-wait.sh,
# perf/restore-stall.sh, perf/restore-time.sh, perf/publish-cost.sh, perf/change-time.sh,
# perf/commit-cost.sh, perf/nd6-probes.sh; perf/control-scale.sh for single_changes): the lab's
# gateway config (conf/lab.toml) with an IPv6 address on each port and an IPv6 FullNAT service,
# 2001:db8:10::100 port 80 over the two real servers from two LIPs (what `scripts/lab.sh ipv6
# NAME` gives the namespaces addresses for), and the rule sets they restore.
# Usage: . perf/lab-dual-stack.sh; dual_stack_conf >FILE; fullnat_rules 4|6 >FILE; nat_rules >FILE;
# single_changes SOCKET N; thread_ticks PID; flood_conf FILE LIPS; ab_lab_up R WHICH NAME [CONFIG]; ab_lab_down NAME
dual_stack_conf() {
    sed -e 's|addresses = \["10.10.0.1/24"\]|addresses = ["10.10.0.1/24", "2001:db8:10::1/64"]|' \
        -e 's|addresses = \["10.20.0.1/24"\]|addresses = ["10.20.0.1/24", "2001:db8:20::1/64"]|' conf/lab.toml
    cat <<'TOML'

[[service]]
vip = "2001:db8:10::100"
port = 80
protocol = "tcp"
scheduler = "wrr"
local_addresses = ["2001:db8:20::200", "2001:db8:20::201"]
toa = true
[[service.real]]
address = "2001:db8:20::11"
[[service.real]]
address = "2001:db8:20::12"
TOML
}

# `ipvsadm -R` lines of 2,000 FullNAT services of family 4 or 6: each -A (rr), -P -z one of 8
# LIPs, and two real servers (-a ... -b), the lab's.
fullnat_rules() {
    python3 - "$1" <<'PY'
import sys
v6 = sys.argv[1] == "6"
for i in range(2000):
    if v6:
        vip, lip = f"[2001:db8:10::{0x1000 + i:x}]:80", f"2001:db8:20::{0x300 + i % 8:x}"
        reals = ["[2001:db8:20::11]:80", "[2001:db8:20::12]:80"]
    else:
        vip, lip = f"172.{10 + i // 250}.0.{1 + i % 250}:80", f"10.20.0.{210 + i % 8}"
        reals = ["10.20.0.11:80", "10.20.0.12:80"]
    print(f"-A -t {vip} -s rr")
    print(f"-P -t {vip} -z {lip}")
    for r in reals:
        print(f"-a -t {vip} -r {r} -b -w 1")
PY
}

# `ipvsadm -R` lines of 10,000 NAT services of 10 real servers each (rr): perf/control-scale.sh's
# largest rr set, 100,000 (service, real server) pairs.
nat_rules() {
    python3 - <<'PY'
for s in range(10000):
    vip = "10.%d.%d.%d:80" % (100 + s // 62500, s // 250 % 250, s % 250 + 1)
    print(f"-A -t {vip} -s rr")
    for r in range(10):
        print(f"-a -t {vip} -r 10.20.0.{11 + r}:80 -m -w 1")
PY
}

# N single admin changes over one connection to the admin socket SOCKET, each waited for (a
# service added, then deleted, as perf/control-scale.sh's latency does); prints their median and
# p99 in ms. Used by perf/change-time.sh, perf/commit-cost.sh and perf/control-scale.sh.
single_changes() {
    python3 - "$1" "$2" <<'PY'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile('rwb')
n = int(sys.argv[2]); lat = []
for i in range(n):
    svc = {"proto": "tcp", "vip": "10.99.0.%d" % (i // 2 % 200 + 1), "port": 80}
    ch = [{"change": "add_service", "svc": svc, "opts": {"scheduler": "rr"}}] if i % 2 == 0 else [{"change": "del_service", "svc": svc}]
    t = time.perf_counter(); f.write((json.dumps({"v": 1, "op": "apply", "changes": ch}) + "\n").encode()); f.flush()
    r = json.loads(f.readline()); lat.append((time.perf_counter() - t) * 1000)
    assert r["ok"], r
lat.sort()
print("median_ms=%.3f p99_ms=%.3f" % (lat[n // 2], lat[int(n * 0.99)]))
PY
}

# The CPU ticks (10 ms) of gateway PID's worker threads, then of the rest of the process: its
# other threads, those that ended too (the admin socket's per-client threads), from the process's
# own total. Used by perf/publish-cost.sh, perf/change-time.sh and perf/list-time.sh.
thread_ticks() {
    local t workers=0 all
    all=$(awk '{print $14 + $15}' "/proc/$1/stat")
    for t in /proc/"$1"/task/*; do
        case $(cat "$t/comm") in rte-worker-*) workers=$((workers + $(awk '{print $14 + $15}' "$t/stat"))) ;; esac
    done
    echo "$workers $((all - workers))"
}

# Makes the gateway config FILE ready for a SYN flood (perf/conns-listing.sh,
# perf/commit-cost.sh): tables of 600,000 connections a worker, entries kept in SYN_RECV for 10
# minutes, and VIP 10.10.0.100:8080 from LIPS local addresses (10.20.0.200 on; 64,512 ports
# each) to a real server that does not exist, so that the flood's entries wait in SYN_RECV and
# the lab's real servers behind VIP:80 are not flooded.
flood_conf() {
    local file=$1 lips=$2 list
    sed -i -e 's/^capacity = 65536/capacity = 600000/' -e 's/^memory_mb = 256/memory_mb = 512/' \
        -e 's/^mbufs = 8191/mbufs = 16383/' "$file"
    list=$(seq 200 $((199 + lips)) | sed 's/.*/"10.20.0.&"/' | paste -sd, | sed 's/,/, /g')
    cat >>"$file" <<TOML

[conn.timeouts]
syn_recv = 600

[[service]]
vip = "10.10.0.100"
port = 8080
scheduler = "rr"
local_addresses = [$list]

[[service.real]]
address = "10.20.0.99"
TOML
}

# One run of an interleaved A/B over the gateways $a and $b (perf/change-time.sh,
# perf/commit-cost.sh, perf/health-storm.sh, perf/list-time.sh, perf/publish-cost.sh,
# perf/restore-time.sh, perf/mh-restore.sh; from the repository's root): for round R and side
# WHICH (A or B), sets `bin` to that side's gateway and `gwctl` to its gwctl on lab NAME's socket,
# and brings lab NAME up with CONFIG (the lab's own without it). Prints "R WHICH lab-failed" and
# fails when the lab does not come up.
ab_lab_up() {
    local r=$1 which=$2 name=$3 conf=${4:-}
    bin=$a
    [ "$which" = B ] && bin=$b
    gwctl="$(dirname "$bin")/gwctl -s /run/gateway/$name.sock"
    GATEWAY_BIN=$bin scripts/lab.sh up "$name" ${conf:+"$conf"} >/dev/null 2>&1 || {
        echo "$r $which lab-failed"
        return 1
    }
}

# Takes lab NAME down and removes its run directory (/run/gwlab/NAME: logs, stats, pid), as the
# lab tests do.
ab_lab_down() {
    scripts/lab.sh down "$1" >/dev/null 2>&1
    rm -rf "/run/gwlab/$1"
}

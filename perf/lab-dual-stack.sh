# Sourced by perf scripts that run the lab dual-stack (perf/server-time-wait.sh,
# perf/restore-stall.sh): the lab's gateway config (conf/lab.toml) with an IPv6 address on each
# port and an IPv6 FullNAT service, 2001:db8:10::100 port 80 over the two real servers from two
# LIPs (what `scripts/lab.sh ipv6 NAME` gives the namespaces addresses for).
# Usage: . perf/lab-dual-stack.sh; dual_stack_conf >FILE
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

#!/usr/bin/env bash
# Installs every system dependency of the gateway from Debian's packages and reserves hugepages.
# Idempotent: run it as often as you like (as root).
#
#   HUGEPAGES=N   2 MiB hugepages to reserve (default 1024 = 2 GiB; the lab uses 256 MiB per gateway)
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run as root" >&2
  exit 1
fi

pkgs=(
  libdpdk-dev dpdk pkg-config libclang-dev clang   # DPDK 22.11 and what dpdk-sys builds with
  libpcap-dev                                       # DPDK's pcap PMD (golden tests)
  nginx-light curl wrk tcpdump iperf3 socat hping3  # real servers, clients, captures, floods
  iproute2 iputils-ping iputils-arping ethtool procps  # the lab
  bird2                                             # BGP in the ECMP lab (scripts/lab-ecmp.sh)
  keepalived                                        # VRRP in the HA lab (scripts/lab-ha.sh)
  nftables                                          # the HA lab drops chosen sync messages (lab_ha)
  python3-prometheus-client                         # an independent parser of /metrics (tests)
  dpdk-dev valgrind                                 # perf/: testpmd (perf/bench's reference), callgrind (perf/cost.sh)
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts nginx on install where it can; the lab runs its own nginx in namespaces.
# The same for BIRD and keepalived: the labs run theirs in their namespaces.
for svc in nginx bird keepalived; do
  if command -v systemctl >/dev/null && systemctl is-active -q "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
    systemctl disable "$svc" 2>/dev/null || true
  fi
done

if ! command -v cargo >/dev/null; then
  echo "setup.sh: cargo not found: install a Rust toolchain (rustup, Rust >= 1.80) and re-run" >&2
  exit 1
fi

# Hugepages: reserve, then mount hugetlbfs.
want=${HUGEPAGES:-1024}
have=$(cat /proc/sys/vm/nr_hugepages)
if [ "$have" -lt "$want" ]; then
  echo "$want" > /proc/sys/vm/nr_hugepages || true
  have=$(cat /proc/sys/vm/nr_hugepages)
  [ "$have" -lt "$want" ] && echo "setup.sh: warning: only $have hugepages could be reserved (wanted $want)" >&2
fi
mkdir -p /dev/hugepages
mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages
echo "setup.sh: ok: DPDK $(pkg-config --modversion libdpdk), $(grep HugePages_Free /proc/meminfo | awk '{print $2}') free hugepages, $(cargo --version)"

#!/usr/bin/env bash
# The first README command: set everything up, build, bring the lab up on the default config
# (conf/lab.toml), and run the gateway's main job — FullNAT load balancing — with traffic you can see.
# The lab stays up afterwards; `scripts/lab.sh down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --bin gateway
./scripts/lab.sh up gwlab conf/lab.toml
./scripts/lab.sh demo gwlab
cat <<MSG

The lab is up. Try:
  scripts/lab.sh exec gwlab cli curl http://10.10.0.100/       # a request through the VIP
  scripts/lab.sh exec gwlab rs1 tail /run/gwlab/gwlab/rs1/peer.log   # peers the real server saw (LIPs)
  cat /run/gwlab/gwlab/stats.txt                              # the gateway's counters
  scripts/lab.sh down gwlab                                   # stop it all
MSG

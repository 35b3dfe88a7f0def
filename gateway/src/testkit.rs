//! Ready-made datapaths for tests, benchmarks and fuzzing, without DPDK: the lab's addressing on two
//! ports (client side 10.10.0.0/24, server side 10.20.0.0/24), one FullNAT service VIP 10.10.0.100:80
//! (TCP and UDP) over real servers 10.20.0.11 and 10.20.0.12 with LIPs 10.20.0.200-201, and the
//! neighbours already resolved so packets go straight out.

pub mod flows;

use crate::config::Config;
use crate::datapath::Datapath;
use crate::forward::{Forwarder, FwdConfig, ServiceTable};
use crate::laddr::{PortLayout, Steering};
use crate::net::neigh::NeighConfig;
use crate::net::PortCtx;
use crate::packet::PacketBuf;
use crate::wire::MacAddr;
use std::net::Ipv4Addr;
use std::sync::Arc;

pub const CLIENT_PORT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
pub const SERVER_PORT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
pub const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x10]);
pub const RS1_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x11]);
pub const RS2_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x12]);
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
pub const GW_CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 1);
pub const GW_SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 1);
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 100);
pub const RS1: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 11);
pub const RS2: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 12);
pub const LIP1: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 200);
pub const LIP2: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 201);

/// The config text behind `lab_datapath` (also a valid daemon config apart from the devices).
pub const LAB_CONFIG: &str = r#"
[workers]
count = 1

[[port]]
name = "client"
device = "net_ring0"
addresses = ["10.10.0.1/24"]

[[port]]
name = "server"
device = "net_ring1"
addresses = ["10.20.0.1/24"]

[[service]]
vip = "10.10.0.100"
port = 80
protocol = "tcp"
scheduler = "wrr"
local_addresses = ["10.20.0.200", "10.20.0.201"]
[[service.real]]
address = "10.20.0.11"
[[service.real]]
address = "10.20.0.12"

[[service]]
vip = "10.10.0.100"
port = 80
protocol = "udp"
scheduler = "rr"
local_addresses = ["10.20.0.200", "10.20.0.201"]
[[service.real]]
address = "10.20.0.11"
[[service.real]]
address = "10.20.0.12"
"#;

/// `LAB_CONFIG` with its UDP service's real servers in DR (its TCP service stays FullNAT).
pub fn lab_config_udp_dr() -> String {
    let fullnat =
        "[[service.real]]\naddress = \"10.20.0.11\"\n[[service.real]]\naddress = \"10.20.0.12\"\n";
    let dr = "[[service.real]]\naddress = \"10.20.0.11\"\nmode = \"dr\"\n[[service.real]]\naddress = \"10.20.0.12\"\nmode = \"dr\"\n";
    // The UDP service is the second.
    let at = LAB_CONFIG.rfind(fullnat).expect("LAB_CONFIG's UDP service");
    format!(
        "{}{dr}{}",
        &LAB_CONFIG[..at],
        &LAB_CONFIG[at + fullnat.len()..]
    )
}

/// `config` (the lab's ports, `LAB_CONFIG` or conf/lab.toml) dual-stack: the client port also has
/// 2001:db8:10::1/64, the server port 2001:db8:20::1/64.
pub fn dual_stack(config: &str) -> String {
    let c = config
        .replace(
            "addresses = [\"10.10.0.1/24\"]",
            "addresses = [\"10.10.0.1/24\", \"2001:db8:10::1/64\"]",
        )
        .replace(
            "addresses = [\"10.20.0.1/24\"]",
            "addresses = [\"10.20.0.1/24\", \"2001:db8:20::1/64\"]",
        );
    assert!(c.contains("2001:db8:20::1/64"), "not the lab's ports");
    c
}

/// IPv6 services for a [`dual_stack`] config: the IPv6 VIP's TCP port 80 in DR over two real
/// servers (round robin) and its UDP port 53 in TUN to the first.
pub const IPV6_SERVICES: &str = r#"
[[service]]
vip = "2001:db8:10::100"
port = 80
protocol = "tcp"
scheduler = "rr"
[[service.real]]
address = "2001:db8:20::11"
mode = "dr"
[[service.real]]
address = "2001:db8:20::12"
mode = "dr"

[[service]]
vip = "2001:db8:10::100"
port = 53
protocol = "udp"
scheduler = "rr"
[[service.real]]
address = "2001:db8:20::11"
mode = "tun"
"#;

/// `config` with `twin = "none"` on every port: the datapath drops what it would send up to a
/// kernel twin, with the reason it has without one (`net::punt`).
pub fn without_twins(config: &str) -> String {
    config.replace("\naddresses = [", "\ntwin = \"none\"\naddresses = [")
}

/// Worker `worker` of `n_workers` running `config` (ports get the MACs above in order), with
/// neighbours pre-learned and `capacity` connections (1024 IPv6 ones).
pub fn datapath_from<B: PacketBuf>(
    config: &str,
    worker: u16,
    n_workers: usize,
    capacity: u32,
) -> Datapath<B> {
    datapath_with6(config, worker, n_workers, capacity, 1024)
}

/// [`datapath_from`] with `capacity6` IPv6 connections.
pub fn datapath_with6<B: PacketBuf>(
    config: &str,
    worker: u16,
    n_workers: usize,
    capacity: u32,
    capacity6: u32,
) -> Datapath<B> {
    datapath_steered(
        config,
        worker,
        n_workers,
        capacity,
        capacity6,
        Steering::Partition,
    )
}

/// RSS steering as a NIC with DPDK's default key and a 128-entry redirection table spread
/// round robin over `n_workers` queues would do it, queue `q` polled by worker `q`.
pub fn rss_steering(n_workers: u16) -> Steering {
    use crate::laddr::reta::{QueueMap, Reta};
    use crate::laddr::RssConfig;
    Steering::Rss(RssConfig {
        key: crate::laddr::toeplitz::DEFAULT_RSS_KEY.to_vec(),
        reta: Reta::new((0..128).map(|i| i % n_workers).collect()).expect("RETA"),
        queues: QueueMap::identity(n_workers),
    })
}

/// [`datapath_with6`] whose local ports are chosen for `steering` (the worker's pools steer
/// replies by RSS with [`rss_steering`]).
pub fn datapath_steered<B: PacketBuf>(
    config: &str,
    worker: u16,
    n_workers: usize,
    capacity: u32,
    capacity6: u32,
    steering: Steering,
) -> Datapath<B> {
    let cfg = Config::parse(config).expect("testkit config");
    let v = cfg.validate().expect("testkit config");
    let macs = [CLIENT_PORT_MAC, SERVER_PORT_MAC];
    let ports = cfg
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| PortCtx {
            name: p.name.clone(),
            mac: macs
                .get(i)
                .copied()
                .unwrap_or(MacAddr([2, 0, 0, 0, 1, i as u8])),
            addrs: v.port_addrs[i].clone(),
            addrs6: v.port_addrs6[i].clone(),
            twin: p.twin != "none",
        })
        .collect();
    let services = Arc::new(ServiceTable::new(1, v.services, None).expect("services"));
    let inputs = crate::control::topology::TopoInputs {
        ports,
        routes: v.routes,
        routes6: v.routes6,
        kernel_owned: v.kernel_owned.into_iter().collect(),
    };
    let topo = crate::control::topology::build(&inputs, None, &services).0;
    let [lo, hi] = cfg.conn.port_range;
    let layout = Arc::new(PortLayout::new(n_workers, lo..=hi, steering).expect("layout"));
    let fwd = Forwarder::new(
        worker,
        services,
        layout,
        &FwdConfig {
            capacity,
            capacity6,
            timeouts: cfg.conn.timeouts,
            max_attempts: 64,
            syn_unanswered_ms: cfg.conn.syn_unanswered_ms,
            max_half_open: cfg.conn.half_open_limit(capacity),
            max_half_open6: cfg.conn.half_open_limit(capacity6),
            synproxy: cfg.synproxy.settings().expect("testkit config").0,
            // Fixed, so that tests and the fuzzer can make cookie ACKs.
            cookie_key: crate::forward::synproxy::CookieKey::from_words([1, 2, 3, 4]),
        },
    )
    .expect("forwarder");
    let mut dp = Datapath::new(worker, Arc::new(topo), NeighConfig::default(), fwd);
    // Fixed keys for the tables' hashes, not random ones per process: the deterministic counts
    // (`perf/cost.sh`) moved from run to run with the probe lengths a random key gave, the IPv6
    // paths' by ±20 instructions, IPv4's established packet by up to 2. IPv4's looks as random
    // as a random one (the hexadecimal digits of pi): with small words ([11, 12, 13, 14]),
    // `mixed-burst-spread` took 4,307 instructions a packet where a random key gives 440.
    dp.fwd.rekey_empty_table(crate::conn::HashKey::from_words([
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    ]));
    dp.v6.conns = crate::conn::ConnTable6::with_key(
        capacity6,
        cfg.conn.timeouts,
        crate::conn::HashKey::from_words([7, 8, 9, 10]),
        crate::conn::Ticks(0),
    );
    for (ip, mac, port) in [
        (CLIENT_IP, CLIENT_MAC, 0),
        (RS1, RS1_MAC, 1),
        (RS2, RS2_MAC, 1),
    ] {
        dp.l3.learn_from_peer(ip, mac, port);
    }
    dp
}

/// The lab datapath: worker 0 of 1, 64K connections.
pub fn lab_datapath<B: PacketBuf>() -> Datapath<B> {
    datapath_from(LAB_CONFIG, 0, 1, 1 << 16)
}

/// A sync message as a peer holding `key` would send it: `unsealed` (header and body, any bytes)
/// with its MAC appended (`sync::wire`), so that a fuzzer reaches past the MAC's check into the
/// parsing and installing of records that a bad peer, or one of another version, might send.
pub fn seal_sync(key: &[u8], unsealed: &[u8]) -> Vec<u8> {
    let mut m = unsealed.to_vec();
    m.extend_from_slice(&crate::sync::wire::mac(key, unsealed));
    m
}

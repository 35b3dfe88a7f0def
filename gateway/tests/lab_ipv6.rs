//! The dual-stack lab (issue 17): the client, the gateway's ports and the nginx real servers have
//! IPv6 addresses too (`scripts/lab.sh ipv6`); an IPv6 VIP is served in DR beside the IPv4 FullNAT
//! VIP, by the real `gateway` binary on two af_packet ports with two workers.
//!
//! - neighbour discovery and echo: the client resolves and pings the gateway's address and the
//!   VIP; the gateway resolves the real servers;
//! - `curl -6` to the VIP reaches both real servers, which see the client's own address talking to
//!   the VIP (DR leaves the packet alone) and reply through the router, not through the gateway;
//! - wrk with `Connection: close` (thousands of short connections, client ports reused) without an
//!   error, beside IPv4 FullNAT traffic on the same gateway;
//! - NAT on the same VIP (port 8081 to the servers' 8080), the servers routing their replies
//!   through the gateway, with two workers (connections live with their client's owner);
//! - FullNAT on the same VIP (port 8080): the real servers see the gateway's IPv6 local addresses,
//!   and the client's own address and port in the IPv6 TOA of the SYN (captured on a real server);
//! - NAT64 on the same VIP (port 8083) to the IPv4 real servers, the client's IPv6 address in the
//!   IPv6 TOA of the IPv4 SYN (captured on a real server);
//! - ipvsadm shows the service and its connections in ipvsadm's IPv6 forms.
//! - a SYN flood from spoofed IPv6 sources leaves room for a real client (`[conn] max_half_open`
//!   on the IPv6 table).
//! - a real server that refuses connections: `syn_retry` takes the clients' SYNs around it and
//!   passive detection marks it down.
//!
//! Needs root. Run: `cargo test -p gateway --test lab_ipv6`

mod common;
use common::*;
use gateway::testkit::{dual_stack, IPV6_SERVICES};

const VIP6: &str = "2001:db8:10::100";
const URL6: &str = "http://[2001:db8:10::100]/";

fn config() -> String {
    let v4 = r#"[[service]]
vip = "10.10.0.100"
port = 80
protocol = "tcp"
scheduler = "rr"
local_addresses = ["10.20.0.200", "10.20.0.201"]
[[service.real]]
address = "10.20.0.11"
[[service.real]]
address = "10.20.0.12"
"#;
    let fullnat6 = r#"
[[service]]
vip = "2001:db8:10::100"
port = 8080
protocol = "tcp"
scheduler = "rr"
local_addresses = ["2001:db8:20::200", "2001:db8:20::201"]
[[service.real]]
address = "2001:db8:20::11"
port = 80
[[service.real]]
address = "2001:db8:20::12"
port = 80

[[service]]
vip = "2001:db8:10::100"
port = 8081
protocol = "tcp"
scheduler = "rr"
[[service.real]]
address = "2001:db8:20::11"
port = 8080
mode = "nat"
[[service.real]]
address = "2001:db8:20::12"
port = 8080
mode = "nat"

[[service]]
vip = "2001:db8:10::100"
port = 8083
protocol = "tcp"
scheduler = "rr"
local_addresses = ["10.20.0.210", "10.20.0.211"]
[[service.real]]
address = "10.20.0.11"
port = 80
[[service.real]]
address = "10.20.0.12"
port = 80
"#;
    let services = format!("{v4}{IPV6_SERVICES}{fullnat6}");
    dual_stack(&Lab::config_with_services(&services))
}

/// The IPv6 TOA of a captured SYN (None for another segment) (port, address) and the SYN's source, decoded by etherparse.
fn toa6(frame: &[u8]) -> Option<(u16, String, String)> {
    let p = etherparse::SlicedPacket::from_ethernet(frame).ok()?;
    let Some(etherparse::NetSlice::Ipv6(ip)) = &p.net else {
        return None;
    };
    let src = std::net::Ipv6Addr::from(ip.header().source()).to_string();
    let Some(etherparse::TransportSlice::Tcp(t)) = &p.transport else {
        return None;
    };
    // (libpcap cannot filter IPv6 SYNs by flags: they are picked here.)
    if !t.syn() {
        return None;
    }
    let o = t.options();
    let mut i = 0;
    while i + 1 < o.len() {
        match o[i] {
            0 => break,
            1 => i += 1,
            254 if o[i + 1] == 20 && i + 20 <= o.len() => {
                let port = u16::from_be_bytes([o[i + 2], o[i + 3]]);
                let addr: [u8; 16] = o[i + 4..i + 20].try_into().ok()?;
                return Some((port, std::net::Ipv6Addr::from(addr).to_string(), src));
            }
            _ => i += usize::from(o[i + 1].max(2)),
        }
    }
    None
}

/// The address in the IPv6 TOA of a captured IPv4 SYN, and the SYN's source.
fn toa6_in_v4(frame: &[u8]) -> Option<(String, String)> {
    let p = etherparse::SlicedPacket::from_ethernet(frame).ok()?;
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        return None;
    };
    let src = std::net::Ipv4Addr::from(ip.header().source()).to_string();
    let Some(etherparse::TransportSlice::Tcp(t)) = &p.transport else {
        return None;
    };
    let o = t.options();
    let at = t
        .syn()
        .then(|| o.windows(2).position(|w| w == [254, 20]))??;
    let addr: [u8; 16] = o.get(at + 4..at + 20)?.try_into().ok()?;
    Some((std::net::Ipv6Addr::from(addr).to_string(), src))
}

/// `curl -6 -gs ARGS...` from the client: its stdout.
fn curl6(lab: &Lab, args: &[&str]) -> String {
    let out = lab.exec("cli", &[&["curl", "-6", "-gs"][..], args].concat());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn rx_packets(lab: &Lab, node: &str, dev: &str) -> u64 {
    let p = format!("/sys/class/net/{dev}/statistics/rx_packets");
    lab.sh(node, &["cat", &p]).trim().parse().unwrap()
}

/// (peer, local) of every request a real server logged (nginx `ends.log`: `addr:port addr:port`,
/// IPv6 addresses unbracketed).
fn ends(lab: &Lab, rs: &str) -> Vec<(String, String)> {
    let log = std::fs::read_to_string(lab.run_dir.join(rs).join("ends.log")).unwrap_or_default();
    log.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn ipv6_dr_beside_ipv4_fullnat() {
    let lab = Lab::up("v6", &config());
    lab_sh(&lab, &["ipv6", "dr"]);

    // Neighbour discovery and echo: the gateway's client-side address and the VIP answer.
    for dst in ["2001:db8:10::1", VIP6] {
        let o = lab.exec(
            "cli",
            &["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", dst],
        );
        assert!(
            o.status.success(),
            "ping {dst}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }

    let before = rx_packets(&lab, "cli", "eth1");
    let mut pages = std::collections::HashMap::new();
    for _ in 0..20 {
        let body = lab.sh("cli", &["curl", "-6", "-gsf", "--max-time", "5", URL6]);
        *pages.entry(body.trim().to_string()).or_insert(0) += 1;
    }
    assert_eq!(pages.values().sum::<usize>(), 20, "{pages:?}");
    assert!(
        pages.contains_key("rs1") && pages.contains_key("rs2"),
        "both real servers serve: {pages:?}"
    );

    // Short connections at load, client ports reused, with IPv4 FullNAT traffic beside them.
    let v4 = lab.spawn(
        "cli",
        &[
            "timeout",
            "30",
            "wrk",
            "-t1",
            "-c8",
            "-d4s",
            "http://10.10.0.100/",
        ],
    );
    let (requests, errors, out) = wrk_close(&lab, URL6, 4);
    assert!(requests > 500, "{out}");
    assert_eq!(errors, 0, "{out}");
    let v4 = v4.wait_with_output().unwrap();
    let v4 = String::from_utf8_lossy(&v4.stdout).to_string();
    let (v4_requests, v4_errors) = wrk_totals(&v4);
    assert!(v4_requests > 100 && v4_errors == 0, "{v4}");

    // The replies came through the router to the client's second link.
    assert!(
        rx_packets(&lab, "cli", "eth1") - before > requests,
        "replies did not come through the router"
    );
    // The real servers saw the client itself, talking to the VIP.
    for rs in ["rs1", "rs2"] {
        let e: Vec<_> = ends(&lab, rs)
            .into_iter()
            .filter(|(p, _)| p.contains("2001:db8"))
            .collect();
        assert!(e.len() > 100, "{rs} served {} IPv6 requests", e.len());
        for (peer, local) in &e {
            assert!(peer.starts_with("2001:db8:10::2:"), "{rs}: peer {peer}");
            assert_eq!(local, "2001:db8:10::100:80", "{rs}: local {local}");
        }
    }

    // FullNAT: the servers see the local addresses; the SYN carries the IPv6 TOA.
    let cap_file = lab.run_dir.join("rs1-syn.pcap");
    let cap = capture(&lab, "rs1", "eth0", &cap_file, "ip6 and tcp dst port 80");
    let mut pages = std::collections::HashMap::new();
    for _ in 0..20 {
        let url = "http://[2001:db8:10::100]:8080/";
        let body = lab.sh("cli", &["curl", "-6", "-gsf", "--max-time", "5", url]);
        *pages.entry(body.trim().to_string()).or_insert(0) += 1;
    }
    stop(cap);
    assert!(
        pages.contains_key("rs1") && pages.contains_key("rs2"),
        "both real servers serve: {pages:?}"
    );
    let syns = frames(&cap_file);
    let with_toa: Vec<_> = syns.iter().filter_map(|f| toa6(f)).collect();
    assert!(
        !with_toa.is_empty(),
        "{} SYNs captured, none with the IPv6 TOA",
        syns.len()
    );
    for (port, addr, src) in &with_toa {
        assert_eq!(addr, "2001:db8:10::2", "TOA address");
        assert!(*port > 1024, "TOA port {port}");
        assert!(src.starts_with("2001:db8:20::20"), "SYN from a LIP: {src}");
    }
    for rs in ["rs1", "rs2"] {
        let peers: Vec<_> = ends(&lab, rs)
            .into_iter()
            .filter(|(_, local)| local.ends_with(":80") && !local.starts_with("2001:db8:10::100"))
            .filter(|(p, _)| p.contains("2001:db8"))
            .collect();
        assert!(!peers.is_empty(), "{rs}: no FullNAT request");
        for (peer, _) in &peers {
            assert!(
                peer.starts_with("2001:db8:20::20"),
                "{rs}: peer {peer} is not a LIP"
            );
        }
    }
    let (requests, errors, out) = wrk_close(&lab, "http://[2001:db8:10::100]:8080/", 3);
    assert!(requests > 300 && errors == 0, "{out}");

    // NAT (port 8081 -> 8080): the real servers route their replies through the gateway now (DR's
    // go through the router; both cannot be the default route at once).
    for rs in ["rs1", "rs2"] {
        lab.sh(
            rs,
            &[
                "ip",
                "-6",
                "route",
                "replace",
                "default",
                "via",
                "2001:db8:20::1",
            ],
        );
    }
    let mut pages = std::collections::HashMap::new();
    for _ in 0..20 {
        let url = "http://[2001:db8:10::100]:8081/";
        let body = lab.sh("cli", &["curl", "-6", "-gsf", "--max-time", "5", url]);
        *pages.entry(body.trim().to_string()).or_insert(0) += 1;
    }
    assert!(
        pages.contains_key("rs1") && pages.contains_key("rs2"),
        "both NAT real servers serve: {pages:?}"
    );
    for rs in ["rs1", "rs2"] {
        let nat: Vec<_> = ends(&lab, rs)
            .into_iter()
            .filter(|(_, local)| local.ends_with(":8080"))
            .collect();
        assert!(!nat.is_empty(), "{rs}: no NAT request");
        for (peer, _) in &nat {
            assert!(
                peer.starts_with("2001:db8:10::2:"),
                "{rs}: NAT keeps the client: {peer}"
            );
        }
    }
    let (requests, errors, out) = wrk_close(&lab, "http://[2001:db8:10::100]:8081/", 3);
    assert!(requests > 300 && errors == 0, "{out}");

    // NAT64 (port 8083): IPv4 real servers, reached from IPv4 local addresses, the client's IPv6
    // address in the IPv6 TOA of the IPv4 SYN.
    let cap_file = lab.run_dir.join("rs1-syn64.pcap");
    let cap = capture(&lab, "rs1", "eth0", &cap_file, "ip and tcp dst port 80");
    let mut pages = std::collections::HashMap::new();
    for _ in 0..20 {
        let url = "http://[2001:db8:10::100]:8083/";
        let body = lab.sh("cli", &["curl", "-6", "-gsf", "--max-time", "5", url]);
        *pages.entry(body.trim().to_string()).or_insert(0) += 1;
    }
    stop(cap);
    assert!(
        pages.contains_key("rs1") && pages.contains_key("rs2"),
        "both IPv4 real servers serve IPv6 clients: {pages:?}"
    );
    let toas: Vec<_> = frames(&cap_file)
        .iter()
        .filter_map(|f| toa6_in_v4(f))
        .collect();
    assert!(!toas.is_empty(), "no IPv4 SYN with the IPv6 TOA");
    for (addr, src) in &toas {
        assert_eq!(addr, "2001:db8:10::2");
        assert!(src.starts_with("10.20.0.21"), "SYN from a NAT64 LIP: {src}");
    }
    let (requests, errors, out) = wrk_close(&lab, "http://[2001:db8:10::100]:8083/", 3);
    assert!(requests > 300 && errors == 0, "{out}");
    // `ipvsadm --stats` counts that service's traffic (IPv6 services counted nothing before
    // cabee67). Workers publish their counters every 100 ms.
    std::thread::sleep(std::time::Duration::from_millis(400));
    let stats = lab.ipvsadm(&["-Ln", "--stats", "--exact"]);
    let cols: Vec<u64> = stats
        .lines()
        .find(|l| l.starts_with("TCP") && l.contains("[2001:db8:10::100]:8083"))
        .unwrap_or_else(|| panic!("no NAT64 service line in:\n{stats}"))
        .split_whitespace()
        .skip(2)
        .filter_map(|n| n.parse().ok())
        .collect();
    // Conns, InPkts, OutPkts, InBytes, OutBytes.
    assert_eq!(cols.len(), 5, "{stats}");
    assert!(cols[0] >= requests, "a connection a request: {stats}");
    assert!(cols[1] > cols[0] && cols[2] > cols[0], "{stats}");
    // IP lengths as received: the clients' IPv6 (60 bytes or more), the servers' IPv4 (40).
    assert!(
        cols[3] >= 60 * cols[1] && cols[4] >= 40 * cols[2],
        "{stats}"
    );

    // ipvsadm's IPv6 forms.
    let list = lab.ipvsadm(&["-Ln"]);
    assert!(list.contains("TCP  [2001:db8:10::100]:80 rr"), "{list}");
    assert!(list.contains("  -> [2001:db8:20::11]:80"), "{list}");
    let conns = lab.ipvsadm(&["-Lnc"]);
    assert!(
        conns.contains("[2001:db8:10::100]:80") && conns.contains("[2001:db8:10::2]:"),
        "{conns}"
    );
    let neigh = lab.gwctl(&["neigh"]);
    assert!(neigh.contains("2001:db8:20::11"), "{neigh}");
    let routes = lab.gwctl(&["routes"]);
    assert!(
        routes.contains("2001:db8:20::/64 port server connected"),
        "{routes}"
    );
    let addrs = lab.gwctl(&["addrs"]);
    // On a twin port the kernel has it too, as the IPv4 address beside it.
    assert!(
        addrs.contains("2001:db8:10::1/64 (config_kernel)"),
        "{addrs}"
    );
    assert!(addrs.contains("2001:db8:20::200"), "the LIPs: {addrs}");

    let stats = lab.stats();
    assert!(
        Lab::counter_of(&stats, "ipv6 ", "conns_created") > 500,
        "{stats}"
    );
    assert!(
        Lab::counter_of(&stats, "ipv6 ", "ns_answered") > 0,
        "{stats}"
    );
    // The IPv6 neighbour table's own counters, on their line: the client's packets confirm
    // the neighbour they came through.
    for key in ["learned", "to_reachable", "confirmed"] {
        assert!(
            Lab::counter_of(&stats, "neigh6 ", key) > 0,
            "neigh6 {key}: {stats}"
        );
    }
    for reason in [
        "no_conn",
        "conn_table_full",
        "l4_bad_checksum",
        "no_route",
        "nd_invalid",
        "ipv6_malformed",
        "ipv6_bad_extensions",
        "neigh_unresolved",
    ] {
        assert_eq!(Lab::drop_counter(&stats, reason), 0, "{reason}: {stats}");
    }

    // Persistence by /64, as `ipvsadm -M 64` asks: a client whose address changes within its
    // prefix (RFC 8981's temporary addresses) stays on its first server, which rr alone would
    // alternate; the template lists under the masked address. Before, an IPv6 service took no
    // netmask and its templates were neither listed nor keyed by the whole address.
    for rule in [
        "-A -t [2001:db8:10::100]:8090 -s rr -p 60 -M 64",
        "-P -t [2001:db8:10::100]:8090 -z 2001:db8:20::202",
        "-a -t [2001:db8:10::100]:8090 -r [2001:db8:20::11]:80 -b",
        "-a -t [2001:db8:10::100]:8090 -r [2001:db8:20::12]:80 -b",
    ] {
        lab.ipvsadm(&rule.split(' ').collect::<Vec<_>>());
    }
    let list = lab.ipvsadm(&["-Ln", "-t", "[2001:db8:10::100]:8090"]);
    assert!(
        list.contains("TCP  [2001:db8:10::100]:8090 rr persistent 60 mask 64"),
        "{list}"
    );
    lab.sh(
        "cli",
        &[
            "ip",
            "-6",
            "addr",
            "add",
            "2001:db8:10::3/64",
            "dev",
            "eth0",
            "nodad",
        ],
    );
    let mut servers = Vec::new();
    for i in 0..6 {
        let from = if i % 2 == 0 {
            "2001:db8:10::2"
        } else {
            "2001:db8:10::3"
        };
        let body = lab.sh(
            "cli",
            &[
                "curl",
                "-6",
                "-gsf",
                "--max-time",
                "5",
                "--interface",
                from,
                "http://[2001:db8:10::100]:8090/",
            ],
        );
        servers.push(body.trim().to_string());
    }
    assert!(
        servers.iter().all(|s| *s == servers[0]),
        "one server for the /64: {servers:?}"
    );
    let conns = lab.ipvsadm(&["-Lnc"]);
    let templates: Vec<&str> = conns.lines().filter(|l| l.contains(" NONE ")).collect();
    assert_eq!(templates.len(), 1, "{conns}");
    assert!(
        templates[0].contains("[2001:db8:10::]:0")
            && templates[0].contains("[2001:db8:10::100]:8090"),
        "{conns}"
    );

    // A per-client limit by /64 (before, an IPv6 service took none): 2 open connections over
    // the 2 workers, one each, for the client's two addresses together. Of 4 held open, 1 or 2
    // get through by how the hash of their ports spreads them; the others' SYNs are answered
    // with a RST (refused at once: no retransmission, each counted once).
    lab.gwctl(&[
        "limit",
        "-t",
        "[2001:db8:10::100]:8090",
        "max_conns",
        "2",
        "prefix",
        "64",
        "action",
        "rst",
    ]);
    let held = "import socket\nsocks = []\nfor i in range(4):\n    \
                s = socket.socket(socket.AF_INET6)\n    s.settimeout(1.0)\n    \
                s.bind(('2001:db8:10::%d' % (2 + i % 2), 0))\n    \
                try:\n        s.connect(('2001:db8:10::100', 8090))\n        \
                socks.append(s)\n    except ConnectionRefusedError:\n        pass\n\
                print(len(socks))\n";
    let open: u64 = lab
        .sh("cli", &["python3", "-c", held])
        .trim()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&open), "{open} open connections");
    std::thread::sleep(std::time::Duration::from_millis(400));
    let list = lab.gwctl(&["limit"]);
    assert!(
        list.contains("TCP [2001:db8:10::100]:8090  max_conns 2 per /64 rst"),
        "{list}"
    );
    let refused: u64 = list
        .lines()
        .find(|l| l.trim_start().starts_with("conns_refused"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or_else(|| panic!("no conns_refused in {list}"));
    assert_eq!(refused, 4 - open, "{list}");
}

/// The kernel twins carry the ports' IPv6 addresses (written from the config, without duplicate
/// address detection): a daemon in the gateway's namespace serves TCP on the client-side IPv6
/// address, and the kernel reaches an IPv6 real server through the server-side twin, its
/// neighbour discovery going through the datapath both ways (what an IPv6 health check or an
/// operator's `curl -6` from the box needs).
#[test]
fn the_kernel_serves_and_reaches_ipv6_through_the_twins() {
    let lab = Lab::up("v6k", &dual_stack(&Lab::default_config("")));
    lab_sh(&lab, &["ipv6"]);
    for (twin, addr) in [
        ("client", "2001:db8:10::1/64"),
        ("server", "2001:db8:20::1/64"),
    ] {
        let a = lab.sh("lb", &["ip", "-6", "-o", "addr", "show", "dev", twin]);
        assert!(a.contains(addr), "{twin}: {a}");
        assert!(!a.contains("tentative"), "{twin}: usable at once: {a}");
        // Only the config's addresses: no stateless autoconfiguration on a twin.
        let conf = lab.sh(
            "lb",
            &["cat", &format!("/proc/sys/net/ipv6/conf/{twin}/autoconf")],
        );
        assert_eq!(conf.trim(), "0", "{twin}");
    }
    let mut tcp = lab.spawn(
        "lb",
        &[
            "socat",
            "TCP6-LISTEN:2222,reuseaddr,fork",
            "SYSTEM:echo hello-over-ipv6",
        ],
    );
    let t = std::time::Instant::now();
    while lab
        .sh("lb", &["ss", "-H", "-ltn", "sport = :2222"])
        .trim()
        .is_empty()
    {
        assert!(t.elapsed().as_secs() < 10, "nothing listens on 2222");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = lab.sh(
        "cli",
        &["socat", "-T", "3", "-", "TCP6:[2001:db8:10::1]:2222"],
    );
    assert_eq!(
        out.trim(),
        "hello-over-ipv6",
        "a kernel daemon on the port's IPv6 address"
    );
    // The kernel's own traffic: it resolves the real server through the twin and the datapath.
    let page = lab.sh(
        "lb",
        &[
            "curl",
            "-6",
            "-gsf",
            "--max-time",
            "5",
            "http://[2001:db8:20::11]/",
        ],
    );
    assert_eq!(page.trim(), "rs1", "the kernel reaches an IPv6 real server");
    // The stats file is written once a second.
    let t = std::time::Instant::now();
    let mut stats = lab.stats();
    while Lab::counter_of(&stats, "punt ", "punt_local") == 0 && t.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        stats = lab.stats();
    }
    assert!(
        Lab::counter_of(&stats, "punt ", "punt_local") > 0,
        "the TCP to the port's address went up to the twin: {stats}"
    );
    assert!(
        Lab::counter_of(&stats, "punt ", "from_kernel") > 0,
        "the kernel's IPv6 went out through the datapath: {stats}"
    );
    let _ = tcp.kill();
    let _ = tcp.wait();
}

/// The kernel is the source of truth for a twin port's IPv6 addresses and routes, as for IPv4
/// ones (DESIGN.md decision 14): an IPv6 route added on the server twin is the one the datapath
/// sends a FullNAT reply by, to a client network behind the router; an IPv6 address added on the
/// client twin is one the datapath itself answers pings for; both removed, they are gone. A
/// static IPv6 neighbour on a twin is the workers' too.
#[test]
fn ipv6_addresses_and_routes_follow_the_kernel() {
    let lab = Lab::up("v6m", &dual_stack(&config()));
    lab_sh(&lab, &["ipv6"]);
    // The client's second address, on the network behind the router (2001:db8:11::/64): the
    // gateway has no route there but the one the kernel will give it.
    let from = ["-m", "2", "--interface", "2001:db8:11::2"];
    let curl = || {
        curl6(
            &lab,
            &[&from[..], &["http://[2001:db8:10::100]:8080/"]].concat(),
        )
    };
    assert_eq!(curl(), "", "no IPv6 route to 2001:db8:11::/64 yet");
    assert!(
        Lab::drop_counter(&lab.stats(), "no_route") > 0,
        "{}",
        lab.stats()
    );
    let route = [
        "2001:db8:11::/64",
        "via",
        "2001:db8:20::254",
        "dev",
        "server",
    ];
    let ip6 = |args: &[&str]| {
        let mut a = vec!["ip", "-6"];
        a.extend_from_slice(args);
        let out = lab.exec("lb", &a);
        assert!(out.status.success(), "{a:?}: {out:?}");
    };
    ip6(&[&["route", "add"][..], &route].concat());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let page = curl();
    assert!(
        page == "rs1" || page == "rs2",
        "the kernel's route is the datapath's: {page:?}\n{}",
        lab.log()
    );
    let gwctl = |what: &str| {
        let sock = format!("/run/gateway/{}.sock", lab.name);
        lab.sh("lb", &[env!("CARGO_BIN_EXE_gwctl"), "-s", &sock, what])
    };
    let routes = gwctl("routes");
    assert!(
        routes.contains("2001:db8:11::/64 via 2001:db8:20::254 port server kernel"),
        "{routes}"
    );
    ip6(&[&["route", "del"][..], &route].concat());
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(curl(), "", "the route deleted in the kernel is gone");
    // An address: answered by the datapath itself (its echo counter), not only by the twin.
    let echoes = || Lab::counter_of(&lab.stats(), "ipv6 ", "echo_replies");
    let ping = || {
        lab.exec(
            "cli",
            &["ping", "-6", "-c", "1", "-W", "1", "2001:db8:10::77"],
        )
        .status
        .success()
    };
    assert!(!ping(), "no one has 2001:db8:10::77 yet");
    let before = echoes();
    ip6(&[
        "addr",
        "add",
        "2001:db8:10::77/64",
        "dev",
        "client",
        "nodad",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(ping(), "{}", lab.log());
    assert!(echoes() > before, "the datapath answered: {}", lab.stats());
    let addrs = gwctl("addrs");
    assert!(addrs.contains("2001:db8:10::77/64 (kernel)"), "{addrs}");
    assert!(
        addrs.contains("2001:db8:10::1/64 (config_kernel)"),
        "{addrs}"
    );
    // A neighbour: a static entry on the server twin is the workers' too.
    let mac = "02:00:00:00:00:99";
    ip6(&[
        "neigh",
        "add",
        "2001:db8:20::99",
        "lladdr",
        mac,
        "dev",
        "server",
        "nud",
        "permanent",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let neigh = gwctl("neigh");
    assert!(
        neigh
            .lines()
            .any(|l| l.contains("2001:db8:20::99 ") && l.contains(mac)),
        "{neigh}"
    );
    ip6(&["addr", "del", "2001:db8:10::77/64", "dev", "client"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = echoes();
    // The datapath no longer answers; its neighbour entry on the client may linger, so the
    // counter, not the ping, says so.
    let _ = ping();
    assert_eq!(echoes(), before, "{}", lab.stats());
}

/// Behind a switch that snoops MLD (RFC 4541) and floods no unregistered multicast to the
/// gateway's port, as many datacenter switches do: the real servers' neighbour solicitations for
/// the LIPs (sent to the LIPs' solicited-node groups) reach the datapath only because the server
/// twin listens to those groups and its kernel reports them (`kernel::mld`).
#[test]
fn a_snooping_switch_passes_the_real_servers_solicitations_for_the_lips() {
    let lab = Lab::up("v6s", &dual_stack(&config()));
    lab_sh(&lab, &["ipv6"]);
    let groups = ["ff02::1:ff00:200", "ff02::1:ff00:201"];
    let twins = lab.gwctl(&["twins"]);
    for g in groups {
        assert!(
            twins.contains(&format!("listening {g} on server")),
            "{twins}"
        );
    }
    assert!(
        twins.contains("listening ff02::1:ff00:100 on client")
            && !twins.contains("listening ff02::1:ff00:100 on server"),
        "the VIP is on the client link, not the server's: {twins}"
    );
    // The switch: IPv6 on its bridge (the querier's link-local source, usable at once), MLD
    // snooping with the bridge as querier (queries every 2 s, answered within 1 s), and no
    // unregistered multicast to the gateway's port.
    for cmd in [
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.br0.accept_dad=0",
        "sysctl -qw net.ipv6.conf.br0.disable_ipv6=0",
        // The intervals first: the querier takes them when it starts.
        "ip link set br0 type bridge mcast_snooping 1 mcast_query_interval 200 \
         mcast_startup_query_interval 100 mcast_query_response_interval 100",
        "ip link set br0 type bridge mcast_querier 1",
        "bridge link set dev p-lb mcast_flood off",
    ] {
        let out = lab.exec("sw", &["sh", "-c", cmd]);
        assert!(out.status.success(), "{cmd}: {out:?}");
    }
    let mdb =
        || String::from_utf8_lossy(&lab.exec("sw", &["bridge", "mdb", "show"]).stdout).into_owned();
    let t = std::time::Instant::now();
    while !groups
        .iter()
        .all(|g| mdb().contains(&format!("port p-lb grp {g}")))
    {
        assert!(
            t.elapsed().as_secs() < 15,
            "the switch never learned the LIPs' groups on the gateway's port:\n{}",
            mdb()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The bridge forwards by its groups once a querier has been heard for a response interval
    // (until then it floods, and floods nothing to the gateway's port).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // The real servers resolve the LIPs afresh, through the switch, as they answer FullNAT.
    for rs in ["rs1", "rs2"] {
        lab.exec(rs, &["ip", "-6", "neigh", "flush", "dev", "eth0"]);
    }
    for i in 0..8 {
        let page = curl6(&lab, &["-m", "3", "http://[2001:db8:10::100]:8080/"]);
        assert!(
            page == "rs1" || page == "rs2",
            "request {i}: {page:?}\n{}\n{}",
            mdb(),
            lab.stats()
        );
    }
}

/// Health checks of IPv6 real servers: the checker's probes leave through the kernel twin (which
/// carries the port's IPv6 address) to the servers' IPv6 addresses. A stopped nginx takes its
/// server out of the IPv6 service's rotation (weight 0), new IPv6 connections all go to the
/// other; with both stopped the IPv6 sorry server answers; restarted, they come back.
#[test]
fn ipv6_real_servers_are_health_checked_through_the_twin() {
    let service = r#"
[[service]]
vip = "2001:db8:10::100"
port = 80
protocol = "tcp"
scheduler = "rr"
local_addresses = ["2001:db8:20::200"]
check = { kind = "tcp", interval_ms = 200, timeout_ms = 500, rise = 1, fall = 1 }
sorry_server = "[2001:db8:20::12]:9090"
[[service.real]]
address = "2001:db8:20::11"
[[service.real]]
address = "2001:db8:20::12"
"#;
    let lab = Lab::up("v6h", &dual_stack(&Lab::default_config(service)));
    lab_sh(&lab, &["ipv6"]);
    let five = std::time::Duration::from_secs(5);
    let wait = |rs: &str, want: &str| lab.wait_health(&format!("[{rs}]"), want, five);
    // The weight ipvsadm shows follows the verdict once the workers run the new generation.
    let weight = |endpoint: &str, want: &str| lab.wait_weight(endpoint, want, five);
    for rs in ["2001:db8:20::11", "2001:db8:20::12"] {
        wait(rs, "check passed");
        weight(&format!("[{rs}]:80"), "1");
    }
    lab.nginx("rs1", false);
    wait("2001:db8:20::11", "down");
    // The probe in flight while nginx shut down may time out; the next ones are refused (RST).
    wait("2001:db8:20::11", "connection refused");
    weight("[2001:db8:20::11]:80", "0");
    for _ in 0..6 {
        let body = lab.sh("cli", &["curl", "-6", "-gsf", "--max-time", "3", URL6]);
        assert_eq!(body.trim(), "rs2", "only the server that is up");
    }
    // Both down: the sorry server (a web server on rs2's IPv6 address, port 9090) answers.
    let www = lab.run_dir.join("sorry");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "sorry\n").unwrap();
    let www = www.to_str().unwrap().to_string();
    let mut sorry = lab.spawn(
        "rs2",
        &[
            "python3",
            "-m",
            "http.server",
            "--bind",
            "::",
            "9090",
            "--directory",
            &www,
        ],
    );
    let t = std::time::Instant::now();
    while !lab
        .exec("rs2", &["curl", "-s", "-m", "1", "http://[::1]:9090/"])
        .status
        .success()
    {
        assert!(t.elapsed().as_secs() < 10, "the sorry server did not start");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    lab.nginx("rs2", false);
    wait("2001:db8:20::12", "down");
    weight("[2001:db8:20::12]:9090", "1");
    let body = lab.sh("cli", &["curl", "-6", "-gsf", "--max-time", "3", URL6]);
    assert_eq!(body.trim(), "sorry", "{}", lab.gwctl(&["ipvsadm", "-Ln"]));
    let _ = sorry.kill();
    let _ = sorry.wait();
    for rs in ["rs1", "rs2"] {
        lab.nginx(rs, true);
    }
    wait("2001:db8:20::11", " up ");
    wait("2001:db8:20::12", " up ");
}

/// Passive detection and `syn_retry` for an IPv6 FullNAT service, as `lab_health` shows them
/// for IPv4: rs1's nginx stopped, not one of the client's requests fails (rs1's RSTs are held
/// back and the clients' retransmitted SYNs go to rs2), and the refusals mark rs1 down long
/// before its probes could (one every 3 s, fall 5).
#[test]
fn an_ipv6_server_that_refuses_is_retried_around_and_marked_down_passively() {
    let service = r#"
[[service]]
vip = "2001:db8:10::100"
port = 80
protocol = "tcp"
scheduler = "rr"
syn_retry = true
local_addresses = ["2001:db8:20::200"]
check = { kind = "tcp", interval_ms = 3000, timeout_ms = 500, rise = 1, fall = 5, passive_fall = 3 }
[[service.real]]
address = "2001:db8:20::11"
[[service.real]]
address = "2001:db8:20::12"
"#;
    let lab = Lab::up("v6r", &dual_stack(&Lab::default_config(service)));
    lab_sh(&lab, &["ipv6"]);
    let ten = std::time::Duration::from_secs(10);
    for rs in ["2001:db8:20::11", "2001:db8:20::12"] {
        lab.wait_health(&format!("[{rs}]"), " up ", ten);
    }
    // Short connections first, client ports reused (the servers' TIME_WAIT on the LIP:lports
    // answering some SYNs with a bare ACK): not one failure counted, nothing retried.
    let (requests, errors, out) = wrk_close(&lab, URL6, 4);
    assert!(requests > 300 && errors == 0, "{out}");
    let stats = lab.stats();
    assert_eq!(Lab::conn_counter(&stats, "syn_retried"), 0, "{stats}");
    // The workers' counts reach `gwctl health` within a few hundred ms.
    std::thread::sleep(std::time::Duration::from_secs(1));
    for rs in ["2001:db8:20::11", "2001:db8:20::12"] {
        let line = lab.health_of(&format!("[{rs}]"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        // service (2), real server, check, state, for_s, checks, failed, syn_rst, syn_lost
        assert_eq!(cols.get(4), Some(&"up"), "{line}");
        assert_eq!(
            cols.get(8..10),
            Some(&["0", "0"][..]),
            "refused, lost: {line}"
        );
    }
    lab.nginx("rs1", false);
    let stopped = std::time::Instant::now();
    for i in 0..8 {
        let args = [
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            URL6,
        ];
        let code = curl6(&lab, &args);
        assert_eq!(code, "200", "request {i} failed");
    }
    let retried = Lab::conn_counter(&lab.stats(), "syn_retried");
    assert!(retried > 0, "no SYN retried:\n{}", lab.stats());
    let detected = lab.wait_health("[2001:db8:20::11]", "down", ten);
    let reason = lab
        .log()
        .lines()
        .find(|l| l.contains("[2001:db8:20::11]:80") && l.contains("is down"))
        .unwrap_or_default()
        .to_string();
    eprintln!(
        "rs1 down {:?} after its nginx stopped ({detected:?} of waiting), {retried} SYNs retried: {reason}",
        stopped.elapsed()
    );
    assert!(reason.contains("passive"), "{reason}\n{}", lab.log());
    assert!(
        stopped.elapsed() < std::time::Duration::from_secs(12),
        "the probes alone take 5 x 3 s"
    );
    lab.nginx("rs1", true);
}

/// IPv6 TCP SYNs from random sources (2001:db8:99::/64, never answered) to the VIP's port 80:
/// argv MAC (the gateway's client port), COUNT [, PORT instead of 80]. Built whole first, then
/// sent on the client's link as fast as one raw socket sends (hping3 has no IPv6).
const SYN_FLOOD6_PY: &str = r#"
import random, socket, struct, sys
dst_mac = bytes.fromhex(sys.argv[1].replace(":", ""))
src_mac = bytes.fromhex(open("/sys/class/net/eth0/address").read().strip().replace(":", ""))
vip = socket.inet_pton(socket.AF_INET6, "2001:db8:10::100")
net = socket.inet_pton(socket.AF_INET6, "2001:db8:99::")[:8]
rnd = random.Random(6)
port = int(sys.argv[3]) if len(sys.argv) > 3 else 80

def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

frames = []
for _ in range(int(sys.argv[2])):
    src = net + rnd.randbytes(8)
    tcp = struct.pack("!HHIIBBHHH", rnd.randrange(1024, 65536), port, rnd.getrandbits(32), 0,
                      5 << 4, 0x02, 64240, 0, 0)
    c = csum(src + vip + struct.pack("!IxxxB", len(tcp), 6) + tcp)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    ip = struct.pack("!IHBB", 6 << 28, len(tcp), 6, 64) + src + vip
    frames.append(dst_mac + src_mac + b"\x86\xdd" + ip + tcp)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for f in frames:
    s.send(f)
print(len(frames))
"#;

/// A SYN flood from spoofed IPv6 sources cannot take an IPv6 service down, as
/// `lab_synflood` shows for IPv4: past `[conn] max_half_open` (half of `capacity6`, here 1024 a
/// worker) half-open connections give way to new SYNs, so a real client connects right after.
/// Without the bound the table would fill with half-open connections for their 60 s.
#[test]
fn a_spoofed_ipv6_syn_flood_leaves_room_for_real_clients() {
    let cfg = config().replace("capacity = 65536", "capacity = 65536\ncapacity6 = 1024");
    let lab = Lab::up("v6sf", &cfg);
    lab_sh(&lab, &["ipv6", "dr"]);
    let curl6 = || {
        lab.exec(
            "cli",
            &[
                "curl",
                "-6",
                "-gsf",
                "-o",
                "/dev/null",
                "--max-time",
                "3",
                URL6,
            ],
        )
        .status
        .success()
    };
    assert!(curl6(), "before the flood");
    let mac = lab.sh("lb", &["cat", "/sys/class/net/lbc/address"]);
    let out = lab.sh(
        "cli",
        &[
            "timeout",
            "60",
            "python3",
            "-c",
            SYN_FLOOD6_PY,
            mac.trim(),
            "20000",
        ],
    );
    assert_eq!(out.trim(), "20000", "the flood was sent");
    let after = (0..10).filter(|_| curl6()).count();
    let stats = lab.stats();
    let evicted = Lab::counter_of(&stats, "ipv6 ", "evicted_embryonic");
    let half_open = Lab::counter_of(&stats, "ipv6 ", "half_open");
    eprintln!("after the flood {after}/10 curls; {evicted} evicted, {half_open} half-open");
    assert!(evicted > 0, "the flood filled the bound: {stats}");
    assert!(
        half_open <= 2 * 512,
        "the bound, half of each worker's table: {stats}"
    );
    assert_eq!(after, 10, "{stats}");
    assert_eq!(Lab::drop_counter(&stats, "conn_table_full"), 0, "{stats}");
}

/// The SYN proxy on an IPv6 FullNAT service (port 8080), turned on at run time, as
/// `lab_synproxy`'s for IPv4, then on the NAT one (8081): real clients (curl, wrk with `Connection: close`, client ports
/// reused) are served through it, each connection opened by an ACK that proved its cookie and
/// its server's sequence numbers shifted into the client's; a flood from spoofed IPv6 sources is
/// answered with cookies and leaves no state, so no half-open connection is held and no
/// embryonic one evicted, and a real client connects after it.
#[test]
fn a_proxied_ipv6_service_serves_real_clients_through_a_spoofed_flood() {
    let lab = Lab::up("v6sp", &config());
    lab_sh(&lab, &["ipv6"]);
    lab.gwctl(&["synproxy", "-t", "[2001:db8:10::100]:8080", "on"]);
    let listed = lab.gwctl(&["synproxy"]);
    assert!(
        listed.contains("TCP [2001:db8:10::100]:8080 on"),
        "{listed}"
    );
    let url = "http://[2001:db8:10::100]:8080/";
    let curl = || curl6(&lab, &["-f", "--max-time", "3", url]);
    let pages: Vec<String> = (0..10).map(|_| curl()).collect();
    assert!(
        pages.iter().all(|p| p == "rs1" || p == "rs2"),
        "{pages:?}\n{}",
        lab.stats()
    );
    let (requests, errors, out) = wrk_close(&lab, url, 3);
    let stats = lab.stats();
    assert!(requests > 300 && errors == 0, "{out}\n{stats}");
    let opened = Lab::counter_of(&stats, "synproxy ", "conns");
    let answered = Lab::counter_of(&stats, "synproxy ", "server_answered");
    assert!(opened >= requests + 10, "every connection proxied: {stats}");
    assert!(answered * 100 >= opened * 99, "{stats}");

    let sent_before = Lab::counter_of(&stats, "synproxy ", "cookies_sent");
    let mac = lab.sh("lb", &["cat", "/sys/class/net/lbc/address"]);
    let flood = [
        "timeout",
        "60",
        "python3",
        "-c",
        SYN_FLOOD6_PY,
        mac.trim(),
        "20000",
        "8080",
    ];
    assert_eq!(lab.sh("cli", &flood).trim(), "20000", "the flood was sent");
    let after: Vec<String> = (0..10).map(|_| curl()).collect();
    let stats = lab.stats();
    let sent = Lab::counter_of(&stats, "synproxy ", "cookies_sent") - sent_before;
    let half_open = Lab::counter_of(&stats, "ipv6 ", "half_open");
    let evicted = Lab::counter_of(&stats, "ipv6 ", "evicted_embryonic");
    eprintln!("after the flood {after:?}; {sent} cookies sent, {half_open} half-open");
    assert!(
        sent > 10_000,
        "the flood was answered with cookies: {stats}"
    );
    assert!(half_open < 100, "the flood left no state: {stats}");
    assert_eq!(evicted, 0, "{stats}");
    assert!(
        after.iter().all(|p| p == "rs1" || p == "rs2"),
        "{after:?}\n{stats}"
    );
    // NAT66 behind the proxy (port 8081 to the servers' 8080): the servers route their
    // replies through the gateway.
    for rs in ["rs1", "rs2"] {
        let route = [
            "ip",
            "-6",
            "route",
            "replace",
            "default",
            "via",
            "2001:db8:20::1",
        ];
        lab.sh(rs, &route);
    }
    lab.gwctl(&["synproxy", "-t", "[2001:db8:10::100]:8081", "on"]);
    let before = Lab::counter_of(&lab.stats(), "synproxy ", "conns");
    let nat_url = "http://[2001:db8:10::100]:8081/";
    let pages: Vec<String> = (0..10)
        .map(|_| curl6(&lab, &["-f", "--max-time", "3", nat_url]))
        .collect();
    let stats = lab.stats();
    assert!(
        pages.iter().all(|p| p == "rs1" || p == "rs2"),
        "NAT66: {pages:?}\n{stats}"
    );
    assert_eq!(
        Lab::counter_of(&stats, "synproxy ", "conns"),
        before + 10,
        "{stats}"
    );
    // Off again: SYNs go to the real servers as before.
    lab.gwctl(&["synproxy", "-t", "[2001:db8:10::100]:8080", "off"]);
    let before = Lab::counter_of(&lab.stats(), "synproxy ", "conns");
    let out = lab.exec("cli", &["curl", "-6", "-gsfv", "--max-time", "3", url]);
    let page = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        page == "rs1" || page == "rs2",
        "{page:?} {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        lab.stats()
    );
    assert_eq!(Lab::counter_of(&lab.stats(), "synproxy ", "conns"), before);
}

/// Path MTU discovery through the IPv6 SYN proxy, with real kernels (RFC 8201): the client's
/// side sends a packet too big quoting the server's next segment as the client sees it, in the
/// proxy's sequence space. Translated for the server, the quote is back in the server's own space
/// (Linux ignores an error quoting a sequence number outside its window: `tcp_v6_err`), and the
/// server's kernel learns the MTU toward its local address.
#[test]
fn a_packet_too_big_from_the_client_side_reaches_the_server_of_a_proxied_connection() {
    let lab = Lab::up("v6pm", &config());
    lab_sh(&lab, &["ipv6"]);
    lab.gwctl(&["synproxy", "-t", "[2001:db8:10::100]:8080", "on"]);
    let lips = ["2001:db8:20::200", "2001:db8:20::201"];
    let stats = assert_server_learns_the_clients_mtu(&lab, ("6", VIP6, "8080"), &lips, 1280);
    assert_eq!(Lab::counter_of(&stats, "synproxy ", "conns"), 1, "{stats}");
    assert!(
        Lab::counter_of(&stats, "ipv6 ", "icmp_translated") >= 1,
        "{stats}"
    );
}

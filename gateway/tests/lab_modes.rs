//! End-to-end NAT, DR and TUN in the netns lab (scripts/lab.sh), with curl and wrk from the client
//! namespace, the real `gateway` binary on two af_packet ports with two workers:
//!
//! - DR: the seeds' classic real server (VIP on `lo`, `arp_ignore=1`, `arp_announce=2`) replying to
//!   the client through a router namespace, not through the gateway;
//! - TUN: the same real servers behind a userspace IPIP decapsulator (scripts/ipip-decap.py; no ipip
//!   module here), the encapsulation captured on the real server and checked byte by byte against
//!   what the client sent, and fragmentation-needed for a too-big upload;
//! - NAT: real servers route back through the gateway, port mapping 80 -> 8080, replies handed
//!   between the workers by the client's tuple;
//! - one service mixing FullNAT and DR real servers.
//!
//! Needs root. Run: `CARGO_TARGET_DIR=/work/target-modes nice -n 10 cargo test -p gateway --test lab_modes`

mod common;
use common::*;
use std::collections::HashMap;
use std::net::Ipv4Addr;

const CIP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
const LIPS: [&str; 2] = ["10.20.0.200", "10.20.0.201"];

/// A service on VIP:80 over rs1 and rs2 with the given modes (and real-server port).
fn service(modes: [&str; 2], rport: u16, lips: bool) -> String {
    let lips = if lips {
        "local_addresses = [\"10.20.0.200\", \"10.20.0.201\"]\n"
    } else {
        ""
    };
    format!(
        "[[service]]\nvip = \"10.10.0.100\"\nport = 80\nprotocol = \"tcp\"\nscheduler = \"rr\"\n{lips}\n\
         [[service.real]]\naddress = \"10.20.0.11\"\nport = {rport}\nmode = \"{}\"\n\n\
         [[service.real]]\naddress = \"10.20.0.12\"\nport = {rport}\nmode = \"{}\"\n",
        modes[0], modes[1]
    )
}

/// `n` sequential curls to the VIP, every one succeeding; pages served per body.
fn curls(lab: &Lab, n: usize) -> HashMap<String, usize> {
    let mut pages = HashMap::new();
    for _ in 0..n {
        let body = lab.sh(
            "cli",
            &["curl", "-sf", "--max-time", "5", "http://10.10.0.100/"],
        );
        *pages.entry(body.trim().to_string()).or_insert(0) += 1;
    }
    pages
}

/// A few seconds of wrk: no socket errors, no non-2xx, more than 100 requests.
fn wrk(lab: &Lab) -> u64 {
    let out = lab.sh(
        "cli",
        &[
            "timeout",
            "30",
            "wrk",
            "-t2",
            "-c20",
            "-d3s",
            "http://10.10.0.100/",
        ],
    );
    assert!(!out.contains("Socket errors"), "{out}");
    assert!(!out.contains("Non-2xx"), "{out}");
    let reqs = out
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(reqs > 100, "{out}");
    reqs
}

/// (peer, local) endpoints of every request a real server logged (nginx `ends.log`).
fn ends(lab: &Lab, rs: &str) -> Vec<(String, String)> {
    let log = std::fs::read_to_string(lab.run_dir.join(rs).join("ends.log")).unwrap_or_default();
    log.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn peer_ip(e: &str) -> &str {
    e.split(':').next().unwrap()
}

/// Packets received on a device of a node.
fn rx_packets(lab: &Lab, node: &str, dev: &str) -> u64 {
    lab.sh(
        node,
        &[
            "cat",
            &format!("/sys/class/net/{dev}/statistics/rx_packets"),
        ],
    )
    .trim()
    .parse()
    .unwrap()
}

/// No drop that would mean lost traffic.
fn assert_no_bad_drops(lab: &Lab) -> String {
    let stats = lab.stats();
    for reason in [
        "ring_full",
        "no_conn",
        "conn_table_full",
        "l4_bad_checksum",
        "no_route",
        "not_owner",
    ] {
        assert_eq!(Lab::drop_counter(&stats, reason), 0, "{reason}: {stats}");
    }
    stats
}

fn mac_of(lab: &Lab, node: &str, dev: &str) -> [u8; 6] {
    let s = lab.sh(node, &["cat", &format!("/sys/class/net/{dev}/address")]);
    let v: Vec<u8> = s
        .trim()
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

#[test]
fn dr_through_a_router_namespace() {
    let lab = Lab::up(
        "dr",
        &Lab::config_with_services(&service(["dr", "dr"], 80, false)),
    );
    lab_sh(&lab, &["rs", "dr"]);
    let before = rx_packets(&lab, "cli", "eth1");
    let pages = curls(&lab, 20);
    assert_eq!(pages.values().sum::<usize>(), 20);
    assert!(
        pages.contains_key("rs1") && pages.contains_key("rs2"),
        "both real servers serve: {pages:?}"
    );
    wrk(&lab);
    // The replies came through the router to the client's second link, not through the gateway.
    assert!(
        rx_packets(&lab, "cli", "eth1") - before > 200,
        "replies did not come through the router"
    );
    // The real servers saw the client itself, talking to the VIP (the IP packet is untouched).
    for rs in ["rs1", "rs2"] {
        let e = ends(&lab, rs);
        assert!(!e.is_empty(), "{rs} served nothing");
        for (peer, local) in &e {
            assert_eq!(peer_ip(peer), CIP.to_string(), "{rs}: peer {peer}");
            assert_eq!(local, "10.10.0.100:80", "{rs}: local {local}");
        }
    }
    let stats = assert_no_bad_drops(&lab);
    // DR sees no replies: the only packets handed over are client packets that the kernel's
    // fanout put on the worker that does not own their connection (`forward::owner`).
    assert_eq!(Lab::conn_counter(&stats, "handoff_reply"), 0, "{stats}");
    assert_eq!(
        lab.worker_counter(&stats, "handoff_out"),
        Lab::conn_counter(&stats, "handoff_client"),
        "{stats}"
    );
}

#[test]
fn tun_through_a_userspace_decapsulator_with_exact_encapsulation() {
    let lab = Lab::up(
        "tun",
        &Lab::config_with_services(&service(["tun", "tun"], 80, true)),
    );
    lab_sh(&lab, &["rs", "tun"]);
    let pages = curls(&lab, 10);
    assert_eq!(pages.values().sum::<usize>(), 10);
    assert!(
        pages.contains_key("rs1") && pages.contains_key("rs2"),
        "{pages:?}"
    );

    // Capture what the client sends to the VIP and what reaches rs1 in IPIP, during a few curls.
    let (sent_f, tunnel_f) = (
        lab.run_dir.join("cli-sent.pcap"),
        lab.run_dir.join("rs1-ipip.pcap"),
    );
    let sent = capture(&lab, "cli", "eth0", &sent_f, "ip dst host 10.10.0.100");
    let tunnel = capture(&lab, "rs1", "eth0", &tunnel_f, "ip proto 4");
    curls(&lab, 6);
    stop(sent);
    stop(tunnel);
    let sent: Vec<Vec<u8>> = frames(&sent_f)
        .into_iter()
        .map(|f| f[14..].to_vec())
        .collect();
    let tunnelled = frames(&tunnel_f);
    assert!(
        tunnelled.len() >= 6,
        "too few IPIP packets on rs1: {}",
        tunnelled.len()
    );
    let rs1_mac = mac_of(&lab, "rs1", "eth0");
    let gw_mac = mac_of(&lab, "lb", "lbs");
    for (i, f) in tunnelled.iter().enumerate() {
        assert_eq!(&f[0..6], &rs1_mac, "frame {i}: to rs1's MAC");
        assert_eq!(&f[6..12], &gw_mac, "frame {i}: from the gateway's port");
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        let inner = &f[34..];
        let twin = sent.iter().find(|s| {
            s.len() >= 6 && inner.len() >= 6 && s[4..6] == inner[4..6] && s[20..] == inner[20..]
        });
        assert!(
            sent.iter().any(|s| s == inner),
            "frame {i}: inner packet is not one the client sent, byte for byte ({} captured):\n inner {inner:02x?}\n sent  {twin:02x?}",
            sent.len()
        );
        // The outer header a correct encapsulation has (RFC 2003 3.1), encoded by etherparse.
        let src = Ipv4Addr::new(f[26], f[27], f[28], f[29]);
        assert!(
            LIPS.contains(&src.to_string().as_str()),
            "frame {i}: outer source {src}"
        );
        let (ih, _) = etherparse::Ipv4Header::from_slice(inner).unwrap();
        let mut oh = etherparse::Ipv4Header::new(
            inner.len() as u16,
            64,
            etherparse::IpNumber::IPV4,
            src.octets(),
            [10, 20, 0, 11],
        )
        .unwrap();
        oh.dscp = ih.dscp;
        oh.ecn = ih.ecn;
        oh.identification = ih.identification;
        oh.dont_fragment = ih.dont_fragment;
        oh.header_checksum = oh.calc_header_checksum();
        assert_eq!(&f[14..34], &oh.to_bytes()[..], "frame {i}: outer header");
    }

    // An upload in full-size segments does not fit once wrapped: the client gets fragmentation-needed
    // (MTU 1480) from the VIP, lowers its path MTU and the upload completes.
    let body = lab.run_dir.join("upload.bin");
    std::fs::write(&body, vec![b'u'; 200_000]).unwrap();
    let icmp_f = lab.run_dir.join("cli-icmp.pcap");
    // A second upload only when the first sent the gateway no segment too big to wrap
    // (`tun_too_big` 0: the behaviour under test never ran; seen in CI at 72f7c08 and 2e00242,
    // the upload answered, nothing too big counted on either worker).
    let mut attempt = 0;
    let frag_needed = loop {
        attempt += 1;
        let icmp = capture(&lab, "cli", "eth0", &icmp_f, "icmp");
        let code = lab.sh(
            "cli",
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "10",
                "--data-binary",
                &format!("@{}", body.display()),
                "http://10.10.0.100/",
            ],
        );
        stop(icmp);
        assert!(
            code.starts_with('4') || code.starts_with('2'),
            "upload got no HTTP answer: {code}"
        );
        let errors = frames(&icmp_f);
        if let Some(f) = errors
            .iter()
            .find(|f| f.len() >= 42 && f[23] == 1 && f[34] == 3 && f[35] == 4)
        {
            break f.clone();
        }
        let stats = lab.stats();
        if attempt == 1 && Lab::conn_counter(&stats, "tun_too_big") == 0 {
            continue;
        }
        // What the gateway counted tells whether it sent none (`tun_too_big` without
        // `frag_needed`: `neigh_unresolved`?) or the capture missed it.
        panic!(
            "no frag-needed among {} ICMP frames on the client (upload {attempt}, HTTP {code}); \
             its route: {}\nthe gateway's stats:\n{stats}",
            errors.len(),
            lab.sh("cli", &["ip", "route", "get", "10.10.0.100"]),
        );
    };
    assert_eq!(&frag_needed[26..30], &[10, 10, 0, 100], "from the VIP");
    assert_eq!(
        u16::from_be_bytes([frag_needed[40], frag_needed[41]]),
        1480,
        "next-hop MTU"
    );
    let route = lab.sh("cli", &["ip", "route", "get", "10.10.0.100"]);
    assert!(
        route.contains("mtu 1480"),
        "client did not learn the path MTU: {route}"
    );

    wrk(&lab);
    assert_no_bad_drops(&lab);
    for rs in ["rs1", "rs2"] {
        let e = ends(&lab, rs);
        assert!(!e.is_empty(), "{rs} served nothing");
        for (peer, local) in e {
            assert_eq!(peer_ip(&peer), CIP.to_string(), "{rs}");
            assert_eq!(local, "10.10.0.100:80", "{rs}");
        }
    }
}

#[test]
fn nat_with_port_mapping_and_replies_through_the_gateway() {
    let lab = Lab::up(
        "nat",
        &Lab::config_with_services(&service(["nat", "nat"], 8080, false)),
    );
    lab_sh(&lab, &["rs", "nat"]);
    let pages = curls(&lab, 20);
    assert_eq!(pages.values().sum::<usize>(), 20);
    assert!(
        pages.contains_key("rs1") && pages.contains_key("rs2"),
        "{pages:?}"
    );
    wrk(&lab);
    // The real servers saw the client's own address, on the mapped port.
    for rs in ["rs1", "rs2"] {
        let e = ends(&lab, rs);
        assert!(!e.is_empty(), "{rs} served nothing");
        for (peer, local) in &e {
            assert_eq!(peer_ip(peer), CIP.to_string(), "{rs}: peer {peer}");
            let rip = if rs == "rs1" {
                "10.20.0.11:8080"
            } else {
                "10.20.0.12:8080"
            };
            assert_eq!(local, rip, "{rs}");
        }
    }
    // Two workers: packets that landed on the worker not owning the client's tuple went over the
    // rings, all of them arrived.
    let stats = assert_no_bad_drops(&lab);
    assert!(lab.worker_counter(&stats, "handoff_in") > 0, "{stats}");
    assert_eq!(
        lab.worker_counter(&stats, "handoff_in"),
        lab.worker_counter(&stats, "handoff_out"),
        "{stats}"
    );
}

#[test]
fn one_service_mixing_fullnat_and_dr_serves_every_request() {
    let lab = Lab::up(
        "mix",
        &Lab::config_with_services(&service(["fullnat", "dr"], 80, true)),
    );
    lab_sh(&lab, &["rs", "dr", "rs2"]);
    let pages = curls(&lab, 40);
    assert_eq!(pages.values().sum::<usize>(), 40);
    assert!(
        pages.contains_key("rs1") && pages.contains_key("rs2"),
        "{pages:?}"
    );
    wrk(&lab);
    // rs1 (FullNAT) saw the gateway's local addresses; rs2 (DR) the client, on the VIP.
    let e1 = ends(&lab, "rs1");
    assert!(!e1.is_empty());
    for (peer, _) in &e1 {
        assert!(LIPS.contains(&peer_ip(peer)), "rs1 saw {peer}");
    }
    let e2 = ends(&lab, "rs2");
    assert!(!e2.is_empty());
    for (peer, local) in &e2 {
        assert_eq!(peer_ip(peer), CIP.to_string());
        assert_eq!(local, "10.10.0.100:80");
    }
    assert_no_bad_drops(&lab);

    // An operator's slip: `ipvsadm -e` without a method means DR (ipvsadm's default), and rs1 has
    // no VIP on lo, so its DR connections are never answered. A client whose connect timed out
    // there tries again from the same port once the method is put back: a new ISN, so a new
    // connection, scheduled afresh in FullNAT (it followed the dead DR entry, refreshed by each
    // of its SYNs, until its client stopped for 60 s).
    let edit = |rs: &str, weight: &str, method: &str| {
        lab.ipvsadm(&["-e", "-t", "10.10.0.100:80", "-r", rs, "-w", weight, method]);
    };
    edit("10.20.0.12:80", "0", "-g");
    edit("10.20.0.11:80", "1", "-g");
    let curl_from_40123 = |secs: &str| {
        lab.exec(
            "cli",
            &[
                "curl",
                "-sf",
                "--local-port",
                "40123",
                "--max-time",
                secs,
                "http://10.10.0.100/",
            ],
        )
    };
    let out = curl_from_40123("2");
    assert!(!out.status.success(), "rs1 answered in DR without the VIP");
    edit("10.20.0.11:80", "1", "-b");
    edit("10.20.0.12:80", "1", "-g");
    let out = curl_from_40123("5");
    assert!(
        out.status.success(),
        "the client's new connection from port 40123 followed the unanswered DR entry: {}",
        lab.gwctl(&["conns"])
    );
    let stats = lab.stats();
    assert!(Lab::conn_counter(&stats, "resched_new_isn") >= 1, "{stats}");
}

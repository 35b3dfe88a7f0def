//! Golden tests for NAT, DR and TUN (DESIGN.md testing ladder, step 2): the real `gateway` binary on
//! DPDK's pcap driver, pcap in -> pcap out, every output frame compared field by field and then byte
//! by byte (checksums included) with the frame a correct load balancer must send. Same one-armed
//! world and harness as tests/golden.rs (golden/harness.rs, golden/frames.rs, golden/decode.rs);
//! only the services differ, per scenario.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-modes nice -n 10 cargo test -p gateway --test golden_modes`

#[path = "golden/decode.rs"]
#[allow(dead_code)]
mod decode;
#[path = "golden/frames.rs"]
#[allow(dead_code)]
mod golden_frames;
#[path = "golden/harness.rs"]
#[allow(dead_code)]
mod harness;

/// golden/frames.rs with the services of the running scenario in the config.
mod frames {
    pub use super::golden_frames::*;
    use std::cell::RefCell;

    thread_local! {
        /// The `[[service]]` tables of the scenario this thread runs.
        pub static SERVICES: RefCell<String> = const { RefCell::new(String::new()) };
    }

    /// golden/frames.rs's config (one pcap port, one worker) with its services replaced.
    pub fn config(prefix: &str, rx: &str, tx: &str) -> String {
        let base = super::golden_frames::config(prefix, rx, tx);
        let cut = base
            .find("\n[[service]]")
            .expect("base config has services");
        SERVICES.with(|s| format!("{}\n{}", &base[..cut], s.borrow()))
    }
}

use decode::{assert_frames, field};
use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::{Icmpv4Type, IpHeaders, IpNumber, Ipv4Dscp, Ipv4Header, PacketBuilder};
use frames::*;

struct Script {
    input: Vec<Vec<u8>>,
    expected: Vec<Labelled>,
}

impl Script {
    fn new(services: &str) -> Script {
        SERVICES.with(|s| *s.borrow_mut() = services.to_string());
        let (input, expected) = arp_preamble();
        Script { input, expected }
    }
    fn pass(&mut self, label: &str, input: Vec<u8>, out: Vec<u8>) {
        self.input.push(input);
        self.expected.push((label.to_string(), out));
    }
    fn swallow(&mut self, input: Vec<u8>) {
        self.input.push(input);
    }
    fn out(&self, label: &str) -> usize {
        self.expected
            .iter()
            .position(|(l, _)| l == label)
            .expect("label")
    }
    fn run(&self, tag: &str) -> harness::Outcome {
        let out = harness::run(tag, &self.input, self.expected.len());
        assert_frames(tag, &self.expected, &out.frames);
        out
    }
}

/// A TCP and a UDP service on VIP:80 over RS1 and RS2 (round robin: RS1 first) in `mode`, on
/// real-server port `rport`, with `extra` service keys.
fn services(modes: [&str; 2], rport: u16, extra: &str) -> String {
    let mut s = String::new();
    for proto in ["tcp", "udp"] {
        s.push_str(&format!(
            "[[service]]\nvip = \"10.10.0.100\"\nport = 80\nprotocol = \"{proto}\"\nscheduler = \"rr\"\n{extra}\n\
             [[service.real]]\naddress = \"10.20.0.11\"\nport = {rport}\nmode = \"{}\"\n\
             [[service.real]]\naddress = \"10.20.0.12\"\nport = {rport}\nmode = \"{}\"\n\n",
            modes[0], modes[1]
        ));
    }
    s
}

/// `frame` as the gateway passes it on by MAC only: to `hop`, padding removed.
fn relayed(frame: &[u8], hop: Hop) -> Vec<u8> {
    let ip_len = u16::from_be_bytes([frame[16], frame[17]]) as usize;
    let mut v = frame[..14 + ip_len].to_vec();
    v[0..6].copy_from_slice(&hop.dst);
    v[6..12].copy_from_slice(&hop.src);
    v
}

/// `frame`'s IP packet wrapped in IPIP (RFC 2003 3.1) from `src` to `dst`, sent to `hop`: TOS, DF
/// and identification copied from the inner header, TTL 64; the header encoded by etherparse.
fn ipip(frame: &[u8], hop: Hop, src: Ip, dst: Ip) -> Vec<u8> {
    let inner = &frame[14..];
    let (ih, _) = Ipv4Header::from_slice(inner).unwrap();
    let inner = &inner[..ih.total_len as usize];
    let mut h = Ipv4Header::new(inner.len() as u16, 64, IpNumber::IPV4, src, dst).unwrap();
    h.dscp = ih.dscp;
    h.ecn = ih.ecn;
    h.identification = ih.identification;
    h.dont_fragment = ih.dont_fragment;
    h.header_checksum = h.calc_header_checksum();
    let mut v = Vec::new();
    v.extend_from_slice(&hop.dst);
    v.extend_from_slice(&hop.src);
    v.extend_from_slice(&[0x08, 0x00]);
    v.extend_from_slice(&h.to_bytes());
    v.extend_from_slice(inner);
    v
}

/// A TCP frame from the client with explicit IP identification, DF and TOS.
fn client_tcp(cport: u16, seg: &Seg, ident: u16, df: bool, tos: u8) -> Vec<u8> {
    let mut f = tcp(FROM_CLIENT, (CIP, cport), (VIP, 80), seg);
    edit_ip(&mut f, |ip| {
        ip[1] = tos;
        ip[4..6].copy_from_slice(&ident.to_be_bytes());
        ip[6] = if df { 0x40 } else { 0 };
    });
    f
}

#[test]
fn dr_changes_only_the_macs() {
    let mut s = Script::new(&services(["dr", "dr"], 80, ""));
    let syn = tcp(
        FROM_CLIENT,
        (CIP, 40000),
        (VIP, 80),
        &Seg::new(SYN, 1000, 0).options(&mss(1460)),
    );
    s.pass("SYN 40000", syn.clone(), relayed(&syn, TO_RS1));
    // A short ACK padded to the Ethernet minimum: the padding does not travel on.
    let ack = padded(tcp(
        FROM_CLIENT,
        (CIP, 40000),
        (VIP, 80),
        &Seg::new(ACK, 1001, 5001),
    ));
    assert_eq!(ack.len(), 60);
    s.pass("ACK 40000", ack.clone(), relayed(&ack, TO_RS1));
    let get = tcp(
        FROM_CLIENT,
        (CIP, 40000),
        (VIP, 80),
        &Seg::new(ACK | PSH, 1001, 5001).payload(b"GET / HTTP/1.1\r\n\r\n"),
    );
    s.pass("GET 40000", get.clone(), relayed(&get, TO_RS1));
    let syn2 = tcp(FROM_CLIENT, (CIP, 40001), (VIP, 80), &Seg::new(SYN, 7, 0));
    s.pass("SYN 40001", syn2.clone(), relayed(&syn2, TO_RS2));
    let fin = tcp(
        FROM_CLIENT,
        (CIP, 40000),
        (VIP, 80),
        &Seg::new(FIN | ACK, 1019, 5100),
    );
    s.pass("FIN 40000", fin.clone(), relayed(&fin, TO_RS1));
    // UDP, zero checksum kept as it is.
    let dns = udp(FROM_CLIENT, (CIP, 53000), (VIP, 80), b"query");
    s.pass("UDP 53000", dns.clone(), relayed(&dns, TO_RS1));
    let dns0 = udp_no_csum(FROM_CLIENT, (CIP, 53001), (VIP, 80), b"query");
    s.pass("UDP 53001", dns0.clone(), relayed(&dns0, TO_RS2));
    // A stray ACK (no connection): nothing goes out.
    s.swallow(tcp(
        FROM_CLIENT,
        (CIP, 40009),
        (VIP, 80),
        &Seg::new(ACK, 1, 1),
    ));
    let out = s.run("dr");
    let f = &out.frames[s.out("SYN 40000")];
    assert_eq!(field(f, "eth.dst"), "02:00:00:00:00:11");
    assert_eq!(
        field(f, "ip.dst"),
        "10.10.0.100",
        "the VIP stays the destination"
    );
    assert_eq!(out.drops("no_conn"), 1, "{:?}", out.drop_lines());
    assert_eq!(out.drop_lines().len(), 1, "{:?}", out.drop_lines());
}

#[test]
fn tun_wraps_in_ipip_and_answers_too_big_with_frag_needed() {
    let lip = "local_addresses = [\"10.20.0.200\"]";
    let mut s = Script::new(&services(["tun", "tun"], 80, lip));
    let syn = client_tcp(
        40000,
        &Seg::new(SYN, 1000, 0).options(&mss(1460)),
        0x1111,
        true,
        0x28,
    );
    s.pass("SYN 40000", syn.clone(), ipip(&syn, TO_RS1, LIP, RS1));
    let syn2 = client_tcp(40001, &Seg::new(SYN, 2000, 0), 0x2222, false, 0);
    s.pass("SYN 40001", syn2.clone(), ipip(&syn2, TO_RS2, LIP, RS2));
    // Padded: the outer total length counts the IP packet only.
    let ack = padded(client_tcp(40000, &Seg::new(ACK, 1001, 1), 0x1112, true, 0));
    s.pass("ACK 40000", ack.clone(), ipip(&ack, TO_RS1, LIP, RS1));
    // 1480 bytes of IP: exactly 1500 once wrapped.
    let fits = client_tcp(
        40000,
        &Seg::new(ACK, 1001, 1).payload(&[7u8; 1440]),
        0x1113,
        true,
        0,
    );
    s.pass("1480 40000", fits.clone(), ipip(&fits, TO_RS1, LIP, RS1));
    let udp_in = udp(FROM_CLIENT, (CIP, 53000), (VIP, 80), b"datagram");
    s.pass("UDP 53000", udp_in.clone(), ipip(&udp_in, TO_RS1, LIP, RS1));
    // 1481 without DF: dropped (no fragmentation here), nothing sent.
    s.swallow(client_tcp(
        40001,
        &Seg::new(ACK, 2001, 1).payload(&[8u8; 1441]),
        0x2223,
        false,
        0,
    ));
    // 1481 with DF, last (generated frames leave after the burst's forwarded ones): the client gets
    // fragmentation-needed from the VIP, MTU 1500 - 20, quoting its header and 8 bytes.
    let big = client_tcp(
        40000,
        &Seg::new(ACK, 2441, 1).payload(&[9u8; 1441]),
        0x1114,
        true,
        0,
    );
    s.pass(
        "frag needed 40000",
        big.clone(),
        frag_needed_from_vip(&big, 1480),
    );
    let out = s.run("tun");
    let f = &out.frames[s.out("SYN 40000")];
    assert_eq!(field(f, "ip.proto"), "4");
    assert_eq!(field(f, "ip.src"), "10.20.0.200");
    assert_eq!(field(f, "ip.dst"), "10.20.0.11");
    assert_eq!(field(f, "ip.checksum_ok"), "true");
    assert_eq!(out.drops("no_room"), 2, "{:?}", out.drop_lines());
    assert_eq!(out.drop_lines().len(), 1, "{:?}", out.drop_lines());
}

/// What the gateway generates for a too-big `offending` frame: ICMP type 3 code 4 from the VIP with
/// `mtu`, IP header as `wire::icmp::write_error` writes it (TOS 0xC0, no DF, id 0, TTL 64).
fn frag_needed_from_vip(offending: &[u8], mtu: u16) -> Vec<u8> {
    let quote = &offending[14..14 + 20 + 8];
    let icmp = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
        next_hop_mtu: mtu,
    });
    let mut ip = Ipv4Header::new(0, 64, IpNumber::ICMP, VIP, CIP).unwrap();
    ip.dont_fragment = false;
    ip.dscp = Ipv4Dscp::try_new(0xC0 >> 2).unwrap();
    let mut v = Vec::new();
    PacketBuilder::ethernet2(TO_CLIENT.src, TO_CLIENT.dst)
        .ip(IpHeaders::Ipv4(ip, Default::default()))
        .icmpv4(icmp)
        .write(&mut v, quote)
        .unwrap();
    v
}

#[test]
fn nat_rewrites_the_destination_and_gives_replies_the_vip_back() {
    let mut s = Script::new(&services(["nat", "nat"], 8080, ""));
    let (c, v) = ((CIP, 40000), (VIP, 80));
    let r1 = (RS1, 8080);
    let syn = Seg::new(SYN, 1000, 0).options(&mss(1460));
    let syn_in = tcp(FROM_CLIENT, c, v, &syn);
    let syn_out = tcp(TO_RS1, c, r1, &syn);
    s.pass("SYN", syn_in.clone(), syn_out.clone());
    let synack = Seg::new(SYN | ACK, 5000, 1001).options(&mss(1400));
    s.pass(
        "SYN-ACK",
        tcp(FROM_RS1, r1, c, &synack),
        tcp(TO_CLIENT, v, c, &synack),
    );
    let ack = Seg::new(ACK, 1001, 5001);
    s.pass(
        "ACK",
        padded(tcp(FROM_CLIENT, c, v, &ack)),
        tcp(TO_RS1, c, r1, &ack),
    );
    let req = Seg::new(ACK | PSH, 1001, 5001).payload(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n");
    s.pass(
        "request",
        tcp(FROM_CLIENT, c, v, &req),
        tcp(TO_RS1, c, r1, &req),
    );
    let resp = Seg::new(ACK | PSH, 5001, 1030).payload(&[b'r'; 1000]);
    s.pass(
        "response",
        tcp(FROM_RS1, r1, c, &resp),
        tcp(TO_CLIENT, v, c, &resp),
    );
    // The second connection goes to RS2.
    let syn2 = Seg::new(SYN, 9, 0);
    s.pass(
        "SYN 2",
        tcp(FROM_CLIENT, (CIP, 40001), v, &syn2),
        tcp(TO_RS2, (CIP, 40001), (RS2, 8080), &syn2),
    );
    // An ICMP error from RS1 about what it received (CIP:40000 -> RIP:8080) reaches the client as
    // if about CIP:40000 -> VIP:80, from the VIP.
    s.pass(
        "ICMP from RS1",
        icmp_frag_needed(FROM_RS1, RS1, CIP, 1400, &syn_out),
        icmp_frag_needed(TO_CLIENT, VIP, CIP, 1400, &syn_in),
    );
    // UDP both ways, with and without checksum.
    let (uc, ur) = ((CIP, 53000), (RS1, 8080));
    s.pass(
        "UDP query",
        udp(FROM_CLIENT, uc, v, b"q"),
        udp(TO_RS1, uc, ur, b"q"),
    );
    s.pass(
        "UDP answer",
        udp(FROM_RS1, ur, uc, b"answer"),
        udp(TO_CLIENT, v, uc, b"answer"),
    );
    s.pass(
        "UDP answer no csum",
        udp_no_csum(FROM_RS1, ur, uc, b"a2"),
        udp_no_csum(TO_CLIENT, v, uc, b"a2"),
    );
    // From a NAT real server to a client port with no connection: not forwarded.
    s.swallow(tcp(FROM_RS1, r1, (CIP, 40009), &Seg::new(ACK, 1, 1)));
    let fin = Seg::new(FIN | ACK, 6001, 1030);
    s.pass(
        "server FIN",
        tcp(FROM_RS1, r1, c, &fin),
        tcp(TO_CLIENT, v, c, &fin),
    );
    let out = s.run("nat");
    let f = &out.frames[s.out("SYN")];
    assert_eq!(
        (field(f, "ip.src"), field(f, "tcp.sport")),
        ("10.10.0.2".into(), "40000".into()),
        "client kept"
    );
    assert_eq!(
        (field(f, "ip.dst"), field(f, "tcp.dport")),
        ("10.20.0.11".into(), "8080".into()),
        "port mapped"
    );
    assert_eq!(field(f, "tcp.options"), "[mss 1460]", "no TOA with NAT");
    for (label, _) in &s.expected {
        let f = &out.frames[s.out(label)];
        if label.starts_with("ARP") || label.starts_with("ICMP") {
            continue;
        }
        assert_eq!(field(f, "ip.checksum_ok"), "true", "{label}");
    }
    assert_eq!(out.drops("no_conn"), 1, "{:?}", out.drop_lines());
    assert_eq!(out.drop_lines().len(), 1, "{:?}", out.drop_lines());
}

#[test]
fn one_service_mixes_fullnat_and_dr() {
    let extra = "local_addresses = [\"10.20.0.200\"]\ntoa = true";
    let mut s = Script::new(&services(["fullnat", "dr"], 80, extra));
    // First connection: RS1, FullNAT with TOA from the first local port.
    let syn = Seg::new(SYN, 1000, 0).options(&mss(1460));
    let mut opts = toa((CIP, 40000)).to_vec();
    opts.extend_from_slice(&mss(1452));
    s.pass(
        "SYN fullnat",
        tcp(FROM_CLIENT, (CIP, 40000), (VIP, 80), &syn),
        tcp(
            TO_RS1,
            (LIP, FIRST_LPORT),
            (RS1, 80),
            &Seg::new(SYN, 1000, 0).options(&opts),
        ),
    );
    // Second: RS2 by MAC only.
    let syn2 = tcp(FROM_CLIENT, (CIP, 40001), (VIP, 80), &syn);
    s.pass("SYN dr", syn2.clone(), relayed(&syn2, TO_RS2));
    let synack = Seg::new(SYN | ACK, 5000, 1001);
    s.pass(
        "SYN-ACK fullnat",
        tcp(FROM_RS1, (RS1, 80), (LIP, FIRST_LPORT), &synack),
        tcp(TO_CLIENT, (VIP, 80), (CIP, 40000), &synack),
    );
    let ack2 = tcp(
        FROM_CLIENT,
        (CIP, 40001),
        (VIP, 80),
        &Seg::new(ACK, 1001, 7001),
    );
    s.pass("ACK dr", ack2.clone(), relayed(&ack2, TO_RS2));
    let out = s.run("mix");
    assert!(out.drop_lines().is_empty(), "{:?}", out.drop_lines());
}

/// The SYN proxy (FullNAT, `synproxy = "on"`) with a fixed cookie key: SYN -> SYN-ACK with the
/// cookie -> ACK with data -> SYN to the real server -> its SYN-ACK -> the ACK that completes its
/// handshake, carrying the held data -> data both ways, translated -> FIN both ways.
#[test]
fn synproxy_answers_with_a_cookie_and_translates_the_server_side() {
    use gateway::forward::synproxy::CookieKey;
    const KEY: &str = "00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210";
    let svc = format!(
        "[synproxy]\nkey = \"{KEY}\"\n\n[[service]]\nvip = \"10.10.0.100\"\nport = 80\nprotocol = \"tcp\"\n\
         scheduler = \"rr\"\nlocal_addresses = [\"10.20.0.200\"]\nsynproxy = \"on\"\n\
         [[service.real]]\naddress = \"10.20.0.11\"\n"
    );
    let mut s = Script::new(&svc);
    let (cl, lip, rs) = ((CIP, 40000), (LIP, FIRST_LPORT), (RS1, 80));
    // What the proxy writes itself: DF set, identification 0, TTL 64.
    let written = |mut f: Vec<u8>| {
        edit_ip(&mut f, |ip| ip[6] = 0x40);
        f
    };
    // The cookie for this client and ISN, in the first 64 s slice, MSS 1460 (index 3).
    let t = gateway::conn::Tuple::new(CIP.into(), 40000, VIP.into(), 80, 6);
    let cookie = CookieKey::from_hex(KEY).unwrap().make(&t, 1000, 0, 3);
    let c0 = cookie.wrapping_add(1);
    let syn = Seg::new(SYN, 1000, 0).options(&mss(1460));
    let mut synack = Seg::new(SYN | ACK, cookie, 1001).options(&mss(1460));
    synack.window = 65535;
    s.pass(
        "cookie SYN-ACK",
        tcp(FROM_CLIENT, cl, (VIP, 80), &syn),
        padded(written(tcp(TO_CLIENT, (VIP, 80), cl, &synack))),
    );
    let get = b"GET / HTTP/1.0\r\n\r\n";
    let ack = Seg::new(ACK | PSH, 1001, c0).payload(get);
    let mut out_opts = toa(cl).to_vec();
    out_opts.extend_from_slice(&mss(1460 - 8));
    s.pass(
        "SYN to the server",
        tcp(FROM_CLIENT, cl, (VIP, 80), &ack),
        written(tcp(
            TO_RS1,
            lip,
            rs,
            &Seg::new(SYN, 1000, 0).options(&out_opts),
        )),
    );
    let rs_synack = Seg::new(SYN | ACK, 5000, 1001).options(&mss(1400));
    s.pass(
        "ACK to the server, with the held data",
        tcp(FROM_RS1, rs, lip, &rs_synack),
        written(tcp(
            TO_RS1,
            lip,
            rs,
            &Seg::new(ACK | PSH, 1001, 5001)
                .options(&toa(cl))
                .payload(get),
        )),
    );
    let reply = b"HTTP/1.0 200 OK\r\n\r\nhello";
    let n = reply.len() as u32;
    let g = get.len() as u32;
    s.pass(
        "reply, in the client's sequence space",
        tcp(
            FROM_RS1,
            rs,
            lip,
            &Seg::new(ACK | PSH, 5001, 1001 + g).payload(reply),
        ),
        tcp(
            TO_CLIENT,
            (VIP, 80),
            cl,
            &Seg::new(ACK | PSH, c0, 1001 + g).payload(reply),
        ),
    );
    s.pass(
        "client FIN, acknowledging in the server's",
        tcp(
            FROM_CLIENT,
            cl,
            (VIP, 80),
            &Seg::new(ACK | FIN, 1001 + g, c0.wrapping_add(n)),
        ),
        tcp(TO_RS1, lip, rs, &Seg::new(ACK | FIN, 1001 + g, 5001 + n)),
    );
    s.pass(
        "server FIN",
        tcp(FROM_RS1, rs, lip, &Seg::new(ACK | FIN, 5001 + n, 1002 + g)),
        tcp(
            TO_CLIENT,
            (VIP, 80),
            cl,
            &Seg::new(ACK | FIN, c0.wrapping_add(n), 1002 + g),
        ),
    );
    let out = s.run("synproxy");
    let stats = &out.stats;
    for (k, want) in [
        ("cookies_sent", 1),
        ("cookies_valid", 1),
        ("conns", 1),
        ("server_answered", 1),
        ("data_held", 1),
    ] {
        let line = stats
            .lines()
            .find(|l| l.starts_with("synproxy 0:"))
            .unwrap_or("");
        assert!(
            line.contains(&format!(" {k} {want}")),
            "{k}: {line}\n{stats}"
        );
    }
}

/// Issue 17: in NAT, DR and TUN the fragments of a UDP datagram follow their first one (the
/// later ones arriving before it included); what leaves is what the mode makes of each fragment:
/// NAT's fragments are those of the translated datagram (the first one's UDP checksum covers it
/// all), DR's are relayed by MAC, TUN's each wrapped in IPIP. NAT's answer comes back the same way.
#[test]
fn udp_fragments_follow_their_first_in_nat_dr_and_tun() {
    let payload: Vec<u8> = (0..1200u32).map(|i| (i * 7 + 3) as u8).collect();
    let cuts = [504, 1008];
    let client = (CIP, 53010);
    let query = fragments(
        &udp(FROM_CLIENT, client, (VIP, 80), &payload),
        0x5151,
        &cuts,
    );
    let lip = "local_addresses = [\"10.20.0.200\"]";
    for (mode, extra) in [("nat", ""), ("dr", ""), ("tun", lip)] {
        let mut s = Script::new(&services([mode, mode], 80, extra));
        let out: Vec<Vec<u8>> = match mode {
            "nat" => fragments(&udp(TO_RS1, client, (RS1, 80), &payload), 0x5151, &cuts),
            "dr" => query.iter().map(|f| relayed(f, TO_RS1)).collect(),
            _ => query.iter().map(|f| ipip(f, TO_RS1, LIP, RS1)).collect(),
        };
        s.swallow(query[2].clone());
        s.swallow(query[1].clone());
        s.pass("query 0", query[0].clone(), out[0].clone());
        if mode == "nat" {
            let answer = fragments(&udp(FROM_RS1, (RS1, 80), client, &payload), 0x0101, &cuts);
            let back = fragments(&udp(TO_CLIENT, (VIP, 80), client, &payload), 0x0101, &cuts);
            for i in 0..3 {
                s.pass(&format!("answer {i}"), answer[i].clone(), back[i].clone());
            }
        }
        // Released after the burst that released them, in the order they came.
        s.expected.push(("query 2".into(), out[2].clone()));
        s.expected.push(("query 1".into(), out[1].clone()));
        let o = s.run(&format!("frag-{mode}"));
        assert!(o.drop_lines().is_empty(), "{mode}: {:?}", o.drop_lines());
    }
}

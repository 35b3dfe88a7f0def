//! Golden tests for IPv6 (issue 17): the real `gateway` binary on DPDK's pcap driver, frames in,
//! frames out, each output frame compared field by field (etherparse decodes it, checksums verified
//! independently) and then byte by byte with the frame it must be:
//!
//! - neighbour discovery: solicitations for the VIP and the port's address answered (RFC 4861);
//!   the solicitors' link-layer addresses learned, so the real servers need no resolution after;
//! - DR: the client's frame to the real server, only its MACs changed;
//! - TUN: the client's packet inside an IPv6 header (next header 41, RFC 2473) from the gateway's
//!   server-side address to the real server;
//! - echo to the VIP; a stray ACK, an off-link solicitation: nothing out, counted;
//! - FullNAT (the IPv6 TOA on the SYN, the reply back from the VIP), NAT, a fragmented UDP datagram
//!   through FullNAT, NAT64 to an IPv4 server (RFC 7915 headers, the IPv6 TOA in the IPv4 SYN, the
//!   server's MSS clamped on the way back), a packet too big on the client's path passed to the
//!   server.
//!
//! Same one-armed world and harness as tests/golden.rs.

#[path = "golden/decode.rs"]
#[allow(dead_code)]
mod decode;
#[path = "golden/frames.rs"]
#[allow(dead_code)]
mod golden_frames;
#[path = "golden/harness.rs"]
#[allow(dead_code)]
mod harness;

/// golden/frames.rs with IPv6 addresses on the port and IPv6 services.
mod frames {
    pub use super::golden_frames::*;

    pub fn config(prefix: &str, rx: &str, tx: &str) -> String {
        let base = super::golden_frames::config(prefix, rx, tx);
        let cut = base
            .find("\n[[service]]")
            .expect("base config has services");
        let head = base[..cut].replace(
            "addresses = [\"10.10.0.1/24\", \"10.20.0.1/24\"]",
            "addresses = [\"10.10.0.1/24\", \"10.20.0.1/24\", \"2001:db8:10::1/64\", \"2001:db8:20::1/64\"]",
        );
        assert!(head.contains("2001:db8:10::1/64"), "golden config changed");
        format!(
            "{head}\n\
             [[service]]\nvip = \"2001:db8:10::100\"\nport = 80\nprotocol = \"tcp\"\nscheduler = \"rr\"\n\
             [[service.real]]\naddress = \"2001:db8:20::11\"\nmode = \"dr\"\n\
             [[service.real]]\naddress = \"2001:db8:20::12\"\nmode = \"dr\"\n\n\
             [[service]]\nvip = \"2001:db8:10::100\"\nport = 53\nprotocol = \"udp\"\nscheduler = \"rr\"\n\
             [[service.real]]\naddress = \"2001:db8:20::11\"\nmode = \"tun\"\n\n\
             [[service]]\nvip = \"2001:db8:10::100\"\nport = 8080\nprotocol = \"tcp\"\nscheduler = \"rr\"\n\
             local_addresses = [\"2001:db8:20::200\"]\n\
             [[service.real]]\naddress = \"2001:db8:20::11\"\nport = 80\n\n\
             [[service]]\nvip = \"2001:db8:10::100\"\nport = 5353\nprotocol = \"udp\"\nscheduler = \"rr\"\n\
             local_addresses = [\"2001:db8:20::200\"]\n\
             [[service.real]]\naddress = \"2001:db8:20::11\"\nport = 53\n\n\
             [[service]]\nvip = \"2001:db8:10::100\"\nport = 8082\nprotocol = \"tcp\"\nscheduler = \"rr\"\n\
             local_addresses = [\"10.20.0.210\"]\n\
             [[service.real]]\naddress = \"10.20.0.11\"\nport = 80\n\n\
             [[service]]\nvip = \"2001:db8:10::100\"\nport = 8081\nprotocol = \"tcp\"\nscheduler = \"rr\"\n\
             [[service.real]]\naddress = \"2001:db8:20::11\"\nport = 8080\nmode = \"nat\"\n"
        )
    }
}

use decode::{assert_frames, field};
use etherparse::{IpNumber, Ipv6FlowLabel, Ipv6Header, PacketBuilder, TcpHeader};
use frames::*;

type Ip6 = [u8; 16];

fn ip6(s: &str) -> Ip6 {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

const NS: u8 = 135;
const NA: u8 = 136;

/// The solicited-node group of `a` and its Ethernet address (RFC 4291 2.7.1, RFC 2464 7).
fn solicited(a: Ip6) -> (Ip6, Mac) {
    let mut g = ip6("ff02::1:ff00:0");
    g[13..].copy_from_slice(&a[13..]);
    (g, [0x33, 0x33, g[12], g[13], g[14], g[15]])
}

/// A neighbour solicitation or advertisement, encoded by etherparse: `kind` NS or NA, the NA flags
/// in `flags`, the link-layer address option (source for NS, target for NA) giving `lladdr`.
#[allow(clippy::too_many_arguments)]
fn nd(
    eth: Hop,
    src: Ip6,
    dst: Ip6,
    hop_limit: u8,
    kind: u8,
    flags: u8,
    target: Ip6,
    lladdr: Mac,
) -> Vec<u8> {
    let mut body = target.to_vec();
    body.extend_from_slice(&[if kind == NS { 1 } else { 2 }, 1]);
    body.extend_from_slice(&lladdr);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(eth.src, eth.dst)
        .ipv6(src, dst, hop_limit)
        .icmpv6(etherparse::Icmpv6Type::Unknown {
            type_u8: kind,
            code_u8: 0,
            bytes5to8: [flags, 0, 0, 0],
        })
        .write(&mut v, &body)
        .unwrap();
    v
}

fn tcp6(eth: Hop, src: (Ip6, u16), dst: (Ip6, u16), s: &Seg) -> Vec<u8> {
    let mut h = TcpHeader::new(src.1, dst.1, s.seq, s.window);
    h.syn = s.flags & SYN != 0;
    h.ack = s.flags & ACK != 0;
    h.fin = s.flags & FIN != 0;
    h.psh = s.flags & PSH != 0;
    h.acknowledgment_number = s.ack;
    h.set_options_raw(&s.options).unwrap();
    let mut v = Vec::new();
    PacketBuilder::ethernet2(eth.src, eth.dst)
        .ipv6(src.0, dst.0, 64)
        .tcp_header(h)
        .write(&mut v, &s.payload)
        .unwrap();
    v
}

/// `frame` passed on by MAC only, to `hop`.
fn relayed(frame: &[u8], hop: Hop) -> Vec<u8> {
    let mut v = frame.to_vec();
    v[0..6].copy_from_slice(&hop.dst);
    v[6..12].copy_from_slice(&hop.src);
    v
}

#[test]
fn ipv6_neighbour_discovery_dr_tun_and_echo() {
    let (cip, vip) = (ip6("2001:db8:10::2"), ip6("2001:db8:10::100"));
    let (rs1, rs2) = (ip6("2001:db8:20::11"), ip6("2001:db8:20::12"));
    let gw_s = ip6("2001:db8:20::1");
    let mut input = Vec::new();
    let mut expected: Vec<Labelled> = Vec::new();
    let na_flags = 0x60; // solicited, override

    // Neighbour discovery: the client asks for the VIP, the real servers for the gateway.
    let (g, gmac) = solicited(vip);
    let to_group = |src: Mac, dst: Mac| Hop { src, dst };
    input.push(nd(
        to_group(CLIENT_MAC, gmac),
        cip,
        g,
        255,
        NS,
        0,
        vip,
        CLIENT_MAC,
    ));
    expected.push((
        "NA for the VIP".into(),
        nd(TO_CLIENT, vip, cip, 255, NA, na_flags, vip, PORT_MAC),
    ));
    let (g, gmac) = solicited(gw_s);
    for (mac, rs, to, who) in [(RS1_MAC, rs1, TO_RS1, "rs1"), (RS2_MAC, rs2, TO_RS2, "rs2")] {
        input.push(nd(to_group(mac, gmac), rs, g, 255, NS, 0, gw_s, mac));
        expected.push((
            format!("NA to {who}"),
            nd(to, gw_s, rs, 255, NA, na_flags, gw_s, PORT_MAC),
        ));
    }

    // DR: round robin, RS1 first; only the MACs change.
    let syn = tcp6(
        FROM_CLIENT,
        (cip, 40000),
        (vip, 80),
        &Seg::new(SYN, 1000, 0).options(&mss(1440)),
    );
    input.push(syn.clone());
    expected.push(("SYN 40000".into(), relayed(&syn, TO_RS1)));
    let get = tcp6(
        FROM_CLIENT,
        (cip, 40000),
        (vip, 80),
        &Seg::new(ACK | PSH, 1001, 5001).payload(b"GET / HTTP/1.1\r\n\r\n"),
    );
    input.push(get.clone());
    expected.push(("GET 40000".into(), relayed(&get, TO_RS1)));
    let syn2 = tcp6(FROM_CLIENT, (cip, 40001), (vip, 80), &Seg::new(SYN, 7, 0));
    input.push(syn2.clone());
    expected.push(("SYN 40001".into(), relayed(&syn2, TO_RS2)));

    // TUN: the client's packet inside an IPv6 header to the real server.
    let mut dns = Vec::new();
    PacketBuilder::ethernet2(FROM_CLIENT.src, FROM_CLIENT.dst)
        .ipv6(cip, vip, 64)
        .udp(53000, 53)
        .write(&mut dns, b"query")
        .unwrap();
    input.push(dns.clone());
    let inner = &dns[14..];
    let outer = Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::ZERO,
        payload_length: inner.len() as u16,
        next_header: IpNumber::IPV6,
        hop_limit: 64,
        source: gw_s,
        destination: rs1,
    };
    let mut tun = Vec::new();
    tun.extend_from_slice(&TO_RS1.dst);
    tun.extend_from_slice(&TO_RS1.src);
    tun.extend_from_slice(&[0x86, 0xdd]);
    tun.extend_from_slice(&outer.to_bytes());
    tun.extend_from_slice(inner);
    expected.push(("UDP 53000 in IPv6".into(), tun));

    // Echo to the VIP.
    let mut ping = Vec::new();
    PacketBuilder::ethernet2(FROM_CLIENT.src, FROM_CLIENT.dst)
        .ipv6(cip, vip, 64)
        .icmpv6_echo_request(9, 1)
        .write(&mut ping, b"ping6")
        .unwrap();
    input.push(ping);
    let mut pong = Vec::new();
    PacketBuilder::ethernet2(TO_CLIENT.src, TO_CLIENT.dst)
        .ipv6(vip, cip, 64)
        .icmpv6_echo_reply(9, 1)
        .write(&mut pong, b"ping6")
        .unwrap();
    expected.push(("echo reply".into(), pong));

    // Nothing out: a stray ACK, a solicitation from off-link (hop limit 64).
    input.push(tcp6(
        FROM_CLIENT,
        (cip, 40009),
        (vip, 80),
        &Seg::new(ACK, 1, 1),
    ));
    let (g, gmac) = solicited(vip);
    input.push(nd(
        to_group(CLIENT_MAC, gmac),
        cip,
        g,
        64,
        NS,
        0,
        vip,
        CLIENT_MAC,
    ));

    let out = harness::run("ipv6", &input, expected.len());
    assert_frames("ipv6", &expected, &out.frames);
    let f = &out.frames[3];
    assert_eq!(field(f, "ip6.dst"), "2001:db8:10::100", "DR: the VIP stays");
    assert_eq!(field(f, "tcp.checksum_ok"), "true");
    assert_eq!(out.drops("no_conn"), 1, "{:?}", out.drop_lines());
    assert_eq!(out.drops("nd_invalid"), 1, "{:?}", out.drop_lines());
    assert_eq!(out.drop_lines().len(), 2, "{:?}", out.drop_lines());
}

/// An IPv4/TCP frame as NAT64 writes it: DF, identification 0, TTL 64 (the hop limit), TOS 0.
fn tcp4(eth: Hop, src: Ep, dst: Ep, s: &Seg) -> Vec<u8> {
    let mut h = TcpHeader::new(src.1, dst.1, s.seq, s.window);
    h.syn = s.flags & SYN != 0;
    h.ack = s.flags & ACK != 0;
    h.acknowledgment_number = s.ack;
    h.set_options_raw(&s.options).unwrap();
    let mut ip = etherparse::Ipv4Header::new(
        (h.header_len() + s.payload.len()) as u16,
        64,
        IpNumber::TCP,
        src.0,
        dst.0,
    )
    .unwrap();
    ip.dont_fragment = true;
    ip.identification = 0;
    ip.header_checksum = ip.calc_header_checksum();
    h.checksum = h.calc_checksum_ipv4(&ip, &s.payload).unwrap();
    let mut v = Vec::new();
    v.extend_from_slice(&eth.dst);
    v.extend_from_slice(&eth.src);
    v.extend_from_slice(&[0x08, 0x00]);
    v.extend_from_slice(&ip.to_bytes());
    v.extend_from_slice(&h.to_bytes());
    v.extend_from_slice(&s.payload);
    v
}

/// The IPv6 TOA of client `c`: kind 254, length 20, port, address.
fn toa6(c: (Ip6, u16)) -> Vec<u8> {
    let mut o = vec![254, 20];
    o.extend_from_slice(&c.1.to_be_bytes());
    o.extend_from_slice(&c.0);
    o
}

/// The IPv6 packet of `frame` in fragments cut at payload offsets `cuts`, identification `ident`.
fn fragments6(frame: &[u8], ident: u32, cuts: &[usize]) -> Vec<Vec<u8>> {
    let next = frame[20];
    let payload = &frame[54..];
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(payload.len());
    bounds
        .windows(2)
        .map(|w| {
            let mut f = frame[..54].to_vec();
            f[20] = 44;
            f[18..20].copy_from_slice(&((w[1] - w[0] + 8) as u16).to_be_bytes());
            f.extend_from_slice(&[next, 0]);
            let more = u16::from(w[1] < payload.len());
            f.extend_from_slice(&((w[0] as u16) | more).to_be_bytes());
            f.extend_from_slice(&ident.to_be_bytes());
            f.extend_from_slice(&payload[w[0]..w[1]]);
            f
        })
        .collect()
}

#[test]
fn ipv6_fullnat_fragments_nat64_and_packet_too_big() {
    let (cip, vip) = (ip6("2001:db8:10::2"), ip6("2001:db8:10::100"));
    let (rs1, lip6, gw_s) = (
        ip6("2001:db8:20::11"),
        ip6("2001:db8:20::200"),
        ip6("2001:db8:20::1"),
    );
    let lip4: Ip = [10, 20, 0, 210];
    let lport = FIRST_LPORT;
    let (arp_in, arp_out) = arp_preamble();
    let mut input = arp_in;
    let mut expected: Vec<Labelled> = arp_out;
    let na_flags = 0x60;
    let to_group = |src: Mac, dst: Mac| Hop { src, dst };
    // The client and rs1 resolve the VIP and the gateway (and so are learned).
    let (g, gmac) = solicited(vip);
    input.push(nd(
        to_group(CLIENT_MAC, gmac),
        cip,
        g,
        255,
        NS,
        0,
        vip,
        CLIENT_MAC,
    ));
    expected.push((
        "NA for the VIP".into(),
        nd(TO_CLIENT, vip, cip, 255, NA, na_flags, vip, PORT_MAC),
    ));
    let (g, gmac) = solicited(gw_s);
    input.push(nd(
        to_group(RS1_MAC, gmac),
        rs1,
        g,
        255,
        NS,
        0,
        gw_s,
        RS1_MAC,
    ));
    expected.push((
        "NA to rs1".into(),
        nd(TO_RS1, gw_s, rs1, 255, NA, na_flags, gw_s, PORT_MAC),
    ));

    // FullNAT: the SYN from LIP:1024 with the IPv6 TOA first, then the client's options.
    let syn = tcp6(
        FROM_CLIENT,
        (cip, 40000),
        (vip, 8080),
        &Seg::new(SYN, 1000, 0).options(&mss(1440)),
    );
    input.push(syn);
    let mut opts = toa6((cip, 40000));
    opts.extend_from_slice(&mss(1440));
    let out = tcp6(
        TO_RS1,
        (lip6, lport),
        (rs1, 80),
        &Seg::new(SYN, 1000, 0).options(&opts),
    );
    expected.push(("FullNAT SYN".into(), out));
    let synack = tcp6(
        FROM_RS1,
        (rs1, 80),
        (lip6, lport),
        &Seg::new(SYN | ACK, 5000, 1001).options(&mss(1440)),
    );
    input.push(synack.clone());
    let back = tcp6(
        TO_CLIENT,
        (vip, 8080),
        (cip, 40000),
        &Seg::new(SYN | ACK, 5000, 1001).options(&mss(1440)),
    );
    expected.push(("FullNAT SYN-ACK".into(), back.clone()));

    // A fragmented datagram through FullNAT: each fragment rewritten, the first one's checksum
    // that of the whole datagram rewritten.
    let data: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let mut dgram = Vec::new();
    PacketBuilder::ethernet2(FROM_CLIENT.src, FROM_CLIENT.dst)
        .ipv6(cip, vip, 64)
        .udp(6000, 5353)
        .write(&mut dgram, &data)
        .unwrap();
    let mut rewritten = Vec::new();
    PacketBuilder::ethernet2(TO_RS1.src, TO_RS1.dst)
        .ipv6(lip6, rs1, 64)
        .udp(lport, 53)
        .write(&mut rewritten, &data)
        .unwrap();
    for (i, (f, o)) in fragments6(&dgram, 0xabc, &[160])
        .into_iter()
        .zip(fragments6(&rewritten, 0xabc, &[160]))
        .enumerate()
    {
        input.push(f);
        expected.push((format!("UDP fragment {i}"), o));
    }

    // NAT64: the IPv6 SYN leaves as IPv4 from the NAT64 LIP, the IPv6 TOA in it.
    let syn64 = tcp6(
        FROM_CLIENT,
        (cip, 40001),
        (vip, 8082),
        &Seg::new(SYN, 7, 0).options(&mss(1440)),
    );
    input.push(syn64);
    let mut opts = toa6((cip, 40001));
    opts.extend_from_slice(&mss(1440));
    expected.push((
        "NAT64 SYN".into(),
        tcp4(
            TO_RS1,
            (lip4, lport),
            (RS1, 80),
            &Seg::new(SYN, 7, 0).options(&opts),
        ),
    ));
    input.push(tcp(
        FROM_RS1,
        (RS1, 80),
        (lip4, lport),
        &Seg::new(SYN | ACK, 9, 8).options(&mss(1460)),
    ));
    expected.push((
        "NAT64 SYN-ACK, MSS clamped".into(),
        tcp6(
            TO_CLIENT,
            (vip, 8082),
            (cip, 40001),
            &Seg::new(SYN | ACK, 9, 8).options(&mss(1440)),
        ),
    ));

    // NAT: the destination mapped to the server's port 8080, the client kept; the server's answer
    // (routed through the gateway) from the VIP again.
    let seg = Seg::new(SYN, 70, 0).options(&mss(1440));
    input.push(tcp6(FROM_CLIENT, (cip, 40002), (vip, 8081), &seg));
    expected.push((
        "NAT SYN".into(),
        tcp6(TO_RS1, (cip, 40002), (rs1, 8080), &seg),
    ));
    let seg = Seg::new(SYN | ACK, 90, 71).options(&mss(1440));
    input.push(tcp6(FROM_RS1, (rs1, 8080), (cip, 40002), &seg));
    expected.push((
        "NAT SYN-ACK".into(),
        tcp6(TO_CLIENT, (vip, 8081), (cip, 40002), &seg),
    ));

    // A router on the client's path: the SYN-ACK was too big; the server hears of its own one.
    let router = ip6("2001:db8:10::fe");
    let mut ptb = Vec::new();
    PacketBuilder::ethernet2(FROM_CLIENT.src, FROM_CLIENT.dst)
        .ipv6(router, vip, 64)
        .icmpv6(etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 })
        .write(&mut ptb, &back[14..])
        .unwrap();
    input.push(ptb);
    let mut passed = Vec::new();
    PacketBuilder::ethernet2(TO_RS1.src, TO_RS1.dst)
        .ipv6(lip6, rs1, 64)
        .icmpv6(etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 })
        .write(&mut passed, &synack[14..])
        .unwrap();
    expected.push(("packet too big to the server".into(), passed));

    let out = harness::run("ipv6-fullnat", &input, expected.len());
    assert_frames("ipv6-fullnat", &expected, &out.frames);
    assert_eq!(out.drop_lines().len(), 0, "{:?}", out.drop_lines());
}

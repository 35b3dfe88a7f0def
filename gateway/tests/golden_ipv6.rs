//! Golden tests for IPv6 (issue 17): the real `gateway` binary on DPDK's pcap driver, frames in,
//! frames out, each output frame compared field by field (etherparse decodes it, checksums verified
//! independently) and then byte by byte with the frame it must be:
//!
//! - neighbour discovery: solicitations for the VIP and the port's address answered (RFC 4861);
//!   the solicitors' link-layer addresses learned, so the real servers need no resolution after;
//! - DR: the client's frame to the real server, only its MACs changed;
//! - TUN: the client's packet inside an IPv6 header (next header 41, RFC 2473) from the gateway's
//!   server-side address to the real server;
//! - echo to the VIP; a stray ACK, an off-link solicitation: nothing out, counted.
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
             [[service.real]]\naddress = \"2001:db8:20::11\"\nmode = \"tun\"\n"
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

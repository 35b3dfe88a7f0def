//! Field-by-field view of a frame, decoded with etherparse (the test oracle, independent of the
//! gateway's own `wire` module), and the comparison of what the gateway sent with what it should have.
//!
//! A frame becomes a list of named fields (`ip.src`, `tcp.opt[0]`, `icmp.quote.tcp.sport`, ...), each
//! with a printable value; checksums appear both as values and as `*_ok` verdicts computed from the
//! frame itself, so a mismatch message says exactly which field of which frame went wrong.

use super::frames::Labelled;
use etherparse::{
    Icmpv4Slice, Icmpv6Slice, Ipv4HeaderSlice, Ipv6HeaderSlice, NetSlice, SlicedPacket, TcpSlice,
    TransportSlice, UdpSlice,
};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The addresses of an L4 checksum's pseudo-header.
#[derive(Clone, Copy)]
enum Pseudo {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

pub type Fields = Vec<(String, String)>;

fn mac(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ip4(b: [u8; 4]) -> String {
    Ipv4Addr::from(b).to_string()
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn flags(f: u8) -> String {
    let names = [
        (0x02, "SYN"),
        (0x10, "ACK"),
        (0x01, "FIN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x20, "URG"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(b, _)| f & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join("|")
    }
}

/// TCP options as a list: `mss 1452`, `toa 40000 10.10.0.2`, `nop`, or `kind K len L <hex>`.
fn tcp_options(o: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < o.len() {
        match o[i] {
            0 => {
                out.push("eol".into());
                break;
            }
            1 => {
                out.push("nop".into());
                i += 1;
            }
            kind => {
                let Some(&len) = o.get(i + 1) else {
                    out.push(format!("truncated kind {kind}"));
                    break;
                };
                let len = len as usize;
                if len < 2 || i + len > o.len() {
                    out.push(format!("bad kind {kind} len {len}"));
                    break;
                }
                let body = &o[i + 2..i + len];
                out.push(match (kind, len) {
                    (2, 4) => format!("mss {}", u16::from_be_bytes([body[0], body[1]])),
                    (254, 8) => format!(
                        "toa {} {}",
                        u16::from_be_bytes([body[0], body[1]]),
                        ip4([body[2], body[3], body[4], body[5]])
                    ),
                    _ => format!("kind {kind} len {len} {}", hex(body)),
                });
                i += len;
            }
        }
    }
    out
}

/// The fields of a frame. Never panics: what cannot be decoded shows up as a `*.error` field.
pub fn fields(frame: &[u8]) -> Fields {
    let mut f: Fields = vec![("frame.len".into(), frame.len().to_string())];
    if frame.len() < 14 {
        f.push(("eth.error".into(), "shorter than an Ethernet header".into()));
        return f;
    }
    f.push(("eth.dst".into(), mac(&frame[0..6])));
    f.push(("eth.src".into(), mac(&frame[6..12])));
    let et = u16::from_be_bytes([frame[12], frame[13]]);
    f.push(("eth.type".into(), format!("{et:#06x}")));
    if et == 0x0806 {
        arp_fields(&mut f, &frame[14..]);
        return f;
    }
    match SlicedPacket::from_ethernet(frame) {
        Err(e) => f.push(("ip.error".into(), format!("{e:?}"))),
        Ok(p) => {
            let pseudo = match &p.net {
                Some(NetSlice::Ipv4(ip)) => {
                    ipv4_fields(&mut f, "ip", ip.header());
                    Pseudo::V4(ip.header().source(), ip.header().destination())
                }
                Some(NetSlice::Ipv6(ip)) => {
                    ipv6_fields(&mut f, "ip6", ip.header());
                    Pseudo::V6(ip.header().source(), ip.header().destination())
                }
                _ => {
                    f.push(("ip.error".into(), "not IP".into()));
                    return f;
                }
            };
            match &p.transport {
                Some(TransportSlice::Tcp(t)) => tcp_fields(&mut f, "tcp", t, Some(pseudo)),
                Some(TransportSlice::Udp(u)) => udp_fields(&mut f, "udp", u, Some(pseudo)),
                Some(TransportSlice::Icmpv4(i)) => icmp_fields(&mut f, i),
                Some(TransportSlice::Icmpv6(i)) => icmpv6_fields(&mut f, i, pseudo),
                None => f.push(("l4".into(), "none".into())),
            }
        }
    }
    f
}

/// ARP for Ethernet/IPv4 (RFC 826).
fn arp_fields(f: &mut Fields, a: &[u8]) {
    if a.len() < 28 {
        f.push(("arp.error".into(), "truncated".into()));
        return;
    }
    let mut put = |k: &str, v: String| f.push((format!("arp.{k}"), v));
    put("htype_ptype_hlen_plen", hex(&a[0..6]));
    put("op", u16::from_be_bytes([a[6], a[7]]).to_string());
    put("sha", mac(&a[8..14]));
    put("spa", ip4([a[14], a[15], a[16], a[17]]));
    put("tha", mac(&a[18..24]));
    put("tpa", ip4([a[24], a[25], a[26], a[27]]));
}

fn ipv4_fields(f: &mut Fields, pre: &str, h: Ipv4HeaderSlice) {
    let mut put = |k: &str, v: String| f.push((format!("{pre}.{k}"), v));
    put("ihl", h.ihl().to_string());
    put("tos", format!("{:#04x}", h.slice()[1]));
    put("total_len", h.total_len().to_string());
    put("id", h.identification().to_string());
    put("df", h.dont_fragment().to_string());
    put("mf", h.more_fragments().to_string());
    put("frag_off", h.fragments_offset().value().to_string());
    put("ttl", h.ttl().to_string());
    put("proto", h.protocol().0.to_string());
    put("src", ip4(h.source()));
    put("dst", ip4(h.destination()));
    put("checksum", format!("{:#06x}", h.header_checksum()));
    let ok = h.to_header().calc_header_checksum() == h.header_checksum();
    put("checksum_ok", ok.to_string());
}

fn ipv6_fields(f: &mut Fields, pre: &str, h: Ipv6HeaderSlice) {
    let mut put = |k: &str, v: String| f.push((format!("{pre}.{k}"), v));
    put("traffic_class", h.traffic_class().to_string());
    put("flow_label", h.flow_label().value().to_string());
    put("payload_len", h.payload_length().to_string());
    put("next_header", h.next_header().0.to_string());
    put("hop_limit", h.hop_limit().to_string());
    put("src", Ipv6Addr::from(h.source()).to_string());
    put("dst", Ipv6Addr::from(h.destination()).to_string());
}

fn icmpv6_fields(f: &mut Fields, i: &Icmpv6Slice, pseudo: Pseudo) {
    f.push(("icmp6.type".into(), i.type_u8().to_string()));
    f.push(("icmp6.code".into(), i.code_u8().to_string()));
    f.push(("icmp6.rest".into(), hex(&i.bytes5to8())));
    f.push(("icmp6.checksum".into(), format!("{:#06x}", i.checksum())));
    if let Pseudo::V6(s, d) = pseudo {
        let ok = i
            .icmp_type()
            .calc_checksum(s, d, i.payload())
            .map(|c| c == i.checksum())
            .unwrap_or(false);
        f.push(("icmp6.checksum_ok".into(), ok.to_string()));
    }
    f.push(("icmp6.body".into(), hex(i.payload())));
}

fn tcp_fields(f: &mut Fields, pre: &str, t: &TcpSlice, pseudo: Option<Pseudo>) {
    let mut put = |k: &str, v: String| f.push((format!("{pre}.{k}"), v));
    put("sport", t.source_port().to_string());
    put("dport", t.destination_port().to_string());
    put("seq", t.sequence_number().to_string());
    put("ack", t.acknowledgment_number().to_string());
    put("data_offset", t.data_offset().to_string());
    let raw = t.slice();
    put("flags", flags(raw[13]));
    put("window", t.window_size().to_string());
    put("urgent", t.urgent_pointer().to_string());
    let opts = tcp_options(t.options());
    put("options", format!("[{}]", opts.join(", ")));
    put("checksum", format!("{:#06x}", t.checksum()));
    if let Some(p) = pseudo {
        let c = match p {
            Pseudo::V4(s, d) => t.calc_checksum_ipv4(s, d).ok(),
            Pseudo::V6(s, d) => t.calc_checksum_ipv6(s, d).ok(),
        };
        put("checksum_ok", (c == Some(t.checksum())).to_string());
    }
    put("payload.len", t.payload().len().to_string());
    put("payload", hex(t.payload()));
}

fn udp_fields(f: &mut Fields, pre: &str, u: &UdpSlice, pseudo: Option<Pseudo>) {
    let mut put = |k: &str, v: String| f.push((format!("{pre}.{k}"), v));
    put("sport", u.source_port().to_string());
    put("dport", u.destination_port().to_string());
    put("length", u.length().to_string());
    put("checksum", format!("{:#06x}", u.checksum()));
    if let Some(p) = pseudo {
        // RFC 768: 0 means "no checksum" over IPv4; over IPv6 it must verify (RFC 8200 8.1).
        let c = match p {
            Pseudo::V4(s, d) => u.to_header().calc_checksum_ipv4_raw(s, d, u.payload()).ok(),
            Pseudo::V6(s, d) => u.to_header().calc_checksum_ipv6_raw(s, d, u.payload()).ok(),
        };
        let ok = matches!(p, Pseudo::V4(..)) && u.checksum() == 0 || c == Some(u.checksum());
        put("checksum_ok", ok.to_string());
    }
    put("payload", hex(u.payload()));
}

fn icmp_fields(f: &mut Fields, i: &Icmpv4Slice) {
    f.push(("icmp.type".into(), i.type_u8().to_string()));
    f.push(("icmp.code".into(), i.code_u8().to_string()));
    f.push(("icmp.rest".into(), hex(&i.bytes5to8())));
    f.push(("icmp.checksum".into(), format!("{:#06x}", i.checksum())));
    let ok = i.icmp_type().calc_checksum(i.payload()) == i.checksum();
    f.push(("icmp.checksum_ok".into(), ok.to_string()));
    let q = i.payload();
    f.push(("icmp.quote.len".into(), q.len().to_string()));
    // The quote is an IP header plus (at least) the first 8 bytes of its payload (RFC 792).
    match Ipv4HeaderSlice::from_slice(q) {
        Err(e) => f.push(("icmp.quote.error".into(), format!("{e:?}"))),
        Ok(h) => {
            let hl = h.slice().len();
            let proto = h.protocol().0;
            ipv4_fields(f, "icmp.quote.ip", h);
            let l4 = &q[hl..];
            if l4.len() >= 8 {
                let port = |o: usize| u16::from_be_bytes([l4[o], l4[o + 1]]).to_string();
                f.push(("icmp.quote.sport".into(), port(0)));
                f.push(("icmp.quote.dport".into(), port(2)));
                let name = if proto == 6 {
                    "icmp.quote.tcp.seq"
                } else {
                    "icmp.quote.l4.bytes4to8"
                };
                f.push((name.into(), hex(&l4[4..8])));
            }
            f.push(("icmp.quote.rest".into(), hex(&l4[l4.len().min(8)..])));
        }
    }
}

/// The value of field `name` in a frame, for explicit assertions in the tests.
pub fn field(frame: &[u8], name: &str) -> String {
    fields(frame)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| format!("<no field {name}>"))
}

/// Differences between an expected and an actual frame, one line per field.
pub fn diff(expected: &[u8], got: &[u8]) -> Vec<String> {
    let e = fields(expected);
    let g = fields(got);
    let mut out = Vec::new();
    for (k, ev) in &e {
        match g.iter().find(|(gk, _)| gk == k) {
            Some((_, gv)) if gv == ev => {}
            Some((_, gv)) => out.push(format!("{k}: expected {ev}, got {gv}")),
            None => out.push(format!("{k}: expected {ev}, got nothing (field absent)")),
        }
    }
    for (k, gv) in &g {
        if !e.iter().any(|(ek, _)| ek == k) {
            out.push(format!("{k}: not expected, got {gv}"));
        }
    }
    // Anything the field list misses (padding, bytes past a quote) still has to match.
    if out.is_empty() && expected != got {
        out.push(format!(
            "bytes differ: expected {}, got {}",
            hex(expected),
            hex(got)
        ));
    }
    out
}

/// Compares the whole output with the expected frames, in order, and panics with every difference
/// (frame number, its label, field, expected and actual value).
pub fn assert_frames(scenario: &str, expected: &[Labelled], got: &[Vec<u8>]) {
    let mut report = String::new();
    for (i, (label, exp)) in expected.iter().enumerate() {
        match got.get(i) {
            None => {
                let _ = writeln!(report, "  out frame {i} ({label}): missing");
            }
            Some(g) => {
                for d in diff(exp, g) {
                    let _ = writeln!(report, "  out frame {i} ({label}): {d}");
                }
            }
        }
    }
    for (i, g) in got.iter().enumerate().skip(expected.len()) {
        let summary: Vec<String> = fields(g)
            .into_iter()
            .take(12)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            report,
            "  out frame {i}: unexpected extra frame: {}",
            summary.join(" ")
        );
    }
    assert!(
        report.is_empty(),
        "{scenario}: output differs from the expectation ({} frames expected, {} sent):\n{report}",
        expected.len(),
        got.len()
    );
}

#[test]
fn decoder_sees_a_field_change_and_names_it() {
    use super::frames::*;
    let a = tcp(
        FROM_CLIENT,
        (CIP, 40000),
        (VIP, 80),
        &Seg::new(SYN, 1, 0).options(&mss(1460)),
    );
    let mut b = a.clone();
    b[14 + 8] = 63; // TTL
    let d = diff(&a, &b);
    assert!(
        d.iter()
            .any(|l| l.starts_with("ip.ttl: expected 64, got 63")),
        "{d:?}"
    );
    assert!(
        d.iter()
            .any(|l| l.starts_with("ip.checksum_ok: expected true, got false")),
        "{d:?}"
    );
    assert_eq!(field(&a, "tcp.options"), "[mss 1460]");
    assert_eq!(field(&a, "tcp.checksum_ok"), "true");
    assert!(diff(&a, &a).is_empty());
}

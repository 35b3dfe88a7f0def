//! One-pass classification of a received frame: everything the datapath needs to look a packet up
//! and decide, with one distinct reason for every way a frame can be rejected (one drop counter
//! each, DESIGN.md decision 11).

use std::net::Ipv4Addr;

use super::checksum;
use super::ethernet::{self, EtherType, EthernetFrame};
use super::icmp;
use super::ip::IpProtocol;
use super::ipv4::Ipv4Packet;
use super::tcp::{self, TcpFlags};
use super::udp;
use super::Error;

/// Why [`parse_l3l4`] rejected a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[repr(u8)]
pub enum DropReason {
    #[error("frame shorter than an Ethernet header")]
    EthTruncated,
    #[error("IPv4 packet shorter than 20 bytes")]
    Ipv4Truncated,
    #[error("IP version is not 4")]
    Ipv4BadVersion,
    #[error("IPv4 IHL below 5 or beyond the frame")]
    Ipv4BadIhl,
    #[error("IPv4 total length below the header or beyond the frame")]
    Ipv4BadTotalLen,
    #[error("bad IPv4 header checksum")]
    Ipv4BadChecksum,
    #[error("TCP segment shorter than 20 bytes")]
    TcpTruncated,
    #[error("TCP data offset below 5 or beyond the segment")]
    TcpBadDataOffset,
    #[error("impossible TCP flag combination")]
    TcpBadFlags,
    #[error("UDP datagram shorter than 8 bytes")]
    UdpTruncated,
    #[error("UDP length below 8 or beyond the IP payload")]
    UdpBadLength,
    #[error("ICMP message shorter than 8 bytes")]
    IcmpTruncated,
    #[error("TCP fragment at offset 8, over the first fragment's header (RFC 1858)")]
    TcpTinyFragment,
}

impl DropReason {
    /// Number of reasons: the size of a per-reason counter array.
    pub const COUNT: usize = 13;
    /// Every reason, in [`index`](Self::index) order.
    pub const ALL: [DropReason; Self::COUNT] = [
        Self::EthTruncated,
        Self::Ipv4Truncated,
        Self::Ipv4BadVersion,
        Self::Ipv4BadIhl,
        Self::Ipv4BadTotalLen,
        Self::Ipv4BadChecksum,
        Self::TcpTruncated,
        Self::TcpBadDataOffset,
        Self::TcpBadFlags,
        Self::UdpTruncated,
        Self::UdpBadLength,
        Self::IcmpTruncated,
        Self::TcpTinyFragment,
    ];

    /// Index into a per-reason counter array.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    /// A short stable name for counters and the admin shell.
    pub fn name(self) -> &'static str {
        match self {
            Self::EthTruncated => "eth_truncated",
            Self::Ipv4Truncated => "ipv4_truncated",
            Self::Ipv4BadVersion => "ipv4_bad_version",
            Self::Ipv4BadIhl => "ipv4_bad_ihl",
            Self::Ipv4BadTotalLen => "ipv4_bad_total_len",
            Self::Ipv4BadChecksum => "ipv4_bad_checksum",
            Self::TcpTruncated => "tcp_truncated",
            Self::TcpBadDataOffset => "tcp_bad_data_offset",
            Self::TcpBadFlags => "tcp_bad_flags",
            Self::UdpTruncated => "udp_truncated",
            Self::UdpBadLength => "udp_bad_length",
            Self::IcmpTruncated => "icmp_truncated",
            Self::TcpTinyFragment => "tcp_tiny_fragment",
        }
    }
}

/// What [`parse_l3l4`] found in an accepted IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpInfo {
    pub protocol: IpProtocol,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Offset of the L4 header in the frame.
    pub l4_off: usize,
    /// IPv4 total length; the packet ends at `l3_off + total_len` (Ethernet padding may follow).
    pub total_len: u16,
    pub ttl: u8,
    /// MF set or non-zero offset (RFC 791 3.2). A first fragment (`frag_offset` 0) has its L4
    /// header parsed as an unfragmented packet's is, but for UDP's length (it covers the whole
    /// datagram); a non-first fragment has no L4 header (ports 0, no flags). `crate::frag` follows
    /// them.
    pub is_fragment: bool,
    /// The fragment's offset in its datagram, in bytes (0 for unfragmented packets).
    pub frag_offset: u16,
    /// IHL > 5: IP options present (the datapath decides).
    pub has_options: bool,
    /// TCP/UDP ports; 0 for other protocols and fragments.
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP flags; empty for other protocols.
    pub tcp_flags: TcpFlags,
    /// Bytes after the L4 header (TCP: after options; UDP: per its length field; ICMP: after the
    /// 8-byte header; others and fragments: the whole IP payload).
    pub payload_len: usize,
}

/// The result of [`parse_l3l4`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub ethertype: EtherType,
    /// Offset of the L3 header (14: 802.1Q-tagged frames are reported as `EtherType::VLAN`, not
    /// walked).
    pub l3_off: usize,
    /// Present iff `ethertype` is IPv4.
    pub ip: Option<IpInfo>,
}

#[inline]
fn ip_error(e: Error) -> DropReason {
    match e {
        Error::BadVersion => DropReason::Ipv4BadVersion,
        Error::BadHeaderLen => DropReason::Ipv4BadIhl,
        Error::BadTotalLen => DropReason::Ipv4BadTotalLen,
        _ => DropReason::Ipv4Truncated,
    }
}

/// Classifies an Ethernet frame. Non-IPv4 frames (ARP, VLAN, IPv6...) are accepted with `ip: None`
/// after the Ethernet length check; IPv4 packets are validated (lengths, header checksum, L4 header
/// lengths, TCP flag sanity) and described. L4 checksums are not checked here (the NIC may have
/// done it): see [`verify_l4_checksum`]. Never panics, whatever the bytes.
pub fn parse_l3l4(frame: &[u8]) -> Result<Parsed, DropReason> {
    parse_l3l4_with(frame, true)
}

/// [`parse_l3l4`], verifying the IPv4 header checksum only if `check_ip_csum` (false when the NIC
/// reported it good, or another worker verified it before handing the frame over).
#[inline]
pub fn parse_l3l4_with(frame: &[u8], check_ip_csum: bool) -> Result<Parsed, DropReason> {
    match parse_plain_tcp(frame, check_ip_csum) {
        Some(parsed) => parsed,
        None => parse_any(frame, check_ip_csum),
    }
}

/// Bytes of an Ethernet header, an option-less IPv4 header and a TCP header without options.
pub const PLAIN_TCP_LEN: usize = ethernet::HEADER_LEN + super::ipv4::HEADER_LEN + tcp::HEADER_LEN;

/// The common case of [`parse_l3l4_with`] on fixed-size views: an unfragmented TCP segment in an
/// IPv4 packet without options. One length check covers the three headers, after which the
/// compiler drops the views' per-field bounds checks. `None` for any other frame, which
/// `parse_any` then classifies; for these frames both give the same result, the same error
/// included (a property test holds them to it).
/// The datapath's established fast path starts here too (`datapath::fastpath`). Always inlined:
/// returned through memory, its result was read back (by wider loads than the stores that wrote
/// it) before those stores had reached the cache, which stalled the fast path on the wire.
#[inline(always)]
pub fn parse_plain_tcp(frame: &[u8], check_ip_csum: bool) -> Option<Result<Parsed, DropReason>> {
    const IP_AT: usize = ethernet::HEADER_LEN;
    const TCP_AT: usize = IP_AT + super::ipv4::HEADER_LEN;
    let h: &[u8; PLAIN_TCP_LEN] = frame.first_chunk()?;
    let eth = EthernetFrame::new_unchecked(&h[..]);
    let ip = Ipv4Packet::new_unchecked(&h[IP_AT..TCP_AT]);
    let t = tcp::TcpPacket::new_unchecked(&h[TCP_AT..]);
    // Version 4 and IHL 5; MF clear and offset 0 (DF may be set); a total length that covers
    // the two headers and the TCP data offset, and stays within the frame. The IPv4 header and
    // the TCP header's length are added, not the total length less the one: a total length
    // shorter than the IPv4 header then needs no test of its own (`established-burst-net` -2).
    let total_len = usize::from(ip.total_len());
    if eth.ethertype() != EtherType::IPV4
        || h[IP_AT] != 0x45
        || ip.is_fragment()
        || ip.protocol() != IpProtocol::TCP
        || total_len > frame.len() - IP_AT
        || t.header_len() < tcp::HEADER_LEN
        || super::ipv4::HEADER_LEN + t.header_len() > total_len
    {
        return None;
    }
    if check_ip_csum
        && !checksum::verifies_20(h[IP_AT..TCP_AT].first_chunk().expect("the IPv4 header"))
    {
        return Some(Err(DropReason::Ipv4BadChecksum));
    }
    let flags = t.flags();
    // A plain ACK, most segments, is a valid combination: one test instead of five.
    if !flags.is_plain_ack() && flags.is_invalid() {
        return Some(Err(DropReason::TcpBadFlags));
    }
    Some(Ok(Parsed {
        ethertype: EtherType::IPV4,
        l3_off: IP_AT,
        ip: Some(plain_tcp_info(h)),
    }))
}

/// What [`parse_plain_tcp`] says of the frame whose first bytes are `h`, once it has taken it:
/// also what a frame it took says when parsed again (`forward::fullnat::PlainSeg::parse`),
/// without its checks.
#[inline(always)]
pub fn plain_tcp_info(h: &[u8; PLAIN_TCP_LEN]) -> IpInfo {
    const IP_AT: usize = ethernet::HEADER_LEN;
    const TCP_AT: usize = IP_AT + super::ipv4::HEADER_LEN;
    let ip = Ipv4Packet::new_unchecked(&h[IP_AT..TCP_AT]);
    let t = tcp::TcpPacket::new_unchecked(&h[TCP_AT..]);
    let total_len = ip.total_len();
    let (src, dst) = ip.addrs();
    let (src_port, dst_port) = t.ports();
    IpInfo {
        protocol: IpProtocol::TCP,
        src,
        dst,
        l4_off: TCP_AT,
        total_len,
        ttl: ip.ttl(),
        is_fragment: false,
        frag_offset: 0,
        has_options: false,
        src_port,
        dst_port,
        tcp_flags: t.flags(),
        // The TCP header within the total length, as `parse_plain_tcp` checked.
        payload_len: usize::from(total_len)
            .saturating_sub(super::ipv4::HEADER_LEN + t.header_len()),
    }
}

/// [`parse_l3l4_with`] for any frame.
fn parse_any(frame: &[u8], check_ip_csum: bool) -> Result<Parsed, DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::EthTruncated)?;
    let ethertype = eth.ethertype();
    let l3_off = ethernet::HEADER_LEN;
    if ethertype != EtherType::IPV4 {
        return Ok(Parsed {
            ethertype,
            l3_off,
            ip: None,
        });
    }

    let ip = Ipv4Packet::new_checked(eth.payload()).map_err(ip_error)?;
    if check_ip_csum && !ip.verify_checksum() {
        return Err(DropReason::Ipv4BadChecksum);
    }
    let protocol = ip.protocol();
    let l4 = ip.payload();
    let mut info = IpInfo {
        protocol,
        src: ip.src(),
        dst: ip.dst(),
        l4_off: l3_off + ip.header_len(),
        total_len: ip.total_len(),
        ttl: ip.ttl(),
        is_fragment: ip.is_fragment(),
        frag_offset: ip.frag_offset(),
        has_options: ip.has_options(),
        src_port: 0,
        dst_port: 0,
        tcp_flags: TcpFlags::default(),
        payload_len: l4.len(),
    };

    // RFC 1858 3.2: a TCP fragment at offset 8 could rewrite the first one's flags; a first TCP
    // or UDP fragment too short for its header is refused below like a truncated packet.
    if info.is_fragment && info.frag_offset == 8 && protocol == IpProtocol::TCP {
        return Err(DropReason::TcpTinyFragment);
    }
    if info.frag_offset == 0 {
        match protocol {
            IpProtocol::TCP => {
                let t = tcp::TcpPacket::new_checked(l4).map_err(|e| match e {
                    Error::Truncated => DropReason::TcpTruncated,
                    _ => DropReason::TcpBadDataOffset,
                })?;
                let flags = t.flags();
                if flags.is_invalid() {
                    return Err(DropReason::TcpBadFlags);
                }
                info.src_port = t.src_port();
                info.dst_port = t.dst_port();
                info.tcp_flags = flags;
                info.payload_len = l4.len() - t.header_len();
            }
            IpProtocol::UDP if info.is_fragment => {
                // The length field covers the whole datagram, not this fragment.
                if l4.len() < udp::HEADER_LEN {
                    return Err(DropReason::UdpTruncated);
                }
                let u = udp::UdpPacket::new_unchecked(l4);
                info.src_port = u.src_port();
                info.dst_port = u.dst_port();
                info.payload_len = l4.len() - udp::HEADER_LEN;
            }
            IpProtocol::UDP => {
                let u = udp::UdpPacket::new_checked(l4).map_err(|e| match e {
                    Error::Truncated => DropReason::UdpTruncated,
                    _ => DropReason::UdpBadLength,
                })?;
                info.src_port = u.src_port();
                info.dst_port = u.dst_port();
                info.payload_len = usize::from(u.len()) - udp::HEADER_LEN;
            }
            IpProtocol::ICMP if !info.is_fragment => {
                if l4.len() < icmp::HEADER_LEN {
                    return Err(DropReason::IcmpTruncated);
                }
                info.payload_len = l4.len() - icmp::HEADER_LEN;
            }
            _ => {}
        }
    }
    Ok(Parsed {
        ethertype,
        l3_off,
        ip: Some(info),
    })
}

/// Verifies the L4 checksum of a frame [`parse_l3l4`] accepted (pass the same frame). True when it
/// verifies, for a UDP datagram without checksum (0), and for protocols without a known checksum;
/// false for fragments (they cannot be verified without reassembly) and non-IPv4 frames.
pub fn verify_l4_checksum(frame: &[u8], parsed: &Parsed) -> bool {
    match &parsed.ip {
        Some(ip) => verify_ipv4_l4_checksum(frame, parsed.l3_off, ip),
        None => false,
    }
}

/// [`verify_l4_checksum`] for the IPv4 packet `ip` whose header is at `l3_off`.
pub fn verify_ipv4_l4_checksum(frame: &[u8], l3_off: usize, ip: &IpInfo) -> bool {
    if ip.is_fragment {
        return false;
    }
    let end = l3_off + usize::from(ip.total_len);
    let Some(l4) = frame.get(ip.l4_off..end) else {
        return false;
    };
    match ip.protocol {
        IpProtocol::TCP | IpProtocol::ICMP => {
            checksum::l4_verifies(ip.src, ip.dst, ip.protocol, l4)
        }
        IpProtocol::UDP => match udp::UdpPacket::new_checked(l4) {
            Ok(u) => u.verify_checksum(ip.src, ip.dst),
            Err(_) => false,
        },
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: [u8; 4] = [192, 0, 2, 1];
    const B: [u8; 4] = [10, 0, 0, 100];

    fn tcp_frame(flags: &[&str], payload: &[u8]) -> Vec<u8> {
        let mut b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(A, B, 64)
            .tcp(40000, 80, 1, 1000);
        for f in flags {
            b = match *f {
                "S" => b.syn(),
                "A" => b.ack(0),
                "F" => b.fin(),
                "R" => b.rst(),
                "P" => b.psh(),
                "U" => b.urg(0),
                _ => unreachable!(),
            };
        }
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn udp_frame(payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(A, B, 64)
            .udp(5353, 53)
            .write(&mut v, payload)
            .unwrap();
        v
    }

    /// Fixes the IPv4 header checksum after a test edits the header.
    fn refill(frame: &mut [u8]) {
        Ipv4Packet::new_unchecked(&mut frame[14..]).fill_checksum();
    }

    #[test]
    fn tcp_fields() {
        let mut f = tcp_frame(&["S"], b"hello");
        f.resize(70, 0); // Ethernet padding is not payload
        let p = parse_l3l4(&f).unwrap();
        assert_eq!(p.ethertype, EtherType::IPV4);
        assert_eq!(p.l3_off, 14);
        let ip = p.ip.unwrap();
        assert_eq!(ip.protocol, IpProtocol::TCP);
        assert_eq!((ip.src, ip.dst), (Ipv4Addr::from(A), Ipv4Addr::from(B)));
        assert_eq!(ip.l4_off, 34);
        assert_eq!(ip.total_len, 45);
        assert_eq!(ip.ttl, 64);
        assert!(!ip.is_fragment && !ip.has_options);
        assert_eq!((ip.src_port, ip.dst_port), (40000, 80));
        assert_eq!(ip.tcp_flags, TcpFlags::SYN);
        assert_eq!(ip.payload_len, 5);
        assert!(verify_l4_checksum(&f, &p));
        f[56] ^= 1;
        assert!(!verify_l4_checksum(&f, &p), "payload corruption is caught");
    }

    #[test]
    fn udp_and_icmp_fields() {
        let f = udp_frame(b"query");
        let p = parse_l3l4(&f).unwrap();
        let ip = p.ip.unwrap();
        assert_eq!(ip.protocol, IpProtocol::UDP);
        assert_eq!((ip.src_port, ip.dst_port, ip.payload_len), (5353, 53, 5));
        assert!(verify_l4_checksum(&f, &p));
        let mut none = f.clone();
        none[40..42].copy_from_slice(&[0, 0]);
        assert!(verify_l4_checksum(&none, &p), "UDP checksum 0 means none");
        let mut bad = f.clone();
        bad[43] ^= 0x10;
        assert!(!verify_l4_checksum(&bad, &p));

        let mut v = Vec::new();
        etherparse::PacketBuilder::ethernet2([0; 6], [0; 6])
            .ipv4(A, B, 64)
            .icmpv4_echo_request(1, 2)
            .write(&mut v, b"abc")
            .unwrap();
        let p = parse_l3l4(&v).unwrap();
        let ip = p.ip.unwrap();
        assert_eq!(
            (ip.protocol, ip.payload_len, ip.src_port),
            (IpProtocol::ICMP, 3, 0)
        );
        assert!(verify_l4_checksum(&v, &p));
        v[14 + 20 + 8] ^= 1;
        assert!(!verify_l4_checksum(&v, &p));
    }

    #[test]
    fn non_ip_and_other_protocols() {
        let mut arp = [0u8; 60];
        crate::wire::arp::write_request(
            &mut arp,
            crate::wire::MacAddr([2, 0, 0, 0, 0, 1]),
            A.into(),
            B.into(),
        )
        .unwrap();
        let p = parse_l3l4(&arp).unwrap();
        assert_eq!(
            p,
            Parsed {
                ethertype: EtherType::ARP,
                l3_off: 14,
                ip: None
            }
        );
        assert!(!verify_l4_checksum(&arp, &p));

        let mut gre = udp_frame(b"x");
        gre[23] = 47;
        refill(&mut gre);
        let p = parse_l3l4(&gre).unwrap();
        let ip = p.ip.unwrap();
        assert_eq!(
            (ip.protocol, ip.src_port, ip.payload_len),
            (IpProtocol(47), 0, 9)
        );
        assert!(verify_l4_checksum(&gre, &p));
    }

    #[test]
    fn fragments_and_options_are_flags() {
        let mut f = tcp_frame(&["A"], b"data");
        f[20] = 0x20; // MF
        refill(&mut f);
        let p = parse_l3l4(&f).unwrap();
        let ip = p.ip.unwrap();
        assert!(ip.is_fragment);
        // A first fragment's L4 header is read: the ports find its connection.
        assert_eq!(
            (ip.src_port, ip.tcp_flags, ip.payload_len, ip.frag_offset),
            (40000, TcpFlags::ACK, 4, 0)
        );
        assert!(!verify_l4_checksum(&f, &p));
        // ... and must be whole (RFC 1858 3.1: no header split over fragments).
        let mut short = f.clone();
        short.truncate(34 + 12);
        short[16..18].copy_from_slice(&32u16.to_be_bytes());
        refill(&mut short);
        assert_eq!(parse_l3l4(&short), Err(DropReason::TcpTruncated));

        // A non-first fragment with garbage where a TCP header would be is still accepted.
        let mut g = tcp_frame(&["A"], b"");
        g[20..22].copy_from_slice(&0x0002u16.to_be_bytes());
        g[34 + 12] = 0; // data offset 0
        refill(&mut g);
        let ip = parse_l3l4(&g).unwrap().ip.unwrap();
        assert!(ip.is_fragment);
        assert_eq!((ip.src_port, ip.frag_offset, ip.payload_len), (0, 16, 20));
        // At offset 8 it would overlap the first fragment's TCP header (RFC 1858 3.2).
        g[20..22].copy_from_slice(&0x0001u16.to_be_bytes());
        refill(&mut g);
        assert_eq!(parse_l3l4(&g), Err(DropReason::TcpTinyFragment));

        // A first UDP fragment: its length field counts the whole datagram.
        let mut u = udp_frame(b"0123456789");
        u[20] = 0x20; // MF
        u[34 + 4..34 + 6].copy_from_slice(&3000u16.to_be_bytes());
        refill(&mut u);
        let ip = parse_l3l4(&u).unwrap().ip.unwrap();
        assert_eq!((ip.src_port, ip.dst_port, ip.payload_len), (5353, 53, 10));
        u[20] = 0; // unfragmented, the same length is wrong
        refill(&mut u);
        assert_eq!(parse_l3l4(&u), Err(DropReason::UdpBadLength));

        // IHL 6 with a 4-byte option (NOP NOP NOP EOL) inserted.
        let mut o = tcp_frame(&["A"], b"");
        o.splice(34..34, [1, 1, 1, 0]);
        o[14] = 0x46;
        o[16..18].copy_from_slice(&44u16.to_be_bytes());
        refill(&mut o);
        let ip = parse_l3l4(&o).unwrap().ip.unwrap();
        assert!(ip.has_options);
        assert_eq!(ip.l4_off, 38);
        assert_eq!(ip.dst_port, 80);
    }

    #[test]
    fn every_rejection() {
        use DropReason as D;
        let good = tcp_frame(&["A"], b"data");
        let check = |f: &[u8], want: D| assert_eq!(parse_l3l4(f), Err(want), "{want:?}");

        check(&good[..13], D::EthTruncated);
        check(&good[..33], D::Ipv4Truncated);
        let mut v = good.clone();
        v[14] = 0x65;
        check(&v, D::Ipv4BadVersion);
        let mut v = good.clone();
        v[14] = 0x44;
        check(&v, D::Ipv4BadIhl);
        let mut v = good[..40].to_vec();
        v[14] = 0x4F;
        check(&v, D::Ipv4BadIhl);
        let mut v = good.clone();
        v[16..18].copy_from_slice(&19u16.to_be_bytes());
        check(&v, D::Ipv4BadTotalLen);
        check(&good[..good.len() - 1], D::Ipv4BadTotalLen);
        let mut v = good.clone();
        v[22] -= 1; // TTL changed, checksum not
        check(&v, D::Ipv4BadChecksum);

        // TCP: shrink the IP packet so the segment is 19 bytes.
        let mut v = good[..53].to_vec();
        v[16..18].copy_from_slice(&39u16.to_be_bytes());
        refill(&mut v);
        check(&v, D::TcpTruncated);
        for doff in [0x00, 0x40, 0x70] {
            let mut v = good.clone();
            v[34 + 12] = doff;
            check(&v, D::TcpBadDataOffset);
        }
        for flags in [
            &[][..],
            &["S", "F"],
            &["S", "R"],
            &["F"],
            &["P"],
            &["U"],
            &["F", "P", "U"],
            &["F", "R", "A"],
        ] {
            check(&tcp_frame(flags, b""), D::TcpBadFlags);
        }
        for flags in [
            &["S"][..],
            &["S", "A"],
            &["A"],
            &["R"],
            &["R", "A"],
            &["F", "A"],
            &["P", "A"],
        ] {
            assert!(parse_l3l4(&tcp_frame(flags, b"")).is_ok(), "{flags:?}");
        }

        let u = udp_frame(b"abcd");
        let mut v = u[..41].to_vec();
        v[16..18].copy_from_slice(&27u16.to_be_bytes());
        refill(&mut v);
        check(&v, D::UdpTruncated);
        let mut v = u.clone();
        v[38..40].copy_from_slice(&7u16.to_be_bytes());
        check(&v, D::UdpBadLength);
        let mut v = u.clone();
        v[38..40].copy_from_slice(&13u16.to_be_bytes());
        check(&v, D::UdpBadLength);

        let mut v = u[..41].to_vec();
        v[16..18].copy_from_slice(&27u16.to_be_bytes());
        v[23] = 1;
        refill(&mut v);
        check(&v, D::IcmpTruncated);
    }

    #[test]
    fn reason_table() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT, "names are distinct");
    }

    /// The plain TCP parse refuses a total length short of the IPv4 and TCP headers, as the
    /// general one does, and takes the one that just covers them: a boundary the property test
    /// below seldom draws (it did not catch the test of it widened by 20).
    #[test]
    fn the_plain_tcp_parse_refuses_a_total_length_short_of_its_headers() {
        for (total_len, opts) in [(0u16, 0usize), (19, 0), (20, 0), (39, 0), (40, 1), (43, 1)] {
            let mut f = tcp_frame(&["A"], &[0; 8]);
            if opts > 0 {
                f.splice(54..54, std::iter::repeat_n(1u8, 4 * opts));
                f[46] = ((5 + opts as u8) << 4) | (f[46] & 0x0F);
            }
            f[16..18].copy_from_slice(&total_len.to_be_bytes());
            refill(&mut f);
            assert_eq!(parse_plain_tcp(&f, true), None, "total length {total_len}");
            assert!(parse_any(&f, true).is_err(), "total length {total_len}");
        }
        let mut f = tcp_frame(&["A"], &[0; 8]);
        f[16..18].copy_from_slice(&40u16.to_be_bytes());
        refill(&mut f);
        assert!(matches!(parse_plain_tcp(&f, true), Some(Ok(_))));
        assert_eq!(parse_plain_tcp(&f, true), Some(parse_any(&f, true)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Never panics on arbitrary bytes, and whatever it accepts is self-consistent.
        #[test]
        fn never_panics(frame in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(p) = parse_l3l4(&frame) {
                if let Some(ip) = p.ip {
                    prop_assert!(ip.l4_off <= p.l3_off + usize::from(ip.total_len));
                    prop_assert!(p.l3_off + usize::from(ip.total_len) <= frame.len());
                }
                let _ = verify_l4_checksum(&frame, &p);
            }
        }

        /// Mostly-valid frames with random corruption: exercises the deeper checks.
        #[test]
        fn never_panics_on_mutated(
            payload in proptest::collection::vec(any::<u8>(), 0..40),
            idx in 0usize..80, val in any::<u8>(), cut in 0usize..100, udp in any::<bool>(),
        ) {
            let mut f = if udp { udp_frame(&payload) } else { tcp_frame(&["A"], &payload) };
            let i = idx % f.len();
            f[i] = val;
            let ihl_ok = usize::from(f[14] & 0x0F) * 4 <= f.len() - 14;
            if (14..34).contains(&i) && i != 24 && i != 25 && ihl_ok {
                refill(&mut f);
            }
            f.truncate(cut.min(f.len()));
            if let Ok(p) = parse_l3l4(&f) {
                let _ = verify_l4_checksum(&f, &p);
            }
        }

        /// The fixed-view parser of plain TCP segments gives what the general one gives, errors
        /// included, on TCP frames (with options, flags, payload and fragment bits drawn at
        /// random) with up to two bytes of the first 60 corrupted (the IPv4 checksum refilled
        /// half the time) and cut anywhere, with and without the header checksum verified.
        #[test]
        fn the_plain_tcp_parse_agrees_with_the_general_one(
            payload in proptest::collection::vec(any::<u8>(), 0..40),
            flags in 0u8..64, opts in 0usize..3, edits in proptest::collection::vec((0usize..60, any::<u8>()), 0..3),
            refill_csum in any::<bool>(), cut in 0usize..120, check in any::<bool>(),
        ) {
            let mut f = tcp_frame(&[], &payload);
            f[47] = flags;
            if opts > 0 {
                // NOP options: the data offset grows, the total length with it.
                let at = 54;
                f.splice(at..at, std::iter::repeat_n(1u8, 4 * opts));
                f[46] = ((5 + opts as u8) << 4) | (f[46] & 0x0F);
                let tl = (f.len() - 14) as u16;
                f[16..18].copy_from_slice(&tl.to_be_bytes());
            }
            for (i, v) in &edits {
                if let Some(b) = f.get_mut(*i) {
                    *b = *v;
                }
            }
            let ihl_ok = f.len() >= 34 && usize::from(f[14] & 0x0F) * 4 <= f.len() - 14;
            if refill_csum && ihl_ok && f[14] & 0x0F >= 5 {
                refill(&mut f);
            }
            f.truncate(cut.min(f.len()));
            prop_assert_eq!(parse_l3l4_with(&f, check), parse_any(&f, check));
        }

        /// Agrees with etherparse on ports, addresses and payload length for valid TCP/UDP.
        #[test]
        fn agrees_with_etherparse(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), sp in any::<u16>(), dp in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64), udp in any::<bool>(),
        ) {
            let mut f = Vec::new();
            let b = etherparse::PacketBuilder::ethernet2([0; 6], [0; 6]).ipv4(src, dst, 64);
            if udp {
                b.udp(sp, dp).write(&mut f, &payload).unwrap();
            } else {
                b.tcp(sp, dp, 0, 0).ack(1).write(&mut f, &payload).unwrap();
            }
            let p = parse_l3l4(&f).unwrap();
            let ip = p.ip.unwrap();
            prop_assert_eq!((ip.src, ip.dst), (Ipv4Addr::from(src), Ipv4Addr::from(dst)));
            prop_assert_eq!((ip.src_port, ip.dst_port), (sp, dp));
            prop_assert_eq!(ip.payload_len, payload.len());
            prop_assert!(verify_l4_checksum(&f, &p));
        }
    }
}

//! ICMP for IPv4 (RFC 792): header view, echo replies in place, and error messages.

use std::net::Ipv4Addr;

use super::checksum;
use super::ethernet::EthernetFrame;
use super::field::be16;
use super::ip::IpProtocol;
use super::ipv4::{self, Ipv4Packet, Ipv4Repr};
use super::{Error, Result};

/// The ICMP type field.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct IcmpType(pub u8);

impl IcmpType {
    pub const ECHO_REPLY: IcmpType = IcmpType(0);
    pub const DEST_UNREACHABLE: IcmpType = IcmpType(3);
    pub const SOURCE_QUENCH: IcmpType = IcmpType(4);
    pub const REDIRECT: IcmpType = IcmpType(5);
    pub const ECHO_REQUEST: IcmpType = IcmpType(8);
    pub const TIME_EXCEEDED: IcmpType = IcmpType(11);
    pub const PARAMETER_PROBLEM: IcmpType = IcmpType(12);

    /// An error message, which quotes the datagram that caused it (RFC 792) and must never itself
    /// provoke an ICMP error (RFC 1812 4.3.2.7).
    #[inline]
    pub fn is_error(self) -> bool {
        matches!(self.0, 3 | 4 | 5 | 11 | 12)
    }
}

/// Codes of the types the gateway sends (RFC 792, RFC 1191, RFC 1812).
pub mod code {
    /// Destination unreachable: net, host, protocol, port unreachable.
    pub const NET_UNREACHABLE: u8 = 0;
    pub const HOST_UNREACHABLE: u8 = 1;
    pub const PROTOCOL_UNREACHABLE: u8 = 2;
    pub const PORT_UNREACHABLE: u8 = 3;
    /// Destination unreachable: fragmentation needed and DF set (carries the next-hop MTU).
    pub const FRAG_NEEDED: u8 = 4;
    /// Destination unreachable: communication administratively prohibited (RFC 1812 5.2.7.1).
    pub const ADMIN_PROHIBITED: u8 = 13;
    /// Time exceeded: TTL exceeded in transit.
    pub const TTL_EXCEEDED: u8 = 0;
}

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    /// "Rest of header": echo ident and sequence, or unused + next-hop MTU (RFC 1191), pointer...
    pub const REST: Range<usize> = 4..8;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQ: Range<usize> = 6..8;
    pub const NEXT_HOP_MTU: Range<usize> = 6..8;
    pub const DATA: usize = 8;
}

/// Length of the ICMP header (type, code, checksum, rest of header).
pub const HEADER_LEN: usize = field::DATA;

/// A read/write view of an ICMP message (the whole IPv4 payload: the checksum covers all of it).
#[derive(Debug, Clone)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        IcmpPacket { buffer }
    }

    /// `Truncated` below 8 bytes.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn msg_type(&self) -> IcmpType {
        IcmpType(self.buffer.as_ref()[field::TYPE])
    }

    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo request/reply identifier.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo request/reply sequence number.
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    /// The 4 bytes after the checksum, whose meaning depends on the type.
    #[inline]
    pub fn rest_of_header(&self) -> [u8; 4] {
        let b = &self.buffer.as_ref()[field::REST];
        [b[0], b[1], b[2], b[3]]
    }

    /// Next-hop MTU of a "fragmentation needed" message (type 3 code 4, RFC 1191 4); `None` for
    /// other messages. 0 comes from a pre-RFC 1191 router that did not fill it in.
    #[inline]
    pub fn next_hop_mtu(&self) -> Option<u16> {
        if self.msg_type() == IcmpType::DEST_UNREACHABLE && self.code() == code::FRAG_NEEDED {
            Some(be16(self.buffer.as_ref(), field::NEXT_HOP_MTU))
        } else {
            None
        }
    }

    #[inline]
    pub fn is_error(&self) -> bool {
        self.msg_type().is_error()
    }

    /// What follows the header (echo data, or the quoted datagram of an error).
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..]
    }

    /// The quoted original datagram (IP header + at least 8 bytes) of an error message; `None`
    /// for other types. Its IP header is not checked here: quotes are often cut short.
    #[inline]
    pub fn embedded(&self) -> Option<&[u8]> {
        if self.is_error() {
            Some(self.data())
        } else {
            None
        }
    }

    /// The checksum over the whole message verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::verifies(self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    #[inline]
    pub fn set_msg_type(&mut self, t: IcmpType) {
        self.buffer.as_mut()[field::TYPE] = t.0;
    }

    #[inline]
    pub fn set_code(&mut self, c: u8) {
        self.buffer.as_mut()[field::CODE] = c;
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_echo_ident(&mut self, v: u16) {
        self.buffer.as_mut()[field::ECHO_IDENT].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_echo_seq(&mut self, v: u16) {
        self.buffer.as_mut()[field::ECHO_SEQ].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_rest_of_header(&mut self, r: [u8; 4]) {
        self.buffer.as_mut()[field::REST].copy_from_slice(&r);
    }

    /// Rewrites the echo identifier and patches the checksum (ICMP echo through NAT uses the
    /// identifier as its "port").
    #[inline]
    pub fn set_echo_ident_incremental(&mut self, v: u16) {
        let c = checksum::update16(self.checksum(), self.echo_ident(), v);
        self.set_echo_ident(v);
        self.set_checksum(c);
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA..]
    }

    /// Computes the checksum over the whole message from scratch.
    #[inline]
    pub fn fill_checksum(&mut self) {
        let c = !checksum::fold(checksum::sum_skipping(
            self.buffer.as_ref(),
            field::CHECKSUM.start,
        ));
        self.set_checksum(c);
    }
}

/// Turns the ICMP echo request in the Ethernet `frame` (IPv4 header at `l3_off`) into its echo reply
/// in place (RFC 792: "the source and destination addresses are simply reversed, the type code
/// changed to 0, and the checksum recomputed"): swaps MACs and IPs, sets the TTL to 64 as for any
/// datagram we originate, and patches both checksums incrementally (the address swap leaves the IP
/// checksum unchanged since the sum is commutative). Data, ident and sequence are echoed unchanged.
///
/// `Unsupported` unless an unfragmented ICMP echo request (code 0); errors from the views otherwise.
/// Whether to answer (the destination is ours, rate limits) is the caller's decision.
pub fn echo_reply_in_place(frame: &mut [u8], l3_off: usize) -> Result<()> {
    EthernetFrame::new_checked(&*frame)?;
    let l3 = frame.get(l3_off..).ok_or(Error::Truncated)?;
    let ip = Ipv4Packet::new_checked(l3)?;
    if ip.protocol() != IpProtocol::ICMP || ip.is_fragment() {
        return Err(Error::Unsupported);
    }
    let icmp = IcmpPacket::new_checked(ip.payload())?;
    if icmp.msg_type() != IcmpType::ECHO_REQUEST || icmp.code() != 0 {
        return Err(Error::Unsupported);
    }
    let (src, dst) = (ip.src(), ip.dst());

    EthernetFrame::new_unchecked(&mut *frame).swap_addrs();
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[l3_off..]);
    ip.set_src(dst);
    ip.set_dst(src);
    let (ttl, proto) = (ip.ttl(), ip.protocol().0);
    let c = checksum::update16(
        ip.checksum(),
        u16::from_be_bytes([ttl, proto]),
        u16::from_be_bytes([Ipv4Repr::DEFAULT_TTL, proto]),
    );
    ip.set_ttl(Ipv4Repr::DEFAULT_TTL);
    ip.set_checksum(c);

    let mut icmp = IcmpPacket::new_unchecked(ip.payload_mut());
    let code = icmp.code();
    let c = checksum::update16(
        icmp.checksum(),
        u16::from_be_bytes([IcmpType::ECHO_REQUEST.0, code]),
        u16::from_be_bytes([IcmpType::ECHO_REPLY.0, code]),
    );
    icmp.set_msg_type(IcmpType::ECHO_REPLY);
    icmp.set_checksum(c);
    Ok(())
}

/// The connection an ICMP error is about, read from its quoted datagram: what the datapath looks
/// up (as a reply-direction tuple: the quote is a packet *we* sent) to translate or steer the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedTuple {
    pub protocol: IpProtocol,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// TCP/UDP ports; 0 for other protocols.
    pub src_port: u16,
    pub dst_port: u16,
    /// Length of the quoted IP header (the quoted L4 header starts there in `embedded()`).
    pub header_len: usize,
}

/// Reads the tuple of an error's quoted datagram. Lenient on purpose: the quote is usually cut
/// after 8 L4 bytes, so its total length is not checked, but it must be IPv4 with a whole header
/// and, for TCP/UDP, the 4 port bytes. `None` for non-error messages or a shorter quote.
pub fn embedded_tuple<T: AsRef<[u8]>>(icmp: &IcmpPacket<T>) -> Option<EmbeddedTuple> {
    let q = icmp.embedded()?;
    if q.len() < ipv4::HEADER_LEN {
        return None;
    }
    let ip = Ipv4Packet::new_unchecked(q);
    let header_len = ip.header_len();
    if ip.version() != 4 || header_len < ipv4::HEADER_LEN || header_len > q.len() {
        return None;
    }
    let protocol = ip.protocol();
    let (src_port, dst_port) = match protocol {
        IpProtocol::TCP | IpProtocol::UDP => {
            let p = q.get(header_len..header_len + 4)?;
            (
                u16::from_be_bytes([p[0], p[1]]),
                u16::from_be_bytes([p[2], p[3]]),
            )
        }
        _ => (0, 0),
    };
    Some(EmbeddedTuple {
        protocol,
        src: ip.src(),
        dst: ip.dst(),
        src_port,
        dst_port,
        header_len,
    })
}

/// How much of the offending datagram an error quotes: its IP header and the first 8 bytes of its
/// payload (RFC 792; RFC 1812 4.3.2.3 allows up to 576 bytes in total, but the header and 8 bytes
/// are what a sender needs to find its socket: the ports).
pub const QUOTE_PAYLOAD_LEN: usize = 8;

/// Whether an ICMP error may be sent about `original` (RFC 1812 4.3.2.7): not about an ICMP error,
/// a non-initial fragment, a datagram to a broadcast or multicast address, or one whose source is
/// not a unicast host (0.0.0.0, loopback, broadcast, multicast, class E).
pub fn may_send_error_about<T: AsRef<[u8]>>(original: &Ipv4Packet<T>) -> bool {
    let (src, dst) = (original.src(), original.dst());
    let bad_src = src.is_unspecified()
        || src.is_loopback()
        || src.is_broadcast()
        || src.is_multicast()
        || src.octets()[0] >= 240;
    if bad_src || dst.is_broadcast() || dst.is_multicast() || original.frag_offset() != 0 {
        return false;
    }
    if original.protocol() == IpProtocol::ICMP {
        // An ICMP message too short to tell its type is not worth answering either.
        return match original.payload().first() {
            Some(&t) => !IcmpType(t).is_error(),
            None => false,
        };
    }
    true
}

/// Writes an ICMP error IPv4 packet (IP header, ICMP header, quote) from `src` to the source of
/// `original` into `buf` and returns its length. `original` is the offending datagram from its IP
/// header on; its header and first 8 payload bytes are quoted. `rest` is the type-specific rest of
/// the header (e.g. the next-hop MTU for frag-needed, see [`write_frag_needed`]). Checking
/// [`may_send_error_about`] is the caller's job. The caller adds the Ethernet header.
///
/// Errors: those of `Ipv4Packet::new_checked(original)`, or `Truncated` if `buf` is too small.
pub fn write_error(
    buf: &mut [u8],
    src: Ipv4Addr,
    icmp_type: IcmpType,
    code: u8,
    rest: [u8; 4],
    original: &[u8],
) -> Result<usize> {
    let orig = Ipv4Packet::new_checked(original)?;
    let quote_len = (orig.header_len() + QUOTE_PAYLOAD_LEN).min(usize::from(orig.total_len()));
    let icmp_len = HEADER_LEN + quote_len;
    let total = ipv4::HEADER_LEN + icmp_len;
    if buf.len() < total {
        return Err(Error::Truncated);
    }
    let repr = Ipv4Repr {
        src,
        dst: orig.src(),
        protocol: IpProtocol::ICMP,
        payload_len: icmp_len as u16,
        ttl: Ipv4Repr::DEFAULT_TTL,
        ident: 0,
        dont_frag: false,
        // Precedence 6 "internetwork control", RFC 1812 4.3.2.5.
        dscp_ecn: 0xC0,
    };
    repr.emit(buf)?;
    let mut icmp = IcmpPacket::new_unchecked(&mut buf[ipv4::HEADER_LEN..total]);
    icmp.set_msg_type(icmp_type);
    icmp.set_code(code);
    icmp.set_rest_of_header(rest);
    icmp.data_mut().copy_from_slice(&original[..quote_len]);
    icmp.fill_checksum();
    Ok(total)
}

/// [`write_error`] for "fragmentation needed and DF set" with the next-hop `mtu` (RFC 1191 4).
pub fn write_frag_needed(
    buf: &mut [u8],
    src: Ipv4Addr,
    mtu: u16,
    original: &[u8],
) -> Result<usize> {
    let m = mtu.to_be_bytes();
    write_error(
        buf,
        src,
        IcmpType::DEST_UNREACHABLE,
        code::FRAG_NEEDED,
        [0, 0, m[0], m[1]],
        original,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    fn echo_request(payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([192, 0, 2, 7], [10, 0, 0, 1], 57)
            .icmpv4_echo_request(0x1234, 7)
            .write(&mut frame, payload)
            .unwrap();
        frame
    }

    #[test]
    fn getters_on_echo_request() {
        let f = echo_request(b"ping!");
        let i = IcmpPacket::new_checked(&f[34..]).unwrap();
        assert_eq!(i.msg_type(), IcmpType::ECHO_REQUEST);
        assert_eq!(i.code(), 0);
        assert_eq!(i.echo_ident(), 0x1234);
        assert_eq!(i.echo_seq(), 7);
        assert_eq!(i.rest_of_header(), [0x12, 0x34, 0, 7]);
        assert_eq!(i.data(), b"ping!");
        assert!(!i.is_error());
        assert_eq!(i.embedded(), None);
        assert_eq!(i.next_hop_mtu(), None);
        assert!(i.verify_checksum(), "etherparse's checksum verifies here");
        assert_eq!(
            IcmpPacket::new_checked(&f[34..41]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn error_types() {
        for t in [3, 4, 5, 11, 12] {
            assert!(IcmpType(t).is_error());
        }
        for t in [0, 8, 13, 14, 255] {
            assert!(!IcmpType(t).is_error());
        }
    }

    #[test]
    fn echo_reply() {
        let mut f = echo_request(b"ping!");
        echo_reply_in_place(&mut f, 14).unwrap();
        let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        let Some(etherparse::LinkSlice::Ethernet2(e)) = &p.link else {
            panic!()
        };
        assert_eq!(e.destination(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(e.source(), [2, 0, 0, 0, 0, 2]);
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(ip.src(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(ip.dst(), Ipv4Addr::new(192, 0, 2, 7));
        assert_eq!(ip.ttl(), 64);
        assert!(ip.verify_checksum());
        let i = IcmpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(i.msg_type(), IcmpType::ECHO_REPLY);
        assert_eq!((i.echo_ident(), i.echo_seq()), (0x1234, 7));
        assert_eq!(i.data(), b"ping!");
        assert!(i.verify_checksum());
        // A reply is not a request: a second call refuses.
        assert_eq!(echo_reply_in_place(&mut f, 14), Err(Error::Unsupported));
    }

    #[test]
    fn echo_reply_rejections() {
        let mut udp = Vec::new();
        etherparse::PacketBuilder::ethernet2([0; 6], [0; 6])
            .ipv4([1; 4], [2; 4], 9)
            .udp(1, 2)
            .write(&mut udp, &[0; 8])
            .unwrap();
        assert_eq!(echo_reply_in_place(&mut udp, 14), Err(Error::Unsupported));
        let mut f = echo_request(b"x");
        f[14 + 6] = 0x20; // MF
        assert_eq!(echo_reply_in_place(&mut f, 14), Err(Error::Unsupported));
        let mut f = echo_request(b"x");
        f[34 + 1] = 1; // code 1
        assert_eq!(echo_reply_in_place(&mut f, 14), Err(Error::Unsupported));
        let mut f = echo_request(b"");
        assert_eq!(echo_reply_in_place(&mut f, 100), Err(Error::Truncated));
        assert_eq!(
            echo_reply_in_place(&mut f[..40], 14),
            Err(Error::BadTotalLen)
        );
        assert_eq!(echo_reply_in_place(&mut f[..10], 14), Err(Error::Truncated));
    }

    fn tcp_syn(payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        etherparse::PacketBuilder::ipv4([198, 51, 100, 9], [10, 0, 0, 100], 64)
            .tcp(40000, 443, 1, 1000)
            .syn()
            .write(&mut v, payload)
            .unwrap();
        v
    }

    #[test]
    fn frag_needed_quotes_header_and_8_bytes() {
        let orig = tcp_syn(&[0xAB; 1400]);
        let mut buf = [0u8; 600];
        let n = write_frag_needed(&mut buf, GW, 1480, &orig).unwrap();
        assert_eq!(n, 20 + 8 + 20 + 8);
        let (h, rest) = etherparse::Ipv4Header::from_slice(&buf[..n]).unwrap();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(h.protocol, etherparse::IpNumber::ICMP);
        assert_eq!(h.source, GW.octets());
        assert_eq!(h.destination, [198, 51, 100, 9]);
        assert_eq!(usize::from(h.total_len), n);
        let i = IcmpPacket::new_checked(rest).unwrap();
        assert!(i.verify_checksum());
        assert!(i.is_error());
        assert_eq!(i.next_hop_mtu(), Some(1480));
        assert_eq!(i.embedded(), Some(&orig[..28]));
        // The quote lets the receiver find its connection: the original ports.
        let q = Ipv4Packet::new_unchecked(i.embedded().unwrap());
        assert_eq!(q.src(), Ipv4Addr::new(198, 51, 100, 9));
        assert_eq!(&i.data()[20..24], &[0x9c, 0x40, 0x01, 0xbb]);

        // etherparse agrees it is a well-formed dest-unreachable/frag-needed.
        let (ih, _) = etherparse::Icmpv4Header::from_slice(rest).unwrap();
        assert_eq!(
            ih.icmp_type,
            etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1480
                }
            )
        );
    }

    #[test]
    fn embedded_tuple_from_quote() {
        let orig = tcp_syn(&[0xAB; 100]);
        let mut buf = [0u8; 100];
        let n = write_frag_needed(&mut buf, GW, 1400, &orig).unwrap();
        let i = IcmpPacket::new_checked(&buf[20..n]).unwrap();
        let t = embedded_tuple(&i).unwrap();
        assert_eq!(t.protocol, IpProtocol::TCP);
        assert_eq!(
            (t.src, t.dst),
            (Ipv4Addr::new(198, 51, 100, 9), Ipv4Addr::new(10, 0, 0, 100))
        );
        assert_eq!((t.src_port, t.dst_port, t.header_len), (40000, 443, 20));

        // Cut the quote to 23 bytes: no ports, no tuple. A bad version: none either.
        assert_eq!(
            embedded_tuple(&IcmpPacket::new_checked(&buf[20..20 + 8 + 23]).unwrap()),
            None
        );
        let mut bad = buf;
        bad[28] = 0x65;
        assert_eq!(
            embedded_tuple(&IcmpPacket::new_checked(&bad[20..n]).unwrap()),
            None
        );
        // Not an error: no tuple.
        let e = echo_request(b"12345678901234567890123456789");
        assert_eq!(
            embedded_tuple(&IcmpPacket::new_checked(&e[34..]).unwrap()),
            None
        );
    }

    #[test]
    fn error_short_original_and_small_buffer() {
        // A datagram with only 3 bytes of payload is quoted whole.
        let mut orig = tcp_syn(&[]);
        orig.truncate(23);
        orig[2..4].copy_from_slice(&23u16.to_be_bytes());
        let mut buf = [0u8; 100];
        let n = write_error(
            &mut buf,
            GW,
            IcmpType::DEST_UNREACHABLE,
            code::PORT_UNREACHABLE,
            [0; 4],
            &orig,
        )
        .unwrap();
        assert_eq!(n, 20 + 8 + 23);
        assert!(IcmpPacket::new_checked(&buf[20..n])
            .unwrap()
            .verify_checksum());
        assert_eq!(
            write_error(&mut buf[..50], GW, IcmpType(3), 3, [0; 4], &orig),
            Err(Error::Truncated)
        );
        assert_eq!(
            write_error(&mut buf, GW, IcmpType(3), 3, [0; 4], &orig[..19]),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn error_policy() {
        let ok = tcp_syn(b"hi");
        assert!(may_send_error_about(
            &Ipv4Packet::new_checked(&ok[..]).unwrap()
        ));
        let with = |f: &dyn Fn(&mut Ipv4Packet<&mut [u8]>)| {
            let mut v = ok.clone();
            f(&mut Ipv4Packet::new_unchecked(&mut v[..]));
            may_send_error_about(&Ipv4Packet::new_checked(&v[..]).unwrap())
        };
        assert!(!with(&|p| p.set_src(Ipv4Addr::UNSPECIFIED)));
        assert!(!with(&|p| p.set_src(Ipv4Addr::new(127, 0, 0, 1))));
        assert!(!with(&|p| p.set_src(Ipv4Addr::new(224, 0, 0, 1))));
        assert!(!with(&|p| p.set_src(Ipv4Addr::new(250, 0, 0, 1))));
        assert!(!with(&|p| p.set_dst(Ipv4Addr::BROADCAST)));
        assert!(!with(&|p| p.set_dst(Ipv4Addr::new(239, 1, 1, 1))));
        assert!(
            !with(&|p| p.set_flags_frag(false, false, 8)),
            "non-initial fragment"
        );
        assert!(
            with(&|p| p.set_flags_frag(false, true, 0)),
            "initial fragment is fine"
        );
        // ICMP: errors are not answered, echo requests may be.
        assert!(with(&|p| {
            p.set_protocol(IpProtocol::ICMP);
            p.payload_mut()[0] = 8;
        }));
        assert!(!with(&|p| {
            p.set_protocol(IpProtocol::ICMP);
            p.payload_mut()[0] = 3;
        }));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Echo replies made in place verify and match etherparse's view of the checksum.
        #[test]
        fn echo_reply_checksums(payload in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut f = echo_request(&payload);
            echo_reply_in_place(&mut f, 14).unwrap();
            let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
            let Some(etherparse::TransportSlice::Icmpv4(i)) = &p.transport else { panic!() };
            let h = i.header();
            prop_assert_eq!(h.checksum, h.icmp_type.calc_checksum(i.payload()));
            prop_assert_eq!(i.payload(), &payload[..]);
        }
    }
}

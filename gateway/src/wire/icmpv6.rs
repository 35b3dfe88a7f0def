//! ICMPv6 (RFC 4443) and the neighbour discovery messages the gateway answers (RFC 4861): a
//! header view, the options of neighbour solicitations, and neighbour advertisements written
//! fresh, neighbour solicitations and echo replies (used by `inet6`).

use std::net::Ipv6Addr;

use super::ethernet::MacAddr;
use super::ip::IpProtocol;
use super::ipv6::{self, Ipv6Packet};
use super::{Error, Result};

/// The ICMPv6 type field.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Icmpv6Type(pub u8);

impl Icmpv6Type {
    pub const DEST_UNREACHABLE: Icmpv6Type = Icmpv6Type(1);
    pub const PACKET_TOO_BIG: Icmpv6Type = Icmpv6Type(2);
    pub const TIME_EXCEEDED: Icmpv6Type = Icmpv6Type(3);
    pub const PARAMETER_PROBLEM: Icmpv6Type = Icmpv6Type(4);
    pub const ECHO_REQUEST: Icmpv6Type = Icmpv6Type(128);
    pub const ECHO_REPLY: Icmpv6Type = Icmpv6Type(129);
    pub const ROUTER_SOLICIT: Icmpv6Type = Icmpv6Type(133);
    pub const ROUTER_ADVERT: Icmpv6Type = Icmpv6Type(134);
    pub const NEIGHBOR_SOLICIT: Icmpv6Type = Icmpv6Type(135);
    pub const NEIGHBOR_ADVERT: Icmpv6Type = Icmpv6Type(136);

    /// An error message (RFC 4443 2.1: types 0..=127), which quotes the packet that caused it.
    #[inline]
    pub fn is_error(self) -> bool {
        self.0 < 128
    }
}

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    /// Neighbour solicitation and advertisement (RFC 4861 4.3, 4.4): flags (NA), reserved, the
    /// target address, then options.
    pub const NA_FLAGS: usize = 4;
    pub const ND_TARGET: Range<usize> = 8..24;
    pub const ND_OPTIONS: usize = 24;
}

/// Length of the ICMPv6 header (type, code, checksum, and the 4 bytes every message has next).
pub const HEADER_LEN: usize = 8;

/// Neighbour discovery option types (RFC 4861 4.6).
pub mod nd_option {
    pub const SOURCE_LINK_ADDR: u8 = 1;
    pub const TARGET_LINK_ADDR: u8 = 2;
}

/// Neighbour advertisement flags (RFC 4861 4.4).
pub const NA_ROUTER: u8 = 0x80;
pub const NA_SOLICITED: u8 = 0x40;
pub const NA_OVERRIDE: u8 = 0x20;

/// Hop limit of every neighbour discovery message: a receiver drops one with another, so that
/// they cannot come from off-link (RFC 4861 7.1.1).
pub const ND_HOP_LIMIT: u8 = 255;

/// A read/write view of an ICMPv6 message (the IPv6 payload from the ICMPv6 header on).
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    /// Wraps a buffer holding at least the 8-byte header (24 and the target for a neighbour
    /// solicitation or advertisement).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        let b = p.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let nd = matches!(
            p.msg_type(),
            Icmpv6Type::NEIGHBOR_SOLICIT | Icmpv6Type::NEIGHBOR_ADVERT
        );
        if nd && b.len() < field::ND_OPTIONS {
            return Err(Error::Truncated);
        }
        Ok(p)
    }

    #[inline]
    pub fn msg_type(&self) -> Icmpv6Type {
        Icmpv6Type(self.buffer.as_ref()[field::TYPE])
    }

    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::CHECKSUM];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Whether the checksum verifies over the pseudo-header of `src` -> `dst`.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        ipv6::l4_checksum(src, dst, IpProtocol::ICMPV6, self.buffer.as_ref()) == 0
    }

    /// The target address of a neighbour solicitation or advertisement (checked length).
    #[inline]
    pub fn nd_target(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::ND_TARGET]);
        Ipv6Addr::from(a)
    }

    /// The link-layer address option `kind` of a neighbour discovery message: `Ok(None)` without
    /// one, `Err(Malformed)` for an option of length 0 or past the message (RFC 4861 4.6: such a
    /// message is discarded).
    pub fn nd_link_addr(&self, kind: u8) -> Result<Option<MacAddr>> {
        let b = self.buffer.as_ref();
        let mut at = field::ND_OPTIONS;
        let mut found = None;
        while at < b.len() {
            let (t, units) = (b[at], usize::from(*b.get(at + 1).ok_or(Error::Malformed)?));
            let len = units * 8;
            if len == 0 || at + len > b.len() {
                return Err(Error::Malformed);
            }
            if t == kind && len >= 8 && found.is_none() {
                let mut m = [0u8; 6];
                m.copy_from_slice(&b[at + 2..at + 8]);
                found = Some(MacAddr(m));
            }
            at += len;
        }
        Ok(found)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Computes the checksum over the pseudo-header of `src` -> `dst`.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.buffer.as_mut()[field::CHECKSUM].fill(0);
        let c = ipv6::l4_checksum(src, dst, IpProtocol::ICMPV6, self.buffer.as_ref());
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }
}

/// The solicited-node multicast address of `a` (RFC 4291 2.7.1): ff02::1:ffXX:XXXX, where a
/// neighbour solicitation for `a` is sent.
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The Ethernet address of IPv6 multicast group `g` (RFC 2464 7): 33:33 and its last 32 bits.
pub fn multicast_mac(g: Ipv6Addr) -> MacAddr {
    let o = g.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// Writes the IPv6 packet of a neighbour advertisement from `src` to `dst` for `target` at
/// link-layer address `mac` (the target link-layer address option), with `flags`
/// ([`NA_SOLICITED`], [`NA_OVERRIDE`], [`NA_ROUTER`]), at the start of `buf`; its length, or None
/// if `buf` is too short. Hop limit 255, checksum filled.
pub fn write_neighbor_advert(
    buf: &mut [u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    mac: MacAddr,
    flags: u8,
) -> Option<usize> {
    let lladdr = (nd_option::TARGET_LINK_ADDR, mac);
    write_nd(
        buf,
        Icmpv6Type::NEIGHBOR_ADVERT,
        flags,
        (src, dst),
        target,
        lladdr,
    )
}

/// Writes the IPv6 packet of a neighbour solicitation from `src` to `dst` (the target's
/// solicited-node group, or the target itself for a NUD probe) for `target`, with our link-layer
/// address `mac` in the source link-layer address option (RFC 4861 4.3), at the start of `buf`;
/// its length, or None if `buf` is too short.
pub fn write_neighbor_solicit(
    buf: &mut [u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    mac: MacAddr,
) -> Option<usize> {
    let lladdr = (nd_option::SOURCE_LINK_ADDR, mac);
    write_nd(
        buf,
        Icmpv6Type::NEIGHBOR_SOLICIT,
        0,
        (src, dst),
        target,
        lladdr,
    )
}

/// A neighbour discovery message (RFC 4861 4.3, 4.4) with one link-layer address option.
fn write_nd(
    buf: &mut [u8],
    msg: Icmpv6Type,
    flags: u8,
    (src, dst): (Ipv6Addr, Ipv6Addr),
    target: Ipv6Addr,
    (option, mac): (u8, MacAddr),
) -> Option<usize> {
    const BODY: usize = field::ND_OPTIONS + 8;
    let len = ipv6::HEADER_LEN + BODY;
    let buf = buf.get_mut(..len)?;
    buf.fill(0);
    let mut ip = Ipv6Packet::new_unchecked(&mut *buf);
    ip.set_ver_tc_flow(0, 0);
    ip.set_payload_len(BODY as u16);
    ip.set_next_header(IpProtocol::ICMPV6);
    ip.set_hop_limit(ND_HOP_LIMIT);
    ip.set_src(src);
    ip.set_dst(dst);
    let m = &mut buf[ipv6::HEADER_LEN..];
    m[field::TYPE] = msg.0;
    m[field::NA_FLAGS] = flags;
    m[field::ND_TARGET].copy_from_slice(&target.octets());
    let o = field::ND_OPTIONS;
    m[o] = option;
    m[o + 1] = 1;
    m[o + 2..o + 8].copy_from_slice(&mac.0);
    Icmpv6Packet::new_unchecked(m).fill_checksum(src, dst);
    Some(len)
}

/// Turns the IPv6 packet `pkt` (header at 0, an echo request at `l4_off`, the payload length
/// already checked) into its echo reply (RFC 4443 4.2): addresses swapped, hop limit 64, type
/// 129, checksum recomputed. The request's source must be unicast (the caller checks).
pub fn echo_reply_in_place(pkt: &mut [u8], l4_off: usize) -> Result<()> {
    let (src, dst) = {
        let ip = Ipv6Packet::new_checked(&*pkt)?;
        (ip.src(), ip.dst())
    };
    let end = ipv6::HEADER_LEN + usize::from(Ipv6Packet::new_unchecked(&*pkt).payload_len());
    let m = pkt.get_mut(l4_off..end).ok_or(Error::Truncated)?;
    if m.len() < HEADER_LEN || m[field::TYPE] != Icmpv6Type::ECHO_REQUEST.0 {
        return Err(Error::Malformed);
    }
    m[field::TYPE] = Icmpv6Type::ECHO_REPLY.0;
    Icmpv6Packet::new_unchecked(m).fill_checksum(dst, src);
    let mut ip = Ipv6Packet::new_unchecked(&mut *pkt);
    ip.set_src(dst);
    ip.set_dst(src);
    ip.set_hop_limit(64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const PEER: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// A neighbour solicitation for `target` from `src` with its source link-layer option.
    fn solicitation(src: Ipv6Addr, target: Ipv6Addr, opt_len_units: u8) -> Vec<u8> {
        let mut m = vec![0u8; 32];
        m[0] = Icmpv6Type::NEIGHBOR_SOLICIT.0;
        m[8..24].copy_from_slice(&target.octets());
        m[24] = nd_option::SOURCE_LINK_ADDR;
        m[25] = opt_len_units;
        m[26..32].copy_from_slice(&PEER.0);
        let dst = solicited_node(target);
        Icmpv6Packet::new_unchecked(&mut m[..]).fill_checksum(src, dst);
        m
    }

    #[test]
    fn a_solicitation_reads_its_target_and_source_address() {
        let (src, target) = (a("2001:db8::2"), a("2001:db8::64"));
        let m = solicitation(src, target, 1);
        let p = Icmpv6Packet::new_checked(&m[..]).unwrap();
        assert_eq!(p.msg_type(), Icmpv6Type::NEIGHBOR_SOLICIT);
        assert!(p.verify_checksum(src, solicited_node(target)));
        assert!(!p.verify_checksum(src, target), "the pseudo-header counts");
        assert_eq!(p.nd_target(), target);
        assert_eq!(p.nd_link_addr(nd_option::SOURCE_LINK_ADDR), Ok(Some(PEER)));
        assert_eq!(p.nd_link_addr(nd_option::TARGET_LINK_ADDR), Ok(None));
        // An option of length 0, or running past the message, makes it malformed.
        for bad in [0, 2] {
            let m = solicitation(src, target, bad);
            let p = Icmpv6Packet::new_checked(&m[..]).unwrap();
            assert_eq!(p.nd_link_addr(1), Err(Error::Malformed), "length {bad}");
        }
        assert_eq!(
            Icmpv6Packet::new_checked(&m[..20]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn an_advertisement_is_written_as_etherparse_reads_it() {
        let (me, peer) = (a("2001:db8::64"), a("2001:db8::2"));
        let mut buf = [0u8; 100];
        let n =
            write_neighbor_advert(&mut buf, me, peer, me, ME, NA_SOLICITED | NA_OVERRIDE).unwrap();
        assert_eq!(n, 40 + 32);
        let p = etherparse::SlicedPacket::from_ip(&buf[..n]).unwrap();
        let Some(etherparse::NetSlice::Ipv6(ip)) = &p.net else {
            panic!("not IPv6")
        };
        assert_eq!(ip.header().hop_limit(), 255);
        assert_eq!(ip.header().next_header(), etherparse::IpNumber::IPV6_ICMP);
        let Some(etherparse::TransportSlice::Icmpv6(icmp)) = &p.transport else {
            panic!("not ICMPv6")
        };
        assert_eq!(icmp.type_u8(), 136);
        // etherparse's own checksum of the message equals ours.
        let recomputed = icmp
            .icmp_type()
            .calc_checksum(me.octets(), peer.octets(), icmp.payload())
            .unwrap();
        assert_eq!(recomputed, icmp.checksum());
        let m = Icmpv6Packet::new_checked(&buf[40..n]).unwrap();
        assert_eq!(m.nd_target(), me);
        assert_eq!(m.nd_link_addr(nd_option::TARGET_LINK_ADDR), Ok(Some(ME)));
        assert_eq!(buf[40 + 4], NA_SOLICITED | NA_OVERRIDE);
        assert_eq!(
            write_neighbor_advert(&mut buf[..71], me, peer, me, ME, 0),
            None
        );
    }

    #[test]
    fn solicited_node_groups_and_their_macs() {
        let g = solicited_node(a("2001:db8::12:3456:789a"));
        assert_eq!(g, a("ff02::1:ff56:789a"));
        assert_eq!(
            multicast_mac(g),
            MacAddr([0x33, 0x33, 0xff, 0x56, 0x78, 0x9a])
        );
    }
}

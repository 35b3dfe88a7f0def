//! IPv6 (RFC 8200) packets, their extension headers, and the IPv6 pseudo-header of upper-layer
//! checksums (RFC 8200 8.1). The first piece of IPv6 support (issue 17): views only; the datapath
//! does not use them yet.

use std::net::Ipv6Addr;

use super::field::ipv6 as addr;
use super::ip::IpProtocol;
use super::{Error, Result};

/// Next-header values of IPv6 (IANA "Assigned Internet Protocol Numbers"), beyond IPv4's.
impl IpProtocol {
    pub const HOP_BY_HOP: IpProtocol = IpProtocol(0);
    /// IPv6 in IPv6 (RFC 2473): TUN mode for IPv6 services.
    pub const IPV6: IpProtocol = IpProtocol(41);
    pub const IPV6_ROUTE: IpProtocol = IpProtocol(43);
    pub const IPV6_FRAG: IpProtocol = IpProtocol(44);
    pub const ICMPV6: IpProtocol = IpProtocol(58);
    pub const IPV6_NO_NEXT: IpProtocol = IpProtocol(59);
    pub const IPV6_OPTS: IpProtocol = IpProtocol(60);
}

mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

/// Extension headers walked at most before the packet is refused (RFC 8200 4.1 fixes no limit;
/// RFC 7112 and RFC 9098 note that long chains are how filters are evaded).
pub const MAX_EXTENSIONS: usize = 8;

/// A read/write view of an IPv6 packet.
///
/// After [`new_checked`](Self::new_checked): the buffer holds the fixed header and `payload_len`
/// bytes after it; [`payload`](Self::payload) ends there, so Ethernet padding is never data.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic on a bad buffer.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Rejects, in this order: a buffer shorter than 40 bytes, a version other than 6, a payload
    /// length of 0 with a hop-by-hop header (a jumbogram, RFC 2675: not supported) and a payload
    /// length past the buffer.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(Error::BadVersion);
        }
        let n = usize::from(self.payload_len());
        if n == 0 && self.next_header() == IpProtocol::HOP_BY_HOP {
            return Err(Error::Unsupported);
        }
        if HEADER_LEN + n > b.len() {
            return Err(Error::BadTotalLen);
        }
        Ok(())
    }

    #[inline]
    pub fn traffic_class(&self) -> u8 {
        let b = self.buffer.as_ref();
        (b[0] << 4) | (b[1] >> 4)
    }

    #[inline]
    pub fn flow_label(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([0, b[1] & 0x0F, b[2], b[3]])
    }

    #[inline]
    pub fn payload_len(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::PAYLOAD_LEN];
        u16::from_be_bytes([b[0], b[1]])
    }

    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::NEXT_HEADER])
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    #[inline]
    pub fn src(&self) -> Ipv6Addr {
        addr(self.buffer.as_ref(), field::SRC)
    }

    #[inline]
    pub fn dst(&self) -> Ipv6Addr {
        addr(self.buffer.as_ref(), field::DST)
    }

    /// What follows the fixed header (extension headers included), up to `payload_len`.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let n = usize::from(self.payload_len());
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + n]
    }

    /// The chain of extension headers after the fixed header, walked to the upper layer.
    pub fn upper_layer(&self) -> Result<UpperLayer> {
        walk(self.next_header(), self.payload())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    #[inline]
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    #[inline]
    pub fn set_src(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    #[inline]
    pub fn set_dst(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    #[inline]
    pub fn set_payload_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::PAYLOAD_LEN].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_next_header(&mut self, p: IpProtocol) {
        self.buffer.as_mut()[field::NEXT_HEADER] = p.0;
    }

    /// Writes version 6, traffic class and flow label.
    #[inline]
    pub fn set_ver_tc_flow(&mut self, tc: u8, flow: u32) {
        let v = (6u32 << 28) | (u32::from(tc) << 20) | (flow & 0x000F_FFFF);
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&v.to_be_bytes());
    }
}

/// A fragment header (RFC 8200 4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// Offset of this fragment's data in the original packet, in bytes.
    pub offset: u16,
    pub more: bool,
    pub ident: u32,
}

/// Where the upper layer starts, as the extension headers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpperLayer {
    /// The upper-layer protocol (the last next-header value).
    pub proto: IpProtocol,
    /// Offset of its header from the start of the IPv6 payload.
    pub offset: usize,
    /// The fragment header, if the packet is a fragment: a non-first fragment has no upper-layer
    /// header at `offset` (only data).
    pub fragment: Option<Fragment>,
}

/// Walks the extension headers of a payload whose first header is `next` (RFC 8200 4.1): hop-by-hop
/// options, routing, fragment and destination options, in any order, at most
/// [`MAX_EXTENSIONS`]. Anything else ends the walk as the upper layer (TCP, UDP, ICMPv6, IPv6 in
/// IPv6, no next header, or a protocol the caller does not handle). `Err(Malformed)`: a header
/// overrunning the payload, a hop-by-hop header anywhere but first, or too many headers.
pub fn walk(mut next: IpProtocol, payload: &[u8]) -> Result<UpperLayer> {
    let mut at = 0;
    let mut fragment = None;
    for i in 0..=MAX_EXTENSIONS {
        let len = match next {
            IpProtocol::HOP_BY_HOP if i > 0 => return Err(Error::Malformed),
            IpProtocol::HOP_BY_HOP | IpProtocol::IPV6_ROUTE | IpProtocol::IPV6_OPTS => {
                // Next header, header extension length in 8-octet units not counting the first.
                let h = payload.get(at..at + 2).ok_or(Error::Truncated)?;
                8 * (usize::from(h[1]) + 1)
            }
            IpProtocol::IPV6_FRAG => {
                let h = payload.get(at..at + 8).ok_or(Error::Truncated)?;
                let off_flags = u16::from_be_bytes([h[2], h[3]]);
                fragment = Some(Fragment {
                    offset: off_flags & !7,
                    more: off_flags & 1 != 0,
                    ident: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                });
                8
            }
            proto => {
                return Ok(UpperLayer {
                    proto,
                    offset: at,
                    fragment,
                })
            }
        };
        if at + len > payload.len() {
            return Err(Error::Truncated);
        }
        next = IpProtocol(payload[at]);
        at += len;
    }
    Err(Error::Malformed)
}

/// The IPv6 pseudo-header's share of an upper-layer checksum (RFC 8200 8.1): source, destination,
/// upper-layer length (32 bits) and next header, as an unfolded sum for
/// [`checksum::fold`](super::checksum::fold).
pub fn pseudo_header(src: Ipv6Addr, dst: Ipv6Addr, proto: IpProtocol, len: u32) -> u64 {
    let mut acc = super::checksum::sum(&src.octets()) + super::checksum::sum(&dst.octets());
    acc += u64::from(len >> 16) + u64::from(len & 0xFFFF);
    acc + u64::from(proto.0)
}

/// The checksum of an upper-layer segment `l4` (its checksum field zeroed, or to verify: as it
/// is) over the IPv6 pseudo-header: 0 for a segment whose checksum verifies.
pub fn l4_checksum(src: Ipv6Addr, dst: Ipv6Addr, proto: IpProtocol, l4: &[u8]) -> u16 {
    let acc = pseudo_header(src, dst, proto, l4.len() as u32) + super::checksum::sum(l4);
    !super::checksum::fold(acc)
}

#[cfg(test)]
mod tests;

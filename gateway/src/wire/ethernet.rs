//! Ethernet II frames (IEEE 802.3 with an EtherType, RFC 894) and MAC addresses.

use std::fmt;
use std::str::FromStr;

use super::{Error, Result};

/// A 48-bit IEEE 802 MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xFF; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Reads a MAC from the first 6 bytes of `b`; `None` if shorter.
    #[inline]
    pub fn from_bytes(b: &[u8]) -> Option<MacAddr> {
        let s = b.get(..6)?;
        Some(MacAddr([s[0], s[1], s[2], s[3], s[4], s[5]]))
    }

    /// Reads the MAC at `b[r]`, a 6-byte range the view's length check covers.
    #[inline]
    pub(crate) fn at(b: &[u8], r: core::ops::Range<usize>) -> MacAddr {
        // One 6-byte copy (a range of constants once inlined), not six checked byte reads.
        let mut m = [0u8; 6];
        m.copy_from_slice(&b[r]);
        MacAddr(m)
    }

    #[inline]
    pub fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    #[inline]
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// The I/G bit (least significant bit of the first octet) marks group addresses; broadcast is one.
    #[inline]
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// A unicast address that is not all zeros: the only kind that may be a frame's source.
    #[inline]
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && *self != Self::ZERO
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Error parsing a MAC address from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address (expected six hex octets separated by ':' or '-')")]
pub struct ParseMacError;

impl FromStr for MacAddr {
    type Err = ParseMacError;

    /// Accepts `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff` (one or two hex digits per octet).
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for o in out.iter_mut() {
            let p = parts.next().ok_or(ParseMacError)?;
            if p.is_empty() || p.len() > 2 {
                return Err(ParseMacError);
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| ParseMacError)?;
        }
        if parts.next().is_some() {
            return Err(ParseMacError);
        }
        Ok(MacAddr(out))
    }
}

/// The EtherType field (IEEE 802 numbers). A newtype so unknown values pass through.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct EtherType(pub u16);

impl EtherType {
    pub const IPV4: EtherType = EtherType(0x0800);
    pub const ARP: EtherType = EtherType(0x0806);
    /// IEEE 802.1Q tag; the gateway does not parse VLANs, so such frames are reported, not walked.
    pub const VLAN: EtherType = EtherType(0x8100);
    pub const IPV6: EtherType = EtherType(0x86DD);
}

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// Length of an Ethernet II header (no 802.1Q tag, no FCS).
pub const HEADER_LEN: usize = field::PAYLOAD;
/// Shortest frame on the wire without FCS (64 with it); shorter frames are padded.
pub const MIN_FRAME_LEN: usize = 60;

/// A read/write view of an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is shorter than the header.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
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
    pub fn dst(&self) -> MacAddr {
        MacAddr::at(self.buffer.as_ref(), field::DST)
    }

    #[inline]
    pub fn src(&self) -> MacAddr {
        MacAddr::at(self.buffer.as_ref(), field::SRC)
    }

    #[inline]
    pub fn ethertype(&self) -> EtherType {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        EtherType(u16::from_be_bytes([b[0], b[1]]))
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    #[inline]
    pub fn set_dst(&mut self, m: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&m.0);
    }

    #[inline]
    pub fn set_src(&mut self, m: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&m.0);
    }

    #[inline]
    pub fn set_ethertype(&mut self, t: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&t.0.to_be_bytes());
    }

    /// Swaps source and destination MAC: the first step of answering a frame in place.
    #[inline]
    pub fn swap_addrs(&mut self) {
        let (dst, src) = (self.dst(), self.src());
        self.set_dst(src);
        self.set_src(dst);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// Writes an Ethernet II header into the first 14 bytes of `buf`.
#[inline]
pub fn write_header(
    buf: &mut [u8],
    dst: MacAddr,
    src: MacAddr,
    ethertype: EtherType,
) -> Result<()> {
    if buf.len() < HEADER_LEN {
        return Err(Error::Truncated);
    }
    let mut f = EthernetFrame::new_unchecked(buf);
    f.set_dst(dst);
    f.set_src(src);
    f.set_ethertype(ethertype);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: [u8; 16] = [
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, // dst
        0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, // src
        0x08, 0x00, // IPv4
        0xAA, 0xBB, // payload
    ];

    #[test]
    fn getters() {
        let f = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(f.dst(), MacAddr([1, 2, 3, 4, 5, 6]));
        assert_eq!(f.src(), MacAddr([0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f]));
        assert_eq!(f.ethertype(), EtherType::IPV4);
        assert_eq!(f.payload(), &[0xAA, 0xBB]);
    }

    #[test]
    fn setters_and_swap() {
        let mut buf = FRAME;
        let mut f = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        f.swap_addrs();
        assert_eq!(f.src(), MacAddr([1, 2, 3, 4, 5, 6]));
        assert_eq!(f.dst(), MacAddr([0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f]));
        f.set_ethertype(EtherType::ARP);
        f.payload_mut()[0] = 0x11;
        assert_eq!(&buf[12..15], &[0x08, 0x06, 0x11]);
    }

    #[test]
    fn too_short() {
        assert_eq!(
            EthernetFrame::new_checked(&FRAME[..13]).unwrap_err(),
            Error::Truncated
        );
        assert!(EthernetFrame::new_checked(&FRAME[..14])
            .unwrap()
            .payload()
            .is_empty());
        assert_eq!(
            write_header(&mut [0u8; 13], MacAddr::ZERO, MacAddr::ZERO, EtherType::ARP),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn write_header_bytes() {
        let mut buf = [0u8; 14];
        write_header(
            &mut buf,
            MacAddr::BROADCAST,
            MacAddr([2, 0, 0, 0, 0, 1]),
            EtherType::ARP,
        )
        .unwrap();
        assert_eq!(
            buf,
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06]
        );
    }

    #[test]
    fn mac_display_parse() {
        let m: MacAddr = "aa:bb:cc:0d:0e:0f".parse().unwrap();
        assert_eq!(m, MacAddr([0xaa, 0xbb, 0xcc, 0x0d, 0x0e, 0x0f]));
        assert_eq!(m.to_string(), "aa:bb:cc:0d:0e:0f");
        assert_eq!(
            "AA-BB-CC-D-E-F".parse::<MacAddr>().unwrap(),
            MacAddr([0xaa, 0xbb, 0xcc, 0xd, 0xe, 0xf])
        );
        for bad in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "aa:bb:cc:dd:ee:fg",
            "aa:bb:cc:dd:ee:",
            "aaa:bb:cc:dd:ee:ff",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn mac_kinds() {
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]).is_multicast());
        assert!(!MacAddr([0x02, 0, 0, 0, 0, 1]).is_multicast());
        assert!(MacAddr([0x02, 0, 0, 0, 0, 1]).is_unicast());
        assert!(!MacAddr::ZERO.is_unicast());
        assert_eq!(
            MacAddr::from_bytes(&[1, 2, 3, 4, 5, 6, 7]),
            Some(MacAddr([1, 2, 3, 4, 5, 6]))
        );
        assert_eq!(MacAddr::from_bytes(&[1, 2, 3, 4, 5]), None);
    }
}

//! UDP (RFC 768) datagrams.

use std::net::Ipv4Addr;

use super::checksum;
use super::field::be16;
use super::ip::IpProtocol;
use super::{Error, Result};

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;
/// Offset of the checksum field in the header.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// A read/write view of a UDP datagram.
///
/// After [`new_checked`](Self::new_checked): 8 <= `length` <= buffer; [`payload`](Self::payload)
/// ends at `length`.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` if the buffer is shorter than 8 bytes; `BadTotalLen` if the length field is
    /// below 8 or beyond the buffer.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(self.len());
        if len < HEADER_LEN || len > b.len() {
            return Err(Error::BadTotalLen);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header plus data.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// 0 means "no checksum" over IPv4 (RFC 768).
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Both ports, source then destination, as their four bytes lie in memory: for checksum
    /// arithmetic without byte swaps (`checksum::ne32`).
    #[inline]
    pub fn ports_ne(&self) -> u32 {
        checksum::ne32(
            self.buffer.as_ref(),
            field::SRC_PORT.start..field::DST_PORT.end,
        )
    }

    /// The checksum in memory order (`checksum::ne16`).
    #[inline]
    pub fn checksum_ne(&self) -> u16 {
        checksum::ne16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The header and data up to the length field.
    #[inline]
    pub fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.len())]
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// Verifies the checksum with the IPv4 pseudo-header; a datagram without checksum passes.
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0 || checksum::l4_verifies(src, dst, IpProtocol::UDP, self.datagram())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets both ports from their memory-order value (`ports_ne`'s counterpart).
    #[inline]
    pub fn set_ports_ne(&mut self, v: u32) {
        self.buffer.as_mut()[field::SRC_PORT.start..field::DST_PORT.end]
            .copy_from_slice(&v.to_ne_bytes());
    }

    /// Sets the checksum from its memory-order value.
    #[inline]
    pub fn set_checksum_ne(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_ne_bytes());
    }

    /// Computes the checksum from scratch (a computed 0 is written as 0xFFFF).
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        // check_len guarantees 8 <= len <= 65535, so `l4` returns Some.
        let c = checksum::l4(src, dst, IpProtocol::UDP, self.datagram()).unwrap_or(0);
        self.set_checksum(c);
    }

    /// Rewrites the source port and patches the checksum (left at 0 if there is none).
    #[inline]
    pub fn set_src_port_incremental(&mut self, v: u16) {
        let c = checksum::update16_udp(self.checksum(), self.src_port(), v);
        self.set_src_port(v);
        self.set_checksum(c);
    }

    /// Rewrites the destination port and patches the checksum (left at 0 if there is none).
    #[inline]
    pub fn set_dst_port_incremental(&mut self, v: u16) {
        let c = checksum::update16_udp(self.checksum(), self.dst_port(), v);
        self.set_dst_port(v);
        self.set_checksum(c);
    }

    /// Patches the checksum for an IPv4 address change in the pseudo-header (FullNAT rewrites).
    #[inline]
    pub fn update_checksum_for_addr(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        let c = checksum::update32_udp(self.checksum(), u32::from(old), u32::from(new));
        self.set_checksum(c);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn sample() -> Vec<u8> {
        // 1234 -> 53, length 12, no checksum, payload "abcd", then 2 bytes of padding.
        vec![
            0x04, 0xd2, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, b'a', b'b', b'c', b'd', 0, 0,
        ]
    }

    #[test]
    fn getters() {
        let b = sample();
        let u = UdpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(u.src_port(), 1234);
        assert_eq!(u.dst_port(), 53);
        assert_eq!(u.len(), 12);
        assert_eq!(u.checksum(), 0);
        assert_eq!(u.payload(), b"abcd");
        assert!(u.verify_checksum(SRC, DST), "no checksum always passes");
    }

    #[test]
    fn rejections() {
        let b = sample();
        assert_eq!(
            UdpPacket::new_checked(&b[..7]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            UdpPacket::new_checked(&b[..11]).unwrap_err(),
            Error::BadTotalLen
        );
        let mut small = b.clone();
        small[5] = 7;
        assert_eq!(
            UdpPacket::new_checked(&small[..]).unwrap_err(),
            Error::BadTotalLen
        );
    }

    #[test]
    fn checksum_fill_verify_and_no_checksum_stays() {
        let mut b = sample();
        let mut u = UdpPacket::new_checked(&mut b[..]).unwrap();
        u.set_src_port_incremental(999);
        assert_eq!(
            u.checksum(),
            0,
            "absent checksum is not invented by an update"
        );
        u.fill_checksum(SRC, DST);
        assert_ne!(u.checksum(), 0);
        assert!(u.verify_checksum(SRC, DST));
        assert!(!u.verify_checksum(SRC, Ipv4Addr::new(10, 0, 0, 3)));
        u.payload_mut()[0] = b'z';
        assert!(!u.verify_checksum(SRC, DST));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Find a payload word making the checksum compute to 0; it must come out as 0xFFFF.
        let mut b = [0u8; 10];
        b[5] = 10;
        let rest = checksum::fold(
            checksum::sum(&b) + checksum::pseudo_header(SRC, DST, IpProtocol::UDP, 10),
        );
        // Choose the last word so the total sum is 0xFFFF, i.e. the checksum is 0.
        b[8..10].copy_from_slice(&(0xFFFF - rest).to_be_bytes());
        let mut u = UdpPacket::new_checked(&mut b[..]).unwrap();
        u.fill_checksum(SRC, DST);
        assert_eq!(u.checksum(), 0xFFFF);
        assert!(u.verify_checksum(SRC, DST));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Our checksum equals etherparse's, and a FullNAT rewrite patched incrementally equals a
        /// full recomputation and etherparse's.
        #[test]
        fn fullnat_rewrite_matches_etherparse(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
            sport in any::<u16>(), dport in any::<u16>(),
            nsrc in any::<[u8; 4]>(), ndst in any::<[u8; 4]>(),
            nsport in any::<u16>(), ndport in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut frame = Vec::new();
            etherparse::PacketBuilder::ipv4(src, dst, 64)
                .udp(sport, dport)
                .write(&mut frame, &payload)
                .unwrap();
            let l4 = &mut frame[20..];
            let mut u = UdpPacket::new_checked(&mut *l4).unwrap();
            let theirs = u.checksum();
            prop_assert_eq!(checksum::l4(src.into(), dst.into(), IpProtocol::UDP, u.datagram()), Some(theirs));
            prop_assert!(u.verify_checksum(src.into(), dst.into()));

            u.update_checksum_for_addr(src.into(), nsrc.into());
            u.update_checksum_for_addr(dst.into(), ndst.into());
            u.set_src_port_incremental(nsport);
            u.set_dst_port_incremental(ndport);
            let inc = u.checksum();
            u.fill_checksum(nsrc.into(), ndst.into());
            prop_assert_eq!(inc, u.checksum());

            let expect = etherparse::UdpHeader::with_ipv4_checksum(
                nsport, ndport,
                &etherparse::Ipv4Header::new((8 + payload.len()) as u16, 64, etherparse::IpNumber::UDP, nsrc, ndst).unwrap(),
                &payload,
            ).unwrap();
            prop_assert_eq!(inc, expect.checksum);
        }
    }
}

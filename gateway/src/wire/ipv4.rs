//! IPv4 (RFC 791) packets.

use std::net::Ipv4Addr;

use super::checksum;
use super::field::{be16, be64, ipv4 as addr};
use super::ip::IpProtocol;
use super::{Error, Result};

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const TOTAL_LEN: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
    /// The source and the destination address, adjacent.
    pub const ADDRS: Range<usize> = SRC.start..DST.end;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;
/// Longest IPv4 header (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFF_MASK: u16 = 0x1FFF;

/// A read/write view of an IPv4 packet.
///
/// After [`new_checked`](Self::new_checked): the buffer holds the whole header and `total_len`
/// bytes; [`payload`](Self::payload) ends at `total_len`, so Ethernet padding is never taken as data.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic on a bad buffer.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len). Does not verify the checksum.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Rejects, in this order: a buffer shorter than 20 bytes, a version other than 4, IHL < 5 or a
    /// header longer than the buffer, `total_len` below the header length or beyond the buffer.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::BadVersion);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN || hl > b.len() {
            return Err(Error::BadHeaderLen);
        }
        let tl = usize::from(self.total_len());
        if tl < hl || tl > b.len() {
            return Err(Error::BadTotalLen);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in 32-bit words.
    #[inline]
    pub fn ihl(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] & 0x0F
    }

    /// Header length in bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.ihl()) * 4
    }

    /// Options present (IHL > 5). The gateway forwards such packets only if configured to.
    #[inline]
    pub fn has_options(&self) -> bool {
        self.ihl() > 5
    }

    /// The former TOS byte: DSCP (6 bits) and ECN (2 bits), RFC 2474 / RFC 3168.
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    #[inline]
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::TOTAL_LEN)
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    #[inline]
    fn flags_frag(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLG_OFF)
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_frag() & FLAG_DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_frag() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flags_frag() & FRAG_OFF_MASK) << 3
    }

    /// Part of a fragmented datagram: MF set or a non-zero offset (RFC 791 3.2).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_frag() & (FLAG_MF | FRAG_OFF_MASK) != 0
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::PROTOCOL])
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn src(&self) -> Ipv4Addr {
        addr(self.buffer.as_ref(), field::SRC)
    }

    /// The source address in memory order, for checksum arithmetic ([`checksum::ne32`]).
    #[inline]
    pub fn src_ne(&self) -> u32 {
        checksum::ne32(self.buffer.as_ref(), field::SRC)
    }

    /// The destination address in memory order ([`checksum::ne32`]).
    #[inline]
    pub fn dst_ne(&self) -> u32 {
        checksum::ne32(self.buffer.as_ref(), field::DST)
    }

    /// The header checksum in memory order ([`checksum::ne16`]).
    #[inline]
    pub fn checksum_ne(&self) -> u16 {
        checksum::ne16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn dst(&self) -> Ipv4Addr {
        addr(self.buffer.as_ref(), field::DST)
    }

    /// The source and the destination address, read as one word and rotated so that the source
    /// is its low half, as a tuple's word of both holds them (`conn::Tuple`): the fast path's
    /// parse then builds that word with a load, a byte swap and the rotation, where from two
    /// reads it took four instructions more; split as it lies, without the rotation, the
    /// compiler did not see the tuple's word in it (perf/RESULTS.md, "Two words a header").
    #[inline]
    pub fn addrs(&self) -> (Ipv4Addr, Ipv4Addr) {
        let w = be64(self.buffer.as_ref(), field::ADDRS).rotate_left(32);
        (Ipv4Addr::from(w as u32), Ipv4Addr::from((w >> 32) as u32))
    }

    /// The option bytes (empty when IHL is 5).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The whole header, options included.
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The payload, from the end of the header to `total_len`.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    /// The header checksum verifies (the header sums to 0xFFFF).
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::verifies(self.header())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    #[inline]
    pub fn set_version_ihl(&mut self, version: u8, ihl: u8) {
        self.buffer.as_mut()[field::VER_IHL] = (version << 4) | (ihl & 0x0F);
    }

    #[inline]
    pub fn set_dscp_ecn(&mut self, v: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = v;
    }

    #[inline]
    pub fn set_total_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::TOTAL_LEN].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_ident(&mut self, v: u16) {
        self.buffer.as_mut()[field::IDENT].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets DF, MF and the offset in bytes (must be a multiple of 8; lower bits are dropped).
    #[inline]
    pub fn set_flags_frag(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut v = (offset >> 3) & FRAG_OFF_MASK;
        if dont_frag {
            v |= FLAG_DF;
        }
        if more_frags {
            v |= FLAG_MF;
        }
        self.buffer.as_mut()[field::FLG_OFF].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    #[inline]
    pub fn set_protocol(&mut self, p: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = p.0;
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_src(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    /// Sets the source address from its memory-order value (`src_ne`'s counterpart).
    #[inline]
    pub fn set_src_ne(&mut self, v: u32) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&v.to_ne_bytes());
    }

    /// Sets the destination address from its memory-order value.
    #[inline]
    pub fn set_dst_ne(&mut self, v: u32) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&v.to_ne_bytes());
    }

    /// Sets the header checksum from its memory-order value.
    #[inline]
    pub fn set_checksum_ne(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_ne_bytes());
    }

    #[inline]
    pub fn set_dst(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    /// Recomputes the header checksum from scratch (for headers this code builds).
    #[inline]
    pub fn fill_checksum(&mut self) {
        let c = checksum::ipv4_header(self.header());
        self.set_checksum(c);
    }

    /// Rewrites the source address and patches the header checksum (RFC 1624). The L4 checksum,
    /// which covers the address through the pseudo-header, is the caller's to patch.
    #[inline]
    pub fn set_src_incremental(&mut self, a: Ipv4Addr) {
        let c = checksum::update32(self.checksum(), u32::from(self.src()), u32::from(a));
        self.set_src(a);
        self.set_checksum(c);
    }

    /// Rewrites the destination address and patches the header checksum (see
    /// [`set_src_incremental`](Self::set_src_incremental)).
    #[inline]
    pub fn set_dst_incremental(&mut self, a: Ipv4Addr) {
        let c = checksum::update32(self.checksum(), u32::from(self.dst()), u32::from(a));
        self.set_dst(a);
        self.set_checksum(c);
    }

    /// Decrements the TTL and patches the checksum (RFC 1624 eqn. 3 on the TTL/protocol word).
    /// Returns the new TTL; a caller forwarding a packet whose TTL reaches 0 sends ICMP time exceeded.
    #[inline]
    pub fn decrement_ttl(&mut self) -> u8 {
        let ttl = self.ttl();
        let new = ttl.saturating_sub(1);
        let proto = self.buffer.as_ref()[field::PROTOCOL];
        let c = checksum::update16(
            self.checksum(),
            u16::from_be_bytes([ttl, proto]),
            u16::from_be_bytes([new, proto]),
        );
        self.set_ttl(new);
        self.set_checksum(c);
        new
    }

    /// Sets `total_len` and patches the checksum.
    #[inline]
    pub fn set_total_len_incremental(&mut self, v: u16) {
        let c = checksum::update16(self.checksum(), self.total_len(), v);
        self.set_total_len(v);
        self.set_checksum(c);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[start..end]
    }
}

/// The fields of an IPv4 header this gateway builds (no options): IPIP encapsulation (TUN mode)
/// and ICMP errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: IpProtocol,
    /// Length of what follows the header.
    pub payload_len: u16,
    pub ttl: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub dscp_ecn: u8,
}

impl Ipv4Repr {
    /// Default TTL for packets the gateway originates (RFC 1700's recommended 64).
    pub const DEFAULT_TTL: u8 = 64;

    /// Writes a 20-byte header with a correct checksum into the start of `buf`. Fails with
    /// `Truncated` if `buf` is shorter than 20 bytes, `BadTotalLen` if 20 + payload exceeds 65535.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let total = u16::try_from(HEADER_LEN + usize::from(self.payload_len))
            .map_err(|_| Error::BadTotalLen)?;
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..HEADER_LEN]);
        p.set_version_ihl(4, 5);
        p.set_dscp_ecn(self.dscp_ecn);
        p.set_total_len(total);
        p.set_ident(self.ident);
        p.set_flags_frag(self.dont_frag, false, 0);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src(self.src);
        p.set_dst(self.dst);
        p.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A UDP datagram 192.168.0.1 -> 192.168.0.199, total length 0x73 (the checksum example from
    /// Wikipedia), followed by padding beyond total_len.
    fn sample() -> Vec<u8> {
        let mut v = vec![
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        v.resize(0x73, 0xAB);
        v.extend_from_slice(&[0xEE; 5]);
        v
    }

    #[test]
    fn getters() {
        let b = sample();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.ihl(), 5);
        assert_eq!(p.header_len(), 20);
        assert!(!p.has_options());
        assert_eq!(p.dscp_ecn(), 0);
        assert_eq!(p.total_len(), 0x73);
        assert_eq!(p.ident(), 0);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::UDP);
        assert_eq!(p.checksum(), 0xb861);
        assert_eq!(p.src(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst(), Ipv4Addr::new(192, 168, 0, 199));
        assert_eq!(
            p.addrs(),
            (
                Ipv4Addr::new(192, 168, 0, 1),
                Ipv4Addr::new(192, 168, 0, 199)
            )
        );
        assert!(p.verify_checksum());
        assert_eq!(
            p.payload().len(),
            0x73 - 20,
            "payload stops at total_len, not at the padding"
        );
        assert!(p.payload().iter().all(|&x| x == 0xAB));
        assert!(p.options().is_empty());
    }

    #[test]
    fn fragments() {
        let mut b = sample();
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_flags_frag(false, true, 0);
        assert!(p.is_fragment() && p.more_frags() && !p.dont_frag() && p.frag_offset() == 0);
        p.set_flags_frag(false, false, 1480);
        assert!(p.is_fragment() && !p.more_frags());
        assert_eq!(p.frag_offset(), 1480);
        p.set_flags_frag(true, false, 0);
        assert!(!p.is_fragment());
    }

    #[test]
    fn rejections() {
        let b = sample();
        assert_eq!(
            Ipv4Packet::new_checked(&b[..19]).unwrap_err(),
            Error::Truncated
        );

        let mut v6 = b.clone();
        v6[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&v6[..]).unwrap_err(),
            Error::BadVersion
        );

        let mut ihl4 = b.clone();
        ihl4[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&ihl4[..]).unwrap_err(),
            Error::BadHeaderLen
        );

        // IHL 15 (60 bytes) in a 40-byte buffer.
        let mut long = b[..40].to_vec();
        long[0] = 0x4F;
        long[2..4].copy_from_slice(&40u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&long[..]).unwrap_err(),
            Error::BadHeaderLen
        );

        let mut short_total = b.clone();
        short_total[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&short_total[..]).unwrap_err(),
            Error::BadTotalLen
        );

        // total_len beyond the buffer (the padding does not count: cut it and one more byte).
        assert_eq!(
            Ipv4Packet::new_checked(&b[..0x72]).unwrap_err(),
            Error::BadTotalLen
        );
        assert!(Ipv4Packet::new_checked(&b[..0x73]).is_ok());
    }

    #[test]
    fn options_are_reported() {
        let mut b = [0u8; 24];
        b[0] = 0x46;
        b[2..4].copy_from_slice(&24u16.to_be_bytes());
        b[20..24].copy_from_slice(&[0x01, 0x01, 0x01, 0x00]); // NOP NOP NOP EOL
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        assert!(p.has_options());
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert!(p.payload().is_empty());
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
    }

    #[test]
    fn checksum_detects_corruption() {
        let mut b = sample();
        b[8] = 63;
        assert!(!Ipv4Packet::new_checked(&b[..]).unwrap().verify_checksum());
    }

    #[test]
    fn emit_matches_etherparse() {
        let repr = Ipv4Repr {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            protocol: IpProtocol::IPIP,
            payload_len: 100,
            ttl: 64,
            ident: 0x1234,
            dont_frag: true,
            dscp_ecn: 0,
        };
        let mut buf = [0u8; 20];
        repr.emit(&mut buf).unwrap();
        let (h, rest) = etherparse::Ipv4Header::from_slice(&buf).unwrap();
        assert!(rest.is_empty());
        assert_eq!(h.total_len, 120);
        assert_eq!(h.identification, 0x1234);
        assert!(h.dont_fragment);
        assert_eq!(h.protocol, etherparse::IpNumber(4));
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(h.source, [10, 0, 0, 1]);
        assert!(Ipv4Packet::new_unchecked(&buf[..]).verify_checksum());

        assert_eq!(repr.emit(&mut [0u8; 19]), Err(Error::Truncated));
        let big = Ipv4Repr {
            payload_len: 65516,
            ..repr
        };
        assert_eq!(big.emit(&mut buf), Err(Error::BadTotalLen));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Incremental rewrites (address, TTL, total length) keep the header checksum equal to a
        /// full recomputation.
        #[test]
        fn incremental_matches_full(
            src in any::<u32>(), dst in any::<u32>(), nsrc in any::<u32>(), ndst in any::<u32>(),
            ttl in 1u8.., ident in any::<u16>(), tl in 20u16..1500,
        ) {
            let repr = Ipv4Repr {
                src: src.into(), dst: dst.into(), protocol: IpProtocol::TCP, payload_len: 0,
                ttl, ident, dont_frag: true, dscp_ecn: 0,
            };
            let mut buf = [0u8; 20];
            repr.emit(&mut buf).unwrap();
            let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
            p.set_src_incremental(nsrc.into());
            p.set_dst_incremental(ndst.into());
            prop_assert_eq!(p.decrement_ttl(), ttl - 1);
            p.set_total_len_incremental(tl);
            let inc = p.checksum();
            p.fill_checksum();
            prop_assert_eq!(inc, p.checksum());
            prop_assert!(p.verify_checksum());
        }

        /// The checksum computed here equals etherparse's for random headers.
        #[test]
        fn checksum_matches_etherparse(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), ttl in any::<u8>(),
            proto in any::<u8>(), len in 0u16..1400, ident in any::<u16>(),
        ) {
            let mut h = etherparse::Ipv4Header::new(len, ttl, etherparse::IpNumber(proto), src, dst).unwrap();
            h.identification = ident;
            let mut buf = Vec::new();
            h.write(&mut buf).unwrap();
            let p = Ipv4Packet::new_unchecked(&buf[..]);
            prop_assert_eq!(checksum::ipv4_header(p.header()), h.calc_header_checksum());
            prop_assert!(p.verify_checksum());
        }
    }
}

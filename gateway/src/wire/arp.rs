//! ARP (RFC 826) for Ethernet hardware and IPv4 protocol addresses: the only kind the gateway
//! answers and sends.

use std::net::Ipv4Addr;

use super::ethernet::{self, EtherType, EthernetFrame, MacAddr};
use super::field::{be16, ipv4 as addr};
use super::{Error, Result};

/// The ARP operation field.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ArpOp(pub u16);

impl ArpOp {
    pub const REQUEST: ArpOp = ArpOp(1);
    pub const REPLY: ArpOp = ArpOp(2);
}

/// ar$hrd for Ethernet (IANA "Hardware Types").
pub const HTYPE_ETHERNET: u16 = 1;

mod field {
    use core::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    // The address fields below are where they sit for hlen 6 / plen 4.
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;

/// A read/write view of an Ethernet/IPv4 ARP packet (the Ethernet payload).
///
/// [`new_checked`](Self::new_checked) requires 28 bytes and htype 1, ptype 0x0800, hlen 6, plen 4,
/// so the address accessors are at fixed offsets and never panic.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// `Truncated` below 28 bytes; `Unsupported` unless Ethernet/IPv4.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        if !p.is_ethernet_ipv4() {
            return Err(Error::Unsupported);
        }
        Ok(p)
    }

    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < PACKET_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// htype Ethernet, ptype IPv4, hlen 6, plen 4.
    #[inline]
    pub fn is_ethernet_ipv4(&self) -> bool {
        self.htype() == HTYPE_ETHERNET
            && self.ptype() == EtherType::IPV4
            && self.hlen() == 6
            && self.plen() == 4
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn htype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::HTYPE)
    }

    #[inline]
    pub fn ptype(&self) -> EtherType {
        EtherType(be16(self.buffer.as_ref(), field::PTYPE))
    }

    #[inline]
    pub fn hlen(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    #[inline]
    pub fn plen(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    #[inline]
    pub fn op(&self) -> ArpOp {
        ArpOp(be16(self.buffer.as_ref(), field::OPER))
    }

    /// Sender hardware address.
    #[inline]
    pub fn sha(&self) -> MacAddr {
        MacAddr::at(self.buffer.as_ref(), field::SHA)
    }

    /// Sender protocol address.
    #[inline]
    pub fn spa(&self) -> Ipv4Addr {
        addr(self.buffer.as_ref(), field::SPA)
    }

    /// Target hardware address (ignored in requests).
    #[inline]
    pub fn tha(&self) -> MacAddr {
        MacAddr::at(self.buffer.as_ref(), field::THA)
    }

    /// Target protocol address.
    #[inline]
    pub fn tpa(&self) -> Ipv4Addr {
        addr(self.buffer.as_ref(), field::TPA)
    }

    /// A gratuitous ARP announces the sender's own binding (RFC 5227 3): spa == tpa.
    #[inline]
    pub fn is_gratuitous(&self) -> bool {
        self.spa() == self.tpa()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes htype, ptype, hlen, plen for Ethernet/IPv4.
    #[inline]
    pub fn set_ethernet_ipv4(&mut self) {
        let b = self.buffer.as_mut();
        b[field::HTYPE].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        b[field::PTYPE].copy_from_slice(&EtherType::IPV4.0.to_be_bytes());
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
    }

    #[inline]
    pub fn set_op(&mut self, op: ArpOp) {
        self.buffer.as_mut()[field::OPER].copy_from_slice(&op.0.to_be_bytes());
    }

    #[inline]
    pub fn set_sha(&mut self, m: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&m.0);
    }

    #[inline]
    pub fn set_spa(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&a.octets());
    }

    #[inline]
    pub fn set_tha(&mut self, m: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&m.0);
    }

    #[inline]
    pub fn set_tpa(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&a.octets());
    }
}

/// Turns the ARP request in the Ethernet `frame` into our reply in place (RFC 826 "swap the
/// hardware and protocol fields, putting the local hardware and protocol addresses in the sender
/// fields, set the opcode to reply"), addressing the frame to the requester. Whether the target
/// address is one we answer for is the caller's decision. `Unsupported` for anything but an
/// Ethernet/IPv4 ARP request; `Truncated` for a short frame.
pub fn make_reply_in_place(frame: &mut [u8], our_mac: MacAddr) -> Result<()> {
    let eth = EthernetFrame::new_checked(&*frame)?;
    if eth.ethertype() != EtherType::ARP {
        return Err(Error::Unsupported);
    }
    let arp = ArpPacket::new_checked(eth.payload())?;
    if arp.op() != ArpOp::REQUEST {
        return Err(Error::Unsupported);
    }
    let (sha, spa, tpa) = (arp.sha(), arp.spa(), arp.tpa());

    let mut eth = EthernetFrame::new_unchecked(&mut *frame);
    eth.set_dst(sha);
    eth.set_src(our_mac);
    let mut arp = ArpPacket::new_unchecked(eth.payload_mut());
    arp.set_op(ArpOp::REPLY);
    arp.set_tha(sha);
    arp.set_tpa(spa);
    arp.set_sha(our_mac);
    arp.set_spa(tpa);
    Ok(())
}

/// Writes a broadcast ARP request "who has `target_ip`? tell `src_ip`" (Ethernet header, ARP,
/// zero padding) into `buf` and returns its length, 60 (the minimum frame without FCS). With
/// `target_ip == src_ip` this is a gratuitous ARP announcement. `Truncated` if `buf` is shorter.
pub fn write_request(
    buf: &mut [u8],
    src_mac: MacAddr,
    src_ip: Ipv4Addr,
    target_ip: Ipv4Addr,
) -> Result<usize> {
    write_request_to(buf, MacAddr::BROADCAST, src_mac, src_ip, target_ip)
}

/// An ARP request sent to `dst_mac`: the broadcast of resolution, or the unicast probe of a cached
/// entry (Linux's NUD_PROBE, RFC 1122 §2.3.2.1: "unicast poll").
pub fn write_request_to(
    buf: &mut [u8],
    dst_mac: MacAddr,
    src_mac: MacAddr,
    src_ip: Ipv4Addr,
    target_ip: Ipv4Addr,
) -> Result<usize> {
    if buf.len() < ethernet::MIN_FRAME_LEN {
        return Err(Error::Truncated);
    }
    let frame = &mut buf[..ethernet::MIN_FRAME_LEN];
    frame.fill(0);
    ethernet::write_header(frame, dst_mac, src_mac, EtherType::ARP)?;
    let mut arp = ArpPacket::new_unchecked(&mut frame[ethernet::HEADER_LEN..]);
    arp.set_ethernet_ipv4();
    arp.set_op(ArpOp::REQUEST);
    arp.set_sha(src_mac);
    arp.set_spa(src_ip);
    arp.set_tha(MacAddr::ZERO);
    arp.set_tpa(target_ip);
    Ok(ethernet::MIN_FRAME_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xAA]);
    const THEIRS: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xBB]);
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);

    /// A request built by hand (not with our writer), padded to 60 bytes.
    fn request() -> Vec<u8> {
        let mut v = vec![0xff; 6];
        v.extend_from_slice(&THEIRS.0);
        v.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
        v.extend_from_slice(&THEIRS.0);
        v.extend_from_slice(&CLIENT.octets());
        v.extend_from_slice(&[0; 6]);
        v.extend_from_slice(&VIP.octets());
        v.resize(60, 0);
        v
    }

    #[test]
    fn getters() {
        let f = request();
        let a = ArpPacket::new_checked(&f[14..]).unwrap();
        assert_eq!(a.htype(), 1);
        assert_eq!(a.ptype(), EtherType::IPV4);
        assert_eq!((a.hlen(), a.plen()), (6, 4));
        assert_eq!(a.op(), ArpOp::REQUEST);
        assert_eq!(a.sha(), THEIRS);
        assert_eq!(a.spa(), CLIENT);
        assert_eq!(a.tha(), MacAddr::ZERO);
        assert_eq!(a.tpa(), VIP);
        assert!(!a.is_gratuitous());
    }

    #[test]
    fn rejections() {
        let f = request();
        assert_eq!(
            ArpPacket::new_checked(&f[14..41]).unwrap_err(),
            Error::Truncated
        );
        for (i, v) in [(15, 6u8), (16, 0x86), (18, 16), (19, 16)] {
            let mut g = f.clone();
            g[i] = v;
            assert_eq!(
                ArpPacket::new_checked(&g[14..]).unwrap_err(),
                Error::Unsupported,
                "byte {i}"
            );
        }
    }

    #[test]
    fn reply_in_place() {
        let mut f = request();
        make_reply_in_place(&mut f, OURS).unwrap();
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(eth.dst(), THEIRS);
        assert_eq!(eth.src(), OURS);
        assert_eq!(eth.ethertype(), EtherType::ARP);
        let a = ArpPacket::new_checked(eth.payload()).unwrap();
        assert_eq!(a.op(), ArpOp::REPLY);
        assert_eq!((a.sha(), a.spa()), (OURS, VIP));
        assert_eq!((a.tha(), a.tpa()), (THEIRS, CLIENT));
        assert_eq!(f.len(), 60);

        // Replying to a reply is refused, and the frame is untouched.
        let before = f.clone();
        assert_eq!(make_reply_in_place(&mut f, OURS), Err(Error::Unsupported));
        assert_eq!(f, before);
    }

    #[test]
    fn reply_rejects_non_arp_and_short() {
        let mut f = request();
        f[13] = 0x00; // ethertype 0x0800
        assert_eq!(make_reply_in_place(&mut f, OURS), Err(Error::Unsupported));
        let mut short = request();
        assert_eq!(
            make_reply_in_place(&mut short[..30], OURS),
            Err(Error::Truncated)
        );
        assert_eq!(
            make_reply_in_place(&mut short[..10], OURS),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn write_request_matches_hand_built() {
        let mut buf = [0x55u8; 64];
        let n = write_request(&mut buf, THEIRS, CLIENT, VIP).unwrap();
        assert_eq!(n, 60);
        assert_eq!(&buf[..60], &request()[..]);
        assert_eq!(&buf[60..], &[0x55; 4], "nothing written past the frame");
        assert_eq!(
            write_request(&mut [0u8; 59], THEIRS, CLIENT, VIP),
            Err(Error::Truncated)
        );

        let n = write_request(&mut buf, OURS, VIP, VIP).unwrap();
        let a = ArpPacket::new_checked(&buf[14..n]).unwrap();
        assert!(a.is_gratuitous());
    }
}

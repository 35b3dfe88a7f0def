//! The client side's frames: templates for SYN, TCP data and UDP datagrams that are copied and
//! patched per packet (address, port, timestamp) with RFC 1624 incremental checksums, the ACK that
//! completes a handshake, and the classification of what comes back from the VIP.
//!
//! Timestamps: a data packet carries the TSC at transmission in the first 6 bytes of its payload
//! (48 bits: 26 hours at 3 GHz before it wraps), which the reflector echoes back. A SYN carries the low
//! 32 bits of the TSC as its initial sequence number, so the SYN-ACK's acknowledgment number (ISN + 1)
//! times the handshake without any per-flow state.
//!
//! Sequence numbers: every data frame carries the generator's send counter (TCP: as its sequence
//! number, which the reflector acknowledges as seq + length; UDP: after the timestamp). The newest
//! counter echoed tells how many frames are still in flight, losses included, without per-packet
//! state: that is what keeps the flat-out generator closed-loop.
//!
//! IPv6 (`Endpoints::v6`): the same frames with a 40-byte IPv6 header (RFC 8200, no extension
//! headers) in place of the IPv4 one. A client's IPv6 address is the clients' /96 followed by its
//! flow's 32-bit address, so the flow space, the patching (the same 32-bit delta: the prefix is in
//! the template's checksum) and the classification stay one code for both families.

use gateway::wire::checksum::{self, Delta};
use gateway::wire::icmpv6::{self, Icmpv6Packet, Icmpv6Type};
use gateway::wire::ipv6::{self, Ipv6Packet};
use gateway::wire::{ethernet, ipv4, tcp, udp};
use gateway::wire::{
    EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv4Repr, MacAddr, TcpFlags, TcpPacket,
};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Where the IPv4 header starts (no VLAN).
pub const L3: usize = ethernet::HEADER_LEN;
/// Where the L4 header starts in the frames this crate builds (no IP options).
pub const L4: usize = L3 + ipv4::HEADER_LEN;
/// Where the L4 header starts in the IPv6 frames this crate builds (no extension headers).
pub const L4_V6: usize = L3 + ipv6::HEADER_LEN;
/// Bytes of timestamp at the start of a payload.
pub const STAMP_LEN: usize = 6;
/// The shortest frame (without FCS) that still carries a timestamp: 60 bytes for TCP, which is a
/// 64-byte frame on the wire.
pub const MIN_TCP_DATA_FRAME: usize = L4 + tcp::HEADER_LEN + STAMP_LEN;
pub const MIN_UDP_FRAME: usize = L4 + udp_header_len() + STAMP_LEN + 4;

const fn udp_header_len() -> usize {
    8
}

/// The client's data packets' sequence number in the template (each frame then carries its send
/// counter there; the gateway does not track sequence space).
pub const CLIENT_DATA_SEQ: u32 = 0;
/// The reflector's initial sequence number (stateless: the same for every connection).
pub const SERVER_ISN: u32 = 0x5EED_0000;
/// MSS the SYN announces.
pub const SYN_MSS: u16 = 1460;

/// What a template builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Syn,
    TcpData,
    Udp,
}

/// The addresses every client frame shares.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub vip: Ipv4Addr,
    pub vport: u16,
    /// IPv6 frames to this VIP from this clients' /96 instead of IPv4 ones.
    pub v6: Option<V6Endpoints>,
}

/// The IPv6 VIP and the /96 the clients' addresses are taken from.
#[derive(Debug, Clone, Copy)]
pub struct V6Endpoints {
    pub vip: Ipv6Addr,
    pub client_prefix: Ipv6Addr,
}

/// A client's IPv6 address: the first 96 bits of `prefix`, then the flow's 32-bit address.
#[inline]
pub fn client6(prefix: Ipv6Addr, ip: Ipv4Addr) -> Ipv6Addr {
    let mut o = prefix.octets();
    o[12..].copy_from_slice(&ip.octets());
    Ipv6Addr::from(o)
}

/// The 32-bit flow address in the last 32 bits of an IPv6 client address.
#[inline]
fn low32(a: Ipv6Addr) -> Ipv4Addr {
    let o = a.octets();
    Ipv4Addr::new(o[12], o[13], o[14], o[15])
}

/// A prebuilt frame plus the checksums it was built with; `write` patches a copy.
#[derive(Debug, Clone)]
pub struct Template {
    kind: Kind,
    frame: Vec<u8>,
    /// The IPv4 header checksum (IPv6 has none).
    ip_csum: Option<u16>,
    l4_csum: u16,
    /// Where the L4 header starts.
    l4: usize,
    /// Where the client address's (last) 32 bits go.
    src_at: usize,
    /// Where the timestamp goes.
    stamp_at: usize,
}

/// The template's client address and port before patching: zero, so the deltas are plain sums.
const BASE_IP: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
const BASE_PORT: u16 = 0;

impl Template {
    /// A template for `kind` frames of `size` bytes (without FCS), raised to the kind's minimum.
    pub fn new(kind: Kind, ep: &Endpoints, size: usize) -> Template {
        let l4_hdr = match kind {
            Kind::Syn => tcp::HEADER_LEN + 4,
            Kind::TcpData => tcp::HEADER_LEN,
            Kind::Udp => udp_header_len(),
        };
        let l4 = if ep.v6.is_some() { L4_V6 } else { L4 };
        let min = match kind {
            Kind::Syn => l4 + l4_hdr,
            Kind::TcpData => l4 + tcp::HEADER_LEN + STAMP_LEN,
            Kind::Udp => l4 + udp_header_len() + STAMP_LEN + 4,
        };
        let len = if kind == Kind::Syn {
            min
        } else {
            size.clamp(min, 1514)
        };
        let mut f = vec![0u8; len];
        let ethertype = if ep.v6.is_some() {
            EtherType::IPV6
        } else {
            EtherType::IPV4
        };
        let ok = ethernet::write_header(&mut f, ep.dst_mac, ep.src_mac, ethertype).is_ok();
        debug_assert!(ok);
        let protocol = if kind == Kind::Udp {
            IpProtocol::UDP
        } else {
            IpProtocol::TCP
        };
        if let Some(v6) = ep.v6 {
            let mut ip = Ipv6Packet::new_unchecked(&mut f[L3..]);
            ip.set_ver_tc_flow(0, 0);
            ip.set_payload_len((len - l4) as u16);
            ip.set_next_header(protocol);
            ip.set_hop_limit(Ipv4Repr::DEFAULT_TTL);
            ip.set_src(client6(v6.client_prefix, BASE_IP));
            ip.set_dst(v6.vip);
        } else {
            let repr = Ipv4Repr {
                src: BASE_IP,
                dst: ep.vip,
                protocol,
                payload_len: (len - l4) as u16,
                ttl: Ipv4Repr::DEFAULT_TTL,
                ident: 0,
                dont_frag: true,
                dscp_ecn: 0,
            };
            let ok = repr.emit(&mut f[L3..]).is_ok();
            debug_assert!(ok);
        }
        match kind {
            Kind::Syn | Kind::TcpData => {
                let mut t = TcpPacket::new_unchecked(&mut f[l4..]);
                t.set_src_port(BASE_PORT);
                t.set_dst_port(ep.vport);
                t.set_window(0xFFFF);
                if kind == Kind::Syn {
                    t.set_data_offset(6);
                    t.set_flags(TcpFlags::SYN);
                    let mss = SYN_MSS.to_be_bytes();
                    f[l4 + tcp::HEADER_LEN..l4 + tcp::HEADER_LEN + 4].copy_from_slice(&[
                        tcp::kind::MSS,
                        4,
                        mss[0],
                        mss[1],
                    ]);
                } else {
                    t.set_data_offset(5);
                    t.set_flags(TcpFlags(TcpFlags::PSH.0 | TcpFlags::ACK.0));
                    t.set_seq(CLIENT_DATA_SEQ);
                    t.set_ack_number(SERVER_ISN.wrapping_add(1));
                }
                if ep.v6.is_none() {
                    TcpPacket::new_unchecked(&mut f[l4..]).fill_checksum(BASE_IP, ep.vip);
                }
            }
            Kind::Udp => {
                let mut u = udp::UdpPacket::new_unchecked(&mut f[l4..]);
                u.set_src_port(BASE_PORT);
                u.set_dst_port(ep.vport);
                u.set_len((len - l4) as u16);
                if ep.v6.is_none() {
                    u.fill_checksum(BASE_IP, ep.vip);
                }
            }
        }
        let c = l4 + l4_csum_off(kind);
        let (ip_csum, src_at) = match ep.v6 {
            Some(_) => {
                fill_l4_checksum6(&mut f, l4, protocol);
                // The source address is bytes 8..24 of the header (RFC 8200 3).
                (None, L3 + 20)
            }
            None => (
                Some(Ipv4Packet::new_unchecked(&f[L3..]).checksum()),
                L3 + 12,
            ),
        };
        let l4_csum = u16::from_be_bytes([f[c], f[c + 1]]);
        Template {
            kind,
            frame: f,
            ip_csum,
            l4_csum,
            l4,
            src_at,
            stamp_at: l4 + l4_hdr,
        }
    }

    pub fn len(&self) -> usize {
        self.frame.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }

    /// Writes the frame for client `ip:port` stamped with `tsc` and send counter `seq` into `buf`
    /// (at least `len()` bytes); returns its length. SYNs carry the stamp's low 32 bits as their
    /// sequence number instead.
    #[inline]
    pub fn write(&self, buf: &mut [u8], ip: Ipv4Addr, port: u16, tsc: u64, seq: u32) -> usize {
        let n = self.frame.len();
        let Some(f) = buf.get_mut(..n) else {
            return 0;
        };
        f.copy_from_slice(&self.frame);
        let ip32 = u32::from(ip);
        f[self.src_at..self.src_at + 4].copy_from_slice(&ip.octets());
        if let Some(c) = self.ip_csum {
            let ip_csum = Delta::new().dword(u32::from(BASE_IP), ip32).apply(c);
            f[L3 + 10..L3 + 12].copy_from_slice(&ip_csum.to_be_bytes());
        }
        let l4 = self.l4;
        f[l4..l4 + 2].copy_from_slice(&port.to_be_bytes());
        let d = Delta::new()
            .dword(u32::from(BASE_IP), ip32)
            .word(BASE_PORT, port);
        let l4_csum = match self.kind {
            Kind::Syn => {
                let isn = tsc as u32;
                f[l4 + 4..l4 + 8].copy_from_slice(&isn.to_be_bytes());
                d.dword(0, isn).apply(self.l4_csum)
            }
            Kind::TcpData | Kind::Udp => {
                let s = (tsc & 0xFFFF_FFFF_FFFF).to_be_bytes();
                f[self.stamp_at..self.stamp_at + STAMP_LEN].copy_from_slice(&s[2..]);
                let w = |i: usize| u16::from_be_bytes([s[i], s[i + 1]]);
                let d = d.word(0, w(2)).word(0, w(4)).word(0, w(6)).dword(0, seq);
                if self.kind == Kind::Udp {
                    let at = self.stamp_at + STAMP_LEN;
                    f[at..at + 4].copy_from_slice(&seq.to_be_bytes());
                    d.apply_udp(self.l4_csum)
                } else {
                    f[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
                    d.apply(self.l4_csum)
                }
            }
        };
        let c = l4 + l4_csum_off(self.kind);
        f[c..c + 2].copy_from_slice(&l4_csum.to_be_bytes());
        n
    }
}

fn l4_csum_off(kind: Kind) -> usize {
    match kind {
        Kind::Udp => 6,
        _ => tcp::CHECKSUM_OFFSET,
    }
}

/// Fills the TCP or UDP checksum of the IPv6 frame `f` (L4 at `l4`, to the frame's end) over the
/// pseudo-header (RFC 8200 8.1); a UDP checksum that computes to 0 is sent as 0xFFFF.
fn fill_l4_checksum6(f: &mut [u8], l4: usize, proto: IpProtocol) {
    let (src, dst) = {
        let ip = Ipv6Packet::new_unchecked(&f[L3..]);
        (ip.src(), ip.dst())
    };
    let at = l4
        + if proto == IpProtocol::UDP {
            6
        } else {
            tcp::CHECKSUM_OFFSET
        };
    f[at..at + 2].fill(0);
    let mut c = ipv6::l4_checksum(src, dst, proto, &f[l4..]);
    if c == 0 && proto == IpProtocol::UDP {
        c = 0xFFFF;
    }
    f[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// What arrived on the client side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRx {
    /// A SYN-ACK for client `ip:port`; `isn_stamp` is the SYN's TSC stamp (low 32 bits).
    SynAck {
        ip: Ipv4Addr,
        port: u16,
        isn_stamp: u32,
    },
    /// An echoed data packet or datagram for client `ip:port`, with the TSC stamp and the send
    /// counter it carried.
    Echo {
        ip: Ipv4Addr,
        port: u16,
        stamp: u64,
        seq: u32,
    },
    /// An ARP request for `target` (to be answered) or reply from `sender` (its MAC learnt).
    ArpRequest {
        target: Ipv4Addr,
    },
    ArpReply {
        sender: Ipv4Addr,
        mac: MacAddr,
    },
    /// An IPv6 neighbour solicitation for `target` (to be answered with [`answer_ns`]).
    NdSolicit {
        target: Ipv6Addr,
    },
    /// Anything else (RSTs, ICMP, malformed).
    Other,
}

/// Classifies a frame received on the client side.
pub fn classify_client(frame: &[u8]) -> ClientRx {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return ClientRx::Other;
    };
    match eth.ethertype() {
        EtherType::ARP => classify_arp(eth.payload()),
        EtherType::IPV4 => {
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                return ClientRx::Other;
            };
            classify_l4(ip.protocol(), ip.payload(), ip.dst())
        }
        EtherType::IPV6 => {
            let Ok(ip) = Ipv6Packet::new_checked(eth.payload()) else {
                return ClientRx::Other;
            };
            match ip.next_header() {
                IpProtocol::ICMPV6 => match Icmpv6Packet::new_checked(ip.payload()) {
                    Ok(m) if m.msg_type() == Icmpv6Type::NEIGHBOR_SOLICIT => ClientRx::NdSolicit {
                        target: m.nd_target(),
                    },
                    _ => ClientRx::Other,
                },
                p => classify_l4(p, ip.payload(), low32(ip.dst())),
            }
        }
        _ => ClientRx::Other,
    }
}

/// Classifies the TCP segment or UDP datagram `l4` sent to client `dst` (its 32-bit flow address).
#[inline]
fn classify_l4(proto: IpProtocol, l4: &[u8], dst: Ipv4Addr) -> ClientRx {
    match proto {
        IpProtocol::TCP => {
            let Ok(t) = TcpPacket::new_checked(l4) else {
                return ClientRx::Other;
            };
            let f = t.flags();
            if f.rst() {
                ClientRx::Other
            } else if f.syn() && f.ack() {
                ClientRx::SynAck {
                    ip: dst,
                    port: t.dst_port(),
                    isn_stamp: t.ack_number().wrapping_sub(1),
                }
            } else if let Some(stamp) = read_stamp(t.payload()) {
                // The reflector acknowledged our counter plus the payload length.
                let seq = t.ack_number().wrapping_sub(t.payload().len() as u32);
                ClientRx::Echo {
                    ip: dst,
                    port: t.dst_port(),
                    stamp,
                    seq,
                }
            } else {
                ClientRx::Other
            }
        }
        IpProtocol::UDP => {
            let Ok(u) = udp::UdpPacket::new_checked(l4) else {
                return ClientRx::Other;
            };
            let seq = u
                .payload()
                .get(STAMP_LEN..STAMP_LEN + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            match (read_stamp(u.payload()), seq) {
                (Some(stamp), Some(seq)) => ClientRx::Echo {
                    ip: dst,
                    port: u.dst_port(),
                    stamp,
                    seq,
                },
                _ => ClientRx::Other,
            }
        }
        _ => ClientRx::Other,
    }
}

/// ARP as either side sees it.
pub fn classify_arp(payload: &[u8]) -> ClientRx {
    let Ok(a) = gateway::wire::ArpPacket::new_checked(payload) else {
        return ClientRx::Other;
    };
    if !a.is_ethernet_ipv4() {
        return ClientRx::Other;
    }
    match a.op() {
        gateway::wire::ArpOp::REQUEST if a.spa() != a.tpa() => {
            ClientRx::ArpRequest { target: a.tpa() }
        }
        gateway::wire::ArpOp::REPLY => ClientRx::ArpReply {
            sender: a.spa(),
            mac: a.sha(),
        },
        _ => ClientRx::Other,
    }
}

fn read_stamp(p: &[u8]) -> Option<u64> {
    let s = p.get(..STAMP_LEN)?;
    let mut b = [0u8; 8];
    b[2..].copy_from_slice(s);
    Some(u64::from_be_bytes(b))
}

/// Answers the IPv6 neighbour solicitation in `frame` in place with a solicited advertisement
/// (RFC 4861 7.2.4) of `mac` for its target, unless the target is `not_for` (the gateway's own
/// address) or the solicitation comes from the unspecified address (duplicate address detection).
/// Returns the advertisement's frame length.
pub fn answer_ns(frame: &mut [u8], mac: MacAddr, not_for: Option<Ipv6Addr>) -> Option<usize> {
    let (peer_mac, peer, target) = {
        let eth = EthernetFrame::new_checked(&*frame).ok()?;
        if eth.ethertype() != EtherType::IPV6 {
            return None;
        }
        let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
        if ip.next_header() != IpProtocol::ICMPV6 || ip.src().is_unspecified() {
            return None;
        }
        let m = Icmpv6Packet::new_checked(ip.payload()).ok()?;
        if m.msg_type() != Icmpv6Type::NEIGHBOR_SOLICIT || Some(m.nd_target()) == not_for {
            return None;
        }
        (eth.src(), ip.src(), m.nd_target())
    };
    let flags = icmpv6::NA_SOLICITED | icmpv6::NA_OVERRIDE;
    let n = icmpv6::write_neighbor_advert(frame.get_mut(L3..)?, target, peer, target, mac, flags)?;
    ethernet::write_header(frame, peer_mac, mac, EtherType::IPV6).ok()?;
    Some(L3 + n)
}

/// Writes into `buf` a neighbour solicitation from `src` (at `mac`) for `target`, to the target's
/// solicited-node group (RFC 4861 7.2.2): the gateway learns `src` from it. Returns its length.
pub fn write_ns(buf: &mut [u8], mac: MacAddr, src: Ipv6Addr, target: Ipv6Addr) -> Option<usize> {
    let group = icmpv6::solicited_node(target);
    let n = icmpv6::write_neighbor_solicit(buf.get_mut(L3..)?, src, group, target, mac)?;
    ethernet::write_header(buf, icmpv6::multicast_mac(group), mac, EtherType::IPV6).ok()?;
    Some(L3 + n)
}

/// Where the L4 header of an IPv4 (any header length) or IPv6 (no extension headers) frame
/// starts, with its L4 protocol.
fn l4_of(frame: &[u8]) -> Option<(usize, IpProtocol)> {
    match EthernetFrame::new_checked(frame).ok()?.ethertype() {
        EtherType::IPV4 => {
            let ip = Ipv4Packet::new_checked(frame.get(L3..)?).ok()?;
            Some((L3 + ip.header_len(), ip.protocol()))
        }
        EtherType::IPV6 => {
            let ip = Ipv6Packet::new_checked(frame.get(L3..)?).ok()?;
            Some((L4_V6, ip.next_header()))
        }
        _ => None,
    }
}

/// Whether `frame` (at least an Ethernet header long) carries IPv6.
#[inline]
pub fn is_ipv6(frame: &[u8]) -> bool {
    EthernetFrame::new_unchecked(frame).ethertype() == EtherType::IPV6
}

/// Swaps the source and destination addresses of the IPv4 or IPv6 header of `frame` (the two
/// addresses are adjacent in both: bytes 12..20 and 8..40).
#[inline]
pub fn swap_ip_addrs(frame: &mut [u8], v6: bool) {
    let r = if v6 {
        L3 + 8..L3 + 40
    } else {
        L3 + 12..L3 + 20
    };
    let (a, b) = frame[r].split_at_mut(if v6 { 16 } else { 4 });
    a.swap_with_slice(b);
}

/// Sets the length fields and fills the IP and TCP checksums of a frame whose TCP segment (from
/// `l4`, header only) was rewritten: `frame[..len]`.
pub(crate) fn finish_tcp_segment(frame: &mut [u8], l4: usize, len: usize) {
    if is_ipv6(frame) {
        Ipv6Packet::new_unchecked(&mut frame[L3..]).set_payload_len((len - l4) as u16);
        fill_l4_checksum6(&mut frame[..len], l4, IpProtocol::TCP);
    } else {
        let (src, dst) = {
            let mut ip = Ipv4Packet::new_unchecked(&mut frame[L3..]);
            ip.set_total_len((len - L3) as u16);
            ip.fill_checksum();
            (ip.src(), ip.dst())
        };
        TcpPacket::new_unchecked(&mut frame[l4..len]).fill_checksum(src, dst);
    }
}

/// Turns a SYN-ACK (as classified by [`classify_client`]) into the client's ACK in place: addresses
/// and ports swapped, seq = their ack, ack = their seq + 1, no options, no payload. Returns the new
/// frame length, or None for a frame that is not a TCP SYN-ACK over IPv4 or IPv6.
pub fn syn_ack_to_ack(frame: &mut [u8]) -> Option<usize> {
    let (l4, proto) = l4_of(frame)?;
    if proto != IpProtocol::TCP {
        return None;
    }
    let (seq, ack) = {
        let t = TcpPacket::new_checked(frame.get(l4..)?).ok()?;
        if !(t.syn() && t.ack()) {
            return None;
        }
        (t.seq(), t.ack_number())
    };
    let len = l4 + tcp::HEADER_LEN;
    EthernetFrame::new_unchecked(&mut *frame).swap_addrs();
    swap_ip_addrs(frame, is_ipv6(frame));
    let mut t = TcpPacket::new_unchecked(&mut frame[l4..len]);
    let (sp, dp) = (t.src_port(), t.dst_port());
    t.set_src_port(dp);
    t.set_dst_port(sp);
    t.set_seq(ack);
    t.set_ack_number(seq.wrapping_add(1));
    t.set_data_offset(5);
    t.set_flags(TcpFlags::ACK);
    t.set_urgent(0);
    finish_tcp_segment(frame, l4, len);
    Some(len)
}

/// Full checksum check of an IPv4 or IPv6 TCP/UDP frame (tests and the smoke run's sanity checks).
pub fn checksums_ok(frame: &[u8]) -> bool {
    if let Some(ip) = frame
        .get(L3..)
        .filter(|_| is_ipv6(frame))
        .and_then(|b| Ipv6Packet::new_checked(b).ok())
    {
        return ipv6::l4_checksum(ip.src(), ip.dst(), ip.next_header(), ip.payload()) == 0;
    }
    let Some(ip) = frame
        .get(L3..)
        .and_then(|b| Ipv4Packet::new_checked(b).ok())
    else {
        return false;
    };
    ip.verify_checksum() && checksum::l4_verifies(ip.src(), ip.dst(), ip.protocol(), ip.payload())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use proptest::prelude::*;

    pub(crate) const EP: Endpoints = Endpoints {
        src_mac: MacAddr([2, 0, 0, 0, 0, 0x10]),
        dst_mac: MacAddr([2, 0, 0, 0, 0, 0x01]),
        vip: Ipv4Addr::new(10, 10, 0, 100),
        vport: 80,
        v6: None,
    };

    fn parse(f: &[u8]) -> SlicedPacket<'_> {
        SlicedPacket::from_ethernet(f).expect("etherparse parses it")
    }

    /// The data frame of client 198.18.3.4:4242, stamped 0x1234_5678_9ABC, send counter 77.
    fn data_frame(t: &Template) -> Vec<u8> {
        let mut buf = vec![0u8; 2048];
        let n = t.write(
            &mut buf,
            Ipv4Addr::new(198, 18, 3, 4),
            4242,
            0x1234_5678_9ABC,
            77,
        );
        buf.truncate(n);
        buf
    }

    #[test]
    fn data_frame_is_64_bytes_on_the_wire_with_valid_checksums() {
        let t = Template::new(Kind::TcpData, &EP, 0);
        assert_eq!(t.len() + 4, 64);
        let buf = data_frame(&t);
        let n = buf.len();
        assert!(checksums_ok(&buf[..n]));
        let p = parse(&buf[..n]);
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not ipv4")
        };
        assert_eq!(ip.header().source_addr(), Ipv4Addr::new(198, 18, 3, 4));
        assert_eq!(ip.header().destination_addr(), EP.vip);
        let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
            panic!("not tcp")
        };
        assert_eq!((tcp.source_port(), tcp.destination_port()), (4242, 80));
        assert!(tcp.psh() && tcp.ack() && !tcp.syn());
        assert_eq!(
            tcp.sequence_number(),
            77,
            "the send counter is the sequence number"
        );
    }

    #[test]
    fn syn_carries_stamp_as_isn_and_mss() {
        let t = Template::new(Kind::Syn, &EP, 64);
        let mut buf = [0u8; 128];
        let n = t.write(
            &mut buf,
            Ipv4Addr::new(198, 18, 0, 1),
            1024,
            0xAB_DEAD_BEEF,
            0,
        );
        assert!(checksums_ok(&buf[..n]));
        let p = parse(&buf[..n]);
        let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
            panic!("not tcp")
        };
        assert!(tcp.syn() && !tcp.ack());
        assert_eq!(tcp.sequence_number(), 0xDEAD_BEEF);
        assert_eq!(tcp.options(), &[2, 4, 0x05, 0xB4]);
    }

    /// A SYN from client 198.18.0.9:2000 stamped 0x77, answered by the reflector (through the
    /// gateway, or testpmd), classified, and turned into the handshake's ACK: checked with
    /// `checksums`, then by etherparse. Returns the ACK.
    fn handshake(ep: &Endpoints, checksums: fn(&[u8]) -> bool) -> Vec<u8> {
        let syn = Template::new(Kind::Syn, ep, 64);
        let mut f = [0u8; 160];
        let n = syn.write(&mut f, Ipv4Addr::new(198, 18, 0, 9), 2000, 0x77, 0);
        assert!(checksums(&f[..n]));
        let n = crate::reflect::reflect(&mut f[..n])
            .tx_len()
            .expect("SYN gets a SYN-ACK");
        assert!(checksums(&f[..n]));
        assert_eq!(
            classify_client(&f[..n]),
            ClientRx::SynAck {
                ip: Ipv4Addr::new(198, 18, 0, 9),
                port: 2000,
                isn_stamp: 0x77
            }
        );
        let n = syn_ack_to_ack(&mut f[..n]).unwrap();
        assert!(checksums(&f[..n]));
        let p = parse(&f[..n]);
        let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
            panic!("not tcp")
        };
        assert!(tcp.ack() && !tcp.syn());
        assert_eq!(tcp.sequence_number(), 0x78);
        assert_eq!(tcp.acknowledgment_number(), SERVER_ISN.wrapping_add(1));
        assert_eq!((tcp.source_port(), tcp.destination_port()), (2000, 80));
        assert_eq!(EthernetFrame::new_unchecked(&f[..n]).dst(), ep.dst_mac);
        f[..n].to_vec()
    }

    #[test]
    fn syn_ack_becomes_the_handshake_ack() {
        let ack = handshake(&EP, checksums_ok);
        let p = parse(&ack);
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not ipv4")
        };
        assert_eq!(ip.header().destination_addr(), EP.vip);
    }

    #[test]
    fn arp_is_classified() {
        let mut f = [0u8; 60];
        gateway::wire::arp::write_request(
            &mut f,
            EP.src_mac,
            Ipv4Addr::new(10, 10, 0, 2),
            Ipv4Addr::new(10, 10, 0, 1),
        )
        .unwrap();
        assert_eq!(
            classify_client(&f),
            ClientRx::ArpRequest {
                target: Ipv4Addr::new(10, 10, 0, 1)
            }
        );
        gateway::wire::arp::make_reply_in_place(&mut f, EP.dst_mac).unwrap();
        assert_eq!(
            classify_client(&f),
            ClientRx::ArpReply {
                sender: Ipv4Addr::new(10, 10, 0, 1),
                mac: EP.dst_mac
            }
        );
    }

    pub(crate) const EP6: Endpoints = Endpoints {
        v6: Some(V6Endpoints {
            vip: Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 0x100),
            client_prefix: Ipv6Addr::new(0x2001, 0xdb8, 0xc6, 0, 0, 0, 0, 0),
        }),
        ..EP
    };

    /// etherparse's own TCP or UDP checksum of an IPv6 frame, and whether the frame carries it.
    fn etherparse_checksum6_matches(f: &[u8]) -> bool {
        let p = parse(f);
        let Some(NetSlice::Ipv6(ip)) = &p.net else {
            return false;
        };
        let (s, d) = (ip.header().source(), ip.header().destination());
        match &p.transport {
            Some(TransportSlice::Tcp(t)) => {
                t.to_header().calc_checksum_ipv6_raw(s, d, t.payload()).ok() == Some(t.checksum())
            }
            Some(TransportSlice::Udp(u)) => {
                u.to_header().calc_checksum_ipv6_raw(s, d, u.payload()).ok() == Some(u.checksum())
            }
            _ => false,
        }
    }

    #[test]
    fn ipv6_data_frame_carries_the_client_address_and_is_20_bytes_longer() {
        let t = Template::new(Kind::TcpData, &EP6, 0);
        assert_eq!(t.len(), Template::new(Kind::TcpData, &EP, 0).len() + 20);
        let buf = data_frame(&t);
        let n = buf.len();
        assert!(etherparse_checksum6_matches(&buf[..n]));
        let p = parse(&buf[..n]);
        let Some(NetSlice::Ipv6(ip)) = &p.net else {
            panic!("not ipv6")
        };
        assert_eq!(
            ip.header().source_addr(),
            "2001:db8:c6::c612:304".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(ip.header().destination_addr(), EP6.v6.unwrap().vip);
        assert_eq!(ip.header().payload_length() as usize, n - L4_V6);
    }

    #[test]
    fn ipv6_handshake_round_trip() {
        let ack = handshake(&EP6, etherparse_checksum6_matches);
        let p = parse(&ack);
        let Some(NetSlice::Ipv6(ip)) = &p.net else {
            panic!("not ipv6")
        };
        assert_eq!(ip.header().destination_addr(), EP6.v6.unwrap().vip);
        assert_eq!(ip.header().payload_length(), 20);
    }

    #[test]
    fn neighbour_solicitations_are_answered_unless_for_the_gateway() {
        let me = MacAddr([2, 0, 0, 0, 0, 0x33]);
        let gw: Ipv6Addr = "2001:db8:20::1".parse().unwrap();
        let rs: Ipv6Addr = "2001:db8:20::11".parse().unwrap();
        let mut f = [0u8; 128];
        // The gateway asks for a real server: answered with our MAC, to the gateway.
        let n = write_ns(&mut f, EP.dst_mac, gw, rs).unwrap();
        assert_eq!(classify_client(&f[..n]), ClientRx::NdSolicit { target: rs });
        let n = answer_ns(&mut f[..n], me, Some(gw)).expect("answered");
        let eth = EthernetFrame::new_checked(&f[..n]).unwrap();
        assert_eq!((eth.dst(), eth.src()), (EP.dst_mac, me));
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!((ip.src(), ip.dst()), (rs, gw));
        let m = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(m.msg_type(), Icmpv6Type::NEIGHBOR_ADVERT);
        assert!(m.verify_checksum(rs, gw));
        assert_eq!(m.nd_target(), rs);
        assert_eq!(
            m.nd_link_addr(icmpv6::nd_option::TARGET_LINK_ADDR),
            Ok(Some(me))
        );
        // Our own solicitation of the gateway is not answered by us.
        let n = write_ns(&mut f, me, rs, gw).unwrap();
        assert_eq!(answer_ns(&mut f[..n], me, Some(gw)), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// IPv6: the patched checksums are the ones etherparse computes, every kind and size.
        #[test]
        fn patched_checksums_verify_ipv6(ip in any::<u32>(), port in any::<u16>(),
                                         tsc in any::<u64>(), size in 0usize..1600, k in 0u8..3) {
            let kind = [Kind::Syn, Kind::TcpData, Kind::Udp][k as usize];
            let t = Template::new(kind, &EP6, size);
            let mut buf = vec![0u8; 2048];
            let n = t.write(&mut buf, Ipv4Addr::from(ip), port, tsc, 0);
            prop_assert!(checksums_ok(&buf[..n]));
            prop_assert!(etherparse_checksum6_matches(&buf[..n]));
        }

        /// Incremental patching gives the checksums a full computation gives, for every kind and size.
        #[test]
        fn patched_checksums_verify(ip in any::<u32>(), port in any::<u16>(), tsc in any::<u64>(),
                                    size in 0usize..1600, k in 0u8..3) {
            let kind = [Kind::Syn, Kind::TcpData, Kind::Udp][k as usize];
            let t = Template::new(kind, &EP, size);
            let mut buf = vec![0u8; 2048];
            let n = t.write(&mut buf, Ipv4Addr::from(ip), port, tsc, 0);
            prop_assert!(checksums_ok(&buf[..n]));
            prop_assert!(parse(&buf[..n]).transport.is_some());
        }
    }
}

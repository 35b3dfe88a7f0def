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

use gateway::wire::checksum::{self, Delta};
use gateway::wire::{ethernet, ipv4, tcp, udp};
use gateway::wire::{
    EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv4Repr, MacAddr, TcpFlags, TcpPacket,
};
use std::net::Ipv4Addr;

/// Where the IPv4 header starts (no VLAN).
pub const L3: usize = ethernet::HEADER_LEN;
/// Where the L4 header starts in the frames this crate builds (no IP options).
pub const L4: usize = L3 + ipv4::HEADER_LEN;
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
}

/// A prebuilt frame plus the checksums it was built with; `write` patches a copy.
#[derive(Debug, Clone)]
pub struct Template {
    kind: Kind,
    frame: Vec<u8>,
    ip_csum: u16,
    l4_csum: u16,
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
        let min = match kind {
            Kind::Syn => L4 + l4_hdr,
            Kind::TcpData => MIN_TCP_DATA_FRAME,
            Kind::Udp => MIN_UDP_FRAME,
        };
        let len = if kind == Kind::Syn {
            min
        } else {
            size.clamp(min, 1514)
        };
        let mut f = vec![0u8; len];
        let ok = ethernet::write_header(&mut f, ep.dst_mac, ep.src_mac, EtherType::IPV4).is_ok();
        debug_assert!(ok);
        let protocol = if kind == Kind::Udp {
            IpProtocol::UDP
        } else {
            IpProtocol::TCP
        };
        let repr = Ipv4Repr {
            src: BASE_IP,
            dst: ep.vip,
            protocol,
            payload_len: (len - L4) as u16,
            ttl: Ipv4Repr::DEFAULT_TTL,
            ident: 0,
            dont_frag: true,
            dscp_ecn: 0,
        };
        let ok = repr.emit(&mut f[L3..]).is_ok();
        debug_assert!(ok);
        match kind {
            Kind::Syn | Kind::TcpData => {
                let mut t = TcpPacket::new_unchecked(&mut f[L4..]);
                t.set_src_port(BASE_PORT);
                t.set_dst_port(ep.vport);
                t.set_window(0xFFFF);
                if kind == Kind::Syn {
                    t.set_data_offset(6);
                    t.set_flags(TcpFlags::SYN);
                    let mss = SYN_MSS.to_be_bytes();
                    f[L4 + tcp::HEADER_LEN..L4 + tcp::HEADER_LEN + 4].copy_from_slice(&[
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
                TcpPacket::new_unchecked(&mut f[L4..]).fill_checksum(BASE_IP, ep.vip);
            }
            Kind::Udp => {
                let mut u = udp::UdpPacket::new_unchecked(&mut f[L4..]);
                u.set_src_port(BASE_PORT);
                u.set_dst_port(ep.vport);
                u.set_len((len - L4) as u16);
                u.fill_checksum(BASE_IP, ep.vip);
            }
        }
        let ip_csum = Ipv4Packet::new_unchecked(&f[L3..]).checksum();
        let l4_csum =
            u16::from_be_bytes([f[L4 + l4_csum_off(kind)], f[L4 + l4_csum_off(kind) + 1]]);
        Template {
            kind,
            frame: f,
            ip_csum,
            l4_csum,
            stamp_at: L4 + l4_hdr,
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
        f[L3 + 12..L3 + 16].copy_from_slice(&ip.octets());
        let ip_csum = Delta::new()
            .dword(u32::from(BASE_IP), ip32)
            .apply(self.ip_csum);
        f[L3 + 10..L3 + 12].copy_from_slice(&ip_csum.to_be_bytes());
        f[L4..L4 + 2].copy_from_slice(&port.to_be_bytes());
        let d = Delta::new()
            .dword(u32::from(BASE_IP), ip32)
            .word(BASE_PORT, port);
        let l4 = match self.kind {
            Kind::Syn => {
                let isn = tsc as u32;
                f[L4 + 4..L4 + 8].copy_from_slice(&isn.to_be_bytes());
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
                    f[L4 + 4..L4 + 8].copy_from_slice(&seq.to_be_bytes());
                    d.apply(self.l4_csum)
                }
            }
        };
        let c = L4 + l4_csum_off(self.kind);
        f[c..c + 2].copy_from_slice(&l4.to_be_bytes());
        n
    }
}

fn l4_csum_off(kind: Kind) -> usize {
    match kind {
        Kind::Udp => 6,
        _ => tcp::CHECKSUM_OFFSET,
    }
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
    /// Anything else (RSTs, ICMP, malformed).
    Other,
}

/// Classifies a frame received on the client side.
pub fn classify_client(frame: &[u8]) -> ClientRx {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return ClientRx::Other;
    };
    match eth.ethertype() {
        EtherType::ARP => return classify_arp(eth.payload()),
        EtherType::IPV4 => {}
        _ => return ClientRx::Other,
    }
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
        return ClientRx::Other;
    };
    let dst = ip.dst();
    match ip.protocol() {
        IpProtocol::TCP => {
            let Ok(t) = TcpPacket::new_checked(ip.payload()) else {
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
            let Ok(u) = udp::UdpPacket::new_checked(ip.payload()) else {
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

/// Turns a SYN-ACK (as classified by [`classify_client`]) into the client's ACK in place: addresses
/// and ports swapped, seq = their ack, ack = their seq + 1, no options, no payload. Returns the new
/// frame length, or None for a frame that is not a TCP/IPv4 SYN-ACK.
pub fn syn_ack_to_ack(frame: &mut [u8]) -> Option<usize> {
    let ihl = Ipv4Packet::new_checked(frame.get(L3..)?).ok()?.header_len();
    let l4 = L3 + ihl;
    let (seq, ack) = {
        let t = TcpPacket::new_checked(frame.get(l4..)?).ok()?;
        if !(t.syn() && t.ack()) {
            return None;
        }
        (t.seq(), t.ack_number())
    };
    let len = l4 + tcp::HEADER_LEN;
    EthernetFrame::new_unchecked(&mut *frame).swap_addrs();
    let (src, dst) = {
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[L3..]);
        let (s, d) = (ip.src(), ip.dst());
        ip.set_src(d);
        ip.set_dst(s);
        ip.set_total_len((len - L3) as u16);
        ip.fill_checksum();
        (d, s)
    };
    let mut t = TcpPacket::new_unchecked(&mut frame[l4..len]);
    let (sp, dp) = (t.src_port(), t.dst_port());
    t.set_src_port(dp);
    t.set_dst_port(sp);
    t.set_seq(ack);
    t.set_ack_number(seq.wrapping_add(1));
    t.set_data_offset(5);
    t.set_flags(TcpFlags::ACK);
    t.set_urgent(0);
    t.fill_checksum(src, dst);
    Some(len)
}

/// Full checksum check of an IPv4 TCP/UDP frame (tests and the smoke run's sanity checks).
pub fn checksums_ok(frame: &[u8]) -> bool {
    let Some(ip) = frame
        .get(L3..)
        .and_then(|b| Ipv4Packet::new_checked(b).ok())
    else {
        return false;
    };
    ip.verify_checksum() && checksum::l4_verifies(ip.src(), ip.dst(), ip.protocol(), ip.payload())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use proptest::prelude::*;

    pub(crate) const EP: Endpoints = Endpoints {
        src_mac: MacAddr([2, 0, 0, 0, 0, 0x10]),
        dst_mac: MacAddr([2, 0, 0, 0, 0, 0x01]),
        vip: Ipv4Addr::new(10, 10, 0, 100),
        vport: 80,
    };

    fn parse(f: &[u8]) -> SlicedPacket<'_> {
        SlicedPacket::from_ethernet(f).expect("etherparse parses it")
    }

    #[test]
    fn data_frame_is_64_bytes_on_the_wire_with_valid_checksums() {
        let t = Template::new(Kind::TcpData, &EP, 0);
        assert_eq!(t.len() + 4, 64);
        let mut buf = [0u8; 2048];
        let n = t.write(
            &mut buf,
            Ipv4Addr::new(198, 18, 3, 4),
            4242,
            0x1234_5678_9ABC,
            77,
        );
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

    #[test]
    fn syn_ack_becomes_the_handshake_ack() {
        // A SYN-ACK from the VIP as the reflector (through the gateway) would send it.
        let syn = Template::new(Kind::Syn, &EP, 64);
        let mut f = [0u8; 128];
        let n = syn.write(&mut f, Ipv4Addr::new(198, 18, 0, 9), 2000, 0x77, 0);
        let n = crate::reflect::reflect(&mut f[..n])
            .tx_len()
            .expect("SYN gets a SYN-ACK");
        assert_eq!(
            classify_client(&f[..n]),
            ClientRx::SynAck {
                ip: Ipv4Addr::new(198, 18, 0, 9),
                port: 2000,
                isn_stamp: 0x77
            }
        );
        let n = syn_ack_to_ack(&mut f[..n]).unwrap();
        assert!(checksums_ok(&f[..n]));
        let p = parse(&f[..n]);
        let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
            panic!("not tcp")
        };
        assert!(tcp.ack() && !tcp.syn());
        assert_eq!(tcp.sequence_number(), 0x78);
        assert_eq!(tcp.acknowledgment_number(), SERVER_ISN.wrapping_add(1));
        assert_eq!((tcp.source_port(), tcp.destination_port()), (2000, 80));
        assert_eq!(EthernetFrame::new_unchecked(&f[..n]).dst(), EP.dst_mac);
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
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

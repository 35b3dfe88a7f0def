//! The reflector: plays every real server behind the gateway, statelessly, in place on the received
//! frame, so a FullNAT round trip costs the generator no allocation.
//!
//! - SYN -> SYN-ACK (RFC 9293 3.5: seq = our ISN, ack = their seq + 1), options dropped;
//! - TCP segment with data -> the same data back (seq = their ack, ack = their seq + length);
//! - UDP datagram -> the same datagram back;
//! - everything else (pure ACKs, FIN, RST, ICMP) -> consumed without answer.
//!
//! Swapping source and destination addresses and ports leaves every checksum unchanged (the one's
//! complement sum does not depend on the order of its terms), so an echo only pays for the changed
//! sequence numbers (RFC 1624). It does not care whom a frame is addressed to: behind testpmd it
//! answers frames sent to the VIP, behind the gateway frames sent to real servers from LIPs.
//! IPv4 and IPv6 (no extension headers) alike: only where the addresses and the L4 header sit
//! differs.

use crate::frame::{finish_tcp_segment, swap_ip_addrs, SERVER_ISN};
use gateway::wire::checksum::Delta;
use gateway::wire::ipv6::Ipv6Packet;
use gateway::wire::{tcp, EtherType, EthernetFrame, IpProtocol, Ipv4Packet, TcpFlags, TcpPacket};

/// What to do with a frame after [`reflect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reflect {
    /// Send it back; the frame now has this length.
    Tx(usize),
    /// Nothing to answer (free it).
    Drop,
}

impl Reflect {
    /// The frame length to send, if anything is to be sent.
    pub fn tx_len(self) -> Option<usize> {
        match self {
            Reflect::Tx(n) => Some(n),
            Reflect::Drop => None,
        }
    }
}

/// Answers an IPv4 or IPv6 TCP/UDP frame in place (see the module docs).
#[inline]
pub fn reflect(frame: &mut [u8]) -> Reflect {
    let Ok(eth) = EthernetFrame::new_checked(&*frame) else {
        return Reflect::Drop;
    };
    const L3: usize = crate::frame::L3;
    let (l4, total, proto) = match eth.ethertype() {
        EtherType::IPV4 => {
            let Ok(ip) = Ipv4Packet::new_checked(&frame[L3..]) else {
                return Reflect::Drop;
            };
            if ip.is_fragment() {
                return Reflect::Drop;
            }
            (
                L3 + ip.header_len(),
                L3 + ip.total_len() as usize,
                ip.protocol(),
            )
        }
        EtherType::IPV6 => {
            let Ok(ip) = Ipv6Packet::new_checked(&frame[L3..]) else {
                return Reflect::Drop;
            };
            (
                crate::frame::L4_V6,
                crate::frame::L4_V6 + ip.payload_len() as usize,
                ip.next_header(),
            )
        }
        _ => return Reflect::Drop,
    };
    let Some(frame) = frame.get_mut(..total) else {
        return Reflect::Drop;
    };
    match proto {
        IpProtocol::TCP => {
            let Ok(t) = TcpPacket::new_checked(&frame[l4..]) else {
                return Reflect::Drop;
            };
            let (flags, seq, ack, data) = (t.flags(), t.seq(), t.ack_number(), t.payload().len());
            if flags.rst() || flags.fin() {
                return Reflect::Drop;
            }
            if flags.syn() && !flags.ack() {
                return syn_ack(frame, l4, seq);
            }
            if data == 0 {
                return Reflect::Drop;
            }
            swap(frame, l4);
            let (new_seq, new_ack) = (ack, seq.wrapping_add(data as u32));
            let mut t = TcpPacket::new_unchecked(&mut frame[l4..]);
            let c = Delta::new()
                .dword(seq, new_seq)
                .dword(ack, new_ack)
                .apply(t.checksum());
            t.set_seq(new_seq);
            t.set_ack_number(new_ack);
            t.set_checksum(c);
            Reflect::Tx(total)
        }
        IpProtocol::UDP => {
            if frame.len() < l4 + 8 {
                return Reflect::Drop;
            }
            swap(frame, l4);
            Reflect::Tx(total)
        }
        _ => Reflect::Drop,
    }
}

/// Swaps MACs, IP addresses and L4 ports (checksums stay valid).
#[inline]
fn swap(frame: &mut [u8], l4: usize) {
    EthernetFrame::new_unchecked(&mut *frame).swap_addrs();
    swap_ip_addrs(frame, crate::frame::is_ipv6(frame));
    let p = &mut frame[l4..l4 + 4];
    let (a, b) = p.split_at_mut(2);
    a.swap_with_slice(b);
}

/// SYN -> SYN-ACK without options (the rare packet: full checksums are fine here).
fn syn_ack(frame: &mut [u8], l4: usize, seq: u32) -> Reflect {
    let len = l4 + tcp::HEADER_LEN;
    swap(frame, l4);
    let mut t = TcpPacket::new_unchecked(&mut frame[l4..len]);
    t.set_seq(SERVER_ISN);
    t.set_ack_number(seq.wrapping_add(1));
    t.set_data_offset(5);
    t.set_flags(TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0));
    t.set_window(0xFFFF);
    t.set_urgent(0);
    finish_tcp_segment(frame, l4, len);
    Reflect::Tx(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{checksums_ok, Endpoints, Kind, Template};
    use gateway::wire::MacAddr;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    const EP: Endpoints = Endpoints {
        src_mac: MacAddr([2, 0, 0, 0, 0, 0x10]),
        dst_mac: MacAddr([2, 0, 0, 0, 0, 0x01]),
        vip: Ipv4Addr::new(10, 20, 0, 11),
        vport: 8080,
        v6: None,
    };
    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 200);

    fn tcp_of(f: &[u8]) -> TcpPacket<&[u8]> {
        TcpPacket::new_checked(&f[crate::frame::L4..]).unwrap()
    }

    #[test]
    fn syn_gets_syn_ack_with_isn_and_their_seq_plus_one() {
        let mut f = [0u8; 128];
        let n = Template::new(Kind::Syn, &EP, 0).write(&mut f, CLIENT, 5000, 41, 0);
        let n = reflect(&mut f[..n]).tx_len().unwrap();
        assert!(checksums_ok(&f[..n]));
        let t = tcp_of(&f[..n]);
        assert!(t.syn() && t.ack());
        assert_eq!((t.seq(), t.ack_number()), (SERVER_ISN, 42));
        assert_eq!((t.src_port(), t.dst_port()), (8080, 5000));
        assert_eq!(t.header_len(), 20);
        let ip = Ipv4Packet::new_checked(&f[crate::frame::L3..n]).unwrap();
        assert_eq!((ip.src(), ip.dst()), (EP.vip, CLIENT));
        assert_eq!(EthernetFrame::new_unchecked(&f[..]).dst(), EP.src_mac);
    }

    #[test]
    fn data_is_echoed_with_acknowledgment() {
        let mut f = [0u8; 256];
        let n = Template::new(Kind::TcpData, &EP, 200).write(&mut f, CLIENT, 5000, 0xAB_CDEF, 9);
        let before = f[crate::frame::L4 + 20..n].to_vec();
        let len = n - crate::frame::L4 - 20;
        assert_eq!(reflect(&mut f[..n]), Reflect::Tx(n));
        assert!(checksums_ok(&f[..n]));
        let t = tcp_of(&f[..n]);
        assert_eq!(t.seq(), SERVER_ISN.wrapping_add(1));
        assert_eq!(
            t.ack_number(),
            9 + len as u32,
            "their counter plus the length"
        );
        assert_eq!(
            t.payload(),
            &before[..],
            "payload (and its timestamp) comes back unchanged"
        );
        assert_eq!(
            crate::frame::classify_client(&f[..n]),
            crate::frame::ClientRx::Echo {
                ip: CLIENT,
                port: 5000,
                stamp: 0xAB_CDEF,
                seq: 9
            },
            "the client side reads back its stamp and counter"
        );
    }

    #[test]
    fn pure_ack_and_rst_are_consumed() {
        let mut f = [0u8; 128];
        let n = Template::new(Kind::Syn, &EP, 0).write(&mut f, CLIENT, 5000, 1, 0);
        let n = reflect(&mut f[..n]).tx_len().unwrap();
        let n = crate::frame::syn_ack_to_ack(&mut f[..n]).unwrap();
        assert_eq!(
            reflect(&mut f[..n]),
            Reflect::Drop,
            "the handshake's ACK has no answer"
        );
        let mut t = TcpPacket::new_unchecked(&mut f[crate::frame::L4..n]);
        t.set_flags(TcpFlags::RST);
        assert_eq!(reflect(&mut f[..n]), Reflect::Drop);
        assert_eq!(reflect(&mut [0u8; 10]), Reflect::Drop, "runt");
    }

    #[test]
    fn ethernet_padding_is_not_echoed() {
        // A 58-byte SYN padded to the 60-byte minimum: the SYN-ACK is built from the IP length.
        let mut f = [0u8; 60];
        let n = Template::new(Kind::Syn, &EP, 0).write(&mut f, CLIENT, 5000, 1, 0);
        assert_eq!(n, 58);
        let n = reflect(&mut f).tx_len().unwrap();
        assert_eq!(n, 54);
        assert!(checksums_ok(&f[..n]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// IPv6: an echo keeps its checksums, goes back to the client it came from, and a second
        /// reflection restores the frame.
        #[test]
        fn ipv6_echo_keeps_checksums(ip in any::<u32>(), port in any::<u16>(), tsc in any::<u64>(),
                                     size in 0usize..1500, udp in any::<bool>()) {
            let kind = if udp { Kind::Udp } else { Kind::TcpData };
            let ep = crate::frame::tests::EP6;
            let mut f = vec![0u8; 2048];
            let n = Template::new(kind, &ep, size).write(&mut f, Ipv4Addr::from(ip), port, tsc, 3);
            let orig = f[..n].to_vec();
            prop_assert_eq!(reflect(&mut f[..n]), Reflect::Tx(n));
            prop_assert!(checksums_ok(&f[..n]));
            let ip6 = Ipv6Packet::new_checked(&f[crate::frame::L3..n]).unwrap();
            prop_assert_eq!(ip6.src(), ep.v6.unwrap().vip);
            prop_assert_eq!(ip6.dst(), crate::frame::client6(ep.v6.unwrap().client_prefix,
                                                              Ipv4Addr::from(ip)));
            prop_assert_eq!(crate::frame::classify_client(&f[..n]), crate::frame::ClientRx::Echo {
                ip: Ipv4Addr::from(ip), port, stamp: tsc & 0xFFFF_FFFF_FFFF, seq: 3 });
            prop_assert_eq!(reflect(&mut f[..n]), Reflect::Tx(n));
            if udp {
                prop_assert_eq!(&f[..n], &orig[..]);
            } else {
                prop_assert_eq!(&f[crate::frame::L4_V6 + 20..n],
                                &orig[crate::frame::L4_V6 + 20..]);
            }
        }

        /// Echoes keep checksums valid, twice reflected is the original (addresses and payload).
        #[test]
        fn echo_keeps_checksums(ip in any::<u32>(), port in any::<u16>(), tsc in any::<u64>(),
                                size in 0usize..1500, udp in any::<bool>()) {
            let kind = if udp { Kind::Udp } else { Kind::TcpData };
            let mut f = vec![0u8; 2048];
            let n = Template::new(kind, &EP, size).write(&mut f, Ipv4Addr::from(ip), port, tsc, 0);
            let orig = f[..n].to_vec();
            prop_assert_eq!(reflect(&mut f[..n]), Reflect::Tx(n));
            prop_assert!(checksums_ok(&f[..n]));
            let echo = crate::frame::classify_client(&f[..n]);
            prop_assert_eq!(echo, crate::frame::ClientRx::Echo {
                ip: Ipv4Addr::from(ip), port, stamp: tsc & 0xFFFF_FFFF_FFFF, seq: 0 });
            prop_assert_eq!(reflect(&mut f[..n]), Reflect::Tx(n));
            if udp {
                prop_assert_eq!(&f[..n], &orig[..]);
            } else {
                prop_assert_eq!(&f[crate::frame::L4 + 20..n], &orig[crate::frame::L4 + 20..]);
            }
        }
    }
}

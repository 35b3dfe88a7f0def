//! TUN (IP tunnelling, `ipvsadm -i`): the client's IP packet, untouched, is wrapped in an outer IPv4
//! header to the real server (IP in IP, RFC 2003, protocol 4). The real server decapsulates, finds
//! the VIP on one of its own devices and replies to the client directly; as with DR the gateway sees
//! only the client side.
//!
//! The outer source is one of the gateway's addresses chosen per flow: the service's local
//! addresses when it has some (by a hash of the client tuple), else the output port's address. A
//! real server's NIC hashes the outer header only, so different outer sources let it spread flows
//! over its queues (Katran does the same with a per-flow source).
//!
//! Outer header fields (RFC 2003 3.1): TOS copied from the inner header, DF copied (the inner DF
//! MUST be copied), TTL 64, identification copied from the inner header (unique per sender as the
//! sender chose it; the outer header is never fragmented here anyway). When the wrapped packet would
//! exceed the output MTU: with DF set the client gets ICMP fragmentation-needed (RFC 1191) from the
//! VIP with MTU - 20, and the packet is dropped; without DF it is dropped too (IPVS would fragment
//! the outer packet; this gateway does not fragment, and clients doing path MTU discovery set DF).

use crate::conn::Tuple;
use crate::net::L3;
use crate::packet::PacketBuf;
use crate::packet::Verdict;
use crate::stats::Drop;
use crate::wire::{icmp, ipv4, IpProtocol, Ipv4Packet, Ipv4Repr};
use std::net::Ipv4Addr;

/// The outer header's length (no options).
pub const OVERHEAD: usize = ipv4::HEADER_LEN;
/// The output MTU assumed for encapsulated packets (Ethernet's).
pub const DEFAULT_MTU: u16 = 1500;

/// What happened to a packet handed to [`encapsulate`], for the caller's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Too big with DF: ICMP fragmentation-needed generated (or not, if the client's MAC is unknown).
    FragNeeded {
        icmp_sent: bool,
    },
    TooBig,
    NoRoom,
}

/// A per-flow hash of the client tuple (stable for the life of the connection).
#[inline]
pub fn flow_hash(t: &Tuple) -> u32 {
    let a = (u64::from(t.src) << 32) | u64::from(t.dst);
    let b = (u64::from(t.sport) << 16) | u64::from(t.dport) | (u64::from(t.proto) << 32);
    let x = (a ^ b.rotate_left(17)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 32) as u32
}

/// The outer source for a flow toward `rip`: one of `lips` by `flow_hash`, else the address of the
/// port the real server is reached by.
#[inline]
pub fn outer_source<B>(
    l3: &L3<B>,
    lips: &[Ipv4Addr],
    client: &Tuple,
    rip: Ipv4Addr,
) -> Option<Ipv4Addr> {
    if !lips.is_empty() {
        let i = ((u64::from(flow_hash(client)) * lips.len() as u64) >> 32) as usize;
        return lips.get(i).copied();
    }
    let hop = l3.topo().routes.lookup(rip)?;
    l3.topo().source_for(hop.port, rip)
}

/// Wraps the IP packet at `pkt[l3_off..]` (trimmed to its total length by the caller) in an outer
/// header `src -> rip` and sends it on; `vip` is the source of a fragmentation-needed error. The
/// Ethernet header moves to the front of the headroom the outer header is opened in.
// Out of line whatever the codegen units decide (TUN services only): inlined, it
// bloated the SYN path's code (perf/RESULTS.md, "New connections a second
// fell with a module split").
#[inline(never)]
pub fn encapsulate<B: PacketBuf>(
    l3: &mut L3<B>,
    mut pkt: B,
    l3_off: usize,
    src: Ipv4Addr,
    rip: Ipv4Addr,
    vip: Ipv4Addr,
    mtu: u16,
) -> (Verdict<B>, Outcome) {
    let (inner_len, tos, ident, df, client) = {
        let ip = Ipv4Packet::new_unchecked(&pkt.data()[l3_off..]);
        (
            usize::from(ip.total_len()),
            ip.dscp_ecn(),
            ip.ident(),
            ip.dont_frag(),
            ip.src(),
        )
    };
    if inner_len + OVERHEAD > usize::from(mtu) {
        if !df {
            return (Verdict::Drop(Drop::NoRoom.into(), pkt), Outcome::TooBig);
        }
        let icmp_sent = {
            let orig = &pkt.data()[l3_off..l3_off + inner_len];
            icmp::may_send_error_about(&Ipv4Packet::new_unchecked(orig))
                && l3.generate_ipv4(client, None, |buf| {
                    icmp::write_frag_needed(buf, vip, mtu - OVERHEAD as u16, orig).ok()
                })
        };
        return (
            Verdict::Drop(Drop::NoRoom.into(), pkt),
            Outcome::FragNeeded { icmp_sent },
        );
    }
    if !pkt.prepend(OVERHEAD) {
        return (Verdict::Drop(Drop::NoRoom.into(), pkt), Outcome::NoRoom);
    }
    let frame = pkt.data_mut();
    frame.copy_within(OVERHEAD..OVERHEAD + l3_off, 0);
    let outer = Ipv4Repr {
        src,
        dst: rip,
        protocol: IpProtocol::IPIP,
        payload_len: inner_len as u16,
        ttl: Ipv4Repr::DEFAULT_TTL,
        ident,
        dont_frag: df,
        dscp_ecn: tos,
    };
    if outer.emit(&mut frame[l3_off..]).is_err() {
        // Not reachable: the length was checked against the MTU above.
        return (Verdict::Drop(Drop::NoRoom.into(), pkt), Outcome::NoRoom);
    }
    (l3.route_out(pkt, rip), Outcome::Sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::Datapath;
    use crate::packet::{RxMeta, VecBuf};
    use crate::testkit::*;
    use etherparse::{Ipv4Header, PacketBuilder};
    use proptest::prelude::*;

    fn config(lips: bool) -> String {
        let t = LAB_CONFIG.replace(
            "[[service.real]]\naddress = \"10.20.0.11\"\n[[service.real]]\naddress = \"10.20.0.12\"\n",
            "[[service.real]]\naddress = \"10.20.0.11\"\nmode = \"tun\"\n[[service.real]]\naddress = \"10.20.0.12\"\nmode = \"tun\"\n",
        );
        if lips {
            t
        } else {
            t.replace("local_addresses = [\"10.20.0.200\", \"10.20.0.201\"]\n", "")
        }
    }

    fn client_frame(sport: u16, payload_len: usize, df: bool, tos: u8) -> Vec<u8> {
        let mut ip = Ipv4Header::new(
            0,
            64,
            etherparse::IpNumber::TCP,
            CLIENT_IP.octets(),
            VIP.octets(),
        )
        .unwrap();
        ip.dont_fragment = df;
        ip.identification = 0x1234;
        ip.dscp = etherparse::Ipv4Dscp::try_new(tos >> 2).unwrap();
        let mut v = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
            .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
            .tcp(sport, 80, 1000, 64240)
            .syn()
            .write(&mut v, &vec![0xAB; payload_len])
            .unwrap();
        v
    }

    /// The outer header a correct encapsulation has, built with etherparse.
    fn outer(inner: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let i = Ipv4Header::from_slice(inner).unwrap().0;
        let mut h = Ipv4Header::new(
            inner.len() as u16,
            64,
            etherparse::IpNumber::IPV4,
            src.octets(),
            dst.octets(),
        )
        .unwrap();
        h.dscp = i.dscp;
        h.ecn = i.ecn;
        h.identification = i.identification;
        h.dont_fragment = i.dont_fragment;
        h.header_checksum = h.calc_header_checksum();
        h.to_bytes().to_vec()
    }

    #[test]
    fn wraps_the_untouched_packet_with_a_lip_as_source() {
        let mut dp: Datapath<VecBuf> = datapath_from(&config(true), 0, 1, 1024);
        let input = client_frame(40000, 0, true, 0x28);
        let out = match dp.process(
            VecBuf::from_frame(&input),
            &RxMeta {
                port: 0,
                ..Default::default()
            },
        ) {
            Verdict::Tx(1, b) => b,
            _ => panic!("not sent to the server port"),
        };
        let f = out.data();
        assert_eq!(&f[0..6], &RS1_MAC.0);
        assert_eq!(&f[6..12], &SERVER_PORT_MAC.0);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        let src = Ipv4Addr::new(f[26], f[27], f[28], f[29]);
        assert!(src == LIP1 || src == LIP2, "outer source {src}");
        assert_eq!(
            &f[14..34],
            &outer(&input[14..], src, RS1)[..],
            "outer header"
        );
        assert_eq!(&f[34..], &input[14..], "inner packet untouched");
        let c = dp.fwd.table().iter().next().unwrap().1;
        assert_eq!(c.reply(), None);
    }

    #[test]
    fn without_lips_the_port_address_is_the_source() {
        let mut dp: Datapath<VecBuf> = datapath_from(&config(false), 0, 1, 1024);
        let input = client_frame(40000, 10, false, 0);
        let Verdict::Tx(1, out) = dp.process(
            VecBuf::from_frame(&input),
            &RxMeta {
                port: 0,
                ..Default::default()
            },
        ) else {
            panic!("not sent");
        };
        assert_eq!(
            &out.data()[14..34],
            &outer(&input[14..], GW_SERVER_IP, RS1)[..]
        );
        assert_eq!(&out.data()[34..], &input[14..]);
    }

    #[test]
    fn too_big_with_df_gets_frag_needed_from_the_vip() {
        let mut dp: Datapath<VecBuf> = datapath_from(&config(true), 0, 1, 1024);
        let meta = RxMeta {
            port: 0,
            ..Default::default()
        };
        // 1480 bytes of IP: exactly fits once wrapped.
        let fits = client_frame(40000, 1480 - 40, true, 0);
        assert!(matches!(
            dp.process(VecBuf::from_frame(&fits), &meta),
            Verdict::Tx(1, _)
        ));
        let big = client_frame(40001, 1481 - 40, true, 0);
        assert!(matches!(
            dp.process(VecBuf::from_frame(&big), &meta),
            Verdict::Drop(..)
        ));
        let mut gen = Vec::new();
        dp.l3
            .take_generated(|g| gen.push((g.port, g.bytes().to_vec())));
        assert_eq!(gen.len(), 1);
        let (port, f) = &gen[0];
        assert_eq!(*port, 0);
        let p = etherparse::SlicedPacket::from_ethernet(f).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!()
        };
        assert_eq!(Ipv4Addr::from(ip.header().source()), VIP);
        assert_eq!(Ipv4Addr::from(ip.header().destination()), CLIENT_IP);
        let Some(etherparse::TransportSlice::Icmpv4(i)) = &p.transport else {
            panic!()
        };
        assert_eq!((i.type_u8(), i.code_u8()), (3, 4));
        assert_eq!(i.bytes5to8(), [0, 0, 0x05, 0xC8], "next-hop MTU 1480");
        assert_eq!(
            i.payload(),
            &big[14..14 + 28],
            "quotes the client's header and 8 bytes"
        );
        assert_eq!(dp.fwd.stats.frag_needed, 1);
        // Without DF: dropped, no ICMP.
        let big = client_frame(40002, 1481 - 40, false, 0);
        assert!(matches!(
            dp.process(VecBuf::from_frame(&big), &meta),
            Verdict::Drop(..)
        ));
        dp.l3.take_generated(|_| panic!("no ICMP without DF"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// Any packet that fits comes out as outer header + the exact input, and the outer header
        /// matches etherparse's encoding of the expected fields (checksum included).
        #[test]
        fn encapsulation_is_exact(sport in 1024u16.., len in 0usize..1400, df in any::<bool>(), tos in any::<u8>()) {
            let mut dp: Datapath<VecBuf> = datapath_from(&config(true), 0, 1, 1024);
            let input = client_frame(sport, len, df, tos & 0xFC);
            let Verdict::Tx(1, out) = dp.process(VecBuf::from_frame(&input), &RxMeta { port: 0, ..Default::default() }) else {
                panic!("not sent");
            };
            let f = out.data();
            let src = Ipv4Addr::new(f[26], f[27], f[28], f[29]);
            let want = outer(&input[14..], src, RS1);
            prop_assert_eq!(&f[14..34], &want[..]);
            prop_assert_eq!(&f[34..], &input[14..]);
        }
    }

    #[test]
    fn flow_hash_spreads_sources() {
        let mut n = [0u32; 2];
        for p in 0..2000u16 {
            let t = Tuple::new(CLIENT_IP, 30000 + p, VIP, 80, 6);
            n[((u64::from(flow_hash(&t)) * 2) >> 32) as usize] += 1;
        }
        assert!(n.iter().all(|&c| c > 800), "{n:?}");
    }
}

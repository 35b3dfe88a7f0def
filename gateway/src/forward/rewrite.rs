//! Address and port rewriting with incremental checksums (RFC 1624), shared by FullNAT and NAT.
//!
//! A rewrite touches the IPv4 header (addresses: header checksum) and the TCP/UDP header (ports,
//! and the addresses through the pseudo-header: L4 checksum). Each change is folded into the existing
//! checksums in a few additions, never a recomputation over the payload.

use crate::wire::checksum::{self, ChecksumChange, Delta};
use crate::wire::{ipv4, tcp, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket};
use std::net::Ipv4Addr;

/// An endpoint: address and port.
pub type Endpoint = (Ipv4Addr, u16);

/// Rewrites the source and destination of the unfragmented TCP or UDP packet whose IPv4 header is at
/// `frame[l3_off..]` and L4 header at `frame[l4_off..]`, patching both checksums. The caller has
/// validated the packet (lengths, protocol); other protocols are left untouched. Always inlined:
/// the established path calls it once a packet, and out of line it costs a call and the spills
/// around it (`forward`'s body has two copies, which tipped the compiler's inlining budget).
#[inline(always)]
pub fn rewrite_l4(frame: &mut [u8], l3_off: usize, l4_off: usize, src: Endpoint, dst: Endpoint) {
    // The fast path's case, a header without options and a TCP header: one length check covers
    // both headers, and on these fixed-size views the compiler drops every per-field bounds
    // check. A UDP datagram whose frame holds 40 bytes from its IP header (data or padding)
    // takes it too: only its 8-byte header's fields are touched.
    const BOTH: usize = ipv4::HEADER_LEN + tcp::HEADER_LEN;
    if l4_off == l3_off + ipv4::HEADER_LEN {
        if let Some(h) = frame
            .get_mut(l3_off..)
            .and_then(<[u8]>::first_chunk_mut::<BOTH>)
        {
            let (ip, l4) = h.split_at_mut(ipv4::HEADER_LEN);
            let proto = Ipv4Packet::new_unchecked(&*ip).protocol();
            return rewrite_headers(ip, l4, proto, src, dst);
        }
    }
    let total_len = usize::from(Ipv4Packet::new_unchecked(&frame[l3_off..]).total_len());
    let end = (l3_off + total_len).min(frame.len());
    let (ip, l4) = frame[..end].split_at_mut(l4_off);
    let ip = &mut ip[l3_off..];
    let proto = Ipv4Packet::new_unchecked(&*ip).protocol();
    rewrite_headers(ip, l4, proto, src, dst)
}

/// [`rewrite_l4`] for a TCP segment whose IPv4 header has no options, on its two headers
/// (`headers`: the IPv4 header's 20 bytes, then the TCP header's), with the checksums' changes
/// known (`deltas`: the IPv4 header's and TCP's, folded): the established hot path's, whose
/// connection keeps them (`ConnOf::rewrite_deltas`). Neither the fields replaced nor the new
/// ones are summed: each checksum takes one 16-bit add, where `rewrite_l4` sums four words and
/// folds twice for each (perf/RESULTS.md). The caller holds the deltas to be those of this
/// rewrite of these headers; the result is then `rewrite_l4`'s, bit for bit (`Folded::apply`).
#[inline(always)]
pub fn rewrite_tcp<C: ChecksumChange>(
    headers: &mut [u8; ipv4::HEADER_LEN + tcp::HEADER_LEN],
    src: Endpoint,
    dst: Endpoint,
    deltas: (C, C),
) {
    let (ip, l4) = headers.split_at_mut(ipv4::HEADER_LEN);
    let mut ip = Ipv4Packet::new_unchecked(ip);
    ip.set_src_ne(u32::from_ne_bytes(src.0.octets()));
    ip.set_dst_ne(u32::from_ne_bytes(dst.0.octets()));
    let c = deltas.0.apply(ip.checksum_ne());
    ip.set_checksum_ne(c);
    set_tcp_ports(l4, (src.1, dst.1), deltas.1);
}

/// Writes the ports `(src, dst)` into the TCP header at the start of `tcp` and updates its
/// checksum by `delta`, the whole change of its pseudo-header and ports, known (a connection's,
/// `ConnOf::rewrite_deltas`): the kept-delta rewrites' last step, IPv4's (`rewrite_tcp`) and
/// IPv6's (`inet6::fullnat::rewrite_known`).
#[inline(always)]
pub fn set_tcp_ports<C: ChecksumChange>(tcp: &mut [u8], (src, dst): (u16, u16), delta: C) {
    let mut t = TcpPacket::new_unchecked(tcp);
    t.set_ports_ne(checksum::ports_ne(src, dst));
    let c = delta.apply(t.checksum_ne());
    t.set_checksum_ne(c);
}

/// [`rewrite_l4`] on the IPv4 header `ip` and the L4 header (and data) `l4` of protocol `proto`
/// that follows it.
///
/// Every value is taken as its bytes lie in memory (`*_ne`): the one's-complement sum of
/// byte-swapped words is the byte-swapped sum (RFC 1071 2(B)), so the checksums come out the same
/// as computed on big-endian values, without a byte swap per field. The two ports are one 32-bit
/// change ([`rewrite_ports`]).
#[inline(always)]
fn rewrite_headers(ip: &mut [u8], l4: &mut [u8], proto: IpProtocol, src: Endpoint, dst: Endpoint) {
    let mut ip = Ipv4Packet::new_unchecked(ip);
    let (new_src, new_dst) = (
        u32::from_ne_bytes(src.0.octets()),
        u32::from_ne_bytes(dst.0.octets()),
    );
    // The addresses are in the IP header and in the L4 pseudo-header: one delta serves both, and
    // each checksum takes all its changes in a single fold (`checksum::Delta`).
    let addrs = Delta::new()
        .dword(ip.src_ne(), new_src)
        .dword(ip.dst_ne(), new_dst);
    ip.set_src_ne(new_src);
    ip.set_dst_ne(new_dst);
    let c = addrs.apply(ip.checksum_ne());
    ip.set_checksum_ne(c);
    rewrite_ports(l4, proto, (src.1, dst.1), addrs, Udp::V4);
}

/// The UDP checksum rule of the IP version a datagram travels in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Udp {
    /// 0 means "no checksum" and stays 0; a computed 0 is sent as 0xFFFF (RFC 768).
    V4,
    /// Never 0: a computed 0 is sent as 0xFFFF (RFC 8200 8.1).
    V6,
}

/// Writes the ports `(src, dst)` into the TCP or UDP header at the start of `l4` and updates its
/// checksum with their change and `addrs`, the change of the addresses its pseudo-header covers
/// (a [`Delta`] of memory-order values, as [`checksum::ne32`] reads them). Other protocols are left
/// untouched. Shared by the IPv4 and IPv6 rewrites.
#[inline(always)]
pub fn rewrite_ports(
    l4: &mut [u8],
    proto: IpProtocol,
    (src, dst): (u16, u16),
    addrs: Delta,
    udp: Udp,
) {
    // Both ports as one 32-bit change, in memory order like everything else in the delta.
    let ports = checksum::ports_ne(src, dst);
    match proto {
        IpProtocol::TCP => {
            let mut t = TcpPacket::new_unchecked(l4);
            let d = addrs.dword(t.ports_ne(), ports);
            t.set_ports_ne(ports);
            let c = d.apply(t.checksum_ne());
            t.set_checksum_ne(c);
        }
        IpProtocol::UDP => {
            let mut u = UdpPacket::new_unchecked(l4);
            let d = addrs.dword(u.ports_ne(), ports);
            u.set_ports_ne(ports);
            // 0 and 0xFFFF, the values the UDP rules test and write, read the same in either
            // byte order.
            let c = match udp {
                Udp::V4 => d.apply_udp(u.checksum_ne()),
                Udp::V6 => d.apply_udp6(u.checksum_ne()),
            };
            u.set_checksum_ne(c);
        }
        _ => {}
    }
}

/// Prepares a rewritten TCP/UDP packet for checksum offload (DPDK's contract for
/// `RTE_MBUF_F_TX_{IP,TCP,UDP}_CKSUM`): IPv4 header checksum zeroed, L4 checksum field holding the
/// folded pseudo-header sum (not complemented). Returns false, changing nothing, for other protocols
/// or a UDP datagram sent without checksum.
pub fn seed_for_offload(frame: &mut [u8], l3_off: usize, l4_off: usize) -> bool {
    let (src, dst, proto, total_len, hl) = {
        let ip = Ipv4Packet::new_unchecked(&frame[l3_off..]);
        (
            ip.src(),
            ip.dst(),
            ip.protocol(),
            ip.total_len(),
            ip.header_len(),
        )
    };
    let field = match checksum::l4_checksum_field(proto) {
        Some(f) if proto == IpProtocol::TCP || proto == IpProtocol::UDP => f,
        _ => return false,
    };
    let at = l4_off + field;
    if proto == IpProtocol::UDP && frame[at] == 0 && frame[at + 1] == 0 {
        return false;
    }
    let l4_len = total_len - hl as u16;
    let seed = checksum::fold(checksum::pseudo_header(src, dst, proto, l4_len));
    frame[at..at + 2].copy_from_slice(&seed.to_be_bytes());
    Ipv4Packet::new_unchecked(&mut frame[l3_off..]).set_checksum(0);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
    use proptest::prelude::*;

    fn frame(tcp: bool, payload: &[u8], udp_csum: bool) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4([192, 0, 2, 7], [10, 10, 0, 100], 64);
        let mut v = Vec::new();
        if tcp {
            b.tcp(40000, 80, 77, 1000)
                .syn()
                .write(&mut v, payload)
                .unwrap();
        } else {
            b.udp(40000, 53).write(&mut v, payload).unwrap();
            if !udp_csum {
                v[14 + 20 + 6] = 0;
                v[14 + 20 + 7] = 0;
            }
        }
        v
    }

    /// etherparse recomputes both checksums from scratch; they must equal what we patched.
    fn assert_checksums_valid(v: &[u8]) {
        let p = SlicedPacket::from_ethernet(v).unwrap();
        let ip = match p.net.unwrap() {
            etherparse::NetSlice::Ipv4(ip) => ip,
            _ => panic!("not ipv4"),
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        match p.transport.unwrap() {
            TransportSlice::Tcp(t) => {
                let want = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
                assert_eq!(t.checksum(), want);
            }
            TransportSlice::Udp(u) => {
                if u.checksum() != 0 {
                    let want = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
                    assert_eq!(u.checksum(), want);
                }
            }
            _ => panic!("unexpected transport"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Out and back: rewriting to (LIP, RIP) then the reply back to (VIP, CIP) keeps valid
        /// checksums at every step, and the reverse rewrite restores the original bytes exactly.
        #[test]
        fn rewrite_out_and_back_restores_and_checksums_hold(
            tcp in any::<bool>(), udp_csum in any::<bool>(),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            lip in any::<u32>(), lport in any::<u16>(), rip in any::<u32>(), rport in any::<u16>())
        {
            let orig = frame(tcp, &payload, udp_csum);
            let mut v = orig.clone();
            rewrite_l4(&mut v, 14, 34, (Ipv4Addr::from(lip), lport), (Ipv4Addr::from(rip), rport));
            assert_checksums_valid(&v);
            let p = SlicedPacket::from_ethernet(&v).unwrap();
            if let Some(etherparse::NetSlice::Ipv4(ip)) = p.net {
                prop_assert_eq!(ip.header().source(), lip.to_be_bytes());
                prop_assert_eq!(ip.header().destination(), rip.to_be_bytes());
            }
            rewrite_l4(&mut v, 14, 34, (Ipv4Addr::new(192, 0, 2, 7), 40000),
                       (Ipv4Addr::new(10, 10, 0, 100), if tcp { 80 } else { 53 }));
            // One's-complement arithmetic has two zeros; compare the checksums as equal sums.
            let fix = |b: &mut Vec<u8>| {
                for at in [24usize, if tcp { 50 } else { 40 }] {
                    if b[at] == 0xFF && b[at + 1] == 0xFF { b[at] = 0; b[at + 1] = 0; }
                }
            };
            let (mut a, mut b) = (orig.clone(), v.clone());
            fix(&mut a); fix(&mut b);
            prop_assert_eq!(a, b);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// A connection's kept deltas (`ConnKey::rewrite_deltas`, from its two tuples) rewrite
        /// a segment of its client's, and (reversed) one of its real server's, to the same
        /// bytes as `rewrite_l4`, which sums the fields it replaces: any checksums, 0xFFFF
        /// among them, and the reply's addresses the client's swapped in some cases (a change
        /// that sums to nothing).
        #[test]
        fn kept_deltas_rewrite_as_the_fields_do(
            cip in any::<u32>(), vip in any::<u32>(), lip in any::<u32>(), rip in any::<u32>(),
            ports in any::<[u16; 4]>(), swap in any::<bool>(),
            csums in prop_oneof![any::<[u16; 2]>(), Just([0xFFFF; 2])],
        ) {
            use crate::conn::{ConnKey, Tuple, PROTO_TCP};
            let (lip, rip) = if swap { (cip, vip) } else { (lip, rip) };
            let client = Tuple::new(cip.into(), ports[0], vip.into(), ports[1], PROTO_TCP);
            let reply = Tuple::new(rip.into(), ports[2], lip.into(), ports[3], PROTO_TCP);
            let (l3, l4) = client.rewrite_deltas(&reply);
            for (from, to, deltas) in [
                (client, reply.reversed(), (l3, l4)),
                (reply, client.reversed(), (l3.reversed(), l4.reversed())),
            ] {
                let mut v = frame(true, b"", true);
                v[26..30].copy_from_slice(&from.src.to_be_bytes());
                v[30..34].copy_from_slice(&from.dst.to_be_bytes());
                v[34..36].copy_from_slice(&from.sport.to_be_bytes());
                v[36..38].copy_from_slice(&from.dport.to_be_bytes());
                v[24..26].copy_from_slice(&csums[0].to_be_bytes());
                v[50..52].copy_from_slice(&csums[1].to_be_bytes());
                let (src, dst) = ((to.src_ip(), to.sport), (to.dst_ip(), to.dport));
                let mut want = v.clone();
                rewrite_l4(&mut want, 14, 34, src, dst);
                let h = (&mut v[14..54]).try_into().unwrap();
                rewrite_tcp(h, src, dst, deltas);
                prop_assert_eq!(v, want);
            }
        }
    }

    #[test]
    fn offload_seed_completes_to_the_real_checksum() {
        let mut v = frame(true, b"hello", true);
        let want = u16::from_be_bytes([v[50], v[51]]);
        assert!(seed_for_offload(&mut v, 14, 34));
        assert_eq!(&v[24..26], &[0, 0], "IP checksum zeroed for the NIC");
        // What the NIC does: fold the seed with the segment (checksum field holds the seed).
        let seg = &v[34..];
        let sum = checksum::sum(seg);
        assert_eq!(!checksum::fold(sum), want);
        let mut u = frame(false, b"x", false);
        assert!(
            !seed_for_offload(&mut u, 14, 34),
            "UDP without checksum stays without"
        );
    }
}

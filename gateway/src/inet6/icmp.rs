//! ICMPv6 errors about IPv6 connections (RFC 4443 3): destination unreachable, packet too big, time
//! exceeded and parameter problem, as IPv4's `forward::fullnat` translates ICMP errors.
//!
//! The error quotes a packet the gateway sent. Found by the quote's reverse in the IPv6 table:
//! - from the server side (to a LIP, quoting LIP:lport -> RIP:rport of a FullNAT connection): to
//!   the client, from the VIP, quoting CIP:cport -> VIP:vport, the client's own packet;
//! - from the client side (to the VIP, quoting VIP:vport -> CIP:cport, a reply the gateway
//!   translated): to the real server from the LIP, quoting RIP:rport -> LIP:lport, the server's own
//!   packet, so a Packet Too Big on the client's path reaches the server that must send smaller
//!   segments (path MTU discovery, RFC 8201); for DR and TUN connections, whose servers answer the
//!   client themselves from the VIP, the error goes to the server unchanged (by MAC, or in the
//!   tunnel), as IPVS passes them on;
//! - NAT: from the client's side to the server (quoting RIP:rport -> CIP:cport, the outer source
//!   kept); from the server's side (an error a NAT server, routing through the gateway, sends
//!   the client about the gateway's packet) to the client from the VIP, as FullNAT's;
//! - NAT64 connections: `nat64` translates between the families.
//!
//! The quote's ports and addresses are rewritten with its TCP or UDP checksum when the quote holds
//! it, and the ICMPv6 checksum recomputed over the whole message (errors are rare and short).
//! An error quoting no connection of this worker goes to the local port's owner when that is
//! another worker, else is dropped as `no_conn`.

use super::{nd, Inet6, Ipv6In};
use crate::conn::{Dir, Tuple6};
use crate::forward::{mode, synproxy, Forwarder};
use crate::net::L3;
use crate::packet::Verdict;
use crate::packet::{PacketBuf, RxMeta};
use crate::stats::Drop;
use crate::wire::checksum::Delta;
use crate::wire::icmpv6::{self, Icmpv6Packet, Icmpv6Type};
use crate::wire::ipv6::{self, Ipv6Packet};
use crate::wire::{ethernet, IpProtocol};
use std::net::Ipv6Addr;

/// Whether an ICMPv6 type is one of the errors translated here.
pub fn is_error(t: u8) -> bool {
    Icmpv6Type(t).is_error()
}

/// The quoted packet of an error: where its TCP or UDP header is, and its 5-tuple.
struct Quote {
    /// Offset of the quoted IPv6 header in the frame.
    ip_off: usize,
    l4_off: usize,
    proto: IpProtocol,
    src: (Ipv6Addr, u16),
    dst: (Ipv6Addr, u16),
}

fn quote_of(frame: &[u8], v: &Ipv6In) -> Option<Quote> {
    let ip_off = v.l4_off + icmpv6::HEADER_LEN;
    let q = frame.get(ip_off..v.end)?;
    if q.len() < ipv6::HEADER_LEN || q[0] >> 4 != 6 {
        return None;
    }
    let ip = Ipv6Packet::new_unchecked(q);
    // The quote is cut short by design (RFC 4443 2.4 (c)): walk what there is of it.
    let upper = ipv6::walk(ip.next_header(), &q[ipv6::HEADER_LEN..]).ok()?;
    if upper.fragment.is_some_and(|f| f.offset != 0)
        || !matches!(upper.proto, IpProtocol::TCP | IpProtocol::UDP)
    {
        return None;
    }
    let l4_off = ip_off + ipv6::HEADER_LEN + upper.offset;
    let p = frame.get(l4_off..l4_off + 4)?;
    Some(Quote {
        ip_off,
        l4_off,
        proto: upper.proto,
        src: (ip.src(), u16::from_be_bytes([p[0], p[1]])),
        dst: (ip.dst(), u16::from_be_bytes([p[2], p[3]])),
    })
}

/// An ICMPv6 error to a VIP (`from_client`) or a LIP.
pub fn error<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    fwd: &mut Forwarder,
    mut pkt: B,
    meta: &RxMeta,
    v: &Ipv6In,
    from_client: bool,
) -> Verdict<B> {
    if v.is_fragment() {
        return Verdict::Drop(Drop::Ipv6Fragment.into(), pkt);
    }
    let m = &pkt.data()[v.l4_off..v.end];
    if !meta.from_peer && !Icmpv6Packet::new_unchecked(m).verify_checksum(v.src, v.dst) {
        return Verdict::Drop(Drop::L4BadChecksum.into(), pkt);
    }
    let Some(q) = quote_of(pkt.data(), v) else {
        return Verdict::Drop(Drop::IcmpUnhandled.into(), pkt);
    };
    // The connection's tuple from the side the error came from is the quote reversed.
    let t = Tuple6::new(q.dst.0, q.dst.1, q.src.0, q.src.1, q.proto.0);
    let want = if from_client {
        Dir::Original
    } else {
        Dir::Reply
    };
    let found = v6.conns.lookup(&t).filter(|&(_, d)| d == want);
    // A parked entry (`service::parked`) no longer stands for a connection.
    let c = found
        .and_then(|(id, _)| v6.conns.get(id).map(|c| *c))
        .filter(|c| !super::service::parked(c));
    if let (Some(c), true) = (c, from_client) {
        if c.mode() == mode::NAT64 {
            if let Some((id, _)) = v6.conns.lookup(&t) {
                return super::nat64::icmp6_error(v6, l3, pkt, v, id);
            }
        }
        if c.mode() == mode::DR || c.mode() == mode::TUN {
            // The real server answered the client itself, from the VIP: an error about its
            // packet (a packet too big on the way) is its to hear, passed on as IPVS does.
            let rip = fwd
                .services()
                .services
                .get(c.svc as usize)
                .and_then(|vs| vs.svc.reals().get(c.rs as usize))
                .map(|r| r.addr);
            let Some(std::net::IpAddr::V6(rip)) = rip else {
                return Verdict::Drop(Drop::NoRealServer.into(), pkt);
            };
            let Some(route) = l3.topo().routes6.lookup(rip).copied() else {
                return Verdict::Drop(Drop::NoRoute.into(), pkt);
            };
            let pkt = if c.mode() == mode::TUN {
                let Some(src) = l3.topo().source6_for(route.port, rip) else {
                    return Verdict::Drop(Drop::NoRoute.into(), pkt);
                };
                match super::common::encapsulate(pkt, src, rip, fwd.mtu()) {
                    Ok(p) => p,
                    Err(p) => return Verdict::Drop(Drop::Ipv6TooBig.into(), p),
                }
            } else {
                pkt
            };
            let verdict = nd::send_to(v6, l3, pkt, route.l2_target(rip), route.port);
            if !matches!(verdict, Verdict::Drop(..)) {
                l3.stats.inet6.icmp_translated += 1;
            }
            return verdict;
        }
    }
    if c.is_none() && from_client {
        // Quoting VIP:vport -> CIP:cport: the connection lives with the owner of its client
        // tuple (`forward::owner`), as every client packet does.
        let (vip, cip) = (q.src, q.dst);
        return match fwd.client_owner_elsewhere6(meta, vip.0, vip.1, q.proto.0, cip.0, cip.1) {
            Some(w) => fwd.hand_client_to(w, pkt),
            None => Verdict::Drop(Drop::NoConn.into(), pkt),
        };
    }
    let Some(c) = c.filter(|c| c.mode() == mode::FULLNAT || c.mode() == mode::NAT) else {
        // Another worker's: a FullNAT one lives with the owner of its local port, a NAT one with
        // the owner of its client (both in the quote's source).
        let layout = fwd.layout();
        let (from, port) = q.src;
        let lip = fwd.services().is_lip6(from);
        let owner = if lip && layout.contains(port) {
            Some(layout.owner_of(port))
        } else if lip {
            None
        } else {
            Some(crate::forward::owner::owner_of_client6(
                from,
                port,
                fwd.n_workers(),
            ))
        };
        match owner {
            Some(w) if !from_client && !meta.from_peer && w != usize::from(l3.worker) => {
                return Verdict::ToWorker(w as u16, pkt)
            }
            _ => return Verdict::Drop(Drop::NoConn.into(), pkt),
        }
    };
    let (client, Some(reply)) = (c.client(), c.reply()) else {
        return Verdict::Drop(Drop::NoConn.into(), pkt);
    };
    // (outer source, outer destination) and the quote's (source, destination) after translation.
    let (outer, quote) = if from_client && c.mode() == mode::NAT {
        // NAT: the server knows the client; the error reaches it from where it came.
        let (rip, cip) = ((reply.src_ip(), reply.sport), (reply.dst_ip(), reply.dport));
        ((v.src, rip.0), (rip, cip))
    } else if from_client {
        let (lip, rip) = ((reply.dst_ip(), reply.dport), (reply.src_ip(), reply.sport));
        ((lip.0, rip.0), (rip, lip))
    } else {
        let (cip, vip) = (
            (client.src_ip(), client.sport),
            (client.dst_ip(), client.dport),
        );
        ((vip.0, cip.0), (cip, vip))
    };
    rewrite_quote(pkt.data_mut(), &q, quote.0, quote.1);
    let adj = found.and_then(|(id, _)| super::proxied::answered_adj(&v6.conns, fwd, id));
    if let (Some(adj), IpProtocol::TCP) = (adj, q.proto) {
        let l4 = &mut pkt.data_mut()[q.l4_off..v.end];
        synproxy::unshift_quote(l4, &adj, from_client);
    }
    {
        let d = pkt.data_mut();
        let mut ip = Ipv6Packet::new_unchecked(&mut d[ethernet::HEADER_LEN..]);
        ip.set_src(outer.0);
        ip.set_dst(outer.1);
        Icmpv6Packet::new_unchecked(&mut d[v.l4_off..v.end]).fill_checksum(outer.0, outer.1);
    }
    let Some(route) = l3.topo().routes6.lookup(outer.1).copied() else {
        return Verdict::Drop(Drop::NoRoute.into(), pkt);
    };
    let verdict = nd::send_to(v6, l3, pkt, route.l2_target(outer.1), route.port);
    if !matches!(verdict, Verdict::Drop(..)) {
        l3.stats.inet6.icmp_translated += 1;
    }
    verdict
}

/// Rewrites the quoted packet to `src` -> `dst`, its TCP or UDP checksum with it when the quote
/// is long enough to hold it.
fn rewrite_quote(frame: &mut [u8], q: &Quote, src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16)) {
    {
        let mut ip = Ipv6Packet::new_unchecked(&mut frame[q.ip_off..]);
        ip.set_src(src.0);
        ip.set_dst(dst.0);
    }
    let l4 = &mut frame[q.l4_off..];
    l4[0..2].copy_from_slice(&src.1.to_be_bytes());
    l4[2..4].copy_from_slice(&dst.1.to_be_bytes());
    let at = if q.proto == IpProtocol::TCP { 16 } else { 6 };
    if let Some(c) = l4.get(at..at + 2) {
        let old = u16::from_be_bytes([c[0], c[1]]);
        let d = Delta::new()
            .addr6(q.src.0, src.0)
            .addr6(q.dst.0, dst.0)
            .word(q.src.1, src.1)
            .word(q.dst.1, dst.1);
        let new = if q.proto == IpProtocol::TCP {
            d.apply(old)
        } else {
            d.apply_udp6(old)
        };
        l4[at..at + 2].copy_from_slice(&new.to_be_bytes());
    }
}

/// A packet too big (RFC 4443 3.2) from the gateway to `client`, quoting as much of the IPv6
/// packet at `frame[ethernet::HEADER_LEN..]` as a generated frame holds, with `mtu`; sent when the
/// client's next hop is resolved (a generated frame waits for nothing).
pub fn packet_too_big<B: PacketBuf>(
    v6: &Inet6<B>,
    l3: &mut L3<B>,
    frame: &[u8],
    from: Ipv6Addr,
    client: Ipv6Addr,
    mtu: u32,
) -> bool {
    let Some(route) = l3.topo().routes6.lookup(client).copied() else {
        return false;
    };
    let Some(mac) = v6.neigh.mac(route.l2_target(client)) else {
        return false;
    };
    let Some(src_mac) = l3.topo().ports.get(route.port as usize).map(|p| p.mac) else {
        return false;
    };
    let quote = &frame[ethernet::HEADER_LEN..];
    let before = l3.stats.generated;
    l3.generate(route.port, |buf| {
        let head = ethernet::HEADER_LEN + ipv6::HEADER_LEN + icmpv6::HEADER_LEN;
        let n = quote.len().min(buf.len().checked_sub(head)?);
        let (eth, rest) = buf.split_at_mut(ethernet::HEADER_LEN);
        ethernet::write_header(eth, mac, src_mac, crate::wire::EtherType::IPV6).ok()?;
        let body = icmpv6::HEADER_LEN + n;
        let mut ip = Ipv6Packet::new_unchecked(&mut rest[..ipv6::HEADER_LEN + body]);
        ip.set_ver_tc_flow(0, 0);
        ip.set_payload_len(body as u16);
        ip.set_next_header(IpProtocol::ICMPV6);
        ip.set_hop_limit(64);
        ip.set_src(from);
        ip.set_dst(client);
        let m = &mut rest[ipv6::HEADER_LEN..ipv6::HEADER_LEN + body];
        m[..icmpv6::HEADER_LEN].fill(0);
        m[0] = Icmpv6Type::PACKET_TOO_BIG.0;
        m[4..8].copy_from_slice(&mtu.to_be_bytes());
        m[icmpv6::HEADER_LEN..].copy_from_slice(&quote[..n]);
        Icmpv6Packet::new_unchecked(m).fill_checksum(from, client);
        Some(head + n)
    });
    l3.stats.generated > before
}

//! NAT64 (issue 17, item 3; DPVS has it): an IPv6 VIP served by IPv4 real servers in FullNAT.
//! The client's CIP6:cport -> VIP6:vport leaves as LIP4:lport -> RIP4:rport, an IPv4 packet
//! translated from the IPv6 one as RFC 7915 5.1 says; the server's replies RIP4:rport ->
//! LIP4:lport come back as VIP6:vport -> CIP6:cport (RFC 7915 4.1).
//!
//! - The connection lives in the IPv6 table: its client tuple is the IPv6 one, its reply tuple the
//!   IPv4 one written as IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, RFC 4291 2.5.5.2). The local
//!   addresses and ports are the IPv4 service pool's (`laddr`): IPv4 replies reach the worker that
//!   owns the port as FullNAT's do, or are handed to it. The datapath hands an IPv4 packet to an
//!   IPv4 local address of an IPv6 service here (`ServiceTable::is_lip64`).
//! - IPv6 -> IPv4: traffic class to TOS, hop limit to TTL, DF set and identification 0 (RFC 6864
//!   4.1: an atomic datagram); a packet with extension headers is not translated (dropped,
//!   `ipv6_bad_extensions`). IPv4 -> IPv6: TOS to traffic class, TTL to hop limit; a packet with
//!   IPv4 options is dropped (`ip_options`). The TCP or UDP checksum follows incrementally (the
//!   pseudo-header changes family, RFC 1624), an IPv4 UDP datagram without a checksum gets a full
//!   one (mandatory in IPv6, RFC 8200 8.1).
//! - MTU: the IPv6 side carries 20 more header bytes, so the server's SYN-ACK has its MSS clamped
//!   to the port's MTU less 60 (IPv6 and TCP headers), and the client's address travels in the
//!   IPv6 TOA (20 bytes) on the SYN to the IPv4 server.
//!
//! - ICMP errors cross the families too (RFC 7915 4.2, 5.2; `icmp4_error`, `icmp6_error`): a
//!   fragmentation-needed from the IPv4 side reaches the client as a packet too big 20 bytes
//!   larger (at least 1280), a packet too big from the IPv6 side the server as a
//!   fragmentation-needed 20 bytes smaller.
//!
//! Not translated: fragments (dropped), ICMP errors other than unreachable, too big and time
//! exceeded.

use super::{nd, Inet6, Ipv6In};
use crate::conn::{ConnId, Dir, Ticks, Tuple6};
use crate::forward::Forwarder;
use crate::net::L3;
use crate::packet::{Ipv4In, Verdict};
use crate::packet::{PacketBuf, RxMeta};
use crate::stats::Drop;
use crate::wire::checksum::Delta;
use crate::wire::ipv4::Ipv4Repr;
use crate::wire::{ethernet, ipv6, EtherType, IpProtocol, Ipv4Packet, TcpPacket};
use std::net::{Ipv4Addr, Ipv6Addr};

const L3: usize = ethernet::HEADER_LEN;
/// The IPv4 header NAT64 writes (no options) is this much shorter than the IPv6 one.
const SHRINK: usize = ipv6::HEADER_LEN - crate::wire::ipv4::HEADER_LEN;

/// The IPv4-mapped IPv6 address of `a`.
pub fn mapped(a: Ipv4Addr) -> Ipv6Addr {
    a.to_ipv6_mapped()
}

/// The reply tuple of a NAT64 connection, as the IPv6 table keeps it.
pub fn reply_tuple(rip: Ipv4Addr, rport: u16, lip: Ipv4Addr, lport: u16, proto: u8) -> Tuple6 {
    Tuple6::new(mapped(rip), rport, mapped(lip), lport, proto)
}

/// A local address and port of service `si`'s IPv4 pool for a new NAT64 connection toward
/// `rip:rport`: its reply tuple, or None when the pool is out of ports.
pub fn allocate<B>(
    v6: &Inet6<B>,
    fwd: &mut Forwarder,
    si: u32,
    rip: Ipv4Addr,
    rport: u16,
    proto: u8,
) -> Option<Tuple6> {
    let pool = fwd.pool_mut(si)?;
    let conns = &v6.conns;
    let r = pool
        .allocate(rip, rport, |t| {
            conns
                .lookup(&reply_tuple(
                    t.src_ip, t.src_port, t.dst_ip, t.dst_port, proto,
                ))
                .is_some()
        })
        .ok()?;
    Some(reply_tuple(
        r.src_ip, r.src_port, r.dst_ip, r.dst_port, proto,
    ))
}

/// A client packet of NAT64 connection `id` (IPv6 at `v`), translated and sent to its IPv4 real
/// server; `toa`: put the client's address in the IPv6 TOA (a SYN).
pub fn to_server<B: PacketBuf>(
    v6: &Inet6<B>,
    l3: &mut L3<B>,
    mut pkt: B,
    v: &Ipv6In,
    id: ConnId,
    toa: bool,
) -> Verdict<B> {
    let Some(reply) = v6.conns.get(id).and_then(|c| c.reply()) else {
        return Verdict::Drop(Drop::NoConn.into(), pkt);
    };
    let (Some(rip), Some(lip)) = (
        reply.src_ip().to_ipv4_mapped(),
        reply.dst_ip().to_ipv4_mapped(),
    ) else {
        return Verdict::Drop(Drop::NoConn.into(), pkt);
    };
    if v.l4_off != L3 + ipv6::HEADER_LEN {
        return Verdict::Drop(Drop::Ipv6BadExtensions.into(), pkt);
    }
    let (tc, hop, src6, dst6) = {
        let ip = ipv6::Ipv6Packet::new_unchecked(&pkt.data()[L3..]);
        (ip.traffic_class(), ip.hop_limit(), ip.src(), ip.dst())
    };
    let l4_len = v.end - v.l4_off;
    let l4 = &mut pkt.data_mut()[v.l4_off..v.end];
    let port = |b: &[u8], at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    let (sport, dport) = (port(l4, 0), port(l4, 2));
    // The pseudo-header's addresses change family; its length and protocol stay the same.
    let delta = Delta::new()
        .addr6(src6, Ipv6Addr::UNSPECIFIED)
        .addr6(dst6, Ipv6Addr::UNSPECIFIED)
        .dword(0, u32::from(lip))
        .dword(0, u32::from(rip))
        .word(sport, reply.dport)
        .word(dport, reply.sport);
    rewrite_l4(l4, v.proto, (reply.dport, reply.sport), delta, false);
    // The Ethernet header moves up over the 20 bytes the IPv4 header does not need.
    pkt.data_mut().copy_within(0..L3, SHRINK);
    if !pkt.adj(SHRINK) {
        return Verdict::Drop(Drop::NoRoom.into(), pkt);
    }
    let d = pkt.data_mut();
    d[12..14].copy_from_slice(&EtherType::IPV4.0.to_be_bytes());
    let repr = Ipv4Repr {
        src: lip,
        dst: rip,
        protocol: v.proto,
        payload_len: l4_len as u16,
        ttl: hop,
        ident: 0,
        dont_frag: true,
        dscp_ecn: tc,
    };
    if repr.emit(&mut d[L3..]).is_err() {
        return Verdict::Drop(Drop::NoRoom.into(), pkt);
    }
    pkt.set_len(L3 + crate::wire::ipv4::HEADER_LEN + l4_len);
    if toa && v.proto == IpProtocol::TCP {
        let (cport, cip) = (sport, src6);
        let len = pkt.len();
        match crate::wire::tcp::insert_toa6_in_ipv4(pkt.room_mut(), len, L3, cport, cip) {
            Ok(n) => {
                pkt.set_len(n);
                l3.stats.inet6.toa_added += 1;
            }
            Err(_) => l3.stats.inet6.toa_skipped += 1,
        }
    }
    let verdict = l3.route_out(pkt, rip);
    if !matches!(verdict, Verdict::Drop(..)) {
        l3.stats.inet6.forwarded += 1;
    }
    verdict
}

/// An IPv4 packet to an IPv4 local address of an IPv6 service: the reply of a NAT64 connection,
/// translated and sent to its IPv6 client; one of another worker's connection is handed to the
/// owner of its local port.
// Out of line whatever the codegen units decide (NAT64 replies only): inlined, it
// bloated the SYN path's code (perf/RESULTS.md, "New connections a second
// fell with a module split").
#[inline(never)]
pub fn from_server<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    fwd: &mut Forwarder,
    mut pkt: B,
    meta: &RxMeta,
    v: &Ipv4In,
) -> Verdict<B> {
    let ip = &v.ip;
    if ip.protocol == IpProtocol::ICMP && !ip.is_fragment && !ip.has_options {
        return icmp4_error(v6, l3, pkt, v);
    }
    if !matches!(ip.protocol, IpProtocol::TCP | IpProtocol::UDP) || ip.is_fragment {
        return Verdict::Drop(Drop::ProtoUnsupported.into(), pkt);
    }
    if ip.has_options {
        return Verdict::Drop(Drop::IpOptions.into(), pkt);
    }
    if !crate::packet::l4_checksum_ok(&pkt, meta, v) {
        return Verdict::Drop(Drop::L4BadChecksum.into(), pkt);
    }
    let t = reply_tuple(ip.src, ip.src_port, ip.dst, ip.dst_port, ip.protocol.0);
    let Some((id, Dir::Reply)) = v6.conns.lookup(&t) else {
        let layout = fwd.layout();
        if !meta.from_peer && layout.contains(ip.dst_port) {
            let owner = layout.owner_of(ip.dst_port);
            if owner != usize::from(l3.worker) {
                return Verdict::ToWorker(owner as u16, pkt);
            }
        }
        return Verdict::Drop(Drop::NoConn.into(), pkt);
    };
    let is_tcp = ip.protocol == IpProtocol::TCP;
    let flags = ip.tcp_flags.bits();
    if is_tcp && super::retry::server_segment(&mut v6.conns, fwd, id, flags) {
        // The server is there: the client's SYN that the held refusal brings does not doubt
        // its neighbour (`L3::suspect_neighbour`).
        l3.confirm_neighbour_at_once(ip.src, pkt.data());
        return Verdict::Drop(Drop::RstHeldForRetry.into(), pkt);
    }
    let now = Ticks(l3.now_ms);
    let (change, heard) = super::service::server_state(&mut v6.conns, fwd, id, flags, is_tcp, now);
    v6.sync_note(id, change.old, now);
    // A packet of a tracked connection confirms the IPv4 neighbour it came from, as IPv4's
    // (`Forwarder::forward_body`); a server's bare ACK to the SYN at once, so that a client's
    // SYN retransmitted later does not doubt it for the server's silence.
    match heard {
        true => l3.confirm_neighbour_at_once(ip.src, pkt.data()),
        false => l3.confirm_neighbour(ip.src, &pkt),
    }
    let Some(c) = v6.conns.get(id) else {
        return Verdict::Drop(Drop::NoConn.into(), pkt);
    };
    if is_tcp {
        super::service::limit_on_state(fwd, &c, change, Ticks(l3.now_ms));
    }
    fwd.count_packet(c.svc, c.rs, Dir::Reply, ip.total_len);
    super::common::count_activity(fwd.services(), &c, change.activity());
    let client = c.client();
    let (cip, vip) = (client.src_ip(), client.dst_ip());
    let (tos, ttl, total) = {
        let p = Ipv4Packet::new_unchecked(&pkt.data()[v.l3_off..]);
        (p.dscp_ecn(), p.ttl(), usize::from(p.total_len()))
    };
    let l4_len = total - crate::wire::ipv4::HEADER_LEN;
    let syn = ip.tcp_flags.syn();
    let mss = fwd.mtu().saturating_sub((ipv6::HEADER_LEN + 20) as u16);
    {
        let l4 = &mut pkt.data_mut()[ip.l4_off..v.l3_off + total];
        let delta = Delta::new()
            .dword(u32::from(ip.src), 0)
            .dword(u32::from(ip.dst), 0)
            .addr6(Ipv6Addr::UNSPECIFIED, vip)
            .addr6(Ipv6Addr::UNSPECIFIED, cip)
            .word(ip.src_port, client.dport)
            .word(ip.dst_port, client.sport);
        rewrite_l4(l4, ip.protocol, (client.dport, client.sport), delta, true);
        if syn && ip.protocol == IpProtocol::TCP {
            TcpPacket::new_unchecked(&mut *l4).clamp_mss(mss);
        }
    }
    // Room for the 20 more bytes of the IPv6 header in front; the Ethernet header moves there.
    pkt.set_len(v.l3_off + total);
    if !pkt.prepend(SHRINK) {
        return Verdict::Drop(Drop::NoRoom.into(), pkt);
    }
    let d = pkt.data_mut();
    d.copy_within(SHRINK..SHRINK + L3, 0);
    d[12..14].copy_from_slice(&EtherType::IPV6.0.to_be_bytes());
    {
        let mut h = ipv6::Ipv6Packet::new_unchecked(&mut d[L3..L3 + ipv6::HEADER_LEN]);
        h.set_ver_tc_flow(tos, 0);
        h.set_payload_len(l4_len as u16);
        h.set_next_header(ip.protocol);
        h.set_hop_limit(ttl);
        h.set_src(vip);
        h.set_dst(cip);
    }
    if ip.protocol == IpProtocol::UDP {
        udp_checksum_if_absent(d, vip, cip);
    }
    super::common::to_client(v6, l3, pkt, cip)
}

/// Writes the ports and applies the checksum change to a TCP or UDP header (`to_v6`: the result
/// is IPv6, whose UDP checksum is never 0).
fn rewrite_l4(l4: &mut [u8], proto: IpProtocol, ports: (u16, u16), delta: Delta, to_v6: bool) {
    l4[0..2].copy_from_slice(&ports.0.to_be_bytes());
    l4[2..4].copy_from_slice(&ports.1.to_be_bytes());
    let at = if proto == IpProtocol::TCP { 16 } else { 6 };
    let old = u16::from_be_bytes([l4[at], l4[at + 1]]);
    let new = match (proto, to_v6) {
        (IpProtocol::TCP, _) => delta.apply(old),
        // An IPv4 UDP datagram without a checksum keeps 0 here; it gets a full one once it is
        // IPv6 (`udp_checksum_if_absent`).
        (_, true) if old == 0 => 0,
        (_, true) => delta.apply_udp6(old),
        (_, false) => delta.apply_udp(old),
    };
    l4[at..at + 2].copy_from_slice(&new.to_be_bytes());
}

/// Fills the UDP checksum of the IPv6 frame `d` when it is 0 (an IPv4 sender may leave it out).
fn udp_checksum_if_absent(d: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) {
    let l4 = L3 + ipv6::HEADER_LEN;
    if d[l4 + 6..l4 + 8] != [0, 0] {
        return;
    }
    let c = ipv6::l4_checksum(src, dst, IpProtocol::UDP, &d[l4..]);
    let c = if c == 0 { 0xFFFF } else { c };
    d[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
}

/// The ICMPv6 (type, code, 4-byte field) for an ICMPv4 error (RFC 7915 4.2), or None for one that
/// is not translated (dropped): a fragmentation-needed becomes a packet too big whose MTU is the
/// IPv4 one plus the 20 bytes of header difference, never below IPv6's minimum of 1280.
fn icmp_4to6(t: u8, code: u8, rest: [u8; 4]) -> Option<(u8, u8, [u8; 4])> {
    let unreachable = |c: u8| Some((1, c, [0; 4]));
    match (t, code) {
        (3, 0 | 1 | 5 | 6 | 7 | 8 | 11 | 12) => unreachable(0),
        (3, 3) => unreachable(4),
        (3, 9 | 10 | 13 | 15) => unreachable(1),
        (3, 4) => {
            let mtu = u32::from(u16::from_be_bytes([rest[2], rest[3]]));
            Some((2, 0, (mtu + 20).max(1280).to_be_bytes()))
        }
        (11, c @ (0 | 1)) => Some((3, c, [0; 4])),
        _ => None,
    }
}

/// The ICMPv4 (type, code, 4-byte field) for an ICMPv6 error (RFC 7915 5.2), or None: a packet
/// too big becomes a fragmentation-needed whose MTU is the IPv6 one less 20.
fn icmp_6to4(t: u8, code: u8, rest: [u8; 4]) -> Option<(u8, u8, [u8; 4])> {
    match (t, code) {
        (1, 0 | 2 | 3) => Some((3, 1, [0; 4])),
        (1, 1) => Some((3, 10, [0; 4])),
        (1, 4) => Some((3, 3, [0; 4])),
        (2, _) => {
            let mtu = u32::from_be_bytes(rest).saturating_sub(20).min(0xFFFF) as u16;
            let m = mtu.to_be_bytes();
            Some((3, 4, [0, 0, m[0], m[1]]))
        }
        (3, c @ (0 | 1)) => Some((11, c, [0; 4])),
        _ => None,
    }
}

/// An ICMPv4 error from the IPv4 side about a NAT64 connection (to its IPv4 local address,
/// quoting LIP:lport -> RIP:rport): to the client as ICMPv6 from the VIP, quoting the client's own
/// packet CIP:cport -> VIP:vport (RFC 7915 4.2). Built whole: the frame grows by the 20 bytes each
/// of the two headers gains.
pub fn icmp4_error<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    mut pkt: B,
    v: &Ipv4In,
) -> Verdict<B> {
    let icmp = &pkt.data()[v.ip.l4_off..v.l3_off + usize::from(v.ip.total_len)];
    let quote = icmp.get(8..).unwrap_or(&[]);
    let q_ok = quote.len() >= 28 && quote[0] == 0x45;
    let (Some((t, code, rest)), true) = (
        icmp.get(..8)
            .and_then(|h| icmp_4to6(h[0], h[1], [h[4], h[5], h[6], h[7]])),
        q_ok,
    ) else {
        return Verdict::Drop(Drop::IcmpUnhandled.into(), pkt);
    };
    let q = Ipv4Packet::new_unchecked(quote);
    let proto = q.protocol();
    let l4q = &quote[20..];
    let (qsport, qdport) = (
        u16::from_be_bytes([l4q[0], l4q[1]]),
        u16::from_be_bytes([l4q[2], l4q[3]]),
    );
    // The quote is a packet the gateway sent: LIP:lport -> RIP:rport; the reply tuple reverses it.
    let t6 = reply_tuple(q.dst(), qdport, q.src(), qsport, proto.0);
    let Some((id, Dir::Reply)) = v6.conns.lookup(&t6) else {
        return Verdict::Drop(Drop::NoConn.into(), pkt);
    };
    let Some(client) = v6.conns.get(id).map(|c| c.client()) else {
        return Verdict::Drop(Drop::NoConn.into(), pkt);
    };
    let (cip, vip) = (client.src_ip(), client.dst_ip());
    // The quoted packet as the client sent it: CIP:cport -> VIP:vport, its checksum moved along.
    let mut inner_l4 = l4q.to_vec();
    let delta = Delta::new()
        .dword(u32::from(q.src()), 0)
        .dword(u32::from(q.dst()), 0)
        .addr6(Ipv6Addr::UNSPECIFIED, cip)
        .addr6(Ipv6Addr::UNSPECIFIED, vip)
        .word(qsport, client.sport)
        .word(qdport, client.dport);
    let at = if proto == IpProtocol::TCP { 16 } else { 6 };
    inner_l4[0..2].copy_from_slice(&client.sport.to_be_bytes());
    inner_l4[2..4].copy_from_slice(&client.dport.to_be_bytes());
    if inner_l4.len() >= at + 2 {
        let old = u16::from_be_bytes([inner_l4[at], inner_l4[at + 1]]);
        let new = if proto == IpProtocol::TCP {
            delta.apply(old)
        } else {
            delta.apply_udp6(old)
        };
        inner_l4[at..at + 2].copy_from_slice(&new.to_be_bytes());
    }
    let q_payload = q.total_len().saturating_sub(20);
    let (q_tos, q_ttl) = (q.dscp_ecn(), q.ttl());
    let body = 8 + ipv6::HEADER_LEN + inner_l4.len();
    let mut f = Vec::with_capacity(L3 + ipv6::HEADER_LEN + body);
    f.extend_from_slice(&pkt.data()[..12]);
    f.extend_from_slice(&EtherType::IPV6.0.to_be_bytes());
    f.resize(L3 + ipv6::HEADER_LEN + body, 0);
    {
        let mut h = ipv6::Ipv6Packet::new_unchecked(&mut f[L3..]);
        h.set_ver_tc_flow(0, 0);
        h.set_payload_len(body as u16);
        h.set_next_header(IpProtocol::ICMPV6);
        h.set_hop_limit(64);
        h.set_src(vip);
        h.set_dst(cip);
    }
    let m = L3 + ipv6::HEADER_LEN;
    f[m] = t;
    f[m + 1] = code;
    f[m + 4..m + 8].copy_from_slice(&rest);
    {
        let mut h = ipv6::Ipv6Packet::new_unchecked(&mut f[m + 8..m + 8 + ipv6::HEADER_LEN]);
        h.set_ver_tc_flow(q_tos, 0);
        h.set_payload_len(q_payload);
        h.set_next_header(proto);
        h.set_hop_limit(q_ttl);
        h.set_src(cip);
        h.set_dst(vip);
    }
    f[m + 8 + ipv6::HEADER_LEN..].copy_from_slice(&inner_l4);
    crate::wire::icmpv6::Icmpv6Packet::new_unchecked(&mut f[m..]).fill_checksum(vip, cip);
    let grow = f.len() - pkt.len().min(f.len());
    if !pkt.prepend(grow) {
        return Verdict::Drop(Drop::NoRoom.into(), pkt);
    }
    pkt.set_len(f.len());
    pkt.data_mut().copy_from_slice(&f);
    let Some(route) = l3.topo().routes6.lookup(cip).copied() else {
        return Verdict::Drop(Drop::NoRoute.into(), pkt);
    };
    let verdict = nd::send_to(v6, l3, pkt, route.l2_target(cip), route.port);
    if !matches!(verdict, Verdict::Drop(..)) {
        l3.stats.inet6.icmp_translated += 1;
    }
    verdict
}

/// An ICMPv6 error from the client's side about a NAT64 connection (to the VIP, quoting VIP:vport
/// -> CIP:cport, a reply the gateway translated): to the IPv4 real server as ICMPv4 from the local
/// address, quoting the server's own packet RIP:rport -> LIP:lport (RFC 7915 5.2); a packet too big
/// there becomes a fragmentation-needed 20 bytes smaller.
pub fn icmp6_error<B: PacketBuf>(
    v6: &Inet6<B>,
    l3: &mut L3<B>,
    mut pkt: B,
    v: &Ipv6In,
    id: ConnId,
) -> Verdict<B> {
    let Some(reply) = v6.conns.get(id).and_then(|c| c.reply()) else {
        return Verdict::Drop(Drop::NoConn.into(), pkt);
    };
    let (Some(rip), Some(lip)) = (
        reply.src_ip().to_ipv4_mapped(),
        reply.dst_ip().to_ipv4_mapped(),
    ) else {
        return Verdict::Drop(Drop::NoConn.into(), pkt);
    };
    let m = &pkt.data()[v.l4_off..v.end];
    let quote = m.get(8..).unwrap_or(&[]);
    let Some((t, code, rest)) = icmp_6to4(m[0], m[1], [m[4], m[5], m[6], m[7]]) else {
        return Verdict::Drop(Drop::IcmpUnhandled.into(), pkt);
    };
    if quote.len() < ipv6::HEADER_LEN + 8 || quote[6] != 6 && quote[6] != 17 {
        return Verdict::Drop(Drop::IcmpUnhandled.into(), pkt);
    }
    let q = ipv6::Ipv6Packet::new_unchecked(&quote[..ipv6::HEADER_LEN]);
    let proto = q.next_header();
    let l4q = &quote[ipv6::HEADER_LEN..];
    let mut inner_l4 = l4q.to_vec();
    let (qsport, qdport) = (
        u16::from_be_bytes([l4q[0], l4q[1]]),
        u16::from_be_bytes([l4q[2], l4q[3]]),
    );
    // As the server sent it: RIP:rport -> LIP:lport.
    let delta = Delta::new()
        .addr6(q.src(), Ipv6Addr::UNSPECIFIED)
        .addr6(q.dst(), Ipv6Addr::UNSPECIFIED)
        .dword(0, u32::from(rip))
        .dword(0, u32::from(lip))
        .word(qsport, reply.sport)
        .word(qdport, reply.dport);
    inner_l4[0..2].copy_from_slice(&reply.sport.to_be_bytes());
    inner_l4[2..4].copy_from_slice(&reply.dport.to_be_bytes());
    let at = if proto == IpProtocol::TCP { 16 } else { 6 };
    if inner_l4.len() >= at + 2 {
        let old = u16::from_be_bytes([inner_l4[at], inner_l4[at + 1]]);
        let new = if proto == IpProtocol::TCP {
            delta.apply(old)
        } else {
            delta.apply_udp(old)
        };
        inner_l4[at..at + 2].copy_from_slice(&new.to_be_bytes());
    }
    let inner = Ipv4Repr {
        src: rip,
        dst: lip,
        protocol: proto,
        payload_len: q.payload_len(),
        ttl: q.hop_limit(),
        ident: 0,
        dont_frag: true,
        dscp_ecn: q.traffic_class(),
    };
    let body = 8 + crate::wire::ipv4::HEADER_LEN + inner_l4.len();
    let outer = Ipv4Repr {
        src: lip,
        dst: rip,
        protocol: IpProtocol::ICMP,
        payload_len: body as u16,
        ttl: 64,
        ident: 0,
        dont_frag: false,
        dscp_ecn: 0,
    };
    let v4 = crate::wire::ipv4::HEADER_LEN;
    let mut f = vec![0u8; L3 + v4 + body];
    f[..12].copy_from_slice(&pkt.data()[..12]);
    f[12..14].copy_from_slice(&EtherType::IPV4.0.to_be_bytes());
    if outer.emit(&mut f[L3..]).is_err() || inner.emit(&mut f[L3 + v4 + 8..]).is_err() {
        return Verdict::Drop(Drop::NoRoom.into(), pkt);
    }
    let m = L3 + v4;
    f[m] = t;
    f[m + 1] = code;
    f[m + 4..m + 8].copy_from_slice(&rest);
    f[m + 8 + v4..].copy_from_slice(&inner_l4);
    let c = crate::wire::checksum::checksum(&f[m..]);
    f[m + 2..m + 4].copy_from_slice(&c.to_be_bytes());
    // The frame shrinks: its start moves up.
    let shrink = pkt.len() - f.len();
    if !pkt.adj(shrink) {
        return Verdict::Drop(Drop::NoRoom.into(), pkt);
    }
    pkt.data_mut().copy_from_slice(&f);
    let verdict = l3.route_out(pkt, rip);
    if !matches!(verdict, Verdict::Drop(..)) {
        l3.stats.inet6.icmp_translated += 1;
    }
    verdict
}

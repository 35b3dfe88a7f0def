//! IPv6 virtual services, DR and TUN (`ipvsadm -g`, `-i` on an IPv6 service).
//!
//! A client packet to an IPv6 VIP finds its connection in the IPv6 table (`ConnTable6`) by its
//! 5-tuple, or, if it may open one (a UDP datagram, a TCP SYN, any TCP packet with `sloppy_tcp`),
//! a real server is scheduled as for IPv4 and the connection created. It then leaves:
//! - DR: unchanged but for its MACs, toward the real server on a connected prefix (the real
//!   server holds the VIP on a device that does not answer neighbour solicitations for it);
//! - TUN: inside an IPv6 header from the gateway's address on the real server's port to the
//!   real server (next header 41, RFC 2473), as IPVS's `ip_vs_tunnel_xmit_v6`. A packet the
//!   tunnel would take over the port's MTU is dropped and counted (`ipv6_too_big`); the Packet
//!   Too Big toward the client is not sent yet.
//!
//! The connection follows IPVS's INPUT-ONLY TCP states (the gateway never sees the replies), as
//! IPv4 DR and TUN connections do; its real server's active and inactive counts move with it.

use super::{nd, Inet6, Ipv6In};
use crate::conn::{tcp_flags, Activity, ConnOf, Dir, Ticks, Tuple6};
use crate::datapath::{Verdict, L3};
use crate::forward::{mode, reuse, Forwarder, ServiceTable};
use crate::packet::{CsumStatus, PacketBuf, RxMeta};
use crate::service::{ClientKey, FwdMode};
use crate::stats::Drop;
use crate::wire::ipv6::{self, Ipv6Packet};
use crate::wire::packet::DropReason as WireDrop;
use crate::wire::{ethernet, IpProtocol};
use std::net::{IpAddr, Ipv6Addr};

/// Hop limit of the outer header of a tunnelled packet (Linux's default for ip6tnl).
const TUNNEL_HOP_LIMIT: u8 = 64;

/// A packet of a TCP or UDP flow to an IPv6 VIP.
pub fn to_service<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    fwd: &mut Forwarder,
    pkt: B,
    meta: &RxMeta,
    v: &Ipv6In,
) -> Verdict<B> {
    if v.fragment {
        return Verdict::Drop(Drop::Ipv6Fragment.into(), pkt);
    }
    let is_tcp = v.proto == IpProtocol::TCP;
    let l4 = &pkt.data()[v.l4_off..v.end];
    let (min, short) = if is_tcp {
        (20, WireDrop::TcpTruncated)
    } else {
        (8, WireDrop::UdpTruncated)
    };
    if l4.len() < min {
        return Verdict::Drop(short.into(), pkt);
    }
    if meta.l4_csum == CsumStatus::Bad
        || meta.l4_csum == CsumStatus::Unknown
            && !meta.from_peer
            && ipv6::l4_checksum(v.src, v.dst, v.proto, l4) != 0
    {
        return Verdict::Drop(Drop::L4BadChecksum.into(), pkt);
    }
    let sport = u16::from_be_bytes([l4[0], l4[1]]);
    let dport = u16::from_be_bytes([l4[2], l4[3]]);
    let flags = if is_tcp { l4[13] } else { 0 };
    let tuple = Tuple6::new(v.src, sport, v.dst, dport, v.proto.0);
    let now = Ticks(l3.now_ms);
    let syn = is_tcp && flags & tcp_flags::SYN != 0 && flags & tcp_flags::ACK == 0;
    let mut found = v6.conns.lookup(&tuple).map(|(id, _)| id);
    if let (true, Some(id)) = (syn, found) {
        if reschedule(&v6.conns, fwd, id) {
            if let Some(old) = v6.conns.remove(id) {
                release(fwd.services(), &old);
            }
            found = None;
        }
    }
    let id = match found {
        Some(id) => id,
        None => {
            let (services, sched) = fwd.services_and_sched();
            let Some(si) = services.find6(v.dst, dport, v.proto.0) else {
                return Verdict::Drop(Drop::NoService.into(), pkt);
            };
            let vs = &services.services[si as usize];
            if is_tcp && !syn && !vs.sloppy_tcp {
                return Verdict::Drop(Drop::NoConn.into(), pkt);
            }
            let key = ClientKey::new(v.src, sport, v.dst);
            let Some(state) = sched.get_mut(si as usize) else {
                return Verdict::Drop(Drop::NoService.into(), pkt);
            };
            let Some(ri) = state.pick(&vs.svc, &*vs.svc, key, l3.now_ms) else {
                return Verdict::Drop(Drop::NoRealServer.into(), pkt);
            };
            let mode_id = match vs.svc.reals()[ri].fwd {
                FwdMode::Dr => mode::DR,
                FwdMode::Tun => mode::TUN,
                // `Service::check` refuses other modes for an IPv6 service.
                _ => return Verdict::Drop(Drop::NoRealServer.into(), pkt),
            };
            match v6
                .conns
                .insert(tuple, None, si as u16, ri as u16, mode_id, now)
            {
                Ok(id) => {
                    if let Some(s) = vs.svc.stats(ri) {
                        s.on_conn_new();
                    }
                    l3.stats.inet6.conns_created += 1;
                    id
                }
                Err(_) => return Verdict::Drop(Drop::ConnTableFull.into(), pkt),
            }
        }
    };
    let change = v6.conns.on_packet(id, Dir::Original, flags, now);
    let services = fwd.services();
    let Some(c) = v6.conns.get(id) else {
        return Verdict::Drop(Drop::NoConn.into(), pkt);
    };
    let Some(rs) = services
        .services
        .get(c.svc as usize)
        .and_then(|vs| vs.svc.reals().get(c.rs as usize))
    else {
        // Its real server was removed from the service.
        return Verdict::Drop(Drop::NoRealServer.into(), pkt);
    };
    if change.activity() != Activity::Unchanged {
        if let Some(s) = services
            .services
            .get(c.svc as usize)
            .and_then(|vs| vs.svc.stats(c.rs as usize))
        {
            match change.activity() {
                Activity::BecameActive => s.on_active(),
                Activity::BecameInactive => s.on_inactive(),
                Activity::Unchanged => {}
            }
        }
    }
    let IpAddr::V6(rip) = rs.addr else {
        return Verdict::Drop(Drop::NoRealServer.into(), pkt);
    };
    let (tun, mtu) = (c.mode == mode::TUN, fwd.mtu());
    let Some(route) = l3.topo().routes6.lookup(rip).copied() else {
        return Verdict::Drop(Drop::NoRoute.into(), pkt);
    };
    let verdict = if tun {
        let Some(src) = l3.topo().source6_for(route.port, rip) else {
            return Verdict::Drop(Drop::NoRoute.into(), pkt);
        };
        let pkt = match encapsulate(pkt, src, rip, mtu) {
            Ok(p) => p,
            Err(p) => return Verdict::Drop(Drop::Ipv6TooBig.into(), p),
        };
        nd::send_to(v6, l3, pkt, route.l2_target(rip), route.port)
    } else {
        // DR reaches only a real server on the link: a router would route the packet, still
        // addressed to the VIP, back here.
        if route.via.is_some() {
            return Verdict::Drop(Drop::NoRoute.into(), pkt);
        }
        nd::send_to(v6, l3, pkt, rip, route.port)
    };
    if !matches!(verdict, Verdict::Drop(..)) {
        l3.stats.inet6.forwarded += 1;
    }
    verdict
}

/// Whether a client's SYN that found entry `id` starts a new connection instead (a reused client
/// port: `forward::reuse`, IPVS's `conn_reuse_mode`, with the gateway seeing only the client's
/// side as in IPv4 DR and TUN).
fn reschedule(conns: &crate::conn::ConnTable6, fwd: &Forwarder, id: crate::conn::ConnId) -> bool {
    let Some(c) = conns.get(id) else {
        return false;
    };
    let vs = fwd.services().services.get(c.svc as usize);
    let dest = vs
        .and_then(|vs| vs.svc.reals().get(c.rs as usize))
        .map_or(reuse::Dest::Removed, |r| reuse::Dest::Weight(r.weight));
    let nodest = vs.is_some_and(|vs| vs.svc.expire_nodest_conn());
    reuse::on_syn(fwd.conn_reuse_mode(), nodest, c.state(), true, dest, false).is_some()
}

/// Wraps the frame's IPv6 packet in an outer IPv6 header from `src` to `dst` (RFC 2473 3),
/// keeping the Ethernet header in front. `Err` (the packet back) when the result would exceed
/// `mtu` or the buffer has no headroom.
fn encapsulate<B: PacketBuf>(mut pkt: B, src: Ipv6Addr, dst: Ipv6Addr, mtu: u16) -> Result<B, B> {
    let inner = pkt.len() - ethernet::HEADER_LEN;
    let outer = inner + ipv6::HEADER_LEN;
    if outer > usize::from(mtu) || !pkt.prepend(ipv6::HEADER_LEN) {
        return Err(pkt);
    }
    let d = pkt.data_mut();
    d.copy_within(ipv6::HEADER_LEN..ipv6::HEADER_LEN + ethernet::HEADER_LEN, 0);
    let mut ip = Ipv6Packet::new_unchecked(&mut d[ethernet::HEADER_LEN..]);
    ip.set_ver_tc_flow(0, 0);
    ip.set_payload_len(inner as u16);
    ip.set_next_header(IpProtocol::IPV6);
    ip.set_hop_limit(TUNNEL_HOP_LIMIT);
    ip.set_src(src);
    ip.set_dst(dst);
    Ok(pkt)
}

/// An IPv6 connection leaves: its real server's count drops.
pub fn release(services: &ServiceTable, c: &ConnOf<Tuple6>) {
    if let Some(s) = services
        .services
        .get(c.svc as usize)
        .and_then(|vs| vs.svc.stats(c.rs as usize))
    {
        s.on_conn_gone(c.is_active());
    }
}

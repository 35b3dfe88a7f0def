//! What the IPv6 service paths share: the general path (`service`), its fast lane (`hot`),
//! `nat64` and `icmp`. A checked segment and its length as counted, the way to a client, the
//! tunnel header, a connection's activity count. It uses none of them, so they need not use
//! one another to reach it.

use super::{nd, Inet6, Ipv6In};
use crate::conn::{Activity, ConnOf, Prelookup, Tuple6};
use crate::forward::ServiceTable;
use crate::net::L3;
use crate::packet::{PacketBuf, Verdict};
use crate::stats::Drop;
use crate::wire::ipv6::{self, Ipv6Packet};
use crate::wire::{ethernet, tcp, IpProtocol};
use std::net::Ipv6Addr;

/// Hop limit of the outer header of a tunnelled packet (Linux's default for ip6tnl).
const TUNNEL_HOP_LIMIT: u8 = 64;

/// What is known of a TCP or UDP packet once its upper-layer header was checked (`l4_of`, or the
/// fast path's admission): its ports, its TCP flags, and what an earlier lookup found of its
/// connection.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    pub sport: u16,
    pub dport: u16,
    pub flags: u8,
    pub pre: Prelookup,
}

/// An IPv6 packet's length as `ipvsadm --stats` counts it: the IP header and everything after
/// it, as received (IPv4 counts its total length).
pub(super) fn ip_len(v: &Ipv6In) -> u16 {
    u16::try_from(v.end.saturating_sub(crate::wire::ethernet::HEADER_LEN)).unwrap_or(u16::MAX)
}

/// Sends an IPv6 packet to client `cip` through the IPv6 routes, counting it forwarded.
pub(super) fn to_client<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    pkt: B,
    cip: Ipv6Addr,
) -> Verdict<B> {
    let Some(route) = l3.topo().routes6.lookup(cip).copied() else {
        return Verdict::Drop(Drop::NoRoute.into(), pkt);
    };
    let verdict = nd::send_to(v6, l3, pkt, route.l2_target(cip), route.port);
    if !matches!(verdict, Verdict::Drop(..)) {
        l3.stats.inet6.forwarded += 1;
    }
    verdict
}

/// Moves the connection's real server between active and inactive as its state changed.
pub(super) fn count_activity(services: &ServiceTable, c: &ConnOf<Tuple6>, a: Activity) {
    if a == Activity::Unchanged {
        return;
    }
    if let Some(s) = services
        .services
        .get(c.svc as usize)
        .and_then(|vs| vs.svc.stats(c.rs as usize))
    {
        match a {
            Activity::BecameActive => s.on_active(),
            Activity::BecameInactive => s.on_inactive(),
            Activity::Unchanged => {}
        }
    }
}

/// Wraps the frame's IPv6 packet in an outer IPv6 header from `src` to `dst` (RFC 2473 3),
/// keeping the Ethernet header in front. `Err` (the packet back) when the result would exceed
/// `mtu` or the buffer has no headroom.
pub(super) fn encapsulate<B: PacketBuf>(
    mut pkt: B,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    mtu: u16,
) -> Result<B, B> {
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

/// A TCP RST from `from` to `to` (address, port), as a host with nothing listening answers a
/// SYN (RFC 9293 3.10.7.1: RST+ACK acknowledging it, sequence 0), `ack` the SYN's sequence
/// number plus one. `came`: the port the SYN came in on and the MAC it came from, the next hop
/// when this worker has not resolved the route's (the client's neighbour entry may live on
/// another worker). Whether it was queued.
pub(super) fn tcp_rst<B: PacketBuf>(
    v6: &Inet6<B>,
    l3: &mut L3<B>,
    from: (Ipv6Addr, u16),
    to: (Ipv6Addr, u16),
    ack: u32,
    came: (u16, crate::wire::MacAddr),
) -> bool {
    generate6(v6, l3, to.0, Some(came), |buf| {
        let len = ipv6::HEADER_LEN + tcp::HEADER_LEN;
        let (head, seg) = buf.get_mut(..len)?.split_at_mut(ipv6::HEADER_LEN);
        let mut ip = Ipv6Packet::new_unchecked(head);
        ip.set_ver_tc_flow(0, 0);
        ip.set_payload_len(tcp::HEADER_LEN as u16);
        ip.set_next_header(IpProtocol::TCP);
        ip.set_hop_limit(64);
        ip.set_src(from.0);
        ip.set_dst(to.0);
        seg.fill(0);
        {
            // Sequence number 0: left as zeroed.
            let mut t = tcp::TcpPacket::new_unchecked(&mut *seg);
            t.set_src_port(from.1);
            t.set_dst_port(to.1);
            t.set_ack_number(ack);
            t.set_data_offset(5);
            t.set_flags(tcp::TcpFlags(
                crate::conn::tcp_flags::RST | crate::conn::tcp_flags::ACK,
            ));
        }
        let sum = ipv6::l4_checksum(from.0, to.0, IpProtocol::TCP, seg);
        tcp::TcpPacket::new_unchecked(seg).set_checksum(sum);
        Some(len)
    })
}

/// Generates a frame toward `to` through the IPv6 routes: `write` writes the IPv6 packet from
/// the start of the slice it is given and returns its length; the Ethernet header is written
/// here. `came`, as [`tcp_rst`]'s: the next hop to take when this worker has not resolved the
/// route's. Whether it was queued.
pub(super) fn generate6<B: PacketBuf>(
    v6: &Inet6<B>,
    l3: &mut L3<B>,
    to: Ipv6Addr,
    came: Option<(u16, crate::wire::MacAddr)>,
    write: impl FnOnce(&mut [u8]) -> Option<usize>,
) -> bool {
    let Some(route) = l3.topo().routes6.lookup(to).copied() else {
        return false;
    };
    let resolved = v6.neigh.mac(route.l2_target(to));
    let came = came.filter(|c| c.0 == route.port).map(|c| c.1);
    let Some(mac) = resolved.or(came) else {
        return false;
    };
    let Some(src_mac) = l3.topo().ports.get(route.port as usize).map(|p| p.mac) else {
        return false;
    };
    let before = l3.stats.generated;
    l3.generate(route.port, |buf| {
        let (eth, rest) = buf.split_at_mut_checked(ethernet::HEADER_LEN)?;
        ethernet::write_header(eth, mac, src_mac, crate::wire::EtherType::IPV6).ok()?;
        Some(ethernet::HEADER_LEN + write(rest)?)
    });
    l3.stats.generated > before
}

//! IPv6 virtual services: FullNAT (`inet6::fullnat`), DR and TUN (`ipvsadm -b`, `-g`, `-i` on an
//! IPv6 service).
//!
//! A client packet to an IPv6 VIP finds its connection in the IPv6 table (`ConnTable6`) by its
//! 5-tuple, or, if it may open one (a UDP datagram, a TCP SYN, with `sloppy_tcp` for DR and TUN any
//! TCP segment but a RST or a SYN-ACK), a real server is scheduled as for IPv4 and the connection
//! created. It then leaves:
//! - FullNAT: from a local address and port to the real server (the reply comes back to that LIP
//!   and is translated back toward the client), the client's address in the IPv6 TOA on the SYN;
//! - NAT: to the real server's address and port, the client's address kept; the real server
//!   routes its replies back through the gateway, which gives them the VIP as source again
//!   (`nat_reply`). As for IPv4 (`forward::nat`), a NAT service's connections live on the worker
//!   that owns the client's address and port, whichever worker RSS gives their packets;
//! - DR: unchanged but for its MACs, toward the real server on a connected prefix (the real
//!   server holds the VIP on a device that does not answer neighbour solicitations for it);
//! - TUN: inside an IPv6 header from the gateway's address on the real server's port to the
//!   real server (next header 41, RFC 2473), as IPVS's `ip_vs_tunnel_xmit_v6`. A packet the
//!   tunnel would take over the port's MTU is dropped (`ipv6_too_big`) and answered with a Packet
//!   Too Big of the MTU less the outer header (`icmp::packet_too_big`).
//!
//! DR and TUN connections follow IPVS's INPUT-ONLY TCP states (the gateway never sees the
//! replies), as IPv4 ones do; a real server's active and inactive counts move with its connections.

use super::common::{count_activity, encapsulate, ip_len, to_client, Segment};
use super::{fullnat, icmp, nd, Inet6, Ipv6In};
use crate::conn::{
    tcp_flags, ConnId, ConnOf, ConnTable6, Dir, InsertError, Prelookup, State, StateChange, Ticks,
    Tuple6,
};
use crate::forward::fullnat::{counted_open, ended, NO_DEST};
use crate::forward::limit::Refused;
use crate::forward::{mode, reuse, room_for_port, Forwarder, Room, ServiceTable};
use crate::net::L3;
use crate::packet::Verdict;
use crate::packet::{CsumStatus, PacketBuf, RxMeta};
use crate::service::{ClientKey, FwdMode};
use crate::stats::Drop;
use crate::wire::ipv6;
use crate::wire::packet::DropReason as WireDrop;
use crate::wire::{ethernet, IpProtocol};
use reuse::Resched;
use std::net::IpAddr;

/// The ports and TCP flags of a TCP or UDP packet, its length and checksum checked (unless the NIC
/// or the worker that handed it over did), as a [`Segment`] with `pre`; the verdict for one that
/// fails. A segment whose checksum fails goes on if `forwards_unverified` says so: a plain ACK of
/// a connection the hot path takes (`hot::forwards_unverified`).
fn l4_of<B: PacketBuf>(
    pkt: B,
    meta: &RxMeta,
    v: &Ipv6In,
    pre: Prelookup,
    forwards_unverified: impl FnOnce(&Segment) -> bool,
) -> Result<(B, Segment), Verdict<B>> {
    // A first fragment has the ports; its checksum covers the whole datagram (not verified).
    let first = v.frag.is_some_and(|f| f.offset == 0);
    if v.is_fragment() && !first {
        return Err(Verdict::Drop(Drop::Ipv6Fragment.into(), pkt));
    }
    let is_tcp = v.proto == IpProtocol::TCP;
    let l4 = &pkt.data()[v.l4_off..v.end];
    let (min, short) = if is_tcp {
        (20, WireDrop::TcpTruncated)
    } else {
        (8, WireDrop::UdpTruncated)
    };
    if l4.len() < min {
        return Err(Verdict::Drop(short.into(), pkt));
    }
    // A data offset below the fixed header or past the segment, as IPv4's `parse_l3l4` drops
    // it: the SYN proxy and TOA read the options by it.
    if is_tcp && !(20..=l4.len()).contains(&(usize::from(l4[12] >> 4) * 4)) {
        return Err(Verdict::Drop(WireDrop::TcpBadDataOffset.into(), pkt));
    }
    let bad = meta.l4_csum == CsumStatus::Bad && !first
        || meta.l4_csum == CsumStatus::Unknown
            && !meta.from_peer
            && !first
            && ipv6::l4_checksum(v.src, v.dst, v.proto, l4) != 0;
    let sport = u16::from_be_bytes([l4[0], l4[1]]);
    let dport = u16::from_be_bytes([l4[2], l4[3]]);
    let flags = if is_tcp { l4[13] } else { 0 };
    let seg = Segment {
        sport,
        dport,
        flags,
        pre,
    };
    if bad && !forwards_unverified(&seg) {
        return Err(Verdict::Drop(Drop::L4BadChecksum.into(), pkt));
    }
    Ok((pkt, seg))
}

/// A packet of a TCP or UDP flow to an IPv6 VIP.
pub fn to_service<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    fwd: &mut Forwarder,
    pkt: B,
    meta: &RxMeta,
    v: &Ipv6In,
    pre: Prelookup,
) -> Verdict<B> {
    let unverified = |seg: &Segment| super::hot::forwards_unverified(v6, l3, fwd, v, seg);
    match l4_of(pkt, meta, v, pre, unverified) {
        Ok((pkt, seg)) => to_service_segment(v6, l3, fwd, pkt, meta, v, seg),
        Err(verdict) => verdict,
    }
}

/// Doubts the neighbour toward `server`, a real server of either family (NAT64's are IPv4),
/// whose handshake a client's retransmitted SYN shows unanswered since `since`. Rare: out of
/// line.
#[cold]
#[inline(never)]
fn doubt<B: PacketBuf>(v6: &mut Inet6<B>, l3: &mut L3<B>, server: IpAddr, since: u64) {
    match server {
        IpAddr::V6(ip) => nd::suspect(v6, l3, ip, since),
        IpAddr::V4(ip) => l3.suspect_neighbour(ip, since),
    }
}

/// `to_service` for a segment whose upper-layer header was checked (`seg`).
#[inline]
pub fn to_service_segment<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    fwd: &mut Forwarder,
    pkt: B,
    meta: &RxMeta,
    v: &Ipv6In,
    seg: Segment,
) -> Verdict<B> {
    let Segment {
        sport,
        dport,
        flags,
        pre,
    } = seg;
    let is_tcp = v.proto == IpProtocol::TCP;
    let tuple = Tuple6::new(v.src, sport, v.dst, dport, v.proto.0);
    let now = Ticks(l3.now_ms);
    let syn = is_tcp && flags & tcp_flags::SYN != 0 && flags & tcp_flags::ACK == 0;
    let mut found = v6.conns.resolve(&tuple, pre).map(|(id, _)| id);
    // The SYN's sequence number plus one, 0 for another segment (and for a SYN whose ISN is
    // 0xFFFFFFFF, which then tells nothing).
    let isn1 = match syn {
        true => pkt.data().get(v.l4_off + 4..v.l4_off + 8).map_or(0, |b| {
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]).wrapping_add(1)
        }),
        false => 0,
    };
    // The server a client's retransmitted SYN is to avoid (`retry`).
    let mut retry_of = None;
    if let (true, Some(id)) = (syn, found) {
        if let Some(why) = reschedule(&v6.conns, fwd, id, isn1) {
            fwd.count_resched(why);
            retire(v6, fwd, id, now);
            found = None;
        } else {
            // The client retransmits a SYN its server never answered: the neighbour toward
            // that server may have changed its MAC.
            let unanswered = v6.conns.get(id);
            if let Some((server, since)) =
                unanswered.and_then(|c| super::retry::unanswered_server(fwd, &c, now))
            {
                doubt(v6, l3, server, since);
            }
            if let Some(c) = v6.conns.get_mut(id) {
                retry_of = super::retry::client_syn_again(fwd, c, now);
            }
            if retry_of.is_some() {
                if let Some(old) = retire(v6, fwd, id, now) {
                    // The client's first attempt, not a new connection (`Limiter::refund`).
                    fwd.limits_mut().refund(old.svc, IpAddr::V6(tuple.src_ip()));
                }
                found = None;
            }
        }
    }
    if let Some(id) = found.filter(|&id| expires_without_server(v6, fwd, id)) {
        // IPVS's `expire_nodest_conn`, as IPv4's: the entry goes at its next packet; a UDP
        // datagram is scheduled afresh, a TCP segment dropped (its client's next SYN is new).
        remove(v6, fwd, id);
        if is_tcp {
            return Verdict::Drop(Drop::NoRealServer.into(), pkt);
        }
        fwd.stats.resched_udp_removed += 1;
        found = None;
    }
    let created = found.is_none();
    let id = match found {
        Some(id) => id,
        None => {
            // A client packet this worker has no connection for goes to the owner of its client
            // tuple before anything is scheduled, as IPv4's do (`forward::owner`): a flow whose
            // packets the NIC or the kernel spreads over several queues (af_packet's fanout rolls
            // a busy socket's packets over to another) stays whole. A NAT service's owner is the
            // hash of the client's address and port, which its replies carry too (`forward::nat`).
            let elsewhere =
                fwd.client_owner_elsewhere6(meta, v.dst, dport, v.proto.0, v.src, sport);
            if let Some(w) = elsewhere {
                return fwd.hand_client_to(w, pkt);
            }
            // A kernel-owned VIP that no twin holds: another box serves it (its connections
            // synced here are still served above).
            if l3.topo().silent6.contains(&v.dst) {
                return Verdict::Drop(Drop::VipNotHeld.into(), pkt);
            }
            // The SYN proxy (`proxied`): a SYN answered with a cookie, an ACK that proves one
            // opens the connection.
            if is_tcp && retry_of.is_none() && fwd.synproxy.is_ready6() {
                match super::proxied::gate(v6, l3, fwd, &pkt, v, &tuple, flags) {
                    super::proxied::Gate::Pass => {}
                    super::proxied::Gate::Answer => {
                        return super::proxied::answer_syn(v6, l3, fwd, pkt, v, &tuple)
                    }
                    super::proxied::Gate::Refuse(r) => return Verdict::Drop(r.into(), pkt),
                    super::proxied::Gate::Open(client_syn) => {
                        return match new_conn(v6, l3, fwd, tuple, (true, flags, None), now) {
                            Ok(id) => super::proxied::open(v6, l3, fwd, pkt, v, id, client_syn),
                            Err(r @ (Drop::LimitRate | Drop::LimitConns)) => {
                                let came = (meta.port, ethernet_src(&pkt));
                                super::proxied::limit_rst(v6, l3, fwd, &pkt, v, &tuple, came);
                                Verdict::Drop(r.into(), pkt)
                            }
                            Err(r) => Verdict::Drop(r.into(), pkt),
                        };
                    }
                }
            }
            match new_conn(v6, l3, fwd, tuple, (syn, flags, retry_of), now) {
                Ok(id) => id,
                Err(r @ (Drop::LimitRate | Drop::LimitConns)) => {
                    let came = (meta.port, ethernet_src(&pkt));
                    limit_rst(v6, l3, fwd, &tuple, (syn, isn1), came);
                    return Verdict::Drop(r.into(), pkt);
                }
                Err(r) => return Verdict::Drop(r.into(), pkt),
            }
        }
    };
    let seg = ClientSegment {
        sport,
        flags,
        isn1,
        created,
        retry_of,
    };
    forward_client(v6, l3, fwd, pkt, v, id, seg)
}

/// What [`forward_client`] takes of a client's segment besides the packet.
pub(super) struct ClientSegment {
    pub sport: u16,
    pub flags: u8,
    /// A SYN's sequence number plus one (0 for another segment).
    pub isn1: u32,
    /// Its connection was created for it.
    pub created: bool,
    /// The server a retry avoided (`retry`).
    pub retry_of: Option<u16>,
}

/// A client's segment of connection `id`, its state moved and the packet sent on toward the
/// real server (FullNAT, NAT, NAT64, DR, TUN); also the SYN and segments the SYN proxy makes
/// of a client's (`proxied`).
pub(super) fn forward_client<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    fwd: &mut Forwarder,
    mut pkt: B,
    v: &Ipv6In,
    id: ConnId,
    seg: ClientSegment,
) -> Verdict<B> {
    let ClientSegment {
        sport,
        flags,
        isn1,
        created,
        retry_of,
    } = seg;
    let is_tcp = v.proto == IpProtocol::TCP;
    let syn = is_tcp && flags & tcp_flags::SYN != 0 && flags & tcp_flags::ACK == 0;
    let now = Ticks(l3.now_ms);
    let proxied = is_tcp && super::proxied::is_proxied(&v6.conns, fwd, id);
    if proxied && flags & tcp_flags::SYN == 0 {
        // Held while its server has not answered the proxy's SYN.
        match super::proxied::hold(v6, l3, fwd, pkt, id) {
            Ok(verdict) => return verdict,
            Err(p) => pkt = p,
        }
    }
    // A packet of a tracked connection confirms the neighbour it came from (NUD).
    nd::confirm(v6, l3, v.src, pkt.data());
    let change = v6.conns.on_packet(id, Dir::Original, flags, now);
    v6.sync_note(id, change.old, now);
    let Some(c) = v6.conns.get_mut(id) else {
        return Verdict::Drop(Drop::NoConn.into(), pkt);
    };
    if is_tcp {
        limit_on_state(fwd, c, change, now);
    }
    if is_tcp && c.user2 == 0 {
        // The first SYN's ISN plus one, which tells the client's retransmissions from a new
        // connection on the same port (`reschedule`); IPv6 TCP uses `user2` for nothing else.
        c.user2 = isn1;
    }
    if created {
        // The creation time, for passive detection (`retry`).
        c.user = now.0 as u32;
        if retry_of.is_some() {
            c.set_flags(crate::forward::fullnat::RETRIED);
        }
    }
    let c = &*c;
    fwd.count_packet(c.svc, c.rs, Dir::Original, ip_len(v));
    let services = fwd.services();
    let vs = services.services.get(c.svc as usize);
    let real = vs.and_then(|vs| vs.svc.reals().get(c.rs as usize));
    // A real server removed from its service without `expire_nodest_conn` keeps its connections,
    // as IPVS keeps forwarding to a removed destination: FullNAT's and NAT's reply tuple names it
    // (NAT64's too, `nat64::to_server`). DR and TUN keep no address of it: their connections
    // expire at their next packet (`expires_without_server`).
    let rip = match (real.map(|r| r.addr), c.reply()) {
        (Some(addr), _) => Some(addr),
        (None, Some(r)) if c.mode() == mode::FULLNAT || c.mode() == mode::NAT => {
            Some(IpAddr::V6(r.src_ip()))
        }
        _ => None,
    };
    count_activity(services, c, change.activity());
    // Not on a fragment: the option would move the later fragments' offsets.
    let toa = syn && !v.is_fragment() && vs.is_some_and(|vs| vs.toa);
    if c.mode() == mode::NAT64 {
        return super::nat64::to_server(v6, l3, pkt, v, id, toa);
    }
    let Some(IpAddr::V6(rip)) = rip else {
        return Verdict::Drop(Drop::NoRealServer.into(), pkt);
    };
    let (conn_mode, reply) = (c.mode(), c.reply());
    if !is_tcp && reply.is_none() {
        // DR and TUN (no reply tuple): logged for the backup as the flow becomes answered (the
        // log skipped it above until now), as if its state had changed, as on IPv4.
        if crate::forward::client_datagram(&mut v6.conns, id) {
            v6.sync_note(id, State::None, now);
        }
    }
    let Some(route) = l3.topo().routes6.lookup(rip).copied() else {
        return Verdict::Drop(Drop::NoRoute.into(), pkt);
    };
    let verdict = match (conn_mode, reply) {
        (mode::FULLNAT, Some(r)) => {
            let (src, dst) = ((r.dst_ip(), r.dport), (r.src_ip(), r.sport));
            fullnat::rewrite(pkt.data_mut(), v.l4_off, v.proto, src, dst);
            if toa && is_tcp {
                let len = pkt.len();
                let room = pkt.room_mut();
                let at = ethernet::HEADER_LEN;
                match crate::wire::tcp::insert_toa6(room, len, at, v.l4_off, sport, v.src) {
                    Ok(n) => {
                        pkt.set_len(n);
                        l3.stats.inet6.toa_added += 1;
                    }
                    Err(_) => l3.stats.inet6.toa_skipped += 1,
                }
            }
            if proxied {
                super::proxied::translate(fwd, &mut pkt, v, id, Dir::Original);
            }
            nd::send_to(v6, l3, pkt, route.l2_target(rip), route.port)
        }
        (mode::NAT, Some(r)) => {
            let (src, dst) = ((v.src, sport), (r.src_ip(), r.sport));
            fullnat::rewrite(pkt.data_mut(), v.l4_off, v.proto, src, dst);
            if proxied {
                super::proxied::translate(fwd, &mut pkt, v, id, Dir::Original);
            }
            nd::send_to(v6, l3, pkt, route.l2_target(rip), route.port)
        }
        (mode::TUN, _) => {
            let Some(src) = l3.topo().source6_for(route.port, rip) else {
                return Verdict::Drop(Drop::NoRoute.into(), pkt);
            };
            let mtu = fwd.mtu();
            match encapsulate(pkt, src, rip, mtu) {
                Ok(p) => nd::send_to(v6, l3, p, route.l2_target(rip), route.port),
                Err(p) => {
                    // What fits the tunnel (RFC 2473 7.1): never below IPv6's minimum MTU.
                    let fits = u32::from(mtu)
                        .saturating_sub(ipv6::HEADER_LEN as u32)
                        .max(1280);
                    if icmp::packet_too_big(v6, l3, p.data(), v.dst, v.src, fits) {
                        l3.stats.inet6.too_big_sent += 1;
                    }
                    return Verdict::Drop(Drop::Ipv6TooBig.into(), p);
                }
            }
        }
        // DR reaches only a real server on the link: a router would route the packet, still
        // addressed to the VIP, back here.
        _ if route.via.is_some() => return Verdict::Drop(Drop::NoRoute.into(), pkt),
        _ => nd::send_to(v6, l3, pkt, rip, route.port),
    };
    if !matches!(verdict, Verdict::Drop(..)) {
        l3.stats.inet6.forwarded += 1;
    }
    verdict
}

/// Schedules a new connection for the client tuple `tuple` and creates its entry (with a local
/// address and port for FullNAT); the drop reason when it cannot. `syn`: it opens as a client's
/// SYN does (the SYN proxy's completion too); `flags`: the segment's TCP flags, which decide
/// whether another segment may open one (`sloppy_tcp`). `retry_of`: the real server
/// whose handshake with this client failed (`syn_retry`): another is picked if one may take it,
/// and the new connection is not retried again.
fn new_conn<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    fwd: &mut Forwarder,
    tuple: Tuple6,
    (syn, flags, retry_of): (bool, u8, Option<u16>),
    now: Ticks,
) -> Result<ConnId, Drop> {
    let (vip, dport) = (tuple.dst_ip(), tuple.dport);
    let worker = usize::from(l3.worker);
    let services = fwd.services();
    let si = services
        .find6(vip, dport, tuple.proto)
        .ok_or(Drop::NoService)?;
    let is_tcp = tuple.proto == crate::conn::PROTO_TCP;
    // `sloppy_tcp` starts a connection on any segment but a RST, or a SYN-ACK, which only a
    // server sends (IPVS's, as IPv4's); without it, a SYN only.
    let sloppy = is_tcp && !syn;
    if sloppy
        && (flags & (tcp_flags::RST | tcp_flags::SYN) != 0
            || !services.services[si as usize].sloppy_tcp)
    {
        return Err(Drop::NoConn);
    }
    // Who may connect: decided before any state exists (`forward::acl`).
    if !fwd.acl_allows(si, IpAddr::V6(tuple.src_ip())) {
        return Err(Drop::AclDenied);
    }
    // Per-client limits, also before any state exists, as on IPv4 (`forward::limit`); a refused
    // SYN is dropped, and with `action = "rst"` answered (`limit_rst`).
    let client = IpAddr::V6(tuple.src_ip());
    // A retry got back the token its first attempt took, as on IPv4.
    if let Err(why) = fwd.limits_mut().check(si as usize, client, l3.now_ms) {
        return Err(match why {
            Refused::Rate => Drop::LimitRate,
            Refused::Conns => Drop::LimitConns,
        });
    }
    // At the bound on half-open connections, a SYN takes the place of an older half-open one
    // (under a SYN flood, one from a spoofed source), as on IPv4 (`forward::fullnat`); none
    // found, it is refused. Established connections are never taken.
    if is_tcp
        && !sloppy
        && v6.conns.half_open() >= fwd.max_half_open6() as usize
        && make_room(v6, l3, fwd, Room::HalfOpen).is_none()
    {
        return Err(Drop::HalfOpenLimit);
    }
    // The scheduler's pick (the snapshot borrowed, not cloned: an `Arc` clone per connection
    // would bounce its count between workers, as `forward::fullnat` notes).
    let (picked, other) = {
        let (services, sched) = fwd.services_and_sched();
        let vs = &services.services[si as usize];
        let key = ClientKey::new(tuple.src_ip(), tuple.sport, vip);
        let state = sched.get_mut(si as usize).ok_or(Drop::NoService)?;
        let other =
            retry_of.and_then(|not| super::retry::pick_other(state, vs, key, l3.now_ms, not));
        let ri = other.or_else(|| state.pick(&vs.svc, &*vs.svc, key, l3.now_ms));
        let picked = ri.map(|ri| {
            let rs = &vs.svc.reals()[ri];
            (ri, rs.fwd, rs.addr, rs.port)
        });
        (picked, other)
    };
    if retry_of.is_some() && other.is_none() {
        // Where the scheduler sends it, as IPv4's (`syn_retry_no_other`).
        super::retry::count_no_other(fwd);
    }
    let (ri, rs_fwd, rs_addr, rport) = picked.ok_or(Drop::NoRealServer)?;
    let proto = tuple.proto;
    let (reply, mode_id) = match (rs_fwd, rs_addr) {
        // A mid-flow packet can continue only a connection whose packets reach the real server
        // unchanged.
        (FwdMode::FullNat | FwdMode::Nat, _) if sloppy => return Err(Drop::NoConn),
        (FwdMode::FullNat, IpAddr::V4(rip)) => {
            let reply = super::nat64::allocate(v6, fwd, si, rip, rport, proto)
                .ok_or(Drop::PortsExhausted)?;
            (Some(reply), mode::NAT64)
        }
        (FwdMode::FullNat, IpAddr::V6(rip)) => {
            // Out of local ports (connections in TIME_WAIT holding them, with `capacity6` above
            // the ports), the oldest gives way as in a full table, and its port is taken if it
            // serves this connection, as on IPv4 (`forward::fullnat`'s `room_for_port`).
            let mut freed = None;
            let mut evicted = 0;
            let reply = loop {
                // The freed port, else a search from the cursor, which the last one moved on.
                // A match, not `Option::or_else`: its closure was compiled out of line once
                // `new_conn` took the segment's flags, a call a new connection (`syn6-net` 2922
                // -> 2952 with no change here).
                let found = match freed.and_then(|port| v6.take_freed(si, port, rip, rport, proto))
                {
                    Some(reply) => Some(reply),
                    None => {
                        let (services, layout) = (fwd.services(), fwd.layout());
                        v6.allocate(si, services, layout, worker, rip, rport, proto)
                    }
                };
                if let Some(reply) = found {
                    break reply;
                }
                // No pool at all (no IPv6 local address): nothing an eviction would give.
                if !v6.has_pool(si) {
                    return Err(Drop::PortsExhausted);
                }
                evicted += 1;
                let taken = room_for_port(evicted).and_then(|room| make_room(v6, l3, fwd, room));
                let Some(c) = taken else {
                    return Err(Drop::PortsExhausted);
                };
                // Another service's too: `take_freed` checks the LIP is one of this service's.
                freed = c
                    .reply()
                    .filter(|_| c.mode() == mode::FULLNAT)
                    .map(|r| (r.dst_ip(), r.dport));
            };
            (Some(reply), mode::FULLNAT)
        }
        (FwdMode::Nat, IpAddr::V6(rip)) => {
            let reply = Tuple6::new(rip, rport, tuple.src_ip(), tuple.sport, proto);
            (Some(reply), mode::NAT)
        }
        (FwdMode::Dr, _) => (None, mode::DR),
        (FwdMode::Tun, _) => (None, mode::TUN),
        // `Service::check` lets IPv4 servers into an IPv6 service in FullNAT only.
        (FwdMode::Nat, IpAddr::V4(_)) => return Err(Drop::NoRealServer),
    };
    let mut inserted = v6
        .conns
        .insert(tuple, reply, si as u16, ri as u16, mode_id, now);
    if inserted == Err(InsertError::TableFull) && make_room(v6, l3, fwd, Room::Table).is_some() {
        inserted = v6
            .conns
            .insert(tuple, reply, si as u16, ri as u16, mode_id, now);
    }
    let id = match inserted {
        Ok(id) => id,
        Err(e) => {
            // A NAT64 connection's IPv4 local port goes back to its pool.
            if let Some((lip, lport)) = nat64_local_port(mode_id, reply) {
                if let Some(pool) = fwd.pool_mut(si) {
                    pool.free(lip, lport);
                }
            }
            // As on IPv4: a tuple already held is no new connection of this packet's.
            return Err(match e {
                InsertError::TableFull => Drop::ConnTableFull,
                InsertError::Duplicate => Drop::NoConn,
            });
        }
    };
    if other.is_some() {
        fwd.stats.syn_retried += 1;
    }
    if sloppy {
        fwd.stats.sloppy_created += 1;
    }
    if let Some(s) = fwd.services().services[si as usize].svc.stats(ri) {
        s.on_conn_new();
    }
    v6.lip_conns.started(&tuple, reply.as_ref(), mode_id);
    fwd.limits_mut().opened(si as u16, client, l3.now_ms);
    fwd.count_conn(si as u16, ri as u16);
    l3.stats.inet6.conns_created += 1;
    Ok(id)
}

/// A packet from a real server to an IPv6 local address: the reply of a FullNAT connection,
/// translated back toward its client; a reply of another worker's connection is handed to the
/// owner of its local port.
pub fn from_server<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    fwd: &mut Forwarder,
    pkt: B,
    meta: &RxMeta,
    v: &Ipv6In,
    pre: Prelookup,
) -> Verdict<B> {
    reply(v6, l3, fwd, pkt, meta, v, ReplyOwner::LocalPort, pre)
}

/// A packet from an IPv6 NAT real server to a client: the reply of a NAT connection, given the
/// VIP as source again; a reply of another worker's connection is handed to the owner of its
/// client (`owner_of_client6`).
pub fn nat_reply<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    fwd: &mut Forwarder,
    pkt: B,
    meta: &RxMeta,
    v: &Ipv6In,
    pre: Prelookup,
) -> Verdict<B> {
    reply(v6, l3, fwd, pkt, meta, v, ReplyOwner::Client, pre)
}

/// Which worker holds a reply's connection when this one does not.
#[derive(Clone, Copy)]
pub(super) enum ReplyOwner {
    /// The owner of the local port it is addressed to (FullNAT).
    LocalPort,
    /// The owner of the client's address and port it is addressed to (NAT).
    Client,
}

/// A real server's reply: the connection found by the reply tuple, the packet sent to the client
/// from VIP:vport (FullNAT also changes the destination; for NAT it already is the client).
#[allow(clippy::too_many_arguments)]
fn reply<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    fwd: &mut Forwarder,
    pkt: B,
    meta: &RxMeta,
    v: &Ipv6In,
    owner: ReplyOwner,
    pre: Prelookup,
) -> Verdict<B> {
    let unverified = |seg: &Segment| super::hot::forwards_unverified(v6, l3, fwd, v, seg);
    match l4_of(pkt, meta, v, pre, unverified) {
        Ok((pkt, seg)) => reply_segment(v6, l3, fwd, pkt, meta, v, owner, seg),
        Err(verdict) => verdict,
    }
}

/// `reply` for a segment whose upper-layer header was checked (`seg`).
#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) fn reply_segment<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    fwd: &mut Forwarder,
    mut pkt: B,
    meta: &RxMeta,
    v: &Ipv6In,
    owner: ReplyOwner,
    seg: Segment,
) -> Verdict<B> {
    let Segment {
        sport,
        dport,
        flags,
        pre,
    } = seg;
    let tuple = Tuple6::new(v.src, sport, v.dst, dport, v.proto.0);
    let Some((id, Dir::Reply)) = v6.conns.resolve(&tuple, pre) else {
        let layout = fwd.layout();
        let w = match owner {
            ReplyOwner::LocalPort => layout.contains(dport).then(|| layout.owner_of(dport)),
            ReplyOwner::Client => Some(crate::forward::owner::owner_of_client6(
                v.dst,
                dport,
                fwd.n_workers(),
            )),
        };
        return match w {
            Some(w) if !meta.from_peer && w != usize::from(l3.worker) => {
                Verdict::ToWorker(w as u16, pkt)
            }
            _ => Verdict::Drop(Drop::NoConn.into(), pkt),
        };
    };
    if v6.conns.get(id).is_some_and(|c| parked(&c)) {
        // A late packet of a connection its client has replaced.
        return Verdict::Drop(Drop::NoConn.into(), pkt);
    }
    if expires_without_server(v6, fwd, id) {
        // `expire_nodest_conn` on the server's side too, as IPv4's: the entry goes with it.
        remove(v6, fwd, id);
        return Verdict::Drop(Drop::NoRealServer.into(), pkt);
    }
    let is_tcp = v.proto == IpProtocol::TCP;
    let proxied = is_tcp && super::proxied::is_proxied(&v6.conns, fwd, id);
    if proxied {
        match super::proxied::server_pending(v6, l3, fwd, pkt, v, id, flags) {
            Ok(verdict) => return verdict,
            Err(p) => pkt = p,
        }
    }
    if is_tcp && super::retry::server_segment(&mut v6.conns, fwd, id, flags) {
        // The server is there: the client's SYN that the held refusal brings does not doubt
        // its neighbour (`nd::suspect`).
        nd::confirm_at_once(v6, l3, v.src, pkt.data());
        return Verdict::Drop(Drop::RstHeldForRetry.into(), pkt);
    }
    let (change, heard) = server_state(&mut v6.conns, fwd, id, flags, is_tcp, Ticks(l3.now_ms));
    v6.sync_note(id, change.old, Ticks(l3.now_ms));
    let Some(c) = v6.conns.get(id) else {
        return Verdict::Drop(Drop::NoConn.into(), pkt);
    };
    if is_tcp {
        limit_on_state(fwd, &c, change, Ticks(l3.now_ms));
    }
    fwd.count_packet(c.svc, c.rs, Dir::Reply, ip_len(v));
    count_activity(fwd.services(), &c, change.activity());
    let client = c.client();
    let (cip, vip) = (client.src_ip(), client.dst_ip());
    let (src, dst) = ((vip, client.dport), (cip, client.sport));
    // A packet of a tracked connection confirms the neighbour it came from (NUD); one that
    // heard the server in its handshake at once, so that a client's SYN retransmitted later does
    // not doubt the neighbour for the server's silence (`retry::unanswered_server`,
    // `nd::suspect`).
    match heard {
        true => nd::confirm_at_once(v6, l3, v.src, pkt.data()),
        false => nd::confirm(v6, l3, v.src, pkt.data()),
    }
    fullnat::rewrite(pkt.data_mut(), v.l4_off, v.proto, src, dst);
    if proxied {
        super::proxied::translate(fwd, &mut pkt, v, id, Dir::Reply);
    }
    to_client(v6, l3, pkt, cip)
}

/// The state change a segment with `flags` from the real server makes on FullNAT or NAT64
/// connection `id`, and whether the server was heard from in its handshake: a bare ACK to the
/// client's SYN from its TIME_WAIT, alive, so that the client's wait for its SYN-ACK starts again
/// (`retry`'s `user`), as IPv4's (`Forwarder::keeps_syn_recv`).
///
/// A server's bare ACK leaves a connection in SYN_RECV (`handshake_answered`), where IPVS's
/// state table would make it ESTABLISHED, for 15 minutes, holding its local port and counting as
/// its server's active connection.
pub(super) fn server_state(
    conns: &mut ConnTable6,
    fwd: &mut Forwarder,
    id: ConnId,
    flags: u8,
    is_tcp: bool,
    now: Ticks,
) -> (StateChange, bool) {
    let state_flags = tcp_flags::SYN | tcp_flags::RST | tcp_flags::FIN | tcp_flags::ACK;
    let keep = match is_tcp && flags & state_flags == tcp_flags::ACK {
        true => handshake_answered(conns, id),
        false => None,
    };
    let Some(answered) = keep else {
        return (conns.on_packet(id, Dir::Reply, flags, now), false);
    };
    match answered {
        false => fwd.stats.server_time_wait += 1,
        true => fwd.stats.server_stale_answer += 1,
    }
    if !answered {
        if let Some(c) = conns.get_mut(id) {
            c.user = now.0 as u32;
        }
    }
    let kept = StateChange {
        old: State::SynRecv,
        new: State::SynRecv,
    };
    (kept, !answered)
}

/// Whether `id` is a FullNAT or NAT64 connection in SYN_RECV, and if so whether its server has
/// answered its client's SYN with a SYN-ACK (`retry::ANSWERED`). A server's bare ACK then leaves
/// the connection in SYN_RECV, as IPv4's (`Forwarder::keeps_syn_recv`): unanswered, the server
/// holds the LIP:lport in TIME_WAIT from an earlier connection, the client's RST ends that, and
/// its SYN sent again at once then reaches the same LIP:lport (`server_time_wait`); answered,
/// the SYN-ACK was the server's for an earlier handshake on the same LIP:lport that the gateway
/// let go (`server_stale_answer`).
fn handshake_answered(conns: &ConnTable6, id: ConnId) -> Option<bool> {
    conns
        .get(id)
        .filter(|c| matches!(c.mode(), mode::FULLNAT | mode::NAT64))
        .filter(|c| c.state() == State::SynRecv)
        .map(|c| c.ext() & super::retry::ANSWERED != 0)
}

/// Whether entry `id`, found by a packet of either side, is to be removed before it is forwarded: its
/// real server was removed from the service (or the service itself) and either the service
/// expires such connections (`expire_nodest_conn`) or the entry keeps no address of its server
/// to forward to (DR, TUN).
fn expires_without_server<B: PacketBuf>(v6: &Inet6<B>, fwd: &Forwarder, id: ConnId) -> bool {
    let Some(c) = v6.conns.get(id) else {
        return false;
    };
    c.rs == NO_DEST
        && !parked(&c)
        && (fwd.expire_nodest(c.svc)
            || !matches!(c.mode(), mode::FULLNAT | mode::NAT | mode::NAT64))
}

/// Why a client's SYN that found entry `id` starts a new connection instead, if it does (a reused
/// client port: `forward::reuse`, IPVS's `conn_reuse_mode`; DR and TUN see only the client's
/// side). `isn1`: the SYN's sequence number plus one, against the first SYN's in `user2`.
fn reschedule(conns: &ConnTable6, fwd: &Forwarder, id: ConnId, isn1: u32) -> Option<Resched> {
    let c = conns.get(id)?;
    let vs = fwd.services().services.get(c.svc as usize);
    let dest = vs
        .and_then(|vs| vs.svc.reals().get(c.rs as usize))
        .map_or(reuse::Dest::Removed, |r| reuse::Dest::Weight(r.weight));
    let nodest = vs.is_some_and(|vs| vs.svc.expire_nodest_conn());
    let input_only = c.reply().is_none();
    reuse::on_syn(
        fwd.conn_reuse_mode(),
        nodest,
        c.state(),
        input_only,
        dest,
        c.user2 != 0 && c.user2 != isn1,
    )
}

/// A SYN its client's limit refused, answered with a RST from VIP:vport when the limit's
/// `action` is `rst` (RST+ACK of the SYN, `isn1` its sequence number plus one), as IPv4's
/// (`forward::fullnat`); counted in `rst_sent` or `rst_unsent`.
#[cold]
fn limit_rst<B: PacketBuf>(
    v6: &Inet6<B>,
    l3: &mut L3<B>,
    fwd: &mut Forwarder,
    tuple: &Tuple6,
    (syn, isn1): (bool, u32),
    came: (u16, crate::wire::MacAddr),
) {
    let Some(si) = fwd
        .services()
        .find6(tuple.dst_ip(), tuple.dport, tuple.proto)
    else {
        return;
    };
    let rst = fwd.limits_mut().limit(si as usize).is_some_and(|l| l.rst);
    if !(rst && syn && tuple.proto == crate::conn::PROTO_TCP) {
        return;
    }
    let from = (tuple.dst_ip(), tuple.dport);
    match super::common::tcp_rst(v6, l3, from, (tuple.src_ip(), tuple.sport), isn1, came) {
        true => fwd.stats.rst_sent += 1,
        false => fwd.stats.rst_unsent += 1,
    }
}

/// The MAC a frame came from.
fn ethernet_src<B: PacketBuf>(pkt: &B) -> crate::wire::MacAddr {
    crate::wire::EthernetFrame::new_unchecked(pkt.data()).src()
}

/// A TCP connection entering TIME_WAIT or CLOSE stops counting against its client's limit of
/// open connections, and one leaving them counts again, as IPv4's (`forward::fullnat`).
#[inline]
pub(super) fn limit_on_state(
    fwd: &mut Forwarder,
    c: &ConnOf<Tuple6>,
    change: StateChange,
    now: Ticks,
) {
    if !change.changed() || ended(change.old) == ended(change.new) {
        return;
    }
    let client = IpAddr::V6(c.client().src_ip());
    match ended(change.new) {
        true => fwd.limits_mut().gone(c.svc, client),
        false => fwd.limits_mut().opened(c.svc, client, now.0),
    }
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

/// The IPv4 local address and port a NAT64 connection (`mode`) took from its service's pool,
/// as its reply tuple names them (IPv4-mapped); None for any other connection.
pub fn nat64_local_port(mode: u8, reply: Option<Tuple6>) -> Option<(std::net::Ipv4Addr, u16)> {
    let r = reply.filter(|_| mode == crate::forward::mode::NAT64)?;
    Some((r.dst_ip().to_ipv4_mapped()?, r.dport))
}

/// An IPv6 connection is gone before its time (replaced or evicted): its real server's count
/// drops and a NAT64 connection gives its IPv4 local port back (`Inet6::tick` does the same
/// for those that expire).
pub(super) fn gone(
    lip_conns: &mut super::fullnat::LipConns,
    fwd: &mut Forwarder,
    c: &ConnOf<Tuple6>,
) {
    release(fwd.services(), c);
    lip_conns.ended(c);
    if counted_open(c) {
        fwd.limits_mut()
            .gone(c.svc, IpAddr::V6(c.client().src_ip()));
    }
    if let Some((lip, lport)) = nat64_local_port(c.mode(), c.reply()) {
        if let Some(pool) = fwd.pool_mut(u32::from(c.svc)) {
            pool.free(lip, lport);
        }
    }
}

/// Removes IPv6 connection `id` before its time (a sync record replaces it, its real server was
/// removed), its counts ended as an eviction's are.
pub(super) fn remove<B: PacketBuf>(v6: &mut Inet6<B>, fwd: &mut Forwarder, id: ConnId) {
    if let Some(c) = v6.conns.remove(id) {
        gone(&mut v6.lip_conns, fwd, &c);
    }
}

/// Ends IPv6 connection `id` for its client, who opened a new connection on its tuple
/// (`reschedule`) or sends its SYN again toward another server (`retry`), as IPv4's
/// `Forwarder::retire`: its counts end now (`gone`), and a FullNAT entry is parked for TIME_WAIT's
/// timeout under its reply tuple reversed, LIP:lport -> RIP:rport, which no packet carries
/// ([`parked`]), so that no new connection takes that tuple while the real server may still hold
/// it in TIME_WAIT (`forward::fullnat::PARKED` says what that costs); anything else is removed.
/// The connection as it was, if `id` was live.
pub(super) fn retire<B: PacketBuf>(
    v6: &mut Inet6<B>,
    fwd: &mut Forwarder,
    id: ConnId,
    now: Ticks,
) -> Option<ConnOf<Tuple6>> {
    let old = *v6.conns.get(id)?;
    gone(&mut v6.lip_conns, fwd, &old);
    let held = match (old.mode(), old.reply()) {
        (mode::FULLNAT, Some(r)) => v6.conns.park(id, r.reversed(), now).is_ok(),
        _ => false,
    };
    match v6.conns.get_mut(id).filter(|_| held) {
        // No service or server: nothing counts it again when it expires or is evicted, and
        // sync does not export it.
        Some(c) => (c.svc, c.rs) = (NO_DEST, NO_DEST),
        None => {
            v6.conns.remove(id);
        }
    }
    Some(old)
}

/// Whether `c` is an entry parked by `retire`: its client tuple is its reply tuple reversed
/// (a connection's own never is: the client is not the local address). It forwards nothing; its
/// server's late packets are dropped (`no_conn`).
#[inline]
pub fn parked(c: &ConnOf<Tuple6>) -> bool {
    // No real server first: only a parked entry or an orphan of a removed one has none.
    c.rs == NO_DEST && c.reply().is_some_and(|r| c.client() == r.reversed())
}

/// Removes one IPv6 connection to make room for a new one as the IPv4 side does
/// (`forward::fullnat::Room`), counted in `ipv6_evicted_time_wait`, `ipv6_evicted_udp` or
/// `ipv6_evicted_embryonic`; the connection removed, if there was one.
pub(super) fn make_room<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    fwd: &mut Forwarder,
    room: Room,
) -> Option<ConnOf<Tuple6>> {
    let counts = &mut l3.stats.inet6;
    let taken = match room {
        Room::Table => v6.conns.evict_closed().map(|c| {
            let count = match c.proto() {
                crate::conn::PROTO_TCP => &mut counts.evicted_time_wait,
                _ => &mut counts.evicted_udp,
            };
            (c, count)
        }),
        Room::TimeWait => v6
            .conns
            .evict_time_wait()
            .map(|c| (c, &mut counts.evicted_time_wait)),
        Room::HalfOpen => None,
    }
    .or_else(|| {
        (room != Room::TimeWait)
            .then(|| v6.conns.evict_embryonic())
            .flatten()
            .map(|c| (c, &mut counts.evicted_embryonic))
    });
    let (c, count) = taken?;
    *count += 1;
    gone(&mut v6.lip_conns, fwd, &c);
    Some(c)
}

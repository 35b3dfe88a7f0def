//! Neighbour discovery (RFC 4861) for the gateway's own IPv6 addresses and its next hops.
//!
//! - A solicitation for an owned address (the port's IPv6 addresses and link-local address, an
//!   IPv6 VIP) is answered with an advertisement (solicited and override set; to all nodes for a
//!   duplicate-address probe, whose source is unspecified). Its sender, when it gives its
//!   link-layer address, is learned (RFC 4861 7.2.3: a new entry is STALE). A solicitation for
//!   another address goes up to the twin, or, without one, is left alone (as an ARP request for
//!   another address is).
//! - An advertisement updates an existing entry only (7.2.5): solicited, it makes it REACHABLE;
//!   unsolicited with a new address, STALE. Packets that waited for it leave; other workers hear
//!   of it (`Event::Learned6`), since the answer may reach another worker than the question. They
//!   hear of a solicitation's sender too, whose link-layer address may have changed.
//! - Resolving a next hop sends a solicitation to its solicited-node group, from the port's
//!   address on its prefix; NUD probes are unicast. Retries and aging are the IPv4 table's.
//!
//! Every message is validated as 7.1.1 and 7.1.2 say (hop limit 255, code 0, checksum, length, a
//! unicast target, no source link-layer option from the unspecified address); a failure is
//! dropped as `nd_invalid`.

use super::{Inet6, Ipv6In};
use crate::forward::ServiceTable;
use crate::net::l3::{ConfirmCache, Sender};
use crate::net::Resolve;
use crate::net::{punt, L3};
use crate::packet::{Event, Verdict};
use crate::packet::{PacketBuf, RxMeta};
use crate::stats::Drop;
use crate::wire::icmpv6::{self, nd_option, Icmpv6Packet};
use crate::wire::{ethernet, EtherType, EthernetFrame, MacAddr};
use std::net::Ipv6Addr;

/// An advertisement with its target link-layer option: Ethernet, IPv6 and 32 bytes of ICMPv6.
const NA_FRAME_LEN: usize = ethernet::HEADER_LEN + crate::wire::ipv6::HEADER_LEN + 32;

/// The all-nodes group, where an answer to a duplicate-address probe goes (RFC 4861 7.2.4).
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The checks every neighbour discovery message passes (RFC 4861 7.1.1, 7.1.2), and its target.
fn validate<B: PacketBuf>(pkt: &B, v: &Ipv6In) -> Option<Ipv6Addr> {
    if v.hop_limit != icmpv6::ND_HOP_LIMIT || v.is_fragment() {
        return None;
    }
    let m = Icmpv6Packet::new_checked(&pkt.data()[v.l4_off..v.end]).ok()?;
    if m.code() != 0 || !m.verify_checksum(v.src, v.dst) {
        return None;
    }
    let target = m.nd_target();
    (!target.is_multicast()).then_some(target)
}

/// A neighbour solicitation received on `meta.port`.
pub fn solicitation<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    services: &ServiceTable,
    pkt: B,
    meta: &RxMeta,
    v: &Ipv6In,
) -> Verdict<B> {
    let Some(target) = validate(&pkt, v) else {
        return Verdict::Drop(Drop::NdInvalid.into(), pkt);
    };
    let m = Icmpv6Packet::new_unchecked(&pkt.data()[v.l4_off..v.end]);
    let Ok(slla) = m.nd_link_addr(nd_option::SOURCE_LINK_ADDR) else {
        return Verdict::Drop(Drop::NdInvalid.into(), pkt);
    };
    let dad = v.src.is_unspecified();
    if dad && (slla.is_some() || v.dst != icmpv6::solicited_node(target)) {
        return Verdict::Drop(Drop::NdInvalid.into(), pkt);
    }
    let owned = l3.topo().owns6_on(meta.port, target) || {
        let kind = services.kind6(target);
        // A kernel-owned VIP (and its LIPs) only while a twin holds it (`Topology::silent6`).
        (kind.vip || kind.lip) && !l3.topo().silent6.contains(&target)
    };
    if !owned {
        // Another host's (the port sees its neighbours' solicitations): the kernel's, if there
        // is a twin, else nothing to do, as with an ARP request for another address.
        if !l3
            .topo()
            .ports
            .get(meta.port as usize)
            .is_some_and(|p| p.twin)
        {
            return Verdict::Done(pkt);
        }
        let why = if v.dst.is_multicast() {
            punt::Punt::Multicast
        } else {
            punt::Punt::Local
        };
        return l3.punt(meta.port, pkt, why, Drop::Ipv6NotForUs);
    }
    if let (false, Some(mac)) = (dad, slla) {
        learn(v6, l3, v.src, mac, meta.port, true, false);
        // The other workers too, as for an ARP request to one of our addresses
        // (`L3::handle_arp`): the solicitation may reach another worker than the one that sends
        // to its sender, which would otherwise keep an old MAC (a server whose MAC changed: Linux
        // then solicits from the new one, and advertises nothing by default, `ndisc_notify`)
        // until its own probes of the old one failed.
        l3.announce(Event::Learned6 {
            ip: v.src,
            mac,
            port: meta.port,
        });
    }
    let Some(port_mac) = l3.topo().ports.get(meta.port as usize).map(|p| p.mac) else {
        return Verdict::Drop(Drop::NdInvalid.into(), pkt);
    };
    let frame_src = EthernetFrame::new_unchecked(pkt.data()).src();
    let mut pkt = pkt;
    let (dst, eth_dst, flags) = if dad {
        (
            ALL_NODES,
            icmpv6::multicast_mac(ALL_NODES),
            icmpv6::NA_OVERRIDE,
        )
    } else {
        (
            v.src,
            slla.unwrap_or(frame_src),
            icmpv6::NA_SOLICITED | icmpv6::NA_OVERRIDE,
        )
    };
    // Answered in place, as ARP is: the advertisement (86 bytes) fits any frame's room.
    let room = pkt.room_mut();
    let written = (|| {
        let (eth, rest) = room
            .get_mut(..NA_FRAME_LEN)?
            .split_at_mut(ethernet::HEADER_LEN);
        let n = icmpv6::write_neighbor_advert(rest, target, dst, target, port_mac, flags)?;
        ethernet::write_header(eth, eth_dst, port_mac, EtherType::IPV6).ok()?;
        Some(ethernet::HEADER_LEN + n)
    })();
    match written {
        Some(len) if pkt.set_len(len) => {
            l3.stats.inet6.ns_answered += 1;
            Verdict::Tx(meta.port, pkt)
        }
        _ => Verdict::Drop(Drop::NoRoom.into(), pkt),
    }
}

/// A neighbour advertisement received on `meta.port`.
pub fn advertisement<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    pkt: B,
    meta: &RxMeta,
    v: &Ipv6In,
) -> Verdict<B> {
    let Some(target) = validate(&pkt, v) else {
        return Verdict::Drop(Drop::NdInvalid.into(), pkt);
    };
    let m = Icmpv6Packet::new_unchecked(&pkt.data()[v.l4_off..v.end]);
    let solicited = pkt.data()[v.l4_off + 4] & icmpv6::NA_SOLICITED != 0;
    if solicited && v.dst.is_multicast() {
        return Verdict::Drop(Drop::NdInvalid.into(), pkt);
    }
    let Ok(tlla) = m.nd_link_addr(nd_option::TARGET_LINK_ADDR) else {
        return Verdict::Drop(Drop::NdInvalid.into(), pkt);
    };
    let mac = tlla.unwrap_or_else(|| EthernetFrame::new_unchecked(pkt.data()).src());
    if v6.neigh.state(target).is_some() {
        l3.stats.inet6.na_learned += 1;
    }
    learn(v6, l3, target, mac, meta.port, false, solicited);
    // Whichever worker asked: the answer reaches the worker RSS (or the kernel's fanout) gives it.
    l3.announce(Event::Learned6 {
        ip: target,
        mac,
        port: meta.port,
    });
    // The kernel may be resolving the same neighbour through the twin.
    if l3
        .topo()
        .ports
        .get(meta.port as usize)
        .is_some_and(|p| p.twin)
    {
        l3.punt(meta.port, pkt, punt::Punt::Multicast, Drop::Ipv6NotForUs)
    } else {
        Verdict::Done(pkt)
    }
}

/// `NeighTable::learn`, with the packets that waited for `ip` sent (their MACs set).
pub(super) fn learn<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    ip: Ipv6Addr,
    mac: MacAddr,
    port: u16,
    create: bool,
    reply: bool,
) {
    let now = l3.now_ms;
    let src_mac = l3.topo().ports.get(port as usize).map(|p| p.mac);
    v6.neigh
        .learn(ip, mac, port, now, create, reply, |port, mac, mut p: B| {
            let mut eth = EthernetFrame::new_unchecked(p.data_mut());
            eth.set_dst(mac);
            if let Some(s) = src_mac {
                eth.set_src(s);
            }
            l3.settle_later(Verdict::Tx(port, p));
        });
}

/// Sends a neighbour solicitation for `target` on `port`: to its solicited-node group, or to
/// `unicast` (a NUD probe).
pub fn solicit<B: PacketBuf>(
    l3: &mut L3<B>,
    port: u16,
    target: Ipv6Addr,
    unicast: Option<MacAddr>,
) {
    let topo = l3.topo();
    let Some(p) = topo.ports.get(port as usize) else {
        return;
    };
    let mac = p.mac;
    let Some(src) = topo.source6_for(port, target) else {
        return;
    };
    let (dst, eth_dst) = match unicast {
        Some(m) => (target, m),
        None => {
            let g = icmpv6::solicited_node(target);
            (g, icmpv6::multicast_mac(g))
        }
    };
    l3.generate(port, |buf| {
        let (eth, rest) = buf.split_at_mut(ethernet::HEADER_LEN);
        let n = icmpv6::write_neighbor_solicit(rest, src, dst, target, mac)?;
        ethernet::write_header(eth, eth_dst, mac, EtherType::IPV6).ok()?;
        Some(ethernet::HEADER_LEN + n)
    });
    l3.stats.inet6.ns_sent += 1;
}

/// The datapath doubts the neighbour toward `ip` (a client retransmitted a SYN, first sent at
/// `since`, that the real server `ip` never answered): probed now, to the MAC it has, unless
/// confirmed since (`NeighTable::suspect`), as IPv4's `L3::suspect_neighbour`. A server whose MAC
/// changed without an unsolicited advertisement (Linux sends none unless `ndisc_notify` is set)
/// is then found again after the probes, where its REACHABLE entry would otherwise have kept
/// the old MAC for up to 1.5 × `base_reachable_ms`, and DELAY and PROBE taken their time after.
pub fn suspect<B: PacketBuf>(v6: &mut Inet6<B>, l3: &mut L3<B>, ip: Ipv6Addr, since: u64) {
    let Some(route) = l3.topo().routes6.lookup(ip).copied() else {
        return;
    };
    let target = route.l2_target(ip);
    if let Some((port, mac)) = v6.neigh.suspect(target, l3.now_ms, since) {
        l3.stats.inet6.neigh_suspected += 1;
        solicit(l3, port, target, Some(mac));
    }
}

/// A packet of a tracked connection, `frame`, received from `src`, confirms the neighbour it
/// came through (if the entry has the frame's source MAC): the connection makes forward progress
/// through it (RFC 4861 7.3.1). A busy real server whose replies come through the gateway
/// (FullNAT, NAT), or a router, then stays REACHABLE and is not probed; DR and TUN servers, whose
/// replies bypass the gateway, are not confirmed so. As IPv4's (`L3::confirm_neighbour`, whose
/// reasons hold here): keyed by the sending MAC, at most once per `CONFIRM_EVERY_MS` each, in
/// IPv6's own `Inet6::confirm_cache`. Costs a MAC's read and a compare a packet from the last
/// sender in the same millisecond, a multiply and its slot's compares more from another; the
/// rest is out of line.
#[inline(always)]
pub(crate) fn confirm<B: PacketBuf>(v6: &mut Inet6<B>, l3: &L3<B>, src: Ipv6Addr, frame: &[u8]) {
    if let Some(sender) = v6.confirm_cache.due(frame, l3.now_ms) {
        confirm_now(v6, l3, src, sender);
    }
}

/// `confirm` now, whatever the cache says: for a packet that proves its sender there at this
/// moment, which a later [`suspect`] compares with (a real server's bare ACK to a SYN from its
/// TIME_WAIT, or its refusal of a SYN held back for a retry), as IPv4's
/// `L3::confirm_neighbour_at_once`. Rare: out of line.
#[cold]
#[inline(never)]
pub fn confirm_at_once<B: PacketBuf>(v6: &mut Inet6<B>, l3: &L3<B>, src: Ipv6Addr, frame: &[u8]) {
    if let Some(sender) = ConfirmCache::sender(frame) {
        confirm_now(v6, l3, src, sender);
    }
}

/// Confirms the neighbour toward `src` if it has `sender`'s MAC, noted in `v6.confirm_cache`
/// (`ConfirmCache::claim`).
#[inline(never)]
fn confirm_now<B: PacketBuf>(v6: &mut Inet6<B>, l3: &L3<B>, src: Ipv6Addr, sender: Sender) {
    let Some(mac) = v6.confirm_cache.claim(sender, l3.now_ms) else {
        return;
    };
    if let Some(route) = l3.topo().routes6.lookup(src) {
        v6.neigh.confirm(route.l2_target(src), mac, l3.now_ms);
    }
}

/// Slots of the cache of resolved neighbours (direct-mapped).
pub const RESOLVED_SLOTS: usize = 64;

/// An entry of the two caches of where packets go: an address (a neighbour in `send_to`'s cache,
/// a destination in `send_toward`'s), the port, and the Ethernet header's first 12 bytes (the
/// neighbour's MAC, then the port's own). Valid while neither the neighbour table nor the topology
/// moved (`generation`, as IPv4's next-hop cache in `L3::route_out`).
///
/// - `send_to`'s cache, by neighbour: most packets go to a handful of real servers and routers,
///   and a hit saves the neighbour table's hash lookup and its state checks.
/// - `send_toward`'s, by destination: IPv4's next-hop cache for IPv6's established hot path. A hit
///   saves the route's lookup and `send_to` (40 and 87 instructions a packet in `datapath_cost
///   established6-burst-1k` at 9b54103); the route and the neighbour it led to are the same while
///   the generation is.
#[derive(Clone, Copy)]
pub struct Hop6 {
    addr: Ipv6Addr,
    port: u16,
    macs: [u8; 12],
    /// The neighbour table's generation plus the topology's, plus 1 (0 is never valid).
    generation: u64,
    /// In `send_toward`'s cache: `addr` is reached through a router (a client, most often), not
    /// on a link (a real server).
    via_router: bool,
}

impl Default for Hop6 {
    fn default() -> Self {
        Hop6 {
            addr: Ipv6Addr::UNSPECIFIED,
            port: 0,
            macs: [0; 12],
            generation: 0,
            via_router: false,
        }
    }
}

#[inline(always)]
fn resolved_slot(target: Ipv6Addr, port: u16) -> usize {
    let key = u128::from(target);
    ((key ^ (key >> 64) ^ (key >> 32)) as usize ^ usize::from(port)) % RESOLVED_SLOTS
}

/// The Ethernet header's first 12 bytes toward neighbour `target` on `port`, if `send_to` resolved
/// it since the neighbour table and the topology last moved (`generation`, `cache_generation`'s).
/// A first fragment is never answered from here: it goes through the table, which records where it
/// waits.
#[inline(always)]
fn resolved<B: PacketBuf>(
    v6: &Inet6<B>,
    target: Ipv6Addr,
    port: u16,
    generation: u64,
) -> Option<[u8; 12]> {
    let e = &v6.resolved[resolved_slot(target, port)];
    (e.generation == generation && e.addr == target && e.port == port && !v6.records_queued())
        .then_some(e.macs)
}

/// Writes the Ethernet header's first 12 bytes (a frame shorter than that is not an IPv6
/// packet's).
#[inline(always)]
pub(super) fn set_macs<B: PacketBuf>(pkt: &mut B, macs: [u8; 12]) {
    if let Some(head) = pkt.data_mut().first_chunk_mut::<12>() {
        *head = macs;
    }
}

/// Sends an IPv6 packet (Ethernet header present) to neighbour `target` on `port`: sets the MACs,
/// or holds the packet until the neighbour answers.
pub fn send_to<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    mut pkt: B,
    target: Ipv6Addr,
    port: u16,
) -> Verdict<B> {
    let generation = cache_generation(v6, l3);
    if let Some(macs) = resolved(v6, target, port, generation) {
        set_macs(&mut pkt, macs);
        return Verdict::Tx(port, pkt);
    }
    send_to_table(v6, l3, pkt, target, port, generation)
}

/// `send_to` when its cache does not hold the neighbour: through the neighbour table.
fn send_to_table<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    pkt: B,
    target: Ipv6Addr,
    port: u16,
    generation: u64,
) -> Verdict<B> {
    let Some(port_mac) = l3.topo().ports.get(port as usize).map(|p| p.mac) else {
        return Verdict::Drop(Drop::NoRoute.into(), pkt);
    };
    if v6.records_queued() {
        // A first fragment: its later ones will queue behind it (`frag6`).
        let head = pkt.data()[..pkt.len().min(128)].to_vec();
        v6.last_queued = Some((target, port, head));
    }
    match v6.neigh.resolve(target, port, pkt, l3.now_ms) {
        Resolve::Mac(mac, mut p) => {
            let mut macs = [0; 12];
            macs[..6].copy_from_slice(&mac.0);
            macs[6..].copy_from_slice(&port_mac.0);
            set_macs(&mut p, macs);
            // The generation read before `resolve`, which moves it only where the MAC appears
            // or changes (`NeighTable::learn` is not called from here): were it moved, the entry
            // would just be refilled by the next packet.
            v6.resolved[resolved_slot(target, port)] = Hop6 {
                addr: target,
                port,
                macs,
                generation,
                via_router: false,
            };
            Verdict::Tx(port, p)
        }
        Resolve::Queued { request } => {
            if request {
                solicit(l3, port, target, None);
            }
            Verdict::Held
        }
        Resolve::Dropped(p, why) => Verdict::Drop(crate::net::l3::neigh_drop(why).into(), p),
    }
}

/// Slots of the cache of next hops by destination (direct-mapped), as many as IPv4's.
pub const HOP_SLOTS: usize = 256;

/// The caches' generation now (`Hop6`).
#[inline(always)]
fn cache_generation<B: PacketBuf>(v6: &Inet6<B>, l3: &L3<B>) -> u64 {
    v6.neigh.generation() + l3.topo_generation() + 1
}

#[inline(always)]
fn hop_slot(dst: Ipv6Addr) -> usize {
    let key = u128::from(dst);
    (key ^ (key >> 64) ^ (key >> 32)) as usize % HOP_SLOTS
}

/// Where a packet to `dst` goes (its port, and the slot of `Inet6::hops` whose entry holds the
/// Ethernet header's first 12 bytes, `set_cached_macs`), if `send_toward` sent one there since
/// the neighbour table and the topology last moved. Changes nothing. A first fragment is never
/// answered from here: it goes through `send_to`, which records where it waits.
///
/// The slot, not a copy of the 12 bytes: the copy, carried in the hot path's plan (an enum of a
/// byte and then the 12 bytes), was written a field at a time and read back by wider loads that
/// spanned those stores, which the store buffer cannot forward from: among the IPv6 path's most
/// sampled instructions (perf/RESULTS.md, "Loads the store buffer could not forward, a reply's
/// address probe").
#[inline(always)]
pub fn cached_hop<B: PacketBuf>(v6: &Inet6<B>, l3: &L3<B>, dst: Ipv6Addr) -> Option<(u16, usize)> {
    let slot = hop_slot(dst);
    let e = &v6.hops[slot];
    (e.addr == dst && e.generation == cache_generation(v6, l3) && !v6.records_queued())
        .then_some((e.port, slot))
}

/// Writes the MACs of the cache's entry in `slot` (`cached_hop`) into a frame's Ethernet
/// header: the hot path's frame, which it has rewritten (`frame`, its bounds checked once for
/// both; through another `PacketBuf::data_mut`, `established6-burst-net` 730 -> 728,
/// perf/RESULTS.md).
#[inline(always)]
pub(super) fn set_cached_macs<B: PacketBuf>(v6: &Inet6<B>, frame: &mut [u8], slot: usize) {
    if let (Some(e), Some(head)) = (v6.hops.get(slot), frame.first_chunk_mut::<12>()) {
        *head = e.macs;
    }
}

/// `send_to` the next hop `route` gives for destination `dst`, noting where the packet went for
/// `cached_hop` (a destination behind a router not in a real server's slot, below). Answered
/// from `send_to`'s cache when it holds the next hop: every client behind one router shares the
/// router's entry there, so replies to clients from many addresses, which `cached_hop`'s slots
/// cannot all hold, cost a route lookup and this.
pub fn send_toward<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    mut pkt: B,
    route: &crate::net::route6::Route6,
    dst: Ipv6Addr,
) -> Verdict<B> {
    // Read before the neighbour table is asked (`send_to_table`, which stores it with what it
    // resolves): were it moved meanwhile, the entries would just be refilled by the next packet.
    let generation = cache_generation(v6, l3);
    let (target, port) = (route.l2_target(dst), route.port);
    let macs = match resolved(v6, target, port, generation) {
        Some(macs) => {
            set_macs(&mut pkt, macs);
            macs
        }
        None => match send_to_table(v6, l3, pkt, target, port, generation) {
            Verdict::Tx(port, p) => match p.data().first_chunk::<12>() {
                Some(&macs) if !v6.records_queued() => {
                    pkt = p;
                    macs
                }
                _ => return Verdict::Tx(port, p),
            },
            v => return v,
        },
    };
    // A destination behind a router takes a slot from another such, or from a stale or empty
    // entry, not from a current one on a link: replies go to far more clients than the cache has
    // slots, and would take the real servers' in turn (IPv4's `L3::note_next_hop`).
    let via_router = target != dst;
    let e = &mut v6.hops[hop_slot(dst)];
    if !via_router || e.via_router || e.generation != generation {
        *e = Hop6 {
            addr: dst,
            port,
            macs,
            generation,
            via_router,
        };
    }
    Verdict::Tx(port, pkt)
}

/// Neighbour timers: retries, probes and aging, as the IPv4 table's.
pub fn tick<B: PacketBuf>(v6: &mut Inet6<B>, l3: &mut L3<B>, now_ms: u64) {
    let (reqs, dropped) = v6.neigh.tick_requests(now_ms);
    l3.stats.drops[Drop::NeighUnresolved as usize] += dropped;
    for (port, ip, unicast) in reqs.iter() {
        solicit(l3, port, ip, unicast);
    }
}

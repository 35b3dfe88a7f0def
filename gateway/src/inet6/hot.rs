//! IPv6's established hot path: what the general path (`service::to_service_segment` and
//! `service::reply_segment`) does for a plain ACK on an established FullNAT connection, and only
//! that, as `forward::fullnat::hot` does for IPv4. Such a segment leaves the connection
//! ESTABLISHED in every row of IPVS's state table (`conn::state`'s tests), so the state walk, the
//! real server's activity count, the reused-port check and the TOA decision are all known
//! answers; the general path spent about a sixth of its instructions on them.
//!
//! [`forward_hot`] either does all of the packet's work or none of it: every condition is checked
//! before the first side effect, and the packet goes back untouched to the general path when one
//! fails. `datapath::fastpath`'s property test holds the two to the same verdicts, bytes, counters
//! and table.

use super::{fullnat, nd, Inet6, Ipv6In};
use crate::conn::{tcp_flags, Conn6, ConnFlags, ConnId, ConnKey, Dir, State, Ticks};
use crate::forward::{mode, Forwarder};
use crate::net::route6::Route6;
use crate::net::L3;
use crate::packet::PacketBuf;
use crate::packet::Verdict;
use crate::wire::checksum::Folded;
use crate::wire::{IpProtocol, TcpFlags};
use std::net::{IpAddr, Ipv6Addr};

/// The entry flags `forward_hot` requires set (`WANT`) among those it looks at (`MASK`): the
/// connection has been established (no half-open count moves) and its replies have been seen
/// (no INPUT-ONLY rows), and it is not proxied (`proxied`: its sequence numbers are shifted).
const WANT: u8 = ConnFlags::ESTABLISHED_SEEN.bits();
const MASK: u8 = WANT | ConnFlags::INPUT_ONLY.bits() | super::proxied::PROXIED6.bits();

/// What `forward_hot` does to a segment it takes: the rewrite's new source and destination,
/// the way out and the address it leads to, the connection's service and real server (its
/// traffic counters).
struct Plan {
    out: Out,
    to: Ipv6Addr,
    svc: u16,
    rs: u16,
}

/// The way out to a destination: where the last packet to it went (`nd::cached_hop`), or else
/// the route, whose next hop `nd::send_toward` resolves.
enum Out {
    /// The port, and the slot of the next-hop cache that holds the MACs.
    Cached(u16, usize),
    Route(Route6),
}

/// The way out to `to`, `None` without a route (the general path refuses the packet then).
#[inline(always)]
fn out_to<B: PacketBuf>(v6: &Inet6<B>, l3: &L3<B>, to: Ipv6Addr) -> Option<Out> {
    match nd::cached_hop(v6, l3, to) {
        Some((port, slot)) => Some(Out::Cached(port, slot)),
        None => l3.topo().routes6.lookup(to).copied().map(Out::Route),
    }
}

/// Whether `forward_hot` takes this segment, and what it then does (`Plan`): a TCP segment with
/// ACK and none of SYN, FIN and RST (`flags`) on established FullNAT connection `id`, found from
/// side `dir`, whose way out the general path would not refuse. Changes nothing.
#[inline(always)]
fn plan<B: PacketBuf>(
    v6: &Inet6<B>,
    l3: &L3<B>,
    fwd: &Forwarder,
    v: &Ipv6In,
    id: ConnId,
    dir: Dir,
    flags: u8,
) -> Option<Plan> {
    // While a backup is to hear of connections, every packet goes where they are logged
    // (`sync6`), as IPv4's hot path leaves them to the general one.
    if flags & TcpFlags::STATE_BITS != tcp_flags::ACK
        || v.proto != IpProtocol::TCP
        || v6.sync_log.is_some()
    {
        return None;
    }
    // Settled by the callers (`Table::settle`).
    // Its reply side, which every FullNAT connection has, is read by `rewritten_ends`, which
    // refuses an entry without one.
    let c = v6.conns.get_settled(id)?;
    if !c.is(mode::FULLNAT, State::Established, (MASK, WANT), 0) {
        return None;
    }
    let client = c.client();
    let (svc, rs) = (c.svc, c.rs);
    match dir {
        // The general path goes to a service's side by the destination's kind, whatever side
        // the tuple was found from: the hot path takes only the two that agree. A client's
        // destination needs no probe: while the connection's service is configured its VIP is a
        // VIP, and once it is gone the connection has no real server (`ConnRemap`'s `NO_DEST`),
        // which the next check refuses.
        Dir::Original => {
            // A real server removed from the service (the general path follows
            // `expire_nodest_conn`), or not an IPv6 one: left to the general path.
            let real = fwd
                .services()
                .services
                .get(svc as usize)
                .and_then(|vs| vs.svc.reals().get(rs as usize));
            let Some(IpAddr::V6(rip)) = real.map(|r| r.addr) else {
                return None;
            };
            let out = out_to(v6, l3, rip)?;
            Some(Plan {
                out,
                to: rip,
                svc,
                rs,
            })
        }
        // A reply of a removed real server's connection: the general path follows
        // `expire_nodest_conn` (as IPv4's hot path, which refuses `NO_DEST` both ways).
        Dir::Reply if rs != crate::forward::fullnat::NO_DEST && fwd.reaches_reply_side6(v.dst) => {
            let cip = client.src_ip();
            let out = out_to(v6, l3, cip)?;
            Some(Plan {
                out,
                to: cip,
                svc,
                rs,
            })
        }
        _ => None,
    }
}

/// An IPv6 address and a port.
type Endpoint6 = (Ipv6Addr, u16);

/// The source and destination a FullNAT segment of connection `c` from side `dir` leaves with,
/// and the change that makes to its TCP checksum (the entry's, `ConnOf::rewrite_deltas`).
#[inline(always)]
fn rewritten_ends(c: &Conn6, dir: Dir) -> Option<(Endpoint6, Endpoint6, Folded)> {
    let reply = c.reply()?;
    let client = c.client();
    let (_, l4) = c.rewrite_deltas();
    debug_assert_eq!(l4, client.rewrite_deltas(&reply).1, "the entry's delta");
    Some(match dir {
        // CIP:cport -> VIP:vport  becomes  LIP:lport -> RIP:rport
        Dir::Original => (
            (reply.dst_ip(), reply.dport),
            (reply.src_ip(), reply.sport),
            l4,
        ),
        // RIP:rport -> LIP:lport  becomes  VIP:vport -> CIP:cport
        Dir::Reply => (
            (client.dst_ip(), client.dport),
            (client.src_ip(), client.sport),
            l4.reversed(),
        ),
    })
}

/// Forwards a TCP segment with ACK and none of SYN, FIN and RST (`flags`) on established FullNAT
/// connection `id`, found from side `dir`, as the general path would: rewritten, its timer
/// re-armed, its real server's traffic counted, sent on. Any other packet, or one the general path
/// treats apart (a removed real server) or would refuse (no route), comes back untouched
/// (`Err`), nothing changed (`plan`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn forward_hot<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &mut L3<B>,
    fwd: &mut Forwarder,
    mut pkt: B,
    v: &Ipv6In,
    id: ConnId,
    dir: Dir,
    flags: u8,
) -> Result<Verdict<B>, B> {
    v6.conns.settle(id);
    let Some(Plan { out, to, svc, rs }) = plan(v6, l3, fwd, v, id, dir, flags) else {
        return Err(pkt);
    };
    // The rewrite's addresses and ports, read from the entry here rather than carried in the
    // plan: built there a field at a time and copied with it, they were read back by loads that
    // spanned several stores, which the store buffer cannot forward from (perf/RESULTS.md,
    // "Loads the store buffer could not forward, a reply's address probe").
    let Some((src, dst, l4)) = v6
        .conns
        .get_settled(id)
        .and_then(|c| rewritten_ends(c, dir))
    else {
        return Err(pkt);
    };
    // From here on, the general path's steps for this packet, in its order.
    // Ethernet padding is not data.
    pkt.truncate(v.end);
    v6.conns.refresh_established(id, Ticks(l3.now_ms));
    fwd.count_packet(svc, rs, dir, super::common::ip_len(v));
    // The neighbour's confirmation reads the source MAC from the frame the rewrite takes (one
    // bounds check for both).
    let frame = pkt.data_mut();
    nd::confirm(v6, l3, v.src, frame);
    // The fields the entry's delta replaces are the tuple's, which its lookup compared.
    fullnat::rewrite_known(frame, v.l4_off, v.proto, src, dst, l4);
    let route = match out {
        Out::Cached(port, slot) => {
            nd::set_cached_macs(v6, frame, slot);
            l3.stats.inet6.forwarded += 1;
            return Ok(Verdict::Tx(port, pkt));
        }
        Out::Route(route) => route,
    };
    let verdict = nd::send_toward(v6, l3, pkt, &route, to);
    if !matches!(verdict, Verdict::Drop(..)) {
        l3.stats.inet6.forwarded += 1;
    }
    Ok(verdict)
}

/// Whether the general path forwards this segment (`seg`, to `v.dst`) without its TCP checksum
/// verified: a plain ACK `forward_hot` takes, as IPv4's (`Forwarder::forwards_unverified` says
/// why). Changes nothing but the connection's entry, settled (`Table::settle`: it follows a
/// pending configuration change, as its next packet would make it).
pub(super) fn forwards_unverified<B: PacketBuf>(
    v6: &mut Inet6<B>,
    l3: &L3<B>,
    fwd: &Forwarder,
    v: &Ipv6In,
    seg: &super::common::Segment,
) -> bool {
    if seg.flags & TcpFlags::STATE_BITS != tcp_flags::ACK || v.proto != IpProtocol::TCP {
        return false;
    }
    let tuple = crate::conn::Tuple6::new(v.src, seg.sport, v.dst, seg.dport, v.proto.0);
    let Some((id, dir)) = v6.conns.resolve(&tuple, seg.pre) else {
        return false;
    };
    v6.conns.settle(id);
    plan(v6, l3, fwd, v, id, dir, seg.flags).is_some()
}

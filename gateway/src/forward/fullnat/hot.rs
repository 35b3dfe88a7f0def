//! The established fast path's forwarding body: what `Forwarder::forward_body` does for a plain
//! ACK on an established FullNAT connection, and only that, without the checks that every
//! other packet needs (a SYN proxy's pending handshake, a parked or orphaned entry, the server's
//! handshake, a state change and its limits, sync, TOA). Most packets of a busy balancer are
//! such ACKs; the general body spends about a third of its instructions on deciding that none
//! of its other cases applies.
//!
//! `forward_hot` either does all of the packet's work or none of it: every condition is
//! checked before the first side effect, and the packet goes back untouched to the general
//! body when one fails. `datapath::fastpath`'s property test holds the two to the same
//! verdicts, bytes, counters and table.

use super::{mode, Forwarder, NO_DEST, PARKED, PROXIED};
use crate::conn::{
    Conn, ConnFlags, ConnId, ConnKey, Dir, HotDeadline, State, Ticks, Tuple, PROTO_TCP,
};
use crate::forward::rewrite::rewrite_tcp;
use crate::net::L3;
use crate::packet::{fill_slot, PacketBuf};
use crate::packet::{Ipv4In, Verdict};
use crate::wire::{IpInfo, IpProtocol, TcpFlags, TcpPacket};

/// What the hot path reads of a segment the fast path's admission took
/// (`Datapath::admit_plain_tcp`, `wire::parse_plain_tcp`: an option-less IPv4 header at byte
/// 14, TCP after it): its tuple in host order, as the table holds it, its IPv4 total length and
/// the TCP flags that decide whether it is a plain ACK. The burst loop keeps this for each such
/// frame between its stages, not the parse's `Ipv4In`: 20 bytes where that is 48, of which the
/// hot path read these six fields (perf/RESULTS.md). A segment the hot path does not take has its
/// `Ipv4In` rebuilt from its frame, unchanged since (`PlainSeg::parse`, in
/// `Datapath::forward_plain_cold`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlainSeg {
    pub tuple: Tuple,
    pub total_len: u16,
    /// The TCP flags that decide what the segment does to its connection's state
    /// (`TcpFlags::STATE_BITS`), masked as the lane is written: the hot path compares them with
    /// ACK alone, where it loaded, masked and compared the flags (`established-burst-net` 300 ->
    /// 299, `reply-burst-net` 322 -> 321, `lifecycle-burst-net` 10,159 -> 10,152). Kept as a
    /// `bool`, the lane's `Option` took its niche and the compiler its registers elsewhere
    /// (`established-burst-net` 307).
    pub state_flags: u8,
}

impl PlainSeg {
    /// The segment of a parse the admission took (a TCP segment, not a fragment).
    #[inline(always)]
    pub fn of(v: &Ipv4In) -> PlainSeg {
        let ip = &v.ip;
        PlainSeg {
            tuple: Tuple::new(ip.src, ip.src_port, ip.dst, ip.dst_port, PROTO_TCP),
            total_len: ip.total_len,
            state_flags: ip.tcp_flags.bits() & TcpFlags::STATE_BITS,
        }
    }

    /// The segment of a frame the admission took, read from the view of its three headers:
    /// `of` its parse (`parse_headers`).
    #[inline(always)]
    pub fn of_headers(h: &[u8; crate::wire::PLAIN_TCP_LEN]) -> PlainSeg {
        Self::of(&Self::parse_headers(h))
    }

    /// The parse of a frame the admission took, again (`wire::parse_plain_tcp`'s result, without
    /// its checks, which the frame, unchanged since, passed: `wire::plain_tcp_info`): the
    /// `Ipv4In` it gave, for the general path, which a segment the hot path does not take goes
    /// on to. `None` for a frame shorter than the three headers.
    #[inline(always)]
    pub fn parse(frame: &[u8]) -> Option<Ipv4In> {
        Some(Self::parse_headers(frame.first_chunk()?))
    }

    /// `parse` on the view of the frame's three headers.
    #[inline(always)]
    fn parse_headers(h: &[u8; crate::wire::PLAIN_TCP_LEN]) -> Ipv4In {
        Ipv4In {
            l3_off: crate::wire::ethernet::HEADER_LEN,
            ip: crate::wire::plain_tcp_info(h),
        }
    }
}

/// The entry flags `forward_hot` requires set (`WANT`) among those it looks at (`MASK`): the
/// connection has been established (so no half-open count moves), its replies have been seen
/// (no INPUT-ONLY rows), TOA has been dealt with, and it is not parked.
const WANT: u8 = ConnFlags::ESTABLISHED_SEEN.bits() | ConnFlags::TOA_DONE.bits();
const MASK: u8 = WANT | ConnFlags::INPUT_ONLY.bits() | PARKED.bits();

/// A TCP segment with ACK and none of SYN, FIN and RST.
#[inline(always)]
fn is_plain_tcp_ack(ip: &IpInfo) -> bool {
    ip.protocol == IpProtocol::TCP && ip.tcp_flags.is_plain_ack()
}

/// An established FullNAT connection whose plain ACKs change nothing but its timer and
/// counters: `forward_hot`'s conditions on the entry.
#[inline(always)]
fn is_hot_entry(c: &Conn) -> bool {
    c.is(mode::FULLNAT, State::Established, (MASK, WANT), PROXIED) && c.rs != NO_DEST
}

impl Forwarder {
    /// Whether this segment is forwarded without its TCP checksum verified: a plain ACK of a
    /// connection `forward_hot` takes (whether or not a sync log sends it the general way).
    /// Such a segment leaves the connection's state as it is, and its rewrite updates the
    /// checksum incrementally (RFC 1624), which keeps any error for the receiving host to find:
    /// as IPVS, which verifies a segment only before an application helper rewrites its payload
    /// (`tcp_snat_handler`, `tcp_dnat_handler`). Every segment that could change a
    /// connection's state (SYN, FIN, RST, or the ACK that ends a handshake) is verified where
    /// the NIC did not verify it.
    ///
    /// What a corrupted plain ACK can still change: the connection's timer and counters, and
    /// the acknowledgment number kept for the RST sent when the connection expires (`user`,
    /// `user2`). A wrong one puts that RST out of the receiver's window, as if none were sent,
    /// until the connection's next segment replaces it. A corruption of the ports that lands on
    /// another connection does this to that one. Linux's conntrack verifies every segment for
    /// this; IPVS and DPVS do not.
    #[inline(always)]
    pub(crate) fn forwards_unverified(&self, ip: &IpInfo, id: ConnId) -> bool {
        is_plain_tcp_ack(ip)
            && self
                .table
                .get(id)
                .is_some_and(|c| c.reply().is_some() && is_hot_entry(&c))
    }

    /// `forward_body` for a TCP segment with ACK and none of SYN, FIN and RST on established
    /// FullNAT connection `id` (from `dir`), when no sync log is kept, in a frame the fast path's
    /// admission took (`seg`: its offsets `wire::parse_plain_tcp`'s): rewritten, its connection's
    /// timer, acknowledgment numbers and counters updated, its verdict is written into `out`:
    /// addressed on the hot path's view of its headers if the next-hop cache holds its next hop
    /// (`L3::next_hop`), else routed (`L3::route_uncached_into`). Any other packet comes back
    /// untouched (`Err`), nothing changed, `out` as it was.
    ///
    /// Such a segment leaves the connection ESTABLISHED in every row of IPVS's state table
    /// (`conn::state`'s tests), so the state, the real server's active count and the connection
    /// limits stay as they are: only the timer is re-armed (`ConnTable::refresh_established`),
    /// to `deadline`, ESTABLISHED's at the clock's time (`Table::hot_deadline`).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn forward_hot<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        mut pkt: B,
        seg: &PlainSeg,
        id: ConnId,
        dir: Dir,
        deadline: HotDeadline,
        out: &mut Option<Verdict<B>>,
    ) -> Result<(), B> {
        if seg.state_flags != TcpFlags::ACK.0 {
            return Err(pkt);
        }
        // None while a sync log is kept (`set_sync`) or a rebind is pending.
        debug_assert!(self.table.get_mut_hot(id).is_none() || self.sync_log.is_none());
        let Some(c) = self.table.get_mut_hot(id) else {
            return Err(pkt);
        };
        let Some(reply) = c.reply() else {
            return Err(pkt);
        };
        if !is_hot_entry(c) {
            return Err(pkt);
        }
        // The fast path's admission took only frames with the IPv4 header at byte 14, without
        // options, and TCP right after it (`wire::parse_plain_tcp`): constants, where the
        // parse's offsets, read back from memory, left the rewrite and the reads below their
        // bounds and offsets to check (perf/RESULTS.md, "The admission's offsets as constants").
        const L3_OFF: usize = crate::wire::ethernet::HEADER_LEN;
        const L4_OFF: usize = L3_OFF + crate::wire::ipv4::HEADER_LEN;
        debug_assert!(
            PlainSeg::parse(pkt.data()).is_some_and(|v| (v.l3_off, v.ip.l4_off)
                == (L3_OFF, L4_OFF)
                && PlainSeg::of(&v) == *seg),
            "not the admission's frame"
        );
        // One fixed-size view of the three headers, which the admission's frame always has, for
        // the neighbour's confirmation, the acknowledgment number and the rewrite: on it no bound
        // is checked again. Taken before the first side effect, as every condition here.
        let Some(h) = pkt
            .data_mut()
            .first_chunk_mut::<{ L4_OFF + crate::wire::tcp::HEADER_LEN }>()
        else {
            return Err(pkt);
        };
        // From here on, `forward_body`'s steps for this packet, the rewrite first, while the
        // entry's tuples and deltas are at hand: after the counters, the neighbour's
        // confirmation and the timer, they were copied out and kept on the stack across them
        // (`established-burst-net` 376 -> 364, `reply-burst-net` 398 -> 401; the steps change
        // nothing the others read).
        let ack = TcpPacket::new_unchecked(&h[L4_OFF..]).ack_number();
        let client = c.client();
        // The checksums' changes, which the entry keeps: the fields replaced are the tuple's
        // (`holds_hot` compared them) and the new ones the other tuple's, reversed.
        let (ip_delta, l4_delta) = c.rewrite_deltas();
        debug_assert_eq!(
            (ip_delta, l4_delta),
            client.rewrite_deltas(&reply),
            "the entry's deltas"
        );
        // The view's last 40 bytes: the IPv4 header and the TCP header.
        let headers = h.last_chunk_mut().expect("the IPv4 and TCP headers");
        let dst = match dir {
            // The connection is established: `user` holds the client's last ACK
            // (`forward_body`), whether or not the server has answered.
            Dir::Original => {
                c.user = ack;
                // CIP:cport -> VIP:vport  becomes  LIP:lport -> RIP:rport
                let dst = (reply.src_ip(), reply.sport);
                let src = (reply.dst_ip(), reply.dport);
                rewrite_tcp(headers, src, dst, (ip_delta, l4_delta));
                dst
            }
            Dir::Reply => {
                c.user2 = ack;
                // RIP:rport -> LIP:lport  becomes  VIP:vport -> CIP:cport, with the changes
                // back (`Folded::back`).
                let dst = (client.src_ip(), client.sport);
                let src = (client.dst_ip(), client.dport);
                rewrite_tcp(headers, src, dst, (ip_delta.back(), l4_delta.back()));
                dst
            }
        };
        l3.confirm_neighbour_of(|| seg.tuple.src_ip(), &h[..]);
        // Drop Ethernet padding (the frame ends where the IP packet does), and send it, before
        // the counters and the timer. The MACs from the next-hop cache written on the same view,
        // after the neighbour's confirmation has read the sender's, not through another
        // `data_mut` and its bounds (`established-burst-net` 363 -> 360, replies 395 -> 382).
        // The verdict written in each branch: returned as an enum, the next hop was built into a
        // word and taken apart again (perf/RESULTS.md, "The next hop on the hot path's view").
        let total_len = seg.total_len;
        let len = L3_OFF + total_len as usize;
        match l3.next_hop(dst.0) {
            Ok((macs, port)) => {
                *h.first_chunk_mut().expect("the Ethernet addresses") = *macs;
                pkt.truncate(len);
                fill_slot(out, Verdict::Tx(port, pkt));
            }
            Err(slot) => {
                pkt.truncate(len);
                l3.route_uncached_into(pkt, dst.0, slot, dir == Dir::Reply, out);
            }
        }
        // The server's counters after the timer, its indices read before it (the entry is
        // borrowed from the table, which the timer's slow case takes): counted before it, the
        // entry's address was reloaded from the stack twice (`established-burst-net` 325 -> 323,
        // `reply-burst-net` 345 -> 343, `mixed-burst-spread-net` 403 -> 405).
        let (svc, rs) = (c.svc, c.rs);
        // The timer re-armed in the entry, unless it must move in the wheel
        // (`ConnTable::refresh_established`, with the clock's time).
        if !deadline.refresh(c) {
            self.table.refresh_established(id, Ticks(l3.now_ms));
        }
        if let Some(t) = super::traffic_of_server(&mut self.traffic, &self.traffic_base, svc, rs) {
            t.count(dir, total_len);
        }
        Ok(())
    }
}

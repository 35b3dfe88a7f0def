//! The per-worker packet pipeline, free of DPDK (DESIGN.md decision 4): a frame plus its receive
//! metadata go in, a verdict comes out (send on a port, hand to another worker, hold, or drop with a
//! reason). `worker.rs` adapts mbufs and queues to it; tests, benchmarks and the fuzz target drive it
//! with `VecBuf`.
//!
//! This file holds the burst pipeline (`process_burst_timed`: L2/L3 checks, one batched lookup,
//! forwarding) and the way each packet finishes; `ingress` is the L2/L3 stage, `local` what
//! reaches the gateway's own addresses, `fastpath` the established segments' lanes, `fragments`
//! the fragments of forwarded datagrams. The L3 state and services every mode shares are
//! `net::L3`'s; the forwarding modes live in `forward/` and `inet6/`.

mod fastpath;
mod fragments;
mod ingress;
mod local;

pub use ingress::{ingress, NotIpv4};
pub use local::local_delivery;

use crate::conn::{Candidate, Prelookup, Ticks};
use crate::forward::fullnat::PlainSeg;
use crate::forward::Forwarder;
use crate::net::neigh::NeighConfig;
use crate::net::{punt, Topology, L3};
use crate::packet::{Deferred, Ipv4In, PacketBuf, RxMeta, Verdict};
use crate::stats::{Drop, DropReason};
use crate::wire::{icmp, IpProtocol};
use std::sync::Arc;

/// Frames per burst (`process_burst`, and the worker's receive bursts): the ixy/DPDK convention
/// of 32, which amortises a driver call and keeps a burst's state in L1. (Bursts of 64 took the
/// datapath's stages 4 cycles a packet more on the wire: perf/RESULTS.md, "Four bursts a
/// round, one transmit".)
pub const BURST: usize = 32;
/// Bursts a worker receives from one port in a poll round, the next only while the last came
/// back full (a backlog waits), before it moves on: as VPP's `dpdk-input`, which fills its
/// frame of up to 256 from several receive bursts. The frames they leave on a port go out in
/// one transmit burst ([`TX_BURST`]).
pub const RX_BURSTS_A_ROUND: usize = 4;
/// Frames a worker collects for one port before one `rte_eth_tx_burst`, which it also calls at
/// the end of each poll round for what is left. A call costs about as much for 32 frames as for
/// 128 (likely memif's ring indices, shared with the peer's core, and the mbufs freed back to
/// the pool's cache in one go; not measured apart): at 1K connections, four bursts a round sent
/// as one took the worker's busy cycles a packet from 189.2 to 184.0, the transmit stage's from
/// 62.6 to 52.0 (perf/RESULTS.md, "Four bursts a round, one transmit"). A frame waits until its
/// buffer holds `TX_BURST` or its round ends: at worst, with two ports, the work of the 255
/// frames after it in the round, about 20 us at 13 Mpps (63, about 5 us, with one burst a port
/// a round).
pub const TX_BURST: usize = RX_BURSTS_A_ROUND * BURST;
/// One worker's whole pipeline: L2/L3 and the forwarding engine.
pub struct Datapath<B> {
    pub l3: L3<B>,
    pub fwd: Forwarder,
    /// IPv6: neighbour discovery and the IPv6 services (`inet6`).
    pub v6: crate::inet6::Inet6<B>,
    /// Where fragments of forwarded datagrams find their first fragment's decision (`frag`).
    /// Held fragments keep the port they arrived on.
    pub frags: crate::frag::FragTable<(B, u16)>,
    /// Verdicts reached outside a frame's own processing (held fragments, once their first one is
    /// decided): the worker carries them out after the burst ([`Datapath::take_deferred`]).
    deferred: Vec<Deferred<B>>,
    /// The burst's IPv6 tuples and what the lookup stage found of them.
    burst6: Box<fastpath::Burst6>,
}

/// `process_burst_timed`'s mark of an IPv6 frame (see there).
const IPV6: u8 = 1;

/// What the burst loop's first stage leaves for the lookup stage and the last.
struct Lanes {
    /// Each IPv4 frame's parse but the fast path's.
    parsed: [Option<Ipv4In>; BURST],
    /// The hashes of the looked-up frames' tuples (`Table::prehash`), each one's index line
    /// prefetched as the frame is parsed: the tuple is not kept for the lookup stage to read
    /// back and hash.
    hashes: [u32; BURST],
    /// Which frame each of `hashes` is.
    which: [u8; BURST],
    /// A frame admitted to the established fast path (`fastpath`): what its hot path reads of
    /// it (`PlainSeg`), not its parse (`Ipv4In`), which is rebuilt from the frame if the hot
    /// path does not take it (`Datapath::forward_plain_cold`): 7 stores a frame where the parse
    /// took 13, and a tuple compared with the entry's without byte swaps
    /// (`established-burst-net` 436 -> 430, `reply-burst-net` 460 -> 446; a short connection,
    /// whose segments that miss the hot path pay the rebuild, 10,694 -> 10,863 in bursts).
    plain: [Option<PlainSeg>; BURST],
    /// IPv6, processed in its turn with the others (not ahead of the IPv4 packets before it,
    /// which share the neighbour queues and the tx order with it), all of it then
    /// (`forward_other`, `process_ipv6_inline`): `IPV6` + 1 + k for the `k`th of the `m6` whose
    /// connection the lookup stage looks up (`fastpath::Burst6`), `IPV6` for the others.
    ipv6: [u8; BURST],
    /// The IPv6 frames looked up (`Burst6::hashes[..m6]`).
    m6: usize,
}

impl Default for Lanes {
    fn default() -> Self {
        Lanes {
            parsed: [None; BURST],
            hashes: [0; BURST],
            which: [0; BURST],
            plain: [None; BURST],
            ipv6: [0; BURST],
            m6: 0,
        }
    }
}

/// IPv4 entries (64 bytes each) a poll round walks of a connection table whose entries follow a
/// configuration change (`Datapath::rebind_step`, `conn::rebind`). A round with spare time walks
/// 64 KiB, a few microseconds: a walk of 13M entries (10M connections) ends within about 13,000
/// such rounds, where the whole walk at once stopped the worker for 30 to 40 ms. A round whose
/// burst came back full walks a sixteenth of that, so that the packets waiting are not made to
/// wait long, and the walk still ends while the worker is never idle.
pub const REBIND_SLICE_IDLE: u32 = 1024;
pub const REBIND_SLICE_BUSY: u32 = 64;

impl<B: PacketBuf> Datapath<B> {
    pub fn new(worker: u16, topo: Arc<Topology>, neigh: NeighConfig, fwd: Forwarder) -> Self {
        let v6 = crate::inet6::Inet6::new(neigh, fwd.capacity6(), fwd.table().timeouts());
        Datapath {
            l3: L3::new(worker, topo, neigh),
            fwd,
            v6,
            frags: crate::frag::FragTable::new(Default::default()),
            deferred: Vec::new(),
            burst6: Box::default(),
        }
    }

    /// Turns the established fast path (`fastpath`) on or off: its verdicts are the general
    /// path's, so only the cost changes.
    pub fn set_fast_path(&mut self, on: bool) {
        self.l3.set_fast_path(on);
    }

    /// Processes one received frame.
    #[inline]
    pub fn process(&mut self, pkt: B, meta: &RxMeta) -> Verdict<B> {
        if let Some((v, _)) = self.admit_plain_tcp(&pkt, meta) {
            return self.forward_plain_tcp(pkt, meta, &v, Prelookup::NotDone);
        }
        if fastpath::is_ipv6(pkt.data()) {
            return self.process_ipv6(pkt, meta, Prelookup::NotDone);
        }
        let (pkt, v) = match ingress(&mut self.l3, pkt, meta) {
            Ok(x) => x,
            Err(NotIpv4::Done(verdict)) => return verdict,
            Err(NotIpv4::Ipv6(pkt)) => {
                return self.v6.process(&mut self.l3, &mut self.fwd, pkt, meta)
            }
        };
        self.finish(pkt, meta, &v, Prelookup::NotDone)
    }

    /// An IPv6 frame (`fastpath::is_ipv6`): the fast path's if it admits it (`pre`: what the
    /// burst's lookup found of its connection), else `ingress`'s L2 checks and `Inet6::process`.
    ///
    /// Never inlined (as `Inet6::process`): inlined into `process` and the burst loop, it moved
    /// the IPv4 paths' code about (`perf/cost.sh`: a SYN 38 instructions more, an established
    /// packet 14, with no change to their code); out of line, the IPv6 burst costs the same.
    /// The burst loop's last stage inlines its body into `forward_other`, itself out of line.
    #[inline(never)]
    fn process_ipv6(&mut self, pkt: B, meta: &RxMeta, pre: Prelookup) -> Verdict<B> {
        self.process_ipv6_inline(pkt, meta, pre)
    }

    /// `process_ipv6`'s body, in it and in the burst's last stage (`forward_other`).
    #[inline(always)]
    fn process_ipv6_inline(&mut self, pkt: B, meta: &RxMeta, pre: Prelookup) -> Verdict<B> {
        if let Some(v) = self.admit_plain_tcp6(&pkt, meta) {
            return self.forward_plain_tcp6(pkt, meta, &v, pre);
        }
        match ingress(&mut self.l3, pkt, meta) {
            Err(NotIpv4::Ipv6(pkt)) => self.v6.process(&mut self.l3, &mut self.fwd, pkt, meta),
            Err(NotIpv4::Done(verdict)) => verdict,
            // Not reached: the EtherType is IPv6's.
            Ok((pkt, v)) => self.finish(pkt, meta, &v, Prelookup::NotDone),
        }
    }

    /// Processes a burst (up to `BURST` frames) VPP-style, in stages: every frame through the L2/L3
    /// checks first, then one batched connection lookup for all of them (the table's cache misses
    /// overlap instead of queueing), then forwarding. `out[i]`, empty (`None`) when given,
    /// receives frame `i`'s verdict (a verdict left there may be forgotten, its buffer not freed:
    /// `packet::fill_slot`). The verdicts are those of one-by-one processing, with one
    /// difference: an ARP frame is handled in the first stage, so a neighbour it resolves already
    /// serves packets earlier in the same burst.
    pub fn process_burst(
        &mut self,
        pkts: &mut [Option<B>],
        metas: &[RxMeta],
        out: &mut [Option<Verdict<B>>],
    ) {
        self.process_burst_timed(pkts, metas, out, || 0, |_| {});
    }

    /// `process_burst`, reading `clock` (the TSC in a worker) at the end of each stage: returns
    /// the times after ingress (L2/L3), after the lookup and after forwarding (`stats::Stage`).
    /// `prefetch(addr)` hints the CPU to load a cache line for the batched lookup
    /// (`dpdk::prefetch` in a worker; tests and fuzzing, free of DPDK, pass a no-op). Both are
    /// type parameters, not stored function pointers, so that they inline into the burst loop.
    #[inline]
    pub fn process_burst_timed(
        &mut self,
        pkts: &mut [Option<B>],
        metas: &[RxMeta],
        out: &mut [Option<Verdict<B>>],
        clock: impl Fn() -> u64,
        prefetch: impl Fn(*const u8) + Copy,
    ) -> [u64; 3] {
        let n = pkts.len().min(BURST).min(metas.len()).min(out.len());
        let mut l = Lanes::default();
        // The frames looked up, `l.hashes[..m]`: counted in a register, not in `l`, which
        // `admit_other` is given (`established-burst-net` 448 -> 444).
        let mut m = 0;
        for i in 0..n {
            let Some(pkt) = &pkts[i] else { continue };
            // The fast path's frames go straight into their lanes, without the general path's
            // `Result` to build and match (each `Ipv4In` moved is 48 bytes); every other frame
            // out of line (`admit_other`), which leaves the loop's registers to these
            // (`established-burst-net` 468 -> 448).
            if let Some((_, h)) = self.admit_plain_tcp(pkt, &metas[i]) {
                let seg = PlainSeg::of_headers(h);
                // Stored before the hash, whose multiplies take two fixed registers: stored
                // after it, the lane's fields and the frame's address were kept across them, and
                // the lanes' address went to the stack and back (`established-burst-net` 313 ->
                // 311, `reply-burst-net` 335 -> 333).
                l.plain[i] = Some(seg);
                l.hashes[m] = self.fwd.table().prehash(&seg.tuple, prefetch);
                l.which[m] = i as u8;
                m += 1;
                continue;
            }
            if fastpath::is_ipv6(pkt.data()) {
                self.admit_ipv6(i, pkt.data(), &mut l, prefetch);
                continue;
            }
            // The same lines as above: merged after the `if`, they cost the fast path's frames
            // 19 instructions (`established-burst-net` 444 -> 463), as they did when the other
            // frames' admission was inlined here (39).
            if let Some(hash) = self.admit_other(i, pkts, metas, out, &mut l, prefetch) {
                l.hashes[m] = hash;
                l.which[m] = i as u8;
                m += 1;
            }
        }
        let after_l3 = clock();
        let mut pre = [Candidate::NOT_DONE; BURST];
        self.fwd.table().prelookup_hashed(
            &l.hashes[..m],
            |k, p| pre[usize::from(l.which[k]) % BURST] = p,
            prefetch,
        );
        if l.m6 > 0 {
            let b = &mut *self.burst6;
            self.v6
                .conns
                .prelookup_hashed(&b.hashes[..l.m6], |k, p| b.found[k] = p, prefetch);
        }
        let after_lookup = clock();
        let indexed = self.fwd.table().indexed();
        let indexed6 = self.v6.conns.indexed();
        let deadline = self.fwd.table().hot_deadline(Ticks(self.l3.now_ms));
        for i in 0..n {
            // The fast path's frames here, every other out of line (`forward_other`), as in the
            // first stage (`established-burst-net` 444 -> 441 with `admit_ipv6`; with IPv6's
            // branch left here, 483).
            if let Some(seg) = &l.plain[i] {
                if let Some(pkt) = pkts[i].take() {
                    // With the table's count of tuples added as the lookup left it: a miss is
                    // a miss still unless a packet before this one added tuples, which only the
                    // paths past the hot path ask (`established-burst-net` 441 -> 434).
                    self.forward_plain_tcp_into(
                        pkt,
                        &metas[i],
                        seg,
                        (pre[i], indexed),
                        deadline,
                        &mut out[i],
                    );
                }
                continue;
            }
            if let Some(pkt) = pkts[i].take() {
                let found = (pre[i], indexed, indexed6);
                self.forward_other(pkt, &metas[i], &l, i, found, &mut out[i]);
            }
        }
        [after_l3, after_lookup, clock()]
    }

    /// The last stage of `process_burst_timed` for frame `i` (`pkt`), one the fast path's
    /// admission did not take: `found` is what the lookup stage found of its IPv4 connection,
    /// with the tables' `indexed` counts (IPv4's, IPv6's) as the lookup stage left them.
    #[inline(never)]
    fn forward_other(
        &mut self,
        pkt: B,
        meta: &RxMeta,
        l: &Lanes,
        i: usize,
        found: (Candidate, u64, u64),
        out: &mut Option<Verdict<B>>,
    ) {
        let (pre, indexed, indexed6) = found;
        if l.ipv6[i] >= IPV6 {
            let pre = match l.ipv6[i].checked_sub(IPV6 + 1) {
                // As for IPv4: a miss is a miss still unless tuples were added since.
                Some(k) => match self.burst6.found[usize::from(k)].get() {
                    Prelookup::Miss if self.v6.conns.indexed() != indexed6 => Prelookup::NotDone,
                    p => p,
                },
                None => Prelookup::NotDone,
            };
            // Written into the slot here: returned through memory, the verdict was written a
            // field at a time and read back whole to be copied into the slot, a read the store
            // buffer cannot forward (perf/RESULTS.md, "Loads the store buffer could not forward,
            // a reply's address probe").
            *out = Some(self.process_ipv6_inline(pkt, meta, pre));
            return;
        }
        if let Some(v) = &l.parsed[i] {
            // A miss is a miss still unless a packet before it in the burst added tuples.
            let pre = pre.unless_stale(self.fwd.table().indexed() == indexed);
            *out = Some(self.finish(pkt, meta, v, pre.get()));
        }
    }

    /// The first stage of `process_burst_timed` for IPv6 frame `i`: marked for the last stage,
    /// its connection looked up if it is TCP (`fastpath::Burst6`). Only the tuple, for the
    /// lookup stage: the last stage parses the frame again at its admission. Carrying the parse
    /// from here through a scratch area cost more than parsing twice (perf/RESULTS.md, "The
    /// IPv6 fast path").
    #[inline(never)]
    fn admit_ipv6(
        &mut self,
        i: usize,
        frame: &[u8],
        l: &mut Lanes,
        prefetch: impl Fn(*const u8) + Copy,
    ) {
        l.ipv6[i] = IPV6;
        if self.l3.fast_path() {
            if let Some(v) = crate::inet6::parse_plain_tcp6(frame) {
                let t = crate::inet6::plain_tcp6_tuple(frame, &v);
                self.burst6.hashes[l.m6] = self.v6.conns.prehash(&t, prefetch);
                l.ipv6[i] = IPV6 + 1 + l.m6 as u8;
                l.m6 += 1;
            }
        }
    }

    /// The first stage of `process_burst_timed` for frame `i`, neither IPv6 nor one the fast
    /// path's admission took: an IPv4 one goes through `ingress` into the lanes, any other gets
    /// its verdict now.
    /// Returns the hash of the IPv4 tuple to look up, if there is one (`Table::prehash`).
    #[inline(never)]
    fn admit_other(
        &mut self,
        i: usize,
        pkts: &mut [Option<B>],
        metas: &[RxMeta],
        out: &mut [Option<Verdict<B>>],
        l: &mut Lanes,
        prefetch: impl Fn(*const u8) + Copy,
    ) -> Option<u32> {
        let pkt = pkts[i].take()?;
        match ingress(&mut self.l3, pkt, &metas[i]) {
            Err(NotIpv4::Done(verdict)) => {
                out[i] = Some(verdict);
                None
            }
            Err(NotIpv4::Ipv6(pkt)) => {
                // Not reached: IPv6 frames were set aside above.
                out[i] = Some(self.v6.process(&mut self.l3, &mut self.fwd, pkt, &metas[i]));
                None
            }
            Ok((pkt, v)) => {
                let hash = self
                    .fwd
                    .lookup_tuple(&v)
                    .map(|t| self.fwd.table().prehash(&t, prefetch));
                pkts[i] = Some(pkt);
                l.parsed[i] = Some(v);
                hash
            }
        }
    }

    /// The forwarding stage of one packet that passed `ingress`.
    #[inline]
    fn finish(&mut self, pkt: B, meta: &RxMeta, v: &Ipv4In, pre: Prelookup) -> Verdict<B> {
        if self.fwd.services().is_lip64(v.ip.dst) {
            // An IPv4 reply of a NAT64 connection (`inet6::nat64`).
            return crate::inet6::nat64::from_server(
                &mut self.v6,
                &mut self.l3,
                &mut self.fwd,
                pkt,
                meta,
                v,
            );
        }
        if v.ip.is_fragment && self.fwd.forwards(&self.l3, &v.ip) {
            return self.fragment(pkt, meta, v);
        }
        self.forward_or_deliver(pkt, meta, v, pre)
    }

    /// `finish` for a whole packet, or a first fragment.
    fn forward_or_deliver(
        &mut self,
        pkt: B,
        meta: &RxMeta,
        v: &Ipv4In,
        pre: Prelookup,
    ) -> Verdict<B> {
        let pkt = match self.fwd.handle_with(&mut self.l3, pkt, meta, v, pre) {
            Ok(verdict) => return verdict,
            Err(pkt) => pkt,
        };
        let topo = self.l3.topo();
        let dst = v.ip.dst;
        let kind = self.fwd.services().kind(dst);
        let dest = if kind.vip || kind.lip {
            punt::Dest::Virtual
        } else if topo.iface.contains(&dst) {
            punt::Dest::Iface
        } else if dst.is_multicast() || dst.is_broadcast() || topo.bcast.contains(&dst) {
            punt::Dest::MulticastOrBroadcast
        } else {
            punt::Dest::Other
        };
        let is_icmp = v.ip.protocol == IpProtocol::ICMP;
        let is_echo = is_icmp
            && !v.ip.is_fragment
            && pkt.data().get(v.ip.l4_off) == Some(&icmp::IcmpType::ECHO_REQUEST.0);
        let answered = topo.local.contains(&dst);
        let twin = self.l3.has_twin(meta.port);
        match punt::decide_ipv4(dest, is_icmp, is_echo, answered, twin) {
            punt::Local::Answer => local_delivery(&mut self.l3, pkt, meta, v),
            punt::Local::Up(why) => self.l3.punt(meta.port, pkt, why, Drop::ProtoUnsupported),
            punt::Local::Drop(r) => Verdict::Drop(r.into(), pkt),
        }
    }

    /// Periodic work (connection expiry, ARP, fragment entries); `now_ms` is monotonic.
    pub fn tick(&mut self, now_ms: u64) {
        self.l3.tick(now_ms);
        self.fwd.tick(&mut self.l3, now_ms);
        self.v6.tick(&mut self.l3, &mut self.fwd, now_ms);
        let dropped = self.frags.expire(now_ms);
        self.l3.stats.drops[Drop::FragTimeout as usize] += dropped as u64;
    }

    /// Walks a slice of each connection table that a configuration change left entries to
    /// follow in (`conn::rebind`): [`REBIND_SLICE_BUSY`] entries' worth of memory each after a
    /// round whose receive burst came back full (`busy`: more packets wait), else
    /// [`REBIND_SLICE_IDLE`]. Returns whether either walk goes on. The worker calls it once a
    /// poll round.
    #[inline]
    pub fn rebind_step(&mut self, busy: bool) -> bool {
        let slice = if busy {
            REBIND_SLICE_BUSY
        } else {
            REBIND_SLICE_IDLE
        };
        let v4 = self.fwd.rebind_step(slice);
        // An IPv6 entry takes two cache lines.
        let v6 = self.v6.conns.rebind_step(slice / 2);
        v4 | v6
    }

    /// Adopts a service snapshot the forwarder prepared (`Forwarder::prepare_services`): both
    /// connection tables follow their services and real servers by identity.
    pub fn commit_services(&mut self, prepared: crate::forward::fullnat::PreparedServices) {
        if let Some(remap) = self.fwd.commit_services(prepared) {
            crate::forward::fullnat::count_rebind(&mut self.fwd.stats, &remap, &mut self.v6.conns);
        }
        // The IPv6 table's open connections counted in the limits too, once both follow the
        // new snapshot (the forwarder counted the IPv4 table's).
        let limits = self.fwd.limits_mut();
        if limits.recount_due() {
            limits.count(
                self.v6
                    .conns
                    .iter()
                    .filter(|(_, c)| {
                        c.svc != crate::forward::services::NO_DEST
                            && crate::forward::fullnat::counted_open(c)
                    })
                    .map(|(_, c)| (c.svc, c.client().src_ip().into())),
            );
        }
    }

    /// Hands out the verdicts reached outside their frame's processing (held fragments released
    /// by their first one), to be carried out as a burst's are.
    pub fn take_deferred(&mut self) -> Vec<Deferred<B>> {
        let mut d = std::mem::take(&mut self.deferred);
        d.append(&mut self.v6.deferred);
        d
    }

    /// Counts a verdict's drop reason (the worker calls this as it dispatches).
    #[inline]
    pub fn count_drop(&mut self, r: DropReason) {
        self.l3.stats.drop(r);
    }

    /// Counts a frame `settle` would send (`Verdict::Tx`), for a caller that sends it itself.
    #[inline(always)]
    pub fn count_tx(&mut self, b: &B) {
        let s = &mut self.l3.stats;
        s.tx_packets += 1;
        s.tx_bytes += b.len() as u64;
    }

    /// Counts a verdict as the worker carries it out and returns what is left to do with the
    /// frame: transmit it, or hand it to a worker (the caller then counts `handoff_out`, or a
    /// `ring_full` drop, with [`Datapath::handed_over`]). Drops are counted here; `Done` and `Held`
    /// need nothing. One accounting for the worker and for every test that drives a datapath.
    #[inline]
    pub fn settle(&mut self, v: Verdict<B>) -> Option<Verdict<B>> {
        match v {
            Verdict::Tx(port, b) => {
                self.count_tx(&b);
                Some(Verdict::Tx(port, b))
            }
            Verdict::ToWorker(w, b) => Some(Verdict::ToWorker(w, b)),
            Verdict::ToKernel(p, b) => Some(Verdict::ToKernel(p, b)),
            Verdict::Drop(r, _b) => {
                self.count_drop(r);
                None
            }
            Verdict::Done(_) | Verdict::Held => None,
        }
    }

    /// Counts the fate of a frame handed to another worker: enqueued, or dropped on a full ring.
    #[inline]
    pub fn handed_over(&mut self, enqueued: bool) {
        if enqueued {
            self.l3.stats.handoff_out += 1;
        } else {
            self.count_drop(Drop::RingFull.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::l3::CONFIRM_EVERY_MS;
    use crate::packet::VecBuf;
    use crate::testkit::*;
    use crate::wire::{arp, ArpOp, ArpPacket, EthernetFrame, MacAddr};
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
    use std::net::Ipv4Addr;

    fn syn_from_client(sport: u16) -> VecBuf {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
            .ipv4(CLIENT_IP.octets(), VIP.octets(), 64)
            .tcp(sport, 80, 1000, 64240)
            .syn()
            .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap()
            .write(&mut v, &[])
            .unwrap();
        VecBuf::from_frame(&v)
    }

    #[test]
    fn syn_to_vip_leaves_fullnat_with_toa_and_the_reply_comes_back() {
        let mut dp: Datapath<VecBuf> = lab_datapath();
        let meta = RxMeta {
            port: 0,
            ..Default::default()
        };
        let out = match dp.process(syn_from_client(40000), &meta) {
            Verdict::Tx(1, b) => b,
            _ => panic!("SYN not forwarded to the server port"),
        };
        let p = SlicedPacket::from_ethernet(out.data()).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!()
        };
        let (src, dst) = (
            Ipv4Addr::from(ip.header().source()),
            Ipv4Addr::from(ip.header().destination()),
        );
        assert!(src == LIP1 || src == LIP2);
        assert!(dst == RS1 || dst == RS2);
        let Some(TransportSlice::Tcp(t)) = &p.transport else {
            panic!()
        };
        let lport = t.source_port();
        let raw = t.options();
        let toa = raw.windows(8).any(|w| {
            w[0] == 254
                && w[1] == 8
                && w[2..4] == 40000u16.to_be_bytes()
                && w[4..8] == CLIENT_IP.octets()
        });
        assert!(toa, "TOA missing: {raw:?}");
        assert_eq!(dp.fwd.stats.toa_added, 1);

        // The server's SYN-ACK to LIP:lport comes back as VIP:80 -> CIP:40000.
        let mut v = Vec::new();
        PacketBuilder::ethernet2(RS1_MAC.0, SERVER_PORT_MAC.0)
            .ipv4(dst.octets(), src.octets(), 64)
            .tcp(80, lport, 5000, 64240)
            .syn()
            .ack(1001)
            .write(&mut v, &[])
            .unwrap();
        let back = match dp.process(
            VecBuf::from_frame(&v),
            &RxMeta {
                port: 1,
                ..Default::default()
            },
        ) {
            Verdict::Tx(0, b) => b,
            _ => panic!("SYN-ACK not forwarded to the client port"),
        };
        let p = SlicedPacket::from_ethernet(back.data()).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!()
        };
        assert_eq!(Ipv4Addr::from(ip.header().source()), VIP);
        assert_eq!(Ipv4Addr::from(ip.header().destination()), CLIENT_IP);
        let Some(TransportSlice::Tcp(t)) = &p.transport else {
            panic!()
        };
        assert_eq!((t.source_port(), t.destination_port()), (80, 40000));
        assert_eq!(&back.data()[0..6], &CLIENT_MAC.0);
    }

    #[test]
    fn clients_behind_one_router_confirm_it_once_an_interval_however_many_they_are() {
        use crate::testkit::flows;
        let mut dp: Datapath<VecBuf> = datapath_from(&flows::bench_config(), 0, 1, 1 << 12);
        let syn = flows::template(0x02);
        let mut buf = VecBuf::from_frame(&syn);
        let confirmed = |dp: &Datapath<VecBuf>| dp.l3.neigh().counters.confirmed;
        let client = |k| flows::Flow::of(&syn, flows::client_spread(k));
        // 200 clients, 11.0.0.0 to 11.0.0.199, more than the cache has slots, all through the
        // router 10.10.0.2 and its MAC.
        for k in 0..200 {
            buf = flows::send(&mut dp, buf, &client(k), &syn);
        }
        assert_eq!(confirmed(&dp), 1, "the router, once");
        dp.tick(CONFIRM_EVERY_MS - 1);
        buf = flows::send(&mut dp, buf, &client(200), &syn);
        assert_eq!(confirmed(&dp), 1, "not again within the interval");
        dp.tick(CONFIRM_EVERY_MS);
        flows::send(&mut dp, buf, &client(201), &syn);
        assert_eq!(confirmed(&dp), 2, "again once it has passed");
    }

    /// Through `route_out` and through the replies' `route_out_reply_into`, which finds a routed
    /// destination by the cache by neighbour itself.
    #[test]
    fn replies_to_clients_behind_one_router_take_its_current_mac_whatever_their_address() {
        replies_behind_one_router_take_its_current_mac(false);
        replies_behind_one_router_take_its_current_mac(true);
    }

    fn replies_behind_one_router_take_its_current_mac(reply_path: bool) {
        use crate::testkit::flows;
        let mut dp: Datapath<VecBuf> = datapath_from(&flows::bench_config(), 0, 1, 1 << 12);
        let frame = flows::template(0x10);
        let send_to = |dp: &mut Datapath<VecBuf>, dst: Ipv4Addr| match if reply_path {
            let mut out = None;
            dp.l3
                .route_out_reply_into(VecBuf::from_frame(&frame), dst, &mut out);
            out.expect("a verdict")
        } else {
            dp.l3.route_out(VecBuf::from_frame(&frame), dst)
        } {
            Verdict::Tx(0, b) => (
                MacAddr(b.data()[..6].try_into().unwrap()),
                b.data()[6..12].to_vec(),
            ),
            _ => panic!("{dst} not sent on the client port"),
        };
        // 300 clients (more than the cache by destination holds) behind the router 10.10.0.2.
        for k in 0..300u32 {
            let (mac, own) = send_to(&mut dp, Ipv4Addr::from(0x0B00_0000 + k * 7));
            assert_eq!(
                (mac, own),
                (CLIENT_MAC, CLIENT_PORT_MAC.0.to_vec()),
                "client {k}"
            );
        }
        // A host on the client link whose slot in the cache by neighbour is the router's
        // (10.10.0.18 and 10.10.0.2 share it): its own MAC, and the clients keep the router's.
        let host = Ipv4Addr::new(10, 10, 0, 18);
        let host_mac = MacAddr([0x02, 0, 0, 0, 0, 0x18]);
        dp.l3.learn_from_peer(host, host_mac, 0);
        assert_eq!(send_to(&mut dp, host).0, host_mac);
        assert_eq!(send_to(&mut dp, Ipv4Addr::new(11, 0, 9, 9)).0, CLIENT_MAC);
        // The router moves to another MAC: clients not seen yet, and those seen, follow it.
        let moved = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
        dp.l3.learn_from_peer(CLIENT_IP, moved, 0);
        for k in [5000u32, 0, 7] {
            let (mac, _) = send_to(&mut dp, Ipv4Addr::from(0x0B00_0000 + k));
            assert_eq!(mac, moved, "client {k} after the move");
        }
    }

    /// A new topology (a port's MAC changed) is not answered from the next-hop cache: a real
    /// server it held leaves with the port's new MAC, not the one cached.
    #[test]
    fn a_new_topology_is_not_answered_from_the_next_hop_cache() {
        use crate::testkit::flows;
        let mut dp: Datapath<VecBuf> = datapath_from(&flows::bench_config(), 0, 1, 1 << 12);
        let frame = flows::template(0x10);
        let sent_from =
            |dp: &mut Datapath<VecBuf>| match dp.l3.route_out(VecBuf::from_frame(&frame), RS1) {
                Verdict::Tx(1, b) => b.data()[6..12].to_vec(),
                _ => panic!("not sent on the real servers' port"),
            };
        let before = sent_from(&mut dp);
        assert_eq!(dp.l3.next_hop_cached_in_slot_of(RS1), Some(RS1));
        let moved = [0x02, 0, 0, 0, 0, 0x77];
        assert_ne!(before, moved);
        let mut t = (**dp.l3.topo()).clone();
        t.ports[1].mac = MacAddr(moved);
        dp.l3.set_topology(Arc::new(t));
        assert_eq!(sent_from(&mut dp), moved);
    }

    /// The real servers' next hops stay in the next-hop cache while replies go to more clients
    /// behind a router than it has slots; the clients take the slots no server holds.
    #[test]
    fn replies_to_many_clients_leave_the_servers_next_hops_cached() {
        use crate::testkit::flows;
        let mut dp: Datapath<VecBuf> = datapath_from(&flows::bench_config(), 0, 1, 1 << 12);
        let frame = flows::template(0x10);
        for rs in [RS1, RS2] {
            let v = dp.l3.route_out(VecBuf::from_frame(&frame), rs);
            assert!(matches!(v, Verdict::Tx(1, _)), "{rs}");
        }
        let clients: Vec<Ipv4Addr> = (0..1000u32)
            .map(|k| Ipv4Addr::from(0x0B00_0000 + k))
            .collect();
        for &c in &clients {
            let mut out = None;
            dp.l3
                .route_out_reply_into(VecBuf::from_frame(&frame), c, &mut out);
            assert!(matches!(out, Some(Verdict::Tx(0, _))), "{c}");
        }
        for rs in [RS1, RS2] {
            assert_eq!(
                dp.l3.next_hop_cached_in_slot_of(rs),
                Some(rs),
                "{rs}'s slot"
            );
        }
        // The last client is in its slot, unless a server holds that slot.
        let last = *clients.last().unwrap();
        let holder = dp.l3.next_hop_cached_in_slot_of(last);
        assert!(
            holder == Some(last) || holder == Some(RS1) || holder == Some(RS2),
            "{holder:?}"
        );
        let cached = clients
            .iter()
            .filter(|&&c| dp.l3.next_hop_cached_in_slot_of(c) == Some(c))
            .count();
        assert!(cached >= 200, "clients in the cache: {cached}");
        // A server's entry made stale by a neighbour's change gives its slot to the next client
        // that maps to it.
        let mate = clients
            .iter()
            .copied()
            .find(|&c| dp.l3.next_hop_slot(c) == dp.l3.next_hop_slot(RS1))
            .expect("a client sharing RS1's slot");
        dp.l3
            .learn_from_peer(RS2, MacAddr([0x02, 0, 0, 0, 0, 0x7e]), 1);
        let mut out = None;
        dp.l3
            .route_out_reply_into(VecBuf::from_frame(&frame), mate, &mut out);
        assert_eq!(dp.l3.next_hop_cached_in_slot_of(mate), Some(mate));
    }

    fn arp_request(target: Ipv4Addr) -> VecBuf {
        let mut buf = [0u8; 60];
        let n = arp::write_request(&mut buf, CLIENT_MAC, CLIENT_IP, target).unwrap();
        VecBuf::from_frame(&buf[..n])
    }

    #[test]
    fn arp_requests_for_owned_addresses_are_answered_and_the_sender_learned() {
        let mut dp: Datapath<VecBuf> = lab_datapath();
        let meta = RxMeta {
            port: 0,
            ..Default::default()
        };
        for target in [GW_CLIENT_IP, VIP, LIP1] {
            let out = match dp.process(arp_request(target), &meta) {
                Verdict::Tx(0, b) => b,
                _ => panic!("no ARP reply for {target}"),
            };
            let eth = EthernetFrame::new_checked(out.data()).unwrap();
            assert_eq!(eth.dst(), CLIENT_MAC);
            assert_eq!(eth.src(), CLIENT_PORT_MAC);
            let a = ArpPacket::new_checked(eth.payload()).unwrap();
            assert_eq!(a.op(), ArpOp::REPLY);
            assert_eq!((a.sha(), a.spa()), (CLIENT_PORT_MAC, target));
            assert_eq!((a.tha(), a.tpa()), (CLIENT_MAC, CLIENT_IP));
        }
        assert_eq!(dp.l3.stats.arp_replies, 3);
        // Not ours: no answer, not a drop either.
        assert!(matches!(
            dp.process(arp_request(Ipv4Addr::new(10, 10, 0, 77)), &meta),
            Verdict::Done(_)
        ));
        assert_eq!(dp.l3.stats.total_drops(), 0);
        // A truncated ARP is dropped with its reason.
        let mut short = arp_request(GW_CLIENT_IP);
        short.set_len(20);
        assert!(matches!(
            dp.process(short, &meta),
            Verdict::Drop(DropReason::Dp(Drop::ArpMalformed), _)
        ));
    }

    #[test]
    fn unknown_next_hop_is_resolved_by_arp_while_the_packet_waits() {
        let mut dp: Datapath<VecBuf> = datapath_from(LAB_CONFIG, 0, 1, 1024);
        // 10.10.0.9 is on the client subnet and unknown: a ping from it is answered by swapping MACs,
        // but a packet routed to it must wait for ARP.
        let mut v = Vec::new();
        etherparse::PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
            .ipv4([10, 10, 0, 9], GW_CLIENT_IP.octets(), 64)
            .icmpv4_echo_request(1, 1)
            .write(&mut v, b"ping")
            .unwrap();
        let meta = RxMeta {
            port: 0,
            ..Default::default()
        };
        assert!(matches!(
            dp.process(VecBuf::from_frame(&v), &meta),
            Verdict::Tx(0, _)
        ));
        assert_eq!(dp.l3.stats.icmp_echo_replies, 1);
        let target = Ipv4Addr::new(10, 10, 0, 9);
        let pkt = VecBuf::from_frame(&v);
        assert!(matches!(dp.l3.route_out(pkt, target), Verdict::Held));
        let mut reqs = Vec::new();
        dp.l3.take_generated(|g| reqs.push(g.bytes().to_vec()));
        assert_eq!(reqs.len(), 1, "one ARP request sent");
        let a = ArpPacket::new_checked(&reqs[0][14..]).unwrap();
        assert_eq!(
            (a.op(), a.tpa(), a.spa()),
            (ArpOp::REQUEST, target, GW_CLIENT_IP)
        );
        // The answer releases the packet with the learned MAC.
        let mac = MacAddr([2, 0, 0, 0, 0, 9]);
        let mut reply = [0u8; 60];
        arp::write_request(&mut reply, mac, target, GW_CLIENT_IP).unwrap();
        assert!(matches!(
            dp.process(VecBuf::from_frame(&reply), &meta),
            Verdict::Tx(0, _)
        ));
        let mut released = Vec::new();
        dp.l3.take_released(|port, b| released.push((port, b)));
        assert_eq!(released.len(), 1);
        assert_eq!(&released[0].1.data()[0..6], &mac.0);
    }

    #[test]
    fn next_hop_cache_follows_a_neighbour_mac_change() {
        let mut dp: Datapath<VecBuf> = lab_datapath();
        let meta = RxMeta {
            port: 0,
            ..Default::default()
        };
        let first = match dp.process(syn_from_client(40000), &meta) {
            Verdict::Tx(1, b) => b,
            _ => panic!("not forwarded"),
        };
        let rip = Ipv4Addr::from(<[u8; 4]>::try_from(&first.data()[30..34]).unwrap());
        let old_mac = if rip == RS1 { RS1_MAC } else { RS2_MAC };
        assert_eq!(&first.data()[0..6], &old_mac.0);
        // Same destination again: served from the cache, same MAC.
        let again = match dp.process(syn_from_client(40000), &meta) {
            Verdict::Tx(1, b) => b,
            _ => panic!("not forwarded"),
        };
        assert_eq!(&again.data()[0..6], &old_mac.0);
        // The real server moved to another MAC: the next packet must use it.
        let new_mac = MacAddr([2, 0, 0, 0, 0, 0x77]);
        dp.l3.learn_from_peer(rip, new_mac, 1);
        let moved = match dp.process(syn_from_client(40000), &meta) {
            Verdict::Tx(1, b) => b,
            _ => panic!("not forwarded"),
        };
        assert_eq!(&moved.data()[0..6], &new_mac.0);
    }

    /// A real server's neighbour entry gone STALE (its reachable time over, `L3::tick`) is
    /// not served from the next-hop cache: the next packet to it goes through the neighbour
    /// table, which moves it on to be probed (DELAY, PROBE), as Linux does for a stale entry in
    /// use.
    #[test]
    fn a_stale_neighbour_is_not_served_from_the_next_hop_cache() {
        use crate::net::neigh::Nud;
        let mut dp: Datapath<VecBuf> = lab_datapath();
        let meta = RxMeta {
            port: 0,
            ..Default::default()
        };
        let rip_of = |b: &VecBuf| Ipv4Addr::from(<[u8; 4]>::try_from(&b.data()[30..34]).unwrap());
        let rip = match dp.process(syn_from_client(40000), &meta) {
            Verdict::Tx(1, b) => rip_of(&b),
            _ => panic!("not forwarded"),
        };
        let state = |dp: &Datapath<VecBuf>| dp.l3.neigh().state(rip);
        assert_eq!(state(&dp), Some(Nud::Reachable));
        assert_eq!(dp.l3.next_hop_cached_in_slot_of(rip), Some(rip));
        // Past the longest reachable time (3/2 of the base's 30 s), within the entry's life.
        dp.tick(50_000);
        assert_eq!(state(&dp), Some(Nud::Stale));
        // At once: an established connection's packets may confirm nothing for a while.
        assert_eq!(dp.l3.next_hop_cached_in_slot_of(rip), None);
        // The same server again (the same client's port: the same connection).
        match dp.process(syn_from_client(40000), &meta) {
            Verdict::Tx(1, b) => assert_eq!(rip_of(&b), rip),
            _ => panic!("not forwarded"),
        }
        assert!(
            matches!(state(&dp), Some(Nud::Delay | Nud::Probe)),
            "not looked up in the table: {:?}",
            state(&dp)
        );
    }

    fn client_ack(sport: u16) -> VecBuf {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
            .ipv4(CLIENT_IP.octets(), VIP.octets(), 64)
            .tcp(sport, 80, 1001, 64240)
            .ack(1)
            .write(&mut v, b"GET / HTTP/1.1")
            .unwrap();
        VecBuf::from_frame(&v)
    }

    pub(super) fn outcome(v: Verdict<VecBuf>) -> (String, Vec<u8>) {
        match v {
            Verdict::Tx(p, b) => (format!("tx{p}"), b.data().to_vec()),
            Verdict::ToWorker(w, b) => (format!("worker{w}"), b.data().to_vec()),
            Verdict::ToKernel(p, b) => (format!("kernel{p}"), b.data().to_vec()),
            Verdict::Drop(r, _) => (format!("drop {r:?}"), Vec::new()),
            Verdict::Done(_) => ("done".into(), Vec::new()),
            Verdict::Held => ("held".into(), Vec::new()),
        }
    }

    /// A burst gives exactly what the same frames one by one give, including a SYN and the first
    /// data of its connection in the same burst, a duplicate SYN, an ARP request (which resolves
    /// nothing new, see `process_burst`) and a stray ACK.
    #[test]
    fn burst_processing_equals_one_by_one() {
        let frames: Vec<VecBuf> = vec![
            syn_from_client(41000),
            client_ack(41000),
            syn_from_client(41001),
            syn_from_client(41001),
            arp_request(VIP),
            client_ack(41999),
            client_ack(41001),
            syn_from_client(41002),
        ];
        let meta = RxMeta {
            port: 0,
            ..Default::default()
        };
        let mut single: Datapath<VecBuf> = lab_datapath();
        let want: Vec<_> = frames
            .iter()
            .map(|f| outcome(single.process(f.clone(), &meta)))
            .collect();
        let mut burst: Datapath<VecBuf> = lab_datapath();
        let mut pkts: Vec<Option<VecBuf>> = frames.into_iter().map(Some).collect();
        let metas = vec![meta; pkts.len()];
        let mut out: Vec<Option<Verdict<VecBuf>>> = (0..pkts.len()).map(|_| None).collect();
        burst.process_burst(&mut pkts, &metas, &mut out);
        let got: Vec<_> = out
            .into_iter()
            .map(|v| outcome(v.expect("a verdict per frame")))
            .collect();
        assert_eq!(got, want);
        assert_eq!(burst.fwd.table().len(), single.fwd.table().len());
    }

    // --- punting to the kernel twin (issue 10) ---

    fn tcp_to(dst: Ipv4Addr, dport: u16, syn: bool) -> VecBuf {
        let mut v = Vec::new();
        let b = PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
            .ipv4(CLIENT_IP.octets(), dst.octets(), 64)
            .tcp(40001, dport, 1000, 64240);
        let b = if syn { b.syn() } else { b.ack(1) };
        b.write(&mut v, &[]).unwrap();
        VecBuf::from_frame(&v)
    }

    fn udp_to(dst_mac: MacAddr, dst: Ipv4Addr, dport: u16) -> VecBuf {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC.0, dst_mac.0)
            .ipv4(CLIENT_IP.octets(), dst.octets(), 64)
            .udp(40001, dport)
            .write(&mut v, b"hello")
            .unwrap();
        VecBuf::from_frame(&v)
    }

    fn icmp_to(dst: Ipv4Addr, request: bool) -> VecBuf {
        let mut v = Vec::new();
        let b = PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0).ipv4(
            CLIENT_IP.octets(),
            dst.octets(),
            64,
        );
        if request {
            b.icmpv4_echo_request(7, 1).write(&mut v, b"ping").unwrap();
        } else {
            b.icmpv4_echo_reply(7, 1).write(&mut v, b"ping").unwrap();
        }
        VecBuf::from_frame(&v)
    }

    /// VRRP (IP protocol 112) to 224.0.0.18, as keepalived sends it (RFC 5798 §5.1.1).
    fn vrrp() -> VecBuf {
        let payload = [0x31u8, 51, 100, 1, 0, 1, 0, 0, 10, 10, 0, 100];
        let mut ip = etherparse::Ipv4Header::new(
            payload.len() as u16,
            255,
            etherparse::IpNumber(112),
            CLIENT_IP.octets(),
            [224, 0, 0, 18],
        )
        .unwrap();
        ip.header_checksum = ip.calc_header_checksum();
        let mut v = vec![0x01, 0x00, 0x5e, 0x00, 0x00, 0x12];
        v.extend_from_slice(&CLIENT_MAC.0);
        v.extend_from_slice(&[0x08, 0x00]);
        ip.write(&mut v).unwrap();
        v.extend_from_slice(&payload);
        VecBuf::from_frame(&v)
    }

    /// UDP from a link-local client to `dst`.
    fn ipv6(dst: std::net::Ipv6Addr) -> VecBuf {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
            .ipv6(
                [0xfe80, 0, 0, 0, 0, 0, 0, 2]
                    .map(|x: u16| x.to_be_bytes())
                    .concat()
                    .try_into()
                    .unwrap(),
                dst.octets(),
                64,
            )
            .udp(546, 547)
            .write(&mut v, b"x")
            .unwrap();
        VecBuf::from_frame(&v)
    }

    /// Every kind of frame, with a twin on the port and without: what goes up, what is answered,
    /// what is dropped (and why). Traffic to a VIP or LIP never goes up.
    #[test]
    fn punt_decisions_for_every_kind_of_frame() {
        let bcast = Ipv4Addr::new(10, 10, 0, 255);
        let cases: Vec<(&str, VecBuf, &str, &str)> = vec![
            // (what, frame, with a twin, without)
            (
                "tcp to the interface address",
                tcp_to(GW_CLIENT_IP, 22, true),
                "kernel0",
                "drop Dp(ProtoUnsupported)",
            ),
            (
                "udp to the interface address",
                udp_to(CLIENT_PORT_MAC, GW_CLIENT_IP, 179),
                "kernel0",
                "drop Dp(ProtoUnsupported)",
            ),
            (
                "echo request to the interface address",
                icmp_to(GW_CLIENT_IP, true),
                "tx0",
                "tx0",
            ),
            (
                "echo reply to the interface address",
                icmp_to(GW_CLIENT_IP, false),
                "kernel0",
                "drop Dp(IcmpUnhandled)",
            ),
            (
                "vrrp to 224.0.0.18",
                vrrp(),
                "kernel0",
                "drop Dp(L2NotForUs)",
            ),
            (
                "udp to the subnet broadcast",
                udp_to(MacAddr::BROADCAST, bcast, 520),
                "kernel0",
                "drop Dp(IpNotForUs)",
            ),
            (
                "ipv6 to someone else",
                ipv6("fe80::1".parse().unwrap()),
                "drop Dp(Ipv6NotForUs)",
                "drop Dp(Ipv6NotForUs)",
            ),
            (
                "ipv6 to the port's link-local address",
                ipv6(crate::inet6::link_local(CLIENT_PORT_MAC)),
                "kernel0",
                "drop Dp(ProtoUnsupported)",
            ),
            (
                "tcp to a vip port without a service",
                tcp_to(VIP, 22, true),
                "drop Dp(NoService)",
                "drop Dp(NoService)",
            ),
            (
                "tcp to a lip without a connection",
                tcp_to(LIP1, 5000, false),
                "drop Dp(NoConn)",
                "drop Dp(NoConn)",
            ),
            ("echo request to the vip", icmp_to(VIP, true), "tx0", "tx0"),
            (
                "tcp to someone else",
                tcp_to(Ipv4Addr::new(10, 10, 0, 77), 22, true),
                "drop Dp(IpNotForUs)",
                "drop Dp(IpNotForUs)",
            ),
        ];
        let meta = RxMeta {
            port: 0,
            ..Default::default()
        };
        for (what, frame, twin, none) in cases {
            let mut with: Datapath<VecBuf> = lab_datapath();
            let (got, bytes) = outcome(with.process(frame.clone(), &meta));
            assert_eq!(got, twin, "{what}, with a twin");
            if got.starts_with("kernel") {
                assert_eq!(bytes, frame.data(), "{what}: goes up unchanged");
            }
            let mut without: Datapath<VecBuf> =
                datapath_from(&without_twins(LAB_CONFIG), 0, 1, 1024);
            assert_eq!(
                outcome(without.process(frame, &meta)).0,
                none,
                "{what}, without"
            );
        }
        let mut dp: Datapath<VecBuf> = lab_datapath();
        // An EtherType the datapath does not handle (LLDP) goes up as such.
        let mut lldp = [CLIENT_PORT_MAC.0, CLIENT_MAC.0].concat();
        lldp.extend_from_slice(&[0x88, 0xcc]);
        lldp.resize(60, 0);
        for f in [
            tcp_to(GW_CLIENT_IP, 22, true),
            vrrp(),
            VecBuf::from_frame(&lldp),
        ] {
            dp.process(f, &meta);
        }
        let c = dp.l3.stats.punt;
        assert_eq!(
            (c.local, c.multicast, c.ethertype, c.punted()),
            (1, 1, 1, 3)
        );
    }

    #[test]
    fn arp_is_answered_and_a_copy_goes_up() {
        let meta = RxMeta {
            port: 0,
            ..Default::default()
        };
        let mut dp: Datapath<VecBuf> = lab_datapath();
        let req = arp_request(GW_CLIENT_IP);
        assert!(matches!(dp.process(req.clone(), &meta), Verdict::Tx(0, _)));
        let mut gen = Vec::new();
        dp.l3
            .take_generated(|g| gen.push((g.port, g.to_twin, g.bytes().to_vec())));
        assert_eq!(gen, [(0, true, req.data().to_vec())]);
        assert_eq!(dp.l3.stats.punt.arp_copy, 1);
        // Not ours: no answer, still a copy. Without a twin: no copy.
        assert!(matches!(
            dp.process(arp_request(Ipv4Addr::new(10, 10, 0, 77)), &meta),
            Verdict::Done(_)
        ));
        dp.l3.take_generated(|g| assert!(g.to_twin));
        let mut none: Datapath<VecBuf> = datapath_from(&without_twins(LAB_CONFIG), 0, 1, 1024);
        none.process(arp_request(GW_CLIENT_IP), &meta);
        none.l3
            .take_generated(|g| assert!(!g.to_twin, "no copy without a twin"));
    }

    #[test]
    fn punting_beyond_the_budget_is_dropped_and_counted() {
        let meta = RxMeta {
            port: 0,
            ..Default::default()
        };
        let mut dp: Datapath<VecBuf> = lab_datapath();
        dp.l3.punt = punt::PuntBudget::new(1000, 2);
        let got: Vec<String> = (0..4)
            .map(|_| outcome(dp.process(tcp_to(GW_CLIENT_IP, 22, true), &meta)).0)
            .collect();
        assert_eq!(
            got,
            [
                "kernel0",
                "kernel0",
                "drop Dp(PuntLimited)",
                "drop Dp(PuntLimited)"
            ]
        );
        assert_eq!(dp.l3.stats.punt.limited, 2);
        // A millisecond later one more token.
        dp.tick(1);
        assert_eq!(
            outcome(dp.process(tcp_to(GW_CLIENT_IP, 22, true), &meta)).0,
            "kernel0"
        );
    }

    #[test]
    fn a_kernel_owned_vip_not_held_is_neither_answered_nor_served() {
        // Every service of the VIP (TCP and UDP) is kernel-owned: one VIP has one owner.
        let cfg = LAB_CONFIG.replace("scheduler =", "owner = \"kernel\"\nscheduler =");
        let meta = RxMeta {
            port: 0,
            ..Default::default()
        };
        let mut dp: Datapath<VecBuf> = datapath_from(&cfg, 0, 1, 1024);
        assert!(matches!(
            dp.process(arp_request(VIP), &meta),
            Verdict::Done(_)
        ));
        assert_eq!(
            outcome(dp.process(syn_from_client(40000), &meta)).0,
            "drop Dp(VipNotHeld)"
        );
        assert_eq!(
            outcome(dp.process(icmp_to(VIP, true), &meta)).0,
            "drop Dp(IpNotForUs)"
        );
        // The LIPs of that service are not answered either; config-owned ones elsewhere would be.
        assert!(matches!(
            dp.process(arp_request(LIP1), &meta),
            Verdict::Done(_)
        ));
    }
}

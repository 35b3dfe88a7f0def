//! One worker's L2/L3 state and the services every mode shares: ARP (answer for every address
//! the gateway owns, learn neighbours), neighbour confirmation, output through the routing and
//! neighbour tables with a next-hop cache, frames the datapath generates, and what goes up to a
//! kernel twin (`punt`'s policy). The forwarding engine (`forward/`, `inet6/`) works through it;
//! the pipeline that drives it is `datapath`'s.

use super::neigh::NeighConfig;
use super::{punt, NeighDrop, NeighTable, NextHop, Resolve, Topology};
use crate::packet::{fill_slot, Event, GenFrame, PacketBuf, Verdict, GEN_FRAME_MAX};
use crate::stats::{Drop, WorkerStats};
use crate::wire::{arp, ethernet, ArpOp, ArpPacket, EtherType, EthernetFrame, MacAddr};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Generated frames buffered per poll round.
pub const GEN_QUEUE: usize = 256;
/// Entries of the next-hop cache (direct-mapped by destination address): `1 << NH_CACHE_BITS`.
const NH_CACHE_BITS: u32 = 8;
const NH_CACHE: usize = 1 << NH_CACHE_BITS;
/// Entries of the cache behind it, direct-mapped by the neighbour a destination is reached
/// through (`L3::route_out_slow`): routers and on-link hosts, a handful. `1 << HOP_CACHE_BITS`.
const HOP_CACHE_BITS: u32 = 4;
const HOP_CACHE: usize = 1 << HOP_CACHE_BITS;

/// The slot of IPv4 address `key` in a direct-mapped cache of `1 << BITS` entries (`nh_cache`,
/// `hop_cache`): the top `BITS` bits of the key times 2^32/φ (Fibonacci hashing, Knuth, TAOCP
/// vol. 3, 6.4), which every bit of the address moves. One multiply and one shift, where the
/// address's second byte folded onto its first took a copy, a shift, an `xor` and a truncation,
/// and put the same host of every /16 in one slot (the hosts of a /24 up to 128 take as many
/// slots either way; `tests::next_hop_slots_spread`).
#[inline(always)]
fn addr_slot<const BITS: u32>(key: u32) -> usize {
    (key.wrapping_mul(0x9E37_79B9) >> (32 - BITS)) as usize
}

/// Ports whose MACs `L3::port_macs` holds (a port beyond them takes the topology's).
const PORT_MAC_KEYS: usize = 8;
/// No MAC's key: `port_macs`' keys have their low 16 bits clear, `ConfirmCache`'s are never
/// all ones (a broadcast source MAC, and an EtherType of 0xFFFF).
const NO_MAC_KEY: u64 = u64::MAX;

/// A MAC's six bytes as the low 48 bits of a little-endian word: what the first eight bytes of a
/// frame read as one word hold, masked (`L3::to_port_mac`).
#[inline(always)]
fn mac_key(mac: &[u8; 6]) -> u64 {
    u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0])
}

/// The MAC whose [`mac_key`] is `key`.
#[inline]
fn mac_of_key(key: u64) -> MacAddr {
    let b = key.to_le_bytes();
    MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
}

/// A MAC as `L3::to_port_mac` compares a frame's destination: the first eight bytes of a frame
/// read as one little-endian word, shifted left by 16 bits (the two bytes of the source MAC
/// dropped), hold its destination MAC's [`mac_key`] shifted so. The shift where a mask took a
/// 64-bit constant and an `and` (`established-burst-net` 341 -> 340).
#[inline(always)]
fn dst_mac_key(mac: &[u8; 6]) -> u64 {
    mac_key(mac) << 16
}

/// `port_macs` of a topology.
fn port_mac_keys(topo: &Topology) -> [u64; PORT_MAC_KEYS] {
    let mut keys = [NO_MAC_KEY; PORT_MAC_KEYS];
    for (k, p) in keys.iter_mut().zip(&topo.ports) {
        *k = dst_mac_key(&p.mac.0);
    }
    keys
}

/// Slots of the neighbour-confirmation cache (`L3::confirm_neighbour`), one per sending MAC.
const CONFIRM_SLOTS: usize = 64;
/// A neighbour is confirmed by the datapath at most this often per sending MAC: far below the
/// shortest reachable time (base/2 = 15 s by default), far above the per-packet rate.
pub(crate) const CONFIRM_EVERY_MS: u64 = 500;

/// A frame's source MAC and its EtherType (bytes 6..14) as one little-endian word, the key of
/// its sender in a [`ConfirmCache`], and its slot there. The EtherType is the same in every frame
/// a cache looks at (IPv4's in `L3`'s, IPv6's in `Inet6`'s), so the key is the MAC's; read with
/// it, the word is one load, where the MAC alone, masked, was two and a shift (the compiler
/// narrowed the load; `established-burst-net` 344 -> 341, perf/RESULTS.md).
#[inline(always)]
fn confirm_slot(frame: &[u8]) -> Option<(u64, usize)> {
    let key = u64::from_le_bytes(*frame.get(6..)?.first_chunk::<8>()?);
    // Fibonacci hashing: the top bits of the product mix all eight bytes.
    let hash = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - CONFIRM_SLOTS.ilog2());
    Some((key, hash as usize % CONFIRM_SLOTS))
}

/// Which sending MACs confirmed their neighbour lately, each with the time it did: one slot per
/// MAC (by a hash of it), direct-mapped. A frame's sender confirms its neighbour at most once per
/// `CONFIRM_EVERY_MS` (`L3::confirm_neighbour`). `L3` keeps one for IPv4's neighbours and
/// `Inet6` one for IPv6's (`inet6::nd::confirm`): a router sends both families from one MAC, and
/// with one cache the packets of one family would keep the other's neighbour from confirming.
pub(crate) struct ConfirmCache {
    slots: [(u64, u64); CONFIRM_SLOTS],
    /// The sender last looked at (`due`, `claim`) and the time it was: a frame from the same MAC
    /// at the same `now_ms` is not due, whatever its slot says, which spares the hash (the
    /// compiler computes it after this compare) and the slot's compares of every frame but a
    /// burst's first from a router (`established-burst-net` 481 -> 468). Its slot still holds
    /// it, no other sender having taken the slot since (but for a frame with no sender, key 0,
    /// which takes no slot and confirms nothing either way).
    last: (u64, u64),
}

/// A frame's sender as a [`ConfirmCache`] keys it: its MAC's [`mac_key`] and its slot.
#[derive(Clone, Copy)]
pub(crate) struct Sender {
    key: u64,
    slot: usize,
}

impl Default for ConfirmCache {
    fn default() -> Self {
        ConfirmCache {
            slots: [(0, 0); CONFIRM_SLOTS],
            last: (NO_MAC_KEY, 0),
        }
    }
}

impl ConfirmCache {
    /// The sender of `frame`, whatever the cache says.
    #[inline(always)]
    pub(crate) fn sender(frame: &[u8]) -> Option<Sender> {
        let (key, slot) = confirm_slot(frame)?;
        Some(Sender { key, slot })
    }

    /// The sender of `frame`, unless its MAC confirmed less than `CONFIRM_EVERY_MS` before
    /// `now_ms`. A sender returned must be claimed (`claim`) before the next call: noted as
    /// the last looked at, it is not due again in this millisecond.
    #[inline(always)]
    pub(crate) fn due(&mut self, frame: &[u8], now_ms: u64) -> Option<Sender> {
        let s = Self::sender(frame)?;
        if self.last == (s.key, now_ms) {
            return None;
        }
        self.last = (s.key, now_ms);
        let (last, at) = self.slots[s.slot];
        if last == s.key && now_ms.saturating_sub(at) < CONFIRM_EVERY_MS {
            return None;
        }
        Some(s)
    }

    /// The MAC of `sender`, noted as confirming at `now_ms`; None for a frame with no sender: the
    /// SYN proxy's completion, built here, carries a zero source MAC, which confirms nothing and
    /// takes no slot from a MAC that does.
    #[inline]
    pub(crate) fn claim(&mut self, sender: Sender, now_ms: u64) -> Option<MacAddr> {
        self.last = (sender.key, now_ms);
        // The MAC: the key's low 48 bits (`confirm_slot`).
        let mac = sender.key & 0xFFFF_FFFF_FFFF;
        if mac == 0 {
            return None;
        }
        self.slots[sender.slot] = (sender.key, now_ms);
        Some(mac_of_key(mac))
    }
}

/// A resolved destination: where `route_out` sent the last packet for it. The caches that hold
/// these (`nh_cache`, `hop_cache`) are emptied whenever the neighbour table's generation moves
/// (`L3::follow_neigh`): an entry held is current, and a lookup compares its address alone,
/// where the entry's generation, compared with the table's, took a load, a compare and a branch
/// more (`reply-burst-net` 351 -> 347).
#[derive(Clone, Copy, Default)]
struct NextHopEntry {
    dst: u32,
    port: u16,
    /// The Ethernet header's first 12 bytes toward this next hop: its MAC, then the port's own
    /// (written with one copy).
    macs: [u8; 12],
    /// `dst` is reached through a router (a client, most often), not on a link (a real server).
    via_router: bool,
}

impl NextHopEntry {
    /// Slot `slot`'s empty entry in a direct-mapped cache of `1 << BITS` entries (by
    /// `addr_slot`): its address is one whose slot is another, which no lookup in this slot
    /// compares equal (0.0.0.0, whose slot is 0; in slot 0, 0.0.0.1, whose slot is not).
    /// Marked as reached through a router, so that any destination may take the slot
    /// (`L3::note_next_hop`).
    fn empty<const BITS: u32>(slot: usize) -> NextHopEntry {
        let dst = u32::from(slot == addr_slot::<BITS>(0));
        debug_assert_ne!(addr_slot::<BITS>(dst), slot);
        NextHopEntry {
            dst,
            via_router: true,
            ..Default::default()
        }
    }

    /// A cache of `1 << BITS` (`N`) empty entries: a cache of another size does not compile.
    fn empty_cache<const BITS: u32, const N: usize>() -> [NextHopEntry; N] {
        const { assert!(N == 1 << BITS, "a cache's entries are 1 << BITS") };
        std::array::from_fn(NextHopEntry::empty::<BITS>)
    }
}

/// The L2/L3 state of one worker.
pub struct L3<B> {
    pub worker: u16,
    topo: Arc<Topology>,
    /// Route and neighbour lookups of recent destinations: most packets go to a handful of real
    /// servers and clients' next hops, so this saves a route lookup and a neighbour lookup per packet.
    nh_cache: Box<[NextHopEntry; NH_CACHE]>,
    /// The same, by the neighbour (`NextHop::l2_target`) rather than the destination: what
    /// every destination behind one router shares, for those `nh_cache` does not hold.
    hop_cache: [NextHopEntry; HOP_CACHE],
    /// Bumped when the topology changes: what IPv6's next-hop cache compares with its neighbour
    /// table's generation (`inet6::nd`). IPv4's caches compare the neighbour table's alone,
    /// which `set_topology` moves too.
    topo_generation: u64,
    /// Each port's MAC as a word (`dst_mac_key`), for the fast paths' test of a frame's destination:
    /// one load, where the topology's was three dependent ones and two of each address. None
    /// (`NO_MAC_KEY`) while the fast paths are off (`fast_path`).
    port_macs: [u64; PORT_MAC_KEYS],
    /// Whether the fast paths admit frames (`Datapath::set_fast_path`): on unless a test
    /// compares them with the general path. Off, `port_macs` holds no MAC, which the fast paths'
    /// admissions test anyway: the burst loop tests no flag of its own (`established-burst-net`
    /// -2).
    fast_path: bool,
    /// (source MAC, ms) of the last neighbour confirmations (`confirm_neighbour`).
    confirm_cache: ConfirmCache,
    /// Private, so that every change to it goes through `follow_neigh` (`neigh` reads it).
    neigh: NeighTable<B>,
    /// The neighbour table's generation the next-hop caches follow (`follow_neigh`).
    caches_generation: u64,
    pub stats: WorkerStats,
    /// Monotonic milliseconds, set by the worker each round.
    pub now_ms: u64,
    /// This worker's punt budget (`punt`).
    pub punt: punt::PuntBudget,
    generated: Vec<GenFrame>,
    released: Vec<(u16, B)>,
    events: Vec<Event>,
    /// Client packets of SYN-proxied connections waiting for their real server's answer.
    pub parked: crate::conn::parked::Parked<B>,
    /// The last packet `route_out` queued for ARP: its destination and headers, for the fragments
    /// of its datagram to follow it (`crate::frag`).
    pub last_queued: Option<QueuedHead>,
}

/// The destination and the first bytes of a packet queued for ARP.
#[derive(Clone, Copy, Debug)]
pub struct QueuedHead {
    pub dst: Ipv4Addr,
    len: usize,
    buf: [u8; QueuedHead::ROOM],
}

impl QueuedHead {
    /// Ethernet, an outer and an inner IPv4 header without options.
    const ROOM: usize = ethernet::HEADER_LEN + 40;

    fn new(dst: Ipv4Addr, frame: &[u8]) -> QueuedHead {
        let len = frame.len().min(Self::ROOM);
        let mut buf = [0; Self::ROOM];
        buf[..len].copy_from_slice(&frame[..len]);
        QueuedHead { dst, len, buf }
    }

    pub fn head(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl<B> L3<B> {
    /// Interfaces, addresses and routes this worker runs with.
    #[inline]
    pub fn topo(&self) -> &Arc<Topology> {
        &self.topo
    }

    /// Whether the fast paths take a frame whose first bytes are `head`, received on port
    /// `port`, by its destination: it is sent to that port's MAC, and they are on.
    #[inline(always)]
    pub fn fast_to_port_mac(&self, port: u16, head: &[u8; 8]) -> bool {
        let dst = u64::from_le_bytes(*head) << 16;
        match self.port_macs.get(usize::from(port)) {
            Some(&k) => k == dst,
            None => self.fast_path && self.to_topo_port_mac(port, dst),
        }
    }

    /// Whether a frame whose first bytes are `head`, received on port `port`, is sent to that
    /// port's MAC (the general path's test, `datapath::ingress`), whether or not the fast paths
    /// are on.
    #[inline(always)]
    pub fn to_port_mac(&self, port: u16, head: &[u8; 8]) -> bool {
        self.fast_to_port_mac(port, head)
            || !self.fast_path && self.to_topo_port_mac(port, u64::from_le_bytes(*head) << 16)
    }

    /// `to_port_mac` by the topology's ports alone, for a frame's first word shifted as
    /// `dst_mac_key` shifts a MAC's (`dst`).
    #[inline(always)]
    fn to_topo_port_mac(&self, port: u16, dst: u64) -> bool {
        self.topo
            .ports
            .get(usize::from(port))
            .is_some_and(|p| dst_mac_key(&p.mac.0) == dst)
    }

    /// The neighbour table, to read: every change goes through `L3`, which empties its next-hop
    /// caches when the table's generation moves (`follow_neigh`).
    #[inline]
    pub fn neigh(&self) -> &NeighTable<B> {
        &self.neigh
    }

    /// Whether the fast paths are on (`set_fast_path`).
    #[inline]
    pub fn fast_path(&self) -> bool {
        self.fast_path
    }
}

impl<B: PacketBuf> L3<B> {
    pub fn new(worker: u16, topo: Arc<Topology>, neigh: NeighConfig) -> Self {
        L3 {
            worker,
            port_macs: port_mac_keys(&topo),
            fast_path: true,
            topo,
            nh_cache: Box::new(NextHopEntry::empty_cache::<NH_CACHE_BITS, NH_CACHE>()),
            hop_cache: NextHopEntry::empty_cache::<HOP_CACHE_BITS, HOP_CACHE>(),
            topo_generation: 0,
            confirm_cache: ConfirmCache::default(),
            neigh: NeighTable::new(neigh),
            caches_generation: 0,
            stats: WorkerStats::default(),
            now_ms: 0,
            punt: punt::PuntBudget::default(),
            generated: Vec::with_capacity(GEN_QUEUE),
            released: Vec::with_capacity(64),
            events: Vec::with_capacity(16),
            parked: Default::default(),
            last_queued: None,
        }
    }

    /// Frames `generate` takes before the worker next sends them (`GEN_QUEUE` in all).
    pub fn generate_room(&self) -> usize {
        GEN_QUEUE - self.generated.len()
    }

    /// Queues a generated frame written by `write` (returns its length, or None to cancel).
    pub fn generate(&mut self, port: u16, write: impl FnOnce(&mut [u8]) -> Option<usize>) {
        if self.generated.len() >= GEN_QUEUE {
            self.stats.drop(Drop::GenOverflow.into());
            return;
        }
        let mut g = GenFrame {
            port,
            to_twin: false,
            len: 0,
            buf: [0; GEN_FRAME_MAX],
        };
        if let Some(len) = write(&mut g.buf) {
            g.len = len;
            self.stats.generated += 1;
            self.generated.push(g);
        }
    }

    /// Sends `pkt` up to `port`'s kernel twin for `why`, within the worker's punt budget; without
    /// a twin it is dropped for `otherwise`.
    pub fn punt(&mut self, port: u16, pkt: B, why: punt::Punt, otherwise: Drop) -> Verdict<B> {
        if !self.has_twin(port) {
            return Verdict::Drop(otherwise.into(), pkt);
        }
        if !self.punt.allow(why, self.now_ms) {
            self.stats.punt.limited += 1;
            return Verdict::Drop(Drop::PuntLimited.into(), pkt);
        }
        self.count_punt(why);
        Verdict::ToKernel(port, pkt)
    }

    #[inline]
    pub fn has_twin(&self, port: u16) -> bool {
        self.topo.ports.get(port as usize).is_some_and(|p| p.twin)
    }

    fn count_punt(&mut self, why: punt::Punt) {
        let c = &mut self.stats.punt;
        match why {
            punt::Punt::Local => c.local += 1,
            punt::Punt::Multicast => c.multicast += 1,
            punt::Punt::EtherType => c.ethertype += 1,
            punt::Punt::ArpCopy => c.arp_copy += 1,
        }
    }

    /// Whether a frame the kernel sent on a twin goes on the wire (counted either way): all do but
    /// its redundant ARP replies (`punt::is_redundant_arp_reply`).
    pub fn from_kernel(&mut self, frame: &[u8]) -> bool {
        let local = &self.topo.local;
        if punt::is_redundant_arp_reply(frame, |ip| local.contains(&ip)) {
            self.stats.punt.arp_reply_suppressed += 1;
            return false;
        }
        self.stats.punt.from_kernel += 1;
        true
    }

    /// Queues a copy of an ARP frame received on `port` for its twin (within the punt budget), so
    /// the kernel's neighbour table follows the wire too.
    fn copy_arp_to_twin(&mut self, port: u16, frame: &[u8]) {
        if !self.has_twin(port) {
            return;
        }
        if !self.punt.allow(punt::Punt::ArpCopy, self.now_ms) {
            self.stats.punt.limited += 1;
            self.stats.drop(Drop::PuntLimited.into());
            return;
        }
        if self.generated.len() >= GEN_QUEUE {
            self.stats.drop(Drop::GenOverflow.into());
            return;
        }
        // An ARP frame is 42 bytes plus padding; anything past GEN_FRAME_MAX is padding.
        let len = frame.len().min(GEN_FRAME_MAX);
        let mut g = GenFrame {
            port,
            to_twin: true,
            len,
            buf: [0; GEN_FRAME_MAX],
        };
        g.buf[..len].copy_from_slice(&frame[..len]);
        self.generated.push(g);
        self.count_punt(punt::Punt::ArpCopy);
    }

    /// Generates an IPv4 packet toward `dst`: `write` fills the IP packet (header on) into the buffer
    /// it gets and returns its length. Routed, with the next hop's MAC from the neighbour table; if
    /// that is not known the packet is not sent (generated packets are not queued) and false returned.
    /// `came`: when answering a packet from `dst`, the port it came in on and the MAC it came from,
    /// the next hop when the route leaves by that port and this worker has not resolved the route's
    /// (the neighbour may have been learned by another worker: each keeps its own table).
    pub fn generate_ipv4(
        &mut self,
        dst: Ipv4Addr,
        came: Option<(u16, MacAddr)>,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        let Some(hop) = self.topo.routes.lookup(dst) else {
            self.stats.drop(Drop::NoRoute.into());
            return false;
        };
        let resolved = self.neigh.mac(hop.l2_target(dst));
        let fallback = came.and_then(|(port, mac)| (port == hop.port).then_some(mac));
        let Some(mac) = resolved.or(fallback) else {
            self.stats.drop(Drop::NeighUnresolved.into());
            return false;
        };
        let src_mac = self.topo.ports[hop.port as usize].mac;
        let before = self.stats.generated;
        self.generate(hop.port, |buf| {
            let (eth, rest) = buf.split_at_mut(ethernet::HEADER_LEN);
            let n = write(rest)?;
            ethernet::write_header(eth, mac, src_mac, EtherType::IPV4).ok()?;
            Some((ethernet::HEADER_LEN + n).max(ethernet::MIN_FRAME_LEN))
        });
        self.stats.generated > before
    }

    /// Sends an ARP request for `target` on `port`: broadcast, or to `unicast` (a NUD probe).
    fn arp_request(&mut self, port: u16, target: Ipv4Addr, unicast: Option<MacAddr>) {
        let Some(p) = self.topo.ports.get(port as usize) else {
            return;
        };
        let mac = p.mac;
        let Some(src) = self.topo.source_for(port, target) else {
            return;
        };
        self.stats.arp_requests += 1;
        let dst = unicast.unwrap_or(MacAddr::BROADCAST);
        self.generate(port, |buf| {
            arp::write_request_to(buf, dst, mac, src, target).ok()
        });
    }

    /// The datapath received `pkt`, a packet of a tracked connection from `src`: confirms the
    /// neighbour it came through, by the frame's source MAC (`NeighTable::confirm`). Costs the
    /// MAC's read and a compare per packet from the sender of the packet before it in the same
    /// millisecond, a multiply and its slot's compares more for another: each sending MAC
    /// confirms at most once per `CONFIRM_EVERY_MS`, in a small direct-mapped cache keyed by that
    /// MAC; only then are the route and the table looked up (`confirm_neighbour_now`, out of
    /// line).
    ///
    /// Keyed by the MAC, not by `src`: every client behind a router sends through the router's
    /// MAC, and it is the router that is confirmed. Keyed by the client's address, the 64 slots
    /// held a few dozen clients; at 10M connections from 167 addresses 94% of the clients'
    /// segments went on to `confirm_neighbour_now` (perf/RESULTS.md, "Neighbours confirmed per
    /// MAC"). A MAC that is the next hop for several addresses (a router with two) confirms the
    /// first one's within an interval; the other's entry may go STALE and be probed, as Linux's
    /// entries for forwarded traffic are.
    ///
    /// Always inlined: the forwarding paths call it once a packet, and when the established hot
    /// path (`forward::fullnat::hot`) became its second caller the compiler stopped inlining it
    /// into either (42 instructions a SYN instead of 20).
    #[inline(always)]
    pub fn confirm_neighbour(&mut self, src: Ipv4Addr, pkt: &B) {
        self.confirm_neighbour_in(src, pkt.data());
    }

    /// `confirm_neighbour` for a caller that holds the packet's frame: it is not looked up again.
    #[inline(always)]
    pub fn confirm_neighbour_in(&mut self, src: Ipv4Addr, frame: &[u8]) {
        self.confirm_neighbour_of(|| src, frame);
    }

    /// `confirm_neighbour_in` with the packet's source read by `src` only when its sender is
    /// due: the hot path's read of it from its lane was hoisted above the cache's test, and the
    /// lane's address kept for it, which cost the burst loop a register (`established-burst-net`
    /// 323 -> 313, `reply-burst-net` 343 -> 335: 59 -> 48 stack accesses a packet).
    #[inline(always)]
    pub fn confirm_neighbour_of(&mut self, src: impl FnOnce() -> Ipv4Addr, frame: &[u8]) {
        if let Some(sender) = self.confirm_cache.due(frame, self.now_ms) {
            self.confirm_neighbour_now(src(), sender);
        }
    }

    /// `confirm_neighbour_in` now, whatever the cache says: for a packet that proves its sender
    /// there at this moment, which a later `suspect_neighbour` compares with (the real server's
    /// answer to a SYN that it refused, `Forwarder::keeps_syn_recv`). Rare: out of line.
    #[inline(never)]
    pub fn confirm_neighbour_at_once(&mut self, src: Ipv4Addr, frame: &[u8]) {
        if let Some(sender) = ConfirmCache::sender(frame) {
            self.confirm_neighbour_now(src, sender);
        }
    }

    /// Confirms the next hop toward `src` if it has `sender`'s MAC, noted in `confirm_cache`
    /// (`ConfirmCache::claim`).
    #[inline(never)]
    fn confirm_neighbour_now(&mut self, src: Ipv4Addr, sender: Sender) {
        let Some(mac) = self.confirm_cache.claim(sender, self.now_ms) else {
            return;
        };
        if let Some(hop) = self.topo.routes.lookup(src) {
            self.neigh.confirm(hop.l2_target(src), mac, self.now_ms);
            self.follow_neigh();
        }
    }

    /// The datapath doubts the neighbour toward `dst` (a client retransmitted a SYN, first sent at
    /// `since`, that the real server `dst` never answered): it is probed now, unless confirmed
    /// since (`NeighTable::suspect`).
    pub fn suspect_neighbour(&mut self, dst: Ipv4Addr, since: u64) {
        let Some(hop) = self.topo.routes.lookup(dst) else {
            return;
        };
        let target = hop.l2_target(dst);
        let suspected = self.neigh.suspect(target, self.now_ms, since);
        self.follow_neigh();
        if let Some((port, mac)) = suspected {
            self.arp_request(port, target, Some(mac));
        }
    }

    /// Turns the fast paths on or off (`Datapath::set_fast_path`).
    pub fn set_fast_path(&mut self, on: bool) {
        self.fast_path = on;
        self.port_macs = self.fast_port_macs(&self.topo);
    }

    /// `port_macs` for `topo`: none while the fast paths are off.
    fn fast_port_macs(&self, topo: &Topology) -> [u64; PORT_MAC_KEYS] {
        if self.fast_path {
            port_mac_keys(topo)
        } else {
            [NO_MAC_KEY; PORT_MAC_KEYS]
        }
    }

    /// Switches to a new topology (a new configuration generation).
    pub fn set_topology(&mut self, topo: Arc<Topology>) {
        self.port_macs = self.fast_port_macs(&topo);
        self.topo = topo;
        self.topo_generation += 1;
        // The next-hop caches follow the neighbour table's generation alone.
        self.neigh.invalidate();
        self.follow_neigh();
    }

    /// Moves whenever the topology changes (ports, addresses, routes): with IPv6's neighbour
    /// table's generation, what its cache of resolved next hops compares (`inet6::nd::Hop6`).
    #[inline]
    pub fn topo_generation(&self) -> u64 {
        self.topo_generation
    }

    /// Empties the next-hop caches if the neighbour table's generation moved since they were
    /// last emptied: called after each change to the table (and by `set_topology`, which moves
    /// it), so that what the caches hold is current. A generation moves when a neighbour's MAC
    /// appears, changes or goes, or an entry goes STALE: a few times a second with thousands of
    /// neighbours, each emptying 8.7 KB, where every lookup compared the generation before.
    fn follow_neigh(&mut self) {
        let g = self.neigh.generation();
        if g != self.caches_generation {
            self.caches_generation = g;
            *self.nh_cache = NextHopEntry::empty_cache::<NH_CACHE_BITS, NH_CACHE>();
            self.hop_cache = NextHopEntry::empty_cache::<HOP_CACHE_BITS, HOP_CACHE>();
        }
    }

    /// Sends an IPv4 packet (Ethernet header present, IP header complete) toward `dst` through the
    /// routing table: sets the MACs, or holds the packet until ARP answers.
    #[inline]
    pub fn route_out(&mut self, pkt: B, dst: Ipv4Addr) -> Verdict<B> {
        match self.route_cached(pkt, dst) {
            Ok((port, pkt)) => Verdict::Tx(port, pkt),
            Err((pkt, slot)) => self.route_out_slow(pkt, dst, slot),
        }
    }

    /// The next-hop cache's answer for `dst` (`route_out`): the MACs written into `pkt`, and the
    /// port; else the packet back, with the cache's slot for the slow path.
    #[inline(always)]
    fn route_cached(&mut self, mut pkt: B, dst: Ipv4Addr) -> Result<(u16, B), (B, usize)> {
        match self.next_hop_cached(dst) {
            Ok(e) => match pkt.data_mut().first_chunk_mut::<12>() {
                Some(macs) => {
                    *macs = e.macs;
                    Ok((e.port, pkt))
                }
                None => Err((pkt, addr_slot::<NH_CACHE_BITS>(u32::from(dst)))),
            },
            Err(slot) => Err((pkt, slot)),
        }
    }

    /// The next-hop cache's entry for `dst` if it is current, else `dst`'s slot in it.
    #[inline(always)]
    fn next_hop_cached(&self, dst: Ipv4Addr) -> Result<&NextHopEntry, usize> {
        let key = u32::from(dst);
        let slot = addr_slot::<NH_CACHE_BITS>(key);
        let e = &self.nh_cache[slot];
        if e.dst == key {
            Ok(e)
        } else {
            Err(slot)
        }
    }

    /// The next-hop cache's answer for `dst`, for a caller that holds the frame's first 12
    /// bytes (the hot path's view of its headers, `Forwarder::forward_hot`): the MACs to write
    /// there and the port, else `dst`'s slot in the cache for `route_uncached_into`. The MACs
    /// written through the caller's view, not through another `PacketBuf::data_mut` with its
    /// bounds (perf/RESULTS.md).
    #[inline(always)]
    pub fn next_hop(&self, dst: Ipv4Addr) -> Result<(&[u8; 12], u16), usize> {
        self.next_hop_cached(dst).map(|e| (&e.macs, e.port))
    }

    /// `route_out` for a packet whose destination the next-hop cache did not hold (`next_hop`'s
    /// `Err`, the cache's `slot`), the verdict written into `out` (a burst's slot), also by the
    /// slow path, out of line: returned from a call through memory, the verdict was written a
    /// field at a time and read back whole to be copied into the slot, a read the store buffer
    /// cannot forward, which waited for the stores before it (a third of the samples of the
    /// replies' path at 1K connections from many clients; perf/RESULTS.md, "Loads the store
    /// buffer could not forward, a reply's address probe").
    ///
    /// A `reply` to a client: clients come from far more addresses than the next-hop cache has
    /// slots, so most replies miss it; a client behind a router, as most are, is then found
    /// here, without `route_out_slow_into`'s call, by its route and the router's entry in the
    /// cache by neighbour (`hop_cache`). `reply-burst-spread`, replies to 1K clients behind one
    /// router, 728 -> 702 instructions a packet (perf/RESULTS.md, "One codegen unit; a reply's
    /// next hop without a call").
    #[inline(always)]
    pub fn route_uncached_into(
        &mut self,
        mut pkt: B,
        dst: Ipv4Addr,
        slot: usize,
        reply: bool,
        out: &mut Option<Verdict<B>>,
    ) {
        if reply {
            if let Some(macs) = pkt.data_mut().first_chunk_mut::<12>() {
                if let Some(port) = self.next_hop_via_router(macs, dst, slot) {
                    fill_slot(out, Verdict::Tx(port, pkt));
                    return;
                }
            }
        }
        self.route_out_slow_into(pkt, dst, slot, out);
    }

    /// A reply to a client routed as the FullNAT hot path routes it (`next_hop`, then
    /// `route_uncached_into`), from a whole frame: for the tests of the next-hop caches.
    #[cfg(test)]
    pub(crate) fn route_out_reply_into(
        &mut self,
        pkt: B,
        dst: Ipv4Addr,
        out: &mut Option<Verdict<B>>,
    ) {
        let (port, pkt) = match self.route_cached(pkt, dst) {
            Ok(sent) => sent,
            Err((pkt, slot)) => return self.route_uncached_into(pkt, dst, slot, true, out),
        };
        // One write of the verdict for both ways: written in each, the second was a call to drop
        // what `out` held.
        *out = Some(Verdict::Tx(port, pkt));
    }

    /// A frame (its first 12 bytes, `macs`) addressed to `dst` through its route's next hop,
    /// if the cache by neighbour holds it (`hop_cached`), and `dst` noted in the next-hop
    /// cache's `slot`: the port it leaves by. For replies, whose clients are far more than the
    /// next-hop cache's slots (`route_uncached_into`).
    #[inline(always)]
    fn next_hop_via_router(
        &mut self,
        macs: &mut [u8; 12],
        dst: Ipv4Addr,
        slot: usize,
    ) -> Option<u16> {
        let hop = self.topo.routes.lookup(dst)?;
        let (_, h) = self.hop_cached(hop, dst);
        self.send_through(macs, h?, dst, slot);
        Some(hop.port)
    }

    /// The entry of the cache by neighbour (`hop_cache`) for the neighbour `hop` reaches `dst`
    /// through, if it is current; and that neighbour's slot in the cache.
    #[inline(always)]
    fn hop_cached(&self, hop: NextHop, dst: Ipv4Addr) -> (usize, Option<NextHopEntry>) {
        let key = u32::from(hop.l2_target(dst));
        let hop_slot = addr_slot::<HOP_CACHE_BITS>(key);
        let h = self.hop_cache[hop_slot];
        let current = h.dst == key && h.port == hop.port;
        (hop_slot, current.then_some(h))
    }

    /// Addresses a frame (its first 12 bytes, `macs`) to the next hop `h` (a `hop_cache` entry)
    /// holds, and notes it as `dst`'s in the next-hop cache's `slot`.
    #[inline(always)]
    fn send_through(&mut self, macs: &mut [u8; 12], h: NextHopEntry, dst: Ipv4Addr, slot: usize) {
        *macs = h.macs;
        self.note_next_hop(slot, dst, h);
    }

    /// Notes in the next-hop cache's `slot` that `dst` is reached through the neighbour whose
    /// entry `h` is. A destination behind a router takes the slot from another such, or from an
    /// empty one (`NextHopEntry::empty`), but not from one on a link: replies go to far more
    /// clients than the cache has slots, and each took a slot from whatever held it, the real
    /// servers too, whose next packet then missed (64 servers:
    /// `mixed-burst-spread`, perf/RESULTS.md, "The real servers' slots kept from the clients").
    #[inline(always)]
    fn note_next_hop(&mut self, slot: usize, dst: Ipv4Addr, h: NextHopEntry) {
        let via_router = h.dst != u32::from(dst);
        let e = &mut self.nh_cache[slot];
        if !via_router || e.via_router {
            *e = NextHopEntry {
                dst: u32::from(dst),
                via_router,
                ..h
            };
        }
    }

    /// The slot of the next-hop cache that would hold `dst` (tests).
    #[cfg(test)]
    pub(crate) fn next_hop_slot(&self, dst: Ipv4Addr) -> usize {
        addr_slot::<NH_CACHE_BITS>(u32::from(dst))
    }

    /// The destination the next-hop cache holds, current, in `dst`'s slot (tests).
    #[cfg(test)]
    pub(crate) fn next_hop_cached_in_slot_of(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        let slot = self.next_hop_slot(dst);
        let e = &self.nh_cache[slot];
        (addr_slot::<NH_CACHE_BITS>(e.dst) == slot).then_some(Ipv4Addr::from(e.dst))
    }

    /// `route_out_slow` writing its verdict into `out` (`route_uncached_into`).
    #[inline(never)]
    fn route_out_slow_into(
        &mut self,
        pkt: B,
        dst: Ipv4Addr,
        slot: usize,
        out: &mut Option<Verdict<B>>,
    ) {
        *out = Some(self.route_out_slow_inline(pkt, dst, slot));
    }

    /// `route_out` for a destination the next-hop cache does not hold: the route, then the
    /// neighbour's MACs from the cache by neighbour (every client behind one router shares the
    /// router's: replies to clients from many addresses would otherwise look the neighbour up each
    /// time, 213 instructions a packet in `datapath_cost reply-burst-spread`, perf/RESULTS.md),
    /// else from the neighbour table.
    // Out of line whatever the codegen units decide (a next-hop cache miss only): inlined, it
    // bloated the SYN path's code (perf/RESULTS.md, "New connections a second
    // fell with a module split").
    #[inline(never)]
    fn route_out_slow(&mut self, pkt: B, dst: Ipv4Addr, slot: usize) -> Verdict<B> {
        self.route_out_slow_inline(pkt, dst, slot)
    }

    /// `route_out_slow`'s body, in it and in `route_out_slow_into`.
    #[inline(always)]
    fn route_out_slow_inline(&mut self, mut pkt: B, dst: Ipv4Addr, slot: usize) -> Verdict<B> {
        let Some(hop) = self.topo.routes.lookup(dst) else {
            return Verdict::Drop(Drop::NoRoute.into(), pkt);
        };
        let target = hop.l2_target(dst);
        let (hop_slot, cached) = self.hop_cached(hop, dst);
        if let Some(h) = cached {
            if let Some(macs) = pkt.data_mut().first_chunk_mut::<12>() {
                self.send_through(macs, h, dst, slot);
                return Verdict::Tx(hop.port, pkt);
            }
        }
        let port_mac = self.topo.ports[hop.port as usize].mac;
        let head = QueuedHead::new(dst, pkt.data());
        let resolved = self.neigh.resolve(target, hop.port, pkt, self.now_ms);
        // Before the caches take the answer, which is current.
        self.follow_neigh();
        match resolved {
            Resolve::Mac(mac, p) => {
                pkt = p;
                let mut macs = [0; 12];
                macs[..6].copy_from_slice(&mac.0);
                macs[6..].copy_from_slice(&port_mac.0);
                pkt.data_mut()[..12].copy_from_slice(&macs);
                let e = NextHopEntry {
                    dst: u32::from(target),
                    port: hop.port,
                    macs,
                    via_router: false,
                };
                self.hop_cache[hop_slot] = e;
                self.note_next_hop(slot, dst, e);
                Verdict::Tx(hop.port, pkt)
            }
            Resolve::Queued { request } => {
                self.last_queued = Some(head);
                if request {
                    self.arp_request(hop.port, target, None);
                }
                Verdict::Held
            }
            Resolve::Dropped(p, why) => Verdict::Drop(neigh_drop(why).into(), p),
        }
    }

    /// Handles an ARP frame received on `port`.
    pub fn handle_arp(&mut self, mut pkt: B, port: u16) -> Verdict<B> {
        let (op, sha, spa, tpa) = {
            let Ok(a) = ArpPacket::new_checked(&pkt.data()[ethernet::HEADER_LEN..]) else {
                return Verdict::Drop(Drop::ArpMalformed.into(), pkt);
            };
            if !a.is_ethernet_ipv4() {
                return Verdict::Drop(Drop::ArpMalformed.into(), pkt);
            }
            (a.op(), a.sha(), a.spa(), a.tpa())
        };
        self.copy_arp_to_twin(port, pkt.data());
        let ours = self.topo.local.contains(&tpa);
        // RFC 826 merge: update an existing entry for the sender; create one if we are the target.
        self.learn_releasing(spa, sha, port, ours, op == ArpOp::REPLY);
        if (ours || self.neigh.mac(spa) == Some(sha)) && self.events.len() < self.events.capacity()
        {
            self.events.push(Event::Learned {
                ip: spa,
                mac: sha,
                port,
            });
        }
        if ours && op == ArpOp::REQUEST {
            let Some(mac) = self.topo.ports.get(port as usize).map(|p| p.mac) else {
                return Verdict::Drop(Drop::ArpMalformed.into(), pkt);
            };
            if arp::make_reply_in_place(pkt.data_mut(), mac).is_ok() {
                self.stats.arp_replies += 1;
                return Verdict::Tx(port, pkt);
            }
            return Verdict::Drop(Drop::ArpMalformed.into(), pkt);
        }
        Verdict::Done(pkt)
    }

    /// `NeighTable::learn`, with the packets that waited for `ip` released to their port.
    fn learn_releasing(
        &mut self,
        ip: Ipv4Addr,
        mac: MacAddr,
        port: u16,
        create: bool,
        reply: bool,
    ) {
        let mut released = std::mem::take(&mut self.released);
        let now = self.now_ms;
        self.neigh
            .learn(ip, mac, port, now, create, reply, |port, mac, mut p: B| {
                EthernetFrame::new_unchecked(p.data_mut()).set_dst(mac);
                released.push((port, p));
            });
        self.follow_neigh();
        self.released = released;
    }

    /// Learns a neighbour another worker heard about.
    pub fn learn_from_peer(&mut self, ip: Ipv4Addr, mac: MacAddr, port: u16) {
        self.learn_releasing(ip, mac, port, true, true);
    }

    /// Takes a neighbour the kernel has on a twin as a gratuitous ARP would be taken: created if
    /// unknown, its MAC replaced (STALE, verified by use) if it differs, nothing if it is the same.
    /// What the datapath saw last wins: the kernel's entry is only news when it changes.
    pub fn learn_from_kernel(&mut self, ip: Ipv4Addr, mac: MacAddr, port: u16) {
        self.learn_releasing(ip, mac, port, true, false);
    }

    /// Periodic work: ARP retries and aging.
    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        let (reqs, dropped) = self.neigh.tick_requests(now_ms);
        self.follow_neigh();
        self.stats.drops[Drop::NeighUnresolved as usize] += dropped;
        let expired = self.parked.expire(now_ms);
        self.stats.drops[Drop::SynProxyHeldExpired as usize] += expired as u64;
        for (port, ip, unicast) in reqs.iter() {
            self.arp_request(port, ip, unicast);
        }
    }

    /// Hands out the generated frames.
    pub fn take_generated(&mut self, mut f: impl FnMut(&GenFrame)) {
        for g in self.generated.drain(..) {
            f(&g);
        }
    }

    /// Carries out the verdict on a packet processed outside its burst (the SYN proxy's held
    /// packets, once their server answers): a frame to send goes out with the released ones.
    pub fn settle_later(&mut self, v: Verdict<B>) {
        match v {
            // Sent with the released frames, which `tx_packets` does not count (as after ARP).
            Verdict::Tx(port, b) => self.released.push((port, b)),
            Verdict::Drop(r, _) => self.stats.drop(r),
            Verdict::ToWorker(..) | Verdict::ToKernel(..) => self.stats.drop(Drop::NotOwner.into()),
            Verdict::Done(_) | Verdict::Held => {}
        }
    }

    /// Hands out packets whose neighbour got resolved (MACs set), ready to send on the port.
    pub fn take_released(&mut self, mut f: impl FnMut(u16, B)) {
        for (port, p) in self.released.drain(..) {
            f(port, p);
        }
    }

    /// Queues an event for the other workers (dropped when the queue is full: a neighbour is
    /// learned again from its next answer).
    pub fn announce(&mut self, e: Event) {
        if self.events.len() < self.events.capacity() {
            self.events.push(e);
        }
    }

    /// Hands out events for other workers.
    pub fn take_events(&mut self, mut f: impl FnMut(Event)) {
        for e in self.events.drain(..) {
            f(e);
        }
    }
}

/// The drop reason of a packet the neighbour table would not hold.
pub fn neigh_drop(why: NeighDrop) -> Drop {
    match why {
        NeighDrop::PendingFull => Drop::NeighPendingFull,
        NeighDrop::TableFull => Drop::NeighTableFull,
        NeighDrop::HeldFull => Drop::NeighHeldFull,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::topology::PortCtx;
    use crate::packet::VecBuf;

    fn topo(macs: &[[u8; 6]]) -> Arc<Topology> {
        let ports = macs
            .iter()
            .enumerate()
            .map(|(i, m)| PortCtx {
                name: format!("p{i}"),
                mac: MacAddr(*m),
                addrs: vec![],
                addrs6: vec![],
                twin: false,
            })
            .collect();
        Arc::new(Topology::new(ports, &[]))
    }

    /// A frame's first eight bytes: the destination MAC, then two of the source's.
    fn head(dst: [u8; 6]) -> [u8; 8] {
        let mut h = [0xee; 8];
        h[..6].copy_from_slice(&dst);
        h
    }

    /// The next-hop caches' slots (`addr_slot`): 128 hosts of a /24, the same host in 64 /16s
    /// (one slot under the old fold of the second byte onto the first) and the same host in 16
    /// /24s each take their own; an empty entry's address is never its own slot's.
    #[test]
    fn next_hop_slots_spread() {
        use std::collections::HashSet;
        let slots = |keys: &mut dyn Iterator<Item = u32>| -> usize {
            keys.map(addr_slot::<NH_CACHE_BITS>)
                .collect::<HashSet<_>>()
                .len()
        };
        let net = u32::from(Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(slots(&mut (1..=128).map(|h| net | h)), 128);
        assert_eq!(slots(&mut (0..64).map(|n| net | n << 16 | 10)), 64);
        assert_eq!(slots(&mut (0..16).map(|n| net | n << 8 | 10)), 16);
        let nh = NextHopEntry::empty_cache::<NH_CACHE_BITS, NH_CACHE>();
        let hop = NextHopEntry::empty_cache::<HOP_CACHE_BITS, HOP_CACHE>();
        for (slot, e) in nh.iter().enumerate() {
            assert_ne!(addr_slot::<NH_CACHE_BITS>(e.dst), slot, "slot {slot}");
        }
        for (slot, e) in hop.iter().enumerate() {
            assert_ne!(addr_slot::<HOP_CACHE_BITS>(e.dst), slot, "slot {slot}");
        }
    }

    #[test]
    fn a_frame_is_to_a_port_by_its_destination_mac_alone() {
        // More ports than `port_macs` holds: the last ones are the topology's.
        let macs: Vec<[u8; 6]> = (0..PORT_MAC_KEYS as u8 + 2)
            .map(|i| [0x02, 0, 0, 0, 0x10, i])
            .collect();
        let mut l3 = L3::<VecBuf>::new(0, topo(&macs), NeighConfig::default());
        let n = macs.len();
        for (p, m) in macs.iter().enumerate() {
            assert!(l3.fast_to_port_mac(p as u16, &head(*m)), "port {p}");
            assert!(
                !l3.fast_to_port_mac(((p + 1) % n) as u16, &head(*m)),
                "port {p}"
            );
            let mut other = *m;
            other[0] ^= 1;
            assert!(!l3.fast_to_port_mac(p as u16, &head(other)), "port {p}");
        }
        assert!(
            !l3.fast_to_port_mac(n as u16, &head(macs[0])),
            "no such port"
        );
        assert!(!l3.fast_to_port_mac(3, &[0; 8]), "a zero MAC is no port's");
        // A new topology: the ports' MACs follow it.
        l3.set_topology(topo(&[[0x02, 0, 0, 0, 0x20, 0]]));
        assert!(!l3.fast_to_port_mac(0, &head(macs[0])));
        assert!(l3.fast_to_port_mac(0, &head([0x02, 0, 0, 0, 0x20, 0])));
        assert!(!l3.fast_to_port_mac(1, &head(macs[1])), "port 1 is gone");
        // With the fast paths off, no port's for them, nor after a new topology, but each port's
        // still for the general path; on again, as before.
        l3.set_topology(topo(&macs));
        l3.set_fast_path(false);
        for (p, m) in macs.iter().enumerate() {
            assert!(!l3.fast_to_port_mac(p as u16, &head(*m)), "port {p}, off");
            assert!(
                l3.to_port_mac(p as u16, &head(*m)),
                "port {p}, off, general"
            );
            assert!(
                !l3.to_port_mac(((p + 1) % n) as u16, &head(*m)),
                "port {p}, off"
            );
        }
        l3.set_topology(topo(&macs));
        assert!(
            !l3.fast_to_port_mac(0, &head(macs[0])),
            "off after a new topology"
        );
        l3.set_fast_path(true);
        for (p, m) in macs.iter().enumerate() {
            assert!(
                l3.fast_to_port_mac(p as u16, &head(*m)),
                "port {p}, on again"
            );
        }
    }
}

#[cfg(test)]
mod confirm_cache_tests {
    use super::{confirm_slot, ConfirmCache, CONFIRM_EVERY_MS};

    /// A frame whose source MAC ends in `b`.
    fn from(b: [u8; 2]) -> [u8; 14] {
        let mut f = [0u8; 14];
        f[6..12].copy_from_slice(&[0x02, 0, 0, 0x33, b[0], b[1]]);
        f
    }

    /// A sender is due once an interval, its frames after the first in the same millisecond
    /// told so by `last` without their slot; once another sender took its slot (looked at, or
    /// claimed at once), it is due again, as when every frame looked at its slot.
    #[test]
    fn a_sender_is_due_once_an_interval_unless_another_took_its_slot() {
        let a = from([0, 1]);
        let slot = |f: &[u8]| confirm_slot(f).unwrap().1;
        // Another MAC in `a`'s slot.
        let b = (2..=u16::MAX)
            .map(|k| from(k.to_be_bytes()))
            .find(|f| slot(f) == slot(&a))
            .expect("a MAC in the same slot");
        let mut c = ConfirmCache::default();
        let claim = |c: &mut ConfirmCache, f: &[u8], now| {
            let s = c.due(f, now).expect("due");
            assert!(c.claim(s, now).is_some());
        };
        claim(&mut c, &a, 1000);
        assert!(c.due(&a, 1000).is_none(), "just confirmed");
        assert!(c.due(&a, 1000).is_none(), "just confirmed, again");
        assert!(
            c.due(&a, 1000 + CONFIRM_EVERY_MS - 1).is_none(),
            "within the interval"
        );
        // `b` takes the slot, looked at or claimed at once (`confirm_neighbour_at_once`).
        claim(&mut c, &b, 1000 + CONFIRM_EVERY_MS - 1);
        assert!(
            c.due(&a, 1000 + CONFIRM_EVERY_MS - 1).is_some(),
            "its slot is b's"
        );
        let s = ConfirmCache::sender(&b).unwrap();
        assert!(c.due(&a, 2000).is_some());
        assert!(c.claim(s, 2000).is_some());
        assert!(c.due(&a, 2000).is_some(), "b claimed a's slot at once");
        // A frame with no source MAC is due, and claims nothing, whatever its EtherType.
        let none = [0u8; 14];
        let s = c.due(&none, 2000).expect("due");
        assert!(c.claim(s, 2000).is_none());
        let mut none_ipv4 = none;
        none_ipv4[12..].copy_from_slice(&[0x08, 0x00]);
        let s = c.due(&none_ipv4, 2000).expect("due");
        assert!(c.claim(s, 2000).is_none());
        // The MAC claimed is the frame's source MAC, its EtherType apart.
        let mut a_ipv4 = a;
        a_ipv4[12..].copy_from_slice(&[0x08, 0x00]);
        let s = c.due(&a_ipv4, 2000).expect("due");
        assert_eq!(
            c.claim(s, 2000).map(|m| m.0),
            Some([0x02, 0, 0, 0x33, 0, 1])
        );
        assert!(c.due(&a, 2000).is_some(), "the slot is still b's");
    }
}

//! The per-worker packet pipeline, free of DPDK (DESIGN.md decision 4): a frame plus its receive
//! metadata go in, a verdict comes out (send on a port, hand to another worker, hold, or drop with a
//! reason). `worker.rs` adapts mbufs and queues to it; tests, benchmarks and the fuzz target drive it
//! with `VecBuf`.
//!
//! This file holds the L2/L3 part every mode shares: MAC filtering, ARP (answer for every address the
//! gateway owns, learn neighbours), ICMP echo, malformed-packet drops, and output through the routing
//! and neighbour tables. The forwarding modes live in `forward/`.

mod fastpath;
pub use fastpath::tcp_checksum_good;
mod fragments;
pub mod punt;

use crate::conn::Prelookup;
use crate::forward::Forwarder;
use crate::net::neigh::NeighConfig;
use crate::net::{Ipv4Cidr, NeighDrop, NeighTable, Resolve, RouteTable};
use crate::packet::{CsumStatus, PacketBuf, RxMeta};
use crate::stats::{Drop, DropReason, WorkerStats};
use crate::wire::{
    self, arp, ethernet, icmp, ArpOp, ArpPacket, EtherType, EthernetFrame, IpProtocol, MacAddr,
};
use hashbrown::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Largest frame the datapath generates itself (ARP, RST, ICMP errors quote header + 8 bytes).
pub const GEN_FRAME_MAX: usize = 128;
/// Frames per burst (`process_burst`, and the worker's receive and transmit bursts): the
/// ixy/DPDK convention of 32, which amortises a driver call and keeps a burst's state in L1.
pub const BURST: usize = 32;
/// Generated frames buffered per poll round.
pub const GEN_QUEUE: usize = 256;

/// A port as the datapath sees it.
#[derive(Clone, Debug)]
pub struct PortCtx {
    pub name: String,
    pub mac: MacAddr,
    pub addrs: Vec<Ipv4Cidr>,
    /// IPv6 addresses (`inet6`), besides the link-local one every port has.
    pub addrs6: Vec<crate::net::Ipv6Cidr>,
    /// The port has a kernel twin: what the datapath does not consume goes up to it (`punt`).
    pub twin: bool,
}

/// Interfaces, addresses and routes: built by the control plane, shared read-only by all workers.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    pub ports: Vec<PortCtx>,
    pub routes: RouteTable,
    /// Every address the gateway answers ARP and ping for: interface addresses, and the VIPs and
    /// LIPs it holds (config-owned ones always, kernel-owned ones while on a twin).
    pub local: HashSet<Ipv4Addr>,
    /// The interface addresses alone: traffic to them other than pings goes up to the twin.
    pub iface: HashSet<Ipv4Addr>,
    /// Directed broadcast addresses of the port subnets (punted as broadcast).
    pub bcast: HashSet<Ipv4Addr>,
    /// IPv6 routes (`inet6::route`).
    pub routes6: crate::inet6::Routes6,
}

impl Topology {
    /// Builds the topology: connected routes from the port addresses, then the static routes.
    pub fn new(ports: Vec<PortCtx>, routes: &[(Ipv4Cidr, Option<Ipv4Addr>, usize)]) -> Topology {
        let mut t = Topology {
            ports,
            ..Default::default()
        };
        for (i, p) in t.ports.iter().enumerate() {
            for a in &p.addrs {
                t.routes.add_connected(*a, i as u16);
                t.local.insert(a.addr);
                t.iface.insert(a.addr);
                if a.len < 31 {
                    t.bcast
                        .insert(Ipv4Addr::from(u32::from(a.addr) | !a.mask()));
                }
            }
        }
        for (prefix, via, port) in routes {
            t.routes.add(
                *prefix,
                crate::net::NextHop {
                    port: *port as u16,
                    via: *via,
                },
            );
        }
        t
    }

    /// Whether `a` is one of the ports' IPv6 addresses, or a port's link-local address.
    pub fn owns6(&self, a: std::net::Ipv6Addr) -> bool {
        self.ports
            .iter()
            .any(|p| p.addrs6.iter().any(|c| c.addr == a) || crate::inet6::link_local(p.mac) == a)
    }

    /// Whether `a` is `port`'s IPv6 address or its link-local one (answered in neighbour
    /// discovery on that port).
    pub fn owns6_on(&self, port: u16, a: std::net::Ipv6Addr) -> bool {
        self.ports.get(port as usize).is_some_and(|p| {
            p.addrs6.iter().any(|c| c.addr == a) || crate::inet6::link_local(p.mac) == a
        })
    }

    /// The source of packets we originate on `port` toward IPv6 `dst`: the port's address on
    /// dst's prefix, else its first one, else its link-local one.
    pub fn source6_for(&self, port: u16, dst: std::net::Ipv6Addr) -> Option<std::net::Ipv6Addr> {
        let p = self.ports.get(port as usize)?;
        Some(
            p.addrs6
                .iter()
                .find(|c| c.contains(dst))
                .or(p.addrs6.first())
                .map_or_else(|| crate::inet6::link_local(p.mac), |c| c.addr),
        )
    }

    /// The address to use as source for packets we originate on `port` toward `dst`: the port address
    /// on dst's subnet, else the port's first address.
    pub fn source_for(&self, port: u16, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        let p = self.ports.get(port as usize)?;
        p.addrs
            .iter()
            .find(|c| c.contains(dst))
            .or(p.addrs.first())
            .map(|c| c.addr)
    }
}

/// What happens to a packet.
pub enum Verdict<B> {
    /// Send on this port (the frame is complete).
    Tx(u16, B),
    /// Hand to the worker that owns its connection.
    ToWorker(u16, B),
    /// Up to this port's kernel twin (`punt`).
    ToKernel(u16, B),
    /// Handled and finished with (e.g. an ARP reply we learned from): free without counting a drop.
    Done(B),
    /// Drop, counting the reason.
    Drop(DropReason, B),
    /// Kept by the datapath: waiting for ARP (it comes back through `L3::take_released`), or a
    /// fragment waiting for its first one (through `Datapath::take_deferred`).
    Held,
}

/// The verdict without its frame (for test failures and logs).
impl<B> std::fmt::Debug for Verdict<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Tx(p, _) => write!(f, "Tx(port {p})"),
            Verdict::ToWorker(w, _) => write!(f, "ToWorker({w})"),
            Verdict::ToKernel(p, _) => write!(f, "ToKernel(port {p})"),
            Verdict::Done(_) => write!(f, "Done"),
            Verdict::Drop(r, _) => write!(f, "Drop({r:?})"),
            Verdict::Held => write!(f, "Held"),
        }
    }
}

/// Something other workers must learn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Learned {
        ip: Ipv4Addr,
        mac: MacAddr,
        port: u16,
    },
    /// An IPv6 neighbour advertised itself (`inet6::nd`).
    Learned6 {
        ip: std::net::Ipv6Addr,
        mac: MacAddr,
        port: u16,
    },
}

/// A frame the datapath generated (ARP request, RST, ICMP error).
#[derive(Clone)]
pub struct GenFrame {
    pub port: u16,
    /// To the port's kernel twin instead of the wire (an ARP copy).
    pub to_twin: bool,
    pub len: usize,
    pub buf: [u8; GEN_FRAME_MAX],
}

impl GenFrame {
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Entries of the next-hop cache (direct-mapped by destination address).
const NH_CACHE: usize = 256;

/// The slot of IPv4 address `key` in a direct-mapped cache of `slots` entries (`nh_cache`,
/// `hop_cache`).
#[inline(always)]
fn addr_slot(key: u32, slots: usize) -> usize {
    (key ^ (key >> 8)) as usize % slots
}
/// Entries of the cache behind it, direct-mapped by the neighbour a destination is reached
/// through (`L3::route_out_slow`): routers and on-link hosts, a handful.
const HOP_CACHE: usize = 16;

/// Slots of the neighbour-confirmation cache (`L3::confirm_neighbour`), one per sending MAC.
const CONFIRM_SLOTS: usize = 64;
/// A neighbour is confirmed by the datapath at most this often per sending MAC: far below the
/// shortest reachable time (base/2 = 15 s by default), far above the per-packet rate.
const CONFIRM_EVERY_MS: u64 = 500;

/// A frame's source MAC (bytes 6..12) in the low 48 bits, and its slot in `L3::confirm_cache`.
#[inline(always)]
fn confirm_slot(frame: &[u8]) -> Option<(u64, usize)> {
    let head = frame.first_chunk::<12>()?;
    // One load of bytes 4..12.
    let key = u64::from_le_bytes([
        head[4], head[5], head[6], head[7], head[8], head[9], head[10], head[11],
    ]) >> 16;
    // Fibonacci hashing: the top bits of the product mix all six bytes.
    let hash = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - CONFIRM_SLOTS.ilog2());
    Some((key, hash as usize % CONFIRM_SLOTS))
}

/// A resolved destination: where `route_out` sent the last packet for it.
#[derive(Clone, Copy, Default)]
struct NextHopEntry {
    dst: u32,
    port: u16,
    /// The Ethernet header's first 12 bytes toward this next hop: its MAC, then the port's own
    /// (written with one copy).
    macs: [u8; 12],
    /// Neighbour-table generation (+1, so 0 is never valid) the entry was filled under.
    generation: u64,
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
    /// Bumped when the topology changes, to invalidate `nh_cache` along with neighbour changes.
    topo_generation: u64,
    /// (source MAC, ms) of the last neighbour confirmations (`confirm_neighbour`).
    confirm_cache: [(u64, u64); CONFIRM_SLOTS],
    pub neigh: NeighTable<B>,
    pub stats: WorkerStats,
    /// Monotonic milliseconds, set by the worker each round.
    pub now_ms: u64,
    /// This worker's punt budget (`punt`).
    pub punt: punt::PuntBudget,
    generated: Vec<GenFrame>,
    released: Vec<(u16, B)>,
    events: Vec<Event>,
    /// Client packets of SYN-proxied connections waiting for their real server's answer.
    pub parked: crate::forward::synproxy::Parked<B>,
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
}

impl<B: PacketBuf> L3<B> {
    pub fn new(worker: u16, topo: Arc<Topology>, neigh: NeighConfig) -> Self {
        L3 {
            worker,
            topo,
            nh_cache: Box::new([NextHopEntry::default(); NH_CACHE]),
            hop_cache: [NextHopEntry::default(); HOP_CACHE],
            topo_generation: 0,
            confirm_cache: [(0, 0); CONFIRM_SLOTS],
            neigh: NeighTable::new(neigh),
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
    fn has_twin(&self, port: u16) -> bool {
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
    pub fn generate_ipv4(
        &mut self,
        dst: Ipv4Addr,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> bool {
        let Some(hop) = self.topo.routes.lookup(dst) else {
            self.stats.drop(Drop::NoRoute.into());
            return false;
        };
        let Some(mac) = self.neigh.mac(hop.l2_target(dst)) else {
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
    /// MAC's read, a multiply and a compare per packet: each sending MAC confirms at most once per
    /// `CONFIRM_EVERY_MS`, in a small direct-mapped cache keyed by that MAC; only then are the
    /// route and the table looked up (`confirm_neighbour_now`, out of line).
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
        let Some((key, slot)) = confirm_slot(frame) else {
            return;
        };
        let (last, at) = self.confirm_cache[slot];
        if last == key && self.now_ms.saturating_sub(at) < CONFIRM_EVERY_MS {
            return;
        }
        self.confirm_neighbour_now(src, key, slot);
    }

    /// `confirm_neighbour_in` now, whatever the cache says: for a packet that proves its sender
    /// there at this moment, which a later `suspect_neighbour` compares with (the real server's
    /// answer to a SYN that it refused, `Forwarder::answers_server_time_wait`). Rare: out of line.
    #[inline(never)]
    pub fn confirm_neighbour_at_once(&mut self, src: Ipv4Addr, frame: &[u8]) {
        if let Some((key, slot)) = confirm_slot(frame) {
            self.confirm_neighbour_now(src, key, slot);
        }
    }

    /// Confirms the next hop toward `src` if it has the MAC `mac_key` (`confirm_neighbour_in`'s
    /// key: the MAC's bytes in the low 48 bits, in order from the lowest), and notes it in
    /// `confirm_cache[slot]`.
    #[inline(never)]
    fn confirm_neighbour_now(&mut self, src: Ipv4Addr, mac_key: u64, slot: usize) {
        // No sender: the SYN proxy's completion, built here, carries a zero source MAC. It
        // confirms nothing and takes no slot from a MAC that does.
        if mac_key == 0 {
            return;
        }
        self.confirm_cache[slot] = (mac_key, self.now_ms);
        if let Some(hop) = self.topo.routes.lookup(src) {
            let b = mac_key.to_le_bytes();
            let src_mac = MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]]);
            self.neigh.confirm(hop.l2_target(src), src_mac, self.now_ms);
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
        if let Some((port, mac)) = self.neigh.suspect(target, self.now_ms, since) {
            self.arp_request(port, target, Some(mac));
        }
    }

    /// Switches to a new topology (a new configuration generation).
    pub fn set_topology(&mut self, topo: Arc<Topology>) {
        self.topo = topo;
        self.topo_generation += 1;
    }

    /// Moves whenever the topology changes (ports, addresses, routes): with a neighbour table's
    /// generation, what a cache of resolved next hops compares (`inet6::nd::Resolved6` too).
    #[inline]
    pub fn topo_generation(&self) -> u64 {
        self.topo_generation
    }

    #[inline]
    fn cache_generation(&self) -> u64 {
        // Both counters only grow; their sum changes when either does. +1 keeps 0 invalid.
        self.neigh.generation() + self.topo_generation + 1
    }

    /// Sends an IPv4 packet (Ethernet header present, IP header complete) toward `dst` through the
    /// routing table: sets the MACs, or holds the packet until ARP answers.
    #[inline]
    pub fn route_out(&mut self, mut pkt: B, dst: Ipv4Addr) -> Verdict<B> {
        let key = u32::from(dst);
        let slot = addr_slot(key, NH_CACHE);
        let e = &self.nh_cache[slot];
        if e.dst == key && e.generation == self.cache_generation() {
            if let Some(macs) = pkt.data_mut().first_chunk_mut::<12>() {
                *macs = e.macs;
                return Verdict::Tx(e.port, pkt);
            }
        }
        self.route_out_slow(pkt, dst, slot)
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
    fn route_out_slow(&mut self, mut pkt: B, dst: Ipv4Addr, slot: usize) -> Verdict<B> {
        let Some(hop) = self.topo.routes.lookup(dst) else {
            return Verdict::Drop(Drop::NoRoute.into(), pkt);
        };
        let target = hop.l2_target(dst);
        let key = u32::from(target);
        let hop_slot = addr_slot(key, HOP_CACHE);
        let generation = self.cache_generation();
        let h = self.hop_cache[hop_slot];
        if h.dst == key && h.port == hop.port && h.generation == generation {
            if let Some(macs) = pkt.data_mut().first_chunk_mut::<12>() {
                *macs = h.macs;
                self.nh_cache[slot] = NextHopEntry {
                    dst: u32::from(dst),
                    ..h
                };
                return Verdict::Tx(hop.port, pkt);
            }
        }
        let port_mac = self.topo.ports[hop.port as usize].mac;
        let head = QueuedHead::new(dst, pkt.data());
        match self.neigh.resolve(target, hop.port, pkt, self.now_ms) {
            Resolve::Mac(mac, p) => {
                pkt = p;
                let mut macs = [0; 12];
                macs[..6].copy_from_slice(&mac.0);
                macs[6..].copy_from_slice(&port_mac.0);
                pkt.data_mut()[..12].copy_from_slice(&macs);
                let e = NextHopEntry {
                    dst: key,
                    port: hop.port,
                    macs,
                    generation: self.cache_generation(),
                };
                self.hop_cache[hop_slot] = e;
                self.nh_cache[slot] = NextHopEntry {
                    dst: u32::from(dst),
                    ..e
                };
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

/// A packet the L2/L3 stage accepted as IPv4, with what the forwarding stage needs. Kept small: a
/// burst holds 32 of them.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4In {
    /// Offset of the IPv4 header in the frame.
    pub l3_off: usize,
    pub ip: wire::IpInfo,
}

/// What `ingress` leaves to do with a frame that is not an IPv4 packet for the forwarding stage.
pub enum NotIpv4<B> {
    /// Finished: ARP handled, malformed dropped, punted, ...
    Done(Verdict<B>),
    /// An IPv6 frame for `inet6` (its destination MAC checked).
    Ipv6(B),
}

/// L2 and L3 checks shared by every path. Returns the parsed IPv4 packet, an IPv6 frame, or the
/// final verdict (ARP handled, malformed dropped, ...).
pub fn ingress<B: PacketBuf>(
    l3: &mut L3<B>,
    pkt: B,
    meta: &RxMeta,
) -> Result<(B, Ipv4In), NotIpv4<B>> {
    // A frame handed over by another worker was counted and verified there (once per frame).
    if !meta.from_peer {
        l3.stats.rx_packets += 1;
        l3.stats.rx_bytes += pkt.len() as u64;
    }
    let check_ip_csum = !meta.from_peer && meta.ip_csum != CsumStatus::Good;
    let parsed = match wire::parse_l3l4_with(pkt.data(), check_ip_csum) {
        Ok(p) => p,
        Err(r) => return Err(NotIpv4::Done(Verdict::Drop(r.into(), pkt))),
    };
    if !meta.from_peer {
        let dst = EthernetFrame::new_unchecked(pkt.data()).dst();
        let port_mac = match l3.topo.ports.get(meta.port as usize) {
            Some(p) => p.mac,
            None => return Err(NotIpv4::Done(Verdict::Drop(Drop::L2NotForUs.into(), pkt))),
        };
        // Multicast (VRRP, OSPF) is for the twin, if there is one; IPv6 multicast (neighbour
        // discovery) is for `inet6` first.
        let ipv6 = parsed.ethertype == EtherType::IPV6;
        if dst != port_mac
            && !dst.is_broadcast()
            && !(dst.is_multicast() && (ipv6 || l3.has_twin(meta.port)))
        {
            return Err(NotIpv4::Done(Verdict::Drop(Drop::L2NotForUs.into(), pkt)));
        }
    }
    if parsed.ethertype == EtherType::ARP {
        return Err(NotIpv4::Done(l3.handle_arp(pkt, meta.port)));
    }
    if parsed.ethertype == EtherType::IPV6 {
        return Err(NotIpv4::Ipv6(pkt));
    }
    let Some(ip) = parsed.ip else {
        let why = punt::Punt::EtherType;
        return Err(NotIpv4::Done(l3.punt(
            meta.port,
            pkt,
            why,
            Drop::EtherTypeUnsupported,
        )));
    };
    if meta.ip_csum == CsumStatus::Bad {
        return Err(NotIpv4::Done(Verdict::Drop(
            Drop::IpBadChecksumHw.into(),
            pkt,
        )));
    }
    Ok((
        pkt,
        Ipv4In {
            l3_off: parsed.l3_off,
            ip,
        },
    ))
}

/// Verifies the L4 checksum unless the NIC, or the worker that handed the frame over, already did.
pub fn l4_checksum_ok<B: PacketBuf>(pkt: &B, meta: &RxMeta, v: &Ipv4In) -> bool {
    if meta.from_peer {
        return true;
    }
    match meta.l4_csum {
        CsumStatus::Good => true,
        CsumStatus::Bad => false,
        CsumStatus::Unknown => wire::verify_ipv4_l4_checksum(pkt.data(), v.l3_off, &v.ip),
    }
}

/// Packets addressed to one of the gateway's own addresses with no connection: answer pings, drop the
/// rest with a reason.
pub fn local_delivery<B: PacketBuf>(
    l3: &mut L3<B>,
    mut pkt: B,
    meta: &RxMeta,
    v: &Ipv4In,
) -> Verdict<B> {
    if v.ip.is_fragment {
        return Verdict::Drop(Drop::IpFragment.into(), pkt);
    }
    if v.ip.protocol != IpProtocol::ICMP {
        return Verdict::Drop(Drop::ProtoUnsupported.into(), pkt);
    }
    if !l4_checksum_ok(&pkt, meta, v) {
        return Verdict::Drop(Drop::L4BadChecksum.into(), pkt);
    }
    // Trim Ethernet padding so the reply carries exactly the IP packet.
    let end = v.l3_off + v.ip.total_len as usize;
    pkt.set_len(end);
    match icmp::echo_reply_in_place(pkt.data_mut(), v.l3_off) {
        Ok(()) => {
            l3.stats.icmp_echo_replies += 1;
            Verdict::Tx(meta.port, pkt)
        }
        Err(_) => Verdict::Drop(Drop::IcmpUnhandled.into(), pkt),
    }
}

/// A verdict reached outside its frame's processing, with the port the frame arrived on (a
/// worker's mbuf carries it; the tests need it to hand the frame over).
pub struct Deferred<B> {
    pub verdict: Verdict<B>,
    pub port: u16,
}

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
    /// Whether established segments take the fast path (`fastpath`); on unless a test compares.
    fast_path: bool,
    /// The burst's IPv6 tuples and what the lookup stage found of them.
    burst6: Box<fastpath::Burst6>,
}

/// `process_burst_timed`'s mark of an IPv6 frame (see there).
const IPV6: u8 = 1;

impl<B: PacketBuf> Datapath<B> {
    pub fn new(worker: u16, topo: Arc<Topology>, neigh: NeighConfig, fwd: Forwarder) -> Self {
        let v6 = crate::inet6::Inet6::new(neigh, fwd.capacity6(), fwd.table().timeouts());
        Datapath {
            l3: L3::new(worker, topo, neigh),
            fwd,
            v6,
            frags: crate::frag::FragTable::new(Default::default()),
            deferred: Vec::new(),
            fast_path: true,
            burst6: Box::default(),
        }
    }

    /// Turns the established fast path (`fastpath`) on or off: its verdicts are the general
    /// path's, so only the cost changes.
    pub fn set_fast_path(&mut self, on: bool) {
        self.fast_path = on;
    }

    /// Processes one received frame.
    #[inline]
    pub fn process(&mut self, pkt: B, meta: &RxMeta) -> Verdict<B> {
        if let Some(v) = self.admit_plain_tcp(&pkt, meta) {
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
    #[inline(never)]
    fn process_ipv6(&mut self, pkt: B, meta: &RxMeta, pre: Prelookup) -> Verdict<B> {
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
    /// overlap instead of queueing), then forwarding. `out[i]` receives frame `i`'s verdict. The
    /// verdicts are those of one-by-one processing, with one difference: an ARP frame is handled in
    /// the first stage, so a neighbour it resolves already serves packets earlier in the same burst.
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
        let mut parsed: [Option<Ipv4In>; BURST] = [None; BURST];
        let mut tuples = [crate::conn::Tuple::default(); BURST];
        let mut which = [0u8; BURST];
        // Admitted to the established fast path (`fastpath`).
        let mut plain_tcp = [false; BURST];
        // IPv6, processed in its turn with the others (not ahead of the IPv4 packets before it,
        // which share the neighbour queues and the tx order with it), all of it then
        // (`process_ipv6`): `IPV6` + 1 + k for the `k`th whose connection the lookup stage
        // looks up (`fastpath::Burst6`), `IPV6` for the others.
        let mut ipv6 = [0u8; BURST];
        let mut m = 0;
        let mut m6 = 0;
        for i in 0..n {
            let Some(pkt) = pkts[i].take() else { continue };
            // The fast path's frames go straight into their lanes, without the general path's
            // `Result` to build and match (each `Ipv4In` moved is 48 bytes). The lane-filling
            // lines repeat in the `Ok` arm below on purpose: shared through a closure they cost
            // 26 instructions a packet (`established-burst-1k` 994 -> 1020), merged after the
            // match 39.
            if let Some(v) = self.admit_plain_tcp(&pkt, &metas[i]) {
                if let Some(t) = self.fwd.lookup_tuple(&v) {
                    tuples[m] = t;
                    which[m] = i as u8;
                    m += 1;
                }
                plain_tcp[i] = true;
                pkts[i] = Some(pkt);
                parsed[i] = Some(v);
                continue;
            }
            if fastpath::is_ipv6(pkt.data()) {
                ipv6[i] = IPV6;
                // Only the tuple, for the lookup stage: the last stage parses the frame again
                // at its admission. Carrying the parse from here through a scratch area cost
                // more than parsing twice (perf/RESULTS.md, "The IPv6 fast path").
                if self.fast_path {
                    if let Some(v) = crate::inet6::parse_plain_tcp6(pkt.data()) {
                        self.burst6.tuples[m6] = crate::inet6::plain_tcp6_tuple(pkt.data(), &v);
                        ipv6[i] = IPV6 + 1 + m6 as u8;
                        m6 += 1;
                    }
                }
                pkts[i] = Some(pkt);
                continue;
            }
            match ingress(&mut self.l3, pkt, &metas[i]) {
                Err(NotIpv4::Done(verdict)) => out[i] = Some(verdict),
                Err(NotIpv4::Ipv6(pkt)) => {
                    // Not reached: IPv6 frames were set aside above.
                    out[i] = Some(self.v6.process(&mut self.l3, &mut self.fwd, pkt, &metas[i]));
                }
                Ok((pkt, v)) => {
                    if let Some(t) = self.fwd.lookup_tuple(&v) {
                        tuples[m] = t;
                        which[m] = i as u8;
                        m += 1;
                    }
                    pkts[i] = Some(pkt);
                    parsed[i] = Some(v);
                }
            }
        }
        let after_l3 = clock();
        let mut found = [Prelookup::NotDone; BURST];
        self.fwd
            .table()
            .prelookup_batch(&tuples[..m], &mut found[..m], prefetch);
        if m6 > 0 {
            let b = &mut *self.burst6;
            self.v6
                .conns
                .prelookup_batch(&b.tuples[..m6], &mut b.found[..m6], prefetch);
        }
        let after_lookup = clock();
        let mut pre = [Prelookup::NotDone; BURST];
        for k in 0..m {
            pre[which[k] as usize] = found[k];
        }
        let indexed = self.fwd.table().indexed();
        let indexed6 = self.v6.conns.indexed();
        for i in 0..n {
            if ipv6[i] >= IPV6 {
                if let Some(pkt) = pkts[i].take() {
                    let pre = match ipv6[i].checked_sub(IPV6 + 1) {
                        // As for IPv4: a miss is a miss still unless tuples were added since.
                        Some(k) => match self.burst6.found[usize::from(k)] {
                            Prelookup::Miss if self.v6.conns.indexed() != indexed6 => {
                                Prelookup::NotDone
                            }
                            p => p,
                        },
                        None => Prelookup::NotDone,
                    };
                    out[i] = Some(self.process_ipv6(pkt, &metas[i], pre));
                }
                continue;
            }
            if let (Some(pkt), Some(v)) = (pkts[i].take(), &parsed[i]) {
                // A miss is a miss still unless a packet before it in the burst added tuples.
                let pre = match pre[i] {
                    Prelookup::Miss if self.fwd.table().indexed() != indexed => Prelookup::NotDone,
                    p => p,
                };
                if plain_tcp[i] {
                    self.forward_plain_tcp_into(pkt, &metas[i], v, pre, &mut out[i]);
                } else {
                    out[i] = Some(self.finish(pkt, &metas[i], v, pre));
                }
            }
        }
        [after_l3, after_lookup, clock()]
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
        let topo = &self.l3.topo;
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

    /// Adopts a service snapshot the forwarder prepared (`Forwarder::prepare_services`): both
    /// connection tables follow their services and real servers by identity.
    pub fn commit_services(&mut self, prepared: crate::forward::fullnat::PreparedServices) {
        let old = Arc::clone(self.fwd.services());
        self.fwd.commit_services(prepared);
        crate::forward::services::ConnRemap::new(&old, self.fwd.services())
            .apply(&mut self.v6.conns);
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
    use crate::packet::VecBuf;
    use crate::testkit::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

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
        let confirmed = |dp: &Datapath<VecBuf>| dp.l3.neigh.counters.confirmed;
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

    #[test]
    fn replies_to_clients_behind_one_router_take_its_current_mac_whatever_their_address() {
        use crate::testkit::flows;
        let mut dp: Datapath<VecBuf> = datapath_from(&flows::bench_config(), 0, 1, 1 << 12);
        let frame = flows::template(0x10);
        let send_to = |dp: &mut Datapath<VecBuf>, dst: Ipv4Addr| match dp
            .l3
            .route_out(VecBuf::from_frame(&frame), dst)
        {
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

//! Per-worker counters: packets by outcome and drops by reason (DESIGN.md decision 11, VPP-style error
//! counters). Each worker owns its counters (plain u64, no atomics); the worker publishes a copy to the
//! control plane now and then.

use crate::wire::DropReason as WireDrop;

/// Why the datapath dropped a packet, beyond the malformed-packet reasons `wire` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Drop {
    /// Destination MAC is neither ours nor broadcast (promiscuous ports see everything).
    L2NotForUs,
    /// Not IPv4 or ARP (IPv6, VLAN-tagged, ...).
    EtherTypeUnsupported,
    /// ARP that is not Ethernet/IPv4 or is too short.
    ArpMalformed,
    /// IPv4 destination is neither one of our addresses nor a virtual service.
    IpNotForUs,
    /// An IPv4 fragment the gateway does not follow: ICMP, or to one of its own addresses with no
    /// twin to reassemble it (TCP and UDP fragments to a virtual service follow their first, `frag`).
    IpFragment,
    /// IPv4 header with options.
    IpOptions,
    /// TTL would reach zero.
    TtlExpired,
    /// L4 checksum wrong (software check or NIC flag). Not counted for a plain ACK of an
    /// established FullNAT connection, which goes on unverified, its error kept for its
    /// receiver (`Forwarder::forwards_unverified`), even when the NIC flagged it bad.
    L4BadChecksum,
    /// IPv4 header checksum flagged bad by the NIC.
    IpBadChecksumHw,
    /// ICMP to us that we do not answer (not an echo request).
    IcmpUnhandled,
    /// Protocol we do not handle for this destination.
    ProtoUnsupported,
    NoRoute,
    /// Per-neighbour queue full while resolving.
    NeighPendingFull,
    /// Neighbour never answered.
    NeighUnresolved,
    NeighTableFull,
    /// The worker already holds `neighbour.max_held` packets waiting for ARP.
    NeighHeldFull,
    /// Multi-segment mbuf (the ports run without scatter; should not happen).
    Chained,
    /// Handing a packet to its owner worker failed: ring full.
    RingFull,
    /// The driver's tx queue refused the packet.
    TxFull,
    /// No mbuf for a generated packet (pool exhausted).
    MbufExhausted,
    /// Too many generated packets in one poll round.
    GenOverflow,
    /// A packet for a virtual service with no usable real server.
    NoRealServer,
    /// A packet to a virtual address and port with no service.
    NoService,
    /// Connection table full.
    ConnTableFull,
    /// No free (LIP, port) for a new connection.
    PortsExhausted,
    /// A non-SYN TCP packet (or a reply) that matches no connection.
    NoConn,
    /// Frame too large to grow (no tailroom for TOA or encapsulation) and not otherwise handled.
    NoRoom,
    /// Packet handed to a worker that does not own it either.
    NotOwner,
    /// A frame handed over by a peer names a DPDK port this gateway does not run.
    PeerUnknownPort,
    /// A frame for the kernel twin beyond the worker's punt budget (`kernel.punt_rate`).
    PuntLimited,
    /// The twin's queue refused a punted frame (the kernel is not reading it fast enough).
    TwinTxFull,
    /// A new connection to a kernel-owned VIP that no twin holds (`owner = "kernel"`).
    VipNotHeld,
    /// A real server's RST to a client's SYN, not passed on: the client's retransmission goes to
    /// another real server (`syn_retry`).
    RstHeldForRetry,
    /// A SYN at `[conn] max_half_open` with no half-open connection to take the place of.
    HalfOpenLimit,
    /// A new connection the service's access list refuses (`acl`).
    AclDenied,
    /// An ACK to a SYN-proxied service without a connection that does not prove a cookie.
    SynProxyBadCookie,
    /// A client packet of a proxied connection whose real server has not answered yet, with no
    /// room left to hold it (the client retransmits it).
    SynProxyHeldFull,
    /// A client packet held for a proxied connection whose real server did not answer in time.
    SynProxyHeldExpired,
    /// A SYN-proxied service scheduled a DR or TUN real server (the proxy needs both directions).
    SynProxyMode,
    /// A new connection over its client's rate, or open-connection, limit (`limit`).
    LimitRate,
    LimitConns,
    /// A fragment of one datagram more than the worker's fragment table holds
    /// (`[fragments] max_datagrams`).
    FragTableFull,
    /// A fragment that came before its first one, with `[fragments] max_held` already held.
    FragHeldFull,
    /// A held fragment whose first fragment did not come within `[fragments] timeout_ms`.
    FragTimeout,
    /// A fragment of a datagram whose first fragment was dropped (its own reason counted), or
    /// could not be followed.
    FragFirstDropped,
    /// An IPv6 packet too short for its header, not version 6, or whose payload length overruns
    /// the frame (`inet6`).
    Ipv6Malformed,
    /// IPv6 extension headers that overrun the packet, a hop-by-hop header not first, or more than
    /// `wire::ipv6::MAX_EXTENSIONS` of them (RFC 8200 4.1; RFC 9098 on long chains).
    Ipv6BadExtensions,
    /// An IPv6 fragment (RFC 8200 4.5): IPv6 fragments are not followed yet.
    Ipv6Fragment,
    /// An IPv6 destination that is neither one of the gateway's addresses nor a VIP.
    Ipv6NotForUs,
    /// A neighbour-discovery message that fails RFC 4861's validation (hop limit other than 255,
    /// code, checksum, length, a multicast target).
    NdInvalid,
    /// An IPv6 packet that an IPv6 tunnel (TUN) would take over the port's MTU.
    Ipv6TooBig,
}

impl Drop {
    pub const COUNT: usize = Drop::Ipv6TooBig as usize + 1;
    pub const ALL: [Drop; Drop::COUNT] = [
        Drop::L2NotForUs,
        Drop::EtherTypeUnsupported,
        Drop::ArpMalformed,
        Drop::IpNotForUs,
        Drop::IpFragment,
        Drop::IpOptions,
        Drop::TtlExpired,
        Drop::L4BadChecksum,
        Drop::IpBadChecksumHw,
        Drop::IcmpUnhandled,
        Drop::ProtoUnsupported,
        Drop::NoRoute,
        Drop::NeighPendingFull,
        Drop::NeighUnresolved,
        Drop::NeighTableFull,
        Drop::NeighHeldFull,
        Drop::Chained,
        Drop::RingFull,
        Drop::TxFull,
        Drop::MbufExhausted,
        Drop::GenOverflow,
        Drop::NoRealServer,
        Drop::NoService,
        Drop::ConnTableFull,
        Drop::PortsExhausted,
        Drop::NoConn,
        Drop::NoRoom,
        Drop::NotOwner,
        Drop::PeerUnknownPort,
        Drop::PuntLimited,
        Drop::TwinTxFull,
        Drop::VipNotHeld,
        Drop::RstHeldForRetry,
        Drop::HalfOpenLimit,
        Drop::AclDenied,
        Drop::SynProxyBadCookie,
        Drop::SynProxyHeldFull,
        Drop::SynProxyHeldExpired,
        Drop::SynProxyMode,
        Drop::LimitRate,
        Drop::LimitConns,
        Drop::FragTableFull,
        Drop::FragHeldFull,
        Drop::FragTimeout,
        Drop::FragFirstDropped,
        Drop::Ipv6Malformed,
        Drop::Ipv6BadExtensions,
        Drop::Ipv6Fragment,
        Drop::Ipv6NotForUs,
        Drop::NdInvalid,
        Drop::Ipv6TooBig,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Drop::L2NotForUs => "l2_not_for_us",
            Drop::EtherTypeUnsupported => "ethertype_unsupported",
            Drop::ArpMalformed => "arp_malformed",
            Drop::IpNotForUs => "ip_not_for_us",
            Drop::IpFragment => "ip_fragment",
            Drop::IpOptions => "ip_options",
            Drop::TtlExpired => "ttl_expired",
            Drop::L4BadChecksum => "l4_bad_checksum",
            Drop::IpBadChecksumHw => "ipv4_bad_checksum_hw",
            Drop::IcmpUnhandled => "icmp_unhandled",
            Drop::ProtoUnsupported => "proto_unsupported",
            Drop::NoRoute => "no_route",
            Drop::NeighPendingFull => "neigh_pending_full",
            Drop::NeighUnresolved => "neigh_unresolved",
            Drop::NeighTableFull => "neigh_table_full",
            Drop::NeighHeldFull => "neigh_held_full",
            Drop::Chained => "chained_mbuf",
            Drop::RingFull => "ring_full",
            Drop::TxFull => "tx_full",
            Drop::MbufExhausted => "mbuf_exhausted",
            Drop::GenOverflow => "gen_overflow",
            Drop::NoRealServer => "no_real_server",
            Drop::NoService => "no_service",
            Drop::ConnTableFull => "conn_table_full",
            Drop::PortsExhausted => "ports_exhausted",
            Drop::NoConn => "no_conn",
            Drop::NoRoom => "no_room",
            Drop::NotOwner => "not_owner",
            Drop::PeerUnknownPort => "peer_unknown_port",
            Drop::PuntLimited => "punt_limited",
            Drop::TwinTxFull => "twin_tx_full",
            Drop::VipNotHeld => "vip_not_held",
            Drop::RstHeldForRetry => "rst_held_for_retry",
            Drop::HalfOpenLimit => "half_open_limit",
            Drop::AclDenied => "acl_denied",
            Drop::SynProxyBadCookie => "synproxy_bad_cookie",
            Drop::SynProxyHeldFull => "synproxy_held_full",
            Drop::SynProxyHeldExpired => "synproxy_held_expired",
            Drop::SynProxyMode => "synproxy_mode",
            Drop::LimitRate => "limit_rate",
            Drop::LimitConns => "limit_conns",
            Drop::FragTableFull => "frag_table_full",
            Drop::FragHeldFull => "frag_held_full",
            Drop::FragTimeout => "frag_timeout",
            Drop::FragFirstDropped => "frag_first_dropped",
            Drop::Ipv6Malformed => "ipv6_malformed",
            Drop::Ipv6BadExtensions => "ipv6_bad_extensions",
            Drop::Ipv6Fragment => "ipv6_fragment",
            Drop::Ipv6NotForUs => "ipv6_not_for_us",
            Drop::NdInvalid => "nd_invalid",
            Drop::Ipv6TooBig => "ipv6_too_big",
        }
    }
}

/// The stages of a worker's poll round, as VPP's `show runtime` lists its graph nodes. Each
/// stage's cycles run from the end of the one before, so a round's stages add up to its busy
/// cycles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// Polling the ports' rx queues and reading each mbuf's metadata.
    Rx,
    /// Ethernet, ARP, IPv4 and L4 header checks (`datapath::ingress`).
    L2L3,
    /// The connection-table lookup of a burst (prefetched, batched).
    Lookup,
    /// Scheduling, rewriting, routing: everything after the lookup (`Datapath::finish`).
    Forward,
    /// Verdicts into the tx buffers, generated packets, the flush to the drivers.
    Tx,
    /// Polling the rings other workers hand packets over on.
    Handoff,
    /// The kernel twins' queues (frames the kernel sends out).
    Twin,
    /// Housekeeping: connection expiry, neighbours, the control inbox, publishing counters.
    Timers,
}

impl Stage {
    pub const COUNT: usize = Stage::Timers as usize + 1;
    pub const ALL: [Stage; Stage::COUNT] = [
        Stage::Rx,
        Stage::L2L3,
        Stage::Lookup,
        Stage::Forward,
        Stage::Tx,
        Stage::Handoff,
        Stage::Twin,
        Stage::Timers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Rx => "rx",
            Stage::L2L3 => "l2-l3",
            Stage::Lookup => "lookup",
            Stage::Forward => "forward",
            Stage::Tx => "tx",
            Stage::Handoff => "handoff",
            Stage::Twin => "twin",
            Stage::Timers => "timers",
        }
    }
}

/// One stage's figures: calls that had work, packets, TSC cycles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StageCounters {
    pub calls: u64,
    pub packets: u64,
    pub cycles: u64,
}

impl StageCounters {
    pub fn add(&mut self, o: &StageCounters) {
        self.calls += o.calls;
        self.packets += o.packets;
        self.cycles += o.cycles;
    }
}

/// A poll round's stage times: each `lap` charges the cycles since the previous one to a stage.
/// Kept for the round and added to the worker's counters only if the round did work, so idle
/// polling is not counted (as the worker's busy cycles).
#[derive(Clone, Debug, Default)]
pub struct Laps {
    mark: u64,
    start: u64,
    stages: [StageCounters; Stage::COUNT],
}

impl Laps {
    /// A round begins at TSC `now`.
    #[inline]
    pub fn start(&mut self, now: u64) {
        self.mark = now;
        self.start = now;
        self.stages = Default::default();
    }

    /// Charges the cycles since the last lap to `stage`, one call with `packets`.
    #[inline]
    pub fn lap(&mut self, stage: Stage, now: u64, packets: usize) {
        let s = &mut self.stages[stage as usize];
        s.cycles += now.wrapping_sub(self.mark);
        s.calls += u64::from(packets > 0 || stage == Stage::Timers);
        s.packets += packets as u64;
        self.mark = now;
    }

    /// Cycles from the round's start to the last lap.
    pub fn elapsed(&self) -> u64 {
        self.mark.wrapping_sub(self.start)
    }

    /// Adds the round to `into`.
    pub fn commit(&self, into: &mut [StageCounters; Stage::COUNT]) {
        for (a, b) in into.iter_mut().zip(&self.stages) {
            a.add(b);
        }
    }
}

/// Per-key entries a worker publishes at every publication (every 100 ms); above, it publishes
/// its lists at every `entries / LISTS_PER_PUBLISH`-th publication and only its counters between
/// ([`lists_due`]).
pub const LISTS_PER_PUBLISH: usize = 10_000;

/// Whether a worker's next publication carries its per-key lists (traffic per service and real
/// server, access-list hits, limit refusals), `without` publications after the last that did,
/// with `entries` entries in them: at each while they hold fewer than `2 * LISTS_PER_PUBLISH`,
/// else at every `entries / LISTS_PER_PUBLISH`-th. With 10,000 services of 10 real servers a
/// worker gathered, sorted and copied 100,000 entries ten times a second, idle or not; now once
/// a second (perf/RESULTS.md, "Counters read without the traffic lists"). The rates
/// (`ipvsadm --rate`) are sampled once a second anyway; `ipvsadm --stats` lags by at most as
/// much.
pub fn lists_due(without: usize, entries: usize) -> bool {
    without.saturating_add(1) >= entries / LISTS_PER_PUBLISH
}

/// A worker's per-key lists, moved out of its stats and back (`WorkerStats::without_lists`).
struct Lists {
    traffic: Vec<(crate::service::TrafficKey, crate::counters::Traffic)>,
    acl_hits: SvcCounts,
    limit_refused: SvcCounts,
}

/// Counters per service, sorted by key: access-list rules (`WorkerStats::acl_hits`), limit
/// refusals (`WorkerStats::limit_refused`).
pub type SvcCounts = Vec<(crate::service::SvcId, Vec<u64>)>;

/// Adds `from`'s per-service counts to `into`'s, one by one (a list whose length differs, being
/// mid-change on another worker, is left out).
pub fn merge_svc_counts(into: &mut SvcCounts, from: &SvcCounts) {
    for (k, h) in from {
        match into.binary_search_by(|(x, _)| x.cmp(k)) {
            Ok(i) if into[i].1.len() == h.len() => {
                into[i].1.iter_mut().zip(h).for_each(|(a, b)| *a += b)
            }
            Ok(_) => {}
            Err(i) => into.insert(i, (*k, h.clone())),
        }
    }
}

/// Either kind of drop reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    Wire(WireDrop),
    Dp(Drop),
}

impl From<WireDrop> for DropReason {
    fn from(d: WireDrop) -> Self {
        DropReason::Wire(d)
    }
}

impl From<Drop> for DropReason {
    fn from(d: Drop) -> Self {
        DropReason::Dp(d)
    }
}

/// One worker's counters.
#[derive(Clone, Debug)]
pub struct WorkerStats {
    // Each packets counter apart from its bytes counter: side by side, the fast path's two
    // adds were made one vector add, six instructions where two do (`established-burst-net`
    // 400 -> 397, a short connection's -54; perf/RESULTS.md). The order is rustc's to keep
    // (no `repr`): were it to change, `perf/cost.sh` would show it.
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub arp_replies: u64,
    pub arp_requests: u64,
    pub icmp_echo_replies: u64,
    /// Packets handed to another worker (reply steering fallback), and received from one.
    pub handoff_out: u64,
    pub handoff_in: u64,
    /// Reply packets that arrived on the owner's own queue (steering by RSS worked).
    pub steer_hits: u64,
    /// Packets the established fast path forwarded (`datapath::fastpath`), IPv4 and IPv6; the
    /// others took the general path.
    pub fast_path: u64,
    /// Packets generated by the datapath (ARP requests, RSTs, ICMP errors).
    pub generated: u64,
    /// Busy TSC cycles (rounds that handled packets or ran housekeeping) and the packets they
    /// handled.
    pub busy_cycles: u64,
    pub busy_packets: u64,
    /// The busy cycles by stage (`gwctl runtime`).
    pub runtime: [StageCounters; Stage::COUNT],
    pub wire_drops: [u64; WireDrop::COUNT],
    pub drops: [u64; Drop::COUNT],
    /// Connection-engine counters (FullNAT).
    pub fwd: crate::counters::FwdStats,
    /// Neighbour-table counters (NUD transitions, requests, probes).
    pub neigh: crate::counters::NeighCounters,
    /// The IPv6 neighbour table's, the same counters (`neigh6_*`: probes are unicast
    /// solicitations, requests multicast ones).
    pub neigh6: crate::counters::NeighCounters,
    /// Frames to and from the kernel twins.
    pub punt: crate::counters::PuntCounters,
    /// The fragment table's counters (`frag`).
    pub frag: crate::counters::FragCounters,
    /// IPv6 counters (`inet6`).
    pub inet6: crate::counters::Inet6Counters,
    /// The SYN proxy's counters (`forward::synproxy`).
    pub synproxy: crate::counters::SynProxyStats,
    /// HA sync: what this worker logged, exported and installed (`forward::fullnat::install`).
    pub sync: crate::counters::SyncCounters,
    /// Local-port conflicts per (service, LIP), sorted by key.
    pub lip_conflicts: Vec<(crate::service::LipKey, u64)>,
    /// Traffic per (service, real server), sorted by key.
    pub traffic: Vec<(crate::service::TrafficKey, crate::counters::Traffic)>,
    /// Local ports in use per (service, LIP), sorted by key (a level: not summed by `add`).
    pub lip_usage: Vec<(crate::service::LipKey, u32)>,
    /// Connections each access-list rule decided per service (the default last), sorted by key.
    pub acl_hits: SvcCounts,
    /// New connections refused per service with a per-client limit: `[rate, max_conns]`, sorted
    /// by key.
    pub limit_refused: SvcCounts,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            rx_packets: 0,
            rx_bytes: 0,
            tx_packets: 0,
            tx_bytes: 0,
            arp_replies: 0,
            arp_requests: 0,
            icmp_echo_replies: 0,
            handoff_out: 0,
            handoff_in: 0,
            steer_hits: 0,
            fast_path: 0,
            generated: 0,
            busy_cycles: 0,
            busy_packets: 0,
            runtime: Default::default(),
            wire_drops: [0; WireDrop::COUNT],
            drops: [0; Drop::COUNT],
            fwd: Default::default(),
            neigh: Default::default(),
            neigh6: Default::default(),
            punt: Default::default(),
            frag: Default::default(),
            inet6: Default::default(),
            synproxy: Default::default(),
            sync: Default::default(),
            lip_conflicts: Vec::new(),
            traffic: Vec::new(),
            lip_usage: Vec::new(),
            acl_hits: Vec::new(),
            limit_refused: Vec::new(),
        }
    }
}

/// The names of the IPv6 neighbour table's counters (`WorkerStats::neigh6`): `neigh6_` and the
/// field's, as `neigh_` and the field's name IPv4's. Made once, from the fields' names, so the
/// two lists cannot drift apart.
pub fn neigh6_names() -> &'static [&'static str] {
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        crate::counters::NeighCounters::FIELDS
            .iter()
            .map(|f| &*Box::leak(format!("neigh6_{f}").into_boxed_str()))
            .collect()
    })
}

impl WorkerStats {
    /// The counters of [`named`](Self::named) that are levels, not totals: what the worker holds
    /// now. `/metrics` shows them as gauges, and `ipvsadm -Z` leaves them alone, as IPVS's zeroing
    /// leaves ActiveConn and InActConn.
    pub const LEVELS: [&'static str; 5] = [
        "conns",
        "half_open",
        "synproxy_auto_active",
        "ipv6_conns",
        "ipv6_half_open",
    ];

    /// Every counter with the name `gwctl stats`, the stats file and `/metrics` report it under:
    /// the worker's own, then each set's (`counters`), in one order.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        [
            ("rx_packets", self.rx_packets),
            ("rx_bytes", self.rx_bytes),
            ("tx_packets", self.tx_packets),
            ("tx_bytes", self.tx_bytes),
            ("arp_replies", self.arp_replies),
            ("arp_requests", self.arp_requests),
            ("icmp_echo_replies", self.icmp_echo_replies),
            ("handoff_out", self.handoff_out),
            ("handoff_in", self.handoff_in),
            ("steer_hits", self.steer_hits),
            ("fast_path", self.fast_path),
            ("generated", self.generated),
            ("drops", self.total_drops()),
        ]
        .into_iter()
        .chain(self.fwd.named())
        .chain(self.neigh.named())
        .chain(
            neigh6_names()
                .iter()
                .copied()
                .zip(self.neigh6.named().map(|(_, n)| n)),
        )
        .chain(self.punt.reported())
        .chain(self.frag.named())
        .chain(self.inet6.named())
        .chain(self.synproxy.named())
        .chain(self.sync.named())
    }

    #[inline]
    pub fn drop(&mut self, r: DropReason) {
        match r {
            DropReason::Wire(w) => self.wire_drops[w.index()] += 1,
            DropReason::Dp(d) => self.drops[d as usize] += 1,
        }
    }

    pub fn dropped(&self, r: DropReason) -> u64 {
        match r {
            DropReason::Wire(w) => self.wire_drops[w.index()],
            DropReason::Dp(d) => self.drops[d as usize],
        }
    }

    pub fn total_drops(&self) -> u64 {
        self.wire_drops.iter().sum::<u64>() + self.drops.iter().sum::<u64>()
    }

    /// Non-zero drop counters, by name.
    pub fn drop_list(&self) -> Vec<(&'static str, u64)> {
        self.drop_counts().filter(|(_, n)| *n > 0).collect()
    }

    /// Every drop counter, zero or not, by name.
    pub fn drop_counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        let w = WireDrop::ALL
            .iter()
            .map(|r| (r.name(), self.wire_drops[r.index()]));
        let d = Drop::ALL
            .iter()
            .map(|r| (r.name(), self.drops[*r as usize]));
        w.chain(d)
    }

    /// A copy without the per-key lists `traffic`, `acl_hits` and `limit_refused` (empty in it),
    /// for the readers that report only counters: the stats file and the report (every 200 and
    /// 500 ms), `gwctl stats`, `gwctl runtime` and the rates' samples. With 10,000 services of 10
    /// real servers a worker publishes 100,000 traffic entries; copying and merging them for
    /// every report kept an idle daemon's main thread busy (perf/RESULTS.md, "Counters read
    /// without the traffic lists"). The lists are lent to no one: taken out for the copy and put
    /// back, under the caller's lock.
    pub fn without_lists(&mut self) -> WorkerStats {
        let lists = self.take_lists();
        let copy = self.clone();
        self.put_lists(lists);
        copy
    }

    /// Copies `src`'s counters into `self`, whose per-key lists stay as they were: what a worker
    /// publishes between two publications of its lists (`Worker::publish`).
    pub fn clone_counters_from(&mut self, src: &mut WorkerStats) {
        let (kept, theirs) = (self.take_lists(), src.take_lists());
        self.clone_from(src);
        self.put_lists(kept);
        src.put_lists(theirs);
    }

    /// The number of per-key entries, which sets how often a worker publishes them.
    pub fn list_entries(&self) -> usize {
        self.traffic.len() + self.acl_hits.len() + self.limit_refused.len()
    }

    fn take_lists(&mut self) -> Lists {
        Lists {
            traffic: std::mem::take(&mut self.traffic),
            acl_hits: std::mem::take(&mut self.acl_hits),
            limit_refused: std::mem::take(&mut self.limit_refused),
        }
    }

    fn put_lists(&mut self, l: Lists) {
        self.traffic = l.traffic;
        self.acl_hits = l.acl_hits;
        self.limit_refused = l.limit_refused;
    }

    /// Adds another worker's counters (for totals). Not the per-key lists `traffic`, `acl_hits`
    /// and `limit_refused`: the totals' readers take copies without them
    /// (`WorkerStats::without_lists`), and what reads the lists merges them itself
    /// (`control::server::counters::TrafficMap`, [`merge_svc_counts`]).
    pub fn add(&mut self, o: &WorkerStats) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.arp_replies += o.arp_replies;
        self.arp_requests += o.arp_requests;
        self.icmp_echo_replies += o.icmp_echo_replies;
        self.handoff_out += o.handoff_out;
        self.handoff_in += o.handoff_in;
        self.steer_hits += o.steer_hits;
        self.fast_path += o.fast_path;
        self.generated += o.generated;
        self.busy_cycles += o.busy_cycles;
        self.busy_packets += o.busy_packets;
        for (a, b) in self.runtime.iter_mut().zip(&o.runtime) {
            a.add(b);
        }
        for (a, b) in self.wire_drops.iter_mut().zip(o.wire_drops.iter()) {
            *a += b;
        }
        for (a, b) in self.drops.iter_mut().zip(o.drops.iter()) {
            *a += b;
        }
        self.fwd.add(&o.fwd);
        self.neigh.add(&o.neigh);
        self.neigh6.add(&o.neigh6);
        self.punt.add(&o.punt);
        self.frag.add(&o.frag);
        self.inet6.add(&o.inet6);
        self.synproxy.add(&o.synproxy);
        self.sync.add(&o.sync);
        for (k, n) in &o.lip_conflicts {
            match self.lip_conflicts.binary_search_by(|(x, _)| x.cmp(k)) {
                Ok(i) => self.lip_conflicts[i].1 += n,
                Err(i) => self.lip_conflicts.insert(i, (*k, *n)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `gwctl stats` and `/metrics` list what `named` lists: every counter of every set, each
    /// once. (The hand-written list it replaced had left out `tun_too_big` and `frag_needed`.)
    #[test]
    fn named_lists_every_counter_of_every_set_once() {
        let mut s = WorkerStats::default();
        s.fwd.tun_too_big = 7;
        s.fwd.frag_needed = 8;
        s.sync.handed_over = 9;
        s.neigh6.confirmed = 10;
        s.neigh.confirmed = 11;
        let named: Vec<(&str, u64)> = s.named().collect();
        for want in [
            ("tun_too_big", 7),
            ("frag_needed", 8),
            ("sync_handed_over", 9),
            ("neigh6_confirmed", 10),
            ("neigh_confirmed", 11),
        ] {
            assert!(named.contains(&want), "{want:?} missing from {named:?}");
        }
        let sets = 13
            + crate::counters::FwdStats::FIELDS.len()
            + 2 * crate::counters::NeighCounters::FIELDS.len()
            + 1
            + crate::counters::PuntCounters::FIELDS.len()
            + crate::counters::FragCounters::FIELDS.len()
            + crate::counters::Inet6Counters::FIELDS.len()
            + crate::counters::SynProxyStats::FIELDS.len()
            + crate::counters::SyncCounters::FIELDS.len();
        assert_eq!(
            named.len(),
            sets,
            "the worker's 13, each set's fields, and `punted`"
        );
        let mut names: Vec<&str> = named.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), named.len(), "a name listed twice");
        for level in WorkerStats::LEVELS {
            assert!(
                names.contains(&level),
                "level {level} is not a counter's name"
            );
        }
    }

    /// The copy the counter readers take has every counter and no per-key list; the published
    /// stats keep their lists.
    #[test]
    fn a_copy_without_lists_keeps_the_counters_and_leaves_the_lists_in_place() {
        let svc = (6u8, std::net::Ipv4Addr::new(10, 0, 0, 1).into(), 80u16);
        let key = crate::service::TrafficKey::retired(svc.0, svc.1, svc.2);
        let mut s = WorkerStats {
            rx_packets: 5,
            traffic: vec![(key, crate::counters::Traffic::default())],
            acl_hits: vec![(svc, vec![1])],
            limit_refused: vec![(svc, vec![2])],
            ..WorkerStats::default()
        };
        s.fwd.conns = 3;
        s.drop(DropReason::Dp(Drop::NoRoute));
        let before = s.clone();
        let copy = s.without_lists();
        assert!(copy.traffic.is_empty() && copy.acl_hits.is_empty());
        assert!(copy.limit_refused.is_empty());
        assert_eq!(
            copy.named().collect::<Vec<_>>(),
            s.named().collect::<Vec<_>>()
        );
        assert_eq!(copy.drop_list(), vec![(Drop::NoRoute.name(), 1)]);
        assert_eq!(s.traffic, before.traffic);
        assert_eq!(s.acl_hits, before.acl_hits);
        assert_eq!(s.limit_refused, before.limit_refused);
    }

    /// Between two publications of the lists a worker publishes its counters alone: the copy
    /// takes them and keeps the lists it had; the source keeps its own.
    #[test]
    fn counters_published_alone_leave_the_published_lists() {
        let svc = (6u8, std::net::Ipv4Addr::new(10, 0, 0, 1).into(), 80u16);
        let mut published = WorkerStats {
            rx_packets: 1,
            acl_hits: vec![(svc, vec![1])],
            ..WorkerStats::default()
        };
        let mut worker = WorkerStats {
            rx_packets: 9,
            acl_hits: vec![(svc, vec![7])],
            ..WorkerStats::default()
        };
        published.clone_counters_from(&mut worker);
        assert_eq!(published.rx_packets, 9);
        assert_eq!(published.acl_hits, vec![(svc, vec![1])]);
        assert_eq!(worker.acl_hits, vec![(svc, vec![7])]);
    }

    /// Lists of up to 19,999 entries go out with every publication; 100,000 with every tenth;
    /// the first publication carries them whatever their size.
    #[test]
    fn large_lists_are_published_once_in_so_many_publications() {
        for without in [0, 1, 5] {
            assert!(lists_due(without, 0));
            assert!(lists_due(without, 19_999));
        }
        assert!(!lists_due(0, 20_000));
        assert!(lists_due(1, 20_000));
        assert!(!lists_due(8, 100_000));
        assert!(lists_due(9, 100_000));
        assert!(lists_due(usize::MAX, 100_000_000));
    }

    #[test]
    fn access_list_counts_add_rule_by_rule() {
        let a = |last: u8| (6u8, std::net::Ipv4Addr::new(10, 0, 0, last).into(), 80u16);
        let mut sum: SvcCounts = vec![(a(5), vec![1, 2])];
        merge_svc_counts(&mut sum, &vec![(a(9), vec![4]), (a(5), vec![10, 20])]);
        merge_svc_counts(&mut sum, &vec![(a(1), vec![7, 7, 7]), (a(5), vec![100])]);
        assert_eq!(
            sum,
            vec![(a(1), vec![7, 7, 7]), (a(5), vec![11, 22]), (a(9), vec![4])],
            "sorted by service; a list of another length (mid-change) left out"
        );
    }

    #[test]
    fn laps_charge_each_stage_the_cycles_since_the_last_and_add_up() {
        let mut l = Laps::default();
        l.start(1000);
        l.lap(Stage::Rx, 1010, 32);
        l.lap(Stage::L2L3, 1110, 32);
        l.lap(Stage::Lookup, 1150, 32);
        l.lap(Stage::Forward, 1400, 32);
        l.lap(Stage::Rx, 1405, 0);
        l.lap(Stage::Tx, 1500, 32);
        l.lap(Stage::Timers, 1600, 0);
        let mut total = [StageCounters::default(); Stage::COUNT];
        l.commit(&mut total);
        l.commit(&mut total);
        let c = |s: Stage| total[s as usize];
        assert_eq!(
            c(Stage::Rx),
            StageCounters {
                calls: 2,
                packets: 64,
                cycles: 30
            },
            "an empty poll costs cycles but is not a call"
        );
        assert_eq!(c(Stage::Forward).cycles, 500);
        assert_eq!(c(Stage::Timers).calls, 2, "housekeeping is a call");
        assert_eq!(total.iter().map(|s| s.cycles).sum::<u64>(), 2 * l.elapsed());
        assert_eq!(l.elapsed(), 600);
        l.start(5000);
        assert_eq!(l.elapsed(), 0);
    }

    #[test]
    fn every_reason_has_its_own_slot_and_name() {
        let mut s = WorkerStats::default();
        for (i, d) in Drop::ALL.iter().enumerate() {
            assert_eq!(*d as usize, i);
            s.drop((*d).into());
        }
        for w in WireDrop::ALL {
            s.drop(w.into());
        }
        assert_eq!(s.total_drops() as usize, Drop::COUNT + WireDrop::COUNT);
        let names: std::collections::HashSet<_> = s.drop_list().into_iter().map(|x| x.0).collect();
        assert_eq!(
            names.len(),
            Drop::COUNT + WireDrop::COUNT,
            "names are unique"
        );
        let mut t = WorkerStats::default();
        t.add(&s);
        t.add(&s);
        assert_eq!(t.dropped(Drop::NoRoute.into()), 2);
    }
}

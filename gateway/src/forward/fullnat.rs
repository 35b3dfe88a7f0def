//! The FullNAT engine of one worker: a client's packet to VIP:vport leaves as LIP:lport -> RIP:rport;
//! the real server's reply to LIP:lport goes back as VIP:vport -> CIP:cport. Real servers need no
//! route through the gateway.
//!
//! Per packet: one connection lookup (keyed hash, both directions in one table), a state update, an
//! address/port rewrite with incremental checksums, and the neighbour lookup of `route_out`. A new
//! connection (TCP SYN, or any UDP datagram) also runs the scheduler and takes a local port chosen so
//! that the reply is steered to this worker (`laddr`). A reply that arrives on another worker is
//! handed over by `owner_of(lport)`.
//!
//! The same engine runs the other modes, chosen per real server as in ipvsadm: `new_conn` creates
//! the connection for the scheduled real server's mode and `forward` dispatches on it: NAT
//! ([`super::nat`], destination rewritten, replies come back through us and are steered by the
//! client's tuple), DR ([`super::dr`], MAC only) and TUN ([`super::tun`], IPIP). DR and TUN
//! connections have no reply tuple (INPUT-ONLY TCP states) and keep the real server's address in the
//! entry's `user` word, so they keep forwarding to it even after the real server leaves the snapshot.

use super::acl;
use super::limit::{Limiter, Refused};
use super::nat::{self, NatIndex};
use super::owner::Owners;
use super::reuse::{self, Dest, Resched};
use super::rewrite::rewrite_l4;
use super::services::ServiceTable;
use super::synproxy::{self, SynProxy};
use super::{dr, mode, tun};
use crate::conn::{
    tcp_flags, Activity, Candidate, ConnFlags, ConnId, ConnTable, Dir, HotDeadline, InsertError,
    Prelookup, State, StateChange, Ticks, Timeouts, Tuple, PROTO_TCP,
};
use crate::laddr::{LaddrPool, PortLayout};
use crate::net::L3;
use crate::packet::{l4_checksum_ok, tcp_checksum_good, Ipv4In, Verdict};
use crate::packet::{CsumStatus, PacketBuf, RxMeta};
use crate::service::{ClientKey, FwdMode, SchedState};
use crate::stats::Drop;
use crate::wire::{ipv4, tcp, IpInfo, IpProtocol, Ipv4Repr, TcpFlags, TcpPacket};
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

pub use crate::counters::Traffic;
pub use crate::service::{LipKey, SvcId, TrafficKey};

impl Traffic {
    /// Counts a packet of `len` bytes (its IP length) from `dir`: in from the client, out
    /// from the real server.
    #[inline]
    pub fn count(&mut self, dir: Dir, len: u16) {
        match dir {
            Dir::Original => {
                self.inpkts += 1;
                self.inbytes += u64::from(len);
            }
            Dir::Reply => {
                self.outpkts += 1;
                self.outbytes += u64::from(len);
            }
        }
    }

    fn syn_failed(&mut self, refused: bool) {
        if refused {
            self.syn_refused += 1;
        } else {
            self.syn_unanswered += 1;
        }
        self.fail_streak += 1;
    }
}

/// Whether connection `c`, whose handshake failed, is to be retried on another server: its
/// service has `syn_retry`, it is not a retry itself, and another server could take it (else the
/// client is better told at once).
fn retries<T: crate::conn::ConnKey>(services: &ServiceTable, c: &crate::conn::ConnOf<T>) -> bool {
    !c.flags().contains(RETRIED)
        && services.services.get(c.svc as usize).is_some_and(|vs| {
            vs.syn_retry && crate::service::elsewhere_possible(&vs.svc, usize::from(c.rs))
        })
}

/// A reply found in the table, counted as `handle_with` counts it (`steer_hits`): the fast
/// path's connection lookup steered it to its connection.
#[inline(always)]
fn count_steered<B: PacketBuf>(l3: &mut L3<B>, dir: Dir) {
    if dir == Dir::Reply {
        l3.stats.steer_hits += 1;
    }
}

impl Forwarder {
    /// Whether a reply to `dst` may reach IPv4 connections (`AddrKind::reaches_ipv4_conns`):
    /// the addresses found so are remembered (`reply_lips`), and their replies skip the address
    /// table's probe, a chain of dependent loads (the services, the table, its slot) that took a
    /// sixth of the replies' path's samples under `perf record -e cpu-clock` (perf/RESULTS.md,
    /// "Loads the store buffer could not forward, a reply's address probe"), and a quarter
    /// again when one remembered address served replies spread over a pool's 32 ("A reply's
    /// local address remembered by its low bits").
    #[inline(always)]
    fn reaches_reply_side(&self, dst: Ipv4Addr) -> bool {
        let raw = u32::from(dst);
        remembered(&self.reply_lips.v4[raw as usize % REPLY_LIPS], raw, || {
            self.services.kind(dst).reaches_ipv4_conns()
        })
    }

    /// `reaches_reply_side` for the destination of a reply tuple an entry holds (`holds_hot`): a
    /// local address, never 0.0.0.0, which an empty slot holds, so the remembered address is
    /// compared without that test (`established-burst-net` 340 -> 332 with the entry tested
    /// first, the compiler's registers in the burst loop; `reply-burst-net` 354 -> 356).
    #[inline(always)]
    fn reaches_held_reply_side(&self, dst: Ipv4Addr) -> bool {
        let raw = u32::from(dst);
        debug_assert_ne!(raw, 0, "a reply tuple to 0.0.0.0");
        self.reply_lips.v4[raw as usize % REPLY_LIPS].get() == raw || self.reaches_reply_side(dst)
    }

    /// Whether IPv6's hot path takes a segment to `dst` for a real server's reply
    /// (`inet6::hot`): `dst` is an IPv6 local address and not a VIP, which the general path would
    /// take first. Remembered as IPv4's (`reaches_reply_side`).
    #[inline(always)]
    pub(crate) fn reaches_reply_side6(&self, dst: Ipv6Addr) -> bool {
        let raw = u128::from(dst);
        remembered(&self.reply_lips.v6[raw as usize % REPLY_LIPS], raw, || {
            let kind = self.services.kind6(dst);
            !kind.vip && kind.lip
        })
    }
}

/// Whether `probe` holds for address `raw`, remembered in `slot` (`ReplyLips`): true at once if
/// the slot holds `raw` (never for 0, an empty slot's), else `probe`'s answer, which takes the
/// slot when it is true.
#[inline(always)]
fn remembered<A: Copy + PartialEq + Default>(
    slot: &Cell<A>,
    raw: A,
    probe: impl FnOnce() -> bool,
) -> bool {
    if slot.get() == raw && raw != A::default() {
        return true;
    }
    let reaches = probe();
    if reaches {
        slot.set(raw);
    }
    reaches
}

/// `established`'s last check, on the connection it found (`found`): a client's SYN goes to
/// `handle_with`, which must see it for a reused port; so does a packet of no connection.
#[inline(always)]
fn established_found(
    ip: &IpInfo,
    found: Option<(ConnId, Dir)>,
) -> Result<(ConnId, Dir), Prelookup> {
    let client_syn = ip.tcp_flags.syn() && !ip.tcp_flags.ack();
    match found {
        Some((id, dir)) if !client_syn => Ok((id, dir)),
        _ => Err(found.into()),
    }
}

/// `traffic[traffic_base[svc] + rs]`, unless the connection's server is gone. Its own body,
/// not a call of `traffic_of_server`: so written, its inlining changed in its other callers
/// (a short connection +41 instructions, perf/RESULTS.md, "The next hop on the hot path's view").
fn traffic_at<'a>(
    traffic: &'a mut [Traffic],
    base: &TrafficBase,
    svc: u16,
    rs: u16,
) -> Option<&'a mut Traffic> {
    if rs == NO_DEST {
        return None;
    }
    traffic.get_mut(base.of(svc) + rs as usize)
}

/// `traffic_at` for a connection known to have a server (`rs` is not `NO_DEST`: the hot path's
/// `is_hot_entry` tested it), without testing it again (`established-burst-net` -2).
#[inline(always)]
fn traffic_of_server<'a>(
    traffic: &'a mut [Traffic],
    base: &TrafficBase,
    svc: u16,
    rs: u16,
) -> Option<&'a mut Traffic> {
    debug_assert_ne!(rs, NO_DEST);
    traffic.get_mut(base.of(svc) + rs as usize)
}

/// Where each service's servers' counters start in `Forwarder::traffic`, by service index: a
/// slot for every index a `u16` can hold, so that a connection's service is read from it with no
/// test of its bound (the established hot path's, `traffic_of_server`: `reply-burst-net` 347 ->
/// 345, `lifecycle-burst` -27), 256 KiB a worker. Past the services, `NO_BASE`, which puts
/// every server's index past the counters.
pub(super) struct TrafficBase(Box<[u32; 1 << 16]>);

/// `TrafficBase`'s slot of no service.
const NO_BASE: u32 = u32::MAX;

impl TrafficBase {
    fn new() -> TrafficBase {
        let slots = vec![NO_BASE; 1 << 16].into_boxed_slice();
        TrafficBase(slots.try_into().expect("2^16 slots"))
    }

    /// Where service `svc`'s counters start (past them all if it is no service).
    #[inline(always)]
    fn of(&self, svc: u16) -> usize {
        self.0[usize::from(svc)] as usize
    }

    /// The first `n` services' starts.
    pub(super) fn starts(&self, n: usize) -> &[u32] {
        &self.0[..n.min(self.0.len())]
    }

    /// Sets the services' starts: `starts`, then none up to `old` (the services before).
    pub(super) fn set(&mut self, starts: &[u32], old: usize) {
        let len = self.0.len();
        let n = starts.len().min(len);
        self.0[..n].copy_from_slice(&starts[..n]);
        if old > n {
            self.0[n..old.min(len)].fill(NO_BASE);
        }
    }
}

pub use super::services::NO_DEST;

/// A FullNAT entry whose client scheduled a new connection on the same tuple (`reschedule`): it
/// only holds its LIP:lport -> RIP:rport for the rest of TIME_WAIT, so that no new connection
/// takes that tuple while the real server may still hold it in TIME_WAIT. Linux (6.x) gives every
/// connection its own random TCP timestamp offset, so a SYN from another client connection on a
/// tuple the server holds in TIME_WAIT fails PAWS half the time (`TcpExtPAWSTimewait`): the server
/// answers with an ACK, the client resets and sends its SYN again (`keeps_syn_recv`).
pub const PARKED: ConnFlags = ConnFlags::USER_A;

/// The handshake failed on the real server's side: it refused the client's SYN (RST) or left it
/// unanswered for `syn_unanswered_ms`; counted once per connection (passive detection).
pub(crate) const FAILED: ConnFlags = ConnFlags::USER_B;

/// The connection is a client's second attempt (`syn_retry`): it is not retried again.
pub(crate) const RETRIED: ConnFlags = ConnFlags::USER_C;

/// Reply destinations a hot path found to be a local address that takes its replies, each in
/// the slot of its low bits (`REPLY_LIPS`), in host order; 0 for none (0 is never taken from
/// them). Cleared with every new service table (`commit_services`). A reply's hot path compares
/// with its slot before it probes the address table (`remembered`). Cells: IPv6's hot path holds
/// the forwarder shared.
struct ReplyLips {
    /// Addresses that reach IPv4 connections, a LIP or a VIP that is one too
    /// (`Forwarder::reaches_reply_side`).
    v4: [Cell<u32>; REPLY_LIPS],
    /// IPv6 local addresses that are not VIPs (`Forwarder::reaches_reply_side6`).
    v6: [Cell<u128>; REPLY_LIPS],
}

impl ReplyLips {
    fn empty() -> ReplyLips {
        ReplyLips {
            v4: [const { Cell::new(0) }; REPLY_LIPS],
            v6: [const { Cell::new(0) }; REPLY_LIPS],
        }
    }
}

/// Slots of `ReplyLips`, by an address's low bits: a service's local addresses are
/// usually a run of consecutive ones (the bench's 32, `perf/conf/bench.toml`), which then each
/// have a slot of their own; two that share one take it in turn.
const REPLY_LIPS: usize = 64;

/// Expired connections handled per `tick` (the rest wait for the next one, a few ms later).
const EXPIRE_BUDGET: usize = 2048;
/// The least time between a SYN and its first retransmission: RFC 6298's initial RTO of 1 s
/// (2.1; Linux's `TCP_TIMEOUT_INIT`), which a SYN's timer does not go below.
const SYN_RTO_MIN_MS: u64 = 1_000;
/// TOA option length (kind 254, length 8).
const TOA_LEN: u16 = 8;

#[derive(Clone, Copy, Debug)]
pub struct FwdConfig {
    pub capacity: u32,
    /// `[conn] capacity6`: the IPv6 table's size (`inet6`).
    pub capacity6: u32,
    pub timeouts: Timeouts,
    /// Candidates tried per LIP when choosing a local port.
    pub max_attempts: u32,
    /// `[conn] syn_unanswered_ms`: a client SYN retransmitted this long after the first, its server
    /// still silent, is a failed attempt.
    pub syn_unanswered_ms: u32,
    /// `[conn] max_half_open`: half-open TCP connections kept at most.
    pub max_half_open: u32,
    /// The same bound for the IPv6 table (`inet6`): `max_half_open` clamped to `capacity6`,
    /// half of it by default (`ConnConfig::half_open_limit`).
    pub max_half_open6: u32,
    /// `[synproxy]`, and the cookie key every worker shares.
    pub synproxy: synproxy::SynProxyConfig,
    pub cookie_key: synproxy::CookieKey,
}

pub use crate::counters::FwdStats;

pub struct Forwarder {
    worker: u16,
    table: ConnTable,
    services: Arc<ServiceTable>,
    /// The reply destinations remembered by both families' hot paths (`ReplyLips`). Boxed, one
    /// pointer for both: with the IPv4 slots inline (256 bytes among the fields), the burst's
    /// first stage took 0.5 to 0.7 cycles a packet more, and with a second box for IPv6's, 1.7
    /// more in the IPv4 datapath's, likeliest because the fields it reads moved (perf/RESULTS.md,
    /// "A reply's local address remembered by its low bits").
    reply_lips: Box<ReplyLips>,
    sched: Vec<SchedState>,
    capacity6: u32,
    /// A local-address pool per service (None for services without LIPs).
    pools: Vec<Option<LaddrPool>>,
    layout: Arc<PortLayout>,
    /// Who owns a connection, from the client's tuple (RSS of the arrival port, or a hash).
    owners: Arc<Owners>,
    /// IPVS `conn_reuse_mode` (`reuse`).
    conn_reuse_mode: u8,
    max_attempts: u32,
    syn_unanswered_ms: u32,
    max_half_open: u32,
    max_half_open6: u32,
    /// NAT real servers and services of the current snapshot.
    nat: NatIndex,
    /// Output MTU (the smallest port MTU): bounds IPIP packets and first-ACK TOA.
    mtu: u16,
    /// Connections each rule of each service's access list decided, the default last:
    /// `acl_hits[svc][rule]` (empty for a service without a list).
    acl_hits: Vec<Vec<u64>>,
    /// Per-client limits: buckets and open connections per client, refusals per service.
    limits: Limiter,
    /// Traffic per (service, real server): `traffic[traffic_base[svc] + rs]`.
    traffic: Vec<Traffic>,
    traffic_base: TrafficBase,
    /// The traffic of removed real servers and services (`TrafficKey::retired`).
    retired_traffic: std::collections::BTreeMap<TrafficKey, Traffic>,
    /// The SYN proxy (`synproxy`): cookies, and the state of proxied connections.
    pub synproxy: SynProxy,
    /// Connections to send the backup, while this box is a sync primary (`install`).
    sync_log: Option<SyncLog>,
    /// Sync counters of both roles (`install`).
    sync_stats: SyncCounters,
    pub stats: FwdStats,
}

mod hot;
mod icmp_errors;
mod install;
mod proxied;
mod report;
mod snapshot;

/// Why `Forwarder::forward_hot_into` did not forward a segment, for `forward_cold_into`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotHot {
    /// The burst lookup's candidate, connection `.0` from side `.1`, holds its tuple; the hot
    /// path refused the segment (it changed nothing).
    Refused(ConnId, Dir),
    /// No candidate holds its tuple (a miss, a candidate of another tuple), or it is a reply to
    /// an address that no longer takes replies (`reaches_reply_side`).
    Unheld,
}

pub use hot::PlainSeg;
pub use install::{
    push_record, template_record, worth_syncing, Applied, InstallError, SyncCounters, SyncLog,
};
pub use snapshot::{count_rebind, PreparedServices};

/// `Conn::ext` bit 0: the connection was opened by the SYN proxy (see [`synproxy`]); bits 1..8
/// belong to the sync log (`install`).
const PROXIED: u8 = 1;

/// Why a packet reached the forwarder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// To a VIP (from a client).
    Vip,
    /// To a LIP (a FullNAT reply).
    Lip,
    /// From a NAT real server to a non-local address (a NAT reply).
    NatReply,
}

impl Forwarder {
    pub fn new(
        worker: u16,
        services: Arc<ServiceTable>,
        layout: Arc<PortLayout>,
        cfg: &FwdConfig,
    ) -> Result<Forwarder, String> {
        let mut f = Forwarder {
            worker,
            table: ConnTable::new(cfg.capacity, cfg.timeouts),
            services: Arc::new(ServiceTable::default()),
            reply_lips: Box::new(ReplyLips::empty()),
            sched: Vec::new(),
            capacity6: cfg.capacity6,
            pools: Vec::new(),
            owners: Arc::new(Owners::hashed(layout.n_workers())),
            limits: Limiter::new(layout.n_workers()),
            conn_reuse_mode: reuse::DEFAULT_CONN_REUSE_MODE,
            layout,
            max_attempts: cfg.max_attempts,
            syn_unanswered_ms: cfg.syn_unanswered_ms,
            max_half_open: cfg.max_half_open,
            max_half_open6: cfg.max_half_open6,
            nat: NatIndex::default(),
            mtu: tun::DEFAULT_MTU,
            traffic: Vec::new(),
            traffic_base: TrafficBase::new(),
            retired_traffic: Default::default(),
            acl_hits: Vec::new(),
            synproxy: SynProxy::new(cfg.cookie_key, cfg.synproxy),
            sync_log: None,
            sync_stats: SyncCounters::default(),
            stats: FwdStats::default(),
        };
        f.set_services(services)?;
        Ok(f)
    }

    /// Counts a packet of `len` bytes (its IP length as received) from `dir` on a connection of
    /// real server `rs` of service `svc`, for `ipvsadm --stats`: for the IPv6 paths (`inet6`),
    /// whose connections live in a table of their own. IPv4's are counted in `forward_body`.
    #[inline]
    pub fn count_packet(&mut self, svc: u16, rs: u16, dir: Dir, len: u16) {
        if let Some(t) = traffic_at(&mut self.traffic, &self.traffic_base, svc, rs) {
            t.count(dir, len);
        }
    }

    /// Counts a new connection to real server `rs` of service `svc` (`count_packet`'s twin).
    pub fn count_conn(&mut self, svc: u16, rs: u16) {
        if let Some(t) = traffic_at(&mut self.traffic, &self.traffic_base, svc, rs) {
            t.conns += 1;
        }
    }

    /// Passive detection's counts for the IPv6 paths (`inet6::retry`), as `syn_failed` and
    /// `server_handshake` keep IPv4's: real server `rs` of service `svc` failed a client's SYN,
    /// `refused` (a RST) or left it unanswered.
    pub fn count_syn_failed(&mut self, svc: u16, rs: u16, refused: bool) {
        if let Some(t) = traffic_at(&mut self.traffic, &self.traffic_base, svc, rs) {
            t.syn_failed(refused);
        }
    }

    /// Real server `rs` of service `svc` answered a client's SYN: its streak of failures ends.
    pub fn count_syn_answered(&mut self, svc: u16, rs: u16) {
        if let Some(t) = traffic_at(&mut self.traffic, &self.traffic_base, svc, rs) {
            t.syn_answered += 1;
            t.fail_streak = 0;
        }
    }

    /// `[conn] syn_unanswered_ms`: how long a client's SYN may wait for its server's answer
    /// before its retransmission counts the attempt failed.
    pub fn syn_unanswered_ms(&self) -> u32 {
        self.syn_unanswered_ms
    }

    /// Whether connection `c`, whose handshake failed, is retried on another server
    /// (`syn_retry`; either family's entry).
    pub fn retries<T: crate::conn::ConnKey>(&self, c: &crate::conn::ConnOf<T>) -> bool {
        retries(&self.services, c)
    }

    /// Sets the output MTU (default 1500; the daemon passes the smallest port MTU): a TUN packet that
    /// would exceed it once wrapped is not sent (see `tun`), and TOA is added to a client's first ACK
    /// only if the segment still fits.
    /// The ports' MTU the engine assumes (`set_mtu`).
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    pub fn set_mtu(&mut self, mtu: u16) {
        self.mtu = mtu.max(576);
    }

    /// Service `si`'s IPv4 local-address pool (an IPv6 service's for NAT64, `inet6::nat64`).
    pub fn pool_mut(&mut self, si: u32) -> Option<&mut LaddrPool> {
        self.pools.get_mut(si as usize)?.as_mut()
    }

    /// The local port space's split between workers (`laddr`).
    pub fn layout(&self) -> &Arc<PortLayout> {
        &self.layout
    }

    /// The per-client limits (`limit`), for the IPv6 side, which counts its connections in them
    /// as this side counts its own.
    pub fn limits_mut(&mut self) -> &mut Limiter {
        &mut self.limits
    }

    /// Whether service `si`'s access list lets `client` open a connection, counting the rule that
    /// decided (`acl`; either family).
    pub fn acl_allows(&mut self, si: u32, client: IpAddr) -> bool {
        let rules = &self.services.services[si as usize].acl;
        if rules.is_empty() {
            return true;
        }
        let (rule, allowed) = acl::decide(rules, client);
        if let Some(n) = self
            .acl_hits
            .get_mut(si as usize)
            .and_then(|h| h.get_mut(rule))
        {
            *n += 1;
        }
        allowed
    }

    /// `[conn] capacity6`.
    pub fn capacity6(&self) -> u32 {
        self.capacity6
    }

    /// Half-open TCP connections the IPv6 table keeps at most (`FwdConfig::max_half_open6`).
    pub fn max_half_open6(&self) -> u32 {
        self.max_half_open6
    }

    /// The snapshot and this worker's scheduler state per service, for a caller that schedules
    /// new connections of its own (`inet6`).
    pub fn services_and_sched(&mut self) -> (&ServiceTable, &mut [SchedState]) {
        (&self.services, &mut self.sched)
    }

    /// The client-direction ownership rule (default: by hash of the client's address and port).
    pub fn set_owners(&mut self, owners: Arc<Owners>) {
        self.owners = owners;
    }

    /// IPVS `conn_reuse_mode` (see [`reuse`]): 0 off, bit 1 TIME_WAIT/CLOSE, bit 2 FIN_WAIT of
    /// client-side-only connections.
    pub fn set_conn_reuse_mode(&mut self, mode: u8) {
        self.conn_reuse_mode = mode;
    }

    pub fn conn_reuse_mode(&self) -> u8 {
        self.conn_reuse_mode
    }

    /// New idle timeouts; a connection's timer takes them at its next packet.
    pub fn set_timeouts(&mut self, t: Timeouts) {
        if self.table.timeouts() != t {
            self.table.set_timeouts(t);
        }
    }

    pub fn services(&self) -> &Arc<ServiceTable> {
        &self.services
    }

    /// The SYN proxy's counters, with whether its auto mode is on now.
    pub fn synproxy_counters(&self, now_ms: u64) -> synproxy::SynProxyStats {
        synproxy::SynProxyStats {
            auto_active: u64::from(self.synproxy.auto_on(now_ms)),
            ..self.synproxy.stats
        }
    }

    /// Walks up to `slots` more slots of the IPv4 table for a configuration change its entries
    /// follow (`conn::rebind`); whether the walk goes on.
    #[inline]
    pub fn rebind_step(&mut self, slots: u32) -> bool {
        self.table.rebind_step(slots)
    }

    pub fn table(&self) -> &ConnTable {
        &self.table
    }

    /// The connection table made again, empty, with the hash key `key` rather than a random one:
    /// the test kit's datapaths, whose deterministic counts (`perf/cost.sh`) moved by up to 2
    /// instructions from run to run with the probe lengths a random key gave.
    #[cfg(any(test, feature = "testkit"))]
    pub fn rekey_empty_table(&mut self, key: crate::conn::HashKey) {
        assert!(self.table.is_empty(), "a table with connections in it");
        self.table = ConnTable::with_key(
            self.table.capacity() as u32,
            self.table.timeouts(),
            key,
            Ticks(0),
        );
    }

    /// Handles a packet to a VIP or a LIP. `Err(pkt)`: not a forwarding matter, the packet comes back
    /// (the caller delivers it locally, e.g. a ping to the VIP).
    #[inline]
    pub fn handle<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        pkt: B,
        meta: &RxMeta,
        v: &Ipv4In,
    ) -> Result<Verdict<B>, B> {
        self.handle_with(l3, pkt, meta, v, Prelookup::NotDone)
    }

    /// The tuple `handle` looks up for this packet, when it does one (TCP/UDP, not a fragment):
    /// the burst pipeline looks these up together (`ConnTable::lookup_batch`) so that the cache misses
    /// of a burst overlap.
    #[inline]
    pub fn lookup_tuple(&self, v: &Ipv4In) -> Option<Tuple> {
        let ip = &v.ip;
        if ip.is_fragment || !(ip.protocol == IpProtocol::TCP || ip.protocol == IpProtocol::UDP) {
            return None;
        }
        Some(Tuple::new(
            ip.src,
            ip.src_port,
            ip.dst,
            ip.dst_port,
            ip.protocol.0,
        ))
    }

    /// `handle` with the result of a batched lookup done earlier in the burst. A hit is re-checked
    /// against the entry (a packet earlier in the burst may have removed it and the slot been
    /// reused); a miss is trusted: the caller passes `Prelookup::NotDone` instead when an earlier
    /// packet of the burst may have created the connection (`ConnTable::indexed` moved).
    #[inline]
    pub fn handle_with<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        pkt: B,
        meta: &RxMeta,
        v: &Ipv4In,
        pre: Prelookup,
    ) -> Result<Verdict<B>, B> {
        let ip = &v.ip;
        let Some(via) = self.via(l3, ip) else {
            return Err(pkt);
        };
        match ip.protocol {
            IpProtocol::TCP | IpProtocol::UDP => {}
            IpProtocol::ICMP => return self.icmp_error(l3, pkt, meta, v, via),
            _ => return Ok(Verdict::Drop(Drop::ProtoUnsupported.into(), pkt)),
        }
        // A first fragment is forwarded as a whole packet is (`crate::frag`); the datapath sends
        // the others after it, never here.
        if ip.frag_offset != 0 {
            return Ok(Verdict::Drop(Drop::IpFragment.into(), pkt));
        }
        if ip.has_options {
            return Ok(Verdict::Drop(Drop::IpOptions.into(), pkt));
        }
        // A fragment's checksum covers the whole datagram: the real server verifies it. A first
        // fragment's TCP flags therefore drive the connection's state unverified: the price of
        // following fragments instead of reassembling them (IPVS gathers them first).
        // A plain ACK of an established connection goes on whatever its checksum
        // (`forwards_unverified`): verified or not, it is forwarded alike.
        let l4_ok = ip.is_fragment || l4_checksum_ok(&pkt, meta, v);
        let proto = ip.protocol.0;
        let tuple = Tuple::new(ip.src, ip.src_port, ip.dst, ip.dst_port, proto);
        let found = self.find(&tuple, pre);
        if !l4_ok && !found.is_some_and(|(id, _)| self.forwards_unverified(ip, id)) {
            return Ok(Verdict::Drop(Drop::L4BadChecksum.into(), pkt));
        }
        let now = Ticks(l3.now_ms);
        Ok(match found {
            Some((id, dir)) => {
                if dir == Dir::Reply && !meta.from_peer {
                    l3.stats.steer_hits += 1;
                }
                if dir == Dir::Original && ip.tcp_flags.syn() && !ip.tcp_flags.ack() {
                    let seq = TcpPacket::new_unchecked(&pkt.data()[ip.l4_off..]).seq();
                    if let Some(why) = self.reuse_decision(id, seq) {
                        let why = (why, meta.port);
                        return Ok(self.reschedule(l3, pkt, v, id, tuple, now, why));
                    }
                    if let Some((rip, since)) = self.unanswered_server(id, now) {
                        // The client retransmits a SYN its server never answered: the signal
                        // that the neighbour toward that server may have changed its MAC.
                        l3.suspect_neighbour(rip, since);
                        if let Some(failed) = self.syn_failed(id, now) {
                            // `syn_retry`: made on the client's retransmission rather than from a
                            // copy of its first SYN, so nothing is held per half-open connection
                            // (a SYN flood cannot exhaust the mbufs with it), at the cost of the
                            // client's retransmission timeout (1 s on Linux) once.
                            let retry = (failed, meta.port);
                            return Ok(self.retry(l3, pkt, v, id, tuple, now, retry));
                        }
                    }
                }
                self.forward(l3, pkt, v, id, dir, now)
            }
            None => match via {
                Via::Vip => {
                    // One service lookup serves both the owner's rule and the new connection.
                    let si = self.services.find(ip.dst, ip.dst_port, proto);
                    let owner = si.and_then(|si| {
                        self.client_owner_elsewhere(
                            meta,
                            si,
                            ip.dst,
                            ip.dst_port,
                            proto,
                            ip.src,
                            ip.src_port,
                        )
                    });
                    match owner {
                        Some(w) => self.hand_to(w, pkt, true),
                        // A kernel-owned VIP that no twin holds: another box serves it.
                        None if !l3.topo().local.contains(&ip.dst) => {
                            Verdict::Drop(Drop::VipNotHeld.into(), pkt)
                        }
                        None => {
                            let rx_port = Some(meta.port);
                            self.new_conn(l3, pkt, v, tuple, si, now, None, rx_port)
                        }
                    }
                }
                Via::Lip => self.not_mine(pkt, meta, ip.dst_port),
                Via::NatReply => self.nat_not_mine(pkt, meta, ip.dst, ip.dst_port),
            },
        })
    }

    /// The connection of `tuple` and the side that sent it: the burst's earlier lookup `pre` if
    /// there was one (a hit re-checked against its entry, see `handle_with`), else a lookup now.
    #[inline]
    fn find(&self, tuple: &Tuple, pre: Prelookup) -> Option<(ConnId, Dir)> {
        self.table.resolve(tuple, pre)
    }

    /// The established fast path's forwarding (`datapath::fastpath`): a plain TCP segment to a
    /// VIP or a LIP, its IP header verified, goes straight to `forward` if this worker holds its
    /// connection. It is what `handle_with` does for such a segment, without the dispatch that
    /// other packets need. `l4_csum` is the NIC's report on its TCP checksum: a plain ACK the
    /// admission did not verify is verified here (`datapath::tcp_checksum_good`) if the hot path
    /// does not take it (which takes it as `handle_with` would, `forwards_unverified`), and
    /// goes to `handle_with` if it fails. `Err` hands the packet back
    /// unchanged, with what is known of its connection (`pre` for `handle_with`), when
    /// `handle_with` must decide: no connection, a client's SYN on one (a reused port), a NAT64
    /// reply, an address that is neither, an unverified segment the hot path did not take.
    #[inline]
    pub fn forward_established<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        pkt: B,
        v: &Ipv4In,
        pre: Prelookup,
        l4_csum: CsumStatus,
    ) -> Result<Verdict<B>, (B, Prelookup)> {
        match self.established(v, pre) {
            Ok((id, dir)) => {
                let now = Ticks(l3.now_ms);
                let deadline = self.table.hot_deadline(now);
                let mut out = None;
                match self.forward_hot(l3, pkt, &PlainSeg::of(v), id, dir, deadline, &mut out) {
                    Ok(()) => {
                        count_steered(l3, dir);
                        Ok(out.expect("forward_hot writes its verdict"))
                    }
                    Err(pkt) if tcp_checksum_good(l4_csum, pkt.data(), v) => {
                        count_steered(l3, dir);
                        Ok(self.forward(l3, pkt, v, id, dir, now))
                    }
                    Err(pkt) => Err((pkt, Prelookup::Hit(id, dir))),
                }
            }
            Err(pre) => Err((pkt, pre)),
        }
    }

    /// Whether connection `id`, the burst lookup's candidate for a segment the fast path's
    /// admission took (`seg`) from side `dir`, holds its tuple from that side: the hot path then
    /// tries it without `established`'s lookup (`forward_hot_into`). A reply's destination is
    /// probed as `established` probes it: a local address removed from the pools no longer
    /// takes replies. (While the connection's service is configured its VIP is a VIP; once the
    /// service is gone the connection has no real server, `ConnRemap`'s `NO_DEST`, which the hot
    /// path refuses, and the packet then takes `forward_refused`.)
    #[inline(always)]
    pub fn holds_hot(&self, id: ConnId, dir: Dir, seg: &PlainSeg) -> bool {
        // The admission took only TCP segments: the protocol compared is a constant, not the
        // lane's, read back from memory.
        debug_assert_eq!(seg.tuple.proto, PROTO_TCP);
        let tuple = Tuple {
            proto: PROTO_TCP,
            ..seg.tuple
        };
        match dir {
            Dir::Original => self.table.holds(id, Dir::Original, &tuple),
            Dir::Reply => {
                self.table.holds(id, Dir::Reply, &tuple)
                    && self.reaches_held_reply_side(tuple.dst_ip())
            }
        }
    }

    /// The hot path for a segment the fast path's admission took (`seg`) on connection `id`
    /// from side `dir`, whose entry holds its tuple (`holds_hot`), writing the verdict into
    /// `out` (the burst's slot for the packet) instead of returning it: see `forward_into`.
    /// `Err` hands the packet back unchanged, `out` as it was, for `forward_cold_into`
    /// (`NotHot::Refused`), which the burst loop calls out of line with the segment parsed
    /// again (`Datapath::forward_plain_cold`): the loop neither keeps the parse of the segments
    /// the hot path takes nor carries the general path's arguments to its calls.
    ///
    /// Called with `dir` a constant in each of the burst loop's branches: with the side a
    /// variable, the compiler merged the two hot paths into one (the client's 432 -> 441).
    /// `deadline`: ESTABLISHED's at the burst's clock (`Table::hot_deadline`).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn forward_hot_into<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        pkt: B,
        seg: &PlainSeg,
        id: ConnId,
        dir: Dir,
        deadline: HotDeadline,
        out: &mut Option<Verdict<B>>,
    ) -> Result<(), B> {
        self.forward_hot(l3, pkt, seg, id, dir, deadline, out)?;
        // Counted as `count_steered` counts; one the hot path refuses is counted there, or by
        // `handle_with`.
        count_steered(l3, dir);
        Ok(())
    }

    /// `forward_established` for a segment the hot path did not forward (`why`), parsed
    /// again (`v`), writing the verdict into `out`: one the hot path refused on a connection
    /// its candidate holds goes to `forward_refused`, every other to
    /// `forward_established_rest`. `found` is the burst lookup's candidate with the table's
    /// `indexed` count the lookup left: a miss is trusted only if no tuple was added since
    /// (`Candidate::unless_stale`), which only the rest asks. `Err` as `forward_established`
    /// gives it, `out` as it was.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn forward_cold_into<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        pkt: B,
        v: &Ipv4In,
        why: NotHot,
        found: (Candidate, u64),
        l4_csum: CsumStatus,
        out: &mut Option<Verdict<B>>,
    ) -> Result<(), (B, Prelookup)> {
        match why {
            NotHot::Refused(id, dir) => self.forward_refused(l3, pkt, v, (id, dir), l4_csum, out),
            NotHot::Unheld => self.forward_established_rest(l3, pkt, v, found, l4_csum, out),
        }
    }

    /// `forward_cold_into` for every packet whose candidate does not hold its tuple, and
    /// a reply whose destination no longer takes replies (`reaches_reply_side`): as
    /// `forward_established`, the connection found (the table probed), the hot path tried,
    /// else the general body.
    #[inline(always)]
    fn forward_established_rest<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        pkt: B,
        v: &Ipv4In,
        found: (Candidate, u64),
        l4_csum: CsumStatus,
        out: &mut Option<Verdict<B>>,
    ) -> Result<(), (B, Prelookup)> {
        // A miss is a miss still unless a packet before it in the burst added tuples.
        let pre = found.0.unless_stale(self.table.indexed() == found.1);
        let now = Ticks(l3.now_ms);
        let deadline = self.table.hot_deadline(now);
        match self.established(v, pre.get()) {
            Ok((id, dir)) => {
                match self.forward_hot(l3, pkt, &PlainSeg::of(v), id, dir, deadline, out) {
                    Ok(()) => {
                        count_steered(l3, dir);
                        Ok(())
                    }
                    Err(pkt) if tcp_checksum_good(l4_csum, pkt.data(), v) => {
                        count_steered(l3, dir);
                        self.forward_into(l3, pkt, v, id, dir, now, out);
                        Ok(())
                    }
                    Err(pkt) => Err((pkt, Prelookup::Hit(id, dir))),
                }
            }
            Err(pre) => Err((pkt, pre)),
        }
    }

    /// `forward_cold_into` for a packet whose candidate (connection `id` from side `dir`)
    /// holds its tuple and whose hot path refused it: the connection is known, so neither the
    /// probe nor the hot path is done again (it changes nothing when it refuses); the general
    /// body, or `Err` as `forward_established` would give it. The segments that move a held
    /// connection's state come this way, from either side: the handshake's ACK, the client's
    /// ACK and FIN after the server's FIN (`lifecycle-burst` 11,717 -> 11,511 instructions a
    /// connection), and since 7c6b0f5 the server's SYN-ACK and FIN. Inlined, as the rest, into
    /// `Datapath::forward_plain_cold`, itself out of line: the burst loop calls neither.
    #[inline(always)]
    fn forward_refused<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        pkt: B,
        v: &Ipv4In,
        (id, dir): (ConnId, Dir),
        l4_csum: CsumStatus,
        out: &mut Option<Verdict<B>>,
    ) -> Result<(), (B, Prelookup)> {
        let pre = Prelookup::Hit(id, dir);
        // What `established` checks besides the probe. (Its checks shared as a function of the
        // probe, a closure, cost `Datapath::process`'s packets their inlining: `lifecycle-net`
        // 10,228 -> 10,611 instructions at d4887fd.) A reply's destination, the same check,
        // was just remembered (`reaches_reply_side`): the address table is not probed again
        // (`lifecycle-burst-net` 10,740 -> 10,710).
        let takes = match dir {
            Dir::Original => self.takes_ipv4_conns(&v.ip),
            Dir::Reply => self.reaches_reply_side(v.ip.dst),
        };
        if !takes {
            return Err((pkt, pre));
        }
        if let Err(pre) = established_found(&v.ip, Some((id, dir))) {
            return Err((pkt, pre));
        }
        if !tcp_checksum_good(l4_csum, pkt.data(), v) {
            return Err((pkt, pre));
        }
        count_steered(l3, dir);
        self.forward_into(l3, pkt, v, id, dir, Ticks(l3.now_ms), out);
        Ok(())
    }

    /// The connection `forward_established` forwards a segment on, and from which side; `Err`
    /// with what is known of it when `handle_with` must decide. Changes nothing: a reply found
    /// is counted (`count_steered`) once it is forwarded here. Always inlined: the worker's
    /// burst loop inlines it, and the harness that counts its instructions had called it
    /// (`perf/calls.sh`).
    #[inline(always)]
    fn established(&self, v: &Ipv4In, pre: Prelookup) -> Result<(ConnId, Dir), Prelookup> {
        let ip = &v.ip;
        if !self.takes_ipv4_conns(ip) {
            return Err(pre);
        }
        let tuple = Tuple::new(ip.src, ip.src_port, ip.dst, ip.dst_port, ip.protocol.0);
        established_found(ip, self.find(&tuple, pre))
    }

    /// `established`'s first check: the destination takes IPv4 connections (a VIP, or a LIP
    /// still in the pools). Shared with `forward_refused`, which has its connection.
    #[inline(always)]
    fn takes_ipv4_conns(&self, ip: &IpInfo) -> bool {
        self.services.kind(ip.dst).reaches_ipv4_conns()
    }

    /// Which way a packet reaches the forwarding engine, if it does: to a VIP, to a LIP, or from
    /// a NAT real server.
    #[inline]
    fn via<B: PacketBuf>(&self, l3: &L3<B>, ip: &IpInfo) -> Option<Via> {
        let kind = self.services.kind(ip.dst);
        if kind.vip {
            Some(Via::Vip)
        } else if kind.lip {
            Some(Via::Lip)
        } else if !self.nat.is_empty()
            && self.nat.is_real(ip.src)
            && !l3.topo().local.contains(&ip.dst)
        {
            Some(Via::NatReply)
        } else {
            None
        }
    }

    /// Whether `handle` forwards this TCP or UDP packet (rather than handing it back for local
    /// delivery): the datapath's fragment table follows only these.
    pub fn forwards<B: PacketBuf>(&self, l3: &L3<B>, ip: &IpInfo) -> bool {
        (ip.protocol == IpProtocol::TCP || ip.protocol == IpProtocol::UDP)
            && self.via(l3, ip).is_some()
    }

    /// The number of workers connections are spread over.
    pub fn n_workers(&self) -> usize {
        self.owners.n_workers()
    }

    fn hand_to<B>(&mut self, w: usize, pkt: B, client: bool) -> Verdict<B> {
        if client {
            self.stats.handoff_client += 1;
        } else {
            self.stats.handoff_reply += 1;
        }
        Verdict::ToWorker(w as u16, pkt)
    }

    /// The owner of a client packet to VIP:vport that this worker has no connection for (see
    /// `owner`): that worker, if it is another. A packet handed over by a peer is never handed on.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn client_owner_elsewhere(
        &self,
        meta: &RxMeta,
        si: u32,
        vip: Ipv4Addr,
        vport: u16,
        proto: u8,
        cip: Ipv4Addr,
        cport: u16,
    ) -> Option<usize> {
        if meta.from_peer || self.owners.n_workers() < 2 {
            return None;
        }
        let hash_only = self.nat.service_has_nat(si);
        let w = self
            .owners
            .of_client(meta.port, hash_only, proto, cip, cport, vip, vport);
        (w != self.worker as usize).then_some(w)
    }

    /// `Forwarder::client_owner_elsewhere` for an IPv6 client's packet to VIP:vport (`inet6`):
    /// the owner by the NIC's RSS of the port it arrived on, by hash for NAT services and ports
    /// without RSS; None for a packet to no service.
    #[allow(clippy::too_many_arguments)]
    pub fn client_owner_elsewhere6(
        &self,
        meta: &RxMeta,
        vip: std::net::Ipv6Addr,
        vport: u16,
        proto: u8,
        cip: std::net::Ipv6Addr,
        cport: u16,
    ) -> Option<usize> {
        if meta.from_peer || self.owners.n_workers() < 2 {
            return None;
        }
        // No service: dropped here, not handed over to be dropped there.
        let si = self.services.find6(vip, vport, proto)?;
        let hash_only = self.services.service_has_nat6(si);
        let w = self
            .owners
            .of_client6(meta.port, hash_only, proto, cip, cport, vip, vport);
        (w != self.worker as usize).then_some(w)
    }

    /// Hands a client's packet to worker `w`, its connection's owner (`handoff_client`).
    pub fn hand_client_to<B>(&mut self, w: usize, pkt: B) -> Verdict<B> {
        self.hand_to(w, pkt, true)
    }

    /// Whether a client's SYN with sequence number `seq` that found connection `id` is scheduled
    /// afresh (`reuse`).
    fn reuse_decision(&self, id: ConnId, seq: u32) -> Option<Resched> {
        let c = self.table.get(id)?;
        let vs = self.services.services.get(c.svc as usize);
        let dest = match vs.and_then(|vs| vs.svc.weights().get(c.rs as usize)) {
            Some(&w) if c.rs != NO_DEST => Dest::Weight(w),
            _ => Dest::Removed,
        };
        let nodest = vs.is_none_or(|vs| vs.svc.expire_nodest_conn());
        let input_only = c.mode() == mode::DR || c.mode() == mode::TUN;
        // During the handshake `user2` holds an ISN plus one, 0 while unknown: for FullNAT and NAT
        // the server's last ACK (the ISN it acknowledged), for DR and TUN, whose answers bypass
        // the gateway, the client's first SYN's (`forward`).
        let other_isn = c.user2 != 0 && c.user2 != seq.wrapping_add(1);
        reuse::on_syn(
            self.conn_reuse_mode,
            nodest,
            c.state(),
            input_only,
            dest,
            other_isn,
        )
    }

    /// The real server of connection `id` if its handshake is still unanswered (SYN_RECV, no
    /// SYN-ACK from the server side yet), and since when (ms) it has been waited for: a SYN that
    /// finds it is the client's retransmission.
    fn unanswered_server(&self, id: ConnId, now: Ticks) -> Option<(Ipv4Addr, u64)> {
        let c = self.table.get(id)?;
        if c.state() != State::SynRecv {
            return None;
        }
        match c.mode() {
            // The answer bypasses the gateway and the entry keeps no start (`user2` holds the
            // client's ISN plus one, `user` the server's address). A retransmitted SYN repeats one
            // sent at least `SYN_RTO_MIN_MS` ago, so a neighbour confirmed since then was
            // confirmed after it: with `u64::MAX` here, every retransmission probed a server
            // whose neighbour had just answered the last probe.
            mode::DR | mode::TUN => {
                Some((Ipv4Addr::from(c.user), now.0.saturating_sub(SYN_RTO_MIN_MS)))
            }
            _ if c.user2 != 0 => None,
            // `user`: the connection's creation time, or the server's last bare ACK to its SYN
            // (`keeps_syn_recv`), in ms mod 2^32.
            _ => {
                let waited = (now.0 as u32).wrapping_sub(c.user);
                c.reply()
                    .map(|r| (r.src_ip(), now.0.saturating_sub(u64::from(waited))))
            }
        }
    }

    /// Expires connection `id` and schedules its tuple's new packet as a new connection: a fresh
    /// decision and, for FullNAT, a fresh LIP:lport (the pool's cursor has moved on from the old one,
    /// which the real server may still hold in TIME_WAIT).
    #[allow(clippy::too_many_arguments)]
    fn reschedule<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        pkt: B,
        v: &Ipv4In,
        id: ConnId,
        tuple: Tuple,
        now: Ticks,
        (why, rx_port): (Resched, u16),
    ) -> Verdict<B> {
        self.count_resched(why);
        self.renew(l3, pkt, v, id, tuple, now, (None, rx_port))
    }

    /// Counts a SYN on a reused client tuple scheduled afresh (`resched_*`, both families).
    pub(crate) fn count_resched(&mut self, why: Resched) {
        let s = &mut self.stats;
        match why {
            Resched::Closed => s.resched_closed += 1,
            Resched::FinWait => s.resched_fin_wait += 1,
            Resched::Quiesced => s.resched_quiesced += 1,
            Resched::Removed => s.resched_removed += 1,
            Resched::NewIsn => s.resched_new_isn += 1,
        }
    }

    /// `renew` for a connection whose handshake failed on real server `failed` (`syn_retry`): the
    /// client's first attempt again, admitted, not a new connection, so its client limit's token
    /// goes back first (refused, the client would see the RST the retry held back).
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn retry<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        pkt: B,
        v: &Ipv4In,
        id: ConnId,
        tuple: Tuple,
        now: Ticks,
        (failed, rx_port): (u16, u16),
    ) -> Verdict<B> {
        if let Some(svc) = self.table.get_current(id).map(|c| c.svc) {
            self.limits.refund(svc, tuple.src_ip().into());
        }
        self.renew(l3, pkt, v, id, tuple, now, (Some(failed), rx_port))
    }

    /// Retires connection `id` and makes its client's packet a new connection; `retry_of`: the
    /// real server whose handshake failed, avoided (`syn_retry`); `rx_port`: the port the packet
    /// came in on (`new_conn`).
    #[allow(clippy::too_many_arguments)]
    fn renew<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        pkt: B,
        v: &Ipv4In,
        id: ConnId,
        tuple: Tuple,
        now: Ticks,
        (retry_of, rx_port): (Option<u16>, u16),
    ) -> Verdict<B> {
        self.retire(id, now);
        let si = self.services.find(tuple.dst_ip(), tuple.dport, tuple.proto);
        self.new_conn(l3, pkt, v, tuple, si, now, retry_of, Some(rx_port))
    }

    /// A client retransmits the SYN of connection `id`, which its real server has not answered:
    /// once `syn_unanswered_ms` has passed since the first, that is a failed attempt, counted for
    /// the server (passive detection). The server to avoid if the connection is to be retried
    /// (`syn_retry`, not retried before); `None` otherwise.
    fn syn_failed(&mut self, id: ConnId, now: Ticks) -> Option<u16> {
        let threshold = self.syn_unanswered_ms;
        let c = self.table.get_mut(id)?;
        if !(c.mode() == mode::FULLNAT || c.mode() == mode::NAT) || c.rs == NO_DEST {
            return None;
        }
        if !c.flags().contains(FAILED) {
            // `user` holds the connection's creation time until the client's first ACK.
            if (now.0 as u32).wrapping_sub(c.user) < threshold {
                return None;
            }
            c.set_flags(FAILED);
            if let Some(t) = traffic_at(&mut self.traffic, &self.traffic_base, c.svc, c.rs) {
                t.syn_failed(false);
            }
        }
        retries(&self.services, c).then_some(c.rs)
    }

    /// The real server's side of a handshake (a reply packet of connection `id` while the
    /// client's SYN is unanswered), for passive detection: a SYN-ACK ends the server's streak of
    /// failures, a RST is a refusal. Whether to hold the RST back from the client, whose
    /// retransmission will then go to another server (`syn_retry`).
    fn server_handshake(&mut self, id: ConnId, flags: TcpFlags) -> bool {
        let Some(c) = self.table.get_mut(id) else {
            return false;
        };
        if c.state() != State::SynRecv
            || c.user2 != 0
            || !(c.mode() == mode::FULLNAT || c.mode() == mode::NAT)
        {
            return false;
        }
        let Some(t) = traffic_at(&mut self.traffic, &self.traffic_base, c.svc, c.rs) else {
            return false;
        };
        if flags.rst() {
            if c.flags().contains(FAILED) {
                return false;
            }
            c.set_flags(FAILED);
            t.syn_failed(true);
            return retries(&self.services, c);
        }
        if flags.syn() && flags.ack() {
            t.syn_answered += 1;
            t.fail_streak = 0;
        }
        false
    }

    /// Ends connection `id` for its client: a FullNAT entry is parked (see [`PARKED`]) under a
    /// client tuple no packet carries (LIP:lport -> RIP:rport, the forward tuple as the real server
    /// sees it: unique since the reply tuple is), anything else is removed.
    fn retire(&mut self, id: ConnId, now: Ticks) {
        let Some(c) = self.table.get_current(id).copied() else {
            return;
        };
        let reply = match (c.mode(), c.reply()) {
            (mode::FULLNAT, Some(r)) => r,
            _ => return self.drop_connection(id),
        };
        let parked = Tuple::new(
            reply.dst_ip(),
            reply.dport,
            reply.src_ip(),
            reply.sport,
            reply.proto,
        );
        if self.table.park(id, parked, now).is_err() {
            return self.drop_connection(id);
        }
        // Not counted in `conns_expired` here: the entry stays in the table until its timer
        // ends it, and `tick` counts it then, once (as IPv6's `ipv6_conns_expired` does).
        release(&self.services, &mut self.pools, &mut self.limits, &c);
        if let Some(e) = self.table.get_mut(id) {
            e.svc = NO_DEST;
            e.rs = NO_DEST;
            e.set_flags(PARKED);
        }
    }

    /// A NAT reply (or ICMP error about one) to client CIP:cport that this worker does not know goes
    /// to the owner of the client's tuple.
    fn nat_not_mine<B>(&mut self, pkt: B, meta: &RxMeta, cip: Ipv4Addr, cport: u16) -> Verdict<B> {
        if !meta.from_peer {
            let w = nat::owner_of_client(cip, cport, self.layout.n_workers());
            if w != self.worker as usize {
                return self.hand_to(w, pkt, false);
            }
        }
        Verdict::Drop(Drop::NoConn.into(), pkt)
    }

    /// A reply (or ICMP error) for a local port this worker does not own goes to the owner.
    fn not_mine<B>(&mut self, pkt: B, meta: &RxMeta, lport: u16) -> Verdict<B> {
        if !meta.from_peer && self.layout.contains(lport) {
            let owner = self.layout.owner_of(lport);
            if owner != self.worker as usize {
                return self.hand_to(owner, pkt, false);
            }
        }
        Verdict::Drop(Drop::NoConn.into(), pkt)
    }

    /// Creates a connection for a client's first packet and forwards it. `retry_of`: the real
    /// server whose connection of this client failed (`syn_retry`): another one is picked if one
    /// may take it, and the new connection is not retried again. `rx_port`: the port the packet
    /// came in on, where an answer to it may go (`over_limit`).
    #[allow(clippy::too_many_arguments)]
    fn new_conn<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        pkt: B,
        v: &Ipv4In,
        client: Tuple,
        si: Option<u32>,
        now: Ticks,
        retry_of: Option<u16>,
        rx_port: Option<u16>,
    ) -> Verdict<B> {
        let ip = &v.ip;
        let f = ip.tcp_flags;
        let is_tcp = ip.protocol == IpProtocol::TCP;
        let proxy = match si {
            Some(i) if is_tcp && self.synproxy.is_ready() => {
                self.services.services[i as usize].synproxy
            }
            _ => synproxy::Mode::Off,
        };
        // An ACK to a proxied service may be a client's answer to our cookie (checked below, after
        // the access list).
        let cookie_ack =
            proxy != synproxy::Mode::Off && f.ack() && !f.syn() && !f.rst() && retry_of.is_none();
        // IPVS creates TCP connections on a SYN only; anything else without a connection is stray,
        // unless the service is sloppy (IPVS `sloppy_tcp`: any packet but a RST, or a SYN-ACK,
        // which only a server sends) and its real server turns out to be DR or TUN, below.
        let sloppy = is_tcp && (!f.syn() || f.ack()) && !cookie_ack;
        if sloppy
            && (f.rst()
                || f.syn()
                || !si.is_some_and(|i| self.services.services[i as usize].sloppy_tcp))
        {
            return Verdict::Drop(Drop::NoConn.into(), pkt);
        }
        // `si`: the service of VIP:vport, looked up by the caller.
        let Some(si) = si else {
            return Verdict::Drop(Drop::NoService.into(), pkt);
        };
        // Who may connect: decided before any state exists (`acl`).
        if !self.acl_allows(si, IpAddr::V4(ip.src)) {
            return Verdict::Drop(Drop::AclDenied.into(), pkt);
        }
        // The SYN proxy: a SYN is answered with a cookie and leaves no state; an ACK that proves
        // one opens the connection.
        let mut proxied = None;
        if cookie_ack {
            match self.check_cookie(&pkt, v, &client, l3.now_ms) {
                Some(syn) => proxied = Some(syn),
                None => return Verdict::Drop(Drop::SynProxyBadCookie.into(), pkt),
            }
        } else if proxy != synproxy::Mode::Off
            && f.syn()
            && !f.ack()
            && retry_of.is_none()
            && self
                .synproxy
                .answers(proxy, self.table.half_open(), l3.now_ms)
        {
            return self.answer_syn(l3, pkt, v, &client);
        }
        // Per-client limits, also before any state exists (`limit`). A retry (`syn_retry`) got
        // back the token its first attempt took (`retry`, `Limiter::refund`).
        if let Err(why) = self.limits.check(si as usize, ip.src.into(), l3.now_ms) {
            let syn = !sloppy || proxied.is_some();
            return self.over_limit(l3, pkt, v, (si, why), syn, rx_port);
        }
        // At the bound on half-open connections, a SYN takes the place of an older half-open one
        // (under a SYN flood, one from a spoofed source); none found, it is refused. Established
        // connections are never taken.
        if ip.protocol == IpProtocol::TCP
            && !sloppy
            && self.table.half_open() >= self.max_half_open as usize
            && make_room(
                &mut self.table,
                &self.services,
                &mut self.pools,
                &mut self.limits,
                &mut self.stats,
                Room::HalfOpen,
            )
            .is_none()
        {
            return Verdict::Drop(Drop::HalfOpenLimit.into(), pkt);
        }
        // Borrowed, not cloned: an Arc clone here would bounce the snapshot's reference count
        // between workers on every new connection.
        let services = &self.services;
        let vs = &services.services[si as usize];
        let key = ClientKey {
            ip: u32::from(ip.src),
            addr: u128::from(u32::from(ip.src)),
            port: ip.src_port,
            dst: u32::from(ip.dst),
        };
        let sched = &mut self.sched[si as usize];
        let other = retry_of.and_then(|not| {
            let other = sched.pick_other(&vs.svc, &*vs.svc, key, l3.now_ms, usize::from(not));
            if other.is_none() {
                self.stats.syn_retry_no_other += 1;
            }
            other
        });
        let Some(ri) = other.or_else(|| sched.pick(&vs.svc, &*vs.svc, key, l3.now_ms)) else {
            return Verdict::Drop(Drop::NoRealServer.into(), pkt);
        };
        let rs = &vs.svc.reals()[ri];
        // A mid-flow packet can only continue a connection the real server already has where the
        // packet reaches it unchanged: DR and TUN. FullNAT and NAT servers know another tuple.
        if sloppy && !matches!(rs.fwd, FwdMode::Dr | FwdMode::Tun) {
            return Verdict::Drop(Drop::NoConn.into(), pkt);
        }
        // Config refuses the proxy with DR or TUN servers; a snapshot could still pair them.
        if proxied.is_some() && matches!(rs.fwd, FwdMode::Dr | FwdMode::Tun) {
            return Verdict::Drop(Drop::SynProxyMode.into(), pkt);
        }
        let (reply_t, mode_id) = match rs.fwd {
            FwdMode::FullNat => {
                let proto = client.proto;
                let mut evicted = 0;
                // A local port an eviction freed (LIP, lport): tried first.
                let mut freed: Option<(Ipv4Addr, u16)> = None;
                let reply = loop {
                    let Some(pool) = self.pools[si as usize].as_mut() else {
                        return Verdict::Drop(Drop::PortsExhausted.into(), pkt);
                    };
                    let table = &self.table;
                    let in_use = |t: &crate::laddr::ReplyTuple| {
                        table
                            .lookup(&Tuple::new(
                                t.src_ip, t.src_port, t.dst_ip, t.dst_port, proto,
                            ))
                            .is_some()
                    };
                    // The freed port, else a search from the cursor (which the last one moved
                    // on: it may find a port where that one found none).
                    let found = freed
                        .and_then(|(lip, lport)| {
                            pool.take_freed(lip, lport, rs.v4(), rs.port, in_use)
                        })
                        .or_else(|| pool.allocate(rs.v4(), rs.port, in_use).ok());
                    if let Some(r) = found {
                        break r;
                    }
                    // Every local port held, mostly by connections in TIME_WAIT when `capacity`
                    // is above the ports (120 s of them): the oldest gives way, as in a full
                    // table (`make_room`), and its port is taken if this service's pool could
                    // hand it out for this real server (the search from the pool's cursor, which
                    // has moved past the ports it found taken, would come to it last).
                    evicted += 1;
                    let gone = room_for_port(evicted).and_then(|room| {
                        make_room(
                            &mut self.table,
                            services,
                            &mut self.pools,
                            &mut self.limits,
                            &mut self.stats,
                            room,
                        )
                    });
                    let Some(c) = gone else {
                        self.stats.ports_exhausted += 1;
                        return Verdict::Drop(Drop::PortsExhausted.into(), pkt);
                    };
                    // Another service's too: a LIP may serve several (`take_freed` checks it
                    // is one of this service's).
                    freed = c
                        .reply()
                        .filter(|_| c.mode() == mode::FULLNAT)
                        .map(|r| (r.dst_ip(), r.dport));
                };
                (
                    Some(Tuple::new(
                        reply.src_ip,
                        reply.src_port,
                        reply.dst_ip,
                        reply.dst_port,
                        proto,
                    )),
                    mode::FULLNAT,
                )
            }
            FwdMode::Nat => (Some(nat::reply_tuple(&client, rs.v4(), rs.port)), mode::NAT),
            // The real server's port is not used: DR and TUN cannot map ports (the packet is not
            // rewritten), as in IPVS.
            FwdMode::Dr => (None, mode::DR),
            FwdMode::Tun => (None, mode::TUN),
        };
        // The client tuple just missed in `handle`, and a FullNAT reply tuple was offered to the port
        // allocator's `in_use`: neither needs probing again. A NAT reply tuple was not checked.
        let checked = mode_id == mode::FULLNAT || reply_t.is_none();
        let insert = move |table: &mut ConnTable| match checked {
            true => table.insert_known_absent(client, reply_t, si as u16, ri as u16, mode_id, now),
            false => table.insert(client, reply_t, si as u16, ri as u16, mode_id, now),
        };
        let mut inserted = insert(&mut self.table);
        if inserted == Err(InsertError::TableFull)
            && make_room(
                &mut self.table,
                services,
                &mut self.pools,
                &mut self.limits,
                &mut self.stats,
                Room::Table,
            )
            .is_some()
        {
            inserted = insert(&mut self.table);
        }
        let id = match inserted {
            Ok(id) => id,
            Err(e) => {
                if let (Some(r), mode::FULLNAT) = (reply_t, mode_id) {
                    if let Some(Some(pool)) = self.pools.get_mut(si as usize) {
                        pool.free(r.dst_ip(), r.dport);
                    }
                }
                return match e {
                    InsertError::TableFull => {
                        self.stats.table_full += 1;
                        Verdict::Drop(Drop::ConnTableFull.into(), pkt)
                    }
                    InsertError::Duplicate => Verdict::Drop(Drop::NoConn.into(), pkt),
                };
            }
        };
        if let Some(c) = self.table.get_mut(id) {
            if reply_t.is_none() {
                // DR and TUN: the real server's address lives in the entry (see the module docs).
                c.user = u32::from(rs.v4());
            } else {
                // FullNAT and NAT: the creation time, until the client's first ACK replaces it
                // (`syn_failed` measures how long the server has been silent).
                c.user = now.0 as u32;
            }
            if retry_of.is_some() {
                c.set_flags(RETRIED);
            }
        }
        if other.is_some() {
            self.stats.syn_retried += 1;
        }
        if sloppy {
            self.stats.sloppy_created += 1;
        }
        self.stats.created += 1;
        self.limits.opened(si as u16, ip.src.into(), l3.now_ms);
        if let Some(t) = traffic_at(&mut self.traffic, &self.traffic_base, si as u16, ri as u16) {
            t.conns += 1;
        }
        if let Some(s) = vs.svc.stats(ri) {
            s.on_conn_new();
        }
        if let Some(syn) = proxied {
            return self.open_proxied(l3, pkt, v, id, syn, now);
        }
        self.forward(l3, pkt, v, id, Dir::Original, now)
    }

    /// Whether this packet is a server's segment without SYN, FIN or RST (a bare ACK) to a FullNAT
    /// connection in SYN_RECV, which then stays there (`forward`) where IPVS's state table takes
    /// it to ESTABLISHED. The client's ACK that ends the handshake passes the gateway before the
    /// server sees it, so such a segment never means that the handshake is over. It is one of two
    /// answers about an earlier connection on the same LIP:lport.
    ///
    /// - **Before the server's SYN-ACK**: its refusal of the SYN, from a TIME_WAIT of that
    ///   connection, where RFC 7323's PAWS refused the SYN (the client's timestamps are not that
    ///   connection's: Linux randomizes them per connection), or from a connection of its own
    ///   the gateway forgot (RFC 5961's challenge ACK). The client answers that ACK with a RST
    ///   at its ACK number (RFC 9293 3.10.7.3, SYN-SENT), which ends the server's socket, and
    ///   Linux sends its SYN again at once (`tcp_rcv_synsent_state_process`: at its first
    ///   retransmission, after `TCP_TIMEOUT_MIN`). From ESTABLISHED that RST closed the
    ///   connection, which scheduled the SYN afresh on another LIP:lport, one the server may
    ///   hold in TIME_WAIT too, and the client's next try came a second later: at a high
    ///   connection rate, with most tuples in the servers' TIME_WAIT (60 s on Linux), many
    ///   connections lost seconds so. In SYN_RECV the RST changes nothing (IPVS's table) and the
    ///   SYN goes to the LIP:lport the RST just freed. Counted (`server_time_wait`): local
    ///   addresses too few for the connection rate.
    /// - **After a SYN-ACK**: a half-open connection the gateway let go (evicted under a SYN
    ///   flood, `max_half_open`) whose LIP:lport went to the next SYN at once, while the server
    ///   still held the old handshake. The server sends that handshake's SYN-ACK again, which
    ///   the gateway takes for this connection's, and answers this connection's SYN, out of the
    ///   old one's window, with an ACK (RFC 9293 3.10.7.4). ESTABLISHED, such a connection held
    ///   its local port and counted as an active connection of its server for the 15 minutes of
    ///   that state's timeout: a 5 s `hping3 --flood --rand-source` in the lab left 937 of them.
    ///   Counted (`server_stale_answer`).
    fn keeps_syn_recv(&mut self, id: ConnId, f: TcpFlags, now: Ticks) -> bool {
        if !f.ack() || f.syn() || f.rst() || f.fin() {
            return false;
        }
        let Some(c) = self.table.get_mut(id) else {
            return false;
        };
        if c.mode() != mode::FULLNAT || c.state() != State::SynRecv {
            return false;
        }
        // `user2` 0: the server has not answered the SYN with a SYN-ACK.
        if c.user2 != 0 {
            self.stats.server_stale_answer += 1;
            return true;
        }
        // The server is there: the wait for its SYN-ACK (`syn_failed`, which `user` times
        // until then) starts again with the client's second SYN.
        c.user = now.0 as u32;
        self.stats.server_time_wait += 1;
        true
    }

    /// A TCP connection entering TIME_WAIT or CLOSE stops counting against its client's limit of
    /// open connections, and one leaving them counts again (`counted_open`).
    fn limit_on_state(&mut self, id: ConnId, old: State, new: State, now: Ticks) {
        if ended(old) == ended(new) {
            return;
        }
        let Some(c) = self.table.get_current(id) else {
            return;
        };
        let (svc, client) = (c.svc, c.client().src_ip().into());
        match ended(new) {
            true => self.limits.gone(svc, client),
            false => self.limits.opened(svc, client, now.0),
        }
    }

    /// A new connection over its client's limit (`limit`), refused for `why`: dropped or, with
    /// `action = "rst"` and a TCP `syn` (a SYN, or the ACK that proved a SYN-proxy cookie: with
    /// the proxy, limits count clients that proved their address), answered with a RST from
    /// VIP:vport as by a host with nothing listening (ACK of the SYN, so the client takes it).
    /// The RST goes to the client's next hop or, when this worker has not resolved it, back to
    /// the MAC the SYN came from if the SYN came in on `rx_port`, the route's port.
    #[cold]
    fn over_limit<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        pkt: B,
        v: &Ipv4In,
        (si, why): (u32, Refused),
        syn: bool,
        rx_port: Option<u16>,
    ) -> Verdict<B> {
        let ip = &v.ip;
        let rst = self.limits.limit(si as usize).is_some_and(|l| l.rst);
        if rst && syn && ip.protocol == IpProtocol::TCP {
            let t = TcpPacket::new_unchecked(&pkt.data()[ip.l4_off..]);
            let (from, to) = ((ip.dst, ip.dst_port), (ip.src, ip.src_port));
            // A SYN gets RST+ACK acknowledging it; a SYN proxy's client, whose ACK proved its
            // cookie, believes itself connected: a RST in its window (RFC 9293 3.10.7.4).
            let (seq, ack) = match ip.tcp_flags.syn() {
                true => (0, Some(t.seq().wrapping_add(1))),
                false => (t.ack_number(), None),
            };
            let src_mac = crate::wire::EthernetFrame::new_unchecked(pkt.data()).src();
            match send_rst(l3, from, to, seq, ack, rx_port.map(|p| (p, src_mac))) {
                true => self.stats.rst_sent += 1,
                false => self.stats.rst_unsent += 1,
            }
        }
        let reason = match why {
            Refused::Rate => Drop::LimitRate,
            Refused::Conns => Drop::LimitConns,
        };
        Verdict::Drop(reason.into(), pkt)
    }

    /// Rewrites a packet of connection `id` and sends it on.
    #[inline(never)]
    fn forward<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        pkt: B,
        v: &Ipv4In,
        id: ConnId,
        dir: Dir,
        now: Ticks,
    ) -> Verdict<B> {
        self.forward_body(l3, pkt, v, id, dir, now)
    }

    /// `forward`, writing the verdict into `out`. Returned through the stack, a verdict is
    /// stored field by field (tag, port, frame) and read back whole by wider loads, which must
    /// wait for those stores to reach the cache; written into the burst's own slot, it is read
    /// only when the burst's verdicts are carried out. The body is `forward`'s, a second copy.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn forward_into<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        pkt: B,
        v: &Ipv4In,
        id: ConnId,
        dir: Dir,
        now: Ticks,
        out: &mut Option<Verdict<B>>,
    ) {
        *out = Some(self.forward_body(l3, pkt, v, id, dir, now));
    }

    /// The body of `forward` and `forward_into`.
    #[inline(always)]
    fn forward_body<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        mut pkt: B,
        v: &Ipv4In,
        id: ConnId,
        dir: Dir,
        now: Ticks,
    ) -> Verdict<B> {
        let ip = &v.ip;
        let is_tcp = ip.protocol == IpProtocol::TCP;
        let mut proxied = false;
        let found = self.table.get_current(id).map(|c| {
            (
                c.ext() & PROXIED != 0,
                c.flags().contains(PARKED),
                c.svc,
                c.rs,
            )
        });
        if let Some((is_proxied, parked, svc, rs)) = found {
            proxied = is_proxied;
            if parked {
                // A late packet of a connection its client has replaced.
                return Verdict::Drop(Drop::NoConn.into(), pkt);
            }
            if rs == NO_DEST && self.expire_nodest(svc) {
                // IPVS expires the entry and schedules the packet afresh; only a UDP datagram (or a
                // SYN, handled before) can start a connection.
                let client = self
                    .table
                    .get_current(id)
                    .map(|c| c.client())
                    .unwrap_or_default();
                self.drop_connection(id);
                if !is_tcp && dir == Dir::Original {
                    self.stats.resched_udp_removed += 1;
                    let si = self
                        .services
                        .find(client.dst_ip(), client.dport, client.proto);
                    return self.new_conn(l3, pkt, v, client, si, now, None, None);
                }
                return Verdict::Drop(Drop::NoRealServer.into(), pkt);
            }
        }
        if proxied && self.synproxy.get(id.index()).is_some_and(|p| p.pending) {
            match self.proxy_pending(l3, pkt, v, id, dir, now) {
                Ok(verdict) => return verdict,
                Err(p) => pkt = p,
            }
        }
        let keep_state = is_tcp && dir == Dir::Reply && self.keeps_syn_recv(id, ip.tcp_flags, now);
        if is_tcp && dir == Dir::Reply && self.server_handshake(id, ip.tcp_flags) {
            // The server is there: the client's SYN that the held refusal brings does not
            // doubt its neighbour (`unanswered_server`).
            l3.confirm_neighbour_at_once(ip.src, pkt.data());
            return Verdict::Drop(Drop::RstHeldForRetry.into(), pkt);
        }
        // A packet of a tracked connection confirms the neighbour it came from (NUD); the server's
        // bare ACK to a SYN at once, so that the client's next SYN does not doubt it
        // (`unanswered_server`).
        match keep_state {
            true => l3.confirm_neighbour_at_once(ip.src, pkt.data()),
            false => l3.confirm_neighbour(ip.src, &pkt),
        }
        let change = match keep_state {
            true => StateChange {
                old: State::SynRecv,
                new: State::SynRecv,
            },
            false => self.table.on_packet(id, dir, ip.tcp_flags.bits(), now),
        };
        if is_tcp && change.changed() {
            self.limit_on_state(id, change.old, change.new, now);
        }
        if self.sync_log.is_some() {
            self.sync_note(id, change.old, now);
        }
        let services = &self.services;
        let Some(c) = self.table.get_mut(id) else {
            return Verdict::Drop(Drop::NoConn.into(), pkt);
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
        if let Some(t) = traffic_at(&mut self.traffic, &self.traffic_base, c.svc, c.rs) {
            t.count(dir, ip.total_len);
        }
        let l3_off = v.l3_off;
        let l4_off = ip.l4_off;
        let client = c.client();
        // Drop Ethernet padding: the frame ends where the IP packet does.
        pkt.truncate(l3_off + ip.total_len as usize);
        if matches!(c.mode(), mode::DR | mode::TUN) {
            if is_tcp && c.user2 == 0 && ip.tcp_flags.syn() && !ip.tcp_flags.ack() {
                // The client's ISN plus one, which tells its retransmissions from a new
                // connection on the same port (`reuse_decision`): the server's SYN-ACK, which
                // tells it for FullNAT and NAT, never passes here.
                c.user2 = TcpPacket::new_unchecked(&pkt.data()[l4_off..])
                    .seq()
                    .wrapping_add(1);
            }
            let (tun, svc, rip) = (c.mode() == mode::TUN, c.svc, Ipv4Addr::from(c.user));
            // Logged for the backup as it becomes answered (the log skipped it above until now),
            // as if its state had changed: its refresh epoch may not have moved.
            if !is_tcp && super::client_datagram(&mut self.table, id) && self.sync_log.is_some() {
                self.sync_note(id, State::None, now);
            }
            return match tun {
                false => dr::forward(l3, pkt, rip),
                true => self.tun_out(l3, pkt, l3_off, svc, &client, rip),
            };
        }
        if is_tcp && ip.tcp_flags.ack() {
            let ack = TcpPacket::new_unchecked(&pkt.data()[l4_off..]).ack_number();
            match dir {
                // Until the server has answered, `user` holds the creation time (`syn_failed`,
                // `unanswered_server`, both of a connection in SYN_RECV): a client ACK before
                // then acknowledges nothing. Once the connection is established, `user` holds
                // the client's last ACK whether or not the server has answered (`user2` is 0 in
                // an entry a peer's sync or a restore made, until the server's first reply): the
                // RST sent to the client when it expires (`tick`) is then in its window, not at
                // the entry's creation time; and the hot path stores it without a test
                // (`forward_hot`: 2 instructions fewer a client's ACK, 1 in `perf/cost.sh`'s
                // `established-burst-net`, whose connections' `user2` is 0).
                Dir::Original if c.user2 == 0 && c.state() != State::Established => {}
                Dir::Original => c.user = ack,
                // Not an answer to this connection's SYN (`keeps_syn_recv`).
                Dir::Reply if keep_state => {}
                Dir::Reply => c.user2 = ack,
            }
        }
        let Some(reply) = c.reply() else {
            return Verdict::Drop(Drop::NoConn.into(), pkt);
        };
        let (src, dst) = match (c.mode(), dir) {
            // CIP:cport -> VIP:vport  becomes  CIP:cport -> RIP:rport, and back.
            (mode::NAT, _) => nat::rewrite_endpoints(&client, &reply, dir),
            // CIP:cport -> VIP:vport  becomes  LIP:lport -> RIP:rport
            (_, Dir::Original) => ((reply.dst_ip(), reply.dport), (reply.src_ip(), reply.sport)),
            // RIP:rport -> LIP:lport  becomes  VIP:vport -> CIP:cport
            (_, Dir::Reply) => (
                (client.dst_ip(), client.dport),
                (client.src_ip(), client.sport),
            ),
        };
        let f = ip.tcp_flags;
        // The service is read only for the packets that may carry TOA: a SYN, and the client's
        // ACKs until the first has carried it (an established connection's packets skip this).
        let toa_due = f.syn() || (f.ack() && !c.flags().contains(ConnFlags::TOA_DONE));
        if c.mode() == mode::FULLNAT && dir == Dir::Original && is_tcp && toa_due {
            let toa = services
                .services
                .get(c.svc as usize)
                .is_some_and(|vs| vs.toa);
            if toa && f.syn() {
                self.add_toa(&mut pkt, l3_off, client, true);
            } else if f.ack() && !f.rst() && !c.flags().contains(ConnFlags::TOA_DONE) {
                // Also on the client's first ACK: the classic toa kernel module reads the option from
                // the packet that completes the handshake (as DPVS puts it there), newer ones from
                // the SYN. Only if the segment still fits the ports' MTU with the option. Without
                // TOA the flag is set too, so later packets skip the service lookup.
                c.set_flags(ConnFlags::TOA_DONE);
                let fits =
                    usize::from(ip.total_len) + usize::from(TOA_LEN) <= usize::from(self.mtu);
                if toa && fits {
                    self.add_toa(&mut pkt, l3_off, client, false);
                } else if toa {
                    self.stats.toa_skipped += 1;
                }
            }
        }
        rewrite_l4(pkt.data_mut(), l3_off, l4_off, src, dst);
        // Only a proxied connection reads the proxy's side array (one more cache line).
        if proxied {
            let adj = self.synproxy.get(id.index()).filter(|p| !p.pending);
            if let (Some(adj), Some(seg)) = (adj.map(|p| p.adj), pkt.data_mut().get_mut(l4_off..)) {
                match dir {
                    Dir::Original => synproxy::to_server(seg, &adj),
                    Dir::Reply => synproxy::to_client(seg, &adj),
                }
            }
        }
        l3.route_out(pkt, dst.0)
    }

    /// Wraps a TUN connection's packet (trimmed) for real server `rip` and sends it on.
    fn tun_out<B: PacketBuf>(
        &mut self,
        l3: &mut L3<B>,
        pkt: B,
        l3_off: usize,
        svc: u16,
        client: &Tuple,
        rip: Ipv4Addr,
    ) -> Verdict<B> {
        let lips = self
            .services
            .services
            .get(svc as usize)
            .map_or(&[][..], |vs| &vs.lips[..]);
        let Some(src) = tun::outer_source(l3, lips, client, rip) else {
            return Verdict::Drop(Drop::NoRoute.into(), pkt);
        };
        let (verdict, outcome) =
            tun::encapsulate(l3, pkt, l3_off, src, rip, client.dst_ip(), self.mtu);
        match outcome {
            tun::Outcome::FragNeeded { icmp_sent } => {
                self.stats.tun_too_big += 1;
                self.stats.frag_needed += u64::from(icmp_sent);
            }
            tun::Outcome::TooBig => self.stats.tun_too_big += 1,
            tun::Outcome::Sent | tun::Outcome::NoRoom => {}
        }
        verdict
    }

    /// Whether connections of service `svc` whose real server was removed are dropped at once (a
    /// removed service drops them too: nothing schedules for it any more).
    pub(crate) fn expire_nodest(&self, svc: u16) -> bool {
        self.services
            .services
            .get(svc as usize)
            .is_none_or(|vs| vs.svc.expire_nodest_conn())
    }

    /// Tells connection `c`'s real server and local-address pool that it is gone, and counts it.
    fn release_conn(&mut self, c: &crate::conn::Conn) {
        release(&self.services, &mut self.pools, &mut self.limits, c);
        self.stats.expired += 1;
    }

    /// Removes a connection now, returning its local port and telling its real server's counters.
    fn drop_connection(&mut self, id: ConnId) {
        if let Some(c) = self.table.remove(id) {
            self.release_conn(&c);
        }
    }

    /// Puts the client's address into the segment as TCP option 254 (and lowers a SYN's MSS by its
    /// length), so the real server learns who the client is (LVS FullNAT / DPVS TOA).
    fn add_toa<B: PacketBuf>(&mut self, pkt: &mut B, l3_off: usize, client: Tuple, syn: bool) {
        let len = pkt.len();
        match tcp::insert_toa(
            pkt.room_mut(),
            len,
            l3_off,
            client.sport,
            client.src_ip(),
            syn,
        ) {
            Ok(n) => {
                pkt.set_len(n);
                self.stats.toa_added += 1;
            }
            Err(_) => self.stats.toa_skipped += 1,
        }
    }

    /// Expires idle connections: frees their local ports, updates the real servers' counts, and
    /// resets both sides of an expired ESTABLISHED TCP connection.
    pub fn tick<B: PacketBuf>(&mut self, l3: &mut L3<B>, now_ms: u64) {
        let Forwarder {
            table,
            services,
            pools,
            stats,
            traffic,
            traffic_base,
            limits,
            ..
        } = self;
        let n = table.expire(Ticks(now_ms), EXPIRE_BUDGET, |_id, c, _why| {
            // A client's SYN its server never answered (the client gave up): a failed attempt.
            if c.proto() == PROTO_TCP
                && c.state() == State::SynRecv
                && c.user2 == 0
                && (c.mode() == mode::FULLNAT || c.mode() == mode::NAT)
                && !c.flags().contains(FAILED)
            {
                if let Some(t) = traffic_at(traffic, traffic_base, c.svc, c.rs) {
                    t.syn_failed(false);
                }
            }
            release(services, pools, limits, c);
            let Some(reply) = c.reply() else { return };
            if c.proto() == PROTO_TCP && c.state() == State::Established {
                let client = c.client();
                // To the client, from the VIP: in the client's window (its last ACK).
                let a = send_rst(
                    l3,
                    (client.dst_ip(), client.dport),
                    (client.src_ip(), client.sport),
                    c.user,
                    None,
                    None,
                );
                // To the server, from the LIP.
                let b = send_rst(
                    l3,
                    (reply.dst_ip(), reply.dport),
                    (reply.src_ip(), reply.sport),
                    c.user2,
                    None,
                    None,
                );
                for ok in [a, b] {
                    if ok {
                        stats.rst_sent += 1;
                    } else {
                        stats.rst_unsent += 1;
                    }
                }
            }
        });
        stats.expired += n as u64;
        stats.conns = table.len() as u64;
        stats.limit_untracked = limits.untracked;
    }
}

/// Whether connection `c` counts against its client's limit of open connections: not a TCP
/// connection in TIME_WAIT or CLOSE, which has ended for its client (as Linux's `connlimit` skips
/// closed conntrack entries); a client of short connections would otherwise be held to its limit
/// for the whole TIME_WAIT.
pub(crate) fn counted_open<T: crate::conn::ConnKey>(c: &crate::conn::ConnOf<T>) -> bool {
    c.proto() != crate::conn::PROTO_TCP || !ended(c.state())
}

/// TIME_WAIT and CLOSE: the TCP connection has ended for its client.
pub(crate) fn ended(s: State) -> bool {
    matches!(s, State::TimeWait | State::Close)
}

fn svc_id(vs: &crate::forward::VirtualService) -> SvcId {
    let c = vs.svc.config();
    (c.proto.number(), c.vip, c.vport)
}

/// What a new connection needs room from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Room {
    /// The bound on half-open connections: an older half-open one goes (Linux conntrack's early
    /// drop).
    HalfOpen,
    /// A full table: the oldest of the connections that entered TIME_WAIT, closed on both
    /// sides (Linux's `tcp_max_tw_buckets`), and the UDP flows their servers never answered
    /// (conntrack's early drop of flows not ASSURED) goes, else a half-open one. A handshake in
    /// progress may still become a connection, a closed one will not.
    Table,
    /// Out of local ports, past [`PORT_EVICTIONS`]: the oldest connection in TIME_WAIT, and
    /// nothing else.
    TimeWait,
}

/// Connections a new FullNAT connection that finds no free local port evicts at most as a full
/// table would (each the oldest in TIME_WAIT, else the oldest unanswered UDP flow, else the
/// oldest half-open one) until one frees a port of its service's: a bound on the work one SYN
/// causes, and on the handshakes it may end.
pub(crate) const PORT_EVICTIONS: u32 = 4;

/// Evictions in all, past [`PORT_EVICTIONS`] of connections in TIME_WAIT only, which carry no
/// data. A TIME_WAIT entry toward another real server frees no port for this one (each server
/// has the LIPs' ports to itself), and when one of two servers dies under short connections,
/// the oldest in TIME_WAIT are the dead one's about half the time: with 4 evictions, 85 to 172
/// SYNs in a lab run of about 430k were refused (`ports_exhausted`; perf/RESULTS.md, "Out of
/// ports when a real server dies").
pub(crate) const PORT_EVICTIONS_TIME_WAIT: u32 = 16;

/// What the `evicted`-th eviction (from 1) of a new FullNAT connection out of local ports may
/// take, if any.
pub(crate) fn room_for_port(evicted: u32) -> Option<Room> {
    match evicted {
        n if n <= PORT_EVICTIONS => Some(Room::Table),
        n if n <= PORT_EVICTIONS_TIME_WAIT => Some(Room::TimeWait),
        _ => None,
    }
}

/// Removes one connection to make room for a new one (`Room`), returning its local port and
/// telling its real server; counted in `evicted_time_wait`, `evicted_udp` or `evicted_embryonic`,
/// and in `conns_expired`. The
/// connection removed, if one was found. (A function of the fields, not a method: the caller holds
/// the service snapshot borrowed.)
fn make_room(
    table: &mut ConnTable,
    services: &ServiceTable,
    pools: &mut [Option<LaddrPool>],
    limits: &mut Limiter,
    stats: &mut FwdStats,
    room: Room,
) -> Option<crate::conn::Conn> {
    let taken = match room {
        Room::Table => table.evict_closed().map(|c| {
            let count = match c.proto() {
                crate::conn::PROTO_TCP => &mut stats.evicted_time_wait,
                _ => &mut stats.evicted_udp,
            };
            (c, count)
        }),
        Room::TimeWait => table
            .evict_time_wait()
            .map(|c| (c, &mut stats.evicted_time_wait)),
        Room::HalfOpen => None,
    }
    .or_else(|| {
        (room != Room::TimeWait)
            .then(|| table.evict_embryonic())
            .flatten()
            .map(|c| (c, &mut stats.evicted_embryonic))
    });
    let (c, count) = taken?;
    *count += 1;
    // It left the table: `conns_expired` counts every connection that does, as IPv6's.
    stats.expired += 1;
    release(services, pools, limits, &c);
    Some(c)
}

/// Tells a connection's real server (active/inactive counts), its service's local-address pool
/// (its port) and its client's limit (open connections) that it is gone. Parked entries and
/// connections of removed services or servers have `NO_DEST` indices and touch nothing. Every
/// connection passes here exactly once with its service's index (a parked one again at expiry,
/// with `NO_DEST`): that keeps the limits' open counts exact.
fn release(
    services: &ServiceTable,
    pools: &mut [Option<LaddrPool>],
    limits: &mut Limiter,
    c: &crate::conn::Conn,
) {
    // `NO_DEST` names no service: nothing to count down.
    if counted_open(c) {
        limits.gone(c.svc, c.client().src_ip().into());
    }
    if let Some(s) = services
        .services
        .get(c.svc as usize)
        .and_then(|vs| vs.svc.stats(c.rs as usize))
        .filter(|_| c.rs != NO_DEST)
    {
        s.on_conn_gone(c.is_active());
    }
    if let (Some(r), mode::FULLNAT) = (c.reply(), c.mode()) {
        if let Some(Some(p)) = pools.get_mut(c.svc as usize) {
            p.free(r.dst_ip(), r.dport);
        }
    }
}

/// Writes `seg` (an IPv4 packet with `payload` bytes of payload already in place) over the frame
/// from `l3_off`, into its tailroom if it grows; the IPv4 length written. A frame shorter than the
/// Ethernet minimum is padded with zeros.
fn write_in_place<B: PacketBuf>(
    pkt: &mut B,
    l3_off: usize,
    seg: &synproxy::Segment,
    payload: usize,
) -> Option<usize> {
    let room = pkt.room_mut();
    let len = seg.write(room.get_mut(l3_off..)?, payload)?;
    let min = crate::wire::ethernet::MIN_FRAME_LEN;
    if let Some(pad) = room.get_mut(l3_off + len..min) {
        pad.fill(0);
    }
    Some(len)
}

/// Generates a TCP RST from `src` to `dst` with sequence number `seq` (and ACK set, acknowledging
/// `ack`, when given), if the next hop's MAC is known (`came`: as `L3::generate_ipv4`'s).
fn send_rst<B: PacketBuf>(
    l3: &mut L3<B>,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    seq: u32,
    ack: Option<u32>,
    came: Option<(u16, crate::wire::MacAddr)>,
) -> bool {
    l3.generate_ipv4(dst.0, came, |buf| {
        let len = ipv4::HEADER_LEN + tcp::HEADER_LEN;
        let repr = Ipv4Repr {
            src: src.0,
            dst: dst.0,
            protocol: IpProtocol::TCP,
            payload_len: tcp::HEADER_LEN as u16,
            ttl: Ipv4Repr::DEFAULT_TTL,
            ident: 0,
            dont_frag: true,
            dscp_ecn: 0,
        };
        repr.emit(buf).ok()?;
        let seg = buf.get_mut(ipv4::HEADER_LEN..len)?;
        seg.fill(0);
        let mut t = TcpPacket::new_unchecked(seg);
        t.set_src_port(src.1);
        t.set_dst_port(dst.1);
        t.set_seq(seq);
        t.set_data_offset(5);
        match ack {
            Some(a) => {
                t.set_ack_number(a);
                t.set_flags(TcpFlags(tcp_flags::RST | tcp_flags::ACK));
            }
            None => t.set_flags(TcpFlags(tcp_flags::RST)),
        }
        t.fill_checksum(src.0, dst.0);
        Some(len)
    })
}

#[cfg(test)]
mod tests;

//! The ARP neighbour table of one worker: RFC 826 resolution with Linux's neighbour unreachability
//! detection (NUD, RFC 4861 §7.3 applied to ARP as net/core/neighbour.c does; parameters of
//! Documentation/networking/ip-sysctl.rst, `neigh/default/*`).
//!
//! Each worker owns its table (share nothing, DESIGN.md decision 5). ARP replies reach only the worker
//! whose queue received them, so the worker that learns an address also hands a copy of the ARP frame to
//! every other worker, which learns from it without answering.
//!
//! States of an entry, as `ip neigh` shows them:
//!
//! | state | MAC used | leaves it |
//! |---|---|---|
//! | INCOMPLETE | none: packets wait (`max_pending`) | an ARP answer → REACHABLE; `mcast_solicit` broadcast requests `retrans_ms` apart unanswered → FAILED, waiting packets dropped (`neigh_unresolved`) |
//! | REACHABLE | yes | `reachable_time` (random in [base/2, 3·base/2) of `base_reachable_ms`) after the last confirmation → STALE |
//! | STALE | yes | the next packet sent → DELAY; unused for `timeout_s` → removed |
//! | DELAY | yes | a confirmation → REACHABLE; `delay_first_probe_ms` without one → PROBE |
//! | PROBE | yes | an answer or a confirmation → REACHABLE; `ucast_solicit` unicast requests to the cached MAC unanswered → FAILED |
//! | FAILED | none | the next packet starts INCOMPLETE again (broadcast); unused for `timeout_s` → removed |
//!
//! Confirmations (Linux's "forward progress") come from the datapath
//! ([`NeighTable::confirm`]): a packet of a tracked connection received from the neighbour's cached
//! MAC. A neighbour is made suspect ([`NeighTable::suspect`], REACHABLE/STALE/DELAY → PROBE at
//! once) when a client retransmits a SYN that the real server behind it never answered: a real
//! server whose MAC changed without a gratuitous ARP is then found again within a few seconds
//! instead of after `reachable_time` plus `delay_first_probe_ms`.
//!
//! Every ARP packet from a known address updates it (RFC 826 merge): a reply makes the entry
//! REACHABLE; a request or gratuitous ARP with another MAC makes it STALE with the new MAC (Linux's
//! override), so that it is verified by use. When the kernel twins come (DESIGN.md 13, 14), the
//! kernel's entry for the same address is a hint of the same weight as a gratuitous ARP: what the
//! datapath saw last wins.

use crate::wire::MacAddr;
use hashbrown::HashMap;
use std::net::Ipv4Addr;

#[derive(Clone, Copy, Debug)]
pub struct NeighConfig {
    /// STALE and FAILED entries unused this long are removed (Linux `gc_stale_time`).
    pub timeout_ms: u64,
    /// Interval between ARP requests of one resolution or probe (Linux `retrans_time_ms`).
    pub retry_ms: u64,
    pub max_pending: usize,
    pub capacity: usize,
    /// Linux `base_reachable_time_ms`: a confirmed entry stays REACHABLE a random time in
    /// [base/2, 3·base/2).
    pub base_reachable_ms: u64,
    /// Linux `delay_first_probe_time`: how long a used STALE entry waits for a confirmation before
    /// it is probed.
    pub delay_first_probe_ms: u64,
    /// Linux `ucast_solicit`: unicast probes of a PROBE entry before FAILED.
    pub ucast_solicit: u8,
    /// Linux `mcast_solicit`: broadcast requests of an INCOMPLETE entry before FAILED.
    pub mcast_solicit: u8,
    /// Packets held for all unresolved entries together (each also at most `max_pending`).
    pub max_held: usize,
}

impl Default for NeighConfig {
    fn default() -> Self {
        NeighConfig {
            timeout_ms: 300_000,
            retry_ms: 1000,
            max_pending: 64,
            capacity: 4096,
            base_reachable_ms: 30_000,
            delay_first_probe_ms: 5000,
            ucast_solicit: 3,
            mcast_solicit: 3,
            max_held: 256,
        }
    }
}

/// NUD state of an entry (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nud {
    Incomplete,
    Reachable,
    Stale,
    Delay,
    Probe,
    Failed,
}

impl Nud {
    /// The name `ip neigh` prints.
    pub fn name(self) -> &'static str {
        match self {
            Nud::Incomplete => "INCOMPLETE",
            Nud::Reachable => "REACHABLE",
            Nud::Stale => "STALE",
            Nud::Delay => "DELAY",
            Nud::Probe => "PROBE",
            Nud::Failed => "FAILED",
        }
    }
}

pub use crate::counters::NeighCounters;

struct Entry<B> {
    port: u16,
    /// The MAC in use (None in INCOMPLETE and FAILED).
    mac: Option<MacAddr>,
    state: Nud,
    /// When the entry last changed state or was confirmed (shown as its age).
    updated: u64,
    /// When a packet last used it (garbage collection of STALE and FAILED entries).
    used: u64,
    /// The state's deadline: end of REACHABLE or DELAY, next request of INCOMPLETE or PROBE.
    timer: u64,
    /// Requests sent in the current INCOMPLETE or PROBE round.
    probes: u8,
    pending: Vec<B>,
}

/// Holds `pkt` in an entry's `pending` queue unless the entry's bound (`max_pending`) or the
/// worker's (`max_held`) is reached; `request` says whether the caller must ask for the address.
fn hold<B>(
    c: &mut NeighCounters,
    held: &mut usize,
    cfg: &NeighConfig,
    pending: &mut Vec<B>,
    pkt: B,
    request: bool,
) -> Resolve<B> {
    if pending.len() >= cfg.max_pending {
        c.pending_full += 1;
        return Resolve::Dropped(pkt, NeighDrop::PendingFull);
    }
    if *held >= cfg.max_held {
        c.held_full += 1;
        return Resolve::Dropped(pkt, NeighDrop::HeldFull);
    }
    pending.push(pkt);
    *held += 1;
    Resolve::Queued { request }
}

/// What `resolve` decided.
pub enum Resolve<B> {
    /// Known: send now with this destination MAC.
    Mac(MacAddr, B),
    /// Held until the answer; if `request` the caller must send an ARP request for the address now.
    Queued { request: bool },
    /// Not held; the caller drops it with this reason (also counted here).
    Dropped(B, NeighDrop),
}

/// Requests one [`NeighTable::tick_requests`] sends at most.
pub const TICK_REQUESTS: usize = 16;

/// The requests of one tick: (port, address, unicast MAC for a probe).
pub struct Requests<A>([Option<(u16, A, Option<MacAddr>)>; TICK_REQUESTS]);

impl<A: Copy> Requests<A> {
    pub fn iter(&self) -> impl Iterator<Item = (u16, A, Option<MacAddr>)> + '_ {
        self.0.iter().map_while(|r| *r)
    }
}

/// Why `resolve` did not hold a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeighDrop {
    PendingFull,
    TableFull,
    /// The worker holds `max_held` packets already.
    HeldFull,
}

/// The table, by neighbour address: `Ipv4Addr` for ARP, `Ipv6Addr` for neighbour discovery
/// (RFC 4861 7.3 has the NUD states Linux implements for both).
pub struct NeighTable<B, A = Ipv4Addr> {
    cfg: NeighConfig,
    map: HashMap<A, Entry<B>>,
    pub counters: NeighCounters,
    /// Bumped whenever the MAC to use for an address appears, changes or goes, and when an entry
    /// becomes STALE (so the next packet passes through `resolve` and moves it to DELAY): caches of
    /// lookups compare it, or are emptied when it moves (`L3::follow_neigh`).
    generation: u64,
    /// xorshift state for the random reachable time.
    rng: u64,
    /// Packets held now, over every entry (bounded by `max_held`).
    held: usize,
}

impl<B, A: Copy + Eq + core::hash::Hash + Into<std::net::IpAddr>> NeighTable<B, A> {
    pub fn new(cfg: NeighConfig) -> Self {
        NeighTable {
            map: HashMap::with_capacity(cfg.capacity.min(1 << 16)),
            cfg,
            counters: NeighCounters::default(),
            // 0 is never current: an empty slot of a cache that compares it holds 0.
            generation: 1,
            rng: 0x2545_f491_4f6c_dd1d,
            held: 0,
        }
    }

    /// Changes whenever a resolved entry appears, changes, goes away or becomes STALE, or the
    /// owner says the routes to its entries did (`invalidate`). Never 0.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Moves the generation: whatever the caches that compare it hold is stale (the owner's
    /// topology changed, `L3::set_topology`).
    pub fn invalidate(&mut self) {
        self.generation += 1;
    }

    /// The MAC for `ip`, if one is in use.
    #[inline]
    pub fn mac(&self, ip: A) -> Option<MacAddr> {
        self.map.get(&ip).and_then(|e| e.mac)
    }

    /// The NUD state of `ip`'s entry.
    pub fn state(&self, ip: A) -> Option<Nud> {
        self.map.get(&ip).map(|e| e.state)
    }

    /// Linux's `neigh_rand_reach_time`: uniform in [base/2, 3·base/2).
    fn reachable_time(&mut self) -> u64 {
        let b = self.cfg.base_reachable_ms.max(2);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        b / 2 + self.rng % b
    }

    fn set_reachable(&mut self, ip: A, now: u64) {
        let t = self.reachable_time();
        if let Some(e) = self.map.get_mut(&ip) {
            if e.state != Nud::Reachable {
                self.counters.to_reachable += 1;
            }
            e.state = Nud::Reachable;
            e.updated = now;
            e.timer = now + t;
            e.probes = 0;
        }
    }

    /// Finds the MAC for `ip` reached through `port`, or holds `pkt` until it is known. A use of a
    /// STALE entry starts DELAY; of a FAILED one, a new resolution.
    pub fn resolve(&mut self, ip: A, port: u16, pkt: B, now: u64) -> Resolve<B> {
        let cfg = self.cfg;
        if let Some(e) = self.map.get_mut(&ip) {
            e.used = now;
            if let Some(mac) = e.mac {
                if e.state == Nud::Stale {
                    e.state = Nud::Delay;
                    e.timer = now + cfg.delay_first_probe_ms;
                    self.counters.to_delay += 1;
                }
                return Resolve::Mac(mac, pkt);
            }
            if e.state == Nud::Failed {
                // Resolution starts again with a broadcast request.
                e.state = Nud::Incomplete;
                e.port = port;
                e.probes = 1;
                e.timer = now + cfg.retry_ms;
                e.updated = now;
                self.counters.requests += 1;
                return hold(
                    &mut self.counters,
                    &mut self.held,
                    &cfg,
                    &mut e.pending,
                    pkt,
                    true,
                );
            }
            return hold(
                &mut self.counters,
                &mut self.held,
                &cfg,
                &mut e.pending,
                pkt,
                false,
            );
        }
        if self.map.len() >= cfg.capacity {
            self.counters.table_full += 1;
            return Resolve::Dropped(pkt, NeighDrop::TableFull);
        }
        let mut e = Entry {
            port,
            mac: None,
            state: Nud::Incomplete,
            updated: now,
            used: now,
            timer: now + cfg.retry_ms,
            probes: 1,
            pending: Vec::with_capacity(cfg.max_pending.max(1)),
        };
        self.counters.requests += 1;
        // The address is asked for even when its packet cannot be kept.
        let r = hold(
            &mut self.counters,
            &mut self.held,
            &cfg,
            &mut e.pending,
            pkt,
            true,
        );
        self.map.insert(ip, e);
        r
    }

    /// Records `ip` at `mac` on `port` from an ARP packet: `reply` for an answer (the entry becomes
    /// REACHABLE), otherwise a request or gratuitous ARP (a new MAC makes it STALE, to be verified by
    /// use). Only updates existing entries unless `create` (RFC 826: create when we are the target).
    /// Packets that waited are handed to `release`.
    #[allow(clippy::too_many_arguments)]
    pub fn learn(
        &mut self,
        ip: A,
        mac: MacAddr,
        port: u16,
        now: u64,
        create: bool,
        reply: bool,
        mut release: impl FnMut(u16, MacAddr, B),
    ) {
        if !mac.is_unicast() || ip.into().is_unspecified() {
            return;
        }
        if !self.map.contains_key(&ip) {
            if !create || self.map.len() >= self.cfg.capacity {
                return;
            }
            let e = Entry {
                port,
                mac: None,
                state: Nud::Incomplete,
                updated: now,
                used: now,
                timer: now,
                probes: 0,
                pending: Vec::new(),
            };
            self.map.insert(ip, e);
        }
        let Some(e) = self.map.get_mut(&ip) else {
            return;
        };
        let changed = e.mac != Some(mac);
        if changed {
            self.counters.learned += 1;
            self.generation += 1;
        }
        let was_unresolved = e.mac.is_none();
        e.mac = Some(mac);
        e.port = port;
        self.held -= e.pending.len();
        for p in e.pending.drain(..) {
            release(port, mac, p);
        }
        if reply || was_unresolved {
            self.set_reachable(ip, now);
        } else if changed {
            if let Some(e) = self.map.get_mut(&ip) {
                e.state = Nud::Stale;
                e.updated = now;
                e.probes = 0;
                self.counters.to_stale += 1;
            }
        }
    }

    /// The datapath saw a packet of a tracked connection from `ip`'s neighbour with source MAC
    /// `mac`: if that is the MAC in use, the entry is confirmed (REACHABLE from now).
    pub fn confirm(&mut self, ip: A, mac: MacAddr, now: u64) {
        let ok = self
            .map
            .get(&ip)
            .is_some_and(|e| e.mac == Some(mac) && e.state != Nud::Incomplete);
        if ok {
            self.counters.confirmed += 1;
            self.set_reachable(ip, now);
        }
    }

    /// The datapath doubts `ip` (a SYN toward it, first sent at `since`, retransmitted without an
    /// answer): an entry in use that is not already being probed goes to PROBE at once. Returns
    /// the unicast probe to send now (port, MAC).
    ///
    /// Not an entry confirmed at or after `since`: a frame from its MAC since the SYN went out
    /// shows the neighbour there, and the silence is the server's own (a full listen queue, a
    /// refusal by PAWS from a TIME_WAIT, which answers with an ACK). Probed on every such
    /// retransmission, a busy server's entry took hundreds of probes a second.
    pub fn suspect(&mut self, ip: A, now: u64, since: u64) -> Option<(u16, MacAddr)> {
        let retry = self.cfg.retry_ms;
        let e = self.map.get_mut(&ip)?;
        let mac = e.mac?;
        if e.state == Nud::Probe || (e.state == Nud::Reachable && e.updated >= since) {
            return None;
        }
        e.state = Nud::Probe;
        e.updated = now;
        e.probes = 1;
        e.timer = now + retry;
        self.counters.suspected += 1;
        self.counters.to_probe += 1;
        self.counters.probes += 1;
        Some((e.port, mac))
    }

    /// [`tick`](Self::tick) for a datapath: the requests to send now (up to [`TICK_REQUESTS`]; the
    /// others are due again on the next tick) and the number of held packets given up.
    pub fn tick_requests(&mut self, now: u64) -> (Requests<A>, u64) {
        let mut reqs = Requests([None; TICK_REQUESTS]);
        let mut n = 0;
        let mut dropped = 0u64;
        self.tick(
            now,
            |port, ip, unicast| {
                if let Some(slot) = reqs.0.get_mut(n) {
                    *slot = Some((port, ip, unicast));
                    n += 1;
                }
            },
            |_p| dropped += 1,
        );
        (reqs, dropped)
    }

    /// Periodic work: the state timers. `request(port, ip, unicast)` must send an ARP request for
    /// `ip` (to `unicast`'s MAC, else broadcast); `drop_pkt` receives packets that are given up.
    pub fn tick(
        &mut self,
        now: u64,
        mut request: impl FnMut(u16, A, Option<MacAddr>),
        mut drop_pkt: impl FnMut(B),
    ) {
        let cfg = self.cfg;
        let c = &mut self.counters;
        let mut bump = false;
        let mut reachable_expired = false;
        let held = &mut self.held;
        self.map.retain(|ip, e| {
            match e.state {
                Nud::Incomplete if now >= e.timer => {
                    if e.probes >= cfg.mcast_solicit {
                        c.unresolved += e.pending.len() as u64;
                        *held -= e.pending.len();
                        e.pending.drain(..).for_each(&mut drop_pkt);
                        e.state = Nud::Failed;
                        e.updated = now;
                        c.to_failed += 1;
                    } else {
                        e.probes += 1;
                        e.timer = now + cfg.retry_ms;
                        c.requests += 1;
                        request(e.port, *ip, None);
                    }
                }
                Nud::Reachable if now >= e.timer => {
                    e.state = Nud::Stale;
                    e.updated = now;
                    c.to_stale += 1;
                    reachable_expired = true;
                }
                Nud::Delay if now >= e.timer => {
                    e.state = Nud::Probe;
                    e.updated = now;
                    e.probes = 1;
                    e.timer = now + cfg.retry_ms;
                    c.to_probe += 1;
                    c.probes += 1;
                    request(e.port, *ip, e.mac);
                }
                Nud::Probe if now >= e.timer => {
                    if e.probes >= cfg.ucast_solicit {
                        e.state = Nud::Failed;
                        e.mac = None;
                        e.updated = now;
                        c.to_failed += 1;
                        bump = true;
                    } else {
                        e.probes += 1;
                        e.timer = now + cfg.retry_ms;
                        c.probes += 1;
                        request(e.port, *ip, e.mac);
                    }
                }
                Nud::Stale | Nud::Failed if now.saturating_sub(e.used) >= cfg.timeout_ms => {
                    c.aged_out += 1;
                    bump |= e.mac.is_some();
                    return false;
                }
                _ => {}
            }
            true
        });
        if bump || reachable_expired {
            self.generation += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Packets held now for unresolved entries.
    pub fn held(&self) -> usize {
        self.held
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// (ip, port, mac if in use, state, ms since the last change or confirmation) for each entry.
    pub fn entries(
        &self,
        now: u64,
    ) -> impl Iterator<Item = (A, u16, Option<MacAddr>, Nud, u64)> + '_ {
        self.map
            .iter()
            .map(move |(ip, e)| (*ip, e.port, e.mac, e.state, now.saturating_sub(e.updated)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const NEW_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 3]);

    fn table(max_pending: usize) -> NeighTable<u32> {
        NeighTable::new(NeighConfig {
            timeout_ms: 100_000,
            retry_ms: 1000,
            max_pending,
            capacity: 4,
            ..Default::default()
        })
    }

    /// Ticks every 10 ms through `to`, collecting requests as (ms, unicast MAC).
    fn run_to(t: &mut NeighTable<u32>, from: u64, to: u64, reqs: &mut Vec<(u64, Option<MacAddr>)>) {
        let mut now = from;
        while now <= to {
            t.tick(now, |_, _, m| reqs.push((now, m)), |_| {});
            now += 10;
        }
    }

    #[test]
    fn first_packet_queues_and_requests_then_learn_releases_in_order() {
        let mut t = table(8);
        assert!(matches!(
            t.resolve(IP, 1, 10, 0),
            Resolve::Queued { request: true }
        ));
        assert!(matches!(
            t.resolve(IP, 1, 11, 1),
            Resolve::Queued { request: false }
        ));
        let mut out = Vec::new();
        t.learn(IP, MAC, 1, 5, false, true, |port, mac, p| {
            out.push((port, mac, p))
        });
        assert_eq!(out, vec![(1, MAC, 10), (1, MAC, 11)]);
        assert!(matches!(t.resolve(IP, 1, 12, 6), Resolve::Mac(m, 12) if m == MAC));
        assert_eq!(t.counters.learned, 1);
        assert_eq!(t.state(IP), Some(Nud::Reachable));
    }

    /// All unresolved entries together hold at most `max_held` packets; what they held is released
    /// or dropped, and the count comes back to zero.
    #[test]
    fn packets_held_per_worker_are_bounded_and_recovered() {
        let mut t: NeighTable<u32> = NeighTable::new(NeighConfig {
            max_held: 5,
            capacity: 64,
            ..Default::default()
        });
        let mut dropped = 0;
        for i in 0..20u32 {
            let ip = Ipv4Addr::new(10, 0, 2, (i % 10) as u8);
            if let Resolve::Dropped(_, why) = t.resolve(ip, 0, i, 0) {
                assert_eq!(why, NeighDrop::HeldFull);
                dropped += 1;
            }
        }
        assert_eq!((t.held(), dropped, t.counters.held_full), (5, 15, 15));
        // Every address is asked for all the same.
        assert_eq!(t.len(), 10);
        let mut out = Vec::new();
        t.learn(
            Ipv4Addr::new(10, 0, 2, 0),
            MAC,
            0,
            10,
            false,
            true,
            |_, _, p| out.push(p),
        );
        assert_eq!((out, t.held()), (vec![0], 4));
        let mut given_up = 0;
        for now in (0..=4000).step_by(10) {
            t.tick(now, |_, _, _| {}, |_| given_up += 1);
        }
        assert_eq!((given_up, t.held()), (4, 0));
        assert!(matches!(
            t.resolve(Ipv4Addr::new(10, 0, 2, 1), 0, 99, 5000),
            Resolve::Queued { .. }
        ));
    }

    #[test]
    fn pending_queue_is_bounded_and_counted() {
        let mut t = table(2);
        let _ = t.resolve(IP, 0, 1, 0);
        let _ = t.resolve(IP, 0, 2, 0);
        assert!(matches!(
            t.resolve(IP, 0, 3, 0),
            Resolve::Dropped(3, NeighDrop::PendingFull)
        ));
        assert_eq!(t.counters.pending_full, 1);
    }

    /// INCOMPLETE: `mcast_solicit` broadcast requests `retrans_time` apart, then FAILED with the
    /// waiting packets dropped; the next packet starts again.
    #[test]
    fn incomplete_sends_mcast_solicit_requests_then_fails_and_restarts_on_use() {
        let mut t = table(8);
        let _ = t.resolve(IP, 0, 1, 0);
        let mut reqs = Vec::new();
        let mut dropped = Vec::new();
        let mut now = 0;
        while now <= 3500 {
            t.tick(now, |_, _, m| reqs.push((now, m)), |p| dropped.push(p));
            now += 10;
        }
        // The first request went with the packet (resolve); two more at 1 s and 2 s.
        assert_eq!(reqs, vec![(1000, None), (2000, None)]);
        assert_eq!(dropped, vec![1]);
        assert_eq!(t.counters.unresolved, 1);
        assert_eq!(t.state(IP), Some(Nud::Failed));
        assert!(matches!(
            t.resolve(IP, 0, 2, 4000),
            Resolve::Queued { request: true }
        ));
        assert_eq!(t.state(IP), Some(Nud::Incomplete));
    }

    /// REACHABLE for a random time in [base/2, 3·base/2), then STALE (the generation moves so
    /// cached lookups come back through `resolve`); a use starts DELAY; without a confirmation,
    /// PROBE after `delay_first_probe_time` with `ucast_solicit` unicast requests to the cached MAC,
    /// still used meanwhile; then FAILED.
    #[test]
    fn reachable_stale_delay_probe_failed_with_linux_timers() {
        let mut t = table(8);
        t.learn(IP, MAC, 0, 0, true, true, |_, _, _| {});
        let mut reqs = Vec::new();
        run_to(&mut t, 0, 14_990, &mut reqs);
        assert_eq!(t.state(IP), Some(Nud::Reachable), "at least base/2");
        let g = t.generation();
        run_to(&mut t, 15_000, 45_000, &mut reqs);
        assert_eq!(t.state(IP), Some(Nud::Stale), "at most 3·base/2");
        assert!(t.generation() > g);
        assert!(reqs.is_empty(), "no ARP while unused");
        assert!(matches!(t.resolve(IP, 0, 1, 45_000), Resolve::Mac(m, 1) if m == MAC));
        assert_eq!(t.state(IP), Some(Nud::Delay));
        run_to(&mut t, 45_010, 49_990, &mut reqs);
        assert_eq!(t.state(IP), Some(Nud::Delay));
        run_to(&mut t, 50_000, 52_990, &mut reqs);
        assert_eq!(t.state(IP), Some(Nud::Probe));
        assert_eq!(
            reqs,
            vec![
                (50_000, Some(MAC)),
                (51_000, Some(MAC)),
                (52_000, Some(MAC))
            ]
        );
        assert_eq!(t.mac(IP), Some(MAC), "used while probed");
        run_to(&mut t, 53_000, 53_000, &mut reqs);
        assert_eq!(t.state(IP), Some(Nud::Failed));
        assert_eq!(t.mac(IP), None);
        assert_eq!(reqs.len(), 3, "no broadcast until the next use");
        let c = t.counters;
        assert_eq!(
            (
                c.to_reachable,
                c.to_stale,
                c.to_delay,
                c.to_probe,
                c.to_failed,
                c.probes
            ),
            (1, 1, 1, 1, 1, 3)
        );
    }

    #[test]
    fn a_confirmation_in_delay_or_probe_makes_it_reachable_without_arp() {
        for probe in [false, true] {
            let mut t = table(8);
            t.learn(IP, MAC, 0, 0, true, true, |_, _, _| {});
            let mut reqs = Vec::new();
            run_to(&mut t, 0, 45_000, &mut reqs);
            let _ = t.resolve(IP, 0, 1, 45_000);
            if probe {
                run_to(&mut t, 45_010, 50_000, &mut reqs);
                assert_eq!(t.state(IP), Some(Nud::Probe));
            }
            // A frame from another MAC confirms nothing.
            t.confirm(IP, NEW_MAC, 50_005);
            assert_ne!(t.state(IP), Some(Nud::Reachable));
            t.confirm(IP, MAC, 50_005);
            assert_eq!(t.state(IP), Some(Nud::Reachable));
            let n = reqs.len();
            run_to(&mut t, 50_010, 60_000, &mut reqs);
            assert_eq!(reqs.len(), n, "no more probes");
        }
    }

    /// A suspect entry is probed at once; the answer (the same or another MAC) ends the probe.
    #[test]
    fn a_suspect_entry_is_probed_at_once_and_a_new_mac_is_taken_from_the_answer() {
        let mut t = table(8);
        t.learn(IP, MAC, 0, 0, true, true, |_, _, _| {});
        assert_eq!(t.suspect(IP, 100, 0), None, "confirmed since the SYN");
        assert_eq!(t.suspect(IP, 100, 1), Some((0, MAC)));
        assert_eq!(t.suspect(IP, 150, 1), None, "already probing");
        assert_eq!(t.state(IP), Some(Nud::Probe));
        let mut reqs = Vec::new();
        run_to(&mut t, 100, 3100, &mut reqs);
        assert_eq!(reqs, vec![(1100, Some(MAC)), (2100, Some(MAC))]);
        assert_eq!(t.state(IP), Some(Nud::Failed));
        // The next packet broadcasts; the answer comes from the new MAC.
        assert!(matches!(
            t.resolve(IP, 0, 7, 3200),
            Resolve::Queued { request: true }
        ));
        let mut out = Vec::new();
        t.learn(IP, NEW_MAC, 0, 3210, false, true, |_, m, p| {
            out.push((m, p))
        });
        assert_eq!(out, vec![(NEW_MAC, 7)]);
        assert_eq!(t.state(IP), Some(Nud::Reachable));
        assert_eq!(t.counters.suspected, 1);
    }

    /// An entry confirmed since the SYN went out is not suspected; one confirmed only before it
    /// is, and a frame from another MAC (the server's new one) confirms nothing.
    #[test]
    fn an_entry_confirmed_since_the_syn_went_out_is_not_suspected() {
        let mut t = table(8);
        t.learn(IP, MAC, 0, 0, true, true, |_, _, _| {});
        // The SYN at 1000, a frame from the entry's MAC at 1200, the retransmission at 2000.
        t.confirm(IP, MAC, 1200);
        assert_eq!(t.suspect(IP, 2000, 1000), None);
        assert_eq!(t.state(IP), Some(Nud::Reachable));
        assert_eq!(t.counters.suspected, 0);
        t.confirm(IP, NEW_MAC, 2500);
        assert_eq!(t.suspect(IP, 4000, 3000), Some((0, MAC)));
        assert_eq!(t.state(IP), Some(Nud::Probe));
        assert_eq!(t.counters.suspected, 1);
    }

    /// A request or gratuitous ARP with another MAC takes it at once (STALE, to be verified by use);
    /// with the same MAC nothing changes.
    #[test]
    fn gratuitous_arp_with_a_new_mac_is_taken_as_stale() {
        let mut t = table(8);
        t.learn(IP, MAC, 0, 0, true, true, |_, _, _| {});
        let g = t.generation();
        t.learn(IP, MAC, 0, 10, false, false, |_, _, _| {});
        assert_eq!((t.state(IP), t.generation()), (Some(Nud::Reachable), g));
        t.learn(IP, NEW_MAC, 0, 20, false, false, |_, _, _| {});
        assert_eq!(t.mac(IP), Some(NEW_MAC));
        assert_eq!(t.state(IP), Some(Nud::Stale));
        assert!(t.generation() > g);
    }

    #[test]
    fn unused_stale_and_failed_entries_are_removed_after_timeout() {
        let mut t = table(8);
        t.learn(IP, MAC, 0, 0, true, true, |_, _, _| {});
        let mut reqs = Vec::new();
        run_to(&mut t, 0, 99_990, &mut reqs);
        assert_eq!(t.state(IP), Some(Nud::Stale));
        run_to(&mut t, 100_000, 100_000, &mut reqs);
        assert!(t.is_empty());
        assert_eq!(t.counters.aged_out, 1);
    }

    #[test]
    fn learn_without_create_ignores_strangers_and_table_is_bounded() {
        let mut t = table(8);
        t.learn(IP, MAC, 0, 0, false, true, |_, _, _| {});
        assert!(t.is_empty());
        for i in 0..4 {
            t.learn(
                Ipv4Addr::new(10, 0, 1, i),
                MAC,
                0,
                0,
                true,
                true,
                |_, _, _| {},
            );
        }
        assert!(matches!(
            t.resolve(IP, 0, 9, 0),
            Resolve::Dropped(9, NeighDrop::TableFull)
        ));
        assert_eq!(t.counters.table_full, 1);
        t.learn(IP, MacAddr::BROADCAST, 0, 0, true, true, |_, _, _| {});
        assert_eq!(t.mac(IP), None, "broadcast MAC never learned");
    }
}

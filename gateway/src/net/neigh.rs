//! The ARP neighbour table of one worker (RFC 826 resolution, with aging).
//!
//! Each worker owns its table (share nothing, DESIGN.md decision 5). ARP replies reach only the worker
//! whose queue received them, so the worker that learns an address also hands a copy of the ARP frame to
//! every other worker, which learns from it without answering.
//!
//! Packets waiting for resolution are held per neighbour up to `max_pending`; beyond that they are
//! dropped and counted. An unresolved neighbour is asked again every `retry` and given up after
//! `MAX_TRIES`, dropping what waits for it (counted).

use crate::wire::MacAddr;
use hashbrown::HashMap;
use std::net::Ipv4Addr;

/// ARP requests sent for one address before its waiting packets are dropped.
pub const MAX_TRIES: u8 = 3;

#[derive(Clone, Copy, Debug)]
pub struct NeighConfig {
    /// A resolved entry is refreshed (ARP request, still used meanwhile) after this long; removed after
    /// twice this long without an answer.
    pub timeout_ms: u64,
    pub retry_ms: u64,
    pub max_pending: usize,
    pub capacity: usize,
}

impl Default for NeighConfig {
    fn default() -> Self {
        NeighConfig {
            timeout_ms: 300_000,
            retry_ms: 1000,
            max_pending: 8,
            capacity: 4096,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeighCounters {
    pub learned: u64,
    pub requests: u64,
    /// Packets dropped because the per-neighbour queue was full.
    pub pending_full: u64,
    /// Packets dropped because resolution failed.
    pub unresolved: u64,
    /// Packets dropped because the table was full.
    pub table_full: u64,
    pub aged_out: u64,
}

struct Entry<B> {
    port: u16,
    mac: Option<MacAddr>,
    /// When the MAC was last confirmed, or when resolution started.
    updated: u64,
    last_request: u64,
    tries: u8,
    pending: Vec<B>,
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

/// Why `resolve` did not hold a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeighDrop {
    PendingFull,
    TableFull,
}

pub struct NeighTable<B> {
    cfg: NeighConfig,
    map: HashMap<Ipv4Addr, Entry<B>>,
    pub counters: NeighCounters,
    /// Bumped whenever a resolved MAC appears, changes or goes: caches of lookups compare it.
    generation: u64,
}

impl<B> NeighTable<B> {
    pub fn new(cfg: NeighConfig) -> Self {
        NeighTable {
            map: HashMap::with_capacity(cfg.capacity.min(1 << 16)),
            cfg,
            counters: NeighCounters::default(),
            generation: 0,
        }
    }

    /// Changes whenever a resolved entry appears, changes or goes away.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The MAC for `ip`, if resolved.
    #[inline]
    pub fn mac(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.map.get(&ip).and_then(|e| e.mac)
    }

    /// Finds the MAC for `ip` reached through `port`, or holds `pkt` until it is known.
    pub fn resolve(&mut self, ip: Ipv4Addr, port: u16, pkt: B, now: u64) -> Resolve<B> {
        if let Some(e) = self.map.get_mut(&ip) {
            if let Some(mac) = e.mac {
                return Resolve::Mac(mac, pkt);
            }
            if e.pending.len() >= self.cfg.max_pending {
                self.counters.pending_full += 1;
                return Resolve::Dropped(pkt, NeighDrop::PendingFull);
            }
            e.pending.push(pkt);
            return Resolve::Queued { request: false };
        }
        if self.map.len() >= self.cfg.capacity {
            self.counters.table_full += 1;
            return Resolve::Dropped(pkt, NeighDrop::TableFull);
        }
        let mut pending = Vec::with_capacity(self.cfg.max_pending.max(1));
        if self.cfg.max_pending == 0 {
            self.counters.pending_full += 1;
            self.map.insert(
                ip,
                Entry {
                    port,
                    mac: None,
                    updated: now,
                    last_request: now,
                    tries: 1,
                    pending,
                },
            );
            self.counters.requests += 1;
            return Resolve::Dropped(pkt, NeighDrop::PendingFull);
        }
        pending.push(pkt);
        self.map.insert(
            ip,
            Entry {
                port,
                mac: None,
                updated: now,
                last_request: now,
                tries: 1,
                pending,
            },
        );
        self.counters.requests += 1;
        Resolve::Queued { request: true }
    }

    /// Records `ip` at `mac` on `port` (from an ARP packet). Only updates existing entries unless
    /// `create` (RFC 826: create when we are the target). Packets that waited are handed to `release`.
    pub fn learn(
        &mut self,
        ip: Ipv4Addr,
        mac: MacAddr,
        port: u16,
        now: u64,
        create: bool,
        mut release: impl FnMut(u16, MacAddr, B),
    ) {
        if !mac.is_unicast() || ip.is_unspecified() {
            return;
        }
        if !self.map.contains_key(&ip) {
            if !create || self.map.len() >= self.cfg.capacity {
                return;
            }
            let e = Entry {
                port,
                mac: None,
                updated: now,
                last_request: now,
                tries: 0,
                pending: Vec::new(),
            };
            self.map.insert(ip, e);
        }
        let Some(e) = self.map.get_mut(&ip) else {
            return;
        };
        if e.mac != Some(mac) {
            self.counters.learned += 1;
            self.generation += 1;
        }
        e.mac = Some(mac);
        e.port = port;
        e.updated = now;
        e.tries = 0;
        for p in e.pending.drain(..) {
            release(port, mac, p);
        }
    }

    /// Periodic work: retries and give-ups for unresolved entries, refresh and removal for old ones.
    /// `request(port, ip)` must send an ARP request; `drop_pkt` receives packets that are given up.
    pub fn tick(
        &mut self,
        now: u64,
        mut request: impl FnMut(u16, Ipv4Addr),
        mut drop_pkt: impl FnMut(B),
    ) {
        let cfg = self.cfg;
        let c = &mut self.counters;
        let before = c.aged_out;
        self.map.retain(|ip, e| {
            let since_req = now.saturating_sub(e.last_request);
            match e.mac {
                None => {
                    if since_req < cfg.retry_ms {
                        return true;
                    }
                    if e.tries >= MAX_TRIES {
                        c.unresolved += e.pending.len() as u64;
                        e.pending.drain(..).for_each(&mut drop_pkt);
                        return false;
                    }
                    e.tries += 1;
                    e.last_request = now;
                    c.requests += 1;
                    request(e.port, *ip);
                    true
                }
                Some(_) => {
                    let age = now.saturating_sub(e.updated);
                    if age >= 2 * cfg.timeout_ms {
                        c.aged_out += 1;
                        return false;
                    }
                    if age >= cfg.timeout_ms && since_req >= cfg.retry_ms {
                        e.last_request = now;
                        c.requests += 1;
                        request(e.port, *ip);
                    }
                    true
                }
            }
        });
        if self.counters.aged_out != before {
            self.generation += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// (ip, port, mac if resolved, ms since update) for each entry.
    pub fn entries(
        &self,
        now: u64,
    ) -> impl Iterator<Item = (Ipv4Addr, u16, Option<MacAddr>, u64)> + '_ {
        self.map
            .iter()
            .map(move |(ip, e)| (*ip, e.port, e.mac, now.saturating_sub(e.updated)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    fn table(max_pending: usize) -> NeighTable<u32> {
        NeighTable::new(NeighConfig {
            timeout_ms: 1000,
            retry_ms: 100,
            max_pending,
            capacity: 4,
        })
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
        t.learn(IP, MAC, 1, 5, false, |port, mac, p| {
            out.push((port, mac, p))
        });
        assert_eq!(out, vec![(1, MAC, 10), (1, MAC, 11)]);
        assert!(matches!(t.resolve(IP, 1, 12, 6), Resolve::Mac(m, 12) if m == MAC));
        assert_eq!(t.counters.learned, 1);
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

    #[test]
    fn retries_then_gives_up_dropping_waiters() {
        let mut t = table(8);
        let _ = t.resolve(IP, 0, 1, 0);
        let (mut reqs, mut dropped) = (0, Vec::new());
        for now in [50, 100, 200, 300, 400] {
            t.tick(
                now,
                |_, ip| {
                    assert_eq!(ip, IP);
                    reqs += 1
                },
                |p| dropped.push(p),
            );
        }
        assert_eq!(reqs, (MAX_TRIES - 1) as usize);
        assert_eq!(dropped, vec![1]);
        assert_eq!(t.counters.unresolved, 1);
        assert!(t.is_empty());
    }

    #[test]
    fn resolved_entries_refresh_then_age_out() {
        let mut t = table(8);
        t.learn(IP, MAC, 0, 0, true, |_, _, _| {});
        let mut reqs = 0;
        t.tick(500, |_, _| reqs += 1, |_| {});
        assert_eq!(reqs, 0);
        t.tick(1000, |_, _| reqs += 1, |_| {});
        assert_eq!(reqs, 1, "refresh request once the timeout passed");
        assert_eq!(t.mac(IP), Some(MAC), "still usable while refreshing");
        t.tick(2000, |_, _| reqs += 1, |_| {});
        assert_eq!(t.mac(IP), None);
        assert_eq!(t.counters.aged_out, 1);
    }

    #[test]
    fn learn_without_create_ignores_strangers_and_table_is_bounded() {
        let mut t = table(8);
        t.learn(IP, MAC, 0, 0, false, |_, _, _| {});
        assert!(t.is_empty());
        for i in 0..4 {
            t.learn(Ipv4Addr::new(10, 0, 1, i), MAC, 0, 0, true, |_, _, _| {});
        }
        assert!(matches!(
            t.resolve(IP, 0, 9, 0),
            Resolve::Dropped(9, NeighDrop::TableFull)
        ));
        assert_eq!(t.counters.table_full, 1);
        t.learn(IP, MacAddr::BROADCAST, 0, 0, true, |_, _, _| {});
        assert_eq!(t.mac(IP), None, "broadcast MAC never learned");
    }
}

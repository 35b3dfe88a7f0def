//! Locality-based least connections, plain (ip_vs_lblc.c) and with replication (ip_vs_lblcr.c).
//!
//! Both remember, per destination address, the server(s) recently used for it, for cache clusters
//! where the same destination should hit the same cache. The tables are **per worker** (the brief's
//! design: mutable scheduler state lives in the worker): a destination can thus be cached on up to one
//! server per worker instead of one overall — a bounded loss of locality in exchange for no shared
//! writes. The load they compare is the shared, aggregate connection counts.
//!
//! Entries refer to servers by identity ([`RsKey`]) with the index as a hint, so they survive new
//! snapshots of the service; an entry whose server left is treated as absent. The maps are
//! preallocated and bounded (IPVS's `max_size`, 16384): an insert into a full table first drops
//! entries idle for 6 minutes (`ENTRY_TIMEOUT`), and is skipped if that frees nothing.
//!
//! Deliberate difference: IPVS's lblc reuses a cached server even when its upper connection
//! threshold has flagged it overloaded; here the flag is honoured, as everywhere else.

use super::counts::ConnCounts;
use super::key::{Millis, RsKey};
use super::least;
use super::snapshot::Service;
use hashbrown::HashMap;

/// `sysctl lblc_expiration` / `lblcr_expiration` default: 24 hours.
pub const EXPIRATION: Millis = 24 * 3600 * 1000;
/// `ENTRY_TIMEOUT`: idle entries dropped first when the table is full.
const ENTRY_TIMEOUT: Millis = 6 * 60 * 1000;
/// `IP_VS_LBLC_TAB_SIZE * 16`.
const MAX_ENTRIES: usize = 16 * 1024;
/// Entries allocated up front.
const INITIAL_ENTRIES: usize = 1024;
/// Servers one lblcr set holds (IPVS's sets are unbounded lists; beyond this the busiest is dropped
/// to make room, which aging would have done later).
const SET_MAX: usize = 16;

/// A server by identity, with its index in the snapshot it was recorded under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RsRef {
    idx: u32,
    key: RsKey,
}

impl RsRef {
    fn new(svc: &Service, idx: usize) -> Option<Self> {
        Some(RsRef {
            idx: idx as u32,
            key: svc.key(idx)?,
        })
    }

    /// The server's index in `svc`, if it is still there.
    fn resolve(&self, svc: &Service) -> Option<usize> {
        let i = self.idx as usize;
        if svc.key(i) == Some(self.key) {
            Some(i)
        } else {
            svc.index_of(self.key)
        }
    }
}

/// lblc's `is_overloaded`: more active connections than its weight while some server (any) has
/// fewer than half its weight.
fn is_overloaded<C: ConnCounts + ?Sized>(w: &[u32], c: &C, i: usize) -> bool {
    c.active(i) > w[i] && (0..w.len()).any(|d| u64::from(c.active(d)) * 2 < u64::from(w[d]))
}

/// Makes room in a full table by dropping idle entries.
fn make_room<V>(
    map: &mut HashMap<u32, V, ahash::RandomState>,
    now: Millis,
    lastuse: impl Fn(&V) -> Millis,
) -> bool {
    if map.len() >= MAX_ENTRIES {
        map.retain(|_, v| lastuse(v).saturating_add(ENTRY_TIMEOUT) > now);
    }
    map.len() < MAX_ENTRIES
}

#[derive(Clone, Copy, Debug)]
struct LblcEntry {
    rs: RsRef,
    lastuse: Millis,
}

/// One worker's lblc table: destination address → server.
#[derive(Debug)]
pub struct LblcTable {
    map: HashMap<u32, LblcEntry, ahash::RandomState>,
}

impl Default for LblcTable {
    fn default() -> Self {
        LblcTable {
            map: HashMap::with_capacity_and_hasher(INITIAL_ENTRIES, ahash::RandomState::new()),
        }
    }
}

impl LblcTable {
    /// `ip_vs_lblc_schedule` for destination `daddr`.
    // Out of line whatever the codegen units decide (lblc services only): inlined, it
    // bloated the SYN path's code (perf/RESULTS.md, "New connections a second
    // fell with a module split").
    #[inline(never)]
    pub fn pick<C: ConnCounts + ?Sized>(
        &mut self,
        svc: &Service,
        c: &C,
        daddr: u32,
        now: Millis,
    ) -> Option<usize> {
        let w = svc.weights();
        if let Some(e) = self.map.get_mut(&daddr) {
            e.lastuse = now;
            if let Some(i) = e.rs.resolve(svc) {
                if w[i] > 0 && !c.overloaded(i) && !is_overloaded(w, c, i) {
                    return Some(i);
                }
            }
        }
        // No entry, or it is unusable: schedule by wlc and (re)point the entry.
        let i = least::wlc(w, c)?;
        let rs = RsRef::new(svc, i)?;
        if let Some(e) = self.map.get_mut(&daddr) {
            e.rs = rs;
        } else if make_room(&mut self.map, now, |e| e.lastuse) {
            self.map.insert(daddr, LblcEntry { rs, lastuse: now });
        }
        Some(i)
    }

    /// `ip_vs_lblc_full_check`: drops entries unused for `EXPIRATION`. Call about once a minute.
    pub fn housekeeping(&mut self, now: Millis) {
        self.map
            .retain(|_, e| e.lastuse.saturating_add(EXPIRATION) > now);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// An lblcr server set, most recently added first (IPVS adds at the list head).
#[derive(Clone, Copy, Debug)]
struct DestSet {
    items: [RsRef; SET_MAX],
    len: usize,
    lastmod: Millis,
}

impl DestSet {
    fn one(rs: RsRef, now: Millis) -> Self {
        DestSet {
            items: [rs; SET_MAX],
            len: 1,
            lastmod: now,
        }
    }

    fn as_slice(&self) -> &[RsRef] {
        &self.items[..self.len]
    }

    fn erase(&mut self, pos: usize, now: Millis) {
        self.items.copy_within(pos + 1..self.len, pos);
        self.len -= 1;
        self.lastmod = now;
    }

    /// Drops servers no longer in the service.
    fn prune(&mut self, svc: &Service, now: Millis) {
        while let Some(p) = self
            .as_slice()
            .iter()
            .position(|r| r.resolve(svc).is_none())
        {
            self.erase(p, now);
        }
    }

    /// `ip_vs_dest_set_min`: weighted least connections among the set's available servers.
    fn min<C: ConnCounts + ?Sized>(&self, svc: &Service, c: &C) -> Option<usize> {
        let w = svc.weights();
        let mut it = self.as_slice().iter().filter_map(|r| r.resolve(svc));
        let mut least = it.by_ref().find(|&i| !c.overloaded(i) && w[i] > 0)?;
        let mut loh = c.overhead(least);
        for d in it {
            if c.overloaded(d) {
                continue;
            }
            let doh = c.overhead(d);
            if loh * u64::from(w[d]) > doh * u64::from(w[least]) {
                (least, loh) = (d, doh);
            }
        }
        Some(least)
    }

    /// `ip_vs_dest_set_max`: position in the set of the weighted most loaded server of weight > 0.
    fn max_pos<C: ConnCounts + ?Sized>(&self, svc: &Service, c: &C) -> Option<usize> {
        let w = svc.weights();
        let mut most: Option<(usize, usize, u64)> = None; // (pos, index, overhead)
        for (pos, r) in self.as_slice().iter().enumerate() {
            let Some(d) = r.resolve(svc) else { continue };
            if w[d] == 0 {
                continue;
            }
            let doh = c.overhead(d);
            match most {
                None => most = Some((pos, d, doh)),
                Some((_, m, moh)) if moh * u64::from(w[d]) < doh * u64::from(w[m]) => {
                    most = Some((pos, d, doh))
                }
                _ => {}
            }
        }
        most.map(|(pos, _, _)| pos)
    }

    /// `ip_vs_dest_set_insert`: adds at the head unless present.
    fn insert<C: ConnCounts + ?Sized>(&mut self, svc: &Service, c: &C, rs: RsRef, now: Millis) {
        if self.as_slice().iter().any(|r| r.key == rs.key) {
            return;
        }
        if self.len == SET_MAX {
            let p = self.max_pos(svc, c).unwrap_or(SET_MAX - 1);
            self.erase(p, now);
        }
        self.items.copy_within(0..self.len, 1);
        self.items[0] = rs;
        self.len += 1;
        self.lastmod = now;
    }
}

#[derive(Clone, Copy, Debug)]
struct LblcrEntry {
    set: DestSet,
    lastuse: Millis,
}

/// One worker's lblcr table: destination address → set of servers.
#[derive(Debug)]
pub struct LblcrTable {
    map: HashMap<u32, LblcrEntry, ahash::RandomState>,
}

impl Default for LblcrTable {
    fn default() -> Self {
        LblcrTable {
            map: HashMap::with_capacity_and_hasher(INITIAL_ENTRIES, ahash::RandomState::new()),
        }
    }
}

impl LblcrTable {
    /// `ip_vs_lblcr_schedule` for destination `daddr`.
    // Out of line whatever the codegen units decide (lblcr services only): inlined, it
    // bloated the SYN path's code (perf/RESULTS.md, "New connections a second
    // fell with a module split").
    #[inline(never)]
    pub fn pick<C: ConnCounts + ?Sized>(
        &mut self,
        svc: &Service,
        c: &C,
        daddr: u32,
        now: Millis,
    ) -> Option<usize> {
        let w = svc.weights();
        if let Some(e) = self.map.get_mut(&daddr) {
            e.lastuse = now;
            e.set.prune(svc, now);
            let dest = e.set.min(svc, c);
            // Replication shrinks again: a set unchanged for EXPIRATION loses its busiest server.
            if e.set.len > 1 && now > e.set.lastmod.saturating_add(EXPIRATION) {
                if let Some(p) = e.set.max_pos(svc, c) {
                    e.set.erase(p, now);
                }
            }
            if let Some(d) = dest {
                if !is_overloaded(w, c, d) {
                    return Some(d);
                }
            }
            // Every member is overloaded: add the least loaded server of the service to the set.
            let d = least::wlc(w, c)?;
            e.set.insert(svc, c, RsRef::new(svc, d)?, now);
            return Some(d);
        }
        let d = least::wlc(w, c)?;
        let rs = RsRef::new(svc, d)?;
        if make_room(&mut self.map, now, |e| e.lastuse) {
            self.map.insert(
                daddr,
                LblcrEntry {
                    set: DestSet::one(rs, now),
                    lastuse: now,
                },
            );
        }
        Some(d)
    }

    /// `ip_vs_lblcr_full_check`: drops entries unused for `EXPIRATION`.
    pub fn housekeeping(&mut self, now: Millis) {
        self.map
            .retain(|_, e| e.lastuse.saturating_add(EXPIRATION) > now);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The servers (indices in `svc`) in `daddr`'s set, head first.
    pub fn set_of(&self, svc: &Service, daddr: u32) -> Vec<usize> {
        self.map.get(&daddr).map_or_else(Vec::new, |e| {
            e.set
                .as_slice()
                .iter()
                .filter_map(|r| r.resolve(svc))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::config::{Proto, ServiceConfig};
    use crate::service::counts::CountsVec;
    use crate::service::real::RealServer;
    use crate::service::sched_kind::SchedKind;
    use std::net::Ipv4Addr;

    fn svc(kind: SchedKind, weights: &[u32]) -> Service {
        let mut c = ServiceConfig::new(Ipv4Addr::new(192, 0, 2, 1), 80, Proto::Tcp, kind);
        c.reals = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| RealServer::new(Ipv4Addr::new(10, 0, 0, i as u8 + 1), 80, w))
            .collect();
        Service::new(c, None).unwrap()
    }

    const D1: u32 = 0x0a09_0001;
    const D2: u32 = 0x0a09_0002;

    #[test]
    fn is_overloaded_definition() {
        let w = [2, 4];
        let c = |a: [u32; 2]| CountsVec {
            active: a.to_vec(),
            inactive: vec![0; 2],
            overloaded: vec![false; 2],
        };
        assert!(!is_overloaded(&w, &c([2, 0]), 0)); // not above weight
        assert!(is_overloaded(&w, &c([3, 1]), 0)); // 1*2 < 4: someone is below half
        assert!(!is_overloaded(&w, &c([3, 2]), 0)); // 2*2 == 4: nobody below half
    }

    #[test]
    fn lblc_sticks_to_cached_server_until_overloaded() {
        let s = svc(SchedKind::Lblc, &[2, 2]);
        let mut t = LblcTable::default();
        let mut c = CountsVec::zeroed(2);
        assert_eq!(t.pick(&s, &c, D1, 0), Some(0));
        // wlc would now prefer 1, but D1 stays on 0
        c.active[0] = 2;
        assert_eq!(t.pick(&s, &c, D1, 1), Some(0));
        assert_eq!(t.pick(&s, &c, D2, 1), Some(1));
        // 0 above its weight and 1 below half of its own: reschedule D1 to 1
        c.active[0] = 3;
        assert_eq!(t.pick(&s, &c, D1, 2), Some(1));
        assert_eq!(t.pick(&s, &c, D1, 3), Some(1));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn lblc_reschedules_quiesced_and_removed_and_expires() {
        let s = svc(SchedKind::Lblc, &[1, 1]);
        let mut t = LblcTable::default();
        let c = CountsVec::zeroed(2);
        assert_eq!(t.pick(&s, &c, D1, 0), Some(0));
        let q = svc(SchedKind::Lblc, &[0, 1]);
        assert_eq!(t.pick(&q, &c, D1, 1), Some(1));
        t.housekeeping(EXPIRATION);
        assert_eq!(t.len(), 1);
        t.housekeeping(EXPIRATION + 2);
        assert!(t.is_empty());
    }

    #[test]
    fn lblcr_grows_set_when_members_overloaded_and_shrinks_with_age() {
        let s = svc(SchedKind::Lblcr, &[1, 1, 4]);
        let mut t = LblcrTable::default();
        let mut c = CountsVec::zeroed(3);
        // wlc: all zero, first of ties with weight ratio -> 0
        assert_eq!(t.pick(&s, &c, D1, 0), Some(0));
        assert_eq!(t.set_of(&s, D1), vec![0]);
        // 0 overloaded (2 > 1, and server 2 has 0*2 < 4): wlc picks 2 (0/4 beats 256/1), added at
        // the head
        c.active[0] = 2;
        c.active[1] = 1;
        assert_eq!(t.pick(&s, &c, D1, 10), Some(2));
        assert_eq!(t.set_of(&s, D1), vec![2, 0]);
        // now the set's least loaded is used: 2 (0 / 4) over 0 (512 / 1)
        assert_eq!(t.pick(&s, &c, D1, 20), Some(2));
        // set unchanged for EXPIRATION: the busiest (0) is dropped
        assert_eq!(t.pick(&s, &c, D1, 10 + EXPIRATION + 1), Some(2));
        assert_eq!(t.set_of(&s, D1), vec![2]);
    }

    #[test]
    fn lblcr_set_is_bounded() {
        let w = vec![1u32; 40];
        let s = svc(SchedKind::Lblcr, &w);
        let mut set = DestSet::one(RsRef::new(&s, 0).unwrap(), 0);
        let c = CountsVec::zeroed(40);
        for i in 1..40 {
            set.insert(&s, &c, RsRef::new(&s, i).unwrap(), 0);
        }
        assert_eq!(set.len, SET_MAX);
        assert_eq!(set.items[0].idx, 39);
    }
}

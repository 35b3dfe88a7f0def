//! Persistence templates (`ipvsadm -p`), shared by every worker of the gateway.
//!
//! A client's connections may hash to different workers (RSS spreads by the full 4-tuple), so the
//! "client → real server" memory cannot be per worker. Choice: a table split into 64 shards, each a
//! `Mutex<HashMap>` on its own cache line, locked **only when a new connection of a persistent service
//! is scheduled** — never per packet: packets of existing connections find their server in the
//! worker's connection table. With 64 shards, two workers collide on a lock only when they schedule new
//! connections of clients in the same shard at the same instant, and then wait for a hash lookup.
//!
//! Alternatives weighed: a lock-free map (epoch reclamation, much more code, no gain at new-connection
//! rates); per-worker tables plus steering new connections of one client to one worker (needs the NIC
//! to hash by source address only, which costs the reply-steering scheme of DESIGN.md §6); an
//! `RwLock` (every lookup also refreshes the expiry, i.e. writes, so it would buy nothing).
//!
//! The lock is held while the scheduler picks for a client without a valid template, so two workers
//! racing on one client's first two connections agree on the server.
//!
//! Expiry follows IPVS's templates in the simple case: a template lives `timeout` after the last
//! connection it placed. (IPVS also keeps a template while connections it controls live; here a
//! client returning after `timeout` with an older connection still open is scheduled afresh.)
//! Memory: each shard starts with room for 128 templates and grows (amortised doubling, so a rare
//! allocation on an insert) up to its share of the bound, [`DEFAULT_PERSIST_MAX`] by default; a
//! spoofed-source flood fills it and then only stops recording templates (counted in
//! [`PersistTable::full_drops`]).
//! Expired templates are replaced in place, removed in bulk when a shard fills, and swept by
//! [`PersistTable::expire`], which the control thread calls periodically.

use super::hash::mix64;
use super::key::{Millis, RsKey};
use hashbrown::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 64;
/// Entries each shard holds without reallocating.
const SHARD_INITIAL: usize = 128;
/// Default bound on templates per service: a spoofed-source flood must not grow memory without limit.
pub const DEFAULT_PERSIST_MAX: usize = 1 << 20;

/// One template: the masked client's real server and when the template expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Template {
    pub rs: RsKey,
    pub expires: Millis,
}

/// A template's key: the client's source address masked by the service's persistence netmask
/// ([`Persistence::key`](super::Persistence::key)). An IPv4 address sits in the low 32 bits, an
/// IPv6 one fills all 128 (a table serves one service, so of one family): IPv6 clients are keyed
/// by their whole masked address, as IPVS keys them, not by a fold that two clients could share.
pub type PersistKey = u128;

type Map = HashMap<PersistKey, Template, ahash::RandomState>;

#[repr(align(64))]
struct Shard(Mutex<Map>);

/// The persistence table of one service (kept across snapshots of the service).
pub struct PersistTable {
    shards: Box<[Shard]>,
    max_per_shard: usize,
    /// Templates not stored because their shard was full of live templates.
    full: AtomicU64,
}

impl std::fmt::Debug for PersistTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistTable")
            .field("len", &self.len())
            .field("full", &self.full_drops())
            .finish()
    }
}

impl PersistTable {
    /// A table holding at most about `max_entries` templates.
    pub fn new(max_entries: usize) -> Self {
        let max_per_shard = max_entries.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS)
            .map(|_| {
                Shard(Mutex::new(Map::with_capacity_and_hasher(
                    SHARD_INITIAL.min(max_per_shard),
                    ahash::RandomState::new(),
                )))
            })
            .collect();
        PersistTable {
            shards,
            max_per_shard,
            full: AtomicU64::new(0),
        }
    }

    fn shard(&self, client: PersistKey) -> MutexGuard<'_, Map> {
        let s = &self.shards[(mix64(client as u64 ^ (client >> 64) as u64) >> 58) as usize];
        // A worker that panicked with the lock cannot have left a map half-updated in a way that
        // matters here (each operation is one insert/get), so poisoning is ignored.
        s.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The server for a new connection of masked client `client`: the template's, if it is alive and
    /// `valid` maps its server to a usable index; otherwise `schedule()`'s choice, recorded. Either way
    /// the template then expires `ttl` after `now`.
    pub fn resolve(
        &self,
        client: PersistKey,
        now: Millis,
        ttl: Millis,
        valid: impl FnOnce(RsKey) -> Option<usize>,
        schedule: impl FnOnce() -> Option<(usize, RsKey)>,
    ) -> Option<usize> {
        let mut map = self.shard(client);
        let expires = now.saturating_add(ttl);
        if let Some(t) = map.get_mut(&client) {
            if t.expires > now {
                if let Some(i) = valid(t.rs) {
                    t.expires = expires;
                    return Some(i);
                }
            }
        }
        let Some((i, rs)) = schedule() else {
            // As ip_vs_check_template: an unusable template is dropped.
            map.remove(&client);
            return None;
        };
        if map.len() >= self.max_per_shard && !map.contains_key(&client) {
            map.retain(|_, t| t.expires > now);
        }
        if map.len() < self.max_per_shard || map.contains_key(&client) {
            map.insert(client, Template { rs, expires });
        } else {
            self.full.fetch_add(1, Relaxed);
        }
        Some(i)
    }

    /// A template another box made (HA sync): recorded unless this table has one for `client`
    /// that expires later. Bounded as `resolve` is; whether it was recorded.
    pub fn install(&self, client: PersistKey, rs: RsKey, expires: Millis, now: Millis) -> bool {
        let mut map = self.shard(client);
        if let Some(t) = map.get_mut(&client) {
            if t.expires < expires || t.expires <= now {
                *t = Template { rs, expires };
            }
            return true;
        }
        if map.len() >= self.max_per_shard {
            map.retain(|_, t| t.expires > now);
        }
        if map.len() < self.max_per_shard {
            map.insert(client, Template { rs, expires });
            true
        } else {
            self.full.fetch_add(1, Relaxed);
            false
        }
    }

    /// The live template of `client`, if any (for the admin shell and tests).
    pub fn get(&self, client: PersistKey, now: Millis) -> Option<Template> {
        self.shard(client)
            .get(&client)
            .copied()
            .filter(|t| t.expires > now)
    }

    /// Removes expired templates, one shard lock at a time; returns how many.
    pub fn expire(&self, now: Millis) -> usize {
        let mut removed = 0;
        for s in self.shards.iter() {
            let mut map = s.0.lock().unwrap_or_else(|e| e.into_inner());
            let before = map.len();
            map.retain(|_, t| t.expires > now);
            removed += before - map.len();
        }
        removed
    }

    /// Live templates per real server (`ipvsadm -L --persistent-conn`'s PersistConn).
    pub fn count_by_rs(&self, now: Millis) -> std::collections::HashMap<RsKey, u32> {
        let mut counts = std::collections::HashMap::new();
        for s in self.shards.iter() {
            let map = s.0.lock().unwrap_or_else(|e| e.into_inner());
            for t in map.values().filter(|t| t.expires > now) {
                *counts.entry(t.rs).or_insert(0) += 1;
            }
        }
        counts
    }

    /// The live templates, a shard at a time (each read under its lock, then released): (masked
    /// client, template), in client order within a shard. `ipvsadm -Lc` lists them beside the
    /// connections; a shard holds at most 1/64 of the table, so a listing of a full table never
    /// holds it all.
    pub fn live_by_shard(
        &self,
        now: Millis,
    ) -> impl Iterator<Item = Vec<(PersistKey, Template)>> + '_ {
        self.shards.iter().map(move |s| {
            let map = s.0.lock().unwrap_or_else(|e| e.into_inner());
            let mut v = Vec::with_capacity(map.len());
            v.extend(
                map.iter()
                    .filter(|(_, t)| t.expires > now)
                    .map(|(c, t)| (*c, *t)),
            );
            drop(map);
            v.sort_unstable_by_key(|(c, _)| *c);
            v
        })
    }

    /// Live templates (a pass over every shard, each under its lock).
    pub fn live(&self, now: Millis) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let map = s.0.lock().unwrap_or_else(|e| e.into_inner());
                map.values().filter(|t| t.expires > now).count()
            })
            .sum()
    }

    /// Templates stored, live or not yet swept.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.0.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Templates dropped because a shard was full.
    pub fn full_drops(&self) -> u64 {
        self.full.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn rs(n: u8) -> RsKey {
        RsKey {
            addr: Ipv4Addr::new(10, 0, 0, n).into(),
            port: 80,
        }
    }

    #[test]
    fn template_sticks_until_timeout_and_refreshes() {
        let t = PersistTable::new(1000);
        let pick = |n: usize| move || Some((n, rs(n as u8)));
        let valid = |k: RsKey| Some(usize::from(k.v4().octets()[3]));
        assert_eq!(t.resolve(7, 0, 100, valid, pick(1)), Some(1));
        assert_eq!(t.resolve(7, 50, 100, valid, pick(2)), Some(1));
        // refreshed at 50: alive until 150
        assert_eq!(t.resolve(7, 149, 100, valid, pick(2)), Some(1));
        // expired at 249 + ... : 149 + 100 = 249
        assert_eq!(t.resolve(7, 249, 100, valid, pick(2)), Some(2));
        assert_eq!(t.get(7, 250).map(|x| x.rs), Some(rs(2)));
    }

    #[test]
    fn an_installed_template_keeps_the_later_expiry() {
        let t = PersistTable::new(1000);
        assert!(t.install(7, rs(1), 100, 0));
        assert!(t.install(7, rs(2), 50, 0), "older: kept as it was");
        assert_eq!(
            t.get(7, 10),
            Some(Template {
                rs: rs(1),
                expires: 100
            })
        );
        assert!(t.install(7, rs(2), 200, 10));
        assert_eq!(t.get(7, 10).map(|x| x.rs), Some(rs(2)));
        // It steers the client as a template made here would.
        let valid = |k: RsKey| Some(usize::from(k.v4().octets()[3]));
        assert_eq!(t.resolve(7, 20, 100, valid, || Some((1, rs(1)))), Some(2));
    }

    #[test]
    fn invalid_template_is_rescheduled_or_dropped() {
        let t = PersistTable::new(1000);
        t.resolve(1, 0, 100, |_| None, || Some((3, rs(3))));
        assert_eq!(t.resolve(1, 1, 100, |_| None, || Some((4, rs(4)))), Some(4));
        assert_eq!(t.resolve(1, 2, 100, |_| None, || None), None);
        assert!(t.get(1, 2).is_none());
    }

    #[test]
    fn live_templates_are_counted_per_server() {
        let t = PersistTable::new(1000);
        for c in 0..5u128 {
            t.resolve(
                c,
                0,
                100,
                |_| None,
                || Some((c as usize % 2, rs((c % 2) as u8))),
            );
        }
        // Client 9's template expires at 60.
        t.resolve(9, 0, 60, |_| None, || Some((1, rs(1))));
        let n = t.count_by_rs(50);
        assert_eq!((n.get(&rs(0)), n.get(&rs(1))), (Some(&3), Some(&3)));
        let n = t.count_by_rs(60);
        assert_eq!((n.get(&rs(0)), n.get(&rs(1))), (Some(&3), Some(&2)));
        assert!(t.count_by_rs(100).is_empty());
        // The same templates listed, a shard at a time.
        let live = |now| t.live_by_shard(now).flatten().collect::<Vec<_>>();
        let mut at59 = live(59);
        at59.sort_by_key(|(c, _)| *c);
        assert_eq!(at59.len(), 6);
        let nine = Template {
            rs: rs(1),
            expires: 60,
        };
        assert_eq!(at59[5], (9, nine));
        assert_eq!(live(60).len(), 5, "client 9's has expired");
        assert_eq!((t.live(59), t.live(60), t.len()), (6, 5, 6));
        assert!(live(100).is_empty());
        assert_eq!(t.live_by_shard(0).count(), SHARDS);
    }

    #[test]
    fn bounded_and_swept() {
        let t = PersistTable::new(64); // one entry per shard
        for c in 0..1000u128 {
            // a full table still schedules, it only forgets
            assert_eq!(t.resolve(c, 0, 10, |_| None, || Some((0, rs(0)))), Some(0));
        }
        assert!(t.len() <= 64);
        assert!(t.full_drops() > 0);
        // expired ones make room again
        t.resolve(5000, 20, 10, |_| None, || Some((0, rs(0))));
        assert!(t.get(5000, 20).is_some());
        let left = t.len();
        assert_eq!(t.expire(100), left);
        assert!(t.is_empty());
    }

    #[test]
    fn expire_sweeps() {
        let t = PersistTable::new(1000);
        for c in 0..100u128 {
            t.resolve(c, c as u64, 10, |_| None, || Some((0, rs(0))));
        }
        assert_eq!(t.len(), 100);
        assert_eq!(t.expire(60), 51); // expires = c + 10 <= 60 for c in 0..=50
        assert_eq!(t.len(), 49);
    }
}

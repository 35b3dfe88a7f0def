//! [`Service`]: the immutable definition of one virtual service that the control plane builds and
//! shares (`Arc<Service>`) with every worker, with the tables derived from it.
//!
//! What must outlive one snapshot is carried from the previous one by [`Service::new`]'s `prev`:
//! - each real server's [`RsStats`] (by [`RsKey`]): connections created under the old snapshot
//!   decrement the counters the new one reads;
//! - the weight a quiesced server had (IPVS's `last_weight`): Maglev keeps its slots, so setting a
//!   weight to 0 and back moves no other server's clients;
//! - the persistence table, unless the persistence netmask changed.
//!
//! The only state workers write through a `Service` is the `rr`/`wrr` sequence counter and the
//! counters above, all atomics updated once per new connection (or connection state change).

use super::config::{is_prime, ServiceConfig};
use super::counts::{ConnCounts, RsStats};
use super::error::ServiceError;
use super::hash::keyed;
use super::hashing::BucketTable;
use super::key::RsKey;
use super::maglev::MaglevTable;
use super::persist::{PersistTable, DEFAULT_PERSIST_MAX};
use super::real::RealServer;
use super::sched_kind::SchedKind;
use super::wrr::WrrSeq;
use hashbrown::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Most real servers one service may have (indices are stored as `u16` in the lookup tables and in
/// connection entries, where `u16::MAX` marks a removed server).
pub const MAX_REALS: usize = (1 << 16) - 1;

/// Domain separation of the client-key hash from Maglev's permutation hashes.
const CLIENT_HASH: u64 = 3;

/// The table the service's scheduler looks up, built once per snapshot.
#[derive(Debug)]
pub(crate) enum Tables {
    None,
    /// rr (weights clamped to 1) and wrr; `None` inside when no server has weight.
    Seq(Option<WrrSeq>),
    Sh(BucketTable),
    Dh(BucketTable),
    Mh(MaglevTable),
}

/// An atomic on its own cache line: the workers' shared sequence counter must not bounce the line
/// holding the service's read-mostly fields.
#[derive(Debug, Default)]
#[repr(align(64))]
struct PaddedCounter(AtomicU64);

/// An immutable virtual service with its real servers and scheduler tables.
#[derive(Debug)]
pub struct Service {
    cfg: ServiceConfig,
    weights: Box<[u32]>,
    stats: Box<[Arc<RsStats>]>,
    /// Weight for Maglev: the current one, or the last non-zero one of a quiesced server.
    table_weights: Box<[u32]>,
    index: HashMap<RsKey, u32, ahash::RandomState>,
    tables: Tables,
    seq: PaddedCounter,
    persist: Option<Arc<PersistTable>>,
    client_seed: u64,
}

impl Service {
    /// Validates `cfg` and builds the snapshot, carrying shared state from `prev` (the snapshot this
    /// one replaces, if any; normally the same virtual service).
    pub fn new(cfg: ServiceConfig, prev: Option<&Service>) -> Result<Self, ServiceError> {
        Self::check(&cfg)?;
        let n = cfg.reals.len();
        let mut index = HashMap::with_capacity_and_hasher(n, ahash::RandomState::new());
        for (i, rs) in cfg.reals.iter().enumerate() {
            index.insert(rs.key(), i as u32);
        }

        let prev_of = |k: RsKey| prev.and_then(|p| p.index_of(k).map(|i| (p, i)));
        let stats: Box<[Arc<RsStats>]> = cfg
            .reals
            .iter()
            .map(|rs| match prev_of(rs.key()) {
                Some((p, i)) => {
                    let s = Arc::clone(&p.stats[i]);
                    s.set_thresholds(rs.upper, rs.lower);
                    s
                }
                None => Arc::new(RsStats::new(rs.upper, rs.lower)),
            })
            .collect();
        let weights: Box<[u32]> = cfg.reals.iter().map(|rs| rs.weight).collect();
        let table_weights: Box<[u32]> = cfg
            .reals
            .iter()
            .map(|rs| match (rs.weight, prev_of(rs.key())) {
                (0, Some((p, i))) => p.table_weights[i],
                (w, _) => w,
            })
            .collect();

        let keys: Vec<RsKey> = cfg.reals.iter().map(RealServer::key).collect();
        let tables = match cfg.sched {
            SchedKind::Rr => {
                let ones: Vec<u32> = weights.iter().map(|&w| w.min(1)).collect();
                Tables::Seq(WrrSeq::new(&ones))
            }
            SchedKind::Wrr => Tables::Seq(WrrSeq::new(&weights)),
            SchedKind::Sh => Tables::Sh(BucketTable::sh(&weights)),
            SchedKind::Dh => Tables::Dh(BucketTable::dh(n)),
            SchedKind::Mh => Tables::Mh(MaglevTable::build(
                &keys,
                &table_weights,
                cfg.mh_table_size,
                cfg.hash_seed,
            )),
            _ => Tables::None,
        };

        let persist = cfg.persistence.map(|p| {
            prev.filter(|q| {
                q.cfg
                    .persistence
                    .is_some_and(|o| o.netmask == p.netmask && o.prefix6 == p.prefix6)
            })
            .and_then(|q| q.persist.clone())
            .unwrap_or_else(|| Arc::new(PersistTable::new(DEFAULT_PERSIST_MAX)))
        });

        // rr keeps its place across snapshots, as ip_vs_rr.c keeps its cursor; wrr restarts its
        // interleaving, as ip_vs_wrr_dest_changed does.
        let seq = PaddedCounter(AtomicU64::new(match prev {
            Some(p) if p.sched() == SchedKind::Rr && cfg.sched == SchedKind::Rr => {
                p.seq.0.load(Relaxed)
            }
            _ => 0,
        }));
        Ok(Service {
            client_seed: keyed(cfg.hash_seed, CLIENT_HASH),
            cfg,
            weights,
            stats,
            table_weights,
            index,
            tables,
            seq,
            persist,
        })
    }

    /// Every error `Service::new` can return, found without building anything (no Maglev
    /// table): what validating a change costs, whatever the service's size.
    pub fn check(cfg: &ServiceConfig) -> Result<(), ServiceError> {
        let n = cfg.reals.len();
        if n > MAX_REALS {
            return Err(ServiceError::TooMany(n));
        }
        let mut seen = hashbrown::HashSet::with_capacity(n);
        let v6 = cfg.vip.is_ipv6();
        for rs in &cfg.reals {
            rs.validate()?;
            // An IPv6 service's IPv4 real servers are reached by NAT64, in FullNAT only.
            let nat64 = v6 && rs.addr.is_ipv4() && rs.fwd == super::real::FwdMode::FullNat;
            if rs.addr.is_ipv6() != v6 && !nat64 {
                return Err(ServiceError::FamilyMismatch {
                    rs: rs.key(),
                    vip: cfg.vip,
                });
            }
            if !seen.insert(rs.key()) {
                return Err(ServiceError::Duplicate(rs.key()));
            }
        }
        if cfg.persistence.is_some_and(|p| p.timeout_s == 0) {
            return Err(ServiceError::PersistTimeout);
        }
        if let Some(p) = cfg.persistence {
            if v6 && !p.netmask.is_broadcast() {
                return Err(ServiceError::Ipv6Netmask);
            }
            if !v6 && p.prefix6 != 128 {
                return Err(ServiceError::Ipv4Prefix(p.prefix6));
            }
            if !(1..=128).contains(&p.prefix6) {
                return Err(ServiceError::Prefix6(p.prefix6));
            }
        }
        if cfg.sched == SchedKind::Mh
            && (!is_prime(cfg.mh_table_size) || cfg.mh_table_size as usize <= n)
        {
            return Err(ServiceError::MaglevSize {
                size: cfg.mh_table_size,
                reals: n,
            });
        }
        Ok(())
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.cfg
    }

    pub fn sched(&self) -> SchedKind {
        self.cfg.sched
    }

    pub fn reals(&self) -> &[RealServer] {
        &self.cfg.reals
    }

    /// Number of real servers.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Current weights in list order.
    pub fn weights(&self) -> &[u32] {
        &self.weights
    }

    /// The identity of real server `rs`.
    pub fn key(&self, rs: usize) -> Option<RsKey> {
        self.cfg.reals.get(rs).map(RealServer::key)
    }

    /// The index of the real server `key` in this snapshot.
    pub fn index_of(&self, key: RsKey) -> Option<usize> {
        self.index.get(&key).map(|&i| i as usize)
    }

    /// The shared counters of real server `rs`; a connection keeps this `Arc` (or the service and
    /// index) to report its state changes even after the server left the service.
    pub fn stats(&self, rs: usize) -> Option<&Arc<RsStats>> {
        self.stats.get(rs)
    }

    /// The persistence table, when the service is persistent.
    pub fn persist_table(&self) -> Option<&Arc<PersistTable>> {
        self.persist.as_ref()
    }

    /// The Maglev table, when the scheduler is `mh`.
    pub fn maglev(&self) -> Option<&MaglevTable> {
        match &self.tables {
            Tables::Mh(t) => Some(t),
            _ => None,
        }
    }

    /// `expire_nodest_conn`: see [`ServiceConfig::expire_nodest_conn`].
    pub fn expire_nodest_conn(&self) -> bool {
        self.cfg.expire_nodest_conn
    }

    pub(crate) fn tables(&self) -> &Tables {
        &self.tables
    }

    /// The number of this new connection in the service's rr/wrr sequence: one relaxed `fetch_add`
    /// per new connection, shared by all workers.
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.0.fetch_add(1, Relaxed)
    }

    /// The `sh`/`mh` key hash of a client: its address, and its port when `*-port` is set.
    pub(crate) fn client_hash(&self, ip: u32, port: u16) -> u64 {
        let port = if self.cfg.flags.hash_port { port } else { 0 };
        keyed(self.client_seed, (u64::from(ip) << 16) | u64::from(port))
    }
}

impl ConnCounts for Service {
    fn active(&self, rs: usize) -> u32 {
        self.stats.get(rs).map_or(0, |s| s.active())
    }
    fn inactive(&self, rs: usize) -> u32 {
        self.stats.get(rs).map_or(0, |s| s.inactive())
    }
    fn overloaded(&self, rs: usize) -> bool {
        self.stats.get(rs).is_some_and(|s| s.is_overloaded())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::config::{Persistence, Proto};
    use std::net::Ipv4Addr;

    fn rs(n: u8, w: u32) -> RealServer {
        RealServer::new(Ipv4Addr::new(10, 0, 0, n), 80, w)
    }

    fn cfg(sched: SchedKind, reals: Vec<RealServer>) -> ServiceConfig {
        let mut c = ServiceConfig::new(Ipv4Addr::new(192, 0, 2, 1), 80, Proto::Tcp, sched);
        c.reals = reals;
        c
    }

    #[test]
    fn rejects_bad_definitions() {
        let dup = cfg(SchedKind::Wlc, vec![rs(1, 1), rs(1, 2)]);
        assert!(matches!(
            Service::new(dup, None),
            Err(ServiceError::Duplicate(_))
        ));
        let heavy = cfg(SchedKind::Wlc, vec![rs(1, 70_000)]);
        assert!(matches!(
            Service::new(heavy, None),
            Err(ServiceError::WeightRange(..))
        ));
        let mut mh = cfg(SchedKind::Mh, vec![rs(1, 1)]);
        mh.mh_table_size = 65_536;
        assert!(matches!(
            Service::new(mh, None),
            Err(ServiceError::MaglevSize { .. })
        ));
        let mut p = cfg(SchedKind::Rr, vec![rs(1, 1)]);
        p.persistence = Some(Persistence {
            timeout_s: 0,
            ..Persistence::default()
        });
        assert_eq!(
            Service::new(p, None).unwrap_err(),
            ServiceError::PersistTimeout
        );
        // A prefix length is an IPv6 service's netmask, not an IPv4 one's; and 1 to 128.
        let mut p = cfg(SchedKind::Rr, vec![rs(1, 1)]);
        p.persistence = Some(Persistence {
            prefix6: 64,
            ..Persistence::default()
        });
        assert_eq!(
            Service::new(p, None).unwrap_err(),
            ServiceError::Ipv4Prefix(64)
        );
        let mut p = ServiceConfig::new(
            "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap(),
            80,
            Proto::Tcp,
            SchedKind::Rr,
        );
        for (prefix6, err) in [
            (0, Some(ServiceError::Prefix6(0))),
            (129, Some(ServiceError::Prefix6(129))),
            (1, None),
            (128, None),
        ] {
            p.persistence = Some(Persistence {
                prefix6,
                ..Persistence::default()
            });
            assert_eq!(Service::new(p.clone(), None).err(), err, "/{prefix6}");
        }
        p.persistence = Some(Persistence {
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            ..Persistence::default()
        });
        assert_eq!(
            Service::new(p, None).unwrap_err(),
            ServiceError::Ipv6Netmask
        );
    }

    #[test]
    fn accepts_4096_reals() {
        let reals: Vec<RealServer> = (0..4096u32)
            .map(|i| RealServer::new(Ipv4Addr::from(0x0a00_0000 + i), 80, i % 100))
            .collect();
        for k in SchedKind::ALL {
            let s = Service::new(cfg(k, reals.clone()), None).unwrap();
            assert_eq!(s.len(), 4096);
            assert_eq!(s.index_of(reals[4095].key()), Some(4095));
        }
    }

    #[test]
    fn counters_carried_across_snapshots_by_identity() {
        let a = Service::new(cfg(SchedKind::Wlc, vec![rs(1, 1), rs(2, 1)]), None).unwrap();
        a.stats(1).unwrap().on_conn_new();
        // reordered, re-weighted, one added
        let b = Service::new(
            cfg(SchedKind::Wlc, vec![rs(3, 1), rs(2, 5), rs(1, 1)]),
            Some(&a),
        )
        .unwrap();
        assert_eq!(b.inactive(1), 1);
        assert!(Arc::ptr_eq(a.stats(1).unwrap(), b.stats(1).unwrap()));
        assert_eq!(b.inactive(0), 0);
    }

    #[test]
    fn thresholds_updated_on_carried_counters() {
        let mut r = rs(1, 1);
        r.upper = 1;
        let a = Service::new(cfg(SchedKind::Wlc, vec![r.clone()]), None).unwrap();
        a.stats(0).unwrap().on_conn_new();
        assert!(a.overloaded(0));
        r.upper = 10;
        let b = Service::new(cfg(SchedKind::Wlc, vec![r]), Some(&a)).unwrap();
        assert!(!b.overloaded(0));
    }

    #[test]
    fn quiesced_server_keeps_its_maglev_slots() {
        let a = Service::new(cfg(SchedKind::Mh, vec![rs(1, 1), rs(2, 1), rs(3, 1)]), None).unwrap();
        let b = Service::new(
            cfg(SchedKind::Mh, vec![rs(1, 1), rs(2, 0), rs(3, 1)]),
            Some(&a),
        )
        .unwrap();
        let (ta, tb) = (a.maglev().unwrap(), b.maglev().unwrap());
        assert!((0..ta.len() as u64).all(|h| ta.lookup(h) == tb.lookup(h)));
        // built without history, a weight-0 server has no slot
        let c = Service::new(cfg(SchedKind::Mh, vec![rs(1, 1), rs(2, 0), rs(3, 1)]), None).unwrap();
        assert_eq!(c.maglev().unwrap().shares(3)[1], 0);
    }

    #[test]
    fn rr_position_carried_wrr_restarted() {
        let a = Service::new(cfg(SchedKind::Rr, vec![rs(1, 1), rs(2, 1)]), None).unwrap();
        a.next_seq();
        a.next_seq();
        a.next_seq();
        let b = Service::new(cfg(SchedKind::Rr, vec![rs(1, 1), rs(2, 2)]), Some(&a)).unwrap();
        assert_eq!(b.next_seq(), 3);
        let c = Service::new(cfg(SchedKind::Wrr, vec![rs(1, 1), rs(2, 2)]), Some(&b)).unwrap();
        assert_eq!(c.next_seq(), 0);
    }

    #[test]
    fn persistence_table_carried_unless_netmask_changes() {
        let mut c = cfg(SchedKind::Rr, vec![rs(1, 1)]);
        c.persistence = Some(Persistence::default());
        let a = Service::new(c.clone(), None).unwrap();
        let b = Service::new(c.clone(), Some(&a)).unwrap();
        assert!(Arc::ptr_eq(
            a.persist_table().unwrap(),
            b.persist_table().unwrap()
        ));
        c.persistence = Some(Persistence {
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            ..Persistence::default()
        });
        let d = Service::new(c, Some(&b)).unwrap();
        assert!(!Arc::ptr_eq(
            b.persist_table().unwrap(),
            d.persist_table().unwrap()
        ));
    }
}

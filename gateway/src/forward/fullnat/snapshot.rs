//! The forwarder's side of a configuration change: a new service snapshot prepared (everything
//! that can fail: the local-address pools of new LIPs) and then committed, which carries the
//! connections, counters, limits and access-list hits over to the new snapshot by identity.

use super::*;
use crate::forward::services::ConnRemap;

/// A service snapshot a worker has prepared to adopt (`Forwarder::prepare_services`): the
/// fallible part of the change is done, `commit_services` cannot fail.
pub struct PreparedServices {
    services: Arc<ServiceTable>,
    /// Per new service: the pool built for its new LIPs (None: kept from the old snapshot, or no
    /// LIPs).
    fresh_pools: Vec<Option<LaddrPool>>,
    /// The snapshot this was prepared against, and each new service's index in it.
    from: Arc<ServiceTable>,
    old_of: Vec<Option<usize>>,
}

impl Forwarder {
    /// Adopts a new service snapshot. Existing connections keep forwarding (their entries hold every
    /// address they need); their service and real-server indices are remapped to the new snapshot by
    /// identity (VIP:port/protocol, RIP:port). A connection whose real server is gone is marked
    /// `NO_DEST`: its service's `expire_nodest_conn` decides at its next packet (IPVS semantics).
    /// The IPv4 table only: the datapath's `commit_services` remaps the IPv6 one as well.
    pub fn set_services(&mut self, services: Arc<ServiceTable>) -> Result<(), String> {
        let prepared = self.prepare_services(services)?;
        self.commit_services(prepared);
        Ok(())
    }

    /// `old` (service `vs`'s index in the old snapshot, if any) if `vs` keeps its pool there
    /// (per-LIP usage and cursors): same VIP:port/protocol, same LIPs and same retiring ones.
    fn keeps_pool(
        &self,
        old: Option<usize>,
        vs: &crate::forward::services::VirtualService,
    ) -> Option<usize> {
        old.filter(|&i| {
            self.services
                .services
                .get(i)
                .is_some_and(|old| old.lips == vs.lips && old.retiring_lips == vs.retiring_lips)
        })
    }

    /// The first phase of adopting `services`: everything that can fail (the local-address pools
    /// of services whose LIPs are new), built without changing anything. Dropping the result
    /// abandons the change.
    pub fn prepare_services(
        &self,
        services: Arc<ServiceTable>,
    ) -> Result<PreparedServices, String> {
        if Arc::ptr_eq(&services, &self.services) {
            // A generation that changes no service (the topology, timeouts): nothing to prepare.
            return Ok(PreparedServices {
                services,
                fresh_pools: Vec::new(),
                from: Arc::clone(&self.services),
                old_of: Vec::new(),
            });
        }
        let old_of = self.services.old_indices(&services);
        let mut fresh = Vec::with_capacity(services.services.len());
        for (vs, &o) in services.services.iter().zip(&old_of) {
            if self.keeps_pool(o, vs).is_some() || vs.lips.is_empty() {
                fresh.push(None);
                continue;
            }
            let p = LaddrPool::new(
                self.layout.clone(),
                self.worker as usize,
                &vs.lips,
                self.max_attempts,
            )
            .map(|p| p.with_retiring(&vs.retiring_lips))
            .map_err(|e| {
                format!(
                    "service {}:{}: {e}",
                    vs.svc.config().vip,
                    vs.svc.config().vport
                )
            })?;
            fresh.push(Some(p));
        }
        Ok(PreparedServices {
            services,
            fresh_pools: fresh,
            from: Arc::clone(&self.services),
            old_of,
        })
    }

    /// The second phase: adopts the prepared snapshot. Cannot fail. Returns how connections of
    /// the old snapshot find their service and real server in the new one (applied to the IPv4
    /// table here; the IPv6 table's owner applies it to that one), None if the snapshot is the
    /// same.
    pub fn commit_services(&mut self, prepared: PreparedServices) -> Option<ConnRemap> {
        if Arc::ptr_eq(&prepared.services, &self.services) {
            // Same services: no connection to remap, no table to rebuild (a kernel route change
            // must not make every worker walk its connection table).
            return None;
        }
        let PreparedServices {
            services,
            fresh_pools,
            from,
            old_of,
        } = prepared;
        // The indices found when the change was prepared, unless another was adopted since. They
        // are found once for every step below that carries per-service state over by them (a
        // worker adopts each change in its loop, not forwarding meanwhile: perf/RESULTS.md, "A
        // change's stall on each worker").
        let old_of =
            if Arc::ptr_eq(&from, &self.services) && old_of.len() == services.services.len() {
                old_of
            } else {
                self.services.old_indices(&services)
            };
        let remap = ConnRemap::with_old_indices(&self.services, &services, &old_of);
        count_rebind(&mut self.stats, &remap, &mut self.table);
        self.adopt_limits(&services, &old_of);
        let kept: Vec<Option<usize>> = services
            .services
            .iter()
            .zip(&old_of)
            .map(|(vs, &o)| self.keeps_pool(o, vs))
            .collect();
        // A pool rebuilt for changed LIPs goes on from the old one's counts, taken here and not
        // when it was prepared: the worker forwarded between the two.
        let mut fresh_pools = fresh_pools;
        for (fresh, &o) in fresh_pools.iter_mut().zip(&old_of) {
            let old = o.and_then(|i| self.pools.get(i)?.as_ref());
            if let (Some(p), Some(old)) = (fresh.as_mut(), old) {
                p.carry_counts(old);
            }
        }
        let mut old_pools: Vec<Option<LaddrPool>> = std::mem::take(&mut self.pools);
        let pools: Vec<Option<LaddrPool>> = fresh_pools
            .into_iter()
            .zip(kept)
            .map(|(fresh, kept)| {
                fresh.or_else(|| kept.and_then(|i| old_pools.get_mut(i).and_then(Option::take)))
            })
            .collect();
        // Per-worker scheduler state (lblc tables) carries over for a service whose scheduler stays.
        let mut old_sched = std::mem::take(&mut self.sched);
        self.sched = services
            .services
            .iter()
            .zip(&old_of)
            .map(|(vs, &o)| match o.and_then(|i| old_sched.get_mut(i)) {
                Some(st) => {
                    let mut st = std::mem::replace(st, SchedState::Stateless);
                    st.sync(&vs.svc);
                    st
                }
                None => SchedState::new(&vs.svc),
            })
            .collect();
        self.pools = pools;
        self.nat = NatIndex::carried(
            std::mem::take(&mut self.nat),
            &self.services,
            &services,
            &old_of,
        );
        self.remap_traffic(&services, &old_of);
        self.remap_acl_hits(&services, &old_of);
        if services
            .services
            .iter()
            .any(|vs| vs.synproxy != synproxy::Mode::Off)
        {
            // Once, when a snapshot first has a proxied service: the packet path never allocates.
            self.synproxy.reserve(self.table.capacity());
        }
        if services
            .services
            .iter()
            .any(|vs| vs.synproxy != synproxy::Mode::Off && vs.svc.config().vip.is_ipv6())
        {
            self.synproxy.reserve6(self.capacity6 as usize);
        }
        self.services = services;
        *self.reply_lips = super::ReplyLips::empty();
        Some(remap)
    }

    /// Adopts the new snapshot's per-client limits (`limit`): their open connections' counts
    /// carry over, and are counted again from the table only where the limiter asks
    /// (`Limiter::recount_due`: a limit new to a service that was there). After the IPv4 table's
    /// remap in `commit_services`: the entries carry the new service indices. `old_of`: each new
    /// service's index in the old snapshot.
    pub(super) fn adopt_limits(&mut self, new: &ServiceTable, old_of: &[Option<usize>]) {
        let limits = new.services.iter().map(|vs| vs.limit).collect();
        self.limits.adopt(limits, old_of);
        if !self.limits.recount_due() {
            // The counts carried over: no walk of the table.
            return;
        }
        // Parked entries and those of removed services have NO_DEST: gone already.
        let open = self
            .table
            .iter()
            .filter(|(_, c)| c.svc != NO_DEST && counted_open(c))
            .map(|(_, c)| (c.svc, c.client().src_ip().into()));
        self.limits.recount(open);
    }

    /// Carries each access list's counts over to a new snapshot where the service and its list
    /// are unchanged; a changed list counts from zero. `old_of`: each new service's index in the
    /// old snapshot.
    pub(super) fn remap_acl_hits(&mut self, new: &ServiceTable, old_of: &[Option<usize>]) {
        let mut old_hits = std::mem::take(&mut self.acl_hits);
        let old = &self.services.services;
        self.acl_hits = new
            .services
            .iter()
            .zip(old_of)
            .map(|(vs, &o)| {
                if vs.acl.is_empty() {
                    return Vec::new();
                }
                let same_list = o
                    .and_then(|o| old.get(o))
                    .is_some_and(|ovs| ovs.acl == vs.acl);
                match o.and_then(|o| old_hits.get_mut(o)) {
                    Some(hits) if same_list => std::mem::take(hits),
                    _ => vec![0; vs.acl.len() + 1],
                }
            })
            .collect();
    }

    /// Carries the traffic counters over to a new snapshot by identity (as IPVS keeps a
    /// destination's stats while it stays in the service).
    /// A removed real server's counters stay its service's (`TrafficKey::retired`), a removed
    /// service's the totals' (`TrafficKey::REMOVED_SERVICES`).
    ///
    /// `old_of`: each new service's index in the old snapshot. A service shared unchanged with the
    /// old snapshot (the same `Arc`: the control plane rebuilds only what a change touches) takes
    /// its counters over as one block; a changed one finds its servers by key. A worker commits
    /// every change here, not forwarding meanwhile: with 100,000 (service, real server) pairs a
    /// hash map of the old traffic, then a join of both snapshots' keys, were each a tenth of
    /// its time (perf/RESULTS.md, "A single change on a large table", "A change's stall on each
    /// worker").
    pub(super) fn remap_traffic(&mut self, new: &ServiceTable, old_of: &[Option<usize>]) {
        // The old snapshot's layout (`self.services` is replaced after this) and counters.
        let old_traffic = std::mem::take(&mut self.traffic);
        let old_base = self
            .traffic_base
            .starts(self.services.services.len())
            .to_vec();
        let mut starts = Vec::with_capacity(new.services.len());
        let old = &self.services.services;
        let block = |o: usize| -> &[Traffic] {
            let len = old.get(o).map_or(0, |ovs| ovs.svc.len());
            let at = old_base.get(o).map_or(0, |&b| b as usize);
            old_traffic.get(at..at + len).unwrap_or_default()
        };
        let mut carried = vec![false; old.len()];
        let total: usize = new.services.iter().map(|vs| vs.svc.len()).sum();
        self.traffic.reserve(total);
        for (vs, &o) in new.services.iter().zip(old_of) {
            starts.push(self.traffic.len() as u32);
            let start = self.traffic.len();
            self.traffic
                .resize(start + vs.svc.len(), Traffic::default());
            // `o` below `old.len()`, which is `carried`'s.
            let Some((o, ovs)) = o.and_then(|o| Some((o, old.get(o)?))) else {
                continue;
            };
            carried[o] = true;
            let from = block(o);
            if Arc::ptr_eq(&ovs.svc, &vs.svc) {
                self.traffic[start..start + from.len()].copy_from_slice(from);
                continue;
            }
            let c = vs.svc.config();
            for (r, t) in ovs.svc.reals().iter().zip(from) {
                match vs.svc.index_of(r.key()) {
                    Some(n) => self.traffic[start + n] = *t,
                    None => self
                        .retired_traffic
                        .entry(TrafficKey::retired(c.proto.number(), c.vip, c.vport))
                        .or_default()
                        .add(t),
                }
            }
        }
        self.traffic_base.set(&starts, old.len());
        let mut gone = Traffic::default();
        for (o, _) in carried.iter().enumerate().filter(|(_, &c)| !c) {
            for t in block(o) {
                gone.add(t);
            }
        }
        let live = |k: &TrafficKey| new.find_ip(k.vip, k.vport, k.proto).is_some();
        self.retired_traffic.retain(|k, t| {
            let keep = *k == TrafficKey::REMOVED_SERVICES || live(k);
            if !keep {
                gone.add(t);
            }
            keep
        });
        if gone != Traffic::default() {
            self.retired_traffic
                .entry(TrafficKey::REMOVED_SERVICES)
                .or_default()
                .add(&gone);
        }
    }
}

/// Has `table` (either family's) follow `remap`, counting in `stats` the walk it begins and the
/// one it had to finish first (`conn_rebinds`, `conn_rebinds_hurried`).
pub fn count_rebind<T: crate::conn::ConnKey>(
    stats: &mut crate::counters::FwdStats,
    remap: &ConnRemap,
    table: &mut crate::conn::Table<T>,
) {
    if let Some(hurried) = remap.apply(table) {
        stats.rebinds_hurried += u64::from(hurried);
        stats.rebinds += u64::from(table.rebinding());
    }
}

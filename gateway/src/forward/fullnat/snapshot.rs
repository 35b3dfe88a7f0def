//! The forwarder's side of a configuration change: a new service snapshot prepared (everything
//! that can fail: the local-address pools of new LIPs) and then committed, which carries the
//! connections, counters, limits and access-list hits over to the new snapshot by identity.

use super::*;

/// A service snapshot a worker has prepared to adopt (`Forwarder::prepare_services`): the
/// fallible part of the change is done, `commit_services` cannot fail.
pub struct PreparedServices {
    services: Arc<ServiceTable>,
    /// Per new service: the pool built for its new LIPs (None: kept from the old snapshot, or no
    /// LIPs).
    fresh_pools: Vec<Option<LaddrPool>>,
}

impl Forwarder {
    /// Adopts a new service snapshot. Existing connections keep forwarding (their entries hold every
    /// address they need); their service and real-server indices are remapped to the new snapshot by
    /// identity (VIP:port/protocol, RIP:port). A connection whose real server is gone is marked
    /// `NO_DEST`: its service's `expire_nodest_conn` decides at its next packet (IPVS semantics).
    pub fn set_services(&mut self, services: Arc<ServiceTable>) -> Result<(), String> {
        let prepared = self.prepare_services(services)?;
        self.commit_services(prepared);
        Ok(())
    }

    /// The old service index whose pool (per-LIP usage and cursors) service `vs` keeps: same
    /// VIP:port/protocol, same LIPs and same retiring ones.
    pub(super) fn kept_pool(&self, vs: &crate::forward::services::VirtualService) -> Option<usize> {
        self.same_service(vs).filter(|&i| {
            let old = &self.services.services[i];
            old.lips == vs.lips && old.retiring_lips == vs.retiring_lips
        })
    }

    /// The old index of service `vs` (same VIP:port/protocol), whatever its LIPs.
    fn same_service(&self, vs: &crate::forward::services::VirtualService) -> Option<usize> {
        let c = vs.svc.config();
        self.services
            .find_ip(c.vip, c.vport, c.proto.number())
            .map(|i| i as usize)
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
            });
        }
        let mut fresh = Vec::with_capacity(services.services.len());
        for vs in &services.services {
            if self.kept_pool(vs).is_some() || vs.lips.is_empty() {
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
        })
    }

    /// The second phase: adopts the prepared snapshot. Cannot fail.
    pub fn commit_services(&mut self, prepared: PreparedServices) {
        if Arc::ptr_eq(&prepared.services, &self.services) {
            // Same services: no connection to remap, no table to rebuild (a kernel route change
            // must not make every worker walk its connection table).
            return;
        }
        let PreparedServices {
            services,
            fresh_pools,
        } = prepared;
        self.remap_connections(&services);
        self.adopt_limits(&services);
        let kept: Vec<Option<usize>> = services
            .services
            .iter()
            .map(|vs| self.kept_pool(vs))
            .collect();
        // A pool rebuilt for changed LIPs goes on from the old one's counts, taken here and not
        // when it was prepared: the worker forwarded between the two.
        let mut fresh_pools = fresh_pools;
        for (vs, fresh) in services.services.iter().zip(&mut fresh_pools) {
            let old = self
                .same_service(vs)
                .and_then(|i| self.pools.get(i)?.as_ref());
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
            .map(|vs| {
                let c = vs.svc.config();
                let proto = c.proto.number();
                match self
                    .services
                    .find_ip(c.vip, c.vport, proto)
                    .and_then(|i| old_sched.get_mut(i as usize))
                {
                    Some(st) => {
                        let mut st = std::mem::replace(st, SchedState::Stateless);
                        st.sync(&vs.svc);
                        st
                    }
                    None => SchedState::new(&vs.svc),
                }
            })
            .collect();
        self.pools = pools;
        self.nat = NatIndex::new(&services, Some(&self.nat));
        self.remap_traffic(&services);
        self.remap_acl_hits(&services);
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
    }

    /// Adopts the new snapshot's per-client limits and counts the connections open under them
    /// (`limit`). After `remap_connections`: the entries carry the new service indices.
    pub(super) fn adopt_limits(&mut self, new: &ServiceTable) {
        let limits = new.services.iter().map(|vs| vs.limit).collect();
        let old: Vec<Option<usize>> = new
            .services
            .iter()
            .map(|vs| {
                let c = vs.svc.config();
                let o = self.services.find_ip(c.vip, c.vport, c.proto.number());
                o.map(|o| o as usize)
            })
            .collect();
        self.limits.adopt(limits, &old);
        // Parked entries and those of removed services have NO_DEST: gone already.
        let open = self
            .table
            .iter()
            .filter(|(_, c)| c.svc != NO_DEST && counted_open(c))
            .map(|(_, c)| (c.svc, c.client().src_ip().into()));
        self.limits.recount(open);
    }

    /// Carries each access list's counts over to a new snapshot where the service and its list
    /// are unchanged; a changed list counts from zero.
    pub(super) fn remap_acl_hits(&mut self, new: &ServiceTable) {
        let mut old: HashMap<SvcId, (Arc<[AclRule]>, Vec<u64>)> = HashMap::new();
        for (vs, hits) in self.services.services.iter().zip(self.acl_hits.drain(..)) {
            if !vs.acl.is_empty() {
                old.insert(svc_id(vs), (vs.acl.clone(), hits));
            }
        }
        self.acl_hits = new
            .services
            .iter()
            .map(|vs| match old.remove(&svc_id(vs)) {
                Some((rules, hits)) if rules == vs.acl => hits,
                _ if vs.acl.is_empty() => Vec::new(),
                _ => vec![0; vs.acl.len() + 1],
            })
            .collect();
    }

    /// Carries the traffic counters over to a new snapshot by identity (as IPVS keeps a
    /// destination's stats while it stays in the service).
    /// A removed real server's counters stay its service's (`TrafficKey::retired`), a removed
    /// service's the totals' (`TrafficKey::REMOVED_SERVICES`).
    ///
    /// The old snapshot's traffic, listed in key order, is joined with the new snapshot's keys
    /// sorted the same way, and the services still there are found in a set: a worker commits
    /// every change here, not forwarding meanwhile, and with 100,000 (service, real server)
    /// pairs a hash map of the old traffic made that a tenth of each change's time
    /// (perf/RESULTS.md, "A single change on a large table").
    pub(super) fn remap_traffic(&mut self, new: &ServiceTable) {
        // The old snapshot's order (`self.services` is replaced after this) and counters.
        let old_traffic = std::mem::take(&mut self.traffic);
        let old_order = Arc::clone(&self.services.traffic_order);
        let old = old_order
            .iter()
            .filter_map(|&(k, at)| Some((k, *old_traffic.get(at as usize)?)));
        let order = &new.traffic_order;
        self.traffic_base.clear();
        for vs in &new.services {
            self.traffic_base.push(self.traffic.len() as u32);
            self.traffic
                .resize(self.traffic.len() + vs.svc.len(), Traffic::default());
        }
        // Both in key order (`ServiceTable::traffic_order`, sorted by the control plane once for
        // every worker): each old entry goes to the new one with its key, if any.
        let mut gone_servers: Vec<(TrafficKey, Traffic)> = Vec::new();
        let mut next = 0;
        for (k, t) in old {
            while next < order.len() && order[next].0 < k {
                next += 1;
            }
            match order.get(next) {
                Some(&(n, at)) if n == k => {
                    self.traffic[at as usize] = t;
                    next += 1;
                }
                _ => gone_servers.push((k, t)),
            }
        }
        let live = |k: &TrafficKey| new.find_ip(k.vip, k.vport, k.proto).is_some();
        let mut gone = Traffic::default();
        self.retired_traffic.retain(|k, t| {
            let keep = *k == TrafficKey::REMOVED_SERVICES || live(k);
            if !keep {
                gone.add(t);
            }
            keep
        });
        for (k, t) in gone_servers {
            match live(&k) {
                true => self
                    .retired_traffic
                    .entry(TrafficKey::retired(k.proto, k.vip, k.vport))
                    .or_default()
                    .add(&t),
                false => gone.add(&t),
            }
        }
        if gone != Traffic::default() {
            self.retired_traffic
                .entry(TrafficKey::REMOVED_SERVICES)
                .or_default()
                .add(&gone);
        }
    }

    pub(super) fn remap_connections(&mut self, new: &ServiceTable) {
        let old = &self.services;
        if old.services.is_empty() || self.table.is_empty() {
            return;
        }
        crate::forward::services::ConnRemap::new(old, new).apply(&mut self.table);
    }
}

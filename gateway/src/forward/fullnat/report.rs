//! What the forwarder reports of its services for `gwctl`, `ipvsadm --stats` and `/metrics`:
//! traffic per (service, real server), local ports per (service, LIP), access-list and limit
//! counts per service.

use super::*;

impl Forwarder {
    /// Each service with an access list, and the connections each of its rules decided (the
    /// default last) on this worker.
    pub fn acl_entries(&self) -> impl Iterator<Item = (SvcId, &[u64])> + '_ {
        self.services
            .services
            .iter()
            .zip(&self.acl_hits)
            .filter(|(vs, _)| !vs.acl.is_empty())
            .map(|(vs, h)| (svc_id(vs), h.as_slice()))
    }

    /// Each service with a per-client limit, and its refusals `[rate, max_conns]` on this worker.
    pub fn limit_entries(&self) -> impl Iterator<Item = (SvcId, [u64; 2])> + '_ {
        self.limits
            .refusals()
            .filter_map(|(i, r)| Some((svc_id(self.services.services.get(i)?), r)))
    }

    /// Every (service, real server) and its traffic on this worker, then the retired traffic
    /// (`TrafficKey::retired`).
    pub fn traffic_entries(&self) -> impl Iterator<Item = (TrafficKey, Traffic)> + '_ {
        self.live_traffic()
            .chain(self.retired_traffic.iter().map(|(k, t)| (*k, *t)))
    }

    /// Every (service, real server) of the snapshot and its traffic on this worker, in key order.
    pub(super) fn live_traffic(&self) -> impl Iterator<Item = (TrafficKey, Traffic)> + '_ {
        self.services
            .traffic_order
            .iter()
            .filter_map(|&(k, at)| Some((k, *self.traffic.get(at as usize)?)))
    }

    /// Local ports in use per (service, LIP) on this worker.
    pub fn lip_usage(&self) -> impl Iterator<Item = (LipKey, u32)> + '_ {
        self.per_lip(|p| p.lip_usage().collect())
    }

    /// Port-allocation conflicts per (service, LIP) on this worker (`ipvsadm -G`'s CONFLICTS).
    pub fn lip_conflicts(&self) -> impl Iterator<Item = (LipKey, u64)> + '_ {
        self.per_lip(|p| p.conflicts().collect())
    }

    /// `of`'s figures for each LIP of each FullNAT service's pool, keyed by (service, LIP).
    pub(super) fn per_lip<T: 'static>(
        &self,
        of: impl Fn(&LaddrPool) -> Vec<(Ipv4Addr, T)> + Copy + 'static,
    ) -> impl Iterator<Item = (LipKey, T)> + '_ {
        self.services
            .services
            .iter()
            .zip(&self.pools)
            .filter_map(|(vs, p)| Some((vs, p.as_ref()?)))
            .flat_map(move |(vs, p)| {
                let c = vs.svc.config();
                let (proto, vip, vport) = (c.proto.number(), c.vip, c.vport);
                of(p).into_iter().map(move |(lip, n)| {
                    let key = LipKey {
                        proto,
                        vip,
                        vport,
                        lip: lip.into(),
                    };
                    (key, n)
                })
            })
    }

    /// Zeroes the traffic counters (`ipvsadm -Z`).
    pub fn zero_traffic(&mut self) {
        self.traffic
            .iter_mut()
            .for_each(|t| *t = Traffic::default());
        self.retired_traffic.clear();
    }
}

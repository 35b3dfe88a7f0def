//! The service snapshot: every virtual service with its real servers (as `service::Service`) and its
//! local addresses, plus the lookups the datapath makes per packet. Built by the control plane and
//! shared read-only (`Arc`) by every worker (DESIGN.md decision 8).

pub use super::addrs::AddrKind;
use super::addrs::AddrTable;
use crate::conn::Rebind;
use crate::service::{Service, ServiceConfig, ServiceError, TrafficKey};
use hashbrown::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// A virtual service as the datapath uses it.
#[derive(Debug)]
pub struct VirtualService {
    pub svc: Arc<Service>,
    /// Local addresses for FullNAT real servers.
    pub lips: Vec<Ipv4Addr>,
    /// Insert TOA (the client's address) into SYNs toward FullNAT real servers.
    pub toa: bool,
    /// A client's SYN its real server refused or left unanswered goes to another one, once
    /// (`syn_retry`, FullNAT and NAT).
    pub syn_retry: bool,
    /// A TCP packet other than a SYN without a connection starts one toward a DR or TUN real
    /// server (IPVS `sloppy_tcp`; `[[service]] sloppy_tcp`).
    pub sloppy_tcp: bool,
    /// Who may open connections (`acl`; empty: everyone).
    pub acl: Arc<[crate::forward::acl::AclRule]>,
    /// SYNs answered with cookies (`synproxy`, FullNAT and NAT).
    pub synproxy: crate::forward::synproxy::Mode,
    /// Per-client limits (`client_limit`; none: no limit).
    pub limit: Option<crate::forward::limit::ClientLimit>,
    /// Local addresses of an IPv6 service's FullNAT real servers (`inet6`).
    pub lips6: Vec<Ipv6Addr>,
    /// IPv4 local addresses removed from the service (`ipvsadm -Q`) while connections still
    /// used them: still the gateway's (ARP, replies) until those end, never handed out again.
    pub retiring_lips: Vec<Ipv4Addr>,
    /// The same for IPv6 local addresses (neighbour solicitations answered, replies taken).
    pub retiring_lips6: Vec<Ipv6Addr>,
}

/// What the datapath does for a service beyond scheduling (`[[service]]` keys `toa`, `syn_retry`,
/// `sloppy_tcp`, `acl`, `synproxy`, `client_limit`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SvcOptions {
    pub toa: bool,
    pub syn_retry: bool,
    pub sloppy_tcp: bool,
    pub acl: Arc<[crate::forward::acl::AclRule]>,
    pub synproxy: crate::forward::synproxy::Mode,
    pub limit: Option<crate::forward::limit::ClientLimit>,
    /// An IPv6 service's local addresses (the IPv4 ones are the `ServiceSpec`'s).
    pub lips6: Vec<Ipv6Addr>,
    /// Its retiring IPv4 local addresses ([`VirtualService::retiring_lips`]); the control plane
    /// sets them (`control::commit`), a configuration never does.
    pub retiring_lips: Vec<Ipv4Addr>,
    /// Its retiring IPv6 local addresses, set the same way.
    pub retiring_lips6: Vec<Ipv6Addr>,
}

impl Default for SvcOptions {
    fn default() -> Self {
        SvcOptions {
            toa: true,
            syn_retry: false,
            sloppy_tcp: false,
            acl: Arc::new([]),
            synproxy: Default::default(),
            limit: None,
            lips6: Vec::new(),
            retiring_lips: Vec::new(),
            retiring_lips6: Vec::new(),
        }
    }
}

/// A service as the control plane hands it to [`ServiceTable::new`]: its scheduling config, its
/// local addresses and its datapath options.
pub type ServiceSpec = (ServiceConfig, Vec<Ipv4Addr>, SvcOptions);

#[derive(Debug, Default)]
pub struct ServiceTable {
    pub generation: u64,
    pub services: Vec<VirtualService>,
    by_key: HashMap<(u32, u16, u8), u32>,
    /// Every VIP and LIP with what it is, so that a packet's destination is classified in one
    /// probe (issue 16).
    addrs: AddrTable,
    /// IPv6 services by (VIP, vport, protocol): apart from the IPv4 ones so that the IPv4
    /// lookups stay one probe of a small key.
    by_key6: HashMap<(Ipv6Addr, u16, u8), u32>,
    /// Every IPv6 VIP and LIP with what it is (`vip`, `lip`), as `addrs` for IPv4.
    addrs6: AddrTable<Ipv6Addr>,
    /// Addresses of IPv6 NAT real servers (their replies come back through the gateway), and
    /// whether each service has one.
    nat_reals6: hashbrown::HashSet<Ipv6Addr>,
    nat6: Vec<bool>,
    /// Whether any IPv6 service has IPv4 local addresses (NAT64): IPv4 replies to them are
    /// translated back to IPv6 (`inet6::nat64`); `addrs` says which they are.
    any_lip64: bool,
    /// Each (service, real server) with its place in a worker's traffic counters (the services'
    /// real servers in table order, `Forwarder::traffic`), in key order: a worker's publishing
    /// lists its traffic in order without sorting it (`report::live_traffic`; sorting 100,000
    /// keys there took an idle worker a tenth of its time: perf/RESULTS.md, "Traffic listed in
    /// key order"). Sorted once a snapshot here, by the control plane, where every worker sorted
    /// it at its commit, not forwarding meanwhile ("A single change on a large table").
    pub traffic_order: Arc<Vec<(TrafficKey, u32)>>,
}

/// The traffic key of real server `rs` of `vs`.
pub fn traffic_key(vs: &VirtualService, rs: usize) -> Option<TrafficKey> {
    let c = vs.svc.config();
    let r = vs.svc.reals().get(rs)?;
    Some(TrafficKey {
        proto: c.proto.number(),
        vip: c.vip,
        vport: c.vport,
        rip: r.addr,
        rport: r.port,
    })
}

impl ServiceTable {
    /// Builds a snapshot from service configs, carrying shared state (counts, persistence) over from
    /// `prev` where the same service existed.
    pub fn new(
        generation: u64,
        configs: Vec<ServiceSpec>,
        prev: Option<&ServiceTable>,
    ) -> Result<ServiceTable, ServiceError> {
        // Connection entries hold the service index in 16 bits (u16::MAX marks a removed one).
        if configs.len() >= usize::from(u16::MAX) {
            return Err(ServiceError::TooManyServices(configs.len()));
        }
        let mut t = ServiceTable {
            generation,
            ..Default::default()
        };
        // A NAT server removed from its service keeps its connections' replies coming back
        // through us, as IPv4's (`nat::NatIndex::new` says why).
        if let Some(p) = prev {
            t.nat_reals6.extend(p.nat_reals6.iter().copied());
        }
        let mut addrs = Vec::new();
        let mut addrs6 = Vec::new();
        for (cfg, lips, opts) in configs {
            let old = prev
                .and_then(|p| p.find_ip(cfg.vip, cfg.vport, cfg.proto.number()))
                .map(|i| &prev.unwrap().services[i as usize].svc);
            let index = t.services.len() as u32;
            match cfg.vip {
                IpAddr::V4(vip) => {
                    let key = (u32::from(vip), cfg.vport, cfg.proto.number());
                    t.by_key.insert(key, index);
                    addrs.push((
                        vip,
                        AddrKind {
                            vip: true,
                            ..Default::default()
                        },
                    ));
                }
                IpAddr::V6(vip) => {
                    t.by_key6
                        .insert((vip, cfg.vport, cfg.proto.number()), index);
                    let kind = AddrKind {
                        vip: true,
                        ..Default::default()
                    };
                    addrs6.push((vip, kind));
                }
            }
            let lip64 = cfg.vip.is_ipv6();
            t.any_lip64 |= lip64 && !lips.is_empty();
            addrs.extend(lips.iter().chain(&opts.retiring_lips).map(|&l| {
                let kind = AddrKind {
                    lip: true,
                    lip64,
                    ..Default::default()
                };
                (l, kind)
            }));
            let lip = AddrKind {
                lip: true,
                ..Default::default()
            };
            addrs6.extend(
                opts.lips6
                    .iter()
                    .chain(&opts.retiring_lips6)
                    .map(|&l| (l, lip)),
            );
            let mut nat = false;
            for r in cfg
                .reals
                .iter()
                .filter(|r| r.fwd == crate::service::FwdMode::Nat)
            {
                if let IpAddr::V6(a) = r.addr {
                    t.nat_reals6.insert(a);
                    nat = true;
                }
            }
            t.nat6.push(nat);
            // Copy-on-write per service: an unchanged service is the same object in the next
            // generation (its Maglev or lblc tables, wrr sequence, counters and persistence are not
            // rebuilt or copied), so a change costs what it changes.
            let svc = match old {
                Some(o) if *o.config() == cfg => Arc::clone(o),
                _ => Arc::new(Service::new(cfg, old.map(|o| &**o))?),
            };
            t.services.push(VirtualService {
                svc,
                lips,
                toa: opts.toa,
                syn_retry: opts.syn_retry,
                sloppy_tcp: opts.sloppy_tcp,
                acl: opts.acl,
                synproxy: opts.synproxy,
                limit: opts.limit,
                lips6: opts.lips6,
                retiring_lips: opts.retiring_lips,
                retiring_lips6: opts.retiring_lips6,
            });
        }
        t.addrs = AddrTable::new(addrs);
        t.addrs6 = AddrTable::new(addrs6);
        let mut order = Vec::new();
        let mut at = 0u32;
        for vs in &t.services {
            for i in 0..vs.svc.len() {
                if let Some(k) = traffic_key(vs, i) {
                    order.push((k, at));
                }
                at += 1;
            }
        }
        order.sort_unstable_by_key(|&(k, _)| k);
        t.traffic_order = Arc::new(order);
        Ok(t)
    }

    /// The service index for (VIP, vport, protocol number).
    #[inline]
    pub fn find(&self, vip: Ipv4Addr, vport: u16, proto: u8) -> Option<u32> {
        self.by_key.get(&(u32::from(vip), vport, proto)).copied()
    }

    /// The service index for (VIP, vport, protocol number), of either family (the control plane's
    /// lookup; the datapath's are `find` and `find6`).
    pub fn find_ip(&self, vip: IpAddr, vport: u16, proto: u8) -> Option<u32> {
        match vip {
            IpAddr::V4(a) => self.find(a, vport, proto),
            IpAddr::V6(a) => self.find6(a, vport, proto),
        }
    }

    /// Each service of `new`'s index here (same VIP:port/protocol), if it is here: where a change
    /// carries per-service state over from this snapshot to `new`.
    pub fn old_indices(&self, new: &ServiceTable) -> Vec<Option<usize>> {
        new.services
            .iter()
            .map(|vs| {
                let c = vs.svc.config();
                self.find_ip(c.vip, c.vport, c.proto.number())
                    .map(|i| i as usize)
            })
            .collect()
    }

    /// The IPv6 services, in no particular order: a walk of IPv6's state need not visit every
    /// IPv4 service (10,000 of them, each a pointer to follow, every 100 ms: perf/RESULTS.md,
    /// "Counters read without the traffic lists").
    pub fn services6(&self) -> impl Iterator<Item = &VirtualService> + '_ {
        self.by_key6
            .values()
            .filter_map(|&i| self.services.get(i as usize))
    }

    /// The service index for an IPv6 (VIP, vport, protocol number).
    #[inline]
    pub fn find6(&self, vip: Ipv6Addr, vport: u16, proto: u8) -> Option<u32> {
        self.by_key6.get(&(vip, vport, proto)).copied()
    }

    /// Whether `ip` is an IPv4 local address of an IPv6 service (NAT64). One branch when no
    /// service uses NAT64.
    #[inline]
    pub fn is_lip64(&self, ip: Ipv4Addr) -> bool {
        self.any_lip64 && self.addrs.kind(ip).lip64
    }

    /// Whether `ip` is an IPv6 NAT real server's address (a packet from it to a client may be a
    /// reply the gateway must translate).
    #[inline]
    pub fn is_nat_real6(&self, ip: Ipv6Addr) -> bool {
        !self.nat_reals6.is_empty() && self.nat_reals6.contains(&ip)
    }

    /// Whether IPv6 service `si` has a NAT real server (its connections live with
    /// `owner::owner_of_client6`).
    #[inline]
    pub fn service_has_nat6(&self, si: u32) -> bool {
        self.nat6.get(si as usize).copied().unwrap_or(false)
    }

    /// Whether `ip` is an IPv6 local address (FullNAT replies come to it).
    #[inline]
    pub fn is_lip6(&self, ip: Ipv6Addr) -> bool {
        self.addrs6.kind(ip).lip
    }

    /// What the IPv6 address `ip` is, in one probe (`vip`, `lip`; never `lip64`).
    #[inline]
    pub fn kind6(&self, ip: Ipv6Addr) -> AddrKind {
        self.addrs6.kind(ip)
    }

    /// Every IPv6 VIP and LIP: addresses the gateway answers neighbour solicitations for.
    pub fn addresses6(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        self.addrs6.addresses()
    }

    /// Whether `ip` is a VIP, a LIP, or neither (both false), in one probe.
    #[inline]
    pub fn kind(&self, ip: Ipv4Addr) -> AddrKind {
        self.addrs.kind(ip)
    }

    /// Every VIP and LIP: addresses the gateway answers ARP for.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.addrs.addresses()
    }
}

/// A connection's service or real server that the current snapshot no longer has.
pub const NO_DEST: u16 = crate::conn::NO_INDEX;

/// Where the connections of one snapshot find their service and real server in the next: old
/// (service, real server) indices to new ones, by identity (VIP, port, protocol; address and
/// port), [`NO_DEST`] for what is gone. Shared by both connection tables, which follow it lazily
/// (`conn::rebind`). A service the next snapshot shares unchanged (the same object:
/// copy-on-write) keeps its real servers' indices (`None`): every worker builds this at each
/// commit, not forwarding meanwhile, and looking up 100,000 real servers that did not change was
/// a fifth of a commit's time (perf/RESULTS.md, "A single change on a large table").
pub struct ConnRemap {
    map: Arc<Rebind>,
    /// Every old index is the new one: no service removed or moved, no real server of one removed
    /// or moved (services added after the others, servers appended, options or weights changed).
    /// Then no connection changes and the tables are not walked.
    identity: bool,
}

impl ConnRemap {
    pub fn new(old: &ServiceTable, new: &ServiceTable) -> ConnRemap {
        ConnRemap::with_old_indices(old, new, &old.old_indices(new))
    }

    /// As [`ConnRemap::new`], with each new service's index in `old` already found (`old_of`,
    /// [`ServiceTable::old_indices`], as a worker's commit finds them once for every step). An
    /// index out of either table's range counts as not found.
    pub fn with_old_indices(
        old: &ServiceTable,
        new: &ServiceTable,
        old_of: &[Option<usize>],
    ) -> ConnRemap {
        let mut new_of: Vec<Option<usize>> = vec![None; old.services.len()];
        debug_assert_eq!(old_of.len(), new.services.len());
        for (ni, &o) in old_of.iter().enumerate().take(new.services.len()) {
            if let Some(slot) = o.and_then(|o| new_of.get_mut(o)) {
                *slot = Some(ni);
            }
        }
        let map: Vec<(u16, Option<Vec<u16>>)> = old
            .services
            .iter()
            .zip(new_of)
            .map(|(ovs, ni)| match ni {
                Some(ni) => {
                    let nsvc = &new.services[ni].svc;
                    if Arc::ptr_eq(nsvc, &ovs.svc) {
                        return (ni as u16, None);
                    }
                    let reals = ovs
                        .svc
                        .reals()
                        .iter()
                        .map(|r| nsvc.index_of(r.key()).map_or(NO_DEST, |i| i as u16))
                        .collect();
                    (ni as u16, Some(reals))
                }
                None => (NO_DEST, Some(vec![NO_DEST; ovs.svc.len()])),
            })
            .collect();
        let map = Rebind::new(map);
        let identity = map.is_identity();
        ConnRemap {
            map: Arc::new(map),
            identity,
        }
    }

    /// Has the entries of `table` whose service or real server moved or went follow the change:
    /// at once where they are handed out, the rest by the table's walk between bursts
    /// (`Table::rebind_step`). Returns `None` for a change that moves nothing, which leaves the
    /// table alone, else whether the walk of the changes still pending had to be finished first
    /// (`Table::begin_rebind`).
    pub fn apply<T: crate::conn::ConnKey>(
        &self,
        table: &mut crate::conn::Table<T>,
    ) -> Option<bool> {
        (!self.identity).then(|| table.begin_rebind(Arc::clone(&self.map)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{Proto, RealServer, SchedKind};

    fn svc(last: u8, sched: SchedKind, weight: u32) -> ServiceSpec {
        let mut c = ServiceConfig::new(Ipv4Addr::new(10, 10, 1, last), 80, Proto::Tcp, sched);
        for i in 0..10u8 {
            let w = if i == 0 { weight } else { 1 };
            c.reals
                .push(RealServer::new(Ipv4Addr::new(10, 20, 0, 11 + i), 80, w));
        }
        (c, Vec::new(), SvcOptions::default())
    }

    /// Connections follow their service and real server into the next snapshot: of a service
    /// shared unchanged, to its new place with the same real server; of a changed one, to the
    /// real server's new index; of a removed server or service, to `NO_DEST`.
    #[test]
    fn connections_follow_their_service_and_real_server_into_the_next_snapshot() {
        use crate::conn::{Table, Timeouts, Tuple};
        let old = ServiceTable::new(
            1,
            vec![
                svc(1, SchedKind::Rr, 1),
                svc(2, SchedKind::Rr, 1),
                svc(3, SchedKind::Rr, 1),
            ],
            None,
        )
        .unwrap();
        // Service 1 unchanged but moved after a new one; service 2 loses its first real server;
        // service 3 goes.
        let mut two = svc(2, SchedKind::Rr, 1);
        two.0.reals.remove(0);
        let new = ServiceTable::new(
            2,
            vec![svc(9, SchedKind::Rr, 1), svc(1, SchedKind::Rr, 1), two],
            Some(&old),
        )
        .unwrap();
        assert!(Arc::ptr_eq(&old.services[0].svc, &new.services[1].svc));
        let mut table: Table<Tuple> = Table::new(64, Timeouts::default());
        let conn = |table: &mut Table<Tuple>, port: u16, svc: u16, rs: u16| {
            let t = Tuple::new(
                Ipv4Addr::new(10, 0, 0, 1),
                port,
                Ipv4Addr::new(10, 10, 1, 1),
                80,
                6,
            );
            table
                .insert(t, None, svc, rs, 0, crate::conn::Ticks(0))
                .unwrap()
        };
        let a = conn(&mut table, 1000, 0, 3);
        let b = conn(&mut table, 1001, 1, 4);
        let b_removed = conn(&mut table, 1002, 1, 0);
        let c = conn(&mut table, 1003, 2, 5);
        ConnRemap::new(&old, &new).apply(&mut table);
        let at = |id| {
            let e = table.get(id).unwrap();
            (e.svc, e.rs)
        };
        assert_eq!(
            at(a),
            (1, 3),
            "a shared service's connection keeps its real server"
        );
        assert_eq!(
            at(b),
            (2, 3),
            "the real server's index in the changed service"
        );
        assert_eq!(at(b_removed), (2, NO_DEST));
        assert_eq!(at(c), (NO_DEST, NO_DEST));
    }

    /// A change that moves or removes nothing (a service added after the others, a real server
    /// appended, a weight changed) leaves every index as it was, and the tables unwalked; one that
    /// removes a last real server or a last service does not.
    #[test]
    fn a_change_that_moves_nothing_remaps_nothing() {
        let specs = || vec![svc(1, SchedKind::Rr, 1), svc(2, SchedKind::Rr, 1)];
        let old = ServiceTable::new(1, specs(), None).unwrap();
        let mut grown = specs();
        grown[0].0.reals[3].weight = 7;
        grown[1]
            .0
            .reals
            .push(RealServer::new(Ipv4Addr::new(10, 20, 0, 99), 80, 1));
        grown.push(svc(3, SchedKind::Rr, 1));
        let new = ServiceTable::new(2, grown, Some(&old)).unwrap();
        assert!(ConnRemap::new(&old, &new).identity);
        let mut fewer = specs();
        fewer[1].0.reals.pop();
        let new = ServiceTable::new(2, fewer, Some(&old)).unwrap();
        assert!(!ConnRemap::new(&old, &new).identity);
        let new = ServiceTable::new(2, specs()[..1].to_vec(), Some(&old)).unwrap();
        assert!(!ConnRemap::new(&old, &new).identity);
    }

    /// Editing one service rebuilds that service only: every other one is the same object, with
    /// the same Maglev table, in the next generation.
    #[test]
    fn an_unchanged_service_is_shared_between_generations() {
        let one = |w| {
            vec![
                svc(1, SchedKind::Mh, 1),
                svc(2, SchedKind::Mh, w),
                svc(3, SchedKind::Rr, 1),
            ]
        };
        let a = ServiceTable::new(1, one(1), None).unwrap();
        let b = ServiceTable::new(2, one(5), Some(&a)).unwrap();
        assert!(Arc::ptr_eq(&a.services[0].svc, &b.services[0].svc));
        assert!(Arc::ptr_eq(&a.services[2].svc, &b.services[2].svc));
        assert!(!Arc::ptr_eq(&a.services[1].svc, &b.services[1].svc));
        assert_eq!(b.services[1].svc.weights()[0], 5);
        // A table without the change at all: everything shared.
        let c = ServiceTable::new(3, one(5), Some(&b)).unwrap();
        for i in 0..3 {
            assert!(Arc::ptr_eq(&b.services[i].svc, &c.services[i].svc));
        }
    }
}

//! The service snapshot: every virtual service with its real servers (as `service::Service`) and its
//! local addresses, plus the lookups the datapath makes per packet. Built by the control plane and
//! shared read-only (`Arc`) by every worker (DESIGN.md decision 8).

use crate::service::{Service, ServiceConfig, ServiceError};
use hashbrown::HashMap;
use std::net::Ipv4Addr;
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
    addrs: HashMap<Ipv4Addr, AddrKind>,
}

/// What a service address is: a VIP, a LIP, or both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddrKind {
    pub vip: bool,
    pub lip: bool,
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
        for (cfg, lips, opts) in configs {
            let old = prev
                .and_then(|p| p.find(cfg.vip, cfg.vport, cfg.proto.number()))
                .map(|i| &prev.unwrap().services[i as usize].svc);
            let key = (u32::from(cfg.vip), cfg.vport, cfg.proto.number());
            t.addrs.entry(cfg.vip).or_default().vip = true;
            for &l in &lips {
                t.addrs.entry(l).or_default().lip = true;
            }
            // Copy-on-write per service: an unchanged service is the same object in the next
            // generation (its Maglev or lblc tables, wrr sequence, counters and persistence are not
            // rebuilt or copied), so a change costs what it changes.
            let svc = match old {
                Some(o) if *o.config() == cfg => Arc::clone(o),
                _ => Arc::new(Service::new(cfg, old.map(|o| &**o))?),
            };
            t.by_key.insert(key, t.services.len() as u32);
            t.services.push(VirtualService {
                svc,
                lips,
                toa: opts.toa,
                syn_retry: opts.syn_retry,
                sloppy_tcp: opts.sloppy_tcp,
                acl: opts.acl,
                synproxy: opts.synproxy,
                limit: opts.limit,
            });
        }
        Ok(t)
    }

    /// The service index for (VIP, vport, protocol number).
    #[inline]
    pub fn find(&self, vip: Ipv4Addr, vport: u16, proto: u8) -> Option<u32> {
        self.by_key.get(&(u32::from(vip), vport, proto)).copied()
    }

    /// Whether `ip` is a VIP, a LIP, or neither (both false), in one probe.
    #[inline]
    pub fn kind(&self, ip: Ipv4Addr) -> AddrKind {
        self.addrs.get(&ip).copied().unwrap_or_default()
    }

    /// Every VIP and LIP: addresses the gateway answers ARP for.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.addrs.keys().copied()
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

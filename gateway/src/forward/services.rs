//! The service snapshot: every virtual service with its real servers (as `service::Service`) and its
//! local addresses, plus the lookups the datapath makes per packet. Built by the control plane and
//! shared read-only (`Arc`) by every worker (DESIGN.md decision 8).

use crate::service::{Service, ServiceConfig, ServiceError};
use hashbrown::{HashMap, HashSet};
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
}

#[derive(Debug, Default)]
pub struct ServiceTable {
    pub generation: u64,
    pub services: Vec<VirtualService>,
    by_key: HashMap<(u32, u16, u8), u32>,
    vips: HashSet<Ipv4Addr>,
    lips: HashSet<Ipv4Addr>,
}

impl ServiceTable {
    /// Builds a snapshot from service configs, carrying shared state (counts, persistence) over from
    /// `prev` where the same service existed.
    pub fn new(
        generation: u64,
        configs: Vec<(ServiceConfig, Vec<Ipv4Addr>, bool)>,
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
        for (cfg, lips, toa) in configs {
            let old = prev
                .and_then(|p| p.find(cfg.vip, cfg.vport, cfg.proto.number()))
                .map(|i| &*prev.unwrap().services[i as usize].svc);
            let key = (u32::from(cfg.vip), cfg.vport, cfg.proto.number());
            t.vips.insert(cfg.vip);
            t.lips.extend(lips.iter().copied());
            let svc = Arc::new(Service::new(cfg, old)?);
            t.by_key.insert(key, t.services.len() as u32);
            t.services.push(VirtualService { svc, lips, toa });
        }
        Ok(t)
    }

    /// The service index for (VIP, vport, protocol number).
    #[inline]
    pub fn find(&self, vip: Ipv4Addr, vport: u16, proto: u8) -> Option<u32> {
        self.by_key.get(&(u32::from(vip), vport, proto)).copied()
    }

    #[inline]
    pub fn is_vip(&self, ip: Ipv4Addr) -> bool {
        self.vips.contains(&ip)
    }

    #[inline]
    pub fn is_lip(&self, ip: Ipv4Addr) -> bool {
        self.lips.contains(&ip)
    }

    /// Every VIP and LIP: addresses the gateway answers ARP for.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.vips.iter().chain(self.lips.iter()).copied()
    }
}

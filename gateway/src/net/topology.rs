//! The ports, addresses and routes the workers run with: built by the control plane
//! (`control::topology`), shared read-only by every worker (`Arc<Topology>`).

use super::{Ipv4Cidr, RouteTable};
use crate::wire::MacAddr;
use hashbrown::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A port as the datapath sees it.
#[derive(Clone, Debug)]
pub struct PortCtx {
    pub name: String,
    pub mac: MacAddr,
    pub addrs: Vec<Ipv4Cidr>,
    /// IPv6 addresses (`inet6`), besides the link-local one every port has.
    pub addrs6: Vec<super::Ipv6Cidr>,
    /// The port has a kernel twin: what the datapath does not consume goes up to it (`punt`).
    pub twin: bool,
}

/// Interfaces, addresses and routes: built by the control plane, shared read-only by all workers.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    pub ports: Vec<PortCtx>,
    pub routes: RouteTable,
    /// Every address the gateway answers ARP and ping for: interface addresses, and the VIPs and
    /// LIPs it holds (config-owned ones always, kernel-owned ones while on a twin).
    pub local: HashSet<Ipv4Addr>,
    /// The interface addresses alone: traffic to them other than pings goes up to the twin.
    pub iface: HashSet<Ipv4Addr>,
    /// Directed broadcast addresses of the port subnets (punted as broadcast).
    pub bcast: HashSet<Ipv4Addr>,
    /// IPv6 routes (`route6`).
    pub routes6: super::route6::Routes6,
    /// IPv6 VIPs and LIPs of `owner = "kernel"` services that no twin holds: neither answered in
    /// neighbour discovery nor opened connections to (`inet6`); another box serves them.
    pub silent6: HashSet<Ipv6Addr>,
}

impl Topology {
    /// Builds the topology: connected routes from the port addresses, then the static routes.
    pub fn new(ports: Vec<PortCtx>, routes: &[(Ipv4Cidr, Option<Ipv4Addr>, usize)]) -> Topology {
        let mut t = Topology {
            ports,
            ..Default::default()
        };
        for (i, p) in t.ports.iter().enumerate() {
            for a in &p.addrs {
                t.routes.add_connected(*a, i as u16);
                t.local.insert(a.addr);
                t.iface.insert(a.addr);
                if a.len < 31 {
                    t.bcast
                        .insert(Ipv4Addr::from(u32::from(a.addr) | !a.mask()));
                }
            }
        }
        for (prefix, via, port) in routes {
            t.routes.add(
                *prefix,
                super::NextHop {
                    port: *port as u16,
                    via: *via,
                },
            );
        }
        t
    }

    /// Whether `a` is one of the ports' IPv6 addresses, or a port's link-local address.
    pub fn owns6(&self, a: std::net::Ipv6Addr) -> bool {
        self.ports
            .iter()
            .any(|p| p.addrs6.iter().any(|c| c.addr == a) || link_local(p.mac) == a)
    }

    /// Whether `a` is `port`'s IPv6 address or its link-local one (answered in neighbour
    /// discovery on that port).
    pub fn owns6_on(&self, port: u16, a: std::net::Ipv6Addr) -> bool {
        self.ports
            .get(port as usize)
            .is_some_and(|p| p.addrs6.iter().any(|c| c.addr == a) || link_local(p.mac) == a)
    }

    /// The source of packets we originate on `port` toward IPv6 `dst`: the port's address on
    /// dst's prefix, else its first one, else its link-local one.
    pub fn source6_for(&self, port: u16, dst: std::net::Ipv6Addr) -> Option<std::net::Ipv6Addr> {
        let p = self.ports.get(port as usize)?;
        Some(
            p.addrs6
                .iter()
                .find(|c| c.contains(dst))
                .or(p.addrs6.first())
                .map_or_else(|| link_local(p.mac), |c| c.addr),
        )
    }

    /// The address to use as source for packets we originate on `port` toward `dst`: the port address
    /// on dst's subnet, else the port's first address.
    pub fn source_for(&self, port: u16, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        let p = self.ports.get(port as usize)?;
        p.addrs
            .iter()
            .find(|c| c.contains(dst))
            .or(p.addrs.first())
            .map(|c| c.addr)
    }
}

/// The link-local address of a port with MAC `mac`: fe80::/64 and the modified EUI-64 interface
/// identifier (RFC 4291 appendix A; RFC 2464 4), as Linux gives an Ethernet interface.
pub fn link_local(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

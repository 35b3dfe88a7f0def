//! The IPv6 routing table: the ports' connected prefixes and the config's IPv6 `[[route]]`s, longest
//! prefix first. A linear scan: a balancer has a handful of IPv6 routes, and the lookup happens
//! once per new connection's next hop resolution, not per packet of an established one (the
//! neighbour table's entry carries the port).

use crate::datapath::PortCtx;
use crate::net::Ipv6Cidr;
use std::net::Ipv6Addr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route6 {
    pub prefix: Ipv6Cidr,
    /// The next hop; None for a connected prefix (the destination is on the link).
    pub via: Option<Ipv6Addr>,
    pub port: u16,
}

impl Route6 {
    /// The neighbour a packet to `dst` goes to: the next hop, or `dst` itself on the link.
    pub fn l2_target(&self, dst: Ipv6Addr) -> Ipv6Addr {
        self.via.unwrap_or(dst)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes6 {
    routes: Vec<Route6>,
}

impl Routes6 {
    /// The connected prefixes of `ports`' IPv6 addresses, then `statics` (prefix, via, port).
    pub fn new(ports: &[PortCtx], statics: &[(Ipv6Cidr, Option<Ipv6Addr>, usize)]) -> Routes6 {
        let mut routes = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            for a in &p.addrs6 {
                let prefix = Ipv6Cidr {
                    addr: a.network(),
                    len: a.len,
                };
                routes.push(Route6 {
                    prefix,
                    via: None,
                    port: i as u16,
                });
            }
        }
        for &(prefix, via, port) in statics {
            routes.push(Route6 {
                prefix,
                via,
                port: port as u16,
            });
        }
        // Longest first; a connected route before a static one of the same length (stable sort).
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len));
        Routes6 { routes }
    }

    pub fn lookup(&self, dst: Ipv6Addr) -> Option<&Route6> {
        self.routes.iter().find(|r| r.prefix.contains(dst))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route6> + '_ {
        self.routes.iter()
    }
}

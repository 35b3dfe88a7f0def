//! The kernel's L3 state on the twins, as the gateway mirrors it (VPP `lcp_router.c`): addresses
//! per twin, main-table routes through a twin, and neighbours on twins, of both families. Pure: `netlink.rs`
//! feeds it [`KernelEvent`]s already translated from ifindex to port index (events about other
//! interfaces never get here), and the control plane reads it to build a generation.

use crate::net::{Ipv4Cidr, Ipv6Cidr};
use crate::wire::MacAddr;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One change the kernel reported (or one entry of a dump), about twin `port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelEvent {
    /// RTM_NEWADDR / RTM_DELADDR.
    Addr {
        port: u16,
        cidr: Ipv4Cidr,
        add: bool,
    },
    /// RTM_NEWADDR / RTM_DELADDR of an IPv6 address (link-local ones included: the view keeps
    /// them for `holds`, and `addresses6_of` leaves them out).
    Addr6 {
        port: u16,
        addr: Ipv6Addr,
        len: u8,
        add: bool,
    },
    /// RTM_NEWROUTE / RTM_DELROUTE in the main table; `metric` is RTA_PRIORITY (routes to one
    /// prefix with different metrics coexist; the lowest wins).
    Route {
        port: u16,
        prefix: Ipv4Cidr,
        via: Option<Ipv4Addr>,
        metric: u32,
        add: bool,
    },
    /// RTM_NEWROUTE of `prefix` and `metric` through an interface that is not a twin: the route
    /// through a twin it replaced (if any) is gone.
    RouteElsewhere { prefix: Ipv4Cidr, metric: u32 },
    /// RTM_NEWROUTE / RTM_DELROUTE of an IPv6 route in the main table, as `Route`.
    Route6 {
        port: u16,
        prefix: Ipv6Cidr,
        via: Option<Ipv6Addr>,
        metric: u32,
        add: bool,
    },
    /// An IPv6 route of `prefix` and `metric` now through an interface that is not a twin.
    RouteElsewhere6 { prefix: Ipv6Cidr, metric: u32 },
    /// RTM_NEWNEIGH with a link-layer address in a usable state (Some), or RTM_DELNEIGH and
    /// unusable states (None); ARP's and neighbour discovery's.
    Neigh {
        port: u16,
        ip: IpAddr,
        mac: Option<MacAddr>,
    },
}

/// A route as the kernel has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelRoute {
    pub prefix: Ipv4Cidr,
    pub via: Option<Ipv4Addr>,
    pub port: u16,
    pub metric: u32,
}

/// An IPv6 route as the kernel has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelRoute6 {
    pub prefix: Ipv6Cidr,
    pub via: Option<Ipv6Addr>,
    pub port: u16,
    pub metric: u32,
}

/// What the kernel has on the twins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelView {
    /// (port, address with prefix length).
    addrs: BTreeSet<(u16, u32, u8)>,
    /// (port, IPv6 address, prefix length).
    addrs6: BTreeSet<(u16, u128, u8)>,
    /// (network, length, metric) -> (via, port).
    routes: BTreeMap<(u32, u8, u32), (Option<Ipv4Addr>, u16)>,
    /// (network, length, metric) -> (via, port).
    routes6: BTreeMap<(u128, u8, u32), (Option<Ipv6Addr>, u16)>,
    neighs: BTreeMap<IpAddr, (u16, MacAddr)>,
}

impl KernelView {
    /// Applies one event; returns whether the view changed. A neighbour change is returned too,
    /// for the workers (`KernelView::neighbours` has the whole table).
    pub fn apply(&mut self, e: KernelEvent) -> bool {
        match e {
            KernelEvent::Addr { port, cidr, add } => {
                let k = (port, u32::from(cidr.addr), cidr.len);
                if add {
                    self.addrs.insert(k)
                } else {
                    self.addrs.remove(&k)
                }
            }
            KernelEvent::Addr6 {
                port,
                addr,
                len,
                add,
            } => {
                let k = (port, u128::from(addr), len);
                if add {
                    self.addrs6.insert(k)
                } else {
                    self.addrs6.remove(&k)
                }
            }
            KernelEvent::Route {
                port,
                prefix,
                via,
                metric,
                add,
            } => {
                let k = (u32::from(prefix.network()), prefix.len, metric);
                route_change(&mut self.routes, k, via, port, add)
            }
            KernelEvent::RouteElsewhere { prefix, metric } => self
                .routes
                .remove(&(u32::from(prefix.network()), prefix.len, metric))
                .is_some(),
            KernelEvent::Route6 {
                port,
                prefix,
                via,
                metric,
                add,
            } => {
                let k = (u128::from(prefix.network()), prefix.len, metric);
                route_change(&mut self.routes6, k, via, port, add)
            }
            KernelEvent::RouteElsewhere6 { prefix, metric } => self
                .routes6
                .remove(&(u128::from(prefix.network()), prefix.len, metric))
                .is_some(),
            KernelEvent::Neigh { port, ip, mac } => match mac {
                Some(mac) => self.neighs.insert(ip, (port, mac)) != Some((port, mac)),
                None => self.neighs.remove(&ip).is_some(),
            },
        }
    }

    /// Addresses on twin `port`.
    pub fn addresses_of(&self, port: u16) -> impl Iterator<Item = Ipv4Cidr> + '_ {
        self.addrs
            .range((port, 0, 0)..=(port, u32::MAX, u8::MAX))
            .map(|&(_, a, len)| Ipv4Cidr {
                addr: Ipv4Addr::from(a),
                len,
            })
    }

    /// The global IPv6 addresses on twin `port` (not link-local: every port answers for its own,
    /// `net::topology::link_local`).
    pub fn addresses6_of(&self, port: u16) -> impl Iterator<Item = Ipv6Cidr> + '_ {
        self.addrs6
            .range((port, 0, 0)..=(port, u128::MAX, u8::MAX))
            .map(|&(_, a, len)| Ipv6Cidr {
                addr: Ipv6Addr::from(a),
                len,
            })
            .filter(|c| !c.addr.is_unicast_link_local() && !c.addr.is_multicast())
    }

    /// Every address on any twin.
    pub fn addresses(&self) -> impl Iterator<Item = (u16, Ipv4Cidr)> + '_ {
        self.addrs.iter().map(|&(p, a, len)| {
            (
                p,
                Ipv4Cidr {
                    addr: Ipv4Addr::from(a),
                    len,
                },
            )
        })
    }

    /// Whether `ip` (either family) is an address on some twin.
    pub fn holds(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(ip) => {
                let a = u32::from(ip);
                self.addrs.iter().any(|&(_, x, _)| x == a)
            }
            IpAddr::V6(ip) => {
                let a = u128::from(ip);
                self.addrs6.iter().any(|&(_, x, _)| x == a)
            }
        }
    }

    /// The route the kernel uses per prefix: the lowest metric of each.
    pub fn routes(&self) -> Vec<KernelRoute> {
        let mut out: Vec<KernelRoute> = Vec::new();
        for (&(net, len, metric), &(via, port)) in &self.routes {
            let prefix = Ipv4Cidr {
                addr: Ipv4Addr::from(net),
                len,
            };
            // Keys sort by (network, length, metric): the first of a prefix has the lowest metric.
            if out.last().is_some_and(|r| r.prefix == prefix) {
                continue;
            }
            out.push(KernelRoute {
                prefix,
                via,
                port,
                metric,
            });
        }
        out
    }

    /// The IPv6 route the kernel uses per prefix: the lowest metric of each. Link-local and
    /// multicast prefixes (the kernel's fe80::/64 on every interface) are left out: the datapath
    /// answers and reaches link-local addresses on each port by itself.
    pub fn routes6(&self) -> Vec<KernelRoute6> {
        let mut out: Vec<KernelRoute6> = Vec::new();
        for (&(net, len, metric), &(via, port)) in &self.routes6 {
            let prefix = Ipv6Cidr {
                addr: Ipv6Addr::from(net),
                len,
            };
            if prefix.addr.is_unicast_link_local() || prefix.addr.is_multicast() {
                continue;
            }
            if out.last().is_some_and(|r| r.prefix == prefix) {
                continue;
            }
            out.push(KernelRoute6 {
                prefix,
                via,
                port,
                metric,
            });
        }
        out
    }

    /// Neighbours with a link-layer address, on twins, of both families.
    pub fn neighbours(&self) -> impl Iterator<Item = (IpAddr, u16, MacAddr)> + '_ {
        self.neighs.iter().map(|(&ip, &(p, m))| (ip, p, m))
    }
}

/// Applies a route's RTM_NEWROUTE (`add`) or RTM_DELROUTE to `routes` (either family's, keyed by
/// network, length and metric); whether it changed.
fn route_change<K: Ord, A: PartialEq + Copy>(
    routes: &mut BTreeMap<K, (Option<A>, u16)>,
    k: K,
    via: Option<A>,
    port: u16,
    add: bool,
) -> bool {
    if add {
        return routes.insert(k, (via, port)) != Some((via, port));
    }
    // RTM_DELROUTE names the route by prefix, metric and (usually) its nexthop.
    match routes.get(&k) {
        Some(&(v, p)) if p == port && (via.is_none() || v == via) => {
            routes.remove(&k);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_come_and_go_per_twin() {
        let mut v = KernelView::default();
        let a = KernelEvent::Addr {
            port: 0,
            cidr: cidr("10.10.0.150/32"),
            add: true,
        };
        assert!(v.apply(a));
        assert!(!v.apply(a), "a repeated event changes nothing");
        assert!(v.apply(KernelEvent::Addr {
            port: 1,
            cidr: cidr("10.20.0.1/24"),
            add: true,
        }));
        assert!(v.holds("10.10.0.150".parse().unwrap()));
        assert!(!v.holds("10.10.0.151".parse().unwrap()));
        assert_eq!(
            v.addresses_of(0).collect::<Vec<_>>(),
            [cidr("10.10.0.150/32")]
        );
        assert_eq!(
            v.addresses_of(1).collect::<Vec<_>>(),
            [cidr("10.20.0.1/24")]
        );
        assert!(v.apply(KernelEvent::Addr {
            port: 0,
            cidr: cidr("10.10.0.150/32"),
            add: false,
        }));
        assert!(!v.holds("10.10.0.150".parse().unwrap()));
        assert_eq!(v.addresses().count(), 1);
    }

    #[test]
    fn ipv6_addresses_are_held_while_on_a_twin() {
        let mut v = KernelView::default();
        let vip: Ipv6Addr = "2001:db8:10::100".parse().unwrap();
        let a = |add| KernelEvent::Addr6 {
            port: 0,
            addr: vip,
            len: 64,
            add,
        };
        assert!(!v.holds(vip.into()));
        assert!(v.apply(a(true)));
        assert!(!v.apply(a(true)), "a repeated event changes nothing");
        assert!(v.holds(vip.into()));
        assert!(!v.holds("2001:db8:10::101".parse().unwrap()));
        assert!(v.apply(a(false)));
        assert!(!v.holds(vip.into()));
    }

    #[test]
    fn the_lowest_metric_route_of_a_prefix_wins_and_deletes_are_exact() {
        let mut v = KernelView::default();
        let via = |s: &str| Some(s.parse::<Ipv4Addr>().unwrap());
        let r = |via, metric, add| KernelEvent::Route {
            port: 1,
            prefix: cidr("10.30.0.0/24"),
            via,
            metric,
            add,
        };
        assert!(v.apply(r(via("10.20.0.254"), 100, true)));
        assert!(v.apply(r(via("10.20.0.253"), 20, true)));
        let routes = v.routes();
        assert_eq!(routes.len(), 1);
        assert_eq!((routes[0].via, routes[0].metric), (via("10.20.0.253"), 20));
        // A delete naming another nexthop removes nothing.
        assert!(!v.apply(r(via("10.20.0.1"), 20, false)));
        assert!(v.apply(r(via("10.20.0.253"), 20, false)));
        assert_eq!(v.routes()[0].via, via("10.20.0.254"));
        // Host bits of a prefix do not make another route.
        assert!(!v.apply(KernelEvent::Route {
            port: 1,
            prefix: cidr("10.30.0.9/24"),
            via: via("10.20.0.254"),
            metric: 100,
            add: true,
        }));
        // `ip route replace 10.30.0.0/24 … dev eth0 metric 100`: no longer through a twin.
        assert!(v.apply(KernelEvent::RouteElsewhere {
            prefix: cidr("10.30.0.0/24"),
            metric: 100
        }));
        assert!(v.routes().is_empty());
    }

    #[test]
    fn ipv6_routes_and_global_addresses_are_mirrored_per_twin() {
        let mut v = KernelView::default();
        let c6 = |s: &str| s.parse::<Ipv6Cidr>().unwrap();
        let via = |s: &str| Some(s.parse::<Ipv6Addr>().unwrap());
        for (addr, len) in [
            ("fe80::1", 64),
            ("2001:db8:20::1", 64),
            ("2001:db8:20::9", 128),
        ] {
            assert!(v.apply(KernelEvent::Addr6 {
                port: 1,
                addr: addr.parse().unwrap(),
                len,
                add: true,
            }));
        }
        assert_eq!(
            v.addresses6_of(1).collect::<Vec<_>>(),
            [c6("2001:db8:20::1/64"), c6("2001:db8:20::9/128")],
            "not the link-local one"
        );
        assert_eq!(v.addresses6_of(0).count(), 0);
        let r = |prefix: &str, via, metric, add| KernelEvent::Route6 {
            port: 1,
            prefix: c6(prefix),
            via,
            metric,
            add,
        };
        assert!(v.apply(r("fe80::/64", None, 256, true)));
        assert!(v.apply(r("2001:db8:40::/48", via("2001:db8:20::254"), 1024, true)));
        assert!(v.apply(r("2001:db8:40::/48", via("fe80::254"), 20, true)));
        let routes = v.routes6();
        assert_eq!(routes.len(), 1, "{routes:?}");
        assert_eq!((routes[0].via, routes[0].metric), (via("fe80::254"), 20));
        assert!(!v.apply(r("2001:db8:40::/48", via("fe80::1"), 20, false)));
        assert!(v.apply(r("2001:db8:40::/48", via("fe80::254"), 20, false)));
        assert_eq!(v.routes6()[0].via, via("2001:db8:20::254"));
        assert!(v.apply(KernelEvent::RouteElsewhere6 {
            prefix: c6("2001:db8:40::/48"),
            metric: 1024
        }));
        assert!(v.routes6().is_empty());
    }

    #[test]
    fn neighbours_with_an_address_are_kept_and_removed() {
        let mut v = KernelView::default();
        let ip: IpAddr = "10.20.0.11".parse().unwrap();
        let mac = MacAddr([2, 0, 0, 0, 0, 0x11]);
        assert!(v.apply(KernelEvent::Neigh {
            port: 1,
            ip,
            mac: Some(mac)
        }));
        assert!(!v.apply(KernelEvent::Neigh {
            port: 1,
            ip,
            mac: Some(mac)
        }));
        assert_eq!(v.neighbours().collect::<Vec<_>>(), [(ip, 1, mac)]);
        assert!(v.apply(KernelEvent::Neigh {
            port: 1,
            ip,
            mac: None
        }));
        assert_eq!(v.neighbours().count(), 0);
    }
}

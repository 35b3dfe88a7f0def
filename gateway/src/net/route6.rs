//! The IPv6 routing table: the ports' connected prefixes and the config's IPv6 `[[route]]`s, longest
//! prefix first. A linear scan: a balancer has a handful of IPv6 routes. Every forwarded IPv6
//! packet looks its destination up, so each prefix is kept as the (network, mask) pair of 128-bit
//! integers the scan compares: one conversion of the destination, then two ANDs and compares a
//! route (issue 16: the scan took about 130 instructions a packet comparing `Ipv6Cidr`s).

use super::Ipv6Cidr;
use super::PortCtx;
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
    /// `(network, mask)` of each route's prefix, in `routes`' order.
    keys: Vec<(u128, u128)>,
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
        let keys = routes
            .iter()
            .map(|r| {
                let mask = r.prefix.mask();
                (u128::from(r.prefix.addr) & mask, mask)
            })
            .collect();
        Routes6 { routes, keys }
    }

    /// The longest-prefix route to `dst`, if any. Always inlined: replies to IPv6 clients from
    /// more addresses than the next-hop cache holds look their route up each (`inet6::hot`), and
    /// the call was a fifth of the scan's cost (`reply6-1k` 825 -> 813 instructions a packet).
    #[inline(always)]
    pub fn lookup(&self, dst: Ipv6Addr) -> Option<&Route6> {
        let d = u128::from(dst);
        let i = self.keys.iter().position(|&(net, mask)| d & mask == net)?;
        self.routes.get(i)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route6> + '_ {
        self.routes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The scan over (network, mask) pairs finds what a scan of the prefixes, longest first,
        /// finds: destinations near the routes' addresses (sharing long prefixes with them) and
        /// anywhere, prefixes of every length (0 and 128 included), host bits set in a prefix's
        /// address.
        #[test]
        fn lookup_is_the_longest_containing_prefix(
            statics in proptest::collection::vec((any::<u128>(), 0u8..=128, any::<bool>()), 0..8),
            probes in proptest::collection::vec((0usize..8, any::<u128>(), 0u32..=128), 1..32),
        ) {
            let statics: Vec<(Ipv6Cidr, Option<Ipv6Addr>, usize)> = statics
                .iter()
                .enumerate()
                .map(|(i, &(a, len, via))| {
                    let cidr = Ipv6Cidr { addr: Ipv6Addr::from(a), len };
                    (cidr, via.then_some(Ipv6Addr::from(a ^ 1)), i)
                })
                .collect();
            let routes = Routes6::new(&[], &statics);
            let mut model: Vec<Route6> = statics
                .iter()
                .map(|&(prefix, via, port)| Route6 { prefix, via, port: port as u16 })
                .collect();
            model.sort_by_key(|r| std::cmp::Reverse(r.prefix.len));
            for (i, noise, keep) in probes {
                // Near route i: its address with the low 128 - keep bits replaced by noise.
                let base = statics.get(i).map_or(0, |s| u128::from(s.0.addr));
                let low = if keep == 0 { u128::MAX } else { u128::MAX.checked_shr(keep).unwrap_or(0) };
                let dst = Ipv6Addr::from((base & !low) | (noise & low));
                let want = model.iter().find(|r| r.prefix.contains(dst));
                prop_assert_eq!(routes.lookup(dst), want);
            }
        }
    }
}

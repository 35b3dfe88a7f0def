//! Longest-prefix-match IPv4 routing.
//!
//! The table is built by the control plane and is immutable in the datapath. Routes are kept grouped by
//! prefix length, longest first, each group a hash map from network to next hop: a lookup probes at most
//! one map per distinct prefix length present (a handful in practice), with no allocation. A table of
//! few routes for its prefix lengths (a box's connected prefixes, its default route and a few static
//! ones: [`SCAN_PER_LENGTH`]) is also kept as one list, longest first, which a lookup scans instead: a
//! compare per route, about 6 instructions, where each hash probe took about 30 (perf/RESULTS.md,
//! "IPv6's next hop cached, IPv4's routes scanned").

use super::Ipv4Cidr;
use hashbrown::HashMap;
use std::net::Ipv4Addr;

/// Where a packet to some destination goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// Output port index.
    pub port: u16,
    /// The gateway to send to, or None when the destination is on the link.
    pub via: Option<Ipv4Addr>,
}

impl NextHop {
    /// The address to resolve with ARP for destination `dst`.
    #[inline]
    pub fn l2_target(&self, dst: Ipv4Addr) -> Ipv4Addr {
        self.via.unwrap_or(dst)
    }
}

/// Most routes a table scans per prefix length it has, rather than probing a hash map per length:
/// a miss of every route then costs no more than a probe of every length.
pub const SCAN_PER_LENGTH: usize = 4;

#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    /// (prefix length, mask, network -> next hop), longest prefix first.
    groups: Vec<(u8, u32, HashMap<u32, NextHop>)>,
    /// Every route as (network, mask, next hop), longest prefix first, while there are at most
    /// [`SCAN_PER_LENGTH`] per prefix length; empty otherwise (and for an empty table, whose
    /// lookups find nothing either way).
    scan: Vec<(u32, u32, NextHop)>,
}

impl RouteTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the route for `prefix` (host bits are ignored).
    pub fn add(&mut self, prefix: Ipv4Cidr, hop: NextHop) {
        let net = u32::from(prefix.network());
        let pos = self.groups.iter().position(|g| g.0 <= prefix.len);
        match pos {
            Some(i) if self.groups[i].0 == prefix.len => {
                self.groups[i].2.insert(net, hop);
            }
            Some(i) => self
                .groups
                .insert(i, (prefix.len, prefix.mask(), HashMap::from([(net, hop)]))),
            None => self
                .groups
                .push((prefix.len, prefix.mask(), HashMap::from([(net, hop)]))),
        }
        self.scan.clear();
        let routes: usize = self.groups.iter().map(|g| g.2.len()).sum();
        if routes <= SCAN_PER_LENGTH * self.groups.len() {
            // In the groups' order: the first route containing a destination is its longest
            // prefix's (one network per prefix length can contain it).
            self.scan.extend(
                self.groups.iter().flat_map(|(_, mask, map)| {
                    map.iter().map(move |(&net, &hop)| (net, *mask, hop))
                }),
            );
        }
    }

    /// Adds the connected route of an interface address (`10.0.0.1/24` -> `10.0.0.0/24` on `port`).
    pub fn add_connected(&mut self, addr: Ipv4Cidr, port: u16) {
        self.add(addr, NextHop { port, via: None });
    }

    /// The longest matching route.
    #[inline(always)]
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<NextHop> {
        let d = u32::from(dst);
        if !self.scan.is_empty() {
            return self
                .scan
                .iter()
                .find(|&&(net, mask, _)| d & mask == net)
                .map(|&(_, _, hop)| hop);
        }
        self.groups
            .iter()
            .find_map(|(_, mask, map)| map.get(&(d & mask)).copied())
    }

    /// Every route, longest prefix first.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Cidr, NextHop)> + '_ {
        self.groups.iter().flat_map(|(len, _, map)| {
            map.iter().map(move |(net, hop)| {
                (
                    Ipv4Cidr {
                        addr: Ipv4Addr::from(*net),
                        len: *len,
                    },
                    *hop,
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = RouteTable::new();
        t.add(
            c("0.0.0.0/0"),
            NextHop {
                port: 0,
                via: Some(Ipv4Addr::new(10, 0, 0, 254)),
            },
        );
        t.add_connected(c("10.0.0.1/24"), 0);
        t.add_connected(c("10.20.0.1/16"), 1);
        t.add(
            c("10.20.5.0/24"),
            NextHop {
                port: 2,
                via: Some(Ipv4Addr::new(10, 20, 0, 9)),
            },
        );
        assert_eq!(
            t.lookup(Ipv4Addr::new(10, 0, 0, 7)),
            Some(NextHop { port: 0, via: None })
        );
        assert_eq!(
            t.lookup(Ipv4Addr::new(10, 20, 9, 9)),
            Some(NextHop { port: 1, via: None })
        );
        assert_eq!(t.lookup(Ipv4Addr::new(10, 20, 5, 9)).unwrap().port, 2);
        let d = t.lookup(Ipv4Addr::new(8, 8, 8, 8)).unwrap();
        assert_eq!(
            d.l2_target(Ipv4Addr::new(8, 8, 8, 8)),
            Ipv4Addr::new(10, 0, 0, 254)
        );
        assert_eq!(t.iter().count(), 4);
    }

    #[test]
    fn no_default_means_no_route() {
        let mut t = RouteTable::new();
        t.add_connected(c("192.168.1.1/24"), 0);
        assert_eq!(t.lookup(Ipv4Addr::new(192, 168, 2, 1)), None);
    }

    #[test]
    fn replace_keeps_one_entry() {
        let mut t = RouteTable::new();
        t.add_connected(c("10.0.0.0/8"), 0);
        t.add_connected(c("10.0.0.0/8"), 3);
        assert_eq!(t.iter().count(), 1);
        assert_eq!(t.lookup(Ipv4Addr::new(10, 1, 1, 1)).unwrap().port, 3);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// Against a brute-force model: the longest prefix that contains dst, in tables scanned
        /// (few routes a prefix length) and probed by prefix length (many: the lengths drawn
        /// from a few, to make them so).
        #[test]
        fn matches_linear_model(routes in proptest::collection::vec((any::<u32>(), 0u8..=32, 0u16..4), 1..40),
                                lengths in proptest::collection::vec(0u8..=32, 1..4),
                                few_lengths in any::<bool>(),
                                probes in proptest::collection::vec(any::<u32>(), 1..50)) {
            let mut t = RouteTable::new();
            let mut model: Vec<(Ipv4Cidr, u16)> = Vec::new();
            for (a, len, port) in routes {
                let len = if few_lengths { lengths[usize::from(len) % lengths.len()] } else { len };
                let p = Ipv4Cidr::new(Ipv4Addr::from(a), len).unwrap();
                t.add(p, NextHop { port, via: None });
                model.retain(|(q, _)| !(q.len == p.len && q.network() == p.network()));
                model.push((p, port));
            }
            // Also probe inside each prefix.
            let extra: Vec<u32> = model.iter().map(|(p, _)| u32::from(p.addr)).collect();
            for d in probes.into_iter().chain(extra) {
                let dst = Ipv4Addr::from(d);
                let want = model.iter().filter(|(p, _)| p.contains(dst)).max_by_key(|(p, _)| p.len).map(|x| x.1);
                prop_assert_eq!(t.lookup(dst).map(|h| h.port), want);
            }
        }
    }
}

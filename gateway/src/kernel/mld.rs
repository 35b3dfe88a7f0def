//! Multicast listening on the twins for the IPv6 addresses the datapath answers and no twin has:
//! the VIPs and LIPs of IPv6 services.
//!
//! A host resolves an IPv6 neighbour by a solicitation sent to the target's solicited-node
//! multicast group, ff02::1:ffXX:XXXX with the address's low 24 bits (RFC 4291 section 2.7.1,
//! RFC 4861 section 7.2.2). A switch that snoops MLD (RFC 4541) forwards that group only to the
//! ports whose hosts reported listening to it (RFC 3810), and many drop unregistered groups
//! altogether. The kernel reports the groups of the twins' own addresses; the services'
//! addresses are the datapath's alone, so nobody reported theirs, and behind such a switch a
//! client or real server never reached the datapath's answer for a VIP or a LIP.
//!
//! The gateway makes the kernel listen instead: it joins each such address's group on the twin of
//! every port whose on-link prefixes hold the address (`IPV6_ADD_MEMBERSHIP`, through `socket2`),
//! and the kernel then reports it, answers the queries and leaves it, with MLD's own timers,
//! through the twin and the datapath as any of its traffic. An address no port's prefix holds (a
//! VIP routed to the box, as behind ECMP) is never solicited on a link, so it joins nothing.
//! A kernel-owned VIP no twin holds (`Topology::silent6`) and its LIPs are left until held.

use crate::net::Topology;
use crate::wire::icmpv6::solicited_node;
use socket2::{Domain, Socket, Type};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;

/// Group memberships a socket carries at most. Linux charges each to the socket's option memory
/// (`net.core.optmem_max`, 20 KiB by default): a few hundred fit; past this, another socket.
const PER_SOCKET: usize = 128;

/// The groups to listen to, as (ifindex, group): for each of `addrs` (the services' IPv6
/// addresses) answered in `topo` and no twin's own, its group on each twin (`twins`: port index,
/// ifindex) whose port has an IPv6 prefix holding it.
pub fn wanted(
    topo: &Topology,
    addrs: impl IntoIterator<Item = Ipv6Addr>,
    twins: &[(u16, u32)],
) -> BTreeSet<(u32, Ipv6Addr)> {
    let mut want = BTreeSet::new();
    for a in addrs {
        if topo.silent6.contains(&a) || topo.owns6(a) {
            continue;
        }
        for &(port, ifindex) in twins {
            let on_link = topo
                .ports
                .get(port as usize)
                .is_some_and(|p| p.addrs6.iter().any(|c| c.contains(a)));
            if on_link {
                want.insert((ifindex, solicited_node(a)));
            }
        }
    }
    want
}

/// The memberships held, spread over sockets of at most `PER_SOCKET` each.
#[derive(Default)]
pub struct Listening {
    sockets: Vec<(Socket, usize)>,
    /// (ifindex, group) -> the socket holding it.
    joined: BTreeMap<(u32, Ipv6Addr), usize>,
    /// Joins and leaves the kernel refused (each join tried again at the next change).
    pub errors: u64,
}

impl Listening {
    /// The groups listened to now.
    pub fn groups(&self) -> impl Iterator<Item = (u32, Ipv6Addr)> + '_ {
        self.joined.keys().copied()
    }

    /// Joins the groups of `want` not yet joined and leaves those no longer wanted.
    pub fn follow(&mut self, want: &BTreeSet<(u32, Ipv6Addr)>) {
        let gone: Vec<_> = self
            .joined
            .keys()
            .filter(|k| !want.contains(k))
            .copied()
            .collect();
        for (ifindex, group) in gone {
            let Some(i) = self.joined.remove(&(ifindex, group)) else {
                continue;
            };
            let (sock, n) = &mut self.sockets[i];
            *n -= 1;
            if let Err(e) = sock.leave_multicast_v6(&group, ifindex) {
                self.errors += 1;
                tracing::warn!("mld: leaving {group} on ifindex {ifindex}: {e}");
            }
        }
        for &(ifindex, group) in want {
            if self.joined.contains_key(&(ifindex, group)) {
                continue;
            }
            match self.join(ifindex, group) {
                Ok(i) => {
                    self.joined.insert((ifindex, group), i);
                }
                Err(e) => {
                    self.errors += 1;
                    tracing::error!("mld: joining {group} on ifindex {ifindex}: {e}");
                }
            }
        }
    }

    /// Joins `group` on `ifindex` through a socket with room; which one.
    fn join(&mut self, ifindex: u32, group: Ipv6Addr) -> std::io::Result<usize> {
        let i = match self.sockets.iter().position(|(_, n)| *n < PER_SOCKET) {
            Some(i) => i,
            None => {
                let s = Socket::new(Domain::IPV6, Type::DGRAM, None)?;
                self.sockets.push((s, 0));
                self.sockets.len() - 1
            }
        };
        let (sock, n) = &mut self.sockets[i];
        sock.join_multicast_v6(&group, ifindex)?;
        *n += 1;
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::PortCtx;
    use crate::wire::MacAddr;

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn the_solicited_node_group_keeps_the_low_24_bits() {
        assert_eq!(
            solicited_node(v6("2001:db8:10::1:2345:6789")),
            v6("ff02::1:ff45:6789")
        );
        assert_eq!(
            solicited_node(v6("2001:db8:20::201")),
            v6("ff02::1:ff00:201")
        );
    }

    #[test]
    fn addresses_on_a_twin_ports_prefix_are_listened_to_there_only() {
        let port = |name: &str, a: &str| PortCtx {
            name: name.into(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            addrs: Vec::new(),
            addrs6: vec![a.parse().unwrap()],
            twin: true,
        };
        let mut topo = Topology::new(
            vec![
                port("client", "2001:db8:10::1/64"),
                port("server", "2001:db8:20::1/64"),
            ],
            &[],
        );
        let twins = [(0, 7), (1, 8)];
        let addrs = [
            v6("2001:db8:10::100"), // a VIP on the client link
            v6("2001:db8:20::201"), // a LIP on the server link
            v6("2001:db8:99::100"), // a VIP routed to the box: no link solicits it
            v6("2001:db8:20::1"),   // the port's own: the kernel listens already
        ];
        assert_eq!(
            wanted(&topo, addrs, &twins).into_iter().collect::<Vec<_>>(),
            [(7, v6("ff02::1:ff00:100")), (8, v6("ff02::1:ff00:201"))]
        );
        // A kernel-owned VIP no twin holds, and its LIP.
        topo.silent6
            .extend([v6("2001:db8:10::100"), v6("2001:db8:20::201")]);
        assert!(wanted(&topo, addrs, &twins).is_empty());
    }

    /// Real memberships, on the loopback interface (needs no twin, nor root: joining a group is
    /// any process's right).
    #[test]
    fn groups_are_joined_and_left_as_wanted() {
        let Ok(probe) = Socket::new(Domain::IPV6, Type::DGRAM, None) else {
            return; // no IPv6 in this kernel
        };
        drop(probe);
        let lo = 1;
        let mut l = Listening::default();
        let want: BTreeSet<_> = (0..PER_SOCKET as u16 + 2)
            .map(|i| (lo, Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, i)))
            .collect();
        l.follow(&want);
        if l.errors > 0 {
            return; // IPv6 off on lo (disable_ipv6)
        }
        assert_eq!(l.groups().count(), want.len());
        assert_eq!(l.sockets.len(), 2, "{PER_SOCKET} a socket");
        let fewer: BTreeSet<_> = want.iter().take(3).copied().collect();
        l.follow(&fewer);
        assert_eq!(l.errors, 0);
        assert_eq!(l.groups().collect::<BTreeSet<_>>(), fewer);
        l.follow(&want);
        assert_eq!(l.groups().count(), want.len());
        assert_eq!(l.errors, 0);
    }
}

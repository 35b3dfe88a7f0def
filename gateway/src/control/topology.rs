//! Each generation's L3 view (`net::Topology`) from its inputs: the config's ports, addresses
//! and routes, and, for ports with a kernel twin, what the kernel has on the twin
//! (`kernel::KernelView`; DESIGN.md decision 14: the kernel is the one source of truth there, as in
//! VPP's linux-cp). Pure, so the rules are unit-tested without a kernel:
//!
//! - a twin port's addresses and routes are the kernel's, IPv4 and IPv6 (the config's were written
//!   onto the twin at start, so both agree until an operator or a daemon changes the kernel); a
//!   kernel-owned IPv6 VIP on a twin is a VIP, not a port address;
//! - a port without a twin keeps the config's;
//! - the gateway answers for (and serves) a config-owned VIP and its LIPs always, and a
//!   kernel-owned VIP (`owner = "kernel"`) and its LIPs only while some twin holds the VIP: the
//!   LIPs follow their VIP, so keepalived needs to float only the VIP. A LIP that a config-owned
//!   service uses too is always answered. The same holds for IPv6 VIPs and their LIPs (IPv6, and
//!   a NAT64 service's IPv4 ones): those not held are listed in `Topology::silent6`.

use crate::forward::ServiceTable;
use crate::kernel::KernelView;
use crate::net::Ipv4Cidr;
use crate::net::{PortCtx, Topology};
use hashbrown::HashSet;
use std::net::{IpAddr, Ipv4Addr};

/// What a topology is built from, besides the kernel.
#[derive(Clone, Debug, Default)]
pub struct TopoInputs {
    /// The ports with the config's addresses (and `twin` set for ports that have one).
    pub ports: Vec<PortCtx>,
    /// The config's static routes: (prefix, via, port index).
    pub routes: Vec<(Ipv4Cidr, Option<Ipv4Addr>, usize)>,
    /// VIPs of services with `owner = "kernel"`.
    pub kernel_owned: HashSet<IpAddr>,
    /// The config's IPv6 routes (those through a twin port are the kernel's once mirrored).
    pub routes6: Vec<(crate::net::Ipv6Cidr, Option<std::net::Ipv6Addr>, usize)>,
}

pub use crate::view::Origin;

/// The origin of every address and route of a topology (for `gwctl addrs`/`routes`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Provenance {
    /// (port, address) -> origin.
    pub addrs: Vec<(u16, Ipv4Cidr, Origin)>,
    /// (prefix, origin); connected routes are not listed.
    pub routes: Vec<(Ipv4Cidr, Origin)>,
    /// Kernel-owned VIPs, with whether a twin holds them now.
    pub kernel_owned: Vec<(IpAddr, bool)>,
    /// (port, IPv6 address) -> origin.
    pub addrs6: Vec<(u16, crate::net::Ipv6Cidr, Origin)>,
    /// (IPv6 prefix, origin); connected routes are not listed.
    pub routes6: Vec<(crate::net::Ipv6Cidr, Origin)>,
}

impl TopoInputs {
    fn has_twin(&self, port: usize) -> bool {
        self.ports.get(port).is_some_and(|p| p.twin)
    }
}

/// The topology for `services`, and where each of its addresses and routes comes from.
pub fn build(
    inputs: &TopoInputs,
    kernel: Option<&KernelView>,
    services: &ServiceTable,
) -> (Topology, Provenance) {
    let mut prov = Provenance::default();
    let mirrored = |port: usize| kernel.is_some() && inputs.has_twin(port);
    let mut ports = inputs.ports.clone();
    for (i, p) in ports.iter_mut().enumerate() {
        let config = std::mem::take(&mut p.addrs);
        if let (true, Some(k)) = (mirrored(i), kernel) {
            p.addrs = k.addresses_of(i as u16).collect();
            for a in &p.addrs {
                let o = if config.contains(a) {
                    Origin::ConfigKernel
                } else {
                    Origin::Kernel
                };
                prov.addrs.push((i as u16, *a, o));
            }
        } else {
            prov.addrs
                .extend(config.iter().map(|a| (i as u16, *a, Origin::Config)));
            p.addrs = config;
        }
    }
    let mut routes: Vec<(Ipv4Cidr, Option<Ipv4Addr>, usize)> = Vec::new();
    for &(prefix, via, port) in &inputs.routes {
        if !mirrored(port) {
            routes.push((prefix, via, port));
            prov.routes.push((prefix, Origin::Config));
        }
    }
    if let Some(k) = kernel {
        let connected: HashSet<(Ipv4Addr, u8)> = ports
            .iter()
            .flat_map(|p| p.addrs.iter().map(|a| (a.network(), a.len)))
            .collect();
        for r in k.routes() {
            let port = r.port as usize;
            if !inputs.has_twin(port) {
                continue;
            }
            routes.push((r.prefix, r.via, port));
            if r.via.is_none() && connected.contains(&(r.prefix.network(), r.prefix.len)) {
                continue; // the kernel's own route for an address's subnet
            }
            let in_config = inputs.routes.iter().any(|&(p, v, i)| {
                p.network() == r.prefix.network()
                    && p.len == r.prefix.len
                    && v == r.via
                    && i == port
            });
            let o = if in_config {
                Origin::ConfigKernel
            } else {
                Origin::Kernel
            };
            prov.routes.push((r.prefix, o));
        }
    }
    // IPv6: a twin port's global addresses and main-table routes are the kernel's too.
    let mut routes6: Vec<_> = inputs
        .routes6
        .iter()
        .filter(|r| !mirrored(r.2))
        .copied()
        .collect();
    prov.routes6 = routes6.iter().map(|r| (r.0, Origin::Config)).collect();
    for (i, p) in ports.iter_mut().enumerate() {
        let config = std::mem::take(&mut p.addrs6);
        p.addrs6 = match kernel.filter(|_| inputs.has_twin(i)) {
            Some(k) => k
                .addresses6_of(i as u16)
                .filter(|c| !inputs.kernel_owned.contains(&IpAddr::V6(c.addr)))
                .collect(),
            None => config.clone(),
        };
        prov.addrs6.extend(p.addrs6.iter().map(|a| {
            let o = if !mirrored(i) {
                Origin::Config
            } else if config.contains(a) {
                Origin::ConfigKernel
            } else {
                Origin::Kernel
            };
            (i as u16, *a, o)
        }));
    }
    if let Some(k) = kernel {
        for r in k.routes6() {
            let port = r.port as usize;
            let Some(p) = ports.get(port).filter(|_| inputs.has_twin(port)) else {
                continue;
            };
            // The kernel's own route for an address's prefix: `Routes6::new` adds it.
            let connected = r.via.is_none()
                && p.addrs6
                    .iter()
                    .any(|a| a.network() == r.prefix.addr && a.len == r.prefix.len);
            if !connected {
                routes6.push((r.prefix, r.via, port));
                let in_config = inputs
                    .routes6
                    .iter()
                    .any(|&(p, v, i)| p == r.prefix && v == r.via && i == port);
                let o = if in_config {
                    Origin::ConfigKernel
                } else {
                    Origin::Kernel
                };
                prov.routes6.push((r.prefix, o));
            }
        }
    }
    let mut topo = Topology::new(ports, &routes);
    topo.routes6 = crate::inet6::Routes6::new(&topo.ports, &routes6);
    let held = |a: &IpAddr| kernel.is_some_and(|k| k.holds(*a));
    // IPv6 service addresses answered: `inet6` answers every IPv6 VIP and LIP of the service
    // table but those in `silent6`.
    let mut answered6 = HashSet::new();
    for vs in &services.services {
        let vip = vs.svc.config().vip;
        if inputs.kernel_owned.contains(&vip) && !held(&vip) {
            if let IpAddr::V6(v) = vip {
                topo.silent6.insert(v);
                topo.silent6
                    .extend(vs.lips6.iter().chain(&vs.retiring_lips6).copied());
            }
            continue;
        }
        // A VIP answered, and its IPv4 local addresses (an IPv6 service's are NAT64's).
        if let IpAddr::V4(v) = vip {
            topo.local.insert(v);
        }
        topo.local
            .extend(vs.lips.iter().chain(&vs.retiring_lips).copied());
        answered6.extend(vs.lips6.iter().chain(&vs.retiring_lips6).copied());
    }
    // A LIP a held or config-owned service uses too is answered (as IPv4's, in `local`).
    topo.silent6.retain(|a| !answered6.contains(a));
    // A kernel-owned VIP held on a twin is a VIP first: it is not an interface address the
    // kernel's own services answer on (`net::punt`).
    let mut owned: Vec<_> = inputs.kernel_owned.iter().map(|a| (*a, held(a))).collect();
    owned.sort();
    prov.kernel_owned = owned;
    (topo, prov)
}

/// The ports' addresses an admin change's services are checked against
/// (`config::validate_service_entries`, which refuses a VIP or LIP that is an interface
/// address): the running topology's `ports`, less the addresses in `held` that only the kernel
/// has (`Origin::Kernel` in `prov`). `held` is the kernel-owned services' VIPs and LIPs: on the
/// box that holds such a service, keepalived has put them on a twin, which is how it is held, not
/// a conflict. An address the config gives a port, or one a config-owned service uses, is still
/// an interface address.
pub fn admin_port_addrs(
    ports: &[PortCtx],
    prov: &Provenance,
    held: &HashSet<IpAddr>,
) -> (Vec<Vec<Ipv4Cidr>>, Vec<Vec<crate::net::Ipv6Cidr>>) {
    let kernel_only = |port: usize, a: IpAddr| {
        held.contains(&a)
            && (prov.addrs.iter().any(|&(p, c, o)| {
                usize::from(p) == port && IpAddr::V4(c.addr) == a && o == Origin::Kernel
            }) || prov.addrs6.iter().any(|&(p, c, o)| {
                usize::from(p) == port && IpAddr::V6(c.addr) == a && o == Origin::Kernel
            }))
    };
    let v4 = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let keep = |c: &&Ipv4Cidr| !kernel_only(i, IpAddr::V4(c.addr));
            p.addrs.iter().filter(keep).copied().collect()
        })
        .collect();
    let v6 = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let keep = |c: &&crate::net::Ipv6Cidr| !kernel_only(i, IpAddr::V6(c.addr));
            p.addrs6.iter().filter(keep).copied().collect()
        })
        .collect();
    (v4, v6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::KernelEvent;
    use crate::service::{Proto, SchedKind, ServiceConfig};
    use crate::wire::MacAddr;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn inputs(twin: bool, kernel_vip: bool) -> TopoInputs {
        let port = |name: &str, a: &str| PortCtx {
            name: name.into(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            addrs: vec![cidr(a)],
            addrs6: Vec::new(),
            twin,
        };
        TopoInputs {
            ports: vec![
                port("client", "10.10.0.1/24"),
                port("server", "10.20.0.1/24"),
            ],
            routes: vec![(cidr("10.40.0.0/16"), Some(ip("10.20.0.254")), 1)],
            kernel_owned: if kernel_vip {
                [ip("10.10.0.100").into()].into_iter().collect()
            } else {
                HashSet::new()
            },
            routes6: Vec::new(),
        }
    }

    fn services() -> ServiceTable {
        let rr = ServiceConfig::new(ip("10.10.0.100"), 80, Proto::Tcp, SchedKind::Rr);
        ServiceTable::new(
            1,
            vec![(rr, vec![ip("10.20.0.200")], Default::default())],
            None,
        )
        .unwrap()
    }

    /// What the kernel has after the config was written onto the twins.
    fn reconciled() -> KernelView {
        let mut k = KernelView::default();
        for e in [
            KernelEvent::Addr {
                port: 0,
                cidr: cidr("10.10.0.1/24"),
                add: true,
            },
            KernelEvent::Addr {
                port: 1,
                cidr: cidr("10.20.0.1/24"),
                add: true,
            },
            KernelEvent::Route {
                port: 0,
                prefix: cidr("10.10.0.0/24"),
                via: None,
                metric: 0,
                add: true,
            },
            KernelEvent::Route {
                port: 1,
                prefix: cidr("10.20.0.0/24"),
                via: None,
                metric: 0,
                add: true,
            },
            KernelEvent::Route {
                port: 1,
                prefix: cidr("10.40.0.0/16"),
                via: Some(ip("10.20.0.254")),
                metric: 0,
                add: true,
            },
        ] {
            k.apply(e);
        }
        k
    }

    /// On the box that holds a kernel-owned VIP, keepalived has put it and a LIP on the twins:
    /// an admin change is checked against the ports' addresses without them (it was refused:
    /// "10.10.0.100 is also an interface address"), and with every address the config gives.
    #[test]
    fn an_admin_change_is_not_refused_for_a_held_kernel_owned_vip_on_a_twin() {
        let mut k = reconciled();
        for (port, a) in [(0, "10.10.0.100/32"), (1, "10.20.0.200/32")] {
            k.apply(KernelEvent::Addr {
                port,
                cidr: cidr(a),
                add: true,
            });
        }
        let (t, p) = build(&inputs(true, true), Some(&k), &services());
        let all =
            crate::testkit::LAB_CONFIG.replace("scheduler =", "owner = \"kernel\"\nscheduler =");
        let entries = crate::config::Config::parse(&all).unwrap().services;
        let held: HashSet<IpAddr> = ["10.10.0.100", "10.20.0.200", "10.20.0.201"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let (v4, v6) = admin_port_addrs(&t.ports, &p, &held);
        assert_eq!(v4, [vec![cidr("10.10.0.1/24")], vec![cidr("10.20.0.1/24")]]);
        assert!(crate::config::validate_service_entries(&entries, &v4, &v6).is_ok());
        // Unfiltered, as before: refused.
        let raw: Vec<_> = t.ports.iter().map(|p| p.addrs.clone()).collect();
        let e = crate::config::validate_service_entries(&entries, &raw, &v6).unwrap_err();
        assert!(
            e.to_string().contains("is also an interface address"),
            "{e}"
        );
        // A config-owned service's VIP on a twin is still a conflict; so is a kernel-owned VIP
        // that is one of the config's own port addresses.
        let (v4, _) = admin_port_addrs(&t.ports, &p, &HashSet::new());
        assert!(v4[0].contains(&cidr("10.10.0.100/32")));
        let own: HashSet<IpAddr> = [IpAddr::V4(ip("10.10.0.1"))].into_iter().collect();
        let (v4, _) = admin_port_addrs(&t.ports, &p, &own);
        assert!(v4[0].contains(&cidr("10.10.0.1/24")));
    }

    #[test]
    fn without_twins_the_config_is_the_topology() {
        let (t, p) = build(&inputs(false, false), Some(&reconciled()), &services());
        assert!(t.iface.contains(&ip("10.10.0.1")));
        assert_eq!(
            t.routes.lookup(ip("10.40.1.1")).unwrap().via,
            Some(ip("10.20.0.254"))
        );
        assert!(t.local.contains(&ip("10.10.0.100")) && t.local.contains(&ip("10.20.0.200")));
        assert!(p.addrs.iter().all(|a| a.2 == Origin::Config));
        assert_eq!(p.routes, [(cidr("10.40.0.0/16"), Origin::Config)]);
    }

    #[test]
    fn with_twins_the_kernel_is_the_topology() {
        let mut k = reconciled();
        let (t, p) = build(&inputs(true, false), Some(&k), &services());
        assert!(t.iface.contains(&ip("10.10.0.1")));
        assert!(p.addrs.iter().all(|a| a.2 == Origin::ConfigKernel), "{p:?}");
        assert_eq!(p.routes, [(cidr("10.40.0.0/16"), Origin::ConfigKernel)]);
        // `ip addr add 10.10.0.150/32 dev client`, `ip route add 10.30.0.0/24 via 10.20.0.254`.
        k.apply(KernelEvent::Addr {
            port: 0,
            cidr: cidr("10.10.0.150/32"),
            add: true,
        });
        k.apply(KernelEvent::Route {
            port: 1,
            prefix: cidr("10.30.0.0/24"),
            via: Some(ip("10.20.0.254")),
            metric: 0,
            add: true,
        });
        // `ip route del 10.40.0.0/16`: the kernel wins over the config.
        k.apply(KernelEvent::Route {
            port: 1,
            prefix: cidr("10.40.0.0/16"),
            via: Some(ip("10.20.0.254")),
            metric: 0,
            add: false,
        });
        let (t, p) = build(&inputs(true, false), Some(&k), &services());
        assert!(t.iface.contains(&ip("10.10.0.150")) && t.local.contains(&ip("10.10.0.150")));
        assert!(p
            .addrs
            .contains(&(0, cidr("10.10.0.150/32"), Origin::Kernel)));
        assert_eq!(t.routes.lookup(ip("10.30.0.9")).unwrap().port, 1);
        assert_eq!(t.routes.lookup(ip("10.40.0.9")), None);
        assert_eq!(p.routes, [(cidr("10.30.0.0/24"), Origin::Kernel)]);
    }

    #[test]
    fn a_kernel_owned_vip_is_answered_only_while_a_twin_holds_it() {
        let mut k = reconciled();
        let (t, p) = build(&inputs(true, true), Some(&k), &services());
        assert!(!t.local.contains(&ip("10.10.0.100")));
        assert!(!t.local.contains(&ip("10.20.0.200")));
        assert_eq!(p.kernel_owned, [(ip("10.10.0.100").into(), false)]);
        k.apply(KernelEvent::Addr {
            port: 0,
            cidr: cidr("10.10.0.100/32"),
            add: true,
        });
        let (t, p) = build(&inputs(true, true), Some(&k), &services());
        assert!(t.local.contains(&ip("10.10.0.100")));
        assert!(
            t.local.contains(&ip("10.20.0.200")),
            "the LIPs follow their VIP"
        );
        assert_eq!(p.kernel_owned[0], (ip("10.10.0.100").into(), true));
        // Before the mirror's first dump nothing kernel-owned is held.
        let (t, _) = build(&inputs(true, true), None, &services());
        assert!(!t.local.contains(&ip("10.10.0.100")));
        assert!(
            t.iface.contains(&ip("10.10.0.1")),
            "config addresses until the kernel speaks"
        );
    }

    #[test]
    fn a_kernel_owned_ipv6_vip_and_its_lips_are_silent_until_a_twin_holds_it() {
        let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap();
        let vip = v6("2001:db8:10::100");
        let shared = v6("2001:db8:20::201");
        let spec = |vip: std::net::Ipv6Addr, lips6: Vec<std::net::Ipv6Addr>, lips| {
            let c = ServiceConfig::new(vip, 80, Proto::Tcp, SchedKind::Rr);
            let opts = crate::forward::SvcOptions {
                lips6,
                ..Default::default()
            };
            (c, lips, opts)
        };
        let table = ServiceTable::new(
            1,
            vec![
                // FullNAT to IPv6 servers through two LIPs, one shared with a config-owned
                // service; NAT64 through an IPv4 one.
                spec(vip, vec![shared, v6("2001:db8:20::202")], vec![]),
                spec(vip, vec![], vec![ip("10.20.0.203")]),
                spec(v6("2001:db8:10::200"), vec![shared], vec![]),
            ]
            .into_iter()
            .enumerate()
            .map(|(i, (mut c, lips, o))| {
                c.vport = 80 + i as u16;
                (c, lips, o)
            })
            .collect(),
            None,
        )
        .unwrap();
        let mut inputs = inputs(true, false);
        inputs.kernel_owned = [vip.into()].into_iter().collect();
        let mut k = reconciled();
        let (t, p) = build(&inputs, Some(&k), &table);
        let mut silent: Vec<_> = t.silent6.iter().copied().collect();
        silent.sort();
        assert_eq!(
            silent,
            [vip, v6("2001:db8:20::202")],
            "a shared LIP is answered"
        );
        assert!(
            !t.local.contains(&ip("10.20.0.203")),
            "NAT64's LIP follows too"
        );
        assert_eq!(p.kernel_owned, [(vip.into(), false)]);
        // keepalived adds the VIP to the twin.
        k.apply(KernelEvent::Addr6 {
            port: 0,
            addr: vip,
            len: 64,
            add: true,
        });
        let (t, p) = build(&inputs, Some(&k), &table);
        assert!(t.silent6.is_empty(), "{:?}", t.silent6);
        assert!(t.local.contains(&ip("10.20.0.203")));
        assert_eq!(p.kernel_owned, [(vip.into(), true)]);
        assert!(
            !t.owns6(vip),
            "a kernel-owned VIP on a twin is a VIP, not a port address"
        );
    }

    #[test]
    fn with_twins_the_kernel_has_the_ipv6_addresses_and_routes() {
        let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap();
        let c6 = |s: &str| s.parse::<crate::net::Ipv6Cidr>().unwrap();
        let mut inputs = inputs(true, false);
        inputs.ports[1].addrs6 = vec![c6("2001:db8:20::1/64")];
        inputs.routes6 = vec![(c6("2001:db8:40::/48"), Some(v6("2001:db8:20::254")), 1)];
        let mut k = reconciled();
        // What reconciling wrote and the kernel added: the port's address, its prefix's route,
        // the link-local ones, the config's route.
        for e in [
            KernelEvent::Addr6 {
                port: 1,
                addr: v6("2001:db8:20::1"),
                len: 64,
                add: true,
            },
            KernelEvent::Addr6 {
                port: 1,
                addr: v6("fe80::1"),
                len: 64,
                add: true,
            },
            KernelEvent::Route6 {
                port: 1,
                prefix: c6("2001:db8:20::/64"),
                via: None,
                metric: 256,
                add: true,
            },
            KernelEvent::Route6 {
                port: 1,
                prefix: c6("fe80::/64"),
                via: None,
                metric: 256,
                add: true,
            },
            KernelEvent::Route6 {
                port: 1,
                prefix: c6("2001:db8:40::/48"),
                via: Some(v6("2001:db8:20::254")),
                metric: 1000,
                add: true,
            },
        ] {
            k.apply(e);
        }
        let (t, p) = build(&inputs, Some(&k), &services());
        assert!(t.owns6_on(1, v6("2001:db8:20::1")));
        assert_eq!(p.routes6, [(c6("2001:db8:40::/48"), Origin::ConfigKernel)]);
        assert_eq!(t.routes6.iter().count(), 2, "{:?}", t.routes6);
        let via = |t: &Topology, a: &str| t.routes6.lookup(v6(a)).map(|r| (r.via, r.port));
        assert_eq!(
            via(&t, "2001:db8:40::9"),
            Some((Some(v6("2001:db8:20::254")), 1))
        );
        // `ip -6 addr add 2001:db8:20::7/64`, `ip -6 route add 2001:db8:50::/48 via ...`, and the
        // config's route deleted.
        k.apply(KernelEvent::Addr6 {
            port: 1,
            addr: v6("2001:db8:20::7"),
            len: 64,
            add: true,
        });
        k.apply(KernelEvent::Route6 {
            port: 1,
            prefix: c6("2001:db8:50::/48"),
            via: Some(v6("fe80::254")),
            metric: 1024,
            add: true,
        });
        k.apply(KernelEvent::Route6 {
            port: 1,
            prefix: c6("2001:db8:40::/48"),
            via: None,
            metric: 1000,
            add: false,
        });
        let (t, p) = build(&inputs, Some(&k), &services());
        assert!(t.owns6_on(1, v6("2001:db8:20::7")));
        assert_eq!(
            p.addrs6,
            [
                (1, c6("2001:db8:20::1/64"), Origin::ConfigKernel),
                (1, c6("2001:db8:20::7/64"), Origin::Kernel)
            ]
        );
        assert_eq!(p.routes6, [(c6("2001:db8:50::/48"), Origin::Kernel)]);
        assert_eq!(via(&t, "2001:db8:50::1"), Some((Some(v6("fe80::254")), 1)));
        assert_eq!(via(&t, "2001:db8:40::9"), None, "the kernel deleted it");
        // Without the kernel's view: the config's.
        let (t, p) = build(&inputs, None, &services());
        assert!(!t.owns6_on(1, v6("2001:db8:20::7")));
        assert_eq!(p.routes6, [(c6("2001:db8:40::/48"), Origin::Config)]);
        assert!(via(&t, "2001:db8:40::9").is_some());
    }
}

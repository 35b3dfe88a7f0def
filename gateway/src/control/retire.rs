//! Local addresses on their way out: `ipvsadm -Q` takes a FullNAT LIP out of its service's pools
//! at once, but its connections still need it. Until the last of them ends it stays the
//! gateway's, with ARP answered and replies forwarded (`SvcOptions::retiring_lips`); the control
//! loop lets it go when no worker counts a connection on it any more.
//!
//! DPVS refuses such a deletion (`EDPVS_BUSY` while the address's refcount is not zero, with an
//! "XXX: move to trash list and implement a garbage collector" beside it); IPVS's nearest
//! behaviour, for a removed real server with `expire_nodest_conn=0`, keeps its connections
//! forwarding. An operator who takes a LIP out under load must not strand the connections on it:
//! until this, their replies were dropped (`ip_not_for_us`) and they hung until their timeout.

use crate::forward::ServiceSpec;
use crate::service::LipKey;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long a LIP retires at least: the workers publish their counts every 100 ms
/// (`worker::PUBLISH_EVERY_MS`), so a count of 0 read sooner may be older than the connections
/// its pool handed out just before the change.
pub const GRACE: Duration = Duration::from_secs(1);

/// The retiring local addresses, by (service, LIP), with when each retired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retiring {
    keys: Vec<(LipKey, Instant)>,
}

fn key_of(spec: &ServiceSpec, lip: IpAddr) -> LipKey {
    LipKey {
        proto: spec.0.proto.number(),
        vip: spec.0.vip,
        vport: spec.0.vport,
        lip,
    }
}

fn same_service(a: &ServiceSpec, k: &LipKey) -> bool {
    a.0.proto.number() == k.proto && a.0.vip == k.vip && a.0.vport == k.vport
}

/// A service's local addresses of both families: IPv4 (FullNAT, NAT64's) and IPv6 (FullNAT).
fn lips_of(spec: &ServiceSpec) -> impl Iterator<Item = IpAddr> + '_ {
    let v4 = spec.1.iter().map(|&l| IpAddr::V4(l));
    v4.chain(spec.2.lips6.iter().map(|&l| IpAddr::V6(l)))
}

impl Retiring {
    /// After the services went from `old` to `new`: each LIP a service kept lost retires; a
    /// retiring one is forgotten once its service is gone, it is the service's again, or its
    /// address became a VIP (whose traffic is then the new service's). `new`'s services are found
    /// by key in a map built once: found by a scan of `new` for each of `old`'s, a single change
    /// on 10,000 services took a tenth of a second here (perf/RESULTS.md, "A single change on a
    /// large table").
    pub fn after_change(&mut self, old: &[ServiceSpec], new: &[ServiceSpec], now: Instant) {
        let by_key: HashMap<(u8, IpAddr, u16), &ServiceSpec> = new
            .iter()
            .map(|n| ((n.0.proto.number(), n.0.vip, n.0.vport), n))
            .collect();
        for o in old {
            let Some(n) = by_key.get(&(o.0.proto.number(), o.0.vip, o.0.vport)) else {
                continue;
            };
            for lip in lips_of(o).filter(|l| !lips_of(n).any(|k| k == *l)) {
                let k = key_of(o, lip);
                if !self.keys.iter().any(|(r, _)| *r == k) {
                    self.keys.push((k, now));
                }
            }
        }
        if self.keys.is_empty() {
            return;
        }
        let vips: HashSet<IpAddr> = new.iter().map(|n| n.0.vip).collect();
        self.keys.retain(|(k, _)| {
            by_key
                .get(&(k.proto, k.vip, k.vport))
                .is_some_and(|n| !lips_of(n).any(|l| l == k.lip))
                && !vips.contains(&k.lip)
        });
    }

    /// `specs` with each service's retiring LIPs in its options, by family.
    pub fn overlay(&self, specs: &mut [ServiceSpec]) {
        for s in specs.iter_mut() {
            let mine: Vec<IpAddr> = self
                .keys
                .iter()
                .filter(|(k, _)| same_service(s, k))
                .map(|(k, _)| k.lip)
                .collect();
            s.2.retiring_lips.clear();
            s.2.retiring_lips6.clear();
            for lip in mine {
                match lip {
                    IpAddr::V4(l) => s.2.retiring_lips.push(l),
                    IpAddr::V6(l) => s.2.retiring_lips6.push(l),
                }
            }
        }
    }

    /// Lets go of the LIPs retired for [`GRACE`] on which no worker counts a connection
    /// (`in_use`: connections on a (service, LIP), summed over the workers); the ones let go.
    pub fn release(&mut self, now: Instant, in_use: impl Fn(&LipKey) -> u64) -> Vec<LipKey> {
        let (gone, kept): (Vec<_>, Vec<_>) = self
            .keys
            .drain(..)
            .partition(|(k, t)| now.duration_since(*t) >= GRACE && in_use(k) == 0);
        self.keys = kept;
        gone.into_iter().map(|(k, _)| k).collect()
    }

    /// Puts back what [`release`](Self::release) let go (the generation without them failed).
    pub fn restore(&mut self, keys: Vec<LipKey>, since: Instant) {
        self.keys.extend(keys.into_iter().map(|k| (k, since)));
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &LipKey> {
        self.keys.iter().map(|(k, _)| k)
    }
}

/// Connections per (service, LIP), summed over the workers' last published counts.
pub fn in_use(
    published: &[std::sync::Arc<std::sync::Mutex<crate::stats::WorkerStats>>],
) -> hashbrown::HashMap<LipKey, u64> {
    let mut m = hashbrown::HashMap::new();
    for p in published {
        if let Ok(s) = p.lock() {
            for (k, n) in &s.lip_usage {
                *m.entry(*k).or_default() += u64::from(*n);
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::SvcOptions;
    use crate::service::{Proto, SchedKind, ServiceConfig};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn spec(vip: [u8; 4], lips: &[u8]) -> ServiceSpec {
        let cfg = ServiceConfig::new(Ipv4Addr::from(vip), 80, Proto::Tcp, SchedKind::Rr);
        let lips = lips.iter().map(|&l| Ipv4Addr::new(10, 20, 0, l)).collect();
        (cfg, lips, SvcOptions::default())
    }

    fn lip(l: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 20, 0, l)
    }

    #[test]
    fn a_removed_lip_retires_until_no_connection_uses_it() {
        let mut r = Retiring::default();
        let vip = [10, 10, 0, 100];
        let t0 = Instant::now();
        r.after_change(&[spec(vip, &[200, 201])], &[spec(vip, &[201])], t0);
        let mut specs = vec![spec(vip, &[201]), spec([10, 10, 0, 101], &[202])];
        r.overlay(&mut specs);
        assert_eq!(specs[0].2.retiring_lips, vec![lip(200)]);
        assert!(specs[1].2.retiring_lips.is_empty(), "another service's");
        let later = t0 + GRACE;
        assert!(
            r.release(later, |_| 3).is_empty(),
            "connections on it: kept"
        );
        assert!(
            r.release(t0, |_| 0).is_empty(),
            "within the grace: counts published before the change"
        );
        let gone = r.release(later, |k| u64::from(k.lip != IpAddr::V4(lip(200))));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].lip, IpAddr::V4(lip(200)));
        assert!(r.is_empty());
    }

    /// An IPv6 service's local addresses retire as IPv4's do, into `retiring_lips6`.
    #[test]
    fn an_ipv6_lip_retires_as_an_ipv4_one() {
        let v6 = |vip: u16, lips: &[u16]| {
            let cfg = ServiceConfig::new(
                Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, vip),
                80,
                Proto::Tcp,
                SchedKind::Rr,
            );
            let opts = SvcOptions {
                lips6: lips
                    .iter()
                    .map(|&l| Ipv6Addr::new(0x2001, 0xdb8, 0x20, 0, 0, 0, 0, l))
                    .collect(),
                ..Default::default()
            };
            (cfg, Vec::new(), opts)
        };
        let mut r = Retiring::default();
        let t0 = Instant::now();
        r.after_change(&[v6(0x100, &[0x200, 0x201])], &[v6(0x100, &[0x201])], t0);
        let mut specs = vec![v6(0x100, &[0x201]), v6(0x101, &[0x202])];
        r.overlay(&mut specs);
        let gone_lip = Ipv6Addr::new(0x2001, 0xdb8, 0x20, 0, 0, 0, 0, 0x200);
        assert_eq!(specs[0].2.retiring_lips6, vec![gone_lip]);
        assert!(specs[0].2.retiring_lips.is_empty());
        assert!(specs[1].2.retiring_lips6.is_empty(), "another service's");
        assert!(r.release(t0 + GRACE, |_| 1).is_empty());
        let gone = r.release(t0 + GRACE, |_| 0);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].lip, IpAddr::V6(gone_lip));
        // Added back (-P): forgotten.
        r.after_change(&[v6(0x100, &[0x200, 0x201])], &[v6(0x100, &[0x201])], t0);
        r.after_change(&[v6(0x100, &[0x201])], &[v6(0x100, &[0x200, 0x201])], t0);
        assert!(r.is_empty());
    }

    #[test]
    fn a_retiring_lip_is_forgotten_when_its_service_goes_or_takes_it_back() {
        let vip = [10, 10, 0, 100];
        let (two, one) = ([spec(vip, &[200, 201])], [spec(vip, &[201])]);
        let mut r = Retiring::default();
        let t = Instant::now();
        let retire = |r: &mut Retiring| {
            r.after_change(&two, &one, t);
            assert!(!r.is_empty());
        };
        retire(&mut r);
        r.after_change(&one, &two, t);
        assert!(r.is_empty(), "added again (-P): the service's again");
        retire(&mut r);
        r.after_change(&one, &[], t);
        assert!(r.is_empty(), "the service deleted");
        retire(&mut r);
        let with_vip = [one[0].clone(), spec([10, 20, 0, 200], &[])];
        r.after_change(&one, &with_vip, t);
        assert!(r.is_empty(), "the address is a VIP now");
        // A new service of the same key does not inherit what it never had.
        r.after_change(&[], &one, t);
        assert!(r.is_empty());
    }
}

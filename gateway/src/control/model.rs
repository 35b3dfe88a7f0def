//! The service table as the admin socket edits it: the running generation turned back into
//! `[[service]]` entries, changed in order by a batch of [`Change`]s, then validated whole by the
//! same code as the configuration file (`config::validate_service_entries`).
//!
//! Starting from the running generation each time (never from a copy kept here) keeps the socket,
//! SIGHUP reloads and the workers in agreement. Errors read as ipvsadm's (`Service already exists`,
//! `No such destination`, ...), followed by what was at fault.

use super::proto::{Change, RealOpts, SvcKey, SvcOpts};
use crate::config::{RealEntry, ServiceEntry};
use crate::forward::ServiceTable;
use crate::service::{Persistence, Proto, SchedKind};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// `[[service]]` entries in table order, each shared until changed: a batch works on a copy of
/// the model (refused, it changes nothing), and copying 10,000 services of 10 real servers, their
/// strings and all, then dropping the old model, took a third of a single change's time
/// (perf/RESULTS.md, "A single change on a large table"). A change copies only the services it
/// touches (`Arc::make_mut`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    pub services: Vec<Arc<ServiceEntry>>,
}

/// The scheduler flag names for a scheduler, as ipvsadm spells them.
fn flag_names(sched: SchedKind, fallback: bool, port: bool) -> Vec<String> {
    let p = if sched == SchedKind::Mh { "mh" } else { "sh" };
    let mut v = Vec::new();
    if fallback {
        v.push(format!("{p}-fallback"));
    }
    if port {
        v.push(format!("{p}-port"));
    }
    v
}

impl Model {
    /// A model of `[[service]]` entries (a configuration file's).
    pub fn of_entries(entries: &[ServiceEntry]) -> Model {
        Model {
            services: entries.iter().cloned().map(Arc::new).collect(),
        }
    }

    /// The services of a running snapshot, as configuration entries.
    pub fn from_table(t: &ServiceTable) -> Model {
        let services = t
            .services
            .iter()
            .map(|vs| {
                let c = vs.svc.config();
                Arc::new(ServiceEntry {
                    vip: c.vip.to_string(),
                    port: c.vport,
                    protocol: c.proto.to_string(),
                    scheduler: c.sched.name().to_string(),
                    scheduler_flags: flag_names(c.sched, c.flags.fallback, c.flags.hash_port),
                    persistence_s: c.persistence.map(|p| p.timeout_s),
                    persistence_netmask: c.persistence.and_then(|p| {
                        if c.vip.is_ipv6() {
                            (p.prefix6 != Persistence::default().prefix6)
                                .then(|| p.prefix6.to_string())
                        } else {
                            (p.netmask != Persistence::default().netmask)
                                .then(|| p.netmask.to_string())
                        }
                    }),
                    local_addresses: vs
                        .lips
                        .iter()
                        .map(|a| a.to_string())
                        .chain(vs.lips6.iter().map(|a| a.to_string()))
                        .collect(),
                    toa: vs.toa,
                    syn_retry: vs.syn_retry,
                    // Written only where it differs from the default (on for mh).
                    sloppy_tcp: (vs.sloppy_tcp != (c.sched == crate::service::SchedKind::Mh))
                        .then_some(vs.sloppy_tcp),
                    expire_nodest_conn: c.expire_nodest_conn,
                    expire_quiescent_template: c.persistence.is_some_and(|p| p.expire_quiescent),
                    owner: "config".into(),
                    check: None,
                    sorry_server: None,
                    acl: vs.acl.iter().map(|r| r.to_string()).collect(),
                    synproxy: vs.synproxy.to_string(),
                    client_limit: vs.limit.map(|l| l.entry()),
                    reals: c
                        .reals
                        .iter()
                        .map(|r| RealEntry {
                            address: r.addr.to_string(),
                            port: Some(r.port),
                            weight: r.weight,
                            mode: r.fwd.to_string(),
                            upper: r.upper,
                            lower: r.lower,
                            check: None,
                        })
                        .collect(),
                })
            })
            .collect();
        Model { services }
    }

    fn svc_mut(&mut self, at: &ServiceIndex, k: &SvcKey) -> Result<&mut ServiceEntry, String> {
        at.find(k)
            .and_then(|i| self.services.get_mut(i))
            .map(Arc::make_mut)
            .ok_or_else(|| format!("No such service: {k}"))
    }

    /// Applies one change; on error the model may be half-changed (callers work on a copy).
    pub fn apply(&mut self, c: &Change) -> Result<(), String> {
        let mut at = ServiceIndex::of(&self.services);
        self.apply_indexed(c, &mut at)
    }

    /// [`apply`](Self::apply) with the services' places in `at`, kept up to date.
    fn apply_indexed(&mut self, c: &Change, at: &mut ServiceIndex) -> Result<(), String> {
        match c {
            Change::Clear => {
                self.services.clear();
                *at = ServiceIndex::default();
            }
            Change::AddService { svc, opts } => {
                if at.find(svc).is_some() {
                    return Err(format!("Service already exists: {svc}"));
                }
                check_key(svc)?;
                let mut e = ServiceEntry {
                    vip: svc.vip.to_string(),
                    port: svc.port,
                    protocol: svc.proto.to_ascii_lowercase(),
                    scheduler: String::new(),
                    scheduler_flags: Vec::new(),
                    persistence_s: None,
                    persistence_netmask: None,
                    local_addresses: Vec::new(),
                    toa: true,
                    syn_retry: false,
                    sloppy_tcp: None,
                    expire_nodest_conn: false,
                    expire_quiescent_template: false,
                    reals: Vec::new(),
                    owner: "config".into(),
                    check: None,
                    sorry_server: None,
                    acl: Vec::new(),
                    synproxy: "off".into(),
                    client_limit: None,
                };
                set_opts(&mut e, opts)?;
                at.added(svc, self.services.len());
                self.services.push(Arc::new(e));
            }
            Change::EditService { svc, opts } => set_opts(self.svc_mut(at, svc)?, opts)?,
            Change::DelService { svc } => {
                let i = at
                    .find(svc)
                    .ok_or_else(|| format!("No such service: {svc}"))?;
                self.services.remove(i);
                at.removed(svc, i);
            }
            Change::AddReal { svc, real } => {
                let s = self.svc_mut(at, svc)?;
                let port = real.port.unwrap_or(s.port);
                if find_real(s, real.addr, port).is_some() {
                    return Err(format!("Destination already exists: {}:{port}", real.addr));
                }
                let mut r = RealEntry {
                    address: real.addr.to_string(),
                    port: Some(port),
                    weight: 0,
                    mode: String::new(),
                    upper: 0,
                    lower: 0,
                    check: None,
                };
                set_real(&mut r, real)?;
                s.reals.push(r);
            }
            Change::EditReal { svc, real } => {
                let s = self.svc_mut(at, svc)?;
                let port = real.port.unwrap_or(s.port);
                let i = find_real(s, real.addr, port)
                    .ok_or_else(|| format!("No such destination: {}:{port}", real.addr))?;
                set_real(&mut s.reals[i], real)?;
            }
            Change::DelReal { svc, addr, port } => {
                let s = self.svc_mut(at, svc)?;
                let port = port.unwrap_or(s.port);
                let i = find_real(s, *addr, port)
                    .ok_or_else(|| format!("No such destination: {addr}:{port}"))?;
                s.reals.remove(i);
            }
            Change::AddLaddr { svc, addr } => {
                let s = self.svc_mut(at, svc)?;
                let a = addr.to_string();
                if s.local_addresses.contains(&a) {
                    return Err(format!("Local address already exists: {addr}"));
                }
                s.local_addresses.push(a);
            }
            Change::DelLaddr { svc, addr } => {
                let s = self.svc_mut(at, svc)?;
                let a = addr.to_string();
                let i = s
                    .local_addresses
                    .iter()
                    .position(|x| *x == a)
                    .ok_or_else(|| format!("No such local address: {addr}"))?;
                s.local_addresses.remove(i);
            }
            Change::SetCheck { svc, real, check } => {
                let s = self.svc_mut(at, svc)?;
                match real {
                    None => s.check = check.as_deref().cloned(),
                    Some((addr, port)) => {
                        let port = port.unwrap_or(s.port);
                        let i = find_real(s, (*addr).into(), port)
                            .ok_or_else(|| format!("No such destination: {addr}:{port}"))?;
                        s.reals[i].check = check.as_deref().cloned();
                    }
                }
            }
            Change::SetSorryServer { svc, server } => {
                self.svc_mut(at, svc)?.sorry_server = server.clone();
            }
            Change::SetAcl { svc, rules } => {
                crate::forward::acl::parse_list(rules)?;
                self.svc_mut(at, svc)?.acl = rules.clone();
            }
            Change::SetSynProxy { svc, mode } => {
                mode.parse::<crate::forward::synproxy::Mode>()?;
                self.svc_mut(at, svc)?.synproxy = mode.clone();
            }
            Change::SetLimit { svc, limit } => {
                if let Some(l) = limit {
                    crate::forward::limit::ClientLimit::parse(l, svc.vip.is_ipv6())
                        .map_err(|(k, e)| format!("client_limit.{k}: {e}"))?;
                }
                self.svc_mut(at, svc)?.client_limit = limit.clone();
            }
        }
        Ok(())
    }

    /// Applies a batch in order; the error carries the index of the change at fault.
    pub fn apply_all(&mut self, changes: &[Change]) -> Result<(), (usize, String)> {
        let mut at = ServiceIndex::of(&self.services);
        for (i, c) in changes.iter().enumerate() {
            self.apply_indexed(c, &mut at).map_err(|e| (i, e))?;
        }
        Ok(())
    }

    /// Rewrites `service[i]` in a validation error into the service's name.
    pub fn name_error(&self, e: &str) -> String {
        if let Some(rest) = e.strip_prefix("service[") {
            if let Some((i, tail)) = rest.split_once(']') {
                if let Some(s) = i.parse::<usize>().ok().and_then(|i| self.services.get(i)) {
                    let tail = tail.trim_start_matches('.');
                    return format!(
                        "service {} {}:{}: {tail}",
                        s.protocol.to_ascii_uppercase(),
                        s.vip,
                        s.port
                    );
                }
            }
        }
        e.to_string()
    }
}

fn check_key(k: &SvcKey) -> Result<(), String> {
    k.proto.parse::<Proto>().map_err(|e| e.to_string())?;
    if k.port == 0 {
        return Err(format!("Invalid port 0 for service {k}"));
    }
    Ok(())
}

/// Where each service of a model is, by its key (VIP, port, protocol in lower case): a batch's
/// changes find their service in one probe. A scan that parsed every VIP made a restore
/// quadratic: 2,000 IPv6 services took 1.2-1.45 s, half of it in the address parser (perf/RESULTS.md,
/// "A restore's services found by key").
#[derive(Default)]
struct ServiceIndex {
    at: std::collections::HashMap<(IpAddr, u16, ProtoKey), usize>,
}

/// A protocol as the index keys it, in any case: TCP and UDP as their numbers, anything else
/// (refused later by validation) in lower case. Built for every service at every change: the
/// two protocols there are cost no allocation.
#[derive(Clone, PartialEq, Eq, Hash)]
enum ProtoKey {
    Number(u8),
    Other(String),
}

impl ProtoKey {
    fn of(proto: &str) -> ProtoKey {
        if proto.eq_ignore_ascii_case("tcp") {
            ProtoKey::Number(6)
        } else if proto.eq_ignore_ascii_case("udp") {
            ProtoKey::Number(17)
        } else {
            ProtoKey::Other(proto.to_ascii_lowercase())
        }
    }
}

impl ServiceIndex {
    /// The places of `services` (addresses compare parsed: `2001:db8::1` is `2001:DB8:0::1`); of
    /// two entries with one key, the first, as a scan would find it.
    fn of(services: &[impl std::borrow::Borrow<ServiceEntry>]) -> ServiceIndex {
        let mut at = std::collections::HashMap::with_capacity(services.len());
        for (i, s) in services.iter().enumerate() {
            let s: &ServiceEntry = s.borrow();
            if let Ok(vip) = s.vip.parse() {
                at.entry((vip, s.port, ProtoKey::of(&s.protocol)))
                    .or_insert(i);
            }
        }
        ServiceIndex { at }
    }

    fn key(k: &SvcKey) -> (IpAddr, u16, ProtoKey) {
        (k.vip, k.port, ProtoKey::of(&k.proto))
    }

    fn find(&self, k: &SvcKey) -> Option<usize> {
        self.at.get(&Self::key(k)).copied()
    }

    /// Service `k` appended at `i`.
    fn added(&mut self, k: &SvcKey, i: usize) {
        self.at.insert(Self::key(k), i);
    }

    /// Service `k` removed from `i`: those after it move up one.
    fn removed(&mut self, k: &SvcKey, i: usize) {
        self.at.remove(&Self::key(k));
        for place in self.at.values_mut() {
            if *place > i {
                *place -= 1;
            }
        }
    }
}

/// Addresses compare parsed (`2001:db8::1` is `2001:DB8:0::1`).
fn find_real(s: &ServiceEntry, addr: IpAddr, port: u16) -> Option<usize> {
    s.reals
        .iter()
        .position(|r| r.address.parse() == Ok(addr) && r.port.unwrap_or(s.port) == port)
}

/// `-A`/`-E` semantics: every option is given again; an absent one takes its default (ipvsadm
/// sends the whole service to the kernel, so `-E` without `-p` makes a service non-persistent).
fn set_opts(e: &mut ServiceEntry, o: &SvcOpts) -> Result<(), String> {
    let sched = o.scheduler.clone().unwrap_or_else(|| "wlc".into());
    sched
        .parse::<SchedKind>()
        .map_err(|err| format!("Scheduler or persistence engine not found: {err}"))?;
    e.scheduler = sched;
    e.scheduler_flags = o.flags.clone();
    if o.persistence_s == Some(0) {
        return Err("illegal timeout for persistent service: 0".into());
    }
    let masked = o.netmask.is_some() || o.prefix6.is_some();
    e.persistence_s = o
        .persistence_s
        .or(masked.then_some(crate::service::DEFAULT_PERSIST_TIMEOUT_S));
    // The config's key holds either: an IPv4 netmask or an IPv6 prefix length.
    e.persistence_netmask = match (o.netmask, o.prefix6) {
        (Some(m), _) if m != Ipv4Addr::BROADCAST => Some(m.to_string()),
        (_, Some(n)) if n != 128 => Some(n.to_string()),
        _ => None,
    };
    Ok(())
}

fn set_real(r: &mut RealEntry, o: &RealOpts) -> Result<(), String> {
    if o.weight > crate::service::MAX_WEIGHT {
        return Err(format!("illegal weight specified: {}", o.weight));
    }
    o.mode
        .parse::<crate::service::FwdMode>()
        .map_err(|e| e.to_string())?;
    r.weight = o.weight;
    r.mode = o.mode.clone();
    r.upper = o.upper;
    r.lower = o.lower;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate_service_entries;
    use crate::net::Ipv4Cidr;

    fn key(port: u16) -> SvcKey {
        SvcKey {
            proto: "tcp".into(),
            vip: Ipv4Addr::new(10, 10, 0, 100).into(),
            port,
        }
    }

    fn real(last: u8, mode: &str) -> RealOpts {
        RealOpts {
            addr: Ipv4Addr::new(10, 20, 0, last).into(),
            port: None,
            weight: 1,
            mode: mode.into(),
            upper: 0,
            lower: 0,
        }
    }

    fn ports() -> Vec<Vec<Ipv4Cidr>> {
        vec![
            vec!["10.10.0.1/24".parse().unwrap()],
            vec!["10.20.0.1/24".parse().unwrap()],
        ]
    }

    fn rr() -> SvcOpts {
        SvcOpts {
            scheduler: Some("rr".into()),
            ..Default::default()
        }
    }

    /// The README's IPv6 commands: one IPv6 service with FullNAT, DR and NAT64 real servers,
    /// built by ipvsadm lines, validates against dual-stack ports into the datapath's specs.
    #[test]
    fn the_readme_ipv6_commands_build_a_valid_dual_stack_service() {
        let lines = "-A -t [2001:db8:10::100]:80 -s rr\n\
                     -P -t [2001:db8:10::100]:80 -z 2001:db8:20::200\n\
                     -a -t [2001:db8:10::100]:80 -r [2001:db8:20::11]:80 -b\n\
                     -a -t [2001:db8:10::100]:80 -r [2001:db8:20::12]:80 -g\n\
                     -P -t [2001:db8:10::100]:80 -z 10.20.0.210\n\
                     -a -t [2001:db8:10::100]:80 -r 10.20.0.13:80 -b\n";
        let names = crate::control::ipvsadm::Names::default();
        let changes = crate::control::ipvsadm::parse_restore(lines, &names).unwrap();
        let mut m = Model::default();
        m.apply_all(&changes.into_iter().map(|c| c.1).collect::<Vec<_>>())
            .unwrap();
        let ports6: Vec<Vec<crate::net::Ipv6Cidr>> = vec![
            vec!["2001:db8:10::1/64".parse().unwrap()],
            vec!["2001:db8:20::1/64".parse().unwrap()],
        ];
        let specs = validate_service_entries(&m.services, &ports(), &ports6).unwrap();
        let (cfg, lips, opts) = &specs[0];
        assert_eq!(cfg.reals.len(), 3);
        assert_eq!(lips, &[Ipv4Addr::new(10, 20, 0, 210)]);
        assert_eq!(
            opts.lips6,
            ["2001:db8:20::200".parse::<std::net::Ipv6Addr>().unwrap()]
        );
        // Without IPv6 on the ports, the IPv6 local address is refused by name.
        let e = validate_service_entries(&m.services, &ports(), &[]).unwrap_err();
        assert!(e.to_string().contains("no port's IPv6 prefix"), "{e}");
    }

    #[test]
    fn ipvsadm_errors_name_the_problem() {
        let mut m = Model::default();
        m.apply(&Change::AddService {
            svc: key(80),
            opts: rr(),
        })
        .unwrap();
        let dup = m
            .apply(&Change::AddService {
                svc: key(80),
                opts: rr(),
            })
            .unwrap_err();
        assert_eq!(dup, "Service already exists: TCP 10.10.0.100:80");
        let e = m
            .apply(&Change::AddReal {
                svc: key(81),
                real: real(11, "dr"),
            })
            .unwrap_err();
        assert_eq!(e, "No such service: TCP 10.10.0.100:81");
        m.apply(&Change::AddReal {
            svc: key(80),
            real: real(11, "dr"),
        })
        .unwrap();
        let e = m
            .apply(&Change::AddReal {
                svc: key(80),
                real: real(11, "nat"),
            })
            .unwrap_err();
        assert_eq!(e, "Destination already exists: 10.20.0.11:80");
        let e = m
            .apply(&Change::DelReal {
                svc: key(80),
                addr: Ipv4Addr::new(10, 20, 0, 12).into(),
                port: None,
            })
            .unwrap_err();
        assert_eq!(e, "No such destination: 10.20.0.12:80");
        let bad = SvcOpts {
            scheduler: Some("foo".into()),
            ..Default::default()
        };
        let e = m
            .apply(&Change::EditService {
                svc: key(80),
                opts: bad,
            })
            .unwrap_err();
        assert!(
            e.starts_with("Scheduler or persistence engine not found") && e.contains("`foo`"),
            "{e}"
        );
        let e = m.apply(&Change::AddReal {
            svc: key(80),
            real: RealOpts {
                weight: 70000,
                ..real(13, "dr")
            },
        });
        assert!(e.unwrap_err().contains("illegal weight"));
    }

    #[test]
    fn batch_reports_the_failing_index_and_validation_names_the_service() {
        let mut m = Model::default();
        let batch = vec![
            Change::AddService {
                svc: key(80),
                opts: rr(),
            },
            Change::AddReal {
                svc: key(80),
                real: real(11, "fullnat"),
            },
            Change::DelService { svc: key(99) },
        ];
        assert_eq!(m.clone().apply_all(&batch).unwrap_err().0, 2);
        m.apply_all(&batch[..2]).unwrap();
        // A FullNAT real server without local addresses: refused by the config validation.
        let e = validate_service_entries(&m.services, &ports(), &[])
            .unwrap_err()
            .to_string();
        let named = m.name_error(&e);
        assert!(
            named.starts_with("service TCP 10.10.0.100:80: local_addresses"),
            "{named}"
        );
        m.apply(&Change::AddLaddr {
            svc: key(80),
            addr: Ipv4Addr::new(10, 20, 0, 200).into(),
        })
        .unwrap();
        let v = validate_service_entries(&m.services, &ports(), &[]).unwrap();
        assert_eq!(v[0].1, vec![Ipv4Addr::new(10, 20, 0, 200)]);
        assert_eq!(v[0].0.reals.len(), 1);
    }

    /// One batch finds each service by its key after others were added and deleted before it
    /// (the places after a deleted one move up), its protocol in any case and its address in
    /// any spelling, as the configuration file may have it.
    /// The admin socket's validation takes the specs of the entries it validated before, and
    /// still refuses what the whole table makes wrong: the same specs as a validation from
    /// scratch; a service added twice; an entry validated before, against ports that changed.
    #[test]
    fn validation_reuses_unchanged_entries_and_still_checks_the_whole_table() {
        use crate::config::{validate_shared_entries, SpecCache};
        let mut m = Model::default();
        for port in [80, 81] {
            m.apply_all(&[
                Change::AddService {
                    svc: key(port),
                    opts: rr(),
                },
                Change::AddReal {
                    svc: key(port),
                    real: real(11, "nat"),
                },
            ])
            .unwrap();
        }
        let mut cache = SpecCache::default();
        let first = validate_shared_entries(&m.services, &ports(), &[], &mut cache).unwrap();
        let mut next = m.clone();
        next.apply_all(&[Change::AddReal {
            svc: key(81),
            real: real(12, "nat"),
        }])
        .unwrap();
        let cached = validate_shared_entries(&next.services, &ports(), &[], &mut cache).unwrap();
        assert_eq!(
            cached,
            validate_service_entries(&next.services, &ports(), &[]).unwrap()
        );
        assert_eq!(cached[0], first[0]);
        assert_eq!(cached[1].0.reals.len(), 2);
        assert_eq!(cache.len(), 2, "the replaced entry's spec dropped");
        // The same entry twice: each alone was validated before, the table is not valid.
        let mut twice = next.clone();
        twice.services.push(next.services[0].clone());
        let e = validate_shared_entries(&twice.services, &ports(), &[], &mut cache).unwrap_err();
        assert!(e.to_string().contains("defined twice"), "{e}");
        // The real servers' subnet gone from the ports: the unchanged entries are checked again.
        let ports_v = vec![vec!["10.10.0.1/24".parse().unwrap()]];
        let mut nat_lip = next.clone();
        nat_lip
            .apply_all(&[Change::AddLaddr {
                svc: key(80),
                addr: Ipv4Addr::new(10, 20, 0, 200).into(),
            }])
            .unwrap();
        validate_shared_entries(&nat_lip.services, &ports(), &[], &mut cache).unwrap();
        let e = validate_shared_entries(&nat_lip.services, &ports_v, &[], &mut cache).unwrap_err();
        assert!(e.to_string().contains("on no port's subnet"), "{e}");
    }

    /// A batch on a copy of the model copies only the services it changes: the others are the
    /// same entries in both, and the original is as it was.
    #[test]
    fn a_copy_shares_the_services_a_batch_leaves_alone() {
        let mut m = Model::default();
        for port in [80, 81, 82] {
            m.apply(&Change::AddService {
                svc: key(port),
                opts: rr(),
            })
            .unwrap();
        }
        let before = m.clone();
        let mut next = m.clone();
        next.apply_all(&[Change::AddReal {
            svc: key(81),
            real: real(11, "nat"),
        }])
        .unwrap();
        assert!(Arc::ptr_eq(&next.services[0], &m.services[0]));
        assert!(Arc::ptr_eq(&next.services[2], &m.services[2]));
        assert!(!Arc::ptr_eq(&next.services[1], &m.services[1]));
        assert_eq!(next.services[1].reals.len(), 1);
        assert_eq!(m, before, "the original is unchanged");
    }

    #[test]
    fn a_batch_finds_its_services_across_adds_and_deletes() {
        let mut m = Model::default();
        m.apply(&Change::AddService {
            svc: key(81),
            opts: rr(),
        })
        .unwrap();
        Arc::make_mut(&mut m.services[0]).protocol = "TCP".into();
        m.services.push(Arc::new(ServiceEntry {
            vip: "2001:DB8:10:0::100".into(),
            ..(*m.services[0]).clone()
        }));
        let v6 = SvcKey {
            proto: "tcp".into(),
            vip: "2001:db8:10::100".parse().unwrap(),
            port: 81,
        };
        let edit = |svc: SvcKey, sched: &str| Change::EditService {
            svc,
            opts: SvcOpts {
                scheduler: Some(sched.into()),
                ..Default::default()
            },
        };
        let batch = vec![
            Change::AddService {
                svc: key(82),
                opts: rr(),
            },
            Change::AddService {
                svc: key(83),
                opts: rr(),
            },
            Change::DelService { svc: key(81) },
            edit(key(83), "wlc"),
            edit(v6.clone(), "sh"),
            Change::AddReal {
                svc: key(82),
                real: real(11, "nat"),
            },
            Change::DelService { svc: key(82) },
            Change::AddService {
                svc: key(81),
                opts: rr(),
            },
        ];
        m.apply_all(&batch).unwrap();
        let listed: Vec<_> = m
            .services
            .iter()
            .map(|s| (s.vip.as_str(), s.port, s.scheduler.as_str()))
            .collect();
        assert_eq!(
            listed,
            [
                ("2001:DB8:10:0::100", 81, "sh"),
                ("10.10.0.100", 83, "wlc"),
                ("10.10.0.100", 81, "rr")
            ]
        );
        let gone = m.clone().apply_all(&[edit(key(82), "rr")]);
        assert_eq!(gone.unwrap_err().1, "No such service: TCP 10.10.0.100:82");
        let twice = m.apply_all(&[Change::AddService {
            svc: key(83),
            opts: rr(),
        }]);
        assert!(twice.unwrap_err().1.starts_with("Service already exists"));
    }

    #[test]
    fn table_round_trips_through_the_model() {
        let mut m = Model::default();
        let opts = SvcOpts {
            scheduler: Some("sh".into()),
            flags: vec!["sh-fallback".into(), "sh-port".into()],
            persistence_s: Some(600),
            netmask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            prefix6: None,
        };
        m.apply_all(&[
            Change::AddService { svc: key(80), opts },
            Change::AddLaddr {
                svc: key(80),
                addr: Ipv4Addr::new(10, 20, 0, 200).into(),
            },
            Change::AddReal {
                svc: key(80),
                real: RealOpts {
                    upper: 10,
                    lower: 5,
                    weight: 3,
                    ..real(11, "fullnat")
                },
            },
            Change::AddReal {
                svc: key(80),
                real: real(12, "dr"),
            },
            Change::AddService {
                svc: SvcKey {
                    proto: "udp".into(),
                    ..key(53)
                },
                opts: rr(),
            },
        ])
        .unwrap();
        let v = validate_service_entries(&m.services, &ports(), &[]).unwrap();
        let t = ServiceTable::new(2, v, None).unwrap();
        assert_eq!(Model::from_table(&t), m);
    }

    /// The admin path rebuilds configs from the running table (`from_table`); an unchanged
    /// service must come back equal, or every change would rebuild every scheduler (copy-on-write
    /// per service compares configs).
    #[test]
    fn configs_survive_the_round_trip_through_the_model() {
        let mut m = Model::default();
        let opts = |sched: &str, flags: Vec<&str>, persist: Option<u32>| SvcOpts {
            scheduler: Some(sched.into()),
            flags: flags.into_iter().map(String::from).collect(),
            persistence_s: persist,
            ..Default::default()
        };
        for (port, o) in [
            (80, opts("rr", vec![], None)),
            (81, opts("mh", vec!["mh-port", "mh-fallback"], None)),
            (82, opts("wlc", vec![], Some(300))),
            (83, opts("sh", vec!["sh-port"], None)),
        ] {
            m.apply(&Change::AddService {
                svc: key(port),
                opts: o,
            })
            .unwrap();
            for last in [11, 12] {
                m.apply(&Change::AddReal {
                    svc: key(port),
                    real: real(last, "nat"),
                })
                .unwrap();
            }
        }
        let configs = validate_service_entries(&m.services, &ports(), &[]).unwrap();
        let table = ServiceTable::new(1, configs.clone(), None).unwrap();
        let again =
            validate_service_entries(&Model::from_table(&table).services, &ports(), &[]).unwrap();
        for (a, b) in configs.iter().zip(&again) {
            assert_eq!(a.0, b.0);
        }
        let next = ServiceTable::new(2, again, Some(&table)).unwrap();
        for (a, b) in table.services.iter().zip(&next.services) {
            assert!(
                std::sync::Arc::ptr_eq(&a.svc, &b.svc),
                "{:?}",
                a.svc.config().sched
            );
        }
    }
}

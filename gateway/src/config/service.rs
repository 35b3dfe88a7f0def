//! The `[[service]]` entries (`ipvsadm -A`, `-a`) and their validation, which the config file and
//! the admin socket share: each entry checked against the ports' addresses and turned into what
//! `Control::apply_services` takes.

use super::{default_true, health, invalid, ConfigError};
use crate::net::{Ipv4Cidr, Ipv6Cidr};
use crate::service::{FwdMode, Persistence, Proto, RealServer, SchedKind, ServiceConfig};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A virtual service (`ipvsadm -A`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// The virtual IP.
    pub vip: String,
    /// The virtual port.
    pub port: u16,
    /// `tcp` or `udp`.
    #[serde(default = "default_tcp")]
    pub protocol: String,
    /// One of rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh (default wlc, as IPVS).
    #[serde(default = "default_sched")]
    pub scheduler: String,
    /// Scheduler flags as ipvsadm spells them (`sh-port`, `sh-fallback`, `mh-port`, `mh-fallback`).
    #[serde(default)]
    pub scheduler_flags: Vec<String>,
    /// Persistence timeout in seconds (`ipvsadm -p`); absent = no persistence.
    pub persistence_s: Option<u32>,
    /// Persistence netmask (`ipvsadm -M`).
    pub persistence_netmask: Option<String>,
    /// Local addresses (LIPs) for FullNAT real servers; they must be on a port's subnet.
    #[serde(default)]
    pub local_addresses: Vec<String>,
    /// Pass the client address to real servers in the TCP option TOA (FullNAT).
    #[serde(default = "default_true")]
    pub toa: bool,
    /// A client's SYN that its real server refuses (RST) or leaves unanswered (the client
    /// retransmits it `[conn] syn_unanswered_ms` or more after the first) goes to another real
    /// server, once (FullNAT and NAT; off by default, as IPVS).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub syn_retry: bool,
    /// A TCP packet other than a SYN that matches no connection starts one, in ESTABLISHED, when
    /// its real server is DR or TUN (IPVS's `sloppy_tcp`): after an ECMP change moved a flow to
    /// this box, `mh` picks the server another box picked. Default: on for `mh` services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sloppy_tcp: Option<bool>,
    /// Persistence templates of a quiesced server are dropped when used (IPVS
    /// `expire_quiescent_template`): a persistent client then moves to another server.
    #[serde(default)]
    pub expire_quiescent_template: bool,
    /// Drop a connection at once when its real server is removed (IPVS `expire_nodest_conn`).
    #[serde(default)]
    pub expire_nodest_conn: bool,
    #[serde(default, rename = "real")]
    pub reals: Vec<RealEntry>,
    /// Who decides whether this box serves the VIP and answers for it and the LIPs: `"config"`
    /// (always, the default) or `"kernel"` (only while the VIP is an address on a kernel twin,
    /// e.g. added by keepalived).
    #[serde(default = "default_owner")]
    pub owner: String,
    /// The health check of every real server (keepalived's checker in `real_server`); a real
    /// server's `check` overrides some of its keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<crate::health::check::CheckEntry>,
    /// `ADDR:PORT` (`[ADDR]:PORT` for IPv6) of a server that takes new connections while every
    /// real server is held down by the health checks (keepalived's `sorry_server`), in the first
    /// real server's mode and of the real servers' family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorry_server: Option<String>,
    /// Who may open connections: `"allow PREFIX"` and `"deny PREFIX"` rules in order, the first
    /// match deciding; none matching, allowed unless some rule allows (`forward::acl`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acl: Vec<String>,
    /// SYN proxy: `"off"` (the default), `"on"` (every SYN is answered with a cookie and the
    /// real server sees a connection only once the client's ACK proves its address) or `"auto"`
    /// (on while a worker holds `[synproxy] auto_half_open` half-open connections). TCP services
    /// with FullNAT or NAT real servers only (`forward::synproxy`).
    #[serde(default = "default_synproxy", skip_serializing_if = "is_synproxy_off")]
    pub synproxy: String,
    /// Per-client limits: new connections per second and open connections per client address
    /// (or prefix), an inline table (`forward::limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_limit: Option<crate::forward::limit::LimitEntry>,
}

fn default_synproxy() -> String {
    "off".into()
}

fn is_synproxy_off(s: &str) -> bool {
    s == "off"
}

/// A service's `synproxy` value, refused where the proxy cannot work: it must see both directions
/// of a TCP connection (FullNAT and NAT real servers).
pub fn synproxy_mode(
    cfg: &crate::service::ServiceConfig,
    value: &str,
) -> Result<crate::forward::synproxy::Mode, String> {
    let mode: crate::forward::synproxy::Mode = value.parse()?;
    if mode == crate::forward::synproxy::Mode::Off {
        return Ok(mode);
    }
    if cfg.proto != crate::service::Proto::Tcp {
        return Err("the SYN proxy is for TCP services".into());
    }
    if let Some(r) = cfg.reals.iter().find(|r| {
        matches!(
            r.fwd,
            crate::service::FwdMode::Dr | crate::service::FwdMode::Tun
        )
    }) {
        return Err(format!(
            "real server {}:{} is {}: the SYN proxy needs FullNAT or NAT (it must see the replies)",
            r.addr, r.port, r.fwd
        ));
    }
    // IPv6's proxy is built for FullNAT and NAT to IPv6 real servers (`inet6::proxied`).
    if cfg.vip.is_ipv6() {
        use crate::service::FwdMode;
        let unbuilt = |r: &&crate::service::RealServer| {
            !matches!(r.fwd, FwdMode::FullNat | FwdMode::Nat) || r.addr.is_ipv4()
        };
        if let Some(r) = cfg.reals.iter().find(unbuilt) {
            let what = match r.addr.is_ipv4() {
                true => "IPv4 (NAT64)".to_string(),
                false => r.fwd.to_string(),
            };
            return Err(format!(
                "real server {}:{} is {what}: an IPv6 service's SYN proxy is built for FullNAT and NAT to IPv6 real servers only",
                r.addr, r.port
            ));
        }
    }
    Ok(mode)
}

fn default_owner() -> String {
    "config".into()
}

fn default_tcp() -> String {
    "tcp".into()
}
fn default_sched() -> String {
    "wlc".into()
}

/// A real server (`ipvsadm -a`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RealEntry {
    pub address: String,
    /// Defaults to the service's port.
    pub port: Option<u16>,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// `fullnat` (ipvsadm -b, default), `nat` (-m), `dr` (-g), `tun` (-i).
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Upper connection threshold (`-x`), 0 = none.
    #[serde(default)]
    pub upper: u32,
    /// Lower connection threshold (`-y`).
    #[serde(default)]
    pub lower: u32,
    /// This server's health check: the service's `check` with these keys on top.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<crate::health::check::CheckEntry>,
}

fn default_weight() -> u32 {
    1
}
fn default_mode() -> String {
    "fullnat".into()
}

/// Validates `[[service]]` entries against the ports' addresses and turns them into what
/// `Control::apply_services` takes; shared by the config file and the admin socket.
pub fn validate_service_entries(
    services: &[impl std::borrow::Borrow<ServiceEntry>],
    port_addrs: &[Vec<Ipv4Cidr>],
    port_addrs6: &[Vec<Ipv6Cidr>],
) -> Result<Vec<crate::forward::ServiceSpec>, ConfigError> {
    let owned = interface_addrs(port_addrs);
    let mut out = Vec::with_capacity(services.len());
    for (i, s) in services.iter().enumerate() {
        out.push(validate_one(
            i,
            s.borrow(),
            &owned,
            port_addrs,
            port_addrs6,
        )?);
    }
    validate_across(services, &out)?;
    Ok(out)
}

/// What [`validate_shared_entries`] made of each entry it validated last, by entry: an entry is
/// shared while it is unchanged (`control::model::Model`), so its spec holds while the ports'
/// addresses it was checked against are the same.
#[derive(Default)]
pub struct SpecCache {
    port_addrs: Vec<Vec<Ipv4Cidr>>,
    port_addrs6: Vec<Vec<Ipv6Cidr>>,
    /// By the entry's address (`Arc::as_ptr`); the entry is held, so that the address names no
    /// other entry while it is here. With the validation that last saw it.
    specs: std::collections::HashMap<
        usize,
        (
            std::sync::Arc<ServiceEntry>,
            crate::forward::ServiceSpec,
            u64,
        ),
    >,
    /// Validations so far.
    round: u64,
}

impl SpecCache {
    /// Entries held.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }
}

/// [`validate_service_entries`] for the admin model's shared entries: an entry validated before
/// (the same entry, against the same ports' addresses) is not validated again, only the checks
/// across services run over the whole table. A single change on 10,000 services spent most of
/// its time validating the 9,999 it left alone (perf/RESULTS.md, "A single change on a large
/// table"). The cache holds the entries of the last successful validation.
pub fn validate_shared_entries(
    services: &[std::sync::Arc<ServiceEntry>],
    port_addrs: &[Vec<Ipv4Cidr>],
    port_addrs6: &[Vec<Ipv6Cidr>],
    cache: &mut SpecCache,
) -> Result<Vec<crate::forward::ServiceSpec>, ConfigError> {
    if cache.port_addrs != port_addrs || cache.port_addrs6 != port_addrs6 {
        *cache = SpecCache {
            port_addrs: port_addrs.to_vec(),
            port_addrs6: port_addrs6.to_vec(),
            ..Default::default()
        };
    }
    // The cache is updated in place, each entry stamped with this validation, and what this one
    // did not see dropped at the end: rebuilt at every change, it copied every spec once more
    // and freed the last copies (with 10,000 services, a change's control thread spent a quarter
    // of its time in this function: perf/RESULTS.md, "A change's control thread").
    cache.round += 1;
    let round = cache.round;
    let owned = interface_addrs(port_addrs);
    let mut out = Vec::with_capacity(services.len());
    for (i, s) in services.iter().enumerate() {
        let at = std::sync::Arc::as_ptr(s) as usize;
        match cache.specs.get_mut(&at) {
            Some((_, spec, seen)) => {
                *seen = round;
                out.push(spec.clone());
            }
            None => {
                // If this or a later check refuses the model, what was added here stays until
                // the next validation that passes drops what it did not see (each entry held, so
                // its address names no other entry meanwhile).
                let spec = validate_one(i, s, &owned, port_addrs, port_addrs6)?;
                cache.specs.insert(at, (s.clone(), spec.clone(), round));
                out.push(spec);
            }
        }
    }
    validate_across(services, &out)?;
    cache.specs.retain(|_, (_, _, seen)| *seen == round);
    Ok(out)
}

/// The ports' IPv4 addresses, which no VIP or local address may be.
fn interface_addrs(port_addrs: &[Vec<Ipv4Cidr>]) -> HashSet<IpAddr> {
    port_addrs
        .iter()
        .flatten()
        .map(|c| IpAddr::V4(c.addr))
        .collect()
}

/// One entry, `service[i]`, checked on its own and turned into its spec.
fn validate_one(
    i: usize,
    s: &ServiceEntry,
    owned: &HashSet<IpAddr>,
    port_addrs: &[Vec<Ipv4Cidr>],
    port_addrs6: &[Vec<Ipv6Cidr>],
) -> Result<crate::forward::ServiceSpec, ConfigError> {
    let key = format!("service[{i}]");
    let vip: IpAddr = s.vip.parse().map_err(|_| {
        invalid(
            format!("{key}.vip"),
            format!("{:?} is not an IPv4 or IPv6 address", s.vip),
        )
    })?;
    if let IpAddr::V6(v6) = vip {
        if !crate::inet6::is_unicast_global(v6) {
            return Err(invalid(
                format!("{key}.vip"),
                format!("{v6} is not a global unicast address"),
            ));
        }
    }
    if owned.contains(&vip) {
        return Err(invalid(
            format!("{key}.vip"),
            format!("{vip} is also an interface address"),
        ));
    }
    if s.port == 0 {
        return Err(invalid(format!("{key}.port"), "must be 1..=65535"));
    }
    let proto: Proto = s.protocol.parse().map_err(|_| {
        invalid(
            format!("{key}.protocol"),
            format!("{:?} is not tcp or udp", s.protocol),
        )
    })?;
    let sched: SchedKind = s
        .scheduler
        .parse()
        .map_err(|e| invalid(format!("{key}.scheduler"), format!("{e}")))?;
    let mut cfg = ServiceConfig::new(vip, s.port, proto, sched);
    for (j, f) in s.scheduler_flags.iter().enumerate() {
        match f.as_str() {
            "sh-port" | "mh-port" => cfg.flags.hash_port = true,
            "sh-fallback" | "mh-fallback" => cfg.flags.fallback = true,
            _ => {
                return Err(invalid(
                    format!("{key}.scheduler_flags[{j}]"),
                    format!("{f:?} is not sh-port, sh-fallback, mh-port or mh-fallback"),
                ))
            }
        }
    }
    if s.persistence_s.is_some() || s.persistence_netmask.is_some() {
        let mut p = Persistence::default();
        if let Some(t) = s.persistence_s {
            if t == 0 {
                return Err(invalid(format!("{key}.persistence_s"), "must be positive"));
            }
            p.timeout_s = t;
        }
        match (&s.persistence_netmask, vip) {
            (None, _) => {}
            (Some(m), IpAddr::V4(_)) => {
                p.netmask = m.parse().map_err(|_| {
                    invalid(
                        format!("{key}.persistence_netmask"),
                        format!("{m:?} is not a netmask"),
                    )
                })?;
            }
            // As `ipvsadm -M` takes an IPv6 service's: a prefix length.
            (Some(m), IpAddr::V6(_)) => {
                p.prefix6 = m
                    .parse()
                    .ok()
                    .filter(|n| (1..=128).contains(n))
                    .ok_or_else(|| {
                        invalid(
                            format!("{key}.persistence_netmask"),
                            format!("{m:?} is not a prefix length (1 to 128) for an IPv6 service"),
                        )
                    })?;
            }
        }
        p.expire_quiescent = s.expire_quiescent_template;
        cfg.persistence = Some(p);
    }
    cfg.expire_nodest_conn = s.expire_nodest_conn;
    let mut lips = Vec::new();
    let mut lips6 = Vec::new();
    for (j, a) in s.local_addresses.iter().enumerate() {
        let k = format!("{key}.local_addresses[{j}]");
        // An IPv6 service takes IPv6 local addresses (FullNAT) and IPv4 ones (NAT64 to
        // IPv4 real servers).
        if vip.is_ipv6() && a.contains(':') {
            let ip: Ipv6Addr = a
                .parse()
                .map_err(|_| invalid(&k, format!("{a:?} is not an IPv6 address")))?;
            if !port_addrs6.iter().flatten().any(|c| c.contains(ip)) {
                return Err(invalid(&k, format!("{ip} is on no port's IPv6 prefix")));
            }
            let iface = port_addrs6.iter().flatten().any(|c| c.addr == ip);
            if iface || lips6.contains(&ip) {
                return Err(invalid(
                    &k,
                    format!("{ip} is an interface address or listed twice"),
                ));
            }
            lips6.push(ip);
            continue;
        }
        let ip: Ipv4Addr = a
            .parse()
            .map_err(|_| invalid(&k, format!("{a:?} is not an IPv4 address")))?;
        if !port_addrs.iter().flatten().any(|c| c.contains(ip)) {
            return Err(invalid(&k, format!("{ip} is on no port's subnet")));
        }
        if owned.contains(&IpAddr::V4(ip)) || lips.contains(&ip) {
            return Err(invalid(
                &k,
                format!("{ip} is an interface address or listed twice"),
            ));
        }
        lips.push(ip);
    }
    for (j, r) in s.reals.iter().enumerate() {
        let k = format!("{key}.real[{j}]");
        let addr: IpAddr = r.address.parse().map_err(|_| {
            invalid(
                format!("{k}.address"),
                format!("{:?} is not an IPv4 or IPv6 address", r.address),
            )
        })?;
        if addr.is_ipv6() && vip.is_ipv4() {
            return Err(invalid(
                format!("{k}.address"),
                format!("{addr} is not of the VIP's address family ({vip})"),
            ));
        }
        let mode: FwdMode = r.mode.parse().map_err(|_| {
            invalid(
                format!("{k}.mode"),
                format!("{:?} is not fullnat, nat, dr or tun", r.mode),
            )
        })?;
        let nat64 = vip.is_ipv6() && addr.is_ipv4();
        if nat64 && mode != FwdMode::FullNat {
            return Err(invalid(
                format!("{k}.mode"),
                format!("an IPv4 real server of an IPv6 service (NAT64) forwards by fullnat, not {mode}"),
            ));
        }
        let own_lips = if addr.is_ipv4() {
            lips.is_empty()
        } else {
            lips6.is_empty()
        };
        if mode == FwdMode::FullNat && own_lips {
            let family = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
            return Err(invalid(
                format!("{key}.local_addresses"),
                format!("a fullnat real server needs at least one local address of its family ({family}): `local_addresses`, or `ipvsadm -P -t|-u VIP:PORT -z LIP`"),
            ));
        }
        let mut rs = RealServer::new(addr, r.port.unwrap_or(s.port), r.weight);
        rs.fwd = mode;
        rs.upper = r.upper;
        rs.lower = r.lower;
        rs.validate().map_err(|e| invalid(&k, format!("{e}")))?;
        if rs.port == 0 {
            return Err(invalid(format!("{k}.port"), "must be 1..=65535"));
        }
        if cfg.reals.iter().any(|x| x.key() == rs.key()) {
            return Err(invalid(&k, format!("{addr}:{} is listed twice", rs.port)));
        }
        cfg.reals.push(rs);
    }
    crate::service::Service::check(&cfg).map_err(|e| invalid(&key, format!("{e}")))?;
    let acl =
        crate::forward::acl::parse_list(&s.acl).map_err(|e| invalid(format!("{key}.acl"), e))?;
    let synproxy =
        synproxy_mode(&cfg, &s.synproxy).map_err(|e| invalid(format!("{key}.synproxy"), e))?;
    let limit = s
        .client_limit
        .as_ref()
        .map(|l| crate::forward::limit::ClientLimit::parse(l, vip.is_ipv6()))
        .transpose()
        .map_err(|(k, e)| invalid(format!("{key}.client_limit.{k}"), e))?;
    let opts = crate::forward::SvcOptions {
        toa: s.toa,
        syn_retry: s.syn_retry,
        sloppy_tcp: s
            .sloppy_tcp
            .unwrap_or(cfg.sched == crate::service::SchedKind::Mh),
        acl: acl.into(),
        synproxy,
        limit,
        lips6,
        retiring_lips: Vec::new(),
        retiring_lips6: Vec::new(),
    };
    Ok((cfg, lips, opts))
}

/// The checks across services: each (protocol, VIP, port) once, a NAT64 local address no IPv4
/// service's, the health checks and sorry servers.
fn validate_across(
    services: &[impl std::borrow::Borrow<ServiceEntry>],
    out: &[crate::forward::ServiceSpec],
) -> Result<(), ConfigError> {
    let mut keys = HashSet::with_capacity(out.len());
    for (i, (cfg, _, _)) in out.iter().enumerate() {
        if !keys.insert((cfg.vip, cfg.vport, cfg.proto)) {
            return Err(invalid(
                format!("service[{i}]"),
                format!(
                    "service {} {}:{} is defined twice",
                    cfg.proto, cfg.vip, cfg.vport
                ),
            ));
        }
    }
    // An IPv4 local address of an IPv6 service (NAT64) is its own: the datapath tells its
    // replies from IPv4 FullNAT ones by the address alone. (Each IPv4 service's first with the
    // address, in a map: a scan of every pair was quadratic in the services.)
    let mut v4_lips: std::collections::HashMap<Ipv4Addr, usize> = std::collections::HashMap::new();
    for (j, (cfg, lips, _)) in out.iter().enumerate() {
        if !cfg.vip.is_ipv6() {
            for l in lips {
                v4_lips.entry(*l).or_insert(j);
            }
        }
    }
    for (i, (cfg, lips, _)) in out.iter().enumerate() {
        if !cfg.vip.is_ipv6() {
            continue;
        }
        if let Some((l, j)) = lips.iter().find_map(|l| Some((l, v4_lips.get(l)?))) {
            return Err(invalid(
                format!("service[{i}].local_addresses"),
                format!("{l} is a NAT64 local address and service[{j}]'s (IPv4) too"),
            ));
        }
    }
    // Checks and sorry servers (the admin socket sets them too).
    health::targets(services).map_err(|(k, why)| invalid(k, why))?;
    for (i, s) in services.iter().enumerate() {
        let s: &ServiceEntry = s.borrow();
        if let Some(sorry) = &s.sorry_server {
            let key = format!("service[{i}].sorry_server");
            let Ok(addr) = sorry.parse::<std::net::SocketAddr>() else {
                return Err(invalid(
                    key,
                    format!("{sorry:?} is not ADDR:PORT ([ADDR]:PORT for IPv6)"),
                ));
            };
            // It joins the service as one of its real servers: of their family (IPv4 for
            // NAT64), else of the VIP's.
            let family = s
                .reals
                .first()
                .map_or(s.vip.as_str(), |r| r.address.as_str())
                .parse::<std::net::IpAddr>()
                .map(|a| a.is_ipv4());
            if family.is_ok_and(|v4| v4 != addr.is_ipv4()) {
                return Err(invalid(
                    key,
                    format!("{addr} is not of the family of the service's real servers"),
                ));
            }
        }
    }
    Ok(())
}

//! Real-server health checks (DESIGN.md decision 17; the seeds' "nanny"; keepalived's checkers):
//! active probes on the control plane through the kernel's stack (ordinary sockets, which reach
//! the wire through the kernel twins), never on a worker lcore.
//!
//! - [`check`]: what a check is (tcp, http, udp, exec) and its knobs, with keepalived's names.
//! - [`state`]: rise/fall and jitter, pure.
//! - [`probe`]: one probe of each kind, a non-blocking state machine.
//! - [`runner`]: the checker's thread, one event loop over every target; it also reads the
//!   workers' passive counters (SYNs refused or left unanswered, per real server) and marks a
//!   server down after `passive_fall` of them in a row.
//! - here: the targets a config asks for, and the services the workers run given who is down
//!   (weight 0 or removed, the sorry server).
//!
//! The datapath's half of passive detection and the connection-level retry (`syn_retry`) live in
//! `forward::fullnat`; the control plane applies transitions through the acknowledged generation
//! (`control::commit::Control::set_health`).

pub mod check;
pub mod probe;
pub mod runner;
pub mod state;

use crate::config::ServiceEntry;
use runner::{Target, TargetKey};

/// The checks `services` ask for, one per real server of a service with a `check` (or a real
/// server with one). The error names the key (`service[i].check.interval_ms`,
/// `service[i].real[j].check.kind`) and the reason. Entries are otherwise already validated.
pub fn targets(services: &[ServiceEntry]) -> Result<Vec<Target>, (String, String)> {
    let mut out = Vec::new();
    for (i, s) in services.iter().enumerate() {
        let (Ok(vip), Ok(proto)) = (
            s.vip.parse::<std::net::IpAddr>(),
            s.protocol.parse::<crate::service::Proto>(),
        ) else {
            continue;
        };
        for (j, r) in s.reals.iter().enumerate() {
            let entry = match (&s.check, &r.check) {
                (None, None) => continue,
                (Some(a), Some(b)) => a.merged(b),
                (Some(a), None) => a.clone(),
                (None, Some(b)) => b.clone(),
            };
            let Ok(rs) = r.address.parse::<std::net::IpAddr>() else {
                continue;
            };
            let rs_port = r.port.unwrap_or(s.port);
            let at = |k: &str| {
                if r.check.is_some() {
                    format!("service[{i}].real[{j}].check.{k}")
                } else {
                    format!("service[{i}].check.{k}")
                }
            };
            let check = entry.validate(rs_port).map_err(|(k, why)| (at(&k), why))?;
            if let Some(src) = check.source.filter(|s| s.is_ipv4() != rs.is_ipv4()) {
                return Err((
                    at("source"),
                    format!("{src} is not of the family of real server {rs}"),
                ));
            }
            out.push(Target {
                key: TargetKey {
                    proto: proto.number(),
                    vip,
                    vport: s.port,
                    rs,
                    rs_port,
                },
                check,
            });
        }
    }
    Ok(out)
}

/// The services the workers run: `configured` with every real server the checks hold down at
/// weight 0 (keepalived's `inhibit_on_failure`): it takes no new connection and keeps the ones it
/// has; or, for a check with `inhibit_on_failure = false` (`down` maps the server to `true`),
/// removed from its service (its connections follow `expire_nodest_conn`). The configured weights
/// are left alone, so a weight an operator sets while a server is down is the one it comes back
/// with.
///
/// A service whose every real server is held down takes new connections on its sorry server
/// (`sorry`: by (proto, VIP, port)), added at weight 1 in the first real server's mode.
pub fn effective(
    configured: &[crate::forward::ServiceSpec],
    down: &hashbrown::HashMap<TargetKey, bool>,
    sorry: &hashbrown::HashMap<(u8, std::net::IpAddr, u16), std::net::SocketAddr>,
) -> Vec<crate::forward::ServiceSpec> {
    configured
        .iter()
        .map(|(cfg, lips, opts)| {
            let mut cfg = cfg.clone();
            if !down.is_empty() {
                let (proto, vip, vport) = (cfg.proto.number(), cfg.vip, cfg.vport);
                let state = |r: &crate::service::RealServer| {
                    down.get(&TargetKey {
                        proto,
                        vip,
                        vport,
                        rs: r.addr,
                        rs_port: r.port,
                    })
                };
                let (n, first_mode) = (cfg.reals.len(), cfg.reals.first().map(|r| r.fwd));
                let held = cfg.reals.iter().filter(|r| state(r).is_some()).count();
                cfg.reals.retain(|r| state(r) != Some(&true));
                for r in &mut cfg.reals {
                    if state(r).is_some() {
                        r.weight = 0;
                    }
                }
                let id = (proto, vip, vport);
                if let (true, Some(s), Some(fwd)) =
                    (held > 0 && held == n, sorry.get(&id), first_mode)
                {
                    let mut rs = crate::service::RealServer::new(s.ip(), s.port(), 1);
                    rs.fwd = fwd;
                    if !cfg.reals.iter().any(|r| r.key() == rs.key()) {
                        cfg.reals.push(rs);
                    }
                }
            }
            (cfg, lips.clone(), opts.clone())
        })
        .collect()
}

/// The workers' passive counters per real server, summed from what they publish (every 100 ms).
pub fn passive_source(
    published: Vec<std::sync::Arc<std::sync::Mutex<crate::stats::WorkerStats>>>,
) -> runner::PassiveSource {
    Box::new(move || {
        let mut out: hashbrown::HashMap<TargetKey, runner::Passive> = hashbrown::HashMap::new();
        for w in &published {
            let Ok(s) = w.lock() else { continue };
            for (k, t) in s.traffic.iter().filter(|(k, _)| !k.is_retired()) {
                let key = TargetKey {
                    proto: k.proto,
                    vip: k.vip,
                    vport: k.vport,
                    rs: k.rip,
                    rs_port: k.rport,
                };
                let p = out.entry(key).or_default();
                p.refused += t.syn_refused;
                p.unanswered += t.syn_unanswered;
                p.streak += t.fail_streak;
            }
        }
        out
    })
}

/// The sorry servers of `services`, by (protocol number, VIP, port); entries are validated.
pub fn sorry_servers(
    services: &[ServiceEntry],
) -> hashbrown::HashMap<(u8, std::net::IpAddr, u16), std::net::SocketAddr> {
    services
        .iter()
        .filter_map(|s| {
            let proto = s.protocol.parse::<crate::service::Proto>().ok()?.number();
            Some((
                (proto, s.vip.parse().ok()?, s.port),
                s.sorry_server.as_ref()?.parse().ok()?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{Proto, RealServer, SchedKind, ServiceConfig};
    use std::net::Ipv4Addr;

    #[test]
    fn a_down_server_runs_at_weight_zero_and_its_configured_weight_is_kept() {
        let mut c = ServiceConfig::new(
            Ipv4Addr::new(10, 10, 0, 100),
            80,
            Proto::Tcp,
            SchedKind::Wrr,
        );
        c.reals
            .push(RealServer::new(Ipv4Addr::new(10, 20, 0, 11), 80, 3));
        c.reals
            .push(RealServer::new(Ipv4Addr::new(10, 20, 0, 12), 80, 2));
        let configured = vec![(c, vec![], crate::forward::SvcOptions::default())];
        let key = TargetKey {
            proto: 6,
            vip: Ipv4Addr::new(10, 10, 0, 100).into(),
            vport: 80,
            rs: Ipv4Addr::new(10, 20, 0, 11).into(),
            rs_port: 80,
        };
        let down: hashbrown::HashMap<_, _> = [(key, false)].into_iter().collect();
        let sorry = [(
            (6, Ipv4Addr::new(10, 10, 0, 100).into(), 80),
            "10.20.0.99:8080".parse().unwrap(),
        )]
        .into_iter()
        .collect();
        let e = effective(&configured, &down, &sorry);
        assert_eq!(
            e[0].0.reals.iter().map(|r| r.weight).collect::<Vec<_>>(),
            [0, 2]
        );
        assert_eq!(
            configured[0].0.reals[0].weight, 3,
            "the configured weight stays"
        );
        let up = effective(&configured, &Default::default(), &sorry);
        assert_eq!(up[0].0, configured[0].0);
        // Another port of the same address is another target.
        let other: hashbrown::HashMap<_, _> = [(
            TargetKey {
                rs_port: 8080,
                ..key
            },
            false,
        )]
        .into_iter()
        .collect();
        assert_eq!(
            effective(&configured, &other, &sorry)[0].0.reals[0].weight,
            3
        );
        // Every real server down: the sorry server takes new connections.
        let rs2 = TargetKey {
            rs: Ipv4Addr::new(10, 20, 0, 12).into(),
            ..key
        };
        let all: hashbrown::HashMap<_, _> = [(key, false), (rs2, false)].into_iter().collect();
        let e = effective(&configured, &all, &sorry);
        let w: Vec<_> = e[0]
            .0
            .reals
            .iter()
            .map(|r| (r.addr, r.port, r.weight))
            .collect();
        assert_eq!(
            w.last(),
            Some(&(Ipv4Addr::new(10, 20, 0, 99).into(), 8080, 1))
        );
        assert_eq!(w.len(), 3);
        assert_eq!(
            effective(&configured, &all, &Default::default())[0]
                .0
                .reals
                .len(),
            2
        );
        // inhibit_on_failure = false: a down server is removed, not weighted 0; every server of
        // the service down (one removed, one at weight 0) still brings the sorry server in.
        let removed: hashbrown::HashMap<_, _> = [(key, true)].into_iter().collect();
        let e = effective(&configured, &removed, &sorry);
        let w: Vec<_> = e[0].0.reals.iter().map(|r| (r.addr, r.weight)).collect();
        assert_eq!(w, [(Ipv4Addr::new(10, 20, 0, 12).into(), 2)]);
        let both: hashbrown::HashMap<_, _> = [(key, true), (rs2, false)].into_iter().collect();
        let e = effective(&configured, &both, &sorry);
        let w: Vec<_> = e[0].0.reals.iter().map(|r| (r.addr, r.weight)).collect();
        assert_eq!(
            w,
            [
                (Ipv4Addr::new(10, 20, 0, 12).into(), 0),
                (Ipv4Addr::new(10, 20, 0, 99).into(), 1)
            ]
        );
    }

    #[test]
    fn targets_merge_a_real_servers_override_and_name_bad_keys() {
        let text = format!(
            "{}\n",
            crate::testkit::LAB_CONFIG.replacen(
                "[[service.real]]\naddress = \"10.20.0.12\"",
                "[[service.real]]\naddress = \"10.20.0.12\"\ncheck = { port = 8080 }",
                1
            )
        )
        .replacen(
            "scheduler = \"wrr\"",
            "scheduler = \"wrr\"\ncheck = { kind = \"http\", path = \"/health\" }",
            1,
        );
        let cfg = crate::config::Config::parse(&text).unwrap();
        let t = targets(&cfg.services).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].key.rs_port, t[0].check.port), (80, 80));
        assert_eq!((t[1].key.rs_port, t[1].check.port), (80, 8080));
        let bad = text.replace("path = \"/health\"", "path = \"health\"");
        let e = match crate::config::Config::parse(&bad) {
            Err(e) => e.to_string(),
            Ok(c) => c.validate().unwrap_err().to_string(),
        };
        assert!(e.contains("service[0].check.path"), "{e}");
    }

    /// An IPv6 service's real servers are checked over IPv6; a check's source must be of their
    /// family, and the error names the key.
    #[test]
    fn ipv6_real_servers_are_checked_from_a_source_of_their_family() {
        let service = r#"
[[service]]
vip = "2001:db8:10::100"
port = 80
protocol = "tcp"
local_addresses = ["2001:db8:20::200"]
check = { kind = "http", path = "/" }
[[service.real]]
address = "2001:db8:20::11"
[[service.real]]
address = "2001:db8:20::12"
check = { source = "SOURCE" }
"#;
        let config = |source: &str| {
            crate::testkit::dual_stack(&format!(
                "{}\n{}",
                crate::testkit::LAB_CONFIG,
                service.replace("SOURCE", source)
            ))
        };
        let cfg = crate::config::Config::parse(&config("2001:db8:20::1")).unwrap();
        cfg.validate().unwrap();
        let t = targets(&cfg.services).unwrap();
        let v6: Vec<_> = t.iter().filter(|t| t.key.rs.is_ipv6()).collect();
        assert_eq!(v6.len(), 2, "{t:?}");
        assert_eq!(v6[1].check.source, Some("2001:db8:20::1".parse().unwrap()));
        let e = match crate::config::Config::parse(&config("10.20.0.1")) {
            Err(e) => e.to_string(),
            Ok(c) => c.validate().unwrap_err().to_string(),
        };
        assert!(e.contains("service[2].real[1].check.source"), "{e}");
        assert!(e.contains("not of the family"), "{e}");
        // An IPv6 sorry server joins the service; an IPv4 one would not be of its family.
        let with_sorry = |s: &str| {
            config("2001:db8:20::1").replacen(
                "local_addresses = [\"2001:db8:20::200\"]",
                &format!("local_addresses = [\"2001:db8:20::200\"]\nsorry_server = \"{s}\""),
                1,
            )
        };
        let cfg = crate::config::Config::parse(&with_sorry("[2001:db8:20::99]:8080")).unwrap();
        let sorry = sorry_servers(&cfg.services);
        assert_eq!(
            sorry.values().copied().collect::<Vec<_>>(),
            ["[2001:db8:20::99]:8080"
                .parse::<std::net::SocketAddr>()
                .unwrap()]
        );
        for (bad, why) in [
            ("10.20.0.99:8080", "not of the family"),
            ("2001:db8:20::99:8080", "not ADDR:PORT"),
        ] {
            let e = match crate::config::Config::parse(&with_sorry(bad)) {
                Err(e) => e.to_string(),
                Ok(c) => c.validate().unwrap_err().to_string(),
            };
            assert!(
                e.contains("service[2].sorry_server") && e.contains(why),
                "{bad}: {e}"
            );
        }
    }
}

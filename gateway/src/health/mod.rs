//! Real-server health checks (DESIGN.md decision 17; the seeds' "nanny"; keepalived's checkers):
//! active probes on the control plane through the kernel's stack (ordinary sockets, which reach
//! the wire through the kernel twins), never on a worker lcore.
//!
//! - [`check`]: what a check is (tcp, http, udp, exec) and its knobs, with keepalived's names.
//! - [`state`]: rise/fall and jitter, pure.
//!
//! Work in progress (issue 11): the probe event loop, the weight overlay through the acknowledged
//! generation, passive detection and connection-level retry are not built yet; nothing here runs.

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
            s.vip.parse::<std::net::Ipv4Addr>(),
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
            let Ok(rs) = r.address.parse() else { continue };
            let rs_port = r.port.unwrap_or(s.port);
            let check = entry.validate(rs_port).map_err(|(k, why)| {
                let at = if r.check.is_some() {
                    format!("service[{i}].real[{j}].check.{k}")
                } else {
                    format!("service[{i}].check.{k}")
                };
                (at, why)
            })?;
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
/// has. The configured weights are left alone, so a weight an operator sets while a server is down
/// is the one it comes back with.
///
/// A service whose every real server is held down takes new connections on its sorry server
/// (`sorry`: by (proto, VIP, port)), added at weight 1 in the first real server's mode.
pub fn effective(
    configured: &[(crate::service::ServiceConfig, Vec<std::net::Ipv4Addr>, bool)],
    down: &hashbrown::HashSet<TargetKey>,
    sorry: &hashbrown::HashMap<(u8, std::net::Ipv4Addr, u16), std::net::SocketAddrV4>,
) -> Vec<(crate::service::ServiceConfig, Vec<std::net::Ipv4Addr>, bool)> {
    configured
        .iter()
        .map(|(cfg, lips, toa)| {
            let mut cfg = cfg.clone();
            if !down.is_empty() {
                let mut held = 0;
                for r in &mut cfg.reals {
                    let key = TargetKey {
                        proto: cfg.proto.number(),
                        vip: cfg.vip,
                        vport: cfg.vport,
                        rs: r.addr,
                        rs_port: r.port,
                    };
                    if down.contains(&key) {
                        r.weight = 0;
                        held += 1;
                    }
                }
                let id = (cfg.proto.number(), cfg.vip, cfg.vport);
                if let (true, Some(s)) = (held > 0 && held == cfg.reals.len(), sorry.get(&id)) {
                    let mut rs = crate::service::RealServer::new(*s.ip(), s.port(), 1);
                    rs.fwd = cfg.reals[0].fwd;
                    if !cfg.reals.iter().any(|r| r.key() == rs.key()) {
                        cfg.reals.push(rs);
                    }
                }
            }
            (cfg, lips.clone(), *toa)
        })
        .collect()
}

/// The sorry servers of `services`, by (protocol number, VIP, port); entries are validated.
pub fn sorry_servers(
    services: &[ServiceEntry],
) -> hashbrown::HashMap<(u8, std::net::Ipv4Addr, u16), std::net::SocketAddrV4> {
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
        let configured = vec![(c, vec![], true)];
        let key = TargetKey {
            proto: 6,
            vip: Ipv4Addr::new(10, 10, 0, 100),
            vport: 80,
            rs: Ipv4Addr::new(10, 20, 0, 11),
            rs_port: 80,
        };
        let down: hashbrown::HashSet<_> = [key].into_iter().collect();
        let sorry = [(
            (6, Ipv4Addr::new(10, 10, 0, 100), 80),
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
        let other: hashbrown::HashSet<_> = [TargetKey {
            rs_port: 8080,
            ..key
        }]
        .into_iter()
        .collect();
        assert_eq!(
            effective(&configured, &other, &sorry)[0].0.reals[0].weight,
            3
        );
        // Every real server down: the sorry server takes new connections.
        let all: hashbrown::HashSet<_> = [
            key,
            TargetKey {
                rs: Ipv4Addr::new(10, 20, 0, 12),
                ..key
            },
        ]
        .into_iter()
        .collect();
        let e = effective(&configured, &all, &sorry);
        let w: Vec<_> = e[0]
            .0
            .reals
            .iter()
            .map(|r| (r.addr, r.port, r.weight))
            .collect();
        assert_eq!(w.last(), Some(&(Ipv4Addr::new(10, 20, 0, 99), 8080, 1)));
        assert_eq!(w.len(), 3);
        assert_eq!(
            effective(&configured, &all, &Default::default())[0]
                .0
                .reals
                .len(),
            2
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
}

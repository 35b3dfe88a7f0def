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
//! - here: the services the workers run given who is down (weight 0 or removed, the sorry
//!   server). The targets a config asks for are the config's to say (`config::health`).
//!
//! The datapath's half of passive detection and the connection-level retry (`syn_retry`) live in
//! `forward::fullnat` (IPv4) and `inet6::retry` (IPv6); the control plane applies transitions
//! through the acknowledged generation (`control::commit::Control::set_health`).

pub mod check;
pub mod probe;
pub mod runner;
pub mod state;

use runner::TargetKey;

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

/// The workers' passive counters of the real servers asked for, summed from what they publish
/// (every 100 ms, less often with 20,000 (service, real server) pairs and more:
/// `stats::lists_due`). Each server is found in each worker's list, which is in key order: the
/// checker asks 20 times a second, and summing every list whole (200,000 entries with 10,000
/// services of 10 real servers on two workers) took the checker's thread a sixth of a core
/// (perf/RESULTS.md, "A single change on a large table").
pub fn passive_source(
    published: Vec<std::sync::Arc<std::sync::Mutex<crate::stats::WorkerStats>>>,
) -> runner::PassiveSource {
    Box::new(move |keys: &[TargetKey]| {
        let mut out: hashbrown::HashMap<TargetKey, runner::Passive> =
            hashbrown::HashMap::with_capacity(keys.len());
        for w in &published {
            let Ok(s) = w.lock() else { continue };
            for key in keys {
                let k = crate::service::TrafficKey {
                    proto: key.proto,
                    vip: key.vip,
                    vport: key.vport,
                    rip: key.rs,
                    rport: key.rs_port,
                };
                let Ok(i) = s.traffic.binary_search_by(|(x, _)| x.cmp(&k)) else {
                    continue;
                };
                let t = &s.traffic[i].1;
                let p = out.entry(*key).or_default();
                p.refused += t.syn_refused;
                p.unanswered += t.syn_unanswered;
                p.streak += t.fail_streak;
            }
        }
        out
    })
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

    /// The passive counters of the servers asked for, summed over the workers' sorted lists; a
    /// server no worker lists is absent, one not asked for is not read.
    #[test]
    fn passive_counters_of_the_servers_asked_for_sum_over_the_workers() {
        use crate::counters::Traffic;
        use crate::service::TrafficKey;
        let vip: std::net::IpAddr = Ipv4Addr::new(10, 10, 0, 100).into();
        let traffic = |rs: u8| TrafficKey {
            proto: 6,
            vip,
            vport: 80,
            rip: Ipv4Addr::new(10, 20, 0, rs).into(),
            rport: 80,
        };
        let target = |rs: u8| TargetKey {
            proto: 6,
            vip,
            vport: 80,
            rs: Ipv4Addr::new(10, 20, 0, rs).into(),
            rs_port: 80,
        };
        let refused = |n: u64| Traffic {
            syn_refused: n,
            fail_streak: n,
            ..Traffic::default()
        };
        let worker = |list: Vec<(TrafficKey, Traffic)>| {
            std::sync::Arc::new(std::sync::Mutex::new(crate::stats::WorkerStats {
                traffic: list,
                ..Default::default()
            }))
        };
        let mut source = passive_source(vec![
            worker(vec![(traffic(11), refused(1)), (traffic(12), refused(2))]),
            worker(vec![
                (traffic(12), refused(10)),
                (traffic(13), refused(100)),
            ]),
        ]);
        let got = source(&[target(12), target(11), target(14)]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[&target(12)].refused, 12);
        assert_eq!(got[&target(12)].streak, 12);
        assert_eq!(got[&target(11)].refused, 1);
        assert!(!got.contains_key(&target(13)), "not asked for");
        assert!(!got.contains_key(&target(14)), "listed by no worker");
    }
}

//! Behaviour of the whole module through its public API: many picks per algorithm, several workers
//! sharing one `Arc<Service>`, snapshots replacing each other.

use super::*;
use std::net::Ipv4Addr;
use std::sync::Arc;

fn rs(n: u32, w: u32) -> RealServer {
    RealServer::new(Ipv4Addr::from(0x0a00_0000 + n), 8080, w)
}

fn config(kind: SchedKind, weights: &[u32]) -> ServiceConfig {
    let mut c = ServiceConfig::new(Ipv4Addr::new(192, 0, 2, 10), 80, Proto::Tcp, kind);
    c.reals = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| rs(i as u32 + 1, w))
        .collect();
    c
}

fn service(kind: SchedKind, weights: &[u32]) -> Service {
    Service::new(config(kind, weights), None).unwrap()
}

fn client(i: u32) -> ClientKey {
    let ip = 0xc633_0000u32.wrapping_add(i.wrapping_mul(2_654_435_761));
    ClientKey {
        ip,
        addr: u128::from(ip),
        port: (i % 60_000) as u16 + 1024,
        dst: u32::from(Ipv4Addr::new(192, 0, 2, 10)),
    }
}

/// Picks `n` new connections alternating over `workers` states; returns hits per server.
fn spread(svc: &Service, workers: usize, n: u32) -> Vec<u32> {
    let mut states: Vec<SchedState> = (0..workers).map(|_| SchedState::new(svc)).collect();
    let mut hits = vec![0u32; svc.len()];
    for i in 0..n {
        let w = (i as usize * 7 + i as usize / 3) % workers;
        let rs = states[w].pick(svc, svc, client(i), 0).unwrap();
        hits[rs] += 1;
    }
    hits
}

#[test]
fn wrr_1_2_exact_over_two_workers() {
    let svc = service(SchedKind::Wrr, &[1, 2]);
    assert_eq!(spread(&svc, 2, 300), [100, 200]);
    // and per cycle of 3 over 100k picks
    let svc = service(SchedKind::Wrr, &[1, 2]);
    let mut st = SchedState::new(&svc);
    for _ in 0..100_000 / 3 {
        let mut cycle = [0; 2];
        for _ in 0..3 {
            cycle[st.pick(&svc, &svc, client(0), 0).unwrap()] += 1;
        }
        assert_eq!(cycle, [1, 2]);
    }
}

#[test]
fn rr_cycles_and_skips_quiesced() {
    let svc = service(SchedKind::Rr, &[1, 0, 5, 1]);
    let mut st = SchedState::new(&svc);
    let picks: Vec<usize> = (0..100_000)
        .map(|i| st.pick(&svc, &svc, client(i), 0).unwrap())
        .collect();
    for (k, p) in picks.iter().enumerate() {
        assert_eq!(*p, [0, 2, 3][k % 3]);
    }
}

#[test]
fn rr_skips_overloaded() {
    let mut c = config(SchedKind::Rr, &[1, 1, 1]);
    c.reals[1].upper = 1;
    let svc = service_from(c);
    svc.stats(1).unwrap().on_conn_new();
    let mut st = SchedState::new(&svc);
    for i in 0..30 {
        assert_ne!(st.pick(&svc, &svc, client(i), 0), Some(1));
    }
}

fn service_from(c: ServiceConfig) -> Service {
    Service::new(c, None).unwrap()
}

#[test]
fn weight_zero_never_picked_by_any_scheduler() {
    for kind in SchedKind::ALL {
        let svc = service(kind, &[3, 0, 2, 0, 1]);
        let mut st = SchedState::new(&svc);
        for i in 0..2000 {
            if let Some(p) = st.pick(&svc, &svc, client(i), 0) {
                assert!(p != 1 && p != 3, "{kind} picked quiesced server {p}");
            }
        }
        let none = service(kind, &[0, 0]);
        let mut st = SchedState::new(&none);
        assert_eq!(st.pick(&none, &none, client(1), 0), None, "{kind}");
    }
}

#[test]
fn overloaded_server_excluded_then_back() {
    for kind in SchedKind::ALL {
        let mut c = config(kind, &[1, 1]);
        c.reals[0].upper = 2;
        c.reals[0].lower = 1;
        c.flags.fallback = true;
        let svc = service_from(c);
        let s0 = Arc::clone(svc.stats(0).unwrap());
        s0.on_conn_new();
        s0.on_conn_new();
        assert!(svc.overloaded(0));
        let mut st = SchedState::new(&svc);
        for i in 0..500 {
            // dh hashes the (single) destination: it may refuse rather than move
            let p = st.pick(&svc, &svc, client(i), 0);
            assert_ne!(p, Some(0), "{kind} picked an overloaded server");
        }
        s0.on_conn_gone(false); // 1, not < lower 1
        assert!(svc.overloaded(0));
        s0.on_conn_gone(false); // 0 < 1
        assert!(!svc.overloaded(0));
    }
}

#[test]
fn least_connection_family_on_live_counts() {
    // 100k connections opened and kept: wlc/sed end proportional to weights.
    for kind in [SchedKind::Wlc, SchedKind::Sed, SchedKind::Nq] {
        let svc = service(kind, &[1, 2, 5]);
        let mut st = SchedState::new(&svc);
        for i in 0..100_000 {
            let p = st.pick(&svc, &svc, client(i), 0).unwrap();
            svc.stats(p).unwrap().on_conn_new_active();
        }
        let a: Vec<u32> = (0..3).map(|i| svc.active(i)).collect();
        for (i, w) in [1u32, 2, 5].iter().enumerate() {
            let want = 100_000 * w / 8;
            assert!(a[i].abs_diff(want) <= 2, "{kind}: {a:?}");
        }
    }
    // lc ignores weights: equal split.
    let svc = service(SchedKind::Lc, &[1, 2, 5]);
    let mut st = SchedState::new(&svc);
    for i in 0..99_999 {
        let p = st.pick(&svc, &svc, client(i), 0).unwrap();
        svc.stats(p).unwrap().on_conn_new();
    }
    assert!((0..3).all(|i| svc.inactive(i) == 33_333));
}

#[test]
fn fo_and_ovf_through_service() {
    let svc = service(SchedKind::Fo, &[2, 9, 9, 4]);
    let mut st = SchedState::new(&svc);
    assert!((0..1000).all(|i| st.pick(&svc, &svc, client(i), 0) == Some(1)));

    let svc = service(SchedKind::Ovf, &[2, 3, 1]);
    let mut st = SchedState::new(&svc);
    let mut order = Vec::new();
    while let Some(p) = st.pick(&svc, &svc, client(0), 0) {
        svc.stats(p).unwrap().on_conn_new_active();
        order.push(p);
    }
    // server 1 (weight 3) takes 4 (active may equal weight), then 0 takes 3, then 2 takes 2
    assert_eq!(order, [1, 1, 1, 1, 0, 0, 0, 2, 2]);
}

#[test]
fn sh_dh_mh_keep_a_key_while_the_set_is_unchanged() {
    for kind in [SchedKind::Sh, SchedKind::Dh, SchedKind::Mh] {
        let svc = service(kind, &[1, 2, 3, 4, 5]);
        let mut a = SchedState::new(&svc);
        let mut b = SchedState::new(&svc);
        let first: Vec<Option<usize>> = (0..2000)
            .map(|i| a.pick(&svc, &svc, client(i), 0))
            .collect();
        for round in 0..3 {
            for i in 0..2000 {
                assert_eq!(
                    b.pick(&svc, &svc, client(i), round),
                    first[i as usize],
                    "{kind}"
                );
            }
        }
        // a rebuilt snapshot of the same set maps the same way
        let again = Service::new(config(kind, &[1, 2, 3, 4, 5]), Some(&svc)).unwrap();
        for i in 0..2000 {
            assert_eq!(a.pick(&again, &again, client(i), 9), first[i as usize]);
        }
    }
}

#[test]
fn sh_port_and_mh_port_flags() {
    for kind in [SchedKind::Sh, SchedKind::Mh] {
        let mut c = config(kind, &[1; 8]);
        let svc = service_from(c.clone());
        let mut st = SchedState::new(&svc);
        let base = client(1);
        let by_port = |st: &mut SchedState, svc: &Service| -> std::collections::HashSet<usize> {
            (0..200u16)
                .map(|p| {
                    st.pick(
                        svc,
                        svc,
                        ClientKey {
                            port: 2000 + p,
                            ..base
                        },
                        0,
                    )
                    .unwrap()
                })
                .collect()
        };
        assert_eq!(by_port(&mut st, &svc).len(), 1, "{kind} without port flag");
        c.flags.hash_port = true;
        let svc = service_from(c);
        assert!(by_port(&mut st, &svc).len() > 4, "{kind} with port flag");
    }
}

#[test]
fn mh_weighted_share_of_picks() {
    let svc = service(SchedKind::Mh, &[1, 3]);
    let hits = spread(&svc, 2, 100_000);
    let share = f64::from(hits[1]) / 100_000.0;
    assert!((share - 0.75).abs() < 0.01, "{hits:?}");
}

#[test]
fn mh_fallback_moves_only_the_down_servers_clients() {
    let mut c = config(SchedKind::Mh, &[1; 10]);
    c.flags.fallback = true;
    c.reals[3].upper = 1;
    let svc = service_from(c);
    let mut st = SchedState::new(&svc);
    let before: Vec<usize> = (0..5000)
        .map(|i| st.pick(&svc, &svc, client(i), 0).unwrap())
        .collect();
    svc.stats(3).unwrap().on_conn_new(); // server 3 overloaded
    for i in 0..5000 {
        let p = st.pick(&svc, &svc, client(i), 0).unwrap();
        if before[i as usize] == 3 {
            assert_ne!(p, 3);
        } else {
            assert_eq!(p, before[i as usize]);
        }
    }
}

#[test]
fn persistence_same_masked_client_same_server_across_workers() {
    let mut c = config(SchedKind::Rr, &[1, 1, 1, 1]);
    c.persistence = Some(Persistence {
        timeout_s: 10,
        netmask: Ipv4Addr::new(255, 255, 255, 0),
        ..Persistence::default()
    });
    let svc = Arc::new(service_from(c));
    let mut w1 = SchedState::new(&svc);
    let mut w2 = SchedState::new(&svc);
    let at = |ip: [u8; 4], port: u16| {
        ClientKey::new(Ipv4Addr::from(ip), port, Ipv4Addr::new(192, 0, 2, 10))
    };
    let first = w1
        .pick(&svc, &*svc, at([198, 51, 100, 7], 1000), 0)
        .unwrap();
    // same /24, other port, other worker
    for (k, t) in (1..50u16).zip((0..).step_by(100)) {
        let w = if k % 2 == 0 { &mut w1 } else { &mut w2 };
        let p = w
            .pick(&svc, &*svc, at([198, 51, 100, k as u8], 1000 + k), t)
            .unwrap();
        assert_eq!(p, first);
    }
    // another /24 goes elsewhere under rr
    let other = w2
        .pick(&svc, &*svc, at([198, 51, 101, 7], 1000), 5000)
        .unwrap();
    assert_ne!(other, first);
    // last use at 4800: alive until 14800, gone after
    assert_eq!(
        w1.pick(&svc, &*svc, at([198, 51, 100, 1], 1), 14_799),
        Some(first)
    );
    let after = w1
        .pick(&svc, &*svc, at([198, 51, 100, 1], 1), 24_800)
        .unwrap();
    assert_ne!(
        after, first,
        "rr moved on, so an expired template must not repeat"
    );
}

/// An IPv6 service's templates are keyed by the whole client address (cut to the prefix length
/// when `-M` gives one), not by the 32-bit fold the hashing schedulers use: two clients whose
/// folds are equal are two clients.
#[test]
fn ipv6_persistence_keys_the_whole_address_or_its_prefix() {
    use std::net::Ipv6Addr;
    let vip: Ipv6Addr = "2001:db8:10::100".parse().unwrap();
    let svc = |prefix6: u8| {
        let mut c = ServiceConfig::new(vip, 80, Proto::Tcp, SchedKind::Rr);
        c.reals = (1..=4u16)
            .map(|i| RealServer::new(Ipv6Addr::new(0x2001, 0xdb8, 0x20, 0, 0, 0, 0, i), 80, 1))
            .collect();
        c.persistence = Some(Persistence {
            prefix6,
            ..Persistence::default()
        });
        Arc::new(service_from(c))
    };
    // Same fold (the xor of the four words): 2001:db8:: with ::1:0 and ::1 swapped around.
    let a: Ipv6Addr = "2001:db8:0:1::".parse().unwrap();
    let b: Ipv6Addr = "2001:db8:0:0:0:1::".parse().unwrap();
    assert_eq!(ClientKey::new(a, 1, vip).ip, ClientKey::new(b, 1, vip).ip);
    let per_client = svc(128);
    let mut st = SchedState::new(&per_client);
    let first = st.pick(&per_client, &*per_client, ClientKey::new(a, 1000, vip), 0);
    let second = st.pick(&per_client, &*per_client, ClientKey::new(b, 1000, vip), 0);
    assert_ne!(first, second, "rr: b is a new client, scheduled afresh");
    for port in 1001..1010 {
        assert_eq!(
            st.pick(&per_client, &*per_client, ClientKey::new(a, port, vip), 0),
            first
        );
        assert_eq!(
            st.pick(&per_client, &*per_client, ClientKey::new(b, port, vip), 0),
            second
        );
    }
    assert_eq!(per_client.persist_table().unwrap().len(), 2);
    // -M 64: a client's addresses within its /64 (RFC 8981's temporary ones) share a template.
    let per_64 = svc(64);
    let mut st = SchedState::new(&per_64);
    let home = |host: u16| Ipv6Addr::new(0x2001, 0xdb8, 0xc0, 1, 0xa, 0xb, 0xc, host);
    let first = st.pick(&per_64, &*per_64, ClientKey::new(home(1), 1000, vip), 0);
    for host in 2..40 {
        assert_eq!(
            st.pick(&per_64, &*per_64, ClientKey::new(home(host), 1000, vip), 0),
            first
        );
    }
    let next_64 = Ipv6Addr::new(0x2001, 0xdb8, 0xc0, 2, 0xa, 0xb, 0xc, 1);
    assert_ne!(
        st.pick(&per_64, &*per_64, ClientKey::new(next_64, 1000, vip), 0),
        first
    );
    assert_eq!(per_64.persist_table().unwrap().len(), 2);
}

#[test]
fn persistence_shared_by_threads() {
    let mut c = config(SchedKind::Rr, &[1; 8]);
    c.persistence = Some(Persistence::default());
    let svc = Arc::new(service_from(c));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let svc = Arc::clone(&svc);
            std::thread::spawn(move || {
                let mut st = SchedState::new(&svc);
                (0..2000u32)
                    .map(|i| st.pick(&svc, &*svc, client(i % 500), 0).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<Vec<usize>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for i in 0..2000 {
        assert_eq!(results[0][i], results[1][i], "client {}", i % 500);
        assert_eq!(results[0][i], results[0][i % 500]);
    }
    assert_eq!(svc.persist_table().unwrap().len(), 500);
}

#[test]
fn persistence_and_quiescing() {
    for expire_quiescent in [false, true] {
        let mut c = config(SchedKind::Wlc, &[1, 1]);
        c.persistence = Some(Persistence {
            expire_quiescent,
            ..Persistence::default()
        });
        let svc = service_from(c.clone());
        let mut st = SchedState::new(&svc);
        let p = st.pick(&svc, &svc, client(1), 0).unwrap();
        c.reals[p].weight = 0;
        let quiesced = Service::new(c.clone(), Some(&svc)).unwrap();
        st.sync(&quiesced);
        let q = st.pick(&quiesced, &quiesced, client(1), 1).unwrap();
        // IPVS default: the template still wins; with expire_quiescent the client moves.
        assert_eq!(q == p, !expire_quiescent);
        // a new client never goes to the quiesced server
        assert_ne!(st.pick(&quiesced, &quiesced, client(2), 1), Some(p));
        // a removed server's template is dropped
        c.reals.remove(p);
        let removed = Service::new(c, Some(&quiesced)).unwrap();
        assert_eq!(st.pick(&removed, &removed, client(1), 2), Some(0));
    }
}

#[test]
fn scheduler_change_at_run_time() {
    let a = service(SchedKind::Wrr, &[1, 2]);
    let mut st = SchedState::new(&a);
    st.pick(&a, &a, client(0), 0).unwrap();
    let stats = Arc::clone(a.stats(1).unwrap());
    stats.on_conn_new_active();
    let mut c = config(SchedKind::Lblc, &[1, 2]);
    c.sched = "lblc".parse().unwrap();
    let b = Service::new(c, Some(&a)).unwrap();
    st.sync(&b);
    assert!(matches!(st, SchedState::Lblc(_)));
    // the existing connection's counters carried over
    assert_eq!(b.active(1), 1);
    assert!(st.pick(&b, &b, client(0), 1).is_some());
    // an unsynced state adopts the snapshot by itself
    let c2 = service(SchedKind::Lblcr, &[1]);
    assert_eq!(st.pick(&c2, &c2, client(0), 2), Some(0));
    assert!(matches!(st, SchedState::Lblcr(_)));
}

#[test]
fn thousands_of_reals_each_scheduler_picks() {
    let weights: Vec<u32> = (0..4096u32).map(|i| i % 7 + 1).collect();
    for kind in SchedKind::ALL {
        let svc = service(kind, &weights);
        let mut st = SchedState::new(&svc);
        for i in 0..200 {
            let p = st.pick(&svc, &svc, client(i), 0);
            assert!(p.is_some_and(|p| p < 4096), "{kind}");
        }
    }
}

/// `pick_other` (a client's retried connection): whichever server the scheduler would pick, the
/// other one is picked instead; with one server there is none. dh, and sh and mh without their
/// fallback flag, stay on the hashed server (no pick), as they do for an overloaded one.
#[test]
fn pick_other_never_returns_the_failed_server() {
    for kind in SchedKind::ALL {
        for fallback in [true, false] {
            let mut c = config(kind, &[1, 1, 1]);
            c.flags.fallback = fallback;
            let svc = service_from(c);
            let mut st = SchedState::new(&svc);
            let mut others = 0;
            for i in 0..300 {
                let natural = st.pick(&svc, &svc, client(i), 0).unwrap();
                match st.pick_other(&svc, &svc, client(i), 0, natural) {
                    Some(o) => {
                        assert_ne!(o, natural, "{kind}");
                        others += 1;
                    }
                    None => assert!(
                        kind == SchedKind::Dh
                            || (!fallback && matches!(kind, SchedKind::Sh | SchedKind::Mh)),
                        "{kind}: no other server for client {i}"
                    ),
                }
            }
            assert!(others > 0 || !fallback || kind == SchedKind::Dh, "{kind}");
        }
        let one = service(kind, &[1]);
        let mut st = SchedState::new(&one);
        assert_eq!(st.pick_other(&one, &one, client(1), 0, 0), None, "{kind}");
    }
}

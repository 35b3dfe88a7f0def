//! Scheduler costs: nanoseconds per pick for every algorithm with 10, 100 and 1000 real servers, and
//! the time to build a 65537-slot Maglev table.
//!
//! Needs in gateway/Cargo.toml: `[[bench]] name = "sched" harness = false`.
//!
//! Counts are the shared atomics of the service, preloaded with uneven loads so the least-connection
//! family walks real numbers; clients and destinations vary per pick (lblc/lblcr see 1024
//! destinations, so their tables hit after warm-up).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gateway::service::{
    ClientKey, MaglevTable, Persistence, Proto, RealServer, RsKey, SchedKind, SchedState, Service,
    ServiceConfig, DEFAULT_HASH_SEED, DEFAULT_MH_TABLE_SIZE,
};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

fn service(kind: SchedKind, n: u32, persistent: bool) -> Service {
    let mut c = ServiceConfig::new(Ipv4Addr::new(192, 0, 2, 1), 80, Proto::Tcp, kind);
    c.reals = (0..n)
        .map(|i| RealServer::new(Ipv4Addr::from(0x0a00_0000 + i), 8080, i % 7 + 1))
        .collect();
    if persistent {
        c.persistence = Some(Persistence::default());
    }
    let svc = Service::new(c, None).expect("valid service");
    for i in 0..n as usize {
        let s = svc.stats(i).expect("server");
        for _ in 0..(i * 13 % 17) {
            s.on_conn_new_active();
        }
        for _ in 0..(i * 5 % 11) {
            s.on_conn_new();
        }
    }
    svc
}

fn client(i: u32) -> ClientKey {
    let ip = 0xc633_0000u32.wrapping_add(i.wrapping_mul(2_654_435_761));
    ClientKey {
        ip,
        addr: u128::from(ip),
        port: (i % 50_000) as u16 + 1024,
        dst: 0x0b00_0000 + (i & 1023),
    }
}

fn picks(c: &mut Criterion) {
    let mut g = c.benchmark_group("pick");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(800))
        .sample_size(20);
    for kind in SchedKind::ALL {
        for n in [10u32, 100, 1000] {
            let svc = service(kind, n, false);
            let mut st = SchedState::new(&svc);
            let mut i = 0u32;
            g.bench_with_input(BenchmarkId::new(kind.name(), n), &n, |b, _| {
                b.iter(|| {
                    i = i.wrapping_add(1);
                    black_box(st.pick(&svc, &svc, client(i), 0))
                })
            });
        }
    }
    // Persistence adds a shard lock and a hash lookup; 4096 clients, so templates hit.
    for n in [10u32, 1000] {
        let svc = service(SchedKind::Wlc, n, true);
        let mut st = SchedState::new(&svc);
        let mut i = 0u32;
        g.bench_with_input(BenchmarkId::new("wlc+persist", n), &n, |b, _| {
            b.iter(|| {
                i = i.wrapping_add(1);
                black_box(st.pick(&svc, &svc, client(i & 4095), 0))
            })
        });
    }
    g.finish();
}

fn maglev_build(c: &mut Criterion) {
    let mut g = c.benchmark_group("maglev_build_65537");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    for n in [10u32, 100, 1000, 4096] {
        let keys: Vec<RsKey> = (0..n)
            .map(|i| RsKey {
                addr: Ipv4Addr::from(0x0a00_0000 + i).into(),
                port: 8080,
            })
            .collect();
        let weights: Vec<u32> = (0..n).map(|i| i % 7 + 1).collect();
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                black_box(MaglevTable::build(
                    &keys,
                    &weights,
                    DEFAULT_MH_TABLE_SIZE,
                    DEFAULT_HASH_SEED,
                ))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, picks, maglev_build);
criterion_main!(benches);

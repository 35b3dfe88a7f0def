//! Local port allocation and Toeplitz hash cost.
//!
//! Needs in gateway/Cargo.toml: `[[bench]] name = "laddr" harness = false`.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use gateway::laddr::{
    toeplitz_hash, LaddrPool, PortLayout, QueueMap, Reta, RssConfig, Steering, Toeplitz,
    DEFAULT_MAX_ATTEMPTS, DEFAULT_PORTS, DEFAULT_RSS_KEY,
};

/// A deterministic spread of real servers (xorshift), so the bench hits many hash buckets.
fn servers(n: usize) -> Vec<(Ipv4Addr, u16)> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (Ipv4Addr::from(x as u32), (x >> 32) as u16)
        })
        .collect()
}

fn toeplitz(c: &mut Criterion) {
    let t = Toeplitz::new(&DEFAULT_RSS_KEY).unwrap();
    let src = Ipv4Addr::new(66, 9, 149, 187);
    let dst = Ipv4Addr::new(161, 142, 100, 80);
    c.bench_function("toeplitz/tables_ipv4_l4", |b| {
        b.iter(|| t.hash_ipv4_l4(black_box(src), black_box(dst), black_box(2794), 1766))
    });
    let input = gateway::laddr::toeplitz::ipv4_l4_input(src, dst, 2794, 1766);
    c.bench_function("toeplitz/bitwise_ipv4_l4", |b| {
        b.iter(|| toeplitz_hash(&DEFAULT_RSS_KEY, black_box(&input)))
    });
}

fn allocate(c: &mut Criterion) {
    let steering = Steering::Rss(RssConfig {
        key: DEFAULT_RSS_KEY.to_vec(),
        reta: Reta::round_robin(128, 2).unwrap(),
        queues: QueueMap::identity(2),
    });
    let layout = Arc::new(PortLayout::new(2, DEFAULT_PORTS, steering).unwrap());
    let lips: Vec<Ipv4Addr> = (1..=4).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
    let mut pool = LaddrPool::new(layout, 0, &lips, DEFAULT_MAX_ATTEMPTS).unwrap();
    let rs = servers(1024);
    let mut i = 0;
    // allocate + free, with a connection table that never has the tuple: the allocator's own cost.
    c.bench_function("laddr/rss_2w_reta128_allocate_free", |b| {
        b.iter(|| {
            let (rip, rport) = rs[i % rs.len()];
            i += 1;
            let t = pool.allocate(black_box(rip), rport, |_| false).unwrap();
            pool.free(t.dst_ip, t.dst_port)
        })
    });
}

criterion_group!(benches, toeplitz, allocate);
criterion_main!(benches);

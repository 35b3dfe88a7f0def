//! Connection table costs: lookup of established flows (random hits) with 1K and 1M entries,
//! the same as 32-packet bursts, a packet's state update, and insert+remove of a new connection.
//! Prints the memory per connection first.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gateway::conn::{tcp_flags, Conn, ConnTable, Dir, HashKey, Ticks, Timeouts, Tuple, PROTO_TCP};

/// xorshift64*: reproducible random numbers without another dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Connection `i`: clients spread over 10.0.0.0/8, one VIP; replies from 16 real servers to
/// 4 local addresses.
fn client(i: u32) -> Tuple {
    Tuple {
        src: 0x0a00_0000 | (i >> 8),
        dst: 0xc000_0201,
        sport: 1024 + (i & 0xff) as u16 * 97,
        dport: 80,
        proto: PROTO_TCP,
    }
}

fn reply(i: u32) -> Tuple {
    Tuple {
        src: 0xac10_0010 + (i & 15),
        dst: 0xac10_0001 + ((i >> 4) & 3),
        sport: 8080,
        dport: (i >> 6) as u16,
        proto: PROTO_TCP,
    }
}

/// A table of `n` established FullNAT connections (capacity `cap`).
fn filled(n: u32, cap: u32) -> ConnTable {
    let mut t = ConnTable::with_key(cap, Timeouts::default(), HashKey::random(), Ticks(0));
    for i in 0..n {
        let id = t
            .insert(client(i), Some(reply(i)), 0, i as u16, 0, Ticks(0))
            .expect("insert");
        t.on_packet(id, Dir::Original, tcp_flags::SYN, Ticks(0));
        t.on_packet(id, Dir::Reply, tcp_flags::SYN | tcp_flags::ACK, Ticks(0));
        t.on_packet(id, Dir::Original, tcp_flags::ACK, Ticks(0));
    }
    t
}

/// Random hits, both directions, in a shuffled order (a cycle of `len` tuples).
fn probes(n: u32, len: usize) -> Vec<Tuple> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..len)
        .map(|_| {
            let i = (rng.next() % u64::from(n)) as u32;
            if rng.next() & 1 == 0 {
                client(i)
            } else {
                reply(i)
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let big = filled(1 << 20, 1 << 20);
    eprintln!(
        "conn: entry {} B; table of {} conns holds {} B = {} B per connection (entry, index, \
         half-open queue, wheel)",
        core::mem::size_of::<Conn>(),
        big.capacity(),
        big.memory_bytes(),
        big.memory_bytes() / big.capacity(),
    );

    let mut g = c.benchmark_group("conn_lookup");
    for (name, n) in [("1K", 1u32 << 10), ("1M", 1 << 20)] {
        let small;
        let t = if n == big.capacity() as u32 {
            &big
        } else {
            small = filled(n, n);
            &small
        };
        let p = probes(n, 1 << 16);
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("single", name), &p, |b, p| {
            let mut i = 0;
            b.iter(|| {
                let r = t.lookup(&p[i]);
                i = (i + 1) & (p.len() - 1);
                black_box(r)
            })
        });
        g.throughput(Throughput::Elements(32));
        g.bench_with_input(BenchmarkId::new("batch32", name), &p, |b, p| {
            let mut out = [None; 32];
            let mut i = 0;
            b.iter(|| {
                t.lookup_batch(&p[i..i + 32], &mut out);
                i = (i + 32) & (p.len() - 1);
                black_box(&out);
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("conn_update");
    let mut big = big;
    let ids: Vec<_> = probes(1 << 20, 1 << 16)
        .iter()
        .map(|t| big.lookup(t).expect("present"))
        .collect();
    g.throughput(Throughput::Elements(1));
    g.bench_function("on_packet_ack_1M", |b| {
        let mut i = 0;
        let mut now = 1u64;
        b.iter(|| {
            let (id, dir) = ids[i];
            i = (i + 1) & (ids.len() - 1);
            now += 1;
            black_box(big.on_packet(id, dir, tcp_flags::ACK, Ticks(now)))
        })
    });
    drop(big);

    // New connections into a table at 90 % of 1M: duplicate check (two lookup misses), slot,
    // two index inserts, timer arm; then the removal.
    let n = (1u32 << 20) * 9 / 10;
    let mut t = filled(n, 1 << 20);
    g.bench_function("insert_remove_1M_at_90pct", |b| {
        let mut k = n;
        b.iter(|| {
            // reply() repeats after 2^22; live connections are all below n.
            k = if k + 1 == 1 << 22 { n } else { k + 1 };
            let id = t
                .insert(client(k), Some(reply(k)), 0, 0, 0, Ticks(1))
                .expect("insert");
            black_box(t.remove(id))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

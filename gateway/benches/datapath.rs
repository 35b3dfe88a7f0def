//! The whole per-packet cost of the DPDK-free datapath (`Datapath::process`): parse, checks,
//! connection lookup, state update, FullNAT rewrite with incremental checksums, neighbour lookup.
//!
//! - `established/{1K,1M}`: a client's ACK on an established connection picked at random among 1K
//!   or 1M (table capacity 2M), client -> server direction.
//! - `new_conn`: a SYN that creates a connection (scheduler, local port choice, insert, TOA);
//!   `new_conn_persistent` the same for a persistent service (template lookup and record).
//! - `reused_syn/{follow,reschedule}`: a client's SYN on a tuple whose connection the server reset
//!   (CLOSE): with `conn_reuse_mode` 0 it follows the old entry; with 1 (the default) the old entry
//!   is parked and the SYN scheduled as a new connection (`forward::reuse`).
//!
//! Frames come from one template rewritten in place in a reused buffer (addresses, ports and
//! precomputed checksums), so the figures are the datapath's, not an allocator's.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use gateway::datapath::Datapath;
use gateway::packet::Verdict;
use gateway::packet::{PacketBuf, RxMeta, VecBuf};
use gateway::testkit::datapath_from;
use gateway::testkit::flows::*;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

fn established(c: &mut Criterion) {
    let cfg = bench_config();
    let syn = template(0x02);
    let ack = template(0x10);
    let mut g = c.benchmark_group("datapath/established");
    g.throughput(Throughput::Elements(1));
    for (name, n, cap) in [("1K", 1_000u32, 1u32 << 12), ("1M", 1_000_000, 2 << 20)] {
        let mut dp: Datapath<VecBuf> = datapath_from(&cfg, 0, 1, cap);
        let mut buf = VecBuf::from_frame(&syn);
        let syns: Vec<Flow> = (0..n).map(|i| Flow::new(&syn, i)).collect();
        let acks: Vec<Flow> = (0..n).map(|i| Flow::new(&ack, i)).collect();
        for (s, a) in syns.iter().zip(&acks) {
            buf = send(&mut dp, buf, s, &syn);
            buf = send(&mut dp, buf, a, &ack);
        }
        drop(syns);
        assert_eq!(dp.fwd.table().len(), n as usize);
        let order = random_order(n, 1 << 16);
        let mut k = 0;
        let mut slot = Some(buf);
        g.bench_function(name, |b| {
            b.iter(|| {
                let flow = &acks[order[k] as usize];
                k = (k + 1) & (order.len() - 1);
                let out = send(&mut dp, slot.take().unwrap(), flow, &ack);
                slot = Some(black_box(out));
            })
        });
    }
    g.finish();
}

/// As `established`, a burst of 32 random flows per iteration through `process_burst` (the
/// worker's path: one batched lookup per burst).
fn established_burst(c: &mut Criterion) {
    let cfg = bench_config();
    let syn = template(0x02);
    let ack = template(0x10);
    let mut g = c.benchmark_group("datapath/established_burst32");
    g.throughput(Throughput::Elements(32));
    for (name, n, cap) in [("1K", 1_000u32, 1u32 << 12), ("1M", 1_000_000, 2 << 20)] {
        let mut dp: Datapath<VecBuf> = datapath_from(&cfg, 0, 1, cap);
        let mut buf = VecBuf::from_frame(&syn);
        let acks: Vec<Flow> = (0..n).map(|i| Flow::new(&ack, i)).collect();
        for i in 0..n {
            buf = send(&mut dp, buf, &Flow::new(&syn, i), &syn);
            buf = send(&mut dp, buf, &acks[i as usize], &ack);
        }
        let order = random_order(n, 1 << 16);
        let mut k = 0;
        let mut pkts: Vec<Option<VecBuf>> =
            (0..32).map(|_| Some(VecBuf::from_frame(&ack))).collect();
        let metas = [META; 32];
        let mut out: Vec<Option<Verdict<VecBuf>>> = (0..32).map(|_| None).collect();
        g.bench_function(name, |b| {
            b.iter(|| {
                for p in pkts.iter_mut() {
                    let mut buf = p.take().unwrap_or_else(|| VecBuf::from_frame(&ack));
                    acks[order[k] as usize].write(&mut buf, &ack);
                    k = (k + 1) & (order.len() - 1);
                    *p = Some(buf);
                }
                dp.process_burst_timed(&mut pkts, &metas, &mut out, || 0, gateway::dpdk::prefetch);
                for (p, o) in pkts.iter_mut().zip(out.iter_mut()) {
                    match o.take() {
                        Some(Verdict::Tx(1, b)) => *p = Some(black_box(b)),
                        _ => panic!("not forwarded to the server side"),
                    }
                }
            })
        });
    }
    g.finish();
}

/// Connections created per measured chunk; a fresh datapath takes each chunk, built untimed.
const CHUNK: u32 = 1 << 15;

fn new_conn(c: &mut Criterion) {
    let plain = bench_config();
    // Persistence (`ipvsadm -p 300`): every new connection consults the shared template table
    // (a shard lock) and records a template.
    let persistent = plain.replacen(
        "scheduler = \"wrr\"",
        "scheduler = \"wrr\"\npersistence_s = 300",
        1,
    );
    let syn = template(0x02);
    let flows: Vec<Flow> = (0..CHUNK).map(|i| Flow::new(&syn, i)).collect();
    let mut g = c.benchmark_group("datapath");
    g.throughput(Throughput::Elements(1));
    for (name, cfg) in [("new_conn", plain), ("new_conn_persistent", persistent)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(u64::from(CHUNK)) as usize;
                    let mut dp: Datapath<VecBuf> = datapath_from(&cfg, 0, 1, 2 * CHUNK);
                    let mut buf = VecBuf::from_frame(&syn);
                    let t = Instant::now();
                    for f in &flows[..n] {
                        buf = send(&mut dp, buf, f, &syn);
                    }
                    total += t.elapsed();
                    black_box(&buf);
                    assert_eq!(dp.fwd.table().len(), n);
                    left -= n as u64;
                }
                total
            })
        });
    }
    g.finish();
}

/// The server's RST for the connection whose SYN the datapath forwarded as `fwd`.
fn server_rst(fwd: &[u8]) -> Vec<u8> {
    use gateway::testkit::{RS1, RS1_MAC, RS2_MAC, SERVER_PORT_MAC};
    let lip: [u8; 4] = fwd[IP_SRC..IP_SRC + 4].try_into().unwrap();
    let rs: [u8; 4] = fwd[IP_SRC + 4..IP_SRC + 8].try_into().unwrap();
    let lport = u16::from_be_bytes([fwd[TCP_SPORT], fwd[TCP_SPORT + 1]]);
    let mac = if Ipv4Addr::from(rs) == RS1 {
        RS1_MAC
    } else {
        RS2_MAC
    };
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2(mac.0, SERVER_PORT_MAC.0)
        .ipv4(rs, lip, 64)
        .tcp(80, lport, 5000, 0)
        .rst()
        .ack(1001)
        .write(&mut v, &[])
        .unwrap();
    v
}

fn reused_syn(c: &mut Criterion) {
    let cfg = bench_config();
    let syn = template(0x02);
    let flows: Vec<Flow> = (0..CHUNK).map(|i| Flow::new(&syn, i)).collect();
    let server = RxMeta { port: 1, ..META };
    let mut g = c.benchmark_group("datapath/reused_syn");
    g.throughput(Throughput::Elements(1));
    for (name, mode) in [("follow", 0u8), ("reschedule", 1)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(u64::from(CHUNK)) as usize;
                    // Untimed: every flow's connection opened, then reset by its server.
                    let mut dp: Datapath<VecBuf> = datapath_from(&cfg, 0, 1, 4 * CHUNK);
                    dp.fwd.set_conn_reuse_mode(mode);
                    let mut buf = VecBuf::from_frame(&syn);
                    for f in &flows[..n] {
                        buf = send(&mut dp, buf, f, &syn);
                        let rst = server_rst(buf.data());
                        match dp.process(VecBuf::from_frame(&rst), &server) {
                            Verdict::Tx(0, _) => {}
                            _ => panic!("server RST not forwarded"),
                        }
                    }
                    let t = Instant::now();
                    for f in &flows[..n] {
                        buf = send(&mut dp, buf, f, &syn);
                    }
                    total += t.elapsed();
                    black_box(&buf);
                    let created = dp.fwd.stats.created;
                    assert_eq!(created, n as u64 * (1 + u64::from(mode)), "{name}");
                    left -= n as u64;
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = established, established_burst, new_conn, reused_syn
}
criterion_main!(benches);

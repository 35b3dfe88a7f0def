//! `memlat [MIB] [CHAINS ...]`: what a random memory access costs on this machine, alone and
//! overlapped (issue 16; perf/RESULTS.md). A table of MIB MiB (default 1024, past any cache),
//! backed by transparent huge pages as the gateway's connection tables are
//! (`dpdk::advise_hugepages`), holds one random cycle through all its 64-byte lines (Sattolo's
//! algorithm); CHAINS (default 1 2 4 8 16 32) walkers follow it from evenly spaced starts, each
//! load depending on the one before, so that a walker measures the latency of a miss and N
//! walkers how many misses the core overlaps. Prints nanoseconds per load for each N.
use std::time::Instant;

/// `u64`s per 64-byte line.
const LINE: usize = 8;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: MIB then chain counts"))
        .collect();
    let mib = args.first().copied().unwrap_or(1024);
    let chains = match args.get(1..) {
        Some(c) if !c.is_empty() => c.to_vec(),
        _ => vec![1, 2, 4, 8, 16, 32],
    };
    let lines = mib << 14;
    let mut table: Vec<u64> = Vec::with_capacity(lines * LINE);
    gateway::dpdk::advise_hugepages(table.as_ptr().cast(), lines * 64);
    table.resize(lines * LINE, 0);
    let mut cycle: Vec<u32> = (0..lines as u32).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..lines).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        cycle.swap(i, (x % i as u64) as usize);
    }
    for i in 0..lines {
        table[cycle[i] as usize * LINE] = u64::from(cycle[(i + 1) % lines]) * LINE as u64;
    }
    for c in chains.into_iter().filter(|&c| c > 0 && c <= lines) {
        let mut at: Vec<u64> = (0..c)
            .map(|k| u64::from(cycle[k * (lines / c)]) * LINE as u64)
            .collect();
        let steps = 4_000_000 / c;
        let t = Instant::now();
        for _ in 0..steps {
            for a in at.iter_mut() {
                *a = table[*a as usize];
            }
        }
        let ns = t.elapsed().as_nanos() as f64 / (steps * c) as f64;
        let sum: u64 = std::hint::black_box(&at).iter().sum();
        println!(
            "{mib} MiB, {c:2} chains: {ns:6.1} ns per load (checksum {})",
            sum & 1
        );
    }
}

//! `memlat [MIB] [CHAINS ...]`: what a random memory access costs on this machine, alone and
//! overlapped (issue 16; perf/RESULTS.md). A table of MIB MiB (default 1024, past any cache),
//! backed by transparent huge pages as the gateway's connection tables are
//! (`dpdk::advise_hugepages`), holds one random cycle through all its 64-byte lines (Sattolo's
//! algorithm); CHAINS (default 1 2 4 8 16 32) walkers follow it from evenly spaced starts, each
//! load depending on the one before, so that a walker measures the latency of a miss and N
//! walkers how many misses the core overlaps. Prints nanoseconds per load for each N.
//!
//! `memlat burst [CONNECTIONS] [ROUNDS]`: the connection lookup's own pattern instead, bursts of
//! 32 packets as the worker takes them, against tables sized as a worker's at CONNECTIONS
//! (default 10,000,000; capacity 1.3 times that, as `perf/bench` configures, two tuples each):
//! - `two`: today's lookup. Hash the burst and prefetch each home index line (four-byte slots at
//!   a load of 3/4 at capacity); read each slot and prefetch its entry (64 bytes); read and write
//!   each entry, as the forwarding does: two dependent misses a packet.
//! - `index`, `entry`: each of those misses alone.
//! - `slot32`, `slot64`: one miss a packet, in a table of 32- or 64-byte slots as many as the
//!   index's, each holding what a packet's forwarding needs, read and written in place.
//!
//! Every pattern runs ROUNDS times (default 5), interleaved; prints each round's nanoseconds a
//! packet and the median.
//!
//! `memlat remap [CONNECTIONS] [ROUNDS]`: what a configuration change costs a worker whose
//! connection table holds CONNECTIONS entries (default 10,000,000; capacity 1.3 times that) of
//! 100 services of 10 real servers, on the gateway's own table. Two changes, each undone in the
//! same round: `service` removes the first service (every later one moves: every entry is
//! rewritten), `server` removes the fourth real server of one service (that service's later
//! servers move). The undo cannot give the first service's entries their server back: from the
//! first round on, that hundredth of the table is `NO_DEST` and stays so. For each change: the
//! commit's own part (`ConnRemap::apply`, which only hands the table the map, `conn::rebind`), the
//! walk in the worker's slices of `datapath::REBIND_SLICE_IDLE` entries (each timed: the worker
//! forwards between them), and the undo's walk in one call, as a change that finds 15 changes
//! pending finishes their walk (`conn_rebinds_hurried`). Prints each round's figures and the
//! medians.
use std::time::Instant;

/// `u64`s per 64-byte line.
const LINE: usize = 8;

/// The command line's arguments after the first `skip`, each a number (`what` says which): on
/// anything else, the argument named, the usage printed and exit status 2, not a panic.
fn numbers<T: std::str::FromStr>(skip: usize, what: &str) -> Vec<T> {
    std::env::args()
        .skip(skip)
        .map(|a| {
            a.parse().unwrap_or_else(|_| {
                eprintln!(
                    "memlat: {a:?} is not a number (expected {what})\n\
                     usage: memlat [MIB] [CHAINS ...] | memlat burst [CONNECTIONS] [ROUNDS] | \
                     memlat remap [CONNECTIONS] [ROUNDS]"
                );
                std::process::exit(2)
            })
        })
        .collect()
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("burst") => return burst(),
        Some("remap") => return remap(),
        _ => {}
    }
    let args: Vec<usize> = numbers(1, "MIB then chain counts");
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

/// Packets a burst, as the worker's rx burst.
const BURST: usize = 32;

/// A table of `n` zeroed `u64`s on transparent huge pages, touched, as `bigmem::filled` makes one.
fn table(n: usize) -> Vec<u64> {
    let mut t: Vec<u64> = Vec::with_capacity(n);
    gateway::dpdk::advise_hugepages(t.as_ptr().cast(), n * 8);
    t.resize(n, 0);
    t
}

/// A well-mixed 64-bit hash (SplitMix64's finaliser), standing in for the tuple hash.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `h`'s place among `n` by Lemire's multiply, as the index finds a home slot.
fn place(h: u64, n: usize) -> usize {
    (((h >> 32) * n as u64) >> 32) as usize
}

fn burst() {
    let args: Vec<u64> = numbers(2, "connections then rounds");
    let conns = args.first().copied().unwrap_or(10_000_000) as usize;
    let rounds = args.get(1).copied().unwrap_or(5) as usize;
    let capacity = conns * 13 / 10;
    let slots = (2 * capacity * 4).div_ceil(3);
    // The index as u32 slots (two a u64), each naming an entry; the entries, 8 u64s each.
    let mut index = table(slots.div_ceil(2));
    for (i, w) in index.iter_mut().enumerate() {
        let e = |k: u64| mix(k) % capacity as u64;
        *w = e(2 * i as u64) | (e(2 * i as u64 + 1) << 32);
    }
    let mut entries = table(capacity * 8);
    let mut slot32 = table(slots * 4);
    let mut slot64 = table(slots * 8);
    let packets = 12_800_000usize;
    let patterns = ["two", "index", "entry", "slot32", "slot64"];
    let mut ns = vec![Vec::new(); patterns.len()];
    let mut sum = 0u64;
    for round in 0..rounds {
        for (p, name) in patterns.iter().enumerate() {
            // The flows of `conns` connections in both directions, visited in a fixed random order.
            let mut flow = (round as u64) << 40;
            let t = Instant::now();
            for _ in 0..packets / BURST {
                let mut h = [0u64; BURST];
                for hi in h.iter_mut() {
                    *hi = mix(flow % (2 * conns as u64));
                    flow += 1;
                }
                sum = sum.wrapping_add(match *name {
                    "two" | "index" => {
                        for &hi in &h {
                            let at = place(hi, slots);
                            gateway::dpdk::prefetch(index.as_ptr().wrapping_add(at / 2).cast());
                        }
                        let mut id = [0usize; BURST];
                        for (k, &hi) in h.iter().enumerate() {
                            let at = place(hi, slots);
                            id[k] = ((index[at / 2] >> (32 * (at % 2))) & 0xffff_ffff) as usize;
                            if *name == "two" {
                                gateway::dpdk::prefetch(
                                    entries.as_ptr().wrapping_add(id[k] * 8).cast(),
                                );
                            }
                        }
                        if *name == "two" {
                            let mut s = 0;
                            for &e in &id {
                                s += entries[e * 8];
                                entries[e * 8 + 1] = s;
                            }
                            s
                        } else {
                            id.iter().sum::<usize>() as u64
                        }
                    }
                    _ => {
                        let (t, words, n) = match *name {
                            "entry" => (&mut entries, 8, capacity),
                            "slot32" => (&mut slot32, 4, slots),
                            _ => (&mut slot64, 8, slots),
                        };
                        for &hi in &h {
                            gateway::dpdk::prefetch(
                                t.as_ptr().wrapping_add(place(hi, n) * words).cast(),
                            );
                        }
                        let mut s = 0;
                        for &hi in &h {
                            let at = place(hi, n) * words;
                            s += t[at];
                            t[at + 1] = s;
                        }
                        s
                    }
                });
            }
            ns[p].push(t.elapsed().as_nanos() as f64 / packets as f64);
        }
    }
    println!(
        "# memlat burst: {conns} connections, capacity {capacity}, {slots} index slots; \
         ns a packet, bursts of {BURST}, {rounds} interleaved rounds (checksum {})",
        sum & 1
    );
    for (name, v) in patterns.iter().zip(&mut ns) {
        let rounds: Vec<String> = v.iter().map(|x| format!("{x:.1}")).collect();
        v.sort_by(f64::total_cmp);
        println!(
            "{name:7} median {:5.1}  rounds {}",
            v[v.len() / 2],
            rounds.join(" ")
        );
    }
}

fn remap() {
    use gateway::conn::{Table, Ticks, Timeouts, Tuple};
    use gateway::forward::services::ConnRemap;
    use gateway::forward::{ServiceSpec, ServiceTable, SvcOptions};
    use gateway::service::{Proto, RealServer, SchedKind, ServiceConfig};
    use std::net::Ipv4Addr;
    let args: Vec<usize> = numbers(2, "connections then rounds");
    let conns = args.first().copied().unwrap_or(10_000_000);
    let rounds = args.get(1).copied().unwrap_or(5);
    let spec = |i: u32| -> ServiceSpec {
        let vip = Ipv4Addr::from(0x0a0a_0000 + i);
        let mut c = ServiceConfig::new(vip, 80, Proto::Tcp, SchedKind::Rr);
        for r in 0..10u32 {
            let rip = Ipv4Addr::from(0x0a14_0000 + i * 16 + r);
            c.reals.push(RealServer::new(rip, 80, 1));
        }
        (c, Vec::new(), SvcOptions::default())
    };
    let all: Vec<ServiceSpec> = (0..100).map(spec).collect();
    let full = ServiceTable::new(1, all.clone(), None).expect("100 services");
    let first_gone = ServiceTable::new(2, all[1..].to_vec(), Some(&full)).expect("99 services");
    let mut one_fewer = all.clone();
    one_fewer[50].0.reals.remove(3);
    let server_gone = ServiceTable::new(3, one_fewer, Some(&full)).expect("a server fewer");
    let capacity = u32::try_from(conns * 13 / 10).expect("capacity fits a u32");
    let mut table: Table<Tuple> = Table::new(capacity, Timeouts::default());
    let vip = Ipv4Addr::new(10, 10, 0, 1);
    for i in 0..conns {
        let client = Ipv4Addr::from(0x0b00_0000 + (i as u32 >> 16));
        let t = Tuple::new(client, i as u16, vip, 80, 6);
        let (svc, rs) = ((i % 100) as u16, (i / 100 % 10) as u16);
        table
            .insert(t, None, svc, rs, 0, Ticks(0))
            .expect("the table has room");
    }
    let walks = [
        ("service", &full, &first_gone),
        ("server", &full, &server_gone),
    ];
    let slice = gateway::datapath::REBIND_SLICE_IDLE;
    // Per change: the commit's part (us), the longest and the median slice (us), the slices'
    // sum (ms), the whole walk in one call (ms).
    let mut figs = vec![vec![Vec::new(); 5]; walks.len()];
    println!("# memlat remap: {conns} connections, capacity {capacity}; slices of {slice} entries");
    println!("# round change begin_us slices slice_max_us slice_median_us sliced_ms whole_ms");
    for round in 0..rounds {
        for (w, (name, from, to)) in walks.iter().enumerate() {
            let (there, back) = (ConnRemap::new(from, to), ConnRemap::new(to, from));
            let t = Instant::now();
            there.apply(&mut table);
            let begin = t.elapsed().as_secs_f64() * 1e6;
            let mut us = Vec::new();
            loop {
                let t = Instant::now();
                let more = table.rebind_step(slice);
                us.push(t.elapsed().as_secs_f64() * 1e6);
                if !more || !table.rebinding() {
                    break;
                }
            }
            let sliced = us.iter().sum::<f64>() / 1e3;
            let n = us.len();
            us.sort_by(f64::total_cmp);
            let (max, median) = (us[n - 1], us[n / 2]);
            back.apply(&mut table);
            let t = Instant::now();
            table.rebind_step(u32::MAX);
            let whole = t.elapsed().as_secs_f64() * 1e3;
            println!(
                "round {round} {name} {begin:.1} {n} {max:.1} {median:.1} {sliced:.1} {whole:.1}"
            );
            for (f, v) in figs[w].iter_mut().zip([begin, max, median, sliced, whole]) {
                f.push(v);
            }
        }
    }
    for (w, (name, _, _)) in walks.iter().enumerate() {
        let med: Vec<String> = figs[w]
            .iter()
            .map(|v| {
                let mut v = v.clone();
                v.sort_by(f64::total_cmp);
                format!("{:.1}", v[v.len() / 2])
            })
            .collect();
        println!(
            "median {name} begin_us {} slice_max_us {} slice_median_us {} sliced_ms {} whole_ms {}",
            med[0], med[1], med[2], med[3], med[4]
        );
    }
}

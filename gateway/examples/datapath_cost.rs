//! Deterministic cost of the DPDK-free datapath (issue 16): `datapath_cost SCENARIO N` does a
//! setup, then N operations of one kind; `perf/cost.sh` runs it under Valgrind's callgrind at two
//! values of N, so that the difference divided by the difference of N is one operation's cost in
//! instructions (and simulated cache misses), whatever the setup cost.
//!
//! Scenarios:
//! - `established-1k`, `established-1m`: a client's ACK on an established FullNAT connection
//!   picked at random among 1K or 1M (the frame rewritten from a template, as the criterion bench
//!   does: `benches/datapath.rs`);
//! - `syn`: a SYN that opens a new connection, its frame built from the template (two checksums);
//! - `frames`: only building those SYN frames, to subtract from `syn`.

use gateway::datapath::Datapath;
use gateway::packet::VecBuf;
use gateway::testkit::datapath_from;
use gateway::testkit::flows::*;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    match args.get(1).map(String::as_str) {
        Some("established-1k") => established_run(1_000, 1 << 12, n),
        Some("established-1m") => established_run(1_000_000, 2 << 20, n),
        Some(s @ ("syn" | "frames")) => {
            let syn = template(0x02);
            let mut dp: Datapath<VecBuf> = datapath_from(&bench_config(), 0, 1, 2 << 20);
            let mut buf = VecBuf::from_frame(&syn);
            for i in 0..n as u32 {
                let f = std::hint::black_box(Flow::new(&syn, i));
                if s == "syn" {
                    buf = send(&mut dp, buf, &f, &syn);
                }
            }
        }
        _ => {
            eprintln!("usage: datapath_cost established-1k|established-1m|syn|frames N");
            std::process::exit(2);
        }
    }
}

fn established_run(conns: u32, cap: u32, n: usize) {
    let (mut dp, acks, ack) = established(conns, cap);
    let order = random_order(conns, 1 << 16);
    let mut buf = VecBuf::from_frame(&ack);
    for k in 0..n {
        buf = send(&mut dp, buf, &acks[order[k & 0xFFFF] as usize], &ack);
    }
}

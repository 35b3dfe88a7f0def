//! `stalls [SECONDS]`: how often and how long this CPU is taken from a program that never gives
//! it up (issue 16; perf/RESULTS.md, "The tail: the machine's stalls"). It reads the clock in a
//! tight loop for SECONDS (default 5) and counts every gap between two reads of a microsecond or
//! more, by its length: the time the CPU spent elsewhere (the timer interrupt, other tasks, the
//! hypervisor running another guest's vCPU on this one's core). A polling worker loses exactly
//! these; run it where the worker runs (`taskset -c 1 stalls`), with nothing else on that CPU.
//!
//! Prints one JSON object: `gaps_log2_us[k]` counts the gaps of `2^(k-1)` up to `2^k - 1`
//! microseconds (`[1]` is 1 us, `[2]` 2-3 us, ..., the last bucket also everything longer),
//! `stalled_us` their total and `longest_us` the longest.
use std::time::{Duration, Instant};

/// Buckets of `gaps_log2_us`: the last holds 2^22 us (4 s) and more.
const BUCKETS: usize = 24;

fn main() {
    let seconds: f64 = match std::env::args().nth(1) {
        Some(s) => s.parse().expect("stalls [SECONDS]"),
        None => 5.0,
    };
    let run = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut gaps = [0u64; BUCKETS];
    let (mut stalled, mut longest) = (Duration::ZERO, Duration::ZERO);
    let mut prev = start;
    loop {
        let now = Instant::now();
        let gap = now - prev;
        prev = now;
        let us = gap.as_micros() as u64;
        if us > 0 {
            gaps[(64 - us.leading_zeros() as usize).min(BUCKETS - 1)] += 1;
            stalled += gap;
            longest = longest.max(gap);
        }
        if now - start >= run {
            break;
        }
    }
    // Never zero: a fraction of no time is none.
    let total = (prev - start).max(Duration::from_nanos(1));
    println!(
        "{}",
        serde_json::json!({
            "seconds": total.as_secs_f64(),
            "gaps_log2_us": gaps,
            "stalled_us": stalled.as_micros() as u64,
            "stalled_fraction": stalled.as_secs_f64() / total.as_secs_f64(),
            "longest_us": longest.as_micros() as u64,
        })
    );
}

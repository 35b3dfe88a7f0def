//! End-to-end: a SYN flood from spoofed sources (hping3 `--flood --rand-source`, inside the lab)
//! cannot take the service down: half-open connections past `[conn] max_half_open` give way to
//! new ones, so real clients keep connecting during and after the flood (issue 21, part 2).

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn a_spoofed_syn_flood_leaves_room_for_real_clients() {
    let lab = Lab::up("sf", &Lab::default_config(""));
    assert!(lab.curl_ok());
    // 4 s of flood: every source address random, so none of the SYN-ACKs can be answered.
    let mut flood = lab.spawn_syn_flood(4);
    std::thread::sleep(Duration::from_millis(1500));
    let mut during = (0, 0);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        during.0 += 1;
        during.1 += usize::from(lab.curl_ok());
    }
    let _ = flood.wait();
    let stats = lab.stats();
    let evicted = Lab::counter_of(&stats, "conn ", "evicted_embryonic");
    // Right after the flood (where, without the bound, 20 of 20 curls failed): every one works.
    let after = (0..20).filter(|_| lab.curl_ok()).count();
    eprintln!("during the flood {}/{} curls, after it {after}/20; {evicted} half-open connections evicted", during.1, during.0);
    assert!(evicted > 0, "the flood filled the bound: {stats}");
    assert_eq!(after, 20, "{stats}");
    assert!(
        during.0 > 0 && during.1 * 2 >= during.0,
        "during the flood {during:?}\n{stats}"
    );
    // The table never filled: the bound kept half of it for connections that complete.
    assert_eq!(Lab::drop_counter(&stats, "conn_table_full"), 0, "{stats}");
}

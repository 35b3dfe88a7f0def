//! End-to-end: a SYN flood from spoofed sources (hping3 `--flood --rand-source`, inside the lab)
//! cannot take the service down: half-open connections past `[conn] max_half_open` give way to
//! new ones, so real clients keep connecting during and after the flood (issue 21, part 2).

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn a_spoofed_syn_flood_leaves_room_for_real_clients() {
    // A table of 8192 a worker keeps 4096 half-open connections: a flood of SYNs every 20 us,
    // from random sources, passes the bound in well under a second and goes on past it. Flat
    // out (`--flood`) it would also take every cycle of the debug build CI runs, and the curls
    // during it would measure that, not the bound: a SYN lost before the gateway looks at it.
    let config = with_small_table("");
    let lab = Lab::up("sf", &config);
    assert!(lab.curl_ok());
    let mut flood = lab.spawn_syn_flood_every(5, "u20");
    std::thread::sleep(Duration::from_millis(1500));
    let mut during = (0, 0);
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(1500) {
        during.0 += 1;
        during.1 += usize::from(lab.curl_ok());
    }
    let mid = lab.stats();
    let _ = flood.wait();
    let stats = lab.stats();
    let evicted = Lab::counter_of(&stats, "conn ", "evicted_embryonic");
    // Right after the flood (where, without the bound, 20 of 20 curls failed): every one works.
    let after = (0..20).filter(|_| lab.curl_ok()).count();
    eprintln!("during the flood {}/{} curls, after it {after}/20; {evicted} half-open connections evicted", during.1, during.0);
    assert!(
        Lab::counter_of(&mid, "conn ", "evicted_embryonic") > 0,
        "the flood passed the bound while the curls ran: {mid}"
    );
    assert_eq!(after, 20, "{stats}");
    assert!(
        during.0 > 0 && during.1 * 2 >= during.0,
        "during the flood {during:?}\n{stats}"
    );
    // The table never filled: the bound kept half of it for connections that complete.
    assert_eq!(Lab::drop_counter(&stats, "conn_table_full"), 0, "{stats}");
}

/// A UDP flood from spoofed sources (hping3 `--udp --flood --rand-source`) on a UDP service
/// fills the table with flows no server answers, for UDP's 300 s. The table is shared with every
/// service: new connections take the place of the oldest unanswered flows (`evicted_udp`), so
/// the TCP service beside it keeps taking clients during and after the flood.
#[test]
fn a_spoofed_udp_flood_leaves_room_for_the_other_services() {
    udp_flood_leaves_room("uf", "");
}

/// The same at a DR service (DNS in DR, the classic LVS setup), whose answers bypass the
/// gateway: a flow counts as in use only from its client's second datagram, which none of the
/// flood's has.
#[test]
fn a_spoofed_udp_flood_at_a_dr_service_leaves_room_for_the_other_services() {
    udp_flood_leaves_room("ud", "mode = \"dr\"\n");
}

/// The flood at a UDP service on port 53 whose real server has `real` (its mode), in a table of
/// 8192 a worker, then 10 curls to the TCP service.
fn udp_flood_leaves_room(tag: &str, real: &str) {
    let udp = format!(
        r#"
[[service]]
vip = "10.10.0.100"
port = 53
protocol = "udp"
scheduler = "rr"
local_addresses = ["10.20.0.200", "10.20.0.201"]
[[service.real]]
address = "10.20.0.11"
port = 53
{real}"#
    );
    let config = with_small_table(&udp);
    let lab = Lab::up(tag, &config);
    assert!(lab.curl_ok());
    let args = [
        "timeout",
        "3",
        "hping3",
        "-q",
        "--udp",
        "-p",
        "53",
        "--flood",
        "--rand-source",
        "10.10.0.100",
    ];
    let _ = lab.spawn("cli", &args).wait();
    let after = (0..10).filter(|_| lab.curl_ok()).count();
    let stats = lab.stats();
    let evicted = Lab::conn_counter(&stats, "evicted_udp");
    eprintln!("after the UDP flood {after}/10 curls; {evicted} unanswered flows evicted");
    assert!(evicted > 0, "the flood filled the table: {stats}");
    assert_eq!(after, 10, "{stats}");
}

/// The lab's config with `extra`, in a table of 8192 connections a worker.
fn with_small_table(extra: &str) -> String {
    let config = Lab::default_config(extra).replacen("capacity = 65536", "capacity = 8192", 1);
    assert!(config.contains("capacity = 8192"));
    config
}

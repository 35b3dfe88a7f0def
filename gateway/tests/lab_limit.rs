//! End-to-end: per-client limits (`[[service]] client_limit`, `gwctl limit`) in the lab (issue 21,
//! part 4). A limit of C open connections holds the client to between ⌈C/n⌉ and n·⌈C/n⌉ of them
//! (n workers) and makes room again as soon as they close; a rate of N new connections per second
//! set at run time lets about N through per second, within the documented error (at most
//! N·T + burst; about N·T when the client's connections spread over the workers), and answers the
//! rest with a RST; a bad limit is refused naming the key.

mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

const VS: &str = "10.10.0.100:80";

/// The `gwctl limit` row `name`: its count.
fn count(list: &str, name: &str) -> u64 {
    list.lines()
        .find(|l| l.trim_start().starts_with(name))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or_else(|| panic!("no {name:?} in {list}"))
}

/// `gwctl limit` once its `name` count is `want` (the workers publish their counters a few
/// times a second), or after 2 s.
fn limit_list_when(lab: &Lab, name: &str, want: u64) -> String {
    let t = Instant::now();
    loop {
        let list = lab.gwctl(&["limit"]);
        if count(&list, name) == want || t.elapsed() > Duration::from_secs(2) {
            return list;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn per_client_limits_hold_open_connections_and_the_rate() {
    let config = Lab::default_config("").replacen(
        "toa = true",
        "toa = true\nclient_limit = { max_conns = 2, action = \"rst\" }",
        1,
    );
    let lab = Lab::up("lm", &config);

    // Open connections: 2 over the lab's 2 workers, one each. Of 4 keep-alive connections held
    // open the client gets between 1 and 2, by how the hash of its ports spread them; the others
    // are answered with a RST (refused at once: python prints the error).
    let held: Vec<KeepAlive> = (0..4).map(|_| KeepAlive::open(&lab)).collect();
    let open = held.iter().filter(|k| !k.first.is_empty()).count();
    assert!((1..=2).contains(&open), "{open} open connections");
    let list = limit_list_when(&lab, "conns_refused", 4 - open as u64);
    assert!(
        list.starts_with("TCP 10.10.0.100:80  max_conns 2 per /32 rst"),
        "{list}"
    );
    assert_eq!(count(&list, "conns_refused"), 4 - open as u64, "{list}");
    // Once they close, the client connects again at once (a closed connection stops counting
    // before its entry's TIME_WAIT ends).
    drop(held);
    let t = Instant::now();
    while !lab.curl_ok() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no room after closing"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A rate of 50 new connections per second, set at run time (the counts go on), and short connections
    // (`Connection: close`) as fast as the client can open them: refused ones get a RST at
    // once, so the client offers far more than the rate all along.
    const RATE: f64 = 50.0;
    lab.gwctl(&["limit", "-t", VS, "rate", "50", "action", "rst"]);
    let created = |stats: &str| Lab::conn_counter(stats, "created");
    let before = created(&lab.stats());
    let secs = 4;
    let t = Instant::now();
    let out = lab.spawn_wrk(1, 8, secs).wait_with_output().unwrap();
    let elapsed = t.elapsed().as_secs_f64();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let (requests, _) = wrk_totals(&out);
    let stats = lab.stats();
    let admitted = created(&stats) - before;
    let list = lab.gwctl(&["limit"]);
    let refused = count(&list, "rate_refused");
    eprintln!(
        "{admitted} connections admitted in {elapsed:.2} s ({:.1}/s), {refused} refused, {requests} requests served",
        admitted as f64 / elapsed
    );
    // The documented bound: at most rate·T + burst (the burst is the rate), T the whole time
    // the client ran (+1 for the workers' clocks against this one). And since the client's
    // connections spread over both workers, each offered more than its share, close to rate·T.
    let most = RATE * elapsed + RATE + 1.0;
    let least = 0.8 * RATE * f64::from(secs);
    assert!(
        (least..=most).contains(&(admitted as f64)),
        "{admitted} admitted, not within [{least}, {most}]\n{out}\n{stats}"
    );
    assert!(
        refused > 10 * admitted,
        "the client offered far more: {list}"
    );
    assert!(requests <= admitted, "{out}");
    assert_eq!(Lab::drop_counter(&stats, "limit_rate"), refused, "{stats}");
    assert!(Lab::conn_counter(&stats, "rst_sent") >= refused, "{stats}");
    let listing = lab.ipvsadm(&["-Ln"]);
    assert!(
        listing.contains(&format!(
            "TCP  {VS} wrr limit rate 50/s burst 50 per /32 rst (refused {refused} rate, {} conns)",
            4 - open
        )),
        "{listing}"
    );
    let saved = lab.gwctl(&["save"]);
    assert!(saved.contains("rate = 50"), "{saved}");

    // A bad limit is refused, naming the key, and the running one stays; `none` removes it.
    let o = Command::new(env!("CARGO_BIN_EXE_gwctl"))
        .env("GATEWAY_SOCKET", format!("/run/gateway/{}.sock", lab.name))
        .args(["limit", "-t", VS, "rate", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("client_limit.rate"),
        "{err}"
    );
    assert!(lab.gwctl(&["limit"]).contains("rate 50/s"));
    lab.gwctl(&["limit", "-t", VS, "none"]);
    assert_eq!(lab.gwctl(&["limit"]), "");
    assert!(lab.curl_ok());
}

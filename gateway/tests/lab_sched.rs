//! End-to-end scheduling in the lab, the LVS textbook check: two nginx real servers returning
//! different pages, weights 1 and 2 under wrr; then weight 0 drains one server gracefully.

mod common;
use common::*;
use std::process::Command;

fn services(w1: u32, w2: u32) -> String {
    format!(
        r#"
[[service]]
vip = "10.10.0.100"
port = 80
scheduler = "wrr"
local_addresses = ["10.20.0.200", "10.20.0.201"]

[[service.real]]
address = "10.20.0.11"
weight = {w1}

[[service.real]]
address = "10.20.0.12"
weight = {w2}
"#
    )
}

#[test]
fn wrr_one_to_two_exactly_then_weight_zero_drains_gracefully() {
    let lab = Lab::up("sw", &Lab::config_with_services(&services(1, 2)));

    // 300 sequential connections: exactly 100 and 200, though they land on two workers.
    let out = lab.curls(300);
    let rs1 = out.lines().filter(|l| *l == "rs1").count();
    let rs2 = out.lines().filter(|l| *l == "rs2").count();
    assert_eq!(
        (rs1, rs2),
        (100, 200),
        "{}",
        out.lines().filter(|l| l.contains("FAIL")).count()
    );

    // Open keep-alive connections until one is served by rs2 (weight 2: the first or second is).
    let mut kept =
        KeepAlive::open_to(&lab, "rs2", 3).expect("no keep-alive connection reached rs2");

    // Quiesce rs2: weight 0, applied on every worker before the reload reports success.
    lab.reload(&Lab::config_with_services(&services(1, 0)), 2);

    // Every new connection goes to rs1...
    let out = lab.curls(30);
    assert_eq!(out.lines().filter(|l| *l == "rs1").count(), 30, "{out}");
    // ...while the open connection to rs2 keeps working.
    for _ in 0..3 {
        assert_eq!(
            kept.get(),
            "rs2",
            "the existing keep-alive connection still reaches rs2"
        );
    }
    drop(kept);

    // A bad reload is refused and changes nothing.
    std::fs::write(
        lab.run_dir.join("gateway.toml"),
        Lab::config_with_services(&services(1, 70000)),
    )
    .unwrap();
    Command::new("kill")
        .args(["-HUP", &lab.pid().unwrap().to_string()])
        .status()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(lab.log().contains("config reload refused"), "{}", lab.log());
    let out = lab.sh(
        "cli",
        &[
            "sh",
            "-c",
            "for i in $(seq 1 5); do curl -sf --max-time 5 http://10.10.0.100/; done",
        ],
    );
    assert_eq!(out.lines().filter(|l| *l == "rs1").count(), 5, "{out}");
}

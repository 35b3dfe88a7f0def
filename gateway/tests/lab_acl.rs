//! End-to-end: per-service access lists (`[[service]] acl`, `gwctl acl`) in the lab: a denied client
//! cannot connect and is counted, a list changed at run time applies to the next connection, a bad
//! rule is refused and changes nothing (issue 21, part 3).

mod common;
use common::*;

/// The `gwctl acl` row of `rule`: its hits.
fn hits(list: &str, rule: &str) -> u64 {
    list.lines()
        .find(|l| l.trim_start().starts_with(rule))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or_else(|| panic!("no {rule:?} in {list}"))
}

#[test]
fn access_lists_refuse_count_and_change_at_run_time() {
    // The client is 10.10.0.2: denied by the configured list.
    let config =
        Lab::default_config("").replacen("toa = true", "toa = true\nacl = [\"deny 10.10.0.2\"]", 1);
    let lab = Lab::up("ac", &config);
    assert!(!lab.curl_ok(), "a denied client connects");
    let list = lab.gwctl(&["acl"]);
    assert!(list.starts_with("TCP 10.10.0.100:80"), "{list}");
    assert!(hits(&list, "deny 10.10.0.2/32") >= 1, "{list}");
    assert_eq!(hits(&list, "otherwise allow"), 0, "{list}");
    // ipvsadm -Ln has it in short on the service line.
    let denied = hits(&list, "deny 10.10.0.2/32");
    let ln = lab.ipvsadm(&["-Ln"]);
    assert!(
        ln.contains(&format!("wrr acl 1 rules (denied {denied})")),
        "{ln}"
    );
    let stats = lab.stats();
    assert!(Lab::drop_counter(&stats, "acl_denied") >= 1, "{stats}");
    assert_eq!(
        lab.worker_counter(&stats, "conns"),
        0,
        "no state for a denied client"
    );

    // An allow-list naming the client's network, set at run time: the next connection passes.
    lab.gwctl(&["acl", "-t", "10.10.0.100:80", "allow", "10.10.0.0/24"]);
    assert!(lab.curl_ok());
    // The workers publish their counters every 100 ms: the hit shows within a few publications.
    let mut list = lab.gwctl(&["acl"]);
    for _ in 0..20 {
        if hits(&list, "allow 10.10.0.0/24") >= 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        list = lab.gwctl(&["acl"]);
    }
    assert!(hits(&list, "allow 10.10.0.0/24") >= 1, "{list}");
    assert!(list.contains("otherwise deny"), "{list}");
    let saved = lab.gwctl(&["save"]);
    assert!(saved.contains("acl = [\"allow 10.10.0.0/24\"]"), "{saved}");

    // A bad rule is refused, naming it, and the running list stays.
    let o = lab.admin_output(&["acl", "-t", "10.10.0.100:80", "deny", "10.10.0.0/8"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("rule 1") && err.contains("host bits"),
        "{err}"
    );
    assert!(lab.gwctl(&["acl"]).contains("allow 10.10.0.0/24"));
    assert!(lab.curl_ok());

    // `none` removes the list.
    lab.gwctl(&["acl", "-t", "10.10.0.100:80", "none"]);
    assert_eq!(lab.gwctl(&["acl"]), "");
    assert!(lab.curl_ok());
}

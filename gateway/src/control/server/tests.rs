use super::*;
use crate::control::dump::conn_matches;
use std::net::Ipv4Addr;

#[test]
fn filters_select_connections() {
    let c = ConnInfo {
        worker: 1,
        proto: "TCP".into(),
        client: (Ipv4Addr::new(10, 10, 0, 2).into(), 40000),
        vip: (Ipv4Addr::new(10, 10, 0, 100).into(), 80),
        local: Some((Ipv4Addr::new(10, 20, 0, 200).into(), 5000)),
        dest: Some((Ipv4Addr::new(10, 20, 0, 11).into(), 80)),
        state: "ESTABLISHED".into(),
        expire_ms: 1000,
    };
    assert!(conn_matches(&c, &ConnFilter::default()));
    let f = ConnFilter {
        proto: Some("tcp".into()),
        state: Some("established".into()),
        rs: Some(Ipv4Addr::new(10, 20, 0, 11).into()),
        ..Default::default()
    };
    assert!(conn_matches(&c, &f));
    assert!(!conn_matches(
        &c,
        &ConnFilter {
            rs: Some(Ipv4Addr::new(10, 20, 0, 12).into()),
            ..Default::default()
        }
    ));
    assert!(!conn_matches(
        &c,
        &ConnFilter {
            worker: Some(0),
            ..Default::default()
        }
    ));
    assert!(!conn_matches(
        &c,
        &ConnFilter {
            client_port: Some(1),
            ..Default::default()
        }
    ));
}

#[test]
fn socket_is_private_and_stale_sockets_are_replaced() {
    let dir = std::env::temp_dir().join(format!("gwctl-test-{}", std::process::id()));
    let path = dir.join("t.sock");
    let l = bind(&path, None).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Live: refused.
    assert_eq!(
        bind(&path, None).unwrap_err().kind(),
        std::io::ErrorKind::AddrInUse
    );
    drop(l);
    // Stale (nobody listens): replaced, with a group.
    let _l = bind(&path, Some("0")).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    assert!(gid_of("no-such-group-here").is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

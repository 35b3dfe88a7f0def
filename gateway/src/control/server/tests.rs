use super::*;

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

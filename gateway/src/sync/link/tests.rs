//! Two sync threads over loopback (127.0.0.1 and 127.0.0.2), their workers played by channels.

use super::*;
use crate::conn::record::RecordKind;

const KEY: [u8; 16] = [7; 16];

fn layout() -> Layout {
    Layout {
        workers: 2,
        ports: (1024, 65535),
        steering: 0,
        rss_key_hash: 0,
    }
}

fn settings(local: [u8; 4], peer: [u8; 4], port: u16, mode: &str) -> Settings {
    Settings {
        mode: mode.parse().unwrap(),
        local: Ipv4Addr::from(local),
        peer: Ipv4Addr::from(peer),
        udp_port: port,
        key: KEY.to_vec(),
        id: u32::from_be_bytes(local),
        refresh_ms: 1000,
        log_capacity: 1024,
        max_msgs_per_s: 10_000,
    }
}

/// A port free on both loopback addresses (as far as one can tell).
fn free_port() -> u16 {
    loop {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = s.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.2", p)).is_ok() {
            return p;
        }
    }
}

/// A link whose workers are a channel of what it delivers.
fn start(s: Settings, l: Layout) -> (Handle, Receiver<ToWorkers>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let h = Handle::start(s, l, Box::new(move |m| tx.send(m).is_ok())).unwrap();
    (h, rx)
}

fn rec(cport: u16) -> ConnRecord {
    ConnRecord {
        kind: RecordKind::Conn,
        proto: 6,
        mode: 0,
        state: 1,
        client: (Ipv4Addr::new(10, 10, 0, 2), cport),
        vip: (Ipv4Addr::new(10, 10, 0, 100), 80),
        real: (Ipv4Addr::new(10, 20, 0, 11), 80),
        local: (Ipv4Addr::new(10, 20, 0, 200), 2000 + cport),
        remaining_ms: 900_000,
    }
}

/// The next delivery passing `f`, within 3 s.
fn wait_for<T>(rx: &Receiver<ToWorkers>, mut f: impl FnMut(ToWorkers) -> Option<T>) -> Option<T> {
    let until = Instant::now() + Duration::from_secs(3);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(m) => {
                if let Some(t) = f(m) {
                    return Some(t);
                }
            }
            Err(_) => return None,
        }
    }
    None
}

fn wait_status(h: &Handle, f: impl Fn(&Status) -> bool) -> Status {
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        let s = h.status();
        if f(&s) || Instant::now() > until {
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_backup_asks_for_everything_and_installs_what_the_master_sends() {
    let port = free_port();
    let (m, m_rx) = start(
        settings([127, 0, 0, 1], [127, 0, 0, 2], port, "master"),
        layout(),
    );
    let out = wait_for(&m_rx, |x| match x {
        ToWorkers::Primary(Some(p)) => Some(p.out),
        _ => None,
    })
    .expect("the master's workers start logging");
    let (b, b_rx) = start(
        settings([127, 0, 0, 2], [127, 0, 0, 1], port, "backup"),
        layout(),
    );
    // The backup's resync request reaches the master, which asks its workers for everything.
    assert!(
        wait_for(&m_rx, |x| matches!(x, ToWorkers::ExportAll).then_some(())).is_some(),
        "no full resync: {:?}",
        m.status()
    );
    // Once the hellos have matched, 100 records (3 messages) arrive whole, in order.
    wait_status(&b, |s| s.peer_layout == "same");
    let recs: Vec<ConnRecord> = (1..=100).map(rec).collect();
    out.send(recs[..60].to_vec()).unwrap();
    out.send(recs[60..].to_vec()).unwrap();
    let mut got = Vec::new();
    wait_for(&b_rx, |x| {
        if let ToWorkers::Install(r) = x {
            got.extend(r);
        }
        (got.len() >= 100).then_some(())
    });
    assert_eq!(got, recs);
    let ms = wait_status(&m, |s| s.sent_records >= 100);
    assert_eq!((ms.sent_records, ms.role), (100, Role::Master));
    assert!(ms.resyncs_started >= 1);
    let bs = wait_status(&b, |s| s.received_records >= 100);
    assert_eq!(bs.received_records, 100);
    assert_eq!((bs.role, bs.peer_id), (Role::Backup, Some(0x7f00_0001)));
    assert_eq!(bs.refused(), 0);
}

#[test]
fn another_key_or_another_layout_installs_nothing() {
    let port = free_port();
    let (b, b_rx) = start(
        settings([127, 0, 0, 2], [127, 0, 0, 1], port, "backup"),
        layout(),
    );
    // A host without the key: its messages are refused, counted, and change nothing.
    let mut forger = settings([127, 0, 0, 1], [127, 0, 0, 2], port, "master");
    forger.key = vec![8; 16];
    let (f, f_rx) = start(forger, layout());
    let out = wait_for(&f_rx, |x| match x {
        ToWorkers::Primary(Some(p)) => Some(p.out),
        _ => None,
    })
    .unwrap();
    out.send(vec![rec(1)]).unwrap();
    let s = wait_status(&b, |s| s.refused_bad_mac >= 2);
    assert!(s.refused_bad_mac >= 2, "{s:?}");
    assert_eq!((s.received_msgs, s.peer_layout.as_str()), (0, "unknown"));
    drop(f);
    // The right key but another worker count: hellos are heard, records refused.
    let mut l2 = layout();
    l2.workers = 3;
    let (m, m_rx) = start(settings([127, 0, 0, 1], [127, 0, 0, 2], port, "master"), l2);
    let out = wait_for(&m_rx, |x| match x {
        ToWorkers::Primary(Some(p)) => Some(p.out),
        _ => None,
    })
    .unwrap();
    let s = wait_status(&b, |s| s.peer_layout.starts_with("differs"));
    assert!(s.peer_layout.contains("theirs 3 workers"), "{s:?}");
    out.send(vec![rec(2)]).unwrap();
    let s = wait_status(&b, |s| s.refused_layout >= 1);
    assert_eq!(s.refused_layout, 1, "{s:?}");
    assert!(
        b_rx.try_iter().all(|x| !matches!(x, ToWorkers::Install(_))),
        "nothing installed"
    );
    drop(m);
}

#[test]
fn auto_mode_follows_the_vips_and_a_new_master_starts_logging() {
    let port = free_port();
    let (a, rx) = start(
        settings([127, 0, 0, 1], [127, 0, 0, 2], port, "auto"),
        layout(),
    );
    assert_eq!(
        wait_status(&a, |s| s.role == Role::Backup).role,
        Role::Backup
    );
    a.vips_held(true);
    assert!(wait_for(&rx, |x| matches!(x, ToWorkers::Primary(Some(_)))
        .then_some(()))
    .is_some());
    assert_eq!(
        wait_status(&a, |s| s.role == Role::Master).role,
        Role::Master
    );
    a.vips_held(false);
    assert!(wait_for(&rx, |x| matches!(x, ToWorkers::Primary(None)).then_some(())).is_some());
    // Fixed: the VIPs no longer matter.
    a.set_mode(RoleMode::Fixed(Role::Off));
    a.vips_held(true);
    let s = wait_status(&a, |s| s.mode == "off");
    assert_eq!((s.role, s.role_changes), (Role::Off, 4));
}

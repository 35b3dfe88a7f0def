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
        client: (Ipv4Addr::new(10, 10, 0, 2).into(), cport),
        vip: (Ipv4Addr::new(10, 10, 0, 100).into(), 80),
        real: (Ipv4Addr::new(10, 20, 0, 11).into(), 80),
        local: (Ipv4Addr::new(10, 20, 0, 200).into(), 2000 + cport),
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
    wait_status_ms(h, 3000, f)
}

fn wait_status_ms(h: &Handle, within_ms: u64, f: impl Fn(&Status) -> bool) -> Status {
    let until = Instant::now() + Duration::from_millis(within_ms);
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
    let generation = wait_for(&m_rx, |x| match x {
        ToWorkers::ExportAll(g) => Some(g),
        _ => None,
    });
    let generation = generation.unwrap_or_else(|| panic!("no full resync: {:?}", m.status()));
    // Once the hellos have matched, 100 records (3 messages) arrive whole, in order.
    wait_status(&b, |s| s.peer_layout == "same");
    let recs: Vec<ConnRecord> = (1..=100).map(rec).collect();
    out.send(Export::Records(recs[..60].to_vec())).unwrap();
    // One worker of two has finished: the backup is not ready, whatever it has received.
    out.send(Export::ResyncDone(generation)).unwrap();
    out.send(Export::Records(recs[60..].to_vec())).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let bs = b.status();
    assert!(!bs.ready, "{bs:?}");
    assert_eq!(bs.resync, "waiting for the peer's full resync");
    // A marker of another resync counts for nothing.
    out.send(Export::ResyncDone(generation + 1)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(!b.status().ready);
    // The second worker's: the master says it is done, after the records.
    out.send(Export::ResyncDone(generation)).unwrap();
    let bs = wait_status(&b, |s| s.ready);
    assert_eq!(
        (
            bs.ready,
            bs.resync.as_str(),
            bs.resync_done_received,
            bs.resync_records
        ),
        (true, "resynced", 1, 100),
        "{bs:?}"
    );
    let mut got = Vec::new();
    wait_for(&b_rx, |x| {
        if let ToWorkers::Install(r) = x {
            got.extend(r);
        }
        (got.len() >= 100).then_some(())
    });
    assert_eq!(got, recs);
    // The master counts its marker sent after sending it: the backup may be ready first.
    let ms = wait_status(&m, |s| s.sent_records >= 100 && s.resync_done_sent >= 1);
    assert_eq!((ms.sent_records, ms.role), (100, Role::Master));
    assert_eq!((ms.resyncs_started, ms.resync_done_sent), (1, 1), "{ms:?}");
    assert!(ms.ready, "a master is always ready");
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
    out.send(Export::Records(vec![rec(1)])).unwrap();
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
    out.send(Export::Records(vec![rec(2)])).unwrap();
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
    // A master that steps down holds what it served: ready, with no resync to wait for.
    let s = wait_status(&a, |s| s.role == Role::Backup);
    assert_eq!((s.ready, s.resync.as_str()), (true, "resynced"), "{s:?}");
    // Fixed: the VIPs no longer matter.
    a.set_mode(RoleMode::Fixed(Role::Off));
    a.vips_held(true);
    let s = wait_status(&a, |s| s.mode == "off");
    assert_eq!((s.role, s.role_changes), (Role::Off, 4));
}

#[test]
fn a_backup_is_ready_at_once_beside_another_backup_and_without_a_peer_after_a_while() {
    let port = free_port();
    let (a, _a_rx) = start(
        settings([127, 0, 0, 1], [127, 0, 0, 2], port, "backup"),
        layout(),
    );
    // Alone, it waits for a peer to show up, then no longer.
    let s = a.status();
    assert!(!s.ready, "{s:?}");
    let s = wait_status_ms(&a, PEER_LOST_MS + 2000, |s| s.ready);
    assert_eq!(s.resync, "no peer", "{s:?}");
    // Another backup comes: each asks, each answers that it has nothing, and both are ready
    // without waiting for the peer to go away.
    let t = Instant::now();
    let (b, _b_rx) = start(
        settings([127, 0, 0, 2], [127, 0, 0, 1], port, "backup"),
        layout(),
    );
    let bs = wait_status(&b, |s| s.ready);
    assert!(t.elapsed() < Duration::from_millis(PEER_LOST_MS), "{bs:?}");
    assert_eq!(
        (
            bs.resync.as_str(),
            bs.resync_done_received,
            bs.resync_records
        ),
        ("resynced", 1, 0),
        "{bs:?}"
    );
    let s = wait_status(&a, |s| s.resync_done_sent >= 1);
    assert!(s.ready && s.resync_requests_received >= 1, "{s:?}");
}

#[test]
fn a_backup_stops_waiting_for_a_master_that_goes_away_mid_resync() {
    let port = free_port();
    let (m, m_rx) = start(
        settings([127, 0, 0, 1], [127, 0, 0, 2], port, "master"),
        layout(),
    );
    let (b, _b_rx) = start(
        settings([127, 0, 0, 2], [127, 0, 0, 1], port, "backup"),
        layout(),
    );
    // The master's workers never finish: the backup waits as long as the master is heard.
    assert!(wait_for(&m_rx, |x| matches!(x, ToWorkers::ExportAll(_))
        .then_some(()))
    .is_some());
    std::thread::sleep(Duration::from_millis(PEER_LOST_MS + 500));
    let s = b.status();
    assert!(!s.ready, "{s:?}");
    // It asks again; a request while the first resync runs starts no other.
    let ms = wait_status(&m, |s| s.resync_requests_received >= 2);
    assert_eq!(
        (
            ms.resync_requests_received,
            ms.resyncs_started,
            ms.resync_done_sent
        ),
        (2, 1, 0),
        "{ms:?}"
    );
    assert!(!b.status().ready);
    // The backup restarts: its wait is another, and the master starts over for it (the records
    // sent so far may never have reached the new process).
    drop(b);
    let (b, _b_rx) = start(
        settings([127, 0, 0, 2], [127, 0, 0, 1], port, "backup"),
        layout(),
    );
    let ms = wait_status(&m, |s| s.resyncs_started >= 2);
    assert_eq!(ms.resyncs_started, 2, "{ms:?}");
    assert!(!b.status().ready);
    drop(m);
    let s = wait_status_ms(&b, PEER_LOST_MS + 2000, |s| s.ready);
    assert_eq!((s.ready, s.resync.as_str()), (true, "no peer"), "{s:?}");
}

/// A master played by hand (a socket, a `Sealer`): it sends the resync dones it likes.
struct FakeMaster {
    sock: UdpSocket,
    sealer: Sealer,
    opener: Opener,
    to: SocketAddrV4,
}

impl FakeMaster {
    fn new(port: u16) -> FakeMaster {
        let sock = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        FakeMaster {
            sock,
            sealer: Sealer::new(&KEY, 0x7f00_0001, 1),
            opener: Opener::new(&KEY),
            to: SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), port),
        }
    }

    fn send(&self, m: &[u8]) {
        self.sock.send_to(m, self.to).unwrap();
    }

    /// Says hello until the backup asks for everything; its wait number.
    fn request(&mut self) -> u32 {
        let until = Instant::now() + Duration::from_secs(3);
        let mut buf = [0u8; 2048];
        while Instant::now() < until {
            let hello = self.sealer.hello(&layout());
            self.send(&hello);
            while let Ok(n) = self.sock.recv(&mut buf) {
                if let Ok(Message::ResyncRequest { wait, .. }) = self.opener.open(&buf[..n]) {
                    return wait;
                }
            }
        }
        panic!("no resync request");
    }

    fn done(&mut self, wait: u32, records: u32) {
        let m = self.sealer.resync_done(wait, records);
        self.send(&m);
    }

    /// One record, after a message sealed and never sent: the backup counts one lost.
    fn record_after_a_gap(&mut self, cport: u16) {
        let _ = self.sealer.hello(&layout());
        for m in self.sealer.records(&[rec(cport)]) {
            self.send(&m);
        }
    }
}

/// A backup, and a fake master it has asked for everything (its wait number).
fn backup_asking_a_fake_master() -> (Handle, Receiver<ToWorkers>, FakeMaster, u32) {
    let port = free_port();
    let (b, b_rx) = start(
        settings([127, 0, 0, 2], [127, 0, 0, 1], port, "backup"),
        layout(),
    );
    let mut m = FakeMaster::new(port);
    let wait = m.request();
    (b, b_rx, m, wait)
}

#[test]
fn a_done_ends_only_the_wait_it_answers_and_one_after_losses_asks_again() {
    let (b, _b_rx, mut m, wait) = backup_asking_a_fake_master();
    // The done of another wait (a resync the backup asked for before it restarted, or before it
    // met its peer again) ends nothing.
    m.done(wait.wrapping_sub(1), 100);
    m.done(wait.wrapping_add(1), 100);
    std::thread::sleep(Duration::from_millis(300));
    let s = b.status();
    assert!(!s.ready, "{s:?}");
    // This wait's, after a message that never arrived: asked again, same wait, still waiting.
    m.record_after_a_gap(1);
    let s = wait_status(&b, |s| s.lost_msgs == 1 && s.received_records == 1);
    assert_eq!(s.lost_msgs, 1, "{s:?}");
    m.done(wait, 1);
    assert_eq!(m.request(), wait);
    let s = wait_status(&b, |s| s.resync_incomplete >= 1);
    assert_eq!(
        (s.ready, s.resync_incomplete, s.resync_done_received),
        (false, 1, 0),
        "{s:?}"
    );
    // A whole one ends the wait.
    m.done(wait, 1);
    let s = wait_status(&b, |s| s.ready);
    assert_eq!(
        (s.resync.as_str(), s.resync_done_received, s.resync_records),
        ("resynced", 1, 1),
        "{s:?}"
    );
}

#[test]
fn a_backup_whose_every_resync_loses_messages_is_ready_after_the_last_attempt() {
    let (b, _b_rx, mut m, wait) = backup_asking_a_fake_master();
    for attempt in 1..=RESYNC_ATTEMPTS {
        m.record_after_a_gap(attempt.into());
        let lost = u64::from(attempt);
        wait_status(&b, |s| s.lost_msgs == lost);
        m.done(wait, 1);
        if attempt < RESYNC_ATTEMPTS {
            assert_eq!(m.request(), wait, "attempt {attempt}");
            assert!(!b.status().ready);
        }
    }
    let s = wait_status(&b, |s| s.ready);
    assert_eq!(
        (s.resync.as_str(), s.resync_incomplete),
        ("resynced with losses", u64::from(RESYNC_ATTEMPTS - 1)),
        "{s:?}"
    );
}

#[test]
fn a_master_tells_its_workers_to_log_until_every_one_has_taken_it() {
    let port = free_port();
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut refused = 2;
    let deliver = move |m: ToWorkers| {
        if matches!(m, ToWorkers::Primary(Some(_))) && refused > 0 {
            refused -= 1;
            return false; // a worker's inbox was full
        }
        tx.send(m).is_ok()
    };
    let s = settings([127, 0, 0, 1], [127, 0, 0, 2], port, "master");
    let _m = Handle::start(s, layout(), Box::new(deliver)).unwrap();
    assert!(
        wait_for(&rx, |x| matches!(x, ToWorkers::Primary(Some(_)))
            .then_some(()))
        .is_some(),
        "the third try reaches the workers"
    );
}

#[test]
fn a_message_takes_a_run_of_one_family_as_long_as_its_layout_fits() {
    let v6 = |cport: u16| ConnRecord {
        client: ("2001:db8:10::2".parse().unwrap(), cport),
        vip: ("2001:db8:10::100".parse().unwrap(), 80),
        real: ("2001:db8:20::11".parse().unwrap(), 80),
        local: ("2001:db8:20::201".parse().unwrap(), 2000 + cport),
        ..rec(cport)
    };
    let mut pending: Vec<ConnRecord> = (0..3).map(rec).collect();
    pending.extend((0..20).map(v6));
    pending.push(rec(9));
    let mut ends = Vec::new();
    let mut at = 0;
    while at < pending.len() {
        let end = message_end(&pending, at);
        // Each run is one message, its records counted once.
        let msgs = Sealer::new(b"0123456789abcdef", 1, 1).records(&pending[at..end]);
        assert_eq!(msgs.len(), 1, "{at}..{end}");
        ends.push(end);
        at = end;
    }
    assert_eq!(ends, [3, 3 + wire::MAX_RECORDS6, 23, 24]);
    assert_eq!(message_end(&pending, 24), 24);
}

use super::*;
use proptest::prelude::*;

const KEY: &[u8] = b"the pair's shared secret";

/// Any IPv4 record: a connection, a template, or a translation (whose real server, state and
/// time are not sent: `ConnRecord::translation` leaves them empty).
fn record() -> impl Strategy<Value = ConnRecord> {
    (
        0u8..3,
        prop_oneof![Just(6u8), Just(17u8)],
        0u8..4,
        any::<u8>(),
        any::<[u32; 4]>(),
        any::<[u16; 4]>(),
        any::<u32>(),
        (any::<(u32, u32)>(), [0u8..=14, 0u8..=14, 0u8..=14]),
    )
        .prop_map(|(kind, proto, mode, state, a, p, remaining_ms, shift)| {
            let r = ConnRecord {
                kind: [RecordKind::Conn, RecordKind::Template][usize::from(kind & 1)],
                proto,
                mode,
                state,
                client: (std::net::Ipv4Addr::from(a[0]).into(), p[0]),
                vip: (std::net::Ipv4Addr::from(a[1]).into(), p[1]),
                real: (std::net::Ipv4Addr::from(a[2]).into(), p[2]),
                local: (std::net::Ipv4Addr::from(a[3]).into(), p[3]),
                remaining_ms,
            };
            let ((seq, ts), [server_ws, our_ws, client_shift]) = shift;
            let adj = SeqAdj {
                seq,
                ts,
                server_ws,
                our_ws,
                client_shift,
            };
            match kind {
                2 => ConnRecord::translation(&r, adj),
                _ => r,
            }
        })
}

proptest! {
    /// Every record kind and field comes back as sent, over as many messages as it takes.
    #[test]
    fn records_round_trip(recs in proptest::collection::vec(record(), 0..100)) {
        let mut s = Sealer::new(KEY, 7, 1000);
        let mut o = Opener::new(KEY);
        let mut got = Vec::new();
        for m in s.records(&recs) {
            prop_assert!(m.len() <= 1500 - 28);
            match o.open(&m) {
                Ok(Message::Records { sender: 7, records }) => got.extend(records),
                other => prop_assert!(false, "{other:?}"),
            }
        }
        prop_assert_eq!(got, recs);
    }

    /// Any altered byte, and any other key, is refused before anything is read.
    #[test]
    fn altered_or_forged_messages_are_refused(rec in record(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let m = Sealer::new(KEY, 1, 5).records(&[rec]).remove(0);
        let mut bad = m.clone();
        let i = at.index(bad.len());
        bad[i] ^= flip;
        let mut o = Opener::new(KEY);
        prop_assert_eq!(o.open(&bad), Err(Refused::BadMac));
        let forged = Sealer::new(b"a host without the key", 1, 5).records(&[rec]).remove(0);
        prop_assert_eq!(o.open(&forged), Err(Refused::BadMac));
        prop_assert_eq!(o.stats.bad_mac, 2);
        // The genuine one still passes: refusals did not move the sender's sequence.
        prop_assert!(o.open(&m).is_ok());
    }

    /// A message cut anywhere is refused.
    #[test]
    fn truncated_messages_are_refused(rec in record(), cut in any::<prop::sample::Index>()) {
        let m = Sealer::new(KEY, 1, 5).records(&[rec, rec]).remove(0);
        let n = cut.index(m.len());
        let r = Opener::new(KEY).open(&m[..n]);
        prop_assert!(matches!(r, Err(Refused::Truncated | Refused::BadMac)), "{r:?}");
    }
}

#[test]
fn replayed_and_older_messages_are_refused() {
    let rec = ConnRecord {
        kind: RecordKind::Conn,
        proto: 6,
        mode: 0,
        state: 1,
        client: ("10.10.0.2".parse().unwrap(), 40000),
        vip: ("10.10.0.100".parse().unwrap(), 80),
        real: ("10.20.0.11".parse().unwrap(), 80),
        local: ("10.20.0.200".parse().unwrap(), 1024),
        remaining_ms: 900_000,
    };
    let mut s = Sealer::new(KEY, 3, 100);
    let first = s.records(&[rec]).remove(0);
    let second = s.records(&[rec]).remove(0);
    let mut o = Opener::new(KEY);
    assert!(o.open(&second).is_ok());
    assert_eq!(
        o.open(&second),
        Err(Refused::Replay),
        "the same message again"
    );
    assert_eq!(o.open(&first), Err(Refused::Replay), "an older one");
    // Another sender has its own sequence.
    let other = Sealer::new(KEY, 4, 1).records(&[rec]).remove(0);
    assert!(o.open(&other).is_ok());
    assert_eq!(
        (o.stats.accepted, o.stats.replay, o.stats.records),
        (2, 2, 2)
    );
    assert_eq!(o.stats.lost, 0);
}

#[test]
fn gaps_in_a_senders_sequence_are_counted_as_lost_but_a_restart_is_not() {
    let mut s = Sealer::new(KEY, 3, 100);
    let mut o = Opener::new(KEY);
    let l = Layout {
        workers: 1,
        ports: (1024, 65535),
        steering: 0,
        rss_key_hash: 0,
    };
    o.open(&s.hello(&l)).unwrap();
    s.hello(&l); // lost
    s.hello(&l); // lost
    o.open(&s.hello(&l)).unwrap();
    assert_eq!(o.stats.lost, 2);
    // The sender restarts: its sequence starts above the time in ms.
    let mut restarted = Sealer::new(KEY, 3, 1_700_000_000_000);
    o.open(&restarted.hello(&l)).unwrap();
    assert_eq!(o.stats.lost, 2);
}

#[test]
fn hello_and_resync_request_round_trip_and_layouts_are_compared() {
    let ours = Layout {
        workers: 2,
        ports: (1024, 65535),
        steering: 1,
        rss_key_hash: 0x1234_5678_9abc_def0,
    };
    let mut s = Sealer::new(KEY, 9, 1);
    let mut o = Opener::new(KEY);
    let Ok(Message::Hello { sender: 9, layout }) = o.open(&s.hello(&ours)) else {
        panic!("hello refused")
    };
    assert_eq!(layout, ours);
    assert_eq!(check_layout(&ours, &layout), Ok(()));
    for theirs in [
        Layout { workers: 1, ..ours },
        Layout {
            ports: (1024, 60000),
            ..ours
        },
        Layout {
            rss_key_hash: 1,
            ..ours
        },
        Layout {
            steering: 0,
            ..ours
        },
    ] {
        assert_eq!(check_layout(&ours, &theirs), Err(Refused::LayoutMismatch));
    }
    assert_eq!(
        o.open(&s.resync_request(0x0102_0304)),
        Ok(Message::ResyncRequest {
            sender: 9,
            wait: 0x0102_0304
        })
    );
    // A request without a wait number (a sender from before them) is wait 0.
    assert_eq!(
        o.open(&s.seal(MsgKind::ResyncRequest, 0, &[])),
        Ok(Message::ResyncRequest { sender: 9, wait: 0 })
    );
    assert_eq!(
        o.open(&s.resync_done(7, 70_000)),
        Ok(Message::ResyncDone {
            sender: 9,
            wait: 7,
            records: 70_000
        })
    );
}

#[test]
fn bodies_that_disagree_with_their_header_are_refused() {
    // A well-authenticated message whose count says 2 but carries 1 record: a sender's bug, not
    // an attacker's (who cannot produce a valid MAC), still refused.
    let mut s = Sealer::new(KEY, 1, 1);
    let m = s.seal(MsgKind::Records, 2, &[1u8; RECORD_LEN]);
    assert_eq!(Opener::new(KEY).open(&m), Err(Refused::BadLength));
    let m = s.seal(MsgKind::Records, 1, &[9u8; RECORD_LEN]);
    assert_eq!(Opener::new(KEY).open(&m), Err(Refused::BadRecord));
    // A resync done carries its wait number and total, a request its wait number, nothing else.
    for (kind, count, body) in [
        (MsgKind::ResyncDone, 0, &[0u8; 4][..]),
        (MsgKind::ResyncDone, 0, &[0u8; 9][..]),
        (MsgKind::ResyncDone, 1, &[0u8; 8][..]),
        (MsgKind::ResyncRequest, 0, &[0u8; 3][..]),
        (MsgKind::ResyncRequest, 1, &[0u8; 4][..]),
    ] {
        let m = s.seal(kind, count, body);
        assert_eq!(
            Opener::new(KEY).open(&m),
            Err(Refused::BadLength),
            "{kind:?}"
        );
    }
    let mut bad_version = s.seal(MsgKind::Records, 0, &[]);
    bad_version[field::VERSION] = 2;
    let n = bad_version.len() - MAC_LEN;
    let tag = mac(KEY, &bad_version[..n]);
    bad_version[n..].copy_from_slice(&tag);
    assert_eq!(
        Opener::new(KEY).open(&bad_version),
        Err(Refused::BadVersion)
    );
}

#[test]
fn ipv6_records_travel_in_their_own_messages_and_come_back_whole() {
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let v4 = ConnRecord {
        kind: RecordKind::Conn,
        proto: 6,
        mode: 0,
        state: 1,
        client: (ip("10.10.0.2"), 40000),
        vip: (ip("10.10.0.100"), 80),
        real: (ip("10.20.0.11"), 80),
        local: (ip("10.20.0.200"), 1024),
        remaining_ms: 900_000,
    };
    let v6 = ConnRecord {
        client: (ip("2001:db8:10::2"), 40000),
        vip: (ip("2001:db8:10::100"), 80),
        real: (ip("2001:db8:20::11"), 80),
        local: (ip("2001:db8:20::200"), 1024),
        ..v4
    };
    // NAT64: an IPv4 server and local address under an IPv6 client and VIP.
    let nat64 = ConnRecord {
        mode: crate::forward::mode::NAT64,
        real: (ip("10.20.0.11"), 80),
        local: (ip("10.20.0.203"), 2048),
        ..v6
    };
    let dr6 = ConnRecord {
        mode: crate::forward::mode::DR,
        local: (ip("::"), 0),
        ..v6
    };
    let template6 = ConnRecord {
        kind: RecordKind::Template,
        client: (ip("2001:db8:10::"), 0),
        ..dr6
    };
    // A proxied connection's shifts, every field set.
    let adj = SeqAdj {
        seq: 0xDEAD_BEEF,
        ts: 0x0102_0304,
        server_ws: 9,
        our_ws: 7,
        client_shift: 5,
    };
    let translation6 = ConnRecord::translation(&v6, adj);
    let mut sent = vec![v4, v6, nat64, dr6, template6, translation6];
    // More IPv6 records than one message holds.
    sent.extend((0..MAX_RECORDS6 as u16).map(|i| ConnRecord {
        client: (ip("2001:db8:10::3"), 1000 + i),
        ..v6
    }));
    let msgs = Sealer::new(KEY, 3, 100).records(&sent);
    let kinds: Vec<u8> = msgs.iter().map(|m| m[field::KIND]).collect();
    assert_eq!(kinds, [0, 4, 4], "one IPv4 message, then two IPv6 ones");
    assert!(msgs.iter().all(|m| m.len() <= 1500 - 28));
    let mut o = Opener::new(KEY);
    let got: Vec<ConnRecord> = msgs
        .iter()
        .flat_map(|m| match o.open(m) {
            Ok(Message::Records { records, .. }) => records,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got, sent,
        "the IPv4 record first, then the IPv6 ones in order"
    );
    // An IPv6 message whose body is IPv4 records' length is refused.
    let short = Sealer::new(KEY, 3, 200).seal(MsgKind::Records6, 1, &encode_record(&v4));
    assert_eq!(o.open(&short), Err(Refused::BadLength));
}

/// A translation record never travels without the connection record before it (the backup
/// applies it to that connection), even where the message would otherwise end between them;
/// and one with a window scale no peer could have (above RFC 7323's 14) is refused.
#[test]
fn a_translation_stays_with_its_connection_and_its_window_scales_are_bounded() {
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let conn = |cport: u16| ConnRecord {
        kind: RecordKind::Conn,
        proto: 6,
        mode: 0,
        state: 1,
        client: (ip("10.10.0.2"), cport),
        vip: (ip("10.10.0.100"), 80),
        real: (ip("10.20.0.11"), 80),
        local: (ip("10.20.0.200"), cport),
        remaining_ms: 900_000,
    };
    let adj = SeqAdj {
        seq: 7,
        our_ws: 7,
        ..Default::default()
    };
    let mut recs: Vec<ConnRecord> = (0..MAX_RECORDS as u16 - 1).map(conn).collect();
    let last = conn(9999);
    recs.push(last);
    recs.push(ConnRecord::translation(&last, adj));
    let msgs = Sealer::new(KEY, 3, 100).records(&recs);
    let mut o = Opener::new(KEY);
    let got: Vec<Vec<ConnRecord>> = msgs
        .iter()
        .map(|m| match o.open(m) {
            Ok(Message::Records { records, .. }) => records,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].len(), MAX_RECORDS - 1);
    assert_eq!(got[1], [last, ConnRecord::translation(&last, adj)]);
    // A scale of 15 in the record, the MAC right: refused as a bad record.
    let bad = ConnRecord::translation(
        &last,
        SeqAdj {
            server_ws: 15,
            ..adj
        },
    );
    let m = Sealer::new(KEY, 4, 100).records(&[bad]).remove(0);
    assert_eq!(Opener::new(KEY).open(&m), Err(Refused::BadRecord));
}

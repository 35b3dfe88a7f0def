use super::*;
use crate::wire::IpInfo;
use proptest::prelude::*;

fn key(id: u16) -> FragKey {
    FragKey {
        src: Ipv4Addr::new(10, 10, 0, 2),
        dst: Ipv4Addr::new(10, 10, 0, 100),
        id,
        proto: 17,
    }
}

/// Piece `i` of a datagram cut in `n` pieces of 8 bytes.
fn piece(i: usize, n: usize) -> Piece {
    Piece {
        offset: (i * 8) as u16,
        len: 8,
        more: i + 1 < n,
    }
}

const SENT: Decision = Decision::Worker(1);

/// What the table did with each fragment: `(datagram, piece)` pairs in the order they came out
/// with the decision, and the refused ones.
#[derive(Default)]
struct Outcome {
    out: Vec<(u16, usize)>,
    refused: Vec<(Drop, (u16, usize))>,
}

/// Feeds `arrivals` (datagram id, piece index) to a table, every datagram cut in `n` pieces; the
/// first pieces decide `SENT`.
fn feed(t: &mut FragTable<(u16, usize)>, arrivals: &[(u16, usize)], n: usize) -> Outcome {
    let mut o = Outcome::default();
    for &(id, i) in arrivals {
        if i == 0 {
            match t.first(key(id), piece(0, n), SENT, 0) {
                Ok(held) => {
                    o.out.push((id, 0));
                    o.out.extend(held);
                }
                Err(why) => o.refused.push((why, (id, 0))),
            }
            continue;
        }
        match t.follow(key(id), piece(i, n), (id, i), 0) {
            Follow::Decided(d, p) => {
                assert_eq!(d, SENT);
                o.out.push(p);
            }
            Follow::Held => {}
            Follow::Refused(why, p) => o.refused.push((why, p)),
        }
    }
    o
}

/// `count` datagrams of `n` pieces each, arriving in the order `perm` (indices into all pieces).
fn arrivals(count: u16, n: usize, perm: &[usize]) -> Vec<(u16, usize)> {
    let all: Vec<(u16, usize)> = (0..count)
        .flat_map(|d| (0..n).map(move |i| (d, i)))
        .collect();
    perm.iter().map(|&k| all[k]).collect()
}

proptest! {
    /// Any arrival order of any number of interleaved datagrams, within the bounds: every piece
    /// comes out once; none before its datagram's first; the ones that waited in the order they
    /// came; and every entry is gone once its datagram is complete.
    #[test]
    fn every_fragment_follows_its_first_whatever_the_order(
        (count, n, perm) in (1u16..6, 2usize..6).prop_flat_map(|(c, n)| {
            let total = c as usize * n;
            (Just(c), Just(n), Just((0..total).collect::<Vec<_>>()).prop_shuffle())
        })
    ) {
        let mut t = FragTable::new(FragConfig::default());
        let arr = arrivals(count, n, &perm);
        let o = feed(&mut t, &arr, n);
        prop_assert!(o.refused.is_empty());
        let mut sorted = o.out.clone();
        sorted.sort_unstable();
        let mut all = arr.clone();
        all.sort_unstable();
        prop_assert_eq!(sorted, all, "every piece once");
        for d in 0..count {
            let mine: Vec<usize> = o.out.iter().filter(|p| p.0 == d).map(|p| p.1).collect();
            prop_assert_eq!(mine[0], 0, "the first fragment leads");
            let first_at = arr.iter().position(|&p| p == (d, 0)).unwrap();
            let waited: Vec<usize> =
                arr[..first_at].iter().filter(|p| p.0 == d).map(|p| p.1).collect();
            prop_assert_eq!(&mine[1..=waited.len()], &waited[..], "held ones in arrival order");
        }
        prop_assert_eq!((t.len(), t.held()), (0, 0));
        prop_assert_eq!(t.stats.completed, u64::from(count));
        prop_assert_eq!(t.stats.first, u64::from(count));
        prop_assert_eq!(t.stats.timed_out, 0);
    }
}

#[test]
fn fragments_beyond_max_held_are_refused_and_the_rest_still_follow() {
    let mut t = FragTable::new(FragConfig {
        max_held: 2,
        ..Default::default()
    });
    // Three later fragments before the first: the third does not fit.
    let o = feed(&mut t, &[(0, 1), (0, 2), (0, 3), (0, 0), (0, 4)], 5);
    assert_eq!(o.refused, vec![(Drop::FragHeldFull, (0, 3))]);
    assert_eq!(o.out, vec![(0, 0), (0, 1), (0, 2), (0, 4)]);
    assert_eq!(t.held(), 0);
    // Piece 3 never came through: the entry waits for it, then times out.
    assert_eq!(t.len(), 1);
    assert_eq!(t.expire(999), 0);
    assert_eq!(t.len(), 1);
    assert_eq!(t.expire(1000), 0, "nothing was held");
    assert_eq!((t.len(), t.stats.timed_out, t.stats.completed), (0, 1, 0));
}

#[test]
fn a_full_table_refuses_new_datagrams_until_one_completes_or_expires() {
    let mut t = FragTable::new(FragConfig {
        max_datagrams: 2,
        ..Default::default()
    });
    let o = feed(&mut t, &[(0, 1), (1, 1), (2, 1), (2, 0)], 2);
    assert_eq!(
        o.refused,
        vec![(Drop::FragTableFull, (2, 1)), (Drop::FragTableFull, (2, 0))]
    );
    assert_eq!((t.len(), t.held()), (2, 2));
    // Datagram 0 completes: its entry goes, and datagram 2 fits.
    let o = feed(&mut t, &[(0, 0), (2, 0), (2, 1)], 2);
    assert_eq!(o.out, vec![(0, 0), (0, 1), (2, 0), (2, 1)]);
    assert!(o.refused.is_empty());
    assert_eq!((t.len(), t.held()), (1, 1));
}

#[test]
fn held_fragments_whose_first_never_comes_are_dropped_at_the_timeout() {
    let mut t: FragTable<u32> = FragTable::new(FragConfig {
        timeout_ms: 500,
        ..Default::default()
    });
    assert!(matches!(
        t.follow(key(7), piece(1, 3), 1, 100),
        Follow::Held
    ));
    assert!(matches!(
        t.follow(key(7), piece(2, 3), 2, 300),
        Follow::Held
    ));
    assert!(matches!(
        t.follow(key(8), piece(1, 2), 3, 400),
        Follow::Held
    ));
    assert_eq!(
        t.expire(599),
        0,
        "the entry lives 500 ms from its first fragment"
    );
    assert_eq!(t.expire(600), 2);
    assert_eq!((t.len(), t.held(), t.stats.timed_out), (1, 1, 1));
    // A first fragment that comes too late starts afresh: nothing held is handed back.
    assert_eq!(
        t.first(key(7), piece(0, 3), SENT, 650).unwrap(),
        Vec::<u32>::new()
    );
    assert_eq!(t.expire(900), 1);
    assert_eq!(t.len(), 1);
}

#[test]
fn stale_expiry_pairs_stay_bounded_when_datagrams_complete_early() {
    let mut t = FragTable::new(FragConfig {
        max_datagrams: 4,
        ..Default::default()
    });
    for id in 0..1000u16 {
        feed(&mut t, &[(id, 0), (id, 1)], 2);
        assert!(t.order.len() <= 8);
    }
    assert_eq!((t.len(), t.stats.completed), (0, 1000));
}

#[test]
fn homes_spread_over_the_workers_and_agree() {
    for n in 1..=4 {
        let mut per = vec![0u32; n];
        for id in 0..4000u16 {
            let h = home_of(&key(id), n);
            assert_eq!(h, home_of(&key(id), n));
            per[h] += 1;
        }
        for c in per {
            assert!(c > 4000 / n as u32 * 3 / 4, "{n} workers: {c}");
        }
    }
}

#[test]
fn trimming_completed_pairs_never_evicts_a_live_datagram() {
    let mut t = FragTable::new(FragConfig {
        max_datagrams: 4,
        ..Default::default()
    });
    // Datagram 100 waits for its first fragment while many others come and go.
    assert!(feed(&mut t, &[(100, 1)], 2).out.is_empty());
    for id in 0..50u16 {
        feed(&mut t, &[(id, 0), (id, 1)], 2);
    }
    let o = feed(&mut t, &[(100, 0)], 2);
    assert_eq!(
        o.out,
        vec![(100, 0), (100, 1)],
        "the held piece is still there"
    );
    assert_eq!((t.len(), t.held(), t.stats.timed_out), (0, 0, 0));
}

#[test]
fn a_duplicate_piece_does_not_complete_the_datagram_early() {
    let mut t = FragTable::new(FragConfig::default());
    // Pieces 0 and 2 of 3, then 2 again: two pieces' bytes, not three.
    let o = feed(&mut t, &[(1, 0), (1, 2), (1, 2), (1, 1)], 3);
    assert_eq!(o.out, vec![(1, 0), (1, 2), (1, 2), (1, 1)]);
    assert!(o.refused.is_empty());
    assert_eq!(
        (t.len(), t.stats.completed),
        (0, 1),
        "complete with piece 1, not before"
    );
    // A duplicate first fragment starts the count afresh: the entry then lives to its timeout,
    // and nothing that comes meanwhile is lost.
    let o = feed(&mut t, &[(2, 0), (2, 2), (2, 0), (2, 1)], 3);
    assert_eq!(o.out.len(), 4);
    assert_eq!(t.len(), 1);
    assert_eq!(t.expire(1000), 0);
    assert_eq!(t.len(), 0);
}

#[test]
fn a_new_first_fragment_on_a_known_key_counts_afresh() {
    let mut t: FragTable<u32> = FragTable::new(FragConfig::default());
    // An old datagram of 3 pieces loses its last one; a new one reuses the key.
    assert!(t.first(key(5), piece(0, 3), Decision::Worker(1), 0).is_ok());
    assert!(matches!(
        t.follow(key(5), piece(1, 3), 1, 0),
        Follow::Decided(..)
    ));
    assert!(t
        .first(key(5), piece(0, 3), Decision::Worker(2), 10)
        .is_ok());
    assert!(matches!(
        t.follow(key(5), piece(1, 3), 2, 10),
        Follow::Decided(Decision::Worker(2), _)
    ));
    assert_eq!(t.len(), 1, "two of the new datagram's three pieces seen");
    assert!(matches!(
        t.follow(key(5), piece(2, 3), 3, 10),
        Follow::Decided(..)
    ));
    assert_eq!((t.len(), t.stats.completed), (0, 1));
}

#[test]
fn at_the_held_limit_a_new_datagram_takes_no_entry() {
    let mut t: FragTable<u32> = FragTable::new(FragConfig {
        max_held: 1,
        ..Default::default()
    });
    assert!(matches!(t.follow(key(1), piece(1, 2), 1, 0), Follow::Held));
    assert!(matches!(
        t.follow(key(2), piece(1, 2), 2, 0),
        Follow::Refused(Drop::FragHeldFull, 2)
    ));
    assert_eq!(t.len(), 1);
}

/// Ethernet + IPv4 (+ 8 bytes of payload) with identification `id`, flags and offset `ff`.
fn head(id: u16, ff: u16, total: u16, proto: u8) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 28];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[4..6].copy_from_slice(&id.to_be_bytes());
    ip[6..8].copy_from_slice(&ff.to_be_bytes());
    ip[8] = 64;
    ip[9] = proto;
    Ipv4Packet::new_unchecked(&mut f[14..34]).fill_checksum();
    f
}

fn inbound(total: u16) -> IpInfo {
    let f = head(7, 0x2000, total, 17);
    crate::wire::parse_l3l4(&f).unwrap().ip.unwrap()
}

#[test]
fn only_the_same_first_fragment_rewritten_is_learned() {
    let k = FragKey { id: 7, ..key(7) };
    let link = Link::Sent {
        port: 1,
        macs: [0; 12],
    };
    let inb = inbound(28);
    assert!(Rewrite::learn(link, &k, &inb, &head(7, 0x2000, 28, 17)).is_some());
    // Another packet of the same length written over it (a SYN proxy's answer: its own
    // identification, no MF), or the first fragment grown: not followed.
    assert!(Rewrite::learn(link, &k, &inb, &head(0, 0x4000, 28, 17)).is_none());
    assert!(Rewrite::learn(link, &k, &inb, &head(7, 0x0000, 28, 17)).is_none());
    assert!(Rewrite::learn(link, &k, &inb, &head(7, 0x2000, 36, 17)).is_none());
    assert!(Rewrite::learn(link, &k, &inb, &head(7, 0x2000, 28, 6)).is_none());
}

#[test]
fn an_encapsulated_fragment_over_the_mtu_is_refused() {
    let mut outer = [0u8; 20];
    outer[0] = 0x45;
    outer[9] = 4;
    let rw = Rewrite {
        link: Link::Sent {
            port: 1,
            macs: [0; 12],
        },
        src: Ipv4Addr::new(10, 10, 0, 2),
        dst: Ipv4Addr::new(10, 10, 0, 100),
        outer: Some(outer),
    };
    let later = head(7, 0x0001, 28, 17);
    let mut p = crate::packet::VecBuf::from_frame(&later);
    assert_eq!(rw.apply(&mut p, 47), Err(Drop::NoRoom), "28 + 20 > 47");
    let mut p = crate::packet::VecBuf::from_frame(&later);
    assert_eq!(rw.apply(&mut p, 48), Ok(()));
    assert_eq!(crate::packet::PacketBuf::len(&p), 14 + 48);
}

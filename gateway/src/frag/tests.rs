use super::*;
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

use super::*;
use crate::conn::PROTO_TCP;
use etherparse::{PacketBuilder, SlicedPacket, TcpOptionElement as Opt, TransportSlice};
use proptest::prelude::*;

fn key() -> CookieKey {
    CookieKey::from_words([0x1111, 0x2222, 0x3333, 0x4444])
}

fn flow(sport: u16) -> Tuple {
    Tuple::new(
        Ipv4Addr::new(192, 0, 2, 7),
        sport,
        Ipv4Addr::new(10, 10, 0, 100),
        80,
        PROTO_TCP,
    )
}

#[test]
fn a_cookie_is_good_in_its_slice_and_the_next_only() {
    let k = key();
    let t = flow(40000);
    for now in [0u64, 63, 64, 1_000_000] {
        for idx in 0..MSS_TABLE.len() as u8 {
            let c = k.make(&t, 12345, now, idx);
            assert_eq!(k.check(&t, 12345, c, now), Some(idx));
            let next = (now / SLICE_S + 1) * SLICE_S;
            assert_eq!(k.check(&t, 12345, c, next), Some(idx), "next slice");
            assert_eq!(k.check(&t, 12345, c, next + SLICE_S), None, "two slices on");
            // Another client, or another key: not ours. (Another ISN is only another guess: the
            // ISN is added in, as in Linux, so ISN+1 may read as the next MSS index.)
            assert_eq!(k.check(&flow(40001), 12345, c, now), None);
            let other = CookieKey::from_words([1, 2, 3, 4]);
            assert_eq!(other.check(&t, 12345, c, now), None);
        }
    }
}

#[test]
fn forged_cookies_are_refused() {
    // A forger who does not see our SYN-ACKs guesses: 4 MSS values x 2 slices out of 2^32.
    let k = key();
    let t = flow(40000);
    let mut x: u32 = 0x9e37_79b9;
    let mut passed = 0;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        passed += usize::from(k.check(&t, 777, x, 5000).is_some());
    }
    assert!(passed <= 1, "{passed} of 200000 random cookies passed");
}

#[test]
fn the_mss_index_is_the_largest_entry_not_above_the_clients() {
    let idx = |mss| {
        SynOptions {
            mss,
            ..Default::default()
        }
        .mss_index()
    };
    assert_eq!(idx(None), 0);
    assert_eq!(idx(Some(100)), 0);
    assert_eq!(idx(Some(1299)), 0);
    assert_eq!(idx(Some(1300)), 1);
    assert_eq!(idx(Some(1460)), 3);
    assert_eq!(idx(Some(9000)), 3);
}

proptest! {
    /// Every option combination a client can offer comes back from the cookie ACK (timestamps
    /// carry the window scale and SACK; without them both are lost, as in Linux).
    #[test]
    fn options_survive_the_cookie(
        wscale in proptest::option::of(0u8..=20),
        sack: bool,
        tsval in proptest::option::of(any::<u32>()),
        mss in proptest::option::of(500u16..2000),
        isn: u32,
        now_ms in 0u64..1 << 40,
        later_ms in 0u64..64_000,
    ) {
        let k = key();
        let t = flow(40000);
        let opts = SynOptions { mss, wscale: wscale.map(|w| w.min(MAX_WSCALE)), sack, tsval };
        let cookie = k.make(&t, isn, now_ms / 1000, opts.mss_index());
        let ours = opts.tsval.map(|_| encode_ts(now_ms, opts.wscale, opts.sack));
        if let Some(o) = ours {
            prop_assert!(o <= now_ms as u32 || now_ms as u32 >> TS_BITS == 0);
        }
        let ack_ts = ours.map(|o| (tsval.unwrap().wrapping_add(1), o));
        let got = validate(&k, &t, isn.wrapping_add(1), cookie.wrapping_add(1), ack_ts, (now_ms + later_ms) / 1000)
            .expect("our own cookie");
        prop_assert_eq!(got.isn, isn);
        prop_assert_eq!(got.mss, MSS_TABLE[usize::from(opts.mss_index())]);
        prop_assert!(got.mss <= mss.unwrap_or(536).max(536));
        if ours.is_some() {
            prop_assert_eq!(got.wscale, opts.wscale);
            prop_assert_eq!(got.sack, sack);
            prop_assert_eq!(got.ts, Some((ours.unwrap(), tsval.unwrap().wrapping_add(1))));
        } else {
            prop_assert_eq!((got.wscale, got.sack, got.ts), (None, false, None));
        }
    }
}

#[test]
fn the_timestamp_echo_carries_the_scale_or_its_absence() {
    let k = key();
    let t = flow(1);
    let cookie = k.make(&t, 5, 10, 3);
    let check = |low: u32| {
        validate(
            &k,
            &t,
            6,
            cookie.wrapping_add(1),
            Some((9, (1000 << TS_BITS) | low)),
            10,
        )
        .unwrap()
    };
    assert_eq!(check(14).wscale, Some(14));
    assert_eq!(check(0).wscale, Some(0));
    assert_eq!(check(0xF).wscale, None, "0xF: the client did not scale");
    assert!(check(0xF | TS_SACK).sack);
}

/// An IPv4 packet (no Ethernet) with the given TCP options, for the translation tests.
fn segment_with(opts: &[Opt], seq: u32, ack: u32, window: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4([10, 20, 0, 11], [10, 20, 0, 200], 64)
        .tcp(80, 2000, seq, window)
        .ack(ack)
        .options(opts)
        .unwrap()
        .write(&mut v, payload)
        .unwrap();
    v
}

fn checksum_ok(ip_packet: &[u8]) -> bool {
    let p = SlicedPacket::from_ip(ip_packet).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        return false;
    };
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        return false;
    };
    let h = ip.header();
    t.calc_checksum_ipv4(h.source(), h.destination()).ok() == Some(t.checksum())
}

proptest! {
    /// Shifting a segment there and back restores every byte, and the patched checksum is the
    /// one etherparse computes from scratch at each step.
    #[test]
    fn translation_out_and_back_restores_the_bytes(
        seq: u32, ack: u32, d_seq: u32, d_ts: u32, tsval: u32, tsecr: u32,
        edges in proptest::collection::vec(any::<u32>(), 2..=6),
        lone_nop: bool,
        payload in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut opts = Vec::new();
        if lone_nop {
            // Options at odd offsets: a checksum patch must still be right.
            opts.push(Opt::Noop);
        }
        opts.push(Opt::Timestamp(tsval, tsecr));
        let blocks: Vec<(u32, u32)> = edges.chunks(2).filter(|c| c.len() == 2).map(|c| (c[0], c[1])).collect();
        let mut rest = [None; 3];
        for (i, b) in blocks.iter().skip(1).enumerate() {
            rest[i] = Some(*b);
        }
        opts.push(Opt::SelectiveAcknowledgement(blocks[0], rest));
        let orig = segment_with(&opts, seq, ack, 1000, &payload);
        prop_assert!(checksum_ok(&orig));
        let adj = SeqAdj { seq: d_seq, ts: d_ts, ..Default::default() };
        let back = SeqAdj { seq: d_seq.wrapping_neg(), ts: d_ts.wrapping_neg(), ..Default::default() };
        let mut v = orig.clone();
        to_server(&mut v[20..], &adj);
        prop_assert!(checksum_ok(&v));
        let t = TcpPacket::new_unchecked(&v[20..]);
        prop_assert_eq!(t.ack_number(), ack.wrapping_sub(d_seq));
        prop_assert_eq!(t.seq(), seq);
        prop_assert_eq!(timestamps(&v[20..]), Some((tsval, tsecr.wrapping_sub(d_ts))));
        let sack: Vec<u32> = t.option_iter().find_map(|o| match o {
            Ok(TcpOption::Sack(b)) => Some(b.chunks(4).map(be32).collect()),
            _ => None,
        }).unwrap();
        let want: Vec<u32> = blocks.iter().flat_map(|&(a, b)| [a, b]).map(|e| e.wrapping_sub(d_seq)).collect();
        prop_assert_eq!(sack, want);
        to_server(&mut v[20..], &back);
        prop_assert_eq!(&v, &orig);

        to_client(&mut v[20..], &adj);
        prop_assert!(checksum_ok(&v));
        let t = TcpPacket::new_unchecked(&v[20..]);
        prop_assert_eq!(t.seq(), seq.wrapping_add(d_seq));
        prop_assert_eq!(t.ack_number(), ack);
        prop_assert_eq!(timestamps(&v[20..]), Some((tsval.wrapping_add(d_ts), tsecr)));
        to_client(&mut v[20..], &back);
        prop_assert_eq!(&v, &orig);
    }

    /// A server scaling its window by another shift than we announced has it rescaled (capped).
    #[test]
    fn windows_are_rescaled_between_shifts(win: u16, server_ws in 0u8..=14, our_ws in 0u8..=14) {
        let mut v = segment_with(&[], 1, 2, win, b"x");
        let adj = SeqAdj { server_ws, our_ws, ..Default::default() };
        to_client(&mut v[20..], &adj);
        prop_assert!(checksum_ok(&v));
        let want = ((u64::from(win) << server_ws) >> our_ws).min(65535) as u16;
        prop_assert_eq!(TcpPacket::new_unchecked(&v[20..]).window(), want);
    }
}

#[test]
fn a_written_segment_parses_with_valid_checksums_and_linux_layout() {
    let s = Segment {
        src: (Ipv4Addr::new(10, 10, 0, 100), 80),
        dst: (Ipv4Addr::new(10, 10, 0, 2), 40000),
        seq: 0xdead_beef,
        ack: 1001,
        flags: TcpFlags::SYN | TcpFlags::ACK,
        window: 65535,
        mss: Some(1460),
        wscale: Some(7),
        sack_permitted: true,
        ts: Some((111, 222)),
    };
    let mut buf = [0u8; 100];
    let n = s.write(&mut buf, 0).unwrap();
    assert_eq!(n, 20 + 40);
    assert!(checksum_ok(&buf[..n]));
    let p = SlicedPacket::from_ip(&buf[..n]).unwrap();
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        panic!()
    };
    assert!(t.syn() && t.ack() && !t.fin());
    assert_eq!(
        (t.sequence_number(), t.acknowledgment_number()),
        (0xdead_beef, 1001)
    );
    let opts: Vec<_> = t.options_iterator().map(Result::unwrap).collect();
    assert_eq!(
        opts,
        [
            Opt::MaximumSegmentSize(1460),
            Opt::SelectiveAcknowledgementPermitted,
            Opt::Timestamp(111, 222),
            Opt::Noop,
            Opt::WindowScale(7),
        ]
    );
    // Without timestamps and SACK: MSS alone (4 bytes of options); a short buffer is refused.
    let bare = Segment {
        wscale: None,
        sack_permitted: false,
        ts: None,
        ..s
    };
    assert_eq!(bare.write(&mut buf, 0), Some(44));
    assert!(checksum_ok(&buf[..44]));
    assert_eq!(bare.write(&mut buf[..43], 0), None);
}

#[test]
fn parked_packets_come_back_in_order_per_connection_and_expire() {
    let mut p: Parked<u32> = Parked::default();
    let (a, b) = (ClientTuple::from(flow(1)), ClientTuple::from(flow(2)));
    // The IPv6 table gives the same ids: an IPv6 connection's tuple is another.
    let a6 = ClientTuple::from(crate::conn::Tuple6::new(
        "2001:db8::1".parse().unwrap(),
        1,
        "2001:db8::2".parse().unwrap(),
        80,
        6,
    ));
    for i in 0..3 {
        p.park(7, a, 100, i).unwrap();
        p.park(8, b, 200, 10 + i).unwrap();
    }
    assert_eq!(p.take(7, &b), None, "another connection's tuple");
    assert_eq!(p.take(7, &a6), None, "the IPv6 connection of the same id");
    assert_eq!((p.take(7, &a), p.take(7, &a)), (Some(0), Some(1)));
    for i in 0..PARKED_PER_CONN - 3 {
        p.park(8, b, 200, 100 + i as u32).unwrap();
    }
    assert_eq!(p.park(8, b, 200, 999), Err(999), "per-connection bound");
    assert_eq!(p.expire(150), 1);
    assert_eq!(p.take(7, &a), None);
    assert_eq!(p.take(8, &b), Some(10));
}

#[test]
fn the_stash_holds_whole_segments_and_frees_stale_slots() {
    let mut sp = SynProxy::new(key(), SynProxyConfig::default());
    sp.reserve(16);
    let t = ClientTuple::from(flow(1));
    let mut out = [0u8; 8];
    assert!(sp.stash(3, t, 0, b"hello"));
    assert_eq!(
        sp.unstash(3, &flow(2).into(), &mut out),
        0,
        "another client"
    );
    assert_eq!(sp.unstash(3, &t, &mut out), 5);
    assert_eq!(&out[..5], b"hello");
    assert_eq!(sp.unstash(3, &t, &mut out), 0, "taken once");
    assert!(sp.stash(3, t, 0, b"0123456789"));
    assert_eq!(sp.unstash(3, &t, &mut out), 0, "never truncated");
    for i in 0..STASH_SLOTS as u32 {
        assert!(sp.stash(i, t, 0, b"x"));
    }
    assert!(!sp.stash(99, t, 0, b"x"), "full");
    assert!(sp.stash(99, t, HOLD_MS, b"x"), "a stale slot is reused");
}

/// A captured TCP segment's flags in tcpdump letters ("SAFRP" order), its options but TOA
/// (kind 254, which etherparse does not know), and whether TOA was there.
pub(crate) fn flags_and_options(t: &etherparse::TcpSlice) -> (String, Vec<Opt>, bool) {
    let mut flags = String::new();
    for (on, c) in [
        (t.syn(), 'S'),
        (t.ack(), 'A'),
        (t.fin(), 'F'),
        (t.rst(), 'R'),
        (t.psh(), 'P'),
    ] {
        if on {
            flags.push(c);
        }
    }
    let (mut rest, mut toa, raw) = (Vec::new(), false, t.options());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            0 => break,
            1 => {
                rest.push(1);
                i += 1;
            }
            kind => {
                let len = usize::from(raw[i + 1]);
                if kind == 254 {
                    toa = true;
                } else {
                    rest.extend_from_slice(&raw[i..i + len]);
                }
                i += len;
            }
        }
    }
    let opts = etherparse::TcpOptionsIterator::from_slice(&rest)
        .map(|o| o.expect("well-formed options"))
        .collect();
    (flags, opts, toa)
}

mod datapath;

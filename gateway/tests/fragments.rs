//! IPv4 fragments through the DPDK-free datapath on 1 to 4 workers (issue 17, item 4): whatever
//! worker each fragment of a datagram arrives on, and whatever their order, they all leave rewritten
//! as their first one was, and the datagram they make up is the translated one (its UDP checksum,
//! carried in the first fragment, verifies over the whole of it). Answers come back the same way.
//! Handoffs are carried out as the workers' rings would: in order, each frame at most twice (to its
//! datagram's home worker, then to its connection's owner).

#[path = "golden/frames.rs"]
#[allow(dead_code)]
mod frames;

use etherparse::{PacketBuilder, UdpHeader};
use gateway::datapath::Datapath;
use gateway::packet::Verdict;
use gateway::packet::{PacketBuf, RxMeta, VecBuf};
use gateway::stats::Drop;
use gateway::testkit::*;
use std::collections::VecDeque;
use std::net::Ipv4Addr;

/// Runs `frame` received on `port` by worker `at`; returns the frames sent, as (port, bytes), in
/// order. A frame handed to another worker runs there at once (as from its ring); deferred
/// verdicts (held fragments released) are carried out after each frame.
fn deliver(ws: &mut [Datapath<VecBuf>], at: usize, frame: &[u8], port: u16) -> Vec<(u16, Vec<u8>)> {
    let mut sent = Vec::new();
    let mut todo = VecDeque::from([(at, frame.to_vec(), false, 0)]);
    while let Some((w, f, from_peer, hops)) = todo.pop_front() {
        let meta = RxMeta {
            port,
            from_peer,
            ..Default::default()
        };
        let v = ws[w].process(VecBuf::from_frame(&f), &meta);
        let mut verdicts = vec![v];
        verdicts.extend(ws[w].take_deferred().into_iter().map(|d| d.verdict));
        for v in verdicts {
            match v {
                Verdict::Tx(p, b) => sent.push((p, b.data().to_vec())),
                Verdict::ToWorker(t, b) => {
                    assert_ne!(usize::from(t), w, "never handed to itself");
                    assert!(hops < 2, "handed on more than twice");
                    todo.push_back((usize::from(t), b.data().to_vec(), true, hops + 1));
                }
                Verdict::Held => {}
                other => panic!("worker {w}: {other:?}"),
            }
        }
    }
    sent
}

fn udp_frame(
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    macs: ([u8; 6], [u8; 6]),
    payload: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .udp(src.1, dst.1)
        .write(&mut v, payload)
        .unwrap();
    v
}

/// The datagram the fragments `sent` make up: (source, destination, identification, UDP header,
/// payload), after checking that they share their header fields.
fn reassemble(sent: &[(u16, Vec<u8>)]) -> (Ipv4Addr, Ipv4Addr, u16, UdpHeader, Vec<u8>) {
    let mut pieces: Vec<(usize, Vec<u8>, bool)> = sent
        .iter()
        .map(|(_, f)| {
            let ip = &f[14..];
            let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
            let field = u16::from_be_bytes([ip[6], ip[7]]);
            let off = usize::from(field & 0x1fff) * 8;
            (off, ip[20..total].to_vec(), field & 0x2000 != 0)
        })
        .collect();
    pieces.sort_by_key(|p| p.0);
    let mut data = Vec::new();
    for (off, bytes, _) in &pieces {
        assert_eq!(*off, data.len(), "pieces are contiguous");
        data.extend_from_slice(bytes);
    }
    assert!(!pieces.last().unwrap().2, "the last piece has MF clear");
    let head = |f: &[u8]| {
        let ip = etherparse::Ipv4HeaderSlice::from_slice(&f[14..]).unwrap();
        assert_eq!(ip.header_checksum(), ip.to_header().calc_header_checksum());
        (ip.source_addr(), ip.destination_addr(), ip.identification())
    };
    let (src, dst, id) = head(&sent[0].1);
    for (_, f) in sent {
        assert_eq!(head(f), (src, dst, id), "every fragment rewritten alike");
    }
    let (udp, payload) = UdpHeader::from_slice(&data).unwrap();
    (src, dst, id, udp, payload.to_vec())
}

#[test]
fn fragments_on_any_worker_in_any_order_make_up_the_translated_datagram() {
    let payload: Vec<u8> = (0..1200u32).map(|i| (i * 13 + 1) as u8).collect();
    for n in 1..=4usize {
        let mut ws: Vec<Datapath<VecBuf>> = (0..n)
            .map(|w| datapath_from(LAB_CONFIG, w as u16, n, 4096))
            .collect();
        for k in 0..24u16 {
            let cport = 50000 + k;
            let whole = udp_frame(
                (CLIENT_IP, cport),
                (VIP, 80),
                (CLIENT_MAC.0, CLIENT_PORT_MAC.0),
                &payload,
            );
            let frags = frames::fragments(&whole, 0x1000 + k, &[504, 1008]);
            // Each order of the three pieces in turn, each piece on a different worker.
            let order = [[0, 1, 2], [2, 1, 0], [1, 0, 2], [2, 0, 1]][usize::from(k) % 4];
            let mut sent = Vec::new();
            for (j, &i) in order.iter().enumerate() {
                let at = (usize::from(k) + j) % n;
                sent.extend(deliver(&mut ws, at, &frags[i], 0));
            }
            assert_eq!(sent.len(), 3, "{n} workers, datagram {k}");
            assert!(sent.iter().all(|(p, _)| *p == 1), "to the server side");
            let (lip, rs, id, udp, data) = reassemble(&sent);
            assert!(lip == LIP1 || lip == LIP2);
            assert!(rs == RS1 || rs == RS2);
            assert_eq!(
                (id, udp.destination_port, data.as_slice()),
                (0x1000 + k, 80, &payload[..])
            );
            let sum = udp
                .calc_checksum_ipv4_raw(lip.octets(), rs.octets(), &data)
                .unwrap();
            assert_eq!(
                udp.checksum, sum,
                "the first fragment's checksum covers the datagram"
            );
            let lport = udp.source_port;

            // The server's answer, fragmented, on every worker in turn.
            let rs_mac = if rs == RS1 { RS1_MAC } else { RS2_MAC };
            let answer = udp_frame(
                (rs, 80),
                (lip, lport),
                (rs_mac.0, SERVER_PORT_MAC.0),
                &payload,
            );
            let mut back = Vec::new();
            for (j, f) in frames::fragments(&answer, 0x2000 + k, &[504, 1008])
                .iter()
                .enumerate()
            {
                back.extend(deliver(&mut ws, (usize::from(k) + 2 * j + 1) % n, f, 1));
            }
            assert_eq!(back.len(), 3);
            assert!(back.iter().all(|(p, _)| *p == 0), "to the client side");
            let (vip, client, _, udp, data) = reassemble(&back);
            assert_eq!(
                (vip, client, udp.source_port, udp.destination_port),
                (VIP, CLIENT_IP, 80, cport)
            );
            assert_eq!(data, payload);
            let sum = udp
                .calc_checksum_ipv4_raw(vip.octets(), client.octets(), &data)
                .unwrap();
            assert_eq!(udp.checksum, sum);
        }
        let stats = |f: fn(&gateway::frag::FragCounters) -> u64| -> u64 {
            ws.iter().map(|w| f(&w.frags.stats)).sum()
        };
        assert_eq!(
            stats(|s| s.completed),
            stats(|s| s.first),
            "{n} workers: every entry completed"
        );
        assert_eq!(ws.iter().map(|w| w.frags.len()).sum::<usize>(), 0);
        if n > 1 {
            assert!(stats(|s| s.steered) > 0, "fragments met on their home");
        }
        for w in &ws {
            assert_eq!(w.l3.stats.total_drops(), 0);
        }
    }
}

/// A first fragment the gateway drops takes its datagram's other fragments with it, counted; and
/// a later fragment whose first never comes is dropped at the timeout, counted.
#[test]
fn fragments_of_a_dropped_or_missing_first_are_dropped_with_reasons() {
    let mut dp: Datapath<VecBuf> = datapath_from(LAB_CONFIG, 0, 1, 4096);
    let payload = vec![7u8; 1200];
    // UDP to VIP:81: no such service.
    let whole = udp_frame(
        (CLIENT_IP, 40000),
        (VIP, 81),
        (CLIENT_MAC.0, CLIENT_PORT_MAC.0),
        &payload,
    );
    let frags = frames::fragments(&whole, 9, &[504, 1008]);
    let meta = RxMeta::default();
    assert!(matches!(
        dp.process(VecBuf::from_frame(&frags[1]), &meta),
        Verdict::Held
    ));
    let first = dp.process(VecBuf::from_frame(&frags[0]), &meta);
    assert!(
        matches!(first, Verdict::Drop(r, _) if r == Drop::NoService.into()),
        "{first:?}"
    );
    let released: Vec<_> = dp.take_deferred();
    assert_eq!(released.len(), 1);
    let why = Drop::FragFirstDropped.into();
    assert!(matches!(released[0].verdict, Verdict::Drop(r, _) if r == why));
    assert_eq!(released[0].port, 0, "the port it arrived on");
    let last = dp.process(VecBuf::from_frame(&frags[2]), &meta);
    assert!(matches!(last, Verdict::Drop(r, _) if r == Drop::FragFirstDropped.into()));

    // A later fragment alone, then the timeout.
    let whole = udp_frame(
        (CLIENT_IP, 40001),
        (VIP, 80),
        (CLIENT_MAC.0, CLIENT_PORT_MAC.0),
        &payload,
    );
    let frags = frames::fragments(&whole, 10, &[504, 1008]);
    assert!(matches!(
        dp.process(VecBuf::from_frame(&frags[2]), &meta),
        Verdict::Held
    ));
    dp.tick(999);
    assert_eq!(dp.l3.stats.drops[Drop::FragTimeout as usize], 0);
    dp.tick(1000);
    assert_eq!(dp.l3.stats.drops[Drop::FragTimeout as usize], 1);
    assert_eq!((dp.frags.len(), dp.frags.held()), (0, 0));
}

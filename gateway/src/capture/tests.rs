//! The pcapng writer read back by an independent reader (the pcap-file crate), the BPF wrapper on
//! frames etherparse builds, and the capture slot as workers and the admin socket use it.

use super::pcapng::{Writer, EPB_INBOUND, EPB_OUTBOUND, LINKTYPE_ETHERNET};
use super::stream::{self, Line};
use super::*;
use crate::dpdk::bpf::Filter;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn tcp_frame(dport: u16) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4([10, 10, 0, 2], [10, 10, 0, 100], 64)
        .tcp(40000, dport, 1, 1024);
    let mut v = Vec::new();
    b.write(&mut v, b"GET /").unwrap();
    v
}

fn udp_frame(dport: u16) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4([10, 10, 0, 2], [10, 10, 0, 100], 64)
        .udp(40000, dport);
    let mut v = Vec::new();
    b.write(&mut v, b"hello").unwrap();
    v
}

#[test]
fn capture_pcapng_is_read_back_with_interface_timestamps_and_directions() {
    let (a, b) = (tcp_frame(80), udp_frame(53));
    let mut w = Writer::new(Vec::new(), "gwctl test", "client", "port 0", 128).unwrap();
    w.packet(Direction::In, 1_700_000_000_123_456_789, a.len() as u32, &a)
        .unwrap();
    w.packet(
        Direction::Out,
        1_700_000_001_000_000_001,
        b.len() as u32,
        &b,
    )
    .unwrap();
    // Truncated to 10 bytes of a 60-byte frame (the snap length): odd sizes need padding too.
    w.packet(Direction::Out, 5, 60, &a[..10]).unwrap();
    assert_eq!(w.packets(), 3);
    let bytes = w.into_inner();
    assert_eq!(bytes.len() % 4, 0, "blocks are 32-bit aligned");

    let mut r = PcapNgReader::new(&bytes[..]).expect("section header");
    assert_eq!(r.section().major_version, 1);
    let mut epbs = Vec::new();
    let mut idbs = 0;
    while let Some(block) = r.next_block() {
        match block.expect("a valid block") {
            Block::InterfaceDescription(i) => {
                idbs += 1;
                assert_eq!(i.linktype, DataLink::ETHERNET);
                assert_eq!(u32::from(i.linktype), u32::from(LINKTYPE_ETHERNET));
                assert_eq!(i.snaplen, 128);
                assert!(i
                    .options
                    .iter()
                    .any(|o| matches!(o, InterfaceDescriptionOption::IfName(n) if n == "client")));
                assert!(i
                    .options
                    .iter()
                    .any(|o| matches!(o, InterfaceDescriptionOption::IfTsResol(9))));
            }
            Block::EnhancedPacket(e) => epbs.push(e.into_owned()),
            other => panic!("unexpected block {other:?}"),
        }
    }
    assert_eq!(idbs, 1);
    assert_eq!(epbs.len(), 3);
    let flags = |e: &pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock| {
        e.options.iter().find_map(|o| match o {
            EnhancedPacketOption::Flags(f) => Some(*f),
            _ => None,
        })
    };
    assert_eq!(epbs[0].data.as_ref(), &a[..]);
    assert_eq!(epbs[0].original_len, a.len() as u32);
    assert_eq!(epbs[0].timestamp.as_nanos(), 1_700_000_000_123_456_789);
    assert_eq!(flags(&epbs[0]), Some(EPB_INBOUND));
    assert_eq!(epbs[1].data.as_ref(), &b[..]);
    assert_eq!(flags(&epbs[1]), Some(EPB_OUTBOUND));
    assert_eq!(epbs[1].timestamp.as_nanos(), 1_700_000_001_000_000_001);
    assert_eq!(epbs[2].data.as_ref(), &a[..10]);
    assert_eq!(epbs[2].original_len, 60);
    assert_eq!(flags(&epbs[2]), Some(EPB_OUTBOUND));
}

#[test]
fn capture_bpf_filter_matches_like_tcpdump_and_reports_libpcap_errors() {
    let f = Filter::compile("tcp port 80", DEFAULT_SNAPLEN).unwrap();
    assert_eq!(f.expr(), "tcp port 80");
    assert!(f.matches(&tcp_frame(80)));
    assert!(!f.matches(&tcp_frame(81)));
    assert!(!f.matches(&udp_frame(80)));
    // Truncated frames fail the match instead of being read beyond their end.
    assert!(!f.matches(&tcp_frame(80)[..20]));
    assert!(!f.matches(&[]));
    let u = Filter::compile("udp and dst host 10.10.0.100", 1500).unwrap();
    assert!(u.matches(&udp_frame(53)) && !u.matches(&tcp_frame(80)));
    // libpcap's own messages reach the user.
    let e = Filter::compile("tcp port 80 and (", DEFAULT_SNAPLEN).unwrap_err();
    assert!(
        e.contains("syntax error") && e.contains("bad filter"),
        "{e}"
    );
    let e = Filter::compile("tcp port eighty-ish", DEFAULT_SNAPLEN).unwrap_err();
    assert!(e.contains("unknown port 'eighty-ish'"), "{e}");
    let e = Filter::compile("ether proto \\frobnicate", DEFAULT_SNAPLEN).unwrap_err();
    assert!(e.starts_with("bad filter"), "{e}");
    assert!(Filter::compile("tcp\0", 1500).is_err());
    // Shared by the workers.
    fn shared<T: Send + Sync>(_: &T) {}
    shared(&f);
}

#[test]
fn capture_taps_copy_only_the_captured_port_and_matching_frames() {
    let cap = Capture::new();
    let mut tap = cap.tap();
    let mut other = cap.tap();
    let (t80, u53) = (tcp_frame(80), udp_frame(53));
    // Nothing runs: nothing is copied (and nothing counted anywhere).
    tap.poll();
    tap.rx(1, [&t80[..]].into_iter());
    tap.tx(1, &t80);

    let filter = Filter::compile("tcp port 80", 40).unwrap();
    let running = cap.start(1, "server", Some(filter), 40).unwrap();
    assert!(cap.is_running());
    let e = cap.start(0, "client", None, 64).err().unwrap();
    assert!(e.contains("already running") && e.contains("server"), "{e}");
    // A tap sees the capture from its next poll round on.
    tap.rx(1, [&t80[..]].into_iter());
    assert!(running.records.is_empty());
    tap.poll();
    other.poll();
    tap.rx(0, [&t80[..]].into_iter()); // another port
    tap.rx(1, [&t80[..], &u53[..], &t80[..]].into_iter());
    other.tx(1, &t80);
    other.tx(0, &t80);
    let recs: Vec<Record> = running.records.try_iter().collect();
    assert_eq!(recs.len(), 3, "two rx and one tx of port 1 pass the filter");
    assert_eq!(
        recs.iter().map(|r| r.dir).collect::<Vec<_>>(),
        vec![Direction::In, Direction::In, Direction::Out]
    );
    // Copied up to the snap length; the length on the wire is kept.
    assert!(recs.iter().all(|r| r.data[..] == t80[..40]));
    assert!(recs.iter().all(|r| r.orig_len == t80.len() as u32));
    assert_eq!(recs[0].ts_ns, recs[1].ts_ns, "one timestamp per burst");
    assert!(recs[0].ts_ns > 1_600_000_000_000_000_000);
    assert_eq!(
        running.session.counts(),
        Counts {
            captured: 3,
            dropped: 0,
            filtered_out: 1
        }
    );

    // A full ring: frames are counted as dropped, never waited for.
    let burst: Vec<&[u8]> = std::iter::repeat_n(&t80[..], RING + 5).collect();
    tap.rx(1, burst.into_iter());
    let c = running.session.counts();
    assert_eq!((c.captured, c.dropped), (3 + RING as u64, 5));
    assert_eq!(running.records.len(), RING);

    // Ended: taps stop copying at their next poll round, and a new capture may start.
    drop(running);
    assert!(!cap.is_running());
    tap.poll();
    tap.rx(1, [&t80[..]].into_iter());
    let again = cap.start(0, "client", None, DEFAULT_SNAPLEN).unwrap();
    tap.poll();
    tap.rx(1, [&t80[..]].into_iter());
    assert!(again.records.is_empty(), "port 1 is not captured any more");
    tap.tx(0, &u53);
    let r = again.records.try_recv().unwrap();
    assert_eq!((r.dir, r.data), (Direction::Out, u53.clone()));
}

#[test]
fn capture_stream_sends_started_frames_and_final_counts() {
    let cap = Capture::new();
    let mut tap = cap.tap();
    let running = cap.start(0, "client", None, DEFAULT_SNAPLEN).unwrap();
    tap.poll();
    let t80 = tcp_frame(80);
    for _ in 0..5 {
        tap.rx(0, [&t80[..]].into_iter());
    }
    let mut lines = Vec::new();
    stream::serve(
        running,
        3,
        None,
        || false,
        |l, more| {
            lines.push((l.clone(), more));
            Ok(())
        },
    )
    .unwrap();
    assert!(!cap.is_running(), "the capture ends with the stream");
    let data: Vec<Line> = lines.iter().map(|(l, _)| l.clone()).collect();
    assert_eq!(data[0].started.as_ref().unwrap().port, "client");
    let frames: Vec<Record> = data
        .iter()
        .flat_map(|l| l.frames.iter().map(|f| f.to_record().unwrap()))
        .collect();
    assert_eq!(frames.len(), 3, "count bounds what is sent");
    assert!(frames
        .iter()
        .all(|f| f.data == t80 && f.dir == Direction::In));
    let last = lines.last().unwrap();
    assert!(!last.1, "no more after the last line");
    assert!(lines[..lines.len() - 1].iter().all(|(_, more)| *more));
    assert_eq!(data.last().unwrap().sent, 3);
    assert_eq!(data.last().unwrap().counts.captured, 5);

    // A client that goes away ends the capture too.
    let running = cap.start(0, "client", None, DEFAULT_SNAPLEN).unwrap();
    let r = stream::serve(
        running,
        10,
        None,
        || false,
        |_, _| Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe)),
    );
    assert!(r.is_err());
    assert!(!cap.is_running());
    // So does the client's leaving (`ended`), with a last line.
    let running = cap.start(0, "client", None, DEFAULT_SNAPLEN).unwrap();
    let mut n = 0;
    stream::serve(
        running,
        10,
        None,
        || true,
        |_, _| {
            n += 1;
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(n, 2, "started, then the last line");
    assert!(!cap.is_running());
    // So does a duration.
    let running = cap.start(0, "client", None, DEFAULT_SNAPLEN).unwrap();
    let t = std::time::Instant::now();
    stream::serve(
        running,
        10,
        Some(std::time::Duration::from_millis(300)),
        || false,
        |_, _| Ok(()),
    )
    .unwrap();
    assert!(t.elapsed() < std::time::Duration::from_secs(3));
    assert!(!cap.is_running());
}

#[test]
fn capture_hex_round_trips() {
    let all: Vec<u8> = (0..=255).collect();
    assert_eq!(stream::unhex(&stream::hex(&all)).unwrap(), all);
    assert_eq!(stream::hex(&[0x0a, 0xff]), "0aff");
    assert!(stream::unhex("abc").is_err());
    assert!(stream::unhex("zz").is_err());
}

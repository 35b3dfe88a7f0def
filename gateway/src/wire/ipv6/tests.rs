use super::*;
use etherparse::{IpNumber, Ipv6Header, PacketBuilder};
use proptest::prelude::*;

const SRC: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const DST: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x64,
];

fn tcp_packet(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv6(SRC, DST, 61)
        .tcp(40000, 80, 1000, 64240)
        .syn()
        .write(&mut v, payload)
        .unwrap();
    v
}

#[test]
fn fields_read_as_etherparse_wrote_them() {
    let mut v = tcp_packet(b"hi");
    v.extend_from_slice(&[0xAA; 6]); // Ethernet padding after the packet
    let p = Ipv6Packet::new_checked(&v[..]).unwrap();
    assert_eq!(p.src(), Ipv6Addr::from(SRC));
    assert_eq!(p.dst(), Ipv6Addr::from(DST));
    assert_eq!(p.hop_limit(), 61);
    assert_eq!(p.next_header(), IpProtocol::TCP);
    assert_eq!(usize::from(p.payload_len()), 20 + 2);
    assert_eq!(p.payload().len(), 22, "padding is not payload");
    let u = p.upper_layer().unwrap();
    assert_eq!((u.proto, u.offset, u.fragment), (IpProtocol::TCP, 0, None));
    assert_eq!(
        l4_checksum(p.src(), p.dst(), IpProtocol::TCP, p.payload()),
        0
    );
}

#[test]
fn bad_headers_are_refused_by_reason() {
    let v = tcp_packet(b"");
    assert_eq!(
        Ipv6Packet::new_checked(&v[..39]).unwrap_err(),
        Error::Truncated
    );
    let mut w = v.clone();
    w[0] = 0x45;
    assert_eq!(
        Ipv6Packet::new_checked(&w[..]).unwrap_err(),
        Error::BadVersion
    );
    let mut w = v.clone();
    w[5] += 1;
    assert_eq!(
        Ipv6Packet::new_checked(&w[..]).unwrap_err(),
        Error::BadTotalLen
    );
    let mut w = v.clone();
    w[4..6].copy_from_slice(&[0, 0]);
    w[6] = 0; // a jumbogram: payload length 0 and a hop-by-hop header
    assert_eq!(
        Ipv6Packet::new_checked(&w[..]).unwrap_err(),
        Error::Unsupported
    );
}

/// An extension header of kind `next_here` (its own next header `next`), 8 bytes.
fn ext(next: u8) -> [u8; 8] {
    [next, 0, 1, 4, 0, 0, 0, 0] // PadN filling the 6 option bytes
}

#[test]
fn extension_headers_are_walked_to_the_upper_layer() {
    // hop-by-hop -> destination options -> routing (type 0 payload ignored) -> fragment -> UDP
    let mut pl = Vec::new();
    pl.extend_from_slice(&ext(60));
    pl.extend_from_slice(&ext(43));
    pl.extend_from_slice(&[44, 0, 0, 0, 0, 0, 0, 0]);
    pl.extend_from_slice(&[17, 0, 0x05, 0x39, 0xde, 0xad, 0xbe, 0xef]); // offset 167*8, M set
    pl.extend_from_slice(&[0; 8]);
    let u = walk(IpProtocol::HOP_BY_HOP, &pl).unwrap();
    assert_eq!(u.proto, IpProtocol::UDP);
    assert_eq!(u.offset, 32);
    assert_eq!(
        u.fragment,
        Some(Fragment {
            offset: 0x0538,
            more: true,
            ident: 0xdead_beef
        })
    );
    // A hop-by-hop header after the first place is refused (RFC 8200 4.1).
    let mut bad = ext(0).to_vec();
    bad.extend_from_slice(&ext(6));
    assert_eq!(walk(IpProtocol::IPV6_OPTS, &bad), Err(Error::Malformed));
    // A header running past the payload.
    assert_eq!(
        walk(IpProtocol::IPV6_OPTS, &[6, 1, 0, 0, 0, 0, 0, 0]),
        Err(Error::Truncated)
    );
    // Too many.
    let chain: Vec<u8> = (0..=MAX_EXTENSIONS).flat_map(|_| ext(60)).collect();
    assert_eq!(walk(IpProtocol::IPV6_OPTS, &chain), Err(Error::Malformed));
    // No next header, and unknown upper layers, end the walk where they are.
    assert_eq!(
        walk(IpProtocol::IPV6_OPTS, &ext(59)).unwrap().proto,
        IpProtocol::IPV6_NO_NEXT
    );
    assert_eq!(walk(IpProtocol(50), &[]).unwrap().proto, IpProtocol(50));
}

proptest! {
    /// The pseudo-header checksum equals etherparse's for TCP, UDP and ICMPv6 of any length.
    #[test]
    fn upper_layer_checksums_match_etherparse(
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        kind in 0u8..3,
    ) {
        let b = PacketBuilder::ipv6(SRC, DST, 64);
        let mut v = Vec::new();
        let proto = match kind {
            0 => { b.tcp(1, 2, 3, 4).write(&mut v, &payload).unwrap(); IpProtocol::TCP }
            1 => { b.udp(1, 2).write(&mut v, &payload).unwrap(); IpProtocol::UDP }
            _ => { b.icmpv6_echo_request(7, 9).write(&mut v, &payload).unwrap(); IpProtocol::ICMPV6 }
        };
        let p = Ipv6Packet::new_checked(&v[..]).unwrap();
        prop_assert_eq!(l4_checksum(p.src(), p.dst(), proto, p.payload()), 0);
        // One flipped byte in the segment no longer verifies.
        let mut w = v.clone();
        let at = HEADER_LEN + payload.len() / 2 + 8;
        if at < w.len() && !(kind == 0 && (HEADER_LEN + 16..HEADER_LEN + 18).contains(&at)) {
            w[at] ^= 0x5A;
            let q = Ipv6Packet::new_checked(&w[..]).unwrap();
            prop_assert_ne!(l4_checksum(q.src(), q.dst(), proto, q.payload()), 0);
        }
    }

    /// Setters write what etherparse reads back.
    #[test]
    fn setters_round_trip(tc: u8, flow in 0u32..1 << 20, hop: u8, len: u16, src: [u8; 16], dst: [u8; 16]) {
        let mut v = vec![0u8; HEADER_LEN];
        let mut p = Ipv6Packet::new_unchecked(&mut v[..]);
        p.set_ver_tc_flow(tc, flow);
        p.set_payload_len(len);
        p.set_next_header(IpProtocol::UDP);
        p.set_hop_limit(hop);
        p.set_src(src.into());
        p.set_dst(dst.into());
        let (h, _) = Ipv6Header::from_slice(&v).unwrap();
        prop_assert_eq!(h.traffic_class, tc);
        prop_assert_eq!(h.flow_label.value(), flow);
        prop_assert_eq!(h.payload_length, len);
        prop_assert_eq!(h.next_header, IpNumber::UDP);
        prop_assert_eq!((h.hop_limit, h.source, h.destination), (hop, src, dst));
        let p = Ipv6Packet::new_unchecked(&v[..]);
        prop_assert_eq!((p.traffic_class(), p.flow_label()), (tc, flow));
    }

    /// Nothing panics on arbitrary bytes once the length check passed.
    #[test]
    fn arbitrary_bytes_never_panic(v in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(p) = Ipv6Packet::new_checked(&v[..]) {
            let _ = (p.src(), p.dst(), p.flow_label(), p.traffic_class(), p.upper_layer());
        }
        let _ = walk(IpProtocol(v.first().copied().unwrap_or(0)), &v);
    }
}

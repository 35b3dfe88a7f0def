//! DR (direct routing, `ipvsadm -g`): the client's frame goes to the real server with only its
//! Ethernet addresses changed (destination: the real server's MAC, resolved by ARP; source: our
//! port's). The IP packet is untouched, so the real server must hold the VIP itself, on a device that
//! does not answer ARP for it (`lo` with `arp_ignore=1`, `arp_announce=2`), and it replies to the
//! client directly. The gateway sees only the client side: the connection has no reply tuple and
//! follows IPVS's INPUT-ONLY TCP states. No port mapping: the frame still says VIP:vport.

use crate::packet::Verdict;

use crate::net::L3;
use crate::packet::PacketBuf;
use crate::stats::Drop;
use std::net::Ipv4Addr;

/// Sends the frame to real server `rip` on its link. A real server behind a router cannot be reached
/// this way (the router would route the packet by its destination, the VIP, back to us), so one that
/// is not on a connected subnet is refused as `NoRoute`.
#[inline]
pub fn forward<B: PacketBuf>(l3: &mut L3<B>, pkt: B, rip: Ipv4Addr) -> Verdict<B> {
    match l3.topo().routes.lookup(rip) {
        Some(hop) if hop.via.is_none() => l3.route_out(pkt, rip),
        _ => Verdict::Drop(Drop::NoRoute.into(), pkt),
    }
}

#[cfg(test)]
mod tests {
    use crate::conn::{ConnFlags, State};
    use crate::datapath::Datapath;
    use crate::packet::Verdict;
    use crate::packet::{PacketBuf, RxMeta, VecBuf};
    use crate::testkit::*;
    use etherparse::PacketBuilder;

    /// The lab's TCP service with `rs2` as given and rs1 FullNAT.
    fn config(rs2: &str) -> String {
        LAB_CONFIG.replacen(
            "[[service.real]]\naddress = \"10.20.0.11\"\n[[service.real]]\naddress = \"10.20.0.12\"\n",
            &format!("[[service.real]]\naddress = \"10.20.0.11\"\n[[service.real]]\n{rs2}\n"),
            1,
        )
    }

    fn frame(sport: u16, syn: bool, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let b = PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
            .ipv4(CLIENT_IP.octets(), VIP.octets(), 64)
            .tcp(sport, 80, 1000, 64240);
        let b = if syn { b.syn() } else { b.ack(1) };
        let b = if fin { b.fin() } else { b };
        b.write(&mut v, payload).unwrap();
        v
    }

    #[test]
    fn only_the_macs_change_and_the_connection_is_input_only() {
        // wrr over rs1 (FullNAT) and rs2 (DR): the second connection is the DR one.
        let mut dp: Datapath<VecBuf> = datapath_from(
            &config("address = \"10.20.0.12\"\nmode = \"dr\""),
            0,
            1,
            1024,
        );
        let meta = RxMeta {
            port: 0,
            ..Default::default()
        };
        assert!(matches!(
            dp.process(VecBuf::from_frame(&frame(40000, true, false, b"")), &meta),
            Verdict::Tx(1, _)
        ));
        for (i, (syn, fin, data)) in [
            (true, false, &b""[..]),
            (false, false, b"GET /"),
            (false, true, b""),
        ]
        .into_iter()
        .enumerate()
        {
            let mut input = frame(40001, syn, fin, data);
            // Ethernet padding on the short frames is dropped on the way out.
            let want_ip = input[14..].to_vec();
            input.resize(input.len().max(60), 0);
            let out = match dp.process(VecBuf::from_frame(&input), &meta) {
                Verdict::Tx(1, b) => b,
                _ => panic!("packet {i} not sent to the server port"),
            };
            assert_eq!(
                &out.data()[0..6],
                &RS2_MAC.0,
                "destination: the real server's MAC"
            );
            assert_eq!(
                &out.data()[6..12],
                &SERVER_PORT_MAC.0,
                "source: our server-side port"
            );
            assert_eq!(&out.data()[12..14], &[0x08, 0x00]);
            assert_eq!(&out.data()[14..], &want_ip[..], "IP packet {i} untouched");
        }
        let (_, c) = dp
            .fwd
            .table()
            .iter()
            .find(|(_, c)| c.client().sport == 40001)
            .unwrap();
        assert_eq!(c.reply(), None, "DR tracks the client side only");
        assert!(c.flags().contains(ConnFlags::INPUT_ONLY));
        // INPUT-ONLY rows: SYN, then ACK = ESTABLISHED, then the client's FIN = FIN_WAIT.
        assert_eq!(c.state(), State::FinWait);
    }

    /// The lab's TCP service under `mh` with both real servers in `mode`, and `extra` keys.
    fn mh_config(mode: &str, extra: &str) -> String {
        LAB_CONFIG
            .replacen("scheduler = \"wrr\"", &format!("scheduler = \"mh\"\n{extra}"), 1)
            .replacen(
                "[[service.real]]\naddress = \"10.20.0.11\"\n[[service.real]]\naddress = \"10.20.0.12\"\n",
                &format!("[[service.real]]\naddress = \"10.20.0.11\"\nmode = \"{mode}\"\n[[service.real]]\naddress = \"10.20.0.12\"\nmode = \"{mode}\"\n"),
                1,
            )
    }

    /// The destination MAC `dp` sends a client packet to (its real server), or None if dropped.
    fn sent_to(dp: &mut Datapath<VecBuf>, frame: &[u8]) -> Option<[u8; 6]> {
        let meta = RxMeta {
            port: 0,
            ..Default::default()
        };
        match dp.process(VecBuf::from_frame(frame), &meta) {
            Verdict::Tx(1, b) => Some(b.data()[0..6].try_into().unwrap()),
            _ => None,
        }
    }

    #[test]
    fn sloppy_tcp_continues_a_flow_another_box_started_on_the_same_server() {
        // Box A saw each flow's SYN; box B sees only their later packets, as after an ECMP change.
        // sloppy_tcp is on by default for mh; mh-port hashes the client's port too, so that one
        // client's flows spread. TUN takes the same path (its frames go to the same MACs).
        let tun = mh_config("tun", "scheduler_flags = [\"mh-port\"]");
        let mut a: Datapath<VecBuf> = datapath_from(&tun, 0, 1, 1024);
        let mut b: Datapath<VecBuf> = datapath_from(&tun, 0, 1, 1024);
        for sport in 40000..40016 {
            let first = sent_to(&mut a, &frame(sport, true, false, b"")).expect("TUN SYN");
            let later = sent_to(&mut b, &frame(sport, false, false, b"GET /")).expect("TUN");
            assert_eq!(later, first, "TUN port {sport}");
        }
        assert_eq!(b.fwd.stats.sloppy_created, 16);
        let text = mh_config("dr", "scheduler_flags = [\"mh-port\"]");
        let mut a: Datapath<VecBuf> = datapath_from(&text, 0, 1, 1024);
        let mut b: Datapath<VecBuf> = datapath_from(&text, 0, 1, 1024);
        let mut seen = std::collections::HashSet::new();
        for sport in 40000..40064 {
            let first = sent_to(&mut a, &frame(sport, true, false, b"")).expect("SYN forwarded");
            let later = sent_to(&mut b, &frame(sport, false, false, b"GET /"))
                .expect("mid-flow packet forwarded");
            assert_eq!(
                later, first,
                "port {sport}: the same real server on both boxes"
            );
            seen.insert(first);
        }
        assert_eq!(seen.len(), 2, "mh spreads the flows over both servers");
        assert_eq!(b.fwd.stats.sloppy_created, 64);
        let (_, c) = b.fwd.table().iter().next().unwrap();
        assert_eq!(
            c.state(),
            State::Established,
            "an ACK starts it established"
        );
        // Its next packet follows the connection.
        let sport = c.client().sport;
        let rs = sent_to(&mut a, &frame(sport, false, false, b"")).unwrap();
        assert_eq!(sent_to(&mut b, &frame(sport, false, false, b"x")), Some(rs));
        // A RST without a connection starts nothing.
        let mut rst = frame(41000, false, false, b"");
        rst[14 + 20 + 13] |= 0x04;
        let n = b.fwd.stats.sloppy_created;
        assert_eq!(sent_to(&mut b, &rst), None);
        assert_eq!(b.fwd.stats.sloppy_created, n);
    }

    #[test]
    fn sloppy_tcp_is_refused_without_the_option_and_for_fullnat() {
        for (text, why) in [
            (mh_config("dr", "sloppy_tcp = false"), "sloppy_tcp = false"),
            (
                mh_config("fullnat", ""),
                "FullNAT servers know another tuple",
            ),
            (
                mh_config("dr", "").replacen("scheduler = \"mh\"", "scheduler = \"rr\"", 1),
                "off by default but for mh",
            ),
        ] {
            let mut dp: Datapath<VecBuf> = datapath_from(&text, 0, 1, 1024);
            assert_eq!(
                sent_to(&mut dp, &frame(40000, false, false, b"GET /")),
                None,
                "{why}"
            );
            assert_eq!(dp.fwd.stats.sloppy_created, 0, "{why}");
            assert!(dp.fwd.table().iter().next().is_none(), "{why}");
        }
        let mut dp: Datapath<VecBuf> = datapath_from(
            &mh_config("dr", "sloppy_tcp = true").replacen(
                "scheduler = \"mh\"",
                "scheduler = \"rr\"",
                1,
            ),
            0,
            1,
            1024,
        );
        assert!(
            sent_to(&mut dp, &frame(40000, false, false, b"GET /")).is_some(),
            "on for rr when asked"
        );
    }

    #[test]
    fn real_server_behind_a_router_is_refused() {
        // 10.30.0.5 is reachable only through 10.20.0.254: DR cannot use it.
        let text = config("address = \"10.30.0.5\"\nmode = \"dr\"")
            .replacen("[[service]]", "[[route]]\nprefix = \"10.30.0.0/24\"\nvia = \"10.20.0.254\"\nport = \"server\"\n\n[[service]]", 1);
        let mut dp: Datapath<VecBuf> = datapath_from(&text, 0, 1, 1024);
        let meta = RxMeta {
            port: 0,
            ..Default::default()
        };
        assert!(matches!(
            dp.process(VecBuf::from_frame(&frame(40000, true, false, b"")), &meta),
            Verdict::Tx(1, _)
        ));
        let v = dp.process(VecBuf::from_frame(&frame(40001, true, false, b"")), &meta);
        assert!(matches!(
            v,
            Verdict::Drop(crate::stats::DropReason::Dp(crate::stats::Drop::NoRoute), _)
        ));
    }
}

//! DR (direct routing, `ipvsadm -g`): the client's frame goes to the real server with only its
//! Ethernet addresses changed (destination: the real server's MAC, resolved by ARP; source: our
//! port's). The IP packet is untouched, so the real server must hold the VIP itself, on a device that
//! does not answer ARP for it (`lo` with `arp_ignore=1`, `arp_announce=2`), and it replies to the
//! client directly. The gateway sees only the client side: the connection has no reply tuple and
//! follows IPVS's INPUT-ONLY TCP states. No port mapping: the frame still says VIP:vport.

use crate::datapath::{Verdict, L3};
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
    use crate::datapath::{Datapath, Verdict};
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

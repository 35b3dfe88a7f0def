//! NAT (masquerading, `ipvsadm -m`): the client's CIP:cport -> VIP:vport leaves as CIP:cport ->
//! RIP:rport (port mapping allowed); the real server routes its reply RIP:rport -> CIP:cport back
//! through the gateway (its default route), which gives it VIP:vport as source again. The client
//! address reaches the real server unchanged, so no TOA is needed.
//!
//! Reply steering. FullNAT picks the local port so that replies come back to the worker that owns
//! the connection; NAT cannot choose anything (the reply carries the client's own tuple). So the
//! owner of a NAT connection is a pure function of (CIP, cport), which both directions carry and every
//! worker computes alike: [`owner_of_client`]. Connections of a service with at least one NAT real
//! server live on that owner whatever real server the scheduler picks, so a packet from the client
//! that misses the table of the worker RSS gave it to (the SYN included) is handed to the owner over
//! the worker rings before anything is scheduled; a reply that misses is handed over the same way.
//! Cost: a ring hop for (n-1)/n of those packets, in both directions. Services without NAT real
//! servers are not affected.

use super::rewrite::Endpoint;
use super::services::ServiceTable;
use crate::conn::{Dir, Tuple};
use crate::service::FwdMode;
use hashbrown::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// The worker that owns every NAT connection of client CIP:cport: the hash rule of [`super::owner`].
pub use super::owner::owner_of_client;

/// What the per-packet path needs to know about NAT in one service snapshot.
#[derive(Debug, Default)]
pub struct NatIndex {
    /// Per service index: whether any of its real servers is NAT.
    per_service: Vec<bool>,
    /// Addresses of NAT real servers: a packet from one of them to a non-local address may be a
    /// reply (or an ICMP error about one).
    reals: HashSet<Ipv4Addr>,
}

impl NatIndex {
    /// The index of snapshot `t`. `before` (the index being replaced) keeps its real servers: a
    /// NAT server removed from its service (`ipvsadm -d`, a health check with
    /// `inhibit_on_failure = false`) still has connections whose replies come back through us, and
    /// `expire_nodest_conn` decides what becomes of them, as in IPVS. A packet from such an address
    /// that matches no connection is dropped (`no_conn`), as one from a configured server is.
    pub fn new(t: &ServiceTable) -> NatIndex {
        NatIndex::carried(NatIndex::default(), &ServiceTable::default(), t, &[])
    }

    /// The index of snapshot `t` that replaces `before`, the index of snapshot `old`; `old_of`:
    /// each service of `t`'s index in `old`. `before`'s real servers stay, as [`NatIndex::new`]
    /// says why, and a service shared unchanged with `old` (the same `Arc`) keeps its flag without
    /// its servers visited again: a worker adopts every change in its loop, not forwarding
    /// meanwhile, and 100,000 NAT servers inserted afresh were a sixth of that time.
    pub fn carried(
        before: NatIndex,
        old: &ServiceTable,
        t: &ServiceTable,
        old_of: &[Option<usize>],
    ) -> NatIndex {
        let NatIndex {
            per_service: old_flags,
            mut reals,
        } = before;
        let mut per_service = Vec::with_capacity(t.services.len());
        for (i, vs) in t.services.iter().enumerate() {
            let o = old_of.get(i).copied().flatten();
            let shared = o
                .and_then(|o| Some((old.services.get(o)?, *old_flags.get(o)?)))
                .filter(|(ovs, _)| Arc::ptr_eq(&ovs.svc, &vs.svc));
            if let Some((_, flag)) = shared {
                per_service.push(flag);
                continue;
            }
            let mut any = false;
            for r in vs.svc.reals().iter().filter(|r| r.fwd == FwdMode::Nat) {
                any = true;
                reals.insert(r.v4());
            }
            per_service.push(any);
        }
        NatIndex { per_service, reals }
    }

    /// No NAT real server anywhere: the per-packet NAT checks are skipped.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.reals.is_empty()
    }

    /// Whether service `si` has a NAT real server (its connections live with `owner_of_client`).
    #[inline]
    pub fn service_has_nat(&self, si: u32) -> bool {
        self.per_service.get(si as usize).copied().unwrap_or(false)
    }

    /// Whether `ip` is a NAT real server's address.
    #[inline]
    pub fn is_real(&self, ip: Ipv4Addr) -> bool {
        self.reals.contains(&ip)
    }
}

/// The tuple a NAT connection's replies arrive with: RIP:rport -> CIP:cport.
#[inline]
pub fn reply_tuple(client: &Tuple, rip: Ipv4Addr, rport: u16) -> Tuple {
    Tuple::new(rip, rport, client.src_ip(), client.sport, client.proto)
}

/// Source and destination a NAT packet leaves with. From the client (CIP:cport -> VIP:vport):
/// CIP:cport -> RIP:rport. From the real server (RIP:rport -> CIP:cport): VIP:vport -> CIP:cport.
#[inline]
pub fn rewrite_endpoints(client: &Tuple, reply: &Tuple, dir: Dir) -> (Endpoint, Endpoint) {
    match dir {
        Dir::Original => (
            (client.src_ip(), client.sport),
            (reply.src_ip(), reply.sport),
        ),
        Dir::Reply => (
            (client.dst_ip(), client.dport),
            (client.src_ip(), client.sport),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::datapath::Datapath;
    use crate::packet::Verdict;
    use crate::packet::{PacketBuf, RxMeta, VecBuf};
    use crate::testkit::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
    use proptest::prelude::*;

    /// The lab's TCP service with NAT real servers on port 8080 (port mapping 80 -> 8080).
    fn nat_config(workers: usize) -> String {
        LAB_CONFIG
            .replacen("count = 1", &format!("count = {workers}"), 1)
            .replacen(
                "[[service.real]]\naddress = \"10.20.0.11\"\n[[service.real]]\naddress = \"10.20.0.12\"\n",
                "[[service.real]]\naddress = \"10.20.0.11\"\nport = 8080\nmode = \"nat\"\n\
                 [[service.real]]\naddress = \"10.20.0.12\"\nport = 8080\nmode = \"nat\"\n",
                1,
            )
    }

    fn from_client(sport: u16, flags: &str, payload: &[u8]) -> VecBuf {
        let mut v = Vec::new();
        let b = PacketBuilder::ethernet2(CLIENT_MAC.0, CLIENT_PORT_MAC.0)
            .ipv4(CLIENT_IP.octets(), VIP.octets(), 64)
            .tcp(sport, 80, 1000, 64240);
        match flags {
            "syn" => b.syn().write(&mut v, payload),
            _ => b.ack(1).write(&mut v, payload),
        }
        .unwrap();
        VecBuf::from_frame(&v)
    }

    fn from_server(rs: Ipv4Addr, mac: [u8; 6], cport: u16, payload: &[u8]) -> VecBuf {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(mac, SERVER_PORT_MAC.0)
            .ipv4(rs.octets(), CLIENT_IP.octets(), 64)
            .tcp(8080, cport, 5000, 64240)
            .syn()
            .ack(1001)
            .write(&mut v, payload)
            .unwrap();
        VecBuf::from_frame(&v)
    }

    /// (src, sport, dst, dport) of a frame, with both checksums verified by etherparse.
    fn endpoints(f: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum(), "IP checksum");
        let Some(TransportSlice::Tcp(t)) = &p.transport else {
            panic!("not TCP")
        };
        let want = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
        assert_eq!(t.checksum(), want, "TCP checksum");
        (
            h.source.into(),
            t.source_port(),
            h.destination.into(),
            t.destination_port(),
        )
    }

    fn owner(cport: u16) -> usize {
        owner_of_client(CLIENT_IP, cport, 2)
    }

    #[test]
    fn request_gets_rip_and_mapped_port_and_reply_gets_the_vip_back() {
        let mut dp: Datapath<VecBuf> = datapath_from(&nat_config(1), 0, 1, 1024);
        let meta = RxMeta {
            port: 0,
            ..Default::default()
        };
        let out = match dp.process(from_client(40000, "syn", b""), &meta) {
            Verdict::Tx(1, b) => b,
            _ => panic!("SYN not sent to the server side"),
        };
        assert_eq!(&out.data()[0..6], &RS1_MAC.0);
        assert_eq!(
            endpoints(out.data()),
            (CLIENT_IP, 40000, RS1, 8080),
            "only the destination changes"
        );
        let c = dp.fwd.table().iter().next().unwrap().1;
        assert_eq!(c.reply(), Some(Tuple::new(RS1, 8080, CLIENT_IP, 40000, 6)));

        let back = match dp.process(
            from_server(RS1, RS1_MAC.0, 40000, b"hi"),
            &RxMeta {
                port: 1,
                ..Default::default()
            },
        ) {
            Verdict::Tx(0, b) => b,
            _ => panic!("reply not sent to the client side"),
        };
        assert_eq!(&back.data()[0..6], &CLIENT_MAC.0);
        assert_eq!(endpoints(back.data()), (VIP, 80, CLIENT_IP, 40000));
        // A packet from a NAT real server that belongs to no connection is not forwarded.
        let stray = dp.process(
            from_server(RS1, RS1_MAC.0, 40001, b""),
            &RxMeta {
                port: 1,
                ..Default::default()
            },
        );
        assert!(matches!(stray, Verdict::Drop(..)));
    }

    /// A NAT real server removed from its service: its connections' replies still come back
    /// through us and are translated, unless `expire_nodest_conn` drops them.
    #[test]
    fn a_removed_nat_servers_replies_still_reach_the_client() {
        for nodest in [false, true] {
            let mut dp: Datapath<VecBuf> = datapath_from(&nat_config(1), 0, 1, 1024);
            let out = match dp.process(from_client(40000, "syn", b""), &RxMeta::default()) {
                Verdict::Tx(1, b) => b,
                v => panic!("{v:?}"),
            };
            let (_, _, rip, _) = endpoints(out.data());
            let (mac, keep) = if rip == RS1 {
                (RS1_MAC.0, "10.20.0.12")
            } else {
                (RS2_MAC.0, "10.20.0.11")
            };
            let text = LAB_CONFIG
                .replacen(
                    "[[service.real]]\naddress = \"10.20.0.11\"\n[[service.real]]\naddress = \"10.20.0.12\"\n",
                    &format!("expire_nodest_conn = {nodest}\n[[service.real]]\naddress = \"{keep}\"\nport = 8080\nmode = \"nat\"\n"),
                    1,
                );
            let v = Config::parse(&text).unwrap().validate().unwrap();
            let t = ServiceTable::new(2, v.services, Some(dp.fwd.services())).unwrap();
            dp.fwd.set_services(std::sync::Arc::new(t)).unwrap();
            let back = dp.process(
                from_server(rip, mac, 40000, b"hi"),
                &RxMeta {
                    port: 1,
                    ..Default::default()
                },
            );
            if nodest {
                assert!(matches!(back, Verdict::Drop(..)), "{back:?}");
            } else {
                assert!(matches!(back, Verdict::Tx(0, _)), "{back:?}");
            }
        }
    }

    #[test]
    fn non_owner_hands_client_packets_and_replies_to_the_owner() {
        let mut w: Vec<Datapath<VecBuf>> = (0..2)
            .map(|i| datapath_from(&nat_config(2), i, 2, 1024))
            .collect();
        let meta = |port| RxMeta {
            port,
            ..Default::default()
        };
        let peer = |port| RxMeta {
            port,
            from_peer: true,
            ..Default::default()
        };
        // A client port owned by worker 1, arriving on worker 0.
        let cport = (40000..41000).find(|&p| owner(p) == 1).unwrap();
        match w[0].process(from_client(cport, "syn", b""), &meta(0)) {
            Verdict::ToWorker(1, _) => {}
            _ => panic!("SYN not handed to the owner"),
        }
        assert_eq!(w[0].fwd.table().len(), 0, "the non-owner creates nothing");
        let out = match w[1].process(from_client(cport, "syn", b""), &peer(0)) {
            Verdict::Tx(1, b) => b,
            _ => panic!("owner did not forward"),
        };
        let (_, _, rip, _) = endpoints(out.data());
        let mac = if rip == RS1 { RS1_MAC.0 } else { RS2_MAC.0 };
        // The reply lands on worker 0 too: handed over, then translated by the owner.
        match w[0].process(from_server(rip, mac, cport, b""), &meta(1)) {
            Verdict::ToWorker(1, _) => {}
            _ => panic!("reply not handed to the owner"),
        }
        assert!(matches!(
            w[1].process(from_server(rip, mac, cport, b""), &peer(1)),
            Verdict::Tx(0, _)
        ));
        // Later client packets on the non-owner go over too; a handed-over miss is not bounced back.
        assert!(matches!(
            w[0].process(from_client(cport, "ack", b"x"), &meta(0)),
            Verdict::ToWorker(1, _)
        ));
        assert!(matches!(
            w[1].process(from_client(cport, "ack", b"x"), &peer(0)),
            Verdict::Tx(1, _)
        ));
        assert!(matches!(
            w[1].process(from_client(cport + 1, "ack", b""), &peer(0)),
            Verdict::Drop(..)
        ));
    }

    #[test]
    fn index_knows_nat_services_and_reals() {
        let v = Config::parse(&nat_config(1)).unwrap().validate().unwrap();
        let t = ServiceTable::new(1, v.services, None).unwrap();
        let x = NatIndex::new(&t);
        assert!(!x.is_empty());
        assert!(x.service_has_nat(0), "the TCP service is NAT");
        assert!(!x.service_has_nat(1), "the UDP service stays FullNAT");
        assert!(!x.service_has_nat(7));
        assert!(x.is_real(RS1) && x.is_real(RS2) && !x.is_real(CLIENT_IP));
        let v = Config::parse(LAB_CONFIG).unwrap().validate().unwrap();
        assert!(NatIndex::new(&ServiceTable::new(1, v.services, None).unwrap()).is_empty());
    }

    /// A change carries the index over: a service shared unchanged keeps its flag at its new
    /// place, a changed one is looked at again, and a NAT server removed stays a known address.
    #[test]
    fn index_carried_over_a_change() {
        let specs = |text: &str| Config::parse(text).unwrap().validate().unwrap().services;
        let old = ServiceTable::new(1, specs(&nat_config(1)), None).unwrap();
        let before = NatIndex::new(&old);
        // A FullNAT service first; the TCP service (NAT) shared one place on; the UDP service
        // (FullNAT) changed to NAT with one server.
        let first = "[[service]]\nvip = \"10.10.0.100\"\nport = 80\nprotocol = \"tcp\"";
        let added = "[[service]]\nvip = \"10.10.0.101\"\nport = 81\nprotocol = \"tcp\"\n\
                     local_addresses = [\"10.20.0.202\"]\n[[service.real]]\naddress = \"10.20.0.13\"\n\n";
        let udp_reals = "protocol = \"udp\"\nscheduler = \"rr\"\n\
                         local_addresses = [\"10.20.0.200\", \"10.20.0.201\"]\n\
                         [[service.real]]\naddress = \"10.20.0.11\"\n\
                         [[service.real]]\naddress = \"10.20.0.12\"\n";
        let udp_nat = "protocol = \"udp\"\nscheduler = \"rr\"\n\
                       [[service.real]]\naddress = \"10.20.0.14\"\nmode = \"nat\"\n";
        let text = nat_config(1)
            .replacen(first, &format!("{added}{first}"), 1)
            .replacen(udp_reals, udp_nat, 1);
        assert!(text.contains("10.20.0.14") && text.contains("10.10.0.101"));
        let new = ServiceTable::new(2, specs(&text), Some(&old)).unwrap();
        assert!(Arc::ptr_eq(&old.services[0].svc, &new.services[1].svc));
        let old_of = [None, Some(0), Some(1)];
        let x = NatIndex::carried(before, &old, &new, &old_of);
        assert!(!x.service_has_nat(0), "the new service is FullNAT");
        assert!(
            x.service_has_nat(1),
            "the shared TCP service keeps its flag"
        );
        assert!(x.service_has_nat(2), "the changed UDP service is NAT now");
        assert!(x.is_real(RS1) && x.is_real(RS2));
        assert!(x.is_real(Ipv4Addr::new(10, 20, 0, 14)));
        assert!(!x.is_real(Ipv4Addr::new(10, 20, 0, 13)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// The owner is in range and the same whoever computes it; rewriting to the server and the
        /// reply back gives the client exactly its own tuple reversed.
        #[test]
        fn owner_in_range_and_endpoints_round_trip(cip in any::<u32>(), cport in any::<u16>(), n in 1usize..64,
                                                   vip in any::<u32>(), rip in any::<u32>(), rport in any::<u16>()) {
            let o = owner_of_client(Ipv4Addr::from(cip), cport, n);
            prop_assert!(o < n);
            prop_assert_eq!(o, owner_of_client(Ipv4Addr::from(cip), cport, n));
            let client = Tuple::new(Ipv4Addr::from(cip), cport, Ipv4Addr::from(vip), 80, 6);
            let reply = reply_tuple(&client, Ipv4Addr::from(rip), rport);
            let (s, d) = rewrite_endpoints(&client, &reply, Dir::Original);
            prop_assert_eq!((s, d), ((client.src_ip(), cport), (Ipv4Addr::from(rip), rport)));
            // What the server sends back is the reply tuple; it leaves as the client tuple reversed.
            let (s2, d2) = rewrite_endpoints(&client, &reply, Dir::Reply);
            let back = Tuple::new(s2.0, s2.1, d2.0, d2.1, 6);
            prop_assert_eq!(back, client.reversed());
        }
    }

    #[test]
    fn owners_spread_over_workers() {
        let mut n = [0u32; 4];
        for p in 32768..(32768 + 4000) {
            n[owner_of_client(CLIENT_IP, p, 4)] += 1;
        }
        assert!(n.iter().all(|&c| (800..1200).contains(&c)), "{n:?}");
    }
}

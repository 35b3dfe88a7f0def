//! Which worker owns a connection, computed from the client's tuple on any worker, with no lookup.
//!
//! A connection lives in exactly one worker's table, so every one of its packets must reach that
//! worker whatever queue it arrives on. Two rules, one per direction, each computable by whichever
//! worker received the packet:
//!
//! - **Reply direction** (to LIP:lport): `PortLayout::owner_of(lport)` (`laddr::layout`).
//! - **Client direction** (to VIP:vport), this module: the worker whose queue the NIC's RSS picks for
//!   the client's tuple, when the port the client's packets arrive on has RSS (so the fallback
//!   almost never runs there); otherwise a hash of the client's (CIP, cport) ([`owner_of_client`]).
//!   NAT services always use the hash: a NAT reply (RIP:rport -> CIP:cport) carries no VIP, so the
//!   client's address and port are all both directions share.
//!
//! A packet from a client that misses the table of the worker it arrived on is handed to the owner
//! before anything is scheduled: a SYN is scheduled there, a later packet finds its connection there
//! (`Forwarder::handle_with`). This is what keeps a bulk transfer whole when the kernel or the NIC
//! spreads one flow's packets over several queues (af_packet's fanout re-hashes a flow whose socket
//! hash changed after a retransmission timeout; a NIC may hash fragments or some packet types on L3
//! only; a RETA change moves flows). It is also the rule by which a connection learned from elsewhere
//! (HA sync, an ECMP move) is installed into its worker.
//!
//! IPv4 fragments are the one exception to "handed over once": a fragment goes first to its
//! datagram's home worker, which may hand it on to the owner (`crate::frag`).

use crate::laddr::toeplitz::Toeplitz6;
use crate::laddr::{QueueMap, Reta, Toeplitz};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The worker that owns client CIP:cport's connections when no RSS decides (of `n_workers`, at
/// least 1).
///
/// Fibonacci hashing (Knuth, TAOCP 6.4) of the 48-bit (CIP, cport), then the multiply-shift range
/// reduction (Lemire 2019): the high product bits depend on every input bit, so sequential client
/// ports spread over the workers. Not keyed: like the NIC's RSS, a client could aim its flows at
/// one worker, which costs it nothing it could not do with RSS already.
#[inline]
pub fn owner_of_client(cip: Ipv4Addr, cport: u16, n_workers: usize) -> usize {
    let x =
        ((u64::from(u32::from(cip)) << 16) | u64::from(cport)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (((x >> 32) * n_workers as u64) >> 32) as usize
}

/// [`owner_of_client`] for an IPv6 client: the address folded to 64 bits (the xor of its halves)
/// with the port, then the same Fibonacci hashing and range reduction.
#[inline]
pub fn owner_of_client6(cip: std::net::Ipv6Addr, cport: u16, n_workers: usize) -> usize {
    let a = u128::from(cip);
    let folded = (a as u64) ^ ((a >> 64) as u64);
    let x =
        (folded ^ (u64::from(cport) << 48) ^ u64::from(cport)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (((x >> 32) * n_workers as u64) >> 32) as usize
}

/// How one port's NIC spreads received packets over queues (RSS), as far as ownership needs it.
#[derive(Debug)]
pub struct PortRss {
    toeplitz: Toeplitz,
    reta: Reta,
    queues: QueueMap,
    /// Whether the NIC includes the ports in the hash of TCP and of UDP packets (`rss_hf`
    /// `NONFRAG_IPV4_TCP` / `NONFRAG_IPV4_UDP`); otherwise it hashes the addresses only.
    l4_tcp: bool,
    l4_udp: bool,
    /// IPv6: the tables for the key when the NIC hashes IPv6 at all (`with_ipv6`), and whether
    /// it includes the ports of TCP and of UDP (`NONFRAG_IPV6_TCP` / `NONFRAG_IPV6_UDP`).
    toeplitz6: Option<Toeplitz6>,
    l4_tcp6: bool,
    l4_udp6: bool,
}

impl PortRss {
    /// `key`, `reta` as read back from the port; `l4_tcp`/`l4_udp` from its hash fields.
    pub fn new(
        key: &[u8],
        reta: Reta,
        queues: QueueMap,
        l4_tcp: bool,
        l4_udp: bool,
    ) -> Result<PortRss, String> {
        let toeplitz = Toeplitz::new(key).map_err(|e| format!("RSS key: {e:?}"))?;
        queues.check(&reta).map_err(|e| e.to_string())?;
        Ok(PortRss {
            toeplitz,
            reta,
            queues,
            l4_tcp,
            l4_udp,
            toeplitz6: None,
            l4_tcp6: false,
            l4_udp6: false,
        })
    }

    /// The same NIC hashing IPv6 packets with `key` too, with their ports for TCP (`l4_tcp`)
    /// and UDP (`l4_udp`). Without it, or with a key too short for the IPv6 input, IPv6 clients
    /// are owned by hash ([`owner_of_client6`]).
    pub fn with_ipv6(mut self, key: &[u8], l4_tcp: bool, l4_udp: bool) -> PortRss {
        self.toeplitz6 = Toeplitz6::new(key).ok();
        self.l4_tcp6 = l4_tcp;
        self.l4_udp6 = l4_udp;
        self
    }

    /// Whether IPv6 clients are owned by this RSS (`with_ipv6` with a long enough key).
    pub fn hashes_ipv6(&self) -> bool {
        self.toeplitz6.is_some()
    }

    /// The worker polling the queue the NIC gives this packet (`None`: a queue no worker polls).
    #[inline]
    pub fn worker_of(
        &self,
        proto: u8,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        sport: u16,
        dport: u16,
    ) -> Option<usize> {
        let l4 = match proto {
            crate::conn::PROTO_TCP => self.l4_tcp,
            crate::conn::PROTO_UDP => self.l4_udp,
            _ => false,
        };
        let h = if l4 {
            self.toeplitz.hash_ipv4_l4(src, dst, sport, dport)
        } else {
            self.toeplitz.hash_ipv4(src, dst)
        };
        self.queues.worker_of(self.reta.queue_of(h))
    }

    /// [`PortRss::worker_of`] for an IPv6 packet; `None` also when this NIC's IPv6 hashing is
    /// not known (`with_ipv6`).
    #[inline]
    pub fn worker_of6(
        &self,
        proto: u8,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        sport: u16,
        dport: u16,
    ) -> Option<usize> {
        let t = self.toeplitz6.as_ref()?;
        let l4 = match proto {
            crate::conn::PROTO_TCP => self.l4_tcp6,
            crate::conn::PROTO_UDP => self.l4_udp6,
            _ => false,
        };
        let h = if l4 {
            t.hash_ipv6_l4(src, dst, sport, dport)
        } else {
            t.hash_ipv6(src, dst)
        };
        self.queues.worker_of(self.reta.queue_of(h))
    }
}

/// The client-direction ownership rule of one gateway: shared (`Arc`) by every worker.
#[derive(Debug)]
pub struct Owners {
    n_workers: usize,
    /// Per datapath port index: its RSS, if it has usable RSS.
    rss: Vec<Option<PortRss>>,
}

impl Owners {
    /// Ownership by hash only (no port has RSS).
    pub fn hashed(n_workers: usize) -> Owners {
        Owners {
            n_workers: n_workers.max(1),
            rss: Vec::new(),
        }
    }

    /// Ownership by each port's RSS where it has one (index = datapath port), by hash elsewhere.
    pub fn new(n_workers: usize, rss: Vec<Option<PortRss>>) -> Owners {
        Owners {
            n_workers: n_workers.max(1),
            rss,
        }
    }

    pub fn n_workers(&self) -> usize {
        self.n_workers
    }

    /// The owner of the connection of client CIP:cport to VIP:vport whose client packets arrive on
    /// datapath port `port`. `hash_only` (NAT services) ignores RSS.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn of_client(
        &self,
        port: u16,
        hash_only: bool,
        proto: u8,
        cip: Ipv4Addr,
        cport: u16,
        vip: Ipv4Addr,
        vport: u16,
    ) -> usize {
        self.by_rss_else_hash(
            port,
            hash_only,
            |r| r.worker_of(proto, cip, vip, cport, vport),
            |n| owner_of_client(cip, cport, n),
        )
    }

    /// [`Owners::of_client`] for an IPv6 client.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn of_client6(
        &self,
        port: u16,
        hash_only: bool,
        proto: u8,
        cip: Ipv6Addr,
        cport: u16,
        vip: Ipv6Addr,
        vport: u16,
    ) -> usize {
        self.by_rss_else_hash(
            port,
            hash_only,
            |r| r.worker_of6(proto, cip, vip, cport, vport),
            |n| owner_of_client6(cip, cport, n),
        )
    }

    /// The worker port `port`'s RSS gives a packet (`rss`), unless `hash_only`, the port has
    /// none or it names no worker; else `hash` of the number of workers.
    #[inline]
    fn by_rss_else_hash(
        &self,
        port: u16,
        hash_only: bool,
        rss: impl FnOnce(&PortRss) -> Option<usize>,
        hash: impl FnOnce(usize) -> usize,
    ) -> usize {
        if self.n_workers < 2 {
            return 0;
        }
        if !hash_only {
            if let Some(Some(r)) = self.rss.get(usize::from(port)) {
                if let Some(w) = rss(r).filter(|&w| w < self.n_workers) {
                    return w;
                }
            }
        }
        hash(self.n_workers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::laddr::DEFAULT_RSS_KEY;
    use proptest::prelude::*;

    #[test]
    fn hash_owner_is_in_range_and_spreads() {
        let mut seen = [0u32; 3];
        for p in 1024u16..4096 {
            let w = owner_of_client(Ipv4Addr::new(10, 10, 0, 2), p, 3);
            seen[w] += 1;
        }
        // Sequential ports of one client spread evenly (within 5% of a third each).
        for n in seen {
            assert!((n as i64 - 1024).abs() < 52, "{seen:?}");
        }
    }

    #[test]
    fn rss_owner_is_the_queue_the_nic_picks() {
        // Microsoft's verification suite, IPv4 with TCP: 66.9.149.187:2794 -> 161.142.100.80:1766
        // hashes to 0x51ccc178 with the default key.
        let reta = Reta::round_robin(128, 4).unwrap();
        let r = PortRss::new(
            &DEFAULT_RSS_KEY,
            reta.clone(),
            QueueMap::identity(4),
            true,
            false,
        )
        .unwrap();
        let (s, d) = (
            Ipv4Addr::new(66, 9, 149, 187),
            Ipv4Addr::new(161, 142, 100, 80),
        );
        let want = usize::from(reta.queue_of(0x51cc_c178));
        assert_eq!(r.worker_of(6, s, d, 2794, 1766), Some(want));
        // UDP without L4 hashing: the IPv4-only hash 0x323e8fc2 of the same suite.
        let want_l3 = usize::from(reta.queue_of(0x323e_8fc2));
        assert_eq!(r.worker_of(17, s, d, 2794, 1766), Some(want_l3));
    }

    #[test]
    fn rss_owner_of_an_ipv6_client_is_the_queue_the_nic_picks() {
        // Microsoft's verification suite, IPv6: source, destination, the hash with the ports
        // (TCP) and on the addresses only, with the default key.
        let vectors: [(&str, u16, &str, u16, u32, u32); 3] = [
            (
                "3ffe:2501:200:1fff::7",
                2794,
                "3ffe:2501:200:3::1",
                1766,
                0x4020_7d3d,
                0x2cc1_8cd5,
            ),
            (
                "3ffe:501:8::260:97ff:fe40:efab",
                14230,
                "ff02::1",
                4739,
                0xdde5_1bbf,
                0x0f0c_461c,
            ),
            (
                "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
                44251,
                "fe80::200:f8ff:fe21:67cf",
                38024,
                0x02d1_feef,
                0x4b61_e985,
            ),
        ];
        let reta = Reta::round_robin(128, 4).unwrap();
        let rss = || {
            PortRss::new(
                &DEFAULT_RSS_KEY,
                reta.clone(),
                QueueMap::identity(4),
                true,
                true,
            )
            .unwrap()
        };
        let with6 = || rss().with_ipv6(&DEFAULT_RSS_KEY, true, false);
        let mut disagree = 0;
        for (s, sp, d, dp, tcp, l3) in vectors {
            let (s, d): (Ipv6Addr, Ipv6Addr) = (s.parse().unwrap(), d.parse().unwrap());
            let want = usize::from(reta.queue_of(tcp));
            assert_eq!(with6().worker_of6(6, s, d, sp, dp), Some(want));
            // UDP without L4 hashing: the addresses only.
            let want_l3 = usize::from(reta.queue_of(l3));
            assert_eq!(with6().worker_of6(17, s, d, sp, dp), Some(want_l3));
            // Whose IPv6 hashing is not known: none, and the owners fall back to the hash.
            assert_eq!(rss().worker_of6(6, s, d, sp, dp), None);
            let hashed = owner_of_client6(s, sp, 4);
            let owners = Owners::new(4, vec![Some(rss())]);
            assert_eq!(owners.of_client6(0, false, 6, s, sp, d, dp), hashed);
            let owners = Owners::new(4, vec![Some(with6())]);
            assert_eq!(owners.of_client6(0, false, 6, s, sp, d, dp), want);
            assert_eq!(owners.of_client6(0, true, 6, s, sp, d, dp), hashed, "NAT");
            disagree += usize::from(hashed != want);
        }
        assert!(disagree > 0, "a vector where RSS and the hash disagree");
    }

    proptest! {
        /// Whichever worker computes it, and whatever port of the client's flow it sees, the owner
        /// is the same and names a worker.
        #[test]
        fn every_worker_agrees_on_the_owner(
            key in proptest::collection::vec(any::<u8>(), 40),
            reta_log in 0u32..10,
            n in 1usize..8,
            with_rss in any::<bool>(),
            hash_only in any::<bool>(),
            tcp in any::<bool>(),
            cip in any::<u32>(), cport in any::<u16>(), vip in any::<u32>(), vport in any::<u16>(),
        ) {
            let reta = Reta::round_robin(1 << reta_log, n as u16).unwrap();
            let build = || {
                let rss = with_rss.then(|| {
                    PortRss::new(&key, reta.clone(), QueueMap::identity(n as u16), true, true).unwrap()
                });
                Owners::new(n, vec![rss])
            };
            // Each worker builds its own view from the same configuration.
            let views: Vec<Owners> = (0..n).map(|_| build()).collect();
            let proto = if tcp { 6 } else { 17 };
            let (cip, vip) = (Ipv4Addr::from(cip), Ipv4Addr::from(vip));
            let w0 = views[0].of_client(0, hash_only, proto, cip, cport, vip, vport);
            prop_assert!(w0 < n);
            for v in &views {
                prop_assert_eq!(v.of_client(0, hash_only, proto, cip, cport, vip, vport), w0);
            }
            if with_rss && !hash_only {
                // With RSS the owner is the worker the NIC delivers the client's packets to.
                let h = Toeplitz::new(&key).unwrap().hash_ipv4_l4(cip, vip, cport, vport);
                prop_assert_eq!(w0, usize::from(reta.queue_of(h)));
            } else {
                prop_assert_eq!(w0, owner_of_client(cip, cport, n));
            }
        }
    }
}

//! Playing the NIC's RSS: the queue a frame would land on, from the Toeplitz hash of its IPv4/L4
//! tuple and a redirection table (Microsoft "RSS Hashing Functions"; DPDK `reta[hash % size]`).
//!
//! memif has no RSS. The generator stands in for the NIC: it puts each frame on the memif queue that
//! a NIC with the same key and RETA would pick, so the gateway's per-queue workers see the split a
//! hardware port would give them, and its RSS-aware local-port choice (laddr) is exercised for real.
//! The hash and the table are the gateway's own (`laddr::Toeplitz`, `laddr::Reta`): the generator
//! must agree with them bit for bit.

use gateway::laddr::{Reta, Toeplitz, DEFAULT_RSS_KEY};
use std::net::Ipv4Addr;

/// RETA size the generator assumes by default (ixgbe/i40e VFs use 64; 128 and 512 are common too).
pub const DEFAULT_RETA_SIZE: usize = 128;

/// Maps a tuple to a queue as a NIC with `key` and a round-robin RETA over `queues` queues would.
#[derive(Debug, Clone)]
pub struct QueueChooser {
    toeplitz: Toeplitz,
    reta: Reta,
    single: bool,
}

impl QueueChooser {
    /// A chooser over `queues` queues with the default (Microsoft/Intel) key and a RETA of
    /// `reta_size` entries (a power of two), entry i -> queue i % queues, as drivers program it.
    pub fn new(queues: u16, reta_size: usize) -> Result<Self, String> {
        Self::with_key(&DEFAULT_RSS_KEY, queues, reta_size)
    }

    pub fn with_key(key: &[u8], queues: u16, reta_size: usize) -> Result<Self, String> {
        let toeplitz = Toeplitz::new(key).map_err(|e| format!("RSS key: {e:?}"))?;
        let reta = Reta::round_robin(reta_size, queues).map_err(|e| e.to_string())?;
        Ok(QueueChooser {
            toeplitz,
            reta,
            single: queues <= 1,
        })
    }

    /// The queue for a frame from `src:sport` to `dst:dport` (TCP or UDP over IPv4).
    #[inline]
    pub fn queue(&self, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> u16 {
        if self.single {
            return 0;
        }
        self.reta
            .queue_of(self.toeplitz.hash_ipv4_l4(src, dst, sport, dport))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway::laddr::toeplitz_hash;
    use proptest::prelude::*;

    /// Microsoft's published verification vector ("IPv4 with TCP", first row): 66.9.149.187:2794 ->
    /// 161.142.100.80:1766 hashes to 0x51ccc178 with the default key.
    #[test]
    fn microsoft_vector_picks_the_reta_entry_of_its_hash() {
        let c = QueueChooser::new(4, 128).unwrap();
        let src = Ipv4Addr::new(66, 9, 149, 187);
        let dst = Ipv4Addr::new(161, 142, 100, 80);
        let q = c.queue(src, dst, 2794, 1766);
        assert_eq!(q as u32, (0x51cc_c178u32 % 128) % 4);
    }

    #[test]
    fn one_queue_is_always_queue_zero() {
        let c = QueueChooser::new(1, 128).unwrap();
        assert_eq!(
            c.queue(Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(5, 6, 7, 8), 1, 2),
            0
        );
    }

    #[test]
    fn bad_reta_size_is_refused() {
        assert!(QueueChooser::new(2, 100).is_err());
        assert!(QueueChooser::new(0, 128).is_err());
    }

    /// The gateway side of the contract: `rss_emulate_reta` takes a power of two up to 512, and the
    /// bench config's ports parse with it.
    #[test]
    fn gateway_accepts_the_rss_emulation_pktgen_plays() {
        let base = include_str!("../conf/bench.toml");
        let with = |v: &str| {
            base.replace(
                "csum_offload = false",
                &format!("csum_offload = false\nrss_emulate_reta = {v}"),
            )
        };
        let cfg = gateway::config::Config::parse(&with("128")).expect("valid");
        assert!(cfg
            .ports
            .iter()
            .all(|p| p.rss_emulate_reta == usize_to_u16(DEFAULT_RETA_SIZE)));
        for bad in ["100", "1024"] {
            let e = gateway::config::Config::parse(&with(bad))
                .unwrap_err()
                .to_string();
            assert!(e.contains("rss_emulate_reta"), "{bad}: {e}");
        }
        assert!(
            gateway::config::Config::parse(base).is_ok_and(|c| c.ports[0].rss_emulate_reta == 0)
        );
    }

    fn usize_to_u16(v: usize) -> u16 {
        u16::try_from(v).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// The fast path agrees with the bitwise reference hash and a plain RETA lookup.
        #[test]
        fn agrees_with_reference(s in any::<u32>(), d in any::<u32>(), sp in any::<u16>(), dp in any::<u16>(),
                                 queues in 1u16..8) {
            let c = QueueChooser::new(queues, 64).unwrap();
            let (src, dst) = (Ipv4Addr::from(s), Ipv4Addr::from(d));
            let mut input = Vec::new();
            input.extend_from_slice(&src.octets());
            input.extend_from_slice(&dst.octets());
            input.extend_from_slice(&sp.to_be_bytes());
            input.extend_from_slice(&dp.to_be_bytes());
            let h = toeplitz_hash(&DEFAULT_RSS_KEY, &input);
            let want = if queues == 1 { 0 } else { ((h % 64) % u32::from(queues)) as u16 };
            prop_assert_eq!(c.queue(src, dst, sp, dp), want);
        }
    }
}

//! Source hashing (ip_vs_sh.c) and destination hashing (ip_vs_dh.c): static bucket tables.
//!
//! Both fill a power-of-two table by walking the server list: `dh` gives each server one bucket per
//! turn; `sh` gives each server `weight` consecutive buckets per turn (a weight-0 server still gets
//! one, and is then skipped at lookup as unavailable). IPVS's tables have 256 buckets
//! (`CONFIG_IP_VS_{SH,DH}_TAB_BITS = 8`); with more than 256 servers the table grows to the next power
//! of two so every server gets a bucket. The hash functions are the kernel's, so for up to 256
//! servers a client maps exactly as it would under IPVS.

use super::hash::{dh_hash, hash_32};

/// IPVS's default table size, 2^8.
const MIN_BITS: u32 = 8;

/// A bucket table: bucket → real server index. Empty when the service has no server.
#[derive(Clone, Debug, Default)]
pub(crate) struct BucketTable {
    bits: u32,
    buckets: Box<[u16]>,
}

fn bits_for(n: usize) -> u32 {
    MIN_BITS.max(n.next_power_of_two().trailing_zeros())
}

impl BucketTable {
    /// `ip_vs_sh_reassign`: `weights[i]` consecutive buckets per turn (at least one).
    pub(crate) fn sh(weights: &[u32]) -> Self {
        Self::fill(weights.len(), |i| weights[i].max(1))
    }

    /// `ip_vs_dh_reassign`: one bucket per turn.
    pub(crate) fn dh(n: usize) -> Self {
        Self::fill(n, |_| 1)
    }

    fn fill(n: usize, turns: impl Fn(usize) -> u32) -> Self {
        if n == 0 {
            return BucketTable::default();
        }
        let bits = bits_for(n);
        let mut buckets = Vec::with_capacity(1 << bits);
        let (mut i, mut d_count) = (0usize, 0u32);
        while buckets.len() < 1 << bits {
            buckets.push(i as u16);
            d_count += 1;
            if d_count >= turns(i) {
                i = (i + 1) % n;
                d_count = 0;
            }
        }
        BucketTable {
            bits,
            buckets: buckets.into_boxed_slice(),
        }
    }

    fn mask(&self) -> u32 {
        (1u32 << self.bits) - 1
    }

    /// `ip_vs_sh_hashkey(addr, port, offset)`.
    fn sh_bucket(&self, addr: u32, port: u16, offset: u32) -> usize {
        (offset.wrapping_add(hash_32(u32::from(port).wrapping_add(addr), self.bits)) & self.mask())
            as usize
    }

    /// `ip_vs_sh_get` / `ip_vs_sh_get_fallback`. `port` is 0 unless `sh-port` is set.
    pub(crate) fn sh_pick(
        &self,
        addr: u32,
        port: u16,
        fallback: bool,
        available: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let first = usize::from(*self.buckets.get(self.sh_bucket(addr, port, 0))?);
        if available(first) {
            return Some(first);
        }
        if !fallback {
            return None;
        }
        // "loop around the table starting from ihash": the kernel feeds (offset + ihash) back in as
        // the offset, which still visits every bucket once.
        let size = self.buckets.len() as u32;
        let ihash = self.sh_bucket(addr, port, 0) as u32;
        (0..size)
            .map(|off| usize::from(self.buckets[self.sh_bucket(addr, port, (off + ihash) % size)]))
            .find(|&i| available(i))
    }

    /// `ip_vs_dh_schedule`: the bucket of the destination address, if its server is available.
    pub(crate) fn dh_pick(&self, daddr: u32, available: impl Fn(usize) -> bool) -> Option<usize> {
        let i = usize::from(*self.buckets.get(dh_hash(daddr, self.mask()) as usize)?);
        available(i).then_some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sh_fills_by_weight_in_list_order() {
        let t = BucketTable::sh(&[2, 0, 3]);
        assert_eq!(t.buckets.len(), 256);
        assert_eq!(&t.buckets[..12], &[0, 0, 1, 2, 2, 2, 0, 0, 1, 2, 2, 2]);
    }

    #[test]
    fn dh_round_robin_and_growth() {
        let t = BucketTable::dh(3);
        assert_eq!(&t.buckets[..6], &[0, 1, 2, 0, 1, 2]);
        let big = BucketTable::dh(4096);
        assert_eq!(big.buckets.len(), 4096);
        let mut seen = vec![false; 4096];
        for &b in big.buckets.iter() {
            seen[usize::from(b)] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert!(BucketTable::dh(0).dh_pick(1, |_| true).is_none());
    }

    #[test]
    fn sh_unavailable_without_and_with_fallback() {
        let t = BucketTable::sh(&[1, 1, 1]);
        let addr = 0xc0a8_0001;
        let home = t.sh_pick(addr, 0, false, |_| true).unwrap();
        assert_eq!(t.sh_pick(addr, 0, false, |i| i != home), None);
        let other = t.sh_pick(addr, 0, true, |i| i != home).unwrap();
        assert_ne!(other, home);
        assert_eq!(t.sh_pick(addr, 0, true, |_| false), None);
    }

    #[test]
    fn sh_port_changes_the_key() {
        let t = BucketTable::sh(&[1; 16]);
        let addr = 0x0a01_0203;
        let picks: std::collections::HashSet<_> = (1000..1100u16)
            .map(|p| t.sh_pick(addr, p, false, |_| true).unwrap())
            .collect();
        assert!(picks.len() > 4, "ports should spread: {picks:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn sh_dh_stable_for_a_key_while_the_set_is_unchanged(
            addr in any::<u32>(), port in any::<u16>(), n in 1usize..300
        ) {
            let w: Vec<u32> = (0..n as u32).map(|i| i % 5 + 1).collect();
            let a = BucketTable::sh(&w);
            let b = BucketTable::sh(&w);
            let first = a.sh_pick(addr, port, false, |_| true);
            prop_assert!(first.is_some());
            for _ in 0..3 {
                prop_assert_eq!(a.sh_pick(addr, port, false, |_| true), first);
                prop_assert_eq!(b.sh_pick(addr, port, false, |_| true), first);
            }
            let d = BucketTable::dh(n);
            let home = d.dh_pick(addr, |_| true);
            prop_assert!(home.is_some());
            prop_assert_eq!(BucketTable::dh(n).dh_pick(addr, |_| true), home);
        }
    }
}

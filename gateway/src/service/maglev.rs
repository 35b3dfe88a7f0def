//! Maglev hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load Balancer",
//! NSDI'16, §3.4), weighted.
//!
//! Each server `i` has a permutation of the `M` slots (`M` prime): `offset_i + j * skip_i mod M`, with
//! `offset` and `skip` hashed from its identity ([`RsKey`]), so a server's preferences do not depend on
//! the other servers. Servers take turns claiming their next preferred free slot until the table is
//! full. A server that leaves frees only its slots plus the few claims that cascade from them, so about
//! `1/N` of the keys move (the paper's Figure 12).
//!
//! Weights: the paper leaves them open; IPVS (ip_vs_mh.c) gives a server `weight/gcd` consecutive
//! turns per round after shifting weights down to 6 bits, which rounds shares coarsely. Here server
//! `i`'s `k`-th claim happens at time `k / w_i`, claims taken in time order (ties in list order), so
//! servers claim at rates proportional to their weights throughout the fill and each ends within a
//! slot or two of `M * w_i / Σw`. With equal weights this is exactly the paper's round-robin fill.

use super::hash::keyed;
use super::key::RsKey;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// One pending claim of the population: server `idx` makes its `k`-th claim at time `k / w`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Claim {
    k: u64,
    w: u64,
    idx: u32,
}

impl Ord for Claim {
    /// Reversed (BinaryHeap is a max-heap): the earliest time, then the lowest index, is greatest.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.k * self.w)
            .cmp(&(self.k * o.w))
            .then_with(|| o.idx.cmp(&self.idx))
    }
}

impl PartialOrd for Claim {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// A populated Maglev lookup table: slot → real server index.
#[derive(Clone, Default)]
pub struct MaglevTable {
    lookup: Box<[u16]>,
}

impl std::fmt::Debug for MaglevTable {
    /// The size only: 65537 slots are not worth printing.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaglevTable")
            .field("len", &self.lookup.len())
            .finish()
    }
}

/// Domain separation of the three hash functions derived from one seed.
const OFFSET: u64 = 1;
const SKIP: u64 = 2;

/// Each server's permutation of the `m` slots: its first preferred slot (`offset`) and its stride
/// (`skip`), hashed from its identity and `seed`.
fn permutations(keys: &[RsKey], m: u64, seed: u64) -> (Vec<u64>, Vec<u64>) {
    let (s_off, s_skip) = (keyed(seed, OFFSET), keyed(seed, SKIP));
    let offset = keys.iter().map(|k| keyed(s_off, k.as_u64()) % m).collect();
    let skip = keys
        .iter()
        .map(|k| keyed(s_skip, k.as_u64()) % (m - 1) + 1)
        .collect();
    (offset, skip)
}

impl MaglevTable {
    /// Populates a table of `size` slots (a prime larger than `keys.len()`, at most 65536 servers)
    /// for the servers `keys` with `weights` (same order). Servers of weight 0 get no slot; with no
    /// weighted server the table is empty and every lookup misses.
    pub fn build(keys: &[RsKey], weights: &[u32], size: u32, seed: u64) -> Self {
        let m = u64::from(size);
        if m < 2 || keys.len() != weights.len() || !weights.iter().any(|&w| w > 0) {
            return MaglevTable::default();
        }
        // next[i]: server i's next preferred slot; skip[i]: its stride.
        let (mut next, skip) = permutations(keys, m, seed);

        // Which slots are taken, a bit each: 8 KiB at 65,537 slots, which stay in the L1 cache
        // through the fill's random probes where a table of `u32` (256 KiB) did not (2.1 ms a
        // build of 10 servers before, perf/RESULTS.md "Maglev tables built faster").
        let mut taken = vec![0u64; (size as usize).div_ceil(64)];
        let mut table = vec![0u16; size as usize];
        // Server `i` claims its next preferred free slot. m is prime and 1 <= skip < m, so the walk
        // visits every slot: a free one is found.
        let mut claim = |i: usize| loop {
            let slot = next[i] as usize;
            // next < m and skip < m: one conditional subtraction instead of a division.
            let n = next[i] + skip[i];
            next[i] = if n >= m { n - m } else { n };
            let (word, bit) = (slot / 64, 1u64 << (slot % 64));
            if taken[word] & bit == 0 {
                taken[word] |= bit;
                // At most 65,536 servers: an index fits.
                table[slot] = i as u16;
                return;
            }
        };
        let weighted: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0).collect();
        let mut filled = 0u64;
        if weighted.iter().all(|&i| weights[i] == weights[weighted[0]]) {
            // Equal weights: the claims' times k / w tie by rounds, and ties go in list order.
            'fill: loop {
                for &i in &weighted {
                    if filled == m {
                        break 'fill;
                    }
                    claim(i);
                    filled += 1;
                }
            }
        } else {
            let mut heap: BinaryHeap<Claim> = weighted
                .iter()
                .map(|&i| Claim {
                    k: 1,
                    w: u64::from(weights[i]),
                    idx: i as u32,
                })
                .collect();
            // The earliest claim made, its next one takes its place at the top: one sift down
            // where a pop and a push took two.
            while filled < m {
                let Some(mut c) = heap.peek_mut() else { break };
                claim(c.idx as usize);
                filled += 1;
                c.k += 1;
            }
        }
        MaglevTable {
            lookup: table.into_boxed_slice(),
        }
    }

    /// Number of slots (0 when no server had weight).
    pub fn len(&self) -> usize {
        self.lookup.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lookup.is_empty()
    }

    /// The server of the slot `hash` falls in.
    pub fn lookup(&self, hash: u64) -> Option<usize> {
        let n = self.lookup.len() as u64;
        if n == 0 {
            return None;
        }
        Some(usize::from(self.lookup[(hash % n) as usize]))
    }

    /// Slots held by each of `n` servers.
    pub fn shares(&self, n: usize) -> Vec<u32> {
        let mut s = vec![0u32; n];
        for &i in self.lookup.iter() {
            if let Some(c) = s.get_mut(usize::from(i)) {
                *c += 1;
            }
        }
        s
    }

    /// `mh` scheduling of a key hash: the slot's server if `available`; with `fallback`
    /// (`mh-fallback`), otherwise the first available among a few rehashed slots and then among all
    /// servers from a hashed start. Every step is a function of the hash, so all workers agree.
    /// (IPVS rehashes up to `M` times; bounding the rehashes keeps a pick O(n) when all are down.)
    pub fn pick(
        &self,
        hash: u64,
        n: usize,
        fallback: bool,
        available: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let first = self.lookup(hash)?;
        if available(first) {
            return Some(first);
        }
        if !fallback {
            return None;
        }
        const REHASHES: u64 = 16;
        for r in 1..=REHASHES {
            let i = self.lookup(keyed(hash, r))?;
            if available(i) {
                return Some(i);
            }
        }
        let start = (hash % n.max(1) as u64) as usize;
        (0..n).map(|k| (start + k) % n).find(|&i| available(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::config::DEFAULT_HASH_SEED as SEED;
    use std::net::Ipv4Addr;

    fn keys(n: usize) -> Vec<RsKey> {
        (0..n)
            .map(|i| RsKey {
                addr: Ipv4Addr::from(0x0a00_0000 + i as u32).into(),
                port: 80,
            })
            .collect()
    }

    fn assert_shares_within(weights: &[u32], size: u32, tolerance: f64) {
        let t = MaglevTable::build(&keys(weights.len()), weights, size, SEED);
        assert_eq!(t.len(), size as usize);
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        for (i, &s) in t.shares(weights.len()).iter().enumerate() {
            let want = f64::from(size) * f64::from(weights[i]) / total as f64;
            assert!(
                (f64::from(s) - want).abs() <= want * tolerance,
                "server {i} weight {} has {s} slots, want {want:.1}",
                weights[i]
            );
        }
    }

    #[test]
    fn equal_weights_share_evenly() {
        assert_shares_within(&[1; 10], 65_537, 0.01);
        assert_shares_within(&[7; 100], 65_537, 0.01);
    }

    #[test]
    fn weighted_shares_within_one_percent() {
        let w: Vec<u32> = (1..=20).collect();
        assert_shares_within(&w, 65_537, 0.01);
        assert_shares_within(&[1, 2], 65_537, 0.01);
        assert_shares_within(&[60_000, 3000, 1000], 65_537, 0.01);
    }

    #[test]
    fn zero_weight_gets_nothing() {
        let t = MaglevTable::build(&keys(3), &[1, 0, 1], 251, SEED);
        assert_eq!(t.shares(3)[1], 0);
        assert!(MaglevTable::build(&keys(2), &[0, 0], 251, SEED).is_empty());
        assert_eq!(MaglevTable::default().lookup(5), None);
    }

    /// Fraction of slots whose server (by identity) differs.
    fn moved(a: &MaglevTable, ka: &[RsKey], b: &MaglevTable, kb: &[RsKey]) -> f64 {
        let diff = (0..a.len() as u64)
            .filter(|&h| ka[a.lookup(h).unwrap()] != kb[b.lookup(h).unwrap()])
            .count();
        diff as f64 / a.len() as f64
    }

    #[test]
    fn removing_one_of_n_moves_at_most_one_nth_plus_one_percent() {
        for n in [5usize, 10, 50, 200] {
            let ka = keys(n);
            let a = MaglevTable::build(&ka, &vec![1; n], 65_537, SEED);
            for gone in [0, n / 2, n - 1] {
                let mut kb = ka.clone();
                kb.remove(gone);
                let b = MaglevTable::build(&kb, &vec![1; n - 1], 65_537, SEED);
                let f = moved(&a, &ka, &b, &kb);
                assert!(
                    f <= 1.0 / n as f64 + 0.01,
                    "n={n} removed {gone}: moved {f}"
                );
            }
        }
    }

    #[test]
    fn adding_one_moves_little() {
        let n = 20;
        let kb = keys(n + 1);
        let ka = kb[..n].to_vec();
        let a = MaglevTable::build(&ka, &vec![1; n], 65_537, SEED);
        let b = MaglevTable::build(&kb, &vec![1; n + 1], 65_537, SEED);
        let f = moved(&a, &ka, &b, &kb);
        assert!(f <= 1.0 / (n + 1) as f64 + 0.01, "moved {f}");
    }

    #[test]
    fn same_input_same_table_and_order_independent_preferences() {
        let k = keys(8);
        let a = MaglevTable::build(&k, &[1; 8], 4093, SEED);
        let b = MaglevTable::build(&k, &[1; 8], 4093, SEED);
        assert_eq!(a.lookup, b.lookup);
        let c = MaglevTable::build(&k, &[1; 8], 4093, SEED ^ 1);
        assert_ne!(a.lookup, c.lookup);
    }

    #[test]
    fn pick_with_and_without_fallback() {
        let t = MaglevTable::build(&keys(4), &[1; 4], 251, SEED);
        let h = 12_345u64;
        let home = t.lookup(h).unwrap();
        assert_eq!(t.pick(h, 4, false, |_| true), Some(home));
        assert_eq!(t.pick(h, 4, false, |i| i != home), None);
        let alt = t.pick(h, 4, true, |i| i != home).unwrap();
        assert_ne!(alt, home);
        // Deterministic.
        assert_eq!(t.pick(h, 4, true, |i| i != home), Some(alt));
        assert_eq!(t.pick(h, 4, true, |_| false), None);
        // Only one left: found even if no rehash lands on it.
        assert_eq!(t.pick(h, 4, true, |i| i == 3), Some(3));
    }

    /// The fill as first written here: claims taken from a heap by time `k / w`, each walking its
    /// server's permutation over a table of `u32` with a free mark. [`MaglevTable::build`] must
    /// fill the same table, or servers would move on an upgrade (and two boxes of a pair of
    /// different versions disagree).
    fn reference(keys: &[RsKey], weights: &[u32], size: u32, seed: u64) -> Vec<u16> {
        let m = u64::from(size);
        let (mut next, skip) = permutations(keys, m, seed);
        let mut heap: BinaryHeap<Claim> = (0..keys.len())
            .filter(|&i| weights[i] > 0)
            .map(|i| Claim {
                k: 1,
                w: u64::from(weights[i]),
                idx: i as u32,
            })
            .collect();
        let mut table = vec![u32::MAX; size as usize];
        for _ in 0..m {
            let mut c = heap.pop().unwrap();
            let i = c.idx as usize;
            loop {
                let slot = next[i] as usize;
                next[i] = (next[i] + skip[i]) % m;
                if table[slot] == u32::MAX {
                    table[slot] = c.idx;
                    break;
                }
            }
            c.k += 1;
            heap.push(c);
        }
        table.into_iter().map(|i| i as u16).collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Equal weights (the round-robin fill) and unequal ones (the heap), zeros among them.
        #[test]
        fn build_fills_as_the_reference(
            weights in proptest::collection::vec(0u32..4, 1..12),
            equal in proptest::bool::ANY,
            size in proptest::sample::select(vec![251u32, 509, 1021, 4093]),
            seed in proptest::num::u64::ANY,
        ) {
            let weights: Vec<u32> = if equal {
                weights.iter().map(|&w| u32::from(w > 0)).collect()
            } else {
                weights
            };
            proptest::prop_assume!(weights.iter().any(|&w| w > 0));
            let k = keys(weights.len());
            let t = MaglevTable::build(&k, &weights, size, seed);
            proptest::prop_assert_eq!(&t.lookup[..], &reference(&k, &weights, size, seed)[..]);
        }
    }

    #[test]
    fn build_fills_as_the_reference_at_the_default_size() {
        let k = keys(10);
        for weights in [vec![1; 10], (1..=10).collect()] {
            let t = MaglevTable::build(&k, &weights, 65_537, SEED);
            assert!(t.lookup[..] == reference(&k, &weights, 65_537, SEED)[..]);
        }
    }
}

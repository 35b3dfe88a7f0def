//! The order in which a worker's pool offers its LIPs to a new connection: the one with the fewest
//! live connections first, ties to the first configured (`LaddrPool::allocate`).
//!
//! A binary min-heap of LIP indices keyed by (live connections, index), with each index's place
//! in it: the least used is at the root, and a count that moves by one moves its LIP by a few
//! swaps along one path (`O(log n)`). A scan of every LIP at each SYN cost about 10 instructions
//! a LIP (165 of a SYN's 2,676 with 16 LIPs; `perf/bench` configures 32, and a pool sized for
//! millions of connections needs more).
//!
//! The caller keeps the counts it reports (`LaddrPool::in_use`) and tells the heap of each step.

/// The active LIPs as a heap of their keys.
#[derive(Debug, Clone)]
pub(super) struct ByUse {
    /// The heap of keys, `(live connections << 32) | index`: fewer connections first, then the
    /// LIP configured first (distinct for distinct LIPs, so that the root is the one a scan
    /// would find). A parent's key is below each child's. The counts are kept here too, beside
    /// the caller's, so that a comparison reads one array.
    heap: Vec<u64>,
    /// Where each LIP index is in `heap`.
    at: Vec<u32>,
}

const ONE: u64 = 1 << 32;

impl ByUse {
    /// The heap of `counts.len()` LIPs with these counts.
    pub(super) fn new(counts: &[u32]) -> ByUse {
        let mut by_use = ByUse {
            heap: Vec::with_capacity(counts.len()),
            at: Vec::with_capacity(counts.len()),
        };
        by_use.rebuild(counts);
        by_use
    }

    /// The least used LIP's index (0 when there is none).
    #[inline]
    pub(super) fn least(&self) -> usize {
        self.heap.first().map_or(0, |&k| k as u32 as usize)
    }

    /// Orders the heap again from these counts (Floyd's heap construction).
    pub(super) fn rebuild(&mut self, counts: &[u32]) {
        self.heap.clear();
        self.heap.extend(
            counts
                .iter()
                .enumerate()
                .map(|(i, &c)| (u64::from(c) << 32) | i as u64),
        );
        self.at.clear();
        self.at.extend(0..counts.len() as u32);
        for p in (0..self.heap.len() / 2).rev() {
            self.sift_down(p);
        }
    }

    /// LIP `i` has one more connection: it moves away from the root.
    #[inline]
    pub(super) fn raised(&mut self, i: usize) {
        if let Some(&p) = self.at.get(i) {
            let p = p as usize;
            // As the caller's count, saturated (never reached: 2^32 connections).
            if self.heap[p] >> 32 < u64::from(u32::MAX) {
                self.heap[p] += ONE;
                self.sift_down(p);
            }
        }
    }

    /// LIP `i` has one connection fewer: it moves toward the root.
    #[inline]
    pub(super) fn lowered(&mut self, i: usize) {
        if let Some(&p) = self.at.get(i) {
            let p = p as usize;
            if self.heap[p] >= ONE {
                self.heap[p] -= ONE;
                self.sift_up(p);
            }
        }
    }

    fn sift_down(&mut self, mut p: usize) {
        let heap = &mut self.heap[..];
        let k = heap[p];
        loop {
            let l = 2 * p + 1;
            let Some(&kl) = heap.get(l) else { break };
            let (c, kc) = match heap.get(l + 1) {
                Some(&kr) if kr < kl => (l + 1, kr),
                _ => (l, kl),
            };
            if kc >= k {
                break;
            }
            heap[p] = kc;
            self.at[kc as u32 as usize] = p as u32;
            p = c;
        }
        heap[p] = k;
        self.at[k as u32 as usize] = p as u32;
    }

    fn sift_up(&mut self, mut p: usize) {
        let heap = &mut self.heap[..];
        let k = heap[p];
        while p > 0 {
            let parent = (p - 1) / 2;
            let kp = heap[parent];
            if kp <= k {
                break;
            }
            heap[p] = kp;
            self.at[kp as u32 as usize] = p as u32;
            p = parent;
        }
        heap[p] = k;
        self.at[k as u32 as usize] = p as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the heap replaces: the first index with the fewest connections.
    fn scan(counts: &[u32]) -> usize {
        counts
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| **c)
            .map_or(0, |(i, _)| i)
    }

    #[test]
    fn equal_counts_go_in_configuration_order() {
        let mut counts = vec![0u32; 5];
        let mut h = ByUse::new(&counts);
        for want in [0, 1, 2, 3, 4, 0, 1] {
            let i = h.least();
            assert_eq!(i, want);
            counts[i] += 1;
            h.raised(i);
        }
    }

    #[test]
    fn a_freed_lip_comes_first_again() {
        let mut counts = vec![3u32, 3, 3];
        let mut h = ByUse::new(&counts);
        counts[2] -= 1;
        h.lowered(2);
        assert_eq!(h.least(), 2);
        counts[0] = 0;
        h.rebuild(&counts);
        assert_eq!(h.least(), 0);
    }

    proptest! {
        /// After any run of single steps up and down (and whole rebuilds), the root is the LIP
        /// a scan finds.
        #[test]
        fn the_root_is_what_a_scan_finds(
            start in prop::collection::vec(0u32..4, 1..40),
            steps in prop::collection::vec((any::<u8>(), 0u8..3), 0..300),
        ) {
            let mut counts = start;
            let mut h = ByUse::new(&counts);
            prop_assert_eq!(h.least(), scan(&counts));
            for (which, how) in steps {
                let i = usize::from(which) % counts.len();
                match how {
                    0 => {
                        counts[i] += 1;
                        h.raised(i);
                    }
                    1 if counts[i] > 0 => {
                        counts[i] -= 1;
                        h.lowered(i);
                    }
                    1 => {}
                    _ => {
                        counts[i] /= 2;
                        h.rebuild(&counts);
                    }
                }
                prop_assert_eq!(h.least(), scan(&counts));
            }
        }
    }
}

//! The order in which a worker's pool offers its LIPs to a new connection: the one with the fewest
//! live connections first, ties to the first configured (`LaddrPool::allocate`).
//!
//! A binary min-heap of LIP indices keyed by (live connections, index), with each index's place
//! in it: the least used is at the root, and a count that moves by one moves its LIP by a few
//! swaps along one path (`O(log n)`). A scan of every LIP at each SYN cost about 10 instructions
//! a LIP (165 of a SYN's 2,676 with 16 LIPs; `perf/bench` configures 32, and a pool sized for
//! millions of connections needs more).
//!
//! The counts stay the caller's (`Lip::in_use`, reported per LIP): every function here is handed
//! them and must be told of each change.

/// Indices `0..n` of the active LIPs, as a heap over their counts.
#[derive(Debug, Clone)]
pub(super) struct ByUse {
    /// The heap: `heap[0]` is the least used; a parent's key is below each child's.
    heap: Vec<u32>,
    /// Where each LIP index is in `heap`.
    at: Vec<u32>,
}

/// The heap's order: fewer connections first, then the LIP configured first. Distinct for
/// distinct LIPs, so that the order is total and the root is the one a scan would find.
#[inline]
fn key(counts: &[u32], i: u32) -> u64 {
    (u64::from(counts[i as usize]) << 32) | u64::from(i)
}

impl ByUse {
    /// The heap of `counts.len()` LIPs with these counts.
    pub(super) fn new(counts: &[u32]) -> ByUse {
        let n = counts.len() as u32;
        let mut by_use = ByUse {
            heap: (0..n).collect(),
            at: (0..n).collect(),
        };
        by_use.rebuild(counts);
        by_use
    }

    /// The least used LIP's index (0 when there is none).
    #[inline]
    pub(super) fn least(&self) -> usize {
        self.heap.first().map_or(0, |&i| i as usize)
    }

    /// Orders the heap again after any number of counts changed (Floyd's heap construction).
    pub(super) fn rebuild(&mut self, counts: &[u32]) {
        for p in (0..self.heap.len() / 2).rev() {
            self.sift_down(counts, p);
        }
    }

    /// LIP `i`'s count went up: it moves away from the root.
    #[inline]
    pub(super) fn raised(&mut self, counts: &[u32], i: usize) {
        if let Some(&p) = self.at.get(i) {
            self.sift_down(counts, p as usize);
        }
    }

    /// LIP `i`'s count went down: it moves toward the root.
    #[inline]
    pub(super) fn lowered(&mut self, counts: &[u32], i: usize) {
        if let Some(&p) = self.at.get(i) {
            self.sift_up(counts, p as usize);
        }
    }

    fn place(&mut self, p: usize, i: u32) {
        self.heap[p] = i;
        self.at[i as usize] = p as u32;
    }

    fn sift_down(&mut self, counts: &[u32], mut p: usize) {
        let n = self.heap.len();
        let i = self.heap[p];
        let k = key(counts, i);
        loop {
            let l = 2 * p + 1;
            if l >= n {
                break;
            }
            let r = l + 1;
            let c = if r < n && key(counts, self.heap[r]) < key(counts, self.heap[l]) {
                r
            } else {
                l
            };
            if key(counts, self.heap[c]) >= k {
                break;
            }
            self.place(p, self.heap[c]);
            p = c;
        }
        self.place(p, i);
    }

    fn sift_up(&mut self, counts: &[u32], mut p: usize) {
        let i = self.heap[p];
        let k = key(counts, i);
        while p > 0 {
            let parent = (p - 1) / 2;
            if key(counts, self.heap[parent]) <= k {
                break;
            }
            self.place(p, self.heap[parent]);
            p = parent;
        }
        self.place(p, i);
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
            h.raised(&counts, i);
        }
    }

    #[test]
    fn a_freed_lip_comes_first_again() {
        let mut counts = vec![3u32, 3, 3];
        let mut h = ByUse::new(&counts);
        counts[2] -= 1;
        h.lowered(&counts, 2);
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
                        h.raised(&counts, i);
                    }
                    1 if counts[i] > 0 => {
                        counts[i] -= 1;
                        h.lowered(&counts, i);
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

//! IPVS's interleaved weighted round robin (ip_vs_wrr.c) as a function of a sequence number.
//!
//! `ip_vs_wrr_schedule` walks the list in rounds: the current weight `cw` starts at the maximum and
//! drops by the gcd `di` after each pass; a pass picks, in list order, every server whose weight is at
//! least `cw`. In units of the gcd (level `l_i = w_i / g`) round `r = max_l, ..., 1` emits the servers
//! with `l_i >= r`, so the picks repeat with period `Σ l_i`, each server `l_i` times.
//!
//! Because that sequence is fixed by the weights, "the n-th new connection of the service" determines
//! the server: the workers share one counter (`fetch_add` per *new connection*) and stay exact across
//! workers — 300 connections over weights 1:2 give 100/200 whichever worker each lands on — where
//! per-worker IPVS cursors would each run their own interleaving.
//!
//! Rounds between two consecutive distinct levels pick the same servers, so the sequence is a few
//! segments (one per distinct level). Short periods (the usual case) are expanded into a table and
//! looked up directly; long ones (e.g. weights 65535 and 1) are answered from the segments: a binary
//! search for the segment, then the k-th server in list order at or above its level (O(n)).

/// Periods up to this many picks are expanded into a table (2 bytes each).
pub(crate) const TABLE_MAX: u64 = 1 << 16;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Segment {
    /// Sequence position of the segment's first pick.
    start: u64,
    /// Servers with `level >= level` are picked in each round of the segment.
    level: u32,
    /// How many servers that is (> 0).
    count: u32,
}

/// The interleaved sequence of one set of weights.
#[derive(Clone)]
pub struct WrrSeq {
    period: u64,
    levels: Box<[u32]>,
    segs: Box<[Segment]>,
    table: Box<[u16]>,
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl std::fmt::Debug for WrrSeq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrrSeq")
            .field("period", &self.period)
            .field("segments", &self.segs.len())
            .field("table", &self.table.len())
            .finish()
    }
}

impl WrrSeq {
    /// The sequence for `weights` in list order (at most 65536 servers); `None` when every weight is
    /// 0, i.e. no server may take a connection.
    pub fn new(weights: &[u32]) -> Option<Self> {
        Self::with_table_max(weights, TABLE_MAX)
    }

    pub(crate) fn with_table_max(weights: &[u32], table_max: u64) -> Option<Self> {
        // ip_vs_wrr_gcd_weight: gcd of the non-zero weights (gcd(0, w) = w skips zeros).
        let g = weights.iter().fold(0, |g, &w| gcd(g, w));
        if g == 0 {
            return None;
        }
        let levels: Box<[u32]> = weights.iter().map(|w| w / g).collect();
        let mut sorted: Vec<u32> = levels.iter().copied().filter(|&l| l > 0).collect();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let mut distinct = sorted.clone();
        distinct.dedup();

        let mut segs = Vec::with_capacity(distinct.len());
        let mut start = 0u64;
        for (j, &level) in distinct.iter().enumerate() {
            let below = distinct.get(j + 1).copied().unwrap_or(0);
            let count = sorted.partition_point(|&l| l >= level) as u32;
            segs.push(Segment {
                start,
                level,
                count,
            });
            start += u64::from(level - below) * u64::from(count);
        }
        let period = start;

        let mut table = Vec::new();
        if period <= table_max {
            table.reserve_exact(period as usize);
            let mut members = Vec::with_capacity(levels.len());
            for (j, seg) in segs.iter().enumerate() {
                let below = distinct.get(j + 1).copied().unwrap_or(0);
                members.clear();
                members.extend((0..levels.len()).filter(|&i| levels[i] >= seg.level));
                for _ in below..seg.level {
                    table.extend(members.iter().map(|&i| i as u16));
                }
            }
        }
        Some(WrrSeq {
            period,
            levels,
            segs: segs.into_boxed_slice(),
            table: table.into_boxed_slice(),
        })
    }

    /// Picks per cycle: `Σ w_i / gcd`.
    pub fn period(&self) -> u64 {
        self.period
    }

    /// The server picked `n`-th (counting from 0 after the weights were set).
    pub fn at(&self, n: u64) -> usize {
        let m = n % self.period;
        if let Some(&i) = self.table.get(m as usize) {
            return usize::from(i);
        }
        // segs is non-empty and segs[0].start == 0 <= m, so the partition point is >= 1.
        let j = self.segs.partition_point(|s| s.start <= m) - 1;
        let seg = &self.segs[j];
        let pos = ((m - seg.start) % u64::from(seg.count)) as usize;
        self.levels
            .iter()
            .enumerate()
            .filter(|&(_, &l)| l >= seg.level)
            .nth(pos)
            .map_or(0, |(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// ip_vs_wrr_schedule transcribed (no overloaded servers): the oracle.
    struct IpvsWrr {
        cl: Option<usize>,
        cw: i64,
        mw: i64,
        di: i64,
    }

    impl IpvsWrr {
        fn new(w: &[u32]) -> Self {
            let di = i64::from(w.iter().fold(0, |g, &x| gcd(g, x)));
            let max = i64::from(w.iter().copied().max().unwrap_or(0));
            let mw = if di == 0 { 0 } else { max - (di - 1) };
            IpvsWrr {
                cl: None,
                cw: mw,
                mw,
                di,
            }
        }

        fn schedule(&mut self, w: &[u32]) -> usize {
            loop {
                let from = self.cl.map_or(0, |i| i + 1);
                if let Some(i) = (from..w.len()).find(|&i| i64::from(w[i]) >= self.cw) {
                    self.cl = Some(i);
                    return i;
                }
                self.cl = None;
                self.cw -= self.di;
                if self.cw <= 0 {
                    self.cw = self.mw;
                }
            }
        }
    }

    #[test]
    fn weights_1_2_exact_per_cycle() {
        let s = WrrSeq::new(&[1, 2]).unwrap();
        assert_eq!(s.period(), 3);
        // As IPVS: round cw=2 picks B, round cw=1 picks A then B.
        assert_eq!(
            (0..6).map(|n| s.at(n)).collect::<Vec<_>>(),
            [1, 0, 1, 1, 0, 1]
        );
        let mut hits = [0u32; 2];
        for n in 0..300 {
            hits[s.at(n)] += 1;
        }
        assert_eq!(hits, [100, 200]);
    }

    #[test]
    fn gcd_shrinks_the_period_and_zero_is_skipped() {
        let s = WrrSeq::new(&[200, 0, 400, 200]).unwrap();
        assert_eq!(s.period(), 4);
        assert!((0..100).all(|n| s.at(n) != 1));
        assert!(WrrSeq::new(&[0, 0]).is_none());
        assert!(WrrSeq::new(&[]).is_none());
    }

    #[test]
    fn long_period_uses_segments() {
        let s = WrrSeq::new(&[65_535, 1, 65_534]).unwrap();
        assert_eq!(s.period(), 131_070);
        assert!(s.table.is_empty());
        let mut oracle = IpvsWrr::new(&[65_535, 1, 65_534]);
        for n in 0..200_000 {
            assert_eq!(s.at(n), oracle.schedule(&[65_535, 1, 65_534]), "pick {n}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn matches_ipvs_transcription(w in proptest::collection::vec(0u32..12, 1..12)) {
            prop_assume!(w.iter().any(|&x| x > 0));
            let table = WrrSeq::new(&w).unwrap();
            let segs = WrrSeq::with_table_max(&w, 0).unwrap();
            prop_assert!(segs.table.is_empty());
            let mut oracle = IpvsWrr::new(&w);
            for n in 0..(3 * table.period()) {
                let want = oracle.schedule(&w);
                prop_assert_eq!(table.at(n), want);
                prop_assert_eq!(segs.at(n), want);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn each_server_weight_over_gcd_times_per_period(w in proptest::collection::vec(0u32..1000, 1..40)) {
            prop_assume!(w.iter().any(|&x| x > 0));
            let s = WrrSeq::new(&w).unwrap();
            let g = w.iter().fold(0, |g, &x| gcd(g, x));
            let mut hits = vec![0u64; w.len()];
            for n in 0..s.period() {
                hits[s.at(n)] += 1;
            }
            for (i, &x) in w.iter().enumerate() {
                prop_assert_eq!(hits[i], u64::from(x / g));
            }
        }
    }
}

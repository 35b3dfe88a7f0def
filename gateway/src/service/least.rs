//! The schedulers that read connection counts and weights only: lc, wlc, sed, nq, fo, ovf.
//!
//! Each is a transcription of its `ip_vs_*_schedule` list walk; comparisons are strict, so ties go to
//! the server earlier in the list. Load ratios are compared by cross-multiplying
//! (`h1/w1 > h2/w2 <=> h1*w2 > h2*w1`), as the kernel does, in 64 bits.

use super::counts::ConnCounts;

/// The weights of the service's servers, in list order.
type Weights<'a> = &'a [u32];

/// `ip_vs_lc_schedule`: least `active*256 + inactive`, skipping overloaded and weight-0 servers.
pub(crate) fn lc<C: ConnCounts + ?Sized>(w: Weights, c: &C) -> Option<usize> {
    let mut least: Option<(usize, u64)> = None;
    for (i, &wi) in w.iter().enumerate() {
        if c.overloaded(i) || wi == 0 {
            continue;
        }
        let doh = c.overhead(i);
        if !matches!(least, Some((_, loh)) if doh >= loh) {
            least = Some((i, doh));
        }
    }
    least.map(|(i, _)| i)
}

/// The weighted-least walk shared by wlc and sed (and lblc/lblcr's fallback): the first available
/// server of weight > 0 starts; a later one replaces it when `loh * w_d > doh * w_least`.
fn weighted_least<C: ConnCounts + ?Sized>(
    w: Weights,
    c: &C,
    cost: impl Fn(usize) -> u64,
) -> Option<usize> {
    let first = (0..w.len()).find(|&i| !c.overloaded(i) && w[i] > 0)?;
    let (mut least, mut loh) = (first, cost(first));
    for d in first + 1..w.len() {
        if c.overloaded(d) {
            continue;
        }
        let doh = cost(d);
        if loh * u64::from(w[d]) > doh * u64::from(w[least]) {
            (least, loh) = (d, doh);
        }
    }
    Some(least)
}

/// `ip_vs_wlc_schedule` (also `__ip_vs_lblc_schedule` / `__ip_vs_lblcr_schedule`): least
/// `(active*256 + inactive) / weight`.
pub(crate) fn wlc<C: ConnCounts + ?Sized>(w: Weights, c: &C) -> Option<usize> {
    weighted_least(w, c, |i| c.overhead(i))
}

/// `ip_vs_sed_schedule`: least `(active + 1) / weight`.
pub(crate) fn sed<C: ConnCounts + ?Sized>(w: Weights, c: &C) -> Option<usize> {
    weighted_least(w, c, |i| u64::from(c.active(i)) + 1)
}

/// `ip_vs_nq_schedule`: the first idle (no active connection) available server, else as sed.
pub(crate) fn nq<C: ConnCounts + ?Sized>(w: Weights, c: &C) -> Option<usize> {
    let mut least: Option<(usize, u64)> = None;
    for (d, &wd) in w.iter().enumerate() {
        if c.overloaded(d) || wd == 0 {
            continue;
        }
        if c.active(d) == 0 {
            return Some(d);
        }
        let doh = u64::from(c.active(d)) + 1;
        if !matches!(least, Some((l, loh)) if loh * u64::from(wd) <= doh * u64::from(w[l])) {
            least = Some((d, doh));
        }
    }
    least.map(|(i, _)| i)
}

/// `ip_vs_fo_schedule`: the available server of highest weight (the first of equals).
pub(crate) fn fo<C: ConnCounts + ?Sized>(w: Weights, c: &C) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (d, &wd) in w.iter().enumerate() {
        if !c.overloaded(d) && wd > best.map_or(0, |b| w[b]) {
            best = Some(d);
        }
    }
    best
}

/// `ip_vs_ovf_schedule`: the highest weight (the first of equals) among available servers whose
/// active connections do not exceed their weight — the kernel skips `activeconns > weight`, so a
/// server holding exactly `weight` active connections still qualifies.
pub(crate) fn ovf<C: ConnCounts + ?Sized>(w: Weights, c: &C) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (d, &wd) in w.iter().enumerate() {
        if c.overloaded(d) || c.active(d) > wd || wd == 0 {
            continue;
        }
        if !matches!(best, Some(b) if wd <= w[b]) {
            best = Some(d);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::counts::CountsVec;
    use proptest::prelude::*;

    fn counts(active: &[u32], inactive: &[u32]) -> CountsVec {
        CountsVec {
            active: active.to_vec(),
            inactive: inactive.to_vec(),
            overloaded: vec![false; active.len()],
        }
    }

    #[test]
    fn lc_uses_overhead_and_first_of_ties() {
        // overheads: 2*256+0=512, 1*256+300=556, 1*256+256=512
        let c = counts(&[2, 1, 1], &[0, 300, 256]);
        assert_eq!(lc(&[1, 1, 1], &c), Some(0));
        // weight 0 and overloaded are skipped
        assert_eq!(lc(&[0, 1, 1], &c), Some(2));
        let mut c2 = c.clone();
        c2.overloaded[0] = true;
        assert_eq!(lc(&[1, 1, 1], &c2), Some(2));
        // lc ignores weight magnitudes
        assert_eq!(lc(&[1, 100, 1], &c), Some(0));
        assert_eq!(lc(&[0, 0], &counts(&[0, 0], &[0, 0])), None);
    }

    #[test]
    fn wlc_divides_by_weight() {
        // overheads 256, 512, 768 with weights 1, 3, 3: ratios 256, 170.7, 256
        let c = counts(&[1, 2, 3], &[0, 0, 0]);
        assert_eq!(wlc(&[1, 3, 3], &c), Some(1));
        // tie (256/1 vs 768/3) keeps the first
        assert_eq!(wlc(&[1, 0, 3], &c), Some(0));
        // inactive counts matter (1/256 of active)
        let c = counts(&[1, 1], &[5, 4]);
        assert_eq!(wlc(&[1, 1], &c), Some(1));
        assert_eq!(wlc(&[0, 0], &c), None);
    }

    #[test]
    fn sed_uses_active_plus_one_and_ignores_inactive() {
        // (0+1)/1 = 1 vs (2+1)/4 = 0.75 -> server 1
        let c = counts(&[0, 2], &[0, 0]);
        assert_eq!(sed(&[1, 4], &c), Some(1));
        // (1)/1 vs (3)/3 tie -> first
        assert_eq!(sed(&[1, 3], &c), Some(0));
        let c = counts(&[1, 1], &[1000, 0]);
        assert_eq!(sed(&[1, 1], &c), Some(0));
    }

    #[test]
    fn nq_prefers_idle_then_sed() {
        let c = counts(&[5, 3, 0, 0], &[0, 0, 0, 0]);
        assert_eq!(nq(&[10, 1, 1, 1], &c), Some(2));
        assert_eq!(nq(&[10, 1, 0, 1], &c), Some(3));
        // no idle: (5+1)/10=0.6 vs (3+1)/1=4 -> 0
        assert_eq!(nq(&[10, 1, 0, 0], &c), Some(0));
    }

    #[test]
    fn fo_highest_weight_available() {
        let mut c = counts(&[0, 0, 0], &[0, 0, 0]);
        assert_eq!(fo(&[5, 9, 9], &c), Some(1));
        c.overloaded[1] = true;
        assert_eq!(fo(&[5, 9, 9], &c), Some(2));
        assert_eq!(fo(&[0, 0, 0], &c), None);
    }

    #[test]
    fn ovf_overflows_when_active_exceeds_weight() {
        let w = [3, 2, 1];
        assert_eq!(ovf(&w, &counts(&[0, 0, 0], &[0, 0, 0])), Some(0));
        // exactly weight active: still eligible (kernel: skip only if active > weight)
        assert_eq!(ovf(&w, &counts(&[3, 0, 0], &[0, 0, 0])), Some(0));
        assert_eq!(ovf(&w, &counts(&[4, 0, 0], &[0, 0, 0])), Some(1));
        assert_eq!(ovf(&w, &counts(&[4, 3, 0], &[0, 0, 0])), Some(2));
        assert_eq!(ovf(&w, &counts(&[4, 3, 2], &[0, 0, 0])), None);
    }

    /// Brute-force definitions: the least ratio, first in list order among equals.
    fn brute(w: &[u32], c: &CountsVec, cost: impl Fn(usize) -> u64) -> Option<usize> {
        let ok: Vec<usize> = (0..w.len())
            .filter(|&i| w[i] > 0 && !c.overloaded[i])
            .collect();
        let min = ok
            .iter()
            .map(|&i| (cost(i) as f64) / f64::from(w[i]))
            .fold(f64::INFINITY, f64::min);
        ok.into_iter()
            .find(|&i| (cost(i) as f64) / f64::from(w[i]) <= min * (1.0 + 1e-12))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn wlc_sed_match_brute_force(
            rows in proptest::collection::vec((0u32..6, 0u32..50, 0u32..600, any::<bool>()), 1..20)
        ) {
            let w: Vec<u32> = rows.iter().map(|r| r.0).collect();
            let c = CountsVec {
                active: rows.iter().map(|r| r.1).collect(),
                inactive: rows.iter().map(|r| r.2).collect(),
                overloaded: rows.iter().map(|r| r.3).collect(),
            };
            prop_assert_eq!(wlc(&w, &c), brute(&w, &c, |i| c.overhead(i)));
            prop_assert_eq!(sed(&w, &c), brute(&w, &c, |i| u64::from(c.active[i]) + 1));
            let ones: Vec<u32> = w.iter().map(|&x| x.min(1)).collect();
            prop_assert_eq!(lc(&w, &c), brute(&ones, &c, |i| c.overhead(i)));
            let idle = (0..w.len()).find(|&i| w[i] > 0 && !c.overloaded[i] && c.active[i] == 0);
            prop_assert_eq!(nq(&w, &c), idle.or_else(|| sed(&w, &c)));
        }
    }
}

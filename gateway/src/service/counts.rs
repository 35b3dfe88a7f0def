//! Connection counts per real server, as IPVS defines them, and the overload flag.
//!
//! **Aggregate, not per worker.** Each real server has one [`RsStats`] shared (through an `Arc`) by all
//! workers, and every worker's `lc`/`wlc`/`sed`/`nq`/`ovf`/`lblc` decision reads the same numbers:
//! - the thresholds (`ipvsadm -x/-y`) bound a server's *total* connections; counted per worker, a
//!   server could take `workers × upper` connections;
//! - with few connections (the lab; a new service) per-worker counts see a fraction of the load each
//!   and balance noticeably worse than IPVS does with its single set of counters.
//!
//! The price is an atomic read-modify-write on a cache line shared by the workers — but only when a
//! connection is created, becomes established or stops being so, or is destroyed; never per packet,
//! so the "no shared atomics on the per-packet path" rule of DESIGN.md holds. Each `RsStats` is
//! aligned to its own cache line so that two workers updating two servers do not contend.
//!
//! Counting follows `ip_vs_bind_dest` / `ip_vs_unbind_dest` (ip_vs_conn.c) and the TCP state hooks:
//! "active" means established, "inactive" everything else. A new TCP connection starts inactive
//! (its first state, SYN_RECV, is not ESTABLISHED); a UDP one is active for its whole life.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};

/// What the schedulers read: per real server (by index in the service), its counts and overload flag.
/// [`Service`](super::Service) implements it over the shared [`RsStats`]; tests use crafted counts.
pub trait ConnCounts {
    /// Established connections.
    fn active(&self, rs: usize) -> u32;
    /// Connections in any other state.
    fn inactive(&self, rs: usize) -> u32;
    /// IPVS's `IP_VS_DEST_F_OVERLOAD`: the upper threshold was reached.
    fn overloaded(&self, rs: usize) -> bool;

    /// `ip_vs_dest_conn_overhead`: an active connection is taken to cost 256 inactive ones.
    fn overhead(&self, rs: usize) -> u64 {
        (u64::from(self.active(rs)) << 8) + u64::from(self.inactive(rs))
    }
}

/// One real server's shared counters; the datapath updates them through the `on_*` methods.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct RsStats {
    active: AtomicU32,
    inactive: AtomicU32,
    upper: AtomicU32,
    lower: AtomicU32,
    overload: AtomicBool,
}

/// Decrement without wrapping: a datapath bug must not make a server look infinitely loaded.
fn dec(a: &AtomicU32) {
    // fetch_update only fails when the closure says so (at zero): nothing to do then.
    let _ = a.fetch_update(Relaxed, Relaxed, |v| v.checked_sub(1));
}

impl RsStats {
    /// Counters at zero with the given thresholds.
    pub fn new(upper: u32, lower: u32) -> Self {
        let s = RsStats::default();
        s.upper.store(upper, Relaxed);
        s.lower.store(lower, Relaxed);
        s
    }

    pub fn active(&self) -> u32 {
        self.active.load(Relaxed)
    }

    pub fn inactive(&self) -> u32 {
        self.inactive.load(Relaxed)
    }

    /// `ip_vs_dest_totalconns`: active + inactive (persistence templates are not counted).
    pub fn total(&self) -> u32 {
        self.active().saturating_add(self.inactive())
    }

    pub fn is_overloaded(&self) -> bool {
        self.overload.load(Relaxed)
    }

    /// A new connection, not yet established (TCP).
    pub fn on_conn_new(&self) {
        self.inactive.fetch_add(1, Relaxed);
        self.check_upper();
    }

    /// A new connection counted active from the start (UDP, as IPVS counts it).
    pub fn on_conn_new_active(&self) {
        self.active.fetch_add(1, Relaxed);
        self.check_upper();
    }

    /// The connection became established.
    pub fn on_active(&self) {
        dec(&self.inactive);
        self.active.fetch_add(1, Relaxed);
    }

    /// The connection left the established state (FIN, RST, ...).
    pub fn on_inactive(&self) {
        dec(&self.active);
        self.inactive.fetch_add(1, Relaxed);
    }

    /// The connection was destroyed; `was_active` says which count it was in.
    pub fn on_conn_gone(&self, was_active: bool) {
        dec(if was_active {
            &self.active
        } else {
            &self.inactive
        });
        self.check_lower();
    }

    /// New thresholds from the control plane. As `__ip_vs_update_dest`: raising or removing the upper
    /// threshold clears the overload flag at once.
    pub fn set_thresholds(&self, upper: u32, lower: u32) {
        let old = self.upper.swap(upper, Relaxed);
        self.lower.store(lower, Relaxed);
        if upper == 0 || upper > old {
            self.overload.store(false, Relaxed);
        }
    }

    /// `ip_vs_bind_dest`: overloaded once the total reaches the upper threshold.
    fn check_upper(&self) {
        let u = self.upper.load(Relaxed);
        if u != 0 && self.total() >= u {
            self.overload.store(true, Relaxed);
        }
    }

    /// `ip_vs_unbind_dest`: the flag clears below the lower threshold, or below 3/4 of the upper one
    /// when no lower threshold is set, or at once when there are no thresholds.
    fn check_lower(&self) {
        let (l, u, t) = (
            self.lower.load(Relaxed),
            self.upper.load(Relaxed),
            self.total(),
        );
        let clear = if l != 0 {
            t < l
        } else if u != 0 {
            u64::from(t) * 4 < u64::from(u) * 3
        } else {
            true
        };
        if clear {
            self.overload.store(false, Relaxed);
        }
    }
}

/// Plain counts for one worker's own bookkeeping, tests and benchmarks: index = real server index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CountsVec {
    pub active: Vec<u32>,
    pub inactive: Vec<u32>,
    pub overloaded: Vec<bool>,
}

impl CountsVec {
    /// All zero for `n` servers.
    pub fn zeroed(n: usize) -> Self {
        CountsVec {
            active: vec![0; n],
            inactive: vec![0; n],
            overloaded: vec![false; n],
        }
    }
}

impl ConnCounts for CountsVec {
    fn active(&self, rs: usize) -> u32 {
        self.active.get(rs).copied().unwrap_or(0)
    }
    fn inactive(&self, rs: usize) -> u32 {
        self.inactive.get(rs).copied().unwrap_or(0)
    }
    fn overloaded(&self, rs: usize) -> bool {
        self.overloaded.get(rs).copied().unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_lifecycle_counts() {
        let s = RsStats::new(0, 0);
        s.on_conn_new();
        assert_eq!((s.active(), s.inactive()), (0, 1));
        s.on_active();
        assert_eq!((s.active(), s.inactive()), (1, 0));
        s.on_inactive();
        assert_eq!((s.active(), s.inactive()), (0, 1));
        s.on_conn_gone(false);
        assert_eq!(s.total(), 0);
        // A buggy extra "gone" does not wrap.
        s.on_conn_gone(true);
        assert_eq!((s.active(), s.inactive()), (0, 0));
    }

    #[test]
    fn overload_set_at_upper_cleared_below_lower() {
        let s = RsStats::new(4, 2);
        for _ in 0..3 {
            s.on_conn_new();
        }
        assert!(!s.is_overloaded());
        s.on_conn_new(); // total 4 >= upper 4
        assert!(s.is_overloaded());
        s.on_conn_gone(false); // 3, not < 2
        s.on_conn_gone(false); // 2, not < 2
        assert!(s.is_overloaded());
        s.on_conn_gone(false); // 1 < 2
        assert!(!s.is_overloaded());
    }

    #[test]
    fn overload_cleared_below_three_quarters_without_lower() {
        let s = RsStats::new(8, 0);
        for _ in 0..8 {
            s.on_conn_new_active();
        }
        assert!(s.is_overloaded());
        s.on_conn_gone(true); // 7: 28 < 24? no
        s.on_conn_gone(true); // 6: 24 < 24? no
        assert!(s.is_overloaded());
        s.on_conn_gone(true); // 5: 20 < 24
        assert!(!s.is_overloaded());
    }

    #[test]
    fn raising_upper_clears_overload() {
        let s = RsStats::new(1, 0);
        s.on_conn_new();
        assert!(s.is_overloaded());
        s.set_thresholds(1, 0); // unchanged: stays
        assert!(s.is_overloaded());
        s.set_thresholds(5, 0);
        assert!(!s.is_overloaded());
        s.set_thresholds(1, 0);
        s.on_conn_new();
        assert!(s.is_overloaded());
        s.set_thresholds(0, 0);
        assert!(!s.is_overloaded());
    }

    #[test]
    fn overhead_formula() {
        let mut c = CountsVec::zeroed(1);
        c.active[0] = 3;
        c.inactive[0] = 7;
        assert_eq!(c.overhead(0), 3 * 256 + 7);
    }

    #[test]
    fn stats_sit_on_their_own_cache_line() {
        assert_eq!(std::mem::align_of::<RsStats>(), 64);
    }
}

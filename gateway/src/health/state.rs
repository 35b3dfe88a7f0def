//! A real server's health as the checks see it: rise/fall counting (HAProxy's and Envoy's meaning:
//! `rise` consecutive successes make a down server up, `fall` consecutive failures make an up one
//! down; keepalived's `retry` is `fall`), and jittered probe times. Pure: times are milliseconds
//! given by the caller, so every rule is unit-tested without sockets or clocks.

/// What a check said about a server once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Up,
    /// Down, with the reason ("connection refused", "HTTP 503", "timeout").
    Down(String),
}

/// A change of state, for the log and the control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub up: bool,
    /// The result that made it.
    pub reason: String,
}

/// One server's health.
#[derive(Clone, Debug)]
pub struct Health {
    rise: u32,
    fall: u32,
    up: bool,
    /// Consecutive results against the current state.
    streak: u32,
    /// When the current state began (ms).
    pub since_ms: u64,
    /// The last result and when it came.
    pub last: Option<(Outcome, u64)>,
    /// Checks run, and how many failed.
    pub checks: u64,
    pub failures: u64,
}

impl Health {
    /// A new server starts up (as keepalived's `alive` default), so adding a server does not
    /// withhold traffic until its first `rise` checks passed.
    pub fn new(rise: u32, fall: u32, now_ms: u64) -> Self {
        Health {
            rise: rise.max(1),
            fall: fall.max(1),
            up: true,
            streak: 0,
            since_ms: now_ms,
            last: None,
            checks: 0,
            failures: 0,
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Records a result at `now_ms`; returns the transition it makes, if any.
    pub fn record(&mut self, outcome: Outcome, now_ms: u64) -> Option<Transition> {
        self.checks += 1;
        let ok = outcome == Outcome::Up;
        if !ok {
            self.failures += 1;
        }
        let reason = match &outcome {
            Outcome::Up => "check passed".to_string(),
            Outcome::Down(r) => r.clone(),
        };
        self.last = Some((outcome, now_ms));
        if ok == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up { self.fall } else { self.rise };
        if self.streak < needed {
            return None;
        }
        self.up = ok;
        self.streak = 0;
        self.since_ms = now_ms;
        Some(Transition { up: ok, reason })
    }

    /// Marks the server down at once (passive detection), keeping its counts.
    pub fn force_down(&mut self, reason: &str, now_ms: u64) -> Option<Transition> {
        if !self.up {
            return None;
        }
        self.up = false;
        self.streak = 0;
        self.since_ms = now_ms;
        self.last = Some((Outcome::Down(reason.to_string()), now_ms));
        Some(Transition {
            up: false,
            reason: reason.to_string(),
        })
    }
}

/// Passive detection's threshold for one server. The workers count, per server, failed SYNs since
/// the last answered one (their streaks, summed by the caller); the server goes down when that sum
/// has grown by `fall` since the last transition, so the failures that took it down (or happened
/// while it was down) do not take it down again once the probes bring it back.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassiveFall {
    /// The streak at the last transition; `None` until the first sample.
    base: Option<u64>,
}

impl PassiveFall {
    /// A new sample of the workers' streak while the server is `up`: whether `fall` failures in
    /// a row (0: never) mark it down now.
    pub fn observe(&mut self, streak: u64, fall: u32, up: bool) -> bool {
        // A worker's streak restarts at an answered SYN: the sum may drop below the base.
        let base = self.base.map_or(streak, |b| b.min(streak));
        self.base = Some(base);
        if fall == 0 || !up || streak - base < u64::from(fall) {
            return false;
        }
        self.base = Some(streak);
        true
    }

    /// The server came back up with the workers' streak at `streak`: failures count from here.
    pub fn rebase(&mut self, streak: u64) {
        self.base = Some(streak);
    }
}

/// The time of the next probe: `interval_ms` after `now_ms`, moved by up to `jitter_pct` percent
/// either way by `random` (any u64: the caller's generator), so a thousand checks configured alike
/// do not fire in the same millisecond.
pub fn next_probe(now_ms: u64, interval_ms: u64, jitter_pct: u8, random: u64) -> u64 {
    let span = interval_ms * u64::from(jitter_pct.min(100)) / 100;
    if span == 0 {
        return now_ms + interval_ms;
    }
    // A value in [interval - span, interval + span].
    let offset = random % (2 * span + 1);
    now_ms + interval_ms - span + offset
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> Outcome {
        Outcome::Down("connection refused".into())
    }

    #[test]
    fn passive_fall_counts_failures_in_a_row_since_the_last_transition() {
        let mut p = PassiveFall::default();
        // Failures before the first sample (older than the check) do not count.
        assert!(!p.observe(7, 3, true));
        assert!(!p.observe(9, 3, true));
        assert!(p.observe(10, 3, true), "three more in a row");
        // While down (and up again, rebased), the same failures do not count twice.
        assert!(!p.observe(12, 3, false));
        p.rebase(12);
        assert!(!p.observe(14, 3, true));
        // An answered SYN restarts a worker's streak: the count starts again from there.
        assert!(!p.observe(1, 3, true));
        assert!(!p.observe(3, 3, true));
        assert!(p.observe(4, 3, true));
        // fall 0: never.
        let mut off = PassiveFall::default();
        assert!(!off.observe(0, 0, true));
        assert!(!off.observe(100, 0, true));
    }

    #[test]
    fn fall_failures_in_a_row_make_it_down_and_rise_successes_make_it_up() {
        let mut h = Health::new(2, 3, 0);
        assert!(h.is_up());
        assert_eq!(h.record(down(), 1), None);
        assert_eq!(h.record(down(), 2), None);
        // A success in between starts the count again.
        assert_eq!(h.record(Outcome::Up, 3), None);
        assert_eq!(h.record(down(), 4), None);
        assert_eq!(h.record(down(), 5), None);
        let t = h.record(down(), 6).expect("third failure in a row");
        assert_eq!(
            t,
            Transition {
                up: false,
                reason: "connection refused".into()
            }
        );
        assert!(!h.is_up());
        assert_eq!(h.since_ms, 6);
        // Down stays down on failures; rise = 2 successes bring it back.
        assert_eq!(h.record(down(), 7), None);
        assert_eq!(h.record(Outcome::Up, 8), None);
        assert_eq!(h.record(down(), 9), None);
        assert_eq!(h.record(Outcome::Up, 10), None);
        assert!(h.record(Outcome::Up, 11).is_some_and(|t| t.up));
        assert_eq!((h.checks, h.failures), (11, 7));
    }

    #[test]
    fn rise_and_fall_of_one_act_at_once_and_zero_means_one() {
        let mut h = Health::new(0, 0, 0);
        assert!(h.record(down(), 1).is_some());
        assert!(h.record(Outcome::Up, 2).is_some());
    }

    #[test]
    fn passive_detection_forces_down_once() {
        let mut h = Health::new(2, 3, 0);
        assert!(h.force_down("3 SYNs answered with RST", 5).is_some());
        assert!(h.force_down("again", 6).is_none());
        assert!(!h.is_up());
        assert_eq!(h.record(Outcome::Up, 7), None);
        assert!(h.record(Outcome::Up, 8).is_some());
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        for r in [0u64, 1, 7, 199, 200, 201, u64::MAX] {
            let t = next_probe(10_000, 1000, 10, r);
            assert!((10_900..=11_100).contains(&t), "{r}: {t}");
        }
        assert_eq!(next_probe(5, 1000, 0, 12345), 1005);
        // Both ends are reachable.
        assert_eq!(next_probe(0, 1000, 10, 0), 900);
        assert_eq!(next_probe(0, 1000, 10, 200), 1100);
        // 100% at most: never before now.
        assert!(next_probe(0, 1000, 255, u64::MAX) <= 2000);
    }
}

//! The event log: what changed in the gateway and why, newest last, in a bounded ring
//! (`gwctl events [--follow]`) and, as each event is recorded, as a structured log line (target
//! `gateway::events`, fields `seq` and `kind`).
//!
//! Events are rare (configuration generations, refused changes, health transitions, kernel
//! changes, drains), so a mutex is enough; workers never record one. A follower asks for the
//! events after the last sequence number it saw and waits on a condition variable for new ones,
//! so `--follow` shows an event the moment it is recorded. When the ring overwrote events a
//! reader had not seen, the answer says how many were lost.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Events kept (the oldest go first).
pub const CAPACITY: usize = 4096;
/// The longest a follower's request waits for a new event.
pub const MAX_WAIT: Duration = Duration::from_secs(2);

/// What an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A configuration generation runs (admin change, reload, timeouts, settings).
    Config,
    /// A change refused (admin request, reload, kernel change the workers could not take).
    Refused,
    /// A real server's health check changed its verdict.
    Health,
    /// The kernel's addresses or routes changed what the gateway serves.
    Kernel,
    /// A VIP announced, withdrawn, drained or undrained.
    Announce,
    /// The daemon started or is stopping.
    Daemon,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Config => "config",
            Kind::Refused => "refused",
            Kind::Health => "health",
            Kind::Kernel => "kernel",
            Kind::Announce => "announce",
            Kind::Daemon => "daemon",
        }
    }
}

/// One event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// 1, 2, 3, ... since the daemon started.
    pub seq: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    pub kind: Kind,
    pub message: String,
}

/// The answer to a read of the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsView {
    pub events: Vec<Event>,
    /// The sequence number of the newest event recorded (pass it back to follow).
    pub last: u64,
    /// Events after the one asked for that the ring no longer holds.
    pub lost: u64,
}

struct Ring {
    last: u64,
    events: VecDeque<Event>,
}

/// The log (shared by the control plane's threads).
pub struct EventLog {
    ring: Mutex<Ring>,
    added: Condvar,
    capacity: usize,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog::new(CAPACITY)
    }
}

impl EventLog {
    pub fn new(capacity: usize) -> Self {
        EventLog {
            ring: Mutex::new(Ring {
                last: 0,
                events: VecDeque::with_capacity(capacity.min(CAPACITY)),
            }),
            added: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    /// Records an event and logs it.
    pub fn record(&self, kind: Kind, message: impl Into<String>) {
        let message = message.into();
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let Ok(mut r) = self.ring.lock() else { return };
        r.last += 1;
        let seq = r.last;
        match kind {
            Kind::Refused => {
                tracing::warn!(target: "gateway::events", seq, kind = kind.name(), "{message}")
            }
            _ => tracing::info!(target: "gateway::events", seq, kind = kind.name(), "{message}"),
        }
        if r.events.len() == self.capacity {
            r.events.pop_front();
        }
        r.events.push_back(Event {
            seq,
            unix_ms,
            kind,
            message,
        });
        drop(r);
        self.added.notify_all();
    }

    /// The events after `after` (every event held when None), waiting up to `wait` (at most
    /// [`MAX_WAIT`]) for one if there is none yet.
    pub fn read(&self, after: Option<u64>, wait: Duration) -> EventsView {
        let Ok(mut r) = self.ring.lock() else {
            return EventsView::default();
        };
        let from = after.unwrap_or(0);
        if r.last <= from && !wait.is_zero() {
            let (g, _) = match self
                .added
                .wait_timeout_while(r, wait.min(MAX_WAIT), |r| r.last <= from)
            {
                Ok(x) => x,
                Err(_) => return EventsView::default(),
            };
            r = g;
        }
        let oldest = r.events.front().map_or(r.last + 1, |e| e.seq);
        let lost = match after {
            Some(a) => oldest.saturating_sub(a + 1),
            None => 0,
        };
        EventsView {
            events: r.events.iter().filter(|e| e.seq > from).cloned().collect(),
            last: r.last,
            lost,
        }
    }
}

/// `unix_ms` as an RFC 3339 UTC time to the millisecond (`2026-11-29T23:59:01.123Z`).
pub fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's `civil_from_days`).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_and_counts_what_a_reader_lost() {
        let log = EventLog::new(3);
        for i in 0..5 {
            log.record(Kind::Config, format!("generation {i}"));
        }
        let all = log.read(None, Duration::ZERO);
        let seqs: Vec<u64> = all.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert_eq!((all.last, all.lost), (5, 0));
        assert_eq!(all.events[0].message, "generation 2");
        // A follower that saw 1 missed 2 (overwritten) and gets 3..=5.
        let r = log.read(Some(1), Duration::ZERO);
        assert_eq!((r.events.len(), r.lost), (3, 1));
        let r = log.read(Some(4), Duration::ZERO);
        assert_eq!((r.events.len(), r.lost), (1, 0));
        let r = log.read(Some(5), Duration::ZERO);
        assert_eq!((r.events.len(), r.lost), (0, 0));
    }

    #[test]
    fn a_follower_wakes_when_an_event_is_recorded() {
        let log = EventLog::new(8);
        log.record(Kind::Daemon, "started");
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                let t = std::time::Instant::now();
                let r = log.read(Some(1), Duration::from_secs(2));
                (r, t.elapsed())
            });
            std::thread::sleep(Duration::from_millis(100));
            log.record(Kind::Health, "10.20.0.11:80 down: connection refused");
            let (r, took) = h.join().unwrap();
            assert_eq!(r.events.len(), 1, "{r:?}");
            assert_eq!(r.events[0].kind, Kind::Health);
            assert!(took < Duration::from_millis(1500), "{took:?}");
        });
        // Nothing new: the wait ends at its timeout with nothing.
        let t = std::time::Instant::now();
        let r = log.read(Some(2), Duration::from_millis(100));
        assert!(r.events.is_empty() && t.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_007), "2000-02-29T00:00:00.007Z");
        assert_eq!(rfc3339(1_795_996_741_123), "2026-11-29T23:59:01.123Z");
    }
}

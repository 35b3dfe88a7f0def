//! The health checker's event loop (its own thread): every target probed on its jittered schedule,
//! each probe a non-blocking state machine on one mio `Poll`, so a thousand real servers need one
//! thread. Transitions go to the control plane as [`Event`]s; the current state of every target is
//! published for `gwctl health`.

use super::check::Check;
use super::probe::Probe;
use super::state::{next_probe, Health, Outcome, PassiveFall};
use crossbeam_channel::{Receiver, Sender};
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A real server of a service: what a check is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TargetKey {
    /// IP protocol number of the service.
    pub proto: u8,
    pub vip: std::net::IpAddr,
    pub vport: u16,
    pub rs: std::net::IpAddr,
    pub rs_port: u16,
}

/// A check to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub key: TargetKey,
    pub check: Check,
}

/// A target's health changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub key: TargetKey,
    pub up: bool,
    pub reason: String,
    /// Down removes the server from its service rather than setting its weight to 0
    /// (`inhibit_on_failure = false`).
    pub remove: bool,
    /// The check that said so (a transition of a check replaced meanwhile is stale).
    pub check: Check,
}

/// A real server's passive counters, summed over the workers (`forward::Traffic`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Passive {
    pub refused: u64,
    pub unanswered: u64,
    /// Failed SYNs since the last answered one (each worker's streak, summed).
    pub streak: u64,
}

/// Reads the workers' passive counters of the servers given (the daemon sums what they publish).
pub type PassiveSource = Box<dyn FnMut(&[TargetKey]) -> HashMap<TargetKey, Passive> + Send>;

/// How often the passive counters are read (the workers publish theirs every 100 ms).
const PASSIVE_EVERY_MS: u64 = 50;

/// A target as `gwctl health` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub key: TargetKey,
    pub kind: String,
    pub up: bool,
    /// Milliseconds in the current state.
    pub for_ms: u64,
    /// The last result's reason ("check passed", "connection refused", "HTTP 503", "timeout").
    pub last: String,
    pub checks: u64,
    pub failures: u64,
    /// Passive detection: client SYNs it refused and left unanswered.
    #[serde(default)]
    pub syn_refused: u64,
    #[serde(default)]
    pub syn_unanswered: u64,
}

struct Slot {
    target: Target,
    health: Health,
    next_ms: u64,
    probe: Option<(Probe, mio::Token, u64)>,
    passive: Passive,
    passive_fall: PassiveFall,
    /// A passive verdict waiting for a probe to confirm it (the reason).
    confirm: Option<String>,
}

/// The loop's longest sleep: exec probes and deadlines are looked at this often.
const TICK: Duration = Duration::from_millis(10);

/// An HTTP check's default `Host`: the real server's address, an IPv6 one in brackets
/// (RFC 9110 7.2, RFC 3986 3.2.2).
fn host_of(rs: std::net::IpAddr) -> String {
    match rs {
        std::net::IpAddr::V4(a) => a.to_string(),
        std::net::IpAddr::V6(a) => format!("[{a}]"),
    }
}

fn kind_name(c: &Check) -> &'static str {
    match c.kind {
        super::check::CheckKind::Tcp => "tcp",
        super::check::CheckKind::Http { .. } => "http",
        super::check::CheckKind::Udp { .. } => "udp",
        super::check::CheckKind::Exec { .. } => "exec",
    }
}

/// Logs a transition and sends it to the control plane.
fn report(events: &Sender<Event>, s: &Slot, up: bool, reason: String) {
    let key = s.target.key;
    tracing::warn!(
        "health: real server {} of {} {} is {}: {reason}",
        std::net::SocketAddr::new(key.rs, key.rs_port),
        if key.proto == 17 { "UDP" } else { "TCP" },
        std::net::SocketAddr::new(key.vip, key.vport),
        if up { "up" } else { "down" },
    );
    let _ = events.send(Event {
        key,
        up,
        reason,
        remove: !s.target.check.inhibit,
        check: s.target.check.clone(),
    });
}

/// Runs until `stop`: takes target lists from `targets` (each replaces the last; a target whose
/// check is unchanged keeps its state), sends transitions to `events`, publishes `status`. Every
/// `PASSIVE_EVERY_MS` it reads the workers' passive counters from `passive`.
pub fn run(
    targets: Receiver<Vec<Target>>,
    events: Sender<Event>,
    status: Arc<Mutex<Vec<Status>>>,
    stop: Arc<AtomicBool>,
    mut passive: PassiveSource,
) {
    let mut poll = match mio::Poll::new() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("health checks: {e}");
            return;
        }
    };
    let mut mio_events = mio::Events::with_capacity(256);
    let start = Instant::now();
    let now_ms = || start.elapsed().as_millis() as u64;
    let mut slots: HashMap<TargetKey, Slot> = HashMap::new();
    let mut by_token: HashMap<usize, TargetKey> = HashMap::new();
    let mut next_token = 0usize;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(std::process::id());
    let mut random = move || {
        // xorshift64: spreading probe times only needs to look random.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut last_publish = 0u64;
    let mut last_passive = 0u64;
    let mut pending: Option<Vec<Target>> = None;
    while !stop.load(Ordering::Relaxed) {
        if slots.is_empty() && pending.is_none() {
            // Nothing to check: sleep until a target list comes (or stop is due).
            pending = targets.recv_timeout(Duration::from_millis(200)).ok();
            continue;
        }
        let now = now_ms();
        // New target lists (the last one counts).
        let list = targets.try_iter().last().or_else(|| pending.take());
        let replaced = list.is_some();
        if let Some(list) = list {
            pending = None;
            let mut fresh = HashMap::new();
            for t in list {
                let slot = match slots.remove(&t.key) {
                    Some(s) if s.target.check == t.check => s,
                    old => {
                        if let Some(p) = old.and_then(|s| s.probe) {
                            p.0.cancel(poll.registry());
                        }
                        Slot {
                            health: Health::new(t.check.rise, t.check.fall, now),
                            next_ms: now + random() % u64::from(t.check.interval_ms.max(1)),
                            target: t.clone(),
                            probe: None,
                            passive: Passive::default(),
                            passive_fall: PassiveFall::default(),
                            confirm: None,
                        }
                    }
                };
                fresh.insert(t.key, slot);
            }
            for (_, s) in slots.drain() {
                if let Some(p) = s.probe {
                    p.0.cancel(poll.registry());
                }
            }
            slots = fresh;
            by_token.retain(|_, k| slots.get(k).is_some_and(|s| s.probe.is_some()));
        }
        let mut results: Vec<(TargetKey, Outcome)> = Vec::new();
        // Probes due now.
        for (key, s) in slots.iter_mut() {
            if s.probe.is_some() || s.next_ms > now {
                continue;
            }
            let rs = key.rs;
            let c = &s.target.check;
            s.next_ms = next_probe(now, u64::from(c.interval_ms), c.jitter_pct, random());
            next_token = next_token.wrapping_add(1);
            let token = mio::Token(next_token);
            match Probe::start(poll.registry(), token, rs, c) {
                Ok(p) => {
                    by_token.insert(next_token, *key);
                    s.probe = Some((p, token, now + u64::from(c.timeout_ms)));
                }
                Err(o) => results.push((*key, o)),
            }
        }
        // Wait for readiness until the next thing to do.
        let _ = poll.poll(&mut mio_events, Some(TICK));
        let now = now_ms();
        for ev in mio_events.iter() {
            let Some(key) = by_token.get(&ev.token().0).copied() else {
                continue;
            };
            let Some(s) = slots.get_mut(&key) else {
                continue;
            };
            let Some((mut p, token, deadline)) = s.probe.take() else {
                continue;
            };
            match p.ready(poll.registry(), token, &host_of(key.rs)) {
                Some(o) => {
                    p.cancel(poll.registry());
                    by_token.remove(&token.0);
                    results.push((key, o));
                }
                None => s.probe = Some((p, token, deadline)),
            }
        }
        // Programs that ended, and deadlines.
        for (key, s) in slots.iter_mut() {
            let Some((mut p, token, deadline)) = s.probe.take() else {
                continue;
            };
            let done = if p.is_exec() { p.poll_exec() } else { None };
            match done {
                Some(o) => results.push((*key, o)),
                None if now >= deadline => {
                    p.cancel(poll.registry());
                    by_token.remove(&token.0);
                    results.push((*key, Outcome::Down("timeout".into())));
                }
                None => s.probe = Some((p, token, deadline)),
            }
        }
        // A new list is published at once (an emptied one too: the loop then sleeps).
        let mut changed = replaced || !results.is_empty();
        for (key, o) in results {
            let Some(s) = slots.get_mut(&key) else {
                continue;
            };
            let failed = match &o {
                Outcome::Down(r) => Some(r.clone()),
                Outcome::Up => None,
            };
            let mut t = s.health.record(o, now);
            // A passive verdict the probe confirms takes the server down now, whatever `fall`.
            if let (Some(why), Some(probe), None) = (s.confirm.take(), failed, &t) {
                t = s
                    .health
                    .force_down(&format!("{why}; a probe says {probe}"), now);
            }
            if let Some(t) = t {
                if t.up {
                    s.passive_fall.rebase(s.passive.streak);
                }
                report(&events, s, t.up, t.reason);
            }
        }
        // Passive detection: failed SYNs in a row, as the workers counted them.
        if now - last_passive >= PASSIVE_EVERY_MS {
            last_passive = now;
            let keys: Vec<TargetKey> = slots.keys().copied().collect();
            let counts = passive(&keys);
            for (key, s) in slots.iter_mut() {
                s.passive = counts.get(key).copied().unwrap_or_default();
                let fall = s.target.check.passive_fall;
                if !s
                    .passive_fall
                    .observe(s.passive.streak, fall, s.health.is_up())
                {
                    continue;
                }
                // Confirmed by a probe at once: a client can make SYNs go unanswered (a server
                // drops a SYN with an unexpected TCP-MD5 option), not a probe fail.
                if s.confirm.is_none() {
                    s.confirm = Some(format!(
                        "{fall} connection attempts failed in a row (passive)"
                    ));
                    if s.probe.is_none() {
                        s.next_ms = now;
                    }
                    changed = true;
                }
            }
        }
        if changed || now - last_publish >= 200 {
            last_publish = now;
            let mut list: Vec<Status> = slots
                .values()
                .map(|s| Status {
                    key: s.target.key,
                    kind: kind_name(&s.target.check).into(),
                    up: s.health.is_up(),
                    for_ms: now.saturating_sub(s.health.since_ms),
                    last: match &s.health.last {
                        Some((Outcome::Up, _)) => "check passed".into(),
                        Some((Outcome::Down(r), _)) => r.clone(),
                        None => "not checked yet".into(),
                    },
                    checks: s.health.checks,
                    failures: s.health.failures,
                    syn_refused: s.passive.refused,
                    syn_unanswered: s.passive.unanswered,
                })
                .collect();
            list.sort_by_key(|s| s.key);
            if let Ok(mut st) = status.lock() {
                *st = list;
            }
        }
    }
}

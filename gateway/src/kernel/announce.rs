//! Which VIPs this box asks its routing daemon to announce, and drain (DESIGN.md decision 16).
//!
//! The gateway speaks no BGP: BIRD, unmodified, does, through the kernel twins. The gateway's one
//! part is which VIPs BIRD exports. For each, it keeps a route `blackhole VIP/32 proto 250` in a
//! kernel table of its own (`[announce] table`), `VIP/128` for an IPv6 VIP in the same table
//! number of the IPv6 routing tables; BIRD's `kernel` protocol imports that table
//! (`learn`: routes another program wrote) and its BGP sessions export what it imported
//! (`conf/bird/gateway.conf`). The table is no lookup's, so the routes forward nothing and the
//! kernel's own forwarding and the mirror (main table, twins only) never see them.
//!
//! A VIP is announced while, all at once:
//! 1. this box serves it: the topology holds it (a config-owned VIP always, a kernel-owned one while
//!    a twin has it, `control::topology`: `local` for IPv4, not `silent6` for IPv6);
//! 2. one of its services has a real server with a weight above 0 that the health checks do not
//!    hold down (a sorry server does not count: a VIP only a sorry server answers is withdrawn, so
//!    that the router prefers boxes with servers);
//! 3. neither the VIP nor the whole box is draining.
//!
//! **Drain** (`gwctl drain [VIP]`): the VIP is withdrawn at once, and the box keeps serving it,
//! new connections included, since the router sends flows here until BGP has converged. When the
//! VIP's services have no connection left, or at the drain's deadline, the drain is *done*: the
//! services take no new connection (every real server at weight 0, as `ipvsadm -e -w 0` would),
//! and the connections still open carry on until they end. `gwctl undrain` ends it.
//!
//! At shutdown every route goes first, then the box forwards `[announce] withdraw_wait_ms` more,
//! so the router moves the flows before the ports close. After a SIGKILL the routes stay in the
//! table, but the BGP session dies with the twins; the next start removes them (`Announcer::open`).

use super::netlink::Netlink;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The route protocol of announced VIPs (`proto 250` in `ip route show table N`): unassigned in
/// linux/rtnetlink.h and /etc/iproute2/rt_protos, so no other program's routes look like ours.
pub const ROUTE_PROTOCOL: u8 = 250;

/// One drain: of a VIP, or of the whole box.
#[derive(Clone, Copy, Debug)]
struct Drain {
    since: Instant,
    deadline: Instant,
    /// When it was done (no connection left, or the deadline): the VIP takes no new connection.
    done: Option<Instant>,
}

/// Every drain under way or done.
#[derive(Debug, Default)]
pub struct Drains {
    whole: Option<Drain>,
    vips: BTreeMap<IpAddr, Drain>,
}

/// A drain as `gwctl announce` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrainView {
    /// The VIP, or none for the whole box.
    pub vip: Option<IpAddr>,
    /// `draining` (withdrawn, serving) or `drained` (withdrawn, taking no new connection).
    pub state: String,
    /// Seconds since it began.
    pub for_s: f64,
    /// Seconds until the deadline (0 once passed).
    pub left_s: f64,
    /// Connections still open on the drained VIPs.
    pub conns: u64,
}

/// What `gwctl announce` shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AnnounceView {
    /// The kernel table the routes are in; none when `[announce]` is not configured.
    pub table: Option<u32>,
    /// The VIPs whose routes are in the table now.
    pub announced: Vec<IpAddr>,
    /// VIPs of services this box does not announce, each with why.
    pub withheld: Vec<(IpAddr, String)>,
    pub drains: Vec<DrainView>,
    /// Route changes the kernel refused (each retried at the next change or second).
    pub errors: u64,
}

impl Drains {
    /// Starts draining `vip` (the whole box when None), ending `timeout` from `now`. A drain
    /// already under way starts again.
    pub fn start(&mut self, vip: Option<IpAddr>, timeout: Duration, now: Instant) {
        let d = Drain {
            since: now,
            deadline: now + timeout,
            done: None,
        };
        match vip {
            Some(v) => {
                self.vips.insert(v, d);
            }
            None => self.whole = Some(d),
        }
    }

    /// Ends the drain of `vip`, or every drain (the box's and each VIP's) when None. Whether there
    /// was one.
    pub fn stop(&mut self, vip: Option<IpAddr>) -> bool {
        match vip {
            Some(v) => self.vips.remove(&v).is_some(),
            None => {
                let any = self.whole.is_some() || !self.vips.is_empty();
                self.whole = None;
                self.vips.clear();
                any
            }
        }
    }

    /// Whether a drain is under way (not yet done): only then are connections worth counting.
    pub fn pending(&self) -> bool {
        self.whole
            .iter()
            .chain(self.vips.values())
            .any(|d| d.done.is_none())
    }

    fn of(&self, vip: IpAddr) -> impl Iterator<Item = &Drain> {
        self.whole.iter().chain(self.vips.get(&vip))
    }

    /// Whether `vip` is withdrawn for a drain (its own or the box's).
    pub fn draining(&self, vip: IpAddr) -> bool {
        self.of(vip).next().is_some()
    }

    /// Whether `vip` takes no new connection: a drain of it is done.
    pub fn done(&self, vip: IpAddr) -> bool {
        self.of(vip).any(|d| d.done.is_some())
    }

    /// Marks done every drain whose VIPs (`vips`: every served VIP, for the box's) have no
    /// connection left (`conns`), or whose deadline has passed. Whether one became done.
    pub fn tick(&mut self, now: Instant, vips: &[IpAddr], conns: impl Fn(IpAddr) -> u64) -> bool {
        let mut changed = false;
        let mut settle = |d: &mut Drain, left: u64| {
            if d.done.is_none() && (left == 0 || now >= d.deadline) {
                d.done = Some(now);
                changed = true;
            }
        };
        if let Some(d) = &mut self.whole {
            settle(d, vips.iter().map(|v| conns(*v)).sum());
        }
        for (v, d) in self.vips.iter_mut() {
            settle(d, conns(*v));
        }
        changed
    }

    /// Every drain, the box's first.
    pub fn view(
        &self,
        now: Instant,
        vips: &[IpAddr],
        conns: impl Fn(IpAddr) -> u64,
    ) -> Vec<DrainView> {
        let show = |vip: Option<IpAddr>, d: &Drain, left: u64| DrainView {
            vip,
            state: if d.done.is_some() {
                "drained"
            } else {
                "draining"
            }
            .into(),
            for_s: now.saturating_duration_since(d.since).as_secs_f64(),
            left_s: d.deadline.saturating_duration_since(now).as_secs_f64(),
            conns: left,
        };
        let whole = self
            .whole
            .iter()
            .map(|d| show(None, d, vips.iter().map(|v| conns(*v)).sum()));
        let each = self.vips.iter().map(|(v, d)| show(Some(*v), d, conns(*v)));
        whole.chain(each).collect()
    }
}

/// The VIPs to announce, IPv4 and IPv6, from each service's VIP and whether it has a server up
/// (`up`), whether this box holds the VIP (`held`, `control::topology`) and the drains; with why
/// each other VIP is withheld.
pub fn announced(
    up: impl IntoIterator<Item = (IpAddr, bool)>,
    held: impl Fn(IpAddr) -> bool,
    drains: &Drains,
) -> (BTreeSet<IpAddr>, BTreeMap<IpAddr, &'static str>) {
    let mut any_up: BTreeMap<IpAddr, bool> = BTreeMap::new();
    for (vip, is_up) in up {
        *any_up.entry(vip).or_default() |= is_up;
    }
    let mut yes = BTreeSet::new();
    let mut no = BTreeMap::new();
    for (vip, is_up) in any_up {
        let why = if !held(vip) {
            Some("not held (a kernel-owned VIP no twin has)")
        } else if drains.draining(vip) {
            Some("draining")
        } else if !is_up {
            Some("no real server up")
        } else {
            None
        };
        match why {
            Some(w) => {
                no.insert(vip, w);
            }
            None => {
                yes.insert(vip);
            }
        }
    }
    (yes, no)
}

/// The routes in the announce table.
pub struct Announcer {
    nl: Netlink,
    table: u32,
    now: BTreeSet<IpAddr>,
    /// Route changes the kernel refused.
    pub errors: u64,
}

impl Announcer {
    /// Opens the table, removing the routes a previous run left there (a SIGKILL does).
    pub fn open(table: u32) -> io::Result<Announcer> {
        let mut nl = Netlink::open()?;
        for vip in nl.routes_of(table, ROUTE_PROTOCOL)? {
            nl.del_blackhole(table, ROUTE_PROTOCOL, vip)?;
            tracing::info!("announce: {vip} left in table {table} by an earlier run, withdrawn");
        }
        Ok(Announcer {
            nl,
            table,
            now: BTreeSet::new(),
            errors: 0,
        })
    }

    pub fn table(&self) -> u32 {
        self.table
    }

    /// The VIPs whose routes are in the table.
    pub fn current(&self) -> &BTreeSet<IpAddr> {
        &self.now
    }

    /// Makes the table hold `want`'s routes: withdrawals first. A route the kernel refuses is
    /// counted, logged, and tried again at the next call.
    pub fn set(&mut self, want: &BTreeSet<IpAddr>) {
        let gone: Vec<_> = self.now.difference(want).copied().collect();
        let new: Vec<_> = want.difference(&self.now).copied().collect();
        for vip in gone {
            match self.nl.del_blackhole(self.table, ROUTE_PROTOCOL, vip) {
                Ok(()) => {
                    self.now.remove(&vip);
                    tracing::info!("announce: {vip} withdrawn");
                }
                Err(e) => {
                    self.errors += 1;
                    tracing::error!("announce: withdrawing {vip}: {e}");
                }
            }
        }
        for vip in new {
            match self.nl.add_blackhole(self.table, ROUTE_PROTOCOL, vip) {
                Ok(()) => {
                    self.now.insert(vip);
                    tracing::info!("announce: {vip} announced");
                }
                Err(e) => {
                    self.errors += 1;
                    tracing::error!("announce: announcing {vip}: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_vip_is_announced_while_held_up_and_not_draining() {
        let (a, b, c, d) = (
            ip("10.0.0.1"),
            ip("10.0.0.2"),
            ip("10.0.0.3"),
            ip("10.0.0.4"),
        );
        let local = [a, b, c];
        let held = |v: IpAddr| local.contains(&v);
        let mut drains = Drains::default();
        // a: two services, one with a server up. b: none up. c: up. d: not held.
        let up = || vec![(a, false), (a, true), (b, false), (c, true), (d, true)];
        let (yes, no) = announced(up(), held, &drains);
        assert_eq!(yes.into_iter().collect::<Vec<_>>(), vec![a, c]);
        assert_eq!(no[&b], "no real server up");
        assert!(no[&d].starts_with("not held"));
        drains.start(Some(c), Duration::from_secs(5), Instant::now());
        let (yes, no) = announced(up(), held, &drains);
        assert_eq!(yes.into_iter().collect::<Vec<_>>(), vec![a]);
        assert_eq!(no[&c], "draining");
        drains.start(None, Duration::from_secs(5), Instant::now());
        assert!(
            announced(up(), held, &drains).0.is_empty(),
            "the whole box drains"
        );
        assert!(drains.stop(None));
        assert_eq!(announced(up(), held, &drains).0.len(), 2);
        assert!(!drains.stop(None));
        assert!(!drains.pending());
    }

    #[test]
    fn ipv6_vips_are_announced_and_drained_beside_ipv4_ones() {
        let (a, v6, w6) = (ip("10.0.0.1"), ip("2001:db8::100"), ip("2001:db8::200"));
        // w6: a kernel-owned IPv6 VIP no twin holds.
        let held = |v: IpAddr| v != w6;
        let mut drains = Drains::default();
        let up = || vec![(a, true), (v6, true), (w6, true)];
        let (yes, no) = announced(up(), held, &drains);
        assert_eq!(yes.into_iter().collect::<Vec<_>>(), vec![a, v6]);
        assert!(no[&w6].starts_with("not held"));
        let t0 = Instant::now();
        drains.start(Some(v6), Duration::from_secs(5), t0);
        let (yes, no) = announced(up(), held, &drains);
        assert_eq!(yes.into_iter().collect::<Vec<_>>(), vec![a]);
        assert_eq!(no[&v6], "draining");
        assert!(!drains.draining(a));
        assert!(drains.tick(t0, &[a, v6], |v| u64::from(v == a)));
        assert!(drains.done(v6) && !drains.done(a));
    }

    #[test]
    fn a_drain_is_done_when_its_connections_end_or_at_its_deadline() {
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        let t0 = Instant::now();
        let mut drains = Drains::default();
        drains.start(Some(a), Duration::from_secs(10), t0);
        drains.start(Some(b), Duration::from_secs(10), t0);
        // a has 3 connections, b none.
        let conns = |v: IpAddr| if v == a { 3 } else { 0 };
        assert!(drains.tick(t0, &[a, b], conns));
        assert!(!drains.done(a) && drains.draining(a));
        assert!(drains.pending(), "a's drain is under way");
        assert!(drains.done(b));
        assert!(!drains.tick(t0 + Duration::from_secs(9), &[a, b], conns));
        assert!(!drains.done(a));
        let v = drains.view(t0 + Duration::from_secs(9), &[a, b], conns);
        assert_eq!(
            (v[0].vip, v[0].state.as_str(), v[0].conns),
            (Some(a), "draining", 3)
        );
        assert_eq!(v[0].left_s, 1.0);
        assert_eq!(v[1].state, "drained");
        assert!(drains.tick(t0 + Duration::from_secs(10), &[a, b], conns));
        assert!(drains.done(a), "the deadline ends it with connections left");
        assert!(!drains.pending(), "both done: nothing left to count");
        // The box's drain counts every VIP's connections.
        let mut whole = Drains::default();
        whole.start(None, Duration::from_secs(10), t0);
        assert!(!whole.tick(t0, &[a, b], conns));
        assert!(whole.tick(t0, &[b], conns), "b alone has none");
        assert!(whole.done(a) && whole.done(b));
        assert!(
            !whole.stop(Some(a)) && whole.done(a),
            "a VIP's undrain leaves the box's"
        );
    }
}

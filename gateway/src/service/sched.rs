//! Per-worker scheduling: [`SchedState`] picks a real server for a new connection.
//!
//! Who owns what:
//! - [`Service`] (immutable, `Arc`-shared): the weights and the tables derived from them — rr/wrr
//!   sequence, sh/dh buckets, the Maglev table — plus the shared atomics: the rr/wrr sequence
//!   counter and each server's [`RsStats`](super::RsStats).
//! - [`SchedState`] (one per worker per service, `&mut`): the lblc/lblcr tables. Every other
//!   scheduler is a pure function of the service, the counts and the client.
//! - The persistence table ([`PersistTable`](super::PersistTable)): shared, sharded, locked per new
//!   connection of a persistent service only.
//!
//! rr and wrr use the shared counter rather than per-worker cursors so that the sequence of new
//! connections follows the weights exactly whichever worker each lands on (see `wrr.rs`). It costs one
//! `fetch_add` on a cache line the workers share, per new connection; at 10 M new connections a
//! second across cores that line would be the limit, far above what the rest of connection setup
//! allows. An enum rather than `Box<dyn Scheduler>`: the dispatch is a jump table the compiler sees.

use super::counts::ConnCounts;
use super::key::{addr_word, Millis};
use super::lblc::{LblcTable, LblcrTable};
use super::least;
use super::sched_kind::SchedKind;
use super::snapshot::{Service, Tables};
use std::net::IpAddr;

/// What a scheduler may look at in a new connection's first packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey {
    /// Source address as an [`addr_word`] (sh, mh).
    pub ip: u32,
    /// The whole source address (persistence's template key): an IPv4 address in the low 32
    /// bits.
    pub addr: u128,
    /// Source port (sh-port, mh-port).
    pub port: u16,
    /// Destination address as an [`addr_word`] (dh, lblc, lblcr); the VIP unless the service
    /// matches many addresses.
    pub dst: u32,
}

impl ClientKey {
    pub fn new(ip: impl Into<IpAddr>, port: u16, dst: impl Into<IpAddr>) -> ClientKey {
        let ip = ip.into();
        ClientKey {
            ip: addr_word(ip),
            addr: match ip {
                IpAddr::V4(a) => u128::from(u32::from(a)),
                IpAddr::V6(a) => u128::from(a),
            },
            port,
            dst: addr_word(dst.into()),
        }
    }
}

/// Whether a connection that failed on server `not` could be scheduled elsewhere (`pick_other`
/// could find another server): the scheduler moves (not `dh`, nor `sh`/`mh` without their fallback
/// flag) and another server has a weight and is not overloaded.
pub fn elsewhere_possible(svc: &Service, not: usize) -> bool {
    let hashed_only = match svc.sched() {
        SchedKind::Dh => true,
        SchedKind::Sh | SchedKind::Mh => !svc.config().flags.fallback,
        _ => false,
    };
    !hashed_only
        && svc
            .weights()
            .iter()
            .enumerate()
            .any(|(i, &w)| i != not && w > 0 && !svc.overloaded(i))
}

/// The counts of a service with one server taken as overloaded (`pick_other`).
struct Excluding<'a, C: ?Sized> {
    inner: &'a C,
    not: usize,
}

impl<C: ConnCounts + ?Sized> ConnCounts for Excluding<'_, C> {
    fn active(&self, rs: usize) -> u32 {
        self.inner.active(rs)
    }
    fn inactive(&self, rs: usize) -> u32 {
        self.inner.inactive(rs)
    }
    fn overloaded(&self, rs: usize) -> bool {
        rs == self.not || self.inner.overloaded(rs)
    }
}

/// wrr/rr: sequence positions tried when the scheduled server turned out overloaded, before a scan.
const SEQ_PROBES: u64 = 16;

/// One worker's scheduler state for one service.
#[derive(Debug)]
pub enum SchedState {
    /// Schedulers without per-worker state.
    Stateless,
    Lblc(LblcTable),
    Lblcr(LblcrTable),
}

impl SchedState {
    /// Fresh state for `svc`'s scheduler.
    pub fn new(svc: &Service) -> Self {
        match svc.sched() {
            SchedKind::Lblc => SchedState::Lblc(LblcTable::default()),
            SchedKind::Lblcr => SchedState::Lblcr(LblcrTable::default()),
            _ => SchedState::Stateless,
        }
    }

    /// Adopts a new snapshot of the service: tables are kept while the scheduler stays the same
    /// (entries refer to servers by identity), replaced when it changes. Existing connections are not
    /// affected either way; they live in the connection table.
    pub fn sync(&mut self, svc: &Service) {
        let same = matches!(
            (&*self, svc.sched()),
            (SchedState::Lblc(_), SchedKind::Lblc) | (SchedState::Lblcr(_), SchedKind::Lblcr)
        ) || (matches!(self, SchedState::Stateless)
            && !matches!(svc.sched(), SchedKind::Lblc | SchedKind::Lblcr));
        if !same {
            *self = SchedState::new(svc);
        }
    }

    /// Periodic upkeep (about once a minute): ages lblc/lblcr entries.
    pub fn housekeeping(&mut self, now: Millis) {
        match self {
            SchedState::Stateless => {}
            SchedState::Lblc(t) => t.housekeeping(now),
            SchedState::Lblcr(t) => t.housekeeping(now),
        }
    }

    /// The real server (index into `svc.reals()`) for a new connection of `client`, or `None` when
    /// no server may take it. `counts` is normally `svc` itself (the shared counts).
    ///
    /// A persistent service first consults the client's template (`ipvsadm -p`), as
    /// `ip_vs_sched_persist` does: a live template whose server is still in the service wins, even
    /// over weight 0 unless `expire_quiescent` is set; otherwise the scheduler picks and the choice
    /// becomes the template.
    ///
    /// `#[inline]`: a wrapper the IPv4 and IPv6 new connections share; when the IPv6 path grew
    /// (af1b59c's fast path), LLVM stopped inlining it into the IPv4 one, a SYN 30 instructions
    /// dearer (`perf/cost.sh`).
    #[inline]
    pub fn pick<C: ConnCounts + ?Sized>(
        &mut self,
        svc: &Service,
        counts: &C,
        client: ClientKey,
        now: Millis,
    ) -> Option<usize> {
        let (Some(p), Some(table)) = (svc.config().persistence, svc.persist_table()) else {
            return self.schedule(svc, counts, client, now);
        };
        let masked = p.key(client.addr, svc.config().vip.is_ipv6());
        let ttl = Millis::from(p.timeout_s) * 1000;
        let w = svc.weights();
        table.resolve(
            masked,
            now,
            ttl,
            |rs| {
                svc.index_of(rs)
                    .filter(|&i| !(p.expire_quiescent && w[i] == 0))
            },
            || {
                let i = self.schedule(svc, counts, client, now)?;
                Some((i, svc.key(i)?))
            },
        )
    }

    /// A real server other than `not` for a client whose connection to `not` failed (`syn_retry`):
    /// the scheduler proper with `not` taken as overloaded, so every scheduler steps over it as it
    /// steps over an overloaded server. Persistence is not consulted (its template names `not`).
    /// `None` when no other server may take the connection (sh, mh and dh without their
    /// fallback flag stay on the hashed server).
    pub fn pick_other<C: ConnCounts + ?Sized>(
        &mut self,
        svc: &Service,
        counts: &C,
        client: ClientKey,
        now: Millis,
        not: usize,
    ) -> Option<usize> {
        let c = Excluding { inner: counts, not };
        self.schedule(svc, &c, client, now).filter(|&i| i != not)
    }

    /// The scheduler proper, without persistence.
    fn schedule<C: ConnCounts + ?Sized>(
        &mut self,
        svc: &Service,
        c: &C,
        client: ClientKey,
        now: Millis,
    ) -> Option<usize> {
        let w = svc.weights();
        let available = |i: usize| w[i] > 0 && !c.overloaded(i);
        let flags = svc.config().flags;
        match (svc.sched(), svc.tables()) {
            (SchedKind::Rr | SchedKind::Wrr, Tables::Seq(seq)) => {
                let seq = seq.as_ref()?;
                let n = svc.next_seq();
                // Overloaded servers are skipped as IPVS does, by moving on in the sequence; if the
                // next few are overloaded too, the first available in list order after the
                // scheduled one.
                if let Some(i) = (0..SEQ_PROBES)
                    .map(|k| seq.at(n + k))
                    .find(|&i| available(i))
                {
                    return Some(i);
                }
                let (start, len) = (seq.at(n), w.len());
                (1..len).map(|k| (start + k) % len).find(|&i| available(i))
            }
            (SchedKind::Lc, _) => least::lc(w, c),
            (SchedKind::Wlc, _) => least::wlc(w, c),
            (SchedKind::Sed, _) => least::sed(w, c),
            (SchedKind::Nq, _) => least::nq(w, c),
            (SchedKind::Fo, _) => least::fo(w, c),
            (SchedKind::Ovf, _) => least::ovf(w, c),
            (SchedKind::Sh, Tables::Sh(t)) => {
                let port = if flags.hash_port { client.port } else { 0 };
                t.sh_pick(client.ip, port, flags.fallback, available)
            }
            (SchedKind::Dh, Tables::Dh(t)) => t.dh_pick(client.dst, available),
            (SchedKind::Mh, Tables::Mh(t)) => t.pick(
                svc.client_hash(client.ip, client.port),
                w.len(),
                flags.fallback,
                available,
            ),
            (SchedKind::Lblc, _) => match self {
                SchedState::Lblc(t) => t.pick(svc, c, client.dst, now),
                // A state not synced to this snapshot yet: adopt it, then schedule.
                _ => {
                    self.sync(svc);
                    self.schedule(svc, c, client, now)
                }
            },
            (SchedKind::Lblcr, _) => match self {
                SchedState::Lblcr(t) => t.pick(svc, c, client.dst, now),
                _ => {
                    self.sync(svc);
                    self.schedule(svc, c, client, now)
                }
            },
            // Service::new always builds the table its scheduler needs.
            _ => None,
        }
    }
}

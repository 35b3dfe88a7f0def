//! A worker's connections as another box learns them, and back (issue 12, HA sync): `export`
//! names a connection by identity (`conn::record::ConnRecord`), `install` puts one into this
//! worker's table with its state and time left, its real server's counts and its local port taken,
//! so that its next packet, in either direction, is forwarded as on the box that opened it.

use super::{mode, Forwarder, Room, NO_DEST};
use crate::conn::record::{ms_left, ConnRecord, RecordKind, SeqAdj};
use crate::conn::{ConnId, InsertError, State, Ticks, Tuple};
use crate::forward::nat;
use crate::forward::synproxy::Proxied;
use crate::service::FwdMode;
use std::net::{IpAddr, Ipv4Addr};

/// Why a record was not installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    #[error("no such virtual service here")]
    NoService,
    #[error("no such real server in the service here")]
    NoRealServer,
    #[error("the real server's forwarding mode differs here")]
    ModeMismatch,
    #[error("the local address or port is not this worker's")]
    NotThisWorker,
    #[error("a persistence template for a service that is not persistent here")]
    Template,
    #[error("connection table: {0:?}")]
    Table(InsertError),
    #[error("a translation record for a connection that is not here")]
    NoConn,
    #[error("a translation record for a connection of a service not proxied here")]
    NotProxied,
}

/// What a backup did with a record it was sent ([`Forwarder::apply_record`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A connection new here.
    Installed,
    /// The same connection (real server, local address) was here: its state and timer follow.
    Refreshed,
    /// Another connection of the same client tuple was here (the primary scheduled the reused
    /// tuple afresh): it was removed and the record installed.
    Replaced,
    /// A SYN-proxied connection's shifts, for the connection here of the record's client tuple.
    Translated,
}

pub use crate::counters::SyncCounters;

impl SyncCounters {
    /// Records refused, every reason.
    pub fn refused(&self) -> u64 {
        self.refused_no_service
            + self.refused_no_real
            + self.refused_mode
            + self.refused_not_this_worker
            + self.refused_table
            + self.refused_template
            + self.refused_no_conn
            + self.refused_not_proxied
    }

    /// Records applied, by any outcome or refusal: one for each `count_applied`.
    pub fn applied(&self) -> u64 {
        self.installed + self.refreshed + self.replaced + self.translated + self.refused()
    }
}

fn mode_of(f: FwdMode) -> u8 {
    match f {
        FwdMode::FullNat => mode::FULLNAT,
        FwdMode::Nat => mode::NAT,
        FwdMode::Dr => mode::DR,
        FwdMode::Tun => mode::TUN,
    }
}

impl Forwarder {
    /// Connection `id` as another box would install it, `now` giving its time left; None for a
    /// parked entry or one whose service or real server is gone.
    pub fn export(&self, id: ConnId, now: Ticks) -> Option<ConnRecord> {
        let c = self.table.get(id)?;
        // A connection the SYN proxy opened lives by its sequence translation, which follows
        // its record (`push_with_template`): none before the server has answered.
        if c.svc == NO_DEST
            || c.rs == NO_DEST
            || c.flags().contains(super::PARKED)
            || (c.ext() & super::PROXIED != 0 && self.proxied_adj(id).is_none())
        {
            return None;
        }
        let vs = self.services.services.get(usize::from(c.svc))?;
        let rs = vs.svc.reals().get(usize::from(c.rs))?;
        let local = match (c.mode(), c.reply()) {
            (mode::FULLNAT, Some(r)) => (r.dst_ip().into(), r.dport),
            _ => (Ipv4Addr::UNSPECIFIED.into(), 0),
        };
        Some(ConnRecord::of_conn(&c, (rs.addr, rs.port), local, now))
    }

    /// Applies a record the primary sent: installs its connection, or brings the one here up to
    /// date (state and timer), or replaces another connection of the same client tuple. Counted
    /// in `sync_counters` by outcome or refusal.
    pub fn apply_record(&mut self, r: &ConnRecord, now: Ticks) -> Result<Applied, InstallError> {
        let r0 = self.apply_inner(r, now);
        self.count_applied(&r0);
        r0
    }

    /// Counts what became of a record, in `sync_counters` (an IPv6 one's too: `inet6::sync6`).
    pub fn count_applied(&mut self, r0: &Result<Applied, InstallError>) {
        let s = &mut self.sync_stats;
        match r0 {
            Ok(Applied::Installed) => s.installed += 1,
            Ok(Applied::Refreshed) => s.refreshed += 1,
            Ok(Applied::Replaced) => s.replaced += 1,
            Ok(Applied::Translated) => s.translated += 1,
            Err(InstallError::NoService) => s.refused_no_service += 1,
            Err(InstallError::NoRealServer) => s.refused_no_real += 1,
            Err(InstallError::ModeMismatch) => s.refused_mode += 1,
            Err(InstallError::NotThisWorker) => s.refused_not_this_worker += 1,
            Err(InstallError::Template) => s.refused_template += 1,
            Err(InstallError::Table(_)) => s.refused_table += 1,
            Err(InstallError::NoConn) => s.refused_no_conn += 1,
            Err(InstallError::NotProxied) => s.refused_not_proxied += 1,
        }
    }

    fn apply_inner(&mut self, r: &ConnRecord, now: Ticks) -> Result<Applied, InstallError> {
        match r.kind {
            RecordKind::Template => return self.install_template(r, now),
            RecordKind::Translation(adj) => return self.apply_translation(r, adj, now),
            RecordKind::Conn => {}
        }
        // An IPv6 connection's record is the IPv6 table's (`inet6::sync6`).
        let a = r.v4().ok_or(InstallError::NoService)?;
        let client = Tuple::new(a.client.0, a.client.1, a.vip.0, a.vip.1, r.proto);
        let Some((id, _)) = self.table.lookup(&client) else {
            return self.install_over_stale(r, now, Applied::Installed);
        };
        let same = self.export(id, now).is_some_and(|e| {
            (e.real, e.local, e.mode, e.proto) == (r.real, r.local, r.mode, r.proto)
        });
        if !same {
            // The primary scheduled the client's new connection afresh and parked the old one on
            // its LIP:lport (`retire`); parked here too, the port is not handed out after a
            // takeover while the old server may still hold it in TIME_WAIT.
            self.retire(id, now);
            return self.install_over_stale(r, now, Applied::Replaced);
        }
        let Some(c) = self.table.get(id) else {
            return Err(InstallError::NotThisWorker);
        };
        let (svc, rs, old) = (c.svc, c.rs, c.state());
        let new = State::from_u8(r.state);
        self.table.refresh(id, new, r.remaining_ms, now);
        // Proxied only if the translation record that follows says so: the same client tuple to
        // the same server may be a later connection the proxy did not open.
        if let Some(c) = self.table.get_mut(id) {
            c.set_ext(c.ext() & !super::PROXIED);
        }
        let change = crate::conn::StateChange { old, new };
        if let Some(s) = self
            .services
            .services
            .get(usize::from(svc))
            .and_then(|vs| vs.svc.stats(usize::from(rs)))
        {
            match change.activity() {
                crate::conn::Activity::BecameActive => s.on_active(),
                crate::conn::Activity::BecameInactive => s.on_inactive(),
                crate::conn::Activity::Unchanged => {}
            }
        }
        Ok(Applied::Refreshed)
    }

    /// `install`, and if another entry here holds the record's reply tuple (RS:rport ->
    /// LIP:lport), that entry is stale: the primary gave the local port to this connection, so it
    /// has dropped the one that had it (a client reusing its port, scheduled afresh, whose record
    /// comes later; or an entry that ended there a little sooner than here, or that the
    /// primary's full table let go). It goes, and the record is installed (`Replaced`). A full
    /// table makes room as for a connection opened here (`Room::Table`): the primary's own full
    /// table has let its oldest closed connections go, which this one still holds.
    fn install_over_stale(
        &mut self,
        r: &ConnRecord,
        now: Ticks,
        ok: Applied,
    ) -> Result<Applied, InstallError> {
        let mut installed = self.install(r, now);
        if installed == Err(InstallError::Table(InsertError::TableFull))
            && super::make_room(
                &mut self.table,
                &self.services,
                &mut self.pools,
                &mut self.limits,
                &mut self.stats,
                Room::Table,
            )
            .is_some()
        {
            installed = self.install(r, now);
        }
        match installed {
            Ok(_) => Ok(ok),
            Err(InstallError::Table(InsertError::Duplicate)) if r.mode == mode::FULLNAT => {
                let a = r.v4().ok_or(InstallError::NoService)?;
                let reply = Tuple::new(a.real.0, a.real.1, a.local.0, a.local.1, r.proto);
                match self.table.lookup(&reply) {
                    Some((stale, crate::conn::Dir::Reply)) => {
                        self.drop_connection(stale);
                        self.install(r, now).map(|_| Applied::Replaced)
                    }
                    _ => Err(InstallError::Table(InsertError::Duplicate)),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// A persistence template the primary sent (either family): into the service's table (shared
    /// by every worker), unless the one here expires later.
    pub fn install_template(
        &mut self,
        r: &ConnRecord,
        now: Ticks,
    ) -> Result<Applied, InstallError> {
        let si = self
            .services
            .find_ip(r.vip.0, r.vip.1, r.proto)
            .ok_or(InstallError::NoService)?;
        let svc = &self.services.services[si as usize].svc;
        let table = svc.persist_table().ok_or(InstallError::Template)?;
        let rs = crate::service::RsKey {
            addr: r.real.0,
            port: r.real.1,
        };
        if svc.index_of(rs).is_none() {
            return Err(InstallError::NoRealServer);
        }
        let client = match r.client.0 {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        let expires = now.0.saturating_add(u64::from(r.remaining_ms));
        if table.install(client, rs, expires, now.0) {
            Ok(Applied::Installed)
        } else {
            Err(InstallError::Table(crate::conn::InsertError::TableFull))
        }
    }

    /// The persistence template that placed connection `id`, as another box would install it:
    /// None unless its service is persistent and the template lives.
    pub fn export_template(&self, id: ConnId, now: Ticks) -> Option<ConnRecord> {
        let c = self.table.get(id)?;
        let vs = self.services.services.get(usize::from(c.svc))?;
        let p = vs.svc.config().persistence.as_ref()?;
        let client = c.client();
        let masked = p.key(u128::from(u32::from(client.src_ip())), false);
        template_record(
            vs,
            (IpAddr::V4(Ipv4Addr::from(masked as u32)), masked),
            (client.dst_ip().into(), client.dport),
            (client.proto, c.mode()),
            now,
        )
    }

    /// `r`, right after it its translation when the SYN proxy opened it, then its template when
    /// its service is persistent (one per client in a row).
    fn push_with_template(&self, id: ConnId, r: ConnRecord, now: Ticks, out: &mut Vec<ConnRecord>) {
        let translation = self
            .proxied_adj(id)
            .map(|adj| ConnRecord::translation(&r, adj));
        push_record(out, r, translation, self.export_template(id, now));
    }

    /// A translation record: the SYN proxy's shifts of the connection here of the record's
    /// client tuple, local address and port (installed from the record sent just before it), so
    /// that this box translates its segments as the primary did once it takes over. Refused when
    /// that connection is not here (`refused_no_conn`: its record was refused or lost), is neither
    /// FullNAT nor NAT (`refused_mode`), or when no service here is proxied, so the proxy keeps
    /// no state (`refused_not_proxied`).
    fn apply_translation(
        &mut self,
        r: &ConnRecord,
        adj: SeqAdj,
        now: Ticks,
    ) -> Result<Applied, InstallError> {
        let a = r.v4().ok_or(InstallError::NoService)?;
        let client = Tuple::new(a.client.0, a.client.1, a.vip.0, a.vip.1, r.proto);
        let (id, _) = self.table.lookup(&client).ok_or(InstallError::NoConn)?;
        // The connection of its record, not an older one of the same client tuple left here
        // when that record was refused.
        let e = self.export(id, now).ok_or(InstallError::NoConn)?;
        if (e.local, e.mode) != (r.local, r.mode) {
            return Err(InstallError::NoConn);
        }
        let c = self.table.get_mut(id).ok_or(InstallError::NoConn)?;
        if c.mode() != mode::FULLNAT && c.mode() != mode::NAT {
            return Err(InstallError::ModeMismatch);
        }
        let p = self
            .synproxy
            .get_mut(id.index())
            .ok_or(InstallError::NotProxied)?;
        *p = Proxied {
            adj,
            ..Proxied::default()
        };
        c.set_ext(c.ext() | super::PROXIED);
        Ok(Applied::Translated)
    }

    /// The worker of this box that owns `r`'s connection, by the rules its packets follow
    /// (`forward::owner`): the owner of its local port for FullNAT (replies come back to it, and
    /// it is the worker that made the connection on a box with the same layout), otherwise the
    /// owner of its client tuple for client packets arriving on datapath port `client_port`.
    pub fn record_owner(&self, r: &ConnRecord, client_port: u16) -> usize {
        // FullNAT and NAT64: the owner of the local port, whatever the family.
        if matches!(r.mode, mode::FULLNAT | mode::NAT64) && r.local.1 != 0 {
            return self.layout.owner_of(r.local.1);
        }
        // As the datapath picks it (`client_owner_elsewhere`): by the hash alone in a service
        // with NAT real servers, whatever this connection's mode.
        let si = self.services.find_ip(r.vip.0, r.vip.1, r.proto);
        match (r.client.0, r.vip.0) {
            (IpAddr::V4(cip), IpAddr::V4(vip)) => self.owners.of_client(
                client_port,
                si.is_some_and(|si| self.nat.service_has_nat(si)),
                r.proto,
                cip,
                r.client.1,
                vip,
                r.vip.1,
            ),
            (IpAddr::V6(cip), IpAddr::V6(vip)) => self.owners.of_client6(
                client_port,
                si.is_some_and(|si| self.services.service_has_nat6(si)),
                r.proto,
                cip,
                r.client.1,
                vip,
                r.vip.1,
            ),
            // No connection mixes families on the client's side: any worker refuses it.
            _ => self.worker as usize,
        }
    }

    /// A full resync's share of this worker: the records of the connections in table slots
    /// `from..from + n`, appended to `out`; the slot to go on from, or None when the table is
    /// done.
    pub fn export_range(
        &mut self,
        from: u32,
        n: u32,
        now: Ticks,
        out: &mut Vec<ConnRecord>,
    ) -> Option<u32> {
        let end = from.saturating_add(n);
        let ids: Vec<ConnId> = self.table.iter_range(from, end).map(|(id, _)| id).collect();
        for id in ids {
            // Neither a TCP connection still in its handshake nor a UDP flow not known to be in
            // use is sent, as the log sends neither: a flood's would fill the backup's table with
            // entries it takes as answered.
            if !self.table.get(id).is_some_and(|c| worth_syncing(&c)) {
                continue;
            }
            if let Some(rec) = self.export(id, now) {
                self.push_with_template(id, rec, now, out);
            }
        }
        (end < self.table.capacity() as u32).then_some(end)
    }

    /// This worker's sync counters (the log's included).
    pub fn sync_counters(&self) -> SyncCounters {
        let mut s = self.sync_stats;
        if let Some(log) = &self.sync_log {
            s.logged += log.logged;
            s.log_overflow += log.overflow;
        }
        s
    }

    /// Counts what an IPv6 table's log took (`inet6::sync6`), as this one's.
    pub fn count_logged(&mut self, logged: u64, overflow: u64) {
        self.sync_stats.logged += logged;
        self.sync_stats.log_overflow += overflow;
    }

    /// Counts records handed to the sender (`exported`) or lost for want of room.
    pub fn count_exported(&mut self, sent: u64, dropped: u64) {
        self.sync_stats.exported += sent;
        self.sync_stats.export_dropped += dropped;
    }

    /// Counts records passed to the worker that owns them.
    pub fn count_handed_over(&mut self, n: u64) {
        self.sync_stats.handed_over += n;
    }

    /// Installs a connection another box opened; the caller has picked this worker as its owner
    /// (the owner of its local port for FullNAT, of its client tuple otherwise).
    pub fn install(&mut self, r: &ConnRecord, now: Ticks) -> Result<ConnId, InstallError> {
        if r.kind == RecordKind::Template {
            return Err(InstallError::Template);
        }
        let a = r.v4().ok_or(InstallError::NoService)?;
        let si = self
            .services
            .find(a.vip.0, a.vip.1, r.proto)
            .ok_or(InstallError::NoService)?;
        let vs = &self.services.services[si as usize];
        let ri = vs
            .svc
            .reals()
            .iter()
            .position(|x| x.addr == r.real.0 && x.port == r.real.1)
            .ok_or(InstallError::NoRealServer)?;
        let real = &vs.svc.reals()[ri];
        if mode_of(real.fwd) != r.mode {
            return Err(InstallError::ModeMismatch);
        }
        let client = Tuple::new(a.client.0, a.client.1, a.vip.0, a.vip.1, r.proto);
        let reply = match real.fwd {
            FwdMode::FullNat => {
                let pool = self.pools[si as usize]
                    .as_mut()
                    .ok_or(InstallError::NotThisWorker)?;
                if !pool.take(a.local.0, a.local.1) {
                    return Err(InstallError::NotThisWorker);
                }
                Some(Tuple::new(
                    real.v4(),
                    real.port,
                    a.local.0,
                    a.local.1,
                    r.proto,
                ))
            }
            FwdMode::Nat => Some(nat::reply_tuple(&client, real.v4(), real.port)),
            FwdMode::Dr | FwdMode::Tun => None,
        };
        let state = State::from_u8(r.state);
        let id = match self.table.restore(
            client,
            reply,
            si as u16,
            ri as u16,
            r.mode,
            state,
            r.remaining_ms,
            now,
        ) {
            Ok(id) => id,
            Err(e) => {
                if let (Some(pool), FwdMode::FullNat) = (self.pools[si as usize].as_mut(), real.fwd)
                {
                    pool.free(a.local.0, a.local.1);
                }
                return Err(InstallError::Table(e));
            }
        };
        if let Some(c) = self.table.get_mut(id) {
            match real.fwd {
                // DR and TUN keep the real server's address in the entry (see the module docs).
                FwdMode::Dr | FwdMode::Tun => c.user = u32::from(real.v4()),
                // The server has answered (past SYN_RECV): `user2` marks it, as the server's ACK
                // would have; the exact value is learnt from its next packet.
                _ if !matches!(state, State::None | State::SynSent | State::SynRecv) => c.user2 = 1,
                // A handshake: `user` times it from now, as from a SYN (`syn_failed`, and since
                // when a retransmitted SYN has waited, `unanswered_server`).
                _ => c.user = now.0 as u32,
            }
        }
        if let Some(s) = vs.svc.stats(ri) {
            if state.is_active() {
                s.on_conn_new_active();
            } else {
                s.on_conn_new();
            }
        }
        Ok(id)
    }
}

/// Whether a backup should hear of connection `c` (either table's): neither a TCP handshake nor
/// a UDP flow no answer has reached yet (what a flood leaves). The backup hears of it once its
/// server has answered, and takes it as answered (`Table::refresh`), so that its table keeps no
/// flood to make room from.
pub fn worth_syncing<T: crate::conn::ConnKey>(c: &crate::conn::ConnOf<T>) -> bool {
    let tcp = c.proto() == crate::conn::PROTO_TCP;
    !(tcp && matches!(c.state(), State::None | State::SynSent | State::SynRecv)
        || c.is_unanswered_udp())
}

/// Appends record `r` to `out`, right after it its `translation` (a SYN-proxied connection's,
/// which a message never separates from it: `sync::wire::message_len`), and then `template`, the
/// persistence template that placed its connection, unless the same client's was sent just
/// before (one per client in a row).
pub fn push_record(
    out: &mut Vec<ConnRecord>,
    r: ConnRecord,
    translation: Option<ConnRecord>,
    template: Option<ConnRecord>,
) {
    out.push(r);
    out.extend(translation);
    if let Some(t) = template {
        let dup = out
            .iter()
            .rev()
            .take(8)
            .any(|x| x.kind == RecordKind::Template && (x.client, x.vip) == (t.client, t.vip));
        if !dup {
            out.push(t);
        }
    }
}

/// The record of service `vs`'s persistence template for the masked client `(addr, key)`
/// (either family), if it lives: sent after a connection it placed.
pub fn template_record(
    vs: &crate::forward::VirtualService,
    (client, masked): (IpAddr, u128),
    vip: (IpAddr, u16),
    (proto, mode): (u8, u8),
    now: Ticks,
) -> Option<ConnRecord> {
    let t = vs.svc.persist_table()?.get(masked, now.0)?;
    let unspecified = match client {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    };
    Some(ConnRecord {
        kind: RecordKind::Template,
        proto,
        mode,
        state: 0,
        client: (client, 0),
        vip,
        real: (t.rs.addr, t.rs.port),
        local: (unspecified, 0),
        remaining_ms: ms_left(t.expires, now),
    })
}

#[cfg(test)]
mod tests;

/// Connections a primary is to send its backup (issue 12), logged by the packet path while sync
/// is on, as IPVS's sync daemon does: when a TCP connection is established, at each of its state
/// changes after that, and at least once per refresh period while it carries packets (a UDP
/// flow once it is answered: its server's first datagram, or for DR and TUN, whose answers
/// bypass the gateway, its client's second), so that the backup's timers stay close. Bounded: entries
/// past the bound are counted in `overflow` and caught up by the next refresh.
/// The IPv6 table's log is the same (`inet6::sync6`), over its tuples.
#[derive(Debug)]
pub struct SyncLog<T = Tuple> {
    entries: Vec<(ConnId, T)>,
    cap: usize,
    refresh_ms: u64,
    pub logged: u64,
    pub overflow: u64,
}

/// `Conn::ext` bits 1..8: the refresh period (mod 128) in which the connection was last logged.
const EPOCH_SHIFT: u8 = 1;

impl<T: crate::conn::ConnKey> SyncLog<T> {
    pub fn new(cap: usize, refresh_ms: u64) -> SyncLog<T> {
        SyncLog {
            entries: Vec::with_capacity(cap),
            cap,
            refresh_ms: refresh_ms.max(1),
            logged: 0,
            overflow: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// After connection `id` (`c`) saw a packet that moved it from `old` to its current state:
    /// logs it if the backup should hear of it now.
    pub fn note(&mut self, id: ConnId, c: &mut crate::conn::ConnOf<T>, old: State, now: Ticks) {
        let new = c.state();
        if !worth_syncing(c) {
            return;
        }
        let epoch = ((now.0 / self.refresh_ms) & 0x7F) as u8;
        let stale = c.ext() >> EPOCH_SHIFT != epoch;
        if !(stale || new != old) {
            return;
        }
        c.set_ext((c.ext() & ((1 << EPOCH_SHIFT) - 1)) | (epoch << EPOCH_SHIFT));
        if self.entries.len() >= self.cap {
            self.overflow += 1;
            return;
        }
        self.entries.push((id, c.client()));
        self.logged += 1;
    }

    /// The connections logged since the last call, each with its client tuple (its slot may
    /// have been reused since: only an entry with the same tuple is the same connection); the
    /// caller gives the emptied vector back with [`SyncLog::recycle`].
    pub fn take(&mut self) -> Vec<(ConnId, T)> {
        std::mem::take(&mut self.entries)
    }

    /// Gives back the vector `take` returned, emptied, so the log does not allocate again.
    pub fn recycle(&mut self, mut entries: Vec<(ConnId, T)>) {
        entries.clear();
        self.entries = entries;
    }
}

impl Forwarder {
    /// Turns sync logging on (a primary: up to `cap` connections between drains, refreshed every
    /// `refresh_ms`) or off (`None`).
    pub fn set_sync(&mut self, log: Option<SyncLog>) {
        // The log's counters outlive it: the published ones never go back.
        if let Some(old) = self.sync_log.take() {
            self.sync_stats.logged += old.logged;
            self.sync_stats.log_overflow += old.overflow;
        }
        // While a log is kept, every packet takes the general body, which logs it.
        self.table.set_hot_paths(log.is_none());
        self.sync_log = log;
    }

    /// The sync log, while sync is on (its counters).
    pub fn sync_log(&self) -> Option<&SyncLog> {
        self.sync_log.as_ref()
    }

    /// After connection `id` saw a packet that moved it from `old` to its current state: logs it
    /// if the backup should hear of it now.
    pub(super) fn sync_note(&mut self, id: ConnId, old: State, now: Ticks) {
        if let (Some(log), Some(c)) = (self.sync_log.as_mut(), self.table.get_mut(id)) {
            log.note(id, c, old, now);
        }
    }

    /// The records of the connections logged since the last drain, still alive, appended to
    /// `out`.
    pub fn drain_sync(&mut self, now: Ticks, out: &mut Vec<ConnRecord>) {
        let Some(log) = self.sync_log.as_mut() else {
            return;
        };
        let entries = log.take();
        for &(id, client) in &entries {
            // The slot may have been reused since: only the same connection counts.
            if self.table.get(id).is_some_and(|c| c.client() == client) {
                if let Some(r) = self.export(id, now) {
                    self.push_with_template(id, r, now, out);
                }
            }
        }
        if let Some(log) = self.sync_log.as_mut() {
            log.recycle(entries);
        }
    }
}

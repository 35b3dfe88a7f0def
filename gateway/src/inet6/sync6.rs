//! IPv6 connections in HA sync (issue 12's sync, for the IPv6 table): what `forward::fullnat`'s
//! `install` does for IPv4 connections, here for [`ConnTable6`]'s. A primary's worker logs its
//! IPv6 connections as its IPv4 ones (the same [`SyncLog`], over IPv6 tuples) and exports them
//! as records of either family's addresses (`conn::record`; on the wire, `sync::wire`'s IPv6
//! layout); a backup's worker installs each record it owns, so that a failover keeps IPv6
//! FullNAT, NAT64, NAT, DR and TUN connections as it keeps IPv4 ones.
//!
//! Which worker owns a record is the IPv4 rule (`Forwarder::record_owner`): the owner of the
//! local port for FullNAT and NAT64 (both boxes share the port layout and RSS key, which the
//! sync hello checks), the owner of the client tuple otherwise. A FullNAT record's local port
//! is taken only if this worker's pool could have handed it out for that real server
//! (`fullnat::Pool6::take_freed`), as an IPv4 record's must be in the worker's pool.

use super::{nat64, service, Inet6};
use crate::conn::record::{ConnRecord, RecordKind, SeqAdj};
use crate::conn::{ConnId, ConnTable6, Dir, InsertError, State, StateChange, Ticks, Tuple6};
use crate::forward::fullnat::{template_record, worth_syncing, NO_DEST};
use crate::forward::synproxy::Proxied;
use crate::forward::{mode, Applied, Forwarder, InstallError, Room, SyncLog};
use crate::net::L3;
use crate::packet::PacketBuf;
use crate::service::FwdMode;
use std::net::{IpAddr, Ipv6Addr};

/// Connection `id` of `conns` as another box would install it; None for one whose service or
/// real server is gone.
pub fn export(fwd: &Forwarder, conns: &ConnTable6, id: ConnId, now: Ticks) -> Option<ConnRecord> {
    let services = fwd.services();
    let c = conns.get(id)?;
    // A proxied connection's shifts follow its record (`push_with_template`), as IPv4's
    // (`fullnat::install`): none before its server has answered.
    let proxied = c.flags().contains(super::proxied::PROXIED6);
    if c.svc == NO_DEST
        || c.rs == NO_DEST
        || (proxied && super::proxied::answered_adj(conns, fwd, id).is_none())
    {
        return None;
    }
    let vs = services.services.get(usize::from(c.svc))?;
    let rs = vs.svc.reals().get(usize::from(c.rs))?;
    let local = match (c.mode(), c.reply()) {
        (mode::FULLNAT, Some(r)) => (IpAddr::V6(r.dst_ip()), r.dport),
        (mode::NAT64, Some(r)) => (IpAddr::V4(r.dst_ip().to_ipv4_mapped()?), r.dport),
        _ => (IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    Some(ConnRecord::of_conn(&c, (rs.addr, rs.port), local, now))
}

/// `r`, right after it its translation when the SYN proxy opened it, then the persistence
/// template that placed connection `id`, if its service is persistent and the template lives
/// (one per client in a row).
fn push_with_template(
    fwd: &Forwarder,
    conns: &ConnTable6,
    id: ConnId,
    r: ConnRecord,
    now: Ticks,
    out: &mut Vec<ConnRecord>,
) {
    let services = fwd.services();
    let template = conns.get(id).and_then(|c| {
        let vs = services.services.get(usize::from(c.svc))?;
        let p = vs.svc.config().persistence.as_ref()?;
        let client = c.client();
        let masked = p.key(u128::from(client.src_ip()), true);
        template_record(
            vs,
            (IpAddr::V6(Ipv6Addr::from(masked)), masked),
            (client.dst_ip().into(), client.dport),
            (client.proto, c.mode()),
            now,
        )
    });
    let translation =
        super::proxied::answered_adj(conns, fwd, id).map(|adj| ConnRecord::translation(&r, adj));
    crate::forward::fullnat::push_record(out, r, translation, template);
}

impl<B: PacketBuf> Inet6<B> {
    /// Turns logging for the backup on (a primary's worker) or off, with the IPv4 table's
    /// (`sync::worker_side`); the log's counters go to `fwd`'s sync counters.
    pub fn set_sync(&mut self, fwd: &mut Forwarder, log: Option<SyncLog<Tuple6>>) {
        if let Some(old) = self.sync_log.take() {
            fwd.count_logged(old.logged, old.overflow);
        }
        self.sync_log = log;
    }

    /// After connection `id` saw a packet that moved it from state `old`: logs it if the
    /// backup should hear of it now.
    pub(super) fn sync_note(&mut self, id: ConnId, old: State, now: Ticks) {
        if let (Some(log), Some(c)) = (self.sync_log.as_mut(), self.conns.get_mut(id)) {
            log.note(id, c, old, now);
        }
    }

    /// The records of the IPv6 connections logged since the last drain, still alive, appended
    /// to `out`.
    pub fn drain_sync(&mut self, fwd: &mut Forwarder, now: Ticks, out: &mut Vec<ConnRecord>) {
        let Some(log) = self.sync_log.as_mut() else {
            return;
        };
        let entries = log.take();
        fwd.count_logged(log.logged, log.overflow);
        (log.logged, log.overflow) = (0, 0);
        for &(id, client) in &entries {
            // The slot may have been reused since: only the same connection counts.
            if self.conns.get(id).is_some_and(|c| c.client() == client) {
                if let Some(r) = export(fwd, &self.conns, id, now) {
                    push_with_template(fwd, &self.conns, id, r, now, out);
                }
            }
        }
        if let Some(log) = self.sync_log.as_mut() {
            log.recycle(entries);
        }
    }

    /// A full resync's share of this worker's IPv6 table: the records of the connections in
    /// slots `from..from + n` worth sending, appended to `out`; the slot to go on from, or None
    /// when the table is done.
    pub fn export_range(
        &self,
        fwd: &Forwarder,
        from: u32,
        n: u32,
        now: Ticks,
        out: &mut Vec<ConnRecord>,
    ) -> Option<u32> {
        let end = from.saturating_add(n);
        for (id, c) in self.conns.iter_range(from, end) {
            if !worth_syncing(&c) {
                continue;
            }
            if let Some(r) = export(fwd, &self.conns, id, now) {
                push_with_template(fwd, &self.conns, id, r, now, out);
            }
        }
        (end < self.conns.capacity() as u32).then_some(end)
    }

    /// Applies an IPv6 record the primary sent, as `Forwarder::apply_record` does an IPv4 one:
    /// installs its connection, or brings the one here up to date (state and timer), or
    /// replaces another connection of the same client tuple; a template goes to its service's
    /// table. Counted in `fwd`'s sync counters by outcome or refusal.
    pub fn apply_record(
        &mut self,
        l3: &mut L3<B>,
        fwd: &mut Forwarder,
        r: &ConnRecord,
        now: Ticks,
    ) -> Result<Applied, InstallError> {
        let r0 = match r.kind {
            RecordKind::Template => fwd.install_template(r, now),
            RecordKind::Conn => self.apply_conn(l3, fwd, r, now),
            RecordKind::Translation(adj) => self.apply_translation(fwd, r, adj, now),
        };
        fwd.count_applied(&r0);
        r0
    }

    /// A translation record, as IPv4's (`Forwarder::apply_record`): the SYN proxy's shifts of
    /// the connection here of the record's client tuple.
    fn apply_translation(
        &mut self,
        fwd: &mut Forwarder,
        r: &ConnRecord,
        adj: SeqAdj,
        now: Ticks,
    ) -> Result<Applied, InstallError> {
        let client = client_tuple(r)?;
        let (id, _) = self.conns.lookup(&client).ok_or(InstallError::NoConn)?;
        // The connection of its record (as IPv4's).
        let e = export(fwd, &self.conns, id, now).ok_or(InstallError::NoConn)?;
        if (e.local, e.mode) != (r.local, r.mode) {
            return Err(InstallError::NoConn);
        }
        let c = self.conns.get_mut(id).ok_or(InstallError::NoConn)?;
        if c.mode() != mode::FULLNAT && c.mode() != mode::NAT {
            return Err(InstallError::ModeMismatch);
        }
        let p = fwd
            .synproxy
            .get6_mut(id.index())
            .ok_or(InstallError::NotProxied)?;
        *p = Proxied {
            adj,
            ..Proxied::default()
        };
        c.set_flags(super::proxied::PROXIED6);
        Ok(Applied::Translated)
    }

    fn apply_conn(
        &mut self,
        l3: &mut L3<B>,
        fwd: &mut Forwarder,
        r: &ConnRecord,
        now: Ticks,
    ) -> Result<Applied, InstallError> {
        let client = client_tuple(r)?;
        // Replaced: another connection here held the record's local port.
        let outcome = |(_, stale): (ConnId, bool)| match stale {
            true => Applied::Replaced,
            false => Applied::Installed,
        };
        let Some((id, _)) = self.conns.lookup(&client) else {
            return self.install(l3, fwd, r, now).map(outcome);
        };
        let same = export(fwd, &self.conns, id, now).is_some_and(|e| {
            (e.real, e.local, e.mode, e.proto) == (r.real, r.local, r.mode, r.proto)
        });
        if !same {
            // Parked as the primary parked it (IPv4's `apply_record` says why).
            service::retire(self, fwd, id, now);
            return self.install(l3, fwd, r, now).map(|_| Applied::Replaced);
        }
        let old = self.conns.get(id).map_or(State::None, |c| c.state());
        let new = State::from_u8(r.state);
        self.conns.refresh(id, new, r.remaining_ms, now);
        if let Some(c) = self.conns.get_mut(id) {
            if new != old {
                super::common::count_activity(
                    fwd.services(),
                    c,
                    StateChange { old, new }.activity(),
                );
            }
            if !matches!(new, State::None | State::SynSent | State::SynRecv) {
                c.set_ext(c.ext() | super::retry::ANSWERED);
            }
            // Proxied only if the translation record that follows says so (as IPv4's).
            c.clear_flags(super::proxied::PROXIED6);
        }
        Ok(Applied::Refreshed)
    }

    /// Installs the connection of record `r` into this worker's IPv6 table, its local port
    /// taken (an entry holding that port's reply tuple is stale: the primary gave the port to
    /// this connection, so it has dropped the one that had it; it goes, and the second value
    /// says so).
    fn install(
        &mut self,
        l3: &mut L3<B>,
        fwd: &mut Forwarder,
        r: &ConnRecord,
        now: Ticks,
    ) -> Result<(ConnId, bool), InstallError> {
        let client = client_tuple(r)?;
        let services = fwd.services().clone();
        let si = services
            .find6(client.dst_ip(), client.dport, r.proto)
            .ok_or(InstallError::NoService)?;
        let vs = &services.services[si as usize];
        let ri = vs
            .svc
            .reals()
            .iter()
            .position(|x| x.addr == r.real.0 && x.port == r.real.1)
            .ok_or(InstallError::NoRealServer)?;
        let real = &vs.svc.reals()[ri];
        let want = match (real.fwd, real.addr) {
            (FwdMode::FullNat, IpAddr::V4(_)) => mode::NAT64,
            (FwdMode::FullNat, IpAddr::V6(_)) => mode::FULLNAT,
            (FwdMode::Nat, _) => mode::NAT,
            (FwdMode::Dr, _) => mode::DR,
            (FwdMode::Tun, _) => mode::TUN,
        };
        if want != r.mode {
            return Err(InstallError::ModeMismatch);
        }
        let (rport, lport, proto) = (r.real.1, r.local.1, r.proto);
        let mut stale = false;
        let reply = match (r.mode, r.real.0, r.local.0) {
            (mode::FULLNAT, IpAddr::V6(rip), IpAddr::V6(lip)) => {
                let worker = usize::from(l3.worker);
                self.build_pools(&services, fwd.layout(), worker);
                // The pool says whether this worker could have handed the port out and that no
                // entry holds it; one that does is stale.
                let take = |v6: &Self| v6.take_freed(si, (lip, lport), rip, rport, proto);
                let taken = take(self).or_else(|| {
                    stale = self.drop_stale(fwd, &Tuple6::new(rip, rport, lip, lport, proto));
                    stale.then(|| take(self)).flatten()
                });
                Some(taken.ok_or(InstallError::NotThisWorker)?)
            }
            (mode::NAT64, IpAddr::V4(rip), IpAddr::V4(lip)) => {
                // The IPv4 pool counts its ports in use and checks only that this worker owns
                // the port; the table says whether an entry holds it (stale, its port given
                // back as it goes).
                if !fwd.pool_mut(si).is_some_and(|p| p.take(lip, lport)) {
                    return Err(InstallError::NotThisWorker);
                }
                let reply = nat64::reply_tuple(rip, rport, lip, lport, proto);
                stale = self.drop_stale(fwd, &reply);
                Some(reply)
            }
            (mode::NAT, IpAddr::V6(rip), _) => Some(Tuple6::new(
                rip,
                rport,
                client.src_ip(),
                client.sport,
                proto,
            )),
            (mode::DR | mode::TUN, _, _) => None,
            _ => return Err(InstallError::ModeMismatch),
        };
        let state = State::from_u8(r.state);
        let restore = |v6: &mut Self| {
            v6.conns.restore(
                client,
                reply,
                si as u16,
                ri as u16,
                r.mode,
                state,
                r.remaining_ms,
                now,
            )
        };
        let mut restored = restore(self);
        // A full table makes room as for a connection opened here: the primary's own full
        // table has let its oldest closed connections go, which this one still holds.
        if restored == Err(InsertError::TableFull)
            && service::make_room(self, l3, fwd, Room::Table).is_some()
        {
            restored = restore(self);
        }
        let id = match restored {
            Ok(id) => id,
            Err(e) => {
                if let Some((lip, lport)) = service::nat64_local_port(r.mode, reply) {
                    if let Some(pool) = fwd.pool_mut(si) {
                        pool.free(lip, lport);
                    }
                }
                return Err(InstallError::Table(e));
            }
        };
        if let Some(c) = self.conns.get_mut(id) {
            // Since when its client waits for the server (`retry`): from now, as from a SYN;
            // and whether the server has answered (past the handshake).
            c.user = now.0 as u32;
            if !matches!(state, State::None | State::SynSent | State::SynRecv) {
                c.set_ext(c.ext() | super::retry::ANSWERED);
            }
        }
        self.lip_conns.started(&client, reply.as_ref(), r.mode);
        if let Some(s) = vs.svc.stats(ri) {
            if state.is_active() {
                s.on_conn_new_active();
            } else {
                s.on_conn_new();
            }
        }
        Ok((id, stale))
    }

    /// Removes the connection whose reply tuple is `reply`, if one has it: whether one did.
    fn drop_stale(&mut self, fwd: &mut Forwarder, reply: &Tuple6) -> bool {
        match self.conns.lookup(reply) {
            Some((stale, Dir::Reply)) => {
                service::remove(self, fwd, stale);
                true
            }
            _ => false,
        }
    }
}

/// An IPv6 record's client tuple (CIP:cport -> VIP:vport); refused as of no service here if
/// either address is not IPv6.
fn client_tuple(r: &ConnRecord) -> Result<Tuple6, InstallError> {
    match (r.client.0, r.vip.0) {
        (IpAddr::V6(cip), IpAddr::V6(vip)) => {
            Ok(Tuple6::new(cip, r.client.1, vip, r.vip.1, r.proto))
        }
        _ => Err(InstallError::NoService),
    }
}

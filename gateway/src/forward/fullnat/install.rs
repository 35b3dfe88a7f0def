//! A worker's connections as another box learns them, and back (issue 12, HA sync): `export`
//! names a connection by identity (`conn::record::ConnRecord`), `install` puts one into this
//! worker's table with its state and time left, its real server's counts and its local port taken,
//! so that its next packet, in either direction, is forwarded as on the box that opened it.

use super::{mode, Forwarder, NO_DEST};
use crate::conn::record::{ConnRecord, RecordKind};
use crate::conn::{ConnId, InsertError, State, Ticks, Tuple};
use crate::forward::nat;
use crate::service::FwdMode;
use std::net::Ipv4Addr;

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
    #[error("persistence templates are not installed yet")]
    Template,
    #[error("connection table: {0:?}")]
    Table(InsertError),
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
        if c.svc == NO_DEST || c.rs == NO_DEST || c.flags().contains(super::PARKED) {
            return None;
        }
        let vs = self.services.services.get(usize::from(c.svc))?;
        let rs = vs.svc.reals().get(usize::from(c.rs))?;
        let client = c.client();
        let local = match (c.mode, c.reply()) {
            (mode::FULLNAT, Some(r)) => (r.dst_ip(), r.dport),
            _ => (Ipv4Addr::UNSPECIFIED, 0),
        };
        Some(ConnRecord {
            kind: RecordKind::Conn,
            proto: client.proto,
            mode: c.mode,
            state: c.state() as u8,
            client: (client.src_ip(), client.sport),
            vip: (client.dst_ip(), client.dport),
            real: (rs.addr, rs.port),
            local,
            remaining_ms: c
                .deadline()
                .0
                .saturating_sub(now.0)
                .min(u64::from(u32::MAX)) as u32,
        })
    }

    /// Installs a connection another box opened; the caller has picked this worker as its owner
    /// (the owner of its local port for FullNAT, of its client tuple otherwise).
    pub fn install(&mut self, r: &ConnRecord, now: Ticks) -> Result<ConnId, InstallError> {
        if r.kind == RecordKind::Template {
            return Err(InstallError::Template);
        }
        let si = self
            .services
            .find(r.vip.0, r.vip.1, r.proto)
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
        let client = Tuple::new(r.client.0, r.client.1, r.vip.0, r.vip.1, r.proto);
        let reply = match real.fwd {
            FwdMode::FullNat => {
                let pool = self.pools[si as usize]
                    .as_mut()
                    .ok_or(InstallError::NotThisWorker)?;
                if !pool.take(r.local.0, r.local.1) {
                    return Err(InstallError::NotThisWorker);
                }
                Some(Tuple::new(
                    real.addr, real.port, r.local.0, r.local.1, r.proto,
                ))
            }
            FwdMode::Nat => Some(nat::reply_tuple(&client, real.addr, real.port)),
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
                    pool.free(r.local.0, r.local.1);
                }
                return Err(InstallError::Table(e));
            }
        };
        if let Some(c) = self.table.get_mut(id) {
            match real.fwd {
                // DR and TUN keep the real server's address in the entry (see the module docs).
                FwdMode::Dr | FwdMode::Tun => c.user = u32::from(real.addr),
                // The server has answered (past SYN_RECV): `user2` marks it, as the server's ACK
                // would have; the exact value is learnt from its next packet.
                _ if !matches!(state, State::None | State::SynSent | State::SynRecv) => c.user2 = 1,
                _ => {}
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

#[cfg(test)]
mod tests;

/// Connections a primary is to send its backup (issue 12), logged by the packet path while sync
/// is on, as IPVS's sync daemon does: when a TCP connection is established, at each of its state
/// changes after that, and at least once per refresh period while it carries packets (a UDP
/// connection from its first datagram), so that the backup's timers stay close. Bounded: entries
/// past the bound are counted in `overflow` and caught up by the next refresh.
#[derive(Debug)]
pub struct SyncLog {
    entries: Vec<(ConnId, Tuple)>,
    cap: usize,
    refresh_ms: u64,
    pub logged: u64,
    pub overflow: u64,
}

/// `Conn::ext` bits 1..8: the refresh period (mod 128) in which the connection was last logged.
const EPOCH_SHIFT: u8 = 1;

impl SyncLog {
    pub fn new(cap: usize, refresh_ms: u64) -> SyncLog {
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
}

impl Forwarder {
    /// Turns sync logging on (a primary: up to `cap` connections between drains, refreshed every
    /// `refresh_ms`) or off (`None`).
    pub fn set_sync(&mut self, log: Option<SyncLog>) {
        self.sync_log = log;
    }

    /// The sync log, while sync is on (its counters).
    pub fn sync_log(&self) -> Option<&SyncLog> {
        self.sync_log.as_ref()
    }

    /// After connection `id` saw a packet that moved it from `old` to its current state: logs it
    /// if the backup should hear of it now.
    pub(super) fn sync_note(&mut self, id: ConnId, old: State, now: Ticks) {
        let Some(log) = self.sync_log.as_mut() else {
            return;
        };
        let Some(c) = self.table.get_mut(id) else {
            return;
        };
        let new = c.state();
        let tcp = c.proto() == crate::conn::PROTO_TCP;
        if tcp && matches!(new, State::None | State::SynSent | State::SynRecv) {
            return;
        }
        let epoch = ((now.0 / log.refresh_ms) & 0x7F) as u8;
        let stale = c.ext >> EPOCH_SHIFT != epoch;
        if !(stale || new != old) {
            return;
        }
        c.ext = (c.ext & ((1 << EPOCH_SHIFT) - 1)) | (epoch << EPOCH_SHIFT);
        if log.entries.len() >= log.cap {
            log.overflow += 1;
            return;
        }
        log.entries.push((id, c.client()));
        log.logged += 1;
    }

    /// The records of the connections logged since the last drain, still alive, appended to
    /// `out`.
    pub fn drain_sync(&mut self, now: Ticks, out: &mut Vec<ConnRecord>) {
        let Some(log) = self.sync_log.as_mut() else {
            return;
        };
        let entries = std::mem::take(&mut log.entries);
        for &(id, client) in &entries {
            // The slot may have been reused since: only the same connection counts.
            if self.table.get(id).is_some_and(|c| c.client() == client) {
                if let Some(r) = self.export(id, now) {
                    out.push(r);
                }
            }
        }
        if let Some(log) = self.sync_log.as_mut() {
            log.entries = entries;
            log.entries.clear();
        }
    }
}

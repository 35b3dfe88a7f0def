//! A worker's part in sync, between its datapath and the sync thread: DPDK-free, so the worker
//! loop only calls it (`worker.rs`) and it is tested here on a plain `Datapath`.
//!
//! - As a primary's worker, every housekeeping round (5 ms) it drains the sync logs (the IPv4
//!   table's, `Forwarder`, and the IPv6 one's, `inet6::sync6`) into one batch for the sync
//!   thread, and, during a full resync, adds the next [`RESYNC_SLOTS`] table slots'
//!   connections, the IPv4 table's first, then the IPv6 one's. A queue without room costs the log's batch
//!   (counted, caught up by the next refresh) and holds the resync where it is (tried again the
//!   next round).
//! - As a backup's worker, it installs the records it owns (each into its family's table) and
//!   returns the others grouped by the worker that owns them (`Forwarder::record_owner`), for
//!   the worker loop to pass on.

use super::{Export, Primary};
use crate::conn::record::ConnRecord;
use crate::conn::Ticks;
use crate::datapath::Datapath;
use crate::forward::SyncLog;
use crate::packet::PacketBuf;
use crossbeam_channel::Sender;

/// Table slots a worker goes through per round during a full resync (a million-slot table in
/// about 0.3 s, paced further by the sender).
pub const RESYNC_SLOTS: u32 = 16 * 1024;

/// One worker's sync state.
#[derive(Default)]
pub struct WorkerSync {
    out: Option<Sender<Export>>,
    /// A full resync in progress.
    resync: Option<Resync>,
}

/// A full resync this worker is handing over.
struct Resync {
    generation: u32,
    /// The next table slot; None once every slot of both tables is handed over and only the
    /// end marker is left to send.
    next: Option<u32>,
    /// Whether `next` is a slot of the IPv6 table (the IPv4 one is done).
    ipv6: bool,
}

impl WorkerSync {
    /// Becomes a primary's worker (Some) or stops being one (None).
    pub fn set_primary<B: PacketBuf>(&mut self, dp: &mut Datapath<B>, p: Option<Primary>) {
        match p {
            Some(p) => {
                let (cap, refresh) = (p.log_capacity, p.refresh_ms);
                dp.fwd.set_sync(Some(SyncLog::new(cap, refresh)));
                dp.v6
                    .set_sync(&mut dp.fwd, Some(SyncLog::new(cap, refresh)));
                self.out = Some(p.out);
            }
            None => {
                dp.fwd.set_sync(None);
                dp.v6.set_sync(&mut dp.fwd, None);
                self.out = None;
                self.resync = None;
            }
        }
    }

    /// Starts the full resync `generation` (a primary's worker only), in place of any other.
    pub fn export_all(&mut self, generation: u32) {
        if self.out.is_some() {
            self.resync = Some(Resync {
                generation,
                next: Some(0),
                ipv6: false,
            });
        }
    }

    /// Whether a full resync is in progress: until its end marker is in the queue.
    pub fn resyncing(&self) -> bool {
        self.resync.is_some()
    }

    /// A housekeeping round: the log's records, then the resync's next slots, to the sync thread;
    /// after the last slot, the resync's end marker.
    pub fn housekeeping<B: PacketBuf>(&mut self, dp: &mut Datapath<B>, now: Ticks) {
        let Some(out) = &self.out else { return };
        let fwd = &mut dp.fwd;
        let mut batch = Vec::new();
        fwd.drain_sync(now, &mut batch);
        dp.v6.drain_sync(fwd, now, &mut batch);
        if !batch.is_empty() {
            let n = batch.len() as u64;
            match out.try_send(Export::Records(batch)) {
                Ok(()) => fwd.count_exported(n, 0),
                Err(_) => fwd.count_exported(0, n),
            }
        }
        let Some(resync) = &mut self.resync else {
            return;
        };
        if let Some(from) = resync.next {
            let mut batch = Vec::new();
            let next = match resync.ipv6 {
                false => fwd.export_range(from, RESYNC_SLOTS, now, &mut batch),
                true => dp.v6.export_range(fwd, from, RESYNC_SLOTS, now, &mut batch),
            };
            let n = batch.len() as u64;
            if batch.is_empty() || out.try_send(Export::Records(batch)).is_ok() {
                fwd.count_exported(n, 0);
                resync.next = next;
                if next.is_none() && !resync.ipv6 {
                    // The IPv6 table's turn.
                    (resync.next, resync.ipv6) = (Some(0), true);
                }
            }
        }
        if resync.next.is_none() && out.try_send(Export::ResyncDone(resync.generation)).is_ok() {
            self.resync = None;
        }
    }

    /// Installs the records `me` owns; the others come back per owner (`client_port`: the
    /// datapath port a client's packets arrive on). `forwarded`: a peer already picked this
    /// worker as their owner, so all are installed here.
    pub fn install<B: PacketBuf>(
        dp: &mut Datapath<B>,
        me: usize,
        records: Vec<ConnRecord>,
        forwarded: bool,
        now: Ticks,
        client_port: impl Fn(&ConnRecord) -> u16,
    ) -> Vec<(usize, Vec<ConnRecord>)> {
        let mut others: Vec<(usize, Vec<ConnRecord>)> = Vec::new();
        for r in records {
            // Templates live in a table every worker shares.
            let w = if forwarded || r.kind == crate::conn::record::RecordKind::Template {
                me
            } else {
                dp.fwd.record_owner(&r, client_port(&r))
            };
            if w == me {
                let _ = match r.is_ipv6() {
                    true => dp.v6.apply_record(&mut dp.l3, &mut dp.fwd, &r, now),
                    false => dp.fwd.apply_record(&r, now),
                };
                continue;
            }
            match others.iter_mut().find(|(o, _)| *o == w) {
                Some((_, v)) => v.push(r),
                None => others.push((w, vec![r])),
            }
        }
        let n: usize = others.iter().map(|(_, v)| v.len()).sum();
        dp.fwd.count_handed_over(n as u64);
        others
    }
}

#[cfg(test)]
mod tests;

//! A worker's part in sync, between its forwarder and the sync thread: DPDK-free, so the worker
//! loop only calls it (`worker.rs`) and it is tested here on a plain `Forwarder`.
//!
//! - As a primary's worker, every housekeeping round (5 ms) it drains the forwarder's sync log
//!   into one batch for the sync thread, and, during a full resync, adds the next
//!   [`RESYNC_SLOTS`] table slots' connections. A queue without room costs the log's batch
//!   (counted, caught up by the next refresh) and holds the resync where it is (tried again the
//!   next round).
//! - As a backup's worker, it installs the records it owns and returns the others grouped by the
//!   worker that owns them (`Forwarder::record_owner`), for the worker loop to pass on.

use super::{Export, Primary};
use crate::conn::record::ConnRecord;
use crate::conn::Ticks;
use crate::forward::{Forwarder, SyncLog};
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
    /// The next table slot; None once every slot is handed over and only the end marker is
    /// left to send.
    next: Option<u32>,
}

impl WorkerSync {
    /// Becomes a primary's worker (Some) or stops being one (None).
    pub fn set_primary(&mut self, fwd: &mut Forwarder, p: Option<Primary>) {
        match p {
            Some(p) => {
                fwd.set_sync(Some(SyncLog::new(p.log_capacity, p.refresh_ms)));
                self.out = Some(p.out);
            }
            None => {
                fwd.set_sync(None);
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
            });
        }
    }

    /// Whether a full resync is in progress: until its end marker is in the queue.
    pub fn resyncing(&self) -> bool {
        self.resync.is_some()
    }

    /// A housekeeping round: the log's records, then the resync's next slots, to the sync thread;
    /// after the last slot, the resync's end marker.
    pub fn housekeeping(&mut self, fwd: &mut Forwarder, now: Ticks) {
        let Some(out) = &self.out else { return };
        let mut batch = Vec::new();
        fwd.drain_sync(now, &mut batch);
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
            let next = fwd.export_range(from, RESYNC_SLOTS, now, &mut batch);
            let n = batch.len() as u64;
            if batch.is_empty() || out.try_send(Export::Records(batch)).is_ok() {
                fwd.count_exported(n, 0);
                resync.next = next;
            }
        }
        if resync.next.is_none() && out.try_send(Export::ResyncDone(resync.generation)).is_ok() {
            self.resync = None;
        }
    }

    /// Installs the records `me` owns; the others come back per owner (`client_port`: the
    /// datapath port a client's packets arrive on). `forwarded`: a peer already picked this
    /// worker as their owner, so all are installed here.
    pub fn install(
        fwd: &mut Forwarder,
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
                fwd.record_owner(&r, client_port(&r))
            };
            if w == me {
                let _ = fwd.apply_record(&r, now);
                continue;
            }
            match others.iter_mut().find(|(o, _)| *o == w) {
                Some((_, v)) => v.push(r),
                None => others.push((w, vec![r])),
            }
        }
        let n: usize = others.iter().map(|(_, v)| v.len()).sum();
        fwd.count_handed_over(n as u64);
        others
    }
}

#[cfg(test)]
mod tests;

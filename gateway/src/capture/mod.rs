//! Live packet capture (`gwctl capture`): what one port receives (before the datapath rewrites it)
//! and sends (after), copied by the workers into a bounded ring, streamed over the admin socket and
//! written by gwctl as a pcapng file that tcpdump and Wireshark read.
//!
//! - [`Capture`]: the daemon's one capture slot, shared by the control plane and every worker.
//! - [`Tap`]: a worker's view of it. With no capture running it costs one relaxed atomic load per
//!   poll round ([`Tap::poll`]) and a compare of a plain field per burst or frame; nothing is copied.
//! - [`stream`]: the admin-socket side: the protocol lines and the loop that feeds them.
//! - [`pcapng`]: the file format gwctl writes.
//!
//! At most one capture runs at a time. A worker copies a frame of the captured port only when the
//! BPF filter (libpcap, [`crate::dpdk::bpf`]) passes it, at most `snaplen` bytes of it, and only if the
//! ring has room: a full ring never stalls a worker, the frame is counted (`dropped`) instead.
//! Frames a worker hands to another (reply steering) are captured once, by the worker that received
//! them from the NIC. The tx side is taken as a frame enters the port's tx queue: frames the datapath
//! forwards or generates (ARP, ICMP, RSTs) and frames the kernel twin sends out through the port; a
//! frame the driver then refuses (counted as `tx_full`) is in the capture all the same. Frames
//! punted up to the twin never reach the wire and are not captured as tx.

pub mod pcapng;
pub mod stream;

use crate::dpdk::bpf::Filter;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes copied of each frame unless the request says otherwise: tcpdump's default snap length
/// (MAXIMUM_SNAPLEN in libpcap), so whole frames, jumbo ones included.
pub const DEFAULT_SNAPLEN: u32 = 262_144;

/// Frames a capture sends unless the request says otherwise.
pub const DEFAULT_COUNT: u64 = 1000;

/// Frames the ring between the workers and the admin socket holds. At most this many copies wait
/// at once (a few MB of 1500-byte frames); when the client reads slower, frames are counted as
/// dropped instead.
pub const RING: usize = 4096;

/// Which way a frame crossed the port, as pcapng's `epb_flags` direction bits say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Received by the port (captured before the datapath).
    In,
    /// Sent by the port (captured as it enters the tx queue, after rewriting).
    Out,
}

/// One copied frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub dir: Direction,
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The frame's length on the wire (`data` may be shorter: the snap length).
    pub orig_len: u32,
    pub data: Vec<u8>,
}

/// What the workers did with the frames of the captured port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Copied into the ring.
    pub captured: u64,
    /// Passed the filter but not copied: the ring was full.
    pub dropped: u64,
    /// Rejected by the filter.
    pub filtered_out: u64,
}

/// One capture: the port, the filter, the ring's sending end and the counters.
pub struct Session {
    id: u64,
    /// Datapath index of the captured port.
    pub port: u16,
    pub port_name: String,
    /// None: every frame.
    filter: Option<Filter>,
    snaplen: u32,
    ring: Sender<Record>,
    // Touched only while this session runs, and only for frames of its port.
    captured: AtomicU64,
    dropped: AtomicU64,
    filtered_out: AtomicU64,
}

impl Session {
    pub fn counts(&self) -> Counts {
        Counts {
            captured: self.captured.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            filtered_out: self.filtered_out.load(Ordering::Relaxed),
        }
    }

    pub fn snaplen(&self) -> u32 {
        self.snaplen
    }

    pub fn filter_expr(&self) -> Option<&str> {
        self.filter.as_ref().map(Filter::expr)
    }

    /// Copies `frame` into the ring if the filter passes it. `ts` is the burst's timestamp, read
    /// from the clock only when a first frame is copied (clock reads are dear on some VMs: DESIGN.md).
    fn offer(&self, dir: Direction, ts: &mut Option<u64>, frame: &[u8]) {
        if let Some(f) = &self.filter {
            if !f.matches(frame) {
                self.filtered_out.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let ts_ns = *ts.get_or_insert_with(now_ns);
        let cap = frame.len().min(self.snaplen as usize);
        let rec = Record {
            dir,
            ts_ns,
            orig_len: u32::try_from(frame.len()).unwrap_or(u32::MAX),
            data: frame[..cap].to_vec(),
        };
        match self.ring.try_send(rec) {
            Ok(()) => self.captured.fetch_add(1, Ordering::Relaxed),
            Err(TrySendError::Full(_)) => self.dropped.fetch_add(1, Ordering::Relaxed),
            // The capture is ending: its reader is gone.
            Err(TrySendError::Disconnected(_)) => 0,
        };
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The daemon's capture slot.
#[derive(Default)]
pub struct Capture {
    /// Id of the running session, 0 when none: all a worker reads while nothing is captured.
    active: AtomicU64,
    /// The running session. Workers take it (`try_lock`, never waiting) only when `active` changes.
    current: Mutex<Option<Arc<Session>>>,
    next_id: AtomicU64,
}

/// A capture as its starter holds it: frames come out of `records`. Dropping it ends the capture,
/// whatever ended the client (its count, its duration, Ctrl-C, a broken socket).
pub struct Running {
    capture: Arc<Capture>,
    pub session: Arc<Session>,
    pub records: Receiver<Record>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut cur = self
            .capture
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.capture.active.store(0, Ordering::Release);
        *cur = None;
    }
}

impl Capture {
    pub fn new() -> Arc<Capture> {
        Arc::new(Capture::default())
    }

    /// A worker's tap on this slot.
    pub fn tap(self: &Arc<Self>) -> Tap {
        Tap {
            shared: self.clone(),
            seen: 0,
            session: None,
            port: NO_PORT,
        }
    }

    /// Starts capturing port `port` (datapath index; `port_name` for messages). Refused while
    /// another capture runs: nothing changes then.
    pub fn start(
        self: &Arc<Self>,
        port: u16,
        port_name: &str,
        filter: Option<Filter>,
        snaplen: u32,
    ) -> Result<Running, String> {
        let mut cur = self.current.lock().map_err(|_| "capture state poisoned")?;
        if let Some(s) = cur.as_ref() {
            return Err(format!(
                "a capture is already running (port {}); one at a time: stop it first",
                s.port_name
            ));
        }
        let (tx, rx) = crossbeam_channel::bounded(RING);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let session = Arc::new(Session {
            id,
            port,
            port_name: port_name.to_string(),
            filter,
            snaplen: snaplen.max(1),
            ring: tx,
            captured: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            filtered_out: AtomicU64::new(0),
        });
        *cur = Some(session.clone());
        // Published after the session is in place: a worker that sees the id finds it under the lock.
        self.active.store(id, Ordering::Release);
        Ok(Running {
            capture: self.clone(),
            session,
            records: rx,
        })
    }

    /// Whether a capture runs now.
    pub fn is_running(&self) -> bool {
        self.active.load(Ordering::Relaxed) != 0
    }
}

const NO_PORT: usize = usize::MAX;

/// A worker's side of the capture slot. Owned by the worker; nothing in it is shared but the slot.
pub struct Tap {
    shared: Arc<Capture>,
    /// The session id last seen in `active`.
    seen: u64,
    session: Option<Arc<Session>>,
    /// The captured port, or NO_PORT: a plain field the per-burst and per-frame checks compare.
    port: usize,
}

impl Tap {
    /// Once per poll round: the only atomic access while no capture runs.
    #[inline]
    pub fn poll(&mut self) {
        let id = self.shared.active.load(Ordering::Relaxed);
        if id != self.seen {
            self.switch(id);
        }
    }

    #[cold]
    #[inline(never)]
    fn switch(&mut self, id: u64) {
        if id == 0 {
            self.seen = 0;
            self.session = None;
            self.port = NO_PORT;
            return;
        }
        // Never wait: the control plane holds the lock for microseconds; look again next round.
        let Ok(cur) = self.shared.current.try_lock() else {
            return;
        };
        self.seen = id;
        // A session other than `id` (or none) means it changed again since the load; the next
        // round sees the newer id.
        self.session = cur.as_ref().filter(|s| s.id == id).cloned();
        self.port = self
            .session
            .as_ref()
            .map_or(NO_PORT, |s| usize::from(s.port));
    }

    /// Frames received from the NIC on datapath port `port`, before the datapath sees them.
    #[inline]
    pub fn rx<'a>(&mut self, port: u16, frames: impl Iterator<Item = &'a [u8]>) {
        if usize::from(port) == self.port {
            self.copy_rx(frames);
        }
    }

    #[cold]
    #[inline(never)]
    fn copy_rx<'a>(&mut self, frames: impl Iterator<Item = &'a [u8]>) {
        if let Some(s) = &self.session {
            let mut ts = None;
            for f in frames {
                s.offer(Direction::In, &mut ts, f);
            }
        }
    }

    /// A frame going into the tx queue of datapath port `port`, as it will leave.
    #[inline]
    pub fn tx(&mut self, port: usize, frame: &[u8]) {
        if port == self.port {
            self.copy_tx(frame);
        }
    }

    #[cold]
    #[inline(never)]
    fn copy_tx(&mut self, frame: &[u8]) {
        if let Some(s) = &self.session {
            s.offer(Direction::Out, &mut None, frame);
        }
    }
}

#[cfg(test)]
mod tests;

//! The sync thread (issue 12): one UDP socket on a twin's address, the role, and the traffic
//! between the pair.
//!
//! - **Both roles** send a hello every second with this box's layout (workers, local ports,
//!   steering digest). Records from a peer are installed only once its hello has matched ours
//!   (`sync/PROTOCOL.md`); a differing hello is refused and logged, once per change.
//! - **The master** takes the records its workers hand it (their `SyncLog`s, drained every 5 ms,
//!   and full exports), seals them 44 to a message (17 IPv6 ones, each message one family's)
//!   and sends them, paced to `max_msgs_per_s`;
//!   it answers a resync request by asking every worker for everything and, once the last
//!   worker's records are sent, says so (a resync done). A box that is not the master answers
//!   with an empty resync done: it has nothing to give.
//! - **The backup** asks for a full resync when it becomes the backup and whenever it meets a
//!   peer it had not heard from for [`PEER_LOST_MS`] (a restarted master, or its own start), and
//!   passes what it receives to the workers, which install each record into its owner. Until
//!   the resync done arrives it is not **ready** (`gwctl sync ready`, keepalived's
//!   `track_script`): taking over then would lose the master's connections. Each wait has its
//!   number, which the request carries and the done echoes, so a done that ends an earlier
//!   wait's resync (one the backup restarted in, or missed records of) does not end this one.
//!   It asks again every [`RESYNC_RETRY_MS`] while waiting, and again at once (up to
//!   [`RESYNC_ATTEMPTS`] times) when messages were lost or records dropped during the resync;
//!   it stops waiting once the peer is lost.
//!
//! The thread never blocks a worker: records reach it through a bounded queue the workers only
//! try to fill, and it reaches them through `deliver`, which only tries to send.

use super::wire::{self, Layout, Message, Opener, Sealer};
use super::{Export, Primary, Role, RoleMode, Settings, ToWorkers};
use crate::conn::record::ConnRecord;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Between hellos.
pub const HELLO_EVERY_MS: u64 = 1000;
/// A peer not heard from for this long is lost; meeting it again (a restart) asks for a resync.
pub const PEER_LOST_MS: u64 = 3000;
/// A backup still waiting for its resync done asks again this often (the done was lost, or the
/// master could not start the resync).
pub const RESYNC_RETRY_MS: u64 = 5000;
/// Resyncs a backup asks for in one wait when each lost messages or dropped records; the last
/// one ends the wait whatever it lost (a lossy link must not keep the backup from taking over).
pub const RESYNC_ATTEMPTS: u8 = 3;
/// Batches of records the workers may queue for the sender.
const QUEUE: usize = 4096;
/// Records the sender holds beyond the queue while pacing (about a second at the default rate).
const PENDING_MAX: usize = 256 * 1024;
/// The socket's receive buffer: a resync arrives in bursts.
const RCVBUF: usize = 8 << 20;

/// What the thread reports (`gwctl sync`, `ipvsadm -L --daemon`, `/metrics`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    /// `auto`, `master`, `backup` or `off`.
    pub mode: String,
    pub role: Role,
    /// Whether a kernel-owned VIP is on a twin (what `auto` follows).
    pub vips_held: bool,
    pub local: String,
    pub peer: String,
    pub id: u32,
    /// The peer last heard from, and how long ago (ms): the backup's lag.
    pub peer_id: Option<u32>,
    pub last_from_peer_ms: Option<u64>,
    /// `unknown` until a hello, then `same` or what differs.
    pub peer_layout: String,
    /// Whether this box could take the VIPs without losing connections: false only for a backup
    /// waiting for its peer's full resync (what `gwctl sync ready` answers).
    pub ready: bool,
    /// Why: `not the backup`, `resynced`, `resynced with losses`, `waiting for the peer's full
    /// resync`, `no peer`, or `the peer's layout differs`.
    pub resync: String,
    /// Records waiting to be sent (paced), and the workers' queue.
    pub pending: u64,
    pub sent_msgs: u64,
    pub sent_records: u64,
    pub sent_bytes: u64,
    pub send_errors: u64,
    pub received_msgs: u64,
    pub received_records: u64,
    /// Messages refused, by reason (`wire::Refused`), and records refused by the thread.
    pub refused_truncated: u64,
    pub refused_bad_mac: u64,
    pub refused_bad_version: u64,
    pub refused_replay: u64,
    pub refused_bad_length: u64,
    pub refused_bad_record: u64,
    /// Messages from the peer that never arrived (gaps in its sequence numbers).
    pub lost_msgs: u64,
    /// Records from a peer whose hello has not matched ours.
    pub refused_layout: u64,
    /// Records received while not the backup (two masters: split brain), ignored.
    pub ignored_not_backup: u64,
    /// Record batches the workers' inboxes had no room for.
    pub install_dropped: u64,
    pub resync_requests_sent: u64,
    pub resync_requests_received: u64,
    /// Full resyncs this box started for its peer, and resync dones it sent (an empty one from a
    /// box that is not the master).
    pub resyncs_started: u64,
    pub resync_done_sent: u64,
    /// Resync dones received that ended the wait they answered, and the records the last one
    /// said its resync sent.
    pub resync_done_received: u64,
    pub resync_records: u64,
    /// Resyncs asked for again because messages were lost or records dropped during one.
    pub resync_incomplete: u64,
    pub role_changes: u64,
}

impl Status {
    /// Messages refused, every reason.
    pub fn refused(&self) -> u64 {
        self.refused_truncated
            + self.refused_bad_mac
            + self.refused_bad_version
            + self.refused_replay
            + self.refused_bad_length
            + self.refused_bad_record
    }
}

enum Cmd {
    Mode(RoleMode),
    VipsHeld(bool),
}

/// The running sync thread.
pub struct Handle {
    cmds: Sender<Cmd>,
    status: Arc<Mutex<Status>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Handle {
    /// Opens the socket (refused, named, if it cannot be bound) and starts the thread in
    /// `settings.mode` with no VIP held. `deliver` takes what is for the workers and says
    /// whether it could.
    pub fn start(
        settings: Settings,
        layout: Layout,
        deliver: Box<dyn FnMut(ToWorkers) -> bool + Send>,
    ) -> Result<Handle, String> {
        let sock = open_socket(&settings)?;
        let (cmds, cmd_rx) = crossbeam_channel::unbounded();
        let (rec_tx, rec_rx) = crossbeam_channel::bounded(QUEUE);
        let first = Status {
            mode: settings.mode.to_string(),
            local: SocketAddrV4::new(settings.local, settings.udp_port).to_string(),
            peer: SocketAddrV4::new(settings.peer, settings.udp_port).to_string(),
            id: settings.id,
            peer_layout: "unknown".into(),
            ..Status::default()
        };
        let status = Arc::new(Mutex::new(first.clone()));
        let stop = Arc::new(AtomicBool::new(false));
        let first_seq = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64);
        let mut link = Link {
            sealer: Sealer::new(&settings.key, settings.id, first_seq),
            opener: Opener::new(&settings.key),
            dest: SocketAddrV4::new(settings.peer, settings.udp_port),
            sock,
            layout,
            mode: settings.mode,
            vips_held: false,
            role: Role::Off,
            deliver,
            cmd_rx,
            rec_tx,
            rec_rx,
            pending: Vec::new(),
            status: status.clone(),
            counts: first,
            peer: None,
            last_hello: None,
            need_resync: false,
            synced: Synced::Done { lossy: false },
            // Like the sequence numbers: a restarted backup must not reuse a wait number its
            // earlier run asked with, or that run's resync done would end its wait.
            wait: first_seq as u32,
            generation: 0,
            resync_out: None,
            primary_undelivered: false,
            tokens: 0.0,
            last_refill: Instant::now(),
            settings,
        };
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sync".into())
            .spawn(move || link.run(&s))
            .map_err(|e| format!("sync thread: {e}"))?;
        Ok(Handle {
            cmds,
            status,
            stop,
            thread: Some(thread),
        })
    }

    /// Fixes the role, or lets it follow the VIPs (`auto`).
    pub fn set_mode(&self, mode: RoleMode) {
        let _ = self.cmds.send(Cmd::Mode(mode));
    }

    /// Whether a kernel-owned VIP is on a twin now (the mirror saw keepalived add or remove it).
    pub fn vips_held(&self, held: bool) {
        let _ = self.cmds.send(Cmd::VipsHeld(held));
    }

    /// `set_mode`, then the status once the thread runs it (at most half a second later).
    pub fn set_mode_wait(&self, mode: RoleMode) -> Status {
        self.set_mode(mode);
        let until = Instant::now() + ms(500);
        loop {
            let s = self.status();
            if (s.mode == mode.to_string() && s.role == mode.role(s.vips_held))
                || Instant::now() > until
            {
                return s;
            }
            std::thread::sleep(ms(5));
        }
    }

    pub fn status(&self) -> Status {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn open_socket(s: &Settings) -> Result<UdpSocket, String> {
    let err = |what: &str, e: std::io::Error| format!("sync socket: {what}: {e}");
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| err("socket", e))?;
    sock.set_reuse_address(true)
        .map_err(|e| err("SO_REUSEADDR", e))?;
    let _ = sock.set_recv_buffer_size(RCVBUF);
    let multicast = s.peer.is_multicast();
    // A multicast receiver binds the group's port on any address; a unicast one its own address.
    let bind = if multicast {
        Ipv4Addr::UNSPECIFIED
    } else {
        s.local
    };
    sock.bind(&SockAddr::from(SocketAddrV4::new(bind, s.udp_port)))
        .map_err(|e| err(&format!("bind {bind}:{}", s.udp_port), e))?;
    if multicast {
        sock.join_multicast_v4(&s.peer, &s.local)
            .map_err(|e| err(&format!("join {} on {}", s.peer, s.local), e))?;
        sock.set_multicast_if_v4(&s.local)
            .map_err(|e| err("IP_MULTICAST_IF", e))?;
        sock.set_multicast_loop_v4(false)
            .map_err(|e| err("IP_MULTICAST_LOOP", e))?;
        sock.set_multicast_ttl_v4(1)
            .map_err(|e| err("IP_MULTICAST_TTL", e))?;
    }
    let sock: UdpSocket = sock.into();
    sock.set_read_timeout(Some(Duration::from_millis(2)))
        .map_err(|e| err("SO_RCVTIMEO", e))?;
    Ok(sock)
}

/// The peer as last heard.
struct Peer {
    id: u32,
    last: Instant,
    layout: Option<Layout>,
}

/// A backup's progress toward holding its peer's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Synced {
    /// Since it became the backup or met its peer (wait number `Link::wait`).
    Waiting {
        since: Instant,
        /// When it last asked for a full resync.
        asked: Option<Instant>,
        /// Resyncs asked for in this wait that ended with losses.
        attempts: u8,
        /// Messages lost and record batches dropped, when it last asked.
        losses_at_ask: u64,
    },
    /// The peer's resync done for this wait arrived (`lossy`: after the last attempt, with
    /// losses), or this box was the master, which holds its own.
    Done { lossy: bool },
}

/// A master's full resync, from the request to the resync done.
struct ResyncOut {
    generation: u32,
    /// The wait number of the request it answers.
    wait: u32,
    /// Workers whose end marker came.
    workers_done: u16,
    /// Once every worker's has: the records still ahead of the resync done in `pending`.
    ahead: Option<usize>,
    /// `sent_records` when it started.
    sent_before: u64,
}

struct Link {
    settings: Settings,
    sealer: Sealer,
    opener: Opener,
    dest: SocketAddrV4,
    sock: UdpSocket,
    layout: Layout,
    mode: RoleMode,
    vips_held: bool,
    role: Role,
    deliver: Box<dyn FnMut(ToWorkers) -> bool + Send>,
    cmd_rx: Receiver<Cmd>,
    rec_tx: Sender<Export>,
    rec_rx: Receiver<Export>,
    pending: Vec<ConnRecord>,
    status: Arc<Mutex<Status>>,
    /// The counters, copied into `status` every round.
    counts: Status,
    peer: Option<Peer>,
    last_hello: Option<Instant>,
    /// A backup that has not asked for a full resync since it became the backup or met its
    /// peer: it asks as soon as the peer's hello has matched.
    need_resync: bool,
    /// A backup's: whether it holds its peer's connections.
    synced: Synced,
    /// The backup's current wait number (raised each time it starts waiting).
    wait: u32,
    /// The workers have not all taken `ToWorkers::Primary(Some)`: tried again every round
    /// (a worker that missed it would never answer a full resync).
    primary_undelivered: bool,
    /// The last full resync's number (the workers' end markers carry it).
    generation: u32,
    /// The master's full resync in progress.
    resync_out: Option<ResyncOut>,
    /// Messages the pacing allows now.
    tokens: f64,
    last_refill: Instant,
}

impl Link {
    fn run(&mut self, stop: &AtomicBool) {
        self.set_role();
        let mut buf = vec![0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            loop {
                match self.cmd_rx.try_recv() {
                    Ok(Cmd::Mode(m)) => self.mode = m,
                    Ok(Cmd::VipsHeld(h)) => self.vips_held = h,
                    Err(_) => break,
                }
                self.set_role();
            }
            self.deliver_primary();
            self.send_records();
            self.retry_resync();
            if self
                .last_hello
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(HELLO_EVERY_MS))
            {
                if self.role != Role::Off {
                    self.send_hello();
                } else {
                    self.last_hello = Some(Instant::now());
                }
            }
            // Up to 256 datagrams a round; the first read waits at most 2 ms.
            for _ in 0..256 {
                match self.sock.recv_from(&mut buf) {
                    Ok((n, from)) => self.received(&buf[..n], from),
                    Err(_) => break,
                }
            }
            self.publish();
        }
        if self.role == Role::Master {
            (self.deliver)(ToWorkers::Primary(None));
        }
    }

    /// Applies the mode and the VIPs to the role; on a change, tells the workers.
    fn set_role(&mut self) {
        let role = self.mode.role(self.vips_held);
        if role == self.role {
            return;
        }
        tracing::info!(from = %self.role, to = %role, mode = %self.mode, "sync role");
        let was = std::mem::replace(&mut self.role, role);
        self.counts.role_changes += 1;
        if was == Role::Master {
            (self.deliver)(ToWorkers::Primary(None));
            self.pending.clear();
            self.resync_out = None;
            self.primary_undelivered = false;
            while self.rec_rx.try_recv().is_ok() {}
        }
        match role {
            Role::Master => {
                self.primary_undelivered = true;
                self.deliver_primary();
            }
            Role::Backup => {
                self.need_resync = true;
                // A master that steps down holds every connection it served: it asks, but
                // need not wait to be ready.
                if was == Role::Master {
                    self.synced = Synced::Done { lossy: false };
                } else {
                    self.start_waiting(Instant::now());
                }
                self.maybe_ask_resync();
            }
            Role::Off => {}
        }
    }

    /// A master's workers start logging (again, each round, until every one has taken it).
    fn deliver_primary(&mut self) {
        if !self.primary_undelivered || self.role != Role::Master {
            return;
        }
        let p = Primary {
            out: self.rec_tx.clone(),
            refresh_ms: self.settings.refresh_ms,
            log_capacity: self.settings.log_capacity,
        };
        self.primary_undelivered = !(self.deliver)(ToWorkers::Primary(Some(p)));
    }

    /// A backup starts a new wait for its peer's full resync.
    fn start_waiting(&mut self, now: Instant) {
        self.wait = self.wait.wrapping_add(1);
        self.synced = Synced::Waiting {
            since: now,
            asked: None,
            attempts: 0,
            losses_at_ask: 0,
        };
    }

    /// Messages lost from the peer and record batches the workers had no room for, so far.
    fn losses(&self) -> u64 {
        self.opener.stats.lost + self.counts.install_dropped
    }

    /// A backup asks its peer for everything once the peer's hello has matched ours (records
    /// from a peer whose layout is unknown would be refused).
    fn maybe_ask_resync(&mut self) {
        let matched = self
            .peer
            .as_ref()
            .and_then(|p| p.layout)
            .is_some_and(|l| l == self.layout);
        if self.role == Role::Backup && self.need_resync && matched {
            self.need_resync = false;
            let m = self.sealer.resync_request(self.wait);
            self.send(&m, 0);
            self.counts.resync_requests_sent += 1;
            let losses = self.losses();
            if let Synced::Waiting {
                asked,
                losses_at_ask,
                ..
            } = &mut self.synced
            {
                *asked = Some(Instant::now());
                *losses_at_ask = losses;
            }
        }
    }

    /// A backup still waiting asks again (its request or the resync done was lost).
    fn retry_resync(&mut self) {
        if let Synced::Waiting { asked: Some(t), .. } = self.synced {
            if t.elapsed() >= ms(RESYNC_RETRY_MS) && self.peer_alive() {
                self.need_resync = true;
                self.maybe_ask_resync();
            }
        }
    }

    fn peer_alive(&self) -> bool {
        self.peer
            .as_ref()
            .is_some_and(|p| p.last.elapsed() < ms(PEER_LOST_MS))
    }

    /// Whether this box could take over now, and why.
    fn readiness(&self) -> (bool, &'static str) {
        if self.role != Role::Backup {
            return (true, "not the backup");
        }
        let since = match self.synced {
            Synced::Done { lossy: false } => return (true, "resynced"),
            Synced::Done { lossy: true } => return (true, "resynced with losses"),
            Synced::Waiting { since, .. } => since,
        };
        if !self.peer_alive() && since.elapsed() >= ms(PEER_LOST_MS) {
            // No peer came, or it went before it finished: nobody holds more than this box.
            return (true, "no peer");
        }
        let differs = self
            .peer
            .as_ref()
            .and_then(|p| p.layout)
            .is_some_and(|l| wire::check_layout(&self.layout, &l).is_err());
        if differs {
            // It could never send us its connections: waiting would only block a takeover.
            return (true, "the peer's layout differs");
        }
        (false, "waiting for the peer's full resync")
    }

    /// A resync request: the master sends everything; any other role has nothing and says so at
    /// once. A request of the wait a resync in progress answers (the backup asking again) is
    /// answered by its end; one of another wait (the backup restarted, or met us again, and may
    /// have missed what was sent) starts the resync over.
    fn answer_resync(&mut self, peer: u32, wait: u32) {
        if self.role != Role::Master {
            let m = self.sealer.resync_done(wait, 0);
            self.send(&m, 0);
            self.counts.resync_done_sent += 1;
            return;
        }
        if self.resync_out.as_ref().is_some_and(|r| r.wait == wait) {
            return;
        }
        self.generation = self.generation.wrapping_add(1);
        self.resync_out = None;
        // Our hello first, so the records are not refused for an unknown layout.
        self.send_hello();
        if (self.deliver)(ToWorkers::ExportAll(self.generation)) {
            self.counts.resyncs_started += 1;
            tracing::info!(
                peer,
                generation = self.generation,
                "full resync for the peer"
            );
            self.resync_out = Some(ResyncOut {
                generation: self.generation,
                wait,
                workers_done: 0,
                ahead: None,
                sent_before: self.counts.sent_records,
            });
        } else {
            tracing::warn!(
                peer,
                "a worker could not take the full resync; the peer asks again"
            );
        }
    }

    /// A worker's end marker: once every worker's has come, the resync done follows the
    /// records now pending.
    fn worker_resync_done(&mut self, generation: u32) {
        let workers = self.layout.workers;
        let pending = self.pending.len();
        if let Some(r) = self
            .resync_out
            .as_mut()
            .filter(|r| r.generation == generation)
        {
            r.workers_done += 1;
            if r.workers_done >= workers {
                r.ahead = Some(pending);
            }
        }
    }

    fn send_hello(&mut self) {
        self.last_hello = Some(Instant::now());
        let m = self.sealer.hello(&self.layout);
        self.send(&m, 0);
    }

    /// The master: takes what the workers queued and sends it, as the pacing allows.
    fn send_records(&mut self) {
        if self.role != Role::Master {
            return;
        }
        while self.pending.len() < PENDING_MAX {
            match self.rec_rx.try_recv() {
                Ok(Export::Records(b)) => self.pending.extend(b),
                Ok(Export::ResyncDone(g)) => self.worker_resync_done(g),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let now = Instant::now();
        let rate = f64::from(self.settings.max_msgs_per_s.max(1));
        self.tokens = (self.tokens + now.duration_since(self.last_refill).as_secs_f64() * rate)
            .min(rate / 10.0);
        self.last_refill = now;
        let mut sent = 0;
        while sent < self.pending.len() && self.tokens >= 1.0 {
            // One message a token: a run of one family's records, as many as its layout fits
            // (an IPv6 record is longer).
            let end = message_end(&self.pending, sent);
            for m in self.sealer.records(&self.pending[sent..end]) {
                self.send(&m, end - sent);
            }
            sent = end;
            self.tokens -= 1.0;
        }
        self.pending.drain(..sent);
        if let Some(r) = &mut self.resync_out {
            if let Some(left) = &mut r.ahead {
                *left = left.saturating_sub(sent);
                if *left == 0 {
                    let records = self.counts.sent_records - r.sent_before;
                    let m = self
                        .sealer
                        .resync_done(r.wait, u32::try_from(records).unwrap_or(u32::MAX));
                    self.resync_out = None;
                    self.send(&m, 0);
                    self.counts.resync_done_sent += 1;
                    tracing::info!(records, "full resync for the peer done");
                }
            }
        }
    }

    /// Sends one message of `records` records.
    fn send(&mut self, m: &[u8], records: usize) {
        match self.sock.send_to(m, self.dest) {
            Ok(_) => {
                self.counts.sent_msgs += 1;
                self.counts.sent_records += records as u64;
                self.counts.sent_bytes += m.len() as u64;
            }
            Err(_) => self.counts.send_errors += 1,
        }
    }

    fn received(&mut self, m: &[u8], from: std::net::SocketAddr) {
        let msg = match self.opener.open(m) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::debug!(%from, "sync message refused: {e}");
                return;
            }
        };
        let sender = match &msg {
            Message::Records { sender, .. }
            | Message::Hello { sender, .. }
            | Message::ResyncRequest { sender, .. }
            | Message::ResyncDone { sender, .. } => *sender,
        };
        if sender == self.settings.id {
            return; // our own, looped back
        }
        self.counts.received_msgs += 1;
        let now = Instant::now();
        let met = match &self.peer {
            Some(p) => p.id != sender || now.duration_since(p.last) >= ms(PEER_LOST_MS),
            None => true,
        };
        if met {
            tracing::info!(peer = sender, %from, "sync peer met");
            self.peer = Some(Peer {
                id: sender,
                last: now,
                layout: None,
            });
            // A peer that (re)starts learns our layout now rather than within a second, and a
            // backup asks it for everything once its hello matches.
            self.need_resync = true;
            if self.role == Role::Backup {
                self.start_waiting(now);
            }
            if self.role != Role::Off {
                self.send_hello();
            }
        }
        let peer = self.peer.as_mut().expect("set above");
        peer.last = now;
        let peer_layout = peer.layout;
        match msg {
            Message::Hello { layout, .. } => {
                peer.layout = Some(layout);
                if peer_layout != Some(layout) {
                    if wire::check_layout(&self.layout, &layout).is_ok() {
                        tracing::info!(peer = sender, "sync peer's layout matches ours");
                    } else {
                        tracing::error!(
                            peer = sender,
                            ours = ?self.layout,
                            theirs = ?layout,
                            "sync peer refused: its workers, local ports, steering or RSS key \
                             differ from ours; its connections would reach the wrong workers"
                        );
                    }
                }
                self.maybe_ask_resync();
            }
            Message::ResyncRequest { wait, .. } => {
                self.counts.resync_requests_received += 1;
                self.answer_resync(sender, wait);
            }
            Message::ResyncDone { wait, records, .. } => self.resync_done(sender, wait, records),
            Message::Records { records, .. } => {
                self.counts.received_records += records.len() as u64;
                if self.role != Role::Backup {
                    self.counts.ignored_not_backup += records.len() as u64;
                } else if peer_layout.is_none_or(|l| wire::check_layout(&self.layout, &l).is_err())
                {
                    self.counts.refused_layout += records.len() as u64;
                } else if !(self.deliver)(ToWorkers::Install(records)) {
                    self.counts.install_dropped += 1;
                }
            }
        }
    }

    /// The peer's resync done: it ends this wait if it answers this wait's request, and nothing
    /// was lost on the way (else the backup asks again, [`RESYNC_ATTEMPTS`] times at most).
    fn resync_done(&mut self, peer: u32, wait: u32, records: u32) {
        let Synced::Waiting {
            asked: Some(_),
            attempts,
            losses_at_ask,
            ..
        } = self.synced
        else {
            return;
        };
        if self.role != Role::Backup || wait != self.wait {
            return;
        }
        let lost = self.losses() - losses_at_ask;
        if lost > 0 && attempts + 1 < RESYNC_ATTEMPTS {
            tracing::warn!(
                peer,
                lost,
                "full resync lost messages or records on the way; asking again"
            );
            self.counts.resync_incomplete += 1;
            if let Synced::Waiting { attempts, .. } = &mut self.synced {
                *attempts += 1;
            }
            self.need_resync = true;
            self.maybe_ask_resync();
            return;
        }
        self.synced = Synced::Done { lossy: lost > 0 };
        self.counts.resync_done_received += 1;
        self.counts.resync_records = u64::from(records);
        tracing::info!(peer, records, lost, "resynced: the peer sent everything");
    }

    fn publish(&mut self) {
        let r = self.opener.stats;
        let (ready, why) = self.readiness();
        let c = &mut self.counts;
        c.refused_truncated = r.truncated;
        c.refused_bad_mac = r.bad_mac;
        c.refused_bad_version = r.bad_version;
        c.refused_replay = r.replay;
        c.refused_bad_length = r.bad_length;
        c.refused_bad_record = r.bad_record;
        c.lost_msgs = r.lost;
        c.mode = self.mode.to_string();
        c.role = self.role;
        c.vips_held = self.vips_held;
        c.ready = ready;
        why.clone_into(&mut c.resync);
        c.pending = (self.pending.len() + self.rec_rx.len()) as u64;
        c.peer_id = self.peer.as_ref().map(|p| p.id);
        c.last_from_peer_ms = self
            .peer
            .as_ref()
            .map(|p| p.last.elapsed().as_millis() as u64);
        c.peer_layout = match self.peer.as_ref().and_then(|p| p.layout) {
            None => "unknown".into(),
            Some(l) if l == self.layout => "same".into(),
            Some(l) => format!(
                "differs: theirs {} workers, ports {}-{}, steering {}, digest {:x}; ours {} \
                 workers, ports {}-{}, steering {}, digest {:x}",
                l.workers,
                l.ports.0,
                l.ports.1,
                l.steering,
                l.rss_key_hash,
                self.layout.workers,
                self.layout.ports.0,
                self.layout.ports.1,
                self.layout.steering,
                self.layout.rss_key_hash
            ),
        };
        if let Ok(mut s) = self.status.try_lock() {
            s.clone_from(c);
        }
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Where the message that starts at `pending[from]` ends: the records after it of the same
/// family, at most what one message of that family holds ([`wire::MAX_RECORDS`] IPv4 ones,
/// [`wire::MAX_RECORDS6`] IPv6 ones) and a translation with its connection
/// ([`wire::message_len`]), so that `Sealer::records` makes one message of them.
fn message_end(pending: &[ConnRecord], from: usize) -> usize {
    let Some(first) = pending.get(from) else {
        return from;
    };
    let v6 = first.is_ipv6();
    let max = if v6 {
        wire::MAX_RECORDS6
    } else {
        wire::MAX_RECORDS
    };
    let run = pending[from..]
        .iter()
        .take_while(|r| r.is_ipv6() == v6)
        .count();
    from + wire::message_len(&pending[from..from + run], max)
}

#[cfg(test)]
mod tests;

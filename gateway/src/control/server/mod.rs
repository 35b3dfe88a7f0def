//! The admin socket server: a listener thread on the control plane and one thread per client
//! (DESIGN.md decision 9). Workers never touch the socket; they only see generations and dump
//! requests in their inbox, which they answer from housekeeping.
//!
//! Clients are bounded in number ([`MAX_CLIENTS`]) and in time: a request line not complete within
//! [`REQUEST_TIMEOUT`] of the previous answer (or of connecting) ends the client, however slowly it
//! trickles bytes. So a slow, stuck or malicious client holds one thread for a bounded time and
//! nothing else; changes are serialised by the control mutex, held only while a change is applied.
//! When every slot is taken, a new client takes the slot of the client that has waited longest
//! without a request (it is closed within [`POLL`]), so idle connections can never lock the
//! operator out; only [`MAX_CLIENTS`] clients all busy with requests make a newcomer wait.
//! Client threads also notice shutdown within [`POLL`], so an idle client never delays it.
//!
//! This file holds the socket, the client threads and the dispatch of each request (`handle`);
//! `handlers` answers each operation, `counters` sums and rates the workers' published figures.

mod counters;
mod handlers;
#[cfg(test)]
mod tests;

use super::commit::Control;
use super::model::Model;
use super::proto::{self, Change, ConnFilter, Line, Op, Request, Response, MAX_REQUEST};
use crate::config::Config;
use crate::events::Kind;
use crate::stats::WorkerStats;
use crate::view::*;
use crate::worker::Msg;
pub use counters::worker_view;
use counters::Counts;
use std::io::{BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Clients served at once; more are told so and closed.
pub const MAX_CLIENTS: usize = 32;
/// A request line must be complete within this long of the previous answer (or of connecting).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a client thread waiting for input looks at the stop flag.
pub const POLL: Duration = Duration::from_millis(200);
/// A response the client does not take within this long is abandoned.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long workers get to answer a dump request.
const DUMP_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections a worker hands over per dump message.
const DUMP_CHUNK: usize = 8192;
/// Connections listed per worker unless the request says otherwise.
const DEFAULT_CONN_LIMIT: usize = 100_000;
/// The most connections one request may list (a larger `limit` is lowered to it).
pub const MAX_CONN_LIMIT: usize = 1_000_000;

/// The admin socket's path: `control.socket`, else /run/gateway/<eal.file_prefix>.sock.
pub fn socket_path(cfg: &Config) -> PathBuf {
    match &cfg.control.socket {
        Some(s) => PathBuf::from(s),
        None => PathBuf::from(format!("/run/gateway/{}.sock", cfg.eal.file_prefix)),
    }
}

/// What the server reads from the running daemon.
pub struct Ctx<'a> {
    pub control: &'a Mutex<Control>,
    pub published: &'a [Arc<Mutex<WorkerStats>>],
    /// The capture slot (`gwctl capture`).
    pub capture: Arc<crate::capture::Capture>,
    /// The daemon's latest counter report (refreshed by the control loop).
    pub report: &'a Mutex<String>,
    pub cfg: &'a Config,
    pub config_path: Option<&'a Path>,
    /// Each port's counters and the mempool's use, read when a scrape asks (`metrics`).
    pub port_samples: &'a (dyn Fn() -> PortSamples + Sync),
}

/// Port counters and (mbufs in use, available).
pub type PortSamples = (Vec<crate::metrics::PortSample>, Option<(u64, u64)>);

struct Server<'a> {
    ctx: Ctx<'a>,
    workers: Vec<crossbeam_channel::Sender<Msg>>,
    counts: Mutex<Counts>,
    clients: AtomicUsize,
    /// Each client's eviction flag and, while it waits for a request, since when.
    slots: Mutex<Vec<Slot>>,
    stop: &'a AtomicBool,
}

struct Slot {
    id: u64,
    idle_since: Option<Instant>,
    evict: Arc<AtomicBool>,
}

/// Binds the socket: stale sockets are removed, a live one (another daemon) is an error. The socket
/// is created under a temporary name, given its mode and group, then renamed into place, so it is
/// never reachable with looser permissions.
pub fn bind(path: &Path, group: Option<&str>) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is served by another process", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let gid = group.map(gid_of).transpose()?;
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let l = UnixListener::bind(&tmp)?;
    let mode = if gid.is_some() { 0o660 } else { 0o600 };
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    if let Some(g) = gid {
        std::os::unix::fs::chown(&tmp, None, Some(g))?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(l)
}

/// A group name (or number) to its id, from /etc/group.
fn gid_of(group: &str) -> std::io::Result<u32> {
    if let Ok(n) = group.parse() {
        return Ok(n);
    }
    let text = std::fs::read_to_string("/etc/group")?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            Some((f.next()?, f.nth(1)?))
        })
        .find(|(name, _)| *name == group)
        .and_then(|(_, gid)| gid.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no group named {group:?}"),
            )
        })
}

/// Serves the socket until `stop` is set. Runs on its own thread; each client gets a scoped one.
/// The thread waits for a client in `poll` (mio) with a short timeout: a client is served the
/// moment it connects, and `stop` is seen within [`POLL`] whatever became of the socket's path.
pub fn serve(
    ctx: Ctx<'_>,
    listener: UnixListener,
    metrics: Option<std::net::TcpListener>,
    stop: &AtomicBool,
) {
    let path = socket_path(ctx.cfg);
    use std::os::fd::AsRawFd;
    let ready = mio::Poll::new().and_then(|p| {
        listener.set_nonblocking(true)?;
        p.registry().register(
            &mut mio::unix::SourceFd(&listener.as_raw_fd()),
            mio::Token(0),
            mio::Interest::READABLE,
        )?;
        Ok(p)
    });
    let mut ready = match ready {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("admin socket: {e}");
            return;
        }
    };
    let mut events = mio::Events::with_capacity(4);
    let workers = match ctx.control.lock() {
        Ok(c) => c.worker_inboxes().to_vec(),
        Err(_) => return,
    };
    let srv = Server {
        ctx,
        workers,
        counts: Mutex::new(Counts::default()),
        clients: AtomicUsize::new(0),
        slots: Mutex::new(Vec::new()),
        stop,
    };
    let mut next_id = 0u64;
    std::thread::scope(|s| {
        if let Some(l) = metrics {
            let srv = &srv;
            s.spawn(move || crate::metrics::http::serve(l, stop, || srv.metrics_text()));
        }
        // Rates (`--rate`) are sampled once a second beside the accept loop.
        s.spawn(|| {
            let mut last_sample = Instant::now()
                .checked_sub(Duration::from_secs(2))
                .unwrap_or_else(Instant::now);
            while !stop.load(Ordering::Relaxed) {
                if last_sample.elapsed() >= Duration::from_secs(1) {
                    last_sample = Instant::now();
                    srv.sample();
                }
                // Until the next sample, looking at `stop` as often as the accept loop does:
                // five wake-ups a second, not twenty.
                let next = Duration::from_secs(1).saturating_sub(last_sample.elapsed());
                std::thread::sleep(next.clamp(Duration::from_millis(1), POLL));
            }
        });
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    if srv.clients.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS
                        && !srv.evict_longest_idle()
                    {
                        srv.clients.fetch_sub(1, Ordering::SeqCst);
                        let mut w = stream;
                        let _ = w.set_write_timeout(Some(WRITE_TIMEOUT));
                        let _ = proto::write_line(
                            &mut w,
                            &Response::err("too many admin clients; try again"),
                        );
                        continue;
                    }
                    let srv = &srv;
                    next_id += 1;
                    let id = next_id;
                    let evict = Arc::new(AtomicBool::new(false));
                    if let Ok(mut slots) = srv.slots.lock() {
                        slots.push(Slot {
                            id,
                            idle_since: Some(Instant::now()),
                            evict: evict.clone(),
                        });
                    }
                    s.spawn(move || {
                        srv.client(stream, id, &evict);
                        if let Ok(mut slots) = srv.slots.lock() {
                            slots.retain(|x| x.id != id);
                        }
                        srv.clients.fetch_sub(1, Ordering::SeqCst);
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // Edge-triggered readiness: wait only once `accept` has drained the backlog.
                    let _ = ready.poll(&mut events, Some(POLL));
                }
                Err(e) => {
                    tracing::warn!("admin socket accept: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    });
    let _ = std::fs::remove_file(&path);
}

/// A reader (over a socket with a short read timeout) that fails once its deadline has passed, the
/// daemon stops or the client is evicted, so a client trickling bytes is cut off too.
struct Deadline<'s, R> {
    inner: R,
    until: Instant,
    stop: &'s AtomicBool,
    evict: &'s AtomicBool,
}

impl<R: Read> Read for Deadline<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if Instant::now() > self.until
                || self.stop.load(Ordering::Relaxed)
                || self.evict.load(Ordering::Relaxed)
            {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "request deadline passed",
                ));
            }
            match self.inner.read(buf) {
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                r => return r,
            }
        }
    }
}

impl Server<'_> {
    /// Marks the client idle longest for closing; false if every client is busy with a request.
    fn evict_longest_idle(&self) -> bool {
        let Ok(slots) = self.slots.lock() else {
            return false;
        };
        let victim = slots
            .iter()
            .filter(|s| !s.evict.load(Ordering::Relaxed))
            .filter_map(|s| Some((s.idle_since?, s)))
            .min_by_key(|(t, _)| *t);
        match victim {
            Some((_, s)) => {
                s.evict.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    fn set_idle(&self, id: u64, idle: bool) {
        if let Ok(mut slots) = self.slots.lock() {
            if let Some(s) = slots.iter_mut().find(|s| s.id == id) {
                s.idle_since = idle.then(Instant::now);
            }
        }
    }

    fn client(&self, stream: UnixStream, id: u64, evict: &AtomicBool) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(POLL));
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let Ok(mut w) = stream.try_clone() else {
            return;
        };
        let mut r = BufReader::new(Deadline {
            inner: stream,
            until: Instant::now() + REQUEST_TIMEOUT,
            stop: self.stop,
            evict,
        });
        loop {
            r.get_mut().until = Instant::now() + REQUEST_TIMEOUT;
            self.set_idle(id, true);
            let line = proto::read_line(&mut r, MAX_REQUEST);
            self.set_idle(id, false);
            let resp = match line {
                Ok(Line::Full(l)) => match proto::parse_request(&l) {
                    Ok(Request {
                        op: Op::Conns { filter },
                        ..
                    }) if filter.stream => {
                        if self.conns_stream(&filter, &mut w).is_err() {
                            return;
                        }
                        continue;
                    }
                    Ok(Request { op: Op::List, .. }) => {
                        if self.list_to(&mut w).is_err() {
                            return;
                        }
                        continue;
                    }
                    Ok(Request {
                        op: op @ Op::Capture { .. },
                        ..
                    }) => {
                        if self.capture(op, &mut w).is_err() {
                            return;
                        }
                        continue;
                    }
                    Ok(req) => self.handle(req.op),
                    Err(e) => Response::err(e),
                },
                Ok(Line::Eof) => return,
                Ok(Line::Truncated) => {
                    let _ = proto::write_line(
                        &mut w,
                        &Response::err("truncated request: input ended before the newline"),
                    );
                    return;
                }
                Ok(Line::TooLong) => {
                    let msg = format!(
                        "request too large: more than {MAX_REQUEST} bytes without a newline"
                    );
                    let _ = proto::write_line(&mut w, &Response::err(msg));
                    return;
                }
                Err(_) => return,
            };
            if proto::write_line(&mut w, &resp).is_err() {
                return;
            }
        }
    }

    fn handle(&self, op: Op) -> Response {
        let r = match op {
            Op::Status => self.status(),
            Op::List => Err("list is answered by list_to".into()),
            Op::Apply { changes } => return self.apply(&changes),
            Op::Conns { filter } => self.conns(&filter),
            Op::Stats => self.stats(),
            Op::Zero => self.zero(),
            Op::Timeouts => Ok(to_json(&self.timeouts())),
            Op::SetTimeouts { tcp, tcpfin, udp } => self.set_timeouts(tcp, tcpfin, udp),
            Op::Sysctl { name, value } => self.sysctl(name.as_deref(), value),
            Op::Save => self.save(),
            Op::Net => self.net(),
            Op::Health => self.control().map(|c| c.health_status.clone()).map(|s| {
                let list: Vec<crate::health::runner::Status> =
                    s.lock().map(|x| x.clone()).unwrap_or_default();
                to_json(&list)
            }),
            Op::Drain { vip, timeout_s } => self
                .control()
                .and_then(|mut c| c.drain(vip, timeout_s))
                .map(|v| to_json(&v)),
            Op::Undrain { vip } => self
                .control()
                .and_then(|mut c| c.undrain(vip))
                .map(|v| to_json(&v)),
            Op::Announce => self.control().map(|c| to_json(&c.announce_view())),
            Op::Runtime { clear } => Ok(to_json(&self.runtime(clear))),
            Op::Events { after, wait_ms } => {
                // Read without the control lock held: a follower's wait must not hold up changes.
                let log = self.control().map(|c| c.events.clone());
                log.map(|l| {
                    let wait = Duration::from_millis(u64::from(wait_ms));
                    to_json(&l.read(after, wait.min(crate::events::MAX_WAIT)))
                })
            }
            Op::Capture { .. } => Err("capture is answered as a stream".into()),
            Op::Sync { role } => self.sync(role.as_deref()),
        };
        match r {
            Ok(v) => Response::ok(v),
            Err(e) => Response::err(e),
        }
    }

    fn control(&self) -> Result<std::sync::MutexGuard<'_, Control>, String> {
        self.ctx
            .control
            .lock()
            .map_err(|_| "control state poisoned".to_string())
    }

    fn current(&self) -> Result<Arc<crate::worker::Generation>, String> {
        Ok(self.control()?.current().clone())
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

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

use super::commit::Control;
use super::model::Model;
use super::proto::{self, Change, ConnFilter, Line, Op, Request, Response, MAX_REQUEST};
use super::view::*;
use crate::config::Config;
use crate::events::Kind;
use crate::stats::WorkerStats;
use crate::worker::Msg;
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

/// Counters at the last `ipvsadm -Z`, and the last two one-second samples for rates.
#[derive(Default)]
struct Counts {
    base: Vec<WorkerView>,
    prev: Option<(Instant, WorkerView)>,
    cur: Option<(Instant, WorkerView)>,
    /// The same for the traffic per (service, real server).
    traffic_base: TrafficMap,
    traffic_prev: Option<(Instant, TrafficMap)>,
    traffic_cur: Option<(Instant, TrafficMap)>,
    /// Stage figures at the last `runtime clear`.
    runtime_base: Vec<WorkerRuntime>,
}

type TrafficMap = std::collections::HashMap<crate::forward::TrafficKey, crate::forward::Traffic>;

fn counters_of(t: &crate::forward::Traffic) -> Counters {
    Counters {
        conns: t.conns,
        inpkts: t.inpkts,
        outpkts: t.outpkts,
        inbytes: t.inbytes,
        outbytes: t.outbytes,
    }
}

fn sub_counters(a: &Counters, b: &Counters) -> Counters {
    Counters {
        conns: a.conns.saturating_sub(b.conns),
        inpkts: a.inpkts.saturating_sub(b.inpkts),
        outpkts: a.outpkts.saturating_sub(b.outpkts),
        inbytes: a.inbytes.saturating_sub(b.inbytes),
        outbytes: a.outbytes.saturating_sub(b.outbytes),
    }
}

fn add_counters(a: &mut Counters, b: &Counters) {
    a.conns += b.conns;
    a.inpkts += b.inpkts;
    a.outpkts += b.outpkts;
    a.inbytes += b.inbytes;
    a.outbytes += b.outbytes;
}

fn add_rates(a: &mut Rates, b: &Rates) {
    a.cps += b.cps;
    a.inpps += b.inpps;
    a.outpps += b.outpps;
    a.inbps += b.inbps;
    a.outbps += b.outbps;
}

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
            Op::List => self.list(),
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

    /// `Op::Sync`: the sync thread's status (after setting its mode, if asked) and the workers'
    /// sync counters summed.
    fn sync(&self, role: Option<&str>) -> Result<serde_json::Value, String> {
        let status = {
            let c = self.control()?;
            let h = c.sync.as_ref().ok_or(
                "connection sync is not configured: add a [sync] section (peer, key) to the \
                 config and restart",
            )?;
            match role {
                Some(r) => h.set_mode_wait(r.parse()?),
                None => h.status(),
            }
        };
        let mut workers = crate::forward::SyncCounters::default();
        for p in self.ctx.published {
            if let Ok(s) = p.lock() {
                workers.add(&s.sync);
            }
        }
        let named: serde_json::Map<String, serde_json::Value> = workers
            .named()
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).into()))
            .collect();
        Ok(serde_json::json!({ "status": status, "workers": named }))
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

    fn status(&self) -> Result<serde_json::Value, String> {
        let g = self.current()?;
        Ok(to_json(&StatusView {
            version: env!("CARGO_PKG_VERSION").into(),
            protocol: proto::VERSION,
            generation: g.id,
            workers: self.workers.len(),
            services: g.services.services.len(),
            reals: g.services.services.iter().map(|s| s.svc.len()).sum(),
        }))
    }

    fn list(&self) -> Result<serde_json::Value, String> {
        Ok(to_json(&self.list_view(true)?))
    }

    /// The services with their real servers and counters: since the last `-Z` (`since_zero`) or
    /// since the start (Prometheus counters only go up).
    fn list_view(&self, since_zero: bool) -> Result<ListView, String> {
        let (g, now) = {
            let ctl = self.control()?;
            (ctl.current().clone(), ctl.now_ms())
        };
        let totals = self.traffic_totals();
        let svc_traffic = self.services_traffic(&totals, since_zero);
        let mut conflicts = std::collections::HashMap::new();
        for p in self.ctx.published {
            if let Ok(s) = p.lock() {
                for (k, n) in &s.lip_conflicts {
                    *conflicts.entry(*k).or_insert(0u64) += n;
                }
            }
        }
        let mut acl_hits = crate::stats::SvcCounts::new();
        let mut limit_refused = crate::stats::SvcCounts::new();
        for p in self.ctx.published {
            if let Ok(s) = p.lock() {
                crate::stats::merge_svc_counts(&mut acl_hits, &s.acl_hits);
                crate::stats::merge_svc_counts(&mut limit_refused, &s.limit_refused);
            }
        }
        let model = Model::from_table(&g.services);
        let services = g
            .services
            .services
            .iter()
            .zip(model.services)
            .map(|(vs, e)| {
                let persist = vs
                    .svc
                    .persist_table()
                    .map(|t| t.count_by_rs(now))
                    .unwrap_or_default();
                let reals = e
                    .reals
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let st = vs.svc.stats(i);
                        let (stats, rate) = vs
                            .svc
                            .reals()
                            .get(i)
                            .map(|rs| {
                                let c = vs.svc.config();
                                let proto = c.proto.number();
                                let key = crate::forward::TrafficKey {
                                    proto,
                                    vip: c.vip,
                                    vport: c.vport,
                                    rip: rs.addr,
                                    rport: rs.port,
                                };
                                self.traffic_of(&totals, &key, since_zero)
                            })
                            .unwrap_or_default();
                        RealView {
                            stats,
                            rate,
                            addr: r
                                .address
                                .parse()
                                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()),
                            port: r.port.unwrap_or(e.port),
                            weight: r.weight,
                            mode: r.mode.clone(),
                            upper: r.upper,
                            lower: r.lower,
                            active: st.map_or(0, |s| s.active()),
                            inactive: st.map_or(0, |s| s.inactive()),
                            persist_conns: vs
                                .svc
                                .key(i)
                                .and_then(|k| persist.get(&k).copied())
                                .unwrap_or(0),
                        }
                    })
                    .collect::<Vec<RealView>>();
                let mut rate = Rates::default();
                for r in &reals {
                    add_rates(&mut rate, &r.rate);
                }
                let c = vs.svc.config();
                let stats = svc_traffic
                    .get(&(c.proto.number(), c.vip, c.vport))
                    .copied()
                    .unwrap_or_default();
                SvcView {
                    stats,
                    rate,
                    proto: e.protocol.clone(),
                    vip: vs.svc.config().vip,
                    port: e.port,
                    scheduler: e.scheduler.clone(),
                    flags: e.scheduler_flags.clone(),
                    persistence_s: e.persistence_s,
                    netmask: vs.svc.config().persistence.map(|p| p.netmask),
                    lip_conflicts: {
                        let c = vs.svc.config();
                        vs.lips
                            .iter()
                            .map(|&lip| {
                                let k = crate::forward::LipKey {
                                    proto: c.proto.number(),
                                    vip: c.vip,
                                    vport: c.vport,
                                    lip,
                                };
                                conflicts.get(&k).copied().unwrap_or(0)
                            })
                            .collect()
                    },
                    lips: vs
                        .lips
                        .iter()
                        .map(|&a| std::net::IpAddr::from(a))
                        .chain(vs.lips6.iter().map(|&a| std::net::IpAddr::from(a)))
                        .collect(),
                    toa: vs.toa,
                    acl: acl_view(vs, &acl_hits),
                    synproxy: vs.synproxy.to_string(),
                    limit: vs.limit.map(|l| {
                        let r = svc_counts(vs, &limit_refused);
                        let n = |i: usize| r.and_then(|r| r.get(i)).copied().unwrap_or(0);
                        LimitView::new(&l, [n(0), n(1)])
                    }),
                    reals,
                }
            })
            .collect();
        Ok(ListView {
            generation: g.id,
            size: self.ctx.cfg.conn.capacity as u64 * self.workers.len() as u64,
            services,
        })
    }

    /// One Prometheus scrape (`metrics`).
    fn metrics_text(&self) -> String {
        let list = self.list_view(false).unwrap_or_default();
        let health = self
            .control()
            .ok()
            .map(|c| c.health_status.clone())
            .and_then(|h| h.lock().ok().map(|h| h.clone()))
            .unwrap_or_default();
        let (ports, mbufs) = (self.ctx.port_samples)();
        let snap = crate::metrics::Snapshot {
            generation: list.generation,
            services: list.services,
            workers: self
                .ctx
                .published
                .iter()
                .map(|p| p.lock().map(|s| s.clone()).unwrap_or_default())
                .collect(),
            conn_capacity: u64::from(self.ctx.cfg.conn.capacity),
            ports,
            health: health
                .iter()
                .map(|h| crate::metrics::HealthSample {
                    proto: h.key.proto,
                    vip: h.key.vip,
                    vport: h.key.vport,
                    rs: h.key.rs,
                    rs_port: h.key.rs_port,
                    up: h.up,
                    checks: h.checks,
                    failures: h.failures,
                })
                .collect(),
            mbufs,
            sync: self
                .control()
                .ok()
                .and_then(|c| c.sync.as_ref().map(|h| h.status())),
        };
        crate::metrics::render(&snap)
    }

    /// Applies a batch as one generation; answered when every worker runs it. Holding the control
    /// mutex from reading the current generation to installing the next one makes concurrent
    /// clients' changes serial: none is lost or half-applied.
    fn apply(&self, changes: &[Change]) -> Response {
        let mut ctl = match self.control() {
            Ok(c) => c,
            Err(e) => return Response::err(e),
        };
        let g = ctl.current().clone();
        let n = changes.len();
        let refused = |ctl: &Control, e: &str| {
            let m = format!("admin change of {n} commands refused: {e}");
            ctl.events.record(Kind::Refused, m);
        };
        // From the configured services, not the running ones (whose weights health overlays).
        let mut model = ctl.configured().clone();
        if let Err((i, e)) = model.apply_all(changes) {
            refused(&ctl, &format!("command {}: {e}", i + 1));
            let mut r = Response::err(e);
            r.at = Some(i);
            return r;
        }
        let port_addrs: Vec<_> = g.topo.ports.iter().map(|p| p.addrs.clone()).collect();
        let port_addrs6: Vec<_> = g.topo.ports.iter().map(|p| p.addrs6.clone()).collect();
        let v = match crate::config::validate_service_entries(
            &model.services,
            &port_addrs,
            &port_addrs6,
        ) {
            Ok(v) => v,
            Err(e) => {
                let e = model.name_error(&e.to_string());
                refused(&ctl, &e);
                return Response::err(e);
            }
        };
        match ctl.apply_model(model, v) {
            Ok(id) => {
                let m = format!("generation {id} running on every worker ({n} admin commands)");
                ctl.events.record(Kind::Config, m);
                Response::ok(serde_json::json!({ "generation": id }))
            }
            Err(e) => {
                refused(&ctl, &e);
                Response::err(e)
            }
        }
    }

    /// Asks every worker for its connections and neighbours; waits for all of them.
    fn dump(&self, filter: &ConnFilter, limit: usize) -> Result<Vec<WorkerDump>, String> {
        let mut conns = Vec::new();
        let mut firsts = self.dump_each(filter, limit, &mut |mut c| {
            conns.append(&mut c);
            Ok(())
        })?;
        if let Some(first) = firsts.first_mut() {
            first.conns = conns;
        }
        Ok(firsts)
    }

    /// Asks each worker in turn for its connections passing `filter`, one chunk per message (a
    /// worker scans at most `dump::SCAN_SLOTS` slots for one, so a listing never stalls it),
    /// handing each chunk to `sink` as it arrives; `limit` connections in all. Returns each worker's
    /// first answer (its neighbours and table size) without connections.
    fn dump_each(
        &self,
        filter: &ConnFilter,
        limit: usize,
        sink: &mut dyn FnMut(Vec<ConnInfo>) -> Result<(), String>,
    ) -> Result<Vec<WorkerDump>, String> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut firsts = Vec::new();
        let mut sent = 0;
        for (w, inbox) in self.workers.iter().enumerate() {
            let mut from = 0;
            loop {
                let msg = Msg::Dump {
                    filter: filter.clone(),
                    limit: (limit - sent).min(DUMP_CHUNK),
                    from,
                    reply: tx.clone(),
                };
                inbox
                    .send_timeout(msg, DUMP_TIMEOUT)
                    .map_err(|_| format!("worker {w} did not take the dump request"))?;
                let mut d = rx
                    .recv_timeout(DUMP_TIMEOUT)
                    .map_err(|_| format!("worker {w} did not answer the dump request"))?;
                let conns = std::mem::take(&mut d.conns);
                sent += conns.len();
                if !conns.is_empty() {
                    sink(conns)?;
                }
                let next = d.next;
                if from == 0 {
                    firsts.push(d);
                }
                match next {
                    Some(n) if sent < limit => from = n,
                    _ => break,
                }
            }
        }
        Ok(firsts)
    }

    fn conns(&self, f: &ConnFilter) -> Result<serde_json::Value, String> {
        let limit = f.limit.unwrap_or(DEFAULT_CONN_LIMIT).min(MAX_CONN_LIMIT);
        let dumps = self.dump(f, limit)?;
        let total = dumps.iter().map(|d| d.total).sum();
        let conns: Vec<ConnInfo> = dumps.into_iter().flat_map(|d| d.conns).collect();
        Ok(to_json(&ConnsView { total, conns }))
    }

    /// `conns` with `stream`: one line per chunk as the workers hand them over (`"more": true`),
    /// then one with the total. Memory stays at a chunk, whatever the table holds.
    fn conns_stream(&self, f: &ConnFilter, w: &mut UnixStream) -> std::io::Result<()> {
        let limit = f.limit.unwrap_or(DEFAULT_CONN_LIMIT).min(MAX_CONN_LIMIT);
        let mut io_err = None;
        let r = self.dump_each(f, limit, &mut |conns| {
            let mut line = Response::ok(to_json(&ConnsView { total: 0, conns }));
            line.more = Some(true);
            proto::write_line(w, &line).map_err(|e| {
                let msg = e.to_string();
                io_err = Some(e);
                msg
            })
        });
        if let Some(e) = io_err {
            return Err(e);
        }
        let last = match r {
            Ok(d) => {
                let total = d.iter().map(|d| d.total).sum();
                let mut l = Response::ok(to_json(&ConnsView {
                    total,
                    conns: Vec::new(),
                }));
                l.more = Some(false);
                l
            }
            Err(e) => Response::err(e),
        };
        proto::write_line(w, &last)
    }

    /// `capture`: checks the port and the filter, starts the capture (one at a time) and streams
    /// it (`capture::stream`). A refusal is one error line and changes nothing. An error is
    /// returned only when the client cannot be written to.
    fn capture(&self, op: Op, w: &mut UnixStream) -> std::io::Result<()> {
        let Op::Capture {
            port,
            filter,
            count,
            snaplen,
            duration_s,
        } = op
        else {
            return Ok(());
        };
        let started = (|| {
            let names: Vec<String> = self
                .current()?
                .topo
                .ports
                .iter()
                .map(|p| p.name.clone())
                .collect();
            let index = names
                .iter()
                .position(|n| *n == port)
                .ok_or_else(|| format!("unknown port {port:?} (ports: {})", names.join(", ")))?;
            let snaplen = snaplen.unwrap_or(crate::capture::DEFAULT_SNAPLEN);
            if snaplen == 0 {
                return Err("snaplen must be at least 1".to_string());
            }
            let filter = match filter.as_deref().map(str::trim) {
                Some(f) if !f.is_empty() => Some(crate::dpdk::bpf::Filter::compile(f, snaplen)?),
                _ => None,
            };
            self.ctx.capture.start(index as u16, &port, filter, snaplen)
        })();
        let running = match started {
            Ok(r) => r,
            Err(e) => return proto::write_line(w, &Response::err(e)),
        };
        tracing::info!(
            "capture on port {port} started ({})",
            running.session.filter_expr().unwrap_or("no filter")
        );
        // The client sends nothing once it has asked: the socket turning readable means it
        // spoke or closed its side (Ctrl-C), and either ends the capture.
        use std::os::fd::AsRawFd;
        let fd = w.as_raw_fd();
        let mut client = mio::Poll::new().and_then(|p| {
            p.registry().register(
                &mut mio::unix::SourceFd(&fd),
                mio::Token(0),
                mio::Interest::READABLE,
            )?;
            Ok((p, mio::Events::with_capacity(2)))
        })?;
        let mut left = false;
        let r = crate::capture::stream::serve(
            running,
            count.unwrap_or(crate::capture::DEFAULT_COUNT),
            duration_s.map(|s| Duration::from_secs(s.into())),
            || {
                if !left {
                    let (poll, events) = &mut client;
                    left = poll.poll(events, Some(Duration::ZERO)).is_err() || !events.is_empty();
                }
                left || self.stop.load(Ordering::Relaxed)
            },
            |line| proto::write_line(w, line),
        );
        tracing::info!("capture on port {port} ended");
        r
    }

    fn sample(&self) {
        let (_, total) = self.worker_views();
        let traffic = self.traffic_totals();
        if let Ok(mut c) = self.counts.lock() {
            c.prev = c.cur.take();
            c.cur = Some((Instant::now(), total));
            c.traffic_prev = c.traffic_cur.take();
            c.traffic_cur = Some((Instant::now(), traffic));
        }
    }

    /// Traffic per (service, real server), summed over the workers.
    fn traffic_totals(&self) -> TrafficMap {
        let mut m = TrafficMap::new();
        for p in self.ctx.published {
            if let Ok(s) = p.lock() {
                for (k, t) in &s.traffic {
                    m.entry(*k).or_default().add(t);
                }
            }
        }
        m
    }

    /// Each service's counters (since the last `-Z` if `since_zero`), by (protocol, VIP, port):
    /// every key of the service the workers publish, its present real servers', the removed
    /// ones' (`TrafficKey::retired`, which IPVS keeps in the service's counters) and those of a
    /// server just removed that a worker still holds under its own key, so that the sum never
    /// falls. One pass over the totals and the base for all services.
    fn services_traffic(
        &self,
        totals: &TrafficMap,
        since_zero: bool,
    ) -> std::collections::HashMap<(u8, std::net::IpAddr, u16), Counters> {
        let mut by_service = std::collections::HashMap::new();
        for (k, t) in totals {
            let c: &mut Counters = by_service.entry((k.proto, k.vip, k.vport)).or_default();
            add_counters(c, &counters_of(t));
        }
        if let (true, Ok(c)) = (since_zero, self.counts.lock()) {
            for (k, t) in &c.traffic_base {
                if let Some(s) = by_service.get_mut(&(k.proto, k.vip, k.vport)) {
                    *s = sub_counters(s, &counters_of(t));
                }
            }
        }
        by_service
    }

    /// Counters since the last `-Z` and the current per-second rates of one (service, real server).
    fn traffic_of(
        &self,
        totals: &TrafficMap,
        key: &crate::forward::TrafficKey,
        since_zero: bool,
    ) -> (Counters, Rates) {
        let now = totals.get(key).map(counters_of).unwrap_or_default();
        let Ok(c) = self.counts.lock() else {
            return (now, Rates::default());
        };
        let base = match since_zero {
            true => c.traffic_base.get(key).map(counters_of).unwrap_or_default(),
            false => Counters::default(),
        };
        let rate = match (&c.traffic_prev, &c.traffic_cur) {
            (Some((t0, a)), Some((t1, b))) => {
                let dt = t1.duration_since(*t0).as_secs_f64().max(0.001);
                let a = a.get(key).map(counters_of).unwrap_or_default();
                let b = b.get(key).map(counters_of).unwrap_or_default();
                let d = sub_counters(&b, &a);
                let r = |x: u64| (x as f64 / dt).round() as u64;
                Rates {
                    cps: r(d.conns),
                    inpps: r(d.inpkts),
                    outpps: r(d.outpkts),
                    inbps: r(d.inbytes),
                    outbps: r(d.outbytes),
                }
            }
            _ => Rates::default(),
        };
        (sub_counters(&now, &base), rate)
    }

    /// Per-worker views and their total, straight from the published counters.
    fn worker_views(&self) -> (Vec<WorkerView>, WorkerView) {
        let mut total = WorkerStats::default();
        let per: Vec<WorkerView> = self
            .ctx
            .published
            .iter()
            .map(|p| {
                let s = p.lock().map(|s| s.clone()).unwrap_or_default();
                total.add(&s);
                worker_view(&s)
            })
            .collect();
        (per, worker_view(&total))
    }

    fn rate(&self) -> Rates {
        let Ok(c) = self.counts.lock() else {
            return Rates::default();
        };
        let (Some((t0, a)), Some((t1, b))) = (&c.prev, &c.cur) else {
            return Rates::default();
        };
        let dt = t1.duration_since(*t0).as_secs_f64().max(0.001);
        let d = |k: &str| {
            let x = b
                .counters
                .get(k)
                .copied()
                .unwrap_or(0)
                .saturating_sub(a.counters.get(k).copied().unwrap_or(0));
            (x as f64 / dt).round() as u64
        };
        Rates {
            cps: d("conns_created"),
            inpps: d("rx_packets"),
            outpps: d("tx_packets"),
            inbps: d("rx_bytes"),
            outbps: d("tx_bytes"),
        }
    }

    fn stats(&self) -> Result<serde_json::Value, String> {
        let (mut per, mut total) = self.worker_views();
        if let Ok(c) = self.counts.lock() {
            for (i, w) in per.iter_mut().enumerate() {
                if let Some(b) = c.base.get(i) {
                    subtract(w, b);
                }
            }
            if !c.base.is_empty() {
                let mut bt = WorkerView::default();
                for b in &c.base {
                    for (k, v) in &b.counters {
                        *bt.counters.entry(k.clone()).or_default() += v;
                    }
                    for (k, v) in &b.drops {
                        *bt.drops.entry(k.clone()).or_default() += v;
                    }
                }
                subtract(&mut total, &bt);
            }
        }
        let report = self
            .ctx
            .report
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        let ports = report
            .lines()
            .filter(|l| l.starts_with("port "))
            .map(String::from)
            .collect();
        Ok(to_json(&StatsView {
            workers: per,
            total,
            ports,
            rate: self.rate(),
        }))
    }

    /// Each worker's stage figures since the last clear; `clear` makes now the base.
    fn runtime(&self, clear: bool) -> RuntimeView {
        let tsc_hz = self.control().map(|c| c.tsc_hz()).unwrap_or(0);
        let now: Vec<WorkerRuntime> = self
            .ctx
            .published
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let s = p.lock().map(|s| s.clone()).unwrap_or_default();
                runtime_of(i as u16, &s)
            })
            .collect();
        let Ok(mut c) = self.counts.lock() else {
            return RuntimeView::default();
        };
        let workers = if clear {
            c.runtime_base = now;
            c.runtime_base.iter().map(|w| since(w, w)).collect()
        } else {
            now.iter()
                .map(|w| match c.runtime_base.get(w.worker as usize) {
                    Some(b) => since(w, b),
                    None => w.clone(),
                })
                .collect()
        };
        RuntimeView { tsc_hz, workers }
    }

    fn zero(&self) -> Result<serde_json::Value, String> {
        let (per, _) = self.worker_views();
        let traffic = self.traffic_totals();
        let mut c = self.counts.lock().map_err(|_| "counters poisoned")?;
        c.base = per;
        c.traffic_base = traffic;
        drop(c);
        Ok(serde_json::json!({}))
    }

    fn set_timeouts(&self, tcp: u32, tcpfin: u32, udp: u32) -> Result<serde_json::Value, String> {
        // IPVS refuses timeouts it cannot hold in jiffies (`ip_vs_set_timeout`: INT_MAX / HZ with
        // HZ = 1000).
        const MAX_TIMEOUT_S: u32 = i32::MAX as u32 / 1000;
        if let Some(v) = [tcp, tcpfin, udp].into_iter().find(|&v| v > MAX_TIMEOUT_S) {
            return Err(format!(
                "timeout {v} s is over the limit of {MAX_TIMEOUT_S} s; nothing changed"
            ));
        }
        let mut ctl = self.control()?;
        let mut t = ctl.current().timeouts;
        for (v, field) in [
            (tcp, &mut t.established),
            (tcpfin, &mut t.fin_wait),
            (udp, &mut t.udp),
        ] {
            if v > 0 {
                *field = v;
            }
        }
        let generation = ctl.apply_timeouts(t)?;
        let m = format!(
            "timeouts tcp {} s, tcpfin {} s, udp {} s: generation {generation} running on every worker",
            t.established, t.fin_wait, t.udp
        );
        ctl.events.record(Kind::Config, m);
        Ok(serde_json::json!({ "generation": generation }))
    }

    /// The settings `Op::Sysctl` reads and writes, by IPVS's sysctl name.
    fn sysctl(&self, name: Option<&str>, value: Option<u32>) -> Result<serde_json::Value, String> {
        const NAMES: [&str; 1] = ["conn_reuse_mode"];
        let mode = self
            .current()
            .map(|g| g.conn_reuse_mode)
            .unwrap_or(self.ctx.cfg.conn.conn_reuse_mode);
        match (name, value) {
            (None, _) => Ok(serde_json::json!({ "conn_reuse_mode": mode })),
            (Some(n), _) if !NAMES.contains(&n) => Err(format!(
                "unknown setting {n:?} (known: {})",
                NAMES.join(", ")
            )),
            (Some(_), None) => Ok(serde_json::json!({ "conn_reuse_mode": mode })),
            (Some(_), Some(v)) => {
                let v = u8::try_from(v)
                    .ok()
                    .filter(|v| *v <= 3)
                    .ok_or_else(|| format!("conn_reuse_mode {v} is not 0..=3"))?;
                let mut ctl = self.control()?;
                let generation = ctl.apply_conn_reuse_mode(v)?;
                let m =
                    format!("conn_reuse_mode {v}: generation {generation} running on every worker");
                ctl.events.record(Kind::Config, m);
                Ok(serde_json::json!({ "generation": generation, "conn_reuse_mode": v }))
            }
        }
    }

    fn timeouts(&self) -> TimeoutsView {
        let current = self
            .current()
            .map(|g| g.timeouts)
            .unwrap_or(self.ctx.cfg.conn.timeouts);
        let t = &current;
        let all = serde_json::to_value(t)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        TimeoutsView {
            tcp: t.established,
            tcpfin: t.fin_wait,
            udp: t.udp,
            all,
        }
    }

    /// The configuration file the daemon started from, with its services replaced by the running ones.
    fn save(&self) -> Result<serde_json::Value, String> {
        // The configured services: their owners, checks and configured weights.
        let model = self.control()?.configured().clone();
        let path = self
            .ctx
            .config_path
            .ok_or("the daemon was started without a configuration file")?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let toml = super::save::config_with_services(&text, &model.services)?;
        Ok(serde_json::json!({ "toml": toml }))
    }

    fn net(&self) -> Result<serde_json::Value, String> {
        let (g, prov, twins) = {
            let c = self.control()?;
            (c.current().clone(), c.provenance().clone(), c.twins.clone())
        };
        let topo = &g.topo;
        let origin_of_addr = |port: usize, a: &crate::net::Ipv4Cidr| {
            prov.addrs
                .iter()
                .find(|x| x.0 as usize == port && x.1 == *a)
                .map_or(Origin::Config, |x| x.2)
        };
        let ports = topo
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| PortView {
                name: p.name.clone(),
                mac: p.mac.to_string(),
                addrs: p
                    .addrs
                    .iter()
                    .map(|a| a.to_string())
                    .chain(p.addrs6.iter().map(|a| a.to_string()))
                    .collect(),
                // IPv6 addresses are the config's (not mirrored).
                origins: p
                    .addrs
                    .iter()
                    .map(|a| origin_of_addr(i, a))
                    .chain(p.addrs6.iter().map(|_| Origin::Config))
                    .collect(),
                twin: twins.iter().find(|t| t.0 as usize == i).map(|t| TwinView {
                    name: t.1.clone(),
                    driver: t.2.to_string(),
                    ifindex: t.3,
                }),
            })
            .collect();
        let port_name = |i: u16| {
            topo.ports
                .get(i as usize)
                .map_or_else(|| i.to_string(), |p| p.name.clone())
        };
        let mut routes: Vec<RouteView> = topo
            .routes
            .iter()
            .map(|(c, hop)| RouteView {
                prefix: c.to_string(),
                via: hop.via.map(Into::into),
                port: port_name(hop.port),
                origin: prov.routes.iter().find(|r| r.0 == c).map(|r| r.1),
            })
            .collect();
        // IPv6: connected prefixes of the ports' addresses, and the config's routes.
        routes.extend(topo.routes6.iter().map(|r| {
            let connected = r.via.is_none()
                && topo.ports.iter().any(|p| {
                    p.addrs6
                        .iter()
                        .any(|a| a.network() == r.prefix.addr && a.len == r.prefix.len)
                });
            RouteView {
                prefix: r.prefix.to_string(),
                via: r.via.map(Into::into),
                port: port_name(r.port),
                origin: (!connected).then_some(Origin::Config),
            }
        }));
        routes.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        let mut neigh: Vec<NeighInfo> = self
            .dump(&ConnFilter::default(), 0)?
            .into_iter()
            .flat_map(|d| d.neigh)
            .collect();
        neigh.sort_by_key(|n| (n.ip, n.worker));
        let mut service_addrs: Vec<std::net::IpAddr> = g
            .services
            .addresses()
            .map(Into::into)
            .chain(g.services.addresses6().map(Into::into))
            .collect();
        service_addrs.sort();
        let mut total = crate::datapath::punt::PuntCounters::default();
        for p in self.ctx.published.iter() {
            if let Ok(s) = p.lock() {
                total.add(&s.punt);
            }
        }
        Ok(to_json(&NetView {
            ports,
            routes,
            neigh,
            service_addrs,
            kernel_owned: prov.kernel_owned.clone(),
            punt: total
                .named()
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        }))
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

fn subtract(w: &mut WorkerView, base: &WorkerView) {
    for (k, v) in w.counters.iter_mut() {
        *v = v.saturating_sub(base.counters.get(k).copied().unwrap_or(0));
    }
    for (k, v) in w.drops.iter_mut() {
        *v = v.saturating_sub(base.drops.get(k).copied().unwrap_or(0));
    }
    w.drops.retain(|_, v| *v > 0);
}

/// A service's access list with the connections each rule decided (`hits`: summed over the
/// workers, by service), then the default.
fn acl_view(
    vs: &crate::forward::VirtualService,
    hits: &crate::stats::SvcCounts,
) -> Vec<AclRuleView> {
    if vs.acl.is_empty() {
        return Vec::new();
    }
    let h = svc_counts(vs, hits);
    let n = |i: usize| h.and_then(|h| h.get(i)).copied().unwrap_or(0);
    let otherwise = match vs.acl.iter().any(|r| r.allow) {
        true => "otherwise deny",
        false => "otherwise allow",
    };
    vs.acl
        .iter()
        .map(|r| r.to_string())
        .chain(std::iter::once(otherwise.to_string()))
        .enumerate()
        .map(|(i, rule)| AclRuleView { rule, hits: n(i) })
        .collect()
}

/// Service `vs`'s counts in `counts` (summed over the workers), if any.
fn svc_counts<'a>(
    vs: &crate::forward::VirtualService,
    counts: &'a crate::stats::SvcCounts,
) -> Option<&'a [u64]> {
    let c = vs.svc.config();
    let key = (c.proto.number(), c.vip, c.vport);
    let i = counts.binary_search_by(|(k, _)| k.cmp(&key)).ok()?;
    Some(&counts[i].1)
}

/// A worker's stage figures.
fn runtime_of(worker: u16, s: &WorkerStats) -> WorkerRuntime {
    WorkerRuntime {
        worker,
        busy_cycles: s.busy_cycles,
        busy_packets: s.busy_packets,
        stages: crate::stats::Stage::ALL
            .iter()
            .zip(&s.runtime)
            .map(|(st, c)| StageRow {
                stage: st.name().to_string(),
                calls: c.calls,
                packets: c.packets,
                cycles: c.cycles,
            })
            .collect(),
    }
}

/// `now` less `base`.
fn since(now: &WorkerRuntime, base: &WorkerRuntime) -> WorkerRuntime {
    WorkerRuntime {
        worker: now.worker,
        busy_cycles: now.busy_cycles.saturating_sub(base.busy_cycles),
        busy_packets: now.busy_packets.saturating_sub(base.busy_packets),
        stages: now
            .stages
            .iter()
            .zip(&base.stages)
            .map(|(a, b)| StageRow {
                stage: a.stage.clone(),
                calls: a.calls.saturating_sub(b.calls),
                packets: a.packets.saturating_sub(b.packets),
                cycles: a.cycles.saturating_sub(b.cycles),
            })
            .collect(),
    }
}

/// A worker's counters by name.
pub fn worker_view(s: &WorkerStats) -> WorkerView {
    let f = &s.fwd;
    let counters = [
        ("rx_packets", s.rx_packets),
        ("rx_bytes", s.rx_bytes),
        ("tx_packets", s.tx_packets),
        ("tx_bytes", s.tx_bytes),
        ("arp_replies", s.arp_replies),
        ("arp_requests", s.arp_requests),
        ("icmp_echo_replies", s.icmp_echo_replies),
        ("handoff_out", s.handoff_out),
        ("handoff_in", s.handoff_in),
        ("steer_hits", s.steer_hits),
        ("fast_path", s.fast_path),
        ("generated", s.generated),
        ("drops", s.total_drops()),
        ("conns", f.conns),
        ("conns_created", f.created),
        ("conns_expired", f.expired),
        ("conn_table_full", f.table_full),
        ("ports_exhausted", f.ports_exhausted),
        ("toa_added", f.toa_added),
        ("toa_skipped", f.toa_skipped),
        ("icmp_translated", f.icmp_translated),
        ("rst_sent", f.rst_sent),
        ("rst_unsent", f.rst_unsent),
        ("handoff_client", f.handoff_client),
        ("handoff_reply", f.handoff_reply),
        ("resched_closed", f.resched_closed),
        ("resched_fin_wait", f.resched_fin_wait),
        ("resched_quiesced", f.resched_quiesced),
        ("resched_removed", f.resched_removed),
        ("resched_new_isn", f.resched_new_isn),
        ("resched_udp_removed", f.resched_udp_removed),
        ("server_time_wait", f.server_time_wait),
        ("syn_retried", f.syn_retried),
        ("syn_retry_no_other", f.syn_retry_no_other),
        ("sloppy_created", f.sloppy_created),
        ("half_open", f.half_open),
        ("evicted_embryonic", f.evicted_embryonic),
        ("evicted_time_wait", f.evicted_time_wait),
        ("evicted_udp", f.evicted_udp),
        ("limit_untracked", f.limit_untracked),
    ];
    WorkerView {
        counters: counters
            .iter()
            .chain(s.neigh.named().iter())
            .chain(s.punt.named().iter())
            .chain(s.frag.named().iter())
            .chain(s.inet6.named().iter())
            .chain(s.synproxy.named().iter())
            .chain(s.sync.named().iter())
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        drops: s
            .drop_list()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::dump::conn_matches;
    use std::net::Ipv4Addr;

    #[test]
    fn filters_select_connections() {
        let c = ConnInfo {
            worker: 1,
            proto: "TCP".into(),
            client: (Ipv4Addr::new(10, 10, 0, 2).into(), 40000),
            vip: (Ipv4Addr::new(10, 10, 0, 100).into(), 80),
            local: Some((Ipv4Addr::new(10, 20, 0, 200).into(), 5000)),
            dest: Some((Ipv4Addr::new(10, 20, 0, 11).into(), 80)),
            state: "ESTABLISHED".into(),
            expire_ms: 1000,
        };
        assert!(conn_matches(&c, &ConnFilter::default()));
        let f = ConnFilter {
            proto: Some("tcp".into()),
            state: Some("established".into()),
            rs: Some(Ipv4Addr::new(10, 20, 0, 11).into()),
            ..Default::default()
        };
        assert!(conn_matches(&c, &f));
        assert!(!conn_matches(
            &c,
            &ConnFilter {
                rs: Some(Ipv4Addr::new(10, 20, 0, 12).into()),
                ..Default::default()
            }
        ));
        assert!(!conn_matches(
            &c,
            &ConnFilter {
                worker: Some(0),
                ..Default::default()
            }
        ));
        assert!(!conn_matches(
            &c,
            &ConnFilter {
                client_port: Some(1),
                ..Default::default()
            }
        ));
    }

    #[test]
    fn socket_is_private_and_stale_sockets_are_replaced() {
        let dir = std::env::temp_dir().join(format!("gwctl-test-{}", std::process::id()));
        let path = dir.join("t.sock");
        let l = bind(&path, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Live: refused.
        assert_eq!(
            bind(&path, None).unwrap_err().kind(),
            std::io::ErrorKind::AddrInUse
        );
        drop(l);
        // Stale (nobody listens): replaced, with a group.
        let _l = bind(&path, Some("0")).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        assert!(gid_of("no-such-group-here").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! Bringing the gateway up and down: EAL, pools, ports, rings, workers, and the main lcore's control
//! loop (signals, counters). Everything here runs on the main lcore; the workers run `worker::Worker`.

use crate::config::Config;
use crate::control::topology::{self, Provenance, TopoInputs};
use crate::datapath::{Datapath, PortCtx, Topology};
use crate::dpdk::{self, Eal, MbufRing, Mempool, Port, PortConfig};
use crate::events::Kind;
use crate::forward::{Forwarder, FwdConfig, ServiceTable};
use crate::kernel::{KernelView, TwinKind};
use crate::laddr::{PortLayout, QueueMap, Reta, RssConfig, Steering};
use crate::net::neigh::NeighConfig;
use crate::stats::WorkerStats;
use crate::worker::{Ack, Generation, Msg, Phase, Worker};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Slots per worker-to-worker ring.
const RING_SIZE: u32 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("config: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("dpdk: {0}")]
    Dpdk(#[from] dpdk::Error),
    #[error("{0}")]
    Other(String),
}

/// A running gateway: what the main lcore holds while workers run.
/// The control plane's handle on the workers: sends a new generation to each and waits until every
/// one runs it (DESIGN.md decision 8: nothing is fire-and-forget).
pub struct Control {
    workers: Vec<crossbeam_channel::Sender<Msg>>,
    acks: crossbeam_channel::Receiver<Ack>,
    current: Arc<Generation>,
    /// What each generation's topology is built from (`control::topology`): the config's ports,
    /// addresses and routes, and the kernel's view of the twins once the mirror has spoken.
    inputs: TopoInputs,
    kernel: Option<Arc<KernelView>>,
    /// Where the current topology's addresses and routes come from.
    provenance: Provenance,
    /// The twins: (port index, interface name, driver, ifindex).
    pub twins: Vec<(u16, String, &'static str, u32)>,
    /// The services as configured (config file, then admin changes): owners, checks and the
    /// weights operators gave. Admin changes and `gwctl save` start from these, never from the
    /// running table, whose weights the health checks overlay.
    configured: crate::control::model::Model,
    configured_services: Vec<crate::forward::ServiceSpec>,
    /// Real servers the health checks hold down: at weight 0 (`false`) or removed (`true`).
    health_down: hashbrown::HashMap<crate::health::runner::TargetKey, bool>,
    /// The check of every checked server, as last sent to the checker.
    health_checks:
        hashbrown::HashMap<crate::health::runner::TargetKey, crate::health::check::Check>,
    /// What the checker publishes, for `gwctl health`.
    pub health_status: Arc<Mutex<Vec<crate::health::runner::Status>>>,
    /// Where the checker takes its targets.
    health_targets: Option<crossbeam_channel::Sender<Vec<crate::health::runner::Target>>>,
    /// The workers' clock: TSC at start and TSC ticks per millisecond.
    epoch_tsc: u64,
    tsc_per_ms: u64,
    /// The announce table (`[announce]`; none: nothing is announced), its config, and the drains.
    announcer: Option<crate::kernel::announce::Announcer>,
    announce_cfg: Option<crate::config::AnnounceConfig>,
    drains: crate::kernel::announce::Drains,
    /// What changed and why (`gwctl events`).
    pub events: Arc<crate::events::EventLog>,
    /// The connection-sync thread (`[sync]`; none without).
    pub sync: Option<crate::sync::Handle>,
}

/// How long a worker may take to acknowledge a new generation (it checks its inbox every few ms).
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

impl Control {
    pub fn current(&self) -> &Arc<Generation> {
        &self.current
    }

    /// Milliseconds on the workers' clock (`l3.now_ms`), for state they share with the control
    /// plane such as persistence templates.
    pub fn now_ms(&self) -> u64 {
        dpdk::tsc().saturating_sub(self.epoch_tsc) / self.tsc_per_ms
    }

    /// TSC ticks per second (to the millisecond).
    pub fn tsc_hz(&self) -> u64 {
        self.tsc_per_ms * 1000
    }

    /// Where the running topology's addresses and routes come from.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// The mirror saw the kernel's addresses or routes change: a new generation with the
    /// topology they make, unless it is the one running.
    pub fn apply_kernel(&mut self, view: Arc<KernelView>) -> Result<Option<u64>, String> {
        let (topo, prov) = topology::build(&self.inputs, Some(&view), &self.current.services);
        self.kernel = Some(view);
        if same_l3(&topo, &self.current.topo) {
            self.provenance = prov;
            self.sync_follow_vips();
            return Ok(None);
        }
        let g = &self.current;
        let next = Generation {
            id: g.id + 1,
            topo: Arc::new(topo),
            services: g.services.clone(),
            timeouts: g.timeouts,
            conn_reuse_mode: g.conn_reuse_mode,
        };
        let id = self.install(next)?;
        self.provenance = prov;
        self.sync_follow_vips();
        Ok(Some(id))
    }

    /// Tells the sync thread whether a kernel-owned VIP is on a twin (its `auto` role follows
    /// keepalived's: the box holding the VIP is the master). After the generation that serves
    /// the VIP, so the new master forwards before it syncs.
    fn sync_follow_vips(&self) {
        if let Some(s) = &self.sync {
            s.vips_held(self.provenance.kernel_owned.iter().any(|&(_, held)| held));
        }
    }

    /// A neighbour the kernel has on a twin, for every worker (`Msg::KernelNeigh`).
    pub fn seed_neighbour(&self, ip: std::net::Ipv4Addr, mac: crate::wire::MacAddr, port: u16) {
        for tx in &self.workers {
            let _ = tx.try_send(Msg::KernelNeigh { ip, mac, port });
        }
    }

    /// A reloaded config's services, with its kernel-owned addresses.
    pub fn apply_config(
        &mut self,
        v: crate::config::Validated,
        model: crate::control::model::Model,
    ) -> Result<u64, String> {
        let before = std::mem::replace(
            &mut self.inputs.kernel_owned,
            v.kernel_owned.iter().copied().collect(),
        );
        let r = self.apply_model(model, v.services);
        if r.is_err() {
            self.inputs.kernel_owned = before;
        }
        r
    }

    /// The services as configured (what admin changes edit and `gwctl save` writes).
    pub fn configured(&self) -> &crate::control::model::Model {
        &self.configured
    }

    /// Runs `configs` (validated from `model`) as the configured services: the health overlay on
    /// top, as a new generation; on success they are the configured services and the checker
    /// gets its targets.
    pub fn apply_model(
        &mut self,
        model: crate::control::model::Model,
        configs: Vec<crate::forward::ServiceSpec>,
    ) -> Result<u64, String> {
        let sorry = crate::health::sorry_servers(&model.services);
        let targets =
            crate::health::targets(&model.services).map_err(|(k, e)| format!("{k}: {e}"))?;
        let checks: hashbrown::HashMap<_, _> =
            targets.iter().map(|t| (t.key, t.check.clone())).collect();
        // A server whose check is gone or changed starts again as the checker's new slot does:
        // up, until its new check says otherwise.
        let mut down = self.health_down.clone();
        down.retain(|k, _| checks.get(k).is_some() && checks.get(k) == self.health_checks.get(k));
        let id = self.apply_services(self.effective(&configs, &down, &sorry))?;
        self.health_down = down;
        self.health_checks = checks;
        self.configured = model;
        self.configured_services = configs;
        if let Some(tx) = &self.health_targets {
            let _ = tx.send(targets);
        }
        Ok(id)
    }

    /// A real server's health changed: a new generation with its effective weight (or without
    /// it, `remove`), unless it makes no difference.
    pub fn set_health(&mut self, e: &crate::health::runner::Event) -> Result<Option<u64>, String> {
        let (key, up, remove) = (e.key, e.up, e.remove);
        if self.health_checks.get(&key) != Some(&e.check) {
            // From a check since replaced or removed: its new slot starts up.
            return Ok(None);
        }
        let changed = if up {
            self.health_down.remove(&key).is_some()
        } else {
            self.health_down.insert(key, remove) != Some(remove)
        };
        if !changed {
            return Ok(None);
        }
        self.apply_services(self.effective_now()).map(Some)
    }

    /// The services to run: the configured ones with the health checks' overlay (`down`, sorry
    /// servers), and every real server at weight 0 on VIPs whose drain is done.
    fn effective(
        &self,
        configs: &[crate::forward::ServiceSpec],
        down: &hashbrown::HashMap<crate::health::runner::TargetKey, bool>,
        sorry: &hashbrown::HashMap<(u8, std::net::IpAddr, u16), std::net::SocketAddr>,
    ) -> Vec<crate::forward::ServiceSpec> {
        let mut e = crate::health::effective(configs, down, sorry);
        for (cfg, _, _) in &mut e {
            // Drains, like BGP announcements, are of IPv4 VIPs (`kernel::announce`).
            if matches!(cfg.vip, std::net::IpAddr::V4(v) if self.drains.done(v)) {
                for r in &mut cfg.reals {
                    r.weight = 0;
                }
            }
        }
        e
    }

    fn effective_now(&self) -> Vec<crate::forward::ServiceSpec> {
        let sorry = crate::health::sorry_servers(&self.configured.services);
        self.effective(&self.configured_services, &self.health_down, &sorry)
    }

    /// Per configured service: its VIP, and whether it has a real server with a weight above 0
    /// that the health checks do not hold down (`kernel::announce`).
    /// IPv4 VIPs only: the announcements are IPv4 routes.
    fn vips_up(&self) -> Vec<(std::net::Ipv4Addr, bool)> {
        self.configured_services
            .iter()
            .filter_map(|(cfg, _, _)| {
                let std::net::IpAddr::V4(vip) = cfg.vip else {
                    return None;
                };
                let up = cfg.reals.iter().any(|r| {
                    r.weight > 0
                        && !self
                            .health_down
                            .contains_key(&crate::health::runner::TargetKey {
                                proto: cfg.proto.number(),
                                vip: cfg.vip,
                                vport: cfg.vport,
                                rs: r.addr,
                                rs_port: r.port,
                            })
                });
                Some((vip, up))
            })
            .collect()
    }

    /// The IPv4 VIPs of the running services, each once.
    fn service_vips(&self) -> Vec<std::net::Ipv4Addr> {
        let set: std::collections::BTreeSet<_> = self
            .current
            .services
            .services
            .iter()
            .filter_map(|vs| match vs.svc.config().vip {
                std::net::IpAddr::V4(v) => Some(v),
                std::net::IpAddr::V6(_) => None,
            })
            .collect();
        set.into_iter().collect()
    }

    /// Established connections on `vip`'s services (every worker): what a drain waits for.
    /// Inactive ones (SYN_RECV, FIN_WAIT, TIME_WAIT) carry no request worth waiting for.
    /// One pass over the services, whatever their number (a drain of the box counts every VIP).
    fn conns_by_vip(&self) -> std::collections::BTreeMap<std::net::Ipv4Addr, u64> {
        let mut m = std::collections::BTreeMap::new();
        for vs in &self.current.services.services {
            let std::net::IpAddr::V4(vip) = vs.svc.config().vip else {
                continue;
            };
            let n: u64 = (0..vs.svc.reals().len())
                .filter_map(|i| vs.svc.stats(i))
                .map(|s| u64::from(s.active()))
                .sum();
            *m.entry(vip).or_default() += n;
        }
        m
    }

    /// Puts the routes of the VIPs to announce now into the announce table.
    fn reannounce(&mut self) {
        if self.announcer.is_none() {
            return;
        }
        let (want, _) = crate::kernel::announce::announced(
            self.vips_up(),
            &self.current.topo.local,
            &self.drains,
        );
        if let Some(a) = self.announcer.as_mut() {
            let before = a.current().clone();
            a.set(&want);
            let now = a.current();
            let added: Vec<String> = now.difference(&before).map(|v| v.to_string()).collect();
            let gone: Vec<String> = before.difference(now).map(|v| v.to_string()).collect();
            if !added.is_empty() {
                let m = format!("announced {}", added.join(" "));
                self.events.record(crate::events::Kind::Announce, m);
            }
            if !gone.is_empty() {
                let m = format!("withdrawn {}", gone.join(" "));
                self.events.record(crate::events::Kind::Announce, m);
            }
        }
    }

    /// After a drain started, ended or was done: a new generation if which VIPs take new
    /// connections changed, and the announcements.
    fn drains_changed(&mut self, done_before: Vec<bool>) -> Result<(), String> {
        if self.done_vips() != done_before {
            let g = self.apply_services(self.effective_now())?;
            self.events.record(
                crate::events::Kind::Config,
                format!("generation {g} running on every worker (drain)"),
            );
        }
        self.reannounce();
        Ok(())
    }

    fn done_vips(&self) -> Vec<bool> {
        self.service_vips()
            .iter()
            .map(|v| self.drains.done(*v))
            .collect()
    }

    /// `gwctl drain [VIP] [TIMEOUT]`: withdraws the VIP (every VIP when None) and serves it until
    /// its connections end or `timeout_s` (default `[announce] drain_timeout_s`) passes.
    pub fn drain(
        &mut self,
        vip: Option<std::net::Ipv4Addr>,
        timeout_s: Option<u32>,
    ) -> Result<crate::kernel::announce::AnnounceView, String> {
        if let Some(v) = vip {
            if !self.configured_services.iter().any(|(c, _, _)| c.vip == v) {
                return Err(format!("{v} is the VIP of no service"));
            }
        }
        let t = timeout_s
            .or(self.announce_cfg.as_ref().map(|a| a.drain_timeout_s))
            .unwrap_or(30);
        if !(1..=86_400).contains(&t) {
            return Err(format!("drain timeout {t} s is not 1..=86400"));
        }
        let before = self.done_vips();
        self.drains
            .start(vip, Duration::from_secs(u64::from(t)), Instant::now());
        let what = vip.map_or("every VIP".into(), |v| v.to_string());
        self.events.record(
            crate::events::Kind::Announce,
            format!("drain: {what} draining for at most {t} s"),
        );
        self.drains_changed(before)?;
        Ok(self.announce_view())
    }

    /// `gwctl undrain [VIP]`: ends the VIP's drain (every drain when None).
    pub fn undrain(
        &mut self,
        vip: Option<std::net::Ipv4Addr>,
    ) -> Result<crate::kernel::announce::AnnounceView, String> {
        let before = self.done_vips();
        if !self.drains.stop(vip) {
            return Err(match vip {
                Some(v) => format!("{v} is not draining (by itself)"),
                None => "nothing is draining".into(),
            });
        }
        self.events.record(
            crate::events::Kind::Announce,
            format!(
                "drain: {} undrained",
                vip.map_or("every VIP".into(), |v| v.to_string())
            ),
        );
        self.drains_changed(before)?;
        Ok(self.announce_view())
    }

    /// Marks drains done whose connections ended or whose deadline passed, and puts the routes
    /// the kernel refused before in again. Called by the control loop a few times a second.
    pub fn tick_announce(&mut self) {
        if !self.drains.pending() {
            self.reannounce();
            return;
        }
        let before = self.done_vips();
        let conns = self.conns_by_vip();
        let vips: Vec<_> = conns.keys().copied().collect();
        if self.drains.tick(Instant::now(), &vips, |v| {
            conns.get(&v).copied().unwrap_or(0)
        }) {
            if let Err(e) = self.drains_changed(before) {
                tracing::error!("drain: {e}");
            }
        } else {
            self.reannounce();
        }
    }

    /// What `gwctl announce` shows.
    pub fn announce_view(&self) -> crate::kernel::announce::AnnounceView {
        let (_, withheld) = crate::kernel::announce::announced(
            self.vips_up(),
            &self.current.topo.local,
            &self.drains,
        );
        let conns = self.conns_by_vip();
        let vips: Vec<_> = conns.keys().copied().collect();
        crate::kernel::announce::AnnounceView {
            table: self.announcer.as_ref().map(|a| a.table()),
            announced: self
                .announcer
                .as_ref()
                .map(|a| a.current().iter().copied().collect())
                .unwrap_or_default(),
            withheld: withheld
                .into_iter()
                .map(|(v, why)| (v, why.to_string()))
                .collect(),
            drains: self.drains.view(Instant::now(), &vips, |v| {
                conns.get(&v).copied().unwrap_or(0)
            }),
            errors: self.announcer.as_ref().map_or(0, |a| a.errors),
        }
    }

    /// At shutdown: removes every announced route (and announces nothing after); how long to
    /// keep forwarding while the router moves the flows away, if anything was announced.
    pub fn withdraw_all(&mut self) -> Option<Duration> {
        let mut a = self.announcer.take()?;
        if a.current().is_empty() {
            return None;
        }
        a.set(&Default::default());
        self.announce_cfg
            .as_ref()
            .map(|c| Duration::from_millis(u64::from(c.withdraw_wait_ms)))
    }

    fn send_health_targets(&mut self) {
        if let Some(tx) = &self.health_targets {
            match crate::health::targets(&self.configured.services) {
                Ok(t) => {
                    self.health_checks = t.iter().map(|t| (t.key, t.check.clone())).collect();
                    let _ = tx.send(t);
                }
                Err((k, e)) => tracing::error!("health checks: {k}: {e}"),
            }
        }
    }

    /// Each worker's inbox (the admin socket sends dump requests there).
    pub fn worker_inboxes(&self) -> &[crossbeam_channel::Sender<Msg>] {
        &self.workers
    }

    /// Builds the next generation from service configs (carrying shared scheduler state over from the
    /// current one), sends it to every worker and returns once all of them run it. On a validation
    /// error nothing is sent; on a worker's refusal or a timeout the error says which worker.
    fn apply_services(&mut self, configs: Vec<crate::forward::ServiceSpec>) -> Result<u64, String> {
        let id = self.current.id + 1;
        let services = Arc::new(
            ServiceTable::new(id, configs, Some(&self.current.services))
                .map_err(|e| e.to_string())?,
        );
        let (topo, prov) = topology::build(&self.inputs, self.kernel.as_deref(), &services);
        let id = self.install(Generation {
            id,
            topo: Arc::new(topo),
            services,
            timeouts: self.current.timeouts,
            conn_reuse_mode: self.current.conn_reuse_mode,
        })?;
        self.provenance = prov;
        // A service change can make a VIP kernel-owned that a twin already holds.
        self.sync_follow_vips();
        Ok(id)
    }

    /// Changes the connection timeouts (`ipvsadm --set`) as a new generation; existing connections
    /// take the new value at their next state change.
    pub fn apply_timeouts(&mut self, timeouts: crate::conn::Timeouts) -> Result<u64, String> {
        let g = &self.current;
        let next = Generation {
            id: g.id + 1,
            topo: g.topo.clone(),
            services: g.services.clone(),
            timeouts,
            conn_reuse_mode: g.conn_reuse_mode,
        };
        self.install(next)
    }

    /// Changes IPVS's `conn_reuse_mode` (0..=3) as a new generation.
    pub fn apply_conn_reuse_mode(&mut self, mode: u8) -> Result<u64, String> {
        if mode > 3 {
            return Err(format!("conn_reuse_mode {mode} is not 0..=3"));
        }
        let g = &self.current;
        let next = Generation {
            id: g.id + 1,
            topo: g.topo.clone(),
            services: g.services.clone(),
            timeouts: g.timeouts,
            conn_reuse_mode: mode,
        };
        self.install(next)
    }

    /// Installs `generation` on every worker, all or nothing (two-phase commit): every worker first
    /// prepares it (all that can fail, changing nothing); only when every one has said yes is it
    /// committed everywhere. A refusal or a timeout in the first phase aborts it on every worker:
    /// all of them keep running the current generation, and so does the control plane. Answers
    /// once every worker runs the new generation.
    fn install(&mut self, generation: Generation) -> Result<u64, String> {
        let id = generation.id;
        let generation = Arc::new(generation);
        while self.acks.try_recv().is_ok() {}
        let prepared = self
            .send_all(|| Msg::Prepare(generation.clone()), id)
            .and_then(|()| self.collect(id, Phase::Prepare));
        if let Err(e) = prepared {
            for tx in &self.workers {
                let _ = tx.send_timeout(Msg::Abort(id), ACK_TIMEOUT);
            }
            return Err(e);
        }
        self.send_all(|| Msg::Commit(id), id)?;
        self.current = generation;
        self.collect(id, Phase::Commit)?;
        self.reannounce();
        Ok(id)
    }

    fn send_all(&self, msg: impl Fn() -> Msg, id: u64) -> Result<(), String> {
        for (w, tx) in self.workers.iter().enumerate() {
            tx.send_timeout(msg(), ACK_TIMEOUT)
                .map_err(|_| format!("worker {w} did not take generation {id}"))?;
        }
        Ok(())
    }

    /// Waits for every worker's acknowledgement of `phase` of generation `id`; the first refusal
    /// named, or the workers that did not answer in time.
    fn collect(&self, id: u64, phase: Phase) -> Result<(), String> {
        let mut pending: std::collections::BTreeSet<u16> = (0..self.workers.len() as u16).collect();
        let deadline = Instant::now() + ACK_TIMEOUT;
        let mut failure = None;
        while !pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.acks.recv_timeout(left) {
                Ok(a) if a.generation == id && a.phase == phase => {
                    pending.remove(&a.worker);
                    if let Err(e) = a.result {
                        failure.get_or_insert(format!(
                            "worker {} refused generation {id}: {e}",
                            a.worker
                        ));
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    return Err(format!(
                        "workers {pending:?} did not acknowledge generation {id} in {ACK_TIMEOUT:?}"
                    ))
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

/// Whether two topologies route and answer alike (same port addresses, routes and owned
/// addresses): a kernel change that makes no difference makes no generation.
fn same_l3(a: &Topology, b: &Topology) -> bool {
    let routes = |t: &Topology| {
        let mut r: Vec<_> = t
            .routes
            .iter()
            .map(|(c, h)| (u32::from(c.addr), c.len, h.port, h.via))
            .collect();
        r.sort_unstable();
        r
    };
    let set = |s: &hashbrown::HashSet<std::net::Ipv4Addr>| {
        let mut v: Vec<_> = s.iter().copied().collect();
        v.sort_unstable();
        v
    };
    a.ports
        .iter()
        .map(|p| &p.addrs)
        .eq(b.ports.iter().map(|p| &p.addrs))
        && routes(a) == routes(b)
        && set(&a.local) == set(&b.local)
        && set(&a.iface) == set(&b.iface)
}

/// Removes the persistence templates of every service of `services` expired at `now` (the workers'
/// clock, `Control::now_ms`); the packet path never sweeps. Returns how many went.
pub fn expire_templates(services: &ServiceTable, now: u64) -> usize {
    services
        .services
        .iter()
        .filter_map(|vs| vs.svc.persist_table())
        .map(|t| t.expire(now))
        .sum()
}

pub struct Running {
    pub control: Mutex<Control>,
    // Drop order matters: workers are joined in `shutdown`, then ports stop, rings and the pool go,
    // and EAL is cleaned up last.
    ports: Vec<Port>,
    /// The ports' kernel twins, stopped with the ports (which removes them from the kernel).
    twins: Vec<crate::kernel::twin::Twin>,
    /// The kernel mirror's thread, its stop flag and what it reports (read by the control loop).
    mirror: Option<(std::thread::JoinHandle<()>, Arc<AtomicBool>)>,
    pub kernel_updates: Option<crossbeam_channel::Receiver<crate::kernel::Update>>,
    /// The health checker's thread and stop flag, and the transitions it reports.
    health: Option<(std::thread::JoinHandle<()>, Arc<AtomicBool>)>,
    pub health_events: crossbeam_channel::Receiver<crate::health::runner::Event>,
    rings: Vec<Arc<MbufRing>>,
    pool: Arc<Mempool>,
    lcores: Vec<u32>,
    stop: Arc<AtomicBool>,
    pub published: Vec<Arc<Mutex<WorkerStats>>>,
    /// The capture slot the workers' taps read (`gwctl capture`).
    pub capture: Arc<crate::capture::Capture>,
    pub port_names: Vec<String>,
    file_prefix: String,
    eal: Eal,
}

/// Starts everything the config describes.
pub fn start(cfg: &Config) -> Result<Running, StartError> {
    let v = cfg.validate()?;
    let eal = Eal::init(&cfg.eal_args())?;
    let n = cfg.workers.count as usize;
    let lcores = eal.worker_lcores();
    if lcores.len() < n {
        return Err(StartError::Other(format!(
            "EAL has {} worker lcores, workers.count is {n}",
            lcores.len()
        )));
    }
    let m = &cfg.mempool;
    let pool = Arc::new(Mempool::new("gw_pool", m.mbufs, m.cache, m.data_room, -1)?);
    let mut ports = Vec::new();
    let mut ctxs = Vec::new();
    for (i, pc) in cfg.ports.iter().enumerate() {
        let id = Port::id_by_name(pc.dev_name())?;
        let conf = PortConfig {
            rx_queues: n as u16,
            tx_queues: n as u16,
            rx_desc: pc.rx_desc,
            tx_desc: pc.tx_desc,
            rss: pc.rss,
            csum_offload: pc.csum_offload,
            promiscuous: pc.promiscuous,
            mtu: pc.mtu,
        };
        let port = Port::start(id, &pc.name, &conf, &pool)?;
        let mac = port.mac()?;
        tracing::info!(
            port = %pc.name, driver = %port.info.driver, %mac, rss = port.rss.is_some(),
            rx_csum = port.rx_csum, "port started"
        );
        let twin = TwinKind::parse(&pc.twin).flatten();
        ctxs.push(PortCtx {
            name: pc.name.clone(),
            mac,
            addrs: v.port_addrs[i].clone(),
            addrs6: v.port_addrs6[i].clone(),
            twin: twin.is_some(),
        });
        ports.push(port);
    }
    // Kernel twins (`kernel`), with the config's addresses and routes written onto them.
    let mut twins = Vec::new();
    for (i, pc) in cfg.ports.iter().enumerate() {
        let Some(kind) = TwinKind::parse(&pc.twin).flatten() else {
            continue;
        };
        if let Err(e) = ports[i].allmulticast() {
            tracing::warn!(port = %pc.name, "multicast may not reach the twin: {e}");
        }
        let t = crate::kernel::twin::create(
            i as u16,
            &pc.name,
            kind,
            ctxs[i].mac,
            pc.mtu,
            n as u16,
            &pool,
        )
        .map_err(StartError::Other)?;
        let routes: Vec<_> = v
            .routes
            .iter()
            .filter(|r| r.2 == i)
            .map(|r| (r.0, r.1))
            .collect();
        let routes6: Vec<_> = v
            .routes6
            .iter()
            .filter(|r| r.2 == i)
            .map(|r| (r.0, r.1))
            .collect();
        let addressing = crate::kernel::twin::PortAddressing {
            addrs: &v.port_addrs[i],
            routes: &routes,
            addrs6: &v.port_addrs6[i],
            routes6: &routes6,
        };
        crate::kernel::twin::reconcile(&t, &addressing).map_err(StartError::Other)?;
        tracing::info!(port = %pc.name, ifindex = t.ifindex, kind = ?kind, "kernel twin up");
        twins.push(t);
    }
    let services = Arc::new(
        ServiceTable::new(1, v.services.clone(), None)
            .map_err(|e| StartError::Other(format!("service: {e}")))?,
    );
    let inputs = TopoInputs {
        ports: ctxs,
        routes: v.routes.clone(),
        routes6: v.routes6.clone(),
        kernel_owned: v.kernel_owned.iter().copied().collect(),
    };
    // Until the mirror's first dump, the config is the topology (it is what the twins got).
    let (topo, provenance) = topology::build(&inputs, None, &services);
    let topo = Arc::new(topo);
    let layout = Arc::new(port_layout(cfg, &ports, &topo, &services, n)?);
    let owners = Arc::new(client_owners(cfg, &ports, n));
    tracing::info!(
        services = services.services.len(),
        steering = if layout.is_rss() { "rss" } else { "partition" },
        "services loaded"
    );
    let synproxy = cfg.synproxy.settings()?;
    // Before any worker's tables exist: they are faulted in on huge pages (`bigmem`).
    if cfg.conn.hugepages {
        crate::bigmem::set_advice(dpdk::advise_hugepages);
    }
    let fwd_cfg = FwdConfig {
        capacity: cfg.conn.capacity,
        capacity6: cfg.conn.capacity6,
        timeouts: cfg.conn.timeouts,
        max_attempts: crate::laddr::DEFAULT_MAX_ATTEMPTS,
        syn_unanswered_ms: cfg.conn.syn_unanswered_ms,
        max_half_open: cfg.conn.half_open_limit(cfg.conn.capacity),
        max_half_open6: cfg.conn.half_open_limit(cfg.conn.capacity6),
        synproxy: synproxy.0,
        // One key for every worker (a client's ACK must prove on any worker what its SYN got).
        cookie_key: synproxy.1,
    };
    let mut rings = Vec::new();
    // ring_of[from][to]
    let mut ring_of: Vec<Vec<Option<Arc<MbufRing>>>> = vec![vec![None; n]; n];
    for (from, row) in ring_of.iter_mut().enumerate() {
        for (to, slot) in row.iter_mut().enumerate() {
            if from != to {
                let r = Arc::new(MbufRing::new(&format!("gw_r{from}_{to}"), RING_SIZE)?);
                rings.push(r.clone());
                *slot = Some(r);
            }
        }
    }
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..n)
        .map(|_| crossbeam_channel::bounded::<Msg>(1024))
        .unzip();
    let (ack_tx, ack_rx) = crossbeam_channel::unbounded::<Ack>();
    let stop = Arc::new(AtomicBool::new(false));
    let nc = &cfg.neighbour;
    let neigh = NeighConfig {
        timeout_ms: nc.timeout_s as u64 * 1000,
        retry_ms: nc.retry_ms as u64,
        max_pending: nc.max_pending as usize,
        capacity: nc.capacity as usize,
        base_reachable_ms: nc.base_reachable_ms as u64,
        delay_first_probe_ms: nc.delay_first_probe_ms as u64,
        ucast_solicit: nc.ucast_solicit,
        mcast_solicit: nc.mcast_solicit,
        max_held: nc.max_held as usize,
    };
    let tsc_hz = dpdk::tsc_hz(&eal);
    let epoch_tsc = dpdk::tsc();
    // Packets the gateway grows (IPIP, TOA) must fit the smallest port MTU (1500 where none is set).
    let out_mtu = cfg
        .ports
        .iter()
        .map(|p| p.mtu.unwrap_or(1500))
        .min()
        .unwrap_or(1500);
    let mut published = Vec::new();
    let capture = crate::capture::Capture::new();
    for (w, rx) in receivers.into_iter().enumerate() {
        let p = Arc::new(Mutex::new(WorkerStats::default()));
        published.push(p.clone());
        let worker = Worker {
            id: w as u16,
            port_ids: ports.iter().map(|p| p.id).collect(),
            twin_ids: (0..ports.len())
                .map(|i| {
                    twins
                        .iter()
                        .find(|t| t.port as usize == i)
                        .map(|t| t.dpdk.id)
                })
                .collect(),
            port_index: Vec::new(),
            prepared: None,
            tap: capture.tap(),
            sync: Default::default(),
            pool: pool.clone(),
            rings_in: (0..n)
                .filter(|&f| f != w)
                .filter_map(|f| ring_of[f][w].clone())
                .collect(),
            rings_out: ring_of[w].clone(),
            inbox: rx,
            peers: senders.clone(),
            acks: ack_tx.clone(),
            stop: stop.clone(),
            published: p,
            idle_sleep_us: cfg.workers.idle_sleep_us,
            tsc_hz,
            epoch_tsc,
            datapath: Datapath::new(w as u16, topo.clone(), neigh, {
                let mut f = Forwarder::new(w as u16, services.clone(), layout.clone(), &fwd_cfg)
                    .map_err(StartError::Other)?;
                f.set_mtu(out_mtu);
                f.set_owners(owners.clone());
                f.set_conn_reuse_mode(cfg.conn.conn_reuse_mode);
                f
            }),
        };
        let mut worker = worker;
        worker.datapath.frags = crate::frag::FragTable::new(cfg.fragments.table());
        worker.datapath.v6.frags = crate::frag::FragTable::new(cfg.fragments.table());
        worker.datapath.l3.punt =
            crate::datapath::punt::PuntBudget::new(cfg.kernel.punt_rate, cfg.kernel.punt_burst);
        dpdk::launch_on_lcore(&eal, lcores[w], move || worker.run())?;
    }
    // The health checker: its own thread, an event loop over every target (`health`).
    let health_stop = Arc::new(AtomicBool::new(false));
    let (targets_tx, targets_rx) = crossbeam_channel::unbounded();
    let (health_tx, health_rx) = crossbeam_channel::unbounded();
    let health_status = Arc::new(Mutex::new(Vec::new()));
    let health = {
        let (stop, status) = (health_stop.clone(), health_status.clone());
        let passive = crate::health::passive_source(published.clone());
        std::thread::Builder::new()
            .name("health".into())
            .spawn(move || crate::health::runner::run(targets_rx, health_tx, status, stop, passive))
            .map_err(|e| StartError::Other(format!("health thread: {e}")))?
    };
    // The announce table, cleared of what an earlier run left (`kernel::announce`).
    let announcer = match &cfg.announce {
        Some(a) => Some(
            crate::kernel::announce::Announcer::open(a.table)
                .map_err(|e| StartError::Other(format!("announce table {}: {e}", a.table)))?,
        ),
        None => None,
    };
    let sync = start_sync(cfg, &layout, &senders)?;
    let mut control = Control {
        workers: senders,
        acks: ack_rx,
        current: Arc::new(Generation {
            id: 1,
            topo: topo.clone(),
            services: services.clone(),
            timeouts: cfg.conn.timeouts,
            conn_reuse_mode: cfg.conn.conn_reuse_mode,
        }),
        configured: crate::control::model::Model {
            services: cfg.services.clone(),
        },
        configured_services: v.services.clone(),
        health_down: Default::default(),
        health_checks: Default::default(),
        health_status,
        health_targets: Some(targets_tx),
        epoch_tsc,
        tsc_per_ms: (tsc_hz / 1000).max(1),
        announcer,
        announce_cfg: cfg.announce.clone(),
        drains: Default::default(),
        events: Default::default(),
        inputs,
        kernel: None,
        sync,
        provenance,
        twins: twins
            .iter()
            .map(|t| {
                let driver = match t.kind {
                    TwinKind::Tap => "tap",
                    TwinKind::VirtioUser => "virtio-user",
                };
                (t.port, t.name.clone(), driver, t.ifindex)
            })
            .collect(),
    };
    control.send_health_targets();
    control.reannounce();
    // The kernel mirror follows the twins from here on (its first dump replaces the config's view).
    let (mirror, kernel_updates) = if twins.is_empty() {
        (None, None)
    } else {
        let by_index = twins.iter().map(|t| (t.ifindex, t.port)).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = crossbeam_channel::unbounded();
        let s = stop.clone();
        let h = std::thread::Builder::new()
            .name("kernel-mirror".into())
            .spawn(move || crate::kernel::run_mirror(by_index, s, tx))
            .map_err(|e| StartError::Other(format!("kernel mirror thread: {e}")))?;
        (Some((h, stop)), Some(rx))
    };
    Ok(Running {
        control: Mutex::new(control),
        ports,
        twins,
        mirror,
        kernel_updates,
        health: Some((health, health_stop)),
        health_events: health_rx,
        rings,
        pool,
        lcores: lcores[..n].to_vec(),
        stop,
        published,
        capture,
        port_names: cfg.ports.iter().map(|p| p.name.clone()).collect(),
        file_prefix: cfg.eal.file_prefix.clone(),
        eal,
    })
}

/// The sync thread (`[sync]`), delivering to the workers: role changes and resyncs to every one
/// (waiting up to a second for room in an inbox), records round-robin (only if there is room:
/// the sync thread counts what could not go; each worker passes records on to their owner).
fn start_sync(
    cfg: &Config,
    layout: &PortLayout,
    workers: &[crossbeam_channel::Sender<Msg>],
) -> Result<Option<crate::sync::Handle>, StartError> {
    use crate::sync::ToWorkers;
    let Some(sc) = &cfg.sync else { return Ok(None) };
    let settings = sc.settings(&cfg.ports)?;
    let range = layout.port_range();
    let wire_layout = crate::sync::wire::Layout {
        workers: layout.n_workers() as u16,
        ports: (*range.start(), *range.end()),
        steering: u8::from(layout.is_rss()),
        rss_key_hash: layout.steering_digest(),
    };
    let inboxes = workers.to_vec();
    let mut next = 0usize;
    let deliver = move |m: ToWorkers| -> bool {
        // Every worker gets it, even after one could not (`all` would stop at the first).
        let every = |f: &dyn Fn() -> Msg| {
            let sent: Vec<bool> = inboxes
                .iter()
                .map(|w| w.send_timeout(f(), Duration::from_secs(1)).is_ok())
                .collect();
            sent.iter().all(|&ok| ok)
        };
        match m {
            ToWorkers::Primary(p) => every(&|| Msg::SyncPrimary(p.clone())),
            ToWorkers::ExportAll(generation) => every(&|| Msg::SyncExportAll(generation)),
            ToWorkers::Install(records) => {
                next = (next + 1) % inboxes.len().max(1);
                inboxes.get(next).is_some_and(|w| {
                    w.try_send(Msg::SyncInstall {
                        records,
                        forwarded: false,
                    })
                    .is_ok()
                })
            }
        }
    };
    let h = crate::sync::Handle::start(settings.clone(), wire_layout, Box::new(deliver))
        .map_err(StartError::Other)?;
    tracing::info!(
        mode = %settings.mode, local = %settings.local, peer = %settings.peer,
        port = settings.udp_port, "connection sync started"
    );
    Ok(Some(h))
}

/// The split of the local port space between workers. Replies come back on the port where the LIPs
/// live; with RSS there, local ports are chosen so that the NIC steers each reply to its owner;
/// otherwise (af_packet, no RSS) ports are only partitioned and replies are handed over by ring.
fn port_layout(
    cfg: &Config,
    ports: &[Port],
    topo: &Topology,
    services: &ServiceTable,
    n: usize,
) -> Result<PortLayout, StartError> {
    let range = cfg.conn.port_range[0]..=cfg.conn.port_range[1];
    let rss_of = |i: usize| {
        ports
            .get(i)
            .and_then(|p| p.rss.clone())
            .or_else(|| emulated_rss(cfg.ports.get(i)?, n))
    };
    // The port the LIPs of the configured services live on; without services (a gateway started
    // empty, whose rules `ipvsadm -R` restores later) the first port with RSS. The layout is
    // chosen once: LIPs added later on a port whose RSS has another key or RETA still work, their
    // replies handed over by ring (the log says so when that happens).
    let lip_port = services
        .services
        .iter()
        .flat_map(|s| s.lips.iter())
        .find_map(|&ip| topo.routes.lookup(ip))
        .map(|hop| hop.port as usize);
    let rss = match lip_port {
        Some(i) => rss_of(i),
        None => (0..ports.len()).find_map(rss_of),
    };
    let differing: Vec<&str> = rss
        .as_ref()
        .map(|r| {
            (0..ports.len())
                .filter(|&i| rss_of(i).is_some_and(|o| o.key != r.key || o.reta != r.reta))
                .map(|i| cfg.ports[i].name.as_str())
                .collect()
        })
        .unwrap_or_default();
    if !differing.is_empty() {
        tracing::warn!(
            "ports {differing:?} run RSS with another key or RETA: replies to LIPs on them will \
             be handed over by ring"
        );
    }
    // The layout chooses lports by their share of the reply's hash: a NIC hashing TCP on addresses
    // only (`RTE_ETH_RSS_IPV4` alone) would ignore them, so such a port falls back to the rings.
    let rss = rss.filter(|r| {
        let l4 = r.hash_fields & dpdk_sys::RTE_ETH_RSS_NONFRAG_IPV4_TCP != 0;
        if !l4 {
            tracing::warn!(
                "RSS of the LIPs' port does not hash TCP ports; replies will be handed over by ring"
            );
        }
        l4
    });
    if let Some(r) = rss {
        let steering = Reta::new(r.reta.clone()).map(|reta| {
            Steering::Rss(RssConfig {
                key: r.key.clone(),
                reta,
                queues: QueueMap::identity(n as u16),
            })
        });
        match steering
            .map_err(|e| e.to_string())
            .and_then(|s| PortLayout::new(n, range.clone(), s).map_err(|e| e.to_string()))
        {
            Ok(l) => return Ok(l),
            Err(e) => {
                tracing::warn!("RSS steering unusable ({e}); replies will be handed over by ring")
            }
        }
    }
    PortLayout::new(n, range, Steering::Partition)
        .map_err(|e| StartError::Other(format!("conn.port_range: {e}")))
}

/// Who owns a connection from its client's side (`forward::owner`): per port, the RSS the NIC runs
/// (or `rss_emulate_reta` plays), so that client packets normally arrive on their owner's queue;
/// a hash of the client's address and port on ports without RSS (af_packet, pcap, tap).
fn client_owners(cfg: &Config, ports: &[Port], n: usize) -> crate::forward::Owners {
    let per_port = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let r = p
                .rss
                .clone()
                .or_else(|| emulated_rss(cfg.ports.get(i)?, n))?;
            let reta = Reta::new(r.reta.clone()).ok()?;
            let hf = r.hash_fields;
            let ipv6 = dpdk_sys::RTE_ETH_RSS_IPV6
                | dpdk_sys::RTE_ETH_RSS_NONFRAG_IPV6_TCP
                | dpdk_sys::RTE_ETH_RSS_NONFRAG_IPV6_UDP;
            let rss = crate::forward::PortRss::new(
                &r.key,
                reta,
                QueueMap::identity(n as u16),
                hf & dpdk_sys::RTE_ETH_RSS_NONFRAG_IPV4_TCP != 0,
                hf & dpdk_sys::RTE_ETH_RSS_NONFRAG_IPV4_UDP != 0,
            )
            .map(|rss| match hf & ipv6 {
                0 => rss,
                _ => rss.with_ipv6(
                    &r.key,
                    hf & dpdk_sys::RTE_ETH_RSS_NONFRAG_IPV6_TCP != 0,
                    hf & dpdk_sys::RTE_ETH_RSS_NONFRAG_IPV6_UDP != 0,
                ),
            });
            match rss {
                Ok(rss) => {
                    if hf & ipv6 != 0 && !rss.hashes_ipv6() {
                        tracing::warn!(
                            port = %p.name,
                            "RSS key of {} bytes too short for IPv6 (40): IPv6 clients owned by hash",
                            r.key.len()
                        );
                    }
                    Some(rss)
                }
                Err(e) => {
                    tracing::warn!(port = %p.name, "client steering by RSS unusable ({e}); by hash");
                    None
                }
            }
        })
        .collect();
    crate::forward::Owners::new(n, per_port)
}

/// RSS as `rss_emulate_reta` describes it: the default Toeplitz key and a round-robin RETA over the
/// workers' queues, which is what perf/pktgen plays on memif.
fn emulated_rss(pc: &crate::config::PortEntry, n: usize) -> Option<dpdk::RssConfig> {
    let size = pc.rss_emulate_reta as usize;
    (size > 0).then(|| dpdk::RssConfig {
        key: crate::laddr::DEFAULT_RSS_KEY.to_vec(),
        reta: (0..size).map(|i| (i % n) as u16).collect(),
        // pktgen hashes TCP and UDP with their ports, as a NIC with these fields on.
        hash_fields: dpdk_sys::RTE_ETH_RSS_IPV4
            | dpdk_sys::RTE_ETH_RSS_NONFRAG_IPV4_TCP
            | dpdk_sys::RTE_ETH_RSS_NONFRAG_IPV4_UDP,
    })
}

/// What the signal handlers set.
pub struct Signals {
    pub term: Arc<AtomicBool>,
    pub usr1: Arc<AtomicBool>,
    pub hup: Arc<AtomicBool>,
    /// The file SIGHUP re-reads.
    pub config_path: Option<std::path::PathBuf>,
}

impl Running {
    /// Re-reads the config file and applies what may change at run time (the services); other
    /// sections must be unchanged.
    pub fn reload(&self, running: &Config, path: Option<&std::path::Path>) -> Result<u64, String> {
        let path = path.ok_or("no config file to reload")?;
        let new = Config::from_file(path).map_err(|e| e.to_string())?;
        let v = new.validate().map_err(|e| e.to_string())?;
        let fixed = |c: &Config| {
            format!(
                "{:?}{:?}{:?}{:?}{:?}{:?}",
                c.workers, c.mempool, c.ports, c.routes, c.neighbour, c.conn
            )
        };
        if fixed(&new) != fixed(running) {
            return Err(
                "only [[service]] sections can change at run time; restart for the rest".into(),
            );
        }
        let model = crate::control::model::Model {
            services: new.services.clone(),
        };
        self.control
            .lock()
            .map_err(|_| "control poisoned")?
            .apply_config(v, model)
    }

    /// Per-worker counters as last published, and their sum.
    pub fn stats(&self) -> (Vec<WorkerStats>, WorkerStats) {
        let per: Vec<WorkerStats> = self
            .published
            .iter()
            .map(|p| p.lock().map(|s| s.clone()).unwrap_or_default())
            .collect();
        let mut total = WorkerStats::default();
        per.iter().for_each(|s| total.add(s));
        (per, total)
    }

    /// Each port's counters and link, and the mempool's use (`metrics`).
    pub fn port_samples(&self) -> crate::control::server::PortSamples {
        let ports = self
            .ports
            .iter()
            .map(|p| {
                let s = p.stats();
                crate::metrics::PortSample {
                    name: p.name.clone(),
                    driver: p.info.driver.clone(),
                    up: p.link().up,
                    rx_packets: s.ipackets,
                    rx_bytes: s.ibytes,
                    tx_packets: s.opackets,
                    tx_bytes: s.obytes,
                    rx_missed: s.imissed,
                    rx_errors: s.ierrors,
                    tx_errors: s.oerrors,
                    rx_nombuf: s.rx_nombuf,
                }
            })
            .collect();
        let mbufs = Some((self.pool.in_use() as u64, self.pool.available() as u64));
        (ports, mbufs)
    }

    /// A human-readable counter dump: per port, per worker, drops by reason.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for p in &self.ports {
            let s = p.stats();
            let l = p.link();
            let _ = writeln!(
                out,
                "port {} ({}): link {} rx {} pkts {} bytes, tx {} pkts {} bytes, missed {}, rx_err {}, tx_err {}, no_mbuf {}",
                p.name,
                p.info.driver,
                if l.up { "up" } else { "down" },
                s.ipackets,
                s.ibytes,
                s.opackets,
                s.obytes,
                s.imissed,
                s.ierrors,
                s.oerrors,
                s.rx_nombuf
            );
        }
        let (per, total) = self.stats();
        for (i, s) in per.iter().enumerate() {
            let cpp = s.busy_cycles.checked_div(s.busy_packets).unwrap_or(0);
            let _ = writeln!(
                out,
                "worker {i}: rx {} tx {} arp_replies {} arp_requests {} echo_replies {} handoff_out {} handoff_in {} \
                 steer_hits {} fast_path {} generated {} cycles/pkt {cpp} drops {}",
                s.rx_packets,
                s.tx_packets,
                s.arp_replies,
                s.arp_requests,
                s.icmp_echo_replies,
                s.handoff_out,
                s.handoff_in,
                s.steer_hits,
                s.fast_path,
                s.generated,
                s.total_drops()
            );
        }
        // The busy cycles and packets of each stage of the poll round (`gwctl runtime`), so that
        // a bench can tell the datapath's own stages from receiving and sending (perf/bench).
        for (i, s) in per.iter().enumerate() {
            let _ = write!(out, "runtime {i}:");
            for st in crate::stats::Stage::ALL {
                let c = &s.runtime[st as usize];
                let _ = write!(out, " {} {} {}", st.name(), c.cycles, c.packets);
            }
            let _ = writeln!(out);
        }
        for (i, s) in per.iter().enumerate() {
            let f = &s.fwd;
            let _ = writeln!(
                out,
                "conn {i}: conns {} created {} expired {} table_full {} ports_exhausted {} toa_added {} toa_skipped {} \
                 icmp_translated {} rst_sent {} rst_unsent {} tun_too_big {} frag_needed {} handoff_client {} \
                 handoff_reply {} resched_closed {} resched_fin_wait {} resched_quiesced {} resched_removed {} \
                 resched_new_isn {} resched_udp_removed {} syn_retried {} syn_retry_no_other {} sloppy_created {} \
                 half_open {} evicted_embryonic {} limit_untracked {} evicted_time_wait {} evicted_udp {} \
                 server_time_wait {}",
                f.conns,
                f.created,
                f.expired,
                f.table_full,
                f.ports_exhausted,
                f.toa_added,
                f.toa_skipped,
                f.icmp_translated,
                f.rst_sent,
                f.rst_unsent,
                f.tun_too_big,
                f.frag_needed,
                f.handoff_client,
                f.handoff_reply,
                f.resched_closed,
                f.resched_fin_wait,
                f.resched_quiesced,
                f.resched_removed,
                f.resched_new_isn,
                f.resched_udp_removed,
                f.syn_retried,
                f.syn_retry_no_other,
                f.sloppy_created,
                f.half_open,
                f.evicted_embryonic,
                f.limit_untracked,
                f.evicted_time_wait,
                f.evicted_udp,
                f.server_time_wait
            );
        }
        for (i, s) in per.iter().enumerate() {
            let _ = write!(out, "neigh {i}:");
            for (name, n) in s.neigh.named() {
                let _ = write!(out, " {} {n}", name.trim_start_matches("neigh_"));
            }
            let _ = writeln!(out);
        }
        for (i, s) in per.iter().enumerate() {
            let _ = write!(out, "synproxy {i}:");
            for (name, n) in s.synproxy.named() {
                let _ = write!(out, " {} {n}", name.trim_start_matches("synproxy_"));
            }
            let _ = writeln!(out);
        }
        for (i, s) in per.iter().enumerate() {
            let _ = write!(out, "ipv6 {i}:");
            for (name, n) in s.inet6.named() {
                let _ = write!(out, " {} {n}", name.trim_start_matches("ipv6_"));
            }
            let _ = writeln!(out);
        }
        for (i, s) in per.iter().enumerate() {
            let _ = write!(out, "frag {i}:");
            for (name, n) in s.frag.named() {
                let _ = write!(out, " {} {n}", name.trim_start_matches("frag_"));
            }
            let _ = writeln!(out);
        }
        for (i, s) in per.iter().enumerate() {
            let _ = write!(out, "punt {i}:");
            for (name, n) in s.punt.named() {
                let _ = write!(out, " {name} {n}");
            }
            let _ = writeln!(out);
        }
        for (name, n) in total.drop_list() {
            let _ = writeln!(out, "drop {name} {n}");
        }
        let _ = writeln!(
            out,
            "mempool in_use {} available {}",
            self.pool.in_use(),
            self.pool.available()
        );
        out
    }

    /// Stops workers, then ports, rings, pool and EAL, in that order.
    pub fn shutdown(self) -> String {
        // Withdraw first, and forward a little longer while the router moves the flows away.
        let wait = self.control.lock().ok().and_then(|mut c| c.withdraw_all());
        if let Some(w) = wait {
            tracing::info!("announce: every VIP withdrawn; forwarding {w:?} more");
            std::thread::sleep(w);
        }
        self.stop.store(true, Ordering::SeqCst);
        for &l in &self.lcores {
            let rc = dpdk::wait_lcore(&self.eal, l);
            if rc != 0 {
                tracing::warn!(lcore = l, rc, "worker exited with an error");
            }
        }
        let mut report = self.report();
        let Running {
            mut ports,
            mut twins,
            mirror,
            health,
            rings,
            pool,
            eal,
            file_prefix: prefix,
            ..
        } = self;
        for (h, stop) in mirror.into_iter().chain(health) {
            stop.store(true, Ordering::SeqCst);
            let _ = h.join();
        }
        for p in ports.iter_mut() {
            p.stop();
        }
        // Closing a twin's queues removes its interface from the kernel.
        for t in twins.iter_mut() {
            t.dpdk.stop();
        }
        drop(twins);
        drop(ports);
        // The pool's use counted after every queue is closed (tap queues hold posted mbufs).
        if let Some(i) = report.rfind("mempool in_use") {
            report.truncate(i);
            let _ = writeln!(
                report,
                "mempool in_use {} available {}",
                pool.in_use(),
                pool.available()
            );
        }
        drop(rings);
        drop(pool);
        drop(eal);
        // EAL leaves its runtime directory (sockets, config) behind; it belongs to this prefix only.
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", prefix));
        report
    }
}

/// The main lcore's loop: waits for SIGINT/SIGTERM, dumps counters on SIGUSR1 and every
/// `stats_interval_s`, and writes them to `stats_file` if set.
pub fn control_loop(run: &Running, cfg: &Config, signals: &Signals) {
    // The admin socket runs on its own thread for as long as this loop (crate::control::server).
    let report = Mutex::new(String::new());
    let path = crate::control::server::socket_path(cfg);
    let listener = match crate::control::server::bind(&path, cfg.control.socket_group.as_deref()) {
        Ok(l) => {
            tracing::info!("admin socket {}", path.display());
            Some(l)
        }
        Err(e) => {
            tracing::error!("admin socket {}: {e}; running without it", path.display());
            None
        }
    };
    // The Prometheus endpoint is served beside the admin socket (`metrics`).
    let metrics = cfg.metrics.as_ref().and_then(|m| {
        let addr = m.addr().ok()?;
        match std::net::TcpListener::bind(addr) {
            Ok(l) => {
                tracing::info!("metrics on http://{addr}/metrics");
                Some(l)
            }
            Err(e) => {
                tracing::error!("metrics.listen {addr}: {e}; running without metrics");
                None
            }
        }
    });
    let port_samples = || run.port_samples();
    if let Ok(c) = run.control.lock() {
        let m = format!(
            "started: {} workers, generation {}",
            c.worker_inboxes().len(),
            c.current().id
        );
        c.events.record(Kind::Daemon, m);
    }
    std::thread::scope(|s| {
        if let Some(l) = listener {
            let ctx = crate::control::server::Ctx {
                control: &run.control,
                published: &run.published,
                capture: run.capture.clone(),
                report: &report,
                cfg,
                config_path: signals.config_path.as_deref(),
                port_samples: &port_samples,
            };
            s.spawn(|| crate::control::server::serve(ctx, l, metrics, &signals.term));
        }
        signal_loop(run, cfg, signals, &report);
    });
}

/// What the kernel mirror reported and the control plane has not applied yet.
#[derive(Default)]
struct KernelPending {
    /// The last view (views are whole: the last one is all that matters).
    view: Option<Arc<KernelView>>,
    neighs: Vec<(std::net::Ipv4Addr, crate::wire::MacAddr, u16)>,
    /// The last view's generation failed (a worker did not answer): it is applied again.
    retry: bool,
}

impl KernelPending {
    fn take(&mut self, u: crate::kernel::Update) {
        match u {
            crate::kernel::Update::View(v) => self.view = Some(v),
            crate::kernel::Update::Neigh { ip, mac, port } => self.neighs.push((ip, mac, port)),
        }
    }
}

/// Applies what the kernel mirror reported, as one generation for the last view. The control lock
/// is only tried: while an admin change holds it (a large restore builds for seconds), updates
/// wait here and the loop goes on answering signals.
fn apply_kernel_updates(
    run: &Running,
    rx: &crossbeam_channel::Receiver<crate::kernel::Update>,
    pending: &mut KernelPending,
) {
    for u in rx.try_iter() {
        pending.take(u);
    }
    if pending.view.is_none() && pending.neighs.is_empty() {
        return;
    }
    let Ok(mut control) = run.control.try_lock() else {
        return;
    };
    for (ip, mac, port) in pending.neighs.drain(..) {
        control.seed_neighbour(ip, mac, port);
    }
    if let Some(v) = pending.view.take() {
        match control.apply_kernel(v.clone()) {
            Ok(Some(g)) => control.events.record(
                Kind::Kernel,
                format!("kernel change: generation {g} running on every worker"),
            ),
            Ok(None) => {}
            Err(e) => {
                if !pending.retry {
                    let m = format!("kernel change not applied: {e}; retrying");
                    control.events.record(Kind::Refused, m);
                }
                pending.retry = true;
                pending.view = Some(v);
                return;
            }
        }
        pending.retry = false;
    }
}

/// The longest the main thread waits between its turns when nothing comes (a signal is acted on
/// within this).
const MAIN_LOOP_WAIT_MS: u64 = 200;

fn signal_loop(run: &Running, cfg: &Config, signals: &Signals, report: &Mutex<String>) {
    let mut kernel = KernelPending::default();
    let mut health_pending: Vec<crate::health::runner::Event> = Vec::new();
    let interval = cfg.control.stats_interval_s;
    let mut last_report = Instant::now()
        .checked_sub(Duration::from_secs(1))
        .unwrap_or_else(Instant::now);
    let mut last = Instant::now();
    let mut last_file = Instant::now();
    let mut last_sweep = Instant::now();
    let mut last_announce = Instant::now();
    // The channels waited on; one whose sender is gone is waited on no more (it would be ready
    // at every turn).
    let (never_kernel, never_health) = (crossbeam_channel::never(), crossbeam_channel::never());
    let mut kernel_rx = run.kernel_updates.as_ref();
    let mut health_rx = Some(&run.health_events);
    while !signals.term.load(Ordering::Relaxed) {
        // Wait for the kernel mirror or the health checker: an address added to a twin is served
        // at once, a health transition applied at once. Otherwise this thread wakes for the
        // periodic work below (the most frequent every 200 ms) and the signals' flags, or sooner
        // to retry what the control lock kept waiting. Each wake-up takes the CPU the main lcore
        // shares (on a small box, with a traffic generator: `perf/RESULTS.md`, the tail).
        let retry = kernel.view.is_some() || !health_pending.is_empty();
        let wait = Duration::from_millis(if retry { 20 } else { MAIN_LOOP_WAIT_MS });
        crossbeam_channel::select! {
            recv(kernel_rx.unwrap_or(&never_kernel)) -> u => match u {
                Ok(u) => kernel.take(u),
                Err(_) => kernel_rx = None,
            },
            recv(health_rx.unwrap_or(&never_health)) -> e => match e {
                Ok(e) => health_pending.push(e),
                Err(_) => health_rx = None,
            },
            default(wait) => {}
        }
        // Also once the mirror is gone: a view it sent may still wait for the control lock.
        if let Some(rx) = &run.kernel_updates {
            apply_kernel_updates(run, rx, &mut kernel);
        }
        // Health transitions: a new generation with the server's effective weight. The lock is
        // only tried, as for kernel updates; transitions wait here meanwhile.
        if let Some(rx) = health_rx {
            health_pending.extend(rx.try_iter());
        }
        if !health_pending.is_empty() {
            if let Ok(mut c) = run.control.try_lock() {
                for e in health_pending.drain(..) {
                    let k = &e.key;
                    let what = format!(
                        "{}:{} of {}:{} {} ({})",
                        k.rs,
                        k.rs_port,
                        k.vip,
                        k.vport,
                        if e.up { "up" } else { "down" },
                        e.reason
                    );
                    let m = match c.set_health(&e) {
                        Ok(Some(g)) => format!(
                            "{what}: {}; generation {g} running on every worker",
                            match (e.up, e.remove) {
                                (true, _) => "restored",
                                (false, false) => "at weight 0",
                                (false, true) => "removed",
                            }
                        ),
                        Ok(None) => what,
                        Err(err) => format!("{what}: change not applied: {err}"),
                    };
                    c.events.record(Kind::Health, m);
                }
            }
        }
        // Drains done, announcements the kernel refused retried: five times a second.
        if last_announce.elapsed() >= Duration::from_millis(200) {
            last_announce = Instant::now();
            if let Ok(mut c) = run.control.try_lock() {
                c.tick_announce();
            }
        }
        // Expired persistence templates go once a second, off the packet path (one shard lock at
        // a time, so a worker scheduling a new connection waits for one shard's sweep at most).
        if last_sweep.elapsed() >= Duration::from_secs(1) {
            last_sweep = Instant::now();
            // The control lock (which admin changes wait for) is held only to read the snapshot.
            let current = run
                .control
                .try_lock()
                .ok()
                .map(|c| (c.current().clone(), c.now_ms()));
            if let Some((g, now)) = current {
                let n = expire_templates(&g.services, now);
                if n > 0 {
                    tracing::debug!("{n} persistence templates expired");
                }
            }
        }
        if signals.hup.swap(false, Ordering::Relaxed) {
            let (kind, m) = match run.reload(cfg, signals.config_path.as_deref()) {
                Ok(g) => (
                    Kind::Config,
                    format!("config reloaded: generation {g} running on every worker"),
                ),
                Err(e) => (Kind::Refused, format!("config reload refused: {e}")),
            };
            if let Ok(c) = run.control.lock() {
                c.events.record(kind, m);
            }
        }
        let usr1 = &signals.usr1;
        if usr1.swap(false, Ordering::Relaxed)
            || (interval > 0 && last.elapsed().as_secs() >= interval as u64)
        {
            last = Instant::now();
            for line in run.report().lines() {
                tracing::info!("{line}");
            }
        }
        if last_report.elapsed() >= Duration::from_millis(500) {
            last_report = Instant::now();
            if let Ok(mut r) = report.lock() {
                *r = run.report();
            }
        }
        if let Some(path) = &cfg.control.stats_file {
            if last_file.elapsed() >= Duration::from_millis(200) {
                last_file = Instant::now();
                let tmp = format!("{path}.tmp");
                if std::fs::write(&tmp, run.report()).is_ok() {
                    let _ = std::fs::rename(&tmp, path);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Workers played by threads speaking the inbox protocol: `refuse` refuses every preparation.
    /// Each returns what it did ("prepared 2", "runs 2", "aborted 2").
    fn fake_workers(
        n: usize,
        refuse: Option<u16>,
    ) -> (Control, Vec<std::thread::JoinHandle<Vec<String>>>) {
        let (ack_tx, ack_rx) = crossbeam_channel::unbounded::<Ack>();
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for w in 0..n as u16 {
            let (tx, rx) = crossbeam_channel::bounded::<Msg>(16);
            senders.push(tx);
            let acks = ack_tx.clone();
            handles.push(std::thread::spawn(move || {
                let mut log = Vec::new();
                while let Ok(m) = rx.recv() {
                    let (generation, phase, result) = match m {
                        Msg::Prepare(g) => {
                            let r = if refuse == Some(w) {
                                Err("no local port for the new LIP".to_string())
                            } else {
                                log.push(format!("prepared {}", g.id));
                                Ok(())
                            };
                            (g.id, Phase::Prepare, r)
                        }
                        Msg::Commit(id) => {
                            log.push(format!("runs {id}"));
                            (id, Phase::Commit, Ok(()))
                        }
                        Msg::Abort(id) => {
                            log.push(format!("aborted {id}"));
                            continue;
                        }
                        _ => continue,
                    };
                    let _ = acks.send(Ack {
                        worker: w,
                        generation,
                        phase,
                        result,
                    });
                }
                log
            }));
        }
        let control = Control {
            workers: senders,
            acks: ack_rx,
            current: Arc::new(Generation {
                id: 1,
                topo: Arc::new(Topology::default()),
                services: Arc::new(ServiceTable::default()),
                timeouts: Default::default(),
                conn_reuse_mode: 1,
            }),
            epoch_tsc: 0,
            tsc_per_ms: 1,
            announcer: None,
            announce_cfg: None,
            drains: Default::default(),
            events: Default::default(),
            inputs: TopoInputs::default(),
            kernel: None,
            sync: None,
            provenance: Provenance::default(),
            twins: Vec::new(),
            configured: Default::default(),
            configured_services: Vec::new(),
            health_down: Default::default(),
            health_checks: Default::default(),
            health_status: Default::default(),
            health_targets: None,
        };
        (control, handles)
    }

    fn finish(
        control: Control,
        handles: Vec<std::thread::JoinHandle<Vec<String>>>,
    ) -> Vec<Vec<String>> {
        drop(control);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    /// A health transition goes through a generation; one reported by a check since replaced is
    /// ignored; removing a check releases its server in the same generation.
    #[test]
    fn health_transitions_follow_the_current_check_only() {
        let (mut control, handles) = fake_workers(2, None);
        let text = crate::testkit::LAB_CONFIG.replacen(
            "scheduler = \"wrr\"",
            "scheduler = \"wrr\"\ncheck = { kind = \"tcp\" }",
            1,
        );
        let cfg = Config::parse(&text).unwrap();
        let v = cfg.validate().unwrap();
        let model = crate::control::model::Model {
            services: cfg.services.clone(),
        };
        control.apply_model(model, v.services).unwrap();
        let weight = |c: &Control| c.current().services.services[0].svc.weights()[0];
        assert_eq!(weight(&control), 1);
        let targets = crate::health::targets(&cfg.services).unwrap();
        let t = targets
            .iter()
            .find(|t| t.key.rs == crate::testkit::RS1 && t.key.proto == 6);
        let t = t.unwrap();
        let down = crate::health::runner::Event {
            key: t.key,
            up: false,
            reason: "connection refused".into(),
            remove: false,
            check: t.check.clone(),
        };
        assert!(control.set_health(&down).unwrap().is_some());
        assert_eq!(weight(&control), 0);
        // From a check that is not the current one: nothing happens.
        let mut other = t.check.clone();
        other.interval_ms += 1;
        let stale = crate::health::runner::Event {
            up: true,
            check: other,
            ..down.clone()
        };
        assert_eq!(control.set_health(&stale).unwrap(), None);
        assert_eq!(weight(&control), 0);
        // The check removed: rs1 runs at its weight again.
        let mut services = cfg.services.clone();
        services[0].check = None;
        let specs =
            crate::config::validate_service_entries(&services, &v.port_addrs, &v.port_addrs6)
                .unwrap();
        control
            .apply_model(crate::control::model::Model { services }, specs)
            .unwrap();
        assert_eq!(weight(&control), 1);
        finish(control, handles);
    }

    #[test]
    fn a_change_refused_by_one_worker_runs_nowhere() {
        let (mut control, handles) = fake_workers(3, Some(1));
        let err = control.apply_conn_reuse_mode(0).unwrap_err();
        assert!(err.contains("worker 1 refused generation 2"), "{err}");
        assert_eq!(
            control.current().id,
            1,
            "the control plane keeps the current generation"
        );
        assert_eq!(control.current().conn_reuse_mode, 1);
        let logs = finish(control, handles);
        for (w, log) in logs.iter().enumerate() {
            assert!(
                !log.iter().any(|l| l.starts_with("runs")),
                "worker {w}: {log:?}"
            );
            assert!(
                log.contains(&"aborted 2".to_string()),
                "worker {w}: {log:?}"
            );
        }
    }

    /// The control plane's sweep removes expired persistence templates (the packet path never does).
    #[test]
    fn the_template_sweep_removes_expired_templates() {
        let (mut control, handles) = fake_workers(1, None);
        let text = crate::testkit::LAB_CONFIG.replacen(
            "scheduler = \"wrr\"",
            "scheduler = \"wrr\"\npersistence_s = 60",
            1,
        );
        let v = crate::config::Config::parse(&text)
            .unwrap()
            .validate()
            .unwrap();
        let services = Arc::new(ServiceTable::new(1, v.services, None).unwrap());
        let table = services.services[0].svc.persist_table().unwrap().clone();
        let rs = services.services[0].svc.key(0).unwrap();
        // Two templates: one expired at 10 ms on the workers' clock, one far in the future.
        table.resolve(1, 0, 10, |_| None, || Some((0, rs)));
        table.resolve(2, 0, u64::MAX / 2, |_| None, || Some((0, rs)));
        control.current = Arc::new(Generation {
            id: 2,
            topo: Arc::new(Topology::default()),
            services,
            timeouts: Default::default(),
            conn_reuse_mode: 1,
        });
        assert!(control.now_ms() > 10);
        assert_eq!(
            expire_templates(&control.current().services, control.now_ms()),
            1
        );
        assert_eq!(table.len(), 1);
        finish(control, handles);
    }

    #[test]
    fn a_change_every_worker_prepares_runs_everywhere() {
        let (mut control, handles) = fake_workers(3, None);
        assert_eq!(control.apply_conn_reuse_mode(0), Ok(2));
        assert_eq!(control.current().id, 2);
        assert_eq!(control.current().conn_reuse_mode, 0);
        for log in finish(control, handles) {
            assert_eq!(log, ["prepared 2", "runs 2"]);
        }
    }
}

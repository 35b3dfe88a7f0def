//! The control plane's handle on the workers ([`Control`]): every change becomes a generation
//! that each worker prepares and then runs, or none does (DESIGN.md decision 8). Health
//! transitions, the kernel mirror's topology, announcements and the sync thread's role all go
//! through it. The admin socket ([`super::server`]) and the main lcore's loop (`daemon`) share
//! it behind a mutex.

use crate::config::Config;
use crate::control::topology::{self, Provenance, TopoInputs};
use crate::dpdk;
use crate::forward::{ServiceSpec, ServiceTable};
use crate::kernel::KernelView;
use crate::net::Topology;
use crate::worker::{Ack, Generation, Msg, Phase};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What [`Control::new`] is wired to: the workers' inboxes and acknowledgements, their clock, and
/// the threads it drives.
pub struct Wiring {
    pub workers: Vec<crossbeam_channel::Sender<Msg>>,
    pub acks: crossbeam_channel::Receiver<Ack>,
    /// The workers' clock: TSC at start and TSC ticks per millisecond.
    pub epoch_tsc: u64,
    pub tsc_per_ms: u64,
    /// What the health checker publishes, and where it takes its targets.
    pub health_status: Arc<Mutex<Vec<crate::health::runner::Status>>>,
    pub health_targets: Option<crossbeam_channel::Sender<Vec<crate::health::runner::Target>>>,
    /// The announce table (`[announce]`; none: nothing is announced).
    pub announcer: Option<crate::kernel::announce::Announcer>,
    /// The connection-sync thread (`[sync]`; none without).
    pub sync: Option<crate::sync::Handle>,
}

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
    /// What the admin changes' validations made of the configured entries
    /// (`config::validate_shared_entries`).
    spec_cache: crate::config::SpecCache,
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
    /// Local addresses removed while connections used them (`control::retire`).
    retiring: crate::control::retire::Retiring,
    /// The twins' memberships in the services' IPv6 solicited-node groups (`kernel::mld`).
    listening: crate::kernel::mld::Listening,
}

/// How long a worker may take to acknowledge a new generation (it checks its inbox every few ms).
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

impl Control {
    /// The control plane of a gateway whose workers run `first`: its topology built from `inputs`
    /// (`provenance` says from where), its services those `cfg` configures (`configured_services`,
    /// as validated), `twins` its ports' kernel twins (port, name, driver, ifindex). The health
    /// checker gets its targets and the announce table its routes.
    pub fn new(
        wiring: Wiring,
        cfg: &Config,
        first: Generation,
        inputs: TopoInputs,
        provenance: Provenance,
        configured_services: Vec<ServiceSpec>,
        twins: Vec<(u16, String, &'static str, u32)>,
    ) -> Control {
        let mut control = Control {
            workers: wiring.workers,
            acks: wiring.acks,
            current: Arc::new(first),
            configured: crate::control::model::Model::of_entries(&cfg.services),
            configured_services,
            spec_cache: Default::default(),
            health_down: Default::default(),
            health_checks: Default::default(),
            health_status: wiring.health_status,
            health_targets: wiring.health_targets,
            epoch_tsc: wiring.epoch_tsc,
            tsc_per_ms: wiring.tsc_per_ms,
            announcer: wiring.announcer,
            announce_cfg: cfg.announce.clone(),
            drains: Default::default(),
            events: Default::default(),
            inputs,
            kernel: None,
            sync: wiring.sync,
            retiring: Default::default(),
            listening: Default::default(),
            provenance,
            twins,
        };
        // The checker starts on the configured checks, the announce table on what runs.
        control.send_health_targets();
        control.reannounce();
        control.listen6();
        control
    }

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
    pub fn seed_neighbour(&self, ip: std::net::IpAddr, mac: crate::wire::MacAddr, port: u16) {
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

    /// `model`'s services validated against the ports' addresses, the entries validated before
    /// (shared, so unchanged) taken from the last validation (`config::validate_shared_entries`).
    pub fn validate_model(
        &mut self,
        model: &crate::control::model::Model,
        port_addrs: &[Vec<crate::net::Ipv4Cidr>],
        port_addrs6: &[Vec<crate::net::Ipv6Cidr>],
    ) -> Result<Vec<crate::forward::ServiceSpec>, crate::config::ConfigError> {
        crate::config::validate_shared_entries(
            &model.services,
            port_addrs,
            port_addrs6,
            &mut self.spec_cache,
        )
    }

    /// Runs `configs` (validated from `model`) as the configured services: the health overlay on
    /// top, as a new generation; on success they are the configured services and the checker
    /// gets its targets.
    pub fn apply_model(
        &mut self,
        model: crate::control::model::Model,
        configs: Vec<crate::forward::ServiceSpec>,
    ) -> Result<u64, String> {
        let sorry = crate::config::health::sorry_servers(&model.services);
        let targets = crate::config::health::targets(&model.services)
            .map_err(|(k, e)| format!("{k}: {e}"))?;
        let checks: hashbrown::HashMap<_, _> =
            targets.iter().map(|t| (t.key, t.check.clone())).collect();
        // A server whose check is gone or changed starts again as the checker's new slot does:
        // up, until its new check says otherwise.
        let mut down = self.health_down.clone();
        down.retain(|k, _| checks.get(k).is_some() && checks.get(k) == self.health_checks.get(k));
        let retiring = self.retiring.clone();
        self.retiring
            .after_change(&self.configured_services, &configs, Instant::now());
        let id = match self.apply_services(self.effective(&configs, &down, &sorry)) {
            Ok(id) => id,
            Err(e) => {
                self.retiring = retiring;
                return Err(e);
            }
        };
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
        let (changed, applied) = self.set_health_all(std::slice::from_ref(e));
        match (changed[0], applied) {
            (true, Some(r)) => r.map(Some),
            _ => Ok(None),
        }
    }

    /// Several health transitions at once (those the checker reported while the last change
    /// ran): each noted, then one generation for all, if any makes a difference. Per event,
    /// whether it did; the generation's result, if one was built. One at a time, a failure of
    /// many servers at once (a rack, a switch) built a whole generation per server: with 10,000
    /// services, about 30 ms each, and every worker stopped for each.
    pub fn set_health_all(
        &mut self,
        events: &[crate::health::runner::Event],
    ) -> (Vec<bool>, Option<Result<u64, String>>) {
        let changed: Vec<bool> = events.iter().map(|e| self.note_health(e)).collect();
        let applied = changed
            .contains(&true)
            .then(|| self.apply_services(self.effective_now()));
        (changed, applied)
    }

    /// Notes one transition in the checks' overlay; whether it changes it.
    fn note_health(&mut self, e: &crate::health::runner::Event) -> bool {
        let (key, up, remove) = (e.key, e.up, e.remove);
        if self.health_checks.get(&key) != Some(&e.check) {
            // From a check since replaced or removed: its new slot starts up.
            return false;
        }
        if up {
            self.health_down.remove(&key).is_some()
        } else {
            self.health_down.insert(key, remove) != Some(remove)
        }
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
        self.retiring.overlay(&mut e);
        for (cfg, _, _) in &mut e {
            if self.drains.done(cfg.vip) {
                for r in &mut cfg.reals {
                    r.weight = 0;
                }
            }
        }
        e
    }

    fn effective_now(&self) -> Vec<crate::forward::ServiceSpec> {
        let sorry = crate::config::health::sorry_servers(&self.configured.services);
        self.effective(&self.configured_services, &self.health_down, &sorry)
    }

    /// Per configured service: its VIP, and whether it has a real server with a weight above 0
    /// that the health checks do not hold down (`kernel::announce`).
    fn vips_up(&self) -> Vec<(std::net::IpAddr, bool)> {
        self.configured_services
            .iter()
            .map(|(cfg, _, _)| {
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
                (cfg.vip, up)
            })
            .collect()
    }

    /// Whether this box holds `vip` (`net::topology`): a config-owned VIP always, a
    /// kernel-owned one while a twin has it. What `kernel::announce` announces only.
    fn holds(&self, vip: std::net::IpAddr) -> bool {
        match vip {
            std::net::IpAddr::V4(v) => self.current.topo.local.contains(&v),
            std::net::IpAddr::V6(v) => !self.current.topo.silent6.contains(&v),
        }
    }

    /// The VIPs of the running services, each once.
    fn service_vips(&self) -> Vec<std::net::IpAddr> {
        let set: std::collections::BTreeSet<_> = self
            .current
            .services
            .services
            .iter()
            .map(|vs| vs.svc.config().vip)
            .collect();
        set.into_iter().collect()
    }

    /// Established connections on `vip`'s services (every worker): what a drain waits for.
    /// Inactive ones (SYN_RECV, FIN_WAIT, TIME_WAIT) carry no request worth waiting for.
    /// One pass over the services, whatever their number (a drain of the box counts every VIP).
    fn conns_by_vip(&self) -> std::collections::BTreeMap<std::net::IpAddr, u64> {
        let mut m = std::collections::BTreeMap::new();
        for vs in &self.current.services.services {
            let vip = vs.svc.config().vip;
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
        let (want, _) =
            crate::kernel::announce::announced(self.vips_up(), |v| self.holds(v), &self.drains);
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
        vip: Option<std::net::IpAddr>,
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
        vip: Option<std::net::IpAddr>,
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

    /// Lets go of the retiring local addresses no connection uses any more (`in_use`: the
    /// workers' published count on a (service, LIP)), in a generation without them. Called by
    /// the control loop once a second.
    pub fn tick_retiring(&mut self, in_use: impl Fn(&crate::service::LipKey) -> u64) {
        if self.retiring.is_empty() {
            return;
        }
        let now = Instant::now();
        let gone = self.retiring.release(now, in_use);
        if gone.is_empty() {
            return;
        }
        let what: Vec<String> = gone
            .iter()
            .map(|k| {
                let proto = if k.proto == 17 { "UDP" } else { "TCP" };
                let vip = std::net::SocketAddr::new(k.vip, k.vport);
                format!("{} of {proto} {vip}", k.lip)
            })
            .collect();
        let what = what.join(", ");
        match self.apply_services(self.effective_now()) {
            Ok(g) => self.events.record(
                crate::events::Kind::Config,
                format!(
                    "local address {what} let go, its last connection ended; generation {g} \
                     running on every worker"
                ),
            ),
            Err(e) => {
                self.retiring.restore(gone, now);
                tracing::error!("retiring local address {what}: {e}");
            }
        }
    }

    /// The retiring local addresses (`control::retire`).
    pub fn retiring(&self) -> &crate::control::retire::Retiring {
        &self.retiring
    }

    /// What `gwctl announce` shows.
    pub fn announce_view(&self) -> crate::kernel::announce::AnnounceView {
        let (_, withheld) =
            crate::kernel::announce::announced(self.vips_up(), |v| self.holds(v), &self.drains);
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
            match crate::config::health::targets(&self.configured.services) {
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
        self.listen6();
        Ok(id)
    }

    /// Makes the twins' kernel listen to the solicited-node groups of the IPv6 VIPs and LIPs the
    /// running generation answers (`kernel::mld`), so that snooping switches pass their
    /// neighbour solicitations to this box.
    fn listen6(&mut self) {
        if self.twins.is_empty() {
            return;
        }
        let twins: Vec<(u16, u32)> = self.twins.iter().map(|t| (t.0, t.3)).collect();
        let g = &self.current;
        let want = crate::kernel::mld::wanted(&g.topo, g.services.addresses6(), &twins);
        self.listening.follow(&want);
    }

    /// The groups the twins listen to for the services (ifindex, group), and the joins and
    /// leaves the kernel refused.
    pub fn listening6(&self) -> (Vec<(u32, std::net::Ipv6Addr)>, u64) {
        (self.listening.groups().collect(), self.listening.errors)
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
        .map(|p| (&p.addrs, &p.addrs6))
        .eq(b.ports.iter().map(|p| (&p.addrs, &p.addrs6)))
        && routes(a) == routes(b)
        && a.routes6 == b.routes6
        && set(&a.local) == set(&b.local)
        && set(&a.iface) == set(&b.iface)
        && a.silent6 == b.silent6
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel-owned IPv6 VIP taken over changes only `silent6`: a topology of its own, which
    /// the workers must get (the HA lab once saw the IPv6 VIP held and still refused, its
    /// address added in a netlink batch after the IPv4 VIP's).
    #[test]
    fn a_topology_differing_only_in_its_silent_ipv6_addresses_is_another() {
        let a = Topology::default();
        let mut b = a.clone();
        assert!(same_l3(&a, &b));
        b.silent6.insert("2001:db8:10::100".parse().unwrap());
        assert!(!same_l3(&a, &b));
    }

    /// An IPv6 address or route the kernel added on a twin is another topology too.
    #[test]
    fn a_topology_differing_only_in_its_ipv6_addresses_or_routes_is_another() {
        let port = crate::net::PortCtx {
            name: "server".into(),
            mac: crate::wire::MacAddr([2, 0, 0, 0, 0, 1]),
            addrs: Vec::new(),
            addrs6: Vec::new(),
            twin: true,
        };
        let a = Topology::new(vec![port], &[]);
        let mut b = a.clone();
        b.ports[0].addrs6 = vec!["2001:db8:20::1/64".parse().unwrap()];
        assert!(!same_l3(&a, &b));
        let mut c = a.clone();
        let route = ("2001:db8:40::/48".parse().unwrap(), None, 0);
        c.routes6 = crate::inet6::Routes6::new(&c.ports, &[route]);
        assert!(!same_l3(&a, &c));
        assert!(same_l3(&c, &c.clone()));
    }

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
            retiring: Default::default(),
            listening: Default::default(),
            provenance: Provenance::default(),
            twins: Vec::new(),
            configured: Default::default(),
            configured_services: Vec::new(),
            spec_cache: Default::default(),
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

    /// A control plane running the lab's services with a TCP check on the TCP one's real
    /// servers (two fake workers), its config and its validation.
    fn checked_lab() -> (
        Control,
        Vec<std::thread::JoinHandle<Vec<String>>>,
        Config,
        crate::config::Validated,
    ) {
        let (mut control, handles) = fake_workers(2, None);
        let text = crate::testkit::LAB_CONFIG.replacen(
            "scheduler = \"wrr\"",
            "scheduler = \"wrr\"\ncheck = { kind = \"tcp\" }",
            1,
        );
        let cfg = Config::parse(&text).unwrap();
        let v = cfg.validate().unwrap();
        let model = crate::control::model::Model::of_entries(&cfg.services);
        control.apply_model(model, v.services.clone()).unwrap();
        (control, handles, cfg, v)
    }

    /// The check of the TCP service's real server `rs` reporting it down.
    fn down_event(cfg: &Config, rs: std::net::Ipv4Addr) -> crate::health::runner::Event {
        let targets = crate::config::health::targets(&cfg.services).unwrap();
        let t = targets
            .iter()
            .find(|t| t.key.rs == std::net::IpAddr::from(rs) && t.key.proto == 6)
            .unwrap();
        crate::health::runner::Event {
            key: t.key,
            up: false,
            reason: "connection refused".into(),
            remove: false,
            check: t.check.clone(),
        }
    }

    /// Transitions reported together go through one generation: both servers of a service down
    /// at once is one change, and a transition that changes nothing is said so.
    #[test]
    fn health_transitions_reported_together_make_one_generation() {
        let (mut control, handles, cfg, _) = checked_lab();
        let before = control.current().id;
        let rs1 = down_event(&cfg, crate::testkit::RS1);
        let events = [rs1.clone(), down_event(&cfg, crate::testkit::RS2), rs1];
        let (changed, applied) = control.set_health_all(&events);
        assert_eq!(changed, [true, true, false]);
        assert_eq!(applied.unwrap().unwrap(), before + 1, "one generation");
        assert_eq!(control.current().id, before + 1);
        assert_eq!(control.current().services.services[0].svc.weights(), [0, 0]);
        // Nothing new: no generation.
        let (changed, applied) = control.set_health_all(&events[..1]);
        assert_eq!((changed, applied.is_none()), (vec![false], true));
        assert_eq!(control.current().id, before + 1);
        finish(control, handles);
    }

    /// A health transition goes through a generation; one reported by a check since replaced is
    /// ignored; removing a check releases its server in the same generation.
    #[test]
    fn health_transitions_follow_the_current_check_only() {
        let (mut control, handles, cfg, v) = checked_lab();
        let weight = |c: &Control| c.current().services.services[0].svc.weights()[0];
        assert_eq!(weight(&control), 1);
        let down = down_event(&cfg, crate::testkit::RS1);
        assert!(control.set_health(&down).unwrap().is_some());
        assert_eq!(weight(&control), 0);
        // From a check that is not the current one: nothing happens.
        let mut other = down.check.clone();
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
            .apply_model(crate::control::model::Model::of_entries(&services), specs)
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

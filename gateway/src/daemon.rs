//! Bringing the gateway up and down: EAL, pools, ports, rings, workers, and the main lcore's control
//! loop (signals, counters). Everything here runs on the main lcore; the workers run `worker::Worker`.

use crate::config::Config;
use crate::control::commit::{expire_templates, Control, Wiring};
use crate::control::topology::{self, TopoInputs};
use crate::datapath::Datapath;
use crate::dpdk::{self, Eal, MbufRing, Mempool, Port, PortConfig};
use crate::events::Kind;
use crate::forward::{Forwarder, FwdConfig, FwdStats, ServiceTable};
use crate::kernel::{KernelView, TwinKind};
use crate::laddr::{PortLayout, QueueMap, Reta, RssConfig, Steering};
use crate::net::neigh::NeighConfig;
use crate::net::{PortCtx, Topology};
use crate::stats::WorkerStats;
use crate::worker::{Ack, Generation, Msg, Worker};
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
    cfg.check_mbufs_left(pool.available())?;
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
            crate::net::punt::PuntBudget::new(cfg.kernel.punt_rate, cfg.kernel.punt_burst);
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
    let twin_names = twins
        .iter()
        .map(|t| {
            let driver = match t.kind {
                TwinKind::Tap => "tap",
                TwinKind::VirtioUser => "virtio-user",
            };
            (t.port, t.name.clone(), driver, t.ifindex)
        })
        .collect();
    let wiring = Wiring {
        workers: senders,
        acks: ack_rx,
        epoch_tsc,
        tsc_per_ms: (tsc_hz / 1000).max(1),
        health_status,
        health_targets: Some(targets_tx),
        announcer,
        sync,
    };
    let first = Generation {
        id: 1,
        topo: topo.clone(),
        services: services.clone(),
        timeouts: cfg.conn.timeouts,
        conn_reuse_mode: cfg.conn.conn_reuse_mode,
    };
    let control = Control::new(
        wiring,
        cfg,
        first,
        inputs,
        provenance,
        v.services.clone(),
        twin_names,
    );
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
        let model = crate::control::model::Model::of_entries(&new.services);
        self.control
            .lock()
            .map_err(|_| "control poisoned")?
            .apply_config(v, model)
    }

    /// Per-worker counters as last published, and their sum, without the per-key lists
    /// (`WorkerStats::without_lists`).
    pub fn stats(&self) -> (Vec<WorkerStats>, WorkerStats) {
        let per: Vec<WorkerStats> = self
            .published
            .iter()
            .map(|p| p.lock().map(|mut s| s.without_lists()).unwrap_or_default())
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
            let _ = write!(out, "conn {i}:");
            for (name, (_, n)) in FwdStats::FIELDS.iter().zip(s.fwd.named()) {
                let _ = write!(out, " {name} {n}");
            }
            let _ = writeln!(out);
        }
        for (i, s) in per.iter().enumerate() {
            let _ = write!(out, "neigh {i}:");
            for (name, n) in s.neigh.named() {
                let _ = write!(out, " {} {n}", name.trim_start_matches("neigh_"));
            }
            let _ = writeln!(out);
        }
        // IPv6's neighbour table: the same counters, on a line of its own.
        for (i, s) in per.iter().enumerate() {
            let _ = write!(out, "neigh6 {i}:");
            for (name, n) in s.neigh6.named() {
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
            for (name, n) in s.punt.reported() {
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
    neighs: Vec<(std::net::IpAddr, crate::wire::MacAddr, u16)>,
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
                // Every transition waiting, in one generation.
                let (changed, applied) = c.set_health_all(&health_pending);
                for (e, changed) in health_pending.drain(..).zip(changed) {
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
                    let m = match (changed, &applied) {
                        (true, Some(Ok(g))) => format!(
                            "{what}: {}; generation {g} running on every worker",
                            match (e.up, e.remove) {
                                (true, _) => "restored",
                                (false, false) => "at weight 0",
                                (false, true) => "removed",
                            }
                        ),
                        (true, Some(Err(err))) => format!("{what}: change not applied: {err}"),
                        _ => what,
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
            // Retiring local addresses whose last connection ended go (`control::retire`); the
            // workers' counts are read before the control lock is tried.
            let usage = crate::control::retire::in_use(&run.published);
            if let Ok(mut c) = run.control.try_lock() {
                c.tick_retiring(|k| usage.get(k).copied().unwrap_or(0));
            }
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

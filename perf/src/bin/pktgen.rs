//! `pktgen [OPTIONS] -- <EAL args>`: generates client traffic toward a VIP on one port, plays the
//! real servers on another, prints progress once a second on stderr and the JSON result on stdout
//! (or `--json FILE`).
//!
//! Example against the gateway of `perf/bench` (memif sockets it created as server):
//! `pktgen --flows 1000 --duration 5 -- -l 0,1 --main-lcore 1 --file-prefix pg --no-pci
//!  --vdev net_memif0,role=client,socket=/run/gw-c.sock --vdev net_memif1,role=client,socket=/run/gw-s.sock`

use clap::Parser;
use gateway::dpdk::{self, Eal, Mempool, Port, PortConfig};
use gateway::wire::MacAddr;
use perf::engine::{self, GenConfig, GenPorts, GenV6};
use perf::flows::FlowSpace;
use perf::report::{progress_line, Progress, RunResult};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Packet generator and reflector for gateway benchmarks (memif)")]
struct Args {
    /// DPDK device name of the port facing the gateway's client side.
    #[arg(long, default_value = "net_memif0")]
    client_port: String,
    /// DPDK device name of the port facing the gateway's server side.
    #[arg(long, default_value = "net_memif1")]
    server_port: String,
    /// Queues per port (the gateway's worker count); frames go to the queue RSS would pick.
    #[arg(long, default_value_t = 1)]
    queues: u16,
    /// RETA size of the RSS being played.
    #[arg(long, default_value_t = perf::rss::DEFAULT_RETA_SIZE)]
    reta_size: usize,
    /// UDP datagrams instead of TCP connections.
    #[arg(long)]
    udp: bool,
    /// Concurrent flows (5-tuples).
    #[arg(long, default_value_t = 1000)]
    flows: u32,
    /// First client address; flows use 60000 ports per address.
    #[arg(long, default_value = "198.18.0.0")]
    flow_base: Ipv4Addr,
    /// Frame size without FCS (60 = 64-byte frames on the wire).
    #[arg(long, default_value_t = 60)]
    size: usize,
    /// Client frames per second in the data phase (0 = flat out).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// SYNs per second while opening connections (0 = flat out).
    #[arg(long, default_value_t = 0.0)]
    open_rate: f64,
    /// Longest time spent opening connections, seconds.
    #[arg(long, default_value_t = 30.0)]
    open_timeout: f64,
    /// Warm-up before measuring, seconds.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Measured data phase, seconds.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    #[arg(long, default_value = "10.10.0.100")]
    vip: Ipv4Addr,
    #[arg(long, default_value_t = 80)]
    vport: u16,
    /// Our address on the client side (the clients' router, the gateway's next hop).
    #[arg(long, default_value = "10.10.0.2")]
    client_ip: Ipv4Addr,
    #[arg(long, default_value = "10.10.0.1")]
    gw_client_ip: Ipv4Addr,
    #[arg(long, default_value = "10.20.0.1")]
    gw_server_ip: Ipv4Addr,
    /// Real servers to announce by ARP (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "10.20.0.11,10.20.0.12")]
    real_servers: Vec<Ipv4Addr>,
    /// The device under test's MACs "client,server": skips ARP (testpmd in the gateway's place).
    #[arg(long, value_delimiter = ',')]
    dut_macs: Vec<MacAddr>,
    /// Flat out: most frames in flight before generation pauses (closed loop).
    #[arg(long, default_value_t = 1024)]
    window: u64,
    /// Mbufs in the pool.
    #[arg(long, default_value_t = 32767)]
    mbufs: u32,
    /// SYNs per second from random spoofed sources during the data phase (0: no flood).
    #[arg(long, default_value_t = 0.0)]
    syn_flood: f64,
    /// The spoofed sources: this address's /16.
    #[arg(long, default_value = "198.19.0.0")]
    flood_base: Ipv4Addr,
    /// IPv6: the clients (the /96 of --flow-base6 followed by each flow's --flow-base address)
    /// speak IPv6 to --vip6, the real servers --real-servers6 answer it; one queue only.
    #[arg(long)]
    ipv6: bool,
    #[arg(long, default_value = "2001:db8:10::100")]
    vip6: Ipv6Addr,
    #[arg(long, default_value = "2001:db8:c6::")]
    flow_base6: Ipv6Addr,
    #[arg(long, default_value = "2001:db8:10::2")]
    client_ip6: Ipv6Addr,
    #[arg(long, default_value = "2001:db8:10::1")]
    gw_client_ip6: Ipv6Addr,
    #[arg(long, default_value = "2001:db8:20::1")]
    gw_server_ip6: Ipv6Addr,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "2001:db8:20::11,2001:db8:20::12"
    )]
    real_servers6: Vec<Ipv6Addr>,
    /// Write the JSON result here instead of stdout.
    #[arg(long)]
    json: Option<String>,
    /// After the result is written (or failed to be), say `pktgen: done` on stderr and keep the
    /// ports connected until standard input closes (or SIGINT/SIGTERM, or 60 s): the harness
    /// stops the device under test first. DPDK 22.11's memif unmaps a peer's regions in its
    /// interrupt thread when the peer disconnects, while a polling lcore may be reading a ring in
    /// them; a DUT still forwarding when pktgen left crashed in 1 run of 16 (perf/RESULTS.md, "A
    /// DUT that crashed when pktgen left").
    #[arg(long)]
    linger: bool,
    /// EAL arguments (after `--`).
    #[arg(last = true)]
    eal: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(r) => {
            if let Some(e) = &r.error {
                eprintln!("pktgen: error: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pktgen: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes the result to `--json`'s file or stdout (before the ports close: `--linger`).
fn emit(a: &Args, r: &RunResult) -> Result<(), String> {
    let text = serde_json::to_string_pretty(r).unwrap_or_default();
    match &a.json {
        Some(path) => {
            std::fs::write(path, text + "\n").map_err(|e| format!("cannot write {path}: {e}"))
        }
        None => {
            println!("{text}");
            Ok(())
        }
    }
}

/// `--linger`: waits until standard input closes, a stop signal arrives or 60 s pass.
fn linger(stop: &AtomicBool) {
    let (tx, rx) = std::sync::mpsc::channel();
    // A detached reader: it ends when stdin closes (or with the process).
    std::thread::spawn(move || {
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        let _ = tx.send(());
    });
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) && !stop.load(std::sync::atomic::Ordering::Relaxed)
    {
        if rx.recv_timeout(Duration::from_millis(50)).is_ok() {
            return;
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 3600.0))
}

fn run(a: &Args) -> Result<RunResult, String> {
    if !a.dut_macs.is_empty() && a.dut_macs.len() != 2 {
        return Err("--dut-macs takes two MACs: client side, server side".into());
    }
    let mut argv = vec!["pktgen".to_string()];
    argv.extend(a.eal.iter().cloned());
    let eal = Eal::init(&argv).map_err(|e| e.to_string())?;
    let lcore = *eal
        .worker_lcores()
        .first()
        .ok_or("EAL needs a worker lcore (e.g. -l 0,1)")?;
    let pool =
        Arc::new(Mempool::new("pktgen_pool", a.mbufs, 256, 2176, -1).map_err(|e| e.to_string())?);
    let pc = PortConfig {
        rx_queues: a.queues,
        tx_queues: a.queues,
        rx_desc: 1024,
        tx_desc: 1024,
        rss: false,
        csum_offload: false,
        promiscuous: false,
        mtu: None,
    };
    let start = |name: &str| -> Result<Port, String> {
        let id = Port::id_by_name(name).map_err(|e| e.to_string())?;
        Port::start(id, name, &pc, &pool).map_err(|e| e.to_string())
    };
    let client = start(&a.client_port)?;
    let server = start(&a.server_port)?;
    // memif links come up when the peer connects.
    let t = Instant::now();
    while !(client.link().up && server.link().up) {
        if t.elapsed() > Duration::from_secs(15) {
            return Err(format!(
                "memif links not up after 15 s (client {}, server {})",
                client.link().up,
                server.link().up
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let cfg = GenConfig {
        udp: a.udp,
        flows: FlowSpace {
            base: a.flow_base,
            count: a.flows.max(1),
        },
        size: a.size,
        rate_pps: (a.rate > 0.0).then_some(a.rate),
        open_rate: (a.open_rate > 0.0).then_some(a.open_rate),
        open_timeout: secs(a.open_timeout),
        warmup: secs(a.warmup),
        duration: secs(a.duration),
        queues: a.queues.max(1),
        reta_size: a.reta_size,
        vip: a.vip,
        vport: a.vport,
        client_ip: a.client_ip,
        gw_client_ip: a.gw_client_ip,
        gw_server_ip: a.gw_server_ip,
        real_servers: a.real_servers.clone(),
        gw_macs: (a.dut_macs.len() == 2).then(|| (a.dut_macs[0], a.dut_macs[1])),
        window: a.window.max(1),
        tsc_hz: dpdk::tsc_hz(&eal),
        syn_flood_pps: (a.syn_flood > 0.0).then_some(a.syn_flood),
        flood_base: a.flood_base,
        v6: a.ipv6.then(|| GenV6 {
            vip: a.vip6,
            client_prefix: a.flow_base6,
            client_ip: a.client_ip6,
            gw_client_ip: a.gw_client_ip6,
            gw_server_ip: a.gw_server_ip6,
            real_servers: a.real_servers6.clone(),
        }),
    };
    let ports = GenPorts {
        client: client.id,
        server: server.id,
        client_mac: client.mac().map_err(|e| e.to_string())?,
        server_mac: server.mac().map_err(|e| e.to_string())?,
        pool: pool.clone(),
    };
    let progress = Arc::new(Progress::default());
    let stop = Arc::new(AtomicBool::new(false));
    // SIGINT/SIGTERM: the generator stops at its next check and reports what it has.
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let (progress, stop) = (progress.clone(), stop.clone());
        dpdk::launch_on_lcore(&eal, lcore, move || {
            let r = engine::run(&cfg, &ports, &progress, &stop);
            let _ = tx.send(r);
            0
        })
        .map_err(|e| e.to_string())?;
    }
    // The main lcore: a progress line once a second until the generator sends its result.
    // Bounded: the generator's phases are all bounded in time, and a stop request ends them. It
    // sleeps in between (one wake-up a second): this thread shares the measured gateway's or
    // testpmd's CPU, and every wake-up preempts it.
    let mut prev = progress.snapshot();
    let mut last = Instant::now();
    let result = loop {
        let left = Duration::from_secs(1).saturating_sub(last.elapsed());
        match rx.recv_timeout(left) {
            Ok(r) => break Some(r),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break None,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let now = progress.snapshot();
                eprintln!(
                    "{}",
                    progress_line(&prev, &now, last.elapsed().as_secs_f64())
                );
                prev = now;
                last = Instant::now();
            }
        }
    };
    let rc = dpdk::wait_lcore(&eal, lcore);
    let mut r = result.ok_or_else(|| format!("generator lcore failed (rc {rc})"))?;
    r.load_avg = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string();
    // A result that cannot be written is still an error, but only once the DUT has stopped
    // and EAL's directory is gone: leaving at once is what crashed the DUT.
    let emitted = emit(a, &r);
    if a.linger {
        eprintln!("pktgen: done");
        linger(&stop);
    }
    drop(client);
    drop(server);
    drop(pool);
    drop(eal);
    // EAL leaves its runtime directory behind; it belongs to this run's prefix only.
    if let Some(i) = a.eal.iter().position(|x| x == "--file-prefix") {
        if let Some(p) = a
            .eal
            .get(i + 1)
            .filter(|p| !p.is_empty() && !p.contains('/'))
        {
            let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{p}"));
        }
    }
    emitted?;
    Ok(r)
}

//! Reply steering with RSS, end to end: the gateway runs 2 workers on memif ports that emulate RSS
//! (`rss_emulate_reta`), pktgen plays the NIC (each frame on the queue its Toeplitz hash selects) and the
//! real servers. Every reply must arrive on the queue of the worker that owns its connection: no ring
//! handoff at all, every handshake and echo completes. Without the emulation, the same traffic needs the
//! rings (the fallback path), which is checked too. Needs root and hugepages (scripts/setup.sh).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bins() -> (PathBuf, PathBuf) {
    let pktgen = PathBuf::from(env!("CARGO_BIN_EXE_pktgen"));
    let dir = pktgen.parent().unwrap().to_path_buf();
    if !dir.join("gateway").exists() || !dir.join("gwctl").exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args([
                "build", "-p", "gateway", "--bin", "gateway", "--bin", "gwctl",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap()
            .success();
        assert!(ok, "building the gateway binary failed");
    }
    (dir.join("gateway"), pktgen)
}

struct Run {
    dir: PathBuf,
    gateway: Option<Child>,
    tag: String,
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(mut g) = self.gateway.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &g.id().to_string()])
                .status();
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                if g.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = g.kill();
            let _ = g.wait();
        }
        for p in ["gw", "pg"] {
            let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}{p}", self.tag));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sum of `key N` over the `worker i:` lines of the gateway's stats file.
fn worker_sum(stats: &str, key: &str) -> u64 {
    stats
        .lines()
        .filter(|l| l.starts_with("worker "))
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.iter()
                .position(|x| *x == key)
                .and_then(|i| w.get(i + 1)?.parse::<u64>().ok())
        })
        .sum()
}

/// The bench service as ipvsadm rules (`-R`): the same VIP, LIPs and real servers.
fn bench_rules() -> String {
    let mut r = String::from("-A -t 10.10.0.100:80 -s rr\n");
    for i in 0..32 {
        r += &format!("-P -t 10.10.0.100:80 -z 10.20.1.{i}\n");
    }
    for i in 11..=18 {
        r += &format!("-a -t 10.10.0.100:80 -r 10.20.0.{i}:80 -b -w 1\n");
    }
    r
}

/// Runs 1000 TCP flows through a 2-worker gateway; returns (pktgen JSON, the gateway's stats).
/// `runtime_service`: the gateway starts without services and gets the bench's with `ipvsadm -R`
/// (as conf/gateway.service starts it), before pktgen runs.
fn run(tag: &str, emulate_rss: bool) -> (serde_json::Value, String) {
    run_with(tag, emulate_rss, false)
}

fn run_with(tag: &str, emulate_rss: bool, runtime_service: bool) -> (serde_json::Value, String) {
    let (gw_bin, pg_bin) = bins();
    let tag = format!("{tag}{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("rss-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let (c, s) = (format!("/run/{tag}-c.sock"), format!("/run/{tag}-s.sock"));
    let base =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/bench.toml"))
            .unwrap();
    let emulate = if emulate_rss {
        "rss_emulate_reta = 128\n"
    } else {
        ""
    };
    let conf = base
        .replace("count = 1\ncpus = [1]", "count = 2\ncpus = [0, 1]")
        .replace("idle_sleep_us = 0", "idle_sleep_us = 20")
        .replace("memory_mb = 512", "memory_mb = 128")
        .replace("mbufs = 32767", "mbufs = 8191")
        .replace("capacity = 1048576", "capacity = 65536")
        .replace("/run/gwperf-c.sock", &c)
        .replace("/run/gwperf-s.sock", &s)
        .replace(
            "csum_offload = false\n",
            &format!("csum_offload = false\n{emulate}"),
        );
    assert!(conf.contains("count = 2"), "bench.toml changed shape");
    let conf = if runtime_service {
        let cut = conf
            .find("\n[[service]]")
            .expect("bench.toml has a service");
        conf[..cut].to_string()
    } else {
        conf
    };
    let cfg = dir.join("gateway.toml");
    std::fs::write(&cfg, conf).unwrap();
    let stats = dir.join("stats.txt");
    let log = std::fs::File::create(dir.join("gateway.log")).unwrap();
    let gateway = Command::new(&gw_bin)
        .arg("--config")
        .arg(&cfg)
        .args(["--file-prefix", &format!("{tag}gw"), "--stats-file"])
        .arg(&stats)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let r = Run {
        dir: dir.clone(),
        gateway: Some(gateway),
        tag: tag.clone(),
    };
    let t = Instant::now();
    while !std::fs::read_to_string(dir.join("gateway.log"))
        .unwrap_or_default()
        .contains("gateway ready")
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "gateway did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    if runtime_service {
        let gwctl = gw_bin.with_file_name("gwctl");
        let mut c = Command::new(&gwctl)
            .args([
                "--socket",
                &format!("/run/gateway/{tag}gw.sock"),
                "ipvsadm",
                "-R",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        c.stdin
            .take()
            .unwrap()
            .write_all(bench_rules().as_bytes())
            .unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "ipvsadm -R: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let out = dir.join("pktgen.json");
    let pg = Command::new(pg_bin)
        .args(["--queues", "2", "--reta-size", "128", "--flows", "1000", "--rate", "20000"])
        .args(["--warmup", "0.2", "--duration", "1", "--mbufs", "8191", "--open-timeout", "10"])
        .args(["--real-servers", "10.20.0.11,10.20.0.12,10.20.0.13,10.20.0.14,10.20.0.15,10.20.0.16,10.20.0.17,10.20.0.18"])
        .arg("--json")
        .arg(&out)
        .args(["--", "-l", "0,1", "--main-lcore", "1", "--no-pci", "--file-prefix", &format!("{tag}pg")])
        .args(["-m", "128", "--log-level", "notice"])
        .args(["--vdev", &format!("net_memif0,role=client,socket={c},id=0")])
        .args(["--vdev", &format!("net_memif1,role=client,socket={s},id=0")])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        pg.status.success(),
        "pktgen failed: {}",
        String::from_utf8_lossy(&pg.stderr)
    );
    std::thread::sleep(Duration::from_millis(500));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let st = std::fs::read_to_string(&stats).unwrap_or_default();
    if json["open"]["established"] != 1000 {
        // For the failure's message: the run directory goes with `r`.
        let log = std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default();
        eprintln!(
            "gateway log:\n{log}\npktgen stderr:\n{}",
            String::from_utf8_lossy(&pg.stderr)
        );
    }
    drop(r);
    (json, st)
}

#[test]
fn with_rss_every_reply_reaches_its_owner_without_rings() {
    let (j, stats) = run("rs", true);
    assert_eq!(
        j["open"]["established"], 1000,
        "every handshake completes: {}",
        j["open"]
    );
    let d = &j["data"];
    assert!(d["rx_packets"].as_u64().unwrap() > 0, "{d}");
    // Echoes come back (a stray loss on this shared VM is not what this test is about).
    assert!(d["loss_ratio"].as_f64().unwrap() < 0.01, "{d}");
    assert!(worker_sum(&stats, "steer_hits") > 0, "{stats}");
    assert_eq!(
        worker_sum(&stats, "handoff_out"),
        0,
        "RSS put every reply on its owner's queue:\n{stats}"
    );
    // Both workers carried traffic: the emulated RSS spread the flows.
    for w in ["worker 0:", "worker 1:"] {
        let line = stats
            .lines()
            .find(|l| l.starts_with(w))
            .unwrap_or_else(|| panic!("{stats}"));
        let rx: u64 = line.split_whitespace().nth(3).unwrap().parse().unwrap();
        assert!(rx > 100, "{line}");
    }
}

/// A gateway started without services (as conf/gateway.service starts it) still steers replies by
/// RSS for a service added at run time: steering hits, no ring handoff.
#[test]
fn a_service_added_at_run_time_is_steered_by_rss_too() {
    let (j, stats) = run_with("ra", true, true);
    assert_eq!(j["open"]["established"], 1000, "{}", j["open"]);
    assert!(worker_sum(&stats, "steer_hits") > 0, "{stats}");
    assert_eq!(worker_sum(&stats, "handoff_out"), 0, "{stats}");
}

#[test]
fn without_rss_the_rings_carry_the_replies() {
    let (j, stats) = run("rn", false);
    assert_eq!(
        j["open"]["established"], 1000,
        "every handshake completes: {}",
        j["open"]
    );
    assert!(
        worker_sum(&stats, "handoff_out") > 0,
        "partition steering needs the rings:\n{stats}"
    );
    assert_eq!(
        worker_sum(&stats, "handoff_out"),
        worker_sum(&stats, "handoff_in"),
        "{stats}"
    );
}

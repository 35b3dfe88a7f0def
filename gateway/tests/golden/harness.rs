//! Runs the real `gateway` binary on DPDK's pcap driver: frames in (rx_pcap), frames out (tx_pcap).
//!
//! The pcap driver reads its rx file once and then sees nothing more while the gateway keeps polling,
//! so a run is: write in.pcap, start the gateway, wait until its counters say every input frame was
//! received and the output holds the expected number of frames (then a little longer, so that extra
//! frames would show), SIGTERM, wait for exit 0, read out.pcap. Each run has its own directory and
//! EAL file prefix (parallel tests), removed when the run is dropped, even after a failed assertion.

use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a run may take to receive its input and produce its output.
const SETTLE_DEADLINE: Duration = Duration::from_secs(15);
/// Once the output is complete, how long it must stay unchanged (extra frames would show here):
/// longer than the ARP retry interval (`neighbour.retry_ms`, 1 s), so that a retry or a late
/// request the gateway should not have sent shows up as an extra frame.
const QUIET: Duration = Duration::from_millis(1300);
/// With every input frame received but the output short, how long to wait before giving up and
/// letting the comparison say which frames are missing.
const GIVE_UP: Duration = Duration::from_millis(2000);
const EXIT_DEADLINE: Duration = Duration::from_secs(10);

/// The result of one run.
pub struct Outcome {
    pub frames: Vec<Vec<u8>>,
    /// The counters from `--stats-file`, as last written before SIGTERM.
    pub stats: String,
    /// The gateway's stderr (its log, including the final counter report).
    pub log: String,
}

impl Outcome {
    /// `drop <name> <n>` from the stats, 0 when absent (only non-zero reasons are listed).
    pub fn drops(&self, name: &str) -> u64 {
        counter_line(&self.stats, &format!("drop {name} "))
    }

    /// Every `drop` line, for messages.
    pub fn drop_lines(&self) -> Vec<&str> {
        self.stats
            .lines()
            .filter(|l| l.starts_with("drop "))
            .collect()
    }

    /// A `key N` counter on the `worker 0:` line.
    pub fn worker(&self, key: &str) -> u64 {
        worker_counter(&self.stats, key).unwrap_or(0)
    }
}

fn counter_line(stats: &str, prefix: &str) -> u64 {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// `key N` on the line starting `worker 0:` (one worker).
fn worker_counter(stats: &str, key: &str) -> Option<u64> {
    let line = stats.lines().find(|l| l.starts_with("worker 0:"))?;
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == key {
            return words.next()?.parse().ok();
        }
    }
    None
}

/// A run's directory, process and EAL prefix; all go away on drop (also when a test fails midway).
struct Run {
    dir: PathBuf,
    prefix: String,
    child: Option<Child>,
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if matches!(c.try_wait(), Ok(None)) {
                // SIGTERM first so EAL cleans up after itself; SIGKILL if it does not stop.
                let _ = Command::new("kill")
                    .args(["-TERM", &c.id().to_string()])
                    .status();
                let deadline = Instant::now() + EXIT_DEADLINE;
                while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        // EAL's runtime directory for this prefix (the daemon removes it on a clean exit only).
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
    }
}

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "gold{tag}{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut w = PcapWriter::new(File::create(path).expect("create in.pcap")).expect("pcap header");
    for (i, f) in frames.iter().enumerate() {
        // Timestamps 1 ms apart; the pcap driver does not pace by them.
        let ts = Duration::from_millis(1_700_000_000_000 + i as u64);
        w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
            .expect("write frame");
    }
}

/// The complete frames in a pcap file that may still be being written: a torn last record is ignored.
fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let Ok(file) = File::open(path) else {
        return Vec::new();
    };
    let Ok(mut r) = PcapReader::new(file) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    while let Some(Ok(p)) = r.next_packet() {
        assert_eq!(
            p.orig_len as usize,
            p.data.len(),
            "tx pcap truncated a frame (snaplen)"
        );
        out.push(p.data.into_owned());
    }
    out
}

/// Runs the gateway on `input` and returns what it sent once `expected_out` frames are out and the
/// output is quiet. `tag` names the run (shows in the EAL prefix).
pub fn run(tag: &str, input: &[Vec<u8>], expected_out: usize) -> Outcome {
    let name = unique(tag);
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).expect("run dir");
    let mut run = Run {
        dir: dir.clone(),
        prefix: name.clone(),
        child: None,
    };
    let (inp, outp, stats, log, cfg) = (
        dir.join("in.pcap"),
        dir.join("out.pcap"),
        dir.join("stats"),
        dir.join("log"),
        dir.join("gw.toml"),
    );
    write_pcap(&inp, input);
    let text = super::frames::config(&name, inp.to_str().unwrap(), outp.to_str().unwrap());
    std::fs::write(&cfg, text).expect("write config");
    let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--stats-file",
            stats.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(File::create(dir.join("stdout")).expect("stdout file"))
        .stderr(File::create(&log).expect("log file"))
        .spawn()
        .expect("start gateway");
    let pid = child.id();
    run.child = Some(child);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // Settle: every input frame received (the worker's rx counter) and enough frames out, then quiet.
    // The pcap driver flushes its tx file after each burst, so the output can be watched growing.
    let start = Instant::now();
    let mut last_count = usize::MAX;
    let mut last_change = Instant::now();
    loop {
        if let Some(Ok(Some(st))) = run.child.as_mut().map(|c| c.try_wait()) {
            panic!(
                "{name}: gateway exited early with {st}; log:\n{}",
                read_log()
            );
        }
        let n = read_pcap(&outp).len();
        if n != last_count {
            last_count = n;
            last_change = Instant::now();
        }
        let s = std::fs::read_to_string(&stats).unwrap_or_default();
        let received = worker_counter(&s, "rx").unwrap_or(0) as usize;
        let all_in = received >= input.len();
        if all_in && n >= expected_out && last_change.elapsed() >= QUIET {
            break;
        }
        if all_in && last_change.elapsed() >= GIVE_UP {
            break; // short output: assert_frames will name the missing frames
        }
        if start.elapsed() > SETTLE_DEADLINE {
            panic!(
                "{name}: no settled output after {SETTLE_DEADLINE:?}: {n} of {expected_out} frames out, \
                 {received} of {} received; stats:\n{s}\nlog:\n{}",
                input.len(),
                read_log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats_text = std::fs::read_to_string(&stats).unwrap_or_default();

    // Stop: SIGTERM, exit 0 within the deadline.
    let st = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "{name}: kill -TERM {pid} failed");
    let deadline = Instant::now() + EXIT_DEADLINE;
    let status = loop {
        match run.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(st))) => break st,
            _ if Instant::now() > deadline => {
                panic!("{name}: gateway ignored SIGTERM; log:\n{}", read_log())
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let log_text = read_log();
    assert!(
        status.success(),
        "{name}: gateway exited with {status}; log:\n{log_text}"
    );
    assert!(
        log_text.contains("mempool in_use 0"),
        "{name}: mbufs leaked; log:\n{log_text}"
    );
    Outcome {
        frames: read_pcap(&outp),
        stats: stats_text,
        log: log_text,
    }
}

//! The JSON result of one pktgen run (serde), and the live progress counters the generator lcore
//! publishes for the main lcore's once-a-second line.

use crate::latency::LatencySummary;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters the generator publishes about every millisecond (never per packet).
#[derive(Debug, Default)]
pub struct Progress {
    pub phase: AtomicU64,
    pub tx: AtomicU64,
    pub tx_dropped: AtomicU64,
    pub rx_echo: AtomicU64,
    pub established: AtomicU64,
    pub reflected: AtomicU64,
}

/// Phases, as `Progress::phase` numbers them.
pub const PHASES: [&str; 5] = ["arp", "open", "warmup", "measure", "drain"];

/// A snapshot of [`Progress`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgressSnapshot {
    pub phase: u64,
    pub tx: u64,
    pub tx_dropped: u64,
    pub rx_echo: u64,
    pub established: u64,
    pub reflected: u64,
}

impl Progress {
    pub fn snapshot(&self) -> ProgressSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProgressSnapshot {
            phase: r(&self.phase),
            tx: r(&self.tx),
            tx_dropped: r(&self.tx_dropped),
            rx_echo: r(&self.rx_echo),
            established: r(&self.established),
            reflected: r(&self.reflected),
        }
    }
}

/// The line printed once a second: rates over the last interval.
pub fn progress_line(prev: &ProgressSnapshot, now: &ProgressSnapshot, secs: f64) -> String {
    let rate = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / secs.max(1e-9) / 1e6;
    format!(
        "pktgen: {:<7} tx {:>7.3} Mpps rx {:>7.3} Mpps reflected {:>7.3} Mpps tx_drop {:>9} established {:>9}",
        PHASES.get(now.phase as usize).copied().unwrap_or("?"),
        rate(prev.tx, now.tx),
        rate(prev.rx_echo, now.rx_echo),
        rate(prev.reflected, now.reflected),
        now.tx_dropped,
        now.established
    )
}

/// The handshake phase (TCP).
#[derive(Debug, Clone, Default, Serialize)]
pub struct OpenResult {
    pub flows: u32,
    pub syn_sent: u64,
    pub established: u32,
    /// Passes over the flows not yet established (SYN retries).
    pub passes: u32,
    /// First SYN to the last new SYN-ACK of the first pass.
    pub seconds: f64,
    /// Connections established per second in the first pass.
    pub cps: f64,
    pub handshake_latency: LatencySummary,
}

/// The measured data phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DataResult {
    /// SYN flood (`--syn-flood`): spoofed SYNs sent while measuring, and the SYN-ACKs the device
    /// under test sent back for them (its SYN proxy's cookies, or testpmd's reflection).
    pub flood_sent: u64,
    pub flood_synacks: u64,
    pub flood_synack_pps: f64,
    pub seconds: f64,
    pub tx_packets: u64,
    pub tx_dropped: u64,
    pub rx_packets: u64,
    pub tx_pps: f64,
    /// Round trips completed per second (echoes received).
    pub rx_pps: f64,
    /// Packets per second the device under test forwarded: each round trip crosses it twice.
    pub dut_pps: f64,
    pub loss_ratio: f64,
    pub latency: LatencySummary,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReflectorResult {
    pub rx: u64,
    pub tx: u64,
    pub consumed: u64,
    pub arp_answered: u64,
}

/// Everything one run reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunResult {
    pub mode: String,
    pub flows: u32,
    /// 4, or 6 for IPv6 clients and real servers.
    pub ip_version: u8,
    pub frame_size: usize,
    pub queues: u16,
    pub rate_target_pps: f64,
    pub tsc_hz: u64,
    pub open: Option<OpenResult>,
    pub data: DataResult,
    pub reflector: ReflectorResult,
    pub client_arp_answered: u64,
    /// /proc/loadavg at the end of the run (the machine is shared).
    pub load_avg: String,
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_serialises_with_every_section() {
        let r = RunResult {
            mode: "tcp".into(),
            open: Some(OpenResult::default()),
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        for k in [
            "mode",
            "flows",
            "open",
            "data",
            "reflector",
            "load_avg",
            "tsc_hz",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert!(v["data"]["latency"]["cdf"].is_array());
        assert!(v["open"]["handshake_latency"]["p99_ns"].is_u64());
    }

    #[test]
    fn progress_line_shows_rates_over_the_interval() {
        let a = ProgressSnapshot {
            tx: 1_000_000,
            ..Default::default()
        };
        let b = ProgressSnapshot {
            phase: 3,
            tx: 3_000_000,
            rx_echo: 500_000,
            ..Default::default()
        };
        let l = progress_line(&a, &b, 2.0);
        assert!(l.contains("measure"), "{l}");
        assert!(l.contains("tx   1.000 Mpps"), "{l}");
        assert!(l.contains("rx   0.250 Mpps"), "{l}");
    }
}

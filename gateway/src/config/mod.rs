//! The daemon's TOML configuration: schema, defaults and whole-file validation.
//!
//! Unknown keys are refused (`deny_unknown_fields`); every value is checked before anything is applied,
//! and each error names the key (`port[1].addresses[0]`) and the reason (DESIGN.md decision 10). Every
//! key is documented in conf/README.md.

pub mod health;
mod service;
#[cfg(test)]
mod tests;

pub use service::{
    synproxy_mode, validate_service_entries, validate_shared_entries, RealEntry, ServiceEntry,
    SpecCache,
};

use crate::net::{Ipv4Cidr, Ipv6Cidr};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("{0}")]
    Parse(String),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub eal: EalConfig,
    #[serde(default)]
    pub workers: WorkersConfig,
    #[serde(default)]
    pub mempool: MempoolConfig,
    #[serde(rename = "port")]
    pub ports: Vec<PortEntry>,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteEntry>,
    #[serde(default)]
    pub neighbour: NeighbourConfig,
    /// Following the fragments of forwarded datagrams (`frag`).
    #[serde(default)]
    pub fragments: FragmentsConfig,
    #[serde(default)]
    pub control: ControlConfig,
    #[serde(default)]
    pub conn: ConnConfig,
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceEntry>,
    #[serde(default)]
    pub kernel: KernelConfig,
    /// Announcing the VIPs to a BGP daemon (`kernel::announce`); absent: nothing is announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce: Option<AnnounceConfig>,
    /// The Prometheus endpoint (`metrics`); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsConfig>,
    /// What the SYN proxy announces, and when its auto mode turns on (`forward::synproxy`).
    #[serde(default)]
    pub synproxy: SynProxySection,
    /// Connection sync with the other box of a primary/backup pair (`sync`); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncConfig>,
}

/// `[sync]` (conf/README.md, `sync/PROTOCOL.md`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// `auto` (the default: master while an `owner = "kernel"` VIP is on a twin, as
    /// keepalived's MASTER puts it there; backup otherwise), `master`, `backup` or `off`.
    #[serde(default = "default_sync_role")]
    pub role: String,
    /// The `[[port]]` whose kernel twin carries the sync traffic.
    pub port: String,
    /// The address to send from: one of the port's `addresses` (default: its first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
    /// The other box's address on that port's segment, or a multicast group (224.0.0.0/4).
    pub peer: Ipv4Addr,
    /// UDP port, on both boxes (default 8848, IPVS's sync port).
    #[serde(default = "default_sync_udp_port")]
    pub udp_port: u16,
    /// The pair's shared key: 32 to 128 hex digits (16 to 64 bytes).
    pub key: String,
    /// This box's sender id (default: its sync address as a number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// A connection that carries packets is sent again at least this often (default 10).
    #[serde(default = "default_sync_refresh_s")]
    pub refresh_s: u32,
    /// Connections each worker logs per 5 ms round at most (default 65536).
    #[serde(default = "default_sync_log_capacity")]
    pub log_capacity: u32,
    /// Messages per second the master sends at most, 44 connections each (default 5000).
    #[serde(default = "default_sync_max_msgs")]
    pub max_msgs_per_s: u32,
}

fn default_sync_role() -> String {
    "auto".into()
}
fn default_sync_udp_port() -> u16 {
    8848
}
fn default_sync_refresh_s() -> u32 {
    10
}
fn default_sync_log_capacity() -> u32 {
    65536
}
fn default_sync_max_msgs() -> u32 {
    5000
}

impl SyncConfig {
    /// The sync thread's settings, or the key at fault.
    pub fn settings(&self, ports: &[PortEntry]) -> Result<crate::sync::Settings, ConfigError> {
        let mode: crate::sync::RoleMode = self
            .role
            .parse()
            .map_err(|e: String| invalid("sync.role", e))?;
        let port = ports
            .iter()
            .find(|p| p.name == self.port)
            .ok_or_else(|| invalid("sync.port", format!("no [[port]] named {:?}", self.port)))?;
        if port.twin == "none" {
            return Err(invalid(
                "sync.port",
                format!(
                    "port {:?} has no kernel twin (twin = \"none\"): sync goes through it",
                    self.port
                ),
            ));
        }
        let addrs: Vec<Ipv4Addr> = port
            .addresses
            .iter()
            .filter_map(|a| a.parse::<crate::net::Ipv4Cidr>().ok())
            .map(|c| c.addr)
            .collect();
        let local = match self.address {
            Some(a) if addrs.contains(&a) => a,
            Some(a) => {
                return Err(invalid(
                    "sync.address",
                    format!("{a} is not an address of port {:?}", self.port),
                ))
            }
            None => *addrs.first().ok_or_else(|| {
                invalid(
                    "sync.port",
                    format!("port {:?} has no address to send from", self.port),
                )
            })?,
        };
        if self.peer.is_unspecified() || self.peer.is_broadcast() || self.peer == local {
            return Err(invalid(
                "sync.peer",
                format!("{} is not another box's address or a group", self.peer),
            ));
        }
        if self.udp_port == 0 {
            return Err(invalid("sync.udp_port", "must be 1..=65535"));
        }
        let key = crate::sync::parse_key(&self.key).map_err(|e| invalid("sync.key", e))?;
        if !(1..=3600).contains(&self.refresh_s) {
            return Err(invalid("sync.refresh_s", "must be 1..=3600"));
        }
        if !(1..=1 << 20).contains(&self.log_capacity) {
            return Err(invalid("sync.log_capacity", "must be 1..=1048576"));
        }
        if !(1..=1_000_000).contains(&self.max_msgs_per_s) {
            return Err(invalid("sync.max_msgs_per_s", "must be 1..=1000000"));
        }
        Ok(crate::sync::Settings {
            mode,
            local,
            peer: self.peer,
            udp_port: self.udp_port,
            key,
            id: self.id.unwrap_or_else(|| u32::from(local)),
            refresh_ms: u64::from(self.refresh_s) * 1000,
            log_capacity: self.log_capacity as usize,
            max_msgs_per_s: self.max_msgs_per_s,
        })
    }
}

/// `[synproxy]` (conf/README.md).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynProxySection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mss: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wscale: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_half_open: Option<u32>,
    /// The cookie key (64 hex digits); absent: a random one at each start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl SynProxySection {
    /// The proxy's settings and its cookie key (validated: see `Config::validate`).
    pub fn settings(
        &self,
    ) -> Result<
        (
            crate::forward::synproxy::SynProxyConfig,
            crate::forward::synproxy::CookieKey,
        ),
        ConfigError,
    > {
        use crate::forward::synproxy::{CookieKey, SynProxyConfig, MAX_WSCALE};
        let d = SynProxyConfig::default();
        let cfg = SynProxyConfig {
            mss: self.mss,
            wscale: self.wscale.unwrap_or(d.wscale),
            auto_half_open: self.auto_half_open.unwrap_or(d.auto_half_open),
        };
        if cfg.mss.is_some_and(|m| !(536..=9000).contains(&m)) {
            return Err(invalid("synproxy.mss", "must be 536..=9000"));
        }
        if cfg.wscale > MAX_WSCALE {
            return Err(invalid("synproxy.wscale", "must be 0..=14 (RFC 7323)"));
        }
        if cfg.auto_half_open == 0 {
            return Err(invalid("synproxy.auto_half_open", "must be at least 1"));
        }
        let key = match &self.key {
            Some(k) => CookieKey::from_hex(k).map_err(|e| invalid("synproxy.key", e))?,
            None => CookieKey::random(),
        };
        Ok((cfg, key))
    }
}

/// Where Prometheus scrapes the gateway (`metrics` module).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `ADDR:PORT` of the HTTP endpoint serving `/metrics` (a kernel address of the box, e.g. a
    /// management interface; `127.0.0.1:9101`). Not a datapath port's address.
    pub listen: String,
}

impl MetricsConfig {
    /// The listening address, or why `listen` is not one.
    pub fn addr(&self) -> Result<std::net::SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            invalid(
                "metrics.listen",
                format!(
                    "{:?} is not ADDR:PORT (e.g. \"127.0.0.1:9101\")",
                    self.listen
                ),
            )
        })
    }
}

/// Where the gateway puts the VIPs it serves for a routing daemon (BIRD) to announce, and how it
/// drains (DESIGN.md decision 16, `kernel::announce`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AnnounceConfig {
    /// The kernel routing table that holds one `blackhole VIP/32 proto 250` route per announced
    /// VIP; BIRD's `kernel table` with `learn` imports it. 1..=252 or 256 and above (253-255 are
    /// the kernel's default, main and local tables).
    pub table: u32,
    /// How long `gwctl drain` waits for a VIP's connections to end before it stops taking new
    /// ones, unless the command says (seconds, 1..=86400).
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout_s: u32,
    /// At shutdown, how long the gateway keeps forwarding after it withdrew its routes, so that
    /// the router moves the flows first (milliseconds, at most 10000).
    #[serde(default = "default_withdraw_wait")]
    pub withdraw_wait_ms: u32,
}

fn default_drain_timeout() -> u32 {
    30
}

fn default_withdraw_wait() -> u32 {
    500
}

impl AnnounceConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.table == 0 || (253..=255).contains(&self.table) {
            return Err(invalid(
                "announce.table",
                format!(
                    "{} is not a table of its own (1..=252 or 256 and above; 253-255 are default, main, local)",
                    self.table
                ),
            ));
        }
        if !(1..=86_400).contains(&self.drain_timeout_s) {
            return Err(invalid("announce.drain_timeout_s", "must be 1..=86400"));
        }
        if self.withdraw_wait_ms > 10_000 {
            return Err(invalid(
                "announce.withdraw_wait_ms",
                "must be at most 10000",
            ));
        }
        Ok(())
    }
}

/// The exception path to the ports' kernel twins (`kernel` module, DESIGN.md decisions 13-14).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KernelConfig {
    /// Frames per second each worker may punt to the twins (refilled every millisecond; beyond:
    /// dropped and counted as `punt_limited`). 0 punts nothing.
    pub punt_rate: u32,
    /// Frames a worker may punt at once above the rate (the token bucket's depth).
    pub punt_burst: u32,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            punt_rate: crate::net::punt::DEFAULT_RATE,
            punt_burst: crate::net::punt::DEFAULT_BURST,
        }
    }
}

/// Connection tracking, per worker.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnConfig {
    /// Connections each worker can track (the table is allocated whole at start).
    pub capacity: u32,
    /// IPv6 connections each worker can track, in a table of their own (`inet6`; an entry takes
    /// two cache lines, an IPv4 one takes one). Default 65536.
    pub capacity6: u32,
    /// Local ports FullNAT may use on each LIP, `[first, last]`.
    pub port_range: [u16; 2],
    /// Idle timeouts per state, seconds (IPVS defaults).
    pub timeouts: crate::conn::Timeouts,
    /// IPVS `conn_reuse_mode`: what a client's SYN on a tuple the gateway still tracks does
    /// (`forward::reuse`): 0 follows the old entry, bit 1 (1) reschedules it from TIME_WAIT/CLOSE,
    /// bit 2 (2) also from FIN_WAIT of DR/TUN connections.
    pub conn_reuse_mode: u8,
    /// A client's SYN retransmitted this many milliseconds or more after the first, still
    /// unanswered by its real server, counts as a failed attempt (passive health detection) and,
    /// with a service's `syn_retry`, goes to another real server. Linux clients retransmit a SYN
    /// after 1 s, then 3 s.
    pub syn_unanswered_ms: u32,
    /// Half-open TCP connections (never ESTABLISHED) a worker keeps at most; a new SYN beyond it
    /// takes the place of an older half-open one (absent: half of `capacity`).
    pub max_half_open: Option<u32>,
    /// Back the connection tables with transparent huge pages (`madvise(MADV_HUGEPAGE)`, `bigmem`).
    pub hugepages: bool,
}

impl ConnConfig {
    /// The bound on half-open connections per worker, for a table of `capacity`.
    pub fn half_open_limit(&self, capacity: u32) -> u32 {
        self.max_half_open
            .unwrap_or(capacity / 2)
            .clamp(1, capacity.max(1))
    }
}

impl Default for ConnConfig {
    fn default() -> Self {
        ConnConfig {
            capacity: 1 << 20,
            capacity6: 1 << 16,
            port_range: [1024, 65535],
            timeouts: Default::default(),
            conn_reuse_mode: crate::forward::reuse::DEFAULT_CONN_REUSE_MODE,
            syn_unanswered_ms: 900,
            max_half_open: None,
            hugepages: true,
        }
    }
}

/// EAL arguments, built into an argv by `eal_args`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EalConfig {
    /// `--file-prefix`: keeps hugepage files and runtime dirs of concurrent instances apart.
    pub file_prefix: String,
    /// `--no-huge`: anonymous memory instead of hugepages (labs and tests).
    pub no_huge: bool,
    /// `-m`: megabytes of memory to reserve.
    pub memory_mb: u32,
    /// `--huge-dir`.
    pub huge_dir: Option<String>,
    /// `--log-level`.
    pub log_level: String,
    /// Appended verbatim (after everything the gateway generates).
    pub extra_args: Vec<String>,
}

impl Default for EalConfig {
    fn default() -> Self {
        EalConfig {
            file_prefix: "gateway".into(),
            no_huge: false,
            memory_mb: 1024,
            huge_dir: None,
            log_level: "notice".into(),
            extra_args: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// Number of worker lcores; worker i polls rx queue i of every port.
    pub count: u16,
    /// CPU of each worker lcore (default: 0, 1, ...).
    pub cpus: Vec<u16>,
    /// CPU of the main lcore, which runs the control plane.
    pub main_cpu: u16,
    /// Idle backoff: sleep this many microseconds after an empty poll round (0 = pure polling, as
    /// production should run; labs on small machines want ~50-200).
    pub idle_sleep_us: u32,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            count: 1,
            cpus: Vec::new(),
            main_cpu: 0,
            idle_sleep_us: 0,
        }
    }
}

impl WorkersConfig {
    pub fn cpu_of(&self, worker: usize) -> u16 {
        self.cpus.get(worker).copied().unwrap_or(worker as u16)
    }
}

/// Bytes DPDK keeps before the frame in every mbuf (`RTE_PKTMBUF_HEADROOM`, 128 in Debian's build).
pub const MBUF_HEADROOM: u32 = 128;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MempoolConfig {
    /// Mbufs in the pool (best 2^n - 1).
    pub mbufs: u32,
    /// Per-lcore cache.
    pub cache: u32,
    /// Data room per mbuf, headroom included.
    pub data_room: u16,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            mbufs: 16383,
            cache: 256,
            data_room: 2176,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PortEntry {
    /// A name for the port, used by routes and logs.
    pub name: String,
    /// A vdev string (`net_af_packet0,iface=eth1`, `net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap`,
    /// `net_memif0,...`, `net_ring0`) or a PCI address (`0000:03:00.0`).
    pub device: String,
    /// Addresses the gateway owns on this port, with prefix length (`10.0.0.1/24`,
    /// `2001:db8:1::1/64`). IPv6 ones are answered by the datapath in neighbour discovery and
    /// ping (`inet6`) and written onto the twin (without DAD or autoconfiguration), but not
    /// mirrored back from it: the config is their source of truth. Every port also has its link-local address
    /// (fe80::/64 with the modified EUI-64 of its MAC, RFC 4291 appendix A).
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default = "default_true")]
    pub rss: bool,
    #[serde(default = "default_true")]
    pub csum_offload: bool,
    #[serde(default = "default_true")]
    pub promiscuous: bool,
    #[serde(default = "default_desc")]
    pub rx_desc: u16,
    #[serde(default = "default_desc")]
    pub tx_desc: u16,
    pub mtu: Option<u16>,
    /// Treat the port as if it had RSS with the default Toeplitz key and a round-robin RETA of this
    /// many entries (0 = off): for memif/af_packet ports fed by a generator that plays the NIC's RSS
    /// (perf/pktgen), so local ports are chosen for reply steering as on hardware.
    #[serde(default)]
    pub rss_emulate_reta: u16,
    /// The port's kernel twin (`kernel` module): `"tap"` (DPDK `net_tap`, the default),
    /// `"virtio-user"` (virtio-user over /dev/vhost-net, faster where the box has it) or `"none"`.
    /// The twin is an interface named after `name` with the port's MAC and MTU.
    #[serde(default = "default_twin")]
    pub twin: String,
}

fn default_twin() -> String {
    "tap".into()
}

fn default_true() -> bool {
    true
}
fn default_desc() -> u16 {
    1024
}

impl PortEntry {
    /// The DPDK device name: the vdev name before the first comma, or the PCI address.
    pub fn dev_name(&self) -> &str {
        self.device.split(',').next().unwrap_or("")
    }

    pub fn is_pci(&self) -> bool {
        is_pci_addr(self.dev_name())
    }
}

fn is_pci_addr(s: &str) -> bool {
    // DDDD:BB:DD.F or BB:DD.F
    let b = s.as_bytes();
    let tail_ok = |t: &[u8]| {
        t.len() == 7
            && t[2] == b':'
            && t[5] == b'.'
            && t[..2].iter().chain(&t[3..5]).all(u8::is_ascii_hexdigit)
            && t[6].is_ascii_digit()
    };
    (b.len() == 12 && b[4] == b':' && b[..4].iter().all(u8::is_ascii_hexdigit) && tail_ok(&b[5..]))
        || tail_ok(b)
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    /// Destination prefix, `a.b.c.d/len` (`0.0.0.0/0` for the default route) or an IPv6 one
    /// (`::/0`, with an IPv6 `via`).
    pub prefix: String,
    /// Next hop; absent for a directly connected prefix.
    pub via: Option<String>,
    /// Port name the route leaves by.
    pub port: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NeighbourConfig {
    /// Seconds a STALE or FAILED neighbour stays without being used (Linux `gc_stale_time`).
    pub timeout_s: u32,
    /// Milliseconds between the ARP requests of one resolution or probe (Linux `retrans_time_ms`).
    pub retry_ms: u32,
    /// Linux `base_reachable_time_ms`: a confirmed neighbour is REACHABLE for a random time in
    /// [base/2, 3·base/2).
    pub base_reachable_ms: u32,
    /// Linux `delay_first_probe_time` (ms): a used STALE neighbour waits this long for a
    /// confirmation before it is probed.
    pub delay_first_probe_ms: u32,
    /// Linux `ucast_solicit`: unicast probes before a neighbour is FAILED.
    pub ucast_solicit: u8,
    /// Linux `mcast_solicit`: broadcast requests before an unresolved neighbour is FAILED.
    pub mcast_solicit: u8,
    /// Packets held per worker for all unresolved neighbours together (beyond: dropped and
    /// counted), so that a flood toward unresolved addresses cannot empty the mbuf pool.
    pub max_held: u32,
    /// Packets queued per unresolved neighbour (beyond: dropped and counted).
    pub max_pending: u16,
    /// Neighbour entries per worker.
    pub capacity: u32,
}

impl Default for NeighbourConfig {
    fn default() -> Self {
        NeighbourConfig {
            timeout_s: 300,
            retry_ms: 1000,
            base_reachable_ms: 30_000,
            delay_first_probe_ms: 5000,
            ucast_solicit: 3,
            mcast_solicit: 3,
            max_held: 256,
            max_pending: 64,
            capacity: 4096,
        }
    }
}

/// `[fragments]`: each worker's table of datagrams whose fragments follow their first (`frag`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FragmentsConfig {
    /// Datagrams tracked at once per worker.
    pub max_datagrams: u32,
    /// Fragments held per worker waiting for their datagram's first fragment.
    pub max_held: u32,
    /// Milliseconds a datagram's entry lives after its first fragment of any arrived.
    pub timeout_ms: u32,
}

impl Default for FragmentsConfig {
    fn default() -> Self {
        let d = crate::frag::FragConfig::default();
        FragmentsConfig {
            max_datagrams: d.max_datagrams as u32,
            max_held: d.max_held as u32,
            timeout_ms: d.timeout_ms as u32,
        }
    }
}

impl FragmentsConfig {
    pub fn table(&self) -> crate::frag::FragConfig {
        crate::frag::FragConfig {
            max_datagrams: self.max_datagrams as usize,
            max_held: self.max_held as usize,
            timeout_ms: u64::from(self.timeout_ms),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Seconds between log lines with counters (0 = off). SIGUSR1 logs them at any time.
    pub stats_interval_s: u32,
    /// A file rewritten five times a second with the counters (absent = none).
    pub stats_file: Option<String>,
    /// The admin socket (gwctl, ipvsadm); absent = /run/gateway/<eal.file_prefix>.sock.
    pub socket: Option<String>,
    /// A group allowed to use the admin socket (mode 0660 instead of 0600); absent = root only.
    pub socket_group: Option<String>,
}

/// A validated, typed view of the parts the datapath needs.
#[derive(Debug, Clone)]
pub struct Validated {
    pub port_addrs: Vec<Vec<Ipv4Cidr>>,
    pub routes: Vec<(Ipv4Cidr, Option<Ipv4Addr>, usize)>,
    /// The ports' IPv6 addresses and the IPv6 routes (`inet6`; a twin port's are the kernel's once
    /// written there).
    pub port_addrs6: Vec<Vec<Ipv6Cidr>>,
    pub routes6: Vec<(Ipv6Cidr, Option<Ipv6Addr>, usize)>,
    pub services: Vec<crate::forward::ServiceSpec>,
    /// The VIPs of services with `owner = "kernel"` (their LIPs follow them).
    pub kernel_owned: Vec<IpAddr>,
}

impl Config {
    /// An IPv6 `[[route]]`: a prefix without host bits, a port, and a link-local or on-subnet
    /// next hop.
    #[allow(clippy::type_complexity)]
    fn route6(
        &self,
        key: &str,
        r: &RouteEntry,
        port_addrs6: &[Vec<Ipv6Cidr>],
    ) -> Result<(Ipv6Cidr, Option<Ipv6Addr>, usize), ConfigError> {
        let prefix: Ipv6Cidr = r
            .prefix
            .parse()
            .map_err(|e| invalid(format!("{key}.prefix"), e))?;
        if prefix.addr != prefix.network() {
            return Err(invalid(
                format!("{key}.prefix"),
                format!(
                    "{} has host bits set (network is {})",
                    r.prefix,
                    prefix.network()
                ),
            ));
        }
        let port = self
            .port_index(&r.port)
            .ok_or_else(|| invalid(format!("{key}.port"), format!("no port named {:?}", r.port)))?;
        let via = match &r.via {
            None => None,
            Some(v) => {
                let ip: Ipv6Addr = v.parse().map_err(|_| {
                    invalid(
                        format!("{key}.via"),
                        format!("{v:?} is not an IPv6 address"),
                    )
                })?;
                let link_local = ip.segments()[0] & 0xffc0 == 0xfe80;
                if !link_local && !port_addrs6[port].iter().any(|c| c.contains(ip)) {
                    return Err(invalid(
                        format!("{key}.via"),
                        format!(
                            "{ip} is neither link-local nor on an IPv6 subnet of port {:?}",
                            r.port
                        ),
                    ));
                }
                Some(ip)
            }
        };
        Ok((prefix, via, port))
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Io {
            path: path.display().to_string(),
            err,
        })?;
        Self::parse(&text)
    }

    /// Parses and validates. Errors name the key and the reason.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|p| p.name == name)
    }

    /// `key`: packets each worker may hold (waiting for ARP, for a first fragment); all workers'
    /// together must stay within a quarter of the pool, which the queues need.
    fn held_fits_pool(&self, key: &str, per_worker: u32) -> Result<(), ConfigError> {
        let held = u64::from(per_worker) * u64::from(self.workers.count);
        if held > u64::from(self.mempool.mbufs) / 4 {
            return Err(invalid(
                key,
                format!(
                    "{per_worker} held per worker x {} workers = {held} mbufs, more than a \
                     quarter of mempool.mbufs ({})",
                    self.workers.count, self.mempool.mbufs
                ),
            ));
        }
        Ok(())
    }

    /// Mbufs the gateway may hold at once beyond what its rings hold, per worker: packets held
    /// waiting for a neighbour (`neighbour.max_held`) and for a first fragment
    /// (`fragments.max_held`), once for IPv4 and once for IPv6 (each family has its own
    /// tables), SYN-proxied clients' packets parked until their connection opens
    /// (`conn::parked::PARKED_MAX`), a received burst, and a transmit buffer's worth waiting to
    /// be sent on each port and each kernel twin (`datapath::TX_BURST`); and the lcore caches
    /// (the workers' and the main lcore's).
    pub fn mbufs_for_traffic(&self) -> u64 {
        let w = u64::from(self.workers.count);
        let burst = crate::datapath::BURST as u64;
        let tx_burst = crate::datapath::TX_BURST as u64;
        let twins = self.ports.iter().filter(|p| p.twin != "none").count() as u64;
        let queues = self.ports.len() as u64 + twins;
        let held = 2 * u64::from(self.neighbour.max_held + self.fragments.max_held);
        let per_worker = held + crate::conn::parked::PARKED_MAX as u64 + burst + tx_burst * queues;
        per_worker * w + (w + 1) * u64::from(self.mempool.cache)
    }

    /// Once every port and kernel twin has started, `left` mbufs are free in the pool: their
    /// receive rings took the rest (a tap twin or a PCI NIC fills each ring when it starts;
    /// af_packet, which copies, takes none). A pool the rings empty starts and forwards nothing,
    /// silently (af_packet in DPDK 22.11 counts no `rx_nombuf`): refused instead, naming the size
    /// that would do.
    pub fn check_mbufs_left(&self, left: u32) -> Result<(), ConfigError> {
        let need = self.mbufs_for_traffic();
        let left = u64::from(left);
        if left >= need {
            return Ok(());
        }
        let m = u64::from(self.mempool.mbufs);
        Err(invalid(
            "mempool.mbufs",
            format!(
                "{m} is too few: the ports' and kernel twins' receive rings took {} at start, \
                 leaving {left} for traffic, which needs {need} (held and parked packets, bursts \
                 in and out, lcore caches); make it at least {}",
                m.saturating_sub(left),
                m.saturating_sub(left) + need
            ),
        ))
    }

    /// Checks every value; returns the typed forms the daemon uses.
    pub fn validate(&self) -> Result<Validated, ConfigError> {
        let w = &self.workers;
        if w.count == 0 || w.count > 64 {
            return Err(invalid(
                "workers.count",
                format!("{} is out of range 1..=64", w.count),
            ));
        }
        if !w.cpus.is_empty() && w.cpus.len() != w.count as usize {
            return Err(invalid(
                "workers.cpus",
                format!(
                    "has {} entries but workers.count is {}",
                    w.cpus.len(),
                    w.count
                ),
            ));
        }
        if w.idle_sleep_us > 1_000_000 {
            return Err(invalid(
                "workers.idle_sleep_us",
                "must be at most 1000000 (1 s)",
            ));
        }
        if self.eal.file_prefix.is_empty() || self.eal.file_prefix.contains('/') {
            return Err(invalid(
                "eal.file_prefix",
                "must be a non-empty name without '/'",
            ));
        }
        if let Some(a) = &self.announce {
            a.validate()?;
        }
        if let Some(m) = &self.metrics {
            m.addr()?;
        }
        if self.eal.memory_mb < 64 {
            return Err(invalid("eal.memory_mb", "must be at least 64"));
        }
        let m = &self.mempool;
        if m.mbufs < 1024 {
            return Err(invalid("mempool.mbufs", "must be at least 1024"));
        }
        if m.cache > 512 || m.cache as u64 > m.mbufs as u64 / 2 {
            return Err(invalid(
                "mempool.cache",
                "must be at most 512 and at most half of mempool.mbufs",
            ));
        }
        if m.data_room < 1024 + 128 {
            return Err(invalid(
                "mempool.data_room",
                "must be at least 1152 (1024 + 128 headroom)",
            ));
        }
        if self.ports.is_empty() {
            return Err(invalid("port", "at least one [[port]] is required"));
        }
        let mut names = HashSet::new();
        let mut devs = HashSet::new();
        let mut owned = HashSet::new();
        let mut port_addrs = Vec::new();
        let mut port_addrs6: Vec<Vec<Ipv6Cidr>> = Vec::new();
        let mut owned6: Vec<Ipv6Addr> = Vec::new();
        for (i, p) in self.ports.iter().enumerate() {
            let key = format!("port[{i}]");
            if p.name.is_empty() || !names.insert(p.name.as_str()) {
                return Err(invalid(
                    format!("{key}.name"),
                    format!("{:?} is empty or used twice", p.name),
                ));
            }
            let dev = p.dev_name();
            if dev.is_empty() || !(p.is_pci() || dev.starts_with("net_")) {
                return Err(invalid(
                    format!("{key}.device"),
                    format!(
                        "{:?} is neither a PCI address nor a vdev string (net_<driver><n>,...)",
                        p.device
                    ),
                ));
            }
            if !devs.insert(dev) {
                return Err(invalid(
                    format!("{key}.device"),
                    format!("device {dev:?} used twice"),
                ));
            }
            for (d, v) in [("rx_desc", p.rx_desc), ("tx_desc", p.tx_desc)] {
                if !(64..=16384).contains(&v) {
                    return Err(invalid(
                        format!("{key}.{d}"),
                        format!("{v} is out of range 64..=16384"),
                    ));
                }
            }
            let r = p.rss_emulate_reta;
            if r != 0 && !(r.is_power_of_two() && r <= 512) {
                return Err(invalid(
                    format!("{key}.rss_emulate_reta"),
                    "must be 0 (off) or a power of two up to 512",
                ));
            }
            if crate::kernel::TwinKind::parse(&p.twin).is_none() {
                return Err(invalid(
                    format!("{key}.twin"),
                    format!("{:?} is not tap, virtio-user or none", p.twin),
                ));
            }
            if p.twin != "none" && !crate::kernel::valid_ifname(&p.name) {
                return Err(invalid(
                    format!("{key}.name"),
                    format!(
                        "{:?} cannot name a kernel twin (1..=15 characters, no '/', ':' or \
                         whitespace); rename the port or set twin = \"none\"",
                        p.name
                    ),
                ));
            }
            if let Some(mtu) = p.mtu {
                if !(576..=9000).contains(&mtu) {
                    return Err(invalid(
                        format!("{key}.mtu"),
                        format!("{mtu} is out of range 576..=9000"),
                    ));
                }
                // A frame (MTU + Ethernet header + a VLAN tag) must fit one mbuf: chained mbufs
                // are not handled (they are dropped as `chained_mbuf`).
                let room = u32::from(self.mempool.data_room).saturating_sub(MBUF_HEADROOM);
                if u32::from(mtu) + 18 > room {
                    return Err(invalid(
                        format!("{key}.mtu"),
                        format!(
                            "{mtu} does not fit an mbuf: frames of up to {} bytes need \
                             mempool.data_room of at least {}",
                            u32::from(mtu) + 18,
                            u32::from(mtu) + 18 + MBUF_HEADROOM
                        ),
                    ));
                }
            }
            let mut addrs = Vec::new();
            let mut addrs6 = Vec::new();
            for (j, a) in p.addresses.iter().enumerate() {
                if a.contains(':') {
                    let c: Ipv6Cidr = a
                        .parse()
                        .map_err(|e| invalid(format!("{key}.addresses[{j}]"), e))?;
                    if !crate::inet6::is_unicast_global(c.addr) || c.len > 127 {
                        return Err(invalid(
                            format!("{key}.addresses[{j}]"),
                            format!("{c} is not a global unicast address on a subnet"),
                        ));
                    }
                    if owned6.contains(&c.addr) {
                        return Err(invalid(
                            format!("{key}.addresses[{j}]"),
                            format!("{} is assigned twice", c.addr),
                        ));
                    }
                    owned6.push(c.addr);
                    addrs6.push(c);
                    continue;
                }
                let c: Ipv4Cidr = a
                    .parse()
                    .map_err(|e| invalid(format!("{key}.addresses[{j}]"), e))?;
                if !owned.insert(c.addr) {
                    return Err(invalid(
                        format!("{key}.addresses[{j}]"),
                        format!("{} is assigned twice", c.addr),
                    ));
                }
                addrs.push(c);
            }
            port_addrs.push(addrs);
            port_addrs6.push(addrs6);
        }
        let mut routes = Vec::new();
        let mut routes6 = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            let key = format!("route[{i}]");
            if r.prefix.contains(':') {
                routes6.push(self.route6(&key, r, &port_addrs6)?);
                continue;
            }
            let prefix: Ipv4Cidr = r
                .prefix
                .parse()
                .map_err(|e| invalid(format!("{key}.prefix"), e))?;
            if prefix.addr != prefix.network() {
                return Err(invalid(
                    format!("{key}.prefix"),
                    format!(
                        "{} has host bits set (network is {})",
                        r.prefix,
                        prefix.network()
                    ),
                ));
            }
            let port = self.port_index(&r.port).ok_or_else(|| {
                invalid(format!("{key}.port"), format!("no port named {:?}", r.port))
            })?;
            let via = match &r.via {
                None => None,
                Some(v) => {
                    let ip: Ipv4Addr = v.parse().map_err(|_| {
                        invalid(
                            format!("{key}.via"),
                            format!("{v:?} is not an IPv4 address"),
                        )
                    })?;
                    if !port_addrs[port].iter().any(|c| c.contains(ip)) {
                        return Err(invalid(
                            format!("{key}.via"),
                            format!("{ip} is not on a subnet of port {:?}", r.port),
                        ));
                    }
                    Some(ip)
                }
            };
            routes.push((prefix, via, port));
        }
        let n = &self.neighbour;
        if n.timeout_s == 0 {
            return Err(invalid("neighbour.timeout_s", "must be positive"));
        }
        if n.retry_ms == 0 {
            return Err(invalid("neighbour.retry_ms", "must be positive"));
        }
        if n.base_reachable_ms < 2 {
            return Err(invalid("neighbour.base_reachable_ms", "must be at least 2"));
        }
        if !(1..=32).contains(&n.ucast_solicit) {
            return Err(invalid("neighbour.ucast_solicit", "must be in 1..=32"));
        }
        if !(1..=32).contains(&n.mcast_solicit) {
            return Err(invalid("neighbour.mcast_solicit", "must be in 1..=32"));
        }
        // What every worker may hold waiting for ARP must leave most of the pool to the queues.
        self.held_fits_pool("neighbour.max_held", n.max_held)?;
        let f = &self.fragments;
        if !(1..=1 << 20).contains(&f.max_datagrams) {
            return Err(invalid("fragments.max_datagrams", "must be in 1..=1048576"));
        }
        if !(10..=60_000).contains(&f.timeout_ms) {
            return Err(invalid("fragments.timeout_ms", "must be in 10..=60000"));
        }
        // Fragments waiting for their first one come out of the same pool.
        self.held_fits_pool("fragments.max_held", f.max_held)?;
        if n.max_pending > 256 {
            return Err(invalid("neighbour.max_pending", "must be at most 256"));
        }
        if !(16..=1 << 20).contains(&n.capacity) {
            return Err(invalid("neighbour.capacity", "must be in 16..=1048576"));
        }
        self.synproxy.settings()?;
        if let Some(s) = &self.sync {
            s.settings(&self.ports)?;
        }
        let c = &self.conn;
        if c.max_half_open.is_some_and(|n| n == 0 || n > c.capacity) {
            return Err(invalid("conn.max_half_open", "must be 1..=conn.capacity"));
        }
        if !(1024..=crate::conn::MAX_CAPACITY).contains(&c.capacity) {
            return Err(invalid(
                "conn.capacity",
                format!(
                    "{} is out of range 1024..={}",
                    c.capacity,
                    crate::conn::MAX_CAPACITY
                ),
            ));
        }
        if !(1024..=crate::conn::MAX_CAPACITY).contains(&c.capacity6) {
            return Err(invalid(
                "conn.capacity6",
                format!(
                    "{} is out of range 1024..={}",
                    c.capacity6,
                    crate::conn::MAX_CAPACITY
                ),
            ));
        }
        if c.port_range[0] == 0
            || c.port_range[0] > c.port_range[1]
            || c.port_range[1] - c.port_range[0] < 1023
        {
            return Err(invalid(
                "conn.port_range",
                "must be [first, last] with 0 < first and at least 1024 ports",
            ));
        }
        if c.conn_reuse_mode > 3 {
            return Err(invalid(
                "conn.conn_reuse_mode",
                format!(
                    "{} is not 0..=3 (bit 1: TIME_WAIT/CLOSE, bit 2: FIN_WAIT of DR/TUN)",
                    c.conn_reuse_mode
                ),
            ));
        }
        if !(100..=60_000).contains(&c.syn_unanswered_ms) {
            return Err(invalid(
                "conn.syn_unanswered_ms",
                format!("{} is not 100..=60000", c.syn_unanswered_ms),
            ));
        }
        let services = validate_service_entries(&self.services, &port_addrs, &port_addrs6)?;
        let mut kernel_owned = Vec::new();
        let any_twin = self.ports.iter().any(|p| p.twin != "none");
        let mut owner_of: HashMap<IpAddr, &str> = HashMap::new();
        for (i, s) in self.services.iter().enumerate() {
            let vip = services[i].0.vip;
            if *owner_of.entry(vip).or_insert(s.owner.as_str()) != s.owner.as_str() {
                return Err(invalid(
                    format!("service[{i}].owner"),
                    format!("{vip} has services of both owners; one VIP has one owner"),
                ));
            }
            match s.owner.as_str() {
                "config" => {}
                "kernel" if !any_twin => {
                    return Err(invalid(
                        format!("service[{i}].owner"),
                        "\"kernel\" needs a port with a twin (every port has twin = \"none\")",
                    ))
                }
                "kernel" => {
                    if !kernel_owned.contains(&vip) {
                        kernel_owned.push(vip);
                    }
                }
                o => {
                    return Err(invalid(
                        format!("service[{i}].owner"),
                        format!("{o:?} is not config or kernel"),
                    ))
                }
            }
        }
        Ok(Validated {
            port_addrs,
            routes,
            port_addrs6,
            routes6,
            services,
            kernel_owned,
        })
    }
}

impl Config {
    /// The EAL argv (`argv[0]` first) this config asks for.
    pub fn eal_args(&self) -> Vec<String> {
        let e = &self.eal;
        let w = &self.workers;
        let mut a = vec!["gateway".to_string()];
        // lcore 0 is the main lcore (control plane); worker i is lcore i+1, each pinned to its CPU.
        let mut lcores = format!("0@{}", w.main_cpu);
        for i in 0..w.count as usize {
            lcores.push_str(&format!(",{}@{}", i + 1, w.cpu_of(i)));
        }
        a.extend(["--lcores".into(), lcores, "--main-lcore".into(), "0".into()]);
        a.extend(["--file-prefix".into(), e.file_prefix.clone()]);
        a.extend(["-m".into(), e.memory_mb.to_string()]);
        if e.no_huge {
            a.extend(["--no-huge".into(), "--no-shconf".into()]);
        } else {
            // Unlink hugepage files as soon as they are mapped: nothing is left behind, even after a
            // crash.
            a.push("--huge-unlink".into());
        }
        if let Some(d) = &e.huge_dir {
            a.extend(["--huge-dir".into(), d.clone()]);
        }
        a.extend(["--log-level".into(), e.log_level.clone()]);
        let mut any_pci = false;
        for p in &self.ports {
            if p.is_pci() {
                any_pci = true;
                a.extend(["-a".into(), p.device.clone()]);
            } else {
                a.extend(["--vdev".into(), p.device.clone()]);
            }
        }
        if !any_pci {
            a.push("--no-pci".into());
        }
        a.extend(e.extra_args.iter().cloned());
        a
    }
}

//! The daemon's TOML configuration: schema, defaults and whole-file validation.
//!
//! Unknown keys are refused (`deny_unknown_fields`); every value is checked before anything is applied,
//! and each error names the key (`port[1].addresses[0]`) and the reason (DESIGN.md decision 10). Every
//! key is documented in conf/README.md.

pub mod health;

use crate::net::{Ipv4Cidr, Ipv6Cidr};
use crate::service::{FwdMode, Persistence, Proto, RealServer, SchedKind, ServiceConfig};
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

/// A virtual service (`ipvsadm -A`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// The virtual IP.
    pub vip: String,
    /// The virtual port.
    pub port: u16,
    /// `tcp` or `udp`.
    #[serde(default = "default_tcp")]
    pub protocol: String,
    /// One of rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh (default wlc, as IPVS).
    #[serde(default = "default_sched")]
    pub scheduler: String,
    /// Scheduler flags as ipvsadm spells them (`sh-port`, `sh-fallback`, `mh-port`, `mh-fallback`).
    #[serde(default)]
    pub scheduler_flags: Vec<String>,
    /// Persistence timeout in seconds (`ipvsadm -p`); absent = no persistence.
    pub persistence_s: Option<u32>,
    /// Persistence netmask (`ipvsadm -M`).
    pub persistence_netmask: Option<String>,
    /// Local addresses (LIPs) for FullNAT real servers; they must be on a port's subnet.
    #[serde(default)]
    pub local_addresses: Vec<String>,
    /// Pass the client address to real servers in the TCP option TOA (FullNAT).
    #[serde(default = "default_true")]
    pub toa: bool,
    /// A client's SYN that its real server refuses (RST) or leaves unanswered (the client
    /// retransmits it `[conn] syn_unanswered_ms` or more after the first) goes to another real
    /// server, once (FullNAT and NAT; off by default, as IPVS).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub syn_retry: bool,
    /// A TCP packet other than a SYN that matches no connection starts one, in ESTABLISHED, when
    /// its real server is DR or TUN (IPVS's `sloppy_tcp`): after an ECMP change moved a flow to
    /// this box, `mh` picks the server another box picked. Default: on for `mh` services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sloppy_tcp: Option<bool>,
    /// Persistence templates of a quiesced server are dropped when used (IPVS
    /// `expire_quiescent_template`): a persistent client then moves to another server.
    #[serde(default)]
    pub expire_quiescent_template: bool,
    /// Drop a connection at once when its real server is removed (IPVS `expire_nodest_conn`).
    #[serde(default)]
    pub expire_nodest_conn: bool,
    #[serde(default, rename = "real")]
    pub reals: Vec<RealEntry>,
    /// Who decides whether this box serves the VIP and answers for it and the LIPs: `"config"`
    /// (always, the default) or `"kernel"` (only while the VIP is an address on a kernel twin,
    /// e.g. added by keepalived).
    #[serde(default = "default_owner")]
    pub owner: String,
    /// The health check of every real server (keepalived's checker in `real_server`); a real
    /// server's `check` overrides some of its keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<crate::health::check::CheckEntry>,
    /// `ADDR:PORT` (`[ADDR]:PORT` for IPv6) of a server that takes new connections while every
    /// real server is held down by the health checks (keepalived's `sorry_server`), in the first
    /// real server's mode and of the real servers' family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorry_server: Option<String>,
    /// Who may open connections: `"allow PREFIX"` and `"deny PREFIX"` rules in order, the first
    /// match deciding; none matching, allowed unless some rule allows (`forward::acl`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acl: Vec<String>,
    /// SYN proxy: `"off"` (the default), `"on"` (every SYN is answered with a cookie and the
    /// real server sees a connection only once the client's ACK proves its address) or `"auto"`
    /// (on while a worker holds `[synproxy] auto_half_open` half-open connections). TCP services
    /// with FullNAT or NAT real servers only (`forward::synproxy`).
    #[serde(default = "default_synproxy", skip_serializing_if = "is_synproxy_off")]
    pub synproxy: String,
    /// Per-client limits: new connections per second and open connections per client address
    /// (or prefix), an inline table (`forward::limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_limit: Option<crate::forward::limit::LimitEntry>,
}

fn default_synproxy() -> String {
    "off".into()
}

fn is_synproxy_off(s: &str) -> bool {
    s == "off"
}

/// A service's `synproxy` value, refused where the proxy cannot work: it must see both directions
/// of a TCP connection (FullNAT and NAT real servers).
pub fn synproxy_mode(
    cfg: &crate::service::ServiceConfig,
    value: &str,
) -> Result<crate::forward::synproxy::Mode, String> {
    let mode: crate::forward::synproxy::Mode = value.parse()?;
    if mode == crate::forward::synproxy::Mode::Off {
        return Ok(mode);
    }
    if cfg.proto != crate::service::Proto::Tcp {
        return Err("the SYN proxy is for TCP services".into());
    }
    if let Some(r) = cfg.reals.iter().find(|r| {
        matches!(
            r.fwd,
            crate::service::FwdMode::Dr | crate::service::FwdMode::Tun
        )
    }) {
        return Err(format!(
            "real server {}:{} is {}: the SYN proxy needs FullNAT or NAT (it must see the replies)",
            r.addr, r.port, r.fwd
        ));
    }
    Ok(mode)
}

fn default_owner() -> String {
    "config".into()
}

fn default_tcp() -> String {
    "tcp".into()
}
fn default_sched() -> String {
    "wlc".into()
}

/// A real server (`ipvsadm -a`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RealEntry {
    pub address: String,
    /// Defaults to the service's port.
    pub port: Option<u16>,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// `fullnat` (ipvsadm -b, default), `nat` (-m), `dr` (-g), `tun` (-i).
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Upper connection threshold (`-x`), 0 = none.
    #[serde(default)]
    pub upper: u32,
    /// Lower connection threshold (`-y`).
    #[serde(default)]
    pub lower: u32,
    /// This server's health check: the service's `check` with these keys on top.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<crate::health::check::CheckEntry>,
}

fn default_weight() -> u32 {
    1
}
fn default_mode() -> String {
    "fullnat".into()
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
    /// The ports' IPv6 addresses and the IPv6 routes (`inet6`; not mirrored from the kernel).
    pub port_addrs6: Vec<Vec<Ipv6Cidr>>,
    pub routes6: Vec<(Ipv6Cidr, Option<Ipv6Addr>, usize)>,
    pub services: Vec<crate::forward::ServiceSpec>,
    /// The VIPs of services with `owner = "kernel"` (their LIPs follow them).
    pub kernel_owned: Vec<Ipv4Addr>,
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
                    match vip {
                        IpAddr::V4(vip) if !kernel_owned.contains(&vip) => kernel_owned.push(vip),
                        IpAddr::V4(_) => {}
                        IpAddr::V6(_) => return Err(invalid(
                            format!("service[{i}].owner"),
                            "an IPv6 VIP is owned by the config (the kernel mirror is IPv4 only)",
                        )),
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

/// Validates `[[service]]` entries against the ports' addresses and turns them into what
/// `Control::apply_services` takes; shared by the config file and the admin socket.
pub fn validate_service_entries(
    services: &[ServiceEntry],
    port_addrs: &[Vec<Ipv4Cidr>],
    port_addrs6: &[Vec<Ipv6Cidr>],
) -> Result<Vec<crate::forward::ServiceSpec>, ConfigError> {
    {
        let mut out = Vec::new();
        let mut keys = HashSet::new();
        let owned: HashSet<IpAddr> = port_addrs
            .iter()
            .flatten()
            .map(|c| IpAddr::V4(c.addr))
            .collect();
        for (i, s) in services.iter().enumerate() {
            let key = format!("service[{i}]");
            let vip: IpAddr = s.vip.parse().map_err(|_| {
                invalid(
                    format!("{key}.vip"),
                    format!("{:?} is not an IPv4 or IPv6 address", s.vip),
                )
            })?;
            if let IpAddr::V6(v6) = vip {
                if !crate::inet6::is_unicast_global(v6) {
                    return Err(invalid(
                        format!("{key}.vip"),
                        format!("{v6} is not a global unicast address"),
                    ));
                }
                if s.persistence_netmask.is_some() {
                    return Err(invalid(
                        format!("{key}.persistence_netmask"),
                        "an IPv6 service takes none (persistence is per client address)",
                    ));
                }
                // What the IPv6 datapath does not do yet is refused, not silently ignored.
                let unbuilt = [
                    ("synproxy", s.synproxy != "off"),
                    ("client_limit", s.client_limit.is_some()),
                    ("syn_retry", s.syn_retry),
                ];
                if let Some((k, _)) = unbuilt.iter().find(|(_, set)| *set) {
                    return Err(invalid(
                        format!("{key}.{k}"),
                        "not built for IPv6 services yet (issue 17)",
                    ));
                }
            }
            if owned.contains(&vip) {
                return Err(invalid(
                    format!("{key}.vip"),
                    format!("{vip} is also an interface address"),
                ));
            }
            if s.port == 0 {
                return Err(invalid(format!("{key}.port"), "must be 1..=65535"));
            }
            let proto: Proto = s.protocol.parse().map_err(|_| {
                invalid(
                    format!("{key}.protocol"),
                    format!("{:?} is not tcp or udp", s.protocol),
                )
            })?;
            if !keys.insert((vip, s.port, proto)) {
                return Err(invalid(
                    key,
                    format!("service {proto} {vip}:{} is defined twice", s.port),
                ));
            }
            let sched: SchedKind = s
                .scheduler
                .parse()
                .map_err(|e| invalid(format!("{key}.scheduler"), format!("{e}")))?;
            let mut cfg = ServiceConfig::new(vip, s.port, proto, sched);
            for (j, f) in s.scheduler_flags.iter().enumerate() {
                match f.as_str() {
                    "sh-port" | "mh-port" => cfg.flags.hash_port = true,
                    "sh-fallback" | "mh-fallback" => cfg.flags.fallback = true,
                    _ => {
                        return Err(invalid(
                            format!("{key}.scheduler_flags[{j}]"),
                            format!("{f:?} is not sh-port, sh-fallback, mh-port or mh-fallback"),
                        ))
                    }
                }
            }
            if s.persistence_s.is_some() || s.persistence_netmask.is_some() {
                let mut p = Persistence::default();
                if let Some(t) = s.persistence_s {
                    if t == 0 {
                        return Err(invalid(format!("{key}.persistence_s"), "must be positive"));
                    }
                    p.timeout_s = t;
                }
                if let Some(m) = &s.persistence_netmask {
                    p.netmask = m.parse().map_err(|_| {
                        invalid(
                            format!("{key}.persistence_netmask"),
                            format!("{m:?} is not a netmask"),
                        )
                    })?;
                }
                p.expire_quiescent = s.expire_quiescent_template;
                cfg.persistence = Some(p);
            }
            cfg.expire_nodest_conn = s.expire_nodest_conn;
            let mut lips = Vec::new();
            let mut lips6 = Vec::new();
            for (j, a) in s.local_addresses.iter().enumerate() {
                let k = format!("{key}.local_addresses[{j}]");
                // An IPv6 service takes IPv6 local addresses (FullNAT) and IPv4 ones (NAT64 to
                // IPv4 real servers).
                if vip.is_ipv6() && a.contains(':') {
                    let ip: Ipv6Addr = a
                        .parse()
                        .map_err(|_| invalid(&k, format!("{a:?} is not an IPv6 address")))?;
                    if !port_addrs6.iter().flatten().any(|c| c.contains(ip)) {
                        return Err(invalid(&k, format!("{ip} is on no port's IPv6 prefix")));
                    }
                    let iface = port_addrs6.iter().flatten().any(|c| c.addr == ip);
                    if iface || lips6.contains(&ip) {
                        return Err(invalid(
                            &k,
                            format!("{ip} is an interface address or listed twice"),
                        ));
                    }
                    lips6.push(ip);
                    continue;
                }
                let ip: Ipv4Addr = a
                    .parse()
                    .map_err(|_| invalid(&k, format!("{a:?} is not an IPv4 address")))?;
                if !port_addrs.iter().flatten().any(|c| c.contains(ip)) {
                    return Err(invalid(&k, format!("{ip} is on no port's subnet")));
                }
                if owned.contains(&IpAddr::V4(ip)) || lips.contains(&ip) {
                    return Err(invalid(
                        &k,
                        format!("{ip} is an interface address or listed twice"),
                    ));
                }
                lips.push(ip);
            }
            for (j, r) in s.reals.iter().enumerate() {
                let k = format!("{key}.real[{j}]");
                let addr: IpAddr = r.address.parse().map_err(|_| {
                    invalid(
                        format!("{k}.address"),
                        format!("{:?} is not an IPv4 or IPv6 address", r.address),
                    )
                })?;
                if addr.is_ipv6() && vip.is_ipv4() {
                    return Err(invalid(
                        format!("{k}.address"),
                        format!("{addr} is not of the VIP's address family ({vip})"),
                    ));
                }
                let mode: FwdMode = r.mode.parse().map_err(|_| {
                    invalid(
                        format!("{k}.mode"),
                        format!("{:?} is not fullnat, nat, dr or tun", r.mode),
                    )
                })?;
                let nat64 = vip.is_ipv6() && addr.is_ipv4();
                if nat64 && mode != FwdMode::FullNat {
                    return Err(invalid(
                        format!("{k}.mode"),
                        format!("an IPv4 real server of an IPv6 service (NAT64) forwards by fullnat, not {mode}"),
                    ));
                }
                let own_lips = if addr.is_ipv4() {
                    lips.is_empty()
                } else {
                    lips6.is_empty()
                };
                if mode == FwdMode::FullNat && own_lips {
                    let family = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
                    return Err(invalid(
                        format!("{key}.local_addresses"),
                        format!("a fullnat real server needs at least one local address of its family ({family}): `local_addresses`, or `ipvsadm -P -t|-u VIP:PORT -z LIP`"),
                    ));
                }
                let mut rs = RealServer::new(addr, r.port.unwrap_or(s.port), r.weight);
                rs.fwd = mode;
                rs.upper = r.upper;
                rs.lower = r.lower;
                rs.validate().map_err(|e| invalid(&k, format!("{e}")))?;
                if rs.port == 0 {
                    return Err(invalid(format!("{k}.port"), "must be 1..=65535"));
                }
                if cfg.reals.iter().any(|x| x.key() == rs.key()) {
                    return Err(invalid(&k, format!("{addr}:{} is listed twice", rs.port)));
                }
                cfg.reals.push(rs);
            }
            crate::service::Service::check(&cfg).map_err(|e| invalid(&key, format!("{e}")))?;
            let acl = crate::forward::acl::parse_list(&s.acl)
                .map_err(|e| invalid(format!("{key}.acl"), e))?;
            let synproxy = synproxy_mode(&cfg, &s.synproxy)
                .map_err(|e| invalid(format!("{key}.synproxy"), e))?;
            let limit = s
                .client_limit
                .as_ref()
                .map(crate::forward::limit::ClientLimit::parse)
                .transpose()
                .map_err(|(k, e)| invalid(format!("{key}.client_limit.{k}"), e))?;
            let opts = crate::forward::SvcOptions {
                toa: s.toa,
                syn_retry: s.syn_retry,
                sloppy_tcp: s
                    .sloppy_tcp
                    .unwrap_or(cfg.sched == crate::service::SchedKind::Mh),
                acl: acl.into(),
                synproxy,
                limit,
                lips6,
            };
            out.push((cfg, lips, opts));
        }
        // An IPv4 local address of an IPv6 service (NAT64) is its own: the datapath tells its
        // replies from IPv4 FullNAT ones by the address alone.
        for (i, (cfg, lips, _)) in out.iter().enumerate() {
            for (j, (other, olips, _)) in out.iter().enumerate() {
                let shared = lips.iter().find(|l| olips.contains(l));
                if let (true, false, Some(l)) = (cfg.vip.is_ipv6(), other.vip.is_ipv6(), shared) {
                    return Err(invalid(
                        format!("service[{i}].local_addresses"),
                        format!("{l} is a NAT64 local address and service[{j}]'s (IPv4) too"),
                    ));
                }
            }
        }
        // Checks and sorry servers (the admin socket sets them too).
        health::targets(services).map_err(|(k, why)| invalid(k, why))?;
        for (i, s) in services.iter().enumerate() {
            if let Some(sorry) = &s.sorry_server {
                let key = format!("service[{i}].sorry_server");
                let Ok(addr) = sorry.parse::<std::net::SocketAddr>() else {
                    return Err(invalid(
                        key,
                        format!("{sorry:?} is not ADDR:PORT ([ADDR]:PORT for IPv6)"),
                    ));
                };
                // It joins the service as one of its real servers: of their family (IPv4 for
                // NAT64), else of the VIP's.
                let family = s
                    .reals
                    .first()
                    .map_or(s.vip.as_str(), |r| r.address.as_str())
                    .parse::<std::net::IpAddr>()
                    .map(|a| a.is_ipv4());
                if family.is_ok_and(|v4| v4 != addr.is_ipv4()) {
                    return Err(invalid(
                        key,
                        format!("{addr} is not of the family of the service's real servers"),
                    ));
                }
            }
        }
        Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The lab's config, dual-stack: IPv6 on both ports and an IPv6 DR service (`extra` keys in it,
    /// `real` its real server's lines), plus `tail`.
    fn dual(extra: &str, real: &str, tail: &str) -> String {
        crate::testkit::dual_stack(crate::testkit::LAB_CONFIG)
            + &format!(
                "\n[[service]]\nvip = \"2001:db8:10::100\"\nport = 80\n{extra}\n[[service.real]]\n{real}\n{tail}"
            )
    }

    #[test]
    fn ipv6_config_is_checked_key_by_key() {
        let dr = "address = \"2001:db8:20::11\"\nmode = \"dr\"";
        let fullnat = "address = \"2001:db8:20::11\"";
        let v = Config::parse(&dual("", dr, ""))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(v.port_addrs6[1][0].to_string(), "2001:db8:20::1/64");
        assert_eq!(v.services.len(), 3);
        let lip = |a: &str| format!("local_addresses = [\"{a}\"]");
        let v = Config::parse(&dual(&lip("2001:db8:20::200"), fullnat, ""))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(
            v.services[2].2.lips6,
            ["2001:db8:20::200".parse::<Ipv6Addr>().unwrap()]
        );
        let route = |via: &str| {
            format!(
                "\n[[route]]\nprefix = \"2001:db8:40::/48\"\nvia = \"{via}\"\nport = \"server\"\n"
            )
        };
        let v = Config::parse(&dual("", dr, &route("2001:db8:20::254")))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(v.routes6.len(), 1);
        assert!(Config::parse(&dual("", dr, &route("fe80::1")))
            .unwrap()
            .validate()
            .is_ok());
        let nat = "address = \"2001:db8:20::11\"\nmode = \"nat\"";
        assert!(Config::parse(&dual("", nat, ""))
            .unwrap()
            .validate()
            .is_ok());
        let v4_real = "address = \"10.20.0.11\"\nmode = \"dr\"";
        let nat64 = dual(&lip("10.20.0.210"), "address = \"10.20.0.11\"", "");
        assert!(Config::parse(&nat64).unwrap().validate().is_ok(), "NAT64");
        let cases = [
            (
                dual("", v4_real, ""),
                "service[2].real[0].mode",
                "(NAT64) forwards by fullnat",
            ),
            (
                dual(&lip("10.20.0.200"), "address = \"10.20.0.11\"", ""),
                "service[2].local_addresses",
                "NAT64 local address",
            ),
            (
                dual("", fullnat, ""),
                "service[2].local_addresses",
                "at least one",
            ),
            (
                dual(&lip("10.20.0.210"), fullnat, ""),
                "service[2].local_addresses",
                "of its family (IPv6)",
            ),
            (
                dual(&lip("2001:db8:99::200"), fullnat, ""),
                "local_addresses[0]",
                "IPv6 prefix",
            ),
            (
                dual(&lip("2001:db8:20::1"), fullnat, ""),
                "local_addresses[0]",
                "interface",
            ),
            (
                dual("acl = [\"allow 2001:db8::1/64\"]", dr, ""),
                "service[2].acl",
                "host bits",
            ),
            (
                dual("synproxy = \"on\"", dr, ""),
                "service[2].synproxy",
                "IPv6",
            ),
            (
                dual("persistence_netmask = \"255.0.0.0\"", dr, ""),
                "persistence_netmask",
                "IPv6",
            ),
            (
                dual("", dr, "").replace("vip = \"2001:db8:10::100\"", "vip = \"fe80::100\""),
                "service[2].vip",
                "global unicast",
            ),
            (
                dual("", dr, "").replace("\"2001:db8:20::1/64\"", "\"2001:db8:10::1/64\""),
                "addresses[1]",
                "assigned twice",
            ),
            (
                dual("", dr, &route("2001:db8:99::1")),
                "route[0].via",
                "neither link-local",
            ),
            (
                dual(
                    "",
                    dr,
                    &route("2001:db8:20::254").replace("40::/48", "40::1/48"),
                ),
                "route[0].prefix",
                "host bits",
            ),
        ];
        for (text, key, why) in cases {
            let e = match Config::parse(&text) {
                Err(e) => e.to_string(),
                Ok(c) => c.validate().unwrap_err().to_string(),
            };
            assert!(e.contains(key) && e.contains(why), "{key}: {e}");
        }
    }

    #[test]
    fn one_vip_has_one_owner_and_kernel_ownership_needs_a_twin() {
        let text = crate::testkit::LAB_CONFIG.replacen(
            "scheduler = \"rr\"",
            "scheduler = \"rr\"\nowner = \"kernel\"",
            1,
        );
        assert_ne!(text, crate::testkit::LAB_CONFIG);
        let refused = |t: &str| match Config::parse(t) {
            Err(e) => e.to_string(),
            Ok(c) => c.validate().unwrap_err().to_string(),
        };
        let e = refused(&text);
        assert!(
            e.contains("service[1].owner") && e.contains("both owners"),
            "{e}"
        );
        let all =
            crate::testkit::LAB_CONFIG.replace("scheduler =", "owner = \"kernel\"\nscheduler =");
        let v = Config::parse(&all).unwrap().validate().unwrap();
        assert_eq!(v.kernel_owned, [Ipv4Addr::new(10, 10, 0, 100)]);
        let none = crate::testkit::without_twins(&all);
        let e = refused(&none);
        assert!(e.contains("needs a port with a twin"), "{e}");
    }

    #[test]
    fn announce_keys_are_checked() {
        let refused = |extra: &str, key: &str| {
            let text = format!("{}{extra}", crate::testkit::LAB_CONFIG);
            let e = match Config::parse(&text) {
                Err(e) => e.to_string(),
                Ok(c) => c.validate().unwrap_err().to_string(),
            };
            assert!(e.contains(key), "{extra}: {e}");
        };
        for t in [0, 253, 254, 255] {
            refused(&format!("\n[announce]\ntable = {t}\n"), "announce.table");
        }
        refused("\n[announce]\n", "table");
        refused(
            "\n[announce]\ntable = 100\ndrain_timeout_s = 0\n",
            "announce.drain_timeout_s",
        );
        refused(
            "\n[announce]\ntable = 100\nwithdraw_wait_ms = 10001\n",
            "announce.withdraw_wait_ms",
        );
        refused("\n[announce]\ntable = 100\nlearn = true\n", "learn");
        let ok = format!("{}\n[announce]\ntable = 100\n", crate::testkit::LAB_CONFIG);
        let c = Config::parse(&ok).unwrap();
        assert!(c.validate().is_ok());
        let a = c.announce.unwrap();
        assert_eq!(
            (a.table, a.drain_timeout_s, a.withdraw_wait_ms),
            (100, 30, 500)
        );
    }

    #[test]
    fn metrics_listen_must_be_an_address_and_port() {
        for bad in ["9101", "localhost:9101", "127.0.0.1", "1.2.3.4:99999"] {
            let text = format!(
                "{}\n[metrics]\nlisten = \"{bad}\"\n",
                crate::testkit::LAB_CONFIG
            );
            let e = match Config::parse(&text) {
                Err(e) => e.to_string(),
                Ok(c) => c.validate().unwrap_err().to_string(),
            };
            assert!(
                e.contains("metrics.listen") && e.contains(bad),
                "{bad}: {e}"
            );
        }
        let text = format!("{}\n[metrics]\nport = 1\n", crate::testkit::LAB_CONFIG);
        assert!(Config::parse(&text).is_err());
        let text = format!(
            "{}\n[metrics]\nlisten = \"[::1]:9101\"\n",
            crate::testkit::LAB_CONFIG
        );
        let c = Config::parse(&text).unwrap();
        assert!(c.validate().is_ok());
        assert_eq!(c.metrics.unwrap().addr().unwrap().port(), 9101);
    }

    #[test]
    fn max_half_open_is_bounded_by_the_capacity_and_defaults_to_half() {
        let with = |extra: &str| {
            let text = format!("{}\n[conn]\n{extra}\n", crate::testkit::LAB_CONFIG);
            Config::parse(&text).and_then(|c| c.validate().map(|_| c))
        };
        for bad in ["max_half_open = 0", "max_half_open = 2000000"] {
            let e = with(bad).unwrap_err().to_string();
            assert!(e.contains("conn.max_half_open"), "{bad}: {e}");
        }
        let c = with("max_half_open = 100").unwrap();
        assert_eq!(c.conn.half_open_limit(c.conn.capacity), 100);
        let c = with("").unwrap();
        assert_eq!(c.conn.half_open_limit(c.conn.capacity), c.conn.capacity / 2);
        assert_eq!(c.conn.half_open_limit(1), 1);
    }

    #[test]
    fn sync_settings_are_checked_and_name_the_key_at_fault() {
        let key = "00112233445566778899aabbccddeeff";
        let with = |section: &str| {
            let text = format!("{}\n[sync]\n{section}\n", crate::testkit::LAB_CONFIG);
            Config::parse(&text).and_then(|c| {
                c.validate()?;
                c.sync.as_ref().unwrap().settings(&c.ports)
            })
        };
        let s = with(&format!(
            "port = \"server\"\npeer = \"10.20.0.2\"\nkey = \"{key}\""
        ))
        .unwrap();
        assert_eq!(
            (s.mode, s.local, s.udp_port, s.refresh_ms, s.key.len()),
            (
                crate::sync::RoleMode::Auto,
                "10.20.0.1".parse().unwrap(),
                8848,
                10_000,
                16
            )
        );
        assert_eq!(s.id, u32::from_be_bytes([10, 20, 0, 1]));
        let refused = |section: String, what: &str| {
            let e = with(&section).map(|_| ()).unwrap_err().to_string();
            assert!(e.contains(what), "{section}: {e}");
        };
        let base = |extra: &str| {
            format!("port = \"server\"\npeer = \"10.20.0.2\"\nkey = \"{key}\"\n{extra}")
        };
        refused(base("role = \"primary\""), "sync.role");
        refused(base("address = \"10.20.0.9\""), "sync.address");
        refused(base("refresh_s = 0"), "sync.refresh_s");
        refused(base("max_msgs_per_s = 0"), "sync.max_msgs_per_s");
        refused(
            "port = \"server\"\npeer = \"10.20.0.2\"\nkey = \"00ff\"".to_string(),
            "sync.key",
        );
        refused(
            format!("port = \"server\"\npeer = \"10.20.0.1\"\nkey = \"{key}\""),
            "sync.peer",
        );
        refused(
            format!("port = \"nowhere\"\npeer = \"10.20.0.2\"\nkey = \"{key}\""),
            "sync.port",
        );
        let none = format!(
            "{}\n[sync]\n{}\n",
            crate::testkit::without_twins(crate::testkit::LAB_CONFIG),
            base("")
        );
        let e = Config::parse(&none).and_then(|c| c.validate()).map(|_| ());
        assert!(e.unwrap_err().to_string().contains("no kernel twin"));
    }

    #[test]
    fn synproxy_settings_are_checked_and_refused_where_it_cannot_work() {
        let with = |svc_extra: &str, section: &str| {
            let text = format!(
                "{}\n[synproxy]\n{section}\n",
                crate::testkit::LAB_CONFIG.replacen(
                    "scheduler = \"wrr\"",
                    &format!("scheduler = \"wrr\"\n{svc_extra}"),
                    1
                )
            );
            Config::parse(&text).and_then(|c| c.validate())
        };
        let v = with("synproxy = \"auto\"", "").unwrap();
        assert_eq!(
            v.services[0].2.synproxy,
            crate::forward::synproxy::Mode::Auto
        );
        let refused = |svc: &str, section: &str, key: &str| {
            let e = with(svc, section).map(|_| ()).unwrap_err().to_string();
            assert!(e.contains(key), "{svc} / {section}: {e}");
        };
        refused("synproxy = \"maybe\"", "", "service[0].synproxy");
        let dr = crate::testkit::LAB_CONFIG
            .replacen(
                "scheduler = \"wrr\"",
                "scheduler = \"wrr\"\nsynproxy = \"on\"",
                1,
            )
            .replacen(
                "address = \"10.20.0.12\"\n",
                "address = \"10.20.0.12\"\nmode = \"dr\"\n",
                1,
            );
        let e = Config::parse(&dr)
            .and_then(|c| c.validate())
            .map(|_| ())
            .unwrap_err();
        assert!(e.to_string().contains("FullNAT or NAT"), "{e}");
        refused("", "wscale = 15", "synproxy.wscale");
        refused("", "mss = 100", "synproxy.mss");
        refused("", "auto_half_open = 0", "synproxy.auto_half_open");
        refused("", "key = \"00ff\"", "synproxy.key");
        let udp = crate::testkit::LAB_CONFIG.replacen(
            "scheduler = \"rr\"",
            "scheduler = \"rr\"\nsynproxy = \"on\"",
            1,
        );
        let e = Config::parse(&udp)
            .and_then(|c| c.validate())
            .map(|_| ())
            .unwrap_err();
        assert!(e.to_string().contains("TCP"), "{e}");
        let key = "0123456789abcdef".repeat(4);
        assert!(with("", &format!("key = \"{key}\"")).is_ok());
    }

    #[test]
    fn sloppy_tcp_defaults_to_on_for_mh_only() {
        let opts = |sched: &str, extra: &str| {
            let text = crate::testkit::LAB_CONFIG.replacen(
                "scheduler = \"wrr\"",
                &format!("scheduler = \"{sched}\"\n{extra}"),
                1,
            );
            Config::parse(&text).unwrap().validate().unwrap().services[0]
                .2
                .clone()
        };
        assert!(opts("mh", "").sloppy_tcp);
        assert!(!opts("wrr", "").sloppy_tcp);
        assert!(!opts("mh", "sloppy_tcp = false").sloppy_tcp);
        assert!(opts("rr", "sloppy_tcp = true").sloppy_tcp);
    }

    #[test]
    fn held_packets_and_frames_must_fit_the_pool() {
        let refused = |extra: &str, key: &str| {
            let text = format!("{}{extra}", crate::testkit::LAB_CONFIG);
            let e = match Config::parse(&text) {
                Err(e) => e.to_string(),
                Ok(c) => c.validate().unwrap_err().to_string(),
            };
            assert!(e.contains(key), "{extra}: {e}");
        };
        refused(
            "\n[mempool]\nmbufs = 2047\n[neighbour]\nmax_held = 1024\n",
            "neighbour.max_held",
        );
        refused(
            "\n[mempool]\nmbufs = 2047\n[fragments]\nmax_held = 1024\n",
            "fragments.max_held",
        );
        refused(
            "\n[fragments]\nmax_datagrams = 0\n",
            "fragments.max_datagrams",
        );
        refused("\n[fragments]\ntimeout_ms = 5\n", "fragments.timeout_ms");
        let jumbo = crate::testkit::LAB_CONFIG.replacen(
            "addresses = [\"10.10.0.1/24\"]",
            "addresses = [\"10.10.0.1/24\"]\nmtu = 9000",
            1,
        );
        let e = Config::parse(&jumbo)
            .and_then(|c| c.validate().map(|_| ()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("port[0].mtu") && e.contains("data_room"), "{e}");
        let roomy = jumbo.clone() + "\n[mempool]\ndata_room = 9216\n";
        assert!(Config::parse(&roomy).unwrap().validate().is_ok());
    }

    #[test]
    fn expire_quiescent_template_reaches_the_persistence_of_its_service() {
        for on in [false, true] {
            let text = crate::testkit::LAB_CONFIG.replacen(
                "scheduler = \"wrr\"",
                &format!(
                    "scheduler = \"wrr\"\npersistence_s = 60\nexpire_quiescent_template = {on}"
                ),
                1,
            );
            let v = Config::parse(&text).unwrap().validate().unwrap();
            let p = v.services[0].0.persistence.expect("persistent");
            assert_eq!(p.expire_quiescent, on);
        }
        let bad = crate::testkit::LAB_CONFIG.to_string() + "\n[conn]\nconn_reuse_mode = 4\n";
        let e = match Config::parse(&bad) {
            Err(e) => e.to_string(),
            Ok(c) => c.validate().unwrap_err().to_string(),
        };
        assert!(e.contains("conn.conn_reuse_mode"), "{e}");
    }

    const GOOD: &str = r#"
[eal]
file_prefix = "t1"
no_huge = true
memory_mb = 256

[workers]
count = 2
cpus = [0, 1]
idle_sleep_us = 100

[[port]]
name = "client"
device = "net_af_packet0,iface=lb-c,qpairs=2"
addresses = ["10.10.0.1/24"]

[[port]]
name = "server"
device = "0000:03:00.0"
addresses = ["10.20.0.1/24", "10.20.0.200/24"]

[[route]]
prefix = "0.0.0.0/0"
via = "10.10.0.254"
port = "client"
"#;

    fn err_of(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn good_config_parses_and_builds_eal_args() {
        let c = Config::parse(GOOD).unwrap();
        let v = c.validate().unwrap();
        assert_eq!(v.port_addrs[1].len(), 2);
        assert_eq!(v.routes[0].2, 0);
        let args = c.eal_args().join(" ");
        assert!(args.contains("--lcores 0@0,1@0,2@1"), "{args}");
        assert!(args.contains("--vdev net_af_packet0,iface=lb-c,qpairs=2"));
        assert!(args.contains("-a 0000:03:00.0"));
        assert!(!args.contains("--no-pci"));
        assert!(args.contains("--no-huge --no-shconf"));
        assert!(args.contains("--file-prefix t1"));
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err_of(&GOOD.replace("idle_sleep_us", "idle_sleeep_us"));
        assert!(e.contains("idle_sleeep_us"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (
                GOOD.replace("10.10.0.1/24", "10.10.0.1/33"),
                "port[0].addresses[0]",
            ),
            (
                GOOD.replace("10.10.0.1/24", "10.10.0.300/24"),
                "port[0].addresses[0]",
            ),
            (GOOD.replace("count = 2", "count = 0"), "workers.count"),
            (GOOD.replace("cpus = [0, 1]", "cpus = [0]"), "workers.cpus"),
            (
                GOOD.replace("via = \"10.10.0.254\"", "via = \"10.99.0.254\""),
                "route[0].via",
            ),
            (
                GOOD.replace("port = \"client\"", "port = \"nope\""),
                "route[0].port",
            ),
            (GOOD.replace("0.0.0.0/0", "10.0.0.1/8"), "route[0].prefix"),
            (GOOD.replace("0000:03:00.0", "eth0"), "port[1].device"),
            (
                GOOD.replace("name = \"server\"", "name = \"client\""),
                "port[1].name",
            ),
            (
                GOOD.replace("10.20.0.200/24", "10.10.0.1/24"),
                "port[1].addresses[1]",
            ),
            (
                GOOD.replace("file_prefix = \"t1\"", "file_prefix = \"a/b\""),
                "eal.file_prefix",
            ),
        ];
        for (text, key) in cases {
            let e = err_of(&text);
            assert!(e.starts_with(key), "expected error naming {key}, got: {e}");
        }
    }

    #[test]
    fn wrong_type_is_refused() {
        let e = err_of(&GOOD.replace("count = 2", "count = \"two\""));
        assert!(e.contains("count"), "{e}");
    }

    #[test]
    fn pci_addresses_are_recognised() {
        assert!(is_pci_addr("0000:03:00.0"));
        assert!(is_pci_addr("03:00.1"));
        assert!(!is_pci_addr("net_ring0"));
        assert!(!is_pci_addr("0000:03:00"));
    }
}

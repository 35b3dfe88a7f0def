//! What the daemon answers with: plain serde views of services, connections, counters and the
//! network state, shared by the server (which fills them) and the clients (which format them).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

/// Where an address or a route of the running topology comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The config, on a port without a twin.
    Config,
    /// The config, written onto the twin at start and still in the kernel.
    ConfigKernel,
    /// The kernel only (added by hand or by a daemon).
    Kernel,
}

/// Traffic counters of a service or real server (`ipvsadm --stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
}

/// Per-second rates (`ipvsadm --rate`); bytes per second, as IPVS's "BPS".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealView {
    pub addr: IpAddr,
    pub port: u16,
    pub weight: u32,
    /// `fullnat`, `nat`, `dr`, `tun`.
    pub mode: String,
    pub upper: u32,
    pub lower: u32,
    pub active: u32,
    pub inactive: u32,
    /// Live persistence templates pointing at this server (`--persistent-conn`).
    #[serde(default)]
    pub persist_conns: u32,
    pub stats: Counters,
    pub rate: Rates,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SvcView {
    pub proto: String,
    pub vip: IpAddr,
    pub port: u16,
    pub scheduler: String,
    pub flags: Vec<String>,
    pub persistence_s: Option<u32>,
    pub netmask: Option<Ipv4Addr>,
    /// An IPv6 service's persistence prefix length.
    #[serde(default)]
    pub prefix6: Option<u8>,
    pub lips: Vec<IpAddr>,
    /// Local-port conflicts of each LIP, in `lips` order, summed over the workers (`ipvsadm -G`).
    #[serde(default)]
    pub lip_conflicts: Vec<u64>,
    pub toa: bool,
    /// The access list's rules with the connections each decided, then the default
    /// (`otherwise allow|deny`), summed over the workers; empty without a list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acl: Vec<AclRuleView>,
    /// The SYN proxy: `off`, `on` or `auto` (`synproxy`).
    #[serde(default = "synproxy_off")]
    pub synproxy: String,
    /// The per-client limit and its refusals, summed over the workers; none without a limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitView>,
    pub reals: Vec<RealView>,
    pub stats: Counters,
    pub rate: Rates,
}

fn synproxy_off() -> String {
    "off".into()
}

/// One access-list rule and the new connections it decided since the daemon started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRuleView {
    pub rule: String,
    pub hits: u64,
}

/// A service's per-client limit (`client_limit`; 0: no such limit) and the new connections it
/// refused since the daemon started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitView {
    pub rate: u32,
    pub burst: u32,
    pub max_conns: u32,
    pub prefix: u8,
    /// `drop` or `rst`.
    pub action: String,
    pub rate_refused: u64,
    pub conns_refused: u64,
}

impl LimitView {
    pub fn new(l: &crate::forward::limit::ClientLimit, refused: [u64; 2]) -> LimitView {
        LimitView {
            rate: l.rate,
            burst: l.burst,
            max_conns: l.max_conns,
            prefix: l.prefix,
            action: if l.rst { "rst" } else { "drop" }.into(),
            rate_refused: refused[0],
            conns_refused: refused[1],
        }
    }
}

impl std::fmt::Display for LimitView {
    /// The limit as `ClientLimit` shows it (`rate 50/s burst 50 max_conns 10 per /24 drop`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = crate::forward::limit::ClientLimit {
            rate: self.rate,
            burst: self.burst,
            max_conns: self.max_conns,
            prefix: self.prefix,
            rst: self.action == "rst",
            // What the display shows does not depend on the family.
            v6: false,
        };
        l.fmt(f)
    }
}

impl Default for RealView {
    fn default() -> Self {
        RealView {
            addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 0,
            weight: 0,
            mode: String::new(),
            upper: 0,
            lower: 0,
            active: 0,
            inactive: 0,
            persist_conns: 0,
            stats: Counters::default(),
            rate: Rates::default(),
        }
    }
}

impl Default for SvcView {
    fn default() -> Self {
        SvcView {
            proto: String::new(),
            vip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 0,
            scheduler: String::new(),
            flags: Vec::new(),
            persistence_s: None,
            netmask: None,
            prefix6: None,
            lips: Vec::new(),
            lip_conflicts: Vec::new(),
            toa: false,
            acl: Vec::new(),
            synproxy: synproxy_off(),
            limit: None,
            reals: Vec::new(),
            stats: Counters::default(),
            rate: Rates::default(),
        }
    }
}

/// One stage of a worker's poll round (`stats::Stage`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRow {
    pub stage: String,
    /// Calls that had packets (housekeeping: every run).
    pub calls: u64,
    pub packets: u64,
    pub cycles: u64,
}

/// A worker's busy cycles by stage since the start or the last `runtime clear`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRuntime {
    pub worker: u16,
    /// Cycles of the rounds that did work, and their packets: the stages' cycles add up to it.
    pub busy_cycles: u64,
    pub busy_packets: u64,
    pub stages: Vec<StageRow>,
}

/// The answer to `runtime`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeView {
    /// TSC ticks per second (cycles to time).
    pub tsc_hz: u64,
    pub workers: Vec<WorkerRuntime>,
}

/// The answer to `list`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListView {
    /// The generation every worker runs.
    pub generation: u64,
    /// Connection capacity, all workers together (`ipvsadm`'s "size").
    pub size: u64,
    pub services: Vec<SvcView>,
}

/// One connection as a worker reports it, or a persistence template (`template`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnInfo {
    /// 0 for a template: the workers share them.
    pub worker: u16,
    /// `TCP` or `UDP`.
    pub proto: String,
    pub client: (IpAddr, u16),
    pub vip: (IpAddr, u16),
    /// The (LIP, lport) of a FullNAT connection.
    pub local: Option<(IpAddr, u16)>,
    /// The real server, if still known.
    pub dest: Option<(IpAddr, u16)>,
    pub state: String,
    /// Milliseconds until the connection expires unless a packet comes.
    pub expire_ms: u64,
    /// A persistence template (IPVS's `IP_VS_CONN_F_TEMPLATE`): the client's masked address with
    /// port 0, the service and the real server new connections of that client go to; state NONE.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub template: bool,
}

#[cfg(test)]
impl ConnInfo {
    /// The lab's FullNAT connection on worker 0: 10.10.0.2:40000 to the VIP 10.10.0.100:80, from
    /// 10.20.0.200:5000 to the real server 10.20.0.11:80, ESTABLISHED, `expire_ms` to go.
    pub(crate) fn lab_example(expire_ms: u64) -> ConnInfo {
        use std::net::Ipv4Addr;
        ConnInfo {
            worker: 0,
            proto: "TCP".into(),
            client: (Ipv4Addr::new(10, 10, 0, 2).into(), 40000),
            vip: (Ipv4Addr::new(10, 10, 0, 100).into(), 80),
            local: Some((Ipv4Addr::new(10, 20, 0, 200).into(), 5000)),
            dest: Some((Ipv4Addr::new(10, 20, 0, 11).into(), 80)),
            state: "ESTABLISHED".into(),
            expire_ms,
            template: false,
        }
    }
}

/// One neighbour entry of one worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighInfo {
    pub worker: u16,
    pub ip: IpAddr,
    pub port: String,
    /// None while unresolved.
    pub mac: Option<String>,
    /// NUD state, as `ip neigh` names it (REACHABLE, STALE, DELAY, PROBE, FAILED, INCOMPLETE).
    #[serde(default)]
    pub state: String,
    pub age_ms: u64,
}

/// What a worker answers to `Msg::Inspect`, from its housekeeping.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerDump {
    pub worker: u16,
    /// Live connections in the worker's table (the listing may be cut at the limit).
    pub total: u64,
    pub conns: Vec<ConnInfo>,
    pub neigh: Vec<NeighInfo>,
    /// Where the next chunk starts, if the worker stopped before the end of its table.
    #[serde(default)]
    pub next: Option<u32>,
}

/// The answer to `conns`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnsView {
    /// Live connections in the workers' tables (the listing may be cut at its limit).
    pub total: u64,
    /// Live persistence templates of every service, when the filter asked for them (`-Lc`
    /// lists them after the connections; none with a worker filter, and the address and port
    /// filters do not narrow this count); not counted in `total`.
    #[serde(default)]
    pub templates: u64,
    pub conns: Vec<ConnInfo>,
}

/// One worker's counters, by name (a stable, printable form of `stats::WorkerStats`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerView {
    pub counters: BTreeMap<String, u64>,
    /// Non-zero drop counters by reason.
    pub drops: BTreeMap<String, u64>,
}

/// The answer to `stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsView {
    pub workers: Vec<WorkerView>,
    pub total: WorkerView,
    /// Per-port lines of the daemon's report (`port NAME (driver): ...`).
    pub ports: Vec<String>,
    /// Gateway-wide rates over the last second.
    pub rate: Rates,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortView {
    pub name: String,
    pub mac: String,
    pub addrs: Vec<String>,
    /// Where each address comes from (same order as `addrs`).
    #[serde(default)]
    pub origins: Vec<Origin>,
    /// The port's kernel twin, if it has one.
    #[serde(default)]
    pub twin: Option<TwinView>,
}

/// A kernel twin.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinView {
    /// The kernel interface's name.
    pub name: String,
    /// `tap` or `virtio-user`.
    pub driver: String,
    pub ifindex: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteView {
    pub prefix: String,
    pub via: Option<IpAddr>,
    pub port: String,
    /// Where the route comes from; None for a port address's connected route.
    #[serde(default)]
    pub origin: Option<Origin>,
}

/// The answer to `net`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetView {
    pub ports: Vec<PortView>,
    pub routes: Vec<RouteView>,
    pub neigh: Vec<NeighInfo>,
    /// VIPs and LIPs the gateway answers ARP (neighbour solicitations for IPv6) for.
    pub service_addrs: Vec<IpAddr>,
    /// VIPs and LIPs of `owner = "kernel"` services, with whether a twin holds them.
    #[serde(default)]
    pub kernel_owned: Vec<(IpAddr, bool)>,
    /// Punt counters summed over the workers (`net::punt`).
    #[serde(default)]
    pub punt: BTreeMap<String, u64>,
    /// The solicited-node groups the twins listen to for the services' IPv6 addresses, as
    /// (twin, group) (`kernel::mld`), and the joins and leaves the kernel refused.
    #[serde(default)]
    pub listening6: Vec<(String, std::net::Ipv6Addr)>,
    #[serde(default)]
    pub listen6_errors: u64,
}

/// The answer to `timeouts`: IPVS's three (`tcp tcpfin udp`) and every state's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutsView {
    pub tcp: u32,
    pub tcpfin: u32,
    pub udp: u32,
    pub all: BTreeMap<String, u32>,
}

/// The answer to `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    pub version: String,
    pub protocol: u32,
    pub generation: u64,
    pub workers: usize,
    pub services: usize,
    pub reals: usize,
}

//! Ethernet ports: configuration with N rx/tx queues, RSS where the driver has it, start/stop, MAC,
//! link state, statistics, and the RSS key and redirection table the reply-steering logic needs.

use super::{Error, Mempool, Result};
use crate::wire::MacAddr;
use std::ffi::{CStr, CString};

/// How a port is brought up.
#[derive(Clone, Debug)]
pub struct PortConfig {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// Ask for RSS over IPv4 TCP/UDP when the driver offers it and there is more than one rx queue.
    pub rss: bool,
    /// Ask for IPv4/TCP/UDP checksum offloads where the driver has them.
    pub csum_offload: bool,
    pub promiscuous: bool,
    pub mtu: Option<u16>,
}

/// What the driver offers and what we turned on.
#[derive(Clone, Debug, Default)]
pub struct PortInfo {
    pub driver: String,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    pub rss_offloads: u64,
    pub rx_offload_capa: u64,
    pub tx_offload_capa: u64,
    pub reta_size: u16,
    pub hash_key_size: u8,
}

/// RSS as the port runs it: the key and the redirection table (queue per entry).
#[derive(Clone, Debug)]
pub struct RssConfig {
    pub key: Vec<u8>,
    pub reta: Vec<u16>,
    pub hash_fields: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkState {
    pub up: bool,
    pub speed_mbps: u32,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct PortStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
}

/// A configured port. Stopped and closed when dropped.
pub struct Port {
    pub id: u16,
    pub name: String,
    pub info: PortInfo,
    /// RSS key and RETA, when RSS is on.
    pub rss: Option<RssConfig>,
    pub rx_csum: bool,
    started: bool,
}

impl Port {
    /// Finds a probed port by its device name (the vdev name before the first comma, or the PCI
    /// address).
    pub fn id_by_name(name: &str) -> Result<u16> {
        let c = CString::new(name).map_err(|_| Error::new("port name", 22))?;
        let mut id = 0u16;
        // SAFETY: valid C string and out-pointer; EAL initialised by the caller.
        let ret = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
        Error::check(&format!("no DPDK port named {name:?}"), ret)?;
        Ok(id)
    }

    fn query_info(id: u16) -> Result<PortInfo> {
        let mut di = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: di is a valid out-struct for the call.
        Error::check("rte_eth_dev_info_get", unsafe {
            dpdk_sys::rte_eth_dev_info_get(id, &mut di)
        })?;
        let driver = if di.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: driver_name points to the driver's static NUL-terminated name.
            unsafe { CStr::from_ptr(di.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        Ok(PortInfo {
            driver,
            max_rx_queues: di.max_rx_queues,
            max_tx_queues: di.max_tx_queues,
            rss_offloads: di.flow_type_rss_offloads,
            rx_offload_capa: di.rx_offload_capa,
            tx_offload_capa: di.tx_offload_capa,
            reta_size: di.reta_size,
            hash_key_size: di.hash_key_size,
        })
    }

    /// Configures queues (each rx queue fed from `pool`) and starts the port.
    pub fn start(id: u16, name: &str, cfg: &PortConfig, pool: &Mempool) -> Result<Port> {
        let info = Self::query_info(id)?;
        if cfg.rx_queues > info.max_rx_queues || cfg.tx_queues > info.max_tx_queues {
            return Err(Error::new(
                format!(
                    "port {name}: {} rx / {} tx queues requested, driver {} allows {} / {}",
                    cfg.rx_queues,
                    cfg.tx_queues,
                    info.driver,
                    info.max_rx_queues,
                    info.max_tx_queues
                ),
                22,
            ));
        }
        let mut conf = dpdk_sys::rte_eth_conf::default();
        // IPv6 too (`inet6`): its TCP and UDP by addresses and ports, as IPv4's, so that IPv6
        // replies are steered by the same key and RETA (`inet6::fullnat::Pool6`).
        let want_hf = dpdk_sys::RTE_ETH_RSS_NONFRAG_IPV4_TCP
            | dpdk_sys::RTE_ETH_RSS_NONFRAG_IPV4_UDP
            | dpdk_sys::RTE_ETH_RSS_IPV4
            | dpdk_sys::RTE_ETH_RSS_NONFRAG_IPV6_TCP
            | dpdk_sys::RTE_ETH_RSS_NONFRAG_IPV6_UDP
            | dpdk_sys::RTE_ETH_RSS_IPV6;
        let rss_hf = want_hf & info.rss_offloads;
        let use_rss = cfg.rss && cfg.rx_queues > 1 && rss_hf != 0;
        if use_rss {
            conf.rxmode.mq_mode = dpdk_sys::rte_eth_rx_mq_mode::RTE_ETH_MQ_RX_RSS;
            // NULL key: the driver keeps its default key, which we read back after start.
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
        }
        let rx_csum = cfg.csum_offload
            && info.rx_offload_capa & dpdk_sys::RTE_ETH_RX_OFFLOAD_CHECKSUM
                == dpdk_sys::RTE_ETH_RX_OFFLOAD_CHECKSUM;
        if rx_csum {
            conf.rxmode.offloads |= dpdk_sys::RTE_ETH_RX_OFFLOAD_CHECKSUM;
        }
        // TX checksum offload is not turned on: every rewrite updates the checksums incrementally
        // (RFC 1624) in a few instructions, less than preparing the pseudo-header checksum the NIC
        // would need (DPDK's mbuf API), and the packets the gateway generates are few.
        // SAFETY: conf is a fully initialised rte_eth_conf; the port is not started.
        let ret =
            unsafe { dpdk_sys::rte_eth_dev_configure(id, cfg.rx_queues, cfg.tx_queues, &conf) };
        Error::check(&format!("rte_eth_dev_configure({name})"), ret)?;
        if let Some(mtu) = cfg.mtu {
            // SAFETY: configured, not started; plain integer argument.
            let ret = unsafe { dpdk_sys::rte_eth_dev_set_mtu(id, mtu) };
            Error::check(&format!("rte_eth_dev_set_mtu({name}, {mtu})"), ret)?;
        }
        let (mut nrx, mut ntx) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: valid out-pointers.
        let ret = unsafe { dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut nrx, &mut ntx) };
        Error::check("rte_eth_dev_adjust_nb_rx_tx_desc", ret)?;
        // SAFETY: plain query.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(id) }.max(0) as u32;
        for q in 0..cfg.rx_queues {
            // SAFETY: NULL rxconf means driver defaults; the pool outlives the port (the daemon drops
            // ports before pools).
            let ret = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(
                    id,
                    q,
                    nrx,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            Error::check(&format!("rte_eth_rx_queue_setup({name}, {q})"), ret)?;
        }
        for q in 0..cfg.tx_queues {
            // SAFETY: NULL txconf means driver defaults.
            let ret =
                unsafe { dpdk_sys::rte_eth_tx_queue_setup(id, q, ntx, socket, std::ptr::null()) };
            Error::check(&format!("rte_eth_tx_queue_setup({name}, {q})"), ret)?;
        }
        if cfg.promiscuous {
            // SAFETY: plain call on a configured port; failure only means the driver cannot.
            let _ = unsafe { dpdk_sys::rte_eth_promiscuous_enable(id) };
        }
        // SAFETY: all queues are set up.
        let ret = unsafe { dpdk_sys::rte_eth_dev_start(id) };
        Error::check(&format!("rte_eth_dev_start({name})"), ret)?;
        let mut port = Port {
            id,
            name: name.to_string(),
            info,
            rss: None,
            rx_csum,
            started: true,
        };
        if use_rss {
            port.rss = port.query_rss().ok();
        }
        Ok(port)
    }

    /// Reads back the RSS key and redirection table the port runs with.
    fn query_rss(&self) -> Result<RssConfig> {
        let mut key = vec![0u8; (self.info.hash_key_size as usize).max(40)];
        let mut rc = dpdk_sys::rte_eth_rss_conf {
            rss_key: key.as_mut_ptr(),
            rss_key_len: key.len() as u8,
            rss_hf: 0,
        };
        // SAFETY: rss_key points to key.len() writable bytes.
        let ret = unsafe { dpdk_sys::rte_eth_dev_rss_hash_conf_get(self.id, &mut rc) };
        Error::check("rte_eth_dev_rss_hash_conf_get", ret)?;
        key.truncate(rc.rss_key_len as usize);
        let size = self.info.reta_size as usize;
        let group = dpdk_sys::RTE_ETH_RETA_GROUP_SIZE as usize;
        let mut groups = vec![
            dpdk_sys::rte_eth_rss_reta_entry64 {
                mask: u64::MAX,
                reta: [0; 64]
            };
            size.div_ceil(group)
        ];
        // SAFETY: groups has reta_size/64 entries with every mask bit set, as the API asks.
        let ret = unsafe {
            dpdk_sys::rte_eth_dev_rss_reta_query(self.id, groups.as_mut_ptr(), size as u16)
        };
        Error::check("rte_eth_dev_rss_reta_query", ret)?;
        let reta = (0..size)
            .map(|i| groups[i / group].reta[i % group])
            .collect();
        Ok(RssConfig {
            key,
            reta,
            hash_fields: rc.rss_hf,
        })
    }

    /// Receives every multicast frame (VRRP, OSPF, IPv6 neighbour discovery) even when not
    /// promiscuous: a port with a kernel twin passes them up. Failure means the driver cannot.
    pub fn allmulticast(&self) -> Result<()> {
        // SAFETY: plain call on a started port.
        let ret = unsafe { dpdk_sys::rte_eth_allmulticast_enable(self.id) };
        Error::check("rte_eth_allmulticast_enable", ret).map(drop)
    }

    pub fn mac(&self) -> Result<MacAddr> {
        let mut a = dpdk_sys::rte_ether_addr::default();
        // SAFETY: valid out-pointer.
        Error::check("rte_eth_macaddr_get", unsafe {
            dpdk_sys::rte_eth_macaddr_get(self.id, &mut a)
        })?;
        Ok(MacAddr(a.addr_bytes))
    }

    pub fn link(&self) -> LinkState {
        link_of(self.id)
    }

    pub fn stats(&self) -> PortStats {
        stats_of(self.id)
    }

    /// Stops the port (idempotent). Queued mbufs go back to the pool.
    pub fn stop(&mut self) {
        if self.started {
            // SAFETY: the port is started and no worker polls it any more (workers joined first).
            unsafe {
                dpdk_sys::rte_eth_dev_stop(self.id);
                dpdk_sys::rte_eth_dev_close(self.id);
            }
            self.started = false;
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Creates a virtual device from its devargs (`net_tap_gw0,iface=client,mac=...`) after EAL init:
/// `rte_dev_probe`, whose port is then found with [`Port::id_by_name`].
pub fn probe_vdev(devargs: &str) -> Result<()> {
    let c = CString::new(devargs).map_err(|_| Error::new("devargs", 22))?;
    // SAFETY: valid C string; EAL initialised by the caller; called from the main lcore.
    let ret = unsafe { dpdk_sys::rte_dev_probe(c.as_ptr()) };
    Error::check(&format!("rte_dev_probe({devargs})"), ret).map(drop)
}

/// Link state of a port by id (usable from the control thread while workers run).
pub fn link_of(id: u16) -> LinkState {
    let mut l = dpdk_sys::rte_eth_link::default();
    // SAFETY: valid out-pointer; the nowait variant never blocks.
    unsafe { dpdk_sys::rte_eth_link_get_nowait(id, &mut l) };
    LinkState {
        up: l.link_status() != 0,
        speed_mbps: l.link_speed,
    }
}

/// Basic counters of a port by id (thread-safe in DPDK: reads driver counters).
pub fn stats_of(id: u16) -> PortStats {
    let mut s = dpdk_sys::rte_eth_stats::default();
    // SAFETY: valid out-pointer.
    unsafe { dpdk_sys::rte_eth_stats_get(id, &mut s) };
    PortStats {
        ipackets: s.ipackets,
        opackets: s.opackets,
        ibytes: s.ibytes,
        obytes: s.obytes,
        imissed: s.imissed,
        ierrors: s.ierrors,
        oerrors: s.oerrors,
        rx_nombuf: s.rx_nombuf,
    }
}

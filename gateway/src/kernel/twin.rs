//! The twin of each port: which driver provides it and the DPDK device arguments that create it.
//!
//! - `tap`: DPDK's `net_tap` PMD (doc.dpdk.org/guides/nics/tap.html). `iface=` names the kernel
//!   interface and `mac=` gives it the port's MAC. It runs one kernel queue per DPDK queue
//!   (IFF_MULTI_QUEUE), so each worker owns a queue pair as on the port. Non-persistent: the kernel
//!   removes the interface when its last queue is closed, at a clean stop and when the process dies.
//! - `virtio-user`: DPDK's virtio-user with the vhost-net backend
//!   (doc.dpdk.org/guides/howto/virtio_user_as_exception_path.html): the kernel side is a tap that
//!   vhost-net fills from kernel threads, with offloads, faster than `net_tap`'s read/write per
//!   frame. It needs /dev/vhost-net (the `vhost_net` module); these lab machines lack it.

use crate::wire::MacAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TwinKind {
    Tap,
    VirtioUser,
}

impl TwinKind {
    /// The config value (`port.twin`): Some(None) for `"none"`, None when unknown.
    pub fn parse(s: &str) -> Option<Option<TwinKind>> {
        match s {
            "tap" => Some(Some(TwinKind::Tap)),
            "virtio-user" => Some(Some(TwinKind::VirtioUser)),
            "none" => Some(None),
            _ => None,
        }
    }

    /// The DPDK device name of port `index`'s twin: what `Port::id_by_name` finds after probing.
    pub fn device_name(self, index: usize) -> String {
        match self {
            TwinKind::Tap => format!("net_tap_gw{index}"),
            TwinKind::VirtioUser => format!("virtio_user_gw{index}"),
        }
    }

    /// The devargs that create port `index`'s twin named `name` with `mac`, `queues` queue pairs
    /// (`rte_dev_probe`).
    pub fn devargs(self, index: usize, name: &str, mac: MacAddr, queues: u16) -> String {
        let dev = self.device_name(index);
        match self {
            TwinKind::Tap => format!("{dev},iface={name},mac={mac}"),
            // queue_size: the vhost-net ring; 1024 as DPDK's exception-path guide.
            TwinKind::VirtioUser => format!(
                "{dev},path=/dev/vhost-net,queues={queues},queue_size=1024,iface={name},mac={mac}"
            ),
        }
    }

    /// What the kernel calls the interface's kind (IFLA_INFO_KIND): both drivers make a `tun`.
    pub fn kernel_kind(self) -> &'static str {
        "tun"
    }

    /// Why this twin cannot be created here, if it cannot.
    pub fn unavailable(self) -> Option<String> {
        let dev = match self {
            TwinKind::Tap => "/dev/net/tun",
            TwinKind::VirtioUser => "/dev/vhost-net",
        };
        (!std::path::Path::new(dev).exists()).then(|| format!("{dev} is missing"))
    }
}

/// The alias (`ip link show` says `alias gateway-twin`) every twin carries: a leftover interface
/// is removed at start only when it is one of ours.
pub const ALIAS: &str = "gateway-twin";

/// A twin as it runs: the port it mirrors, its kernel interface and its DPDK port.
pub struct Twin {
    /// The datapath port index it is the twin of.
    pub port: u16,
    pub name: String,
    pub kind: TwinKind,
    /// The kernel's index of the interface (what netlink messages name).
    pub ifindex: u32,
    pub dpdk: crate::dpdk::Port,
}

/// Creates port `port`'s twin `name` with `mac`, `mtu` and `queues` queue pairs (one per worker)
/// fed from `pool`. A twin of that name left over from an earlier run (a tun device with our
/// [`ALIAS`] and no carrier: no process has it open) is removed first; any other interface of that
/// name, or a twin in use by a running process, is refused with its reason. The kernel side gets
/// `arp_ignore=1` and `arp_announce=2`: it answers ARP on a twin only for the twin's own addresses
/// and speaks from them, never from the host's other interfaces.
pub fn create(
    port: u16,
    name: &str,
    kind: TwinKind,
    mac: MacAddr,
    mtu: Option<u16>,
    queues: u16,
    pool: &crate::dpdk::Mempool,
) -> Result<Twin, String> {
    use super::netlink::Netlink;
    if let Some(why) = kind.unavailable() {
        return Err(format!(
            "twin {name}: {why} (set twin = \"none\" on the port to run without one)"
        ));
    }
    let mut nl = Netlink::open().map_err(|e| format!("twin {name}: netlink: {e}"))?;
    let nl_err = |e: std::io::Error| format!("twin {name}: netlink: {e}");
    match nl.link_by_name(name).map_err(nl_err)? {
        Some(l)
            if l.kind.as_deref() == Some(kind.kernel_kind())
                && l.alias.as_deref() == Some(ALIAS)
                && l.carrier != Some(true) =>
        {
            tracing::warn!(twin = name, "removing a stale twin left by an earlier run");
            nl.delete_link(l.index).map_err(nl_err)?;
        }
        Some(l) if l.kind.as_deref() == Some(kind.kernel_kind()) => {
            return Err(format!(
                "twin {name}: a tun interface of that name is {}",
                if l.alias.as_deref() == Some(ALIAS) {
                    "in use by another process"
                } else {
                    "not a gateway twin (no `alias gateway-twin`); remove it or rename the port"
                }
            ))
        }
        Some(l) => {
            return Err(format!(
                "twin {name}: an interface of that name exists and is not a twin (kind {}); \
                 rename the port or set twin = \"none\"",
                l.kind.as_deref().unwrap_or("device")
            ))
        }
        None => {}
    }
    crate::dpdk::probe_vdev(&kind.devargs(port as usize, name, mac, queues))
        .map_err(|e| format!("twin {name}: {e}"))?;
    let id = crate::dpdk::Port::id_by_name(&kind.device_name(port as usize))
        .map_err(|e| format!("twin {name}: {e}"))?;
    let conf = crate::dpdk::PortConfig {
        rx_queues: queues,
        tx_queues: queues,
        rx_desc: 512,
        tx_desc: 512,
        rss: false,
        csum_offload: false,
        promiscuous: false,
        mtu,
    };
    let dpdk = crate::dpdk::Port::start(id, &format!("{name}-twin"), &conf, pool)
        .map_err(|e| format!("twin {name}: {e}"))?;
    let ifindex = match nl.link_by_name(name).map_err(nl_err)? {
        Some(l) => l.index,
        None => return Err(format!("twin {name}: created but not found in the kernel")),
    };
    nl.set_alias(ifindex, ALIAS).map_err(nl_err)?;
    for (key, value) in [("arp_ignore", "1"), ("arp_announce", "2")] {
        let path = format!("/proc/sys/net/ipv4/conf/{name}/{key}");
        if let Err(e) = std::fs::write(&path, value) {
            tracing::warn!(twin = name, "{path}: {e}");
        }
    }
    Ok(Twin {
        port,
        name: name.to_string(),
        kind,
        ifindex,
        dpdk,
    })
}

/// The config's addresses and routes of one port, both families.
pub struct PortAddressing<'a> {
    pub addrs: &'a [crate::net::Ipv4Cidr],
    pub routes: &'a [(crate::net::Ipv4Cidr, Option<std::net::Ipv4Addr>)],
    pub addrs6: &'a [crate::net::Ipv6Cidr],
    pub routes6: &'a [(crate::net::Ipv6Cidr, Option<std::net::Ipv6Addr>)],
}

/// Writes the config's addresses and routes of the twin's port onto the twin (`ip addr replace`,
/// `ip route replace ... proto static metric 1000`, which leaves the host's own routes alone), before
/// the mirror starts (no echo loop by construction). IPv6 ones too (`nodad`): the kernel's own
/// daemons then serve the port's IPv6 addresses and reach IPv6 hosts as they do IPv4 ones. From
/// then on the mirror follows both families: the kernel is the source of truth.
pub fn reconcile(twin: &Twin, a: &PortAddressing) -> Result<(), String> {
    let mut nl = super::netlink::Netlink::open().map_err(|e| format!("netlink: {e}"))?;
    let err = |what: String| move |e: std::io::Error| format!("twin {}: {what}: {e}", twin.name);
    for c in a.addrs {
        nl.add_address(twin.ifindex, *c)
            .map_err(err(format!("address {c}")))?;
    }
    if !a.addrs6.is_empty() {
        ipv6_on(&twin.name)?;
    }
    for c in a.addrs6 {
        nl.add_address6(twin.ifindex, *c)
            .map_err(err(format!("address {c}")))?;
    }
    for (prefix, via) in a.routes {
        nl.add_route(twin.ifindex, *prefix, *via)
            .map_err(err(format!("route {prefix}")))?;
    }
    for (prefix, via) in a.routes6 {
        nl.add_route6(twin.ifindex, *prefix, *via)
            .map_err(err(format!("route {prefix}")))?;
    }
    Ok(())
}

/// Turns IPv6 on for a twin whose port has IPv6 addresses (a host may have it off by default:
/// `net.ipv6.conf.default.disable_ipv6`), without stateless autoconfiguration: a router's
/// advertisement reaching the twin must not give the kernel an address the datapath does not
/// own (RFC 4862 5.5.3), since replies to it would never reach the kernel. Without duplicate
/// address detection either, set before IPv6 comes up so that the link-local address is usable
/// at once too: the datapath owns and defends the port's addresses.
fn ipv6_on(name: &str) -> Result<(), String> {
    for (key, value) in [
        ("accept_dad", "0"),
        ("autoconf", "0"),
        ("disable_ipv6", "0"),
    ] {
        let path = format!("/proc/sys/net/ipv6/conf/{name}/{key}");
        std::fs::write(&path, value).map_err(|e| {
            format!("twin {name}: {path}: {e} (IPv6 is off in this kernel: give the port no IPv6 address, or twin = \"none\")")
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x0a, 0x01]);

    #[test]
    fn config_values() {
        assert_eq!(TwinKind::parse("tap"), Some(Some(TwinKind::Tap)));
        assert_eq!(
            TwinKind::parse("virtio-user"),
            Some(Some(TwinKind::VirtioUser))
        );
        assert_eq!(TwinKind::parse("none"), Some(None));
        assert_eq!(TwinKind::parse("kni"), None);
    }

    #[test]
    fn tap_devargs_name_the_interface_and_give_it_the_port_mac() {
        assert_eq!(
            TwinKind::Tap.devargs(0, "client", MAC, 2),
            "net_tap_gw0,iface=client,mac=02:00:00:00:0a:01"
        );
        // The device name is what the probe registers and `id_by_name` looks up.
        assert!(TwinKind::Tap
            .devargs(3, "x", MAC, 1)
            .starts_with(&TwinKind::Tap.device_name(3)));
    }

    #[test]
    fn virtio_user_devargs_use_vhost_net_with_a_queue_per_worker() {
        assert_eq!(
            TwinKind::VirtioUser.devargs(1, "server", MAC, 4),
            "virtio_user_gw1,path=/dev/vhost-net,queues=4,queue_size=1024,iface=server,\
             mac=02:00:00:00:0a:01"
        );
    }
}

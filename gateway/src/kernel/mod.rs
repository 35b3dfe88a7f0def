//! Kernel twins and the kernel mirror: the control-plane half of the exception path (DESIGN.md
//! decisions 13-14), after VPP's linux-cp (interface pairs, `lcp_interface.c`) and linux-nl (the
//! netlink listener, `lcp_nl.c` / `lcp_router.c`).
//!
//! - **Twins** (`twin.rs`): every DPDK port with `twin` on gets a kernel interface named after the
//!   port, with its MAC and MTU (DPDK's `net_tap` here, virtio-user over vhost-net where the box has
//!   it). Frames the datapath does not consume go up to it (`net::punt` decides which); what the
//!   kernel sends on it leaves on the port unchanged. Workers service the twins' queues themselves
//!   (queue `id` of each twin, as of each port), rather than the control lcore through a ring as
//!   capsule's KNI did: a frame from the kernel then leaves on the worker's own tx queue of the port
//!   (a control lcore would need one more tx queue per port, which af_packet and some NICs cannot
//!   give), nothing crosses cores, and the per-worker punt budget bounds the system calls a worker
//!   makes (a tap write per frame up, a read per 200 µs while the kernel is quiet, `worker.rs`).
//!   The tap fds are non-blocking: a full kernel queue costs a drop (`twin_tx_full`), never a wait.
//! - **Reconcile** (`netlink.rs`, at start only): the config's addresses and routes are written onto
//!   the twins before the listener starts, so the kernel and the datapath agree from the first frame.
//! - **Mirror** (`mirror.rs`): the kernel is the one source of truth for L3 on twin ports. A listener
//!   follows rtnetlink (addresses, main-table routes and neighbours of the twins) into a pure
//!   [`mirror::KernelView`]; the control plane builds each generation's topology from it
//!   (`control::topology`). An address a daemon adds to a twin (keepalived adding a VIP) is one the
//!   datapath then answers for and, when it is a service's VIP, serves (`owner = "kernel"`).
//! - **Multicast listening** (`mld.rs`): the kernel listens on the twins to the solicited-node
//!   groups of the services' IPv6 addresses, so that it reports them in MLD to snooping switches.
//!
//! Nothing here is on the packet path, and nothing below `daemon`/`control` imports this module.

pub mod announce;
pub mod mirror;
pub mod mld;
pub mod netlink;
pub mod twin;

pub use mirror::{KernelEvent, KernelView};
pub use twin::TwinKind;

/// Whether `name` can name a Linux interface: 1..=15 bytes (IFNAMSIZ is 16 with the NUL), not `.`
/// or `..`, and no `/`, `:` or whitespace (`dev_valid_name` in net/core/dev.c; `:` marks aliases).
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_kernel_rules() {
        for ok in ["client", "server", "eth0", "a", "x23456789012345"] {
            assert!(valid_ifname(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a:1",
            "a b",
            "x234567890123456",
            "tab\t",
        ] {
            assert!(!valid_ifname(bad), "{bad:?}");
        }
    }
}

/// What the mirror tells the control plane.
#[derive(Clone, Debug)]
pub enum Update {
    /// The kernel's addresses or routes on the twins changed (one per batch of notifications).
    View(std::sync::Arc<KernelView>),
    /// The kernel has (or changed) a neighbour on a twin: the workers take it as a gratuitous ARP
    /// (an unsolicited neighbour advertisement for IPv6).
    Neigh {
        ip: std::net::IpAddr,
        mac: crate::wire::MacAddr,
        port: u16,
    },
}

/// How often the mirror reads the kernel's notifications: changes within this window become one
/// generation (as `lcp_nl` batches), well inside the 100 ms an address may take to be served.
const BATCH: std::time::Duration = std::time::Duration::from_millis(10);

/// The mirror's loop (its own thread): dumps the kernel's state of the twins (`twins`: ifindex ->
/// port index), then follows its notifications, sending `Update`s until `stop`. Lost
/// notifications (`ENOBUFS`) are recovered by dumping again.
pub fn run_mirror(
    twins: hashbrown::HashMap<u32, u16>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    updates: crossbeam_channel::Sender<Update>,
) {
    use std::sync::atomic::Ordering;
    let mut view = KernelView::default();
    let mut listener = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(l) = listener.as_mut() else {
            // (Re)subscribe first, then dump: nothing in between is lost.
            match netlink::Listener::open().and_then(|l| {
                let msgs = netlink::Netlink::open()?.dump()?;
                Ok((l, msgs))
            }) {
                Ok((l, msgs)) => {
                    let mut fresh = KernelView::default();
                    for m in &msgs {
                        if let Some(e) = netlink::event_of(m, &twins) {
                            fresh.apply(e);
                        }
                    }
                    for (ip, port, mac) in fresh.neighbours() {
                        let _ = updates.send(Update::Neigh { ip, mac, port });
                    }
                    view = fresh;
                    let _ = updates.send(Update::View(std::sync::Arc::new(view.clone())));
                    listener = Some(l);
                }
                Err(e) => {
                    tracing::error!("kernel mirror: {e}; retrying in 1 s");
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
            continue;
        };
        std::thread::sleep(BATCH);
        match l.drain() {
            Ok(msgs) if msgs.iter().any(|m| netlink::is_twin_link_change(m, &twins)) => {
                // A twin went down or up: the kernel flushed (or restored) its routes without a
                // message per route. Dump again.
                for port in msgs.iter().filter_map(|m| netlink::deleted_twin(m, &twins)) {
                    tracing::warn!(
                        port,
                        "kernel twin deleted (ip link del): the port's kernel addresses and \
                         routes leave the gateway with it, and its kernel traffic has nowhere \
                         to go; restart the gateway to create the twin again"
                    );
                }
                listener = None;
            }
            Ok(msgs) => {
                let mut changed = false;
                for m in &msgs {
                    let Some(e) = netlink::event_of(m, &twins) else {
                        continue;
                    };
                    if !view.apply(e) {
                        continue;
                    }
                    match e {
                        KernelEvent::Neigh {
                            ip,
                            mac: Some(mac),
                            port,
                        } => {
                            let _ = updates.send(Update::Neigh { ip, mac, port });
                        }
                        KernelEvent::Neigh { .. } => {}
                        _ => changed = true,
                    }
                }
                if changed {
                    let _ = updates.send(Update::View(std::sync::Arc::new(view.clone())));
                }
            }
            Err(e) => {
                // ENOBUFS: the socket overflowed and notifications were lost.
                tracing::warn!("kernel mirror: {e}; dumping again");
                listener = None;
            }
        }
    }
}

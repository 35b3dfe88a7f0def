//! Forwarding: virtual services and the per-worker connection engine.
//!
//! - [`services`]: the immutable service snapshot every worker reads (VIP lookup, LIPs).
//! - [`rewrite`]: address/port rewriting with incremental checksums.
//! - [`fullnat`]: the per-worker engine (connection table, scheduling, local ports, TOA, ICMP errors,
//!   expiry with RST) for FullNAT, dispatching per real server to the other modes:
//! - [`nat`]: NAT (masquerading), reply steering by the client's tuple;
//! - [`owner`]: which worker owns a connection, from the client's tuple (RSS or hash);
//! - [`reuse`]: whether a SYN on a reused client tuple is scheduled afresh (IPVS `conn_reuse_mode`);
//! - [`dr`]: direct routing (destination MAC only);
//! - [`tun`]: IP-in-IP tunnelling, with fragmentation-needed for packets too big to wrap.

pub mod acl;
pub mod addrs;
pub mod dr;
pub mod fullnat;
pub mod limit;
pub mod nat;
pub mod owner;
pub mod reuse;
pub mod rewrite;
pub mod services;
pub mod synproxy;
pub mod tun;

pub(crate) use fullnat::{room_for_port, Room};
pub use fullnat::{
    Applied, Forwarder, FwdConfig, FwdStats, InstallError, LipKey, SyncCounters, SyncLog, Traffic,
    TrafficKey,
};
pub use owner::{Owners, PortRss};
pub use services::{ServiceSpec, ServiceTable, SvcOptions, VirtualService};

/// A client datagram of UDP flow `id`, past its state update. A flow whose answers bypass the
/// gateway (DR, TUN: no reply tuple) counts its client's datagrams in `user2`, which those modes
/// leave free, and the second marks it answered (`Table::mark_answered`): the one-datagram flows
/// of a spoofed flood stay what a full table makes room from, a flow in use does not. Whether
/// this datagram marked it (for the sync log, which takes a flow from then on).
/// Out of line: the packet path it sits on also carries FullNAT's packets, which never call it.
#[inline(never)]
pub(crate) fn client_datagram<T: crate::conn::ConnKey>(
    table: &mut crate::conn::table::Table<T>,
    id: crate::conn::ConnId,
) -> bool {
    let Some(c) = table.get_mut(id) else {
        return false;
    };
    if c.reply().is_some() || c.user2 >= 2 {
        return false;
    }
    c.user2 += 1;
    if c.user2 < 2 {
        return false;
    }
    table.mark_answered(id);
    true
}

/// Forwarding mode ids stored in a connection entry.
pub mod mode {
    pub const FULLNAT: u8 = 0;
    pub const NAT: u8 = 1;
    pub const DR: u8 = 2;
    pub const TUN: u8 = 3;
    /// An IPv6 client's connection to an IPv4 real server (`inet6::nat64`).
    pub const NAT64: u8 = 4;
}

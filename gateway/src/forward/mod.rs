//! Forwarding: virtual services and the per-worker connection engine.
//!
//! - [`services`]: the immutable service snapshot every worker reads (VIP lookup, LIPs).
//! - [`rewrite`]: address/port rewriting with incremental checksums.
//! - [`fullnat`]: the FullNAT engine (connection table, scheduling, local ports, TOA, ICMP errors,
//!   expiry with RST).

pub mod fullnat;
pub mod rewrite;
pub mod services;

pub use fullnat::{Forwarder, FwdConfig, FwdStats};
pub use services::{ServiceTable, VirtualService};

/// Forwarding mode ids stored in a connection entry.
pub mod mode {
    pub const FULLNAT: u8 = 0;
    pub const NAT: u8 = 1;
    pub const DR: u8 = 2;
    pub const TUN: u8 = 3;
}

//! Errors of service definitions: each names the value at fault, as the admin shell shows it.

use super::key::RsKey;
use thiserror::Error;

/// Why a scheduler name, flag or service definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ServiceError {
    #[error("unknown scheduler `{0}` (expected one of: rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh)")]
    UnknownScheduler(String),
    #[error("unknown scheduler flag `{0}` (expected sh-fallback, sh-port, mh-fallback, mh-port, flag-1 or flag-2)")]
    UnknownFlag(String),
    #[error("unknown forwarding method `{0}` (expected fullnat, nat, dr or tun)")]
    UnknownFwdMode(String),
    #[error("unknown protocol `{0}` (expected tcp or udp)")]
    UnknownProto(String),
    #[error("real server {0}: weight {1} out of range 0..=65535")]
    WeightRange(RsKey, u32),
    #[error("real server {rs}: lower threshold {lower} above upper threshold {upper}")]
    Thresholds { rs: RsKey, upper: u32, lower: u32 },
    #[error("real server {0} listed twice")]
    Duplicate(RsKey),
    #[error("{0} real servers in one service (at most 65535)")]
    TooMany(usize),
    #[error("{0} virtual services (at most 65534)")]
    TooManyServices(usize),
    #[error(
        "maglev table size {size} must be a prime larger than the number of real servers ({reals})"
    )]
    MaglevSize { size: u32, reals: usize },
    #[error("persistence timeout must be at least 1 second")]
    PersistTimeout,
    #[error("real server {rs} is not of the virtual service's address family ({vip}), nor an IPv4 server of an IPv6 service in fullnat (NAT64)")]
    FamilyMismatch { rs: RsKey, vip: std::net::IpAddr },
    #[error(
        "an IPv6 service's persistence netmask is a prefix length (1 to 128), not an IPv4 netmask"
    )]
    Ipv6Netmask,
    #[error("an IPv4 service's persistence netmask is an IPv4 netmask, not a prefix length ({0})")]
    Ipv4Prefix(u8),
    #[error("persistence prefix length {0} is not between 1 and 128")]
    Prefix6(u8),
}

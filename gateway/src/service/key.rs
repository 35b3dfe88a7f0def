//! The identities the schedulers, the persistence templates, the lblc tables and the Maglev
//! permutation share: a real server's key, an address folded to a word, and the clock they age
//! by. A leaf: it uses no other module of `service`.

use std::fmt;
use std::net::IpAddr;

/// Milliseconds of a monotonic clock; the worker reads it once per burst.
pub type Millis = u64;

/// An address as the schedulers see it: an IPv4 address is itself, an IPv6 one is folded to 32
/// bits (the xor of its four words). sh, dh, mh and lblc(r) only hash addresses, so the fold
/// keeps them correct. Persistence compares them, so it keys templates by the whole address
/// (`ClientKey::addr`, `Persistence::key`), not by this fold, which two clients can share.
#[inline]
pub fn addr_word(a: IpAddr) -> u32 {
    match a {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let w = u128::from(a);
            (w as u32) ^ ((w >> 32) as u32) ^ ((w >> 64) as u32) ^ ((w >> 96) as u32)
        }
    }
}

/// A real server's identity within a service: IPVS refuses two destinations with the same address and
/// port, and identifies a destination by them. Connection counters, persistence templates, lblc
/// entries and the Maglev permutation all key on it, so they survive reordering and re-weighting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RsKey {
    pub addr: IpAddr,
    pub port: u16,
}

impl RsKey {
    /// The address of a server of an IPv4 service (see [`RealServer::v4`](super::RealServer::v4)).
    pub fn v4(self) -> std::net::Ipv4Addr {
        match self.addr {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
        }
    }

    /// The key packed into 48 bits, the input of the Maglev permutation hashes.
    pub fn as_u64(self) -> u64 {
        (u64::from(addr_word(self.addr)) << 16) | u64::from(self.port)
    }
}

impl fmt::Display for RsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.port),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port),
        }
    }
}

/// A service as its per-service counters (access lists, limits) name it: (protocol number, VIP,
/// port).
pub type SvcId = (u8, std::net::IpAddr, u16);

/// Identity of a (service, real server) pair that survives snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrafficKey {
    pub proto: u8,
    pub vip: std::net::IpAddr,
    pub vport: u16,
    pub rip: std::net::IpAddr,
    pub rport: u16,
}

impl TrafficKey {
    /// The traffic of the real servers removed from service (`proto`, `vip`, `vport`): IPVS keeps
    /// a service's counters whole when a destination goes, and so do `ipvsadm --stats` and the
    /// metrics (a counter that fell would read as a reset). No real server has this key.
    pub fn retired(proto: u8, vip: std::net::IpAddr, vport: u16) -> Self {
        TrafficKey {
            proto,
            vip,
            vport,
            rip: std::net::Ipv4Addr::UNSPECIFIED.into(),
            rport: 0,
        }
    }

    /// The traffic of removed services, which the totals keep (IPVS's `tot_stats`).
    pub const REMOVED_SERVICES: TrafficKey = TrafficKey {
        proto: 0,
        vip: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        vport: 0,
        rip: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        rport: 0,
    };

    /// Whether this key holds retired traffic (`retired`, `REMOVED_SERVICES`), not a real
    /// server's.
    pub fn is_retired(&self) -> bool {
        self.rip.is_unspecified() && self.rport == 0
    }
}

/// Identity of a (service, LIP) pair that survives snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LipKey {
    pub proto: u8,
    pub vip: std::net::IpAddr,
    pub vport: u16,
    pub lip: std::net::IpAddr,
}

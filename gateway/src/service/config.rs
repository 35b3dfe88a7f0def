//! What the control plane says a virtual service is: the input of [`Service::new`](super::Service::new).

use super::error::ServiceError;
use super::real::RealServer;
use super::sched_kind::{SchedFlags, SchedKind};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// The Maglev lookup table size of the paper's evaluation (a prime; IPVS's default is 4093, which
/// is too coarse for weighted shares over thousands of servers).
pub const DEFAULT_MH_TABLE_SIZE: u32 = 65_537;

/// `ipvsadm -p` without a value.
pub const DEFAULT_PERSIST_TIMEOUT_S: u32 = 300;

/// The seed of Maglev's and the hashing schedulers' hash functions unless configured: fixed, so
/// every gateway with the same configuration maps a client to the same server.
pub const DEFAULT_HASH_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// The transport protocol of a virtual service (`-t` / `-u`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Proto {
    #[default]
    Tcp,
    Udp,
}

impl Proto {
    /// The IP protocol number (6 TCP, 17 UDP).
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

impl FromStr for Proto {
    type Err = ServiceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => Err(ServiceError::UnknownProto(s.to_owned())),
        }
    }
}

/// Persistence (`ipvsadm -p [timeout] -M netmask`): connections of one client — the source address
/// masked by `netmask` (an IPv4 service) or cut to `prefix6` bits (an IPv6 one) — go to the same
/// real server while its template lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Persistence {
    /// Seconds a template lives after the last connection that used it was scheduled.
    pub timeout_s: u32,
    /// An IPv4 service's netmask (`-M 255.255.255.0`); all ones, per client, by default.
    pub netmask: Ipv4Addr,
    /// An IPv6 service's prefix length (`-M 64`, as ipvsadm takes an IPv6 netmask), 1 to 128; 128,
    /// per client, by default. A /64 keeps a client whose privacy addresses (RFC 8981) change
    /// within its prefix on one server.
    pub prefix6: u8,
    /// The sysctl `expire_quiescent_template`. Off (the IPVS default): a persisted client still goes
    /// to a server of weight 0, so quiescing drains only clients without a template. On: the template
    /// of a quiesced server is dropped and the client is scheduled afresh.
    pub expire_quiescent: bool,
}

impl Default for Persistence {
    fn default() -> Self {
        Persistence {
            timeout_s: DEFAULT_PERSIST_TIMEOUT_S,
            netmask: Ipv4Addr::BROADCAST,
            prefix6: 128,
            expire_quiescent: false,
        }
    }
}

impl Persistence {
    /// The template key of a client whose source address is `addr` ([`ClientKey::addr`]): an
    /// IPv4 address masked by `netmask`, an IPv6 one cut to its first `prefix6` bits.
    ///
    /// [`ClientKey::addr`]: super::ClientKey::addr
    #[inline]
    pub fn key(&self, addr: u128, v6: bool) -> super::PersistKey {
        if v6 {
            let cut = crate::net::Ipv6Cidr {
                addr: addr.into(),
                len: self.prefix6.min(128),
            };
            cut.network().into()
        } else {
            u128::from(addr as u32 & u32::from(self.netmask))
        }
    }
}

/// A virtual service as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    /// IPv4 or IPv6; the real servers are of the same family (IPVS refuses a mix without NAT64).
    pub vip: IpAddr,
    pub vport: u16,
    pub proto: Proto,
    pub sched: SchedKind,
    pub flags: SchedFlags,
    pub persistence: Option<Persistence>,
    /// The sysctl `expire_nodest_conn`, per service: when a packet of an existing connection finds its
    /// real server gone from the service, drop the connection at once instead of letting it time out.
    /// Read by the datapath; the schedulers ignore it.
    pub expire_nodest_conn: bool,
    /// Maglev lookup table size; a prime larger than the number of real servers.
    pub mh_table_size: u32,
    /// Seed of the `mh` hashes (see [`DEFAULT_HASH_SEED`]).
    pub hash_seed: u64,
    /// In list order: ties go to the earlier server, as IPVS's list walks do.
    pub reals: Vec<RealServer>,
}

impl ServiceConfig {
    /// A service with the default scheduler options and no real servers.
    pub fn new(vip: impl Into<IpAddr>, vport: u16, proto: Proto, sched: SchedKind) -> Self {
        ServiceConfig {
            vip: vip.into(),
            vport,
            proto,
            sched,
            flags: SchedFlags::default(),
            persistence: None,
            expire_nodest_conn: false,
            mh_table_size: DEFAULT_MH_TABLE_SIZE,
            hash_seed: DEFAULT_HASH_SEED,
            reals: Vec::new(),
        }
    }
}

/// Trial division: table sizes are at most a few million, checked once per configuration change.
pub(crate) fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let n = u64::from(n);
    let mut d = 2u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes() {
        assert!(is_prime(65_537));
        assert!(is_prime(4093));
        assert!(is_prime(2));
        assert!(!is_prime(65_536));
        assert!(!is_prime(1));
        assert!(!is_prime(65_535));
    }

    #[test]
    fn persistence_defaults_match_ipvsadm() {
        let p = Persistence::default();
        assert_eq!(p.timeout_s, 300);
        assert_eq!(p.netmask, Ipv4Addr::new(255, 255, 255, 255));
        assert!(!p.expire_quiescent);
    }

    #[test]
    fn proto_parse() {
        assert_eq!("TCP".parse::<Proto>(), Ok(Proto::Tcp));
        assert_eq!("udp".parse::<Proto>(), Ok(Proto::Udp));
        assert!("sctp".parse::<Proto>().is_err());
    }
}

//! Scheduler names and flags, spelled exactly as `ipvsadm -s` and `ipvsadm -b` spell them.

use super::error::ServiceError;
use std::fmt;
use std::str::FromStr;

/// One of IPVS's scheduling algorithms (net/netfilter/ipvs/ip_vs_*.c).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SchedKind {
    /// Round robin.
    Rr,
    /// Interleaved weighted round robin by the gcd of weights (ip_vs_wrr.c).
    Wrr,
    /// Least connections, by `active*256 + inactive`.
    Lc,
    /// Weighted least connections: `overhead / weight`; the IPVS default.
    #[default]
    Wlc,
    /// Locality-based least connections, keyed by destination address.
    Lblc,
    /// Locality-based least connections with replication.
    Lblcr,
    /// Destination hashing.
    Dh,
    /// Source hashing.
    Sh,
    /// Shortest expected delay: `(active + 1) / weight`.
    Sed,
    /// Never queue: an idle server first, else as `sed`.
    Nq,
    /// Weighted failover: the available server of highest weight.
    Fo,
    /// Overflow: the highest weight whose active connections do not exceed its weight.
    Ovf,
    /// Maglev hashing (NSDI'16; ip_vs_mh.c).
    Mh,
}

impl SchedKind {
    /// Every scheduler, in `ipvsadm`'s order of listing.
    pub const ALL: [SchedKind; 13] = [
        SchedKind::Rr,
        SchedKind::Wrr,
        SchedKind::Lc,
        SchedKind::Wlc,
        SchedKind::Lblc,
        SchedKind::Lblcr,
        SchedKind::Dh,
        SchedKind::Sh,
        SchedKind::Sed,
        SchedKind::Nq,
        SchedKind::Fo,
        SchedKind::Ovf,
        SchedKind::Mh,
    ];

    /// The name `ipvsadm` uses.
    pub fn name(self) -> &'static str {
        match self {
            SchedKind::Rr => "rr",
            SchedKind::Wrr => "wrr",
            SchedKind::Lc => "lc",
            SchedKind::Wlc => "wlc",
            SchedKind::Lblc => "lblc",
            SchedKind::Lblcr => "lblcr",
            SchedKind::Dh => "dh",
            SchedKind::Sh => "sh",
            SchedKind::Sed => "sed",
            SchedKind::Nq => "nq",
            SchedKind::Fo => "fo",
            SchedKind::Ovf => "ovf",
            SchedKind::Mh => "mh",
        }
    }
}

impl fmt::Display for SchedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SchedKind {
    type Err = ServiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SchedKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| ServiceError::UnknownScheduler(s.to_owned()))
    }
}

/// The scheduler flags of `ipvsadm -b`. IPVS stores them as three generic bits
/// (`IP_VS_SVC_F_SCHED1..3`) that `sh` and `mh` read the same way, so `sh-port` and `mh-port` are the
/// same bit; this struct names what the bits do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SchedFlags {
    /// `sh-fallback` / `mh-fallback` (flag-1): when the hashed server is unavailable (weight 0 or
    /// overloaded), look further instead of refusing the connection.
    pub fallback: bool,
    /// `sh-port` / `mh-port` (flag-2): hash the client's source port with its address.
    pub hash_port: bool,
}

impl fmt::Display for SchedFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.fallback, self.hash_port) {
            (true, true) => f.write_str("flag-1,flag-2"),
            (true, false) => f.write_str("flag-1"),
            (false, true) => f.write_str("flag-2"),
            (false, false) => Ok(()),
        }
    }
}

impl FromStr for SchedFlags {
    type Err = ServiceError;

    /// A comma-separated list, as `ipvsadm -b sh-fallback,sh-port`; the empty string means none.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut flags = SchedFlags::default();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "sh-fallback" | "mh-fallback" | "flag-1" => flags.fallback = true,
                "sh-port" | "mh-port" | "flag-2" => flags.hash_port = true,
                other => return Err(ServiceError::UnknownFlag(other.to_owned())),
            }
        }
        Ok(flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in SchedKind::ALL {
            assert_eq!(k.name().parse::<SchedKind>(), Ok(k));
            assert_eq!(k.to_string(), k.name());
        }
        let all: Vec<&str> = SchedKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            all.join(" "),
            "rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh"
        );
    }

    #[test]
    fn default_is_wlc() {
        assert_eq!(SchedKind::default(), SchedKind::Wlc);
    }

    #[test]
    fn bad_name_is_named_in_error() {
        let e = "WRR".parse::<SchedKind>().unwrap_err();
        assert_eq!(e, ServiceError::UnknownScheduler("WRR".into()));
        assert!(e.to_string().contains("`WRR`"));
        assert!("".parse::<SchedKind>().is_err());
        assert!("rr ".parse::<SchedKind>().is_err());
    }

    #[test]
    fn flags_parse() {
        assert_eq!("".parse::<SchedFlags>(), Ok(SchedFlags::default()));
        let f: SchedFlags = "sh-fallback,sh-port".parse().unwrap();
        assert!(f.fallback && f.hash_port);
        let f: SchedFlags = "mh-port".parse().unwrap();
        assert!(!f.fallback && f.hash_port);
        let e = "sh-port,sh-bogus".parse::<SchedFlags>().unwrap_err();
        assert_eq!(e, ServiceError::UnknownFlag("sh-bogus".into()));
    }
}

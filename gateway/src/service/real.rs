//! Real servers as configured: address, port, weight, forwarding method and connection thresholds.

use super::error::ServiceError;
use super::key::RsKey;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Largest weight IPVS accepts (`ipvsadm -w 0..65535`).
pub const MAX_WEIGHT: u32 = 65_535;

/// How packets reach a real server (the `ipvsadm` option in brackets).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FwdMode {
    /// Full NAT (`-b`, as DPVS): both addresses rewritten; the main mode of this gateway.
    #[default]
    FullNat,
    /// Masquerading (`-m`): destination rewritten, replies must route back through us.
    Nat,
    /// Direct routing (`-g`): only the destination MAC changes.
    Dr,
    /// IP-in-IP tunnelling (`-i`).
    Tun,
}

impl fmt::Display for FwdMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FwdMode::FullNat => "fullnat",
            FwdMode::Nat => "nat",
            FwdMode::Dr => "dr",
            FwdMode::Tun => "tun",
        })
    }
}

impl FromStr for FwdMode {
    type Err = ServiceError;

    /// Our names and `ipvsadm -L`'s (`Masq`, `Route`, `Tunnel`), any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "fullnat" | "fnat" => Ok(FwdMode::FullNat),
            "nat" | "masq" => Ok(FwdMode::Nat),
            "dr" | "route" | "gate" => Ok(FwdMode::Dr),
            "tun" | "tunnel" | "ipip" => Ok(FwdMode::Tun),
            _ => Err(ServiceError::UnknownFwdMode(s.to_owned())),
        }
    }
}

/// One real server of a service, as configured (`ipvsadm -a -r addr:port -w W -x U -y L -b|-m|-g|-i`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealServer {
    pub addr: IpAddr,
    pub port: u16,
    /// 0..=65535; 0 quiesces the server: it keeps its connections but gets no new ones.
    pub weight: u32,
    pub fwd: FwdMode,
    /// Upper connection threshold (`-x`); 0 means none.
    pub upper: u32,
    /// Lower connection threshold (`-y`); 0 means "3/4 of upper".
    pub lower: u32,
}

impl RealServer {
    /// A FullNAT real server without thresholds.
    pub fn new(addr: impl Into<IpAddr>, port: u16, weight: u32) -> Self {
        RealServer {
            addr: addr.into(),
            port,
            weight,
            fwd: FwdMode::FullNat,
            upper: 0,
            lower: 0,
        }
    }

    /// The address of a server of an IPv4 service (the IPv4 datapath finds only those:
    /// `Service::check` refuses a service mixing families); `0.0.0.0` for an IPv6 one.
    #[inline]
    pub fn v4(&self) -> std::net::Ipv4Addr {
        match self.addr {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
        }
    }

    pub fn key(&self) -> RsKey {
        RsKey {
            addr: self.addr,
            port: self.port,
        }
    }

    /// The checks `ip_vs_add_dest`/`ip_vs_edit_dest` make (weight range; `-ERANGE` when the lower
    /// threshold exceeds the upper one).
    pub fn validate(&self) -> Result<(), ServiceError> {
        if self.weight > MAX_WEIGHT {
            return Err(ServiceError::WeightRange(self.key(), self.weight));
        }
        if self.lower > self.upper {
            return Err(ServiceError::Thresholds {
                rs: self.key(),
                upper: self.upper,
                lower: self.lower,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn fwd_mode_names() {
        for m in [FwdMode::FullNat, FwdMode::Nat, FwdMode::Dr, FwdMode::Tun] {
            assert_eq!(m.to_string().parse::<FwdMode>(), Ok(m));
        }
        assert_eq!("Masq".parse::<FwdMode>(), Ok(FwdMode::Nat));
        assert_eq!(
            "bridge".parse::<FwdMode>(),
            Err(ServiceError::UnknownFwdMode("bridge".into()))
        );
    }

    #[test]
    fn validate_weight_and_thresholds() {
        let mut rs = RealServer::new(Ipv4Addr::new(10, 0, 0, 1), 80, MAX_WEIGHT);
        assert!(rs.validate().is_ok());
        rs.weight = MAX_WEIGHT + 1;
        assert!(matches!(
            rs.validate(),
            Err(ServiceError::WeightRange(_, 65_536))
        ));
        rs.weight = 1;
        rs.upper = 10;
        rs.lower = 11;
        assert!(matches!(
            rs.validate(),
            Err(ServiceError::Thresholds { .. })
        ));
        rs.lower = 5;
        assert!(rs.validate().is_ok());
    }

    #[test]
    fn key_packs_addr_and_port() {
        let k = RsKey {
            addr: Ipv4Addr::new(1, 2, 3, 4).into(),
            port: 0x0506,
        };
        assert_eq!(k.as_u64(), 0x0102_0304_0506);
        assert_eq!(k.to_string(), "1.2.3.4:1286");
    }
}

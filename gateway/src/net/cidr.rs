//! IPv4 and IPv6 prefixes (`10.0.0.1/24`, `2001:db8::1/64`): an address with a prefix length.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Ipv4Cidr {
    pub fn new(addr: Ipv4Addr, len: u8) -> Option<Self> {
        (len <= 32).then_some(Ipv4Cidr { addr, len })
    }

    /// The netmask as a host-order u32 (len 0 gives 0).
    #[inline]
    pub fn mask(&self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - self.len)
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    #[inline]
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) ^ u32::from(self.addr)) & self.mask() == 0
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} lacks a /prefix-length"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IPv4 address"))?;
        let len: u8 = l
            .parse()
            .map_err(|_| format!("prefix length {l:?} is not a number"))?;
        Ipv4Cidr::new(addr, len).ok_or_else(|| format!("prefix length {len} is over 32"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv6Cidr {
    pub addr: Ipv6Addr,
    pub len: u8,
}

impl Ipv6Cidr {
    pub fn new(addr: Ipv6Addr, len: u8) -> Option<Self> {
        (len <= 128).then_some(Ipv6Cidr { addr, len })
    }

    #[inline]
    pub fn mask(&self) -> u128 {
        if self.len == 0 {
            0
        } else {
            u128::MAX << (128 - self.len)
        }
    }

    pub fn network(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) & self.mask())
    }

    #[inline]
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        (u128::from(ip) ^ u128::from(self.addr)) & self.mask() == 0
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv6Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} lacks a /prefix-length"))?;
        let addr: Ipv6Addr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IPv6 address"))?;
        let len: u8 = l
            .parse()
            .map_err(|_| format!("prefix length {l:?} is not a number"))?;
        Ipv6Cidr::new(addr, len).ok_or_else(|| format!("prefix length {len} is over 128"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_parse_contains_network() {
        let c: Ipv6Cidr = "2001:db8:1::7/64".parse().unwrap();
        assert_eq!(c.network(), "2001:db8:1::".parse::<Ipv6Addr>().unwrap());
        assert!(c.contains("2001:db8:1::ffff:1".parse().unwrap()));
        assert!(!c.contains("2001:db8:2::1".parse().unwrap()));
        let all: Ipv6Cidr = "::/0".parse().unwrap();
        assert!(all.contains("2001:db8::1".parse().unwrap()));
        assert!("2001:db8::1/129".parse::<Ipv6Cidr>().is_err());
        assert!("10.0.0.1/8".parse::<Ipv6Cidr>().is_err());
    }

    #[test]
    fn parse_contains_network() {
        let c: Ipv4Cidr = "10.1.2.3/16".parse().unwrap();
        assert_eq!(c.network(), Ipv4Addr::new(10, 1, 0, 0));
        assert!(c.contains(Ipv4Addr::new(10, 1, 255, 1)));
        assert!(!c.contains(Ipv4Addr::new(10, 2, 0, 1)));
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(1, 2, 3, 4)));
        let host: Ipv4Cidr = "1.2.3.4/32".parse().unwrap();
        assert!(
            host.contains(Ipv4Addr::new(1, 2, 3, 4)) && !host.contains(Ipv4Addr::new(1, 2, 3, 5))
        );
        assert!("1.2.3.4".parse::<Ipv4Cidr>().is_err());
        assert!("1.2.3.4/33".parse::<Ipv4Cidr>().is_err());
        assert!("1.2.3/8".parse::<Ipv4Cidr>().is_err());
    }
}

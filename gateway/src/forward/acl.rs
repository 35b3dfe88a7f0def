//! Per-service access lists (`[[service]] acl`): which clients may open connections, decided on a
//! connection's first packet, before any state is created (issue 21).
//!
//! A list is rules in order, each `allow PREFIX` or `deny PREFIX` (a bare address is a /32); the
//! first rule whose prefix holds the client's address decides, as nginx's `allow`/`deny` do. When
//! none matches, the client is allowed unless the list has an `allow` rule (then it is an
//! allow-list, and what it does not name is refused). Each rule counts the connections it
//! decided, and so does the default. Connections already open when a list changes go on.
//!
//! A prefix is IPv4 or IPv6 (`allow 2001:db8::/32`; a bare IPv6 address is a /128); a rule only
//! matches clients of its family. Decided once per new connection, so the 128-bit compare costs
//! nothing that matters.

use crate::net::{Ipv4Cidr, Ipv6Cidr};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AclRule {
    /// Network address (host bits cleared) and mask, host order: an IPv4 one in the low 32 bits.
    net: u128,
    mask: u128,
    v6: bool,
    pub allow: bool,
}

impl AclRule {
    /// Parses `allow PREFIX` or `deny PREFIX`.
    pub fn parse(s: &str) -> Result<AclRule, String> {
        let mut w = s.split_whitespace();
        let (Some(verb), Some(prefix), None) = (w.next(), w.next(), w.next()) else {
            return Err(format!("{s:?} is not \"allow PREFIX\" or \"deny PREFIX\""));
        };
        let allow = match verb {
            "allow" => true,
            "deny" => false,
            v => return Err(format!("{v:?} in {s:?} is neither allow nor deny")),
        };
        if prefix.contains(':') {
            let cidr: Ipv6Cidr = match prefix.contains('/') {
                true => prefix.parse()?,
                false => Ipv6Cidr::new(
                    prefix
                        .parse()
                        .map_err(|_| format!("{prefix:?} is not an IPv6 address or prefix"))?,
                    128,
                )
                .ok_or("prefix")?,
            };
            if cidr.network() != cidr.addr {
                return Err(format!(
                    "{prefix} has host bits set (the prefix is {}/{})",
                    cidr.network(),
                    cidr.len
                ));
            }
            return Ok(AclRule {
                net: u128::from(cidr.network()),
                mask: cidr.mask(),
                v6: true,
                allow,
            });
        }
        let cidr: Ipv4Cidr = match prefix.contains('/') {
            true => prefix.parse()?,
            false => Ipv4Cidr::new(
                prefix
                    .parse()
                    .map_err(|_| format!("{prefix:?} is not an IPv4 address or prefix"))?,
                32,
            )
            .ok_or("prefix")?,
        };
        if cidr.network() != cidr.addr {
            return Err(format!(
                "{prefix} has host bits set (the prefix is {}/{})",
                cidr.network(),
                cidr.len
            ));
        }
        Ok(AclRule {
            net: u128::from(u32::from(cidr.network())),
            mask: u128::from(cidr.mask()),
            v6: false,
            allow,
        })
    }

    /// Whether the rule's prefix holds `ip` (never for the other family).
    #[inline]
    pub fn matches(&self, ip: IpAddr) -> bool {
        let (v6, a) = match ip {
            IpAddr::V4(a) => (false, u128::from(u32::from(a))),
            IpAddr::V6(a) => (true, u128::from(a)),
        };
        v6 == self.v6 && a & self.mask == self.net
    }
}

impl std::fmt::Display for AclRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.allow { "allow" } else { "deny" };
        let len = self.mask.count_ones();
        if self.v6 {
            write!(f, "{verb} {}/{len}", Ipv6Addr::from(self.net))
        } else {
            write!(f, "{verb} {}/{len}", Ipv4Addr::from(self.net as u32))
        }
    }
}

/// Parses a list; the error names the rule.
pub fn parse_list(rules: &[String]) -> Result<Vec<AclRule>, String> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| AclRule::parse(r).map_err(|e| format!("rule {}: {e}", i + 1)))
        .collect()
}

/// Which rule decides for `client` (`rules.len()` for the default) and whether it may connect.
#[inline]
pub fn decide(rules: &[AclRule], client: IpAddr) -> (usize, bool) {
    match rules.iter().position(|r| r.matches(client)) {
        Some(i) => (i, rules[i].allow),
        None => (rules.len(), !rules.iter().any(|r| r.allow)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(r: &[&str]) -> Vec<AclRule> {
        parse_list(&r.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn the_first_matching_rule_decides_and_an_allow_list_refuses_the_rest() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let deny_then_allow = list(&["deny 10.10.0.66", "allow 10.10.0.0/24"]);
        let shown: Vec<String> = deny_then_allow.iter().map(|r| r.to_string()).collect();
        assert_eq!(shown, ["deny 10.10.0.66/32", "allow 10.10.0.0/24"]);
        assert_eq!(decide(&deny_then_allow, ip("10.10.0.66")), (0, false));
        assert_eq!(decide(&deny_then_allow, ip("10.10.0.2")), (1, true));
        assert_eq!(
            decide(&deny_then_allow, ip("192.0.2.1")),
            (2, false),
            "an allow-list"
        );
        let deny_only = list(&["deny 198.18.0.0/15"]);
        assert_eq!(decide(&deny_only, ip("198.19.255.255")), (0, false));
        assert_eq!(decide(&deny_only, ip("198.20.0.0")), (1, true));
        assert_eq!(decide(&[], ip("1.2.3.4")), (0, true));
        let everyone = list(&["allow 0.0.0.0/0"]);
        assert_eq!(decide(&everyone, ip("203.0.113.9")), (0, true));
        // IPv6: its own prefixes; a rule of the other family never matches.
        let v6 = list(&[
            "deny 2001:db8:66::1",
            "allow 2001:db8::/32",
            "allow 10.0.0.0/8",
        ]);
        let shown: Vec<String> = v6.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            shown,
            [
                "deny 2001:db8:66::1/128",
                "allow 2001:db8::/32",
                "allow 10.0.0.0/8"
            ]
        );
        assert_eq!(decide(&v6, ip("2001:db8:66::1")), (0, false));
        assert_eq!(decide(&v6, ip("2001:db8:1::9")), (1, true));
        assert_eq!(decide(&v6, ip("2001:db9::1")), (3, false), "an allow-list");
        assert_eq!(decide(&v6, ip("10.1.2.3")), (2, true));
        assert_eq!(decide(&list(&["allow ::/0"]), ip("10.1.2.3")), (1, false));
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        for (bad, why) in [
            ("permit 10.0.0.0/8", "neither allow nor deny"),
            ("allow", "is not \"allow PREFIX\""),
            ("allow 10.0.0.0/8 extra", "is not \"allow PREFIX\""),
            ("deny 10.0.0.1/8", "host bits set"),
            ("deny 10.0.0.0/33", "over 32"),
            ("allow ten", "not an IPv4 address"),
            ("deny 2001:db8::1/32", "host bits set"),
            ("deny 2001:db8::/129", "over 128"),
            ("allow 2001:db8::g", "not an IPv6 address"),
        ] {
            let e = parse_list(&["allow 10.0.0.0/8".into(), bad.into()]).unwrap_err();
            assert!(e.starts_with("rule 2: ") && e.contains(why), "{bad}: {e}");
        }
    }
}

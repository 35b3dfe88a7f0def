//! What a config asks of the health checker (`crate::health`): a check target for every real
//! server of a service with a `check` (or with one of its own), and the sorry servers. The
//! config's validation runs `targets` for its errors; the commit point runs both for every
//! generation (`control::commit`).

use super::ServiceEntry;
use crate::health::runner::{Target, TargetKey};

/// The checks `services` ask for, one per real server of a service with a `check` (or a real
/// server with one). The error names the key (`service[i].check.interval_ms`,
/// `service[i].real[j].check.kind`) and the reason. Entries are otherwise already validated.
pub fn targets(
    services: &[impl std::borrow::Borrow<ServiceEntry>],
) -> Result<Vec<Target>, (String, String)> {
    let mut out = Vec::new();
    for (i, s) in services.iter().enumerate() {
        let s: &ServiceEntry = s.borrow();
        // Most services have no check: their addresses are not parsed (this runs over the whole
        // table at each admin change, twice).
        if s.check.is_none() && s.reals.iter().all(|r| r.check.is_none()) {
            continue;
        }
        let (Ok(vip), Ok(proto)) = (
            s.vip.parse::<std::net::IpAddr>(),
            s.protocol.parse::<crate::service::Proto>(),
        ) else {
            continue;
        };
        for (j, r) in s.reals.iter().enumerate() {
            let entry = match (&s.check, &r.check) {
                (None, None) => continue,
                (Some(a), Some(b)) => a.merged(b),
                (Some(a), None) => a.clone(),
                (None, Some(b)) => b.clone(),
            };
            let Ok(rs) = r.address.parse::<std::net::IpAddr>() else {
                continue;
            };
            let rs_port = r.port.unwrap_or(s.port);
            let at = |k: &str| {
                if r.check.is_some() {
                    format!("service[{i}].real[{j}].check.{k}")
                } else {
                    format!("service[{i}].check.{k}")
                }
            };
            let check = entry.validate(rs_port).map_err(|(k, why)| (at(&k), why))?;
            if let Some(src) = check.source.filter(|s| s.is_ipv4() != rs.is_ipv4()) {
                return Err((
                    at("source"),
                    format!("{src} is not of the family of real server {rs}"),
                ));
            }
            out.push(Target {
                key: TargetKey {
                    proto: proto.number(),
                    vip,
                    vport: s.port,
                    rs,
                    rs_port,
                },
                check,
            });
        }
    }
    Ok(out)
}

/// The sorry servers of `services`, by (protocol number, VIP, port); entries are validated.
pub fn sorry_servers(
    services: &[impl std::borrow::Borrow<ServiceEntry>],
) -> hashbrown::HashMap<(u8, std::net::IpAddr, u16), std::net::SocketAddr> {
    services
        .iter()
        .filter_map(|s| {
            let s: &ServiceEntry = s.borrow();
            // The sorry server first: most services have none, and their addresses go unparsed.
            let sorry = s.sorry_server.as_ref()?.parse().ok()?;
            let proto = s.protocol.parse::<crate::service::Proto>().ok()?.number();
            Some(((proto, s.vip.parse().ok()?, s.port), sorry))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_merge_a_real_servers_override_and_name_bad_keys() {
        let text = format!(
            "{}\n",
            crate::testkit::LAB_CONFIG.replacen(
                "[[service.real]]\naddress = \"10.20.0.12\"",
                "[[service.real]]\naddress = \"10.20.0.12\"\ncheck = { port = 8080 }",
                1
            )
        )
        .replacen(
            "scheduler = \"wrr\"",
            "scheduler = \"wrr\"\ncheck = { kind = \"http\", path = \"/health\" }",
            1,
        );
        let cfg = crate::config::Config::parse(&text).unwrap();
        let t = targets(&cfg.services).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].key.rs_port, t[0].check.port), (80, 80));
        assert_eq!((t[1].key.rs_port, t[1].check.port), (80, 8080));
        let bad = text.replace("path = \"/health\"", "path = \"health\"");
        let e = match crate::config::Config::parse(&bad) {
            Err(e) => e.to_string(),
            Ok(c) => c.validate().unwrap_err().to_string(),
        };
        assert!(e.contains("service[0].check.path"), "{e}");
    }

    /// An IPv6 service's real servers are checked over IPv6; a check's source must be of their
    /// family, and the error names the key.
    #[test]
    fn ipv6_real_servers_are_checked_from_a_source_of_their_family() {
        let service = r#"
[[service]]
vip = "2001:db8:10::100"
port = 80
protocol = "tcp"
local_addresses = ["2001:db8:20::200"]
check = { kind = "http", path = "/" }
[[service.real]]
address = "2001:db8:20::11"
[[service.real]]
address = "2001:db8:20::12"
check = { source = "SOURCE" }
"#;
        let config = |source: &str| {
            crate::testkit::dual_stack(&format!(
                "{}\n{}",
                crate::testkit::LAB_CONFIG,
                service.replace("SOURCE", source)
            ))
        };
        let cfg = crate::config::Config::parse(&config("2001:db8:20::1")).unwrap();
        cfg.validate().unwrap();
        let t = targets(&cfg.services).unwrap();
        let v6: Vec<_> = t.iter().filter(|t| t.key.rs.is_ipv6()).collect();
        assert_eq!(v6.len(), 2, "{t:?}");
        assert_eq!(v6[1].check.source, Some("2001:db8:20::1".parse().unwrap()));
        let e = match crate::config::Config::parse(&config("10.20.0.1")) {
            Err(e) => e.to_string(),
            Ok(c) => c.validate().unwrap_err().to_string(),
        };
        assert!(e.contains("service[2].real[1].check.source"), "{e}");
        assert!(e.contains("not of the family"), "{e}");
        // An IPv6 sorry server joins the service; an IPv4 one would not be of its family.
        let with_sorry = |s: &str| {
            config("2001:db8:20::1").replacen(
                "local_addresses = [\"2001:db8:20::200\"]",
                &format!("local_addresses = [\"2001:db8:20::200\"]\nsorry_server = \"{s}\""),
                1,
            )
        };
        let cfg = crate::config::Config::parse(&with_sorry("[2001:db8:20::99]:8080")).unwrap();
        let sorry = sorry_servers(&cfg.services);
        assert_eq!(
            sorry.values().copied().collect::<Vec<_>>(),
            ["[2001:db8:20::99]:8080"
                .parse::<std::net::SocketAddr>()
                .unwrap()]
        );
        for (bad, why) in [
            ("10.20.0.99:8080", "not of the family"),
            ("2001:db8:20::99:8080", "not ADDR:PORT"),
        ] {
            let e = match crate::config::Config::parse(&with_sorry(bad)) {
                Err(e) => e.to_string(),
                Ok(c) => c.validate().unwrap_err().to_string(),
            };
            assert!(
                e.contains("service[2].sorry_server") && e.contains(why),
                "{bad}: {e}"
            );
        }
    }
}

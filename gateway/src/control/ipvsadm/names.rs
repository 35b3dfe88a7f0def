//! Host and service names for ipvsadm's listings and arguments, from the files only.

use std::collections::HashMap;
use std::net::IpAddr;

/// Host and service names, as getservbyport/gethostbyaddr would give them from the files (no DNS).
#[derive(Clone, Debug, Default)]
pub struct Names {
    services: HashMap<(u16, String), String>,
    ports: HashMap<(String, String), u16>,
    hosts: HashMap<IpAddr, String>,
    addrs: HashMap<String, IpAddr>,
}

impl Names {
    /// From /etc/services and /etc/hosts (missing files give no names).
    pub fn system() -> Names {
        let s = std::fs::read_to_string("/etc/services").unwrap_or_default();
        let h = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        Names::from_files(&s, &h)
    }

    pub fn from_files(services: &str, hosts: &str) -> Names {
        let mut n = Names::default();
        for l in services.lines().map(|l| l.split('#').next().unwrap_or("")) {
            let mut w = l.split_whitespace();
            let (Some(name), Some(pp)) = (w.next(), w.next()) else {
                continue;
            };
            let Some((port, proto)) = pp.split_once('/') else {
                continue;
            };
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            n.services
                .entry((port, proto.into()))
                .or_insert_with(|| name.into());
            for alias in std::iter::once(name).chain(w) {
                n.ports.entry((alias.into(), proto.into())).or_insert(port);
            }
        }
        for l in hosts.lines().map(|l| l.split('#').next().unwrap_or("")) {
            let mut w = l.split_whitespace();
            let Some(Ok(ip)) = w.next().map(str::parse::<IpAddr>) else {
                continue;
            };
            let mut first = true;
            for name in w {
                if first {
                    n.hosts.entry(ip).or_insert_with(|| name.into());
                    first = false;
                }
                n.addrs.entry(name.into()).or_insert(ip);
            }
        }
        n
    }

    pub(super) fn service_port(&self, name: &str, proto: &str) -> Option<u16> {
        self.ports
            .get(&(name.to_string(), proto.to_string()))
            .copied()
    }

    pub(super) fn host_addr(&self, name: &str) -> Option<IpAddr> {
        self.addrs.get(name).copied()
    }

    /// `addrport_to_anyname`: numeric with `-n`, else names where the files have them.
    /// An IPv6 address is bracketed, `[2001:db8::1]:80`, as ipvsadm prints it.
    pub fn addrport(&self, ip: IpAddr, port: u16, proto: &str, numeric: bool) -> String {
        if numeric {
            return std::net::SocketAddr::new(ip, port).to_string();
        }
        let h = self
            .hosts
            .get(&ip)
            .cloned()
            .unwrap_or_else(|| ip.to_string());
        let p = self
            .services
            .get(&(port, proto.to_ascii_lowercase()))
            .cloned()
            .unwrap_or_else(|| port.to_string());
        match ip {
            IpAddr::V6(_) if !self.hosts.contains_key(&ip) => format!("[{h}]:{p}"),
            _ => format!("{h}:{p}"),
        }
    }
}

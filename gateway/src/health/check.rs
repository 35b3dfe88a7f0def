//! What a health check is: its kind and knobs, as the config and the admin socket give them, with
//! keepalived's name for each (conf/README.md has the table), validated into a [`Check`].

use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::PathBuf;

/// A check as written (`[service.check]`, or `[service.real.check]` to override some keys for
/// one real server). Every key is optional so an override names only what it changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckEntry {
    /// `tcp` (TCP_CHECK), `http` (HTTP_GET), `udp` (UDP_CHECK), `exec` (MISC_CHECK).
    pub kind: Option<String>,
    /// Between probes (keepalived `delay_loop`, in ms here). Default 1000.
    pub interval_ms: Option<u32>,
    /// A probe's deadline (`connect_timeout`). Default 1000.
    pub timeout_ms: Option<u32>,
    /// Successes in a row that make a down server up. Default 2.
    pub rise: Option<u32>,
    /// Failures in a row that make an up server down (`retry`). Default 3.
    pub fall: Option<u32>,
    /// Probe times move by up to this percentage of the interval. Default 10.
    pub jitter_pct: Option<u8>,
    /// The port probed (`connect_port`); default the real server's.
    pub port: Option<u16>,
    /// The source address of probes (`bindto`).
    pub source: Option<String>,
    /// `http`: the path (`url { path }`). Default `/`.
    pub path: Option<String>,
    /// `http`: the Host header (`virtualhost`); default the server's address.
    pub host: Option<String>,
    /// `http`: accepted status codes (`status_code`). Default 200..=399.
    pub status: Option<Vec<u16>>,
    /// `http`: a substring the body must contain (keepalived checks a digest instead).
    pub body: Option<String>,
    /// `udp`: the payload sent (`payload`). Default empty.
    pub payload: Option<String>,
    /// `udp`: a substring the reply must contain (`require_reply`); any reply when absent.
    pub expect: Option<String>,
    /// `exec`: the program (`misc_path`), run with the server's address and port as arguments;
    /// exit status 0 is up.
    pub program: Option<String>,
    /// Passive detection: this many client SYNs in a row that the server refused (RST) or left
    /// unanswered, as the workers count them, mark it down at once; the probes bring it back.
    /// 0 turns it off. Default 3. (No keepalived equivalent.)
    pub passive_fall: Option<u32>,
    /// Down means weight 0, existing connections kept (`true`, keepalived's `inhibit_on_failure`,
    /// the default here) or removed from the service (`false`, keepalived's default), in which
    /// case its connections follow `expire_nodest_conn`.
    pub inhibit_on_failure: Option<bool>,
}

/// The kind of probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckKind {
    Tcp,
    Http {
        path: String,
        host: Option<String>,
        status: Vec<u16>,
        body: Option<String>,
    },
    Udp {
        payload: Vec<u8>,
        expect: Option<String>,
    },
    Exec {
        program: PathBuf,
    },
}

/// A validated check for one real server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub kind: CheckKind,
    pub interval_ms: u32,
    pub timeout_ms: u32,
    pub rise: u32,
    pub fall: u32,
    pub jitter_pct: u8,
    /// The port probed (the real server's unless overridden).
    pub port: u16,
    /// The address probes are sent from (of the real server's family; `config::health::targets` checks).
    pub source: Option<IpAddr>,
    /// Failed SYNs in a row that mark the server down (0: no passive detection).
    pub passive_fall: u32,
    /// Down keeps the server at weight 0 (`true`) or removes it (`false`).
    pub inhibit: bool,
}

impl CheckEntry {
    /// This entry with `over`'s keys on top (a real server's override of its service's check).
    pub fn merged(&self, over: &CheckEntry) -> CheckEntry {
        macro_rules! pick {
            ($($f:ident),*) => { CheckEntry { $($f: over.$f.clone().or_else(|| self.$f.clone()),)* } };
        }
        pick!(
            kind,
            interval_ms,
            timeout_ms,
            rise,
            fall,
            jitter_pct,
            port,
            source,
            path,
            host,
            status,
            body,
            payload,
            expect,
            program,
            passive_fall,
            inhibit_on_failure
        )
    }

    /// The check for a real server on `rs_port`; the error names the key (relative to the check
    /// table) and the reason.
    pub fn validate(&self, rs_port: u16) -> Result<Check, (String, String)> {
        let err = |k: &str, m: String| Err((k.to_string(), m));
        let kind = match self.kind.as_deref() {
            Some("tcp") => CheckKind::Tcp,
            Some("http") => {
                let path = self.path.clone().unwrap_or_else(|| "/".into());
                if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace()) {
                    return err(
                        "path",
                        format!("{path:?} is not an absolute path without spaces"),
                    );
                }
                let status = self.status.clone().unwrap_or_else(|| (200..=399).collect());
                if status.is_empty() || status.iter().any(|s| !(100..=599).contains(s)) {
                    return err("status", format!("{status:?}: give HTTP codes 100..=599"));
                }
                CheckKind::Http {
                    path,
                    host: self.host.clone(),
                    status,
                    body: self.body.clone(),
                }
            }
            Some("udp") => CheckKind::Udp {
                payload: self.payload.clone().unwrap_or_default().into_bytes(),
                expect: self.expect.clone(),
            },
            Some("exec") => match &self.program {
                Some(p) if !p.is_empty() => CheckKind::Exec {
                    program: PathBuf::from(p),
                },
                _ => return err("program", "an exec check needs a program".into()),
            },
            Some(k) => return err("kind", format!("{k:?} is not tcp, http, udp or exec")),
            None => return err("kind", "missing (tcp, http, udp or exec)".into()),
        };
        let interval_ms = self.interval_ms.unwrap_or(1000);
        let timeout_ms = self.timeout_ms.unwrap_or(1000);
        if !(100..=3_600_000).contains(&interval_ms) {
            return err(
                "interval_ms",
                format!("{interval_ms} is out of range 100..=3600000"),
            );
        }
        if timeout_ms < 10 || timeout_ms > interval_ms.max(10) * 10 {
            return err(
                "timeout_ms",
                format!("{timeout_ms} is out of range 10..=10 x interval_ms"),
            );
        }
        let rise = self.rise.unwrap_or(2);
        let fall = self.fall.unwrap_or(3);
        for (k, v) in [("rise", rise), ("fall", fall)] {
            if !(1..=100).contains(&v) {
                return err(k, format!("{v} is out of range 1..=100"));
            }
        }
        let jitter_pct = self.jitter_pct.unwrap_or(10);
        if jitter_pct > 50 {
            return err("jitter_pct", format!("{jitter_pct} is over 50"));
        }
        let port = self.port.unwrap_or(rs_port);
        if port == 0 {
            return err("port", "must be 1..=65535".into());
        }
        let source = match &self.source {
            Some(s) => match s.parse::<IpAddr>() {
                Ok(a) => Some(a),
                Err(_) => return err("source", format!("{s:?} is not an IPv4 or IPv6 address")),
            },
            None => None,
        };
        let passive_fall = self.passive_fall.unwrap_or(3);
        if passive_fall > 1000 {
            return err(
                "passive_fall",
                format!("{passive_fall} is out of range 0..=1000"),
            );
        }
        Ok(Check {
            kind,
            interval_ms,
            timeout_ms,
            rise,
            fall,
            jitter_pct,
            port,
            source,
            passive_fall,
            inhibit: self.inhibit_on_failure.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str) -> CheckEntry {
        CheckEntry {
            kind: Some(kind.into()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_keepalived_like_and_the_port_is_the_servers() {
        let c = entry("tcp").validate(8080).unwrap();
        assert_eq!(
            (
                c.interval_ms,
                c.timeout_ms,
                c.rise,
                c.fall,
                c.jitter_pct,
                c.port
            ),
            (1000, 1000, 2, 3, 10, 8080)
        );
        let h = entry("http").validate(80).unwrap();
        match h.kind {
            CheckKind::Http { path, status, .. } => {
                assert_eq!(path, "/");
                assert!(status.contains(&200) && status.contains(&302) && !status.contains(&404));
            }
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn a_real_servers_override_changes_only_what_it_names() {
        let svc = CheckEntry {
            kind: Some("http".into()),
            path: Some("/health".into()),
            interval_ms: Some(500),
            ..Default::default()
        };
        let over = CheckEntry {
            port: Some(8081),
            ..Default::default()
        };
        let c = svc.merged(&over).validate(80).unwrap();
        assert_eq!((c.port, c.interval_ms), (8081, 500));
        assert!(matches!(c.kind, CheckKind::Http { ref path, .. } if path == "/health"));
    }

    #[test]
    fn bad_checks_are_refused_naming_the_key() {
        let bad = |e: CheckEntry, key: &str| {
            let (k, why) = e.validate(80).unwrap_err();
            assert_eq!(k, key, "{why}");
        };
        bad(CheckEntry::default(), "kind");
        bad(entry("icmp"), "kind");
        bad(entry("exec"), "program");
        bad(
            CheckEntry {
                interval_ms: Some(10),
                ..entry("tcp")
            },
            "interval_ms",
        );
        bad(
            CheckEntry {
                fall: Some(0),
                ..entry("tcp")
            },
            "fall",
        );
        bad(
            CheckEntry {
                status: Some(vec![700]),
                ..entry("http")
            },
            "status",
        );
        bad(
            CheckEntry {
                path: Some("health".into()),
                ..entry("http")
            },
            "path",
        );
        bad(
            CheckEntry {
                source: Some("nowhere".into()),
                ..entry("udp")
            },
            "source",
        );
    }
}

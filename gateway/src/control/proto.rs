//! The admin protocol, version 1: one JSON object per line each way (see the module docs of
//! [`crate::control`] for the whole description).
//!
//! Requests carry `"v": 1` and an `"op"`; responses carry `"v"`, `"ok"` and either `"data"` or
//! `"error"`. A request line is at most [`MAX_REQUEST`] bytes including its newline.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::net::{IpAddr, Ipv4Addr};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// Largest request line, newline included: the bound on one request, whatever it carries. An
/// `ipvsadm -R` of 10,000 services with 10 real servers each is about 9 MB of JSON; anything larger
/// than this is refused before it is parsed. A client's buffer grows with what it has sent, so the
/// daemon holds at most `MAX_CLIENTS` such buffers at once (each for `REQUEST_TIMEOUT` at most).
pub const MAX_REQUEST: usize = 64 * 1024 * 1024;

/// Largest response line a client accepts (connection listings can be long).
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// A virtual service's identity (`-t|-u VIP:port`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SvcKey {
    /// `tcp` or `udp`.
    pub proto: String,
    pub vip: IpAddr,
    pub port: u16,
}

impl std::fmt::Display for SvcKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            self.proto.to_ascii_uppercase(),
            std::net::SocketAddr::new(self.vip, self.port)
        )
    }
}

/// Scheduler and persistence of a service (`-s`, `-b flags`, `-p`, `-M`), as `-A` and `-E` give them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SvcOpts {
    /// Absent: `wlc`, as ipvsadm.
    pub scheduler: Option<String>,
    #[serde(default)]
    pub flags: Vec<String>,
    pub persistence_s: Option<u32>,
    /// An IPv4 service's `-M` netmask.
    pub netmask: Option<Ipv4Addr>,
    /// An IPv6 service's `-M` prefix length (1 to 128).
    #[serde(default)]
    pub prefix6: Option<u8>,
}

/// A real server as `-a`/`-e` give it (`-r`, `-w`, `-x`, `-y`, `-g|-m|-i|-b`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealOpts {
    pub addr: IpAddr,
    /// Absent: the service's port.
    pub port: Option<u16>,
    pub weight: u32,
    /// `fullnat`, `nat`, `dr` or `tun`.
    pub mode: String,
    #[serde(default)]
    pub upper: u32,
    #[serde(default)]
    pub lower: u32,
}

/// One change to the service table. A batch of changes is applied in order to a copy of the table,
/// validated whole and sent to every worker as one generation, or refused whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    AddService {
        svc: SvcKey,
        opts: SvcOpts,
    },
    EditService {
        svc: SvcKey,
        opts: SvcOpts,
    },
    DelService {
        svc: SvcKey,
    },
    Clear,
    AddReal {
        svc: SvcKey,
        real: RealOpts,
    },
    EditReal {
        svc: SvcKey,
        real: RealOpts,
    },
    DelReal {
        svc: SvcKey,
        addr: IpAddr,
        port: Option<u16>,
    },
    AddLaddr {
        svc: SvcKey,
        addr: IpAddr,
    },
    DelLaddr {
        svc: SvcKey,
        addr: IpAddr,
    },
    /// The health check of a service (`real` absent) or a real server's override of it
    /// (`[service.check]`, `[service.real] check`); `check` absent removes it.
    SetCheck {
        svc: SvcKey,
        real: Option<(Ipv4Addr, Option<u16>)>,
        check: Option<Box<crate::health::check::CheckEntry>>,
    },
    /// A service's sorry server (`ADDR:PORT`), or none.
    SetSorryServer {
        svc: SvcKey,
        server: Option<String>,
    },
    /// A service's access list (`acl`: "allow PREFIX" / "deny PREFIX" in order; empty: everyone).
    SetAcl {
        svc: SvcKey,
        rules: Vec<String>,
    },
    /// A service's SYN proxy: `off`, `on` or `auto` (`synproxy`).
    SetSynProxy {
        svc: SvcKey,
        mode: String,
    },
    /// A service's per-client limits (`client_limit`; absent: none).
    SetLimit {
        svc: SvcKey,
        limit: Option<crate::forward::limit::LimitEntry>,
    },
}

/// Connection listing filters; every one given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnFilter {
    pub proto: Option<String>,
    pub client: Option<IpAddr>,
    pub client_port: Option<u16>,
    pub vip: Option<IpAddr>,
    pub vport: Option<u16>,
    pub rs: Option<IpAddr>,
    pub rs_port: Option<u16>,
    /// As `ipvsadm -Lc` names it (`ESTABLISHED`, `SYN_RECV`, ...), any case.
    pub state: Option<String>,
    pub worker: Option<u16>,
    /// At most this many entries (default 100000).
    pub limit: Option<usize>,
    /// Answer in several lines as the workers hand their connections over, a chunk at a time: each
    /// line `ok` with `data.conns` and `"more": true`, the last with `data.total` and `"more": false`
    /// (what `ipvsadm -Lnc` uses, so a million connections list in bounded memory).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// The persistence templates too, after the connections, as `ipvsadm -Lc` lists them (state
    /// NONE, the masked client with port 0). A `worker` filter leaves them out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub templates: bool,
}

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Version, generation, workers.
    Status,
    /// Services with real servers, counts, counters and rates.
    List,
    /// Apply a batch of changes (all or nothing); answered when every worker runs it.
    Apply { changes: Vec<Change> },
    /// Connections, from every worker.
    Conns { filter: ConnFilter },
    /// Per-worker counters, per-port counters, drops by reason.
    Stats,
    /// Zero the counters shown (`ipvsadm -Z`).
    Zero,
    /// Connection timeouts (`ipvsadm -L --timeout`).
    Timeouts,
    /// Change the TCP established, TCP FIN_WAIT and UDP timeouts in seconds (`ipvsadm --set`; 0
    /// leaves one unchanged); answered when every worker runs them.
    SetTimeouts { tcp: u32, tcpfin: u32, udp: u32 },
    /// IPVS-style settings that have no ipvsadm option (`conn_reuse_mode`): every one with its
    /// value when `name` is absent; `name`'s value; with `value`, sets it (answered when every
    /// worker runs it).
    Sysctl {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<u32>,
    },
    /// A TOML configuration the daemon can start from, with the services as they run.
    Save,
    /// Interface addresses, routes and neighbours.
    Net,
    /// Every health-checked real server: state, last result and its reason, since when, counts.
    Health,
    /// Withdraws a VIP (every VIP when absent) from BGP and serves it until its connections end
    /// or `timeout_s` passes (`kernel::announce`); answers with the announce state.
    Drain {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vip: Option<std::net::IpAddr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_s: Option<u32>,
    },
    /// Ends a VIP's drain (every drain when absent).
    Undrain {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vip: Option<std::net::IpAddr>,
    },
    /// The announced VIPs, the withheld ones with why, and the drains.
    Announce,
    /// Per-worker, per-stage packets, calls and cycles (VPP's `show runtime`); `clear` starts
    /// them again from zero (`runtime clear`).
    Runtime {
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        clear: bool,
    },
    /// The event log (`events`): the events after sequence number `after` (every event held
    /// when absent), waiting up to `wait_ms` (at most 2000) for one when there is none yet.
    Events {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u64>,
        #[serde(default)]
        wait_ms: u32,
    },
    /// Connection sync (`[sync]`): its role, peer and counters; with `role` (`auto`, `master`,
    /// `backup`, `off`) sets how the role is chosen first (`ipvsadm --start-daemon`).
    Sync {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
    },
    /// Captures what port `port` (its `[[port]]` name) receives and sends, answered as a stream
    /// (`capture::stream`): frames passing `filter` (pcap-filter(7) syntax; absent: every frame),
    /// `snaplen` bytes of each at most, until `count` frames (default 1000) or `duration_s`.
    Capture {
        port: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snaplen: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_s: Option<u32>,
    },
}

/// A request line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub v: u32,
    #[serde(flatten)]
    pub op: Op,
}

/// A response line.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    pub v: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a refused batch: the index of the change at fault (ipvsadm -R turns it into a line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<usize>,
    /// In a streamed answer (`ConnFilter::stream`): true on every line but the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more: Option<bool>,
}

impl Response {
    pub fn ok(data: serde_json::Value) -> Response {
        Response {
            v: VERSION,
            ok: true,
            data: Some(data),
            error: None,
            at: None,
            more: None,
        }
    }

    pub fn err(msg: impl Into<String>) -> Response {
        Response {
            v: VERSION,
            ok: false,
            data: None,
            error: Some(msg.into()),
            at: None,
            more: None,
        }
    }
}

/// How reading one line went.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without its newline.
    Full(Vec<u8>),
    /// The peer closed before sending anything.
    Eof,
    /// The peer closed in the middle of a line.
    Truncated,
    /// More than `max` bytes without a newline.
    TooLong,
}

/// Reads one newline-terminated line of at most `max` bytes (newline included). Never buffers more
/// than `max` bytes, whatever the peer sends. The newline is searched by std's `read_until`
/// (memchr, optimised even in a debug build): a 64 MiB request is read in milliseconds, well within
/// the admin socket's request deadline.
pub fn read_line(r: &mut impl BufRead, max: usize) -> std::io::Result<Line> {
    let mut buf = Vec::new();
    let n = std::io::Read::take(&mut *r, max as u64).read_until(b'\n', &mut buf)?;
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Line::Full(buf));
    }
    Ok(if n == 0 {
        Line::Eof
    } else if buf.len() >= max {
        Line::TooLong
    } else {
        Line::Truncated
    })
}

/// Parses a request line; the error is what the client is told.
///
/// In two passes over the bytes, not through `Request`'s derived `Deserialize`: its flattened,
/// internally tagged `Op` made serde buffer the whole request as `serde_json::Value`, then as
/// `Content`, and clone every change of a batch once more (`FlatMapDeserializer`); a restore of
/// 10,000 services spent most of its time there (perf/RESULTS.md, "A restore's requests parsed
/// once"). The first pass reads `v` and skips every other value unread; the second reads `Op` from
/// the same bytes, whose variants ignore `v` as they ignore any key they do not know.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    /// The protocol version alone.
    #[derive(Deserialize)]
    struct Head {
        v: Option<serde_json::Value>,
    }
    let head: Head = serde_json::from_slice(line).map_err(|e| format!("malformed request: {e}"))?;
    let v = match head.v.as_ref().and_then(|v| v.as_u64()) {
        Some(x) if x == VERSION as u64 => VERSION,
        Some(x) => {
            return Err(format!(
                "unsupported protocol version {x} (this daemon speaks {VERSION})"
            ))
        }
        None => return Err("malformed request: no protocol version \"v\"".into()),
    };
    let op = serde_json::from_slice(line).map_err(|e| format!("malformed request: {e}"))?;
    Ok(Request { v, op })
}

/// Writes `Response::ok(data)` as one line, serialized straight from `data`: the same answer as
/// [`write_line`] of a `Response` whose data went through `serde_json::to_value` (keys in another
/// order), without building the `Value` tree. For `ipvsadm -Ln` of 10,000 services of 10 real
/// servers, building, writing and freeing that tree (a map per real server) was most of the
/// daemon's time (perf/RESULTS.md, "A listing written straight from its view").
pub fn write_ok_line(w: &mut impl Write, data: &impl Serialize) -> std::io::Result<()> {
    /// `Response`'s fields of an `ok` answer, in its order.
    #[derive(Serialize)]
    struct Ok<'a, T> {
        v: u32,
        ok: bool,
        data: &'a T,
    }
    write_line(
        w,
        &Ok {
            v: VERSION,
            ok: true,
            data,
        },
    )
}

/// Writes a value as one line.
pub fn write_line(w: &mut impl Write, v: &impl Serialize) -> std::io::Result<()> {
    let mut s = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    s.push(b'\n');
    w.write_all(&s)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    fn lines(input: &[u8], max: usize) -> Vec<Line> {
        // A tiny buffer, so lines span several fill_buf calls.
        let mut r = BufReader::with_capacity(3, input);
        let mut out = Vec::new();
        loop {
            let l = read_line(&mut r, max).unwrap();
            let stop = !matches!(l, Line::Full(_));
            out.push(l);
            if stop {
                return out;
            }
        }
    }

    #[test]
    fn lines_are_split_bounded_and_truncation_is_seen() {
        assert_eq!(
            lines(b"ab\ncd\n", 16),
            vec![
                Line::Full(b"ab".to_vec()),
                Line::Full(b"cd".to_vec()),
                Line::Eof
            ]
        );
        assert_eq!(
            lines(b"ab\ncd", 16),
            vec![Line::Full(b"ab".to_vec()), Line::Truncated]
        );
        assert_eq!(lines(b"abcdefgh\n", 8), vec![Line::TooLong]);
        assert_eq!(
            lines(b"abcdefg\n", 8),
            vec![Line::Full(b"abcdefg".to_vec()), Line::Eof]
        );
    }

    #[test]
    fn requests_round_trip_and_versions_are_checked() {
        let r = Request {
            v: VERSION,
            op: Op::Apply {
                changes: vec![
                    Change::Clear,
                    Change::AddService {
                        svc: SvcKey {
                            proto: "tcp".into(),
                            vip: Ipv4Addr::new(10, 0, 0, 1).into(),
                            port: 80,
                        },
                        opts: SvcOpts {
                            scheduler: Some("rr".into()),
                            ..Default::default()
                        },
                    },
                ],
            },
        };
        let s = serde_json::to_string(&r).unwrap();
        assert!(
            s.starts_with(r#"{"v":1,"op":"apply","changes":[{"change":"clear"}"#),
            "{s}"
        );
        assert_eq!(parse_request(s.as_bytes()).unwrap(), r);
        assert!(parse_request(br#"{"v":2,"op":"list"}"#)
            .unwrap_err()
            .contains("version 2"));
        assert!(parse_request(br#"{"op":"list"}"#)
            .unwrap_err()
            .contains("no protocol version"));
        assert!(parse_request(br#"{"v":1,"op":"explode"}"#)
            .unwrap_err()
            .contains("malformed"));
        assert!(parse_request(b"\xff\xfe garbage")
            .unwrap_err()
            .contains("malformed"));
        assert_eq!(
            parse_request(br#"{"v":1,"op":"list"}"#).unwrap().op,
            Op::List
        );
    }

    /// Every kind of request parses back into what was sent, whichever place `v` takes among the
    /// keys: the unit ops (no field besides `op`) as well as those with fields.
    #[test]
    fn every_op_parses_back_with_the_version_anywhere() {
        let ops = [
            Op::Status,
            Op::List,
            Op::Stats,
            Op::Zero,
            Op::Save,
            Op::Apply { changes: vec![] },
            Op::Conns {
                filter: ConnFilter {
                    vport: Some(80),
                    stream: true,
                    ..ConnFilter::default()
                },
            },
            Op::SetTimeouts {
                tcp: 900,
                tcpfin: 0,
                udp: 300,
            },
            Op::Sysctl {
                name: Some("conn_reuse_mode".into()),
                value: None,
            },
            Op::Runtime { clear: true },
        ];
        for op in ops {
            let r = Request { v: VERSION, op };
            let first = serde_json::to_string(&r).unwrap();
            assert_eq!(parse_request(first.as_bytes()).unwrap(), r, "{first}");
            // The same keys with `v` last.
            let mut keys: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&first).unwrap();
            let v = keys.remove("v").unwrap();
            keys.insert("v".into(), v);
            let last = serde_json::to_string(&keys).unwrap();
            assert!(last.ends_with(r#""v":1}"#), "{last}");
            assert_eq!(parse_request(last.as_bytes()).unwrap(), r, "{last}");
        }
        // Not an object at all, and a version of the wrong type: refused, named.
        assert!(parse_request(b"[1]").unwrap_err().contains("malformed"));
        assert!(parse_request(br#"{"v":"1","op":"list"}"#)
            .unwrap_err()
            .contains("no protocol version"));
        // A change that does not parse refuses the whole request.
        assert!(
            parse_request(br#"{"v":1,"op":"apply","changes":[{"change":"explode"}]}"#)
                .unwrap_err()
                .contains("malformed")
        );
    }

    /// An answer written straight from its data reads back as the same `Response` as one whose
    /// data went through a `Value`.
    #[test]
    fn an_ok_line_written_from_its_data_reads_as_the_response() {
        #[derive(Serialize)]
        struct Data {
            name: &'static str,
            rates: Vec<(u32, Option<u64>)>,
            nested: std::collections::BTreeMap<String, f64>,
        }
        let data = Data {
            name: "svc \"quoted\"",
            rates: vec![(1, None), (2, Some(u64::MAX))],
            nested: [("b".to_string(), 1.5), ("a".to_string(), -0.25)].into(),
        };
        let mut direct = Vec::new();
        write_ok_line(&mut direct, &data).unwrap();
        let mut via_value = Vec::new();
        write_line(
            &mut via_value,
            &Response::ok(serde_json::to_value(&data).unwrap()),
        )
        .unwrap();
        assert_eq!(direct.last(), Some(&b'\n'));
        let read = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).unwrap();
        assert_eq!(read(&direct), read(&via_value));
        let r: Response = serde_json::from_slice(&direct).unwrap();
        assert!(r.ok && r.error.is_none() && r.more.is_none());
    }
}

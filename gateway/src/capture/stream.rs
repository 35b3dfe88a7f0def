//! A capture over the admin socket: the daemon answers `{"op":"capture",...}` with a stream of
//! lines, as `conns` with `stream` does (`"more": true` on every line but the last):
//!
//! ```text
//! -> {"v":1,"op":"capture","port":"client","filter":"tcp port 80","count":100}
//! <- {"v":1,"ok":true,"more":true,"data":{"started":{"port":"client","snaplen":262144,...},"counts":{...},"sent":0}}
//! <- {"v":1,"ok":true,"more":true,"data":{"frames":[{"dir":"in","ts_ns":...,"len":74,"hex":"02..."}],"counts":{...},"sent":1}}
//! <- {"v":1,"ok":true,"more":true,"data":{"counts":{...},"sent":1}}          (every HEARTBEAT when idle)
//! <- {"v":1,"ok":true,"more":false,"data":{"counts":{...},"sent":100}}       (count or duration reached)
//! ```
//!
//! A refused capture (unknown port, bad filter, one already running) is one `ok: false` line. The
//! capture ends when `count` frames are sent, `duration_s` passes, the daemon stops, the client
//! sends anything or closes its side (gwctl shuts down its writing half on Ctrl-C and reads the
//! last line, with the final counters), or a write to the client fails. The daemon looks at the
//! client every [`WAIT`], so the capture slot is free again within that of the client leaving.

use super::{Counts, Direction, Record, Running};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Frames per line at most.
const BATCH: usize = 64;
/// A line (with the counters) at least this often, so a vanished client is noticed and gwctl can
/// look at Ctrl-C between lines.
pub const HEARTBEAT: Duration = Duration::from_millis(250);
/// How long one wait on the ring lasts, and so how soon a client that leaves is noticed.
pub const WAIT: Duration = Duration::from_millis(50);

/// The first line's news: the capture runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    pub port: String,
    pub snaplen: u32,
    #[serde(default)]
    pub filter: Option<String>,
}

/// One frame on the wire: its bytes in hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireFrame {
    pub dir: Direction,
    pub ts_ns: u64,
    /// Length on the wire (the bytes may be fewer: the snap length).
    pub len: u32,
    pub hex: String,
}

impl WireFrame {
    pub fn from_record(r: &Record) -> WireFrame {
        WireFrame {
            dir: r.dir,
            ts_ns: r.ts_ns,
            len: r.orig_len,
            hex: hex(&r.data),
        }
    }

    pub fn to_record(&self) -> Result<Record, String> {
        Ok(Record {
            dir: self.dir,
            ts_ns: self.ts_ns,
            orig_len: self.len,
            data: unhex(&self.hex)?,
        })
    }
}

/// The `data` of every line of a capture's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Started>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<WireFrame>,
    /// The workers' counters so far.
    pub counts: Counts,
    /// Frames sent to this client so far, these included.
    pub sent: u64,
}

pub fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(DIGITS[usize::from(x >> 4)] as char);
        s.push(DIGITS[usize::from(x & 15)] as char);
    }
    s
}

pub fn unhex(s: &str) -> Result<Vec<u8>, String> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(format!("not a hex digit: {:?}", c as char)),
    };
    if !s.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    s.as_bytes()
        .chunks(2)
        .map(|p| Ok(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// Streams a started capture to a client through `send` until `count` frames are sent, `duration`
/// passes, `ended` says so (the daemon stops, the client spoke or hung up; asked every [`WAIT`]) or
/// `send` fails (the client went away: the error is returned). `send` gets each line and whether
/// more follow (the admin socket writes it as a response's data, with `more`). The capture ends
/// (`running` is dropped) before the last line, so its counters are final.
pub fn serve(
    running: Running,
    count: u64,
    duration: Option<Duration>,
    mut ended: impl FnMut() -> bool,
    mut send: impl FnMut(&Line, bool) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let session = running.session.clone();
    let mut sent = 0u64;
    send(
        &Line {
            started: Some(Started {
                port: session.port_name.clone(),
                snaplen: session.snaplen(),
                filter: session.filter_expr().map(String::from),
            }),
            counts: session.counts(),
            ..Default::default()
        },
        true,
    )?;
    let until = duration.map(|d| Instant::now() + d);
    let mut last = Instant::now();
    while sent < count && until.is_none_or(|u| Instant::now() < u) && !ended() {
        let mut frames = Vec::new();
        if let Ok(r) = running.records.recv_timeout(WAIT) {
            frames.push(WireFrame::from_record(&r));
            while frames.len() < BATCH && sent + (frames.len() as u64) < count {
                match running.records.try_recv() {
                    Ok(r) => frames.push(WireFrame::from_record(&r)),
                    Err(_) => break,
                }
            }
        }
        if frames.is_empty() && last.elapsed() < HEARTBEAT {
            continue;
        }
        sent += frames.len() as u64;
        send(
            &Line {
                frames,
                counts: session.counts(),
                sent,
                ..Default::default()
            },
            true,
        )?;
        last = Instant::now();
    }
    drop(running);
    send(
        &Line {
            counts: session.counts(),
            sent,
            ..Default::default()
        },
        false,
    )
}

//! The sync protocol's messages (issue 12): their layout, versioning, authentication and replay
//! protection. Documented for operators in `sync/PROTOCOL.md`; this is the code that must agree
//! with it.
//!
//! A message is one UDP datagram:
//!
//! ```text
//!  0..4   magic "GWSY"
//!  4      version (1)
//!  5      kind: 0 records, 1 hello, 2 resync request, 3 resync done, 4 IPv6 records
//!  6..8   count: records that follow (0 for the other kinds)
//!  8..12  sender: the sending box's id
//! 12..20  sequence number, per sender, strictly increasing (a restarted sender starts above the
//!         time in ms since the epoch, so it never repeats an old one)
//! 20..    body: `count` records of RECORD_LEN bytes (RECORD6_LEN for IPv6 connections), a hello's
//!         layout, a resync request's wait number, or a resync done's wait number and total
//! last 16 bytes: HMAC-SHA-256 over everything before, truncated to 128 bits (RFC 2104, RFC 4868 2.6)
//! ```
//!
//! A receiver checks, in this order: the length, the MAC (with the shared key, in constant time),
//! the magic and version, then the sequence number against the last one accepted from that sender
//! (an older or equal one is a replay), then the body's length against the kind and count. Each
//! refusal has its own counter. Nothing is installed from a message that fails any check.

use crate::conn::record::{ConnRecord, RecordKind, SeqAdj};
use crate::forward::synproxy::MAX_WSCALE;
use crate::wire::field::{be16, be32, ipv4};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

pub const MAGIC: [u8; 4] = *b"GWSY";
pub const VERSION: u8 = 1;

mod field {
    use core::ops::Range;
    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION: usize = 4;
    pub const KIND: usize = 5;
    pub const COUNT: Range<usize> = 6..8;
    pub const SENDER: Range<usize> = 8..12;
    pub const SEQ: Range<usize> = 12..20;
    pub const BODY: usize = 20;

    /// Within a record.
    pub mod rec {
        use core::ops::Range;
        pub const KIND: usize = 0;
        pub const PROTO: usize = 1;
        pub const MODE: usize = 2;
        pub const STATE: usize = 3;
        pub const CIP: Range<usize> = 4..8;
        pub const CPORT: Range<usize> = 8..10;
        pub const VPORT: Range<usize> = 10..12;
        pub const VIP: Range<usize> = 12..16;
        pub const RIP: Range<usize> = 16..20;
        pub const LIP: Range<usize> = 20..24;
        pub const RPORT: Range<usize> = 24..26;
        pub const LPORT: Range<usize> = 26..28;
        pub const REMAINING: Range<usize> = 28..32;
    }

    /// Within an IPv6 connection's record (its first four bytes as an IPv4 one's). A NAT64
    /// connection's IPv4 real server and local address are IPv4-mapped (RFC 4291 2.5.5.2).
    pub mod rec6 {
        use core::ops::Range;
        pub const CIP: Range<usize> = 4..20;
        pub const CPORT: Range<usize> = 20..22;
        pub const VPORT: Range<usize> = 22..24;
        pub const VIP: Range<usize> = 24..40;
        pub const RIP: Range<usize> = 40..56;
        pub const LIP: Range<usize> = 56..72;
        pub const RPORT: Range<usize> = 72..74;
        pub const LPORT: Range<usize> = 74..76;
        pub const REMAINING: Range<usize> = 76..80;
    }

    /// Where a translation record (kind 3) holds the SYN proxy's shifts, in either layout: the
    /// sequence and timestamp shifts (32 bits each), then the server's window scale and ours (a
    /// byte each); the client's window shift is in the state's byte.
    pub struct Shift {
        pub seq: Range<usize>,
        pub ts: Range<usize>,
        pub ws: usize,
    }

    /// In an IPv4 record: the real server's address, the time left, the real server's port.
    pub const SHIFT: Shift = Shift {
        seq: rec::RIP,
        ts: rec::REMAINING,
        ws: rec::RPORT.start,
    };

    /// In an IPv6 record: the real server's address's place.
    pub const SHIFT6: Shift = Shift {
        seq: 40..44,
        ts: 44..48,
        ws: 48,
    };

    /// A hello's body.
    pub mod hello {
        use core::ops::Range;
        pub const WORKERS: Range<usize> = 0..2;
        pub const PORT_FIRST: Range<usize> = 2..4;
        pub const PORT_LAST: Range<usize> = 4..6;
        pub const STEERING: usize = 6;
        pub const RSS_KEY: Range<usize> = 8..16;
    }

    /// A resync request's body.
    pub mod request {
        use core::ops::Range;
        /// The backup's number for this wait: a new one each time it starts waiting, the same
        /// when it asks again.
        pub const WAIT: Range<usize> = 0..4;
    }

    /// A resync done's body.
    pub mod done {
        use core::ops::Range;
        /// The wait number of the request whose resync this ends.
        pub const WAIT: Range<usize> = 0..4;
        /// The records the master sent during the resync, this message excluded.
        pub const RECORDS: Range<usize> = 4..8;
    }
}

pub const HEADER_LEN: usize = field::BODY;
pub const MAC_LEN: usize = 16;
pub const RECORD_LEN: usize = 32;
pub const RECORD6_LEN: usize = 80;
pub const HELLO_LEN: usize = 16;
pub const REQUEST_LEN: usize = 4;
pub const DONE_LEN: usize = 8;
/// Records per message: what fits a 1500-byte MTU with IPv4 and UDP headers.
pub const MAX_RECORDS: usize = (1500 - 28 - HEADER_LEN - MAC_LEN) / RECORD_LEN;
/// IPv6 records per message, the same way (the sync socket is IPv4).
pub const MAX_RECORDS6: usize = (1500 - 28 - HEADER_LEN - MAC_LEN) / RECORD6_LEN;

/// What a message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsgKind {
    Records,
    Hello,
    /// A backup that starts (or restarts) asks for every connection.
    ResyncRequest,
    /// The answer's end: every connection the sender held when asked has been sent (none, from
    /// a box that is not the master).
    ResyncDone,
    /// Records of IPv6 connections (and templates), in their longer layout.
    Records6,
}

impl MsgKind {
    fn code(self) -> u8 {
        match self {
            MsgKind::Records => 0,
            MsgKind::Hello => 1,
            MsgKind::ResyncRequest => 2,
            MsgKind::ResyncDone => 3,
            MsgKind::Records6 => 4,
        }
    }

    fn from_code(c: u8) -> Option<MsgKind> {
        match c {
            0 => Some(MsgKind::Records),
            1 => Some(MsgKind::Hello),
            2 => Some(MsgKind::ResyncRequest),
            3 => Some(MsgKind::ResyncDone),
            4 => Some(MsgKind::Records6),
            _ => None,
        }
    }
}

/// What both boxes must share for a synced connection to be served where it lands: the worker
/// count, the local-port layout and the RSS key (as a hash) that steers replies to workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    pub workers: u16,
    pub ports: (u16, u16),
    /// 0: partition steering, 1: RSS.
    pub steering: u8,
    pub rss_key_hash: u64,
}

/// Why a received message was refused (each is counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refused {
    #[error("shorter than a header and MAC")]
    Truncated,
    #[error("MAC does not verify (another key, or altered)")]
    BadMac,
    #[error("not a sync message, or another version")]
    BadVersion,
    #[error("sequence number not above the last accepted from this sender (a replay)")]
    Replay,
    #[error("body length does not match its kind and count")]
    BadLength,
    #[error("a record of unknown kind")]
    BadRecord,
    #[error("the peer's layout differs: workers, ports, steering or RSS key")]
    LayoutMismatch,
}

/// Writes sync messages with the shared key.
pub struct Sealer {
    key: Vec<u8>,
    sender: u32,
    seq: u64,
}

impl Sealer {
    /// `first_seq`: above every sequence number this sender used before (e.g. the time in ms).
    pub fn new(key: &[u8], sender: u32, first_seq: u64) -> Sealer {
        Sealer {
            key: key.to_vec(),
            sender,
            seq: first_seq,
        }
    }

    fn seal(&mut self, kind: MsgKind, count: usize, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(HEADER_LEN + body.len() + MAC_LEN);
        m.extend_from_slice(&MAGIC);
        m.push(VERSION);
        m.push(kind.code());
        m.extend_from_slice(&(count as u16).to_be_bytes());
        m.extend_from_slice(&self.sender.to_be_bytes());
        m.extend_from_slice(&self.seq.to_be_bytes());
        self.seq += 1;
        m.extend_from_slice(body);
        let tag = mac(&self.key, &m);
        m.extend_from_slice(&tag);
        m
    }

    /// Messages of at most [`MAX_RECORDS`] IPv4 records each, then of at most
    /// [`MAX_RECORDS6`] IPv6 ones ([`message_len`]). A record's translation and template follow
    /// it in the same family's order.
    pub fn records(&mut self, recs: &[ConnRecord]) -> Vec<Vec<u8>> {
        let (v6, v4): (Vec<&ConnRecord>, Vec<&ConnRecord>) = recs.iter().partition(|r| r.is_ipv6());
        let mut out = Vec::new();
        self.seal_family(&v4, MsgKind::Records, MAX_RECORDS, &mut out, |r, b| {
            b.extend_from_slice(&encode_record(r))
        });
        self.seal_family(&v6, MsgKind::Records6, MAX_RECORDS6, &mut out, |r, b| {
            b.extend_from_slice(&encode_record6(r))
        });
        out
    }

    /// `recs`, of one family, in messages of `kind` of at most `max` records each
    /// ([`message_len`]), each record written by `encode`, appended to `out`.
    fn seal_family(
        &mut self,
        recs: &[&ConnRecord],
        kind: MsgKind,
        max: usize,
        out: &mut Vec<Vec<u8>>,
        encode: impl Fn(&ConnRecord, &mut Vec<u8>),
    ) {
        let mut rest = recs;
        while !rest.is_empty() {
            let (chunk, more) = rest.split_at(message_len(rest, max));
            let mut body = Vec::new();
            for r in chunk {
                encode(r, &mut body);
            }
            out.push(self.seal(kind, chunk.len(), &body));
            rest = more;
        }
    }

    pub fn hello(&mut self, l: &Layout) -> Vec<u8> {
        let mut b = [0u8; HELLO_LEN];
        b[field::hello::WORKERS].copy_from_slice(&l.workers.to_be_bytes());
        b[field::hello::PORT_FIRST].copy_from_slice(&l.ports.0.to_be_bytes());
        b[field::hello::PORT_LAST].copy_from_slice(&l.ports.1.to_be_bytes());
        b[field::hello::STEERING] = l.steering;
        b[field::hello::RSS_KEY].copy_from_slice(&l.rss_key_hash.to_be_bytes());
        self.seal(MsgKind::Hello, 0, &b)
    }

    /// A request for everything, in the backup's wait `wait`.
    pub fn resync_request(&mut self, wait: u32) -> Vec<u8> {
        self.seal(MsgKind::ResyncRequest, 0, &wait.to_be_bytes())
    }

    /// The end of the full resync that answered wait `wait`: `records` sent (0: nothing to
    /// send, not the master).
    pub fn resync_done(&mut self, wait: u32, records: u32) -> Vec<u8> {
        let mut b = [0u8; DONE_LEN];
        b[field::done::WAIT].copy_from_slice(&wait.to_be_bytes());
        b[field::done::RECORDS].copy_from_slice(&records.to_be_bytes());
        self.seal(MsgKind::ResyncDone, 0, &b)
    }
}

pub(crate) fn mac(key: &[u8], data: &[u8]) -> [u8; MAC_LEN] {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    let full = m.finalize().into_bytes();
    let mut t = [0u8; MAC_LEN];
    t.copy_from_slice(&full[..MAC_LEN]);
    t
}

/// The first four bytes of a record, either layout.
fn encode_head(r: &ConnRecord, b: &mut [u8]) {
    use field::rec;
    b[rec::KIND] = match r.kind {
        RecordKind::Conn => 1,
        RecordKind::Template => 2,
        RecordKind::Translation(_) => TRANSLATION,
    };
    b[rec::PROTO] = r.proto;
    b[rec::MODE] = r.mode;
    b[rec::STATE] = r.state;
}

/// How many of `recs` (records of one family, in order) the next message takes: at most `max`,
/// and never a connection's record without the translation record that follows it. The backup
/// applies a translation to the connection installed from the record just before it, and its
/// workers take messages in any order.
pub fn message_len<R: std::borrow::Borrow<ConnRecord>>(recs: &[R], max: usize) -> usize {
    let n = recs.len().min(max);
    let splits_a_pair = recs
        .get(n)
        .is_some_and(|r| matches!(r.borrow().kind, RecordKind::Translation(_)));
    if splits_a_pair && n > 1 {
        n - 1
    } else {
        n
    }
}

/// The kind byte of a translation record.
const TRANSLATION: u8 = 3;

/// Where a translation record's shifts are (`field::SHIFT` for the IPv4 layout,
/// `field::SHIFT6` for the IPv6 one): in the real server's fields, which it does not use, and the client's window shift
/// in the state's byte.
fn encode_shift(r: &ConnRecord, b: &mut [u8], f: &field::Shift) {
    if let RecordKind::Translation(adj) = r.kind {
        b[f.seq.clone()].copy_from_slice(&adj.seq.to_be_bytes());
        b[f.ts.clone()].copy_from_slice(&adj.ts.to_be_bytes());
        b[f.ws] = adj.server_ws;
        b[f.ws + 1] = adj.our_ws;
        b[field::rec::STATE] = adj.client_shift;
    }
}

/// A record's kind from its first byte, with a translation record's shifts (`f`: where they
/// are).
fn decode_kind(b: &[u8], f: &field::Shift) -> Result<RecordKind, Refused> {
    match b[field::rec::KIND] {
        1 => Ok(RecordKind::Conn),
        2 => Ok(RecordKind::Template),
        // Window scales above RFC 7323's 14 are no peer's: the shifts would overflow.
        TRANSLATION
            if [b[f.ws], b[f.ws + 1], b[field::rec::STATE]]
                .iter()
                .all(|&w| w <= MAX_WSCALE) =>
        {
            Ok(RecordKind::Translation(SeqAdj {
                seq: be32(b, f.seq.clone()),
                ts: be32(b, f.ts.clone()),
                server_ws: b[f.ws],
                our_ws: b[f.ws + 1],
                client_shift: b[field::rec::STATE],
            }))
        }
        _ => Err(Refused::BadRecord),
    }
}

/// What a decoded translation record holds besides its shifts: no real server, state or time.
fn without_real(mut r: ConnRecord) -> ConnRecord {
    if let RecordKind::Translation(adj) = r.kind {
        r = ConnRecord::translation(&r, adj);
    }
    r
}

/// An IPv4 address's octets (an IPv6 one's in an IPv4 record cannot be: `Sealer::records`
/// sends IPv6 records in their own layout).
fn octets4(a: IpAddr) -> [u8; 4] {
    match a {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => [0; 4],
    }
}

/// An address as an IPv6 record holds it: IPv4 ones mapped.
fn octets6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

fn encode_record(r: &ConnRecord) -> [u8; RECORD_LEN] {
    use field::rec;
    let mut b = [0u8; RECORD_LEN];
    encode_head(r, &mut b);
    b[rec::CIP].copy_from_slice(&octets4(r.client.0));
    b[rec::CPORT].copy_from_slice(&r.client.1.to_be_bytes());
    b[rec::VIP].copy_from_slice(&octets4(r.vip.0));
    b[rec::VPORT].copy_from_slice(&r.vip.1.to_be_bytes());
    b[rec::RIP].copy_from_slice(&octets4(r.real.0));
    b[rec::RPORT].copy_from_slice(&r.real.1.to_be_bytes());
    b[rec::LIP].copy_from_slice(&octets4(r.local.0));
    b[rec::LPORT].copy_from_slice(&r.local.1.to_be_bytes());
    b[rec::REMAINING].copy_from_slice(&r.remaining_ms.to_be_bytes());
    encode_shift(r, &mut b, &field::SHIFT);
    b
}

fn encode_record6(r: &ConnRecord) -> [u8; RECORD6_LEN] {
    use field::rec6;
    let mut b = [0u8; RECORD6_LEN];
    encode_head(r, &mut b);
    b[rec6::CIP].copy_from_slice(&octets6(r.client.0));
    b[rec6::CPORT].copy_from_slice(&r.client.1.to_be_bytes());
    b[rec6::VIP].copy_from_slice(&octets6(r.vip.0));
    b[rec6::VPORT].copy_from_slice(&r.vip.1.to_be_bytes());
    b[rec6::RIP].copy_from_slice(&octets6(r.real.0));
    b[rec6::RPORT].copy_from_slice(&r.real.1.to_be_bytes());
    b[rec6::LIP].copy_from_slice(&octets6(r.local.0));
    b[rec6::LPORT].copy_from_slice(&r.local.1.to_be_bytes());
    b[rec6::REMAINING].copy_from_slice(&r.remaining_ms.to_be_bytes());
    encode_shift(r, &mut b, &field::SHIFT6);
    b
}

/// A record's decoder, for its layout.
type DecodeRecord = fn(&[u8]) -> Result<ConnRecord, Refused>;

fn decode_record(b: &[u8]) -> Result<ConnRecord, Refused> {
    use field::rec;
    Ok(without_real(ConnRecord {
        kind: decode_kind(b, &field::SHIFT)?,
        proto: b[rec::PROTO],
        mode: b[rec::MODE],
        state: b[rec::STATE],
        client: (ipv4(b, rec::CIP).into(), be16(b, rec::CPORT)),
        vip: (ipv4(b, rec::VIP).into(), be16(b, rec::VPORT)),
        real: (ipv4(b, rec::RIP).into(), be16(b, rec::RPORT)),
        local: (ipv4(b, rec::LIP).into(), be16(b, rec::LPORT)),
        remaining_ms: be32(b, rec::REMAINING),
    }))
}

fn decode_record6(b: &[u8]) -> Result<ConnRecord, Refused> {
    use field::{rec, rec6};
    let v6 =
        |r: core::ops::Range<usize>| Ipv6Addr::from(<[u8; 16]>::try_from(&b[r]).expect("16 bytes"));
    // The client and the VIP are IPv6; the real server and the local address IPv4-mapped for
    // NAT64.
    let either = |r| {
        let a = v6(r);
        a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4)
    };
    Ok(without_real(ConnRecord {
        kind: decode_kind(b, &field::SHIFT6)?,
        proto: b[rec::PROTO],
        mode: b[rec::MODE],
        state: b[rec::STATE],
        client: (v6(rec6::CIP).into(), be16(b, rec6::CPORT)),
        vip: (v6(rec6::VIP).into(), be16(b, rec6::VPORT)),
        real: (either(rec6::RIP), be16(b, rec6::RPORT)),
        local: (either(rec6::LIP), be16(b, rec6::LPORT)),
        remaining_ms: be32(b, rec6::REMAINING),
    }))
}

/// A message that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Records {
        sender: u32,
        records: Vec<ConnRecord>,
    },
    Hello {
        sender: u32,
        layout: Layout,
    },
    ResyncRequest {
        sender: u32,
        wait: u32,
    },
    ResyncDone {
        sender: u32,
        wait: u32,
        records: u32,
    },
}

/// Counters of a receiver, by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    pub accepted: u64,
    pub records: u64,
    pub truncated: u64,
    pub bad_mac: u64,
    pub bad_version: u64,
    pub replay: u64,
    pub bad_length: u64,
    pub bad_record: u64,
    /// Messages that never arrived: the gaps in a sender's sequence numbers (a jump of more than
    /// [`RESTART_GAP`] is the sender restarting, not a loss).
    pub lost: u64,
}

/// A jump in a sender's sequence numbers beyond this is a restart (it starts above the time in
/// ms), not lost messages.
pub const RESTART_GAP: u64 = 1 << 20;

/// Checks received messages with the shared key, remembering each sender's last sequence number.
pub struct Opener {
    key: Vec<u8>,
    last_seq: HashMap<u32, u64>,
    pub stats: ReceiverStats,
}

impl Opener {
    pub fn new(key: &[u8]) -> Opener {
        Opener {
            key: key.to_vec(),
            last_seq: HashMap::new(),
            stats: ReceiverStats::default(),
        }
    }

    /// Checks `m` and returns what it carries, counting the outcome.
    pub fn open(&mut self, m: &[u8]) -> Result<Message, Refused> {
        let r = self.check(m);
        let s = &mut self.stats;
        match &r {
            Ok(msg) => {
                s.accepted += 1;
                if let Message::Records { records, .. } = msg {
                    s.records += records.len() as u64;
                }
            }
            Err(Refused::Truncated) => s.truncated += 1,
            Err(Refused::BadMac) => s.bad_mac += 1,
            Err(Refused::BadVersion) => s.bad_version += 1,
            Err(Refused::Replay) => s.replay += 1,
            Err(Refused::BadLength) => s.bad_length += 1,
            Err(Refused::BadRecord) => s.bad_record += 1,
            Err(Refused::LayoutMismatch) => {}
        }
        r
    }

    fn check(&mut self, m: &[u8]) -> Result<Message, Refused> {
        if m.len() < HEADER_LEN + MAC_LEN {
            return Err(Refused::Truncated);
        }
        let (data, tag) = m.split_at(m.len() - MAC_LEN);
        let mut h = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        h.update(data);
        h.verify_truncated_left(tag).map_err(|_| Refused::BadMac)?;
        if data[field::MAGIC] != MAGIC || data[field::VERSION] != VERSION {
            return Err(Refused::BadVersion);
        }
        let kind = MsgKind::from_code(data[field::KIND]).ok_or(Refused::BadVersion)?;
        let sender = u32::from_be_bytes(data[field::SENDER].try_into().expect("4 bytes"));
        let seq = u64::from_be_bytes(data[field::SEQ].try_into().expect("8 bytes"));
        if self.last_seq.get(&sender).is_some_and(|&last| seq <= last) {
            return Err(Refused::Replay);
        }
        let count = usize::from(be16(data, field::COUNT));
        let body = &data[field::BODY..];
        let msg = match kind {
            MsgKind::Records | MsgKind::Records6 => {
                let (len, decode): (usize, DecodeRecord) = match kind {
                    MsgKind::Records => (RECORD_LEN, decode_record),
                    _ => (RECORD6_LEN, decode_record6),
                };
                if body.len() != count * len {
                    return Err(Refused::BadLength);
                }
                let records = body
                    .chunks_exact(len)
                    .map(decode)
                    .collect::<Result<Vec<_>, _>>()?;
                Message::Records { sender, records }
            }
            MsgKind::Hello => {
                if body.len() != HELLO_LEN || count != 0 {
                    return Err(Refused::BadLength);
                }
                use field::hello;
                Message::Hello {
                    sender,
                    layout: Layout {
                        workers: be16(body, hello::WORKERS),
                        ports: (be16(body, hello::PORT_FIRST), be16(body, hello::PORT_LAST)),
                        steering: body[hello::STEERING],
                        rss_key_hash: u64::from_be_bytes(
                            body[hello::RSS_KEY].try_into().expect("8 bytes"),
                        ),
                    },
                }
            }
            MsgKind::ResyncRequest => {
                // Without a body: a sender from before wait numbers (wait 0).
                let wait = match body.len() {
                    0 => 0,
                    REQUEST_LEN => be32(body, field::request::WAIT),
                    _ => return Err(Refused::BadLength),
                };
                if count != 0 {
                    return Err(Refused::BadLength);
                }
                Message::ResyncRequest { sender, wait }
            }
            MsgKind::ResyncDone => {
                if body.len() != DONE_LEN || count != 0 {
                    return Err(Refused::BadLength);
                }
                Message::ResyncDone {
                    sender,
                    wait: be32(body, field::done::WAIT),
                    records: be32(body, field::done::RECORDS),
                }
            }
        };
        // Only now: a message refused for its body does not advance the sender's sequence.
        if let Some(last) = self.last_seq.insert(sender, seq) {
            let gap = seq - last - 1;
            if gap < RESTART_GAP {
                self.stats.lost += gap;
            }
        }
        Ok(msg)
    }
}

/// Whether a peer's layout lets it serve this box's connections (and the other way round).
pub fn check_layout(ours: &Layout, theirs: &Layout) -> Result<(), Refused> {
    if ours == theirs {
        Ok(())
    } else {
        Err(Refused::LayoutMismatch)
    }
}

#[cfg(test)]
mod tests;

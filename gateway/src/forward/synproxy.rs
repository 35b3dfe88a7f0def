//! SYN proxy (`[[service]] synproxy`): the gateway answers a client's SYN itself with a SYN cookie
//! and keeps no state until the client's ACK proves its address, as Linux's syncookies do
//! (net/ipv4/syncookies.c) and as Alibaba's LVS and DPVS do in front of their real servers. Only
//! then is a connection created and a SYN sent to the real server; from the server's SYN-ACK on,
//! its sequence numbers and timestamps are shifted into the space the client was given (and its
//! window rescaled when its window scale differs from the one we announced), and the client's
//! acknowledgements, SACK blocks and timestamp echoes are shifted back.
//!
//! This module is the DPDK-free part: the cookie, the options it carries, the segments the proxy
//! writes and the per-packet translation, for both families. [`super::fullnat`] drives it for
//! IPv4 and `inet6::proxied` for IPv6; the operator's view is in conf/README.md (`synproxy`,
//! `[synproxy]`). Auto mode is per worker and for both families: a worker's half-open
//! connections of either family at the threshold turn it on for both.
//!
//! The cookie is Linux's (RFC 4987 3.6): the ISN of our SYN-ACK is
//! `H0(tuple) + client ISN + (slice << 24) + ((H1(tuple, slice) + mss index) mod 2^24)`, with H0 and
//! H1 keyed SipHash-2-4 and a slice of 64 s; an ACK proves the cookie if `ack - 1`, taken apart the
//! same way, names the current or the previous slice and an MSS index that exists. A forged ACK
//! passes with probability 4/2^24 per try, and only from an address that gets our SYN-ACKs, as for
//! Linux. The client's window scale and SACK-permitted ride in the low 6 bits of our timestamp
//! (Linux's `cookie_init_timestamp`), so they survive only where the client offered timestamps;
//! without them the SYN-ACK offers neither (Linux does the same).

use crate::conn::{Tuple, Tuple6};
use crate::wire::checksum::{self, Delta};
use crate::wire::tcp::{self, RawOptions};
use crate::wire::{ipv4, ipv6, IpProtocol, Ipv4Repr, TcpFlags, TcpOption, TcpPacket};
use std::hash::Hasher;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Per service: whether SYNs are answered with cookies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    #[default]
    Off,
    /// Every SYN.
    On,
    /// While the worker holds `[synproxy] auto_half_open` half-open connections or more (and for
    /// `AUTO_HOLD_MS` after).
    Auto,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "off" => Ok(Mode::Off),
            "on" => Ok(Mode::On),
            "auto" => Ok(Mode::Auto),
            _ => Err(format!("{s:?} is not off, on or auto")),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Off => "off",
            Mode::On => "on",
            Mode::Auto => "auto",
        })
    }
}

/// Linux's MSS values for IPv4 cookies (`msstab` in net/ipv4/syncookies.c): the cookie carries the
/// index of the largest one not above the client's MSS.
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];
/// Linux's MSS values for IPv6 cookies (`msstab` in net/ipv6/syncookies.c): IPv6's least MTU
/// (RFC 8200 5), 1480, 1500 and 9000, less 60 bytes of headers.
pub const MSS_TABLE6: [u16; 4] = [1220, 1420, 1440, 8940];
const COOKIE_BITS: u32 = 24;
const COOKIE_MASK: u32 = (1 << COOKIE_BITS) - 1;
/// Seconds per cookie slice (Linux: 60, `tcp_cookie_time`).
pub const SLICE_S: u64 = 64;
/// A cookie is good in its own slice and the next one (Linux's `MAX_SYNCOOKIE_AGE`).
const MAX_AGE: u32 = 2;
/// Low bits of our TSval that carry the client's options (Linux's `TSBITS`).
const TS_BITS: u32 = 6;
const TS_WSCALE_NONE: u32 = 0xF;
const TS_SACK: u32 = 1 << 4;
/// RFC 7323 2.3: shifts above 14 are taken as 14.
pub const MAX_WSCALE: u8 = 14;
/// Auto mode stays on this long after the half-open count was last at the threshold, so that
/// it does not flap while a flood goes on.
pub const AUTO_HOLD_MS: u64 = 10_000;

/// The keys of the two cookie hashes; one per gateway, shared by its workers.
#[derive(Clone, Copy)]
pub struct CookieKey([u64; 4]);

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

impl CookieKey {
    /// A fresh key from std's per-process random seed.
    pub fn random() -> CookieKey {
        let s = std::collections::hash_map::RandomState::new();
        use std::hash::BuildHasher;
        CookieKey([10u64, 11, 12, 13].map(|i| s.hash_one(i)))
    }

    pub fn from_words(k: [u64; 4]) -> CookieKey {
        CookieKey(k)
    }

    /// A key written as 64 hex digits (`[synproxy] key`).
    pub fn from_hex(s: &str) -> Result<CookieKey, String> {
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("must be 64 hex digits".into());
        }
        let mut k = [0u64; 4];
        for (i, w) in k.iter_mut().enumerate() {
            *w = u64::from_str_radix(&s[16 * i..16 * (i + 1)], 16).map_err(|e| e.to_string())?;
        }
        Ok(CookieKey(k))
    }

    fn hash<T: CookieTuple>(&self, which: usize, t: &T, slice: u32) -> u32 {
        let mut h =
            siphasher::sip::SipHasher24::new_with_keys(self.0[2 * which], self.0[2 * which + 1]);
        t.feed(&mut h);
        h.write_u32(slice);
        h.finish() as u32
    }

    /// The ISN for our SYN-ACK to the client of `t` (CIP:cport -> VIP:vport) whose SYN had
    /// sequence number `client_isn`, at `now_s` seconds, carrying MSS index `mss_index`.
    pub fn make<T: CookieTuple>(&self, t: &T, client_isn: u32, now_s: u64, mss_index: u8) -> u32 {
        let slice = (now_s / SLICE_S) as u32;
        self.hash(0, t, 0)
            .wrapping_add(client_isn)
            .wrapping_add(slice << COOKIE_BITS)
            .wrapping_add(self.hash(1, t, slice).wrapping_add(u32::from(mss_index)) & COOKIE_MASK)
    }

    /// The MSS index `cookie` carries, if it is one we made for `t` and `client_isn` in the
    /// current or the previous slice.
    pub fn check<T: CookieTuple>(
        &self,
        t: &T,
        client_isn: u32,
        cookie: u32,
        now_s: u64,
    ) -> Option<u8> {
        let slice = (now_s / SLICE_S) as u32;
        let c = cookie.wrapping_sub(self.hash(0, t, 0).wrapping_add(client_isn));
        let age = slice.wrapping_sub(c >> COOKIE_BITS) & (u32::MAX >> COOKIE_BITS);
        if age >= MAX_AGE {
            return None;
        }
        let data = c.wrapping_sub(self.hash(1, t, slice.wrapping_sub(age))) & COOKIE_MASK;
        (data < T::MSS_TABLE.len() as u32).then_some(data as u8)
    }
}

/// What a cookie is made for: a client's tuple (CIP:cport -> VIP:vport) of either family, and
/// the MSS values its family's cookies carry.
pub trait CookieTuple {
    const MSS_TABLE: [u16; 4];
    /// Writes the addresses and ports into a cookie hash.
    fn feed(&self, h: &mut impl Hasher);
}

impl CookieTuple for Tuple {
    const MSS_TABLE: [u16; 4] = MSS_TABLE;
    fn feed(&self, h: &mut impl Hasher) {
        h.write_u32(self.src);
        h.write_u32(self.dst);
        h.write_u16(self.sport);
        h.write_u16(self.dport);
    }
}

impl CookieTuple for Tuple6 {
    const MSS_TABLE: [u16; 4] = MSS_TABLE6;
    fn feed(&self, h: &mut impl Hasher) {
        h.write(&self.src);
        h.write(&self.dst);
        h.write_u16(self.sport);
        h.write_u16(self.dport);
    }
}

/// The options of a client's SYN that matter to the proxy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynOptions {
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack: bool,
    pub tsval: Option<u32>,
}

impl SynOptions {
    /// Reads them from a TCP header; a malformed option ends the walk (what was read counts).
    pub fn parse(seg: &[u8]) -> SynOptions {
        let mut o = SynOptions::default();
        let t = TcpPacket::new_unchecked(seg);
        for opt in t.option_iter() {
            match opt {
                Ok(TcpOption::Mss(m)) => o.mss = Some(m),
                Ok(TcpOption::WindowScale(w)) => o.wscale = Some(w.min(MAX_WSCALE)),
                Ok(TcpOption::SackPermitted) => o.sack = true,
                Ok(TcpOption::Timestamps { tsval, .. }) => o.tsval = Some(tsval),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        o
    }

    /// Index into [`MSS_TABLE`] of the largest MSS not above the client's (536 without one,
    /// RFC 9293 3.7.1).
    pub fn mss_index(&self) -> u8 {
        self.mss_index_in(&MSS_TABLE)
    }

    /// The same for the family whose MSS values are `table` (IPv6's [`MSS_TABLE6`]).
    pub fn mss_index_in(&self, table: &[u16; 4]) -> u8 {
        let mss = self.mss.unwrap_or(536);
        table.iter().rposition(|&m| m <= mss).unwrap_or(0) as u8
    }
}

/// Our TSval for the SYN-ACK: the clock with its low bits replaced by the client's window scale
/// and SACK-permitted, never ahead of the clock (Linux's `cookie_init_timestamp`).
pub fn encode_ts(now_ms: u64, wscale: Option<u8>, sack: bool) -> u32 {
    let now = now_ms as u32;
    let mut opts = wscale.map_or(TS_WSCALE_NONE, |w| u32::from(w.min(MAX_WSCALE)));
    if sack {
        opts |= TS_SACK;
    }
    let ts = (now >> TS_BITS << TS_BITS) | opts;
    if ts > now {
        ts.wrapping_sub(1 << TS_BITS)
    } else {
        ts
    }
}

/// What the client's SYN had, as a valid cookie ACK tells it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientSyn {
    /// The client's ISN.
    pub isn: u32,
    pub mss: u16,
    pub wscale: Option<u8>,
    pub sack: bool,
    /// Timestamps were negotiated: the echo of our TSval (the ACK's TSecr) and the client's TSval.
    pub ts: Option<(u32, u32)>,
}

/// Checks a client's ACK (`seq`, `ack`, and its timestamps if any) against the cookie we would
/// have sent for `t`: what its SYN offered, or `None` if it is not an answer to one of ours.
pub fn validate<T: CookieTuple>(
    key: &CookieKey,
    t: &T,
    seq: u32,
    ack: u32,
    ts: Option<(u32, u32)>,
    now_s: u64,
) -> Option<ClientSyn> {
    let isn = seq.wrapping_sub(1);
    let mss_index = key.check(t, isn, ack.wrapping_sub(1), now_s)?;
    let mut syn = ClientSyn {
        isn,
        mss: T::MSS_TABLE[usize::from(mss_index)],
        ..Default::default()
    };
    if let Some((tsval, tsecr)) = ts {
        let opts = tsecr & ((1 << TS_BITS) - 1);
        let ws = opts & TS_WSCALE_NONE;
        if ws != TS_WSCALE_NONE {
            if ws > u32::from(MAX_WSCALE) {
                return None;
            }
            syn.wscale = Some(ws as u8);
        }
        syn.sack = opts & TS_SACK != 0;
        syn.ts = Some((tsecr, tsval));
    }
    Some(syn)
}

/// The timestamps option of a segment, if any: (TSval, TSecr).
pub fn timestamps(seg: &[u8]) -> Option<(u32, u32)> {
    TcpPacket::new_unchecked(seg)
        .option_iter()
        .map_while(Result::ok)
        .find_map(|o| match o {
            TcpOption::Timestamps { tsval, tsecr } => Some((tsval, tsecr)),
            _ => None,
        })
}

/// The window scale option of a segment, if any.
pub fn window_scale(seg: &[u8]) -> Option<u8> {
    TcpPacket::new_unchecked(seg)
        .option_iter()
        .map_while(Result::ok)
        .find_map(|o| match o {
            TcpOption::WindowScale(w) => Some(w.min(MAX_WSCALE)),
            _ => None,
        })
}

/// A segment the proxy writes: its SYN-ACK to the client, its SYN to the real server and the ACK
/// that completes the server's handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<A = Ipv4Addr> {
    pub src: (A, u16),
    pub dst: (A, u16),
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    pub ts: Option<(u32, u32)>,
}

impl<A> Segment<A> {
    /// Bytes of options, in Linux's layout: MSS; SACK-permitted and timestamps (NOP-padded);
    /// NOP and window scale.
    /// TCP header length with the options.
    pub fn header_len(&self) -> usize {
        tcp::HEADER_LEN + self.options_len()
    }

    fn options_len(&self) -> usize {
        let mut n = if self.mss.is_some() { 4 } else { 0 };
        n += match (self.sack_permitted, self.ts.is_some()) {
            (_, true) => 12,
            (true, false) => 4,
            (false, false) => 0,
        };
        n + if self.wscale.is_some() { 4 } else { 0 }
    }

    /// Writes the TCP header with its options at the start of `seg` (`hl` bytes long, the
    /// payload after it), its checksum field zeroed.
    fn write_tcp(&self, seg: &mut [u8], hl: usize) {
        let o = &mut seg[tcp::HEADER_LEN..hl];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            o[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        if let Some(m) = self.mss {
            let m = m.to_be_bytes();
            put(&[tcp::kind::MSS, 4, m[0], m[1]]);
        }
        match (self.sack_permitted, self.ts) {
            (sack, Some((tsval, tsecr))) => {
                put(&if sack {
                    [tcp::kind::SACK_PERMITTED, 2]
                } else {
                    [tcp::kind::NOP, tcp::kind::NOP]
                });
                put(&[tcp::kind::TIMESTAMPS, 10]);
                put(&tsval.to_be_bytes());
                put(&tsecr.to_be_bytes());
            }
            (true, None) => put(&[tcp::kind::NOP, tcp::kind::NOP, tcp::kind::SACK_PERMITTED, 2]),
            (false, None) => {}
        }
        if let Some(w) = self.wscale {
            put(&[tcp::kind::NOP, tcp::kind::WINDOW_SCALE, 3, w]);
        }
        let mut t = TcpPacket::new_unchecked(&mut *seg);
        t.set_src_port(self.src.1);
        t.set_dst_port(self.dst.1);
        t.set_seq(self.seq);
        t.set_ack_number(self.ack);
        t.set_data_offset((hl / 4) as u8);
        t.set_flags(self.flags);
        t.set_window(self.window);
        t.set_urgent(0);
        t.set_checksum(0);
    }
}

impl Segment<Ipv4Addr> {
    /// Writes the IPv4 packet (header, TCP header, `payload_len` bytes of payload already at their
    /// place after the header) at the start of `buf`, checksums included. The length written, or
    /// None if `buf` is too short.
    pub fn write(&self, buf: &mut [u8], payload_len: usize) -> Option<usize> {
        let hl = self.header_len();
        let seg_len = hl + payload_len;
        let len = ipv4::HEADER_LEN + seg_len;
        if buf.len() < len {
            return None;
        }
        let repr = Ipv4Repr {
            src: self.src.0,
            dst: self.dst.0,
            protocol: IpProtocol::TCP,
            payload_len: u16::try_from(seg_len).ok()?,
            ttl: Ipv4Repr::DEFAULT_TTL,
            ident: 0,
            dont_frag: true,
            dscp_ecn: 0,
        };
        repr.emit(buf).ok()?;
        let seg = &mut buf[ipv4::HEADER_LEN..len];
        self.write_tcp(seg, hl);
        TcpPacket::new_unchecked(seg).fill_checksum(self.src.0, self.dst.0);
        Some(len)
    }
}

impl Segment<Ipv6Addr> {
    /// [`Segment::write`] for IPv6: a 40-byte header without extension headers (hop limit 64),
    /// the TCP checksum over RFC 8200 8.1's pseudo-header.
    pub fn write6(&self, buf: &mut [u8], payload_len: usize) -> Option<usize> {
        let hl = self.header_len();
        let seg_len = hl + payload_len;
        let len = ipv6::HEADER_LEN + seg_len;
        if buf.len() < len {
            return None;
        }
        let (head, rest) = buf.split_at_mut(ipv6::HEADER_LEN);
        let mut ip = ipv6::Ipv6Packet::new_unchecked(head);
        ip.set_ver_tc_flow(0, 0);
        ip.set_payload_len(u16::try_from(seg_len).ok()?);
        ip.set_next_header(IpProtocol::TCP);
        ip.set_hop_limit(64);
        ip.set_src(self.src.0);
        ip.set_dst(self.dst.0);
        let seg = &mut rest[..seg_len];
        self.write_tcp(seg, hl);
        let sum = ipv6::l4_checksum(self.src.0, self.dst.0, IpProtocol::TCP, seg);
        TcpPacket::new_unchecked(seg).set_checksum(sum);
        Some(len)
    }
}

pub use crate::conn::record::SeqAdj;

/// Overwrites `new.len()` bytes at `at` of `seg`, adding the change to `d` over the enclosing
/// 16-bit-aligned region (an option may sit at an odd offset after a lone NOP).
fn patch(seg: &mut [u8], at: usize, new: &[u8], d: &mut Delta) {
    if at & 1 == 0 {
        // Word-aligned (the usual case): the old and new words themselves (RFC 1624).
        for (i, n) in new.chunks(2).enumerate() {
            let o = at + 2 * i;
            let old = u16::from_be_bytes([seg[o], *seg.get(o + 1).unwrap_or(&0)]);
            let new = u16::from_be_bytes([n[0], *n.get(1).unwrap_or(&0)]);
            *d = d.word(old, new);
        }
        seg[at..at + new.len()].copy_from_slice(new);
        return;
    }
    let lo = at & !1;
    let hi = ((at + new.len() + 1) & !1).min(seg.len());
    let old = checksum::fold(checksum::sum(&seg[lo..hi]));
    seg[at..at + new.len()].copy_from_slice(new);
    *d = d.word(old, checksum::fold(checksum::sum(&seg[lo..hi])));
}

/// Whether `seg` holds a TCP header whose data offset is at least 5 words and within it: the
/// callers' parsers checked it (IPv4's `parse_l3l4`, IPv6's `l4_of`); checked again here so that
/// no caller can make the translation slice out of bounds.
fn header_fits(seg: &[u8]) -> bool {
    seg.len() >= tcp::HEADER_LEN
        && (tcp::HEADER_LEN..=seg.len()).contains(&TcpPacket::new_unchecked(seg).header_len())
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Shifts a client's segment (`seg`: TCP header and payload, header length checked) for the
/// real server: acknowledgement, SACK edges and TSecr. Checksum patched (RFC 1624).
pub fn to_server(seg: &mut [u8], adj: &SeqAdj) {
    if !header_fits(seg) {
        return;
    }
    let mut d = Delta::new();
    let t = TcpPacket::new_unchecked(&*seg);
    let (hl, ack, has_ack) = (t.header_len(), t.ack_number(), t.ack());
    if has_ack {
        patch(seg, 8, &ack.wrapping_sub(adj.seq).to_be_bytes(), &mut d);
    }
    if adj.client_shift != 0 {
        let win = u32::from(TcpPacket::new_unchecked(&*seg).window()) << adj.client_shift;
        patch(
            seg,
            14,
            &(win.min(u32::from(u16::MAX)) as u16).to_be_bytes(),
            &mut d,
        );
    }
    let mut edits: [(usize, u32); 9] = [(0, 0); 9];
    let mut n = 0;
    for (off, kind, o) in RawOptions::new(&seg[tcp::HEADER_LEN..hl]).map_while(Result::ok) {
        let at = tcp::HEADER_LEN + off;
        match kind {
            tcp::kind::SACK if o.len() >= 10 => {
                for e in (2..o.len() - 3).step_by(4) {
                    if n < edits.len() {
                        edits[n] = (at + e, be32(&o[e..]).wrapping_sub(adj.seq));
                        n += 1;
                    }
                }
            }
            tcp::kind::TIMESTAMPS if o.len() == 10 && n < edits.len() => {
                edits[n] = (at + 6, be32(&o[6..]).wrapping_sub(adj.ts));
                n += 1;
            }
            _ => {}
        }
    }
    for &(at, v) in &edits[..n] {
        patch(seg, at, &v.to_be_bytes(), &mut d);
    }
    finish(seg, d);
}

/// Shifts a real server's segment for the client: sequence number, TSval, and the window when
/// the server scales it by another shift than the one we announced.
pub fn to_client(seg: &mut [u8], adj: &SeqAdj) {
    if !header_fits(seg) {
        return;
    }
    let mut d = Delta::new();
    let t = TcpPacket::new_unchecked(&*seg);
    let (hl, seq, win) = (t.header_len(), t.seq(), t.window());
    patch(seg, 4, &seq.wrapping_add(adj.seq).to_be_bytes(), &mut d);
    if adj.server_ws != adj.our_ws {
        let bytes = u64::from(win) << adj.server_ws;
        let w = (bytes >> adj.our_ws).min(u64::from(u16::MAX)) as u16;
        patch(seg, 14, &w.to_be_bytes(), &mut d);
    }
    let ts = RawOptions::new(&seg[tcp::HEADER_LEN..hl])
        .map_while(Result::ok)
        .find(|(_, k, o)| *k == tcp::kind::TIMESTAMPS && o.len() == 10)
        .map(|(off, _, o)| (tcp::HEADER_LEN + off, be32(&o[2..])));
    if let Some((at, tsval)) = ts {
        patch(
            seg,
            at + 2,
            &tsval.wrapping_add(adj.ts).to_be_bytes(),
            &mut d,
        );
    }
    finish(seg, d);
}

/// Shifts the TCP header an ICMP error quotes (`l4`: from the quote's TCP header to the end of
/// the quote, however short the error cut it) back into the sequence space of the side the
/// translated error goes to. An error from the client's side (`from_client`) quotes a server's
/// segment as the proxy shifted it for the client: its sequence number goes back into the
/// server's space. An error from the server's side quotes a client's segment shifted for the
/// server: its acknowledgement goes back into the client's space. The quoted TCP checksum, when
/// the quote holds it, follows the change (RFC 1624).
///
/// Linux ignores an error whose quoted sequence number is outside its send window (`tcp_v4_err`,
/// `tcp_v6_err`: `between(seq, snd_una, snd_nxt)`, counted as `OutOfWindowIcmps`): unshifted, a
/// client's fragmentation needed (RFC 1191) or packet too big (RFC 8201) about a server's data
/// would never reach the server's path MTU.
pub fn unshift_quote(l4: &mut [u8], adj: &SeqAdj, from_client: bool) {
    let mut d = Delta::new();
    if from_client {
        let Some(seq) = l4.get(4..8).map(be32) else {
            return;
        };
        patch(l4, 4, &seq.wrapping_sub(adj.seq).to_be_bytes(), &mut d);
    } else {
        // The acknowledgement counts only with ACK set, in the flags' byte that follows it.
        if !l4.get(13).is_some_and(|&f| TcpFlags(f).ack()) {
            return;
        }
        let ack = be32(&l4[8..12]);
        patch(l4, 8, &ack.wrapping_add(adj.seq).to_be_bytes(), &mut d);
    }
    if let Some(c) = l4.get_mut(16..18) {
        let old = u16::from_be_bytes([c[0], c[1]]);
        c.copy_from_slice(&d.apply(old).to_be_bytes());
    }
}

fn finish(seg: &mut [u8], d: Delta) {
    let mut t = TcpPacket::new_unchecked(seg);
    let c = d.apply(t.checksum());
    t.set_checksum(c);
}

pub use crate::counters::SynProxyStats;

/// `[synproxy]`: what the proxy announces to clients, and when auto mode turns on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynProxyConfig {
    /// MSS in our SYN-ACK (absent: the ports' smallest MTU minus 40; to an IPv6 client at most
    /// the MTU minus 60, its default).
    pub mss: Option<u16>,
    /// Window scale in our SYN-ACK, when the client offered scaling and timestamps (default 7,
    /// what Linux picks for its default buffers).
    pub wscale: u8,
    /// Auto mode: half-open connections on a worker at which its proxy turns on.
    pub auto_half_open: u32,
}

impl Default for SynProxyConfig {
    fn default() -> Self {
        SynProxyConfig {
            mss: None,
            wscale: 7,
            auto_half_open: 1000,
        }
    }
}

/// The proxy's state of one connection (by connection id), set when a valid cookie ACK opens it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Proxied {
    /// Until the server answers: `adj.seq` holds our ISN and `adj.ts` our TSval (what the client
    /// echoed); then the shifts.
    pub adj: SeqAdj,
    pub client_isn: u32,
    /// The window of the client's handshake ACK (the ACK we complete the server's handshake
    /// with carries it).
    pub client_window: u16,
    pub pending: bool,
    /// Timestamps were negotiated with the client.
    pub ts: bool,
    /// The client's window scale, when scaling was negotiated with it (we announced ours).
    pub client_ws: Option<u8>,
    /// What the SYN to the server offered besides: the client's MSS, SACK-permitted, the TSval
    /// (when `ts`), to send it again ([`SYN_RESENDS`]).
    pub mss: u16,
    pub sack: bool,
    pub tsval: u32,
    /// Times the SYN was sent again.
    pub resent: u8,
}

impl Proxied {
    /// The SYN the proxy sends the server for this connection (from `src` to `dst`: the
    /// client's tuple, which forwarding rewrites, or LIP:lport to the server): the client's ISN
    /// and what its SYN offered, as the cookie kept it.
    pub fn syn<A>(&self, src: (A, u16), dst: (A, u16)) -> Segment<A> {
        Segment {
            src,
            dst,
            seq: self.client_isn,
            ack: 0,
            flags: TcpFlags::SYN,
            // A SYN's window is never scaled (RFC 7323 2.2).
            window: (u32::from(self.client_window) << self.client_ws.unwrap_or(0)).min(0xFFFF)
                as u16,
            mss: Some(self.mss),
            wscale: self.client_ws,
            sack_permitted: self.sack,
            ts: self.ts.then_some((self.tsval, 0)),
        }
    }
}

impl Proxied {
    /// The state of a connection opened by a client's ACK of `ack` (our ISN plus one) with
    /// window `window`, which proved a cookie of `syn`; `our_wscale`: the window scale we
    /// announced (used only if the client scales).
    pub fn opened(syn: &ClientSyn, ack: u32, window: u16, our_wscale: u8) -> Proxied {
        // Window scaling holds with the client iff it offered it with timestamps (we then
        // announced ours and the cookie carried its scale).
        let our_ws = if syn.wscale.is_some() { our_wscale } else { 0 };
        Proxied {
            adj: SeqAdj {
                seq: ack.wrapping_sub(1),
                ts: syn.ts.map_or(0, |(ours, _)| ours),
                server_ws: our_ws,
                our_ws,
                client_shift: 0,
            },
            client_isn: syn.isn,
            client_window: window,
            pending: true,
            ts: syn.ts.is_some(),
            client_ws: syn.wscale,
            mss: syn.mss,
            sack: syn.sack,
            tsval: syn.ts.map_or(0, |(_, tsval)| tsval),
            resent: 0,
        }
    }

    /// The server refused the proxy's SYN with a RST of sequence number `seq`: the client gets
    /// it in the sequence space we gave it.
    pub fn refused(&mut self, seq: u32) {
        self.adj.seq = self.adj.seq.wrapping_add(1).wrapping_sub(seq);
        self.adj.ts = 0;
        self.pending = false;
    }

    /// The server answered the proxy's SYN with a SYN-ACK of sequence number `seq`, its
    /// timestamps and window scale: the shifts from then on, and the ACK that completes the
    /// server's handshake in the client's name (from `client` to `vip`) as the server expects
    /// it, its TSval the client's (which the server echoes). It is written in the client's
    /// sequence space: forwarded like any client segment, it is shifted for the server.
    pub fn answered<A>(
        &mut self,
        seq: u32,
        server_ts: Option<(u32, u32)>,
        server_ws: Option<u8>,
        client: (A, u16),
        vip: (A, u16),
    ) -> Segment<A> {
        let (our_isn, our_tsval) = (self.adj.seq, self.adj.ts);
        self.adj.seq = our_isn.wrapping_sub(seq);
        self.adj.ts = match (self.ts, server_ts) {
            (true, Some((tsval, _))) => our_tsval.wrapping_sub(tsval),
            _ => 0,
        };
        if let Some(cws) = self.client_ws {
            // Our SYN offered scaling: the server scales by its own shift, or not at all (then
            // the client's windows, scaled for us, are widened for the server).
            self.adj.server_ws = server_ws.unwrap_or(0);
            self.adj.client_shift = if server_ws.is_none() { cws } else { 0 };
        }
        self.pending = false;
        Segment {
            src: client,
            dst: vip,
            seq: self.client_isn.wrapping_add(1),
            ack: our_isn.wrapping_add(1),
            flags: TcpFlags::ACK,
            window: self.client_window,
            mss: None,
            wscale: None,
            sack_permitted: false,
            ts: server_ts
                .filter(|_| self.ts)
                .map(|(_, echo)| (echo, our_tsval)),
        }
    }
}

/// Times the proxy sends its SYN again after the server answered it with an unacceptable ACK
/// (`Forwarder::proxy_pending`): each time the server's TIME_WAIT of an earlier connection on
/// the same LIP:lport, which a RST ends, unless the server keeps such sockets (`tcp_rfc1337`).
pub const SYN_RESENDS: u8 = 3;

/// Most handshake-ACK payloads held at once per worker (the ACK that proves a cookie becomes the
/// SYN to the server; data it carried waits for the server's answer). Linux clients rarely send
/// data there; a client whose data finds no room retransmits it.
const STASH_SLOTS: usize = 64;
const STASH_BYTES: usize = 1500;

/// Data a client sent on its handshake ACK: free when `id` is `u32::MAX` or `deadline` passed (its
/// connection ended before its server answered).
struct Stashed {
    id: u32,
    client: ClientTuple,
    deadline: u64,
    len: usize,
    bytes: Box<[u8; STASH_BYTES]>,
}

/// One worker's proxy: the cookie key, the per-connection state and the counters.
pub struct SynProxy {
    pub key: CookieKey,
    pub cfg: SynProxyConfig,
    /// `conns[id]`: sized to the connection table once a service uses the proxy (empty until).
    conns: Vec<Proxied>,
    /// The same for the IPv6 table's connections, once an IPv6 service uses the proxy.
    conns6: Vec<Proxied>,
    /// Handshake-ACK data, by connection.
    stash: Vec<Stashed>,
    auto_until_ms: u64,
    pub stats: SynProxyStats,
}

impl SynProxy {
    pub fn new(key: CookieKey, cfg: SynProxyConfig) -> SynProxy {
        SynProxy {
            key,
            cfg,
            conns: Vec::new(),
            conns6: Vec::new(),
            stash: Vec::new(),
            auto_until_ms: 0,
            stats: SynProxyStats::default(),
        }
    }

    /// Makes room for `capacity` connections (done when a service first uses the proxy, on the
    /// control side of a snapshot change, so the packet path never allocates).
    pub fn reserve(&mut self, capacity: usize) {
        if self.conns.len() < capacity {
            self.conns.resize(capacity, Proxied::default());
        }
        self.reserve_stash();
    }

    /// [`reserve`](Self::reserve) for the IPv6 table's `capacity` connections.
    pub fn reserve6(&mut self, capacity: usize) {
        if self.conns6.len() < capacity {
            self.conns6.resize(capacity, Proxied::default());
        }
        self.reserve_stash();
    }

    fn reserve_stash(&mut self) {
        if self.stash.is_empty() {
            self.stash = (0..STASH_SLOTS)
                .map(|_| Stashed {
                    id: u32::MAX,
                    client: ClientTuple::V4(Tuple::default()),
                    deadline: 0,
                    len: 0,
                    bytes: Box::new([0; STASH_BYTES]),
                })
                .collect();
        }
    }

    pub fn is_ready(&self) -> bool {
        !self.conns.is_empty()
    }

    /// Whether IPv6 connections can be proxied ([`reserve6`](Self::reserve6) was done).
    #[inline]
    pub fn is_ready6(&self) -> bool {
        !self.conns6.is_empty()
    }

    /// Whether a SYN to a service in `mode` is answered with a cookie now, given the worker's
    /// half-open count.
    pub fn answers(&mut self, mode: Mode, half_open: usize, now_ms: u64) -> bool {
        match mode {
            Mode::Off => false,
            Mode::On => true,
            Mode::Auto => {
                if half_open >= self.cfg.auto_half_open as usize {
                    self.auto_until_ms = now_ms + AUTO_HOLD_MS;
                }
                now_ms < self.auto_until_ms
            }
        }
    }

    /// Whether auto mode is on now (for the operator's view).
    pub fn auto_on(&self, now_ms: u64) -> bool {
        now_ms < self.auto_until_ms
    }

    pub fn get(&self, id: u32) -> Option<&Proxied> {
        self.conns.get(id as usize)
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Proxied> {
        self.conns.get_mut(id as usize)
    }

    /// The state of IPv6 connection `id`.
    pub fn get6(&self, id: u32) -> Option<&Proxied> {
        self.conns6.get(id as usize)
    }

    pub fn get6_mut(&mut self, id: u32) -> Option<&mut Proxied> {
        self.conns6.get_mut(id as usize)
    }

    /// Holds `data` for connection `id` of `client` until [`HOLD_MS`] after `now_ms`; false if
    /// every slot is taken.
    pub fn stash(&mut self, id: u32, client: ClientTuple, now_ms: u64, data: &[u8]) -> bool {
        if data.len() > STASH_BYTES {
            return false;
        }
        match self
            .stash
            .iter_mut()
            .find(|s| s.id == u32::MAX || s.deadline <= now_ms)
        {
            Some(s) => {
                s.id = id;
                s.client = client;
                s.deadline = now_ms + HOLD_MS;
                s.len = data.len();
                s.bytes[..data.len()].copy_from_slice(data);
                true
            }
            None => false,
        }
    }

    /// Copies the data held for connection `id` of `client` into `out` and frees its slot; the
    /// length (0: none held).
    pub fn unstash(&mut self, id: u32, client: &ClientTuple, out: &mut [u8]) -> usize {
        let Some(s) = self
            .stash
            .iter_mut()
            .find(|s| s.id == id && s.client == *client)
        else {
            return 0;
        };
        s.id = u32::MAX;
        // Never a part of it: a truncated segment would corrupt the stream.
        let n = s.len;
        if n > out.len() {
            return 0;
        }
        out[..n].copy_from_slice(&s.bytes[..n]);
        n
    }
}

pub use crate::conn::parked::{ClientTuple, Parked, HOLD_MS, PARKED_MAX, PARKED_PER_CONN};

#[cfg(test)]
pub(crate) mod tests;

//! IPv4 fragments of forwarded TCP and UDP datagrams follow their first fragment's decision
//! (issue 17, item 4), without reassembly: only the first fragment carries the ports a connection
//! is found or scheduled by (RFC 791 3.2), so the datapath forwards it as any packet and remembers
//! what became of it, per datagram, keyed by (source, destination, identification, protocol) as a
//! receiver reassembles by (RFC 791 3.2, RFC 6864 4.1). The other fragments are rewritten the same
//! way: same addresses, same next hop, same encapsulation. The L4 checksum needs no change for
//! them: it is in the first fragment, whose rewrite folds the address and port changes into it
//! incrementally (RFC 1624), and the payload it covers is not touched.
//!
//! Where a datagram is decided. A connection lives on one worker (`forward::owner`), and a non-first
//! fragment names no port to find it by, so all fragments of a datagram first meet on one worker,
//! their *home*, a hash of the key that any worker computes ([`home_of`]). The home decides the
//! first fragment as the receiving worker would an unfragmented packet: forwards it, or hands it to
//! the connection's owner, and the later fragments follow to the same place. The owner remembers
//! its own decision for them. The handoff ring from home to owner is first in, first out, so the
//! first fragment always reaches the owner before the rest. This is the one case where a
//! handed-over packet is handed on: receiving worker, then home, then owner.
//!
//! Out of order: a fragment that arrives before its first one is held (within
//! [`FragConfig::max_held`] per worker) until the first comes, or dropped when the datagram's
//! entry times out. The table holds at most [`FragConfig::max_datagrams`] datagrams; an entry goes
//! as soon as every byte of its datagram has been seen, or at its timeout.
//!
//! DPVS reassembles (`ipv4_frag`) before its lookup instead; following the first fragment costs one
//! table entry per datagram instead of its bytes, and keeps each fragment's size as the sender
//! chose it.

use crate::packet::PacketBuf;
use crate::stats::Drop;
use crate::wire::{ethernet, ipv4, IpInfo, IpProtocol, Ipv4Packet};
use hashbrown::HashMap;
use std::collections::VecDeque;
use std::net::Ipv4Addr;

/// The bounds of one worker's fragment table (`[fragments]` in the config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragConfig {
    /// Datagrams tracked at once; a fragment of one more is dropped (`frag_table_full`).
    pub max_datagrams: usize,
    /// Fragments held waiting for their first fragment; one more is dropped (`frag_held_full`).
    pub max_held: usize,
    /// A datagram's entry lives this long after its first fragment (of any) arrived.
    pub timeout_ms: u64,
}

impl Default for FragConfig {
    fn default() -> Self {
        FragConfig {
            max_datagrams: 4096,
            max_held: 256,
            timeout_ms: 1000,
        }
    }
}

/// What identifies a datagram's fragments (RFC 791 3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub id: u16,
    pub proto: u8,
}

impl FragKey {
    /// The key of the IPv4 packet at `ip` (a checked header).
    pub fn of(ip: &[u8]) -> FragKey {
        let p = Ipv4Packet::new_unchecked(ip);
        FragKey {
            src: p.src(),
            dst: p.dst(),
            id: p.ident(),
            proto: p.protocol().0,
        }
    }
}

/// The worker (of `n_workers`) where the fragments of datagram `key` meet. Fibonacci hashing of
/// the key's 80 bits folded to 64, then the multiply-shift range reduction, as
/// `forward::owner::owner_of_client` does.
#[inline]
pub fn home_of(key: &FragKey, n_workers: usize) -> usize {
    let a = (u64::from(u32::from(key.src)) << 32) | u64::from(u32::from(key.dst));
    let b = (u64::from(key.id) << 8) | u64::from(key.proto);
    let x = (a ^ b.rotate_left(29))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (((x >> 32) * n_workers.max(1) as u64) >> 32) as usize
}

/// What became of a datagram's first fragment, for the others to follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Handed to this worker, the connection's owner, which decides the rest.
    Worker(u16),
    /// Sent, rewritten as [`Rewrite`] says.
    Send(Rewrite),
    /// Sent up to this port's kernel twin.
    Kernel(u16),
    /// Dropped, or not understood: the others are dropped (`frag_first_dropped`).
    Drop,
}

/// Where the first fragment went on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Sent on this port with these destination and source MACs.
    Sent { port: u16, macs: [u8; 12] },
    /// Queued for ARP toward the next hop of this address (`L3::route_out`): the others queue
    /// behind it, or go once it is resolved.
    Queued(Ipv4Addr),
}

/// How the first fragment left: the others leave the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite {
    pub link: Link,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// The outer header of an IP-in-IP encapsulation (TUN), copied with its length fixed.
    pub outer: Option<[u8; ipv4::HEADER_LEN]>,
}

const L3: usize = ethernet::HEADER_LEN;

impl Rewrite {
    /// How the first fragment `inbound` of datagram `key` (as received, its IPv4 header at `L3`)
    /// left: `head` is the start of the frame that left (at least its Ethernet and IP headers, the
    /// outer and the inner one for IP in IP). `None` if that is not the same first fragment with
    /// its header rewritten: its IP payload changed length, or it is another packet altogether (a
    /// SYN proxy's SYN-ACK written over the SYN), which the other fragments must not follow.
    pub fn learn(link: Link, key: &FragKey, inbound: &IpInfo, head: &[u8]) -> Option<Rewrite> {
        let after = Ipv4Packet::new_unchecked(head.get(L3..L3 + ipv4::HEADER_LEN)?);
        let (inner_at, outer) =
            if after.protocol() == IpProtocol::IPIP && inbound.protocol != IpProtocol::IPIP {
                // This gateway's own outer header has no options (`forward::tun`).
                if after.header_len() != ipv4::HEADER_LEN {
                    return None;
                }
                let mut o = [0u8; ipv4::HEADER_LEN];
                o.copy_from_slice(&head[L3..L3 + ipv4::HEADER_LEN]);
                (L3 + ipv4::HEADER_LEN, Some(o))
            } else {
                (L3, None)
            };
        let inner = Ipv4Packet::new_unchecked(head.get(inner_at..inner_at + ipv4::HEADER_LEN)?);
        if inner.total_len() != inbound.total_len
            || L3 + inner.header_len() != inbound.l4_off
            || inner.ident() != key.id
            || inner.protocol().0 != key.proto
            || !inner.more_frags()
            || inner.frag_offset() != 0
        {
            return None;
        }
        Some(Rewrite {
            link,
            src: inner.src(),
            dst: inner.dst(),
            outer,
        })
    }

    /// Rewrites a non-first fragment (IPv4 at `L3`, header checked) as the first one was; with
    /// `Link::Sent`, ready to send. Fails without headroom for the outer header, or when the
    /// encapsulated fragment would exceed `mtu` (as `forward::tun` refuses a first one).
    pub fn apply<B: PacketBuf>(&self, pkt: &mut B, mtu: u16) -> Result<(), Drop> {
        let total = {
            let mut ip = Ipv4Packet::new_unchecked(&mut pkt.data_mut()[L3..]);
            if ip.src() != self.src {
                ip.set_src_incremental(self.src);
            }
            if ip.dst() != self.dst {
                ip.set_dst_incremental(self.dst);
            }
            usize::from(ip.total_len())
        };
        // Ethernet padding after a short fragment would end up inside an outer header's payload.
        pkt.set_len(L3 + total);
        if let Some(outer) = &self.outer {
            if total + ipv4::HEADER_LEN > usize::from(mtu) || !pkt.prepend(ipv4::HEADER_LEN) {
                return Err(Drop::NoRoom);
            }
            let frame = pkt.data_mut();
            frame.copy_within(ipv4::HEADER_LEN..ipv4::HEADER_LEN + L3, 0);
            frame[L3..L3 + ipv4::HEADER_LEN].copy_from_slice(outer);
            let mut o = Ipv4Packet::new_unchecked(&mut frame[L3..]);
            o.set_total_len((total + ipv4::HEADER_LEN) as u16);
            o.fill_checksum();
        }
        if let Link::Sent { macs, .. } = &self.link {
            pkt.data_mut()[..12].copy_from_slice(macs);
        }
        Ok(())
    }
}

pub use crate::counters::FragCounters;

struct Entry<B, D> {
    decision: Option<D>,
    held: Vec<B>,
    born_ms: u64,
    /// Payload bytes seen (each offset once), and the datagram's payload length once its last
    /// fragment was seen.
    seen: u32,
    total: Option<u32>,
    /// The offsets counted in `seen`, so that a duplicate fragment is not counted twice. Beyond
    /// `OFFSETS` pieces the entry is not completed early (`untracked`): it lives to its timeout.
    offsets: [u16; OFFSETS],
    n_offsets: u8,
    untracked: bool,
}

/// Pieces per datagram tracked for early completion (a 64 KB datagram at a 1500-byte MTU has 45;
/// the common ones have 2 to 6).
const OFFSETS: usize = 8;

impl<B, D> Entry<B, D> {
    fn new(now_ms: u64) -> Self {
        Entry {
            decision: None,
            held: Vec::new(),
            born_ms: now_ms,
            seen: 0,
            total: None,
            offsets: [0; OFFSETS],
            n_offsets: 0,
            untracked: false,
        }
    }

    /// Counts `piece` once; whether every byte of the datagram has now been seen.
    fn count(&mut self, piece: Piece) -> bool {
        let known = &self.offsets[..usize::from(self.n_offsets)];
        if known.contains(&piece.offset) {
            return false;
        }
        if usize::from(self.n_offsets) == OFFSETS {
            self.untracked = true;
        } else {
            self.offsets[usize::from(self.n_offsets)] = piece.offset;
            self.n_offsets += 1;
        }
        self.seen = self.seen.saturating_add(u32::from(piece.len));
        if !piece.more {
            self.total = Some(u32::from(piece.offset) + u32::from(piece.len));
        }
        !self.untracked && self.total.is_some_and(|t| self.seen >= t)
    }
}

/// One fragment's place in its datagram.
#[derive(Clone, Copy, Debug)]
pub struct Piece {
    /// Offset and length of its payload in bytes.
    pub offset: u16,
    pub len: u16,
    /// More fragments follow (MF).
    pub more: bool,
}

impl Piece {
    /// The piece of the checked IPv4 packet at `ip`.
    pub fn of(ip: &[u8]) -> Piece {
        let p = Ipv4Packet::new_unchecked(ip);
        Piece {
            offset: p.frag_offset(),
            len: p.total_len().saturating_sub(p.header_len() as u16),
            more: p.more_frags(),
        }
    }
}

/// What the table says about a later fragment.
pub enum Follow<B, D = Decision> {
    /// Its first fragment was decided: this is what to do.
    Decided(D, B),
    /// Kept until its first fragment comes ([`FragTable::first`] hands it back).
    Held,
    /// Dropped for this reason (table or held fragments full).
    Refused(Drop, B),
}

/// One worker's fragment table: bounded, expired in arrival order. Keyed by IPv4's [`FragKey`]
/// with IPv4's [`Decision`] by default; `inet6` keys it by IPv6's (source, destination,
/// identification) with its own decisions.
pub struct FragTable<B, K = FragKey, D = Decision> {
    cfg: FragConfig,
    map: HashMap<K, Entry<B, D>>,
    /// (key, born) in creation order, for expiry; an entry removed early leaves a stale pair.
    order: VecDeque<(K, u64)>,
    held: usize,
    pub stats: FragCounters,
}

impl<B, K: Copy + Eq + core::hash::Hash, D: Copy> FragTable<B, K, D> {
    pub fn new(cfg: FragConfig) -> Self {
        FragTable {
            cfg,
            map: HashMap::new(),
            order: VecDeque::new(),
            held: 0,
            stats: FragCounters::default(),
        }
    }

    /// Datagrams tracked now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Fragments held now.
    pub fn held(&self) -> usize {
        self.held
    }

    /// The entry of `key`, created if there is room.
    fn entry(&mut self, key: K, now_ms: u64) -> Option<&mut Entry<B, D>> {
        if !self.map.contains_key(&key) {
            if self.map.len() >= self.cfg.max_datagrams {
                return None;
            }
            // The pairs of entries that completed early are dropped here, so `order` stays within
            // twice the table. Live entries keep theirs (one each, at most `max_datagrams`).
            if self.order.len() >= 2 * self.cfg.max_datagrams.max(1) {
                let map = &self.map;
                self.order
                    .retain(|(k, born)| map.get(k).is_some_and(|e| e.born_ms == *born));
            }
            self.order.push_back((key, now_ms));
            self.map.insert(key, Entry::new(now_ms));
        }
        self.map.get_mut(&key)
    }

    /// Removes `key`'s entry if it is the one born at `born` (not a later one for the same key);
    /// returns how many held fragments went with it (dropped).
    fn remove_if_born(&mut self, key: K, born: u64) -> usize {
        match self.map.get(&key) {
            Some(e) if e.born_ms == born => {
                let e = self.map.remove(&key).expect("present");
                if e.total.is_none_or(|t| e.seen < t) {
                    self.stats.timed_out += 1;
                }
                self.held -= e.held.len();
                e.held.len()
            }
            _ => 0,
        }
    }

    /// Counts `piece` into `key`'s entry; removes the entry once decided and complete.
    fn account(&mut self, key: K, piece: Piece) {
        let Some(e) = self.map.get_mut(&key) else {
            return;
        };
        if e.count(piece) && e.decision.is_some() && e.held.is_empty() {
            self.map.remove(&key);
            self.stats.completed += 1;
        }
    }

    /// Records the decision taken for `key`'s first fragment; returns the fragments that were
    /// held for it, in arrival order, for the caller to carry the decision out on. `Err` if the
    /// table is full (nothing recorded: later fragments are refused too).
    pub fn first(
        &mut self,
        key: K,
        piece: Piece,
        decision: D,
        now_ms: u64,
    ) -> Result<Vec<B>, Drop> {
        let Some(e) = self.entry(key, now_ms) else {
            return Err(Drop::FragTableFull);
        };
        if e.decision.is_some() {
            // A first fragment again: a duplicate, or a new datagram reusing the key (RFC 6864
            // allows that after the old one's lifetime). Its pieces are counted afresh.
            e.seen = 0;
            e.total = None;
            e.n_offsets = 0;
            e.untracked = false;
        }
        e.decision = Some(decision);
        let held = std::mem::take(&mut e.held);
        self.stats.first += 1;
        self.held -= held.len();
        self.account(key, piece);
        Ok(held)
    }

    /// A later fragment of `key`: what its first fragment's decision says, or held for it.
    pub fn follow(&mut self, key: K, piece: Piece, pkt: B, now_ms: u64) -> Follow<B, D> {
        let at_limit = self.held >= self.cfg.max_held;
        // A fragment that would only wait takes no table slot when it cannot wait.
        if at_limit && !self.map.contains_key(&key) {
            return Follow::Refused(Drop::FragHeldFull, pkt);
        }
        let Some(e) = self.entry(key, now_ms) else {
            return Follow::Refused(Drop::FragTableFull, pkt);
        };
        let out = match e.decision {
            Some(d) => Follow::Decided(d, pkt),
            None if at_limit => return Follow::Refused(Drop::FragHeldFull, pkt),
            None => {
                e.held.push(pkt);
                self.held += 1;
                self.stats.held += 1;
                Follow::Held
            }
        };
        self.account(key, piece);
        out
    }

    /// Removes the entries older than the timeout; returns how many held fragments were dropped
    /// with them (`frag_timeout`).
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let mut dropped = 0;
        while let Some(&(key, born)) = self.order.front() {
            if now_ms.saturating_sub(born) < self.cfg.timeout_ms {
                break;
            }
            self.order.pop_front();
            dropped += self.remove_if_born(key, born);
        }
        dropped
    }
}

#[cfg(test)]
mod tests;

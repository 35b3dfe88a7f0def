//! FullNAT for IPv6 services (`ipvsadm -b` on an IPv6 service), as for IPv4 (`forward::fullnat`):
//! CIP:cport -> VIP:vport becomes LIP:lport -> RIP:rport toward the real server, and its replies
//! RIP:rport -> LIP:lport become VIP:vport -> CIP:cport toward the client. The connection is found
//! from both tuples in the IPv6 table.
//!
//! - Local ports: worker `w` of `n` uses the ports `lport % n == w` of the configured range (the
//!   IPv4 rule, `laddr::layout`), so whichever worker a reply reaches knows its owner and hands it
//!   over; with RSS the port is also chosen so that the NIC's Toeplitz hash of the IPv6 reply tuple
//!   delivers the reply to its owner in the first place ([`Pool6`]).
//! - The client's address reaches the real server in the IPv6 TOA on the SYN (kind 254, length 20,
//!   port then address: DPVS's `tcpopt_ip6_addr`, read by the toa module's IPv6 support). The MSS
//!   is left alone: the option travels on the SYN only.
//! - Checksums: IPv6 has no header checksum; the TCP or UDP one takes the address and port changes
//!   incrementally (RFC 1624), the pseudo-header included (RFC 8200 8.1).

use crate::conn::{ConnOf, ConnTable6, Tuple6};
use crate::forward::rewrite::{rewrite_ports, set_tcp_ports, Udp};
use crate::forward::ServiceTable;
use crate::laddr::PortLayout;
use crate::service::LipKey;
use crate::wire::checksum::{Delta, Folded};
use crate::wire::{ethernet, ipv6, IpProtocol};
use std::net::Ipv6Addr;
use std::sync::Arc;

/// Candidates a new connection tries per local address before the next one (as IPv4's
/// `laddr::DEFAULT_MAX_ATTEMPTS`).
const MAX_ATTEMPTS: usize = 64;

use crate::laddr::toeplitz::field6::DST_IP as DST_IP6;
use crate::laddr::toeplitz::field6::{SRC_IP as SRC_IP6, SRC_PORT as SRC_PORT6};

/// `H(rip, 0, rport, 0)` of the IPv6 input, the reply's part of its hash that the pool does not
/// choose (0 without RSS): the hash is linear, so a tuple's is the xor of its fields'
/// (`laddr::toeplitz`).
#[inline]
fn remote_hash(layout: &PortLayout, rip: Ipv6Addr, rport: u16) -> u32 {
    layout.toeplitz6().map_or(0, |t| {
        t.hash_at(SRC_IP6, &rip.octets()) ^ t.hash_at(SRC_PORT6, &rport.to_be_bytes())
    })
}

/// One worker's local addresses and ports for one IPv6 service.
///
/// Ports are this worker's share of the range (`lport % n == worker`). With RSS steering they are
/// grouped by the bucket `H(0, 0, 0, lport) & mask` of the IPv6 input, as IPv4's pool groups them
/// by the IPv4 one (`laddr::pool`): a reply RIP:rport -> LIP:lport lands on RETA entry
/// `H(rip, lip, rport, 0) ^ bucket(lport)`, so to reach an entry this worker polls the pool takes a
/// port from the bucket that xors to it. The NIC hashes IPv6 TCP and UDP by addresses and ports
/// (`dpdk::port` asks for it). The groups are the layout's, shared by every pool of the worker
/// (`PortLayout::share6`); a pool keeps its addresses and a cursor a bucket.
#[derive(Debug)]
pub struct Pool6 {
    layout: Arc<PortLayout>,
    worker: usize,
    /// Each local address with its part of the reply's hash, `H(0, lip, 0, 0)`.
    lips: Vec<(Ipv6Addr, u32)>,
    /// Where each bucket's next search starts: consecutive connections take different ports.
    cursor: Vec<u32>,
    next_entry: usize,
    next_lip: usize,
}

impl Pool6 {
    pub fn new(lips: &[Ipv6Addr], layout: &Arc<PortLayout>, worker: usize) -> Pool6 {
        let toeplitz = layout.toeplitz6();
        Pool6 {
            lips: lips
                .iter()
                .map(|&l| (l, toeplitz.map_or(0, |t| t.hash_at(DST_IP6, &l.octets()))))
                .collect(),
            cursor: vec![0; layout.mask() as usize + 1],
            layout: Arc::clone(layout),
            worker,
            next_entry: 0,
            next_lip: 0,
        }
    }

    /// Whether the pool has an address and a port to hand out.
    pub fn has_ports(&self) -> bool {
        !self.layout.share6(self.worker).ports.is_empty() && !self.lips.is_empty()
    }

    pub fn lips(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        self.lips.iter().map(|l| l.0)
    }

    /// A reply tuple RIP:rport -> LIP:lport for a new connection that the table does not hold and
    /// whose replies RSS delivers to this worker, or None when every local address is out of
    /// candidates (`ports_exhausted`).
    pub fn allocate(
        &mut self,
        rip: Ipv6Addr,
        rport: u16,
        proto: u8,
        table: &ConnTable6,
    ) -> Option<Tuple6> {
        let layout = &*self.layout;
        let share = layout.share6(self.worker);
        if share.ports.is_empty() || self.lips.is_empty() {
            return None;
        }
        let (mask, entries) = (layout.mask(), layout.worker_entries(self.worker));
        // The only hashing per allocation.
        let remote = remote_hash(layout, rip, rport);
        let first_lip = self.next_lip;
        self.next_lip = (self.next_lip + 1) % self.lips.len();
        let n_entries = entries.len();
        for l in 0..self.lips.len() {
            let (lip, lip_hash) = self.lips[(first_lip + l) % self.lips.len()];
            let b = (remote ^ lip_hash) & mask;
            let mut budget = MAX_ATTEMPTS;
            for j in 0..n_entries {
                let e = u32::from(entries[(self.next_entry + j) % n_entries]);
                let bucket = ((b ^ e) & mask) as usize;
                let (lo, hi) = (share.start[bucket], share.start[bucket + 1]);
                let len = hi - lo;
                for _ in 0..(len as usize).min(budget) {
                    budget -= 1;
                    let at = self.cursor[bucket];
                    self.cursor[bucket] = (at + 1) % len;
                    let port = share.ports[(lo + at) as usize];
                    let reply = Tuple6::new(rip, rport, lip, port, proto);
                    if table.lookup(&reply).is_none() {
                        self.next_entry = (self.next_entry + 1) % n_entries;
                        return Some(reply);
                    }
                }
                if budget == 0 {
                    break;
                }
            }
        }
        None
    }
}

impl Pool6 {
    /// `lip:lport`, just freed (a connection evicted to make room), as the reply tuple of a new
    /// connection toward `rip:rport` if it is this pool's, this worker's, one whose replies RSS
    /// delivers here, and free in `table`. The search from the cursor would come to it last.
    pub fn take_freed(
        &self,
        lip: Ipv6Addr,
        lport: u16,
        rip: Ipv6Addr,
        rport: u16,
        proto: u8,
        table: &ConnTable6,
    ) -> Option<Tuple6> {
        let &(_, lip_hash) = self.lips.iter().find(|l| l.0 == lip)?;
        let layout = &*self.layout;
        let (share, mask) = (layout.share6(self.worker), layout.mask());
        let bucket = layout.bucket_of6(lport);
        let remote = remote_hash(layout, rip, rport);
        // This worker's ports of the bucket, ascending.
        let (lo, hi) = (*share.start.get(bucket)?, *share.start.get(bucket + 1)?);
        share.ports[lo as usize..hi as usize]
            .binary_search(&lport)
            .ok()?;
        let b = (remote ^ lip_hash) & mask;
        if !layout
            .worker_entries(self.worker)
            .iter()
            .any(|&e| ((b ^ u32::from(e)) & mask) as usize == bucket)
        {
            return None;
        }
        let reply = Tuple6::new(rip, rport, lip, lport, proto);
        table.lookup(&reply).is_none().then_some(reply)
    }
}

/// Connections per (service, IPv6 local address) on this worker, as `laddr::LaddrPool` counts
/// IPv4's: what a local address taken out with `ipvsadm -Q` waits on before it is let go
/// (`control::retire`), and what the metrics show (`gateway_lip_ports_in_use`; `ipvsadm -G`
/// counts from the connection listing instead). Keyed by the connection's
/// own tuples (the service's VIP, port and protocol, its LIP), so a count follows its connection
/// whatever snapshot the service is in. Touched when a connection starts and ends, never per
/// packet.
///
/// The counts are in `counts`, by the place `index` gives each key when first seen (kept at 0
/// after, never reused: the keys are the services' local addresses, a handful, and those of
/// services deleted since). A direct-mapped `recent` in front of `index` finds a key in one
/// comparison: a worker's new connections cycle over few (service, LIP) pairs.
#[derive(Debug)]
pub struct LipConns {
    index: hashbrown::HashMap<LipWord, u32>,
    counts: Vec<u32>,
    recent: [(LipWord, u32); RECENT_SLOTS],
}

/// Slots of [`LipConns`]'s cache of recently counted keys.
const RECENT_SLOTS: usize = 16;

/// A (service, IPv6 LIP) as plain words, (VIP, LIP, vport << 8 | protocol), hashed and compared
/// as integers. Through the hash map alone the count cost a new IPv6 connection 90 instructions
/// (`perf/cost.sh syn6`), and as much again when it ended; where each SYN also evicted a
/// half-open connection (a count up and one down), a [`LipKey`] key with its two `IpAddr`s cost
/// 317 instructions, these words through the map 203.
type LipWord = (u128, u128, u32);

/// No key: the LIP of a `recent` slot never filled is unspecified, which no connection's is.
const NO_KEY: LipWord = (0, 0, 0);

impl Default for LipConns {
    fn default() -> Self {
        LipConns {
            index: Default::default(),
            counts: Vec::new(),
            recent: [(NO_KEY, 0); RECENT_SLOTS],
        }
    }
}

impl LipConns {
    /// The (service, LIP) of an IPv6 FullNAT connection (`mode`), None for any other.
    #[inline]
    fn key(client: &Tuple6, reply: Option<&Tuple6>, mode: u8) -> Option<LipWord> {
        let r = reply.filter(|_| mode == crate::forward::mode::FULLNAT)?;
        Some((
            u128::from(client.dst_ip()),
            u128::from(r.dst_ip()),
            u32::from(client.dport) << 8 | u32::from(client.proto),
        ))
    }

    /// The count of `k`, created at 0 the first time.
    #[inline]
    fn count_of(&mut self, k: LipWord) -> &mut u32 {
        // The LIP's low word and the port pick the slot: a service's LIPs differ there.
        let slot = ((k.1 as u32) ^ k.2) as usize % RECENT_SLOTS;
        let (key, at) = self.recent[slot];
        let at = match key == k {
            true => at,
            false => self.place(k, slot),
        };
        &mut self.counts[at as usize]
    }

    /// Where `k`'s count is (made for it the first time), noted in `recent[slot]`. Out of line:
    /// a connection's own (service, LIP) is most often in `recent` already.
    #[inline(never)]
    fn place(&mut self, k: LipWord, slot: usize) -> u32 {
        let next = self.counts.len() as u32;
        let at = *self.index.entry(k).or_insert(next);
        if at == next {
            self.counts.push(0);
        }
        self.recent[slot] = (k, at);
        at
    }

    /// A connection was inserted with these tuples and mode.
    pub fn started(&mut self, client: &Tuple6, reply: Option<&Tuple6>, mode: u8) {
        if let Some(k) = Self::key(client, reply, mode) {
            *self.count_of(k) += 1;
        }
    }

    /// Connection `c` left the table (expired, replaced or evicted). A parked entry
    /// (`service::parked`) was counted out when its client replaced it.
    pub fn ended(&mut self, c: &ConnOf<Tuple6>) {
        if super::service::parked(c) {
            return;
        }
        if let Some(k) = Self::key(&c.client(), c.reply().as_ref(), c.mode()) {
            let n = self.count_of(k);
            *n = n.saturating_sub(1);
        }
    }

    /// How many (service, LIP) keys have a count (tests: a parked entry makes none).
    #[cfg(test)]
    pub(super) fn keys(&self) -> usize {
        self.index.len()
    }

    /// The connections counted on `k` now (0 for a key never seen).
    fn get(&self, k: &LipWord) -> u32 {
        self.index.get(k).map_or(0, |&at| self.counts[at as usize])
    }

    /// Connections on each local address of each IPv6 service of `services` (its `lips6` and
    /// retiring ones), 0 for an address without any, as IPv4's pools report theirs; then on any
    /// other (service, LIP) that has some (a service deleted under its connections). Read when
    /// the worker publishes its counters, not per packet.
    pub fn usage(&self, services: &ServiceTable) -> Vec<(LipKey, u32)> {
        let mut out = Vec::new();
        let mut listed = 0;
        for vs in services.services6() {
            let c = vs.svc.config();
            let std::net::IpAddr::V6(vip) = c.vip else {
                continue;
            };
            let port_proto = u32::from(c.vport) << 8 | u32::from(c.proto.number());
            for lip in vs.lips6.iter().chain(&vs.retiring_lips6) {
                let k = (u128::from(vip), u128::from(*lip), port_proto);
                listed += usize::from(self.index.contains_key(&k));
                out.push((Self::lip_key(k), self.get(&k)));
            }
        }
        if listed == self.index.len() {
            return out;
        }
        let configured: hashbrown::HashSet<LipKey> = out.iter().map(|(k, _)| *k).collect();
        out.extend(
            self.index
                .iter()
                .map(|(&k, &at)| (Self::lip_key(k), self.counts[at as usize]))
                .filter(|&(k, n)| n > 0 && !configured.contains(&k)),
        );
        out
    }

    fn lip_key((vip, lip, port_proto): LipWord) -> LipKey {
        LipKey {
            proto: port_proto as u8,
            vip: Ipv6Addr::from(vip).into(),
            vport: (port_proto >> 8) as u16,
            lip: Ipv6Addr::from(lip).into(),
        }
    }
}

/// Rewrites the frame's IPv6 TCP or UDP packet (its upper-layer header at `l4_off`) to `src` ->
/// `dst`: addresses in the IPv6 header, ports and checksum in the upper layer.
///
/// Always inlined, for the hot path's case: a TCP header right after the IPv6 header, on one
/// fixed-size view of both headers, which leaves the compiler no bounds to check and no call to
/// make (as `forward::rewrite::rewrite_l4` for IPv4). Any other packet takes `rewrite_any`.
#[inline(always)]
pub fn rewrite(
    frame: &mut [u8],
    l4_off: usize,
    proto: IpProtocol,
    src: (Ipv6Addr, u16),
    dst: (Ipv6Addr, u16),
) {
    if let Some((ip, l4)) = tcp_after_ip(frame, l4_off, proto) {
        return rewrite_headers(ip, l4, proto, src, dst);
    }
    rewrite_any(frame, l4_off, proto, src, dst);
}

/// The IPv6 header and the TCP header of a frame whose TCP header follows its IPv6 header
/// (`l4_off`, `proto`), cut from one fixed-size view of both: the case `rewrite` and
/// `rewrite_known` take inline. `None` for any other frame.
#[inline(always)]
fn tcp_after_ip(
    frame: &mut [u8],
    l4_off: usize,
    proto: IpProtocol,
) -> Option<(&mut [u8], &mut [u8])> {
    const IP_AT: usize = ethernet::HEADER_LEN;
    const TCP_AT: usize = IP_AT + ipv6::HEADER_LEN;
    if l4_off != TCP_AT || proto != IpProtocol::TCP {
        return None;
    }
    let h = frame.first_chunk_mut::<{ TCP_AT + crate::wire::tcp::HEADER_LEN }>()?;
    Some(h[IP_AT..].split_at_mut(ipv6::HEADER_LEN))
}

/// [`rewrite`] with the upper-layer checksum's change known (`l4`: the connection's,
/// `ConnOf::rewrite_deltas`, for this rewrite of this packet): the hot path's. In its case (a
/// TCP header right after the IPv6 header) the change is applied with one 16-bit add, where
/// `rewrite` sums the sixteen words of the addresses replaced and of the new ones
/// (perf/RESULTS.md); the result is `rewrite`'s, bit for bit (`Folded::apply`). Any other
/// packet takes `rewrite_any`.
#[inline(always)]
pub fn rewrite_known(
    frame: &mut [u8],
    l4_off: usize,
    proto: IpProtocol,
    src: (Ipv6Addr, u16),
    dst: (Ipv6Addr, u16),
    l4: Folded,
) {
    if let Some((ip, tcp)) = tcp_after_ip(frame, l4_off, proto) {
        let mut ip = ipv6::Ipv6Packet::new_unchecked(ip);
        ip.set_src(src.0);
        ip.set_dst(dst.0);
        return set_tcp_ports(tcp, (src.1, dst.1), l4);
    }
    rewrite_any(frame, l4_off, proto, src, dst);
}

/// [`rewrite`] of any TCP or UDP packet: extension headers before its upper-layer header, or a
/// UDP datagram. Out of line: the hot path does not take it.
#[inline(never)]
fn rewrite_any(
    frame: &mut [u8],
    l4_off: usize,
    proto: IpProtocol,
    src: (Ipv6Addr, u16),
    dst: (Ipv6Addr, u16),
) {
    let (ip, l4) = frame.split_at_mut(l4_off);
    rewrite_headers(&mut ip[ethernet::HEADER_LEN..], l4, proto, src, dst);
}

/// [`rewrite`] on the IPv6 header at the start of `ip` and the upper-layer header at the start
/// of `l4`.
#[inline(always)]
fn rewrite_headers(
    ip: &mut [u8],
    l4: &mut [u8],
    proto: IpProtocol,
    src: (Ipv6Addr, u16),
    dst: (Ipv6Addr, u16),
) {
    // Every value in memory byte order, as `forward::rewrite` does for IPv4: the one's-complement
    // sum of byte-swapped words is the byte-swapped sum (RFC 1071 2(B)), so the checksum comes out
    // the same without a byte swap per address word, port and checksum.
    let mut ip = ipv6::Ipv6Packet::new_unchecked(ip);
    let (old_src, old_dst) = (ip.src().octets(), ip.dst().octets());
    ip.set_src(src.0);
    ip.set_dst(dst.0);
    let addrs = Delta::new()
        .addr6_ne(old_src, src.0.octets())
        .addr6_ne(old_dst, dst.0.octets());
    rewrite_ports(l4, proto, (src.1, dst.1), addrs, Udp::V6);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::laddr::toeplitz::{ipv6_l4_input, toeplitz_hash, DEFAULT_RSS_KEY};
    use crate::laddr::{QueueMap, Reta, RssConfig, Steering};

    /// Counts stay right whatever shares a slot of `LipConns::recent`: 40 local addresses of
    /// one service (16 slots), counted up and down in turns, each keep their own; a key of no
    /// service is listed while it has connections, and only then.
    #[test]
    fn lip_counts_stay_right_when_keys_share_a_recent_slot() {
        let mut c = LipConns::default();
        let lip0 = u128::from("2001:db8:20::200".parse::<Ipv6Addr>().unwrap());
        let key = |i: u32| (1u128, lip0 + u128::from(i), 80 << 8 | 6);
        for _ in 0..3 {
            for i in 0..40 {
                *c.count_of(key(i)) += 1;
            }
        }
        for i in (0..40).rev() {
            *c.count_of(key(i)) -= 1;
        }
        for i in 0..40 {
            assert_eq!(c.get(&key(i)), 2, "LIP {i}");
        }
        assert_eq!(c.counts.len(), 40, "a place each");
        let none = ServiceTable::default();
        let mut listed: Vec<u32> = c.usage(&none).iter().map(|(_, n)| *n).collect();
        listed.dedup();
        assert_eq!((c.usage(&none).len(), listed), (40, vec![2]));
        for i in 0..40 {
            for _ in 0..2 {
                *c.count_of(key(i)) -= 1;
            }
        }
        assert!(c.usage(&none).is_empty(), "no connections, no service");
    }

    /// With RSS, every reply tuple the pool hands out hashes (the NIC's Toeplitz over the IPv6
    /// input) to a queue its worker polls, and its port is in the worker's share.
    #[test]
    fn rss_steers_ipv6_replies_to_the_allocating_worker() {
        let steering = Steering::Rss(RssConfig {
            key: DEFAULT_RSS_KEY.to_vec(),
            reta: Reta::round_robin(128, 2).unwrap(),
            queues: QueueMap::identity(2),
        });
        let layout = Arc::new(PortLayout::new(2, 1024..=65535, steering).unwrap());
        let lips: Vec<Ipv6Addr> = ["2001:db8:20::200", "2001:db8:20::201"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        for worker in 0..2 {
            let mut pool = Pool6::new(&lips, &layout, worker);
            let mut table = ConnTable6::new(4096, Default::default());
            for i in 0..500u32 {
                let rip = Ipv6Addr::from(
                    0x2001_0db8_0020_0000_0000_0000_0000_0011u128 + u128::from(i % 7),
                );
                let r = pool
                    .allocate(rip, 80 + (i % 3) as u16, 6, &table)
                    .expect("a port");
                let input = ipv6_l4_input(r.src_ip(), r.dst_ip(), r.sport, r.dport);
                let queue = layout
                    .reta()
                    .unwrap()
                    .queue_of(toeplitz_hash(&DEFAULT_RSS_KEY, &input));
                assert_eq!(usize::from(queue), worker, "reply {r:?}");
                assert_eq!(usize::from(r.dport) % 2, worker);
                let client = Tuple6::new(Ipv6Addr::from(u128::from(i) + 1), 1, rip, 80, 6);
                table
                    .insert(client, Some(r), 0, 0, 0, crate::conn::Ticks(0))
                    .unwrap();
            }
        }
    }

    /// A port an eviction freed is taken for a new connection exactly when the pool could have
    /// handed it out: this worker's share, a reply RSS delivers to it, free in the table.
    #[test]
    fn take_freed_takes_only_a_port_the_pool_could_hand_out() {
        let steering = Steering::Rss(RssConfig {
            key: DEFAULT_RSS_KEY.to_vec(),
            reta: Reta::round_robin(128, 2).unwrap(),
            queues: QueueMap::identity(2),
        });
        let layout = Arc::new(PortLayout::new(2, 1024..=4095, steering).unwrap());
        let lip: Ipv6Addr = "2001:db8:20::200".parse().unwrap();
        let rip: Ipv6Addr = "2001:db8:20::11".parse().unwrap();
        let pool = Pool6::new(&[lip], &layout, 1);
        let mut table = ConnTable6::new(4096, Default::default());
        let mut taken = 0;
        for lport in 1024..=4095u16 {
            let input = ipv6_l4_input(rip, lip, 80, lport);
            let queue = layout
                .reta()
                .unwrap()
                .queue_of(toeplitz_hash(&DEFAULT_RSS_KEY, &input));
            let could = lport % 2 == 1 && queue == 1;
            let got = pool.take_freed(lip, lport, rip, 80, 6, &table);
            assert_eq!(got.is_some(), could, "port {lport}");
            if let Some(r) = got {
                assert_eq!(r, Tuple6::new(rip, 80, lip, lport, 6));
                taken += 1;
                // Held now: not taken again.
                let client = Tuple6::new(Ipv6Addr::from(u128::from(lport)), 1, rip, 80, 6);
                table
                    .insert(client, Some(r), 0, 0, 0, crate::conn::Ticks(0))
                    .unwrap();
                assert!(pool.take_freed(lip, lport, rip, 80, 6, &table).is_none());
            }
        }
        assert!(taken > 500, "{taken}");
        assert!(
            pool.take_freed(rip, 1025, rip, 80, 6, &table).is_none(),
            "not a LIP"
        );
    }
}

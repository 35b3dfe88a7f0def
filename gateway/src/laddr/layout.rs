//! How the local port space is shared between workers, and how a reply finds its owner.
//!
//! Two rules decide which lports worker `w` of `n` may use:
//!
//! 1. **Ownership by port**, always: `lport % n == w`. The owner of any reply (or ICMP error quoting
//!    one) is then `owner_of(lport)`, computable by whichever worker received it, with no lookup; a
//!    mis-steered packet is handed over a ring to that worker. Modulo rather than contiguous ranges
//!    because it keeps every worker's share spread over the whole range, so shrinking or moving the
//!    range changes every share by the same amount.
//! 2. **RSS steering**, with [`Steering::Rss`]: among its ports, the worker picks one that makes the
//!    NIC's Toeplitz hash of the reply tuple (RIP, LIP, rport, lport) select a RETA entry whose queue
//!    it polls, so replies arrive on its own queue in the first place (DESIGN.md, decision 6).
//!
//! Toeplitz is linear over XOR, so `H(rip, lip, rport, lport) = H(rip, lip, rport, 0) ^ H(0, 0, 0,
//! lport)` and, since the RETA index is the hash's low bits, `entry = b ^ bucket(lport)` with
//! `b = H(rip, lip, rport, 0) & mask` and `bucket(lport) = H(0, 0, 0, lport) & mask`. A worker groups
//! its ports by bucket once; to reach entry `e` it takes a port from bucket `b ^ e`.

use std::ops::RangeInclusive;

use super::error::ConfigError;
use super::reta::{QueueMap, Reta};
use super::toeplitz::{field, field6, Toeplitz, Toeplitz6};
use super::tuple::ReplyTuple;

/// The default local port range: everything above the well-known ports.
pub const DEFAULT_PORTS: RangeInclusive<u16> = 1024..=65535;

/// The RSS configuration of the port the replies arrive on.
#[derive(Debug, Clone)]
pub struct RssConfig {
    /// The port's RSS key (40 bytes on most NICs).
    pub key: Vec<u8>,
    /// The port's redirection table.
    pub reta: Reta,
    /// Which worker polls which queue.
    pub queues: QueueMap,
}

/// How replies reach the owning worker.
#[derive(Debug, Clone)]
pub enum Steering {
    /// No usable RSS (driver without it, or with its own hash such as af_packet fanout): ports are
    /// split by `lport % n_workers` only and replies are handed to `owner_of(lport)`.
    Partition,
    /// Ports are split by `lport % n_workers` and chosen so that RSS delivers replies to the owner.
    Rss(RssConfig),
}

#[derive(Debug)]
struct Rss {
    toeplitz: Toeplitz,
    /// The tables for the IPv6 input (`inet6::fullnat::Pool6`, [`PortLayout::bucket_of6`]): a
    /// new IPv6 connection's remote part of the hash is 18 lookups, where the key bit by bit
    /// cost it 2,400 instructions (perf/RESULTS.md, "IPv6 ports chosen for RSS").
    toeplitz6: Toeplitz6,
    reta: Reta,
    queues: QueueMap,
    /// RETA entries (indices) whose queue each worker polls.
    entries_of: Vec<Vec<u16>>,
}

/// The immutable, shared description of the local port space: built once, read by every worker.
#[derive(Debug)]
pub struct PortLayout {
    n_workers: usize,
    first: u16,
    last: u16,
    rss: Option<Rss>,
    /// Each worker's ports by bucket.
    shares: Vec<PortShare>,
    /// Each worker's ports by the bucket of the IPv6 input (`inet6::fullnat::Pool6`).
    shares6: Vec<PortShare>,
}

/// One worker's ports grouped by bucket (`H(0, 0, 0, lport) & mask`, [`PortLayout::bucket_of`];
/// for IPv6 pools, of the IPv6 input, [`PortLayout::bucket_of6`]): bucket `k` is
/// `ports[start[k]..start[k + 1]]`. Every service's pool on the worker searches the same groups,
/// so they are built once with the layout and shared, not once a pool: a restore of 2,000
/// FullNAT services had each worker build 2,000 copies while it prepared the generation, and
/// forwarding stopped for 0.4 s (perf/RESULTS.md, "A large restore stopped forwarding"); IPv6's
/// pools did the same until they shared theirs ("... and IPv6's").
#[derive(Debug)]
pub(crate) struct PortShare {
    pub(crate) ports: Vec<u16>,
    pub(crate) start: Vec<u32>,
    /// The length of the longest bucket.
    pub(crate) max_bucket_len: usize,
}

/// The single bucket of [`Steering::Partition`]: every port of a worker, reached through entry 0.
const PARTITION_ENTRIES: [u16; 1] = [0];

impl PortLayout {
    /// Checks the configuration and builds the layout. With RSS this also proves, for every worker
    /// and every possible `H(rip, lip, rport, 0)`, that some port of the worker's share steers the
    /// reply to it; otherwise allocation could fail for some real servers whatever the load.
    pub fn new(
        n_workers: usize,
        ports: RangeInclusive<u16>,
        steering: Steering,
    ) -> Result<Self, ConfigError> {
        let (first, last) = (*ports.start(), *ports.end());
        if n_workers == 0 {
            return Err(ConfigError::NoWorker);
        }
        if first > last {
            return Err(ConfigError::EmptyRange { first, last });
        }
        if usize::from(last - first) + 1 < n_workers {
            // Some residue class mod n has no member in the range.
            let missing =
                (0..n_workers).find(|w| !(first..=last).any(|p| usize::from(p) % n_workers == *w));
            return Err(ConfigError::EmptyShare(missing.unwrap_or(0)));
        }
        let rss = match steering {
            Steering::Partition => None,
            Steering::Rss(cfg) => {
                cfg.queues.check(&cfg.reta)?;
                let toeplitz = Toeplitz::new(&cfg.key)?;
                let mut entries_of = vec![Vec::new(); n_workers];
                for (entry, &queue) in cfg.reta.entries().iter().enumerate() {
                    // `check` proved every queue is mapped; a worker index past n is ignored, the
                    // check below then reports the workers left without an entry.
                    if let Some(list) = cfg
                        .queues
                        .worker_of(queue)
                        .and_then(|w| entries_of.get_mut(w))
                    {
                        list.push(entry as u16);
                    }
                }
                if let Some(w) = entries_of.iter().position(Vec::is_empty) {
                    return Err(ConfigError::NoRetaEntry(w));
                }
                Some(Rss {
                    toeplitz6: Toeplitz6::padded(&cfg.key),
                    toeplitz,
                    reta: cfg.reta,
                    queues: cfg.queues,
                    entries_of,
                })
            }
        };
        let mut layout = PortLayout {
            n_workers,
            first,
            last,
            rss,
            shares: Vec::new(),
            shares6: Vec::new(),
        };
        layout.shares = (0..n_workers)
            .map(|w| layout.group_by(w, |p| layout.bucket_of(p)))
            .collect();
        layout.shares6 = (0..n_workers)
            .map(|w| layout.group_by(w, |p| layout.bucket_of6(p)))
            .collect();
        for w in 0..n_workers {
            layout.check_steerable(w)?;
        }
        Ok(layout)
    }

    /// `worker`'s ports grouped by `bucket` (below `n_buckets`): a counting sort.
    fn group_by(&self, worker: usize, bucket: impl Fn(u16) -> usize) -> PortShare {
        let n_buckets = self.n_buckets();
        let mut start = vec![0u32; n_buckets + 1];
        for p in self.worker_ports(worker) {
            start[bucket(p) + 1] += 1;
        }
        for k in 0..n_buckets {
            start[k + 1] += start[k];
        }
        let mut fill = start.clone();
        let mut ports = vec![0u16; start[n_buckets] as usize];
        for p in self.worker_ports(worker) {
            let slot = &mut fill[bucket(p)];
            ports[*slot as usize] = p;
            *slot += 1;
        }
        PortShare {
            max_bucket_len: start
                .windows(2)
                .map(|w| (w[1] - w[0]) as usize)
                .max()
                .unwrap_or(0),
            ports,
            start,
        }
    }

    /// Every bucket value `b` must meet some entry `e` of the worker with a non-empty bucket `b ^ e`.
    fn check_steerable(&self, worker: usize) -> Result<(), ConfigError> {
        let start = &self.shares[worker].start;
        let occupied = |b: usize| start[b + 1] > start[b];
        let entries = self.worker_entries(worker);
        match (0..self.n_buckets()).find(|b| !entries.iter().any(|&e| occupied(b ^ usize::from(e))))
        {
            Some(bucket) => Err(ConfigError::Unsteerable { worker, bucket }),
            None => Ok(()),
        }
    }

    /// `worker`'s ports by bucket, which its pools search (`worker` below `n_workers`).
    pub(crate) fn share(&self, worker: usize) -> &PortShare {
        &self.shares[worker]
    }

    /// `worker`'s ports by the bucket of the IPv6 input, which its IPv6 pools search.
    pub(crate) fn share6(&self, worker: usize) -> &PortShare {
        &self.shares6[worker]
    }

    /// Number of workers sharing the port space.
    pub fn n_workers(&self) -> usize {
        self.n_workers
    }

    /// The local port range.
    pub fn port_range(&self) -> RangeInclusive<u16> {
        self.first..=self.last
    }

    /// Whether `lport` lies in the local port range (a reply to anything else is not ours).
    #[inline]
    pub fn contains(&self, lport: u16) -> bool {
        (self.first..=self.last).contains(&lport)
    }

    /// The worker owning every connection that uses `lport` (on any LIP), in both steering modes.
    /// Meaningful for ports in the range; for others it names the worker whose table will miss.
    #[inline]
    pub fn owner_of(&self, lport: u16) -> usize {
        usize::from(lport) % self.n_workers
    }

    /// The ports of `worker`'s share, ascending.
    pub fn worker_ports(&self, worker: usize) -> impl Iterator<Item = u16> + '_ {
        let n = self.n_workers;
        (self.first..=self.last).filter(move |&p| usize::from(p) % n == worker)
    }

    /// Whether RSS steering is on.
    pub fn is_rss(&self) -> bool {
        self.rss.is_some()
    }

    /// A digest of the steering, for two boxes to check that they steer alike (HA sync's hello):
    /// 0 without RSS; with RSS, the worker each of a few fixed reply tuples lands on and their
    /// hashes under the key, folded (FNV-1a). Equal keys and RETAs give equal digests.
    pub fn steering_digest(&self) -> u64 {
        let Some(rss) = &self.rss else { return 0 };
        let mut d: u64 = 0xcbf2_9ce4_8422_2325;
        let mut fold = |x: u64| {
            d ^= x;
            d = d.wrapping_mul(0x0000_0100_0000_01b3);
        };
        for i in 0u32..16 {
            let h = rss.toeplitz.hash_ipv4_l4(
                std::net::Ipv4Addr::from(0x0a14_0000 + i * 7919),
                std::net::Ipv4Addr::from(0x0a14_00c8 + i),
                1024 + (i as u16) * 331,
                80 + i as u16,
            );
            fold(u64::from(h));
            fold(u64::from(rss.reta.queue_of(h)));
        }
        fold(rss.reta.len() as u64);
        d
    }

    /// The Toeplitz tables of the RSS key, with RSS steering.
    pub fn toeplitz(&self) -> Option<&Toeplitz> {
        self.rss.as_ref().map(|r| &r.toeplitz)
    }

    /// The Toeplitz tables of the RSS key for IPv6 inputs, with RSS steering.
    pub fn toeplitz6(&self) -> Option<&Toeplitz6> {
        self.rss.as_ref().map(|r| &r.toeplitz6)
    }

    /// The redirection table, with RSS steering.
    pub fn reta(&self) -> Option<&Reta> {
        self.rss.as_ref().map(|r| &r.reta)
    }

    /// The worker the NIC delivers this reply to, with RSS steering; `None` without. A worker that
    /// receives a reply it does not own (`owner_of` differs) hands it over and counts a mismatch.
    #[inline]
    pub fn rss_worker(&self, reply: &ReplyTuple) -> Option<usize> {
        let rss = self.rss.as_ref()?;
        rss.queues
            .worker_of(rss.reta.queue_of(reply.rss_hash(&rss.toeplitz)))
    }

    /// Number of hash buckets: the RETA size with RSS, 1 without.
    pub(crate) fn n_buckets(&self) -> usize {
        self.rss.as_ref().map_or(1, |r| r.reta.len())
    }

    /// Mask applied to hashes to get a bucket: RETA size - 1 with RSS, 0 without.
    pub(crate) fn mask(&self) -> u32 {
        self.rss.as_ref().map_or(0, |r| r.reta.mask())
    }

    /// `H(0, 0, 0, lport) & mask`: the bucket a port belongs to (always 0 without RSS).
    pub(crate) fn bucket_of(&self, lport: u16) -> usize {
        self.rss.as_ref().map_or(0, |r| {
            (r.toeplitz.hash_port(field::DST_PORT, lport) & r.reta.mask()) as usize
        })
    }

    /// The bucket of `lport` as an IPv6 reply's destination port: `H(0, 0, 0, lport) & mask` of
    /// the 36-byte IPv6 input, whose Toeplitz hash is not the IPv4 one's (0 without RSS).
    pub(crate) fn bucket_of6(&self, lport: u16) -> usize {
        self.rss.as_ref().map_or(0, |r| {
            let h = r.toeplitz6.hash_at(field6::DST_PORT, &lport.to_be_bytes());
            (h & r.reta.mask()) as usize
        })
    }

    /// The RETA entries `worker` polls (the single pseudo-entry 0 without RSS).
    pub(crate) fn worker_entries(&self, worker: usize) -> &[u16] {
        match &self.rss {
            Some(r) => r.entries_of.get(worker).map_or(&[], Vec::as_slice),
            None => &PARTITION_ENTRIES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::toeplitz::DEFAULT_RSS_KEY;
    use super::*;
    use std::net::Ipv4Addr;

    fn rss(key: &[u8], size: usize, workers: u16) -> Steering {
        Steering::Rss(RssConfig {
            key: key.to_vec(),
            reta: Reta::round_robin(size, workers).unwrap(),
            queues: QueueMap::identity(workers),
        })
    }

    /// Each worker's groups, built once for every pool (`PortShare`), hold each of its ports
    /// once, in the group of its bucket, with or without RSS.
    #[test]
    fn each_workers_ports_are_grouped_by_bucket_once() {
        for steering in [Steering::Partition, rss(&DEFAULT_RSS_KEY, 128, 3)] {
            let l = PortLayout::new(3, 1024..=9999, steering).unwrap();
            for w in 0..3 {
                let share = l.share(w);
                assert_eq!(share.start.len(), l.n_buckets() + 1);
                assert_eq!(*share.start.last().unwrap() as usize, share.ports.len());
                let mut longest = 0;
                for (b, group) in share.start.windows(2).enumerate() {
                    let group = &share.ports[group[0] as usize..group[1] as usize];
                    assert!(group.iter().all(|&p| l.bucket_of(p) == b), "bucket {b}");
                    longest = longest.max(group.len());
                }
                assert_eq!(share.max_bucket_len, longest);
                let mut got = share.ports.clone();
                got.sort_unstable();
                assert_eq!(got, l.worker_ports(w).collect::<Vec<_>>(), "worker {w}");
            }
        }
    }

    #[test]
    fn partition_owner_of_is_port_modulo() {
        let layout = PortLayout::new(3, DEFAULT_PORTS, Steering::Partition).unwrap();
        assert!(!layout.is_rss());
        for p in [1024u16, 1025, 1026, 40000, 65535] {
            assert_eq!(layout.owner_of(p), usize::from(p) % 3);
        }
        // Every port of the range belongs to exactly one share, and to its owner's share.
        let mut seen = 0;
        for w in 0..3 {
            for p in layout.worker_ports(w) {
                assert_eq!(layout.owner_of(p), w);
                seen += 1;
            }
        }
        assert_eq!(seen, 65535 - 1024 + 1);
        assert_eq!(
            layout.rss_worker(&ReplyTuple {
                src_ip: Ipv4Addr::new(10, 0, 0, 1),
                dst_ip: Ipv4Addr::new(10, 0, 1, 1),
                src_port: 80,
                dst_port: 1024,
            }),
            None
        );
    }

    #[test]
    #[allow(clippy::reversed_empty_ranges)] // an empty range is the point
    fn bad_configurations_are_refused() {
        assert_eq!(
            PortLayout::new(0, DEFAULT_PORTS, Steering::Partition).unwrap_err(),
            ConfigError::NoWorker
        );
        assert!(matches!(
            PortLayout::new(2, 2000..=1999, Steering::Partition).unwrap_err(),
            ConfigError::EmptyRange { .. }
        ));
        assert_eq!(
            PortLayout::new(4, 2000..=2002, Steering::Partition).unwrap_err(),
            ConfigError::EmptyShare(3)
        );
        // Two workers, but the RETA only names queue 0.
        let steering = Steering::Rss(RssConfig {
            key: DEFAULT_RSS_KEY.to_vec(),
            reta: Reta::new(vec![0; 128]).unwrap(),
            queues: QueueMap::identity(2),
        });
        assert_eq!(
            PortLayout::new(2, DEFAULT_PORTS, steering).unwrap_err(),
            ConfigError::NoRetaEntry(1)
        );
        assert!(matches!(
            PortLayout::new(2, DEFAULT_PORTS, rss(&[0; 8], 128, 2)).unwrap_err(),
            ConfigError::Key(_)
        ));
    }

    #[test]
    fn default_key_steers_common_setups() {
        for size in [64, 128, 512] {
            for workers in 1..=4 {
                assert!(PortLayout::new(
                    workers,
                    DEFAULT_PORTS,
                    rss(&DEFAULT_RSS_KEY, size, workers as u16)
                )
                .is_ok());
            }
        }
    }

    #[test]
    fn symmetric_key_steers() {
        // The repetitive key used for symmetric RSS (0x6d5a repeated, Woo & Park) still leaves
        // enough freedom in the destination port bits.
        let key: Vec<u8> = [0x6d, 0x5a].repeat(20);
        for size in [64, 128, 512] {
            for workers in 1..=4u16 {
                let r = PortLayout::new(
                    usize::from(workers),
                    DEFAULT_PORTS,
                    rss(&key, size, workers),
                );
                assert!(r.is_ok(), "size {size} workers {workers}: {:?}", r.err());
            }
        }
    }

    #[test]
    fn all_zero_key_is_unsteerable() {
        // Every hash is 0, so with two workers one of them never gets a reply through RSS.
        let err = PortLayout::new(2, DEFAULT_PORTS, rss(&[0; 40], 128, 2)).unwrap_err();
        assert!(matches!(err, ConfigError::Unsteerable { .. }), "{err:?}");
    }
}

//! The per-worker connection table: slab of entries, two-way index, timer wheel.
//!
//! One worker owns one table (DESIGN.md decision 5): no locks, no atomics, and after `new` no
//! allocation. Every entry is one 64-byte cache line, found from the client's tuple and, for
//! FullNAT and NAT, from the real server's reply tuple.

use super::index::{Index, MAX_LOAD_DEN, MAX_LOAD_NUM};
use super::rebind::Rebind;
use super::state::{self, Rows, State, StateChange, Timeouts, STATES};
use super::timer::{Ticks, TimerNode, TimerNodes, TimerWheel};
use super::tuple::{ConnKey, Dir, HashKey, HeldKey, Tuple, Tuple6, PROTO_TCP};
use crate::wire::checksum::Folded;
use std::borrow::Cow;
use std::sync::Arc;

/// The bits of an entry's state byte (the state takes the low four) that count, modulo 16, the
/// configuration changes the entry has followed (`rebind`): an entry whose count is not the
/// table's `epoch` still carries indices of a snapshot before the latest change.
const EPOCH_SHIFT: u32 = 4;
const EPOCH_MASK: u8 = 0xf0;
const _: () = assert!(STATES <= 1 << EPOCH_SHIFT);

/// Changes whose maps a table keeps while entries have not all followed them: a sixteenth would
/// make the four-bit count ambiguous, and finishes the walk first (`Table::begin_rebind`).
pub const MAX_PENDING_REBINDS: usize = 15;

/// Memory per connection when the index is at its maximum load (3/4): the entry, its two index
/// slots and its places in the queues of half-open connections, of connections in TIME_WAIT and
/// of unanswered UDP flows (86 bytes; the index is sized exactly, so this is the figure at every
/// capacity). The timer wheel adds a fixed 128 KiB per table.
pub const BYTES_PER_CONN_AT_MAX_LOAD: usize = core::mem::size_of::<Conn>()
    + 2 * core::mem::size_of::<u32>() * MAX_LOAD_DEN / MAX_LOAD_NUM
    + 3 * core::mem::size_of::<u32>();

/// A connection of the IPv4 table: one cache line.
pub type Conn = ConnOf<Tuple>;
/// The IPv4 table (DESIGN.md decision 7).
pub type ConnTable = Table<Tuple>;
/// A connection of the IPv6 table: two cache lines (its tuples are 38 bytes each); a table of its
/// own keeps the IPv4 entry at 64 bytes (issue 17, item 6).
pub type Conn6 = ConnOf<Tuple6>;
pub type ConnTable6 = Table<Tuple6>;

const _: () = assert!(core::mem::size_of::<Conn>() == 64 && BYTES_PER_CONN_AT_MAX_LOAD <= 128);

/// Largest capacity: ids need 30 bits, and the index's values (`id << 1 | dir`) 31, which leaves
/// the values with bit 31 set to `Candidate`'s markers.
pub const MAX_CAPACITY: u32 = 1 << 30;

/// Timer tick and wheel size: 10 ms x 8192 buckets = one revolution per ~82 s; longer timeouts
/// take rounds (an idle ESTABLISHED connection is looked at ~11 times in 900 s).
const TICK_MS: u64 = 10;
const WHEEL_BUCKETS_LOG2: u32 = 13;

/// Most lookups `lookup_batch` pipelines at once (a receive burst).
pub const BATCH: usize = 32;

/// Index of an entry in the table. Reused after the entry goes: callers must not keep one past
/// `remove` or the expiry callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u32);

impl ConnId {
    pub fn index(self) -> u32 {
        self.0
    }
}

/// Entry flag bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnFlags(u8);

impl ConnFlags {
    /// Slot holds a connection.
    const LIVE: u8 = 1 << 0;
    /// `reply` is meaningful (FullNAT, NAT).
    const HAS_REPLY: u8 = 1 << 1;
    /// IPVS `IP_VS_CONN_F_NOOUTPUT`: replies not seen (yet), client packets use the INPUT-ONLY rows.
    pub const INPUT_ONLY: ConnFlags = ConnFlags(1 << 2);
    /// Set by the table when a TCP connection first reaches ESTABLISHED, and when a UDP flow
    /// first gets an answer (a packet from the reply side: conntrack's ASSURED; for a flow whose
    /// answers bypass the gateway, what the datapath takes for one, `Table::mark_answered`); and
    /// when a handshake is parked (`Table::park`), which then no longer counts as half-open.
    pub const ESTABLISHED_SEEN: ConnFlags = ConnFlags(1 << 3);
    /// The TOA option has been inserted (set by the FullNAT datapath).
    pub const TOA_DONE: ConnFlags = ConnFlags(1 << 4);
    /// Free for the datapath.
    pub const USER_A: ConnFlags = ConnFlags(1 << 5);
    pub const USER_B: ConnFlags = ConnFlags(1 << 6);
    pub const USER_C: ConnFlags = ConnFlags(1 << 7);
    /// The bits `Conn::set_flags` may change.
    const USER_MASK: u8 = Self::TOA_DONE.0 | Self::USER_A.0 | Self::USER_B.0 | Self::USER_C.0;

    pub fn contains(self, other: ConnFlags) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn bits(self) -> u8 {
        self.0
    }
}

impl core::ops::BitOr for ConnFlags {
    type Output = ConnFlags;
    fn bitor(self, rhs: ConnFlags) -> ConnFlags {
        ConnFlags(self.0 | rhs.0)
    }
}

/// What a lookup done earlier in a burst (`lookup_batch`) found for a packet, when the packet's
/// turn comes: the tables may have changed meanwhile, by the packets before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prelookup {
    /// No earlier lookup, or one that can no longer be trusted: look up now.
    NotDone,
    /// Not in the table. Trusted only while no tuple has been added since (`Table::indexed`).
    Miss,
    /// This connection, sent from this side, if the entry holds the packet's tuple: checked
    /// against the entry before use (a packet before it may have removed the connection and its
    /// slot been reused; `Table::prelookup_hashed` gives the first candidate by hash bits alone),
    /// and looked up afresh if it does not.
    Hit(ConnId, Dir),
}

/// A [`Prelookup`] in one word, as a burst keeps one for each of its frames between its lookup
/// stage and its last (`Table::prelookup_hashed`): the index's value `id << 1 | dir` (below
/// 2^31, `conn::index`) for a hit, two values above it for the others. Kept as the enum, whose
/// fields are bytes apart, each frame's was stored a field at a time and put back together
/// from four loads (`perf/RESULTS.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate(u32);

impl Candidate {
    /// `Prelookup::NotDone`.
    pub const NOT_DONE: Candidate = Candidate(u32::MAX);
    /// `Prelookup::Miss`.
    const MISS: Candidate = Candidate(u32::MAX - 1);

    /// The lookup's finding.
    #[inline(always)]
    pub fn get(self) -> Prelookup {
        match self.0 {
            u32::MAX => Prelookup::NotDone,
            v if v == Self::MISS.0 => Prelookup::Miss,
            v => Prelookup::Hit(ConnId(v >> 1), dir_of(v)),
        }
    }

    /// The connection, if the lookup found one from its client's side (`Prelookup::Hit(id,
    /// Dir::Original)`): one test of the word (a hit is below 2^31, with the direction in its
    /// low bit), where the enum's took eight instructions to build and two to test.
    #[inline(always)]
    pub fn original(self) -> Option<ConnId> {
        (self.0 & (1 << 31 | 1) == 0).then_some(ConnId(self.0 >> 1))
    }

    /// The connection, if the lookup found one from its real server's side (`Prelookup::Hit(id,
    /// Dir::Reply)`), as `original` does.
    #[inline(always)]
    pub fn reply(self) -> Option<ConnId> {
        (self.0 & (1 << 31 | 1) == 1).then_some(ConnId(self.0 >> 1))
    }

    /// `NOT_DONE` for a miss no longer trusted (`fresh` false: tuples were added since the
    /// lookup, `Table::indexed`), else itself.
    #[inline(always)]
    pub fn unless_stale(self, fresh: bool) -> Candidate {
        if self == Self::MISS && !fresh {
            Self::NOT_DONE
        } else {
            self
        }
    }
}

impl From<Prelookup> for Candidate {
    fn from(p: Prelookup) -> Candidate {
        match p {
            Prelookup::NotDone => Candidate::NOT_DONE,
            Prelookup::Miss => Candidate::MISS,
            Prelookup::Hit(ConnId(id), dir) => {
                // Below `MAX_CAPACITY`, as every id the table gives: the value stays below the
                // markers.
                debug_assert!(id < MAX_CAPACITY, "connection id {id}");
                Candidate(id << 1 | (dir == Dir::Reply) as u32)
            }
        }
    }
}

impl From<Option<(ConnId, Dir)>> for Prelookup {
    /// A lookup's result, as found now.
    fn from(found: Option<(ConnId, Dir)>) -> Self {
        match found {
            Some((id, dir)) => Prelookup::Hit(id, dir),
            None => Prelookup::Miss,
        }
    }
}

/// One tracked connection: exactly one cache line. Its tuples are held with the checksum
/// deltas of its rewrite in the two bytes each tuple's padding leaves (`HeldKey`,
/// `rewrite_deltas`), which its established packets apply without summing the fields they
/// replace (perf/RESULTS.md).
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub struct ConnOf<T: ConnKey> {
    /// The client's tuple, and the change the rewrite towards the real server makes to an IPv4
    /// header's checksum (`rewrite_deltas`; 0 for IPv6, whose header has none).
    client: T::Held,
    /// The reply's tuple, and the change the rewrite towards the real server makes to a TCP or
    /// UDP checksum (`rewrite_deltas`).
    reply: T::Held,
    timer: TimerNode,
    /// Service index (opaque here).
    pub svc: u16,
    /// Real server index (opaque here).
    pub rs: u16,
    /// A word for the datapath (e.g. the client's last ACK); links the free list while the slot is
    /// free.
    pub user: u32,
    /// A second word for the datapath (e.g. the real server's last ACK): kept in the entry so the
    /// packet path touches one cache line per connection.
    pub user2: u32,
    /// Four bytes in one word, low to high: the forwarding mode id (opaque here, `mode`), the
    /// state with the count of changes followed (`EPOCH_MASK`), the flags (`ConnFlags`), and a
    /// byte for the datapath's extensions (the SYN proxy's mark, `ext`; 0 in a new entry). One
    /// word, so that a test of all four (`is`) reads it with one load: as four fields, the
    /// compiler read them one by one and put the word back together, 9 instructions a packet
    /// on the hot paths (perf/RESULTS.md).
    head: u32,
}

/// The bytes of `ConnOf::head`.
const MODE_SHIFT: u32 = 0;
const STATE_SHIFT: u32 = 8;
const FLAGS_SHIFT: u32 = 16;
const EXT_SHIFT: u32 = 24;

/// A `ConnOf::head` of these four bytes.
#[inline(always)]
const fn head_of(mode: u8, state: u8, flags: u8, ext: u8) -> u32 {
    (mode as u32) << MODE_SHIFT
        | (state as u32) << STATE_SHIFT
        | (flags as u32) << FLAGS_SHIFT
        | (ext as u32) << EXT_SHIFT
}

impl<T: ConnKey> ConnOf<T> {
    const FREE: ConnOf<T> = ConnOf {
        client: T::Held::EMPTY,
        reply: T::Held::EMPTY,
        timer: TimerNode::UNLINKED,
        svc: 0,
        rs: 0,
        user: 0,
        user2: 0,
        head: 0,
    };

    /// The forwarding mode id (opaque here).
    #[inline(always)]
    pub fn mode(&self) -> u8 {
        (self.head >> MODE_SHIFT) as u8
    }

    /// The datapath's extension byte (the SYN proxy's mark); 0 in a new entry.
    #[inline(always)]
    pub fn ext(&self) -> u8 {
        (self.head >> EXT_SHIFT) as u8
    }

    #[inline]
    pub fn set_ext(&mut self, ext: u8) {
        self.set_byte(EXT_SHIFT, ext);
    }

    /// The state byte, with the count of changes followed (`EPOCH_MASK`).
    #[inline(always)]
    fn state_byte(&self) -> u8 {
        (self.head >> STATE_SHIFT) as u8
    }

    #[inline(always)]
    fn flag_bits(&self) -> u8 {
        (self.head >> FLAGS_SHIFT) as u8
    }

    #[inline(always)]
    fn set_flag_bits(&mut self, flags: u8) {
        self.set_byte(FLAGS_SHIFT, flags);
    }

    #[inline(always)]
    fn set_byte(&mut self, shift: u32, b: u8) {
        self.head = (self.head & !(0xff << shift)) | u32::from(b) << shift;
    }

    /// CIP:cport -> VIP:vport, as packets arrive from the client.
    pub fn client(&self) -> T {
        self.client.key()
    }

    /// RIP:rport -> LIP:lport (FullNAT) as packets arrive from the real server, if tracked.
    pub fn reply(&self) -> Option<T> {
        (self.flag_bits() & ConnFlags::HAS_REPLY != 0).then_some(self.reply.key())
    }

    /// The checksum changes of the rewrite from the client's side to the real server's (the
    /// client's tuple to the reply's reversed, `ConnKey::rewrite_deltas`), kept in the tuples'
    /// spare bytes since the entry was made: the IPv4 header's, and TCP's or UDP's. Both 0 for
    /// an entry without a reply tuple. Reversed (`Folded::reversed`), those of the rewrite back.
    #[inline(always)]
    pub fn rewrite_deltas(&self) -> (Folded, Folded) {
        (
            Folded::from_bits(self.client.aux()),
            Folded::from_bits(self.reply.aux()),
        )
    }

    /// The tuple packets from `dir` carry (the client tuple when no reply tuple is tracked).
    pub fn tuple(&self, dir: Dir) -> T {
        match dir {
            Dir::Reply if self.flag_bits() & ConnFlags::HAS_REPLY != 0 => self.reply.key(),
            _ => self.client.key(),
        }
    }

    pub fn proto(&self) -> u8 {
        self.client().proto()
    }

    pub fn state(&self) -> State {
        State::from_u8(self.state_byte() & !EPOCH_MASK)
    }

    /// Whether the entry's forwarding mode is `mode`, its state `state`, its flags those of
    /// `flags.1` among `flags.0`, and its extension byte clear of `ext_clear`: the four bytes, one
    /// word in the entry (`head`), masked and compared at once, where four compares cost a load
    /// and a branch each (the established hot paths' test of their entry).
    #[inline(always)]
    pub fn is(&self, mode: u8, state: State, flags: (u8, u8), ext_clear: u8) -> bool {
        let mask = head_of(0xff, !EPOCH_MASK, flags.0, ext_clear);
        let want = head_of(mode, state as u8, flags.1 & flags.0, 0);
        self.head & mask == want
    }

    /// A live TCP entry that never reached ESTABLISHED: what a SYN flood leaves behind, and what
    /// `ConnTable::evict_embryonic` may take.
    pub fn is_embryonic(&self) -> bool {
        self.is_live()
            && self.client().proto() == PROTO_TCP
            && self.flag_bits() & ConnFlags::ESTABLISHED_SEEN.0 == 0
    }

    /// A live UDP flow not known to be in use: its server has not answered (FullNAT, NAT), or,
    /// when its answers bypass the gateway (DR, TUN), the datapath has not marked it answered
    /// ([`Table::mark_answered`]: its client sent a second datagram). What a spoofed UDP flood
    /// leaves behind, one datagram a flow, and what `Table::evict_closed` may take.
    pub fn is_unanswered_udp(&self) -> bool {
        self.is_live()
            && self.client().proto() != PROTO_TCP
            && self.flag_bits() & ConnFlags::ESTABLISHED_SEEN.0 == 0
    }

    /// Whether the real server counts this connection as active (see `State::is_active`).
    pub fn is_active(&self) -> bool {
        self.state().is_active()
    }

    pub fn flags(&self) -> ConnFlags {
        ConnFlags(self.flag_bits())
    }

    /// Sets the datapath's flags in `f` (`TOA_DONE`, `USER_*`); other bits are ignored.
    pub fn set_flags(&mut self, f: ConnFlags) {
        self.set_flag_bits(self.flag_bits() | (f.0 & ConnFlags::USER_MASK));
    }

    /// Clears the datapath's flags in `f`; other bits are ignored.
    pub fn clear_flags(&mut self, f: ConnFlags) {
        self.set_flag_bits(self.flag_bits() & !(f.0 & ConnFlags::USER_MASK));
    }

    /// When the connection expires unless another packet comes.
    pub fn deadline(&self) -> Ticks {
        self.timer.deadline()
    }

    fn is_live(&self) -> bool {
        self.flag_bits() & ConnFlags::LIVE != 0
    }

    /// Sets the state, keeping the entry's count of changes followed (`EPOCH_MASK`).
    fn set_state(&mut self, s: State) {
        self.set_byte(STATE_SHIFT, s as u8 | (self.state_byte() & EPOCH_MASK));
    }

    /// Whether the entry still carries the indices of a snapshot before the latest change
    /// (`epoch`: the table's count, in the state byte's place).
    #[inline(always)]
    fn is_behind(&self, epoch: u8) -> bool {
        self.state_byte() & EPOCH_MASK != epoch
    }

    /// Gives the entry the indices of the latest change, `maps` being the changes not every entry
    /// has followed, oldest first (the entry has followed the ones before its count), and the
    /// table's count `epoch`.
    #[inline]
    fn follow(&mut self, maps: &[Arc<Rebind>], epoch: u8) {
        let behind = usize::from(epoch.wrapping_sub(self.state_byte() & EPOCH_MASK) >> EPOCH_SHIFT);
        debug_assert!(behind <= maps.len(), "an entry behind the changes kept");
        for r in &maps[maps.len().saturating_sub(behind)..] {
            (self.svc, self.rs) = r.apply(self.svc, self.rs);
        }
        self.set_byte(STATE_SHIFT, (self.state_byte() & !EPOCH_MASK) | epoch);
    }
}

/// The slab as the timer wheel sees it.
impl<T: ConnKey> TimerNodes for Vec<ConnOf<T>> {
    fn node(&self, id: u32) -> &TimerNode {
        &self[id as usize].timer
    }
    fn node_mut(&mut self, id: u32) -> &mut TimerNode {
        &mut self[id as usize].timer
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    #[error("connection table full")]
    TableFull,
    #[error("a connection with this tuple exists")]
    Duplicate,
}

/// Why `expire` hands an entry back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpireReason {
    /// Its state's idle timeout passed without a packet.
    Timeout,
}

/// Per-table event counts (per worker, read by the control plane).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub created: u64,
    pub expired: u64,
    pub removed: u64,
    pub table_full: u64,
    pub duplicates: u64,
    /// Half-open entries removed to make room for a new connection (`evict_embryonic`).
    pub evicted_embryonic: u64,
    /// TIME_WAIT entries, and UDP flows with no answer, removed to make room in a full table
    /// (`evict_closed`).
    pub evicted_time_wait: u64,
    pub evicted_udp: u64,
}

/// Ids `evict_embryonic` takes from the half-open queue before it gives up: bounded work per new
/// connection. Ids it passes over (their connection was established or is gone) leave the queue
/// for good, so the work is constant per connection on average.
pub const EVICT_SCAN: usize = 256;

/// Free-list end marker.
const NONE: u32 = u32::MAX;

/// A ring of entry ids in the order they were pushed, oldest first, `capacity` long: when full,
/// a push drops the oldest id (its entry then leaves by its timer). Ids are not removed when
/// their entries go; whoever pops one checks it.
struct IdRing {
    ids: Vec<u32>,
    head: u32,
    len: u32,
}

impl IdRing {
    fn new(capacity: u32) -> IdRing {
        IdRing {
            ids: crate::bigmem::filled(capacity as usize, 0),
            head: 0,
            len: 0,
        }
    }

    fn push(&mut self, id: u32) {
        let cap = self.ids.len() as u32;
        if cap == 0 {
            return;
        }
        if self.len == cap {
            self.head = (self.head + 1) % cap;
            self.len -= 1;
        }
        let tail = (self.head + self.len) % cap;
        self.ids[tail as usize] = id;
        self.len += 1;
    }

    fn pop(&mut self) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let id = self.ids[self.head as usize];
        self.head = (self.head + 1) % self.ids.len() as u32;
        self.len -= 1;
        Some(id)
    }

    fn memory_bytes(&self) -> usize {
        self.ids.len() * core::mem::size_of::<u32>()
    }
}

pub struct Table<T: ConnKey> {
    slab: Vec<ConnOf<T>>,
    /// Free slots, linked through their `user` field; LIFO so a reused slot is likely cached.
    free_head: u32,
    len: u32,
    index: Index,
    wheel: TimerWheel,
    key: HashKey,
    timeouts: Timeouts,
    timeout_ms: [u64; STATES],
    counters: Counters,
    /// Live TCP entries that never reached ESTABLISHED (`is_embryonic`).
    half_open: u32,
    /// The ids of TCP entries in the order they were created, oldest first (a ring of `capacity`;
    /// when full the oldest id is dropped): where `evict_embryonic` finds a half-open entry. An
    /// id may be stale (its entry established or gone); it is checked when taken.
    half_open_queue: IdRing,
    /// The ids of entries in the order they entered TIME_WAIT, oldest first, and of UDP flows in
    /// the order they were created: where `evict_closed` finds one when
    /// the table is full. Two queues, so that the many UDP flows answered since (stale ids, as
    /// those of connections gone, checked when taken) do not hide the connections in TIME_WAIT
    /// from a scan of `EVICT_SCAN` ids.
    time_wait_queue: IdRing,
    udp_queue: IdRing,
    /// Tuples ever added to the index: a lookup that missed still misses while this is unchanged.
    indexed: u64,
    /// The configuration changes' maps that live entries behind them (`ConnOf::is_behind`) may
    /// not have followed yet, oldest first (at most `MAX_PENDING_REBINDS`, room for all of them
    /// taken at creation), and the next slot the walk looks at (`rebind`).
    rebinds: Vec<Arc<Rebind>>,
    rebind_at: u32,
    /// The count of changes of entries that follow the latest one, in the state byte's place.
    epoch: u8,
    /// Why `get_mut_hot` gives nothing, if it does not: `HOT_OFF_REBINDING` while a rebind is
    /// pending, `HOT_OFF_BY_OWNER` while the owner has the hot paths off (`set_hot_paths`). One
    /// byte the hot paths test, where a rebind and a sync log took a test each.
    hot_off: u8,
}

/// ESTABLISHED's deadline at one moment (`Table::hot_deadline`): what the hot path re-arms an
/// entry's timer with, in the entry itself (`refresh`), without the timer wheel's index of the
/// entry in the slab and its bounds (`reply-burst-net` 400 -> 395). Computed once a burst, the
/// clock being the same for all its packets, where each packet added the timeout to the clock
/// (`established-burst-net` 301 -> 300).
#[derive(Clone, Copy, Debug)]
pub struct HotDeadline(Ticks);

impl HotDeadline {
    /// `Table::refresh_established` for entry `c` (one `get_mut_hot` gave) at the moment this
    /// deadline was computed for, if its timer's deadline is no later than this one, as it is
    /// for most packets of an established connection: false, nothing changed, otherwise (the
    /// first packet after its timeout was shortened, an entry a backup restored with more time
    /// left than the timeout), and the caller calls `refresh_established`. A live entry's timer
    /// is always armed (`TimerNode::extend_armed`).
    #[inline(always)]
    pub fn refresh<T: ConnKey>(self, c: &mut ConnOf<T>) -> bool {
        debug_assert!(c.is_live(), "not a live entry");
        c.timer.extend_armed(self.0)
    }
}

/// ESTABLISHED's deadline at `now` with its timeout `timeout_ms`: a plain add, not `after_ms`'s
/// saturating one. A timeout is at most 2^32 - 1 seconds (`Timeouts::to_ms`) and the clock
/// counts milliseconds since the daemon started, so the sum is far from overflowing (with the
/// admission's one view of the headers, `established-burst-net` 379 -> 377).
#[inline(always)]
fn established_deadline(now: Ticks, timeout_ms: u64) -> Ticks {
    Ticks(now.0 + timeout_ms)
}

/// `Table::hot_off`: a rebind is pending (`rebinds` is not empty).
const HOT_OFF_REBINDING: u8 = 1;
/// `Table::hot_off`: the owner turned the hot paths off (`Table::set_hot_paths`).
const HOT_OFF_BY_OWNER: u8 = 2;

impl<T: ConnKey> Table<T> {
    /// A table for `capacity` connections with a fresh random hash key, its clock starting at 0.
    ///
    /// # Panics
    /// If `capacity > MAX_CAPACITY` (the config validation bounds it first).
    pub fn new(capacity: u32, timeouts: Timeouts) -> Table<T> {
        Self::with_key(capacity, timeouts, HashKey::random(), Ticks(0))
    }

    /// As `new`, with a given key and start time (tests, benchmarks, a clock not starting at 0).
    pub fn with_key(capacity: u32, timeouts: Timeouts, key: HashKey, now: Ticks) -> Table<T> {
        assert!(capacity <= MAX_CAPACITY, "capacity above {MAX_CAPACITY}");
        let mut slab = crate::bigmem::filled(capacity as usize, ConnOf::FREE);
        for (i, c) in slab.iter_mut().enumerate() {
            c.user = if i + 1 < capacity as usize {
                i as u32 + 1
            } else {
                NONE
            };
        }
        Table {
            slab,
            free_head: if capacity > 0 { 0 } else { NONE },
            len: 0,
            index: Index::with_max_items(2 * capacity as usize, 2 * capacity),
            wheel: TimerWheel::new(capacity, WHEEL_BUCKETS_LOG2, TICK_MS, now),
            key,
            timeouts,
            timeout_ms: timeouts.to_ms(),
            counters: Counters::default(),
            half_open: 0,
            half_open_queue: IdRing::new(capacity),
            time_wait_queue: IdRing::new(capacity),
            udp_queue: IdRing::new(capacity),
            indexed: 0,
            rebinds: Vec::with_capacity(MAX_PENDING_REBINDS),
            rebind_at: 0,
            epoch: 0,
            hot_off: 0,
        }
    }

    /// Turns the owner's hot paths on or off: while off, `get_mut_hot` gives nothing (the
    /// FullNAT forwarder's, while a sync log must see every packet, `Forwarder::set_sync`).
    pub fn set_hot_paths(&mut self, on: bool) {
        if on {
            self.hot_off &= !HOT_OFF_BY_OWNER;
        } else {
            self.hot_off |= HOT_OFF_BY_OWNER;
        }
    }

    /// `rebinds` changed: `hot_off`'s part of it follows.
    fn rebinds_changed(&mut self) {
        if self.rebinds.is_empty() {
            self.hot_off &= !HOT_OFF_REBINDING;
        } else {
            self.hot_off |= HOT_OFF_REBINDING;
        }
    }

    /// Live TCP entries that have not reached ESTABLISHED: half-open handshakes, most of them
    /// spoofed under a SYN flood.
    pub fn half_open(&self) -> usize {
        self.half_open as usize
    }

    /// Removes the oldest half-open entry to make room (Linux conntrack's early drop), taking at
    /// most [`EVICT_SCAN`] ids from the half-open queue, and returns it for the caller to release
    /// its resources. An entry that ever reached ESTABLISHED is never taken.
    pub fn evict_embryonic(&mut self) -> Option<ConnOf<T>> {
        if self.half_open == 0 {
            return None;
        }
        for _ in 0..EVICT_SCAN {
            let id = self.half_open_queue.pop()?;
            if self.slab[id as usize].is_embryonic() {
                let c = self.remove(ConnId(id))?;
                self.counters.evicted_embryonic += 1;
                return Some(c);
            }
        }
        None
    }

    /// Removes the entry that entered TIME_WAIT first, else the oldest UDP flow that never got
    /// an answer, to make room, taking at most [`EVICT_SCAN`] ids from each queue, and returns
    /// it for the caller to release its resources.
    ///
    /// - A connection in TIME_WAIT carries no data: both sides have closed, and the entry only
    ///   keeps its tuples (and a parked entry its local port) from reuse for TIME_WAIT's timeout,
    ///   120 s (Linux's `tcp_max_tw_buckets` bounds TIME_WAIT sockets too).
    /// - A UDP flow its server never answered (FullNAT, NAT), or that had one datagram only (DR,
    ///   TUN: the answers bypass the gateway), is what a spoofed UDP flood leaves, for UDP's
    ///   timeout of 300 s (conntrack's early drop takes the flows it has not seen ASSURED).
    ///
    /// Without this, a table full of them refuses every new connection, of every service, until
    /// they expire.
    pub fn evict_closed(&mut self) -> Option<ConnOf<T>> {
        if let Some(c) = self.evict_time_wait() {
            return Some(c);
        }
        let id = Self::oldest(&mut self.udp_queue, &self.slab, ConnOf::is_unanswered_udp)?;
        self.counters.evicted_udp += 1;
        self.remove(ConnId(id))
    }

    /// [`evict_closed`](Self::evict_closed)'s first choice alone: the entry that entered
    /// TIME_WAIT first, if one is found among [`EVICT_SCAN`] ids of its queue.
    pub fn evict_time_wait(&mut self) -> Option<ConnOf<T>> {
        let id = Self::oldest(&mut self.time_wait_queue, &self.slab, |c| {
            c.is_live() && c.state() == State::TimeWait
        })?;
        self.counters.evicted_time_wait += 1;
        self.remove(ConnId(id))
    }

    /// The first id of `queue` whose entry is `wanted`, taking at most [`EVICT_SCAN`] ids
    /// from it (those passed over leave it for good).
    fn oldest(
        queue: &mut IdRing,
        slab: &[ConnOf<T>],
        wanted: impl Fn(&ConnOf<T>) -> bool,
    ) -> Option<u32> {
        (0..EVICT_SCAN)
            .map_while(|_| queue.pop())
            .find(|&id| wanted(&slab[id as usize]))
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.slab.len()
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// New timeouts apply from each connection's next packet.
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.timeouts = timeouts;
        self.timeout_ms = timeouts.to_ms();
    }

    /// Bytes held: entries, index and wheel.
    pub fn memory_bytes(&self) -> usize {
        self.slab.len() * core::mem::size_of::<ConnOf<T>>()
            + self.half_open_queue.memory_bytes()
            + self.time_wait_queue.memory_bytes()
            + self.udp_queue.memory_bytes()
            + self.index.memory_bytes()
            + self.wheel.memory_bytes()
    }

    #[inline]
    fn h32(&self, t: &T) -> u32 {
        h32(&self.key, t)
    }

    #[inline]
    fn probe(&self, h32: u32, t: &T) -> Option<(ConnId, Dir)> {
        let slab = &self.slab;
        self.index
            .find(h32, |v| slab[(v >> 1) as usize].tuple(dir_of(v)) == *t)
            .map(|v| (ConnId(v >> 1), dir_of(v)))
    }

    /// Tuples ever added to the index (a lookup that missed still misses while this is unchanged:
    /// the burst pipeline need not look a miss up again).
    #[inline]
    pub fn indexed(&self) -> u64 {
        self.indexed
    }

    /// The connection a packet with tuple `t` belongs to, and which side sent it.
    #[inline(always)]
    pub fn lookup(&self, t: &T) -> Option<(ConnId, Dir)> {
        self.probe(self.h32(t), t)
    }

    /// The connection of tuple `t` given what an earlier lookup in the burst found (`pre`): a
    /// candidate is taken only if its entry holds `t` from that side, a miss is trusted (the
    /// caller turns one into `NotDone` once tuples were added), anything else is looked up now.
    #[inline(always)]
    pub fn resolve(&self, t: &T, pre: Prelookup) -> Option<(ConnId, Dir)> {
        match pre {
            Prelookup::Hit(id, dir) if self.holds(id, dir, t) => Some((id, dir)),
            Prelookup::Miss => None,
            _ => self.lookup(t),
        }
    }

    /// `lookup` for a burst, `out[i]` for `tuples[i]` (both as long as the shorter); what a packet's
    /// turn then makes of its result is a [`Prelookup`]. Works in
    /// groups of [`BATCH`]: hash all, load each first index slot, load each candidate entry, then
    /// finish each probe. The early loads are independent, so their cache misses overlap instead
    /// of queueing (VPP's pipelined lookups; stable Rust has no safe prefetch instruction, plain
    /// loads do the same job within the CPU's out-of-order window).
    pub fn lookup_batch(&self, tuples: &[T], out: &mut [Option<(ConnId, Dir)>]) {
        for (ts, os) in tuples.chunks(BATCH).zip(out.chunks_mut(BATCH)) {
            let n = ts.len().min(os.len());
            let mut h = [0u32; BATCH];
            let mut first = [0u32; BATCH];
            for i in 0..n {
                h[i] = self.h32(&ts[i]);
                first[i] = self.index.first_slot(h[i]);
            }
            core::hint::black_box(&first);
            // The first candidate by hash bits (its index line is loaded by now): load its entry.
            let mut warm = [0u32; BATCH];
            for i in 0..n {
                if let Some(v) = self.index.find(h[i], |_| true) {
                    warm[i] = self.slab[(v >> 1) as usize].client().warm();
                }
            }
            core::hint::black_box(&warm);
            for i in 0..n {
                os[i] = self.probe(h[i], &ts[i]);
            }
        }
    }

    /// The burst pipeline's lookup, in two stages, with a real prefetch: `prefetch(addr)` must
    /// hint the CPU to load that cache line (the `dpdk` module has one). This first stage hashes a
    /// tuple and prefetches its home index slot; the burst loop calls it as it parses each
    /// frame, and keeps the 4-byte hash, not the tuple (perf/RESULTS.md, "What bounds macswap's
    /// rate; a round's own work, a burst's hashes, ...": the datapath's cycles a packet 82.5 ->
    /// 78.9 with the ports' MAC words, IPv6's 134.9 -> 118.4). The second,
    /// [`Table::prelookup_hashed`], reads those slots and, for each hash, takes the first entry
    /// whose hash bits match as its candidate ([`Candidate`], a hit), and prefetches it.
    ///
    /// No tuple is compared there: a hit is checked against the entry when the
    /// packet's turn comes (as it must be anyway: a packet before it may have removed the entry),
    /// and a candidate that is not the tuple's falls back to a full lookup. So each entry is
    /// first read in the forwarding stage, and its miss overlaps the forwarding of the packets
    /// before it instead of stalling a third stage (at 10M connections the lookup stage took 100
    /// cycles a packet more than at 1K). `Prelookup::Miss` is exact: no slot of the probe carries
    /// the tuple's hash bits, so a full probe would not find it either.
    ///
    /// Both always inlined: the worker's burst loop inlines them, and the harness that counts its
    /// instructions (`perf/cost.sh`) had called the lookup, with more of its state spilled to the
    /// stack (12 instructions a packet more after ac6f3b3 moved code between codegen units).
    #[inline(always)]
    pub fn prehash(&self, t: &T, prefetch: impl Fn(*const u8)) -> u32 {
        let h = self.h32(t);
        prefetch(self.index.first_slot_addr(h));
        h
    }

    /// The lookup's second stage ([`Table::prehash`] says the whole): for each hash, the first
    /// entry whose hash bits match, prefetched, as the candidate, given to `put(i, candidate)` for
    /// `hashes[i]`.
    #[inline(always)]
    pub fn prelookup_hashed(
        &self,
        hashes: &[u32],
        mut put: impl FnMut(usize, Candidate),
        prefetch: impl Fn(*const u8),
    ) {
        for (i, &hi) in hashes.iter().enumerate() {
            let found = match self.index.find(hi, |_| true) {
                Some(v) => {
                    // The entry's address computed, not its slot borrowed: a prefetch reads
                    // nothing, so the index's id needs no bounds check here (the hot path's
                    // `Table::get_mut_hot` checks it).
                    let at = self.slab.as_ptr().wrapping_add((v >> 1) as usize) as *const u8;
                    prefetch(at);
                    // An IPv6 entry takes two lines (`Tuple6`): the state is in the second.
                    // Folded away for the one-line IPv4 entry.
                    if core::mem::size_of::<ConnOf<T>>() > 64 {
                        prefetch(at.wrapping_add(64));
                    }
                    Candidate(v)
                }
                None => Candidate::MISS,
            };
            put(i, found);
        }
    }

    /// Adds a connection in state NONE (TCP) or UDP, its timer armed with that state's timeout.
    /// `reply` is the tuple replies arrive with (FullNAT, NAT); `None` (DR, TUN) selects the
    /// INPUT-ONLY TCP rows. Refuses a tuple already present (in either role) and counts it.
    pub fn insert(
        &mut self,
        client: T,
        reply: Option<T>,
        svc: u16,
        rs: u16,
        mode: u8,
        now: Ticks,
    ) -> Result<ConnId, InsertError> {
        self.insert_inner(client, reply, svc, rs, mode, now, true)
    }

    /// `insert` for a caller that has just looked both tuples up and found neither (the FullNAT
    /// datapath: the client tuple missed in `lookup`, the reply tuple was offered to the port
    /// allocator's `in_use`): skips the two duplicate probes, each a likely cache miss in a large
    /// table. Debug builds still check.
    pub fn insert_known_absent(
        &mut self,
        client: T,
        reply: Option<T>,
        svc: u16,
        rs: u16,
        mode: u8,
        now: Ticks,
    ) -> Result<ConnId, InsertError> {
        self.insert_inner(client, reply, svc, rs, mode, now, cfg!(debug_assertions))
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn insert_inner(
        &mut self,
        client: T,
        reply: Option<T>,
        svc: u16,
        rs: u16,
        mode: u8,
        now: Ticks,
        check: bool,
    ) -> Result<ConnId, InsertError> {
        let hc = self.h32(&client);
        let hr = reply.map(|r| self.h32(&r));
        let dup = check
            && (self.probe(hc, &client).is_some()
                || match (reply, hr) {
                    (Some(r), Some(h)) => r == client || self.probe(h, &r).is_some(),
                    _ => false,
                });
        if dup {
            self.counters.duplicates += 1;
            return Err(InsertError::Duplicate);
        }
        let id = self.free_head;
        if id == NONE {
            self.counters.table_full += 1;
            return Err(InsertError::TableFull);
        }
        let state = if client.proto() == PROTO_TCP {
            State::None
        } else {
            State::Udp
        };
        let slot = &mut self.slab[id as usize];
        self.free_head = slot.user;
        let mut flags = ConnFlags::LIVE;
        if reply.is_some() {
            flags |= ConnFlags::HAS_REPLY;
        } else {
            flags |= ConnFlags::INPUT_ONLY.0;
        }
        let (client, reply) = held(client, reply);
        *slot = ConnOf {
            client,
            reply,
            timer: TimerNode::UNLINKED,
            svc,
            rs,
            user: 0,
            user2: 0,
            head: head_of(mode, state as u8 | self.epoch, flags, 0),
        };
        self.index.insert(hc, id << 1);
        if let Some(h) = hr {
            self.index.insert(h, (id << 1) | 1);
        }
        self.indexed += 1;
        let deadline = now.after_ms(self.timeout_ms[state as usize]);
        self.wheel.arm(&mut self.slab, id, deadline);
        self.len += 1;
        if state == State::None {
            self.half_open += 1;
            self.half_open_queue.push(id);
        } else {
            // A UDP flow: evictable until answered (`evict_closed`).
            self.udp_queue.push(id);
        }
        self.counters.created += 1;
        Ok(ConnId(id))
    }

    /// Inserts a connection another box tracked (HA sync, `conn::record`): in `state`, expiring
    /// `remaining_ms` from `now`, as if its packets had been seen here. A TCP connection past the
    /// handshake does not count as half-open.
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        &mut self,
        client: T,
        reply: Option<T>,
        svc: u16,
        rs: u16,
        mode: u8,
        state: State,
        remaining_ms: u32,
        now: Ticks,
    ) -> Result<ConnId, InsertError> {
        let id = self.insert(client, reply, svc, rs, mode, now)?;
        self.refresh(id, state, remaining_ms, now);
        Ok(id)
    }

    /// A restored entry heard of again (HA sync): in `state` as the other box has it, expiring
    /// `remaining_ms` from `now`. A TCP entry that passes the handshake stops counting as
    /// half-open, as in `on_packet`; a UDP flow counts as answered. A dead `id` is left alone.
    pub fn refresh(&mut self, id: ConnId, state: State, remaining_ms: u32, now: Ticks) {
        let Some(c) = self.slab.get_mut(id.0 as usize).filter(|c| c.is_live()) else {
            return;
        };
        let handshake = matches!(state, State::None | State::SynSent | State::SynRecv);
        let enters_time_wait = state == State::TimeWait && c.state() != State::TimeWait;
        c.set_state(state);
        // A TCP entry past the handshake stops counting as half-open. A UDP flow the other box
        // kept is taken as answered: its record does not say, and it is not a flood's to evict.
        let tcp = c.client().proto() == PROTO_TCP;
        if (!tcp || !handshake) && c.flag_bits() & ConnFlags::ESTABLISHED_SEEN.0 == 0 {
            c.set_flag_bits(c.flag_bits() | ConnFlags::ESTABLISHED_SEEN.0);
            self.half_open -= u32::from(tcp);
        }
        if enters_time_wait {
            self.time_wait_queue.push(id.0);
        }
        self.wheel
            .rearm(&mut self.slab, id.0, now.after_ms(u64::from(remaining_ms)));
    }

    /// A UDP flow whose answers bypass the gateway (DR, TUN) is in use (its client sent a second
    /// datagram): not the flood `evict_closed` makes room from, as an answered flow. Anything
    /// else is left alone.
    pub fn mark_answered(&mut self, id: ConnId) {
        if let Some(c) = self.get_mut(id).filter(|c| c.client().proto() != PROTO_TCP) {
            c.set_flag_bits(c.flag_bits() | ConnFlags::ESTABLISHED_SEEN.0);
        }
    }

    /// The live entry `id`, if any, with the indices of the latest snapshot: borrowed, or, while
    /// a rebind is pending and the entry has not followed it, a copy that has (`rebind`).
    #[inline]
    pub fn get(&self, id: ConnId) -> Option<Cow<'_, ConnOf<T>>> {
        let c = self.slab.get(id.0 as usize).filter(|c| c.is_live())?;
        Some(self.as_current(c))
    }

    /// Whether live entry `id` holds tuple `t` from side `dir` (as its reply tuple: an entry
    /// without one holds none from that side): what a candidate from a burst's lookup is checked
    /// with (`Prelookup::Hit`). Reads no index a rebind moves.
    #[inline(always)]
    pub fn holds(&self, id: ConnId, dir: Dir, t: &T) -> bool {
        self.slab.get(id.0 as usize).is_some_and(|c| {
            c.is_live()
                && match dir {
                    Dir::Original => c.client.holds(t),
                    Dir::Reply => c.flag_bits() & ConnFlags::HAS_REPLY != 0 && c.reply.holds(t),
                }
        })
    }

    /// The live entry `id`, if any, having followed a pending rebind. Always inlined, the
    /// following out of line: grown by it, the call stayed a call on the hot path (21
    /// instructions a packet more in `reply-burst-1k`).
    #[inline(always)]
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut ConnOf<T>> {
        let c = self.slab.get_mut(id.0 as usize).filter(|c| c.is_live())?;
        if !self.rebinds.is_empty() && c.is_behind(self.epoch) {
            follow_now(c, &self.rebinds, self.epoch);
        }
        Some(c)
    }

    /// The live entry `id`, for a hot path: none while the hot paths are off (`hot_off`: a rebind
    /// pending, or the owner's choice), so that the entry it gives has followed every change.
    /// One test of one byte where `get_mut`'s test of a pending rebind and the owner's of its
    /// sync log took two loads and two tests (`established-burst-net` 377 -> 376,
    /// `reply-burst-net` 400 -> 398).
    #[inline(always)]
    pub fn get_mut_hot(&mut self, id: ConnId) -> Option<&mut ConnOf<T>> {
        if self.hot_off != 0 {
            return None;
        }
        debug_assert!(self.rebinds.is_empty());
        self.slab.get_mut(id.0 as usize).filter(|c| c.is_live())
    }

    /// ESTABLISHED's deadline at `now`, for the hot path's re-arming of an entry's timer
    /// (`HotDeadline::refresh`): a burst's, computed once for all its packets.
    #[inline(always)]
    pub fn hot_deadline(&self, now: Ticks) -> HotDeadline {
        HotDeadline(established_deadline(
            now,
            self.timeout_ms[State::Established as usize],
        ))
    }

    /// The live entry `id`, if any, having followed a pending rebind, borrowed: `get` for a caller
    /// that holds the table mutably, without the copy-on-write's cost.
    #[inline]
    pub fn get_current(&mut self, id: ConnId) -> Option<&ConnOf<T>> {
        self.get_mut(id).map(|c| &*c)
    }

    /// `c` as it is once it has followed a pending rebind: itself, or a copy that has.
    #[inline(always)]
    fn as_current<'a>(&'a self, c: &'a ConnOf<T>) -> Cow<'a, ConnOf<T>> {
        if !self.rebinds.is_empty() && c.is_behind(self.epoch) {
            let mut moved = *c;
            follow_now(&mut moved, &self.rebinds, self.epoch);
            Cow::Owned(moved)
        } else {
            Cow::Borrowed(c)
        }
    }

    /// Live entry `id` follows a pending rebind now (a no-op for a dead or current one): before
    /// [`get_settled`](Self::get_settled).
    #[inline]
    pub fn settle(&mut self, id: ConnId) {
        let _ = self.get_mut(id);
    }

    /// The live entry `id` as the slab holds it, for a caller that has just settled it
    /// ([`settle`](Self::settle)) and reads it where [`get`](Self::get)'s copy-on-write costs:
    /// IPv6's hot path, where it took 57 instructions a packet (the enum moved whole, its fields
    /// read through a choice of two pointers).
    #[inline(always)]
    pub fn get_settled(&self, id: ConnId) -> Option<&ConnOf<T>> {
        let c = self.slab.get(id.0 as usize).filter(|c| c.is_live())?;
        debug_assert!(
            self.rebinds.is_empty() || !c.is_behind(self.epoch),
            "entry {id:?} read before it followed the pending rebind"
        );
        Some(c)
    }

    /// Takes a configuration change's map of indices (`rebind`): every live entry is behind it
    /// until settled (`get_mut` and the others that settle in place) or walked (`rebind_step`),
    /// `get` and `iter_range` giving a copy that has followed it meanwhile; the walk starts again
    /// from the first slot.
    /// With [`MAX_PENDING_REBINDS`] changes pending, the walk is finished first, at once; returns
    /// whether it was (`conn_rebinds_hurried`). An empty table has nothing to rebind.
    pub fn begin_rebind(&mut self, r: Arc<Rebind>) -> bool {
        if self.len == 0 {
            // No entry to follow any of them.
            self.rebinds.clear();
            self.rebinds_changed();
            return false;
        }
        let hurried = self.rebinds.len() == MAX_PENDING_REBINDS;
        if hurried {
            self.rebind_step(u32::MAX);
        }
        self.epoch = self.epoch.wrapping_add(1 << EPOCH_SHIFT);
        self.rebinds.push(r);
        self.rebinds_changed();
        self.rebind_at = 0;
        hurried
    }

    /// Walks up to `slots` more slots of the pending changes, each live entry behind them made to
    /// follow them; the changes are forgotten at the slab's end. Returns whether any was pending.
    #[inline(always)]
    pub fn rebind_step(&mut self, slots: u32) -> bool {
        // Checked inline, the walk out of line: the worker asks every poll round, and the call
        // to learn that nothing was pending took 0.58% of its samples (perf/RESULTS.md, "What
        // bounds macswap's rate; a round's own work, ...").
        if self.rebinds.is_empty() {
            return false;
        }
        self.rebind_walk(slots);
        true
    }

    /// `rebind_step`'s slice of the walk, a rebind pending.
    #[inline(never)]
    fn rebind_walk(&mut self, slots: u32) {
        let Table {
            slab,
            rebinds,
            rebind_at,
            epoch,
            ..
        } = self;
        let start = *rebind_at as usize;
        let end = start.saturating_add(slots as usize).min(slab.len());
        for c in &mut slab[start..end] {
            if c.is_live() && c.is_behind(*epoch) {
                c.follow(rebinds, *epoch);
            }
        }
        *rebind_at = end as u32;
        if end == slab.len() {
            rebinds.clear();
            self.rebinds_changed();
        }
    }

    /// Whether a rebind is pending (its walk has not ended).
    pub fn rebinding(&self) -> bool {
        !self.rebinds.is_empty()
    }

    /// Updates the state for a packet from `dir` with TCP flags `tcp_flags` (ignored for UDP)
    /// and re-arms the timer with the new state's timeout from `now` (IPVS `set_tcp_state`).
    /// A dead `id` reports no change. Inlined: it runs on every packet, and left to itself the
    /// compiler called it from the IPv6 path (about 20 instructions a packet more there), and
    /// from IPv4's once the established hot path made `forward`'s callers larger (a SYN 10 more).
    #[inline(always)]
    pub fn on_packet(&mut self, id: ConnId, dir: Dir, tcp_flags: u8, now: Ticks) -> StateChange {
        let Some(c) = self.slab.get_mut(id.0 as usize).filter(|c| c.is_live()) else {
            return StateChange {
                old: State::Close,
                new: State::Close,
            };
        };
        let old = c.state();
        let new = if c.client().proto() == PROTO_TCP {
            // IPVS: a reply packet clears NOOUTPUT for good; until then client packets use the
            // INPUT-ONLY rows.
            let rows = match dir {
                Dir::Reply => {
                    c.set_flag_bits(c.flag_bits() & !ConnFlags::INPUT_ONLY.0);
                    Rows::Output
                }
                Dir::Original if c.flag_bits() & ConnFlags::INPUT_ONLY.0 != 0 => Rows::InputOnly,
                Dir::Original => Rows::Input,
            };
            state::tcp_next(rows, tcp_flags, old)
        } else {
            if dir == Dir::Reply {
                c.set_flag_bits(c.flag_bits() | ConnFlags::ESTABLISHED_SEEN.0);
            }
            State::Udp
        };
        c.set_state(new);
        if new == State::Established && c.flag_bits() & ConnFlags::ESTABLISHED_SEEN.0 == 0 {
            c.set_flag_bits(c.flag_bits() | ConnFlags::ESTABLISHED_SEEN.0);
            self.half_open -= u32::from(c.client().proto() == PROTO_TCP);
        }
        if new == State::TimeWait && old != State::TimeWait {
            self.time_wait_queue.push(id.0);
        }
        let deadline = now.after_ms(self.timeout_ms[new as usize]);
        self.wheel.rearm(&mut self.slab, id.0, deadline);
        StateChange { old, new }
    }

    /// `on_packet` for a TCP segment that leaves an established connection established: the
    /// caller has seen the entry live in state ESTABLISHED with `ESTABLISHED_SEEN` set and
    /// `INPUT_ONLY` clear, and the segment carry ACK and none of SYN, FIN and RST, which every
    /// row of the state table maps from ESTABLISHED to ESTABLISHED (`state::tests`). So only the
    /// timer is re-armed, with ESTABLISHED's timeout from `now`. Always inlined: the worker's
    /// burst loop had called it.
    #[inline(always)]
    pub fn refresh_established(&mut self, id: ConnId, now: Ticks) {
        debug_assert!(self.get(id).is_some_and(|c| c.state() == State::Established
            && c.flag_bits() & ConnFlags::INPUT_ONLY.0 == 0
            && c.flag_bits() & ConnFlags::ESTABLISHED_SEEN.0 != 0));
        let deadline = established_deadline(now, self.timeout_ms[State::Established as usize]);
        self.wheel.rearm(&mut self.slab, id.0, deadline);
    }

    /// Removes index value `value` (`id << 1 | dir`) hashed `h32`. The index keeps no hashes: the
    /// values its backward shift moves are hashed again from their entries' tuples, which are
    /// still in place for every value indexed.
    fn unindex(&mut self, h32: u32, value: u32) -> bool {
        let (slab, key) = (&self.slab, &self.key);
        self.index.remove(h32, value, |v| {
            self::h32(key, &slab[(v >> 1) as usize].tuple(dir_of(v)))
        })
    }

    /// Takes slot `id` out of the index and onto the free list (timer already disarmed).
    fn release(&mut self, id: u32) {
        let c = self.slab[id as usize];
        self.half_open -= u32::from(c.is_embryonic());
        let hc = self.h32(&c.client());
        let removed = self.unindex(hc, id << 1);
        debug_assert!(removed);
        if let Some(r) = c.reply() {
            let hr = self.h32(&r);
            let removed = self.unindex(hr, (id << 1) | 1);
            debug_assert!(removed);
        }
        let slot = &mut self.slab[id as usize];
        slot.set_flag_bits(0);
        slot.user = self.free_head;
        self.free_head = id;
        self.len -= 1;
    }

    /// Moves live entry `id`'s client side to tuple `client` and puts it in TIME_WAIT for that
    /// state's timeout: the entry keeps its reply tuple (so nothing else takes it) but no longer
    /// answers to its client's tuple, which a new connection may then use. Refused (`Duplicate`)
    /// if `client` is taken; `TableFull` stands for a dead `id`.
    pub fn park(&mut self, id: ConnId, client: T, now: Ticks) -> Result<(), InsertError> {
        let Some(old) = self.get(id).map(|c| c.client()) else {
            return Err(InsertError::TableFull);
        };
        let hn = self.h32(&client);
        if self.probe(hn, &client).is_some() {
            self.counters.duplicates += 1;
            return Err(InsertError::Duplicate);
        }
        let ho = self.h32(&old);
        let removed = self.unindex(ho, id.0 << 1);
        debug_assert!(removed);
        self.index.insert(hn, id.0 << 1);
        self.indexed += 1;
        let c = &mut self.slab[id.0 as usize];
        (c.client, c.reply) = held(client, c.reply());
        // A handshake parked (its client retried, or gave it up for another) waits for nothing
        // any more: it stops counting as half-open, which a flood's eviction and the SYN proxy's
        // auto mode read, and is no longer the embryonic eviction's to take.
        if c.is_embryonic() {
            c.set_flag_bits(c.flag_bits() | ConnFlags::ESTABLISHED_SEEN.0);
            self.half_open -= 1;
        }
        if c.state() != State::TimeWait {
            self.time_wait_queue.push(id.0);
        }
        let c = &mut self.slab[id.0 as usize];
        c.set_state(State::TimeWait);
        let deadline = now.after_ms(self.timeout_ms[State::TimeWait as usize]);
        self.wheel.rearm(&mut self.slab, id.0, deadline);
        Ok(())
    }

    /// Removes a live entry and returns it; `None` if `id` is not live.
    pub fn remove(&mut self, id: ConnId) -> Option<ConnOf<T>> {
        let c = *self.get_mut(id)?;
        self.wheel.cancel(&mut self.slab, id.0);
        self.release(id.0);
        self.counters.removed += 1;
        Some(c)
    }

    /// Expires connections whose deadline is `<= now`, examining at most `budget` timers; the
    /// rest wait for the next call (plus at most one O(1) splice per wheel bucket). `f` sees each
    /// entry before it is freed (the datapath resets expired ESTABLISHED TCP connections, frees
    /// the local port and moves the real server's active/inactive count by `ConnOf<T>::is_active`).
    /// Returns how many expired.
    pub fn expire(
        &mut self,
        now: Ticks,
        budget: usize,
        mut f: impl FnMut(ConnId, &ConnOf<T>, ExpireReason),
    ) -> usize {
        self.wheel.advance(&mut self.slab, now);
        let mut left = budget;
        let mut n = 0;
        while let Some(id) = self.wheel.pop_expired(&mut self.slab, now, &mut left) {
            self.settle(ConnId(id));
            f(ConnId(id), &self.slab[id as usize], ExpireReason::Timeout);
            self.release(id);
            self.counters.expired += 1;
            n += 1;
        }
        n
    }

    /// Whether timers are waiting for another `expire` call (budget ran out).
    pub fn expire_pending(&self) -> bool {
        self.wheel.has_due(&self.slab)
    }

    /// Live entries, in slot order (for dumps; O(capacity)), as `get` gives them.
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, Cow<'_, ConnOf<T>>)> + '_ {
        self.iter_range(0, u32::MAX)
    }

    /// Live entries in slots `start..end` (a listing goes through the table a range at a time),
    /// as `get` gives them.
    pub fn iter_range(
        &self,
        start: u32,
        end: u32,
    ) -> impl Iterator<Item = (ConnId, Cow<'_, ConnOf<T>>)> + '_ {
        let end = (end as usize).min(self.slab.len());
        let start = (start as usize).min(end);
        self.slab[start..end]
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_live())
            .map(move |(i, c)| (ConnId((start + i) as u32), self.as_current(c)))
    }
}

/// `c` follows `rebind` (`ConnOf::follow`): out of line, as only an entry a pending rebind has
/// not reached comes here.
#[cold]
#[inline(never)]
fn follow_now<T: ConnKey>(c: &mut ConnOf<T>, maps: &[Arc<Rebind>], epoch: u8) {
    c.follow(maps, epoch);
}

/// An entry's tuples as it holds them, each with one of its rewrite's checksum deltas
/// (`ConnOf::rewrite_deltas`), both of which depend on both tuples. An entry without a reply
/// tuple is rewritten by no one: its deltas are 0.
#[inline]
fn held<T: ConnKey>(client: T, reply: Option<T>) -> (T::Held, T::Held) {
    let (l3, l4) = reply.map_or_else(Default::default, |r| client.rewrite_deltas(&r));
    (
        T::Held::hold(client, l3.bits()),
        T::Held::hold(reply.unwrap_or(T::EMPTY), l4.bits()),
    )
}

/// The 32 hash bits the index keeps of tuple `t` under `key`.
#[inline]
fn h32<T: ConnKey>(key: &HashKey, t: &T) -> u32 {
    (t.hash(key) >> 32) as u32
}

#[inline]
fn dir_of(v: u32) -> Dir {
    if v & 1 == 0 {
        Dir::Original
    } else {
        Dir::Reply
    }
}

#[cfg(test)]
mod tests {
    use super::super::rebind::NO_INDEX;
    use super::super::state::tcp_flags::*;
    use super::super::tuple::PROTO_UDP;
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::net::Ipv4Addr;

    fn client(i: u32) -> Tuple {
        Tuple::new(
            Ipv4Addr::from(0x0a00_0000 + (i >> 16)),
            (i & 0xffff) as u16,
            Ipv4Addr::new(192, 0, 2, 1),
            80,
            PROTO_TCP,
        )
    }

    /// A `Candidate` says what its `Prelookup` says, and its tests of a hit's side agree with
    /// it, for the ids a table can have (below 2^30) and the two markers.
    #[test]
    fn a_candidate_is_its_prelookup_in_one_word() {
        let mut cases = vec![Prelookup::NotDone, Prelookup::Miss];
        for id in [0, 1, 2, 1000, (1 << 30) - 1] {
            cases.push(Prelookup::Hit(ConnId(id), Dir::Original));
            cases.push(Prelookup::Hit(ConnId(id), Dir::Reply));
        }
        for p in cases {
            let c = Candidate::from(p);
            assert_eq!(c.get(), p);
            let (original, reply) = match p {
                Prelookup::Hit(id, Dir::Original) => (Some(id), None),
                Prelookup::Hit(id, Dir::Reply) => (None, Some(id)),
                _ => (None, None),
            };
            assert_eq!((c.original(), c.reply()), (original, reply), "{p:?}");
            // A miss goes stale once tuples were added; nothing else does.
            let stale = if p == Prelookup::Miss {
                Prelookup::NotDone
            } else {
                p
            };
            assert_eq!(c.unless_stale(false).get(), stale);
            assert_eq!(c.unless_stale(true), c);
        }
    }

    /// `ConnOf::is` compares each of its four bytes (the state without the count of changes
    /// followed) and nothing else: proptest over every byte's value.
    #[test]
    fn an_entrys_kind_is_its_four_bytes_compared() {
        // Small domains, so that every byte matches in some cases.
        proptest!(|(mode in 0u8..3, st in 0u8..3, epoch in 0u8..16, flags in 0u8..4, ext in 0u8..4,
                    want_mode in 0u8..3, want_st in 0u8..3, mask in 0u8..4, want in 0u8..4,
                    clear in 0u8..4)| {
            let mut c = ConnOf::<Tuple>::FREE;
            c.head = head_of(mode, st | epoch << EPOCH_SHIFT, flags, ext);
            let want_state = State::from_u8(want_st);
            let each = mode == want_mode
                && c.state() == want_state
                && flags & mask == want & mask
                && ext & clear == 0;
            prop_assert_eq!(c.is(want_mode, want_state, (mask, want), clear), each);
        });
        // And true where each byte matches, whatever the bits outside the masks.
        let mut c = ConnOf::<Tuple>::FREE;
        c.head = head_of(1, State::Established as u8 | 0x30, 0b1010_0110, 0b10);
        assert!(c.is(1, State::Established, (0b0000_0110, 0b0000_0110), 0b01));
        assert!(!c.is(1, State::Established, (0b0000_0110, 0b0000_0110), 0b10));
    }

    fn reply(i: u32) -> Tuple {
        Tuple::new(
            Ipv4Addr::new(172, 16, 0, 2),
            8080,
            Ipv4Addr::new(172, 16, 0, 1),
            (i & 0xffff) as u16,
            PROTO_TCP,
        )
    }

    fn table(cap: u32) -> ConnTable {
        ConnTable::with_key(
            cap,
            Timeouts::default(),
            HashKey::from_words([7, 8, 9, 10]),
            Ticks(0),
        )
    }

    /// `evict_closed` takes the entries in TIME_WAIT first, then the UDP flows with a reply
    /// tuple that no answer reached, oldest first; never an answered flow, a DR/TUN flow (no
    /// reply tuple: its answers bypass the gateway) or a live TCP connection.
    #[test]
    fn evict_closed_takes_time_wait_then_unanswered_udp_flows() {
        let mut t = table(64);
        let udp = |i: u32| {
            let c = client(i);
            Tuple::new(c.src_ip(), c.sport, c.dst_ip(), 53, PROTO_UDP)
        };
        let udp_reply = |i: u32| {
            let r = reply(i);
            Tuple::new(r.src_ip(), r.sport, r.dst_ip(), r.dport, PROTO_UDP)
        };
        let answered = t
            .insert(udp(1), Some(udp_reply(1)), 1, 0, 1, Ticks(0))
            .unwrap();
        t.on_packet(answered, Dir::Reply, 0, Ticks(0));
        // A DR flow in use (the datapath saw its client's second datagram), and one of a single
        // datagram, as a spoofed flood's.
        let dr_in_use = t.insert(udp(2), None, 2, 0, 1, Ticks(0)).unwrap();
        t.mark_answered(dr_in_use);
        t.insert(udp(3), Some(udp_reply(3)), 3, 0, 1, Ticks(0))
            .unwrap();
        t.insert(udp(9), None, 9, 0, 1, Ticks(0)).unwrap();
        let tcp = t
            .insert(client(4), Some(reply(4)), 4, 0, 1, Ticks(0))
            .unwrap();
        t.insert(udp(5), Some(udp_reply(5)), 5, 0, 1, Ticks(0))
            .unwrap();
        let open = t
            .insert(client(6), Some(reply(6)), 6, 0, 1, Ticks(0))
            .unwrap();
        t.on_packet(open, Dir::Original, SYN, Ticks(0));
        // Only a UDP flow is marked answered so.
        t.mark_answered(open);
        assert!(t.get(open).unwrap().is_embryonic());
        // The TCP connection closes after the UDP flows came: it is taken first all the same.
        t.refresh(tcp, State::TimeWait, 120_000, Ticks(1));
        let mut taken = Vec::new();
        while let Some(c) = t.evict_closed() {
            taken.push(c.svc);
        }
        assert_eq!(taken, vec![4, 3, 9, 5]);
        let c = t.counters();
        assert_eq!((c.evicted_udp, c.evicted_time_wait), (3, 1));
        assert_eq!(
            t.len(),
            3,
            "the answered flow, the DR flow in use, the open connection"
        );
        // A queued flow gone, its slot taken by a DR flow in use (the free list is LIFO): the
        // stale id names a flow that is not the one queued, and that one is kept.
        let gone = t
            .insert(udp(7), Some(udp_reply(7)), 7, 0, 1, Ticks(2))
            .unwrap();
        t.remove(gone);
        let dr = t.insert(udp(8), None, 8, 0, 1, Ticks(2)).unwrap();
        assert_eq!(dr, gone, "the slot reused");
        t.mark_answered(dr);
        assert!(t.evict_closed().is_none());
    }

    /// Many UDP flows answered since they were queued (a busy DNS service beside a TCP one) do
    /// not hide a connection in TIME_WAIT from `evict_closed`'s bounded scan.
    #[test]
    fn answered_udp_flows_do_not_hide_time_wait() {
        let n = 2 * EVICT_SCAN as u32;
        let mut t = table(4 * n);
        for i in 0..n {
            let c = client(i);
            let r = reply(i);
            let id = t
                .insert(
                    Tuple::new(c.src_ip(), c.sport, c.dst_ip(), 53, PROTO_UDP),
                    Some(Tuple::new(
                        r.src_ip(),
                        r.sport,
                        r.dst_ip(),
                        r.dport,
                        PROTO_UDP,
                    )),
                    1,
                    0,
                    1,
                    Ticks(0),
                )
                .unwrap();
            t.on_packet(id, Dir::Reply, 0, Ticks(0));
        }
        let tcp = t
            .insert(client(n), Some(reply(n)), 2, 0, 1, Ticks(0))
            .unwrap();
        t.refresh(tcp, State::TimeWait, 120_000, Ticks(1));
        assert_eq!(t.evict_closed().map(|c| c.svc), Some(2));
    }

    #[test]
    fn entry_is_one_cache_line_and_memory_within_budget() {
        assert_eq!(core::mem::size_of::<Conn>(), 64);
        assert_eq!(core::mem::align_of::<Conn>(), 64);
        assert_eq!(BYTES_PER_CONN_AT_MAX_LOAD, 86);
        // No rounding up of the index: a capacity just past a power of two costs what one just
        // below it does (with 8-byte slots rounded up, 89 and 110 bytes).
        for (cap, want) in [(3 << 9, 86), ((3 << 10) + 1, 86)] {
            let t = table(cap);
            let per_conn = (t.memory_bytes() - t.wheel.memory_bytes()) / t.capacity();
            assert_eq!(per_conn, want, "capacity {cap}");
        }
    }

    #[test]
    fn insert_and_lookup_both_directions() {
        let mut t = table(8);
        let id = t
            .insert(client(1), Some(reply(1)), 3, 4, 1, Ticks(0))
            .unwrap();
        let dr = t.insert(client(2), None, 5, 6, 2, Ticks(0)).unwrap();
        assert_eq!(t.lookup(&client(1)), Some((id, Dir::Original)));
        assert_eq!(t.lookup(&reply(1)), Some((id, Dir::Reply)));
        assert_eq!(t.lookup(&client(2)), Some((dr, Dir::Original)));
        assert_eq!(t.lookup(&reply(2)), None);
        assert_eq!(t.lookup(&client(1).reversed()), None);
        let c = t.get(id).unwrap();
        assert_eq!((c.svc, c.rs, c.mode(), c.user), (3, 4, 1, 0));
        assert_eq!(c.reply(), Some(reply(1)));
        assert_eq!(c.state(), State::None);
        assert!(!c.flags().contains(ConnFlags::INPUT_ONLY));
        assert!(t.get(dr).unwrap().flags().contains(ConnFlags::INPUT_ONLY));
        assert_eq!(t.get(dr).unwrap().reply(), None);
        t.get_mut(id).unwrap().user = 99;
        t.get_mut(id)
            .unwrap()
            .set_flags(ConnFlags::TOA_DONE | ConnFlags::ESTABLISHED_SEEN);
        let f = t.get(id).unwrap().flags();
        assert!(f.contains(ConnFlags::TOA_DONE) && !f.contains(ConnFlags::ESTABLISHED_SEEN));
        assert_eq!(t.get(id).unwrap().user, 99);
        assert_eq!(t.len(), 2);
        assert_eq!(t.iter().map(|(i, _)| i).collect::<Vec<_>>(), vec![id, dr]);
    }

    /// An entry keeps its rewrite's checksum deltas as its tuples make them, and makes them
    /// again when its client's tuple moves (`park`); its tuples come back as they were given.
    #[test]
    fn entries_keep_their_rewrites_deltas() {
        let mut t = table(8);
        let id = t
            .insert(client(1), Some(reply(1)), 3, 4, 1, Ticks(0))
            .unwrap();
        let c = t.get(id).unwrap();
        assert_eq!(c.rewrite_deltas(), client(1).rewrite_deltas(&reply(1)));
        assert_eq!((c.client(), c.reply()), (client(1), Some(reply(1))));
        t.park(id, client(30), Ticks(1)).unwrap();
        let moved = client(30).rewrite_deltas(&reply(1));
        assert_ne!(moved, client(1).rewrite_deltas(&reply(1)));
        let c = t.get(id).unwrap();
        assert_eq!(c.rewrite_deltas(), moved);
        assert_eq!((c.client(), c.reply()), (client(30), Some(reply(1))));
    }

    #[test]
    fn batch_lookup_matches_single() {
        let mut t = table(100);
        for i in 0..100 {
            t.insert(client(i), Some(reply(i)), 0, 0, 0, Ticks(0))
                .unwrap();
        }
        let tuples: Vec<Tuple> = (0..70)
            .map(|i| match i % 3 {
                0 => client(i),
                1 => reply(i),
                _ => client(1000 + i),
            })
            .collect();
        let mut out = vec![None; 70];
        t.lookup_batch(&tuples, &mut out);
        for (tu, o) in tuples.iter().zip(&out) {
            assert_eq!(*o, t.lookup(tu));
        }
        assert!(out.iter().filter(|o| o.is_some()).count() > 40);
        // The burst pipeline's variant misses exactly where the lookup does, names the entry
        // it finds as the candidate (the first by hash bits here), and prefetches every home
        // slot it hashes and every candidate's entry.
        let mut pre = vec![Prelookup::NotDone; 70];
        let hints = std::cell::RefCell::new(Vec::new());
        let hint = |p: *const u8| hints.borrow_mut().push(p as usize);
        let hashes: Vec<u32> = tuples.iter().map(|u| t.prehash(u, hint)).collect();
        t.prelookup_hashed(&hashes, |i, p| pre[i] = p.get(), hint);
        assert_eq!(
            pre,
            out.iter().map(|&o| Prelookup::from(o)).collect::<Vec<_>>()
        );
        let hints = hints.into_inner();
        let slab = t.slab.as_ptr_range();
        let (entries, homes): (Vec<usize>, Vec<usize>) = hints
            .iter()
            .partition(|&&p| (slab.start as usize..slab.end as usize).contains(&p));
        assert_eq!(homes.len(), 70, "one home line per tuple");
        for (id, _) in out.iter().flatten() {
            let entry = &t.slab[id.0 as usize] as *const Conn as usize;
            assert!(entries.contains(&entry), "entry {id:?} not prefetched");
        }
    }

    #[test]
    fn insert_known_absent_behaves_as_insert_for_new_tuples() {
        let mut a = table(16);
        let mut b = table(16);
        for i in 0..10 {
            let x = a
                .insert(client(i), Some(reply(i)), 1, 2, 0, Ticks(0))
                .unwrap();
            let y = b
                .insert_known_absent(client(i), Some(reply(i)), 1, 2, 0, Ticks(0))
                .unwrap();
            assert_eq!(x, y);
        }
        for i in 0..10 {
            assert_eq!(a.lookup(&client(i)), b.lookup(&client(i)));
            assert_eq!(a.lookup(&reply(i)), b.lookup(&reply(i)));
        }
        assert_eq!(a.counters(), b.counters());
        // Debug builds keep the duplicate check even here.
        if cfg!(debug_assertions) {
            assert_eq!(
                b.insert_known_absent(client(3), Some(reply(3)), 1, 2, 0, Ticks(0)),
                Err(InsertError::Duplicate)
            );
        }
    }

    #[test]
    fn duplicates_refused_and_counted() {
        let mut t = table(8);
        t.insert(client(1), Some(reply(1)), 0, 0, 0, Ticks(0))
            .unwrap();
        assert_eq!(
            t.insert(client(1), Some(reply(2)), 0, 0, 0, Ticks(0)),
            Err(InsertError::Duplicate)
        );
        assert_eq!(
            t.insert(client(2), Some(reply(1)), 0, 0, 0, Ticks(0)),
            Err(InsertError::Duplicate)
        );
        // A new client tuple equal to an existing reply tuple clashes too.
        assert_eq!(
            t.insert(reply(1), None, 0, 0, 0, Ticks(0)),
            Err(InsertError::Duplicate)
        );
        assert_eq!(
            t.insert(client(3), Some(client(3)), 0, 0, 0, Ticks(0)),
            Err(InsertError::Duplicate)
        );
        assert_eq!(t.counters().duplicates, 4);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn full_counted_recovers_and_ids_reused() {
        let mut t = table(3);
        let ids: Vec<_> = (0..3)
            .map(|i| {
                t.insert(client(i), Some(reply(i)), 0, 0, 0, Ticks(0))
                    .unwrap()
            })
            .collect();
        assert_eq!(
            t.insert(client(9), None, 0, 0, 0, Ticks(0)),
            Err(InsertError::TableFull)
        );
        assert_eq!(t.counters().table_full, 1);
        let gone = t.remove(ids[1]).unwrap();
        assert_eq!(gone.client(), client(1));
        assert!(t.remove(ids[1]).is_none());
        assert!(t.get(ids[1]).is_none());
        assert_eq!(t.lookup(&client(1)), None);
        assert_eq!(t.lookup(&reply(1)), None);
        let again = t.insert(client(9), None, 0, 0, 0, Ticks(0)).unwrap();
        assert_eq!(again, ids[1]);
        assert_eq!(t.get(again).unwrap().client(), client(9));
        assert_eq!(t.counters().removed, 1);
        assert_eq!(t.counters().created, 4);
        let empty = table(0);
        assert_eq!(empty.capacity(), 0);
    }

    #[test]
    fn tcp_states_and_timeouts_fullnat() {
        let mut t = table(4);
        let id = t
            .insert(client(1), Some(reply(1)), 0, 0, 0, Ticks(0))
            .unwrap();
        assert_eq!(t.get(id).unwrap().deadline(), Ticks(2_000)); // NONE: 2 s
        let c = t.on_packet(id, Dir::Original, SYN, Ticks(10));
        assert_eq!((c.old, c.new), (State::None, State::SynRecv));
        assert_eq!(c.activity(), state::Activity::BecameActive);
        assert_eq!(t.get(id).unwrap().deadline(), Ticks(60_010));
        t.on_packet(id, Dir::Reply, SYN | ACK, Ticks(20));
        let c = t.on_packet(id, Dir::Original, ACK, Ticks(30));
        assert_eq!(c.new, State::Established);
        assert_eq!(c.activity(), state::Activity::Unchanged);
        let conn = t.get(id).unwrap();
        assert!(conn.is_active() && conn.flags().contains(ConnFlags::ESTABLISHED_SEEN));
        assert_eq!(conn.deadline(), Ticks(900_030));
        t.on_packet(id, Dir::Original, ACK, Ticks(5_000));
        assert_eq!(t.get(id).unwrap().deadline(), Ticks(905_000));
        let c = t.on_packet(id, Dir::Original, FIN | ACK, Ticks(6_000));
        assert_eq!(c.new, State::CloseWait);
        assert_eq!(c.activity(), state::Activity::BecameInactive);
        assert_eq!(t.get(id).unwrap().deadline(), Ticks(66_000)); // moved earlier
        t.on_packet(id, Dir::Reply, FIN | ACK, Ticks(6_001));
        assert_eq!(t.get(id).unwrap().state(), State::TimeWait);
        let c = t.on_packet(id, Dir::Original, RST, Ticks(6_002));
        assert_eq!(c.new, State::Close);
        assert_eq!(t.get(id).unwrap().deadline(), Ticks(16_002));
        // Not before the CLOSE timeout, then exactly once.
        let mut seen = Vec::new();
        assert_eq!(
            t.expire(Ticks(16_001), 100, |i, c, _| seen.push((i, c.state()))),
            0
        );
        assert_eq!(
            t.expire(Ticks(16_020), 100, |i, c, _| seen.push((i, c.state()))),
            1
        );
        assert_eq!(seen, vec![(id, State::Close)]);
        assert!(t.is_empty());
        assert_eq!(t.lookup(&reply(1)), None);
        assert_eq!(t.counters().expired, 1);
    }

    #[test]
    fn tcp_states_dr_input_only_and_udp() {
        let mut t = table(4);
        let id = t.insert(client(1), None, 0, 0, 0, Ticks(0)).unwrap();
        assert_eq!(
            t.on_packet(id, Dir::Original, SYN, Ticks(0)).new,
            State::SynRecv
        );
        assert_eq!(
            t.on_packet(id, Dir::Original, ACK, Ticks(0)).new,
            State::Established
        );
        // INPUT-ONLY: a client FIN means FIN_WAIT (the full table would say CLOSE_WAIT).
        assert_eq!(
            t.on_packet(id, Dir::Original, FIN | ACK, Ticks(0)).new,
            State::FinWait
        );
        assert_eq!(t.get(id).unwrap().deadline(), Ticks(120_000));

        let u = Tuple {
            proto: super::super::tuple::PROTO_UDP,
            ..client(2)
        };
        let uid = t.insert(u, None, 0, 0, 0, Ticks(0)).unwrap();
        assert_eq!(t.get(uid).unwrap().deadline(), Ticks(300_000));
        let c = t.on_packet(uid, Dir::Original, 0, Ticks(1_000));
        assert_eq!((c.old, c.new), (State::Udp, State::Udp));
        assert!(!t.get(uid).unwrap().is_active());
        assert_eq!(t.get(uid).unwrap().deadline(), Ticks(301_000));
    }

    #[test]
    fn established_survives_while_refreshed_and_expiry_is_bounded() {
        let mut t = table(50);
        for i in 0..50 {
            let id = t
                .insert(client(i), Some(reply(i)), 0, 0, 0, Ticks(0))
                .unwrap();
            t.on_packet(id, Dir::Original, SYN, Ticks(0));
        }
        // Keep connection 0 alive with a packet every 50 s across several wheel revolutions.
        let keep = t.lookup(&client(0)).unwrap().0;
        t.on_packet(keep, Dir::Original, ACK, Ticks(0));
        let mut now = 0;
        while now < 1_000_000 {
            now += 50_000;
            t.on_packet(keep, Dir::Original, ACK, Ticks(now));
            let mut fired = 0;
            let n = t.expire(Ticks(now), 7, |id, c, r| {
                assert_ne!(id, keep);
                assert_eq!(r, ExpireReason::Timeout);
                assert!(c.deadline() <= Ticks(now));
                fired += 1;
            });
            assert_eq!(n, fired);
            assert!(n <= 7, "budget exceeded");
        }
        assert_eq!(t.len(), 1);
        assert!(!t.expire_pending());
        assert_eq!(t.counters().expired, 49);
    }

    #[test]
    fn eviction_takes_half_open_entries_in_turn_and_never_established_ones() {
        let mut t = table(8);
        let ids: Vec<ConnId> = (0..8)
            .map(|i| {
                t.insert(client(i), Some(reply(i)), i as u16, 0, 1, Ticks(0))
                    .unwrap()
            })
            .collect();
        assert_eq!(t.half_open(), 8);
        // 0..4 complete their handshake (SYN, SYN-ACK, ACK); 4..8 stay half-open.
        for &id in &ids[..4] {
            t.on_packet(id, Dir::Original, SYN, Ticks(1));
            t.on_packet(id, Dir::Reply, SYN | ACK, Ticks(1));
            t.on_packet(id, Dir::Original, ACK, Ticks(1));
            assert_eq!(t.get(id).unwrap().state(), State::Established);
            // A FIN afterwards does not make it half-open again.
            t.on_packet(id, Dir::Original, FIN | ACK, Ticks(2));
        }
        assert_eq!(t.half_open(), 4);
        assert_eq!(
            t.insert(client(9), None, 9, 0, 1, Ticks(3)),
            Err(InsertError::TableFull)
        );
        let mut taken = Vec::new();
        while let Some(c) = t.evict_embryonic() {
            taken.push(c.svc);
        }
        assert_eq!(taken, vec![4, 5, 6, 7]);
        assert_eq!((t.half_open(), t.len()), (0, 4));
        assert_eq!(t.counters().evicted_embryonic, 4);
        for &id in &ids[..4] {
            assert!(t.get(id).is_some(), "established entries stay");
        }
        // UDP entries are never half-open.
        let u = Tuple::new(
            Ipv4Addr::new(10, 9, 9, 9),
            5,
            Ipv4Addr::new(192, 0, 2, 1),
            53,
            17,
        );
        t.insert(u, None, 20, 0, 1, Ticks(3)).unwrap();
        assert_eq!(t.half_open(), 0);
        assert!(t.evict_embryonic().is_none());
        // Removed and expired half-open entries leave the count.
        let id = t.insert(client(10), None, 10, 0, 1, Ticks(3)).unwrap();
        assert_eq!(t.half_open(), 1);
        t.remove(id);
        assert_eq!(t.half_open(), 0);
        t.insert(client(11), None, 11, 0, 1, Ticks(3)).unwrap();
        t.expire(Ticks(10_000_000), 100, |_, _, _| {});
        assert_eq!(t.half_open(), 0);
    }

    /// A map for the rebind tests: service 0 and its servers stay, service 1 moves to 2 and loses
    /// its server 0 (its server 1 moves to 0), service 2 moves to 1 unchanged, service 3 goes.
    fn moving_map() -> Arc<Rebind> {
        Arc::new(Rebind::new(vec![
            (0, None),
            (2, Some(vec![NO_INDEX, 0])),
            (1, None),
            (NO_INDEX, Some(vec![NO_INDEX; 2])),
        ]))
    }

    /// After `begin_rebind`, every way an entry is handed out gives its new indices at once, the
    /// walk (`rebind_step`) having reached none of it, and each entry follows the map once: a
    /// service moved 1 -> 2 and one moved 2 -> 1 do not swap back when touched twice or walked
    /// after being touched. An entry created during the rebind keeps the indices it was given.
    /// The walk takes as many slices as the slab needs and leaves every entry moved.
    #[test]
    fn a_rebind_is_seen_at_once_and_walked_in_slices() {
        let mut t = table(64);
        let ids: Vec<ConnId> = (0..8u32)
            .map(|i| {
                let (svc, rs) = ((i % 4) as u16, (i / 4) as u16);
                t.insert(client(i), Some(reply(i)), svc, rs, 1, Ticks(0))
                    .unwrap()
            })
            .collect();
        let raw = |t: &ConnTable, id: ConnId| (t.slab[id.0 as usize].svc, t.slab[id.0 as usize].rs);
        let seen = |t: &ConnTable, id: ConnId| {
            let c = t.get(id).unwrap();
            (c.svc, c.rs)
        };
        // Entry i has service i % 4 and server i / 4.
        let want = [
            (0, 0),
            (2, NO_INDEX),
            (1, 0),
            (NO_INDEX, NO_INDEX),
            (0, 1),
            (2, 0),
            (1, 1),
            (NO_INDEX, NO_INDEX),
        ];
        assert!(!t.begin_rebind(moving_map()), "no walk was pending");
        assert!(t.rebinding());
        for (i, &id) in ids.iter().enumerate() {
            assert_eq!(seen(&t, id), want[i], "get, entry {i}");
            assert_eq!(
                raw(&t, id),
                ((i % 4) as u16, (i / 4) as u16),
                "not written yet"
            );
        }
        let listed: Vec<(u16, u16)> = t.iter().map(|(_, c)| (c.svc, c.rs)).collect();
        assert_eq!(listed, want);
        // Touched: moved in place, once.
        let c = t.get_mut(ids[1]).unwrap();
        assert_eq!((c.svc, c.rs), (2, NO_INDEX));
        let c = t.get_mut(ids[2]).unwrap();
        assert_eq!((c.svc, c.rs), (1, 0));
        assert_eq!(raw(&t, ids[2]), (1, 0));
        assert_eq!(
            seen(&t, ids[2]),
            (1, 0),
            "service 2 moved to 1 and stays there"
        );
        assert_eq!(t.get_mut(ids[2]).map(|c| (c.svc, c.rs)), Some((1, 0)));
        // State changes keep an entry's count of changes followed: a packet's, a sync record's
        // (`refresh`), a parked entry's.
        t.on_packet(ids[2], Dir::Original, SYN, Ticks(1));
        assert_eq!(seen(&t, ids[2]), (1, 0));
        t.refresh(ids[2], State::Established, 1000, Ticks(1));
        assert_eq!(seen(&t, ids[2]), (1, 0));
        t.park(ids[1], client(30), Ticks(1)).unwrap();
        assert_eq!(seen(&t, ids[1]), (2, NO_INDEX));
        // Settled in place by the hot paths' accessors.
        assert_eq!(t.get_current(ids[4]).map(|c| (c.svc, c.rs)), Some(want[4]));
        assert_eq!(raw(&t, ids[4]), want[4]);
        t.settle(ids[6]);
        assert_eq!(t.get_settled(ids[6]).map(|c| (c.svc, c.rs)), Some(want[6]));
        // Removed: handed back moved.
        let gone = t.remove(ids[5]).unwrap();
        assert_eq!((gone.svc, gone.rs), (2, 0));
        // Created now, with the new snapshot's indices.
        let fresh = t
            .insert(client(20), Some(reply(20)), 1, 1, 1, Ticks(1))
            .unwrap();
        assert_eq!(seen(&t, fresh), (1, 1));
        // The walk: 64 slots in slices of 10.
        let mut slices = 0;
        while t.rebind_step(10) {
            slices += 1;
        }
        assert_eq!(slices, 7);
        assert!(!t.rebinding());
        for (i, &id) in ids.iter().enumerate().filter(|&(i, _)| i != 5) {
            assert_eq!(raw(&t, id), want[i], "walked, entry {i}");
            assert_eq!(seen(&t, id), want[i]);
        }
        assert_eq!(raw(&t, fresh), (1, 1), "the walk left the new entry alone");
    }

    /// A timer's expiry hands the callback the entry as it is after the change, walked or not.
    #[test]
    fn an_expired_entry_is_handed_out_with_its_new_indices() {
        let mut t = table(16);
        t.insert(client(1), Some(reply(1)), 1, 1, 1, Ticks(0))
            .unwrap();
        t.begin_rebind(moving_map());
        let mut seen = Vec::new();
        t.expire(Ticks(10_000_000), 100, |_, c, _| seen.push((c.svc, c.rs)));
        assert_eq!(seen, [(2, 0)]);
    }

    /// Changes that come before the walk of the ones before them ended are followed in order,
    /// once each, and the walk starts again; a change that finds [`MAX_PENDING_REBINDS`]
    /// pending finishes their walk first (and says so). A change to an empty table begins no
    /// walk.
    #[test]
    fn changes_in_quick_succession_are_followed_in_order() {
        let mut t = table(64);
        let ids: Vec<ConnId> = (0..4u32)
            .map(|i| {
                t.insert(client(i), Some(reply(i)), i as u16, 1, 1, Ticks(0))
                    .unwrap()
            })
            .collect();
        assert!(!t.begin_rebind(moving_map()));
        assert!(t.rebind_step(2));
        assert!(!t.begin_rebind(moving_map()), "two changes pending");
        assert_eq!(t.rebind_at, 0, "the walk starts again");
        let got: Vec<(u16, u16)> = ids
            .iter()
            .map(|&id| {
                let c = t.get(id).unwrap();
                (c.svc, c.rs)
            })
            .collect();
        // 0 -> 0 -> 0; 1 -> 2 -> 1 (server 1 -> 0 -> 0); 2 -> 1 -> 2 (server 1 -> 1 -> 0); 3 goes.
        let want = [(0, 1), (1, 0), (2, 0), (NO_INDEX, NO_INDEX)];
        assert_eq!(got, want);
        while t.rebind_step(5) {}
        for (&id, &w) in ids.iter().zip(&want) {
            let c = &t.slab[id.0 as usize];
            assert_eq!((c.svc, c.rs), w);
        }
        // Service i moves to i + 1 at each change: 16 changes take entry 0 to 16, the sixteenth
        // finishing the walk of the fifteen before it.
        let next = Arc::new(Rebind::new((0..32u16).map(|i| (i + 1, None)).collect()));
        let id = ids[0];
        for k in 1..=MAX_PENDING_REBINDS {
            assert!(!t.begin_rebind(Arc::clone(&next)), "change {k}");
        }
        assert_eq!(t.get(id).map(|c| c.svc), Some(15));
        assert_eq!(t.slab[id.0 as usize].svc, 0, "not walked");
        assert!(t.begin_rebind(next), "the sixteenth");
        assert_eq!(t.slab[id.0 as usize].svc, 15, "walked at once");
        assert_eq!(t.get(id).map(|c| c.svc), Some(16));
        let mut empty = table(16);
        assert!(!empty.begin_rebind(moving_map()));
        assert!(!empty.rebinding());
        let id = empty.insert(client(1), None, 1, 1, 1, Ticks(0)).unwrap();
        assert_eq!(empty.get(id).map(|c| (c.svc, c.rs)), Some((1, 1)));
    }

    #[derive(Debug, Clone)]
    enum RebindOp {
        Insert(u32, u16, u16),
        Remove(u32),
        Touch(u32),
        Packet(u32, u8),
        Rebind(Vec<(u16, Option<Vec<u16>>)>),
        Step(u32),
    }

    fn rebind_op() -> impl Strategy<Value = RebindOp> {
        let index = prop_oneof![4 => 0u16..4, 1 => Just(NO_INDEX)];
        let map = proptest::collection::vec(
            (
                index.clone(),
                proptest::option::of(proptest::collection::vec(index, 4)),
            ),
            4,
        );
        prop_oneof![
            4 => (0u32..40, 0u16..4, 0u16..4).prop_map(|(i, s, r)| RebindOp::Insert(i, s, r)),
            1 => (0u32..40).prop_map(RebindOp::Remove),
            2 => (0u32..40).prop_map(RebindOp::Touch),
            2 => (0u32..40, any::<u8>()).prop_map(|(i, f)| RebindOp::Packet(i, f)),
            2 => map.prop_map(RebindOp::Rebind),
            2 => (1u32..20).prop_map(RebindOp::Step),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Random inserts, removes, touches, packets, changes and slices of walk against a model
        /// that applies each change to every connection at once: every entry, however it is
        /// handed out, has the model's indices, and so has the slab once the walk ends.
        #[test]
        fn rebinds_match_an_eager_model(ops in proptest::collection::vec(rebind_op(), 1..120)) {
            let mut t = table(32);
            let mut model: HashMap<u32, (u16, u16)> = HashMap::new();
            for o in ops {
                match o {
                    RebindOp::Insert(i, svc, rs) => {
                        if t.insert(client(i), Some(reply(i)), svc, rs, 1, Ticks(0)).is_ok() {
                            model.insert(i, (svc, rs));
                        }
                    }
                    RebindOp::Remove(i) => {
                        if let Some((id, _)) = t.lookup(&client(i)) {
                            let c = t.remove(id).unwrap();
                            prop_assert_eq!(Some((c.svc, c.rs)), model.remove(&i));
                        }
                    }
                    RebindOp::Touch(i) => {
                        if let Some((id, _)) = t.lookup(&client(i)) {
                            let c = t.get_mut(id).unwrap();
                            prop_assert_eq!(Some(&(c.svc, c.rs)), model.get(&i));
                        }
                    }
                    RebindOp::Packet(i, flags) => {
                        if let Some((id, dir)) = t.lookup(&client(i)) {
                            t.on_packet(id, dir, flags, Ticks(0));
                        }
                    }
                    RebindOp::Rebind(map) => {
                        let r = Rebind::new(map);
                        for v in model.values_mut() {
                            *v = r.apply(v.0, v.1);
                        }
                        t.begin_rebind(Arc::new(r));
                    }
                    RebindOp::Step(n) => {
                        t.rebind_step(n);
                    }
                }
                for (&i, &want) in &model {
                    let (id, _) = t.lookup(&client(i)).expect("lost");
                    let c = t.get(id).unwrap();
                    prop_assert_eq!((c.svc, c.rs), want);
                }
                let listed: HashMap<u32, (u16, u16)> = t
                    .iter()
                    .map(|(_, c)| (u32::from(c.client().sport), (c.svc, c.rs)))
                    .collect();
                prop_assert_eq!(&listed, &model);
            }
            while t.rebind_step(7) {}
            for (&i, &want) in &model {
                let (id, _) = t.lookup(&client(i)).expect("lost");
                let c = &t.slab[id.0 as usize];
                prop_assert_eq!((c.svc, c.rs), want);
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32, bool),
        Remove(u32),
        Packet(u32, u8),
        Expire(u64, usize),
        Evict,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u32..48, any::<bool>()).prop_map(|(i, r)| Op::Insert(i, r)),
            2 => (0u32..48).prop_map(Op::Remove),
            2 => (0u32..48, any::<u8>()).prop_map(|(i, f)| Op::Packet(i, f)),
            1 => (0u64..200_000, 1usize..10).prop_map(|(d, b)| Op::Expire(d, b)),
            1 => Just(Op::Evict),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Random inserts, removes, packets and expiries against a HashMap of
        /// tuple -> (key, deadline).
        #[test]
        fn matches_model(ops in proptest::collection::vec(op(), 1..150)) {
            let mut t = table(16);
            let to = t.timeout_ms;
            // key i -> (deadline, has_reply)
            let mut model: HashMap<u32, (u64, bool)> = HashMap::new();
            let mut now = 0u64;
            let mut inserted = 0;
            for o in ops {
                match o {
                    Op::Insert(i, with_reply) => {
                        let r = t.insert(client(i), with_reply.then(|| reply(i)), i as u16, 0, 0, Ticks(now));
                        if model.contains_key(&i) {
                            prop_assert_eq!(r, Err(InsertError::Duplicate));
                        } else if model.len() == 16 {
                            prop_assert_eq!(r, Err(InsertError::TableFull));
                        } else {
                            prop_assert!(r.is_ok());
                            inserted += 1;
                            model.insert(i, (now + to[State::None as usize], with_reply));
                        }
                    }
                    Op::Remove(i) => {
                        match t.lookup(&client(i)) {
                            Some((id, _)) => {
                                prop_assert!(t.remove(id).is_some());
                                prop_assert!(model.remove(&i).is_some());
                            }
                            None => prop_assert!(!model.contains_key(&i)),
                        }
                    }
                    Op::Packet(i, flags) => {
                        if let Some((id, dir)) = t.lookup(&client(i)) {
                            let c = t.on_packet(id, dir, flags, Ticks(now));
                            model.get_mut(&i).unwrap().0 = now + to[c.new as usize];
                        }
                    }
                    Op::Expire(dt, budget) => {
                        now += dt;
                        t.expire(Ticks(now), budget, |_, c, _| {
                            let i = u32::from(c.svc);
                            let (d, _) = model.remove(&i).expect("expired unknown");
                            assert!(d <= now, "expired early");
                        });
                    }
                    Op::Evict => {
                        let before = t.half_open();
                        match t.evict_embryonic() {
                            Some(c) => {
                                prop_assert!(model.remove(&u32::from(c.svc)).is_some());
                                prop_assert!(!c.flags().contains(ConnFlags::ESTABLISHED_SEEN));
                            }
                            // Until 16 entries were created, the queue holds every id: none
                            // found means none half-open. (Later the oldest ids may have left
                            // the ring; their entries expire by their timers.)
                            None if inserted <= 16 => prop_assert_eq!(before, 0),
                            None => {}
                        }
                    }
                }
                prop_assert_eq!(t.len(), model.len());
                // The half-open count is the number of live TCP entries never established.
                let embryonic = t.iter().filter(|(_, c)| c.is_embryonic()).count();
                prop_assert_eq!(t.half_open(), embryonic);
                for (&i, &(d, with_reply)) in &model {
                    let (id, dir) = t.lookup(&client(i)).expect("lost");
                    prop_assert_eq!(dir, Dir::Original);
                    prop_assert_eq!(t.get(id).unwrap().deadline(), Ticks(d));
                    // What the hot path's refresh counts on (`TimerNode::extend_armed`).
                    prop_assert!(t.get(id).unwrap().timer.is_armed(), "a live entry unarmed");
                    prop_assert_eq!(t.lookup(&reply(i)).map(|x| x.0), with_reply.then_some(id));
                }
            }
        }
    }
}

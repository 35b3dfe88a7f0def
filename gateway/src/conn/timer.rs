//! Hashed timing wheel (Varghese & Lauck, "Hashed and Hierarchical Timing Wheels", scheme 6) with
//! intrusive links, so arming, re-arming and cancelling never allocate.
//!
//! Every timer is a [`TimerNode`] that lives *inside* its owner (the connection entry), addressed
//! by a `u32` id; the wheel owns only the bucket heads. Lists are circular and doubly linked with
//! sentinel heads whose ids follow the owners' ids (`base..base+buckets+1`), so unlinking needs no
//! knowledge of the bucket a node sits in.
//!
//! Long timeouts use rounds instead of levels: a deadline more than one revolution away sits in
//! the bucket of its tick modulo the wheel size, is examined once per revolution and relinked.
//! Re-arming is lazy: a later deadline only overwrites `deadline` in the node (the entry's cache
//! line is hot anyway on the packet path) and the node moves when its old bucket comes due. Only
//! an earlier deadline moves the node at once. A node therefore never fires early, and at most one
//! tick late when the caller polls often enough and gives enough budget.
//!
//! Due buckets are spliced whole (O(1)) onto a "due" list, which is then drained under a budget;
//! what is left stays there for the next call.

/// Caller-supplied monotonic time in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticks(pub u64);

impl Ticks {
    /// `self + ms`, saturating (a deadline of `u64::MAX` simply never comes).
    pub fn after_ms(self, ms: u64) -> Ticks {
        Ticks(self.0.saturating_add(ms))
    }
}

/// "Not linked" marker for [`TimerNode`] links.
pub const NIL: u32 = u32::MAX;

/// The intrusive part of a timer: embed one per owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerNode {
    next: u32,
    prev: u32,
    /// The real deadline; the bucket the node sits in may be earlier (lazy re-arm).
    deadline: Ticks,
}

impl Default for TimerNode {
    fn default() -> Self {
        TimerNode::UNLINKED
    }
}

impl TimerNode {
    /// A node in no list.
    pub const UNLINKED: TimerNode = TimerNode {
        next: NIL,
        prev: NIL,
        deadline: Ticks(0),
    };

    /// Whether the node is in the wheel (armed, possibly due).
    pub fn is_armed(&self) -> bool {
        self.next != NIL
    }

    /// `TimerWheel::rearm`'s lazy case, done on the node alone: an armed node given a deadline no
    /// earlier than its own takes it and stays where it is (the bucket it sits in comes due no
    /// later than the new deadline; it is moved then). False, nothing changed, for any other
    /// node or deadline, which only `rearm` re-arms.
    #[inline(always)]
    pub fn extend(&mut self, deadline: Ticks) -> bool {
        if self.is_armed() && deadline >= self.deadline {
            self.deadline = deadline;
            return true;
        }
        false
    }

    /// `extend` for a node known to be armed: a live connection's, whose timer the table arms
    /// when it makes the entry and disarms only to free it (`Table::remove`, `Table::expire`).
    /// One compare where `extend`'s test of the node's link took two instructions more a packet
    /// on the established hot path (`HotDeadline::refresh`).
    #[inline(always)]
    pub fn extend_armed(&mut self, deadline: Ticks) -> bool {
        debug_assert!(self.is_armed(), "a live entry's timer not armed");
        if deadline >= self.deadline {
            self.deadline = deadline;
            return true;
        }
        false
    }

    /// The deadline last set, meaningful while armed.
    pub fn deadline(&self) -> Ticks {
        self.deadline
    }
}

/// Storage of the owners' nodes, indexed by id `0..base`.
pub trait TimerNodes {
    fn node(&self, id: u32) -> &TimerNode;
    fn node_mut(&mut self, id: u32) -> &mut TimerNode;
}

impl TimerNodes for [TimerNode] {
    fn node(&self, id: u32) -> &TimerNode {
        &self[id as usize]
    }
    fn node_mut(&mut self, id: u32) -> &mut TimerNode {
        &mut self[id as usize]
    }
}

impl TimerNodes for Vec<TimerNode> {
    fn node(&self, id: u32) -> &TimerNode {
        &self[id as usize]
    }
    fn node_mut(&mut self, id: u32) -> &mut TimerNode {
        &mut self[id as usize]
    }
}

/// The wheel: `buckets` heads plus one "due" head, each a sentinel [`TimerNode`].
pub struct TimerWheel {
    heads: Vec<TimerNode>,
    /// Id of the first sentinel; owners use ids below it.
    base: u32,
    mask: u64,
    tick_ms: u64,
    /// First tick whose bucket has not been spliced onto the due list yet. Every tick before it
    /// ended at or before the last `advance`'s `now`.
    next_tick: u64,
}

impl TimerWheel {
    /// A wheel for owner ids `0..base`, with `1 << buckets_log2` buckets of `tick_ms` each,
    /// starting at `now`.
    ///
    /// # Panics
    /// If `tick_ms` is 0 or the sentinel ids would not fit below [`NIL`].
    pub fn new(base: u32, buckets_log2: u32, tick_ms: u64, now: Ticks) -> Self {
        assert!(tick_ms > 0, "tick must be at least 1 ms");
        assert!(buckets_log2 <= 24, "wheel too large");
        let buckets = 1u32 << buckets_log2;
        let end = u64::from(base) + u64::from(buckets) + 1;
        assert!(end < u64::from(NIL), "timer ids overflow");
        let heads = (0..=buckets)
            .map(|i| TimerNode {
                next: base + i,
                prev: base + i,
                deadline: Ticks(0),
            })
            .collect();
        TimerWheel {
            heads,
            base,
            mask: u64::from(buckets) - 1,
            tick_ms,
            next_tick: now.0 / tick_ms,
        }
    }

    /// Number of buckets (not counting the due list).
    pub fn buckets(&self) -> usize {
        self.heads.len() - 1
    }

    /// Bytes the wheel itself holds (the nodes live in their owners).
    pub fn memory_bytes(&self) -> usize {
        self.heads.len() * core::mem::size_of::<TimerNode>()
    }

    fn due_id(&self) -> u32 {
        self.base + self.mask as u32 + 1
    }

    fn links<N: TimerNodes + ?Sized>(&self, nodes: &N, id: u32) -> (u32, u32) {
        let n = if id >= self.base {
            &self.heads[(id - self.base) as usize]
        } else {
            nodes.node(id)
        };
        (n.next, n.prev)
    }

    fn set_next<N: TimerNodes + ?Sized>(&mut self, nodes: &mut N, id: u32, next: u32) {
        if id >= self.base {
            self.heads[(id - self.base) as usize].next = next;
        } else {
            nodes.node_mut(id).next = next;
        }
    }

    fn set_prev<N: TimerNodes + ?Sized>(&mut self, nodes: &mut N, id: u32, prev: u32) {
        if id >= self.base {
            self.heads[(id - self.base) as usize].prev = prev;
        } else {
            nodes.node_mut(id).prev = prev;
        }
    }

    /// Appends unlinked node `id` before sentinel `head` (FIFO within a bucket).
    fn push_back<N: TimerNodes + ?Sized>(&mut self, nodes: &mut N, head: u32, id: u32) {
        let (_, last) = self.links(nodes, head);
        {
            let n = nodes.node_mut(id);
            n.next = head;
            n.prev = last;
        }
        self.set_next(nodes, last, id);
        self.set_prev(nodes, head, id);
    }

    fn unlink<N: TimerNodes + ?Sized>(&mut self, nodes: &mut N, id: u32) {
        let (next, prev) = self.links(nodes, id);
        self.set_next(nodes, prev, next);
        self.set_prev(nodes, next, prev);
        let n = nodes.node_mut(id);
        n.next = NIL;
        n.prev = NIL;
    }

    /// Links unlinked node `id` where its (already stored) deadline belongs.
    fn place<N: TimerNodes + ?Sized>(&mut self, nodes: &mut N, id: u32) {
        let tick = nodes.node(id).deadline.0 / self.tick_ms;
        let head = if tick < self.next_tick {
            // Its bucket was already spliced: it is due now.
            self.due_id()
        } else {
            self.base + (tick & self.mask) as u32
        };
        self.push_back(nodes, head, id);
    }

    /// Arms node `id` (which must not be armed) for `deadline`. O(1).
    pub fn arm<N: TimerNodes + ?Sized>(&mut self, nodes: &mut N, id: u32, deadline: Ticks) {
        debug_assert!(id < self.base && !nodes.node(id).is_armed());
        nodes.node_mut(id).deadline = deadline;
        self.place(nodes, id);
    }

    /// Sets a new deadline for `id`, arming it if needed. A later deadline only writes the node
    /// (lazy); an earlier one moves it. O(1). The lazy case, every packet of a connection, is
    /// inlined into the caller; the others are not.
    #[inline(always)]
    pub fn rearm<N: TimerNodes + ?Sized>(&mut self, nodes: &mut N, id: u32, deadline: Ticks) {
        if !nodes.node_mut(id).extend(deadline) {
            self.rearm_move(nodes, id, deadline);
        }
    }

    /// `rearm` of a node not armed, or armed for a later deadline.
    #[inline(never)]
    fn rearm_move<N: TimerNodes + ?Sized>(&mut self, nodes: &mut N, id: u32, deadline: Ticks) {
        if !nodes.node(id).is_armed() {
            self.arm(nodes, id, deadline);
        } else {
            self.unlink(nodes, id);
            nodes.node_mut(id).deadline = deadline;
            self.place(nodes, id);
        }
    }

    /// Disarms `id` if armed. O(1).
    pub fn cancel<N: TimerNodes + ?Sized>(&mut self, nodes: &mut N, id: u32) {
        if nodes.node(id).is_armed() {
            self.unlink(nodes, id);
        }
    }

    /// Moves every bucket whose tick ended at or before `now` onto the due list. Each splice is
    /// O(1) and a call splices each bucket at most once, so the work is bounded by the wheel size
    /// however long the caller slept.
    pub fn advance<N: TimerNodes + ?Sized>(&mut self, nodes: &mut N, now: Ticks) {
        // Tick T is over once (T + 1) * tick_ms - 1 <= now.
        let target = now.0.saturating_add(1) / self.tick_ms;
        let mut spliced = 0usize;
        while self.next_tick < target {
            if spliced == self.buckets() {
                // Every bucket went to the due list during this call: nothing is left to splice
                // for the skipped ticks.
                self.next_tick = target;
                break;
            }
            let head = self.base + (self.next_tick & self.mask) as u32;
            self.splice_to_due(nodes, head);
            self.next_tick += 1;
            spliced += 1;
        }
    }

    fn splice_to_due<N: TimerNodes + ?Sized>(&mut self, nodes: &mut N, head: u32) {
        let (first, last) = self.links(nodes, head);
        if first == head {
            return;
        }
        let due = self.due_id();
        let (_, due_last) = self.links(nodes, due);
        self.set_next(nodes, due_last, first);
        self.set_prev(nodes, first, due_last);
        self.set_next(nodes, last, due);
        self.set_prev(nodes, due, last);
        self.set_next(nodes, head, head);
        self.set_prev(nodes, head, head);
    }

    /// Pops the next node from the due list whose deadline is `<= now`, unlinked. Nodes found
    /// there with a later deadline (lazy re-arm, later rounds) are relinked. Each node examined
    /// costs one unit of `budget`; returns `None` when the due list or the budget is exhausted.
    pub fn pop_expired<N: TimerNodes + ?Sized>(
        &mut self,
        nodes: &mut N,
        now: Ticks,
        budget: &mut usize,
    ) -> Option<u32> {
        let due = self.due_id();
        while *budget > 0 {
            let (first, _) = self.links(nodes, due);
            if first == due {
                return None;
            }
            *budget -= 1;
            self.unlink(nodes, first);
            if nodes.node(first).deadline <= now {
                return Some(first);
            }
            self.place(nodes, first);
        }
        None
    }

    /// Whether the due list is non-empty (work left for the next call).
    pub fn has_due<N: TimerNodes + ?Sized>(&self, nodes: &N) -> bool {
        let due = self.due_id();
        self.links(nodes, due).0 != due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn drain(w: &mut TimerWheel, nodes: &mut Vec<TimerNode>, now: Ticks) -> Vec<u32> {
        w.advance(nodes, now);
        let mut budget = usize::MAX;
        let mut out = Vec::new();
        while let Some(id) = w.pop_expired(nodes, now, &mut budget) {
            out.push(id);
        }
        out
    }

    #[test]
    fn fires_at_deadline_not_before() {
        let mut nodes = vec![TimerNode::default(); 4];
        let mut w = TimerWheel::new(4, 4, 10, Ticks(0));
        w.arm(&mut nodes, 0, Ticks(25));
        w.arm(&mut nodes, 1, Ticks(1000)); // several revolutions (16 buckets * 10 ms)
        assert!(drain(&mut w, &mut nodes, Ticks(24)).is_empty());
        assert_eq!(drain(&mut w, &mut nodes, Ticks(29)), vec![0]);
        assert!(!nodes[0].is_armed());
        assert!(drain(&mut w, &mut nodes, Ticks(999)).is_empty());
        assert!(nodes[1].is_armed());
        assert_eq!(drain(&mut w, &mut nodes, Ticks(1009)), vec![1]);
    }

    #[test]
    fn lazy_rearm_and_cancel() {
        let mut nodes = vec![TimerNode::default(); 3];
        let mut w = TimerWheel::new(3, 3, 1, Ticks(0));
        w.arm(&mut nodes, 0, Ticks(5));
        w.arm(&mut nodes, 1, Ticks(5));
        w.rearm(&mut nodes, 0, Ticks(50)); // later: lazy
        w.rearm(&mut nodes, 1, Ticks(2)); // earlier: moved
        w.arm(&mut nodes, 2, Ticks(3));
        w.cancel(&mut nodes, 2);
        assert_eq!(drain(&mut w, &mut nodes, Ticks(2)), vec![1]);
        assert!(drain(&mut w, &mut nodes, Ticks(49)).is_empty());
        assert_eq!(drain(&mut w, &mut nodes, Ticks(50)), vec![0]);
        assert!(drain(&mut w, &mut nodes, Ticks(10_000)).is_empty());
    }

    #[test]
    fn past_deadline_is_due_at_once_and_budget_bounds_work() {
        let mut nodes = vec![TimerNode::default(); 10];
        let mut w = TimerWheel::new(10, 4, 10, Ticks(0));
        for id in 0..10 {
            w.arm(&mut nodes, id, Ticks(5));
        }
        w.advance(&mut nodes, Ticks(100));
        let mut budget = 3;
        let mut got = Vec::new();
        while let Some(id) = w.pop_expired(&mut nodes, Ticks(100), &mut budget) {
            got.push(id);
        }
        assert_eq!(got, vec![0, 1, 2]);
        assert!(w.has_due(&nodes));
        // A deadline already passed goes straight to the due list.
        w.rearm(&mut nodes, 3, Ticks(1));
        assert_eq!(drain(&mut w, &mut nodes, Ticks(100)).len(), 7);
        assert!(!w.has_due(&nodes));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Arm(u32, u64),
        Cancel(u32),
        Advance(u64, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u32..16, 0u64..3000).prop_map(|(i, d)| Op::Arm(i, d)),
            1 => (0u32..16).prop_map(Op::Cancel),
            3 => (0u64..400, 1usize..8).prop_map(|(d, b)| Op::Advance(d, b)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Against a map id -> deadline: every fire is of an armed node at or after its deadline,
        /// exactly once; with unlimited budget nothing is more than one tick late; in the end
        /// everything armed fires.
        #[test]
        fn matches_model(ops in proptest::collection::vec(op(), 1..120), tick in 1u64..20, log2 in 1u32..5) {
            let mut nodes = vec![TimerNode::default(); 16];
            let mut w = TimerWheel::new(16, log2, tick, Ticks(0));
            let mut model: HashMap<u32, u64> = HashMap::new();
            let mut now = 0u64;
            let check = |w: &mut TimerWheel, nodes: &mut Vec<TimerNode>, model: &mut HashMap<u32, u64>, now: u64, budget: usize| {
                w.advance(nodes, Ticks(now));
                let mut b = budget;
                while let Some(id) = w.pop_expired(nodes, Ticks(now), &mut b) {
                    let d = model.remove(&id);
                    prop_assert!(d.is_some(), "fired unarmed {}", id);
                    prop_assert!(d.unwrap_or(u64::MAX) <= now, "early");
                    prop_assert!(!nodes[id as usize].is_armed());
                }
                if budget == usize::MAX {
                    for (&id, &d) in model.iter() {
                        prop_assert!(d + tick > now, "late: {} due {} now {}", id, d, now);
                    }
                }
                Ok(())
            };
            for o in ops {
                match o {
                    Op::Arm(id, d) => {
                        w.rearm(&mut nodes, id, Ticks(now + d));
                        model.insert(id, now + d);
                    }
                    Op::Cancel(id) => {
                        w.cancel(&mut nodes, id);
                        model.remove(&id);
                    }
                    Op::Advance(dt, b) => {
                        now += dt;
                        let budget = if b == 7 { usize::MAX } else { b };
                        check(&mut w, &mut nodes, &mut model, now, budget)?;
                    }
                }
                for (id, n) in nodes.iter().enumerate() {
                    prop_assert_eq!(n.is_armed(), model.contains_key(&(id as u32)));
                }
            }
            now += 4000;
            check(&mut w, &mut nodes, &mut model, now, usize::MAX)?;
            prop_assert!(model.is_empty());
        }
    }
}

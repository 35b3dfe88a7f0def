//! The RSS model: the redirection table (RETA) that maps a hash to a receive queue, and the map from
//! queues to the workers that poll them.
//!
//! A NIC takes the low bits of the RSS hash as the RETA index: DPDK documents `reta[hash % size]` with
//! a power-of-two size (`rte_eth_dev_rss_reta_update`, 64/128/512 entries on common NICs).

/// A RETA configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetaError {
    /// The table size is zero or not a power of two.
    #[error("RETA size {0} is not a power of two")]
    BadSize(usize),
    /// The queue map is empty.
    #[error("queue map has no queue")]
    NoQueue,
    /// A RETA entry names a queue the queue map does not know.
    #[error("RETA entry {entry} names queue {queue}, but only {queues} queues are mapped")]
    UnknownQueue {
        /// Index of the entry.
        entry: usize,
        /// Queue it names.
        queue: u16,
        /// Number of queues in the queue map.
        queues: usize,
    },
}

/// Redirection table: entry `i` holds the queue for hashes whose low bits equal `i`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reta {
    entries: Vec<u16>,
}

impl Reta {
    /// A table with the given queue per entry; the length must be a power of two.
    pub fn new(entries: Vec<u16>) -> Result<Self, RetaError> {
        if !entries.len().is_power_of_two() {
            return Err(RetaError::BadSize(entries.len()));
        }
        Ok(Reta { entries })
    }

    /// The table DPDK drivers program by default: entry `i` -> queue `i % n_queues`.
    pub fn round_robin(size: usize, n_queues: u16) -> Result<Self, RetaError> {
        if n_queues == 0 {
            return Err(RetaError::NoQueue);
        }
        Self::new(
            (0..size)
                .map(|i| (i % usize::from(n_queues)) as u16)
                .collect(),
        )
    }

    /// The queue of every entry.
    pub fn entries(&self) -> &[u16] {
        &self.entries
    }

    /// Number of entries (a power of two).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Always false: a valid table has at least one entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Mask that keeps the hash bits the NIC uses as the index.
    #[inline]
    pub fn mask(&self) -> u32 {
        (self.entries.len() - 1) as u32
    }

    /// The entry a hash selects.
    #[inline]
    pub fn entry_of(&self, hash: u32) -> usize {
        (hash & self.mask()) as usize
    }

    /// The queue a hash is steered to.
    #[inline]
    pub fn queue_of(&self, hash: u32) -> u16 {
        // The index is masked to the power-of-two length, so it is always in bounds.
        self.entries[self.entry_of(hash)]
    }
}

/// Which worker polls which receive queue. Worker `w` polls queue `w` of every port by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMap {
    worker_of_queue: Vec<u16>,
}

impl QueueMap {
    /// Queue `q` is polled by worker `q`.
    pub fn identity(n_queues: u16) -> Self {
        QueueMap {
            worker_of_queue: (0..n_queues).collect(),
        }
    }

    /// Queue `q` is polled by worker `worker_of_queue[q]`.
    pub fn new(worker_of_queue: Vec<u16>) -> Self {
        QueueMap { worker_of_queue }
    }

    /// Number of queues mapped.
    pub fn n_queues(&self) -> usize {
        self.worker_of_queue.len()
    }

    /// The worker polling `queue`, if the queue is mapped.
    #[inline]
    pub fn worker_of(&self, queue: u16) -> Option<usize> {
        self.worker_of_queue
            .get(usize::from(queue))
            .map(|&w| usize::from(w))
    }

    /// Checks that every RETA entry names a mapped queue.
    pub fn check(&self, reta: &Reta) -> Result<(), RetaError> {
        if self.worker_of_queue.is_empty() {
            return Err(RetaError::NoQueue);
        }
        match reta
            .entries()
            .iter()
            .enumerate()
            .find(|(_, &q)| usize::from(q) >= self.n_queues())
        {
            Some((entry, &queue)) => Err(RetaError::UnknownQueue {
                entry,
                queue,
                queues: self.n_queues(),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_must_be_power_of_two() {
        assert_eq!(Reta::new(vec![]).unwrap_err(), RetaError::BadSize(0));
        assert_eq!(Reta::new(vec![0; 96]).unwrap_err(), RetaError::BadSize(96));
        assert!(Reta::new(vec![0; 128]).is_ok());
    }

    #[test]
    fn low_bits_select_the_entry() {
        let reta = Reta::round_robin(128, 3).unwrap();
        assert_eq!(reta.mask(), 127);
        assert_eq!(reta.entry_of(0xdead_be85), 0x05);
        assert_eq!(reta.queue_of(0xdead_be85), 5 % 3);
        assert_eq!(reta.queue_of(0xffff_ff7f), 127 % 3);
    }

    #[test]
    fn queue_map_checks_entries() {
        let reta = Reta::new(vec![0, 1, 2, 1]).unwrap();
        assert!(QueueMap::identity(3).check(&reta).is_ok());
        assert_eq!(
            QueueMap::identity(2).check(&reta).unwrap_err(),
            RetaError::UnknownQueue {
                entry: 2,
                queue: 2,
                queues: 2
            }
        );
        let map = QueueMap::new(vec![1, 0]);
        assert_eq!(map.worker_of(0), Some(1));
        assert_eq!(map.worker_of(2), None);
    }
}

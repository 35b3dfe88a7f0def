//! Errors of the local-address module: configuration errors (raised once, at creation) and the one
//! runtime error of the allocation path.

use super::reta::RetaError;
use super::toeplitz::KeyTooShort;

/// A port layout or pool cannot be built from the given configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Zero workers.
    #[error("at least one worker is needed")]
    NoWorker,
    /// The port range is empty.
    #[error("local port range {first}..={last} is empty")]
    EmptyRange {
        /// First port.
        first: u16,
        /// Last port.
        last: u16,
    },
    /// A worker gets no port of the range (more workers than ports).
    #[error("worker {0} gets no local port of the range")]
    EmptyShare(usize),
    /// The RSS key is too short.
    #[error(transparent)]
    Key(#[from] KeyTooShort),
    /// The RETA or queue map is invalid.
    #[error(transparent)]
    Reta(#[from] RetaError),
    /// No RETA entry leads to a queue this worker polls, so RSS never delivers anything to it.
    #[error("worker {0} polls no queue named in the RETA")]
    NoRetaEntry(usize),
    /// For some (RIP, rport, LIP), no port of this worker's share makes the reply land on one of its
    /// queues. Happens with degenerate keys (e.g. repetitive "symmetric" keys), and now and then
    /// with a random key whose bits reach too few buckets from the port (the layout's property
    /// test drew one); use another random key, or `Steering::Partition` with hand-over of
    /// replies.
    #[error("RSS key and RETA cannot steer replies to worker {worker} (hash bucket {bucket})")]
    Unsteerable {
        /// The worker.
        worker: usize,
        /// A bucket of `H(rip, lip, rport, 0) % reta_size` that cannot be served.
        bucket: usize,
    },
    /// The worker index is not below the layout's worker count.
    #[error("worker {worker} out of range (layout has {n_workers} workers)")]
    NoSuchWorker {
        /// The worker asked for.
        worker: usize,
        /// Workers in the layout.
        n_workers: usize,
    },
    /// The pool was given no local address.
    #[error("no local address (LIP) configured")]
    NoLocalAddress,
    /// The same local address was given twice.
    #[error("local address {0} given twice")]
    DuplicateLocalAddress(std::net::Ipv4Addr),
}

/// No local port was found within the attempt budget for this (RIP, rport) on any LIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no free local port toward this real server")]
pub struct PortsExhausted;

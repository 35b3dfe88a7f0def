//! pktgen: a packet generator and reflector on the gateway's own DPDK layer, for benchmarks over
//! memif (DESIGN.md, testing ladder step 4).
//!
//! One lcore plays both ends of a FullNAT path: the clients on the port facing the gateway's client
//! side, the real servers on the port facing its server side. Frames carry timestamps so round trips
//! are timed; the NIC's RSS is played by putting each frame on the queue its Toeplitz hash selects.
//!
//! - [`rss`]: queue choice by Toeplitz hash and RETA.
//! - [`flows`]: the client flow space (10 M flows without a table), visiting order, handshake bitset.
//! - [`frame`]: client frame templates, the handshake's ACK, classification of returning frames.
//! - [`reflect`]: the stateless real-server side.
//! - [`latency`]: HdrHistogram of round trips, mergeable.
//! - [`engine`]: the lcore's poll loop and its phases.
//! - [`report`]: the JSON result and the live progress line.

pub mod engine;
pub mod flows;
pub mod frame;
pub mod latency;
pub mod reflect;
pub mod report;
pub mod rss;

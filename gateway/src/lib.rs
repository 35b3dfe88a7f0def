//! gateway: a DPDK-based L4 load balancer in the LVS/DPVS family.
//!
//! The datapath core (`wire`, `conn`, `service`, `laddr`, `forward`, `net`) knows nothing of DPDK: it
//! works on `&mut [u8]` frames and returns verdicts, so it is tested and benchmarked with plain
//! `cargo test`. Only the `dpdk` module touches FFI.

pub mod conn;
pub mod laddr;
pub mod service;
pub mod wire;

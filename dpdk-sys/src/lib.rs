//! Raw FFI bindings to DPDK 22.11 LTS, as Debian ships it (`libdpdk-dev`), linked shared so that EAL
//! loads its poll-mode drivers from its own driver directory.
//!
//! - `bindings.rs`: bindgen output over a narrow allowlist (eal, ethdev, mbuf, mempool, ring, lcore,
//!   cycles, flow, errno).
//! - `pcap`: libpcap's BPF compiler and filter (bindgen over <pcap/pcap.h>), for live captures.
//! - `gw_*` functions: a C shim (csrc/shim.c) wrapping DPDK's static-inline functions (rx/tx burst, mbuf
//!   alloc/free, lcore id, rte_errno, ring bursts, tsc), which have no symbol to link against.
//! - The `RTE_BIT64` flag macros, which bindgen cannot evaluate, as typed `u64` constants generated at
//!   build time by compiling a C program against the same headers.
//!
//! Nothing here is safe to call without reading the DPDK documentation; the `gateway` crate's `dpdk`
//! module is the safe layer.

#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code
)]
#![allow(clippy::all)]
#![allow(rustdoc::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// Typed values of DPDK's flag macros (`RTE_ETH_RSS_*`, `RTE_ETH_{RX,TX}_OFFLOAD_*`, `RTE_MBUF_F_*`).
pub mod consts {
    include!(concat!(env!("OUT_DIR"), "/consts.rs"));
}
pub use consts::*;

/// libpcap's BPF compiler and interpreter (`pcap_open_dead`, `pcap_compile`, `pcap_offline_filter`,
/// ...), for the filters of live captures. Linked from the system's libpcap (`libpcap-dev`).
pub mod pcap {
    include!(concat!(env!("OUT_DIR"), "/pcap_bindings.rs"));
}

/// Index of each `rte_mbuf` field for `gw_mbuf_offset` (must match csrc/shim.c).
pub mod mbuf_field {
    pub const BUF_ADDR: i32 = 0;
    pub const DATA_OFF: i32 = 1;
    pub const REFCNT: i32 = 2;
    pub const NB_SEGS: i32 = 3;
    pub const PORT: i32 = 4;
    pub const OL_FLAGS: i32 = 5;
    pub const PACKET_TYPE: i32 = 6;
    pub const PKT_LEN: i32 = 7;
    pub const DATA_LEN: i32 = 8;
    pub const HASH: i32 = 9;
    pub const BUF_LEN: i32 = 10;
    pub const POOL: i32 = 11;
    pub const NEXT: i32 = 12;
    pub const TX_OFFLOAD: i32 = 13;
}

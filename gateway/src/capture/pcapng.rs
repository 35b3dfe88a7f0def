//! A pcapng writer (draft-ietf-opsawg-pcapng, "PCAP Next Generation Dump File Format"), the format
//! dpdk-dumpcap and Wireshark write: one Section Header Block, one Interface Description Block for
//! the captured port (Ethernet, nanosecond timestamps), then one Enhanced Packet Block per frame
//! whose `epb_flags` option carries the direction, so Wireshark and tcpdump show In/Out.
//!
//! Everything is written in the host's byte order, as the spec allows: readers learn it from the
//! Section Header Block's byte-order magic.

use super::Direction;
use std::io::{self, Write};

/// Section Header Block type (spec 4.1): also the file's magic.
const SHB: u32 = 0x0A0D_0D0A;
/// Interface Description Block type (spec 4.2).
const IDB: u32 = 0x0000_0001;
/// Enhanced Packet Block type (spec 4.3).
const EPB: u32 = 0x0000_0006;
/// The byte-order magic of the Section Header Block.
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
/// LINKTYPE_ETHERNET (the tcpdump.org link-layer header types registry; DLT_EN10MB).
pub const LINKTYPE_ETHERNET: u16 = 1;

/// Option codes (spec 3.5 and the block sections).
const OPT_ENDOFOPT: u16 = 0;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;
const EPB_FLAGS: u16 = 2;

/// `epb_flags` bits 0-1, the direction (spec 4.3.1): 01 inbound, 10 outbound.
pub const EPB_INBOUND: u32 = 1;
pub const EPB_OUTBOUND: u32 = 2;

/// Timestamps in nanoseconds: `if_tsresol` 9 means 10^-9 s (spec 4.2; without the option readers
/// assume microseconds).
const TSRESOL_NS: u8 = 9;

/// Writes a pcapng capture of one interface.
pub struct Writer<W: Write> {
    w: W,
    packets: u64,
}

/// An option (spec 3.5): code, length, value padded to 32 bits.
fn opt(buf: &mut Vec<u8>, code: u16, value: &[u8]) {
    buf.extend_from_slice(&code.to_ne_bytes());
    buf.extend_from_slice(&(value.len() as u16).to_ne_bytes());
    buf.extend_from_slice(value);
    pad(buf);
}

fn pad(buf: &mut Vec<u8>) {
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

/// Frames a block body: type, total length, body, total length again (spec 3.1).
fn block(w: &mut impl Write, kind: u32, body: &[u8]) -> io::Result<()> {
    debug_assert!(body.len().is_multiple_of(4));
    let total = (body.len() + 12) as u32;
    let mut b = Vec::with_capacity(total as usize);
    b.extend_from_slice(&kind.to_ne_bytes());
    b.extend_from_slice(&total.to_ne_bytes());
    b.extend_from_slice(body);
    b.extend_from_slice(&total.to_ne_bytes());
    w.write_all(&b)
}

impl<W: Write> Writer<W> {
    /// Starts the file: the section header (naming `app` as the writer) and the interface
    /// `if_name` (with `description`), Ethernet frames of at most `snaplen` bytes.
    pub fn new(
        mut w: W,
        app: &str,
        if_name: &str,
        description: &str,
        snaplen: u32,
    ) -> io::Result<Writer<W>> {
        let mut b = Vec::new();
        b.extend_from_slice(&BYTE_ORDER_MAGIC.to_ne_bytes());
        b.extend_from_slice(&1u16.to_ne_bytes()); // major version
        b.extend_from_slice(&0u16.to_ne_bytes()); // minor version
        b.extend_from_slice(&(-1i64).to_ne_bytes()); // section length: not given
        opt(&mut b, SHB_USERAPPL, app.as_bytes());
        opt(&mut b, OPT_ENDOFOPT, &[]);
        block(&mut w, SHB, &b)?;

        let mut b = Vec::new();
        b.extend_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes()); // reserved
        b.extend_from_slice(&snaplen.to_ne_bytes());
        opt(&mut b, IF_NAME, if_name.as_bytes());
        if !description.is_empty() {
            opt(&mut b, IF_DESCRIPTION, description.as_bytes());
        }
        opt(&mut b, IF_TSRESOL, &[TSRESOL_NS]);
        opt(&mut b, OPT_ENDOFOPT, &[]);
        block(&mut w, IDB, &b)?;
        Ok(Writer { w, packets: 0 })
    }

    /// One frame: `data` (at most the snap length of it) of a frame `orig_len` bytes long, at
    /// `ts_ns` nanoseconds since the Unix epoch.
    pub fn packet(
        &mut self,
        dir: Direction,
        ts_ns: u64,
        orig_len: u32,
        data: &[u8],
    ) -> io::Result<()> {
        let mut b = Vec::with_capacity(data.len() + 40);
        b.extend_from_slice(&0u32.to_ne_bytes()); // interface id: the only IDB
        b.extend_from_slice(&((ts_ns >> 32) as u32).to_ne_bytes());
        b.extend_from_slice(&(ts_ns as u32).to_ne_bytes());
        b.extend_from_slice(&(data.len() as u32).to_ne_bytes());
        b.extend_from_slice(&orig_len.max(data.len() as u32).to_ne_bytes());
        b.extend_from_slice(data);
        pad(&mut b);
        let flags = match dir {
            Direction::In => EPB_INBOUND,
            Direction::Out => EPB_OUTBOUND,
        };
        opt(&mut b, EPB_FLAGS, &flags.to_ne_bytes());
        opt(&mut b, OPT_ENDOFOPT, &[]);
        block(&mut self.w, EPB, &b)?;
        self.packets += 1;
        Ok(())
    }

    /// Frames written so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    pub fn into_inner(self) -> W {
        self.w
    }
}

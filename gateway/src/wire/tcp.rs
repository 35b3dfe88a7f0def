//! TCP (RFC 9293) segments: header view, option walking, MSS clamping, and the TOA option that LVS
//! FullNAT / DPVS use to pass the client address to real servers.

use std::net::Ipv4Addr;

use super::checksum;
use super::field::{be16, be32};
use super::ip::IpProtocol;
use super::ipv4::Ipv4Packet;
use super::{Error, Result};

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    /// The source and the destination port, adjacent.
    pub const PORTS: Range<usize> = SRC_PORT.start..DST_PORT.end;
    pub const SEQ: Range<usize> = 4..8;
    pub const ACK: Range<usize> = 8..12;
    /// Data offset in the high nibble; the low nibble is reserved (and the old NS bit).
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
    pub const OPTIONS: usize = 20;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;
/// Longest TCP header (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;
/// Offset of the checksum field in the header.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// Option kinds (IANA "TCP Option Kind Numbers").
pub mod kind {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMPS: u8 = 8;
    /// TOA ("TCP Option Address") as used by LVS FullNAT and DPVS; officially the RFC 6994
    /// experimental kind, so a 254 of another length is treated as unknown, not as TOA.
    pub const TOA: u8 = 254;
}

/// Length of the TOA option: kind, length, port (2), IPv4 address (4).
pub const TOA_LEN: usize = 8;

/// The flags byte (RFC 9293 3.1, with ECE/CWR from RFC 3168).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);
    pub const URG: TcpFlags = TcpFlags(0x20);
    pub const ECE: TcpFlags = TcpFlags(0x40);
    pub const CWR: TcpFlags = TcpFlags(0x80);
    /// The flags whose combination decides what a segment does to a connection's state (ACK,
    /// SYN, FIN, RST): the only ones `is_plain_ack` looks at.
    pub const STATE_BITS: u8 = Self::ACK.0 | Self::SYN.0 | Self::FIN.0 | Self::RST.0;

    #[inline]
    pub fn bits(self) -> u8 {
        self.0
    }

    /// All bits of `other` are set.
    #[inline]
    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Any bit of `other` is set.
    #[inline]
    pub fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    #[inline]
    pub fn fin(self) -> bool {
        self.contains(Self::FIN)
    }
    #[inline]
    pub fn syn(self) -> bool {
        self.contains(Self::SYN)
    }
    #[inline]
    pub fn rst(self) -> bool {
        self.contains(Self::RST)
    }
    #[inline]
    pub fn psh(self) -> bool {
        self.contains(Self::PSH)
    }
    #[inline]
    pub fn ack(self) -> bool {
        self.contains(Self::ACK)
    }
    #[inline]
    pub fn urg(self) -> bool {
        self.contains(Self::URG)
    }
    #[inline]
    pub fn ece(self) -> bool {
        self.contains(Self::ECE)
    }
    #[inline]
    pub fn cwr(self) -> bool {
        self.contains(Self::CWR)
    }

    /// ACK and none of SYN, FIN and RST, whatever else is set (PSH, URG, ECE, CWR): a segment
    /// that moves no connection out of ESTABLISHED in IPVS's state table (`conn::state`).
    #[inline]
    pub fn is_plain_ack(self) -> bool {
        self.0 & Self::STATE_BITS == Self::ACK.0
    }

    /// A combination no conforming stack sends, only scanners and attacks: no flag at all ("null"
    /// scan), SYN with FIN or RST, FIN with RST, or FIN/PSH/URG without ACK ("xmas" and FIN
    /// scans). ECE/CWR are ignored (a SYN carries both when negotiating ECN, RFC 3168 6.1.1).
    #[inline]
    pub fn is_invalid(self) -> bool {
        let f = self.0 & 0x3F;
        let syn_fin_rst = |a: TcpFlags, b: TcpFlags| f & (a.0 | b.0) == a.0 | b.0;
        f == 0
            || syn_fin_rst(Self::SYN, Self::FIN)
            || syn_fin_rst(Self::SYN, Self::RST)
            || syn_fin_rst(Self::FIN, Self::RST)
            || (f & Self::ACK.0 == 0 && f & (Self::FIN.0 | Self::PSH.0 | Self::URG.0) != 0)
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl core::fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        let mut first = true;
        for (i, n) in NAMES.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(n)?;
                first = false;
            }
        }
        if first {
            f.write_str("(none)")?;
        }
        Ok(())
    }
}

/// A parsed TCP option. EOL and NOP are consumed by the iterator and not yielded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// RFC 9293 3.7.1.
    Mss(u16),
    /// RFC 7323 2.
    WindowScale(u8),
    /// RFC 2018.
    SackPermitted,
    /// RFC 2018: the raw blocks (pairs of 32-bit edges).
    Sack(&'a [u8]),
    /// RFC 7323 3.
    Timestamps { tsval: u32, tsecr: u32 },
    /// LVS/DPVS TOA: the client's port and address.
    Toa { port: u16, addr: Ipv4Addr },
    /// Anything else: its kind and the bytes after the length octet.
    Unknown { kind: u8, data: &'a [u8] },
}

/// Walks an options area (RFC 9293 3.2): EOL ends the list, NOP is one byte, every other option is
/// kind, length (counting both), data. Yields `(offset in the area, kind, whole option bytes)`. A
/// length below 2 or past the end yields `Err(Malformed)` and ends the walk.
#[derive(Debug, Clone)]
pub struct RawOptions<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> RawOptions<'a> {
    #[inline]
    pub fn new(data: &'a [u8]) -> Self {
        RawOptions { data, pos: 0 }
    }
}

impl<'a> Iterator for RawOptions<'a> {
    type Item = Result<(usize, u8, &'a [u8])>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let at = self.pos;
            let kind = *self.data.get(at)?;
            match kind {
                kind::EOL => {
                    self.pos = self.data.len();
                    return None;
                }
                kind::NOP => self.pos += 1,
                _ => {
                    let len = usize::from(*self.data.get(at + 1).unwrap_or(&0));
                    if len < 2 || at + len > self.data.len() {
                        self.pos = self.data.len();
                        return Some(Err(Error::Malformed));
                    }
                    self.pos = at + len;
                    return Some(Ok((at, kind, &self.data[at..at + len])));
                }
            }
        }
    }
}

/// Typed options; a known option with a wrong length is `Err(Malformed)` (RFC 9293 3.2 lets a
/// receiver treat illegal lengths as an error).
#[derive(Debug, Clone)]
pub struct TcpOptions<'a> {
    raw: RawOptions<'a>,
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = Result<TcpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.raw.next()?.and_then(|(_, k, o)| parse_option(k, o)))
    }
}

fn parse_option(kind: u8, o: &[u8]) -> Result<TcpOption<'_>> {
    let data = &o[2..];
    let fixed = |n: usize| {
        if o.len() == n {
            Ok(())
        } else {
            Err(Error::Malformed)
        }
    };
    Ok(match kind {
        kind::MSS => {
            fixed(4)?;
            TcpOption::Mss(u16::from_be_bytes([data[0], data[1]]))
        }
        kind::WINDOW_SCALE => {
            fixed(3)?;
            TcpOption::WindowScale(data[0])
        }
        kind::SACK_PERMITTED => {
            fixed(2)?;
            TcpOption::SackPermitted
        }
        kind::SACK => {
            if data.len() & 7 != 0 || data.is_empty() {
                return Err(Error::Malformed);
            }
            TcpOption::Sack(data)
        }
        kind::TIMESTAMPS => {
            fixed(10)?;
            TcpOption::Timestamps {
                tsval: u32::from_be_bytes([data[0], data[1], data[2], data[3]]),
                tsecr: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            }
        }
        kind::TOA if o.len() == TOA_LEN => TcpOption::Toa {
            port: u16::from_be_bytes([data[0], data[1]]),
            addr: Ipv4Addr::new(data[2], data[3], data[4], data[5]),
        },
        _ => TcpOption::Unknown { kind, data },
    })
}

/// A read/write view of a TCP segment (header, options, data).
///
/// After [`new_checked`](Self::new_checked): 20 <= header length <= buffer. The buffer is taken to
/// end where the segment ends (pass the IPv4 payload, not the frame).
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` below 20 bytes; `BadHeaderLen` if the data offset is below 5 or the header
    /// runs past the buffer.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN || hl > b.len() {
            return Err(Error::BadHeaderLen);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The source and the destination port, read as one word and rotated so that the source
    /// port is its low half, as a tuple holds them (as `Ipv4Packet::addrs`).
    #[inline]
    pub fn ports(&self) -> (u16, u16) {
        let w = be32(self.buffer.as_ref(), field::PORTS).rotate_left(16);
        (w as u16, (w >> 16) as u16)
    }

    #[inline]
    pub fn seq(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ)
    }

    #[inline]
    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK)
    }

    /// Data offset in 32-bit words.
    #[inline]
    pub fn data_offset(&self) -> u8 {
        self.buffer.as_ref()[field::DATA_OFF] >> 4
    }

    /// Header length in bytes, options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.data_offset()) * 4
    }

    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    #[inline]
    pub fn fin(&self) -> bool {
        self.flags().fin()
    }
    #[inline]
    pub fn syn(&self) -> bool {
        self.flags().syn()
    }
    #[inline]
    pub fn rst(&self) -> bool {
        self.flags().rst()
    }
    #[inline]
    pub fn psh(&self) -> bool {
        self.flags().psh()
    }
    #[inline]
    pub fn ack(&self) -> bool {
        self.flags().ack()
    }
    #[inline]
    pub fn urg(&self) -> bool {
        self.flags().urg()
    }
    #[inline]
    pub fn ece(&self) -> bool {
        self.flags().ece()
    }
    #[inline]
    pub fn cwr(&self) -> bool {
        self.flags().cwr()
    }

    #[inline]
    pub fn window(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WINDOW)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Both ports, source then destination, as their four bytes lie in memory: for checksum
    /// arithmetic without byte swaps (`checksum::ne32`).
    #[inline]
    pub fn ports_ne(&self) -> u32 {
        checksum::ne32(
            self.buffer.as_ref(),
            field::SRC_PORT.start..field::DST_PORT.end,
        )
    }

    /// The checksum in memory order (`checksum::ne16`).
    #[inline]
    pub fn checksum_ne(&self) -> u16 {
        checksum::ne16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn urgent(&self) -> u16 {
        be16(self.buffer.as_ref(), field::URGENT)
    }

    /// The options area (may end in EOL and padding).
    #[inline]
    pub fn options(&self) -> &[u8] {
        // Empty, not a panic, for a data offset below 5 or past the buffer (an unchecked view's).
        let b = self.buffer.as_ref();
        b.get(field::OPTIONS..self.header_len()).unwrap_or_default()
    }

    /// Iterates the options, typed.
    #[inline]
    pub fn option_iter(&self) -> TcpOptions<'_> {
        TcpOptions {
            raw: RawOptions::new(self.options()),
        }
    }

    /// The MSS option's value, if present and well formed.
    #[inline]
    pub fn mss(&self) -> Option<u16> {
        self.option_iter().find_map(|o| match o {
            Ok(TcpOption::Mss(v)) => Some(v),
            _ => None,
        })
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// The whole segment.
    #[inline]
    pub fn segment(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Verifies the checksum with the IPv4 pseudo-header.
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        checksum::l4_verifies(src, dst, IpProtocol::TCP, self.buffer.as_ref())
    }

    /// Offset (in the segment) and value of the MSS option; `None` if absent or the options are
    /// malformed before it.
    fn find_mss(&self) -> Option<(usize, u16)> {
        for o in RawOptions::new(self.options()) {
            let (at, k, bytes) = o.ok()?;
            if k == kind::MSS {
                if bytes.len() != 4 {
                    return None;
                }
                return Some((
                    field::OPTIONS + at + 2,
                    u16::from_be_bytes([bytes[2], bytes[3]]),
                ));
            }
        }
        None
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_seq(&mut self, v: u32) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_ack_number(&mut self, v: u32) {
        self.buffer.as_mut()[field::ACK].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the data offset (in words), keeping the reserved nibble.
    #[inline]
    pub fn set_data_offset(&mut self, words: u8) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (words << 4) | (*b & 0x0F);
    }

    #[inline]
    pub fn set_flags(&mut self, f: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = f.0;
    }

    #[inline]
    pub fn set_window(&mut self, v: u16) {
        self.buffer.as_mut()[field::WINDOW].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets both ports from their memory-order value (`ports_ne`'s counterpart).
    #[inline]
    pub fn set_ports_ne(&mut self, v: u32) {
        self.buffer.as_mut()[field::SRC_PORT.start..field::DST_PORT.end]
            .copy_from_slice(&v.to_ne_bytes());
    }

    /// Sets the checksum from its memory-order value.
    #[inline]
    pub fn set_checksum_ne(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_ne_bytes());
    }

    #[inline]
    pub fn set_urgent(&mut self, v: u16) {
        self.buffer.as_mut()[field::URGENT].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }

    /// Computes the checksum from scratch.
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        // A checked segment holds the checksum field; only a >64 KiB buffer yields None.
        if let Some(c) = checksum::l4(src, dst, IpProtocol::TCP, self.buffer.as_ref()) {
            self.set_checksum(c);
        }
    }

    /// Rewrites the source port and patches the checksum (RFC 1624).
    #[inline]
    pub fn set_src_port_incremental(&mut self, v: u16) {
        let c = checksum::update16(self.checksum(), self.src_port(), v);
        self.set_src_port(v);
        self.set_checksum(c);
    }

    /// Rewrites the destination port and patches the checksum (RFC 1624).
    #[inline]
    pub fn set_dst_port_incremental(&mut self, v: u16) {
        let c = checksum::update16(self.checksum(), self.dst_port(), v);
        self.set_dst_port(v);
        self.set_checksum(c);
    }

    /// Rewrites the sequence number and patches the checksum (sequence adjustment, SYN proxy).
    #[inline]
    pub fn set_seq_incremental(&mut self, v: u32) {
        let c = checksum::update32(self.checksum(), self.seq(), v);
        self.set_seq(v);
        self.set_checksum(c);
    }

    /// Rewrites the acknowledgment number and patches the checksum.
    #[inline]
    pub fn set_ack_number_incremental(&mut self, v: u32) {
        let c = checksum::update32(self.checksum(), self.ack_number(), v);
        self.set_ack_number(v);
        self.set_checksum(c);
    }

    /// Patches the checksum for an IPv4 address change in the pseudo-header (FullNAT rewrites).
    #[inline]
    pub fn update_checksum_for_addr(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        let c = checksum::update32(self.checksum(), u32::from(old), u32::from(new));
        self.set_checksum(c);
    }

    /// Overwrites header bytes at `start` with `new` and patches the checksum over the enclosing
    /// 16-bit-aligned region, so a field at an odd offset (an option after a lone NOP) works.
    /// The caller keeps `start + new.len()` within the header (whose length is a multiple of 4).
    fn patch_header(&mut self, start: usize, new: &[u8]) {
        let lo = start & !1;
        let hi = (start + new.len() + 1) & !1;
        let old_sum = checksum::fold(checksum::sum(&self.buffer.as_ref()[lo..hi]));
        self.buffer.as_mut()[start..start + new.len()].copy_from_slice(new);
        let new_sum = checksum::fold(checksum::sum(&self.buffer.as_ref()[lo..hi]));
        let c = checksum::update16(self.checksum(), old_sum, new_sum);
        self.set_checksum(c);
    }

    /// Lowers the MSS option to `new_max` if it is larger (MTU clamping), patching the checksum.
    /// Returns whether the segment changed. Segments without a (well-formed) MSS are left alone.
    pub fn clamp_mss(&mut self, new_max: u16) -> bool {
        match self.find_mss() {
            Some((at, v)) if v > new_max => {
                self.patch_header(at, &new_max.to_be_bytes());
                true
            }
            _ => false,
        }
    }

    /// Lowers the MSS option by `by` bytes (saturating), patching the checksum; returns whether it
    /// changed. With `by` = [`TOA_LEN`] this is DPVS's adjustment on a SYN when TOA is in use, so
    /// full-sized segments still fit the MTU with the 8 option bytes added.
    pub fn reduce_mss(&mut self, by: u16) -> bool {
        match self.find_mss() {
            Some((at, v)) if by > 0 && v > 0 => {
                self.patch_header(at, &v.saturating_sub(by).to_be_bytes());
                true
            }
            _ => false,
        }
    }

    /// [`reduce_mss`](Self::reduce_mss) by [`TOA_LEN`]: what DPVS does to a SYN's MSS when it adds
    /// TOA to the connection, so MSS-sized segments plus the option still fit the path MTU.
    #[inline]
    pub fn reduce_mss_for_toa(&mut self) -> bool {
        self.reduce_mss(TOA_LEN as u16)
    }
}

/// Why TOA could not be inserted. The datapath forwards the segment without TOA (and counts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ToaError {
    /// Fewer than 8 bytes of room after the IP packet (or total length would pass 65535).
    #[error("no room for the TOA option")]
    NoRoom,
    /// The TCP header already has more than 52 bytes (60 is the maximum).
    #[error("TCP option space full")]
    OptionSpaceFull,
    /// Not a valid, unfragmented IPv4/TCP packet with well-formed options at `l3_off`.
    #[error("malformed packet for TOA insertion")]
    Malformed,
}

/// Inserts the TOA option (kind 254, length 8, client port then client IPv4 address, network order:
/// the format LVS FullNAT and DPVS use) right after the fixed TCP header of the IPv4/TCP packet at
/// `frame[l3_off..]`, moving options and data down by 8 bytes; updates the data offset, the IPv4
/// total length and both checksums incrementally. `frame[..frame_len]` is the received frame and
/// `frame[frame_len..]` spare tailroom. Returns the new frame length.
///
/// If the segment already carries a TOA option (a client could forge one to spoof its address to the
/// real server), it is overwritten with the true client address instead and the length is unchanged.
///
/// With `syn`, the segment's MSS option (if any) is also lowered by [`TOA_LEN`] where the option is
/// inserted ([`TcpPacket::reduce_mss_for_toa`]), in the same walk over the options and the same
/// checksum update: what DPVS does to a SYN it adds TOA to. A forged TOA overwritten in place
/// leaves the MSS as it was (the segment did not grow).
///
/// The TCP checksum must be a full checksum (not a pseudo-header seed left for TX offload).
pub fn insert_toa(
    frame: &mut [u8],
    frame_len: usize,
    l3_off: usize,
    client_port: u16,
    client_ip: Ipv4Addr,
    syn: bool,
) -> core::result::Result<usize, ToaError> {
    let value = toa_value(client_port, client_ip);
    let mss_by = if syn { TOA_LEN as u16 } else { 0 };
    insert_option_ipv4(frame, frame_len, l3_off, &value, mss_by)
}

/// The IPv4 TOA option's bytes.
fn toa_value(client_port: u16, client_ip: Ipv4Addr) -> [u8; TOA_LEN] {
    let mut value = [0u8; TOA_LEN];
    value[0] = kind::TOA;
    value[1] = TOA_LEN as u8;
    value[2..4].copy_from_slice(&client_port.to_be_bytes());
    value[4..8].copy_from_slice(&client_ip.octets());
    value
}

/// The IPv6 TOA (an IPv6 client's address, [`TOA6_LEN`] bytes) in an IPv4 TCP packet: what NAT64
/// sends an IPv4 real server (DPVS does the same). Otherwise as [`insert_toa`].
pub fn insert_toa6_in_ipv4(
    frame: &mut [u8],
    frame_len: usize,
    l3_off: usize,
    client_port: u16,
    client_ip: std::net::Ipv6Addr,
) -> core::result::Result<usize, ToaError> {
    let mut value = [0u8; TOA6_LEN];
    value[0] = kind::TOA;
    value[1] = TOA6_LEN as u8;
    value[2..4].copy_from_slice(&client_port.to_be_bytes());
    value[4..20].copy_from_slice(&client_ip.octets());
    insert_option_ipv4(frame, frame_len, l3_off, &value, 0)
}

/// [`put_option`] into the IPv4 TCP packet at `frame[l3_off..]`, its total length and header
/// checksum fixed.
fn insert_option_ipv4(
    frame: &mut [u8],
    frame_len: usize,
    l3_off: usize,
    value: &[u8],
    mss_by: u16,
) -> core::result::Result<usize, ToaError> {
    let n = value.len();
    if frame_len > frame.len() || l3_off > frame_len {
        return Err(ToaError::Malformed);
    }
    let ip = Ipv4Packet::new_checked(&frame[l3_off..frame_len]).map_err(|_| ToaError::Malformed)?;
    if ip.protocol() != IpProtocol::TCP || ip.is_fragment() {
        return Err(ToaError::Malformed);
    }
    let total_len = usize::from(ip.total_len());
    let l4_off = l3_off + ip.header_len();
    let ip_end = l3_off + total_len;
    if total_len + n > usize::from(u16::MAX) {
        return Err(ToaError::NoRoom);
    }
    if !put_option(frame, l4_off, ip_end, value, mss_by)? {
        return Ok(frame_len);
    }
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[l3_off..ip_end + n]);
    ip.set_total_len_incremental((total_len + n) as u16);
    Ok(frame_len.max(ip_end + n))
}

/// Length of the IPv6 TOA option: kind 254, length 20, client port, client IPv6 address, the
/// layout of DPVS's `tcpopt_ip6_addr` and of the toa module's IPv6 support.
pub const TOA6_LEN: usize = 20;

/// [`insert_toa`] for an IPv6 packet (header at `l3_off`, its TCP header at `l4_off` after any
/// extension headers): the 20-byte IPv6 TOA, the payload length fixed (IPv6 has no header
/// checksum). Returns the new frame length.
pub fn insert_toa6(
    frame: &mut [u8],
    frame_len: usize,
    l3_off: usize,
    l4_off: usize,
    client_port: u16,
    client_ip: std::net::Ipv6Addr,
) -> core::result::Result<usize, ToaError> {
    let mut value = [0u8; TOA6_LEN];
    value[0] = kind::TOA;
    value[1] = TOA6_LEN as u8;
    value[2..4].copy_from_slice(&client_port.to_be_bytes());
    value[4..20].copy_from_slice(&client_ip.octets());
    if frame_len > frame.len() || l3_off + super::ipv6::HEADER_LEN > frame_len || l4_off > frame_len
    {
        return Err(ToaError::Malformed);
    }
    let payload_len = usize::from(u16::from_be_bytes([frame[l3_off + 4], frame[l3_off + 5]]));
    let ip_end = l3_off + super::ipv6::HEADER_LEN + payload_len;
    if ip_end > frame_len || l4_off < l3_off + super::ipv6::HEADER_LEN {
        return Err(ToaError::Malformed);
    }
    if payload_len + TOA6_LEN > usize::from(u16::MAX) {
        return Err(ToaError::NoRoom);
    }
    if !put_option(frame, l4_off, ip_end, &value, 0)? {
        return Ok(frame_len);
    }
    frame[l3_off + 4..l3_off + 6].copy_from_slice(&((payload_len + TOA6_LEN) as u16).to_be_bytes());
    Ok(frame_len.max(ip_end + TOA6_LEN))
}

/// Puts option `value` (a TOA) into the TCP segment `frame[l4_off..ip_end]`: every option of its
/// kind and length is overwritten with it (a client could forge one to spoof its address to the
/// real server), one of its kind with another length is blanked with NOPs; without one of its
/// length it is inserted right after the fixed header, options and data moving down by its length
/// into the tailroom `frame[ip_end..]`. With `mss_by` > 0 and the option inserted (not written
/// over a forged one), the first MSS option, if it is well-formed and not 0, is lowered by that
/// much (saturating), as [`TcpPacket::reduce_mss`] does.
/// The TCP checksum is updated incrementally, once (the caller fixes the IP length). Returns
/// whether the segment grew.
fn put_option(
    frame: &mut [u8],
    l4_off: usize,
    ip_end: usize,
    value: &[u8],
    mss_by: u16,
) -> core::result::Result<bool, ToaError> {
    let n = value.len();
    let hl = TcpPacket::new_checked(&frame[l4_off..ip_end])
        .map_err(|_| ToaError::Malformed)?
        .header_len();
    // One walk over the options (RFC 9293 3.1: EOL ends the list, NOP is one byte, any other
    // option is kind, length, value). Bit `i` of `same_kind` marks an option of the TOA's kind at
    // option byte `i` (there are at most 40); `mss` is the first MSS option's offset and length.
    let opts = &frame[l4_off + HEADER_LEN..l4_off + hl];
    let mut same_kind: u64 = 0;
    let mut mss = None;
    let mut at = 0;
    while let Some(&k) = opts.get(at) {
        match k {
            kind::EOL => break,
            kind::NOP => at += 1,
            _ => {
                let len = usize::from(opts.get(at + 1).copied().unwrap_or(0));
                if len < 2 || at + len > opts.len() {
                    return Err(ToaError::Malformed);
                }
                if k == value[0] {
                    same_kind |= 1 << at;
                } else if k == kind::MSS && mss.is_none() {
                    mss = Some((field::OPTIONS + at, len));
                }
                at += len;
            }
        }
    }
    let mut same = false;
    if same_kind != 0 {
        let mut tcp = TcpPacket::new_unchecked(&mut frame[l4_off..ip_end]);
        while same_kind != 0 {
            let at = field::OPTIONS + same_kind.trailing_zeros() as usize;
            same_kind &= same_kind - 1;
            let len = usize::from(tcp.segment()[at + 1]);
            if len == n {
                tcp.patch_header(at, value);
                same = true;
            } else {
                tcp.patch_header(at, &[1u8; 40][..len]);
            }
        }
    }
    let grow = !same;
    // The MSS option's value and what it becomes, if it changes: only where the segment grows.
    let mss = match mss {
        Some((at, 4)) if mss_by > 0 && grow => {
            let v = u16::from_be_bytes([frame[l4_off + at + 2], frame[l4_off + at + 3]]);
            (v > 0).then(|| (at + 2, v, v.saturating_sub(mss_by)))
        }
        _ => None,
    };
    if grow && hl + n > MAX_HEADER_LEN {
        return Err(ToaError::OptionSpaceFull);
    }
    if grow && frame.len() < ip_end + n {
        return Err(ToaError::NoRoom);
    }
    let seg_len = ip_end - l4_off;
    let old_word = u16::from_be_bytes([
        frame[l4_off + field::DATA_OFF],
        frame[l4_off + field::FLAGS],
    ]);
    // The checksum's change, summed once (RFC 1624 eqn. 3: add the complement of each old 16-bit
    // value and each new one).
    let mut acc = 0u64;
    if grow {
        // Move options and data down; `copy_within` handles the overlap.
        frame.copy_within(l4_off + HEADER_LEN..ip_end, l4_off + HEADER_LEN + n);
        frame[l4_off + HEADER_LEN..l4_off + HEADER_LEN + n].copy_from_slice(value);
        let b = &mut frame[l4_off + field::DATA_OFF];
        *b = ((((hl + n) / 4) as u8) << 4) | (*b & 0x0F);
        let new_word = u16::from_be_bytes([
            frame[l4_off + field::DATA_OFF],
            frame[l4_off + field::FLAGS],
        ]);
        // The moved bytes keep their 16-bit alignment (`n` is even), so their sum is unchanged;
        // what changes is the data-offset word, the new bytes, and the length in the
        // pseudo-header (for IPv6 a 32-bit length whose upper half stays 0).
        acc += u64::from(!old_word)
            + u64::from(new_word)
            + checksum::sum(value)
            + u64::from(!(seg_len as u16))
            + u64::from((seg_len + n) as u16);
    }
    if let Some((at, old, new)) = mss {
        // The value's offset in the segment keeps its parity in the move (`n` is even). At an odd
        // offset its bytes are the low half of one 16-bit word and the high half of the next: in
        // the one's complement sum they count byte-swapped (RFC 1071 2(B)).
        let (odd, at) = (at % 2, l4_off + at + if grow { n } else { 0 });
        frame[at..at + 2].copy_from_slice(&new.to_be_bytes());
        let (old, new) = match odd {
            0 => (old, new),
            _ => (old.swap_bytes(), new.swap_bytes()),
        };
        acc += u64::from(!old) + u64::from(new);
    }
    if grow || mss.is_some() {
        let mut tcp = TcpPacket::new_unchecked(&mut frame[l4_off..]);
        let c = !checksum::fold(u64::from(!tcp.checksum()) + acc);
        tcp.set_checksum(c);
    }
    Ok(grow)
}

/// The client port and address from a TOA option, if the segment has one.
pub fn toa_of<T: AsRef<[u8]>>(tcp: &TcpPacket<T>) -> Option<(u16, Ipv4Addr)> {
    tcp.option_iter().find_map(|o| match o {
        Ok(TcpOption::Toa { port, addr }) => Some((port, addr)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

    /// A SYN 40000 -> 80 with options MSS 1460, NOP, WS 7, SACK-permitted, TS;
    /// data offset 10 (40 bytes), then 3 payload bytes.
    fn syn() -> Vec<u8> {
        let mut v = vec![
            0x9c, 0x40, 0x00, 0x50, // ports
            0x00, 0x00, 0x03, 0xe8, // seq 1000
            0x00, 0x00, 0x00, 0x00, // ack
            0xa0, 0x02, 0xff, 0xff, // doff 10, SYN, window
            0x00, 0x00, 0x00, 0x00, // checksum, urgent
            0x02, 0x04, 0x05, 0xb4, // MSS 1460
            0x01, 0x03, 0x03, 0x07, // NOP, WS 7
            0x04, 0x02, // SACK permitted
            0x08, 0x0a, 0, 0, 0, 1, 0, 0, 0, 2, // TS 1, 2
        ];
        v.extend_from_slice(b"xyz");
        let mut t = TcpPacket::new_unchecked(&mut v[..]);
        t.fill_checksum(SRC, DST);
        v
    }

    #[test]
    fn getters() {
        let b = syn();
        let t = TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(t.src_port(), 40000);
        assert_eq!(t.dst_port(), 80);
        assert_eq!(t.ports(), (40000, 80));
        assert_eq!(t.seq(), 1000);
        assert_eq!(t.ack_number(), 0);
        assert_eq!(t.data_offset(), 10);
        assert_eq!(t.header_len(), 40);
        assert_eq!(t.flags(), TcpFlags::SYN);
        assert!(t.syn() && !t.ack() && !t.fin() && !t.rst() && !t.psh() && !t.urg());
        assert!(!t.ece() && !t.cwr());
        assert_eq!(t.window(), 0xffff);
        assert_eq!(t.urgent(), 0);
        assert_eq!(t.options().len(), 20);
        assert_eq!(t.payload(), b"xyz");
        assert!(t.verify_checksum(SRC, DST));
        assert!(!t.verify_checksum(SRC, Ipv4Addr::new(198, 51, 100, 8)));
        let opts: Vec<_> = t.option_iter().collect::<Result<_>>().unwrap();
        assert_eq!(
            opts,
            vec![
                TcpOption::Mss(1460),
                TcpOption::WindowScale(7),
                TcpOption::SackPermitted,
                TcpOption::Timestamps { tsval: 1, tsecr: 2 },
            ]
        );
        assert_eq!(t.mss(), Some(1460));
        assert_eq!(toa_of(&t), None);
    }

    #[test]
    fn flag_bits_and_setters() {
        let mut b = syn();
        let mut t = TcpPacket::new_checked(&mut b[..]).unwrap();
        t.set_flags(TcpFlags::ECE | TcpFlags::CWR | TcpFlags::URG | TcpFlags::PSH | TcpFlags::FIN);
        assert!(t.ece() && t.cwr() && t.urg() && t.psh() && t.fin() && !t.syn());
        assert_eq!(t.flags().bits(), 0xE9);
        assert_eq!(format!("{:?}", t.flags()), "FIN|PSH|URG|ECE|CWR");
        assert_eq!(format!("{:?}", TcpFlags::default()), "(none)");
        t.set_seq(7);
        t.set_ack_number(9);
        t.set_window(3);
        t.set_urgent(4);
        t.set_src_port(1);
        t.set_dst_port(2);
        assert_eq!(
            (t.seq(), t.ack_number(), t.window(), t.urgent()),
            (7, 9, 3, 4)
        );
        assert_eq!((t.src_port(), t.dst_port()), (1, 2));
    }

    #[test]
    fn invalid_flag_sets() {
        use TcpFlags as F;
        for bad in [
            F(0),
            F::SYN | F::FIN,
            F::SYN | F::RST,
            F::SYN | F::FIN | F::ACK,
            F::SYN | F::RST | F::ACK,
            F::FIN | F::RST | F::ACK,
            F::FIN,
            F::PSH,
            F::URG,
            F::FIN | F::PSH | F::URG, // xmas
            F::ECE | F::CWR,          // only ECN bits: no real flag
        ] {
            assert!(bad.is_invalid(), "{bad:?}");
        }
        for good in [
            F::SYN,
            F::SYN | F::ECE | F::CWR,
            F::SYN | F::ACK,
            F::ACK,
            F::ACK | F::PSH,
            F::FIN | F::ACK,
            F::RST,
            F::RST | F::ACK,
            F::ACK | F::URG | F::PSH,
        ] {
            assert!(!good.is_invalid(), "{good:?}");
        }
    }

    #[test]
    fn plain_acks_are_acks_without_syn_fin_or_rst() {
        use TcpFlags as F;
        for f in 0..=u8::MAX {
            let f = F(f);
            assert_eq!(
                f.is_plain_ack(),
                f.ack() && !f.syn() && !f.fin() && !f.rst(),
                "{f:?}"
            );
            // What `parse_plain_tcp` rests on when it skips `is_invalid` for a plain ACK.
            assert!(!(f.is_plain_ack() && f.is_invalid()), "{f:?}");
        }
        assert!((F::ACK | F::PSH | F::URG | F::ECE | F::CWR).is_plain_ack());
        assert!(!(F::ACK | F::FIN).is_plain_ack());
    }

    #[test]
    fn rejections() {
        let b = syn();
        assert_eq!(
            TcpPacket::new_checked(&b[..19]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            TcpPacket::new_checked(&b[..39]).unwrap_err(),
            Error::BadHeaderLen
        );
        let mut d4 = b.clone();
        d4[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&d4[..]).unwrap_err(),
            Error::BadHeaderLen
        );
        let mut d0 = b.clone();
        d0[12] = 0x00;
        assert_eq!(
            TcpPacket::new_checked(&d0[..]).unwrap_err(),
            Error::BadHeaderLen
        );
        let mut d5 = b.clone();
        d5[12] = 0x50;
        let t = TcpPacket::new_checked(&d5[..]).unwrap();
        assert!(t.options().is_empty());
        assert_eq!(t.payload().len(), 23);
    }

    #[test]
    fn option_walking() {
        fn walk(o: &[u8]) -> Vec<Result<TcpOption<'_>>> {
            TcpOptions {
                raw: RawOptions::new(o),
            }
            .collect()
        }
        assert!(walk(&[]).is_empty());
        assert!(walk(&[1, 1, 1, 1]).is_empty());
        assert!(
            walk(&[0, 2, 4, 5, 0xb4]).is_empty(),
            "nothing after EOL is read"
        );
        assert_eq!(
            walk(&[2, 4, 1]),
            vec![Err(Error::Malformed)],
            "runs past the end"
        );
        assert_eq!(walk(&[2]), vec![Err(Error::Malformed)], "missing length");
        assert_eq!(
            walk(&[9, 1, 1, 1]),
            vec![Err(Error::Malformed)],
            "length below 2"
        );
        assert_eq!(
            walk(&[9, 0]),
            vec![Err(Error::Malformed)],
            "length 0 must not loop"
        );
        assert_eq!(
            walk(&[2, 3, 5]),
            vec![Err(Error::Malformed)],
            "MSS of length 3"
        );
        assert_eq!(walk(&[3, 4, 5, 6]), vec![Err(Error::Malformed)]);
        assert_eq!(walk(&[4, 3, 0]), vec![Err(Error::Malformed)]);
        assert_eq!(walk(&[5, 2]), vec![Err(Error::Malformed)], "empty SACK");
        assert_eq!(walk(&[8, 6, 0, 0, 0, 0]), vec![Err(Error::Malformed)]);
        assert_eq!(
            walk(&[5, 10, 0, 0, 0, 1, 0, 0, 0, 2]),
            vec![Ok(TcpOption::Sack(&[0, 0, 0, 1, 0, 0, 0, 2]))]
        );
        assert_eq!(
            walk(&[254, 4, 0x12, 0x34, 99, 2]),
            vec![
                Ok(TcpOption::Unknown {
                    kind: 254,
                    data: &[0x12, 0x34]
                }),
                Ok(TcpOption::Unknown {
                    kind: 99,
                    data: &[]
                }),
            ],
            "a 254 that is not 8 long is an RFC 6994 experiment, not TOA"
        );
        assert_eq!(
            walk(&[254, 8, 0x1f, 0x90, 10, 1, 2, 3]),
            vec![Ok(TcpOption::Toa {
                port: 8080,
                addr: Ipv4Addr::new(10, 1, 2, 3)
            })]
        );
    }

    #[test]
    fn clamp_mss_patches_checksum() {
        let mut b = syn();
        let mut t = TcpPacket::new_checked(&mut b[..]).unwrap();
        assert!(!t.clamp_mss(1460), "not above the limit");
        assert!(!t.clamp_mss(1500));
        assert!(t.clamp_mss(1400));
        assert_eq!(t.mss(), Some(1400));
        assert!(t.verify_checksum(SRC, DST));
        assert!(t.reduce_mss_for_toa());
        assert_eq!(t.mss(), Some(1392));
        assert!(t.verify_checksum(SRC, DST));
    }

    #[test]
    fn clamp_mss_at_odd_offset() {
        // NOP, then MSS at option offset 1 (segment offset 21): the value straddles words.
        let mut b = [0u8; 28];
        b[12] = 0x70;
        b[13] = 0x02;
        b[20..28].copy_from_slice(&[1, 2, 4, 0x23, 0x45, 1, 1, 0]);
        let mut t = TcpPacket::new_checked(&mut b[..]).unwrap();
        t.fill_checksum(SRC, DST);
        assert_eq!(t.mss(), Some(0x2345));
        assert!(t.clamp_mss(536));
        assert_eq!(t.mss(), Some(536));
        assert!(t.verify_checksum(SRC, DST));
    }

    #[test]
    fn clamp_mss_without_mss_or_malformed() {
        let mut b = [0u8; 24];
        b[12] = 0x60;
        b[20..24].copy_from_slice(&[9, 9, 2, 4]); // garbage length before an MSS-looking tail
        let mut t = TcpPacket::new_checked(&mut b[..]).unwrap();
        assert!(!t.clamp_mss(100));
        assert!(!t.reduce_mss(8));
        assert_eq!(&b[20..24], &[9, 9, 2, 4]);
    }

    /// Builds Ethernet+IPv4+TCP with etherparse.
    fn build(
        src: [u8; 4],
        dst: [u8; 4],
        sport: u16,
        dport: u16,
        opts: &[etherparse::TcpOptionElement],
        payload: &[u8],
    ) -> Vec<u8> {
        let mut frame = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .tcp(sport, dport, 12345, 4096)
            .syn()
            .options(opts)
            .unwrap()
            .write(&mut frame, payload)
            .unwrap();
        frame
    }

    fn check_with_etherparse(frame: &[u8], payload: &[u8]) -> etherparse::TcpHeader {
        let p = etherparse::SlicedPacket::from_ethernet(frame).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not ipv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let Some(etherparse::TransportSlice::Tcp(t)) = &p.transport else {
            panic!("not tcp")
        };
        let th = t.to_header();
        assert_eq!(th.checksum, th.calc_checksum_ipv4(&h, payload).unwrap());
        assert_eq!(t.payload(), payload);
        th
    }

    #[test]
    fn toa_insert_basic() {
        use etherparse::TcpOptionElement as O;
        let payload = b"GET / HTTP/1.0\r\n\r\n";
        let mut frame = build(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            5555,
            80,
            &[O::MaximumSegmentSize(1460)],
            payload,
        );
        let len = frame.len();
        frame.resize(len + 8, 0);
        let new_len = insert_toa(
            &mut frame,
            len,
            14,
            43210,
            Ipv4Addr::new(203, 0, 113, 9),
            false,
        )
        .unwrap();
        assert_eq!(new_len, len + 8);
        let th = check_with_etherparse(&frame[..new_len], payload);
        assert_eq!(th.header_len(), 32);
        let t = TcpPacket::new_checked(&frame[34..new_len]).unwrap();
        assert_eq!(toa_of(&t), Some((43210, Ipv4Addr::new(203, 0, 113, 9))));
        assert_eq!(t.mss(), Some(1460), "existing options survive the move");

        // A second call finds the option and rewrites it instead of stacking another.
        let again =
            insert_toa(&mut frame, new_len, 14, 1, Ipv4Addr::new(1, 2, 3, 4), false).unwrap();
        assert_eq!(again, new_len);
        check_with_etherparse(&frame[..again], payload);
        let t = TcpPacket::new_checked(&frame[34..again]).unwrap();
        assert_eq!(toa_of(&t), Some((1, Ipv4Addr::new(1, 2, 3, 4))));
    }

    /// The IPv6 TOA: inserted after the fixed header, checksum and payload length right by
    /// etherparse; a forged IPv4-sized TOA blanked, a forged IPv6 one overwritten.
    #[test]
    fn toa6_insert_matches_etherparse() {
        use etherparse::TcpOptionElement as O;
        let payload = b"hello";
        let client: std::net::Ipv6Addr = "2001:db8:10::2".parse().unwrap();
        let build6 = |opts: &[O], raw: &[u8]| {
            let mut h = etherparse::TcpHeader::new(40000, 80, 12345, 4096);
            h.syn = true;
            if raw.is_empty() {
                h.set_options(opts).unwrap();
            } else {
                h.set_options_raw(raw).unwrap();
            }
            let mut frame = Vec::new();
            etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv6(
                    [0x20, 1, 0xd, 0xb8, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0],
                    [0x20, 1, 0xd, 0xb8, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11],
                    64,
                )
                .tcp_header(h)
                .write(&mut frame, payload)
                .unwrap();
            frame
        };
        let check = |frame: &[u8]| -> etherparse::TcpHeader {
            let p = etherparse::SlicedPacket::from_ethernet(frame).unwrap();
            let Some(etherparse::NetSlice::Ipv6(ip)) = &p.net else {
                panic!("not ipv6")
            };
            let (s, d) = (ip.header().source(), ip.header().destination());
            let Some(etherparse::TransportSlice::Tcp(t)) = &p.transport else {
                panic!("not tcp")
            };
            assert_eq!(t.checksum(), t.calc_checksum_ipv6(s, d).unwrap());
            assert_eq!(t.payload(), payload);
            assert_eq!(
                usize::from(ip.header().payload_length()),
                frame.len() - 54,
                "payload length"
            );
            t.to_header()
        };
        let toa6 = |th: &etherparse::TcpHeader| -> Vec<u8> {
            let o = th.options.as_slice();
            let at = o.iter().position(|&b| b == kind::TOA).unwrap();
            o[at..at + TOA6_LEN].to_vec()
        };
        let mut want = vec![kind::TOA, 20, 0x9c, 0x40];
        want.extend_from_slice(&client.octets());

        let mut frame = build6(
            &[
                O::MaximumSegmentSize(1440),
                O::SelectiveAcknowledgementPermitted,
            ],
            &[],
        );
        let len = frame.len();
        frame.resize(len + 32, 0);
        let n = insert_toa6(&mut frame, len, 14, 54, 40000, client).unwrap();
        assert_eq!(n, len + TOA6_LEN);
        let th = check(&frame[..n]);
        assert_eq!(toa6(&th), want);
        assert_eq!(
            TcpPacket::new_checked(&frame[54..n]).unwrap().mss(),
            Some(1440)
        );

        // Forged: an 8-byte TOA (blanked with NOPs, the real one added) ...
        let mut forged8 = build6(&[], &[kind::TOA, 8, 0, 1, 6, 6, 6, 6]);
        let len = forged8.len();
        forged8.resize(len + 32, 0);
        let n = insert_toa6(&mut forged8, len, 14, 54, 40000, client).unwrap();
        let th = check(&forged8[..n]);
        assert_eq!(toa6(&th), want);
        assert_eq!(
            &th.options.as_slice()[20..28],
            &[1u8; 8],
            "the forged option is NOPs"
        );
        // ... and a 20-byte one (overwritten in place).
        let mut raw = vec![kind::TOA, 20, 0, 1];
        raw.extend_from_slice(&[6u8; 16]);
        let mut forged20 = build6(&[], &raw);
        let len = forged20.len();
        forged20.resize(len + 32, 0);
        let n = insert_toa6(&mut forged20, len, 14, 54, 40000, client).unwrap();
        assert_eq!(n, len, "no growth");
        assert_eq!(toa6(&check(&forged20[..n])), want);
        // No tailroom: refused, frame untouched.
        let mut tight = build6(&[], &[]);
        let len = tight.len();
        let before = tight.clone();
        assert_eq!(
            insert_toa6(&mut tight, len, 14, 54, 1, client),
            Err(ToaError::NoRoom)
        );
        assert_eq!(tight, before);
    }

    #[test]
    fn toa_errors() {
        let payload = b"abc";
        let frame = build([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, &[], payload);
        let len = frame.len();
        let ip = Ipv4Addr::new(1, 1, 1, 1);

        let mut tight = frame.clone();
        tight.resize(len + 7, 0);
        assert_eq!(
            insert_toa(&mut tight, len, 14, 1, ip, false),
            Err(ToaError::NoRoom)
        );
        assert_eq!(&tight[..len], &frame[..], "nothing changed on failure");

        let mut full = {
            use etherparse::TcpOptionElement as O;
            // 40 bytes of options (header 60): 10 x (NOP NOP NOP NOP) is not expressible, use TS x4.
            let ts = O::Timestamp(1, 2);
            build(
                [10, 0, 0, 1],
                [10, 0, 0, 2],
                1,
                2,
                &[ts.clone(), ts.clone(), ts.clone(), ts],
                payload,
            )
        };
        let flen = full.len();
        full.resize(flen + 8, 0);
        assert_eq!(
            insert_toa(&mut full, flen, 14, 1, ip, false),
            Err(ToaError::OptionSpaceFull)
        );

        let mut bad = frame.clone();
        bad.resize(len + 8, 0);
        assert_eq!(
            insert_toa(&mut bad, len, 15, 1, ip, false),
            Err(ToaError::Malformed),
            "wrong l3 offset"
        );
        assert_eq!(
            insert_toa(&mut bad, len + 9, 14, 1, ip, false),
            Err(ToaError::Malformed),
            "frame_len > buffer"
        );
        assert_eq!(
            insert_toa(&mut bad, len, len + 1, 1, ip, false),
            Err(ToaError::Malformed)
        );
        let mut udp = Vec::new();
        etherparse::PacketBuilder::ethernet2([0; 6], [0; 6])
            .ipv4([1; 4], [2; 4], 9)
            .udp(1, 2)
            .write(&mut udp, payload)
            .unwrap();
        let ulen = udp.len();
        udp.resize(ulen + 8, 0);
        assert_eq!(
            insert_toa(&mut udp, ulen, 14, 1, ip, false),
            Err(ToaError::Malformed),
            "not TCP"
        );

        let mut frag = bad.clone();
        frag[14 + 6] |= 0x20; // MF
        assert_eq!(
            insert_toa(&mut frag, len, 14, 1, ip, false),
            Err(ToaError::Malformed),
            "fragment"
        );

        let mut badopt = frame.clone();
        // Turn the header into doff 6 with a malformed option: splice 4 bytes after the header.
        badopt.splice(54..54, [9u8, 0, 0, 0]);
        badopt[46] = 0x60;
        let tl = u16::from_be_bytes([badopt[16], badopt[17]]) + 4;
        badopt[16..18].copy_from_slice(&tl.to_be_bytes());
        let blen = badopt.len();
        badopt.resize(blen + 8, 0);
        assert_eq!(
            insert_toa(&mut badopt, blen, 14, 1, ip, false),
            Err(ToaError::Malformed),
            "bad option"
        );
    }

    #[test]
    fn toa_uses_ethernet_padding_and_keeps_frame_len() {
        // A bare ACK: 54 bytes, padded to 60 on the wire. TOA needs ip_end + 8 = 62 bytes.
        let mut frame = build([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, &[], &[]);
        assert_eq!(frame.len(), 54);
        frame.resize(60, 0);
        assert_eq!(
            insert_toa(&mut frame.clone(), 60, 14, 1, Ipv4Addr::LOCALHOST, false),
            Err(ToaError::NoRoom)
        );
        frame.resize(62, 0xEE);
        let n = insert_toa(&mut frame, 60, 14, 7, Ipv4Addr::LOCALHOST, false).unwrap();
        assert_eq!(n, 62);
        check_with_etherparse(&frame[..n], &[]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// etherparse-built segments: our checksum equals theirs; a FullNAT rewrite patched
        /// incrementally equals a full recomputation and etherparse's.
        #[test]
        fn fullnat_rewrite_matches_etherparse(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
            sport in any::<u16>(), dport in any::<u16>(),
            nsrc in any::<[u8; 4]>(), ndst in any::<[u8; 4]>(),
            nsport in any::<u16>(), ndport in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut frame = build(src, dst, sport, dport, &[], &payload);
            {
                let mut ip = Ipv4Packet::new_checked(&mut frame[14..]).unwrap();
                prop_assert!(ip.verify_checksum());
                ip.set_src_incremental(nsrc.into());
                ip.set_dst_incremental(ndst.into());
                prop_assert!(ip.verify_checksum());
            }
            let mut t = TcpPacket::new_checked(&mut frame[34..]).unwrap();
            prop_assert!(t.verify_checksum(src.into(), dst.into()));
            prop_assert_eq!(checksum::l4(src.into(), dst.into(), IpProtocol::TCP, t.segment()), Some(t.checksum()));
            t.update_checksum_for_addr(src.into(), nsrc.into());
            t.update_checksum_for_addr(dst.into(), ndst.into());
            t.set_src_port_incremental(nsport);
            t.set_dst_port_incremental(ndport);
            let inc = t.checksum();
            t.fill_checksum(nsrc.into(), ndst.into());
            prop_assert_eq!(inc, t.checksum());
            let th = check_with_etherparse(&frame, &payload);
            prop_assert_eq!(th.checksum, inc);
        }

        /// TOA insertion yields a packet etherparse parses with both checksums right, the option
        /// present and the other options and the payload intact; into a SYN, the MSS lowered by the
        /// option's length (not below 0, a 0 left alone), in one checksum update with the rest. A
        /// second insertion (as for a forged option) overwrites the first in place, the MSS kept.
        #[test]
        fn toa_insert_matches_etherparse(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
            mss in any::<u16>(), ws in proptest::option::of(0u8..15), ts in any::<bool>(),
            mss_first in any::<bool>(), nop_first in any::<bool>(),
            syn in any::<bool>(), twice in any::<bool>(),
            port in any::<u16>(), cip in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 0..80),
            extra_tail in 8usize..20,
        ) {
            use etherparse::TcpOptionElement as O;
            let mut opts = vec![];
            if let Some(w) = ws { opts.push(O::Noop); opts.push(O::WindowScale(w)); }
            if ts { opts.push(O::Timestamp(3, 4)); }
            opts.insert(if mss_first { 0 } else { opts.len() }, O::MaximumSegmentSize(mss));
            if nop_first {
                // The MSS value at an odd offset: its bytes straddle two checksum words.
                opts.insert(0, O::Noop);
            }
            let mut frame = build(src, dst, 1000, 80, &opts, &payload);
            let len = frame.len();
            let old_hl = TcpPacket::new_checked(&frame[34..]).unwrap().header_len();
            frame.resize(len + extra_tail, 0xCC);
            let mut n = insert_toa(&mut frame, len, 14, port, cip.into(), syn).unwrap();
            prop_assert_eq!(n, len + 8);
            let want_mss = if syn && mss > 0 { mss.saturating_sub(8) } else { mss };
            if twice {
                n = insert_toa(&mut frame, n, 14, port, cip.into(), syn).unwrap();
                prop_assert_eq!(n, len + 8);
            }
            let th = check_with_etherparse(&frame[..n], &payload);
            prop_assert_eq!(th.header_len(), old_hl + 8);
            let t = TcpPacket::new_checked(&frame[34..n]).unwrap();
            prop_assert_eq!(toa_of(&t), Some((port, Ipv4Addr::from(cip))));
            prop_assert_eq!(t.mss(), Some(want_mss));
            let has_ws = t.option_iter().any(|o| matches!(o, Ok(TcpOption::WindowScale(_))));
            prop_assert_eq!(has_ws, ws.is_some());
            prop_assert_eq!(t.payload(), &payload[..]);
        }
    }
}

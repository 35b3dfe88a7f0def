//! Per-packet costs of the wire module: classification, the FullNAT rewrite with incremental
//! checksums, a full L4 checksum, TOA insertion. Run with `cargo bench --bench wire`.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gateway::wire::{checksum, parse_l3l4, tcp, IpProtocol, Ipv4Packet, TcpPacket};

/// Ethernet + IPv4 + TCP (ACK|PSH, 12 bytes of options) + `payload_len` bytes, checksums right.
fn frame(payload_len: usize) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 32 + payload_len];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let total = (20 + 32 + payload_len) as u16;
    f[14..34].copy_from_slice(&[
        0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 192, 0, 2, 1, 10, 0, 0, 100,
    ]);
    f[16..18].copy_from_slice(&total.to_be_bytes());
    Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
    let t = &mut f[34..];
    t[0..4].copy_from_slice(&[0x9c, 0x40, 0, 80]);
    t[12] = 0x80;
    t[13] = 0x18;
    t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    for (i, b) in t[32..].iter_mut().enumerate() {
        *b = i as u8;
    }
    TcpPacket::new_unchecked(&mut *t)
        .fill_checksum(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(10, 0, 0, 100));
    f
}

/// The FullNAT inbound rewrite: CIP:cport -> LIP:lport, VIP:vport -> RIP:rport.
fn fullnat_rewrite(f: &mut [u8], lip: Ipv4Addr, lport: u16, rip: Ipv4Addr, rport: u16) {
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    let (cip, vip) = (ip.src(), ip.dst());
    ip.set_src_incremental(lip);
    ip.set_dst_incremental(rip);
    let hl = ip.header_len();
    let mut t = TcpPacket::new_unchecked(&mut f[14 + hl..]);
    t.update_checksum_for_addr(cip, lip);
    t.update_checksum_for_addr(vip, rip);
    t.set_src_port_incremental(lport);
    t.set_dst_port_incremental(rport);
}

/// The same rewrite with one [`checksum::Delta`] per checksum: one fold each instead of one per word.
fn fullnat_rewrite_delta(f: &mut [u8], lip: Ipv4Addr, lport: u16, rip: Ipv4Addr, rport: u16) {
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    let (cip, vip) = (ip.src(), ip.dst());
    let addrs = checksum::Delta::new()
        .dword(cip.into(), lip.into())
        .dword(vip.into(), rip.into());
    ip.set_src(lip);
    ip.set_dst(rip);
    ip.set_checksum(addrs.apply(ip.checksum()));
    let hl = ip.header_len();
    let mut t = TcpPacket::new_unchecked(&mut f[14 + hl..]);
    let l4 = addrs.word(t.src_port(), lport).word(t.dst_port(), rport);
    t.set_src_port(lport);
    t.set_dst_port(rport);
    t.set_checksum(l4.apply(t.checksum()));
}

fn benches(c: &mut Criterion) {
    let f = frame(64);
    c.bench_function("parse_l3l4 tcp", |b| b.iter(|| parse_l3l4(black_box(&f))));

    let mut g = f.clone();
    let (lip, rip) = (Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 2, 0, 7));
    c.bench_function("fullnat rewrite (incremental)", |b| {
        b.iter(|| fullnat_rewrite(black_box(&mut g), lip, 30001, rip, 8080))
    });

    let mut h = f.clone();
    c.bench_function("fullnat rewrite (Delta)", |b| {
        b.iter(|| fullnat_rewrite_delta(black_box(&mut h), lip, 30001, rip, 8080))
    });
    fullnat_rewrite(&mut g, lip, 30001, rip, 8080);
    fullnat_rewrite_delta(&mut h, lip, 30001, rip, 8080);
    assert_eq!(g, h, "both rewrites give the same bytes");

    let mut grp = c.benchmark_group("l4 checksum full");
    for len in [64usize, 1460] {
        let f = frame(len);
        grp.throughput(Throughput::Bytes((32 + len) as u64));
        grp.bench_function(format!("{len}B payload"), |b| {
            b.iter(|| {
                checksum::l4(
                    Ipv4Addr::new(192, 0, 2, 1),
                    Ipv4Addr::new(10, 0, 0, 100),
                    IpProtocol::TCP,
                    black_box(&f[34..]),
                )
            })
        });
    }
    grp.finish();

    let base = frame(64);
    let mut work = vec![0u8; base.len() + 64];
    c.bench_function("insert_toa (64B payload)", |b| {
        b.iter(|| {
            work[..base.len()].copy_from_slice(&base);
            tcp::insert_toa(
                black_box(&mut work),
                base.len(),
                14,
                40000,
                Ipv4Addr::new(192, 0, 2, 1),
                false,
            )
        })
    });
}

criterion_group!(wire, benches);
criterion_main!(wire);

//! Pins the values dpdk-sys exports and the `rte_mbuf` layout the gateway reads, so that a different
//! DPDK (or a bindgen change) fails here instead of corrupting packets at run time.

use dpdk_sys::*;
use std::mem::{offset_of, size_of};

#[test]
fn rss_flags_match_dpdk_22_11() {
    assert_eq!(RTE_ETH_RSS_IPV4, 1 << 2);
    assert_eq!(RTE_ETH_RSS_FRAG_IPV4, 1 << 3);
    assert_eq!(RTE_ETH_RSS_NONFRAG_IPV4_TCP, 1 << 4);
    assert_eq!(RTE_ETH_RSS_NONFRAG_IPV4_UDP, 1 << 5);
    assert_eq!(RTE_ETH_RSS_NONFRAG_IPV4_OTHER, 1 << 7);
    assert_eq!(RTE_ETH_RSS_IPV6, 1 << 8);
    assert_eq!(RTE_ETH_RSS_NONFRAG_IPV6_TCP, 1 << 10);
    assert_eq!(RTE_ETH_RSS_NONFRAG_IPV6_UDP, 1 << 11);
    // RTE_ETH_RSS_IP = IPV4 | FRAG_IPV4 | NONFRAG_IPV4_OTHER | IPV6 | FRAG_IPV6 | NONFRAG_IPV6_OTHER
    //                  | IPV6_EX (bits 2, 3, 7, 8, 9, 13, 15)
    assert_eq!(
        RTE_ETH_RSS_IP,
        (1 << 2) | (1 << 3) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 13) | (1 << 15)
    );
    assert_eq!(RTE_ETH_RSS_TCP, (1 << 4) | (1 << 10) | (1 << 16));
    assert_eq!(RTE_ETH_RSS_UDP, (1 << 5) | (1 << 11) | (1 << 17));
}

#[test]
fn offload_flags_match_dpdk_22_11() {
    assert_eq!(RTE_ETH_RX_OFFLOAD_IPV4_CKSUM, 1 << 1);
    assert_eq!(RTE_ETH_RX_OFFLOAD_UDP_CKSUM, 1 << 2);
    assert_eq!(RTE_ETH_RX_OFFLOAD_TCP_CKSUM, 1 << 3);
    assert_eq!(
        RTE_ETH_RX_OFFLOAD_CHECKSUM,
        RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | RTE_ETH_RX_OFFLOAD_UDP_CKSUM | RTE_ETH_RX_OFFLOAD_TCP_CKSUM
    );
    assert_eq!(RTE_ETH_RX_OFFLOAD_RSS_HASH, 1 << 19);
    assert_eq!(RTE_ETH_TX_OFFLOAD_IPV4_CKSUM, 1 << 1);
    assert_eq!(RTE_ETH_TX_OFFLOAD_UDP_CKSUM, 1 << 2);
    assert_eq!(RTE_ETH_TX_OFFLOAD_TCP_CKSUM, 1 << 3);
    assert_eq!(RTE_ETH_TX_OFFLOAD_MULTI_SEGS, 1 << 15);
    assert_eq!(RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE, 1 << 16);
}

#[test]
fn mbuf_flags_match_dpdk_22_11() {
    assert_eq!(RTE_MBUF_F_RX_RSS_HASH, 1 << 1);
    assert_eq!(RTE_MBUF_F_RX_IP_CKSUM_BAD, 1 << 4);
    assert_eq!(RTE_MBUF_F_RX_IP_CKSUM_GOOD, 1 << 7);
    assert_eq!(RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN, 0);
    assert_eq!(RTE_MBUF_F_RX_IP_CKSUM_NONE, (1 << 4) | (1 << 7));
    assert_eq!(RTE_MBUF_F_RX_IP_CKSUM_MASK, (1 << 4) | (1 << 7));
    assert_eq!(RTE_MBUF_F_RX_L4_CKSUM_BAD, 1 << 3);
    assert_eq!(RTE_MBUF_F_RX_L4_CKSUM_GOOD, 1 << 8);
    assert_eq!(RTE_MBUF_F_RX_L4_CKSUM_UNKNOWN, 0);
    assert_eq!(RTE_MBUF_F_RX_L4_CKSUM_NONE, (1 << 3) | (1 << 8));
    assert_eq!(RTE_MBUF_F_RX_L4_CKSUM_MASK, (1 << 3) | (1 << 8));
    assert_eq!(RTE_MBUF_F_TX_TCP_CKSUM, 1 << 52);
    assert_eq!(RTE_MBUF_F_TX_UDP_CKSUM, 3 << 52);
    assert_eq!(RTE_MBUF_F_TX_L4_MASK, 3 << 52);
    assert_eq!(RTE_MBUF_F_TX_IP_CKSUM, 1 << 54);
    assert_eq!(RTE_MBUF_F_TX_IPV4, 1 << 55);
}

#[test]
fn integer_values_match_dpdk_22_11() {
    assert_eq!(RTE_PKTMBUF_HEADROOM, 128);
    assert_eq!(RTE_MBUF_DEFAULT_BUF_SIZE, 2048 + 128);
    assert_eq!(RTE_ETH_RETA_GROUP_SIZE, 64);
    assert_eq!(RTE_MAX_ETHPORTS, 32);
    assert_eq!(RTE_MAX_LCORE, 128);
    assert_eq!(RING_F_SP_ENQ, 1);
    assert_eq!(RING_F_SC_DEQ, 2);
    assert_eq!(rte_eth_rx_mq_mode::RTE_ETH_MQ_RX_RSS, 1);
    assert_eq!(rte_eth_rx_mq_mode::RTE_ETH_MQ_RX_NONE, 0);
}

/// Offsets of the fields the gateway's `dpdk::mbuf` reads, three ways: the C compiler (through the
/// shim), bindgen's Rust layout, and the 22.11 x86_64 values written down here.
#[test]
fn mbuf_layout_matches_c_and_22_11() {
    use mbuf_field::*;
    let c = |f: i32| unsafe { gw_mbuf_offset(f) };
    let cases: [(i32, usize, usize); 13] = [
        (BUF_ADDR, offset_of!(rte_mbuf, buf_addr), 0),
        (DATA_OFF, offset_of!(rte_mbuf, data_off), 16),
        (REFCNT, offset_of!(rte_mbuf, refcnt), 18),
        (NB_SEGS, offset_of!(rte_mbuf, nb_segs), 20),
        (PORT, offset_of!(rte_mbuf, port), 22),
        (OL_FLAGS, offset_of!(rte_mbuf, ol_flags), 24),
        (PACKET_TYPE, offset_of!(rte_mbuf, __bindgen_anon_1), 32),
        (PKT_LEN, offset_of!(rte_mbuf, pkt_len), 36),
        (DATA_LEN, offset_of!(rte_mbuf, data_len), 40),
        (HASH, offset_of!(rte_mbuf, __bindgen_anon_2), 44),
        (BUF_LEN, offset_of!(rte_mbuf, buf_len), 54),
        (POOL, offset_of!(rte_mbuf, pool), 56),
        (NEXT, offset_of!(rte_mbuf, next), 64),
    ];
    for (field, rust, pinned) in cases {
        assert_eq!(c(field), rust, "field {field}: C and bindgen disagree");
        assert_eq!(
            rust, pinned,
            "field {field}: layout differs from DPDK 22.11"
        );
    }
    assert_eq!(c(TX_OFFLOAD), offset_of!(rte_mbuf, __bindgen_anon_3));
    assert_eq!(c(TX_OFFLOAD), 72);
    assert_eq!(unsafe { gw_mbuf_size() }, size_of::<rte_mbuf>());
    assert_eq!(size_of::<rte_mbuf>(), 128, "rte_mbuf is two cache lines");
}

#[test]
fn pcap_values_and_header_layout_match_libpcap() {
    use dpdk_sys::pcap::*;
    // pcap/dlt.h and pcap/pcap.h: Ethernet, and the "no netmask" value pcap_compile takes.
    assert_eq!(DLT_EN10MB, 1);
    assert_eq!(PCAP_NETMASK_UNKNOWN, 0xffff_ffff);
    // struct pcap_pkthdr { struct timeval ts; bpf_u_int32 caplen, len; } on LP64.
    assert_eq!(offset_of!(pcap_pkthdr, caplen), 16);
    assert_eq!(offset_of!(pcap_pkthdr, len), 20);
    assert_eq!(size_of::<pcap_pkthdr>(), 24);
}

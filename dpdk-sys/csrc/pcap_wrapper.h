/* The libpcap header bindgen reads for BPF filters (gwctl capture): pcap_open_dead, pcap_compile,
 * pcap_offline_filter and what they need. Kept apart from wrapper.h: libpcap is not DPDK. */
#include <pcap/pcap.h>

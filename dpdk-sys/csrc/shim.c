#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_cycles.h>
#include <rte_pause.h>
#include <rte_prefetch.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_ring.h>
#include "shim.h"

uint16_t gw_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{ return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts); }
uint16_t gw_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts, uint16_t nb_pkts)
{ return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts); }

struct rte_mbuf *gw_rte_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }
int gw_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned count)
{ return rte_pktmbuf_alloc_bulk(mp, mbufs, count); }
void gw_rte_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
char *gw_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }
char *gw_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_prepend(m, len); }
char *gw_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_adj(m, len); }
int gw_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_trim(m, len); }
uint16_t gw_rte_pktmbuf_headroom(const struct rte_mbuf *m) { return rte_pktmbuf_headroom(m); }
uint16_t gw_rte_pktmbuf_tailroom(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }
void *gw_rte_pktmbuf_mtod(const struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }

unsigned gw_rte_lcore_id(void) { return rte_lcore_id(); }
int gw_rte_errno(void) { return rte_errno; }

unsigned gw_rte_ring_enqueue_burst(struct rte_ring *r, void *const *obj_table, unsigned n, unsigned *free_space)
{ return rte_ring_enqueue_burst(r, obj_table, n, free_space); }
unsigned gw_rte_ring_dequeue_burst(struct rte_ring *r, void **obj_table, unsigned n, unsigned *available)
{ return rte_ring_dequeue_burst(r, obj_table, n, available); }
unsigned gw_rte_ring_count(const struct rte_ring *r) { return rte_ring_count(r); }

uint64_t gw_rte_rdtsc(void) { return rte_rdtsc(); }
void gw_rte_pause(void) { rte_pause(); }

size_t gw_mbuf_offset(int field)
{
	switch (field) {
	case 0: return offsetof(struct rte_mbuf, buf_addr);
	case 1: return offsetof(struct rte_mbuf, data_off);
	case 2: return offsetof(struct rte_mbuf, refcnt);
	case 3: return offsetof(struct rte_mbuf, nb_segs);
	case 4: return offsetof(struct rte_mbuf, port);
	case 5: return offsetof(struct rte_mbuf, ol_flags);
	case 6: return offsetof(struct rte_mbuf, packet_type);
	case 7: return offsetof(struct rte_mbuf, pkt_len);
	case 8: return offsetof(struct rte_mbuf, data_len);
	case 9: return offsetof(struct rte_mbuf, hash);
	case 10: return offsetof(struct rte_mbuf, buf_len);
	case 11: return offsetof(struct rte_mbuf, pool);
	case 12: return offsetof(struct rte_mbuf, next);
	case 13: return offsetof(struct rte_mbuf, tx_offload);
	default: return (size_t)-1;
	}
}
size_t gw_mbuf_size(void) { return sizeof(struct rte_mbuf); }

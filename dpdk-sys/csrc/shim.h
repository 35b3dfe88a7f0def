/*
 * C shim: out-of-line wrappers for DPDK's static-inline functions, which have no symbol in the shared
 * libraries and so cannot be called through bindgen directly. Each wrapper is named gw_<original>.
 */
#ifndef GW_SHIM_H
#define GW_SHIM_H
#include <stdint.h>
#include <stddef.h>
struct rte_mbuf;
struct rte_mempool;
struct rte_ring;

uint16_t gw_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t gw_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts, uint16_t nb_pkts);

struct rte_mbuf *gw_rte_pktmbuf_alloc(struct rte_mempool *mp);
int gw_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned count);
void gw_rte_pktmbuf_free(struct rte_mbuf *m);
char *gw_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
char *gw_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *gw_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
int gw_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
uint16_t gw_rte_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t gw_rte_pktmbuf_tailroom(const struct rte_mbuf *m);
void *gw_rte_pktmbuf_mtod(const struct rte_mbuf *m);

unsigned gw_rte_lcore_id(void);
int gw_rte_errno(void);

unsigned gw_rte_ring_enqueue_burst(struct rte_ring *r, void *const *obj_table, unsigned n, unsigned *free_space);
unsigned gw_rte_ring_dequeue_burst(struct rte_ring *r, void **obj_table, unsigned n, unsigned *available);
unsigned gw_rte_ring_count(const struct rte_ring *r);

uint64_t gw_rte_rdtsc(void);
void gw_rte_pause(void);

/* Offsets of the rte_mbuf fields the gateway reads, as the C compiler lays them out. Tests compare them
 * with bindgen's layout and with the values pinned for 22.11. */
size_t gw_mbuf_offset(int field);
size_t gw_mbuf_size(void);

#endif

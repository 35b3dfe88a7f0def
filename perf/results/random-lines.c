// perf/results: random cache-line reads over a large region, 32 prefetched then read, per page size.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/mman.h>
#include <x86intrin.h>
#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif
int main(int argc, char **argv) {
    size_t size = (size_t)atol(argv[2]) << 20;
    const char *mode = argv[1];
    char *p;
    if (!strcmp(mode, "1g")) {
        p = mmap(0, size, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|(30<<MAP_HUGE_SHIFT), -1, 0);
        if (p == MAP_FAILED) { perror("mmap 1g"); return 1; }
    } else {
        p = mmap(0, size + (2<<20), PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
        p = (char*)(((uintptr_t)p + (2<<20) - 1) & ~((uintptr_t)(2<<20) - 1));
        madvise(p, size, !strcmp(mode, "2m") ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    }
    memset(p, 1, size);
    size_t lines = size / 64;
    uint64_t x = 88172645463325252ull, sum = 0;
    long iters = atol(argv[3]);
    uint64_t best = ~0ull;
    for (int rep = 0; rep < 5; rep++) {
        uint64_t t0 = __rdtsc();
        for (long it = 0; it < iters; it++) {
            size_t off[32];
            for (int i = 0; i < 32; i++) {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                off[i] = (x % lines) * 64;
                _mm_prefetch(p + off[i], _MM_HINT_T0);
            }
            for (int i = 0; i < 32; i++) sum += *(volatile uint64_t *)(p + off[i]);
        }
        uint64_t c = (__rdtsc() - t0) / (iters * 32);
        if (c < best) best = c;
    }
    printf("%s %zu MiB: %lu cycles per line (best of 5) [%lu]\n", mode, size >> 20, best, sum & 1);
    return 0;
}

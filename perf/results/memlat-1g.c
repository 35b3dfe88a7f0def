// memlat with the table in 2 MiB transparent huge pages (mode 0) or one 1 GiB hugetlb page (mode 1; reserve one first: echo 1 > /sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages). gcc -O2 -o l memlat-1g.c; ./l MODE WALKERS. A record of the experiment behind perf/RESULTS.md "At 3d0dcc1", not part of the build.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>
#include <string.h>
#ifndef MAP_HUGE_1GB
#define MAP_HUGE_1GB (30 << 26)
#endif
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  size_t sz=(size_t)1<<30; int mode=atoi(argv[1]); int par=atoi(argv[2]);
  char*p;
  if(mode==1){p=mmap(0,sz,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|MAP_HUGE_1GB,-1,0);}
  else {p=mmap(0,sz+(2<<20),PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0); p=(char*)(((uintptr_t)p+(2<<20)-1)&~((uintptr_t)(2<<20)-1)); if(mode==0) madvise(p,sz,MADV_HUGEPAGE);}
  if(p==MAP_FAILED){perror("mmap");return 1;}
  size_t n=sz/64; uint64_t *q=(uint64_t*)p;
  uint32_t *perm=malloc(n*4); for(size_t i=0;i<n;i++)perm[i]=i;
  uint64_t x=88172645463325252ull;
  for(size_t i=n-1;i>0;i--){x^=x<<13;x^=x>>7;x^=x<<17; size_t j=x%i; uint32_t t=perm[i];perm[i]=perm[j];perm[j]=t;}
  for(size_t i=0;i<n;i++) q[(size_t)perm[i]*8]=(size_t)perm[(i+1)%n]*8;
  // par independent chains
  size_t c[64]; for(int k=0;k<par;k++) c[k]=(size_t)perm[k*(n/par)]*8;
  int steps=4000000/par;
  double t0=now(); for(int i=0;i<steps;i++) for(int k=0;k<par;k++) c[k]=q[c[k]]; double t1=now();
  size_t s=0; for(int k=0;k<par;k++) s+=c[k];
  printf("mode %d par %d: %.1f ns/load (%zu)\n",mode,par,(t1-t0)/(steps*(double)par)*1e9,s&1);
  return 0;}

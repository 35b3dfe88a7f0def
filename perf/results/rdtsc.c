// What a read of the TSC costs on this machine (perf/RESULTS.md, "What the stage laps cost"):
// 10M dependent rdtsc in a loop. Build: gcc -O2 -o rdtsc rdtsc.c
#include <stdio.h>
#include <stdint.h>
#include <x86intrin.h>
int main(){ uint64_t s=__rdtsc(), x=0; for(int i=0;i<10000000;i++){ x+=__rdtsc(); } uint64_t e=__rdtsc(); printf("%.1f tsc cycles per rdtsc (dependent sum %lu)\n", (double)(e-s)/1e7, x&1); return 0;}

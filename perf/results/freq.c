/* The core clock of this VM: one dependent add per iteration, so iterations a second = cycles a
 * second. perf/results/native-ce42223.txt uses it. gcc -O2 freq.c -o freq && taskset -c 1 ./freq */
#include <stdio.h>
#include <time.h>
int main(){ struct timespec a,b; unsigned long x=1; long n=2000000000L;
clock_gettime(CLOCK_MONOTONIC,&a);
for(long i=0;i<n;i++){ __asm__ volatile("add $1, %0" : "+r"(x)); }
clock_gettime(CLOCK_MONOTONIC,&b);
double t=(b.tv_sec-a.tv_sec)+(b.tv_nsec-a.tv_nsec)/1e9; printf("%.3f s, %.2f G iters/s (%lu)\n",t,n/t/1e9,x); }

/* Single-core read bandwidth of buffers from 1 MiB to 256 MiB (session 14: the int8 pool is 32 MiB).
 * gcc -O2 -mavx512f read_bandwidth.c -o read_bandwidth && ./read_bandwidth */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
int main(){
  for (size_t sz = 1<<20; sz <= (256u<<20); sz*=4){
  char*p=aligned_alloc(64,sz); memset(p,1,sz);
  __m512i acc=_mm512_setzero_si512();
  int reps = (int)((1ull<<31)/sz); if(reps<2)reps=2;
  double t0=now();
  for(int r=0;r<reps;r++) for(size_t i=0;i<sz;i+=256){ acc=_mm512_add_epi32(acc,_mm512_load_si512(p+i)); acc=_mm512_add_epi32(acc,_mm512_load_si512(p+i+64));acc=_mm512_add_epi32(acc,_mm512_load_si512(p+i+128));acc=_mm512_add_epi32(acc,_mm512_load_si512(p+i+192));}
  double t=now()-t0;
  printf("%6zu KiB: %.1f GB/s (%d)\n", sz>>10, (double)sz*reps/t/1e9, _mm512_reduce_add_epi32(acc)&1);
  free(p);}
}

/* Single-core f32 FMA peak of this machine (session 14): 16 independent 512-bit FMA chains.
 * gcc -O2 -mavx512f -mfma fma_peak.c -o fma_peak && ./fma_peak
 * Compare with the network's GEMM rate (bench/session14/README.md). */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
int main(){
 __m512 b=_mm512_set1_ps(0.9999999f), c=_mm512_set1_ps(1e-8f);
 __m512 a0=_mm512_set1_ps(0.1f),a1=_mm512_set1_ps(0.2f),a2=_mm512_set1_ps(0.3f),a3=_mm512_set1_ps(0.4f),a4=_mm512_set1_ps(0.5f),a5=_mm512_set1_ps(0.6f),a6=_mm512_set1_ps(0.7f),a7=_mm512_set1_ps(0.8f),a8=_mm512_set1_ps(0.9f),a9=_mm512_set1_ps(1.1f),a10=_mm512_set1_ps(1.2f),a11=_mm512_set1_ps(1.3f),a12=_mm512_set1_ps(1.4f),a13=_mm512_set1_ps(1.5f),a14=_mm512_set1_ps(1.6f),a15=_mm512_set1_ps(1.7f);
 long N=200000000; double t0=now();
 for(long i=0;i<N;i++){
 a0=_mm512_fmadd_ps(a0,b,c);a1=_mm512_fmadd_ps(a1,b,c);a2=_mm512_fmadd_ps(a2,b,c);a3=_mm512_fmadd_ps(a3,b,c);
 a4=_mm512_fmadd_ps(a4,b,c);a5=_mm512_fmadd_ps(a5,b,c);a6=_mm512_fmadd_ps(a6,b,c);a7=_mm512_fmadd_ps(a7,b,c);
 a8=_mm512_fmadd_ps(a8,b,c);a9=_mm512_fmadd_ps(a9,b,c);a10=_mm512_fmadd_ps(a10,b,c);a11=_mm512_fmadd_ps(a11,b,c);
 a12=_mm512_fmadd_ps(a12,b,c);a13=_mm512_fmadd_ps(a13,b,c);a14=_mm512_fmadd_ps(a14,b,c);a15=_mm512_fmadd_ps(a15,b,c);
 }
 double t=now()-t0;
 __m512 s=_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0,a1),_mm512_add_ps(a2,a3)),_mm512_add_ps(_mm512_add_ps(a4,a5),_mm512_add_ps(a6,a7)));
 s=_mm512_add_ps(s,_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a8,a9),_mm512_add_ps(a10,a11)),_mm512_add_ps(_mm512_add_ps(a12,a13),_mm512_add_ps(a14,a15))));
 printf("%.1f GFLOPS (%f)\n", N*16*32.0/t/1e9, _mm512_reduce_add_ps(s));
}

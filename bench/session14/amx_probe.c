/* Whether this machine runs Intel AMX-INT8 for a user process (arch_prctl permission, one
 * TDPBUSD checked against a plain loop) and its int8 multiply-add rate (session 14).
 * gcc -O2 -mamx-tile -mamx-int8 amx_probe.c -o amx_probe && ./amx_probe */
#include <immintrin.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <time.h>
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
typedef struct { uint8_t palette_id, start_row, r[14]; uint16_t colsb[16]; uint8_t rows[16]; } __attribute__((packed)) cfg_t;
int main(){
  long r = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA);
  printf("perm %ld\n", r);
  cfg_t c; memset(&c,0,sizeof c); c.palette_id=1;
  for(int i=0;i<8;i++){c.colsb[i]=64;c.rows[i]=16;}
  _tile_loadconfig(&c);
  static uint8_t A[16*64]; static int8_t B[16*64]; static int32_t C[256], R[256];
  for(int i=0;i<1024;i++){A[i]=i*7%251; B[i]=(int8_t)(i*13%255-127);}
  _tile_zero(0); _tile_loadd(1,A,64); _tile_loadd(2,B,64); _tile_dpbusd(0,1,2); _tile_stored(0,C,64);
  // reference: C[m][n] = sum_k A[m][k]*B[k/4][n*4+k%4]
  int ok=1; for(int m=0;m<16;m++)for(int n=0;n<16;n++){int32_t s=0;for(int k=0;k<64;k++)s+=(int32_t)A[m*64+k]*(int32_t)B[(k/4)*64+n*4+k%4]; if(s!=C[m*16+n])ok=0;}
  printf("ok %d\n",ok);
  struct timespec t0,t1; clock_gettime(CLOCK_MONOTONIC,&t0);
  long N=100000000;
  _tile_zero(3);_tile_zero(4);_tile_zero(5);_tile_zero(0);
  for(long i=0;i<N/4;i++){ _tile_dpbusd(0,1,2); _tile_dpbusd(3,1,2);_tile_dpbusd(4,1,2);_tile_dpbusd(5,1,2);}
  clock_gettime(CLOCK_MONOTONIC,&t1);
  double s=(t1.tv_sec-t0.tv_sec)+1e-9*(t1.tv_nsec-t0.tv_nsec);
  printf("%.3f s, %.1f GMAC/s\n", s, N*16384.0/s/1e9);
  _tile_release();
}

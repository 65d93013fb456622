/* The machine's f32 FMA peak: twelve independent FMA chains per thread on registers only (no
 * memory traffic), 1 and 2 threads, best of five passes. No matrix product, training step or
 * decode step can run faster; the GEMM roofline of `aha bench generate|sft --roofline` sits
 * below it by the GEMM's own losses. AVX-512 registers when compiled for them, else AVX2.
 *   gcc -O2 -mavx512f -mfma -fopenmp benches/fmapeak.c -o /tmp/fmapeak && /tmp/fmapeak  (AVX-512)
 *   gcc -O2 -mavx2 -mfma -fopenmp benches/fmapeak.c -o /tmp/fmapeak && /tmp/fmapeak     (AVX2) */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>

#define CHAINS 12
#ifdef __AVX512F__
#define LANES 16
typedef __m512 vec;
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define SUM(v) _mm512_reduce_add_ps(v)
#else
#define LANES 8
typedef __m256 vec;
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
static float SUM(__m256 v) {
  float o[8];
  _mm256_storeu_ps(o, v);
  return o[0] + o[1] + o[2] + o[3] + o[4] + o[5] + o[6] + o[7];
}
#endif

static double gflop_per_s(int threads, long iters) {
  double best = 0;
  for (int pass = 0; pass < 5; pass++) {
    double t0 = omp_get_wtime();
    float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
      vec a[CHAINS], b = SET1(0.999999f), c = SET1(1e-7f);
      for (int i = 0; i < CHAINS; i++) a[i] = SET1((float)i);
      for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < CHAINS; i++) a[i] = FMA(a[i], b, c);
      }
      for (int i = 0; i < CHAINS; i++) sink += SUM(a[i]);
    }
    double dt = omp_get_wtime() - t0;
    double rate = 2.0 * LANES * CHAINS * (double)iters * threads / dt / 1e9;
    if (rate > best) best = rate;
    if (sink == 1234.5f) printf(" ");  /* keeps the chains live */
  }
  return best;
}

int main(void) {
  long iters = 40000000L;
  printf("f32 FMA peak, %d lanes, %d chains per thread:\n", LANES, CHAINS);
  for (int threads = 1; threads <= 2; threads++)
    printf("  %d thread(s): %.1f GFLOP/s\n", threads, gflop_per_s(threads, iters));
  return 0;
}

/* How fast this machine streams memory into vector registers: the ceiling of batch-1 decode,
 * which reads every weight once per token. Sums a buffer with 1 and 2 threads, best of several
 * passes, for a set far larger than the caches (DRAM) and one of a model's size (64 MB, which
 * a large L3 may partly hold). AVX-512 loads when compiled for them, else AVX.
 *   gcc -O2 -mavx512f -fopenmp benches/membw.c -o /tmp/membw && /tmp/membw   (AVX-512)
 *   gcc -O2 -mavx2 -fopenmp benches/membw.c -o /tmp/membw && /tmp/membw      (AVX2 machines) */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double gb_per_s(const float *a, size_t n, int threads, int passes) {
  double best = 1e30;
  for (int p = 0; p < passes; p++) {
    double t0 = omp_get_wtime();
    float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
#ifdef __AVX512F__
      __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
#pragma omp for
      for (size_t i = 0; i < n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_load_ps(a + i));
        s1 = _mm512_add_ps(s1, _mm512_load_ps(a + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_load_ps(a + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_load_ps(a + i + 48));
      }
      total += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
#else
      __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
#pragma omp for
      for (size_t i = 0; i < n; i += 64) {
        for (size_t j = 0; j < 64; j += 32) {
          s0 = _mm256_add_ps(s0, _mm256_load_ps(a + i + j));
          s1 = _mm256_add_ps(s1, _mm256_load_ps(a + i + j + 8));
          s2 = _mm256_add_ps(s2, _mm256_load_ps(a + i + j + 16));
          s3 = _mm256_add_ps(s3, _mm256_load_ps(a + i + j + 24));
        }
      }
      float lanes[8];
      _mm256_storeu_ps(lanes, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
      for (int l = 0; l < 8; l++) total += lanes[l];
#endif
    }
    double t = omp_get_wtime() - t0;
    if (t < best) best = t;
    if (total == 42.0f) printf(" ");  /* keeps the sum alive */
  }
  return n * sizeof(float) / best / 1e9;
}

int main(void) {
  size_t big = (size_t)256 << 20, model = (size_t)64 << 20; /* bytes */
  float *a = aligned_alloc(64, big);
  memset(a, 1, big);
  for (int threads = 1; threads <= 2; threads++) {
    printf("threads %d: %.1f GB/s (256 MB set), %.1f GB/s (64 MB set)\n", threads,
           gb_per_s(a, big / sizeof(float), threads, 5),
           gb_per_s(a, model / sizeof(float), threads, 20));
  }
  free(a);
  return 0;
}

// Exact float distances and nearest-centroid search: generic vector maths used by k-means,
// refinement and the flat index, not tied to any code format.
#include "kernels_internal.h"

#include <math.h>

// MARK: - Exact distances

// Both sums keep 32 partial sums, component j going to sum j % 32, then add them pairwise
// (16 + 16, 8 + 8, ...). The AVX2 paths hold the 32 sums in four registers and multiply and
// add separately (no FMA), so every kernel level returns the same bits; 32 sums keep the AVX2
// adds independent (four chains of 8 lanes), where the former 4 sums ran at one float a cycle.

static inline float reduce32(float *acc) {
    for (int width = 16; width >= 1; width /= 2) {
        for (int i = 0; i < width; i++) acc[i] += acc[i + width];
    }
    return acc[0];
}

static float l2sq_portable(const float *a, const float *b, size_t d) {
    float acc[32] = {0};
    for (size_t j = 0; j < d; j++) {
        const float t = a[j] - b[j];
        acc[j & 31] += t * t;
    }
    return reduce32(acc);
}

static float dot_portable(const float *a, const float *b, size_t d) {
    float acc[32] = {0};
    for (size_t j = 0; j < d; j++) acc[j & 31] += a[j] * b[j];
    return reduce32(acc);
}

#if PHAROS_X86
__attribute__((target("avx2")))
static float l2sq_avx2(const float *a, const float *b, size_t d) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 32 <= d; j += 32) {
        const __m256 t0 = _mm256_sub_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j));
        const __m256 t1 = _mm256_sub_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(b + j + 8));
        const __m256 t2 = _mm256_sub_ps(_mm256_loadu_ps(a + j + 16), _mm256_loadu_ps(b + j + 16));
        const __m256 t3 = _mm256_sub_ps(_mm256_loadu_ps(a + j + 24), _mm256_loadu_ps(b + j + 24));
        s0 = _mm256_add_ps(s0, _mm256_mul_ps(t0, t0));
        s1 = _mm256_add_ps(s1, _mm256_mul_ps(t1, t1));
        s2 = _mm256_add_ps(s2, _mm256_mul_ps(t2, t2));
        s3 = _mm256_add_ps(s3, _mm256_mul_ps(t3, t3));
    }
    float acc[32];
    _mm256_storeu_ps(acc, s0); _mm256_storeu_ps(acc + 8, s1); _mm256_storeu_ps(acc + 16, s2); _mm256_storeu_ps(acc + 24, s3);
    for (; j < d; j++) {
        const float t = a[j] - b[j];
        acc[j & 31] += t * t;
    }
    return reduce32(acc);
}

__attribute__((target("avx2")))
static float dot_avx2(const float *a, const float *b, size_t d) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 32 <= d; j += 32) {
        s0 = _mm256_add_ps(s0, _mm256_mul_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j)));
        s1 = _mm256_add_ps(s1, _mm256_mul_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(b + j + 8)));
        s2 = _mm256_add_ps(s2, _mm256_mul_ps(_mm256_loadu_ps(a + j + 16), _mm256_loadu_ps(b + j + 16)));
        s3 = _mm256_add_ps(s3, _mm256_mul_ps(_mm256_loadu_ps(a + j + 24), _mm256_loadu_ps(b + j + 24)));
    }
    float acc[32];
    _mm256_storeu_ps(acc, s0); _mm256_storeu_ps(acc + 8, s1); _mm256_storeu_ps(acc + 16, s2); _mm256_storeu_ps(acc + 24, s3);
    for (; j < d; j++) acc[j & 31] += a[j] * b[j];
    return reduce32(acc);
}
#endif

float pharos_l2sq(const float *a, const float *b, size_t d) {
#if PHAROS_X86
    if (pharos_internal_level() == 1 && d >= 32) return l2sq_avx2(a, b, d);
#endif
    return l2sq_portable(a, b, d);
}

float pharos_dot(const float *a, const float *b, size_t d) {
#if PHAROS_X86
    if (pharos_internal_level() == 1 && d >= 32) return dot_avx2(a, b, d);
#endif
    return dot_portable(a, b, d);
}

void pharos_prefetch(const void *address, size_t bytes) {
    const char *p = (const char *)address;
    for (size_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch(p + offset, 0, 3);
}

// MARK: - Integer inner products

static void i8_dots_portable(const int8_t *query, const int8_t *rows, size_t n, size_t d, int32_t *out) {
    for (size_t i = 0; i < n; i++) {
        const int8_t *row = rows + i * d;
        int32_t sum = 0;
        for (size_t j = 0; j < d; j++) sum += (int32_t)query[j] * (int32_t)row[j];
        out[i] = sum;
    }
}

#if PHAROS_X86
__attribute__((target("avx2")))
static void i8_dots_avx2(const int8_t *query, const int8_t *rows, size_t n, size_t d, int32_t *out) {
    const size_t blocks = d / 16;
    for (size_t i = 0; i < n; i++) {
        const int8_t *row = rows + i * d;
        __m256i acc = _mm256_setzero_si256();
        for (size_t b = 0; b < blocks; b++) {
            // 16 bytes of each widened to int16; madd sums adjacent products into int32 lanes
            // (|product| <= 2^14, a pair <= 2^15: exact).
            const __m256i q = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(query + b * 16)));
            const __m256i r = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(row + b * 16)));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(q, r));
        }
        int32_t lanes[8];
        _mm256_storeu_si256((__m256i *)lanes, acc);
        int32_t sum = lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
        for (size_t j = blocks * 16; j < d; j++) sum += (int32_t)query[j] * (int32_t)row[j];
        out[i] = sum;
    }
}
#endif

void pharos_i8_dots(const int8_t *query, const int8_t *rows, size_t n, size_t d, int32_t *out) {
#if PHAROS_X86
    if (pharos_internal_level() == 1) { i8_dots_avx2(query, rows, n, d, out); return; }
#endif
    i8_dots_portable(query, rows, n, d, out);
}

// MARK: - Nearest centroid

static size_t argmin_sum_portable(const float *values, const float *bias, size_t n, float *best_out) {
    float best = INFINITY;
    size_t arg = 0;
    for (size_t j = 0; j < n; j++) {
        const float v = values[j] + bias[j];
        if (v < best) { best = v; arg = j; }
    }
    *best_out = best;
    return arg;
}

#if PHAROS_X86
__attribute__((target("avx2")))
static size_t argmin_sum_avx2(const float *values, const float *bias, size_t n, float *best_out) {
    LaneArgmin argmin = lane_argmin_start();
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        lane_argmin_update(&argmin, _mm256_add_ps(_mm256_loadu_ps(values + j), _mm256_loadu_ps(bias + j)));
    }
    float b;
    size_t arg = lane_argmin_finish(&argmin, &b);
    for (; j < n; j++) {
        const float v = values[j] + bias[j];
        if (v < b) { b = v; arg = j; }
    }
    *best_out = b;
    return arg;
}
#endif

size_t pharos_argmin_sum(const float *values, const float *bias, size_t n, float *best) {
#if PHAROS_X86
    if (pharos_internal_level() == 1) return argmin_sum_avx2(values, bias, n, best);
#endif
    return argmin_sum_portable(values, bias, n, best);
}

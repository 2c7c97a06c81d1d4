// Exact float distances and nearest-centroid search: generic vector maths used by k-means,
// refinement and the flat index, not tied to any code format.
#include "kernels_internal.h"

#include <math.h>

// MARK: - Exact distances

float pharos_l2sq(const float *a, const float *b, size_t d) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t j = 0;
    for (; j + 4 <= d; j += 4) {
        float t0 = a[j] - b[j], t1 = a[j + 1] - b[j + 1], t2 = a[j + 2] - b[j + 2], t3 = a[j + 3] - b[j + 3];
        s0 += t0 * t0; s1 += t1 * t1; s2 += t2 * t2; s3 += t3 * t3;
    }
    for (; j < d; j++) { float t = a[j] - b[j]; s0 += t * t; }
    return (s0 + s1) + (s2 + s3);
}

float pharos_dot(const float *a, const float *b, size_t d) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t j = 0;
    for (; j + 4 <= d; j += 4) {
        s0 += a[j] * b[j]; s1 += a[j + 1] * b[j + 1]; s2 += a[j + 2] * b[j + 2]; s3 += a[j + 3] * b[j + 3];
    }
    for (; j < d; j++) s0 += a[j] * b[j];
    return (s0 + s1) + (s2 + s3);
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

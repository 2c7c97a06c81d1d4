// 8-bit product quantizer: ADC scan, look-up table building and the encoder. Kept apart from
// the 4-bit fast scan, which has its own code layout and integer kernels.
#include "kernels_internal.h"

#include <math.h>

// MARK: - PQ8

void pharos_pq8_distances(const float *lut, size_t m_count, const uint8_t *codes, size_t n,
                          float bias, float *distances) {
    size_t i = 0;
    // Four vectors at a time: independent accumulators hide the latency of the table loads.
    for (; i + 4 <= n; i += 4) {
        const uint8_t *c0 = codes + i * m_count;
        const uint8_t *c1 = c0 + m_count;
        const uint8_t *c2 = c1 + m_count;
        const uint8_t *c3 = c2 + m_count;
        float s0 = bias, s1 = bias, s2 = bias, s3 = bias;
        const float *t = lut;
        for (size_t m = 0; m < m_count; m++, t += 256) {
            s0 += t[c0[m]];
            s1 += t[c1[m]];
            s2 += t[c2[m]];
            s3 += t[c3[m]];
        }
        distances[i] = s0;
        distances[i + 1] = s1;
        distances[i + 2] = s2;
        distances[i + 3] = s3;
    }
    for (; i < n; i++) {
        const uint8_t *c = codes + i * m_count;
        float s = bias;
        for (size_t m = 0; m < m_count; m++) s += lut[m * 256 + c[m]];
        distances[i] = s;
    }
}

void pharos_pq_inner_product_table(const float *query, const float *codebooks_t, size_t m_count,
                                   size_t ksub, size_t dsub, float *table) {
    // Codebooks are transposed per subspace (dsub rows of ksub values), so the inner loop runs
    // over codewords with unit stride and vectorises for any dsub.
    for (size_t m = 0; m < m_count; m++) {
        float *acc = table + m * ksub;
        const float *q = query + m * dsub;
        const float *book = codebooks_t + m * dsub * ksub;
        for (size_t j = 0; j < ksub; j++) acc[j] = 0;
        for (size_t t = 0; t < dsub; t++) {
            const float qt = q[t];
            const float *row = book + t * ksub;
            for (size_t j = 0; j < ksub; j++) acc[j] += qt * row[j];
        }
    }
}

static void pq_encode_portable(const float *x, size_t n, size_t dimension, const float *codebooks_t,
                               const float *norms, size_t m_count, size_t ksub, uint8_t *codes) {
    const size_t dsub = dimension / m_count;
    float table[256];
    for (size_t i = 0; i < n; i++) {
        const float *v = x + i * dimension;
        for (size_t m = 0; m < m_count; m++) {
            // |x - c|^2 = |x|^2 + |c|^2 - 2 <x, c>; |x|^2 is common to all codewords.
            const float *book = codebooks_t + m * dsub * ksub;
            const float *q = v + m * dsub;
            for (size_t j = 0; j < ksub; j++) table[j] = 0;
            for (size_t t = 0; t < dsub; t++) {
                const float qt = q[t];
                for (size_t j = 0; j < ksub; j++) table[j] = table[j] + qt * book[t * ksub + j];
            }
            const float *nm = norms + m * ksub;
            float best = INFINITY;
            size_t arg = 0;
            for (size_t j = 0; j < ksub; j++) {
                const float d = nm[j] - 2 * table[j];
                if (d < best) { best = d; arg = j; }
            }
            codes[i * m_count + m] = (uint8_t)arg;
        }
    }
}

#if PHAROS_X86
// Same arithmetic as the portable path (multiply then add, no FMA contraction, the same
// order), so both pick the same codes; 8 codewords per register.
__attribute__((target("avx2")))
static void pq_encode_avx2(const float *x, size_t n, size_t dimension, const float *codebooks_t,
                           const float *norms, size_t m_count, size_t ksub, uint8_t *codes) {
    const size_t dsub = dimension / m_count;
    for (size_t i = 0; i < n; i++) {
        const float *v = x + i * dimension;
        for (size_t m = 0; m < m_count; m++) {
            const float *book = codebooks_t + m * dsub * ksub;
            const float *q = v + m * dsub;
            const float *nm = norms + m * ksub;
            LaneArgmin argmin = lane_argmin_start();
            for (size_t j = 0; j < ksub; j += 8) {
                __m256 acc = _mm256_setzero_ps();
                for (size_t t = 0; t < dsub; t++) {
                    acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(q[t]), _mm256_loadu_ps(book + t * ksub + j)));
                }
                lane_argmin_update(&argmin, _mm256_sub_ps(_mm256_loadu_ps(nm + j), _mm256_mul_ps(_mm256_set1_ps(2.0f), acc)));
            }
            float best;
            const size_t arg = lane_argmin_finish(&argmin, &best);
            codes[i * m_count + m] = (uint8_t)arg;
        }
    }
}
#endif

void pharos_pq_encode(const float *x, size_t n, size_t dimension, const float *codebooks_t,
                      const float *norms, size_t m_count, size_t ksub, uint8_t *codes) {
#if PHAROS_X86
    if (pharos_internal_level() == 1 && ksub % 8 == 0) {
        pq_encode_avx2(x, n, dimension, codebooks_t, norms, m_count, ksub, codes);
        return;
    }
#endif
    pq_encode_portable(x, n, dimension, codebooks_t, norms, m_count, ksub, codes);
}

void pharos_lut_combine(const float *base, const float *values, float factor, size_t n, float *out) {
    if (base) {
        for (size_t i = 0; i < n; i++) out[i] = base[i] + factor * values[i];
    } else {
        for (size_t i = 0; i < n; i++) out[i] = factor * values[i];
    }
}

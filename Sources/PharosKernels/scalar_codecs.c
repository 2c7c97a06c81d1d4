// Scalar codecs used as refine codes: SQ8 (distance without decoding, encode, decode) and
// FP16 conversion. Separate from PQ because they quantize each component on its own.
#include "kernels_internal.h"

#include <string.h>

// MARK: - SQ8

// SQ8 codes decode as x[j] = offset[j] + code[j] * scale[j]. Both kernels accumulate in 8
// lanes (lane l takes components j = l mod 8) and reduce the lanes in the same tree, so the
// AVX2 and portable distances are bit-identical.
/// Adds the components from `j` on (fewer than 8) one by one, then applies the sign.
static inline float sq8_finish(const float *query, const uint8_t *code, const float *offset,
                               const float *scale, size_t j, size_t d, int inner_product, float sum) {
    for (; j < d; j++) {
        const float x = offset[j] + (float)code[j] * scale[j];
        if (inner_product) {
            sum = sum + query[j] * x;
        } else {
            const float t = query[j] - x;
            sum = sum + t * t;
        }
    }
    return inner_product ? -sum : sum;
}

static float sq8_distance_portable(const float *query, const uint8_t *code, const float *offset,
                                   const float *scale, size_t d, int inner_product) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t j = 0;
    for (; j + 8 <= d; j += 8) {
        for (int l = 0; l < 8; l++) {
            const float x = offset[j + l] + (float)code[j + l] * scale[j + l];
            if (inner_product) {
                acc[l] = acc[l] + query[j + l] * x;
            } else {
                const float t = query[j + l] - x;
                acc[l] = acc[l] + t * t;
            }
        }
    }
    const float b0 = acc[0] + acc[4], b1 = acc[1] + acc[5], b2 = acc[2] + acc[6], b3 = acc[3] + acc[7];
    float sum = (b0 + b2) + (b1 + b3);
    return sq8_finish(query, code, offset, scale, j, d, inner_product, sum);
}

#if PHAROS_X86
__attribute__((target("avx2")))
static float sq8_distance_avx2(const float *query, const uint8_t *code, const float *offset,
                               const float *scale, size_t d, int inner_product) {
    __m256 acc = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 8 <= d; j += 8) {
        const __m256 c = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(code + j))));
        const __m256 x = _mm256_add_ps(_mm256_loadu_ps(offset + j), _mm256_mul_ps(c, _mm256_loadu_ps(scale + j)));
        const __m256 q = _mm256_loadu_ps(query + j);
        if (inner_product) {
            acc = _mm256_add_ps(acc, _mm256_mul_ps(q, x));
        } else {
            const __m256 t = _mm256_sub_ps(q, x);
            acc = _mm256_add_ps(acc, _mm256_mul_ps(t, t));
        }
    }
    const __m128 b = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));  // (b0 + b2, b1 + b3)
    float sum = _mm_cvtss_f32(_mm_add_ss(c, _mm_shuffle_ps(c, c, 1)));
    return sq8_finish(query, code, offset, scale, j, d, inner_product, sum);
}
#endif

float pharos_sq8_distance(const float *query, const uint8_t *code, const float *offset,
                          const float *scale, size_t d, int inner_product) {
#if PHAROS_X86
    if (pharos_internal_level() == 1) return sq8_distance_avx2(query, code, offset, scale, d, inner_product);
#endif
    return sq8_distance_portable(query, code, offset, scale, d, inner_product);
}

static float sq8_weighted_sum_portable(const float *weights, const uint8_t *code, size_t d) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t j = 0;
    for (; j + 8 <= d; j += 8) {
        for (int l = 0; l < 8; l++) acc[l] = acc[l] + weights[j + l] * (float)code[j + l];
    }
    const float b0 = acc[0] + acc[4], b1 = acc[1] + acc[5], b2 = acc[2] + acc[6], b3 = acc[3] + acc[7];
    float sum = (b0 + b2) + (b1 + b3);
    for (; j < d; j++) sum = sum + weights[j] * (float)code[j];
    return sum;
}

#if PHAROS_X86
__attribute__((target("avx2")))
static float sq8_weighted_sum_avx2(const float *weights, const uint8_t *code, size_t d) {
    __m256 acc = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 8 <= d; j += 8) {
        const __m256 c = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(code + j))));
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(weights + j), c));
    }
    const __m128 b = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
    float sum = _mm_cvtss_f32(_mm_add_ss(c, _mm_shuffle_ps(c, c, 1)));
    for (; j < d; j++) sum = sum + weights[j] * (float)code[j];
    return sum;
}
#endif

float pharos_sq8_weighted_sum(const float *weights, const uint8_t *code, size_t d) {
#if PHAROS_X86
    if (pharos_internal_level() == 1) return sq8_weighted_sum_avx2(weights, code, d);
#endif
    return sq8_weighted_sum_portable(weights, code, d);
}

void pharos_sq8_decode(const uint8_t *code, const float *offset, const float *scale, size_t d, float *out) {
    for (size_t j = 0; j < d; j++) out[j] = offset[j] + (float)code[j] * scale[j];
}

void pharos_sq8_encode(const float *x, const float *vmin, const float *step, size_t d, uint8_t *code) {
    for (size_t j = 0; j < d; j++) {
        float v = step[j] > 0 ? (x[j] - vmin[j]) / step[j] * 255.0f : 0.0f;
        if (!(v > 0)) v = 0;  // also maps NaN to 0
        if (v > 255) v = 255;
        int c = (int)v;
        code[j] = (uint8_t)(c > 254 ? 255 : c);
    }
}

// MARK: - FP16

static inline uint16_t f32_to_f16_one(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t exponent = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t mantissa = x & 0x7fffff;
    if (((x >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (mantissa ? 0x200 : 0));
    if (exponent >= 31) return (uint16_t)(sign | 0x7c00);
    if (exponent <= 0) {
        if (exponent < -10) return (uint16_t)sign;
        mantissa |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exponent);
        uint32_t half = mantissa >> shift;
        uint32_t rem = mantissa & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)exponent << 10) | (mantissa >> 13);
    uint32_t rem = mantissa & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;  // may carry into the exponent: correct
    return (uint16_t)half;
}

static inline float f16_to_f32_one(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1f;
    uint32_t mantissa = h & 0x3ff;
    uint32_t x;
    if (exponent == 0) {
        if (mantissa == 0) {
            x = sign;
        } else {
            exponent = 127 - 15 + 1;
            while (!(mantissa & 0x400)) { mantissa <<= 1; exponent--; }
            mantissa &= 0x3ff;
            x = sign | (exponent << 23) | (mantissa << 13);
        }
    } else if (exponent == 31) {
        x = sign | 0x7f800000 | (mantissa << 13);
    } else {
        x = sign | ((exponent - 15 + 127) << 23) | (mantissa << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

void pharos_f32_to_f16(const float *x, size_t n, uint16_t *out) {
    for (size_t i = 0; i < n; i++) out[i] = f32_to_f16_one(x[i]);
}

void pharos_f16_to_f32(const uint16_t *x, size_t n, float *out) {
    for (size_t i = 0; i < n; i++) out[i] = f16_to_f32_one(x[i]);
}

// 4-bit fast scan: block packing, the shuffle-based scan and LUT quantisation. Its layout and
// integer arithmetic share nothing with the 8-bit PQ path.
#include "kernels_internal.h"

#include <string.h>

// MARK: - Fast scan (4-bit)

void pharos_fs4_pack(const uint8_t *codes, size_t n, size_t m_count, size_t m_padded,
                     uint8_t *blocks) {
    const size_t block_count = (n + 31) / 32;
    memset(blocks, 0, block_count * pharos_fs4_block_bytes(m_padded));
    for (size_t i = 0; i < n; i++) {
        uint8_t *block = blocks + (i / 32) * pharos_fs4_block_bytes(m_padded);
        const size_t j = i % 32;
        const size_t byte = j % 16;
        const int shift = j < 16 ? 0 : 4;
        for (size_t m = 0; m < m_count; m++) {
            block[m * 16 + byte] |= (uint8_t)((codes[i * m_count + m] & 15) << shift);
        }
    }
}

uint8_t pharos_fs4_code(const uint8_t *blocks, size_t m_padded, size_t i, size_t m) {
    const uint8_t *block = blocks + (i / 32) * pharos_fs4_block_bytes(m_padded);
    const size_t j = i % 32;
    const uint8_t b = block[m * 16 + (j % 16)];
    return j < 16 ? (b & 15) : (b >> 4);
}

static void fs4_scan_portable(const uint8_t *const *luts, size_t query_count, size_t m_padded,
                              const uint8_t *blocks, size_t block_count, uint16_t *sums) {
    const size_t block_bytes = pharos_fs4_block_bytes(m_padded);
    for (size_t b = 0; b < block_count; b++) {
        const uint8_t *block = blocks + b * block_bytes;
        for (size_t q = 0; q < query_count; q++) {
            const uint8_t *lut = luts[q];
            uint16_t *out = sums + q * block_count * 32 + b * 32;
            uint32_t acc[32] = {0};
            for (size_t m = 0; m < m_padded; m++) {
                const uint8_t *codes = block + m * 16;
                const uint8_t *t = lut + m * 16;
                for (size_t j = 0; j < 16; j++) {
                    acc[j] += t[codes[j] & 15];
                    acc[j + 16] += t[codes[j] >> 4];
                }
            }
            for (size_t j = 0; j < 32; j++) out[j] = (uint16_t)acc[j];
        }
    }
}

#if PHAROS_X86
// Each 16-bit lane of an A accumulator holds (even byte) + 256 * (odd byte) summed with
// wrap-around; its B accumulator holds the odd bytes alone: even = A - (B << 8). The two
// 128-bit halves summed even and odd sub-quantizers: they are added at the end.
__attribute__((target("avx2")))
static inline void fs4_store(__m256i acc_a_lo, __m256i acc_b_lo, __m256i acc_a_hi, __m256i acc_b_hi, uint16_t *out) {
    const __m256i even_lo = _mm256_sub_epi16(acc_a_lo, _mm256_slli_epi16(acc_b_lo, 8));
    const __m256i even_hi = _mm256_sub_epi16(acc_a_hi, _mm256_slli_epi16(acc_b_hi, 8));
    const __m128i e_lo = _mm_add_epi16(_mm256_castsi256_si128(even_lo), _mm256_extracti128_si256(even_lo, 1));
    const __m128i o_lo = _mm_add_epi16(_mm256_castsi256_si128(acc_b_lo), _mm256_extracti128_si256(acc_b_lo, 1));
    const __m128i e_hi = _mm_add_epi16(_mm256_castsi256_si128(even_hi), _mm256_extracti128_si256(even_hi, 1));
    const __m128i o_hi = _mm_add_epi16(_mm256_castsi256_si128(acc_b_hi), _mm256_extracti128_si256(acc_b_hi, 1));
    _mm_storeu_si128((__m128i *)(out + 0), _mm_unpacklo_epi16(e_lo, o_lo));
    _mm_storeu_si128((__m128i *)(out + 8), _mm_unpackhi_epi16(e_lo, o_lo));
    _mm_storeu_si128((__m128i *)(out + 16), _mm_unpacklo_epi16(e_hi, o_hi));
    _mm_storeu_si128((__m128i *)(out + 24), _mm_unpackhi_epi16(e_hi, o_hi));
}

/// Looks up `codes` (one 32-byte row of a block: two sub-quantizers) in `lut` and adds the
/// entries to the four accumulators.
#define FS4_ACCUMULATE(lut, lo, hi, a_lo, b_lo, a_hi, b_hi)                      \
    do {                                                                          \
        const __m256i table = _mm256_loadu_si256((const __m256i *)(lut));        \
        const __m256i r_lo = _mm256_shuffle_epi8(table, lo);                      \
        const __m256i r_hi = _mm256_shuffle_epi8(table, hi);                      \
        a_lo = _mm256_add_epi16(a_lo, r_lo);                                      \
        b_lo = _mm256_add_epi16(b_lo, _mm256_srli_epi16(r_lo, 8));                \
        a_hi = _mm256_add_epi16(a_hi, r_hi);                                      \
        b_hi = _mm256_add_epi16(b_hi, _mm256_srli_epi16(r_hi, 8));                \
    } while (0)

// Two queries at a time over every block: each row of codes is loaded and split once for both
// tables, and the two tables (m_padded * 16 bytes each) stay in L1 while the blocks stream
// past, where block after block over all queries reloaded every table from L2 per block.
// Sums are exact integers, so the order changes nothing in the results.
__attribute__((target("avx2")))
static void fs4_scan_avx2(const uint8_t *const *luts, size_t query_count, size_t m_padded,
                          const uint8_t *blocks, size_t block_count, uint16_t *sums) {
    const size_t block_bytes = pharos_fs4_block_bytes(m_padded);
    const __m256i low_mask = _mm256_set1_epi8(0x0f);
    const size_t pairs = m_padded / 2;
    size_t q = 0;
    for (; q + 2 <= query_count; q += 2) {
        const uint8_t *lut0 = luts[q], *lut1 = luts[q + 1];
        for (size_t b = 0; b < block_count; b++) {
            const uint8_t *block = blocks + b * block_bytes;
            __m256i a0_lo = _mm256_setzero_si256(), b0_lo = _mm256_setzero_si256();
            __m256i a0_hi = _mm256_setzero_si256(), b0_hi = _mm256_setzero_si256();
            __m256i a1_lo = _mm256_setzero_si256(), b1_lo = _mm256_setzero_si256();
            __m256i a1_hi = _mm256_setzero_si256(), b1_hi = _mm256_setzero_si256();
            for (size_t p = 0; p < pairs; p++) {
                const __m256i codes = _mm256_loadu_si256((const __m256i *)(block + p * 32));
                const __m256i lo = _mm256_and_si256(codes, low_mask);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(codes, 4), low_mask);
                FS4_ACCUMULATE(lut0 + p * 32, lo, hi, a0_lo, b0_lo, a0_hi, b0_hi);
                FS4_ACCUMULATE(lut1 + p * 32, lo, hi, a1_lo, b1_lo, a1_hi, b1_hi);
            }
            fs4_store(a0_lo, b0_lo, a0_hi, b0_hi, sums + q * block_count * 32 + b * 32);
            fs4_store(a1_lo, b1_lo, a1_hi, b1_hi, sums + (q + 1) * block_count * 32 + b * 32);
        }
    }
    for (; q < query_count; q++) {
        const uint8_t *lut = luts[q];
        for (size_t b = 0; b < block_count; b++) {
            const uint8_t *block = blocks + b * block_bytes;
            __m256i a_lo = _mm256_setzero_si256(), b_lo = _mm256_setzero_si256();
            __m256i a_hi = _mm256_setzero_si256(), b_hi = _mm256_setzero_si256();
            for (size_t p = 0; p < pairs; p++) {
                const __m256i codes = _mm256_loadu_si256((const __m256i *)(block + p * 32));
                const __m256i lo = _mm256_and_si256(codes, low_mask);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(codes, 4), low_mask);
                FS4_ACCUMULATE(lut + p * 32, lo, hi, a_lo, b_lo, a_hi, b_hi);
            }
            fs4_store(a_lo, b_lo, a_hi, b_hi, sums + q * block_count * 32 + b * 32);
        }
    }
}
#undef FS4_ACCUMULATE
#endif

void pharos_fs4_scan(const uint8_t *const *luts, size_t query_count, size_t m_padded,
                     const uint8_t *blocks, size_t block_count, uint16_t *sums) {
#if PHAROS_X86
    if (pharos_internal_level() == 1) {
        fs4_scan_avx2(luts, query_count, m_padded, blocks, block_count, sums);
        return;
    }
#endif
    fs4_scan_portable(luts, query_count, m_padded, blocks, block_count, sums);
}

static inline void row_min_max(const float *row, float *lo_out, float *hi_out) {
    float lo = row[0], hi = row[0];
    for (int j = 1; j < 16; j++) {
        lo = row[j] < lo ? row[j] : lo;
        hi = row[j] > hi ? row[j] : hi;
    }
    *lo_out = lo;
    *hi_out = hi;
}

static void quantize_row_portable(const float *row, float lo, float scale, uint8_t *dst) {
    for (int j = 0; j < 16; j++) {
        float v = (row[j] - lo) * scale + 0.5f;
        v = v < 0 ? 0 : (v > 255 ? 255 : v);
        dst[j] = (uint8_t)(int)v;
    }
}

// One body for both kernel levels: ATTR selects the target, MIN_MAX and QUANTIZE the row
// helpers (which must agree bit for bit, so that both levels produce the same tables).
#define DEFINE_QUANTIZE_LUTS(NAME, ATTR, MIN_MAX, QUANTIZE)                                      \
    ATTR static float NAME(const float *tables, size_t table_count, size_t m_count,               \
                           size_t m_padded, uint8_t *out, float *offsets) {                        \
        float widest = 0, lo, hi;                                                                  \
        for (size_t r = 0; r < table_count * m_count; r++) {                                       \
            MIN_MAX(tables + r * 16, &lo, &hi);                                                    \
            if (hi - lo > widest) widest = hi - lo;                                                \
        }                                                                                          \
        const float scale = widest > 0 ? 255.0f / widest : 1.0f;                                   \
        for (size_t t = 0; t < table_count; t++) {                                                 \
            uint8_t *dst = out + t * m_padded * 16;                                                \
            float offset = offsets[t];                                                             \
            for (size_t m = 0; m < m_count; m++) {                                                 \
                const float *row = tables + (t * m_count + m) * 16;                                \
                MIN_MAX(row, &lo, &hi);                                                            \
                offset += lo;                                                                      \
                QUANTIZE(row, lo, scale, dst + m * 16);                                            \
            }                                                                                      \
            for (size_t m = m_count; m < m_padded; m++) memset(dst + m * 16, 0, 16);               \
            offsets[t] = offset;                                                                   \
        }                                                                                          \
        return 1.0f / scale;                                                                       \
    }

DEFINE_QUANTIZE_LUTS(quantize_luts_portable, , row_min_max, quantize_row_portable)

#if PHAROS_X86
__attribute__((target("avx2")))
static inline void row_min_max_avx2(const float *row, float *lo_out, float *hi_out) {
    __m256 a = _mm256_loadu_ps(row), b = _mm256_loadu_ps(row + 8);
    __m256 lo = _mm256_min_ps(a, b), hi = _mm256_max_ps(a, b);
    __m128 l = _mm_min_ps(_mm256_castps256_ps128(lo), _mm256_extractf128_ps(lo, 1));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(hi), _mm256_extractf128_ps(hi, 1));
    l = _mm_min_ps(l, _mm_movehl_ps(l, l));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    l = _mm_min_ss(l, _mm_shuffle_ps(l, l, 1));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    *lo_out = _mm_cvtss_f32(l);
    *hi_out = _mm_cvtss_f32(h);
}

__attribute__((target("avx2")))
static inline void quantize_row_avx2(const float *row, float lo, float scale, uint8_t *dst) {
    const __m256 vlo = _mm256_set1_ps(lo), vs = _mm256_set1_ps(scale), half = _mm256_set1_ps(0.5f);
    const __m256i a = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(row), vlo), vs), half));
    const __m256i b = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(row + 8), vlo), vs), half));
    // packus works per 128-bit lane: restore element order before the final pack.
    const __m256i words = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8);
    const __m128i bytes = _mm_packus_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1));
    _mm_storeu_si128((__m128i *)dst, bytes);
}

DEFINE_QUANTIZE_LUTS(quantize_luts_avx2, __attribute__((target("avx2"))), row_min_max_avx2, quantize_row_avx2)
#endif

float pharos_fs4_quantize_luts(const float *tables, size_t table_count, size_t m_count,
                               size_t m_padded, uint8_t *out, float *offsets) {
#if PHAROS_X86
    if (pharos_internal_level() == 1) return quantize_luts_avx2(tables, table_count, m_count, m_padded, out, offsets);
#endif
    return quantize_luts_portable(tables, table_count, m_count, m_padded, out, offsets);
}

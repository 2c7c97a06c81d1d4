// Hot loops of the index engine. See include/PharosKernels.h for the contracts.
#include "PharosKernels.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define PHAROS_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

// MARK: - Run-time dispatch

static int forced_portable = 0;
static int detected_level = -1;

static int detect_level(void) {
#if PHAROS_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("sse4.2")) return 1;
#endif
    return 0;
}

int pharos_kernel_level(void) {
    if (forced_portable) return 0;
    int level = __atomic_load_n(&detected_level, __ATOMIC_RELAXED);
    if (level < 0) {
        level = detect_level();
        __atomic_store_n(&detected_level, level, __ATOMIC_RELAXED);
    }
    return level;
}

void pharos_kernel_force_portable(int force) { forced_portable = force; }

const char *pharos_kernel_level_name(void) { return pharos_kernel_level() == 1 ? "avx2" : "portable"; }

// MARK: - Heap

static inline int heap_worse(float d1, int64_t i1, float d2, int64_t i2) {
    return d1 > d2 || (d1 == d2 && i1 > i2);
}

static void heap_sift_down(PharosHeap *h, int32_t i) {
    float *d = h->distances;
    int64_t *ids = h->ids;
    const int32_t n = h->count;
    float dv = d[i];
    int64_t iv = ids[i];
    for (;;) {
        int32_t l = 2 * i + 1;
        if (l >= n) break;
        int32_t r = l + 1;
        int32_t c = (r < n && heap_worse(d[r], ids[r], d[l], ids[l])) ? r : l;
        if (!heap_worse(d[c], ids[c], dv, iv)) break;
        d[i] = d[c];
        ids[i] = ids[c];
        i = c;
    }
    d[i] = dv;
    ids[i] = iv;
}

void pharos_heap_push(PharosHeap *h, float distance, int64_t id) {
    if (h->capacity <= 0 || distance != distance) return;  // NaN never ranks
    if (h->count < h->capacity) {
        int32_t i = h->count++;
        while (i > 0) {
            int32_t p = (i - 1) / 2;
            if (heap_worse(distance, id, h->distances[p], h->ids[p])) {
                h->distances[i] = h->distances[p];
                h->ids[i] = h->ids[p];
                i = p;
            } else {
                break;
            }
        }
        h->distances[i] = distance;
        h->ids[i] = id;
        return;
    }
    if (!heap_worse(h->distances[0], h->ids[0], distance, id)) return;
    h->distances[0] = distance;
    h->ids[0] = id;
    heap_sift_down(h, 0);
}

float pharos_heap_threshold(const PharosHeap *h) {
    return h->count < h->capacity ? INFINITY : h->distances[0];
}

/// Whether candidate `i` is marked in the skip mask (bit `base + i`); bits past the mask's
/// end are clear, never read.
static inline int skipped(PharosSkipMask skip, size_t i) {
    const size_t bit = skip.base + i;
    if (bit >= skip.bits) return 0;
    return (int)((skip.words[bit >> 6] >> (bit & 63)) & 1);
}

/// The same mask seen from candidate `i` on.
static inline PharosSkipMask skip_from(PharosSkipMask skip, size_t i) {
    skip.base += i;
    return skip;
}

void pharos_heap_push_many(PharosHeap *h, const float *distances, size_t n, const int64_t *ids,
                           int64_t first_id, PharosSkipMask skip) {
    float threshold = pharos_heap_threshold(h);
    for (size_t i = 0; i < n; i++) {
        float d = distances[i];
        if (d <= threshold && !skipped(skip, i)) {
            pharos_heap_push(h, d, ids ? ids[i] : first_id + (int64_t)i);
            threshold = pharos_heap_threshold(h);
        }
    }
}

static void heap_push_u16_scalar(PharosHeap *h, const uint16_t *sums, size_t n, float scale,
                                 float offset, int64_t first_id, PharosSkipMask skip) {
    float threshold = pharos_heap_threshold(h);
    for (size_t i = 0; i < n; i++) {
        const float d = (float)sums[i] * scale + offset;
        if (d <= threshold && !skipped(skip, i)) {
            pharos_heap_push(h, d, first_id + (int64_t)i);
            threshold = pharos_heap_threshold(h);
        }
    }
}

#if PHAROS_X86
/// The largest sum whose distance can still enter the heap, rounded up so the integer filter
/// never rejects a candidate the float comparison would keep.
static inline uint16_t heap_u16_bound(const PharosHeap *h, float inverse_scale, float offset) {
    const float threshold = pharos_heap_threshold(h);
    const float limit = (threshold - offset) * inverse_scale + 1.0f;
    if (!(limit >= 0)) return 0;
    return limit >= 65535.0f ? 65535 : (uint16_t)limit;
}

__attribute__((target("avx2")))
static void heap_push_u16_avx2(PharosHeap *h, const uint16_t *sums, size_t n, float scale,
                               float offset, int64_t first_id, PharosSkipMask skip) {
    const float inverse_scale = 1.0f / scale;
    uint16_t bound = heap_u16_bound(h, inverse_scale, offset);
    __m256i limit = _mm256_set1_epi16((short)bound);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(sums + i));
        const __m256i le = _mm256_cmpeq_epi16(_mm256_min_epu16(v, limit), v);
        unsigned mask = (unsigned)_mm256_movemask_epi8(le) & 0x55555555u;
        if (!mask) continue;
        while (mask) {
            const int bit = __builtin_ctz(mask);
            mask &= mask - 1;
            const size_t j = i + (size_t)(bit >> 1);
            const float d = (float)sums[j] * scale + offset;
            if (d <= pharos_heap_threshold(h) && !skipped(skip, j)) pharos_heap_push(h, d, first_id + (int64_t)j);
        }
        bound = heap_u16_bound(h, inverse_scale, offset);
        limit = _mm256_set1_epi16((short)bound);
    }
    heap_push_u16_scalar(h, sums + i, n - i, scale, offset, first_id + (int64_t)i, skip_from(skip, i));
}
#endif

void pharos_heap_push_u16(PharosHeap *h, const uint16_t *sums, size_t n, float scale,
                          float offset, int64_t first_id, PharosSkipMask skip) {
#if PHAROS_X86
    if (pharos_kernel_level() == 1) {
        heap_push_u16_avx2(h, sums, n, scale, offset, first_id, skip);
        return;
    }
#endif
    heap_push_u16_scalar(h, sums, n, scale, offset, first_id, skip);
}

void pharos_heap_sort(PharosHeap *h) {
    // Heap sort: repeatedly move the worst to the end.
    int32_t n = h->count;
    while (h->count > 1) {
        int32_t last = h->count - 1;
        float d = h->distances[0];
        int64_t id = h->ids[0];
        h->distances[0] = h->distances[last];
        h->ids[0] = h->ids[last];
        h->distances[last] = d;
        h->ids[last] = id;
        h->count = last;
        heap_sift_down(h, 0);
    }
    h->count = n;
}

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

static void fs4_scan_portable(const uint8_t *luts, size_t query_count, size_t m_padded,
                              const uint8_t *blocks, size_t block_count, uint16_t *sums) {
    const size_t block_bytes = pharos_fs4_block_bytes(m_padded);
    for (size_t b = 0; b < block_count; b++) {
        const uint8_t *block = blocks + b * block_bytes;
        for (size_t q = 0; q < query_count; q++) {
            const uint8_t *lut = luts + q * m_padded * 16;
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
__attribute__((target("avx2")))
static void fs4_scan_avx2(const uint8_t *luts, size_t query_count, size_t m_padded,
                          const uint8_t *blocks, size_t block_count, uint16_t *sums) {
    const size_t block_bytes = pharos_fs4_block_bytes(m_padded);
    const __m256i low_mask = _mm256_set1_epi8(0x0f);
    const size_t pairs = m_padded / 2;
    for (size_t b = 0; b < block_count; b++) {
        const uint8_t *block = blocks + b * block_bytes;
        for (size_t q = 0; q < query_count; q++) {
            const uint8_t *lut = luts + q * m_padded * 16;
            // Each 16-bit lane of accA holds (even byte) + 256 * (odd byte) summed with
            // wrap-around; accB holds the odd bytes alone. even = accA - (accB << 8).
            __m256i acc_a_lo = _mm256_setzero_si256(), acc_b_lo = _mm256_setzero_si256();
            __m256i acc_a_hi = _mm256_setzero_si256(), acc_b_hi = _mm256_setzero_si256();
            for (size_t p = 0; p < pairs; p++) {
                const __m256i codes = _mm256_loadu_si256((const __m256i *)(block + p * 32));
                const __m256i table = _mm256_loadu_si256((const __m256i *)(lut + p * 32));
                const __m256i lo = _mm256_and_si256(codes, low_mask);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(codes, 4), low_mask);
                const __m256i r_lo = _mm256_shuffle_epi8(table, lo);
                const __m256i r_hi = _mm256_shuffle_epi8(table, hi);
                acc_a_lo = _mm256_add_epi16(acc_a_lo, r_lo);
                acc_b_lo = _mm256_add_epi16(acc_b_lo, _mm256_srli_epi16(r_lo, 8));
                acc_a_hi = _mm256_add_epi16(acc_a_hi, r_hi);
                acc_b_hi = _mm256_add_epi16(acc_b_hi, _mm256_srli_epi16(r_hi, 8));
            }
            const __m256i even_lo = _mm256_sub_epi16(acc_a_lo, _mm256_slli_epi16(acc_b_lo, 8));
            const __m256i even_hi = _mm256_sub_epi16(acc_a_hi, _mm256_slli_epi16(acc_b_hi, 8));
            // Lane 0 summed even sub-quantizers, lane 1 odd ones: add the two lanes.
            const __m128i e_lo = _mm_add_epi16(_mm256_castsi256_si128(even_lo), _mm256_extracti128_si256(even_lo, 1));
            const __m128i o_lo = _mm_add_epi16(_mm256_castsi256_si128(acc_b_lo), _mm256_extracti128_si256(acc_b_lo, 1));
            const __m128i e_hi = _mm_add_epi16(_mm256_castsi256_si128(even_hi), _mm256_extracti128_si256(even_hi, 1));
            const __m128i o_hi = _mm_add_epi16(_mm256_castsi256_si128(acc_b_hi), _mm256_extracti128_si256(acc_b_hi, 1));
            uint16_t *out = sums + q * block_count * 32 + b * 32;
            _mm_storeu_si128((__m128i *)(out + 0), _mm_unpacklo_epi16(e_lo, o_lo));
            _mm_storeu_si128((__m128i *)(out + 8), _mm_unpackhi_epi16(e_lo, o_lo));
            _mm_storeu_si128((__m128i *)(out + 16), _mm_unpacklo_epi16(e_hi, o_hi));
            _mm_storeu_si128((__m128i *)(out + 24), _mm_unpackhi_epi16(e_hi, o_hi));
        }
    }
}
#endif

void pharos_fs4_scan(const uint8_t *luts, size_t query_count, size_t m_padded,
                     const uint8_t *blocks, size_t block_count, uint16_t *sums) {
#if PHAROS_X86
    if (pharos_kernel_level() == 1) {
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
    if (pharos_kernel_level() == 1) return quantize_luts_avx2(tables, table_count, m_count, m_padded, out, offsets);
#endif
    return quantize_luts_portable(tables, table_count, m_count, m_padded, out, offsets);
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
// Running per-lane minimum over blocks of 8 candidates: each lane keeps its first strict
// minimum and that candidate's index.
typedef struct {
    __m256 value;
    __m256i index;
    __m256i next;
} LaneArgmin;

__attribute__((target("avx2")))
static inline LaneArgmin lane_argmin_start(void) {
    LaneArgmin a = {_mm256_set1_ps(INFINITY), _mm256_set1_epi32(0), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)};
    return a;
}

__attribute__((target("avx2")))
static inline void lane_argmin_update(LaneArgmin *a, __m256 v) {
    const __m256 less = _mm256_cmp_ps(v, a->value, _CMP_LT_OQ);  // NaN never wins
    a->value = _mm256_blendv_ps(a->value, v, less);
    a->index = _mm256_blendv_epi8(a->index, a->next, _mm256_castps_si256(less));
    a->next = _mm256_add_epi32(a->next, _mm256_set1_epi32(8));
}

/// The first minimum over all lanes, as a scalar loop finds it: least value, then least index
/// (+infinity and index 0 when nothing compared).
__attribute__((target("avx2")))
static inline size_t lane_argmin_finish(const LaneArgmin *a, float *best_out) {
    float lanes[8];
    int32_t indices[8];
    _mm256_storeu_ps(lanes, a->value);
    _mm256_storeu_si256((__m256i *)indices, a->index);
    float b = INFINITY;
    size_t arg = 0;
    int found = 0;
    for (int l = 0; l < 8; l++) {
        if (lanes[l] < b || (found && lanes[l] == b && (size_t)indices[l] < arg)) {
            b = lanes[l];
            arg = (size_t)indices[l];
            found = 1;
        }
    }
    *best_out = b;
    return arg;
}
#endif

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
    if (pharos_kernel_level() == 1 && ksub % 8 == 0) {
        pq_encode_avx2(x, n, dimension, codebooks_t, norms, m_count, ksub, codes);
        return;
    }
#endif
    pq_encode_portable(x, n, dimension, codebooks_t, norms, m_count, ksub, codes);
}

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
    if (pharos_kernel_level() == 1) return sq8_distance_avx2(query, code, offset, scale, d, inner_product);
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
    if (pharos_kernel_level() == 1) return sq8_weighted_sum_avx2(weights, code, d);
#endif
    return sq8_weighted_sum_portable(weights, code, d);
}

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
    if (pharos_kernel_level() == 1) return argmin_sum_avx2(values, bias, n, best);
#endif
    return argmin_sum_portable(values, bias, n, best);
}

void pharos_lut_combine(const float *base, const float *values, float factor, size_t n, float *out) {
    if (base) {
        for (size_t i = 0; i < n; i++) out[i] = base[i] + factor * values[i];
    } else {
        for (size_t i = 0; i < n; i++) out[i] = factor * values[i];
    }
}

// MARK: - Exact distances and refine codes

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

// MARK: - CRC32C

static uint32_t crc_table[256];
static int crc_table_ready = 0;

static void crc_init_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
    __atomic_store_n(&crc_table_ready, 1, __ATOMIC_RELEASE);
}

static uint32_t crc32c_portable(uint32_t crc, const uint8_t *p, size_t n) {
    if (!__atomic_load_n(&crc_table_ready, __ATOMIC_ACQUIRE)) crc_init_table();
    crc = ~crc;
    while (n--) crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if PHAROS_X86
__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t c = ~crc & 0xffffffffu;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}
#endif

uint32_t pharos_crc32c(uint32_t crc, const void *data, size_t n) {
#if PHAROS_X86
    if (pharos_kernel_level() == 1) return crc32c_sse42(crc, (const uint8_t *)data, n);
#endif
    return crc32c_portable(crc, (const uint8_t *)data, n);
}

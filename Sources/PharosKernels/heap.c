// The bounded k-best result heap: every scan feeds it, so it sits apart from the scan kernels
// that produce distances.
#include "kernels_internal.h"

#include <math.h>

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
    if (bit < skip.bits && ((skip.words[bit >> 6] >> (bit & 63)) & 1)) return 1;
    const size_t other = skip.excluded_base + i;
    return other < skip.excluded_bits && ((skip.excluded[other >> 6] >> (other & 63)) & 1);
}

/// The same mask seen from candidate `i` on.
static inline PharosSkipMask skip_from(PharosSkipMask skip, size_t i) {
    skip.base += i;
    skip.excluded_base += i;
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
    if (pharos_internal_level() == 1) {
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

// Private to the PharosKernels target (not in include/, which is the public module header):
// what more than one kernel file needs, kept static inline; the only shared state is the
// dispatch level (`pharos_internal_*`, defined in dispatch.c).
#ifndef PHAROS_KERNELS_INTERNAL_H
#define PHAROS_KERNELS_INTERNAL_H
#include "PharosKernels.h"

#include <math.h>

#if defined(__x86_64__) || defined(__i386__)
#define PHAROS_X86 1
#include <immintrin.h>
#endif

// The kernel level (1 = AVX2 and SSE4.2, 0 = portable), inline in every dispatcher.
extern int pharos_internal_forced_portable;
extern int pharos_internal_detected_level;
int pharos_internal_detect_level(void);

static inline int pharos_internal_level(void) {
    if (pharos_internal_forced_portable) return 0;
    int level = __atomic_load_n(&pharos_internal_detected_level, __ATOMIC_RELAXED);
    return level >= 0 ? level : pharos_internal_detect_level();
}

#if PHAROS_X86
// Shared by the AVX2 PQ encoder and the AVX2 nearest-centroid search (distances.c).
//
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

#endif

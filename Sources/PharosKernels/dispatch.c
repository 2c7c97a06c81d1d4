// Run-time CPU dispatch: the one place that asks CPUID which kernel level every other file
// uses, so the choice (and forcing the portable path in tests) is made once for all of them.
#include "kernels_internal.h"

#if PHAROS_X86
#include <cpuid.h>
#endif

// MARK: - Run-time dispatch

// Read on every kernel call from every file (`pharos_internal_level`): a call into this file
// per dispatch cost a measurable share of a refine-heavy search once the kernels were split.
int pharos_internal_forced_portable = 0;
int pharos_internal_detected_level = -1;

static int detect_level(void) {
#if PHAROS_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("sse4.2")) return 1;
#endif
    return 0;
}

int pharos_internal_detect_level(void) {
    int level = detect_level();
    __atomic_store_n(&pharos_internal_detected_level, level, __ATOMIC_RELAXED);
    return level;
}

int pharos_kernel_level(void) { return pharos_internal_level(); }

void pharos_kernel_force_portable(int force) { pharos_internal_forced_portable = force; }

const char *pharos_kernel_level_name(void) { return pharos_kernel_level() == 1 ? "avx2" : "portable"; }

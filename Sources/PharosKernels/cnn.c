// Convolution kernels for the CNN forward pass (PharosDescriptors): depthwise convolution and
// the bias + ReLU6 epilogue of the GEMM-based convolutions. AVX2+FMA paths with a portable
// fallback, chosen at run time like the search kernels.
#include "PharosKernels.h"

#include <math.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static inline float relu6(float v) { return v < 0 ? 0 : (v > 6 ? 6 : v); }

// out[x] += w * src[x * stride] for x < n.
static void tap_portable(float *out, const float *src, float w, size_t n, size_t stride) {
    for (size_t x = 0; x < n; x++) out[x] += w * src[x * stride];
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma")))
static void tap_avx2(float *out, const float *src, float w, size_t n, size_t stride) {
    size_t x = 0;
    __m256 wv = _mm256_set1_ps(w);
    if (stride == 1) {
        for (; x + 8 <= n; x += 8)
            _mm256_storeu_ps(out + x, _mm256_fmadd_ps(wv, _mm256_loadu_ps(src + x), _mm256_loadu_ps(out + x)));
    } else if (stride == 2) {
        for (; x + 8 <= n; x += 8) {
            // Even lanes of 16 consecutive floats.
            __m256 a = _mm256_loadu_ps(src + 2 * x), b = _mm256_loadu_ps(src + 2 * x + 8);
            __m256 even = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
            even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(even), _MM_SHUFFLE(3, 1, 2, 0)));
            _mm256_storeu_ps(out + x, _mm256_fmadd_ps(wv, even, _mm256_loadu_ps(out + x)));
        }
    }
    for (; x < n; x++) out[x] = fmaf(w, src[x * stride], out[x]);
}
#endif

void pharos_depthwise_conv(const float *input, size_t channels, size_t height, size_t width,
                           const float *weights, const float *bias, size_t kernel, size_t stride,
                           size_t pad_top, size_t pad_left, size_t out_height, size_t out_width,
                           int apply_relu6, float *scratch, float *output) {
    size_t ph = (out_height - 1) * stride + kernel, pw = (out_width - 1) * stride + kernel;
    // A 16-float tail so the stride-2 vector loads stay inside the buffer.
    void (*tap)(float *, const float *, float, size_t, size_t) = tap_portable;
#if defined(__x86_64__)
    if (pharos_kernel_level() >= 1 && __builtin_cpu_supports("fma")) tap = tap_avx2;
#endif
    for (size_t c = 0; c < channels; c++) {
        const float *plane = input + c * height * width;
        memset(scratch, 0, (ph * pw + 16) * sizeof(float));
        for (size_t y = 0; y < height && y + pad_top < ph; y++) {
            size_t n = width + pad_left <= pw ? width : pw - pad_left;
            memcpy(scratch + (y + pad_top) * pw + pad_left, plane + y * width, n * sizeof(float));
        }
        const float *w = weights + c * kernel * kernel;
        float *out = output + c * out_height * out_width;
        for (size_t y = 0; y < out_height; y++) {
            float *row = out + y * out_width;
            for (size_t x = 0; x < out_width; x++) row[x] = bias[c];
            for (size_t ky = 0; ky < kernel; ky++) {
                const float *src = scratch + (y * stride + ky) * pw;
                for (size_t kx = 0; kx < kernel; kx++) tap(row, src + kx, w[ky * kernel + kx], out_width, stride);
            }
            if (apply_relu6) for (size_t x = 0; x < out_width; x++) row[x] = relu6(row[x]);
        }
    }
}

size_t pharos_depthwise_scratch(size_t kernel, size_t stride, size_t out_height, size_t out_width) {
    return ((out_height - 1) * stride + kernel) * ((out_width - 1) * stride + kernel) + 16;
}

void pharos_bias_activation(float *x, size_t channels, size_t plane, const float *bias, int apply_relu6) {
    for (size_t c = 0; c < channels; c++) {
        float *p = x + c * plane, b = bias[c];
        if (apply_relu6) {
            for (size_t i = 0; i < plane; i++) p[i] = relu6(p[i] + b);
        } else {
            for (size_t i = 0; i < plane; i++) p[i] += b;
        }
    }
}

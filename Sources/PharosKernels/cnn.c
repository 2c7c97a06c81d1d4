// Convolution kernels for the CNN forward pass (PharosDescriptors): depthwise convolution and
// the stem's dense convolution, and the bias + ReLU6 epilogue of the GEMM-based convolutions.
// AVX2 paths chosen at run time like the search kernels, bit-identical to the portable fallback
// (the same order of operations, no fused multiply-adds: measured, FMA gains nothing in the
// depthwise kernel, which is bound by loads), so tests compare the two exactly. The 1x1 GEMMs
// are OpenBLAS's and round as its kernel for the CPU does.
#include "PharosKernels.h"

#include <math.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

// The depthwise convolution reads its zero-padded input split into `stride` column phases:
// phase p holds the padded columns p, p + stride, p + 2 * stride, ..., so that every tap of
// every output row is a contiguous run of one phase (a stride-2 tap needs no shuffles) and each
// output accumulates all its taps in a register before one store (the earlier kernel swept a
// whole row once per tap, a load and a store for every multiply-add).
typedef struct {
    const float *data;
    size_t rows;   // padded rows: (out_height - 1) * stride + kernel
    size_t width;  // columns per phase: out_width + (kernel - 1) / stride + 8
} DepthwisePhases;

// 7 columns beyond the last one a tap reads, zero, so the SIMD path can compute a partial last
// step of 8 outputs without reading past the phase.
static size_t phase_width(size_t kernel, size_t stride, size_t out_width) {
    return out_width + (kernel - 1) / stride + 1 + 7;
}

#if defined(__x86_64__)
// Splits a padded row into its even and odd columns (`n` pairs).
__attribute__((target("avx2")))
static void deinterleave_avx2(const float *row, size_t n, float *even, float *odd) {
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 a = _mm256_loadu_ps(row + 2 * j), b = _mm256_loadu_ps(row + 2 * j + 8);
        __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)), o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
        _mm256_storeu_ps(even + j, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0))));
        _mm256_storeu_ps(odd + j, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0))));
    }
    for (; j < n; j++) { even[j] = row[2 * j]; odd[j] = row[2 * j + 1]; }
}
#endif

static inline float relu6(float v) { return v < 0 ? 0 : (v > 6 ? 6 : v); }

// The previous layer's epilogue (bias, then ReLU6 or identity), applied while the input is
// split instead of in a pass of its own over a map that is the network's largest.
typedef struct {
    int enabled;
    float bias;
    int relu6;
} InputActivation;

// dst[i] = the activated src[i], or a copy. Element-wise and exactly rounded, so any
// vectorization the compiler picks gives the same values.
static void copy_activated(float *dst, const float *src, size_t n, InputActivation act) {
    if (!act.enabled) { memcpy(dst, src, n * sizeof(float)); return; }
    if (act.relu6) { for (size_t i = 0; i < n; i++) dst[i] = relu6(src[i] + act.bias); }
    else { for (size_t i = 0; i < n; i++) dst[i] = src[i] + act.bias; }
}

static DepthwisePhases split_phases(const float *plane, size_t height, size_t width, size_t kernel, size_t stride,
                                    size_t pad_top, size_t pad_left, size_t out_height, size_t out_width,
                                    InputActivation act, float *scratch) {
    DepthwisePhases ph = {scratch, (out_height - 1) * stride + kernel, phase_width(kernel, stride, out_width)};
#if defined(__x86_64__)
    if (stride == 2 && pharos_kernel_level() >= 1) {
        // Each padded row once into the tail of the scratch, then split with shuffles.
        float *padded = scratch + 2 * ph.rows * ph.width;
        size_t padded_width = 2 * ph.width;
        for (size_t r = 0; r < ph.rows; r++) {
            float *even = scratch + r * ph.width, *odd = scratch + (ph.rows + r) * ph.width;
            if (r < pad_top || r - pad_top >= height) {
                memset(even, 0, ph.width * sizeof(float));
                memset(odd, 0, ph.width * sizeof(float));
                continue;
            }
            size_t n = width < padded_width - pad_left ? width : padded_width - pad_left;
            memset(padded, 0, pad_left * sizeof(float));
            copy_activated(padded + pad_left, plane + (r - pad_top) * width, n, act);
            memset(padded + pad_left + n, 0, (padded_width - pad_left - n) * sizeof(float));
            deinterleave_avx2(padded, ph.width, even, odd);
        }
        return ph;
    }
#endif
    for (size_t p = 0; p < stride; p++) {
        for (size_t r = 0; r < ph.rows; r++) {
            float *dst = scratch + (p * ph.rows + r) * ph.width;
            if (r < pad_top || r - pad_top >= height) { memset(dst, 0, ph.width * sizeof(float)); continue; }
            const float *src = plane + (r - pad_top) * width;
            // Phase columns j whose padded column j * stride + p falls inside the input row.
            size_t first = pad_left > p ? (pad_left - p + stride - 1) / stride : 0;
            size_t end = (width + pad_left > p) ? (width + pad_left - p + stride - 1) / stride : 0;
            if (end > ph.width) end = ph.width;
            if (first > end) first = end;
            memset(dst, 0, first * sizeof(float));
            const float *from = src + (first * stride + p - pad_left);
            if (stride == 1) copy_activated(dst + first, from, end - first, act);
            else if (!act.enabled) for (size_t j = first; j < end; j++) dst[j] = from[(j - first) * stride];
            else for (size_t j = first; j < end; j++) {
                float v = from[(j - first) * stride] + act.bias;
                dst[j] = act.relu6 ? relu6(v) : v;
            }
            memset(dst + end, 0, (ph.width - end) * sizeof(float));
        }
    }
    return ph;
}

// One channel, portable: the same phases and the same order of taps as the SIMD path, a row
// swept once per tap (contiguous, so the compiler vectorizes it).
static void depthwise_channel_portable(DepthwisePhases ph, const float *w, float bias, size_t kernel, size_t stride,
                                       size_t out_height, size_t out_width, int apply_relu6, float *out) {
    for (size_t y = 0; y < out_height; y++) {
        float *row = out + y * out_width;
        for (size_t x = 0; x < out_width; x++) row[x] = bias;
        for (size_t ky = 0; ky < kernel; ky++) {
            for (size_t kx = 0; kx < kernel; kx++) {
                const float *src = ph.data + ((kx % stride) * ph.rows + y * stride + ky) * ph.width + kx / stride;
                float wv = w[ky * kernel + kx];
                for (size_t x = 0; x < out_width; x++) row[x] += wv * src[x];
            }
        }
        if (apply_relu6) for (size_t x = 0; x < out_width; x++) row[x] = relu6(row[x]);
    }
}

#if defined(__x86_64__)
// ReLU6 exactly as `relu6`: max and min return their second operand on NaN and on equal
// operands, so with `v` second a NaN stays NaN and -0.0 stays -0.0, as in the portable path.
__attribute__((target("avx2")))
static inline __m256 relu6_avx2(__m256 v) {
    return _mm256_min_ps(_mm256_set1_ps(6.0f), _mm256_max_ps(_mm256_setzero_ps(), v));
}

// One channel, AVX2 (multiply then add), for a kernel size and stride known at compile time (so the taps
// unroll): 16 outputs per step in two accumulators, then 8, then one at a time.
#define DEPTHWISE_AVX2(K, S)                                                                                   \
__attribute__((target("avx2")))                                                                                 \
static void depthwise_channel_avx2_##K##_##S(DepthwisePhases ph, const float *w, float bias, size_t out_height, \
                                             size_t out_width, int apply_relu6, float *out) {                 \
    for (size_t y = 0; y < out_height; y++) {                                                                  \
        float *row = out + y * out_width;                                                                      \
        const float *base = ph.data + y * S * ph.width;                                                        \
        size_t x = 0;                                                                                          \
        for (; x + 16 <= out_width; x += 16) {                                                                 \
            __m256 a0 = _mm256_set1_ps(bias), a1 = a0;                                                         \
            for (size_t ky = 0; ky < K; ky++) {                                                                \
                for (size_t kx = 0; kx < K; kx++) {                                                            \
                    const float *src = base + ((kx % S) * ph.rows + ky) * ph.width + x + kx / S;               \
                    __m256 wv = _mm256_broadcast_ss(w + ky * K + kx);                                          \
                    a0 = _mm256_add_ps(a0, _mm256_mul_ps(wv, _mm256_loadu_ps(src)));                           \
                    a1 = _mm256_add_ps(a1, _mm256_mul_ps(wv, _mm256_loadu_ps(src + 8)));                       \
                }                                                                                              \
            }                                                                                                  \
            if (apply_relu6) {                                                                                 \
                a0 = relu6_avx2(a0);                                                                            \
                a1 = relu6_avx2(a1);                                                                            \
            }                                                                                                  \
            _mm256_storeu_ps(row + x, a0);                                                                     \
            _mm256_storeu_ps(row + x + 8, a1);                                                                 \
        }                                                                                                      \
        for (; x < out_width; x += 8) {                                                                        \
            /* 8 outputs at a time; the last 1-7 computed on all 8 lanes (the phases have 7       */           \
            /* columns of zeros to spare) and only the valid ones stored.                          */          \
            __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(out_width - x)),                         \
                                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));                      \
            __m256 a0 = _mm256_set1_ps(bias);                                                                  \
            for (size_t ky = 0; ky < K; ky++)                                                                  \
                for (size_t kx = 0; kx < K; kx++)                                                              \
                    a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_broadcast_ss(w + ky * K + kx),                 \
                                         _mm256_loadu_ps(base + ((kx % S) * ph.rows + ky) * ph.width + x + kx / S))); \
            if (apply_relu6) a0 = relu6_avx2(a0);                                                            \
            _mm256_maskstore_ps(row + x, mask, a0);                                                            \
        }                                                                                                      \
    }                                                                                                          \
}
DEPTHWISE_AVX2(3, 1)
DEPTHWISE_AVX2(3, 2)
DEPTHWISE_AVX2(5, 1)
DEPTHWISE_AVX2(5, 2)
#undef DEPTHWISE_AVX2
#endif

void pharos_depthwise_conv(const float *input, size_t channels, size_t height, size_t width,
                           const float *weights, const float *bias, size_t kernel, size_t stride,
                           size_t pad_top, size_t pad_left, size_t out_height, size_t out_width,
                           int apply_relu6, const float *input_bias, int input_relu6, float *scratch, float *output) {
    void (*fast)(DepthwisePhases, const float *, float, size_t, size_t, int, float *) = NULL;
#if defined(__x86_64__)
    if (pharos_kernel_level() >= 1) {
        if (kernel == 3 && stride == 1) fast = depthwise_channel_avx2_3_1;
        else if (kernel == 3 && stride == 2) fast = depthwise_channel_avx2_3_2;
        else if (kernel == 5 && stride == 1) fast = depthwise_channel_avx2_5_1;
        else if (kernel == 5 && stride == 2) fast = depthwise_channel_avx2_5_2;
    }
#endif
    for (size_t c = 0; c < channels; c++) {
        InputActivation act = {input_bias != NULL, input_bias ? input_bias[c] : 0.0f, input_relu6};
        DepthwisePhases ph = split_phases(input + c * height * width, height, width, kernel, stride, pad_top, pad_left,
                                          out_height, out_width, act, scratch);
        const float *w = weights + c * kernel * kernel;
        float *out = output + c * out_height * out_width;
        if (fast) fast(ph, w, bias[c], out_height, out_width, apply_relu6, out);
        else depthwise_channel_portable(ph, w, bias[c], kernel, stride, out_height, out_width, apply_relu6, out);
    }
}

// MARK: - Dense convolution of a few input channels (the stem)

// Output channels o0..o0+7 of one output row, portable: each output's sum runs over
// (channel, ky, kx) in order from the bias, as in the SIMD path.
static void dense_rows_portable(const DepthwisePhases *phases, size_t in_channels, const float *w, const float *bias,
                                size_t o, size_t kernel, size_t stride, size_t y, size_t out_width, int apply_relu6, float *row) {
    for (size_t x = 0; x < out_width; x++) row[x] = bias[o];
    for (size_t c = 0; c < in_channels; c++) {
        DepthwisePhases ph = phases[c];
        for (size_t ky = 0; ky < kernel; ky++) {
            for (size_t kx = 0; kx < kernel; kx++) {
                const float *src = ph.data + ((kx % stride) * ph.rows + y * stride + ky) * ph.width + kx / stride;
                float wv = w[((o * in_channels + c) * kernel + ky) * kernel + kx];
                for (size_t x = 0; x < out_width; x++) row[x] += wv * src[x];
            }
        }
    }
    if (apply_relu6) for (size_t x = 0; x < out_width; x++) row[x] = relu6(row[x]);
}

#if defined(__x86_64__)
// 8 output channels x 8 pixels per step, one accumulator per channel: each input vector is
// loaded once for the 8 channels.
__attribute__((target("avx2")))
static void dense_rows_avx2_3_2(const DepthwisePhases *phases, size_t in_channels, const float *w, const float *bias,
                                size_t o0, size_t y, size_t out_height, size_t out_width, int apply_relu6, float *output) {
    enum { K = 3, S = 2 };

    for (size_t x = 0; x < out_width; x += 8) {
        __m256 acc[8];
        for (size_t j = 0; j < 8; j++) acc[j] = _mm256_set1_ps(bias[o0 + j]);
        for (size_t c = 0; c < in_channels; c++) {
            const float *base = phases[c].data + y * S * phases[c].width;
            for (size_t ky = 0; ky < K; ky++) {
                for (size_t kx = 0; kx < K; kx++) {
                    __m256 v = _mm256_loadu_ps(base + ((kx % S) * phases[c].rows + ky) * phases[c].width + x + kx / S);
                    const float *wk = w + (o0 * in_channels + c) * K * K + ky * K + kx;
                    for (size_t j = 0; j < 8; j++)
                        acc[j] = _mm256_add_ps(acc[j], _mm256_mul_ps(_mm256_broadcast_ss(wk + j * in_channels * K * K), v));
                }
            }
        }
        __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(out_width - x)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        for (size_t j = 0; j < 8; j++) {
            __m256 a = apply_relu6 ? relu6_avx2(acc[j]) : acc[j];
            _mm256_maskstore_ps(output + ((o0 + j) * out_height + y) * out_width + x, mask, a);
        }
    }
}
#endif

void pharos_dense_conv(const float *input, size_t in_channels, size_t height, size_t width,
                       const float *weights, const float *bias, size_t out_channels, size_t kernel, size_t stride,
                       size_t pad_top, size_t pad_left, size_t out_height, size_t out_width,
                       int apply_relu6, float *scratch, float *output) {
    DepthwisePhases phases[PHAROS_DENSE_CONV_MAX_INPUTS];
    if (in_channels > PHAROS_DENSE_CONV_MAX_INPUTS) return;   // the caller checks; never reached
    size_t per_channel = pharos_depthwise_scratch(kernel, stride, out_height, out_width);
    InputActivation none = {0, 0.0f, 0};
    for (size_t c = 0; c < in_channels; c++)
        phases[c] = split_phases(input + c * height * width, height, width, kernel, stride, pad_top, pad_left,
                                 out_height, out_width, none, scratch + c * per_channel);
    size_t o = 0;
#if defined(__x86_64__)
    if (pharos_kernel_level() >= 1 && kernel == 3 && stride == 2) {
        for (; o + 8 <= out_channels; o += 8)
            for (size_t y = 0; y < out_height; y++)
                dense_rows_avx2_3_2(phases, in_channels, weights, bias, o, y, out_height, out_width, apply_relu6, output);
    }
#endif
    for (; o < out_channels; o++)
        for (size_t y = 0; y < out_height; y++)
            dense_rows_portable(phases, in_channels, weights, bias, o, kernel, stride, y, out_width, apply_relu6,
                                output + (o * out_height + y) * out_width);
}

size_t pharos_dense_conv_scratch(size_t in_channels, size_t kernel, size_t stride, size_t out_height, size_t out_width) {
    return in_channels * pharos_depthwise_scratch(kernel, stride, out_height, out_width);
}

size_t pharos_depthwise_scratch(size_t kernel, size_t stride, size_t out_height, size_t out_width) {
    size_t width = phase_width(kernel, stride, out_width);
    // The phases, then (stride 2) one padded row of 2 x width to split from.
    return stride * ((out_height - 1) * stride + kernel) * width + (stride == 2 ? 2 * width : 0);
}

void pharos_bias_activation(float *x, size_t channels, size_t plane, const float *bias, int apply_relu6, const float *skip) {
    for (size_t c = 0; c < channels; c++) {
        float *p = x + c * plane, b = bias[c];
        if (skip) {
            // (x + bias) + skip: the order of the separate passes this replaces.
            const float *s = skip + c * plane;
            if (apply_relu6) { for (size_t i = 0; i < plane; i++) p[i] = relu6(p[i] + b + s[i]); }
            else { for (size_t i = 0; i < plane; i++) p[i] = p[i] + b + s[i]; }
        } else if (apply_relu6) {
            for (size_t i = 0; i < plane; i++) p[i] = relu6(p[i] + b);
        } else {
            for (size_t i = 0; i < plane; i++) p[i] += b;
        }
    }
}

void pharos_keep_large_blocks_in_heap(void) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 32 << 20);   // glibc's largest allowed value
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

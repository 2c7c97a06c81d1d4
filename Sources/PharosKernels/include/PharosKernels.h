#ifndef PHAROS_KERNELS_H
#define PHAROS_KERNELS_H
// Hot loops of the index engine: product-quantizer scans, the 4-bit fast-scan kernel, refine
// distances, a bounded result heap and CRC32C. Each SIMD routine has a portable fallback chosen
// at run time from CPUID, so one binary runs on any x86-64 (and any other architecture).
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Which implementation the run-time dispatch picked: 0 portable, 1 AVX2.
int pharos_kernel_level(void);
/// Forces the portable kernels (tests compare both paths). 0 = auto, 1 = force portable.
void pharos_kernel_force_portable(int force);
/// A human-readable name of the active kernel level ("avx2" or "portable").
const char *pharos_kernel_level_name(void);

// MARK: - Bounded heap of the k best (smallest) distances

/// A max-heap over (distance, id) keeping the k smallest pairs. Ties on distance are broken by
/// the smaller id, so the kept set never depends on insertion order (thread-count invariance).
typedef struct {
    float *distances;
    int64_t *ids;
    int32_t capacity;
    int32_t count;
} PharosHeap;

/// Offers one candidate; kept if the heap is not full or it beats the current worst.
void pharos_heap_push(PharosHeap *heap, float distance, int64_t id);
/// Candidates to pass over: candidate `i` is skipped when bit `base + i` of `words` (deleted
/// entries) or bit `excluded_base + i` of `excluded` (entries of buckets the search does not
/// answer for) is set. Each bitmap holds its count of bits (may be NULL with 0 bits); a bit at
/// or past the count is clear and never read, so a mask shorter than the candidates is safe.
/// Only candidates that would enter the heap are tested, so a mask costs next to nothing.
typedef struct {
    const uint64_t *words;
    size_t bits;
    size_t base;
    const uint64_t *excluded;
    size_t excluded_bits;
    size_t excluded_base;
} PharosSkipMask;

/// Offers `n` candidates with ids `first_id + i` (or `ids[i]` when `ids` is not NULL),
/// passing over those set in `skip`.
void pharos_heap_push_many(PharosHeap *heap, const float *distances, size_t n,
                           const int64_t *ids, int64_t first_id, PharosSkipMask skip);
/// Offers `n` fast-scan sums as distances `sums[i] * scale + offset` with ids
/// `first_id + i`. Sums are compared in the integer domain first, so most are rejected cheaply.
/// `skip` as for `pharos_heap_push_many`.
void pharos_heap_push_u16(PharosHeap *heap, const uint16_t *sums, size_t n, float scale,
                          float offset, int64_t first_id, PharosSkipMask skip);
/// The worst kept distance, or +infinity while the heap is not full.
float pharos_heap_threshold(const PharosHeap *heap);
/// Sorts the heap contents ascending by (distance, id) in place; the heap is unusable after.
void pharos_heap_sort(PharosHeap *heap);

// MARK: - 8-bit product quantizer (asymmetric distance computation)

/// distances[i] = bias + sum_m lut[m * 256 + codes[i * m_count + m]].
void pharos_pq8_distances(const float *lut, size_t m_count, const uint8_t *codes, size_t n,
                          float bias, float *distances);

// MARK: - 4-bit fast scan

/// Bytes of one fast-scan block: 32 vectors, `m_padded` (even) sub-quantizers of 4 bits.
static inline size_t pharos_fs4_block_bytes(size_t m_padded) { return m_padded * 16; }

/// Packs `n` codes (one byte per sub-quantizer, values 0..15, `m_count` per vector) into
/// ceil(n/32) fast-scan blocks. Layout of a block: for each pair of sub-quantizers (2p, 2p+1),
/// 16 bytes for 2p then 16 bytes for 2p+1; byte j holds vector j in the low nibble and vector
/// j + 16 in the high nibble. Padding vectors and the padding sub-quantizer are zero.
void pharos_fs4_pack(const uint8_t *codes, size_t n, size_t m_count, size_t m_padded,
                     uint8_t *blocks);
/// Reads back the code of vector `i` for sub-quantizer `m` from packed blocks.
uint8_t pharos_fs4_code(const uint8_t *blocks, size_t m_padded, size_t i, size_t m);

/// Scans `block_count` blocks for `query_count` queries. `luts[q]` points to query q's
/// `m_padded` x 16 quantized table entries (several queries may share one table). Writes per
/// query `block_count * 32` sums (query q at `sums + q * block_count * 32`).
void pharos_fs4_scan(const uint8_t *const *luts, size_t query_count, size_t m_padded,
                     const uint8_t *blocks, size_t block_count, uint16_t *sums);

/// Quantizes `table_count` float look-up tables (each `m_count` x 16, contiguous) to bytes
/// with one common scale, as one query's tables over all its probed lists must be comparable.
/// Entry = round((value - min of its row) * scale); rows of the padding sub-quantizer are zero.
/// `offsets[t]` comes in as table t's bias and leaves as bias + sum of its row minima, so that
/// distance ~= sum * (1 / scale) + offset. Returns 1 / scale.
float pharos_fs4_quantize_luts(const float *tables, size_t table_count, size_t m_count,
                               size_t m_padded, uint8_t *out, float *offsets);

/// `table[m * ksub + j] = <query_m, codebooks_mj>`: one query's inner products with every
/// codeword of a product quantizer. `codebooks_t` holds, per subspace, the codebook transposed:
/// `dsub` rows of `ksub` values (`codebooks_t[(m * dsub + t) * ksub + j]` = component t of codeword j).
void pharos_pq_inner_product_table(const float *query, const float *codebooks_t, size_t m_count,
                                   size_t ksub, size_t dsub, float *table);

/// Encodes `n` vectors with a product quantizer: per subspace, the codeword of least squared
/// L2 distance (ties: lowest index). `norms[m * ksub + j]` = |codeword_mj|^2; `ksub` <= 256.
void pharos_pq_encode(const float *x, size_t n, size_t dimension, const float *codebooks_t,
                      const float *norms, size_t m_count, size_t ksub, uint8_t *codes);

/// Distance between a float query and an SQ8 code (decoded as offset + code * scale) without
/// materialising the decoded vector: squared L2, or the negated inner product when
/// `inner_product` is non-zero. AVX2 and portable paths give bit-identical results.
float pharos_sq8_distance(const float *query, const uint8_t *code, const float *offset,
                          const float *scale, size_t d, int inner_product);

/// sum_j weights[j] * code[j] over an SQ8 code, in the same 8-lane order on every kernel level.
/// With weights = query * scale, <query, decoded> = <query, offset> + this sum: the inner
/// product costs one multiply-add per component once the weights are prepared per query.
float pharos_sq8_weighted_sum(const float *weights, const uint8_t *code, size_t d);

/// The first index j of the least values[j] + bias[j] (NaN never wins), and that sum in *best
/// (+infinity, index 0, when nothing compares). Nearest-centroid search after a BLAS product.
size_t pharos_argmin_sum(const float *values, const float *bias, size_t n, float *best);

/// out[i] = (base ? base[i] : 0) + factor * values[i] for i < n.
void pharos_lut_combine(const float *base, const float *values, float factor, size_t n, float *out);

// MARK: - Refine codes and exact distances

/// Squared L2 distance between float vectors.
float pharos_l2sq(const float *a, const float *b, size_t d);
/// Inner product of float vectors.
float pharos_dot(const float *a, const float *b, size_t d);
/// Asks the CPU to start loading `bytes` bytes from `address` into cache (a hint: no fault,
/// no effect on results), so that the next candidate's code arrives while this one is scored.
void pharos_prefetch(const void *address, size_t bytes);

/// Exact integer inner products of one int8 vector with `n` int8 rows of `d` (row-major):
/// `out[i] = sum_j query[j] * rows[i * d + j]` in int32, the same at every kernel level.
/// (`d` at most 65,536: the sums cannot overflow.)
void pharos_i8_dots(const int8_t *query, const int8_t *rows, size_t n, size_t d, int32_t *out);
/// Decodes an 8-bit scalar-quantized vector: x[j] = offset[j] + code[j] * scale[j], where
/// scale = range / 255 and offset = minimum + scale / 2 (the centre of the code's bucket).
void pharos_sq8_decode(const uint8_t *code, const float *offset, const float *scale, size_t d, float *out);
/// Encodes one vector with an 8-bit scalar quantizer (values clamped to the trained range).
void pharos_sq8_encode(const float *x, const float *vmin, const float *step, size_t d, uint8_t *code);
/// Converts float32 to IEEE half precision (round to nearest even).
void pharos_f32_to_f16(const float *x, size_t n, uint16_t *out);
/// Converts IEEE half precision to float32.
void pharos_f16_to_f32(const uint16_t *x, size_t n, float *out);

// MARK: - CNN forward pass

/// Depthwise convolution with TensorFlow-SAME padding (`pad_top`, `pad_left`; the bottom and
/// right padding follow from the output size), one `kernel x kernel` filter per channel plus a
/// bias, optionally ReLU6. `input` is channels x height x width, `output` channels x
/// out_height x out_width; `scratch` holds `pharos_depthwise_scratch(...)` floats. With
/// `input_bias` (one per channel), each input value is first `x + input_bias[c]`, then ReLU6
/// when `input_relu6`: the previous convolution's epilogue, fused (padding stays zero).
void pharos_depthwise_conv(const float *input, size_t channels, size_t height, size_t width,
                           const float *weights, const float *bias, size_t kernel, size_t stride,
                           size_t pad_top, size_t pad_left, size_t out_height, size_t out_width,
                           int apply_relu6, const float *input_bias, int input_relu6, float *scratch, float *output);
/// Floats of scratch `pharos_depthwise_conv` needs.
size_t pharos_depthwise_scratch(size_t kernel, size_t stride, size_t out_height, size_t out_width);
/// Serves blocks up to 32 MB (glibc's largest mmap threshold) from the heap and keeps freed
/// heap memory instead of trimming it, so the forward pass's activation maps reuse pages
/// rather than faulting fresh ones in on every image. No-op without glibc.
void pharos_keep_large_blocks_in_heap(void);
/// Most input channels `pharos_dense_conv` takes.
#define PHAROS_DENSE_CONV_MAX_INPUTS 16
/// A dense convolution of a few input channels (the network's stem: 3 -> 32, 3x3, stride 2),
/// computed directly instead of through im2col and a GEMM whose inner dimension would be 27:
/// `weights` is out_channels x in_channels x kernel x kernel, then bias and optionally ReLU6,
/// padding as `pharos_depthwise_conv`. `in_channels` at most `PHAROS_DENSE_CONV_MAX_INPUTS`;
/// `scratch` holds `pharos_dense_conv_scratch(...)` floats.
void pharos_dense_conv(const float *input, size_t in_channels, size_t height, size_t width,
                       const float *weights, const float *bias, size_t out_channels, size_t kernel, size_t stride,
                       size_t pad_top, size_t pad_left, size_t out_height, size_t out_width,
                       int apply_relu6, float *scratch, float *output);
/// Floats of scratch `pharos_dense_conv` needs.
size_t pharos_dense_conv_scratch(size_t in_channels, size_t kernel, size_t stride, size_t out_height, size_t out_width);
/// `x[c][i] = act(x[c][i] + bias[c])` over channels x plane values; act is ReLU6 or identity.
/// With `skip` (the same shape; may be NULL), `act((x + bias) + skip)`: a residual sum fused.
void pharos_bias_activation(float *x, size_t channels, size_t plane, const float *bias, int apply_relu6, const float *skip);

// MARK: - Checksums

/// CRC32C (Castagnoli), continuing from `crc` (start with 0).
uint32_t pharos_crc32c(uint32_t crc, const void *data, size_t n);

// MARK: - Atomic flags (Swift has no atomics over raw memory without extra packages)

/// Reads a flag byte with acquire ordering.
static inline uint8_t pharos_flag_load(const uint8_t *flag) { return __atomic_load_n(flag, __ATOMIC_ACQUIRE); }
/// Sets a flag byte with release ordering.
static inline void pharos_flag_store(uint8_t *flag, uint8_t value) { __atomic_store_n(flag, value, __ATOMIC_RELEASE); }
/// Reads a published pointer slot with acquire ordering (NULL while unpublished).
static inline void *pharos_slot_load(void *const *slot) { return __atomic_load_n(slot, __ATOMIC_ACQUIRE); }
/// Publishes `value` into an empty slot; returns 0 (and changes nothing) if another thread
/// published first.
static inline int pharos_slot_publish(void **slot, void *value) {
    void *expected = 0;
    return __atomic_compare_exchange_n(slot, &expected, value, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

#ifdef __cplusplus
}
#endif
#endif

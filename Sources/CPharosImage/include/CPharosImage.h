#ifndef PHAROS_IMAGE_H
#define PHAROS_IMAGE_H
// Thin C wrappers over libjpeg-turbo and libpng: libjpeg reports errors by longjmp, which Swift
// cannot catch, so decoding runs here and comes back as a status and a message.
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// A decoded image: 8-bit RGB, interleaved, row after row; `pixels` is malloc'd.
typedef struct {
    int width;
    int height;
    uint8_t *pixels;
} PharosDecodedImage;

/// Decodes a JPEG held in memory. When `minimum_side` > 0, libjpeg's DCT scaling (1/2, 1/4,
/// 1/8) shrinks the image as far as it can while the longer side stays >= `minimum_side`.
/// Returns 0 on success; otherwise fills `error` and returns -1.
int pharos_decode_jpeg(const uint8_t *data, size_t size, int minimum_side, PharosDecodedImage *out,
                       char *error, size_t error_size);

/// Decodes a PNG held in memory (any bit depth, palette, gray; alpha is composited onto white).
int pharos_decode_png(const uint8_t *data, size_t size, PharosDecodedImage *out, char *error, size_t error_size);

/// Encodes 8-bit interleaved RGB as a baseline JPEG of `quality` (1...100) into a malloc'd
/// buffer (`*out`, `*out_size`; free with `free`). Returns 0, or -1 with `error` filled.
int pharos_encode_jpeg(const uint8_t *pixels, int width, int height, int quality, uint8_t **out, size_t *out_size,
                       char *error, size_t error_size);

/// Frees a buffer returned by `pharos_encode_jpeg`.
void pharos_encoded_free(uint8_t *buffer);

/// Frees what a decoder returned.
void pharos_decoded_image_free(PharosDecodedImage *image);

#ifdef __cplusplus
}
#endif
#endif

#include "CPharosImage.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

// Refuse images whose decoded size would be absurd before allocating for them.
#define PHAROS_MAX_PIXELS ((size_t)1 << 28)

typedef struct {
    struct jpeg_error_mgr base;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
    // The first warning saying the data ended early (a truncated file): libjpeg pads the rest
    // of the image with grey and carries on, which would describe a half-grey photo silently.
    int truncated;
    char truncation[JMSG_LENGTH_MAX];
} JpegErrors;

static void jpeg_error_exit(j_common_ptr cinfo) {
    JpegErrors *errors = (JpegErrors *)cinfo->err;
    errors->base.format_message(cinfo, errors->message);
    longjmp(errors->jump, 1);
}

static void jpeg_quiet(j_common_ptr cinfo, int level) { (void)cinfo; (void)level; }

// Warnings are not printed; those that mean the data ended before the image did are kept.
static void jpeg_note_truncation(j_common_ptr cinfo, int level) {
    JpegErrors *errors = (JpegErrors *)cinfo->err;
    if (level >= 0 || errors->truncated) return;
    int code = cinfo->err->msg_code;
    if (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER) {
        errors->truncated = 1;
        errors->base.format_message(cinfo, errors->truncation);
    }
}

int pharos_decode_jpeg(const uint8_t *data, size_t size, int minimum_side, PharosDecodedImage *out,
                       char *error, size_t error_size) {
    struct jpeg_decompress_struct cinfo;
    JpegErrors errors;
    volatile uint8_t *pixels = NULL;
    memset(out, 0, sizeof *out);
    cinfo.err = jpeg_std_error(&errors.base);
    errors.base.error_exit = jpeg_error_exit;
    errors.base.emit_message = jpeg_note_truncation;   // warnings are not fatal, but a truncated file is
    errors.truncated = 0;
    if (setjmp(errors.jump)) {
        snprintf(error, error_size, "JPEG: %s", errors.message);
        jpeg_destroy_decompress(&cinfo);
        free((void *)pixels);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        snprintf(error, error_size, "JPEG: CMYK/YCCK colour is not supported");
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    cinfo.out_color_space = JCS_RGB;
    if (minimum_side > 0) {
        unsigned longer = cinfo.image_width > cinfo.image_height ? cinfo.image_width : cinfo.image_height;
        unsigned denom = 1;
        while (denom < 8 && (longer + 2 * denom - 1) / (2 * denom) >= (unsigned)minimum_side) denom *= 2;
        cinfo.scale_num = 1;
        cinfo.scale_denom = denom;
    }
    jpeg_start_decompress(&cinfo);
    size_t w = cinfo.output_width, h = cinfo.output_height;
    if (w == 0 || h == 0 || w * h > PHAROS_MAX_PIXELS || cinfo.output_components != 3) {
        snprintf(error, error_size, "JPEG: %zux%zu with %d components is out of range (at most 2^28 = 268435456 pixels, 3 components)",
                 w, h, cinfo.output_components);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    pixels = malloc(w * h * 3);
    if (!pixels) {
        snprintf(error, error_size, "JPEG: out of memory for %zux%zu", w, h);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.output_scanline * w * 3);
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    if (errors.truncated) {
        snprintf(error, error_size, "JPEG: truncated: %s", errors.truncation);
        jpeg_destroy_decompress(&cinfo);
        free((void *)pixels);
        return -1;
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    out->width = (int)w;
    out->height = (int)h;
    out->pixels = (uint8_t *)pixels;
    return 0;
}

int pharos_encode_jpeg(const uint8_t *pixels, int width, int height, int quality, uint8_t **out, size_t *out_size,
                       char *error, size_t error_size) {
    struct jpeg_compress_struct cinfo;
    JpegErrors errors;
    unsigned char *volatile buffer = NULL;
    unsigned long size = 0;
    *out = NULL;
    *out_size = 0;
    cinfo.err = jpeg_std_error(&errors.base);
    errors.base.error_exit = jpeg_error_exit;
    errors.base.emit_message = jpeg_quiet;
    if (setjmp(errors.jump)) {
        snprintf(error, error_size, "JPEG encoding: %s", errors.message);
        jpeg_destroy_compress(&cinfo);
        free(buffer);
        return -1;
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, (unsigned char **)&buffer, &size);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * (size_t)width * 3);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    *out = buffer;
    *out_size = size;
    return 0;
}

void pharos_encoded_free(uint8_t *buffer) { free(buffer); }

int pharos_decode_png(const uint8_t *data, size_t size, PharosDecodedImage *out, char *error, size_t error_size) {
    png_image image;
    memset(&image, 0, sizeof image);
    memset(out, 0, sizeof *out);
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&image, data, size)) {
        snprintf(error, error_size, "PNG: %s", image.message);
        png_image_free(&image);
        return -1;
    }
    if ((size_t)image.width * image.height > PHAROS_MAX_PIXELS || image.width == 0 || image.height == 0) {
        snprintf(error, error_size, "PNG: %ux%u is out of range (at most 2^28 = 268435456 pixels)", image.width, image.height);
        png_image_free(&image);
        return -1;
    }
    image.format = PNG_FORMAT_RGB;
    uint8_t *pixels = malloc(PNG_IMAGE_SIZE(image));
    if (!pixels) {
        snprintf(error, error_size, "PNG: out of memory for %ux%u", image.width, image.height);
        png_image_free(&image);
        return -1;
    }
    png_color white = {255, 255, 255};
    if (!png_image_finish_read(&image, &white, pixels, 0, NULL)) {
        snprintf(error, error_size, "PNG: %s", image.message);
        free(pixels);
        png_image_free(&image);
        return -1;
    }
    out->width = (int)image.width;
    out->height = (int)image.height;
    out->pixels = pixels;
    return 0;
}

void pharos_decoded_image_free(PharosDecodedImage *image) {
    free(image->pixels);
    image->pixels = NULL;
}

/* Decodes a JPEG held in memory with libjpeg(-turbo), as Pillow does
 * (default settings: JDCT_ISLOW, fancy upsampling), into RGB or gray.
 * Built by the root build.rs; wrapped by src/data/jpeg.rs.
 *
 * A caller that needs only a window of the image (a center crop) can say
 * so after the header is read; libjpeg-turbo then skips the rows above it
 * (entropy decoding only), stops after its last row, and skips the IDCT and
 * color conversion of the columns outside it (jpeg_crop_scanline). The window's
 * pixels are those of a full decode: the decoded columns reach MARGIN pixels
 * past the window on each side, since fancy chroma upsampling reads one
 * neighbouring chroma sample (tests/fixtures/data compare every window).
 * Progressive files whose coefficients are incomplete are decoded whole: libjpeg
 * smooths their blocks with their neighbours' (see smooths_blocks).
 *
 * Errors never exit: the error manager longjmps back and the message is
 * copied for the caller. Running out of input (a truncated file) is an
 * error, as in Pillow ("image file is truncated"); libjpeg's other warnings
 * (corrupt data it recovers from) are ignored, as Pillow ignores them. */

#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#define MSNR_JPEG_OK 0
#define MSNR_JPEG_ERROR 1
#define MSNR_JPEG_NOT_HANDLED 2

/* Gives the caller's buffer for `len` bytes (NULL if it cannot). */
typedef unsigned char *(*msnr_jpeg_alloc)(void *ctx, size_t len);

/* Given the image's width and height, returns 1 and fills window[4] (left,
 * top, width, height; inside the image) to decode only that window, or 0 for
 * the whole image. */
typedef int (*msnr_jpeg_window)(void *ctx, size_t width, size_t height, size_t *window);

/* The most pixels an image may have: Pillow's decompression-bomb limit (twice
 * Image.MAX_IMAGE_PIXELS), above which Pillow refuses to open it. */
#define MAX_PIXELS ((size_t)178956970)

/* Decoded columns on each side of a window (fancy upsampling reads one chroma
 * sample, two luma pixels, beyond a column). */
#define MARGIN 2

/* Window decoding needs jpeg_crop_scanline and jpeg_skip_scanlines (1.5), and
 * their fixes: 1.5.3 (crop of gray JPEGs with a sampling factor other than 1),
 * 2.0.0 (skip then read could loop forever on progressive 4:2:0 / 4:4:0).
 * Older libraries decode whole images, which is always right. */
#if defined(LIBJPEG_TURBO_VERSION_NUMBER) && LIBJPEG_TURBO_VERSION_NUMBER >= 2000000
#define MSNR_JPEG_WINDOWS 1
#else
#define MSNR_JPEG_WINDOWS 0
#endif

/* Whether the data ends with the EOI marker: a window decode stops early and
 * would not notice a file truncated below the window, which a full decode
 * (and Pillow) reports, so only complete files are decoded by window. */
static int ends_with_eoi(const unsigned char *data, size_t len) {
    return len >= 2 && data[len - 2] == 0xFF && data[len - 1] == 0xD9;
}

struct msnr_error_mgr {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
};

static void msnr_error_exit(j_common_ptr cinfo) {
    struct msnr_error_mgr *err = (struct msnr_error_mgr *)cinfo->err;
    longjmp(err->jump, 1);
}

static void msnr_emit_message(j_common_ptr cinfo, int level) {
    /* level -1 is a warning; running out of data is fatal here. */
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        msnr_error_exit(cinfo);
    }
}

static void msnr_output_message(j_common_ptr cinfo) { (void)cinfo; }

static void copy_message(j_common_ptr cinfo, char *msg, size_t msg_len) {
    char buffer[JMSG_LENGTH_MAX];
    if (msg == NULL || msg_len == 0) {
        return;
    }
    if (cinfo->err->msg_code == JWRN_JPEG_EOF) {
        snprintf(msg, msg_len, "image file is truncated");
        return;
    }
    (*cinfo->err->format_message)(cinfo, buffer);
    snprintf(msg, msg_len, "%s", buffer);
}

/* Whether libjpeg will smooth blocks when it outputs this image: a progressive
 * JPEG whose coefficients are not all fully refined (scans missing, or cut
 * short by corrupt data) gets inter-block smoothing, which reads neighbouring
 * blocks, and a cropped decode has other neighbours at its edges. Such files
 * are decoded whole. (Conservative: libjpeg smooths under narrower conditions.) */
static int smooths_blocks(j_decompress_ptr cinfo) {
    int ci, k;
    if (!cinfo->progressive_mode || !cinfo->do_block_smoothing || cinfo->coef_bits == NULL) {
        return 0;
    }
    for (ci = 0; ci < cinfo->num_components; ci++) {
        for (k = 0; k < DCTSIZE2; k++) {
            if (cinfo->coef_bits[ci][k] != 0) {
                return 1;
            }
        }
    }
    return 0;
}

/* Decodes `data[0..len)`, or only the window `want` asks for (`want` may be
 * NULL; *windowed says whether the result is that window or the whole image).
 * On MSNR_JPEG_OK, `alloc(ctx, w * h * c)` received the pixels (rows
 * top to bottom, channels interleaved) and *width, *height, *channels (3 or
 * 1) describe them. On MSNR_JPEG_ERROR, `msg` holds
 * libjpeg's message. MSNR_JPEG_NOT_HANDLED: CMYK/YCCK or other color spaces. */
int msnr_jpeg_decode(const unsigned char *data, size_t len, msnr_jpeg_alloc alloc, msnr_jpeg_window want, void *ctx,
                     int *windowed, size_t *width, size_t *height, int *channels, char *msg, size_t msg_len) {
    struct jpeg_decompress_struct cinfo;
    struct msnr_error_mgr err;
    unsigned char *pixels = NULL;
    unsigned char *volatile row = NULL; /* a window's decoded row, freed on every path */
    volatile int status = MSNR_JPEG_OK;

    if (msg != NULL && msg_len > 0) {
        msg[0] = '\0';
    }
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = msnr_error_exit;
    err.pub.emit_message = msnr_emit_message;
    err.pub.output_message = msnr_output_message;
    if (setjmp(err.jump)) {
        copy_message((j_common_ptr)&cinfo, msg, msg_len);
        jpeg_destroy_decompress(&cinfo);
        free(row);
        return MSNR_JPEG_ERROR;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
        cinfo.out_color_space = JCS_GRAYSCALE;
        break;
    case JCS_YCbCr:
    case JCS_RGB:
        cinfo.out_color_space = JCS_RGB;
        break;
    default:
        status = MSNR_JPEG_NOT_HANDLED;
        break;
    }
    if ((size_t)cinfo.image_width * (size_t)cinfo.image_height > MAX_PIXELS) {
        if (msg != NULL && msg_len > 0) {
            snprintf(msg, msg_len, "image of %ux%u pixels is over the limit of %zu pixels (Pillow's too)",
                     cinfo.image_width, cinfo.image_height, MAX_PIXELS);
        }
        jpeg_destroy_decompress(&cinfo);
        return MSNR_JPEG_ERROR;
    }
    size_t window[4] = {0, 0, 0, 0};
    int use_window = status == MSNR_JPEG_OK && MSNR_JPEG_WINDOWS && want != NULL && ends_with_eoi(data, len) &&
                     want(ctx, cinfo.image_width, cinfo.image_height, window);
    if (use_window && (window[2] == 0 || window[3] == 0 || window[0] + window[2] > cinfo.image_width ||
                       window[1] + window[3] > cinfo.image_height)) {
        if (msg != NULL && msg_len > 0) {
            snprintf(msg, msg_len, "window %zux%zu at (%zu, %zu) outside the %ux%u image", window[2], window[3],
                     window[0], window[1], cinfo.image_width, cinfo.image_height);
        }
        jpeg_destroy_decompress(&cinfo);
        return MSNR_JPEG_ERROR;
    }
    if (status == MSNR_JPEG_OK) {
        jpeg_start_decompress(&cinfo);
        use_window = use_window && !smooths_blocks(&cinfo);
        *windowed = use_window;
    }
    if (use_window) {
#if MSNR_JPEG_WINDOWS
        size_t comps, left = window[0], top = window[1], w = window[2], h = window[3], y;
        JDIMENSION xoff, cropped;
        comps = (size_t)cinfo.output_components;
        xoff = (JDIMENSION)(left > MARGIN ? left - MARGIN : 0);
        cropped = (JDIMENSION)((left + w + MARGIN < cinfo.output_width ? left + w + MARGIN : cinfo.output_width) - xoff);
        if (cropped < cinfo.output_width) {
            jpeg_crop_scanline(&cinfo, &xoff, &cropped); /* widens to iMCU boundaries */
        }
        pixels = alloc(ctx, w * h * comps);
        row = malloc((size_t)cinfo.output_width * comps);
        if (pixels == NULL || row == NULL) {
            if (msg != NULL && msg_len > 0) {
                snprintf(msg, msg_len, "cannot allocate %zu bytes", w * h * comps);
            }
            jpeg_destroy_decompress(&cinfo);
            free(row);
            return MSNR_JPEG_ERROR;
        }
        if (top > 0) {
            jpeg_skip_scanlines(&cinfo, (JDIMENSION)top);
        }
        for (y = 0; y < h; y++) {
            JSAMPROW r = row;
            jpeg_read_scanlines(&cinfo, &r, 1);
            memcpy(pixels + y * w * comps, row + (left - xoff) * comps, w * comps);
        }
        *width = w;
        *height = h;
        *channels = cinfo.output_components;
        jpeg_abort_decompress(&cinfo);
        free(row);
        row = NULL;
#endif
    } else if (status == MSNR_JPEG_OK) {
        size_t stride = (size_t)cinfo.output_width * (size_t)cinfo.output_components;
        pixels = alloc(ctx, stride * cinfo.output_height);
        if (pixels == NULL) {
            if (msg != NULL && msg_len > 0) {
                snprintf(msg, msg_len, "cannot allocate %zu bytes", stride * cinfo.output_height);
            }
            jpeg_destroy_decompress(&cinfo);
            return MSNR_JPEG_ERROR;
        }
        while (cinfo.output_scanline < cinfo.output_height) {
            JSAMPROW row = pixels + stride * cinfo.output_scanline;
            jpeg_read_scanlines(&cinfo, &row, 1);
        }
        *width = cinfo.output_width;
        *height = cinfo.output_height;
        *channels = cinfo.output_components;
        jpeg_finish_decompress(&cinfo);
    }
    jpeg_destroy_decompress(&cinfo);
    return status;
}

/* For the tests: encodes `rgb` (w x h, interleaved) as a JPEG whose luma is sampled
 * `h_samp` x `v_samp` times the chroma (4:4:0 is 1 x 2, 4:1:1 is 4 x 1), which Pillow
 * cannot write, optionally progressive. Returns 1 and a malloc'd buffer in *out (the
 * caller frees it), or 0. */
int msnr_jpeg_encode_for_tests(const unsigned char *rgb, unsigned w, unsigned h, int h_samp, int v_samp,
                               int progressive, unsigned char **out, unsigned long *out_len) {
    struct jpeg_compress_struct cinfo;
    struct msnr_error_mgr err;
    *out = NULL;
    *out_len = 0;
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = msnr_error_exit;
    if (setjmp(err.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(*out);
        *out = NULL;
        return 0;
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, out, out_len);
    cinfo.image_width = w;
    cinfo.image_height = h;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, 90, TRUE);
    cinfo.comp_info[0].h_samp_factor = h_samp;
    cinfo.comp_info[0].v_samp_factor = v_samp;
    cinfo.comp_info[1].h_samp_factor = cinfo.comp_info[1].v_samp_factor = 1;
    cinfo.comp_info[2].h_samp_factor = cinfo.comp_info[2].v_samp_factor = 1;
    if (progressive) {
        jpeg_simple_progression(&cinfo);
    }
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)cinfo.next_scanline * w * 3);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return 1;
}

/* Decodes a JPEG held in memory with libjpeg(-turbo), as Pillow does
 * (default settings: JDCT_ISLOW, fancy upsampling), into RGB or gray.
 * Built by the root build.rs; wrapped by src/data/jpeg.rs.
 *
 * Errors never exit: the error manager longjmps back and the message is
 * copied for the caller. Running out of input (a truncated file) is an
 * error, as in Pillow ("image file is truncated"); libjpeg's other warnings
 * (corrupt data it recovers from) are ignored, as Pillow ignores them. */

#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#define MSNR_JPEG_OK 0
#define MSNR_JPEG_ERROR 1
#define MSNR_JPEG_NOT_HANDLED 2

/* Gives the caller's buffer for `len` bytes (NULL if it cannot). */
typedef unsigned char *(*msnr_jpeg_alloc)(void *ctx, size_t len);

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

/* Decodes `data[0..len)`. On MSNR_JPEG_OK, `alloc(ctx, w * h * c)` received
 * the pixels (rows top to bottom, channels interleaved) and *width, *height,
 * *channels (3 or 1) describe them. On MSNR_JPEG_ERROR, `msg` holds
 * libjpeg's message. MSNR_JPEG_NOT_HANDLED: CMYK/YCCK or other color spaces. */
int msnr_jpeg_decode(const unsigned char *data, size_t len, msnr_jpeg_alloc alloc, void *ctx, size_t *width,
                     size_t *height, int *channels, char *msg, size_t msg_len) {
    struct jpeg_decompress_struct cinfo;
    struct msnr_error_mgr err;
    unsigned char *pixels = NULL;
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
    if (status == MSNR_JPEG_OK) {
        size_t stride;
        jpeg_start_decompress(&cinfo);
        stride = (size_t)cinfo.output_width * (size_t)cinfo.output_components;
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

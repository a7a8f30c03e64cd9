/* image.h: PNG files <-> (C, H, W) float images in [0, 1], contact sheets and
 * terminal previews, in plain C (no Lua).
 *
 * libpng reports errors by longjmp; every setjmp is inside the function that
 * calls libpng, which frees what it holds and returns -1 / NULL with libpng's
 * message in err. Nothing longjmps across a caller's frames. */
#ifndef DD_IMAGE_H
#define DD_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* ---- reading ---- */

/* What a PNG decodes to: channels 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA
 * (palettes expand to RGB, or RGBA when they have a tRNS chunk; a tRNS colour
 * key on grey or RGB adds an alpha channel); sample_bits is 8 or 16 (1, 2 and
 * 4-bit grey expand to 8: k/(2^bits - 1) is the same number either way). */
typedef struct ImageInfo {
    int channels, height, width;
    int sample_bits;
    int file_bits;      /* the bit depth in the file: 1, 2, 4, 8 or 16 */
    int color_type;     /* the file's PNG colour type (0, 2, 3, 4, 6) */
    int interlaced;
} ImageInfo;

typedef struct ImageReader ImageReader;

/* Opens path and reads the PNG header. NULL with the reason in err ("cannot
 * open: No such file or directory", "not a PNG file", "libpng: <message>"). */
ImageReader *image_reader_open(const char *path, ImageInfo *info, char *err, size_t errlen);
/* Decodes the pixels into out, (channels, height, width) floats: the sample k
 * becomes k / (2^sample_bits - 1). Reads to the end of the file, so a file
 * cut short or with a bad CRC anywhere fails. Returns 0, or -1 with err. */
int image_reader_read(ImageReader *r, float *out, char *err, size_t errlen);
/* Frees everything; accepts NULL. */
void image_reader_close(ImageReader *r);

/* ---- writing ---- */

/* Writes (channels, height, width) floats as a PNG of bits 8 or 16 per sample
 * (channels 1..4 as above), values clamped to [0, 1] and rounded to the nearest
 * level. Atomic (see fileio.h): on any failure (a NaN value, an I/O error) an
 * existing file at path is left intact. Returns 0, or -1 with err. */
int image_save_png(const char *path, const float *data, int channels, int height, int width, int bits,
                   char *err, size_t errlen);

/* ---- contact sheets ---- */

/* Channels of a sheet holding frames of these channel counts: colour if any
 * frame is colour (3, 4), alpha if any has alpha (2, 4). */
int image_grid_channels(const int *channels, int n);
/* Tiles n frames, frames[i] (channels[i], h, w), row by row into cols columns:
 * out is (out_channels, rows (h + pad) + pad, cols (w + pad) + pad), rows =
 * ceil(n / cols), everything that is not a frame set to pad_value. Grey is
 * repeated into RGB; a missing alpha is 1. */
void image_grid(float *out, int out_channels, const float *const *frames, const int *channels, int n, int64_t h,
                int64_t w, int cols, int pad, float pad_value);

/* ---- terminal previews ---- */

typedef enum TextMode {
    TEXT_PLAIN,      /* one character per cell from the ramp " .:-=+*#%@" (dark to light) */
    TEXT_TRUECOLOR,  /* '▀' per cell: 24-bit foreground = upper pixel, background = lower */
} TextMode;

/* rgb (3, h, w) of an image in [0, 1] from one of channels (1..4) planes:
 * grey repeated, alpha composited over white. */
void image_to_rgb(float *rgb, const float *src, int channels, int64_t hw);
/* Bytes image_render_text needs for an (h, w) picture (one pixel per plain
 * cell, two per truecolor cell), with the terminating 0. */
size_t image_render_bytes(int64_t h, int64_t w, TextMode mode);
/* Renders rgb (3, h, w) as text lines ending in '\n'; returns the length. */
size_t image_render_text(char *out, const float *rgb, int64_t h, int64_t w, TextMode mode);

#endif

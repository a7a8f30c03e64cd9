/* image.c: PNG reading and writing through libpng, contact sheets and text
 * previews of images. Plain C (no Lua).
 *
 * libpng signals an error by calling our error function, which records the
 * message and longjmps to the setjmp of the image_* function that made the
 * libpng call. That function frees what it owns and returns an error code:
 * the Lua binding raises its error only afterwards, in its own frame. */
#include "image.h"
#include "fileio.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The error pointer libpng hands back to our error function. `set` means the
 * message was already written by us (an I/O or a data error): keep it. */
typedef struct PngError {
    char msg[256];
    int set;
} PngError;

static void on_png_error(png_structp png, png_const_charp msg) {
    PngError *e = png_get_error_ptr(png);
    if (!e->set) {
        snprintf(e->msg, sizeof e->msg, "libpng: %s", msg ? msg : "unknown error");
        e->set = 1;
    }
    png_longjmp(png, 1);
}

/* Warnings (bad ancillary CRCs, odd ICC profiles) never stop a read and
 * would only clutter the terminal. */
static void on_png_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

/* ---- reading ---- */

/* The largest chunk libpng may buffer whole (8 MB, libpng's own suggested
 * limit); chunks we skip are read in small pieces whatever their length. */
#define IMAGE_MAX_CHUNK_BYTES ((png_alloc_size_t)8000000)

struct ImageReader {
    PngError err;   /* first: the error pointer */
    FILE *fp;
    png_structp png;
    png_infop info;
    ImageInfo meta;
    size_t rowbytes;
    png_bytep pixels;   /* (height, rowbytes), after libpng's transformations */
    png_bytepp rows;
};

static void read_bytes(png_structp png, png_bytep data, size_t n) {
    ImageReader *r = png_get_io_ptr(png);
    if (fread(data, 1, n, r->fp) == n) return;
    if (ferror(r->fp)) snprintf(r->err.msg, sizeof r->err.msg, "read error: %s", strerror(errno));
    else snprintf(r->err.msg, sizeof r->err.msg, "file is cut short (unexpected end of file)");
    r->err.set = 1;
    png_error(png, r->err.msg);
}

void image_reader_close(ImageReader *r) {
    if (!r) return;
    if (r->png) png_destroy_read_struct(&r->png, r->info ? &r->info : NULL, NULL);
    if (r->fp) fclose(r->fp);
    free(r->rows);
    free(r->pixels);
    free(r);
}

/* Reads the chunks up to the image data and sets up the expansion to 1-4
 * channels of 8 or 16 bits. The setjmp lives here so that nothing the caller
 * keeps in registers can be clobbered. Returns 0, or -1 with r->err. */
static int read_header(ImageReader *r) {
    if (setjmp(png_jmpbuf(r->png))) return -1;
    png_set_read_fn(r->png, r, read_bytes);
    png_set_sig_bytes(r->png, 8);
    png_read_info(r->png, r->info);
    ImageInfo *m = &r->meta;
    m->color_type = png_get_color_type(r->png, r->info);
    m->file_bits = png_get_bit_depth(r->png, r->info);
    m->interlaced = png_get_interlace_type(r->png, r->info) != PNG_INTERLACE_NONE;
    /* palette -> RGB(A), 1/2/4-bit grey -> 8-bit, tRNS -> an alpha channel */
    png_set_expand(r->png);
    png_set_interlace_handling(r->png);
    png_read_update_info(r->png, r->info);
    m->channels = png_get_channels(r->png, r->info);
    m->sample_bits = png_get_bit_depth(r->png, r->info);
    m->height = (int)png_get_image_height(r->png, r->info);
    m->width = (int)png_get_image_width(r->png, r->info);
    r->rowbytes = png_get_rowbytes(r->png, r->info);
    return 0;
}

ImageReader *image_reader_open(const char *path, ImageInfo *info, char *err, size_t errlen) {
    ImageReader *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->fp = fopen(path, "rb");
    if (!r->fp) {
        snprintf(err, errlen, "cannot open: %s", strerror(errno));
        image_reader_close(r);
        return NULL;
    }
    unsigned char sig[8];
    size_t got = fread(sig, 1, sizeof sig, r->fp);
    if (got < sizeof sig && ferror(r->fp)) {
        snprintf(err, errlen, "cannot read: %s", strerror(errno));
        image_reader_close(r);
        return NULL;
    }
    if (got < sizeof sig || png_sig_cmp(sig, 0, sizeof sig) != 0) {
        snprintf(err, errlen, "not a PNG file (%s)",
                 got < sizeof sig ? "shorter than the 8-byte PNG signature" : "no PNG signature");
        image_reader_close(r);
        return NULL;
    }
    r->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r->err, on_png_error, on_png_warning);
    if (r->png) r->info = png_create_info_struct(r->png);
    if (!r->png || !r->info) {
        snprintf(err, errlen, "libpng: out of memory");
        image_reader_close(r);
        return NULL;
    }
    /* libpng allocates some ancillary chunks' declared length before reading
     * them: a 95-byte file declaring a 2 GB eXIf chunk cost a 2 GB allocation
     * (found by fuzzing). Only IHDR, PLTE, tRNS, IDAT and IEND matter to the
     * pixels we return, so every other chunk is skipped in small reads, and
     * what libpng still buffers whole is capped. */
    png_set_keep_unknown_chunks(r->png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);   /* -1: all but those 5 */
    png_set_chunk_malloc_max(r->png, IMAGE_MAX_CHUNK_BYTES);
    if (read_header(r) != 0) {
        snprintf(err, errlen, "%s", r->err.msg);
        image_reader_close(r);
        return NULL;
    }
    ImageInfo *m = &r->meta;
    if (m->channels < 1 || m->channels > 4 || (m->sample_bits != 8 && m->sample_bits != 16) ||
        r->rowbytes != (size_t)m->width * m->channels * (m->sample_bits / 8)) {
        snprintf(err, errlen, "unsupported PNG layout (%d channels of %d bits after expansion)", m->channels,
                 m->sample_bits);
        image_reader_close(r);
        return NULL;
    }
    *info = *m;
    return r;
}

/* Decodes every pass into r->rows and reads on to IEND (a new setjmp: the
 * one of read_header belongs to a finished frame). Returns 0 or -1. */
static int read_pixels(ImageReader *r) {
    if (setjmp(png_jmpbuf(r->png))) return -1;
    png_read_image(r->png, r->rows);
    png_read_end(r->png, NULL);
    return 0;
}

int image_reader_read(ImageReader *r, float *out, char *err, size_t errlen) {
    const ImageInfo *m = &r->meta;
    size_t h = (size_t)m->height;
    r->pixels = malloc(h * r->rowbytes);
    r->rows = malloc(h * sizeof *r->rows);
    if (!r->pixels || !r->rows) {
        snprintf(err, errlen, "out of memory: cannot hold the %zu x %zu bytes of decoded rows", h, r->rowbytes);
        return -1;
    }
    for (size_t y = 0; y < h; y++) r->rows[y] = r->pixels + y * r->rowbytes;
    if (read_pixels(r) != 0) {
        snprintf(err, errlen, "%s", r->err.msg);
        return -1;
    }

    int c = m->channels;
    size_t w = (size_t)m->width, hw = h * w;
    if (m->sample_bits == 8) {
        for (size_t y = 0; y < h; y++) {
            const png_byte *row = r->rows[y];
            for (size_t x = 0; x < w; x++)
                for (int k = 0; k < c; k++) out[k * hw + y * w + x] = (float)row[x * c + k] / 255.0f;
        }
    } else {
        for (size_t y = 0; y < h; y++) {
            const png_byte *row = r->rows[y];
            for (size_t x = 0; x < w; x++)
                for (int k = 0; k < c; k++) {
                    const png_byte *s = row + 2 * (x * c + k);
                    out[k * hw + y * w + x] = (float)((s[0] << 8) | s[1]) / 65535.0f;
                }
        }
    }
    return 0;
}

/* ---- writing ---- */

/* Everything the writer owns, on the heap so that its fields keep their
 * values across libpng's longjmp. */
typedef struct PngWriter {
    PngError err;   /* first: the error pointer */
    AtomicFile *af;
    png_bytep row;
} PngWriter;

/* atomic_write remembers the first failure; atomic_commit reports it. */
static void write_bytes(png_structp png, png_bytep data, size_t n) {
    PngWriter *wr = png_get_io_ptr(png);
    atomic_write(wr->af, data, n);
}

static void flush_bytes(png_structp png) { (void)png; }

static void writer_free(PngWriter *wr) {
    atomic_abort(wr->af);
    free(wr->row);
    free(wr);
}

/* Header, rows (clamped and rounded; a NaN stops the write) and IEND through
 * wr->af. The setjmp lives here; returns 0, or -1 with wr->err. */
static int write_pixels(PngWriter *wr, png_structp png, png_infop info, const float *data, int channels, int height,
                        int width, int bits) {
    static const int color_types[] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                      PNG_COLOR_TYPE_RGB_ALPHA};
    if (setjmp(png_jmpbuf(png))) return -1;
    png_set_write_fn(png, wr, write_bytes, flush_bytes);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, bits, color_types[channels],
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t hw = (size_t)height * (size_t)width;
    double top = bits == 8 ? 255.0 : 65535.0;
    for (int y = 0; y < height; y++) {
        for (int x = 0; x < width; x++) {
            for (int k = 0; k < channels; k++) {
                float v = data[k * hw + (size_t)y * width + x];
                if (isnan(v)) {
                    snprintf(wr->err.msg, sizeof wr->err.msg,
                             "value NaN at channel %d, row %d, column %d (1-based); nothing was written", k + 1,
                             y + 1, x + 1);
                    wr->err.set = 1;
                    png_error(png, wr->err.msg);
                }
                unsigned q = v <= 0.0f ? 0u : v >= 1.0f ? (unsigned)top : (unsigned)floor((double)v * top + 0.5);
                size_t i = (size_t)x * channels + k;
                if (bits == 8) {
                    wr->row[i] = (png_byte)q;
                } else {
                    wr->row[2 * i] = (png_byte)(q >> 8);
                    wr->row[2 * i + 1] = (png_byte)(q & 0xff);
                }
            }
        }
        png_write_row(png, wr->row);
    }
    png_write_end(png, info);
    return 0;
}

int image_save_png(const char *path, const float *data, int channels, int height, int width, int bits,
                   char *err, size_t errlen) {
    if (channels < 1 || channels > 4 || (bits != 8 && bits != 16) || height < 1 || width < 1) {
        snprintf(err, errlen, "cannot write %d channels of %dx%d pixels at %d bits", channels, height, width, bits);
        return -1;
    }
    PngWriter *wr = calloc(1, sizeof *wr);
    if (wr) wr->row = malloc((size_t)width * channels * (bits / 8));
    if (!wr || !wr->row) {
        if (wr) free(wr);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    wr->af = atomic_open(path, err, errlen);
    if (!wr->af) {
        writer_free(wr);
        return -1;
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &wr->err, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        if (png) png_destroy_write_struct(&png, NULL);
        writer_free(wr);
        snprintf(err, errlen, "libpng: out of memory");
        return -1;
    }
    if (write_pixels(wr, png, info, data, channels, height, width, bits) != 0) {
        snprintf(err, errlen, "%s", wr->err.msg);
        png_destroy_write_struct(&png, &info);
        writer_free(wr);
        return -1;
    }
    png_destroy_write_struct(&png, &info);
    AtomicFile *af = wr->af;
    wr->af = NULL;
    int rc = atomic_commit(af, err, errlen);
    writer_free(wr);
    return rc;
}

/* ---- contact sheets ---- */

int image_grid_channels(const int *channels, int n) {
    int colour = 0, alpha = 0;
    for (int i = 0; i < n; i++) {
        colour |= channels[i] >= 3;
        alpha |= channels[i] == 2 || channels[i] == 4;
    }
    return (colour ? 3 : 1) + alpha;
}

/* Which channel of a frame with fc channels feeds channel oc of an image with
 * out_c channels; -1: a missing alpha (opaque). */
static int source_channel(int fc, int out_c, int oc) {
    int out_alpha = out_c == 2 || out_c == 4, f_alpha = fc == 2 || fc == 4;
    int out_colours = out_c - out_alpha, f_colours = fc - f_alpha;
    if (oc < out_colours) return f_colours == 1 ? 0 : oc;
    return f_alpha ? fc - 1 : -1;
}

void image_grid(float *out, int out_channels, const float *const *frames, const int *channels, int n, int64_t h,
                int64_t w, int cols, int pad, float pad_value) {
    int rows = (n + cols - 1) / cols;
    int64_t oh = rows * (h + pad) + pad, ow = cols * (w + pad) + pad, ohw = oh * ow, fhw = h * w;
    for (int64_t i = 0; i < out_channels * ohw; i++) out[i] = pad_value;
    for (int i = 0; i < n; i++) {
        int64_t y0 = pad + (i / cols) * (h + pad), x0 = pad + (i % cols) * (w + pad);
        for (int oc = 0; oc < out_channels; oc++) {
            int sc = source_channel(channels[i], out_channels, oc);
            for (int64_t y = 0; y < h; y++) {
                float *o = out + oc * ohw + (y0 + y) * ow + x0;
                if (sc < 0) {
                    for (int64_t x = 0; x < w; x++) o[x] = 1.0f;
                } else {
                    memcpy(o, frames[i] + sc * fhw + y * w, (size_t)w * sizeof *o);
                }
            }
        }
    }
}

/* ---- terminal previews ---- */

static inline float unit(float v) { return v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f; /* NaN -> 0 */ }

void image_to_rgb(float *rgb, const float *src, int channels, int64_t hw) {
    int alpha = channels == 2 || channels == 4, colours = channels - alpha;
    for (int c = 0; c < 3; c++) {
        const float *s = src + (colours == 1 ? 0 : c) * hw;
        const float *a = alpha ? src + (channels - 1) * hw : NULL;
        for (int64_t p = 0; p < hw; p++) {
            float v = unit(s[p]);
            if (a) v = v * unit(a[p]) + (1.0f - unit(a[p])); /* over white */
            rgb[c * hw + p] = v;
        }
    }
}

/* "\x1b[38;2;255;255;255m" is 19 bytes; a cell is two of those and '▀' (3). */
#define CELL_BYTES 41
#define LINE_END "\x1b[0m\n"

size_t image_render_bytes(int64_t h, int64_t w, TextMode mode) {
    if (mode == TEXT_PLAIN) return (size_t)h * (size_t)(w + 1) + 1;
    return (size_t)((h + 1) / 2) * ((size_t)w * CELL_BYTES + sizeof LINE_END) + 1;
}

static inline int byte_of(float v) { return (int)floor((double)unit(v) * 255.0 + 0.5); }

size_t image_render_text(char *out, const float *rgb, int64_t h, int64_t w, TextMode mode) {
    static const char ramp[] = " .:-=+*#%@";
    int64_t hw = h * w;
    char *o = out;
    if (mode == TEXT_PLAIN) {
        for (int64_t y = 0; y < h; y++) {
            for (int64_t x = 0; x < w; x++) {
                int64_t p = y * w + x;
                double luma = 0.299 * rgb[p] + 0.587 * rgb[hw + p] + 0.114 * rgb[2 * hw + p];
                int i = (int)(luma * 10.0);
                *o++ = ramp[i < 0 ? 0 : i > 9 ? 9 : i];
            }
            *o++ = '\n';
        }
        *o = 0;
        return (size_t)(o - out);
    }
    for (int64_t y = 0; y < h; y += 2) {
        int last_fg = -1, last_bg = -1; /* colours packed as 0xRRGGBB; -2 = terminal default */
        for (int64_t x = 0; x < w; x++) {
            int64_t p = y * w + x, q = p + w;
            int fg = byte_of(rgb[p]) << 16 | byte_of(rgb[hw + p]) << 8 | byte_of(rgb[2 * hw + p]);
            int bg = y + 1 < h ? byte_of(rgb[q]) << 16 | byte_of(rgb[hw + q]) << 8 | byte_of(rgb[2 * hw + q]) : -2;
            if (fg != last_fg) o += sprintf(o, "\x1b[38;2;%d;%d;%dm", fg >> 16, (fg >> 8) & 255, fg & 255);
            if (bg != last_bg) {
                if (bg == -2) o += sprintf(o, "\x1b[49m");
                else o += sprintf(o, "\x1b[48;2;%d;%d;%dm", bg >> 16, (bg >> 8) & 255, bg & 255);
            }
            last_fg = fg;
            last_bg = bg;
            memcpy(o, "\xe2\x96\x80", 3); /* U+2580 UPPER HALF BLOCK */
            o += 3;
        }
        memcpy(o, LINE_END, sizeof LINE_END - 1);
        o += sizeof LINE_END - 1;
    }
    *o = 0;
    return (size_t)(o - out);
}

/* vision.c: silhouettes, the median background model, binary morphology,
 * connected components and exact area / antialiased bilinear resampling.
 * Plain C over caller-owned buffers (see vision.h). */
#include "vision.h"

#include <math.h>
#include <string.h>

/* ---- silhouettes ---- */

/* A value in [0, 1] as the 8-bit sample it came from (or is nearest to),
 * without branches or floor(): clamp, scale, add 0.5, truncate (NaN fails
 * v > 0 and clamps to 0), as selects the compiler vectorises (fminf/fmaxf
 * would be library calls), for the loop below that runs on every decoded
 * pixel. */
static inline int to_byte_fast(float v) {
    v = v > 0.0f ? v : 0.0f;
    v = v < 1.0f ? v : 1.0f;
    return (int)(v * 255.0f + 0.5f);
}

void silhouette_threshold(float *out, const float *frame, int channels, int64_t channel_stride, int64_t n,
                          double sum_above) {
    /* sum > sum_above on integers: compare with the largest integer not above it */
    const int limit = (int)floor(sum_above);
    if (channels == 3) {
        const float *r = frame, *g = frame + channel_stride, *b = frame + 2 * channel_stride;
        for (int64_t p = 0; p < n; p++)
            out[p] = to_byte_fast(r[p]) + to_byte_fast(g[p]) + to_byte_fast(b[p]) > limit ? 1.0f : 0.0f;
    } else {
        for (int64_t p = 0; p < n; p++) out[p] = 3 * to_byte_fast(frame[p]) > limit ? 1.0f : 0.0f;
    }
}

void foreground_by_difference(uint8_t *mask, const float *frame, const float *background, int channels,
                              int64_t hw, float threshold) {
    for (int64_t p = 0; p < hw; p++) {
        float d = 0.0f;
        for (int c = 0; c < channels; c++) {
            float e = fabsf(frame[c * hw + p] - background[c * hw + p]);
            if (e > d) d = e;
        }
        mask[p] = d > threshold;
    }
}

/* ---- background model ---- */

void background_model_init(BackgroundModel *m, uint16_t *samples, int64_t values, int n) {
    m->samples = samples;
    m->values = values;
    m->n = n;
    m->added = 0;
}

void background_model_add(BackgroundModel *m, const float *frame) {
    if (m->added >= m->n) return;
    uint16_t *s = m->samples + m->added;
    for (int64_t v = 0; v < m->values; v++) {
        float x = frame[v];
        uint16_t q = !(x > 0.0f) ? 0 : x >= 1.0f ? 65535 : (uint16_t)floor((double)x * 65535.0 + 0.5);
        s[v * m->n] = q;
    }
    m->added++;
}

/* Wirth's selection: afterwards a[k] is the k-th smallest, a[0..k-1] <= a[k] <= a[k+1..]. */
static uint16_t select_kth(uint16_t *a, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        uint16_t pivot = a[k];
        int i = lo, j = hi;
        do {
            while (a[i] < pivot) i++;
            while (pivot < a[j]) j--;
            if (i <= j) {
                uint16_t t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        } while (i <= j);
        if (j < k) lo = i;
        if (k < i) hi = j;
    }
    return a[k];
}

void background_model_median(const BackgroundModel *m, float *out, uint16_t *scratch) {
    int n = m->added < m->n ? m->added : m->n;
    if (n == 0) {
        memset(out, 0, (size_t)m->values * sizeof *out);
        return;
    }
    for (int64_t v = 0; v < m->values; v++) {
        memcpy(scratch, m->samples + v * m->n, (size_t)n * sizeof *scratch);
        double med = select_kth(scratch, n, n / 2);
        if (n % 2 == 0) {
            uint16_t below = scratch[0];
            for (int i = 1; i < n / 2; i++)
                if (scratch[i] > below) below = scratch[i];
            med = (med + below) / 2.0;
        }
        out[v] = (float)(med / 65535.0);
    }
}

/* ---- binary morphology ---- */

size_t morph_scratch_bytes(int64_t h, int64_t w, int radius) {
    size_t ph = (size_t)(h + 2 * radius), pw = (size_t)(w + 2 * radius);
    return ph * (pw + 1) * sizeof(int32_t) + (size_t)(2 * radius + 1) * sizeof(int32_t) + ph * pw;
}

/* One erosion or dilation of an (h, w) mask lying on an infinite background.
 * With per-row prefix counts of ones, the part of the structuring element on
 * row y + dy is one range query: O(radius) per pixel. */
static void morph_pass(uint8_t *mask, int64_t h, int64_t w, int dilate, int radius, const int32_t *half,
                       int32_t *prefix) {
    for (int64_t y = 0; y < h; y++) {
        int32_t *p = prefix + y * (w + 1);
        const uint8_t *m = mask + y * w;
        p[0] = 0;
        for (int64_t x = 0; x < w; x++) p[x + 1] = p[x] + (m[x] != 0);
    }
    for (int64_t y = 0; y < h; y++) {
        for (int64_t x = 0; x < w; x++) {
            int v = !dilate;
            for (int dy = -radius; dy <= radius && v == !dilate; dy++) {
                int64_t yy = y + dy, a = x - half[dy + radius], b = x + half[dy + radius];
                if (yy < 0 || yy >= h || a < 0 || b > w - 1) {
                    if (!dilate) v = 0; /* the window reaches the background outside */
                    if (yy < 0 || yy >= h) continue;
                    if (a < 0) a = 0;
                    if (b > w - 1) b = w - 1;
                }
                const int32_t *p = prefix + yy * (w + 1);
                int64_t ones = p[b + 1] - p[a];
                if (dilate && ones > 0) v = 1;
                if (!dilate && ones < b - a + 1) v = 0;
            }
            mask[y * w + x] = (uint8_t)v;
        }
    }
}

/* The passes run on a copy padded by radius on every side: what a dilation
 * grows beyond the border is seen by the erosion of a closing, so a closing
 * does not fill the gap between a shape and the border, and an opening keeps
 * thick shapes that touch it. */
void morph_apply(uint8_t *mask, int64_t h, int64_t w, MorphOp op, int radius, MorphShape shape, void *scratch) {
    if (radius <= 0 || h == 0 || w == 0) return;
    int64_t ph = h + 2 * radius, pw = w + 2 * radius;
    int32_t *prefix = scratch;
    int32_t *half = prefix + ph * (pw + 1);
    uint8_t *pad = (uint8_t *)(half + 2 * radius + 1);
    for (int dy = -radius; dy <= radius; dy++)
        half[dy + radius] = shape == MORPH_SQUARE ? radius : (int32_t)floor(sqrt((double)radius * radius - (double)dy * dy));
    memset(pad, 0, (size_t)(ph * pw));
    for (int64_t y = 0; y < h; y++) memcpy(pad + (y + radius) * pw + radius, mask + y * w, (size_t)w);
    int first_dilate = op == MORPH_DILATE || op == MORPH_CLOSE;
    morph_pass(pad, ph, pw, first_dilate, radius, half, prefix);
    if (op == MORPH_OPEN || op == MORPH_CLOSE) morph_pass(pad, ph, pw, !first_dilate, radius, half, prefix);
    for (int64_t y = 0; y < h; y++) memcpy(mask + y * w, pad + (y + radius) * pw + radius, (size_t)w);
}

/* ---- connected components ---- */

int32_t components_label(int32_t *labels, const uint8_t *mask, int64_t h, int64_t w, int32_t *stack) {
    int64_t hw = h * w;
    memset(labels, 0, (size_t)hw * sizeof *labels);
    int32_t count = 0;
    for (int64_t p = 0; p < hw; p++) {
        if (!mask[p] || labels[p]) continue;
        labels[p] = ++count;
        int64_t sp = 0;
        stack[sp++] = (int32_t)p;
        /* each pixel is labelled when pushed, so the stack never exceeds hw */
        while (sp > 0) {
            int64_t q = stack[--sp], y = q / w, x = q % w;
            for (int64_t dy = -1; dy <= 1; dy++) {
                int64_t yy = y + dy;
                if (yy < 0 || yy >= h) continue;
                for (int64_t dx = -1; dx <= 1; dx++) {
                    int64_t xx = x + dx;
                    if (xx < 0 || xx >= w) continue;
                    int64_t r = yy * w + xx;
                    if (mask[r] && !labels[r]) {
                        labels[r] = count;
                        stack[sp++] = (int32_t)r;
                    }
                }
            }
        }
    }
    return count;
}

void components_areas(int64_t *areas, const int32_t *labels, int64_t hw, int32_t count) {
    memset(areas, 0, (size_t)(count + 1) * sizeof *areas);
    for (int64_t p = 0; p < hw; p++) areas[labels[p]]++;
}

void components_remove_small(uint8_t *mask, int64_t h, int64_t w, int64_t min_pixels, int32_t *labels,
                             int32_t *stack, int64_t *areas) {
    if (min_pixels <= 1) return;
    int32_t count = components_label(labels, mask, h, w, stack);
    components_areas(areas, labels, h * w, count);
    for (int64_t p = 0; p < h * w; p++)
        if (labels[p] && areas[labels[p]] < min_pixels) mask[p] = 0;
}

/* ---- resampling ---- */

ResizeSpec resize_spec_stretch(int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w, ResizeFilter filter) {
    ResizeSpec s = {in_h, in_w, out_h, out_w, 0.0, 0.0, (double)in_h, (double)in_w, filter};
    return s;
}

/* Weights per output index: an input interval of length `scale` touches at
 * most ceil(scale) + 1 pixels (area); the widened triangle covers an open
 * interval of length 2 max(scale, 1) (bilinear). Never more than the input. */
static int axis_taps(int64_t in, int64_t out, double len, ResizeFilter f) {
    double scale = len / (double)out;
    double taps = f == RESIZE_AREA ? ceil(scale) + 1.0 : ceil(2.0 * (scale > 1.0 ? scale : 1.0)) + 1.0;
    return taps > (double)in ? (int)in : (int)taps;
}

/* Fills start[out] and weight[out][taps] for one axis. Each output index gets
 * the weights of its input range, normalised to sum 1, then shifted so that
 * start + taps stays inside the input (the extra slots weigh 0). */
static void axis_weights(int64_t *start, float *weight, int taps, int64_t in, int64_t out, double src0, double len,
                         ResizeFilter f) {
    double scale = len / (double)out;
    double support = scale > 1.0 ? scale : 1.0;
    for (int64_t o = 0; o < out; o++) {
        double lo, hi, center = 0;
        if (f == RESIZE_AREA) {
            lo = src0 + (double)o * scale;
            hi = src0 + (double)(o + 1) * scale;
        } else {
            center = src0 + ((double)o + 0.5) * scale;
            lo = center - support;
            hi = center + support;
        }
        int64_t i0 = (int64_t)floor(lo), i1 = (int64_t)ceil(hi);
        if (i0 < 0) i0 = 0;
        if (i1 > in) i1 = in;
        /* drop the pixels that get no weight at either end */
        double w0, w1;
        for (;;) {
            w0 = f == RESIZE_AREA ? fmin(hi, (double)i0 + 1) - fmax(lo, (double)i0)
                                  : 1.0 - fabs((double)i0 + 0.5 - center) / support;
            if (w0 > 0 || i0 >= i1 - 1) break;
            i0++;
        }
        for (;;) {
            w1 = f == RESIZE_AREA ? fmin(hi, (double)i1) - fmax(lo, (double)i1 - 1)
                                  : 1.0 - fabs((double)i1 - 0.5 - center) / support;
            if (w1 > 0 || i1 <= i0 + 1) break;
            i1--;
        }
        if (i1 - i0 > taps) i1 = i0 + taps; /* cannot happen; keeps writes in bounds */
        double sum = 0;
        for (int64_t i = i0; i < i1; i++) {
            double wi = f == RESIZE_AREA ? fmin(hi, (double)i + 1) - fmax(lo, (double)i)
                                         : 1.0 - fabs((double)i + 0.5 - center) / support;
            if (wi > 0) sum += wi;
        }
        int64_t s = i0 + taps > in ? in - taps : i0;
        float *wrow = weight + o * taps;
        memset(wrow, 0, (size_t)taps * sizeof *wrow);
        for (int64_t i = i0; i < i1; i++) {
            double wi = f == RESIZE_AREA ? fmin(hi, (double)i + 1) - fmax(lo, (double)i)
                                         : 1.0 - fabs((double)i + 0.5 - center) / support;
            if (wi > 0 && sum > 0) wrow[i - s] = (float)(wi / sum);
        }
        if (sum <= 0) wrow[i0 - s] = 1.0f; /* degenerate window: nearest pixel */
        start[o] = s;
    }
}

size_t resize_plan_bytes(const ResizeSpec *s) {
    int ty = axis_taps(s->in_h, s->out_h, s->src_h, s->filter);
    int tx = axis_taps(s->in_w, s->out_w, s->src_w, s->filter);
    return (size_t)(s->out_h + s->out_w) * sizeof(int64_t) +
           ((size_t)s->out_h * ty + (size_t)s->out_w * tx + (size_t)s->in_h * s->out_w) * sizeof(float);
}

void resize_plan_init(ResizePlan *p, void *mem, const ResizeSpec *s) {
    p->spec = *s;
    p->taps_y = axis_taps(s->in_h, s->out_h, s->src_h, s->filter);
    p->taps_x = axis_taps(s->in_w, s->out_w, s->src_w, s->filter);
    p->start_y = mem;
    p->start_x = p->start_y + s->out_h;
    p->weight_y = (float *)(p->start_x + s->out_w);
    p->weight_x = p->weight_y + s->out_h * p->taps_y;
    p->tmp = p->weight_x + s->out_w * p->taps_x;
    axis_weights(p->start_y, p->weight_y, p->taps_y, s->in_h, s->out_h, s->src_y, s->src_h, s->filter);
    axis_weights(p->start_x, p->weight_x, p->taps_x, s->in_w, s->out_w, s->src_x, s->src_w, s->filter);
    p->row_lo = s->in_h;
    p->row_hi = 0;
    for (int64_t o = 0; o < s->out_h; o++) {
        if (p->start_y[o] < p->row_lo) p->row_lo = p->start_y[o];
        if (p->start_y[o] + p->taps_y > p->row_hi) p->row_hi = p->start_y[o] + p->taps_y;
    }
}

/* Horizontal pass over the input rows the vertical pass needs, into tmp, then
 * the vertical pass row by row (contiguous inner loops both times). */
void resize_plan_run(const ResizePlan *p, float *out, int64_t out_stride, const float *in) {
    const ResizeSpec *s = &p->spec;
    int64_t ow = s->out_w;
    for (int64_t y = p->row_lo; y < p->row_hi; y++) {
        const float *row = in + y * s->in_w;
        float *t = p->tmp + (y - p->row_lo) * ow;
        for (int64_t ox = 0; ox < ow; ox++) {
            const float *wx = p->weight_x + ox * p->taps_x, *src = row + p->start_x[ox];
            double acc = 0;
            for (int k = 0; k < p->taps_x; k++) acc += (double)wx[k] * src[k];
            t[ox] = (float)acc;
        }
    }
    for (int64_t oy = 0; oy < s->out_h; oy++) {
        const float *wy = p->weight_y + oy * p->taps_y;
        const float *base = p->tmp + (p->start_y[oy] - p->row_lo) * ow;
        float *o = out + oy * out_stride;
        for (int64_t ox = 0; ox < ow; ox++) o[ox] = 0.0f;
        for (int k = 0; k < p->taps_y; k++) {
            float wk = wy[k];
            if (wk == 0.0f) continue;
            const float *r = base + k * ow;
            for (int64_t ox = 0; ox < ow; ox++) o[ox] += wk * r[ox];
        }
    }
}

/* ---- augmentation ---- */

void image_flip_shift(float *out, const float *in, int64_t c, int64_t h, int64_t w, int flip, int64_t dx, int64_t dy,
                      float fill) {
    for (int64_t p = 0; p < c; p++) {
        const float *src = in + p * h * w;
        float *dst = out + p * h * w;
        for (int64_t r = 0; r < h; r++) {
            float *row = dst + r * w;
            int64_t sr = r - dy;
            if (sr < 0 || sr >= h) {
                for (int64_t j = 0; j < w; j++) row[j] = fill;
                continue;
            }
            const float *srow = src + sr * w;
            /* output column j shows shifted column j - dx, which is source column j - dx (or its mirror) */
            for (int64_t j = 0; j < w; j++) {
                int64_t sj = j - dx;
                row[j] = sj < 0 || sj >= w ? fill : srow[flip ? w - 1 - sj : sj];
            }
        }
    }
}

/* ---- colour ---- */

void grey_from_rgb(float *out, const float *rgb, int64_t hw) {
    for (int64_t p = 0; p < hw; p++)
        out[p] = (float)(0.299 * rgb[p] + 0.587 * rgb[hw + p] + 0.114 * rgb[2 * hw + p]);
}

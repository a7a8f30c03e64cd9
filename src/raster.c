/* raster.c: the antialiased rasterizer of raster.h. Shapes are drawn through
 * their signed distance functions (after Inigo Quilez's 2-D distance
 * functions); backdrops and lights are per-pixel formulas. */
#include "raster.h"

#include <math.h>
#include <string.h>

static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }
static inline float minf(float a, float b) { return a < b ? a : b; }
static inline float maxf(float a, float b) { return a > b ? a : b; }

/* ---- signed distances ---------------------------------------------------- */

static float circle_distance(const float *p, float px, float py) {
    return hypotf(px - p[0], py - p[1]) - p[2];
}

/* Not the exact ellipse distance (which needs a cubic root) but f / |grad f|
 * for f = |q / r| - 1: exact on the edge and within a small fraction of a
 * pixel of the truth near it, which is all antialiasing looks at. */
static float ellipse_distance(const float *p, float px, float py) {
    float rx = p[2], ry = p[3];
    if (rx <= 0 || ry <= 0) return INFINITY;
    float ca = cosf(p[4]), sa = sinf(p[4]);
    float dx = px - p[0], dy = py - p[1];
    float u = dx * ca + dy * sa, v = -dx * sa + dy * ca;
    float k0 = hypotf(u / rx, v / ry);
    float k1 = hypotf(u / (rx * rx), v / (ry * ry));
    if (k1 == 0) return -minf(rx, ry);
    return k0 * (k0 - 1) / k1;
}

/* Distance to the convex hull of two discs (a "round cone"). */
static float capsule_distance(const float *p, float px, float py) {
    float ax = p[0], ay = p[1], ra = p[4], rb = p[5];
    float bx = p[2] - ax, by = p[3] - ay;
    float x = px - ax, y = py - ay;
    float h = bx * bx + by * by;
    float b = ra - rb;
    if (h <= b * b) /* one disc contains the other */
        return minf(hypotf(x, y) - ra, hypotf(x - bx, y - by) - rb);
    /* q: the point in the segment's frame, in units of its length */
    float qx = fabsf(x * by - y * bx) / h, qy = (x * bx + y * by) / h;
    float cx = sqrtf(h - b * b), cy = b;
    float k = cx * qy - cy * qx;
    if (k < 0) return sqrtf(h * (qx * qx + qy * qy)) - ra;
    if (k > cx) return sqrtf(h * (qx * qx + qy * qy + 1 - 2 * qy)) - rb;
    return cx * qx + cy * qy - ra;
}

/* Distance to the nearest edge, negative inside by the crossing rule. */
static float polygon_distance(const float *xy, int n, float px, float py) {
    float d = INFINITY;
    int inside = 0;
    for (int i = 0, j = n - 1; i < n; j = i++) {
        float xi = xy[2 * i], yi = xy[2 * i + 1], xj = xy[2 * j], yj = xy[2 * j + 1];
        float ex = xj - xi, ey = yj - yi, wx = px - xi, wy = py - yi;
        float ee = ex * ex + ey * ey;
        float t = ee > 0 ? clampf((wx * ex + wy * ey) / ee, 0, 1) : 0;
        float bx = wx - ex * t, by = wy - ey * t;
        d = minf(d, bx * bx + by * by);
        int c1 = py >= yi, c2 = py < yj, c3 = ex * wy > ey * wx;
        if ((c1 && c2 && c3) || (!c1 && !c2 && !c3)) inside = !inside;
    }
    return inside ? -sqrtf(d) : sqrtf(d);
}

float shape_distance(const Shape *s, float px, float py) {
    switch (s->kind) {
    case SHAPE_CIRCLE: return circle_distance(s->p, px, py);
    case SHAPE_ELLIPSE: return ellipse_distance(s->p, px, py);
    case SHAPE_CAPSULE: return capsule_distance(s->p, px, py);
    case SHAPE_POLYGON: return s->n >= 3 ? polygon_distance(s->xy, s->n, px, py) : INFINITY;
    }
    return INFINITY;
}

/* ---- bounds -------------------------------------------------------------- */

/* Pixel range touched by [lo, hi] in continuous coordinates, clipped to [0, size). */
static void span_clip(float lo, float hi, int size, int *a, int *b) {
    /* Coverage reaches half a pixel beyond the edge; one pixel of margin is safe.
     * Clamping before the cast keeps huge coordinates from overflowing int. */
    lo = clampf(floorf(lo - 1), 0, (float)size);
    hi = clampf(ceilf(hi + 1), 0, (float)size);
    *a = (int)lo;
    *b = (int)hi;
}

static RasterRect shape_bounds(const Shape *s, int height, int width) {
    float x0 = 0, y0 = 0, x1 = -1, y1 = -1;
    const float *p = s->p;
    switch (s->kind) {
    case SHAPE_CIRCLE:
        x0 = p[0] - p[2], x1 = p[0] + p[2], y0 = p[1] - p[2], y1 = p[1] + p[2];
        break;
    case SHAPE_ELLIPSE: {
        float ca = cosf(p[4]), sa = sinf(p[4]);
        float hx = hypotf(p[2] * ca, p[3] * sa), hy = hypotf(p[2] * sa, p[3] * ca);
        x0 = p[0] - hx, x1 = p[0] + hx, y0 = p[1] - hy, y1 = p[1] + hy;
        break;
    }
    case SHAPE_CAPSULE:
        x0 = minf(p[0] - p[4], p[2] - p[5]), x1 = maxf(p[0] + p[4], p[2] + p[5]);
        y0 = minf(p[1] - p[4], p[3] - p[5]), y1 = maxf(p[1] + p[4], p[3] + p[5]);
        break;
    case SHAPE_POLYGON:
        if (s->n < 3) break;
        x0 = x1 = s->xy[0], y0 = y1 = s->xy[1];
        for (int i = 1; i < s->n; i++) {
            x0 = minf(x0, s->xy[2 * i]), x1 = maxf(x1, s->xy[2 * i]);
            y0 = minf(y0, s->xy[2 * i + 1]), y1 = maxf(y1, s->xy[2 * i + 1]);
        }
        break;
    }
    RasterRect r = {0, 0, 0, 0};
    if (!(x1 >= x0 && y1 >= y0)) return r;
    span_clip(x0, x1, width, &r.x0, &r.x1);
    span_clip(y0, y1, height, &r.y0, &r.y1);
    return r;
}

static int rect_empty(RasterRect r) { return r.x1 <= r.x0 || r.y1 <= r.y0; }

RasterRect raster_shapes_bounds(const Shape *shapes, int n, int height, int width) {
    RasterRect u = {0, 0, 0, 0};
    for (int i = 0; i < n; i++) {
        RasterRect r = shape_bounds(&shapes[i], height, width);
        if (rect_empty(r)) continue;
        if (rect_empty(u)) {
            u = r;
            continue;
        }
        if (r.x0 < u.x0) u.x0 = r.x0;
        if (r.y0 < u.y0) u.y0 = r.y0;
        if (r.x1 > u.x1) u.x1 = r.x1;
        if (r.y1 > u.y1) u.y1 = r.y1;
    }
    return u;
}

/* ---- filling ------------------------------------------------------------- */

/* Coverage is resolved in tiles of TILE x TILE pixels: the distance at a
 * tile's centre bounds it over the tile (a distance function changes by at
 * most one pixel per pixel), so tiles far inside or outside the edge take one
 * evaluation instead of 64. Not for the ellipse, whose distance is an estimate. */
#define TILE 8
#define TILE_REACH 5.0f /* > half the diagonal between the outer pixel centres, 3.5 sqrt(2) */

static void shape_cover(float *coverage, int cw, RasterRect u, const Shape *s, RasterRect r) {
    int exact = s->kind != SHAPE_ELLIPSE;
    for (int ty = r.y0; ty < r.y1; ty += TILE) {
        int ty1 = ty + TILE < r.y1 ? ty + TILE : r.y1;
        for (int tx = r.x0; tx < r.x1; tx += TILE) {
            int tx1 = tx + TILE < r.x1 ? tx + TILE : r.x1;
            if (exact) {
                float d = shape_distance(s, 0.5f * (float)(tx + tx1), 0.5f * (float)(ty + ty1));
                if (d > TILE_REACH + 0.5f) continue;
                if (d < -TILE_REACH - 0.5f) {
                    for (int y = ty; y < ty1; y++) {
                        float *row = coverage + (size_t)(y - u.y0) * cw - u.x0;
                        for (int x = tx; x < tx1; x++) row[x] = 1;
                    }
                    continue;
                }
            }
            for (int y = ty; y < ty1; y++) {
                float *row = coverage + (size_t)(y - u.y0) * cw - u.x0;
                float py = (float)y + 0.5f;
                for (int x = tx; x < tx1; x++) {
                    if (row[x] >= 1) continue;
                    float a = clampf(0.5f - shape_distance(s, (float)x + 0.5f, py), 0, 1);
                    if (a > row[x]) row[x] = a;
                }
            }
        }
    }
}

void raster_shapes_fill(RasterCanvas *c, const Shape *shapes, int n, const float rgb[3], float alpha,
                        float *coverage) {
    RasterRect u = raster_shapes_bounds(shapes, n, c->height, c->width);
    if (rect_empty(u)) return;
    int cw = u.x1 - u.x0;
    /* coverage is (u.y1 - u.y0, cw): the union's coverage so far */
    memset(coverage, 0, sizeof(float) * (size_t)cw * (size_t)(u.y1 - u.y0));
    for (int k = 0; k < n; k++) {
        RasterRect r = shape_bounds(&shapes[k], c->height, c->width);
        if (!rect_empty(r)) shape_cover(coverage, cw, u, &shapes[k], r);
    }
    size_t plane = (size_t)c->height * (size_t)c->width;
    float r0 = rgb[0], r1 = rgb[1], r2 = rgb[2];
    for (int y = u.y0; y < u.y1; y++) {
        const float *row = coverage + (size_t)(y - u.y0) * cw - u.x0;
        float *p0 = c->data + (size_t)y * c->width, *p1 = p0 + plane, *p2 = p1 + plane;
        for (int x = u.x0; x < u.x1; x++) {
            float a = alpha * row[x];
            if (a <= 0) continue;
            p0[x] += (r0 - p0[x]) * a;
            p1[x] += (r1 - p1[x]) * a;
            p2[x] += (r2 - p2[x]) * a;
        }
    }
}

/* ---- backdrops and lights ------------------------------------------------ */
/* Colours are copied into locals: through the pointers the compiler would
 * have to reload them after every store into the canvas. */

void raster_fill(RasterCanvas *c, const float rgb[3]) {
    size_t plane = (size_t)c->height * (size_t)c->width;
    for (int ch = 0; ch < 3; ch++) {
        float *p = c->data + ch * plane, v = rgb[ch];
        for (size_t i = 0; i < plane; i++) p[i] = v;
    }
}

void raster_linear_gradient(RasterCanvas *c, float x0, float y0, float x1, float y1, const float c0[3],
                            const float c1[3]) {
    size_t plane = (size_t)c->height * (size_t)c->width;
    float a0 = c0[0], a1 = c0[1], a2 = c0[2];
    float d0 = c1[0] - a0, d1 = c1[1] - a1, d2 = c1[2] - a2;
    float dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
    /* t = ((p - p0) . d) / |d|^2, linear in x along a row */
    float gx = len2 > 0 ? dx / len2 : 0, gy = len2 > 0 ? dy / len2 : 0;
    for (int y = 0; y < c->height; y++) {
        float *p0 = c->data + (size_t)y * c->width, *p1 = p0 + plane, *p2 = p1 + plane;
        float t_row = (0.5f - x0) * gx + ((float)y + 0.5f - y0) * gy;
        if (gx == 0) { /* a vertical gradient: one colour per row */
            float t = clampf(t_row, 0, 1), v0 = a0 + d0 * t, v1 = a1 + d1 * t, v2 = a2 + d2 * t;
            for (int x = 0; x < c->width; x++) p0[x] = v0, p1[x] = v1, p2[x] = v2;
            continue;
        }
        for (int x = 0; x < c->width; x++) {
            float t = clampf(t_row + (float)x * gx, 0, 1);
            p0[x] = a0 + d0 * t;
            p1[x] = a1 + d1 * t;
            p2[x] = a2 + d2 * t;
        }
    }
}

void raster_radial_gradient(RasterCanvas *c, float cx, float cy, float radius, const float c_inner[3],
                            const float c_outer[3]) {
    size_t plane = (size_t)c->height * (size_t)c->width;
    float a0 = c_inner[0], a1 = c_inner[1], a2 = c_inner[2];
    float d0 = c_outer[0] - a0, d1 = c_outer[1] - a1, d2 = c_outer[2] - a2;
    float inv = radius > 0 ? 1 / radius : 0;
    for (int y = 0; y < c->height; y++) {
        float *p0 = c->data + (size_t)y * c->width, *p1 = p0 + plane, *p2 = p1 + plane;
        float dy = (float)y + 0.5f - cy;
        for (int x = 0; x < c->width; x++) {
            /* radius 0: the outer colour everywhere */
            float t = radius > 0 ? minf(hypotf((float)x + 0.5f - cx, dy) * inv, 1) : 1;
            p0[x] = a0 + d0 * t;
            p1[x] = a1 + d1 * t;
            p2[x] = a2 + d2 * t;
        }
    }
}

void raster_glow(RasterCanvas *c, float cx, float cy, float radius, const float rgb[3], float intensity) {
    if (!(radius > 0) || intensity <= 0) return;
    size_t plane = (size_t)c->height * (size_t)c->width;
    float l0 = rgb[0] * intensity, l1 = rgb[1] * intensity, l2 = rgb[2] * intensity;
    float inv2 = 1 / (radius * radius);
    int y0, y1;
    span_clip(cy - radius, cy + radius, c->height, &y0, &y1);
    for (int y = y0; y < y1; y++) {
        float dy = (float)y + 0.5f - cy;
        float chord2 = radius * radius - dy * dy;
        if (chord2 <= 0) continue;
        int x0, x1;
        float chord = sqrtf(chord2);
        span_clip(cx - chord, cx + chord, c->width, &x0, &x1);
        float *p0 = c->data + (size_t)y * c->width, *p1 = p0 + plane, *p2 = p1 + plane;
        for (int x = x0; x < x1; x++) {
            float dx = (float)x + 0.5f - cx;
            float f = maxf(1 - (dx * dx + dy * dy) * inv2, 0); /* branch-free: vectorizes */
            float k = f * f;
            /* screen blend: 1 - (1 - pixel)(1 - light) */
            p0[x] = 1 - (1 - p0[x]) * (1 - l0 * k);
            p1[x] = 1 - (1 - p1[x]) * (1 - l1 * k);
            p2[x] = 1 - (1 - p2[x]) * (1 - l2 * k);
        }
    }
}

/* Narrows [*lo, *hi] to the vx with n.x vx + n.y vy >= 0. */
static void halfplane_clip(float nx, float ny, float vy, float *lo, float *hi) {
    float b = ny * vy;
    if (nx > 1e-7f) *lo = maxf(*lo, -b / nx);
    else if (nx < -1e-7f) *hi = minf(*hi, -b / nx);
    else if (b < 0) *hi = -INFINITY; /* edge parallel to the row, row outside */
}

void raster_beam(RasterCanvas *c, float x, float y, float angle, float spread, const float rgb[3],
                 float intensity, float softness) {
    if (!(spread > 0) || intensity <= 0) return;
    spread = minf(spread, 1.5f);
    softness = clampf(softness, 1e-3f, 1);
    size_t plane = (size_t)c->height * (size_t)c->width;
    float l0 = rgb[0] * intensity, l1 = rgb[1] * intensity, l2 = rgb[2] * intensity;
    float ux = cosf(angle), uy = sinf(angle);
    float inv_tan = 1 / tanf(spread), inv_soft = 1 / softness;
    float inv_reach = 1 / hypotf((float)c->width, (float)c->height);
    /* the wedge is where v = p - (x, y) is on the inner side of both edges */
    float n1x = sinf(angle + spread), n1y = -cosf(angle + spread);
    float n2x = -sinf(angle - spread), n2y = cosf(angle - spread);
    for (int py = 0; py < c->height; py++) {
        float vy = (float)py + 0.5f - y;
        float lo = -INFINITY, hi = INFINITY;
        halfplane_clip(n1x, n1y, vy, &lo, &hi);
        halfplane_clip(n2x, n2y, vy, &lo, &hi);
        if (!(hi >= lo)) continue;
        int x0, x1;
        span_clip(lo + x - 0.5f, hi + x - 0.5f, c->width, &x0, &x1);
        float *p0 = c->data + (size_t)py * c->width, *p1 = p0 + plane, *p2 = p1 + plane;
        for (int px = x0; px < x1; px++) {
            float vx = (float)px + 0.5f - x;
            float along = vx * ux + vy * uy;
            if (along <= 0) continue;
            /* t: 0 on the axis, 1 on the wedge's edge */
            float t = fabsf(vx * uy - vy * ux) * inv_tan / along;
            if (t >= 1) continue;
            float s = minf((1 - t) * inv_soft, 1);
            float k = s * s * (3 - 2 * s) * (1 - 0.5f * minf(along * inv_reach, 1));
            p0[px] = 1 - (1 - p0[px]) * (1 - l0 * k);
            p1[px] = 1 - (1 - p1[px]) * (1 - l1 * k);
            p2[px] = 1 - (1 - p2[px]) * (1 - l2 * k);
        }
    }
}

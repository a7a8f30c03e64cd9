/* bind_draw.c: dd.draw, the Lua face of the rasterizer in raster.c.
 *
 * Every function draws in place into a canvas, a contiguous (3, H, W) tensor
 * of RGB values in [0, 1], and returns nothing. Coordinates are pixels (the
 * pixel in column x, row y covers [x, x+1) x [y, y+1), 0-based), angles
 * radians clockwise on screen from +x. Colours are {r, g, b} in [0, 1]; shape
 * colours may add an opacity, {r, g, b, a}.
 *
 *   dd.draw.circle(canvas, cx, cy, r, color)
 *   dd.draw.ellipse(canvas, cx, cy, rx, ry, angle, color)
 *   dd.draw.capsule(canvas, x1, y1, x2, y2, r1, r2, color)   -- tapered limb
 *   dd.draw.polygon(canvas, {x1, y1, x2, y2, ...}, color)    -- simple polygon
 *   dd.draw.shapes(canvas, list, color)  -- the union of a list of shapes, painted once:
 *       {"circle", cx, cy, r}, {"ellipse", cx, cy, rx, ry, angle},
 *       {"capsule", x1, y1, x2, y2, r1, r2}, {"polygon", {x1, y1, ...}}
 *   dd.draw.fill(canvas, color)
 *   dd.draw.linear_gradient(canvas, x0, y0, x1, y1, color0, color1)
 *   dd.draw.radial_gradient(canvas, cx, cy, radius, color_inner, color_outer)
 *   dd.draw.glow(canvas, cx, cy, radius, color, intensity)          -- soft light
 *   dd.draw.beam(canvas, x, y, angle, spread, color, intensity [, softness])
 *
 * Each function keeps its scratch buffers as userdata upvalues (grown on
 * demand), so an argument error can never leak memory. */
#include "bind.h"
#include "raster.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Arguments are validated in full before any pixel is touched. */

static RasterCanvas lcanvas_check(lua_State *L, int idx, const char *fn) {
    Tensor *t = luaL_testudata(L, idx, TENSOR_MT);
    if (!t) dd_error(L, "draw.%s: canvas must be a (3,H,W) Tensor, got %s", fn, luaL_typename(L, idx));
    if (!t->storage) dd_error(L, "draw.%s: canvas Tensor has been freed", fn);
    char s[160];
    shape_format(s, sizeof s, t->ndim, t->shape);
    if (t->ndim != 3 || t->shape[0] != 3)
        dd_error(L, "draw.%s: canvas must have shape (3,H,W), got %s", fn, s);
    if (!tensor_is_contiguous(t))
        dd_error(L, "draw.%s: canvas must be contiguous, got a strided view of shape %s (use :contiguous())", fn, s);
    if (t->shape[1] > 1 << 20 || t->shape[2] > 1 << 20)
        dd_error(L, "draw.%s: canvas of shape %s is too large (at most 1048576 rows and columns)", fn, s);
    RasterCanvas c = {tensor_data(t), (int)t->shape[1], (int)t->shape[2]};
    return c;
}

static float lnum(lua_State *L, int idx, const char *fn, const char *what) {
    int isnum = 0;
    lua_Number v = lua_tonumberx(L, idx, &isnum);
    if (!isnum) dd_error(L, "draw.%s: %s must be a number, got %s", fn, what, luaL_typename(L, idx));
    if (!isfinite(v) || fabs(v) > 1e30) dd_error(L, "draw.%s: %s must be a finite number, got %f", fn, what, v);
    return (float)v;
}

static float lnum_range(lua_State *L, int idx, const char *fn, const char *what, float lo, float hi) {
    float v = lnum(L, idx, fn, what);
    if (v < lo || v > hi) dd_error(L, "draw.%s: %s must be in [%f, %f], got %f", fn, what, lo, hi, v);
    return v;
}

/* A colour table {r, g, b} (or {r, g, b, a} when alpha is not NULL), each in [0, 1]. */
static void lcolor_check(lua_State *L, int idx, const char *fn, const char *what, float rgb[3], float *alpha) {
    if (lua_type(L, idx) != LUA_TTABLE)
        dd_error(L, "draw.%s: %s must be a table {r, g, b%s} of values in [0, 1], got %s", fn, what,
                   alpha ? " [, a]" : "", luaL_typename(L, idx));
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    if (n != 3 && !(alpha && n == 4))
        dd_error(L, "draw.%s: %s must have %s values {r, g, b%s}, got %lld", fn, what, alpha ? "3 or 4" : "3",
                   alpha ? " [, a]" : "", n);
    float v[4] = {0, 0, 0, 1};
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, idx, i + 1);
        int isnum = 0;
        lua_Number x = lua_tonumberx(L, -1, &isnum);
        if (!isnum) dd_error(L, "draw.%s: %s component %d must be a number, got %s", fn, what, i + 1, luaL_typename(L, -1));
        if (!(x >= 0 && x <= 1))
            dd_error(L, "draw.%s: %s component %d must be in [0, 1], got %f", fn, what, i + 1, x);
        v[i] = (float)x;
        lua_pop(L, 1);
    }
    memcpy(rgb, v, 3 * sizeof(float));
    if (alpha) *alpha = v[3];
}

/* The userdata in upvalue `up`, replaced by a larger one when under `bytes`. */
static void *scratch_get(lua_State *L, int up, size_t bytes) {
    int ui = lua_upvalueindex(up);
    if (lua_type(L, ui) != LUA_TUSERDATA || lua_rawlen(L, ui) < bytes) {
        lua_newuserdatauv(L, bytes + bytes / 2 + 64, 0);
        lua_replace(L, ui);
    }
    return lua_touserdata(L, ui);
}

static void fill_shapes(lua_State *L, RasterCanvas *c, const Shape *shapes, int n, const float rgb[3], float alpha) {
    RasterRect r = raster_shapes_bounds(shapes, n, c->height, c->width);
    if (r.x1 <= r.x0 || r.y1 <= r.y0) return;
    float *coverage = scratch_get(L, 1, sizeof(float) * (size_t)(r.x1 - r.x0) * (size_t)(r.y1 - r.y0));
    raster_shapes_fill(c, shapes, n, rgb, alpha, coverage);
}

static const char *const circle_names[] = {"cx", "cy", "r"};
static const char *const ellipse_names[] = {"cx", "cy", "rx", "ry", "angle"};
static const char *const capsule_names[] = {"x1", "y1", "x2", "y2", "r1", "r2"};

static const struct {
    const char *name;
    ShapeKind kind;
    int nparams;
    const char *const *params;
    int first_radius, nradii; /* these parameters must be >= 0 */
} shape_kinds[] = {
    {"circle", SHAPE_CIRCLE, 3, circle_names, 2, 1},
    {"ellipse", SHAPE_ELLIPSE, 5, ellipse_names, 2, 2},
    {"capsule", SHAPE_CAPSULE, 6, capsule_names, 4, 2},
};

/* Reads the numbers of one shape from stack positions first, first + 1, ...
 * (prefix names the shape in a list for errors). */
static void shape_params(lua_State *L, int kind_index, int first, const char *fn, const char *prefix, Shape *s) {
    char what[96];
    s->kind = shape_kinds[kind_index].kind;
    for (int i = 0; i < shape_kinds[kind_index].nparams; i++) {
        snprintf(what, sizeof what, "%s%s", prefix, shape_kinds[kind_index].params[i]);
        s->p[i] = lnum(L, first + i, fn, what);
        int r0 = shape_kinds[kind_index].first_radius;
        if (i >= r0 && i < r0 + shape_kinds[kind_index].nradii && s->p[i] < 0)
            dd_error(L, "draw.%s: %s must be >= 0, got %f", fn, what, (double)s->p[i]);
    }
}

/* Counts the vertices of the polygon table at idx ({x1, y1, ...}, at least 3). */
static int polygon_count(lua_State *L, int idx, const char *fn, const char *what) {
    if (lua_type(L, idx) != LUA_TTABLE)
        dd_error(L, "draw.%s: %s must be a table {x1, y1, x2, y2, ...}, got %s", fn, what, luaL_typename(L, idx));
    lua_Integer len = (lua_Integer)lua_rawlen(L, idx);
    if (len % 2 != 0 || len < 6)
        dd_error(L, "draw.%s: %s must hold an even number (at least 6) of coordinates, got %lld", fn, what, len);
    if (len > 2000000) dd_error(L, "draw.%s: %s has %lld coordinates, at most 2000000", fn, what, len);
    return (int)(len / 2);
}

static void polygon_read(lua_State *L, int idx, const char *fn, const char *what, float *xy, int n) {
    char name[96];
    for (int i = 0; i < 2 * n; i++) {
        lua_rawgeti(L, idx, i + 1);
        snprintf(name, sizeof name, "%s coordinate %d", what, i + 1);
        xy[i] = lnum(L, -1, fn, name);
        lua_pop(L, 1);
    }
}

static int draw_single(lua_State *L, int kind_index) {
    const char *fn = shape_kinds[kind_index].name;
    RasterCanvas c = lcanvas_check(L, 1, fn);
    Shape s = {0};
    shape_params(L, kind_index, 2, fn, "", &s);
    float rgb[3], alpha;
    int ncolor = 2 + shape_kinds[kind_index].nparams;
    lcolor_check(L, ncolor, fn, "color", rgb, &alpha);
    if (lua_gettop(L) > ncolor) dd_error(L, "draw.%s: expected %d arguments, got %d", fn, ncolor, lua_gettop(L));
    fill_shapes(L, &c, &s, 1, rgb, alpha);
    return 0;
}

static int l_circle(lua_State *L) { return draw_single(L, 0); }
static int l_ellipse(lua_State *L) { return draw_single(L, 1); }
static int l_capsule(lua_State *L) { return draw_single(L, 2); }

static int l_polygon(lua_State *L) {
    RasterCanvas c = lcanvas_check(L, 1, "polygon");
    int n = polygon_count(L, 2, "polygon", "xy");
    float rgb[3], alpha;
    lcolor_check(L, 3, "polygon", "color", rgb, &alpha);
    if (lua_gettop(L) > 3) dd_error(L, "draw.polygon: expected 3 arguments, got %d", lua_gettop(L));
    float *xy = scratch_get(L, 2, sizeof(float) * 2 * (size_t)n);
    polygon_read(L, 2, "polygon", "xy", xy, n);
    Shape s = {.kind = SHAPE_POLYGON, .xy = xy, .n = n};
    fill_shapes(L, &c, &s, 1, rgb, alpha);
    return 0;
}

/* dd.draw.shapes(canvas, list, color): list entries {"kind", numbers...}. */
static int l_shapes(lua_State *L) {
    RasterCanvas c = lcanvas_check(L, 1, "shapes");
    if (lua_type(L, 2) != LUA_TTABLE)
        dd_error(L, "draw.shapes: list must be a table of shapes, got %s", luaL_typename(L, 2));
    float rgb[3], alpha;
    lcolor_check(L, 3, "shapes", "color", rgb, &alpha);
    if (lua_gettop(L) > 3) dd_error(L, "draw.shapes: expected 3 arguments, got %d", lua_gettop(L));
    lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
    if (n > 1000000) dd_error(L, "draw.shapes: at most 1000000 shapes, got %lld", n);
    /* Pass 1: kinds, value counts and polygon sizes, so one buffer fits all. */
    size_t nvert = 0;
    char what[64];
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, 2, i) != LUA_TTABLE)
            dd_error(L, "draw.shapes: shape %lld must be a table {kind, ...}, got %s", i, luaL_typename(L, -1));
        int e = lua_gettop(L);
        if (lua_rawgeti(L, e, 1) != LUA_TSTRING)
            dd_error(L, "draw.shapes: shape %lld: kind must be a string (circle, ellipse, capsule, polygon), got %s",
                       i, luaL_typename(L, -1));
        const char *kind = lua_tostring(L, -1);
        lua_Integer len = (lua_Integer)lua_rawlen(L, e);
        if (strcmp(kind, "polygon") == 0) {
            if (len != 2) dd_error(L, "draw.shapes: shape %lld (polygon) must be {\"polygon\", {x1, y1, ...}}, got %lld values", i, len);
            lua_rawgeti(L, e, 2);
            snprintf(what, sizeof what, "shape %lld (polygon)", (long long)i);
            nvert += (size_t)polygon_count(L, -1, "shapes", what);
            lua_pop(L, 1);
        } else {
            int k = 0;
            while (k < 3 && strcmp(kind, shape_kinds[k].name) != 0) k++;
            if (k == 3)
                dd_error(L, "draw.shapes: shape %lld: unknown kind '%s' (known: circle, ellipse, capsule, polygon)", i, kind);
            if (len != 1 + shape_kinds[k].nparams)
                dd_error(L, "draw.shapes: shape %lld (%s) must have %d numbers after its kind, got %lld", i, kind,
                           shape_kinds[k].nparams, len - 1);
        }
        lua_pop(L, 2);
    }
    Shape *shapes = scratch_get(L, 2, sizeof(Shape) * (size_t)n + sizeof(float) * 2 * nvert);
    float *xy = (float *)(shapes + n);
    /* Pass 2: the values. */
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        int e = lua_gettop(L);
        lua_rawgeti(L, e, 1);
        const char *kind = lua_tostring(L, -1);
        Shape *s = &shapes[i - 1];
        memset(s, 0, sizeof *s);
        if (strcmp(kind, "polygon") == 0) {
            lua_rawgeti(L, e, 2);
            snprintf(what, sizeof what, "shape %lld (polygon)", (long long)i);
            s->kind = SHAPE_POLYGON;
            s->n = polygon_count(L, -1, "shapes", what);
            polygon_read(L, lua_gettop(L), "shapes", what, xy, s->n);
            s->xy = xy;
            xy += 2 * s->n;
            lua_pop(L, 1);
        } else {
            int k = 0;
            while (strcmp(kind, shape_kinds[k].name) != 0) k++;
            for (int j = 0; j < shape_kinds[k].nparams; j++) lua_rawgeti(L, e, j + 2);
            snprintf(what, sizeof what, "shape %lld (%s) ", (long long)i, kind);
            shape_params(L, k, e + 2, "shapes", what, s);
            lua_pop(L, shape_kinds[k].nparams);
        }
        lua_pop(L, 2);
    }
    fill_shapes(L, &c, shapes, (int)n, rgb, alpha);
    return 0;
}

static void check_nargs(lua_State *L, const char *fn, int lo, int hi) {
    int n = lua_gettop(L);
    if (n < lo || n > hi) {
        if (lo == hi) dd_error(L, "draw.%s: expected %d arguments, got %d", fn, lo, n);
        dd_error(L, "draw.%s: expected %d to %d arguments, got %d", fn, lo, hi, n);
    }
}

static int l_fill(lua_State *L) {
    check_nargs(L, "fill", 2, 2);
    RasterCanvas c = lcanvas_check(L, 1, "fill");
    float rgb[3];
    lcolor_check(L, 2, "fill", "color", rgb, NULL);
    raster_fill(&c, rgb);
    return 0;
}

static int l_linear_gradient(lua_State *L) {
    const char *fn = "linear_gradient";
    check_nargs(L, fn, 7, 7);
    RasterCanvas c = lcanvas_check(L, 1, fn);
    float x0 = lnum(L, 2, fn, "x0"), y0 = lnum(L, 3, fn, "y0"), x1 = lnum(L, 4, fn, "x1"), y1 = lnum(L, 5, fn, "y1");
    float c0[3], c1[3];
    lcolor_check(L, 6, fn, "color0", c0, NULL);
    lcolor_check(L, 7, fn, "color1", c1, NULL);
    raster_linear_gradient(&c, x0, y0, x1, y1, c0, c1);
    return 0;
}

static int l_radial_gradient(lua_State *L) {
    const char *fn = "radial_gradient";
    check_nargs(L, fn, 6, 6);
    RasterCanvas c = lcanvas_check(L, 1, fn);
    float cx = lnum(L, 2, fn, "cx"), cy = lnum(L, 3, fn, "cy"), r = lnum_range(L, 4, fn, "radius", 0, 1e30f);
    float ci[3], co[3];
    lcolor_check(L, 5, fn, "color_inner", ci, NULL);
    lcolor_check(L, 6, fn, "color_outer", co, NULL);
    raster_radial_gradient(&c, cx, cy, r, ci, co);
    return 0;
}

static int l_glow(lua_State *L) {
    const char *fn = "glow";
    check_nargs(L, fn, 6, 6);
    RasterCanvas c = lcanvas_check(L, 1, fn);
    float cx = lnum(L, 2, fn, "cx"), cy = lnum(L, 3, fn, "cy"), r = lnum_range(L, 4, fn, "radius", 0, 1e30f);
    float rgb[3];
    lcolor_check(L, 5, fn, "color", rgb, NULL);
    float k = lnum_range(L, 6, fn, "intensity", 0, 1);
    raster_glow(&c, cx, cy, r, rgb, k);
    return 0;
}

static int l_beam(lua_State *L) {
    const char *fn = "beam";
    check_nargs(L, fn, 7, 8);
    RasterCanvas c = lcanvas_check(L, 1, fn);
    float x = lnum(L, 2, fn, "x"), y = lnum(L, 3, fn, "y"), angle = lnum(L, 4, fn, "angle");
    float spread = lnum(L, 5, fn, "spread");
    if (!(spread > 0 && spread <= 1.5f))
        dd_error(L, "draw.beam: spread (half-angle, radians) must be in (0, 1.5], got %f", (double)spread);
    float rgb[3];
    lcolor_check(L, 6, fn, "color", rgb, NULL);
    float k = lnum_range(L, 7, fn, "intensity", 0, 1);
    float softness = lua_isnoneornil(L, 8) ? 0.3f : lnum_range(L, 8, fn, "softness", 0, 1);
    raster_beam(&c, x, y, angle, spread, rgb, k, softness);
    return 0;
}

static const luaL_Reg draw_functions[] = {
    {"circle", l_circle}, {"ellipse", l_ellipse}, {"capsule", l_capsule}, {"polygon", l_polygon},
    {"shapes", l_shapes}, {"fill", l_fill}, {"linear_gradient", l_linear_gradient},
    {"radial_gradient", l_radial_gradient}, {"glow", l_glow}, {"beam", l_beam}, {NULL, NULL}};

void bind_draw_open(lua_State *L, int dd) {
    lua_newtable(L);
    lua_pushnil(L); /* upvalue 1: coverage scratch */
    lua_pushnil(L); /* upvalue 2: shape and vertex scratch */
    luaL_setfuncs(L, draw_functions, 2);
    lua_setfield(L, dd, "draw");
}

/* bind_tensor_print.c: tostring(t) in PyTorch's style: one number format for
 * the whole tensor (integers as "3.", fixed "%.4f" or scientific when the
 * range is wide), 3 edge items per dimension past 1000 elements, lines wrapped
 * at 80 columns, and the shape at the end. */
#include "bind.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define PRINT_THRESHOLD 1000
#define PRINT_EDGE 3
#define PRINT_WIDTH 80

typedef struct Fmt {
    int mode; /* 0 integer-valued, 1 fixed, 2 scientific */
    int width;
    int summarize;
} Fmt;

static int fmt_one(char *buf, size_t n, const Fmt *f, float v) {
    if (isnan(v)) return snprintf(buf, n, "nan");
    if (isinf(v)) return snprintf(buf, n, v > 0 ? "inf" : "-inf");
    if (f->mode == 0) return snprintf(buf, n, "%.0f.", (double)v);
    if (f->mode == 1) return snprintf(buf, n, "%.4f", (double)v);
    return snprintf(buf, n, "%.4e", (double)v);
}

/* The index after i along a dimension of size n, skipping the summarized
 * middle, so a huge (even expanded) tensor costs only what is printed. */
static int64_t next_shown(const Fmt *f, int64_t i, int64_t n) {
    if (f->summarize && n > 2 * PRINT_EDGE && i == PRINT_EDGE - 1) return n - PRINT_EDGE;
    return i + 1;
}

static void scan(const Tensor *t, int d, const float *p, const Fmt *f, double *amin, double *amax, int *ints) {
    for (int64_t i = 0; i < t->shape[d]; i = next_shown(f, i, t->shape[d])) {
        const float *q = p + i * t->stride[d];
        if (d < t->ndim - 1) {
            scan(t, d + 1, q, f, amin, amax, ints);
            continue;
        }
        float v = *q;
        if (!isfinite(v)) continue;
        if (v != floorf(v)) *ints = 0;
        double a = fabs((double)v);
        if (a == 0) continue;
        if (a < *amin) *amin = a;
        if (a > *amax) *amax = a;
    }
}

/* The widest formatted value among those printed (PyTorch pads to it). */
static void measure(const Tensor *t, int d, const float *p, Fmt *f) {
    char num[64];
    for (int64_t i = 0; i < t->shape[d]; i = next_shown(f, i, t->shape[d])) {
        const float *q = p + i * t->stride[d];
        if (d < t->ndim - 1) {
            measure(t, d + 1, q, f);
            continue;
        }
        int len = fmt_one(num, sizeof num, f, *q);
        if (len > f->width) f->width = len;
    }
}

static void emit(luaL_Buffer *b, const Tensor *t, int d, const float *p, const Fmt *f, int indent) {
    char num[64];
    int64_t n = t->shape[d];
    luaL_addchar(b, '[');
    if (d == t->ndim - 1) {
        int per_line = (PRINT_WIDTH - indent) / (f->width + 2);
        if (per_line < 1) per_line = 1;
        int on_line = 0;
        for (int64_t i = 0; i < n; i = next_shown(f, i, n)) {
            if (i == n - PRINT_EDGE && f->summarize && n > 2 * PRINT_EDGE) luaL_addstring(b, " ...,");
            if (on_line == per_line) {
                luaL_addchar(b, '\n');
                for (int k = 0; k < indent + 1; k++) luaL_addchar(b, ' ');
                on_line = 0;
            } else if (i > 0) {
                luaL_addchar(b, ' ');
            }
            int len = fmt_one(num, sizeof num, f, p[i * t->stride[d]]);
            for (int k = len; k < f->width; k++) luaL_addchar(b, ' ');
            luaL_addstring(b, num);
            if (i < n - 1) luaL_addchar(b, ',');
            on_line++;
        }
    } else {
        for (int64_t i = 0; i < n; i = next_shown(f, i, n)) {
            if (i > 0) {
                for (int k = 0; k < t->ndim - d - 1; k++) luaL_addchar(b, '\n');
                for (int k = 0; k < indent + 1; k++) luaL_addchar(b, ' ');
            }
            if (i == n - PRINT_EDGE && f->summarize && n > 2 * PRINT_EDGE) {
                luaL_addstring(b, "...,");
                for (int k = 0; k < t->ndim - d - 1; k++) luaL_addchar(b, '\n');
                for (int k = 0; k < indent + 1; k++) luaL_addchar(b, ' ');
            }
            emit(b, t, d + 1, p + i * t->stride[d], f, indent + 1);
            if (i < n - 1) luaL_addchar(b, ',');
        }
    }
    luaL_addchar(b, ']');
}

void ltensor_push_string(lua_State *L, const Tensor *t) {
    char num[64], shape[256];
    Fmt f = {0, 1, tensor_numel(t) > PRINT_THRESHOLD};
    double amin = INFINITY, amax = 0;
    int ints = 1;
    if (t->ndim == 0) {
        float v = *tensor_data(t);
        f.mode = isfinite(v) && v == floorf(v) && fabsf(v) < 1e8f ? 0 : 1;
        if (f.mode == 1 && isfinite(v) && (fabsf(v) >= 1e8f || (v != 0 && fabsf(v) < 1e-4f))) f.mode = 2;
        fmt_one(num, sizeof num, &f, v);
        lua_pushfstring(L, "tensor(%s)", num);
        return;
    }
    if (tensor_numel(t) == 0) {
        lua_pushfstring(L, "tensor([], shape=%s)", shape_format(shape, sizeof shape, t->ndim, t->shape));
        return;
    }
    scan(t, 0, tensor_data(t), &f, &amin, &amax, &ints);
    if (amax == 0) amin = 0;
    if (ints && amax < 1e8) f.mode = 0;
    else if (amax > 0 && (amax / amin > 1000.0 || amax >= 1e8 || amin < 1e-4)) f.mode = 2;
    else f.mode = 1;
    measure(t, 0, tensor_data(t), &f);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "tensor(");
    emit(&b, t, 0, tensor_data(t), &f, 7);
    luaL_addstring(&b, ", shape=");
    luaL_addstring(&b, shape_format(shape, sizeof shape, t->ndim, t->shape));
    luaL_addchar(&b, ')');
    luaL_pushresult(&b);
}

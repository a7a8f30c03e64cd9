/* bind_metrics.c: dd.metrics.* (kernels in metrics.c).
 *   binary_accuracy(pred, target [, threshold=0.5]) -> fraction
 *   categorical_accuracy(pred, target) -> fraction        (rows of the last dim)
 *   iou(a, b [, {threshold=0.5, foreground='dark'|'light'}]) -> mean, per-sample Tensor
 * Inputs must have exactly the same shape; non-contiguous ones are copied. */
#include "bind.h"
#include "metrics.h"

#include <string.h>

/* A contiguous version of the tensor at idx (replacing it on the stack). */
static Tensor *contiguous_arg(lua_State *L, int idx, const char *fn, const char *what) {
    Tensor *t = ltensor_test(L, idx);
    if (!t) dd_error(L, "%s: %s must be a Tensor, got %s", fn, what, luaL_typename(L, idx));
    if (tensor_is_contiguous(t)) return t;
    Tensor *c = ltensor_push_uninit(L, t->ndim, t->shape);
    tensor_copy_data(c, t);
    lua_replace(L, idx);
    return c;
}

/* The shared check: two non-empty tensors of the same shape at 1 and 2. */
static void pair_check(lua_State *L, const char *fn, const char *na, const char *nb, Tensor **a, Tensor **b) {
    *a = contiguous_arg(L, 1, fn, na);
    *b = contiguous_arg(L, 2, fn, nb);
    char sa[256], sb[256];
    if (!tensor_same_shape(*a, *b))
        dd_error(L, "%s: %s has shape %s but %s has shape %s (they must match exactly)", fn, na,
                   shape_format(sa, sizeof sa, (*a)->ndim, (*a)->shape), nb,
                   shape_format(sb, sizeof sb, (*b)->ndim, (*b)->shape));
    if (tensor_numel(*a) == 0)
        dd_error(L, "%s: %s and %s are empty (shape %s)", fn, na, nb,
                   shape_format(sa, sizeof sa, (*a)->ndim, (*a)->shape));
}

static double opt_threshold(lua_State *L, int idx, const char *fn) {
    if (lua_isnil(L, idx)) return 0.5;
    if (lua_type(L, idx) != LUA_TNUMBER)
        dd_error(L, "%s: threshold must be a number, got %s", fn, luaL_typename(L, idx));
    return lua_tonumber(L, idx);
}

static int l_binary_accuracy(lua_State *L) {
    const char *fn = "binary_accuracy";
    if (lua_gettop(L) > 3) return dd_error(L, "%s: expected (pred, target [, threshold]), got %d arguments", fn, lua_gettop(L));
    lua_settop(L, 3);
    double threshold = opt_threshold(L, 3, fn);
    Tensor *y, *t;
    pair_check(L, fn, "pred", "target", &y, &t);
    int64_t n = tensor_numel(y);
    lua_pushnumber(L, (double)binary_accuracy_count(tensor_data(y), tensor_data(t), n, (float)threshold) / (double)n);
    return 1;
}

static int l_categorical_accuracy(lua_State *L) {
    const char *fn = "categorical_accuracy";
    if (lua_gettop(L) > 2) return dd_error(L, "%s: expected (pred, target), got %d arguments", fn, lua_gettop(L));
    lua_settop(L, 2);
    Tensor *y, *t;
    pair_check(L, fn, "pred", "target", &y, &t);
    if (y->ndim < 1)
        return dd_error(L, "%s: pred must have a class dimension, e.g. (N, C), got a 0-d tensor", fn);
    int64_t cols = y->shape[y->ndim - 1], rows = tensor_numel(y) / cols;
    lua_pushnumber(L, (double)categorical_accuracy_count(tensor_data(y), tensor_data(t), rows, cols) / (double)rows);
    return 1;
}

static int l_iou(lua_State *L) {
    const char *fn = "iou";
    if (lua_gettop(L) > 3) return dd_error(L, "%s: expected (a, b [, options]), got %d arguments", fn, lua_gettop(L));
    lua_settop(L, 3);
    double threshold = 0.5;
    MaskForeground fg = MASK_DARK;
    if (!lua_isnil(L, 3)) {
        if (!lua_istable(L, 3)) return dd_error(L, "%s: options must be a table, got %s", fn, luaL_typename(L, 3));
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            lua_pop(L, 1);
            const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
            if (!key || (strcmp(key, "threshold") != 0 && strcmp(key, "foreground") != 0))
                return dd_error(L, "%s: unknown option '%s' (known: threshold, foreground)", fn,
                                  luaL_tolstring(L, -1, NULL));
        }
        lua_getfield(L, 3, "threshold");
        threshold = opt_threshold(L, -1, fn);
        lua_getfield(L, 3, "foreground");
        if (!lua_isnil(L, -1)) {
            const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
            if (strcmp(s, "dark") == 0) fg = MASK_DARK;
            else if (strcmp(s, "light") == 0) fg = MASK_LIGHT;
            else
                return dd_error(L, "%s: option 'foreground' must be 'dark' or 'light', got %s", fn,
                                  lua_type(L, -1) == LUA_TSTRING ? lua_pushfstring(L, "'%s'", lua_tostring(L, -1))
                                                                 : luaL_typename(L, -1));
        }
        lua_settop(L, 3);
    }
    Tensor *a, *b;
    pair_check(L, fn, "a", "b", &a, &b);
    if (a->ndim < 1)
        return dd_error(L, "%s: masks must be (N, ...) with the samples first, got a 0-d tensor", fn);
    int64_t samples = a->shape[0], per = tensor_numel(a) / samples;
    Tensor *out = ltensor_push_uninit(L, 1, &samples);
    /* per-sample values in double first, kept in a Lua-owned scratch buffer */
    double *iou = lua_newuserdatauv(L, (size_t)samples * sizeof *iou, 0);
    iou_per_sample(iou, tensor_data(a), tensor_data(b), samples, per, (float)threshold, fg);
    double sum = 0;
    float *o = tensor_data(out);
    for (int64_t s = 0; s < samples; s++) {
        sum += iou[s];
        o[s] = (float)iou[s];
    }
    lua_pop(L, 1);
    lua_pushnumber(L, sum / (double)samples);
    lua_insert(L, -2);
    return 2;
}

static const luaL_Reg metrics_functions[] = {{"binary_accuracy", l_binary_accuracy},
                                             {"categorical_accuracy", l_categorical_accuracy},
                                             {"iou", l_iou},
                                             {NULL, NULL}};

void bind_metrics_open(lua_State *L, int dd) {
    dd = lua_absindex(L, dd);
    luaL_getsubtable(L, dd, "metrics");
    luaL_setfuncs(L, metrics_functions, 0);
    lua_pop(L, 1);
}

/* bind_vision.c: dd.vision.* (kernels in vision.c).
 *   silhouette(frame [, {method='threshold', sum_above=230}])
 *   silhouette(frame, {method='median', background=bg, threshold=0.1, open=1, close=2, min_area=0.002, shape='square'})
 *   background_model(frames | (N,C,H,W) tensor | video | function(i, n) [, {samples=N}])
 *   morph(mask, 'erode'|'dilate'|'open'|'close', radius [, {shape='square'|'disc', foreground='light'|'dark'}])
 *   components(mask [, {foreground='light'}]) -> labels, count, areas
 *   resize(t, h, w [, {filter='area'|'bilinear', fit='stretch'|'crop'|'pad', pad_value=1}])
 *   to_grey(t)
 *   flip_shift(t, {flip=false, dx=0, dy=0, fill=1})   (augmentation: per image or for all)
 * Arguments are checked here; every buffer the kernels use is a Lua userdata,
 * so an error raised at any point leaks nothing. */
#include "bind.h"
#include "vision.h"

#include <math.h>
#include <string.h>

/* ---- argument helpers ---- */

/* Pushes opts[key] (nil when there is no options table). */
static int opt_get(lua_State *L, int idx, const char *key) {
    if (!lua_istable(L, idx)) {
        lua_pushnil(L);
        return LUA_TNIL;
    }
    return lua_getfield(L, idx, key);
}

static double opt_number(lua_State *L, int idx, const char *fn, const char *key, double dflt, double lo, double hi) {
    int t = opt_get(L, idx, key);
    double v = dflt;
    if (t != LUA_TNIL) {
        if (t != LUA_TNUMBER) dd_error(L, "%s: option '%s' must be a number, got %s", fn, key, luaL_typename(L, -1));
        v = lua_tonumber(L, -1);
        if (!(v >= lo && v <= hi)) dd_error(L, "%s: option '%s' must be in [%g, %g], got %g", fn, key, lo, hi, v);
    }
    lua_pop(L, 1);
    return v;
}

static int64_t opt_int(lua_State *L, int idx, const char *fn, const char *key, int64_t dflt, int64_t lo, int64_t hi) {
    int t = opt_get(L, idx, key);
    int64_t v = dflt;
    if (t != LUA_TNIL) {
        int isint = 0;
        lua_Integer i = lua_tointegerx(L, -1, &isint);
        if (t != LUA_TNUMBER || !isint)
            dd_error(L, "%s: option '%s' must be an integer, got %s", fn, key,
                       t == LUA_TNUMBER ? lua_tostring(L, -1) : luaL_typename(L, -1));
        if (i < lo || i > hi)
            dd_error(L, "%s: option '%s' must be in [%lld, %lld], got %lld", fn, key, (long long)lo, (long long)hi, (long long)i);
        v = i;
    }
    lua_pop(L, 1);
    return v;
}

/* Index of opts[key] in choices (NULL-ended), dflt when absent. */
static int opt_choice(lua_State *L, int idx, const char *fn, const char *key, const char *const *choices, int dflt) {
    int t = opt_get(L, idx, key);
    int v = dflt;
    if (t != LUA_TNIL) {
        const char *s = t == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        for (v = 0; s && choices[v] && strcmp(s, choices[v]) != 0; v++) {}
        if (!s || !choices[v]) {
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            for (int i = 0; choices[i]; i++) {
                if (i) luaL_addstring(&b, ", ");
                lua_pushfstring(L, "'%s'", choices[i]);
                luaL_addvalue(&b);
            }
            luaL_pushresult(&b);
            const char *names = lua_tostring(L, -1);
            const char *got = s ? lua_pushfstring(L, "'%s'", s) : luaL_typename(L, -2);
            dd_error(L, "%s: option '%s' must be one of %s, got %s", fn, key, names, got);
        }
    }
    lua_pop(L, 1);
    return v;
}

/* The tensor at idx made contiguous (a copy replaces it on the stack). */
static Tensor *tensor_arg(lua_State *L, int idx, const char *fn, const char *what) {
    Tensor *t = ltensor_test(L, idx);
    if (!t) dd_error(L, "%s: %s must be a Tensor, got %s", fn, what, luaL_typename(L, idx));
    if (tensor_is_contiguous(t)) return t;
    Tensor *c = ltensor_push_uninit(L, t->ndim, t->shape);
    tensor_copy_data(c, t);
    lua_replace(L, idx);
    return c;
}

static const char *shape_str(const Tensor *t, char *buf, size_t len) { return shape_format(buf, len, t->ndim, t->shape); }

/* Zero-initialised scratch owned by a new userdata on the stack. */
static void *scratch_push(lua_State *L, size_t bytes) {
    void *p = lua_newuserdatauv(L, bytes ? bytes : 1, 0);
    memset(p, 0, bytes);
    return p;
}

/* Image planes: (H, W), (C, H, W) or (N, C, H, W): H, W last, planes = the rest. */
static void image_dims(lua_State *L, const Tensor *t, const char *fn, const char *what, int min_dims,
                       int64_t *planes, int64_t *h, int64_t *w) {
    char s[256];
    if (t->ndim < min_dims || t->ndim > 4)
        dd_error(L, "%s: %s must be %s, got shape %s", fn, what,
                   min_dims == 2 ? "(H,W), (C,H,W) or (N,C,H,W)" : "(C,H,W) or (N,C,H,W)", shape_str(t, s, sizeof s));
    *h = t->shape[t->ndim - 2];
    *w = t->shape[t->ndim - 1];
    *planes = 1;
    for (int i = 0; i < t->ndim - 2; i++) *planes *= t->shape[i];
    if (*h == 0 || *w == 0) dd_error(L, "%s: %s is empty (shape %s)", fn, what, shape_str(t, s, sizeof s));
}

/* ---- silhouettes ---- */

static const char *const shape_names[] = {"square", "disc", NULL};
static const char *const foreground_names[] = {"light", "dark", NULL};

/* frame (C,H,W) or (N,C,H,W); the output has C = 1. */
static Tensor *push_single_channel(lua_State *L, const Tensor *frame) {
    int64_t shape[4];
    memcpy(shape, frame->shape, sizeof(int64_t) * frame->ndim);
    shape[frame->ndim - 3] = 1;
    return ltensor_push_uninit(L, frame->ndim, shape);
}

/* frame may be a view: rows with unit stride are read in place (a crop of a
 * video frame is not copied first). */
static int silhouette_by_threshold(lua_State *L, const char *fn, Tensor *frame, int64_t n, int64_t c, int64_t h,
                                   int64_t w) {
    static const char *const known[] = {"method", "sum_above", NULL};
    lopts_check(L, 2, fn, known);
    double sum_above = opt_number(L, 2, fn, "sum_above", 230.0, -1.0, 765.0);
    char s[256];
    if (c != 1 && c != 3)
        return dd_error(L, "%s: method 'threshold' needs 1 or 3 channels, got shape %s", fn, shape_str(frame, s, sizeof s));
    Tensor *out = push_single_channel(L, frame);
    const int d = frame->ndim;
    const int64_t sn = d == 4 ? frame->stride[0] : 0, sc = frame->stride[d - 3], sh = frame->stride[d - 2];
    const float *base = tensor_data(frame);
    float *dst = tensor_data(out);
    if (tensor_is_contiguous(frame)) {
        for (int64_t i = 0; i < n; i++) silhouette_threshold(dst + i * h * w, base + i * c * h * w, (int)c, h * w, h * w, sum_above);
        return 1;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t y = 0; y < h; y++)
            silhouette_threshold(dst + (i * h + y) * w, base + i * sn + y * sh, (int)c, sc, w, sum_above);
    return 1;
}

static int silhouette_by_median(lua_State *L, const char *fn, Tensor *frame, int64_t n, int64_t c, int64_t h,
                                int64_t w) {
    static const char *const known[] = {"method", "background", "threshold", "open", "close", "min_area", "shape", NULL};
    lopts_check(L, 2, fn, known);
    char s[256], s2[256];
    if (opt_get(L, 2, "background") == LUA_TNIL)
        return dd_error(L, "%s: method 'median' needs option 'background' (from dd.vision.background_model)", fn);
    lua_replace(L, 3);
    Tensor *bg = tensor_arg(L, 3, fn, "option 'background'");
    if (bg->ndim != 3 || bg->shape[0] != c || bg->shape[1] != h || bg->shape[2] != w)
        return dd_error(L, "%s: background has shape %s but the frame has shape %s (expected (%d,%d,%d))", fn,
                          shape_str(bg, s, sizeof s), shape_str(frame, s2, sizeof s2), (int)c, (int)h, (int)w);
    double threshold = opt_number(L, 2, fn, "threshold", 0.1, 0.0, 1.0);
    int open = (int)opt_int(L, 2, fn, "open", 1, 0, 1000);
    int close = (int)opt_int(L, 2, fn, "close", 2, 0, 1000);
    double min_area = opt_number(L, 2, fn, "min_area", 0.002, 0.0, HUGE_VAL);
    MorphShape shape = opt_choice(L, 2, fn, "shape", shape_names, MORPH_SQUARE) == 0 ? MORPH_SQUARE : MORPH_DISC;
    int64_t hw = h * w;
    if (hw >= INT32_MAX) return dd_error(L, "%s: frame of %lld pixels is too large (at most 2^31)", fn, (long long)hw);
    int64_t min_pixels = (int64_t)ceil(min_area < 1.0 ? min_area * (double)hw : min_area);

    int radius = open > close ? open : close;
    int64_t max_count = components_max_count(h, w);
    size_t bytes = (size_t)(max_count + 1) * sizeof(int64_t) + 2 * (size_t)hw * sizeof(int32_t) +
                   morph_scratch_bytes(h, w, radius) + (size_t)hw;
    char *mem = scratch_push(L, bytes);
    int64_t *areas = (int64_t *)mem;
    int32_t *labels = (int32_t *)(areas + max_count + 1), *stack = labels + hw;
    void *morph = stack + hw;
    uint8_t *mask = (uint8_t *)morph + morph_scratch_bytes(h, w, radius);

    Tensor *out = push_single_channel(L, frame);
    for (int64_t i = 0; i < n; i++) {
        foreground_by_difference(mask, tensor_data(frame) + i * c * hw, tensor_data(bg), (int)c, hw, (float)threshold);
        morph_apply(mask, h, w, MORPH_OPEN, open, shape, morph);
        morph_apply(mask, h, w, MORPH_CLOSE, close, shape, morph);
        components_remove_small(mask, h, w, min_pixels, labels, stack, areas);
        float *o = tensor_data(out) + i * hw;
        for (int64_t p = 0; p < hw; p++) o[p] = mask[p] ? 0.0f : 1.0f; /* dancer black on white */
    }
    return 1;
}

static int l_silhouette(lua_State *L) {
    const char *fn = "vision.silhouette";
    if (lua_gettop(L) > 2) return dd_error(L, "%s: expected (frame [, options]), got %d arguments", fn, lua_gettop(L));
    lua_settop(L, 3);
    Tensor *frame = ltensor_test(L, 1);
    if (!frame) return dd_error(L, "%s: frame must be a Tensor, got %s", fn, luaL_typename(L, 1));
    if (!lua_isnil(L, 2) && !lua_istable(L, 2))
        return dd_error(L, "%s: options must be a table, got %s", fn, luaL_typename(L, 2));
    static const char *const methods[] = {"threshold", "median", NULL};
    int method = opt_choice(L, 2, fn, "method", methods, 0);
    int64_t planes, h, w;
    image_dims(L, frame, fn, "frame", 3, &planes, &h, &w);
    int64_t c = frame->shape[frame->ndim - 3], n = frame->ndim == 4 ? frame->shape[0] : 1;
    if (method == 0 && frame->stride[frame->ndim - 1] == 1) return silhouette_by_threshold(L, fn, frame, n, c, h, w);
    frame = tensor_arg(L, 1, fn, "frame");
    if (method == 0) return silhouette_by_threshold(L, fn, frame, n, c, h, w);
    return silhouette_by_median(L, fn, frame, n, c, h, w);
}

/* ---- background model ---- */

typedef enum SourceKind { SOURCE_LIST, SOURCE_TENSOR, SOURCE_VIDEO, SOURCE_FUNCTION } SourceKind;

/* Does the value at idx answer seek, read and duration (a dd.video reader)? */
static int is_video(lua_State *L, int idx) {
    int t = lua_type(L, idx);
    if (t != LUA_TTABLE && t != LUA_TUSERDATA) return 0;
    if (t == LUA_TUSERDATA) { /* indexable only through its metatable's __index */
        if (luaL_getmetafield(L, idx, "__index") == LUA_TNIL) return 0;
        lua_pop(L, 1);
    }
    int ok = 1;
    static const char *const keys[] = {"seek", "read", "duration"};
    for (int i = 0; i < 3; i++) {
        lua_getfield(L, idx, keys[i]);
        ok &= !lua_isnil(L, -1);
        lua_pop(L, 1);
    }
    return ok;
}

/* Pushes the i-th (0-based) of n samples from the source at 1. */
static void sample_push(lua_State *L, const char *fn, SourceKind kind, int64_t count, double duration, int i, int n) {
    switch (kind) {
    case SOURCE_LIST: {
        int64_t k = (int64_t)floor(((double)i + 0.5) * (double)count / n); /* evenly over the list */
        lua_rawgeti(L, 1, k + 1);
        break;
    }
    case SOURCE_TENSOR: {
        int64_t k = (int64_t)floor(((double)i + 0.5) * (double)count / n);
        Tensor *all = ltensor_check(L, 1);
        Tensor *v = ltensor_push_view(L, all);
        tensor_select(v, 0, k);
        break;
    }
    case SOURCE_VIDEO: {
        double t = ((double)i + 0.5) * duration / n; /* the middle of each of n equal spans */
        lua_getfield(L, 1, "seek");
        lua_pushvalue(L, 1);
        lua_pushnumber(L, t);
        lua_call(L, 2, 0);
        lua_getfield(L, 1, "read");
        lua_pushvalue(L, 1);
        lua_call(L, 1, 1);
        if (lua_isnil(L, -1)) dd_error(L, "%s: the video returned no frame after seek(%f) (duration %f)", fn, t, duration);
        break;
    }
    case SOURCE_FUNCTION:
        lua_pushvalue(L, 1);
        lua_pushinteger(L, i + 1);
        lua_pushinteger(L, n);
        lua_call(L, 2, 1);
        break;
    }
}

static int l_background_model(lua_State *L) {
    const char *fn = "vision.background_model";
    static const char *const known[] = {"samples", NULL};
    if (lua_gettop(L) > 2) return dd_error(L, "%s: expected (frames [, options]), got %d arguments", fn, lua_gettop(L));
    lua_settop(L, 2);
    lopts_check(L, 2, fn, known);
    SourceKind kind;
    int64_t count = 0, dflt = 25;
    double duration = 0;
    Tensor *all = ltensor_test(L, 1);
    char s[256], s2[256];
    if (all) {
        kind = SOURCE_TENSOR;
        if (all->ndim != 4) return dd_error(L, "%s: a tensor of frames must be (N,C,H,W), got %s", fn, shape_str(all, s, sizeof s));
        count = dflt = all->shape[0];
    } else if (lua_isfunction(L, 1)) {
        kind = SOURCE_FUNCTION;
    } else if (is_video(L, 1)) {
        kind = SOURCE_VIDEO;
        lua_getfield(L, 1, "duration");
        duration = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || !(duration > 0) || !isfinite(duration))
            return dd_error(L, "%s: the video's duration must be a positive number, got %s", fn, luaL_tolstring(L, -1, NULL));
        lua_pop(L, 1);
    } else if (lua_istable(L, 1)) {
        kind = SOURCE_LIST;
        count = dflt = (int64_t)lua_rawlen(L, 1);
    } else {
        return dd_error(L, "%s: expected a list of frames, an (N,C,H,W) tensor, a video (seek, read, duration) "
                          "or a function(i, n), got %s", fn, luaL_typename(L, 1));
    }
    if ((kind == SOURCE_LIST || kind == SOURCE_TENSOR) && count == 0) return dd_error(L, "%s: no frames given", fn);
    int64_t hi = (kind == SOURCE_LIST || kind == SOURCE_TENSOR) ? count : 100000;
    int n = (int)opt_int(L, 2, fn, "samples", dflt < hi ? dflt : hi, 1, hi);

    BackgroundModel model = {0};
    Tensor first = {0};
    int64_t values = 0;
    for (int i = 0; i < n; i++) {
        int top = lua_gettop(L);
        sample_push(L, fn, kind, count, duration, i, n);
        Tensor *f = ltensor_test(L, -1);
        if (!f) return dd_error(L, "%s: sample %d is not a Tensor but %s", fn, i + 1, luaL_typename(L, -1));
        if (!tensor_is_contiguous(f)) {
            Tensor *c = ltensor_push_uninit(L, f->ndim, f->shape);
            tensor_copy_data(c, f);
            f = c;
        }
        if (i == 0) {
            if (f->ndim != 3 && f->ndim != 2)
                return dd_error(L, "%s: frames must be (C,H,W) or (H,W), sample 1 has shape %s", fn, shape_str(f, s, sizeof s));
            values = tensor_numel(f);
            if (values == 0) return dd_error(L, "%s: sample 1 is empty (shape %s)", fn, shape_str(f, s, sizeof s));
            first.ndim = f->ndim;
            memcpy(first.shape, f->shape, sizeof first.shape);
            /* the samples live in a userdata kept below everything else */
            uint16_t *mem = scratch_push(L, background_model_bytes(values, n));
            lua_replace(L, 2); /* options were read already */
            background_model_init(&model, mem, values, n);
        } else if (!tensor_same_shape(f, &first)) {
            return dd_error(L, "%s: sample %d has shape %s but sample 1 has shape %s", fn, i + 1,
                              shape_str(f, s, sizeof s), shape_format(s2, sizeof s2, first.ndim, first.shape));
        }
        background_model_add(&model, tensor_data(f));
        lua_settop(L, top);
    }
    Tensor *out = ltensor_push_uninit(L, first.ndim, first.shape);
    uint16_t *scratch = scratch_push(L, (size_t)n * sizeof(uint16_t));
    background_model_median(&model, tensor_data(out), scratch);
    lua_pop(L, 1);
    return 1;
}

/* ---- morphology and components ---- */

/* Planes of a mask as bytes: 1 where foreground ('light': > 0.5, 'dark': < 0.5). */
static void mask_from_tensor(uint8_t *mask, const float *v, int64_t n, int dark) {
    for (int64_t p = 0; p < n; p++) mask[p] = dark ? v[p] < 0.5f : v[p] > 0.5f;
}

static int l_morph(lua_State *L) {
    const char *fn = "vision.morph";
    static const char *const known[] = {"shape", "foreground", NULL};
    static const char *const ops[] = {"erode", "dilate", "open", "close", NULL};
    static const MorphOp op_values[] = {MORPH_ERODE, MORPH_DILATE, MORPH_OPEN, MORPH_CLOSE};
    if (lua_gettop(L) > 4) return dd_error(L, "%s: expected (mask, op, radius [, options]), got %d arguments", fn, lua_gettop(L));
    lua_settop(L, 4);
    Tensor *m = tensor_arg(L, 1, fn, "mask");
    const char *op_name = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
    int op = 0;
    while (op_name && ops[op] && strcmp(ops[op], op_name) != 0) op++;
    if (!op_name || !ops[op])
        return dd_error(L, "%s: op must be 'erode', 'dilate', 'open' or 'close', got %s", fn,
                          op_name ? lua_pushfstring(L, "'%s'", op_name) : luaL_typename(L, 2));
    int radius = (int)larg_int(L, 3, "vision.morph: radius", 0, 1000);
    lopts_check(L, 4, fn, known);
    MorphShape shape = opt_choice(L, 4, fn, "shape", shape_names, 0) == 0 ? MORPH_SQUARE : MORPH_DISC;
    int dark = opt_choice(L, 4, fn, "foreground", foreground_names, 0) == 1;
    int64_t planes, h, w;
    image_dims(L, m, fn, "mask", 2, &planes, &h, &w);
    int64_t hw = h * w;
    if (w + 1 >= INT32_MAX || hw >= INT32_MAX) return dd_error(L, "%s: mask plane of %lld pixels is too large", fn, (long long)hw);
    char *mem = scratch_push(L, morph_scratch_bytes(h, w, radius) + (size_t)hw);
    uint8_t *mask = (uint8_t *)mem + morph_scratch_bytes(h, w, radius);
    Tensor *out = ltensor_push_uninit(L, m->ndim, m->shape);
    for (int64_t i = 0; i < planes; i++) {
        mask_from_tensor(mask, tensor_data(m) + i * hw, hw, dark);
        morph_apply(mask, h, w, op_values[op], radius, shape, mem);
        float *o = tensor_data(out) + i * hw;
        for (int64_t p = 0; p < hw; p++) o[p] = (mask[p] != 0) != dark ? 1.0f : 0.0f;
    }
    return 1;
}

static int l_components(lua_State *L) {
    const char *fn = "vision.components";
    static const char *const known[] = {"foreground", NULL};
    if (lua_gettop(L) > 2) return dd_error(L, "%s: expected (mask [, options]), got %d arguments", fn, lua_gettop(L));
    lua_settop(L, 2);
    Tensor *m = tensor_arg(L, 1, fn, "mask");
    lopts_check(L, 2, fn, known);
    int dark = opt_choice(L, 2, fn, "foreground", foreground_names, 0) == 1;
    char s[256];
    if (!(m->ndim == 2 || (m->ndim == 3 && m->shape[0] == 1)))
        return dd_error(L, "%s: mask must be (H,W) or (1,H,W), got shape %s", fn, shape_str(m, s, sizeof s));
    int64_t h = m->shape[m->ndim - 2], w = m->shape[m->ndim - 1], hw = h * w;
    if (hw >= INT32_MAX) return dd_error(L, "%s: mask of %lld pixels is too large (at most 2^31)", fn, (long long)hw);
    char *mem = scratch_push(L, 2 * (size_t)hw * sizeof(int32_t) + (size_t)hw);
    int32_t *labels = (int32_t *)mem, *stack = labels + hw;
    uint8_t *mask = (uint8_t *)(stack + hw);
    mask_from_tensor(mask, tensor_data(m), hw, dark);
    int32_t count = components_label(labels, mask, h, w, stack);
    Tensor *out = ltensor_push_uninit(L, m->ndim, m->shape);
    float *o = tensor_data(out);
    for (int64_t p = 0; p < hw; p++) o[p] = (float)labels[p];
    int64_t *areas = scratch_push(L, (size_t)(count + 1) * sizeof(int64_t));
    components_areas(areas, labels, hw, count);
    lua_createtable(L, count, 0);
    for (int32_t k = 1; k <= count; k++) {
        lua_pushinteger(L, areas[k]);
        lua_rawseti(L, -2, k);
    }
    lua_remove(L, -2); /* the areas scratch */
    lua_pushinteger(L, count);
    lua_insert(L, -2);
    return 3;
}

/* ---- resampling ---- */

static int l_resize(lua_State *L) {
    const char *fn = "vision.resize";
    static const char *const known[] = {"filter", "fit", "pad_value", NULL};
    static const char *const filters[] = {"area", "bilinear", NULL};
    static const char *const fits[] = {"stretch", "crop", "pad", NULL};
    if (lua_gettop(L) > 4) return dd_error(L, "%s: expected (t, h, w [, options]), got %d arguments", fn, lua_gettop(L));
    lua_settop(L, 4);
    Tensor *t = tensor_arg(L, 1, fn, "input");
    int64_t oh = larg_int(L, 2, "vision.resize: height", 1, 1 << 20);
    int64_t ow = larg_int(L, 3, "vision.resize: width", 1, 1 << 20);
    lopts_check(L, 4, fn, known);
    ResizeFilter filter = opt_choice(L, 4, fn, "filter", filters, 0) == 0 ? RESIZE_AREA : RESIZE_BILINEAR;
    int fit = opt_choice(L, 4, fn, "fit", fits, 0);
    float pad_value = (float)opt_number(L, 4, fn, "pad_value", 1.0, -HUGE_VAL, HUGE_VAL);
    int64_t planes, ih, iw;
    image_dims(L, t, fn, "input", 2, &planes, &ih, &iw);

    /* where the picture lands in the output (pad) and what part of the input it shows (crop) */
    int64_t ch = oh, cw = ow, y0 = 0, x0 = 0;
    ResizeSpec spec = resize_spec_stretch(ih, iw, oh, ow, filter);
    if (fit == 1) { /* scale to cover, centre-crop a window of the output's aspect in input pixels */
        if (oh * iw >= ow * ih) {
            spec.src_w = (double)ow * (double)ih / (double)oh;
            spec.src_x = ((double)iw - spec.src_w) / 2.0;
        } else {
            spec.src_h = (double)oh * (double)iw / (double)ow;
            spec.src_y = ((double)ih - spec.src_h) / 2.0;
        }
    } else if (fit == 2) { /* scale to fit, pad the rest (PIL's ImageOps.pad placement) */
        if (oh * iw <= ow * ih) {
            cw = (int64_t)floor((double)iw * (double)oh / (double)ih + 0.5);
            cw = cw < 1 ? 1 : cw > ow ? ow : cw;
        } else {
            ch = (int64_t)floor((double)ih * (double)ow / (double)iw + 0.5);
            ch = ch < 1 ? 1 : ch > oh ? oh : ch;
        }
        y0 = (oh - ch) / 2;
        x0 = (ow - cw) / 2;
        spec.out_h = ch;
        spec.out_w = cw;
    }
    int64_t shape[4];
    memcpy(shape, t->shape, sizeof(int64_t) * t->ndim);
    shape[t->ndim - 2] = oh;
    shape[t->ndim - 1] = ow;
    Tensor *out = ltensor_push_uninit(L, t->ndim, shape);
    if (ch != oh || cw != ow) tensor_fill(out, pad_value);
    ResizePlan plan;
    resize_plan_init(&plan, scratch_push(L, resize_plan_bytes(&spec)), &spec);
    for (int64_t i = 0; i < planes; i++)
        resize_plan_run(&plan, tensor_data(out) + i * oh * ow + y0 * ow + x0, ow, tensor_data(t) + i * ih * iw);
    lua_pop(L, 1);
    return 1;
}

static int l_to_grey(lua_State *L) {
    const char *fn = "vision.to_grey";
    if (lua_gettop(L) != 1) return dd_error(L, "%s: expected (t), got %d arguments", fn, lua_gettop(L));
    Tensor *t = tensor_arg(L, 1, fn, "input");
    int64_t planes, h, w;
    image_dims(L, t, fn, "input", 3, &planes, &h, &w);
    int64_t c = t->shape[t->ndim - 3], n = t->ndim == 4 ? t->shape[0] : 1, hw = h * w;
    char s[256];
    if (c != 1 && c != 3 && c != 4)
        return dd_error(L, "%s: expected 1, 3 or 4 (RGBA: alpha ignored) channels, got shape %s", fn, shape_str(t, s, sizeof s));
    Tensor *out = push_single_channel(L, t);
    for (int64_t i = 0; i < n; i++) {
        if (c == 1) memcpy(tensor_data(out) + i * hw, tensor_data(t) + i * hw, (size_t)hw * sizeof(float));
        else grey_from_rgb(tensor_data(out) + i * hw, tensor_data(t) + i * c * hw, hw);
    }
    return 1;
}

/* opts[key]: one value for every image, or a list of one per image; the
 * n values go to out (0 when absent; flags may be booleans or 0/1). */
static void per_image(lua_State *L, int opts, const char *fn, const char *key, int64_t n, int64_t lo, int64_t hi,
                      int64_t *out) {
    int t = lua_getfield(L, opts, key);
    int list = t == LUA_TTABLE;
    if (list && (int64_t)luaL_len(L, -1) != n)
        dd_error(L, "%s: option '%s' lists %lld values for %lld images", fn, key, (long long)luaL_len(L, -1), (long long)n);
    if (t != LUA_TNIL && !list && t != LUA_TNUMBER && !(hi == 1 && t == LUA_TBOOLEAN))
        dd_error(L, "%s: option '%s' must be %s or a list of one per image, got %s", fn, key,
                 hi == 1 ? "a boolean" : "an integer", luaL_typename(L, -1));
    for (int64_t i = 0; i < n; i++) {
        if (t == LUA_TNIL) {
            out[i] = 0;
            continue;
        }
        int vt = list ? lua_rawgeti(L, -1, (lua_Integer)i + 1) : (lua_pushvalue(L, -1), t);
        if (hi == 1 && vt == LUA_TBOOLEAN) {
            out[i] = lua_toboolean(L, -1);
        } else {
            int isint = 0;
            lua_Integer x = lua_tointegerx(L, -1, &isint);
            if (vt != LUA_TNUMBER || !isint)
                dd_error(L, "%s: option '%s'%s must be %s, got %s", fn, key, list ? " (an entry)" : "",
                         hi == 1 ? "a boolean (or 0/1)" : "an integer", larg_describe(L, -1));
            if (x < lo || x > hi)
                dd_error(L, "%s: option '%s' must be in [%lld, %lld], got %lld", fn, key, (long long)lo, (long long)hi,
                         (long long)x);
            out[i] = x;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* flip_shift(t, {flip=false, dx=0, dy=0, fill=1}): t is (H,W), (C,H,W) or
 * (N,C,H,W); each image is mirrored left-right where flip, then moved dx
 * pixels right and dy down, uncovered pixels set to fill. flip, dx and dy
 * are one value for all images or a list of one per image. A new tensor. */
static int l_flip_shift(lua_State *L) {
    const char *fn = "vision.flip_shift";
    static const char *const known[] = {"flip", "dx", "dy", "fill", NULL};
    if (lua_gettop(L) < 1 || lua_gettop(L) > 2) return dd_error(L, "%s: expected (t [, opts]), got %d arguments", fn, lua_gettop(L));
    Tensor *t = tensor_arg(L, 1, fn, "input");
    int64_t planes, h, w;
    image_dims(L, t, fn, "input", 2, &planes, &h, &w);
    if (lua_isnoneornil(L, 2)) lua_settop(L, 1), lua_newtable(L);
    if (!lua_istable(L, 2)) return dd_error(L, "%s: opts must be a table, got %s", fn, luaL_typename(L, 2));
    lopts_check(L, 2, fn, known);
    int64_t n = t->ndim == 4 ? t->shape[0] : 1, c = planes / n;
    int64_t *v = scratch_push(L, (size_t)n * 3 * sizeof(int64_t));
    per_image(L, 2, fn, "flip", n, 0, 1, v);
    per_image(L, 2, fn, "dx", n, -w, w, v + n);
    per_image(L, 2, fn, "dy", n, -h, h, v + 2 * n);
    float fill = (float)opt_number(L, 2, fn, "fill", 1.0, -HUGE_VAL, HUGE_VAL);
    Tensor *out = ltensor_push_uninit(L, t->ndim, t->shape);
    for (int64_t i = 0; i < n; i++)
        image_flip_shift(tensor_data(out) + i * c * h * w, tensor_data(t) + i * c * h * w, c, h, w, (int)v[i], v[n + i],
                         v[2 * n + i], fill);
    return 1;
}

static const luaL_Reg vision_functions[] = {{"silhouette", l_silhouette},
                                            {"flip_shift", l_flip_shift},
                                            {"background_model", l_background_model},
                                            {"morph", l_morph},
                                            {"components", l_components},
                                            {"resize", l_resize},
                                            {"to_grey", l_to_grey},
                                            {NULL, NULL}};

void bind_vision_open(lua_State *L, int dd) {
    dd = lua_absindex(L, dd);
    luaL_getsubtable(L, dd, "vision");
    luaL_setfuncs(L, vision_functions, 0);
    lua_pop(L, 1);
}

/* bind_masks.c: dd.masks.* (kernels in mask_ops.c): bit-packed silhouette
 * masks for evaluating generated frames against many references.
 *   pack(t [, {threshold=0.5, foreground='dark'|'light'}]) -> MaskSet
 *       t is (N, ...): N masks, each the rest of the shape; foreground is
 *       value < threshold ('dark', a black dancer on white) or > threshold.
 *   best_iou(gen, ref) -> best (N_gen), index (N_gen)
 *       each generated mask's best IoU over the references and the 1-based
 *       index of the first reference reaching it (1 when both masks are empty).
 *   change_fraction(set) -> (N - 1): fraction of pixels that differ between
 *       masks i and i + 1 (motion).
 * MaskSet: #set, set.n, set.pixels, set.shape (one mask's shape), set.threshold,
 * set.foreground, set:counts() -> (N) foreground pixels, set:to_tensor() ->
 * (N, ...) with 1 on the foreground and 0 elsewhere.
 * One userdata holds the header, the counts and the bits, so nothing leaks on
 * an error. Memory: N * (1 + ceil(pixels / 64)) * 8 bytes (1000 masks of
 * 120x200: 3 MB). */
#include "bind.h"
#include "mask_ops.h"

#include <string.h>

#define MASKSET_MT "dd.MaskSet"

typedef struct MaskSet {
    int64_t n, pixels, words;
    int ndim; /* of one mask */
    int64_t shape[TENSOR_MAX_DIMS];
    float threshold;
    MaskForeground fg;
    int64_t *counts; /* (n), inside data */
    uint64_t *bits;  /* (n, words), inside data */
    uint64_t data[];
} MaskSet;

static MaskSet *maskset_check(lua_State *L, int idx) { return luaL_checkudata(L, idx, MASKSET_MT); }

static const char *fg_name(MaskForeground fg) { return fg == MASK_DARK ? "dark" : "light"; }

static char *mask_shape_format(char *buf, size_t len, const MaskSet *m) { return shape_format(buf, len, m->ndim, m->shape); }

/* {threshold=, foreground=} at idx (nil allowed); unknown keys are errors. */
static void pack_options(lua_State *L, int idx, float *threshold, MaskForeground *fg) {
    const char *fn = "masks.pack";
    *threshold = 0.5f;
    *fg = MASK_DARK;
    if (lua_isnoneornil(L, idx)) return;
    if (!lua_istable(L, idx)) dd_error(L, "%s: options must be a table, got %s", fn, luaL_typename(L, idx));
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (!key || (strcmp(key, "threshold") != 0 && strcmp(key, "foreground") != 0))
            dd_error(L, "%s: unknown option '%s' (known: threshold, foreground)", fn, luaL_tolstring(L, -1, NULL));
    }
    if (lua_getfield(L, idx, "threshold") != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            dd_error(L, "%s: option 'threshold' must be a number, got %s", fn, luaL_typename(L, -1));
        *threshold = (float)lua_tonumber(L, -1);
    }
    if (lua_getfield(L, idx, "foreground") != LUA_TNIL) {
        const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (s && strcmp(s, "dark") == 0) *fg = MASK_DARK;
        else if (s && strcmp(s, "light") == 0) *fg = MASK_LIGHT;
        else if (s) dd_error(L, "%s: option 'foreground' must be 'dark' or 'light', got '%s'", fn, s);
        else dd_error(L, "%s: option 'foreground' must be 'dark' or 'light', got %s", fn, luaL_typename(L, -1));
    }
    lua_pop(L, 2);
}

static int l_pack(lua_State *L) {
    const char *fn = "masks.pack";
    if (lua_gettop(L) > 2) return dd_error(L, "%s: expected (t [, options]), got %d arguments", fn, lua_gettop(L));
    lua_settop(L, 2);
    Tensor *t = ltensor_test(L, 1);
    if (!t) return dd_error(L, "%s: expected a Tensor of masks (N, ...), got %s", fn, luaL_typename(L, 1));
    float threshold;
    MaskForeground fg;
    pack_options(L, 2, &threshold, &fg);
    char s[256];
    if (t->ndim < 2)
        return dd_error(L, "%s: masks must be (N, ...) with the samples first and at least one more dimension, got shape %s",
                        fn, shape_format(s, sizeof s, t->ndim, t->shape));
    if (tensor_numel(t) == 0) return dd_error(L, "%s: no masks: the tensor is empty (shape %s)", fn, shape_format(s, sizeof s, t->ndim, t->shape));
    if (!tensor_is_contiguous(t)) {
        Tensor *c = ltensor_push_uninit(L, t->ndim, t->shape);
        tensor_copy_data(c, t);
        lua_replace(L, 1);
        t = c;
    }
    const int64_t n = t->shape[0], pixels = tensor_numel(t) / n, words = mask_words(pixels);
    MaskSet *m = lua_newuserdatauv(L, sizeof *m + (size_t)(n * (1 + words)) * sizeof(uint64_t), 0);
    m->n = n, m->pixels = pixels, m->words = words;
    m->ndim = t->ndim - 1;
    memcpy(m->shape, t->shape + 1, (size_t)m->ndim * sizeof *m->shape);
    m->threshold = threshold, m->fg = fg;
    m->counts = (int64_t *)m->data;
    m->bits = m->data + n;
    luaL_setmetatable(L, MASKSET_MT);
    mask_pack(m->bits, m->counts, tensor_data(t), n, pixels, threshold, fg);
    return 1;
}

static int l_best_iou(lua_State *L) {
    const char *fn = "masks.best_iou";
    if (lua_gettop(L) != 2) return dd_error(L, "%s: expected (generated, references), two MaskSets, got %d arguments", fn, lua_gettop(L));
    MaskSet *gen = luaL_testudata(L, 1, MASKSET_MT), *ref = luaL_testudata(L, 2, MASKSET_MT);
    if (!gen) return dd_error(L, "%s: generated must be a MaskSet (from dd.masks.pack), got %s", fn, luaL_typename(L, 1));
    if (!ref) return dd_error(L, "%s: references must be a MaskSet (from dd.masks.pack), got %s", fn, luaL_typename(L, 2));
    char sa[256], sb[256];
    if (gen->ndim != ref->ndim || memcmp(gen->shape, ref->shape, (size_t)gen->ndim * sizeof *gen->shape) != 0)
        return dd_error(L, "%s: generated masks have shape %s but references have shape %s (they must match)", fn,
                        mask_shape_format(sa, sizeof sa, gen), mask_shape_format(sb, sizeof sb, ref));
    const int64_t n = gen->n;
    Tensor *best = ltensor_push_uninit(L, 1, &n);
    Tensor *index = ltensor_push_uninit(L, 1, &n);
    double *b = lua_newuserdatauv(L, (size_t)n * sizeof *b, 0);
    int64_t *at = lua_newuserdatauv(L, (size_t)n * sizeof *at, 0);
    mask_best_iou(b, at, gen->bits, gen->counts, n, ref->bits, ref->counts, ref->n, gen->words);
    float *pb = tensor_data(best), *pi = tensor_data(index);
    for (int64_t i = 0; i < n; i++) {
        pb[i] = (float)b[i];
        pi[i] = (float)(at[i] + 1);
    }
    lua_pop(L, 2);
    return 2;
}

static int l_change_fraction(lua_State *L) {
    const char *fn = "masks.change_fraction";
    if (lua_gettop(L) != 1) return dd_error(L, "%s: expected (set), one MaskSet, got %d arguments", fn, lua_gettop(L));
    MaskSet *m = luaL_testudata(L, 1, MASKSET_MT);
    if (!m) return dd_error(L, "%s: expected a MaskSet (from dd.masks.pack), got %s", fn, luaL_typename(L, 1));
    const int64_t k = m->n - 1;
    Tensor *out = ltensor_push_uninit(L, 1, &k);
    double *d = lua_newuserdatauv(L, (size_t)(k > 0 ? k : 1) * sizeof *d, 0);
    mask_change_fraction(d, m->bits, m->n, m->words, m->pixels);
    float *o = tensor_data(out);
    for (int64_t i = 0; i < k; i++) o[i] = (float)d[i];
    lua_pop(L, 1);
    return 1;
}

/* ---- MaskSet methods ---- */

static int ms_counts(lua_State *L) {
    MaskSet *m = maskset_check(L, 1);
    Tensor *out = ltensor_push_uninit(L, 1, &m->n);
    float *o = tensor_data(out);
    for (int64_t i = 0; i < m->n; i++) o[i] = (float)m->counts[i];
    return 1;
}

static int ms_to_tensor(lua_State *L) {
    MaskSet *m = maskset_check(L, 1);
    int64_t shape[TENSOR_MAX_DIMS];
    shape[0] = m->n;
    memcpy(shape + 1, m->shape, (size_t)m->ndim * sizeof *shape);
    Tensor *out = ltensor_push_uninit(L, m->ndim + 1, shape);
    float *o = tensor_data(out);
    for (int64_t i = 0; i < m->n; i++) {
        const uint64_t *w = m->bits + i * m->words;
        for (int64_t p = 0; p < m->pixels; p++) o[i * m->pixels + p] = (float)((w[p / 64] >> (p % 64)) & 1u);
    }
    return 1;
}

static int ms_len(lua_State *L) {
    lua_pushinteger(L, maskset_check(L, 1)->n);
    return 1;
}

static int ms_tostring(lua_State *L) {
    MaskSet *m = maskset_check(L, 1);
    char s[256];
    lua_pushfstring(L, "MaskSet(%I masks of %s, foreground %s %f)", (lua_Integer)m->n, mask_shape_format(s, sizeof s, m),
                    m->fg == MASK_DARK ? "<" : ">", (double)m->threshold);
    return 1;
}

static int ms_index(lua_State *L) {
    MaskSet *m = maskset_check(L, 1);
    const char *k = lua_tostring(L, 2);
    if (k) {
        if (!strcmp(k, "n")) return lua_pushinteger(L, m->n), 1;
        if (!strcmp(k, "pixels")) return lua_pushinteger(L, m->pixels), 1;
        if (!strcmp(k, "threshold")) return lua_pushnumber(L, m->threshold), 1;
        if (!strcmp(k, "foreground")) return lua_pushstring(L, fg_name(m->fg)), 1;
        if (!strcmp(k, "shape")) {
            lua_createtable(L, m->ndim, 0);
            for (int d = 0; d < m->ndim; d++) {
                lua_pushinteger(L, m->shape[d]);
                lua_rawseti(L, -2, d + 1);
            }
            return 1;
        }
    }
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
}

static const luaL_Reg maskset_methods[] = {{"counts", ms_counts}, {"to_tensor", ms_to_tensor}, {NULL, NULL}};
static const luaL_Reg masks_functions[] = {
    {"pack", l_pack}, {"best_iou", l_best_iou}, {"change_fraction", l_change_fraction}, {NULL, NULL}};

void bind_masks_open(lua_State *L, int dd) {
    dd = lua_absindex(L, dd);
    luaL_newmetatable(L, MASKSET_MT);
    lua_pushstring(L, "MaskSet");
    lua_setfield(L, -2, "__name");
    lua_newtable(L);
    luaL_setfuncs(L, maskset_methods, 0);
    lua_pushcclosure(L, ms_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ms_len);
    lua_setfield(L, -2, "__len");
    lua_pushcfunction(L, ms_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    luaL_getsubtable(L, dd, "masks");
    luaL_setfuncs(L, masks_functions, 0);
    lua_pop(L, 1);
}

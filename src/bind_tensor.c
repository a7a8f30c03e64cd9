/* bind_tensor.c: the Tensor userdata: constructors, shape and element access,
 * views. Argument checks here, storage logic in tensor.c. Dimensions and
 * indices are 1-based in Lua; negative dims count from the end (-1 = last). */
#include "bind.h"
#include "rng.h"
#include "tensor_math.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void ltensor_push_string(lua_State *L, const Tensor *t); /* bind_tensor_print.c */

Tensor *ltensor_test(lua_State *L, int idx) {
    Tensor *t = luaL_testudata(L, idx, TENSOR_MT);
    return t && t->storage ? t : NULL;
}

Tensor *ltensor_check(lua_State *L, int idx) {
    Tensor *t = luaL_testudata(L, idx, TENSOR_MT);
    if (!t) luaL_typeerror(L, idx, "Tensor");
    if (!t->storage) dd_error(L, "Tensor has been freed");
    return t;
}

static Tensor *ltensor_alloc(lua_State *L) {
    Tensor *t = lua_newuserdatauv(L, sizeof(Tensor), 0);
    memset(t, 0, sizeof *t);
    luaL_setmetatable(L, TENSOR_MT);
    return t;
}

/* Lua's collector sees a tensor as a few bytes of userdata; a big storage is
 * reported as a GC step sized like the allocation, so garbage tensors are
 * collected at the pace they are made instead of piling up. */
static void gc_account(lua_State *L, int64_t numel) {
    int64_t kb = numel * (int64_t)sizeof(float) / 1024;
    if (kb >= 1024) lua_gc(L, LUA_GCSTEP, (int)(kb > (1 << 30) ? (1 << 30) : kb));
}

/* The name the running C function was called by ("zeros", "matmul"), so that
 * allocation errors deep in a binding still name what the user called. */
static const char *calling_name(lua_State *L) {
    lua_Debug ar;
    if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.name) return ar.name;
    return "tensor";
}

static Tensor *push_alloc(lua_State *L, int ndim, const int64_t *shape, int zero) {
    Tensor *t = ltensor_alloc(L);
    TensorStatus st = zero ? tensor_init(t, ndim, shape) : tensor_init_uninit(t, ndim, shape);
    if (st == TENSOR_ESIZE) {
        char s[256];
        dd_error(L, "%s: tensor of shape %s is too large (at most %d dims and %lld elements)",
                   calling_name(L), shape_format(s, sizeof s, ndim, shape), TENSOR_MAX_DIMS,
                   (long long)storage_max_elements());
    } else if (st == TENSOR_ENOMEM) {
        char s[256];
        int64_t n = 1;
        shape_check(ndim, shape, &n);
        dd_error(L, "%s: out of memory: cannot allocate a tensor of shape %s (%.1f MiB; at most %.1f MiB here)",
                   calling_name(L), shape_format(s, sizeof s, ndim, shape), (double)n * 4 / 1048576.0,
                   (double)storage_max_elements() * 4 / 1048576.0);
    }
    gc_account(L, t->storage->size);
    return t;
}

Tensor *ltensor_push_new(lua_State *L, int ndim, const int64_t *shape) { return push_alloc(L, ndim, shape, 1); }
Tensor *ltensor_push_uninit(lua_State *L, int ndim, const int64_t *shape) { return push_alloc(L, ndim, shape, 0); }

void ltensor_check_writable(lua_State *L, const Tensor *t, const char *fn) {
    if (tensor_has_internal_overlap(t)) {
        char s[256];
        dd_error(L, "%s: cannot write into a tensor of shape %s whose elements share memory (from expand); "
                    "use clone() first", fn, shape_format(s, sizeof s, t->ndim, t->shape));
    }
}

Tensor *ltensor_push_view(lua_State *L, const Tensor *src) {
    Tensor *t = ltensor_alloc(L);
    tensor_init_view(t, src);
    return t;
}

const char *larg_describe(lua_State *L, int idx) {
    return lua_type(L, idx) == LUA_TNUMBER ? lua_tostring(L, idx) : luaL_typename(L, idx);
}

int64_t larg_int(lua_State *L, int idx, const char *what, int64_t lo, int64_t hi) {
    int isnum = 0;
    lua_Integer v = lua_tointegerx(L, idx, &isnum);
    if (!isnum) {
        if (lua_type(L, idx) == LUA_TNUMBER)
            dd_error(L, "%s must be an integer, got %s", what, lua_tostring(L, idx));
        dd_error(L, "%s must be an integer, got %s", what, luaL_typename(L, idx));
    }
    if (v < lo || v > hi) dd_error(L, "%s must be in [%lld, %lld], got %lld", what, (lua_Integer)lo, (lua_Integer)hi, v);
    return v;
}

/* Reads a 1-based dimension (negative counts from the end) into 0-based. */
static int larg_dim(lua_State *L, int idx, const char *fn, int ndim) {
    int isnum = 0;
    lua_Integer d = lua_tointegerx(L, idx, &isnum);
    if (!isnum) dd_error(L, "%s: dimension must be an integer, got %s", fn, larg_describe(L, idx));
    if (d < 0) d += ndim + 1;
    if (d < 1 || d > ndim)
        dd_error(L, "%s: dimension %s out of range for a %d-d tensor", fn, lua_tostring(L, idx), ndim);
    return (int)d - 1;
}

/* Sizes given as varargs (2, 3) or one table {2, 3}, from stack index first. */
static int larg_shape(lua_State *L, int first, int last, const char *fn, int64_t *shape) {
    int n;
    if (lua_istable(L, first) && last == first) {
        n = (int)lua_rawlen(L, first);
        if (n > TENSOR_MAX_DIMS) dd_error(L, "%s: at most %d dimensions, got %d", fn, TENSOR_MAX_DIMS, n);
        for (int i = 0; i < n; i++) {
            lua_rawgeti(L, first, i + 1);
            int isnum = 0;
            lua_Integer v = lua_tointegerx(L, -1, &isnum);
            if (!isnum || v < 0)
                dd_error(L, "%s: size %d must be a non-negative integer, got %s", fn, i + 1,
                           lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1) : luaL_typename(L, -1));
            shape[i] = v;
            lua_pop(L, 1);
        }
    } else {
    n = last - first + 1;
    if (n < 0) n = 0;
    if (n > TENSOR_MAX_DIMS) dd_error(L, "%s: at most %d dimensions, got %d", fn, TENSOR_MAX_DIMS, n);
    for (int i = 0; i < n; i++) {
        int isnum = 0;
        lua_Integer v = lua_tointegerx(L, first + i, &isnum);
        if (!isnum || v < 0)
            dd_error(L, "%s: size %d must be a non-negative integer, got %s", fn, i + 1, larg_describe(L, first + i));
        shape[i] = v;
    }
    }
    int64_t numel;
    if (shape_check(n, shape, &numel) != TENSOR_OK) {
        char s[256];
        dd_error(L, "%s: shape %s is too large", fn, shape_format(s, sizeof s, n, shape));
    }
    if (numel > storage_max_elements()) { /* refused before touching memory */
        char s[256];
        dd_error(L, "%s: shape %s needs %.1f MiB, more than this machine's %.1f MiB of memory", fn,
                 shape_format(s, sizeof s, n, shape), (double)numel * 4 / 1048576.0,
                 (double)storage_max_elements() * 4 / 1048576.0);
    }
    return n;
}

static float larg_float(lua_State *L, int idx, const char *fn, const char *what) {
    int isnum = 0;
    lua_Number v = lua_tonumberx(L, idx, &isnum);
    if (!isnum) dd_error(L, "%s: %s must be a number, got %s", fn, what, luaL_typename(L, idx));
    return (float)v;
}

/* ---- constructors ---- */

/* Walks a nested table once to find its shape, checking it is rectangular. */
static void table_shape(lua_State *L, int idx, int depth, int *ndim, int64_t *shape, int *known) {
    if (depth >= TENSOR_MAX_DIMS) dd_error(L, "tensor: nesting deeper than %d levels", TENSOR_MAX_DIMS);
    int64_t n = (int64_t)lua_rawlen(L, idx);
    if (!*known || depth >= *ndim) {
        shape[depth] = n;
        if (depth + 1 > *ndim) *ndim = depth + 1;
    } else if (shape[depth] != n) {
        dd_error(L, "tensor: ragged table: dimension %d has lengths %lld and %lld", depth + 1,
                   (long long)shape[depth], (long long)n);
    }
    if (n == 0) {
        *known = 1;
        return;
    }
    lua_rawgeti(L, idx, 1);
    if (lua_istable(L, -1)) table_shape(L, lua_gettop(L), depth + 1, ndim, shape, known);
    else *known = 1;
    lua_pop(L, 1);
}

static void table_fill(lua_State *L, int idx, int depth, int ndim, const int64_t *shape, float **out,
                       char *path, size_t plen) {
    int64_t n = (int64_t)lua_rawlen(L, idx);
    if (n != shape[depth])
        dd_error(L, "tensor: ragged table at %s: expected %lld entries, got %lld", path[0] ? path : "top level",
                   (long long)shape[depth], (long long)n);
    size_t base = strlen(path);
    for (int64_t i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        snprintf(path + base, plen - base, "[%lld]", (long long)i);
        if (depth == ndim - 1) {
            int isnum = 0;
            lua_Number v = lua_tonumberx(L, -1, &isnum);
            if (!isnum || lua_type(L, -1) != LUA_TNUMBER)
                dd_error(L, "tensor: element %s must be a number, got %s", path, luaL_typename(L, -1));
            *(*out)++ = (float)v;
        } else {
            if (!lua_istable(L, -1))
                dd_error(L, "tensor: element %s must be a table, got %s", path, luaL_typename(L, -1));
            table_fill(L, lua_gettop(L), depth + 1, ndim, shape, out, path, plen);
        }
        lua_pop(L, 1);
        path[base] = 0;
    }
}

static int l_tensor(lua_State *L) {
    if (lua_type(L, 1) == LUA_TNUMBER) {
        Tensor *t = ltensor_push_new(L, 0, NULL);
        *tensor_data(t) = (float)lua_tonumber(L, 1);
        return 1;
    }
    Tensor *src = ltensor_test(L, 1);
    if (src) {
        Tensor *t = ltensor_push_uninit(L, src->ndim, src->shape);
        tensor_copy_data(t, src);
        return 1;
    }
    if (!lua_istable(L, 1))
        return dd_error(L, "tensor: expected a (nested) table of numbers, a number or a Tensor, got %s",
                          luaL_typename(L, 1));
    int ndim = 0, known = 0;
    int64_t shape[TENSOR_MAX_DIMS] = {0};
    table_shape(L, 1, 0, &ndim, shape, &known);
    Tensor *t = ltensor_push_new(L, ndim, shape);
    float *p = tensor_data(t);
    char path[TENSOR_MAX_DIMS * 24] = "";
    table_fill(L, 1, 0, ndim, shape, &p, path, sizeof path); /* also checks empty rows are not ragged */
    return 1;
}

static int push_filled(lua_State *L, const char *fn, float v) {
    int64_t shape[TENSOR_MAX_DIMS];
    int n = larg_shape(L, 1, lua_gettop(L), fn, shape);
    Tensor *t = v == 0 ? ltensor_push_new(L, n, shape) : ltensor_push_uninit(L, n, shape);
    if (v != 0) tensor_fill(t, v);
    return 1;
}

static int l_zeros(lua_State *L) { return push_filled(L, "zeros", 0); }
static int l_ones(lua_State *L) { return push_filled(L, "ones", 1); }

static int l_full(lua_State *L) {
    int64_t shape[TENSOR_MAX_DIMS];
    if (!lua_istable(L, 1)) return dd_error(L, "full: shape must be a table, got %s", luaL_typename(L, 1));
    float v = larg_float(L, 2, "full", "value");
    int n = larg_shape(L, 1, 1, "full", shape);
    Tensor *t = ltensor_push_uninit(L, n, shape);
    tensor_fill(t, v);
    return 1;
}

/* dd.arange(end) / (start, end [, step]): half-open, like torch.arange. */
static int l_arange(lua_State *L) {
    int nargs = lua_gettop(L);
    if (nargs < 1 || nargs > 3) return dd_error(L, "arange: expected 1 to 3 numbers, got %d arguments", nargs);
    double start = 0, stop, step = 1;
    for (int i = 1; i <= nargs; i++)
        if (lua_type(L, i) != LUA_TNUMBER)
            return dd_error(L, "arange: argument %d must be a number, got %s", i, luaL_typename(L, i));
    if (nargs == 1) stop = lua_tonumber(L, 1);
    else {
        start = lua_tonumber(L, 1);
        stop = lua_tonumber(L, 2);
        if (nargs == 3) step = lua_tonumber(L, 3);
    }
    if (step == 0 || !isfinite(step) || !isfinite(start) || !isfinite(stop))
        return dd_error(L, "arange: start, end and step must be finite and step non-zero, got %f, %f, %f",
                          start, stop, step);
    double count = ceil((stop - start) / step);
    if (count < 0) count = 0;
    if (count > (double)TENSOR_MAX_NUMEL) return dd_error(L, "arange: %.0f elements is too many", count);
    int64_t n = (int64_t)count;
    Tensor *t = ltensor_push_uninit(L, 1, &n);
    float *p = tensor_data(t);
    for (int64_t i = 0; i < n; i++) p[i] = (float)(start + (double)i * step);
    return 1;
}

static int l_rand(lua_State *L) {
    int64_t shape[TENSOR_MAX_DIMS];
    int n = larg_shape(L, 1, lua_gettop(L), "rand", shape);
    Tensor *t = ltensor_push_uninit(L, n, shape);
    float *p = tensor_data(t);
    for (int64_t i = 0, m = tensor_numel(t); i < m; i++) p[i] = (float)(rng_next(&rng_global) >> 40) * 0x1p-24f;
    return 1;
}

static int l_randn(lua_State *L) {
    int64_t shape[TENSOR_MAX_DIMS];
    int n = larg_shape(L, 1, lua_gettop(L), "randn", shape);
    Tensor *t = ltensor_push_uninit(L, n, shape);
    float *p = tensor_data(t);
    for (int64_t i = 0, m = tensor_numel(t); i < m; i++) p[i] = (float)rng_normal(&rng_global);
    return 1;
}

/* dd.randperm(n): a random permutation of 1..n (1-based, for Lua indexing). */
static int l_randperm(lua_State *L) {
    int64_t n = larg_int(L, 1, "randperm: n", 0, TENSOR_MAX_NUMEL);
    Tensor *t = ltensor_push_new(L, 1, &n);
    float *p = tensor_data(t);
    for (int64_t i = 0; i < n; i++) p[i] = (float)(i + 1);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(&rng_global, (uint64_t)i + 1);
        float tmp = p[i];
        p[i] = p[j];
        p[j] = tmp;
    }
    return 1;
}

/* ---- shape and access ---- */

static int m_shape(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    lua_createtable(L, t->ndim, 0);
    for (int i = 0; i < t->ndim; i++) {
        lua_pushinteger(L, t->shape[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int m_size(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    if (lua_isnoneornil(L, 2)) return m_shape(L);
    lua_pushinteger(L, t->shape[larg_dim(L, 2, "size", t->ndim)]);
    return 1;
}

static int m_stride(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    lua_createtable(L, t->ndim, 0);
    for (int i = 0; i < t->ndim; i++) {
        lua_pushinteger(L, t->stride[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int m_dim(lua_State *L) {
    lua_pushinteger(L, ltensor_check(L, 1)->ndim);
    return 1;
}

static int m_numel(lua_State *L) {
    lua_pushinteger(L, tensor_numel(ltensor_check(L, 1)));
    return 1;
}

static int m_is_contiguous(lua_State *L) {
    lua_pushboolean(L, tensor_is_contiguous(ltensor_check(L, 1)));
    return 1;
}

/* Reads ndim 1-based indices starting at stack index first into a pointer. */
static float *element_at(lua_State *L, Tensor *t, int first, const char *fn) {
    int given = lua_gettop(L) - first + 1;
    if (strcmp(fn, "set") == 0) given--; /* the last argument is the value */
    if (given != t->ndim)
        dd_error(L, "%s: a %d-d tensor needs %d indices, got %d", fn, t->ndim, t->ndim, given < 0 ? 0 : given);
    int64_t idx[TENSOR_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) {
        int isnum = 0;
        lua_Integer v = lua_tointegerx(L, first + i, &isnum);
        if (!isnum)
            dd_error(L, "%s: index %d must be an integer, got %s", fn, i + 1,
                       lua_type(L, first + i) == LUA_TNUMBER ? lua_tostring(L, first + i)
                                                             : luaL_typename(L, first + i));
        if (v < 0) v += t->shape[i] + 1;
        if (v < 1 || v > t->shape[i])
            dd_error(L, "%s: index %s out of range for dimension %d of size %lld", fn, lua_tostring(L, first + i),
                       i + 1, (long long)t->shape[i]);
        idx[i] = v - 1;
    }
    return tensor_data(t) + tensor_index_offset(t, idx);
}

static int m_get(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    lpush_float(L, *element_at(L, t, 2, "get"));
    return 1;
}

static int m_set(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    int top = lua_gettop(L);
    float v = larg_float(L, top, "set", "value");
    *element_at(L, t, 2, "set") = v;
    lua_settop(L, 1);
    return 1;
}

static int m_item(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    if (tensor_numel(t) != 1)
        return dd_error(L, "item: tensor must have exactly one element, got %lld", (long long)tensor_numel(t));
    int64_t idx[TENSOR_MAX_DIMS] = {0};
    lpush_float(L, tensor_data(t)[tensor_index_offset(t, idx)]);
    return 1;
}

/* ---- views ---- */

static int m_narrow(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    int d = larg_dim(L, 2, "narrow", t->ndim);
    int64_t start = larg_int(L, 3, "narrow: start", 1, t->shape[d] + 1);
    int64_t len = larg_int(L, 4, "narrow: length", 0, t->shape[d] - start + 1);
    Tensor *v = ltensor_push_view(L, t);
    tensor_narrow(v, d, start - 1, len);
    return 1;
}

/* Reads a 1-based index along dimension d (negative counts from the end) and
 * returns it 0-based. */
static int64_t larg_index(lua_State *L, int idx, const char *fn, int64_t size, int d) {
    int isnum = 0;
    lua_Integer i = lua_tointegerx(L, idx, &isnum);
    if (!isnum)
        dd_error(L, "%s: index must be an integer, got %s", fn,
                   lua_type(L, idx) == LUA_TNUMBER ? lua_tostring(L, idx) : luaL_typename(L, idx));
    lua_Integer j = i < 0 ? i + size + 1 : i;
    if (j < 1 || j > size)
        dd_error(L, "%s: index %lld out of range for dimension %d of size %lld", fn, i, d + 1, (lua_Integer)size);
    return j - 1;
}

static int m_select(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    if (t->ndim == 0) return dd_error(L, "select: cannot select from a 0-d tensor");
    int d = larg_dim(L, 2, "select", t->ndim);
    int64_t i = larg_index(L, 3, "select", t->shape[d], d);
    Tensor *v = ltensor_push_view(L, t);
    tensor_select(v, d, i);
    return 1;
}

static int m_transpose(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    int a, b;
    if (lua_isnoneornil(L, 2) && t->ndim == 2) a = 0, b = 1;
    else {
        a = larg_dim(L, 2, "transpose", t->ndim);
        b = larg_dim(L, 3, "transpose", t->ndim);
    }
    Tensor *v = ltensor_push_view(L, t);
    tensor_transpose(v, a, b);
    return 1;
}

static int m_permute(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    int n = lua_gettop(L) - 1;
    int table = lua_istable(L, 2);
    if (table) n = (int)lua_rawlen(L, 2);
    if (n != t->ndim) return dd_error(L, "permute: a %d-d tensor needs %d dimensions, got %d", t->ndim, t->ndim, n);
    int seen[TENSOR_MAX_DIMS] = {0}, perm[TENSOR_MAX_DIMS];
    for (int i = 0; i < n; i++) {
        if (table) lua_rawgeti(L, 2, i + 1);
        else lua_pushvalue(L, i + 2);
        perm[i] = larg_dim(L, -1, "permute", t->ndim);
        lua_pop(L, 1);
        if (seen[perm[i]]++) return dd_error(L, "permute: dimension %d repeated", perm[i] + 1);
    }
    Tensor *v = ltensor_push_view(L, t);
    for (int i = 0; i < n; i++) {
        v->shape[i] = t->shape[perm[i]];
        v->stride[i] = t->stride[perm[i]];
    }
    return 1;
}

/* view/reshape share the size parsing: one size may be -1 (inferred). */
static int parse_new_shape(lua_State *L, const Tensor *t, const char *fn, int64_t *shape) {
    int from_table = lua_gettop(L) == 2 && lua_istable(L, 2);
    int n = from_table ? (int)lua_rawlen(L, 2) : lua_gettop(L) - 1;
    if (n > TENSOR_MAX_DIMS) dd_error(L, "%s: at most %d dimensions, got %d", fn, TENSOR_MAX_DIMS, n);
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < n; i++) {
        if (from_table) lua_rawgeti(L, 2, i + 1);
        else lua_pushvalue(L, i + 2);
        int isnum = 0;
        lua_Integer v = lua_tointegerx(L, -1, &isnum);
        if (!isnum || v < -1)
            dd_error(L, "%s: size %d must be a non-negative integer or -1, got %s", fn, i + 1,
                       lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1) : luaL_typename(L, -1));
        lua_pop(L, 1);
        if (v == -1) {
            if (infer >= 0) dd_error(L, "%s: only one size may be -1", fn);
            infer = i;
            shape[i] = 1;
        } else {
            shape[i] = v;
            if (v != 0 && known > TENSOR_MAX_NUMEL / v) dd_error(L, "%s: shape too large", fn);
            known *= v;
        }
    }
    int64_t numel = tensor_numel(t);
    if (infer >= 0) {
        if (known == 0 || numel % known != 0) {
            char s[256];
            dd_error(L, "%s: cannot infer size -1 for %lld elements from %s", fn, (long long)numel,
                       shape_format(s, sizeof s, n, shape));
        }
        shape[infer] = numel / known;
        known = numel;
    }
    if (known != numel) {
        char a[256], b[256];
        dd_error(L, "%s: shape %s has %lld elements, tensor of shape %s has %lld", fn, shape_format(a, sizeof a, n, shape),
                   (long long)known, shape_format(b, sizeof b, t->ndim, t->shape), (long long)numel);
    }
    return n;
}

static int m_view(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    int64_t shape[TENSOR_MAX_DIMS];
    int n = parse_new_shape(L, t, "view", shape);
    if (!tensor_is_contiguous(t)) {
        char s[256];
        return dd_error(L, "view: tensor of shape %s is not contiguous; use reshape or contiguous() first",
                          shape_format(s, sizeof s, t->ndim, t->shape));
    }
    Tensor *v = ltensor_push_view(L, t);
    tensor_view_as(v, n, shape);
    return 1;
}

static int m_reshape(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    int64_t shape[TENSOR_MAX_DIMS];
    int n = parse_new_shape(L, t, "reshape", shape);
    Tensor *v;
    if (tensor_is_contiguous(t)) {
        v = ltensor_push_view(L, t);
    } else {
        v = ltensor_push_uninit(L, t->ndim, t->shape);
        tensor_copy_data(v, t);
    }
    tensor_view_as(v, n, shape);
    return 1;
}

static int m_flatten(lua_State *L) {
    ltensor_check(L, 1);
    lua_settop(L, 1);
    lua_pushinteger(L, -1);
    return m_reshape(L);
}

static int m_unsqueeze(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    if (t->ndim >= TENSOR_MAX_DIMS) return dd_error(L, "unsqueeze: tensor already has %d dimensions", t->ndim);
    int d = larg_dim(L, 2, "unsqueeze", t->ndim + 1);
    Tensor *v = ltensor_push_view(L, t);
    for (int k = v->ndim; k > d; k--) {
        v->shape[k] = v->shape[k - 1];
        v->stride[k] = v->stride[k - 1];
    }
    v->shape[d] = 1;
    v->ndim++;
    v->stride[d] = d + 1 < v->ndim ? v->stride[d + 1] * v->shape[d + 1] : 1;
    return 1;
}

static int m_squeeze(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    if (!lua_isnoneornil(L, 2)) {
        int d = larg_dim(L, 2, "squeeze", t->ndim);
        Tensor *v = ltensor_push_view(L, t);
        if (t->shape[d] == 1) tensor_select(v, d, 0);
        return 1;
    }
    Tensor *v = ltensor_push_view(L, t);
    for (int d = v->ndim - 1; d >= 0; d--)
        if (v->shape[d] == 1) tensor_select(v, d, 0);
    return 1;
}

static int m_expand(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    int64_t shape[TENSOR_MAX_DIMS];
    int n = larg_shape(L, 2, lua_gettop(L), "expand", shape);
    if (n < t->ndim) return dd_error(L, "expand: %d sizes given for a %d-d tensor", n, t->ndim);
    for (int i = 0; i < n; i++) {
        int ti = t->ndim - n + i;
        if (ti >= 0 && t->shape[ti] != 1 && t->shape[ti] != shape[i]) {
            char a[256], b[256];
            return dd_error(L, "expand: cannot expand shape %s to %s", shape_format(a, sizeof a, t->ndim, t->shape),
                              shape_format(b, sizeof b, n, shape));
        }
    }
    Tensor *v = ltensor_push_view(L, t);
    tensor_broadcast_view(v, t, n, shape);
    return 1;
}

static int m_contiguous(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    if (tensor_is_contiguous(t)) {
        lua_settop(L, 1);
        return 1;
    }
    Tensor *c = ltensor_push_uninit(L, t->ndim, t->shape);
    tensor_copy_data(c, t);
    return 1;
}

static int m_clone(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    Tensor *c = ltensor_push_uninit(L, t->ndim, t->shape);
    tensor_copy_data(c, t);
    return 1;
}

static int m_copy(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    Tensor *src = ltensor_check(L, 2);
    ltensor_check_writable(L, t, "copy");
    if (tensor_numel(t) != tensor_numel(src)) {
        char a[256], b[256];
        return dd_error(L, "copy: source of shape %s has %lld elements, destination of shape %s has %lld",
                          shape_format(a, sizeof a, src->ndim, src->shape), (long long)tensor_numel(src),
                          shape_format(b, sizeof b, t->ndim, t->shape), (long long)tensor_numel(t));
    }
    tensor_copy_data(t, src);
    lua_settop(L, 1);
    return 1;
}

static int m_fill(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    ltensor_check_writable(L, t, "fill");
    tensor_fill(t, larg_float(L, 2, "fill", "value"));
    lua_settop(L, 1);
    return 1;
}

static void push_table_rec(lua_State *L, const Tensor *t, int d, const float *p) {
    luaL_checkstack(L, 4, "totable");
    lua_createtable(L, (int)t->shape[d], 0);
    for (int64_t i = 0; i < t->shape[d]; i++) {
        const float *q = p + i * t->stride[d];
        if (d == t->ndim - 1) lpush_float(L, *q);
        else push_table_rec(L, t, d + 1, q);
        lua_rawseti(L, -2, i + 1);
    }
}

static int m_totable(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    if (t->ndim == 0) lpush_float(L, *tensor_data(t));
    else push_table_rec(L, t, 0, tensor_data(t));
    return 1;
}

static int m_tostring(lua_State *L) {
    Tensor *t = luaL_checkudata(L, 1, TENSOR_MT);
    if (!t->storage) lua_pushliteral(L, "tensor(<freed>)");
    else ltensor_push_string(L, t);
    return 1;
}

static int m_gc(lua_State *L) {
    Tensor *t = luaL_checkudata(L, 1, TENSOR_MT);
    tensor_release(t);
    return 0;
}

static int m_len(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    if (t->ndim == 0) return dd_error(L, "#: a 0-d tensor has no length");
    lua_pushinteger(L, t->shape[0]);
    return 1;
}

/* t[i] is a view of the i-th slice along the first dimension; t.name a method. */
static int m_index(lua_State *L) {
    if (lua_type(L, 2) == LUA_TNUMBER) {
        Tensor *t = ltensor_check(L, 1);
        if (t->ndim == 0) return dd_error(L, "index: cannot index a 0-d tensor");
        int64_t i = larg_index(L, 2, "index", t->shape[0], 0);
        Tensor *v = ltensor_push_view(L, t);
        tensor_select(v, 0, i);
        return 1;
    }
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
}

/* t[i] = number fills the slice; t[i] = tensor copies into it. */
static int m_newindex(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    if (lua_type(L, 2) != LUA_TNUMBER) return dd_error(L, "newindex: tensor fields cannot be assigned (key %s)", lua_tostring(L, 2) ? lua_tostring(L, 2) : luaL_typename(L, 2));
    if (t->ndim == 0) return dd_error(L, "newindex: cannot index a 0-d tensor");
    int64_t i = larg_index(L, 2, "newindex", t->shape[0], 0);
    Tensor slice = *t; /* borrowed view */
    tensor_select(&slice, 0, i);
    ltensor_check_writable(L, &slice, "newindex");
    Tensor *src = ltensor_test(L, 3);
    if (src) {
        if (tensor_numel(src) != tensor_numel(&slice)) {
            char a[256], b[256];
            return dd_error(L, "newindex: value of shape %s does not fit slice of shape %s",
                              shape_format(a, sizeof a, src->ndim, src->shape), shape_format(b, sizeof b, slice.ndim, slice.shape));
        }
        tensor_copy_data(&slice, src);
    } else {
        tensor_fill(&slice, larg_float(L, 3, "newindex", "value"));
    }
    return 0;
}

static const luaL_Reg tensor_methods[] = {
    {"shape", m_shape}, {"size", m_size}, {"stride", m_stride}, {"dim", m_dim}, {"numel", m_numel},
    {"is_contiguous", m_is_contiguous}, {"get", m_get}, {"set", m_set}, {"item", m_item},
    {"narrow", m_narrow}, {"select", m_select}, {"transpose", m_transpose}, {"t", m_transpose},
    {"permute", m_permute}, {"view", m_view}, {"reshape", m_reshape}, {"flatten", m_flatten},
    {"unsqueeze", m_unsqueeze}, {"squeeze", m_squeeze}, {"expand", m_expand},
    {"contiguous", m_contiguous}, {"clone", m_clone}, {"copy", m_copy}, {"fill", m_fill},
    {"totable", m_totable}, {NULL, NULL}};

static const luaL_Reg tensor_functions[] = {
    {"tensor", l_tensor}, {"zeros", l_zeros}, {"ones", l_ones}, {"full", l_full}, {"arange", l_arange},
    {"rand", l_rand}, {"randn", l_randn}, {"randperm", l_randperm}, {NULL, NULL}};

void bind_tensor_open(lua_State *L, int dd) {
    luaL_newmetatable(L, TENSOR_MT);
    lua_pushliteral(L, "Tensor");
    lua_setfield(L, -2, "__name");
    lua_newtable(L); /* method table: shared with bind_math via dd.Tensor */
    luaL_setfuncs(L, tensor_methods, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, dd, "Tensor");
    lua_pushcclosure(L, m_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, m_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, m_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, m_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, m_len);
    lua_setfield(L, -2, "__len");
    lua_pop(L, 1);
    lua_pushvalue(L, dd);
    luaL_setfuncs(L, tensor_functions, 0);
    lua_pop(L, 1);
}

/* bind_math.c: tensor arithmetic from Lua: operators with NumPy broadcasting,
 * in-place forms, element-wise functions, reductions, comparisons, matmul.
 * Kernels are in tensor_math.c. */
#include "bind.h"
#include "tensor_math.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Pushes a op b where each side is a Tensor or a number; fn names the caller. */
static int push_binary(lua_State *L, int ia, int ib, BinaryOp op, const char *fn) {
    Tensor *a = ltensor_test(L, ia), *b = ltensor_test(L, ib);
    if (!a && !b) return dd_error(L, "%s: expected a Tensor operand, got %s and %s", fn, luaL_typename(L, ia), luaL_typename(L, ib));
    if (a && b) {
        int n;
        int64_t shape[TENSOR_MAX_DIMS];
        char err[512];
        if (broadcast_shapes_check(a->ndim, a->shape, b->ndim, b->shape, &n, shape, err, sizeof err))
            return dd_error(L, "%s: %s", fn, err);
        Tensor *out = ltensor_push_uninit(L, n, shape);
        Tensor va, vb;
        tensor_broadcast_view(&va, a, n, shape);
        tensor_broadcast_view(&vb, b, n, shape);
        tensor_binary(out, &va, &vb, op);
        return 1;
    }
    int scalar_idx = a ? ib : ia;
    if (lua_type(L, scalar_idx) != LUA_TNUMBER)
        return dd_error(L, "%s: expected a Tensor or a number, got %s", fn, luaL_typename(L, scalar_idx));
    float s = (float)lua_tonumber(L, scalar_idx);
    Tensor *t = a ? a : b;
    Tensor *out = ltensor_push_uninit(L, t->ndim, t->shape);
    tensor_binary_scalar(out, t, s, op, a == NULL);
    return 1;
}

/* self op= other in place; other must broadcast to self's shape. */
static int inplace_binary(lua_State *L, BinaryOp op, const char *fn) {
    Tensor *t = ltensor_check(L, 1);
    ltensor_check_writable(L, t, fn);
    Tensor *o = ltensor_test(L, 2);
    if (o) {
        int n;
        int64_t shape[TENSOR_MAX_DIMS];
        char err[512];
        if (broadcast_shapes_check(t->ndim, t->shape, o->ndim, o->shape, &n, shape, err, sizeof err))
            return dd_error(L, "%s: %s", fn, err);
        if (n != t->ndim || memcmp(shape, t->shape, (size_t)n * sizeof *shape) != 0) {
            char a[256], b[256];
            return dd_error(L, "%s: operand of shape %s does not broadcast to the tensor's shape %s", fn,
                              shape_format(a, sizeof a, o->ndim, o->shape), shape_format(b, sizeof b, t->ndim, t->shape));
        }
        Tensor vo;
        tensor_broadcast_view(&vo, o, n, shape);
        /* An operand that overlaps self in a different layout is copied first. */
        if (o->storage == t->storage && !(o->offset == t->offset && tensor_same_shape(o, t) &&
                                          memcmp(o->stride, t->stride, sizeof o->stride) == 0)) {
            Tensor *c = ltensor_push_new(L, o->ndim, o->shape);
            tensor_copy_data(c, o);
            tensor_broadcast_view(&vo, c, n, shape);
        }
        tensor_binary(t, t, &vo, op);
    } else if (lua_type(L, 2) == LUA_TNUMBER) {
        tensor_binary_scalar(t, t, (float)lua_tonumber(L, 2), op, 0);
    } else {
        return dd_error(L, "%s: expected a Tensor or a number, got %s", fn, luaL_typename(L, 2));
    }
    lua_settop(L, 1);
    return 1;
}

#define BINARY_BINDINGS(NAME, OP)                                                          \
    static int m_##NAME(lua_State *L) { return push_binary(L, 1, 2, OP, #NAME); }          \
    static int m_##NAME##_(lua_State *L) { return inplace_binary(L, OP, #NAME "_"); }
BINARY_BINDINGS(add, BIN_ADD)
BINARY_BINDINGS(sub, BIN_SUB)
BINARY_BINDINGS(mul, BIN_MUL)
BINARY_BINDINGS(div, BIN_DIV)
BINARY_BINDINGS(pow, BIN_POW)
BINARY_BINDINGS(maximum, BIN_MAX)
BINARY_BINDINGS(minimum, BIN_MIN)
BINARY_BINDINGS(lt, BIN_LT)
BINARY_BINDINGS(le, BIN_LE)
BINARY_BINDINGS(gt, BIN_GT)
BINARY_BINDINGS(ge, BIN_GE)
BINARY_BINDINGS(eq, BIN_EQ)
BINARY_BINDINGS(ne, BIN_NE)
#undef BINARY_BINDINGS

static int m_unm(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    Tensor *out = ltensor_push_uninit(L, t->ndim, t->shape);
    tensor_unary(out, t, UN_NEG);
    return 1;
}

#define UNARY_BINDINGS(NAME, OP)                                                           \
    static int m_##NAME(lua_State *L) {                                                    \
        Tensor *t = ltensor_check(L, 1);                                                   \
        Tensor *out = ltensor_push_uninit(L, t->ndim, t->shape);                              \
        tensor_unary(out, t, OP);                                                          \
        return 1;                                                                          \
    }                                                                                      \
    static int m_##NAME##_(lua_State *L) {                                                 \
        Tensor *t = ltensor_check(L, 1);                                                   \
        ltensor_check_writable(L, t, #NAME "_");                                           \
        tensor_unary(t, t, OP);                                                            \
        lua_settop(L, 1);                                                                  \
        return 1;                                                                          \
    }
UNARY_BINDINGS(neg, UN_NEG)
UNARY_BINDINGS(exp, UN_EXP)
UNARY_BINDINGS(log, UN_LOG)
UNARY_BINDINGS(sqrt, UN_SQRT)
UNARY_BINDINGS(abs, UN_ABS)
UNARY_BINDINGS(tanh, UN_TANH)
UNARY_BINDINGS(sigmoid, UN_SIGMOID)
UNARY_BINDINGS(relu, UN_RELU)
UNARY_BINDINGS(sin, UN_SIN)
UNARY_BINDINGS(cos, UN_COS)
UNARY_BINDINGS(floor, UN_FLOOR)
UNARY_BINDINGS(ceil, UN_CEIL)
UNARY_BINDINGS(round, UN_ROUND)
UNARY_BINDINGS(sign, UN_SIGN)
UNARY_BINDINGS(square, UN_SQUARE)
#undef UNARY_BINDINGS

/* clamp(lo, hi): either bound may be nil (unbounded on that side). */
static void clamp_bounds(lua_State *L, const char *fn, float *lo, float *hi) {
    *lo = -INFINITY;
    *hi = INFINITY;
    if (lua_isnoneornil(L, 2) && lua_isnoneornil(L, 3)) dd_error(L, "%s: at least one of min and max is required", fn);
    if (!lua_isnoneornil(L, 2)) {
        if (lua_type(L, 2) != LUA_TNUMBER) dd_error(L, "%s: min must be a number or nil, got %s", fn, luaL_typename(L, 2));
        *lo = (float)lua_tonumber(L, 2);
    }
    if (!lua_isnoneornil(L, 3)) {
        if (lua_type(L, 3) != LUA_TNUMBER) dd_error(L, "%s: max must be a number or nil, got %s", fn, luaL_typename(L, 3));
        *hi = (float)lua_tonumber(L, 3);
    }
    if (*lo > *hi) dd_error(L, "%s: min %f is greater than max %f", fn, (double)*lo, (double)*hi);
}

static int m_clamp(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    float lo, hi;
    clamp_bounds(L, "clamp", &lo, &hi);
    Tensor *out = ltensor_push_uninit(L, t->ndim, t->shape);
    tensor_clamp(out, t, lo, hi);
    return 1;
}

static int m_clamp_(lua_State *L) {
    Tensor *t = ltensor_check(L, 1);
    float lo, hi;
    clamp_bounds(L, "clamp_", &lo, &hi);
    ltensor_check_writable(L, t, "clamp_");
    tensor_clamp(t, t, lo, hi);
    lua_settop(L, 1);
    return 1;
}

/* t:sum() -> number; t:sum(dim [, keepdim]) -> tensor. max/min over a dim
 * return (values, indices) with 1-based indices; argmax/argmin 1-based. */
static int reduce(lua_State *L, ReduceOp op, const char *fn) {
    Tensor *t = ltensor_check(L, 1);
    int is_arg = op == RED_ARGMAX || op == RED_ARGMIN;
    if (lua_isnoneornil(L, 2)) {
        if (tensor_numel(t) == 0 && op != RED_SUM)
            return dd_error(L, "%s: the tensor is empty", fn);
        double v = tensor_reduce_all(t, op);
        if (is_arg) lua_pushinteger(L, (lua_Integer)v + 1);
        else lpush_float(L, v);
        return 1;
    }
    if (t->ndim == 0) return dd_error(L, "%s: a 0-d tensor has no dimension to reduce", fn);
    int isnum = 0;
    lua_Integer d = lua_tointegerx(L, 2, &isnum);
    if (!isnum) return dd_error(L, "%s: dimension must be an integer, got %s", fn, larg_describe(L, 2));
    if (d < 0) d += t->ndim + 1;
    if (d < 1 || d > t->ndim) return dd_error(L, "%s: dimension %s out of range for a %d-d tensor", fn, lua_tostring(L, 2), t->ndim);
    int dim = (int)d - 1;
    if (t->shape[dim] == 0 && op != RED_SUM) return dd_error(L, "%s: dimension %d is empty", fn, dim + 1);
    int keepdim = lua_toboolean(L, 3);
    int64_t shape[TENSOR_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (i != dim) shape[n++] = t->shape[i];
        else if (keepdim) shape[n++] = 1;
    }
    ReduceOp kernel_op = op == RED_ARGMAX ? RED_MAX : op == RED_ARGMIN ? RED_MIN : op;
    Tensor *values = ltensor_push_uninit(L, n, shape);
    Tensor *idx = NULL;
    if (op == RED_MAX || op == RED_MIN || is_arg) idx = ltensor_push_uninit(L, n, shape);
    tensor_reduce_dim(values, idx, t, dim, kernel_op);
    if (idx) tensor_binary_scalar(idx, idx, 1.0f, BIN_ADD, 0); /* 1-based */
    if (is_arg) return 1;
    return idx ? 2 : 1;
}

static int m_sum(lua_State *L) { return reduce(L, RED_SUM, "sum"); }
static int m_mean(lua_State *L) { return reduce(L, RED_MEAN, "mean"); }
static int m_max(lua_State *L) { return reduce(L, RED_MAX, "max"); }
static int m_min(lua_State *L) { return reduce(L, RED_MIN, "min"); }
static int m_argmax(lua_State *L) { return reduce(L, RED_ARGMAX, "argmax"); }
static int m_argmin(lua_State *L) { return reduce(L, RED_ARGMIN, "argmin"); }

static int l_matmul(lua_State *L) {
    Tensor *a = ltensor_check(L, 1), *b = ltensor_check(L, 2);
    int n;
    int64_t shape[3];
    char err[512];
    if (matmul_check(a, b, &n, shape, err, sizeof err)) return dd_error(L, "matmul: %s", err);
    Tensor *c = ltensor_push_uninit(L, n, shape);
    if (tensor_matmul(c, a, b) != TENSOR_OK) return dd_error(L, "matmul: out of memory");
    return 1;
}

static const luaL_Reg math_methods[] = {
#define BOTH(NAME) {#NAME, m_##NAME}, {#NAME "_", m_##NAME##_}
    BOTH(add), BOTH(sub), BOTH(mul), BOTH(div), BOTH(pow), BOTH(maximum), BOTH(minimum),
    BOTH(lt), BOTH(le), BOTH(gt), BOTH(ge), BOTH(eq), BOTH(ne),
    BOTH(neg), BOTH(exp), BOTH(log), BOTH(sqrt), BOTH(abs), BOTH(tanh), BOTH(sigmoid), BOTH(relu),
    BOTH(sin), BOTH(cos), BOTH(floor), BOTH(ceil), BOTH(round), BOTH(sign), BOTH(square), BOTH(clamp),
#undef BOTH
    {"sum", m_sum}, {"mean", m_mean}, {"max", m_max}, {"min", m_min}, {"argmax", m_argmax},
    {"argmin", m_argmin}, {"matmul", l_matmul}, {NULL, NULL}};

static int mm_add(lua_State *L) { return push_binary(L, 1, 2, BIN_ADD, "+"); }
static int mm_sub(lua_State *L) { return push_binary(L, 1, 2, BIN_SUB, "-"); }
static int mm_mul(lua_State *L) { return push_binary(L, 1, 2, BIN_MUL, "*"); }
static int mm_div(lua_State *L) { return push_binary(L, 1, 2, BIN_DIV, "/"); }
static int mm_pow(lua_State *L) { return push_binary(L, 1, 2, BIN_POW, "^"); }

static const luaL_Reg math_metamethods[] = {
    {"__add", mm_add}, {"__sub", mm_sub}, {"__mul", mm_mul}, {"__div", mm_div},
    {"__pow", mm_pow}, {"__unm", m_unm}, {NULL, NULL}};

void bind_math_open(lua_State *L, int dd) {
    /* Methods go into dd.Tensor (the method table); functions also as dd.NAME. */
    lua_getfield(L, dd, "Tensor");
    luaL_setfuncs(L, math_methods, 0);
    lua_pop(L, 1);
    luaL_getmetatable(L, TENSOR_MT);
    luaL_setfuncs(L, math_metamethods, 0);
    lua_pop(L, 1);
    lua_pushvalue(L, dd);
    luaL_setfuncs(L, math_methods, 0);
    lua_pop(L, 1);
}

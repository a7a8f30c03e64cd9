/* bind_loss.c: loss functions as userdata of one type, "dd.Loss":
 *   dd.nn.MSELoss{reduction='mean'|'sum'}
 *   dd.nn.BCELoss{reduction='mean'|'sum', eps=1e-7}
 *   dd.nn.DiceLoss{reduction='mean'|'sum', smooth=1, foreground=1|0}
 *                               soft Dice per sample (first dimension); foreground=0
 *                               takes the low values as the shape (dark silhouettes)
 *   dd.nn.MDNLoss{mixtures=K}   y is (..., K*(1+2D)) raw MDN output, target (..., D);
 *                               the mean over samples of the mixture NLL (mdn_loss.h)
 *   loss:forward(y, target) -> number       (also loss(y, target))
 *   loss:backward(y, target) -> dy          dy is a buffer the loss owns: the next
 *                                           backward overwrites it (clone to keep it)
 * Fields: loss.kind, loss.reduction, loss.eps, loss.smooth, loss.foreground, loss.mixtures. Kernels are in
 * loss.c and mdn_loss.c. */
#include "bind.h"
#include "loss.h"
#include "mdn_loss.h"

#include <stdio.h>
#include <string.h>

#define LOSS_MT "dd.Loss"

typedef enum LossKind { LOSS_KIND_MSE, LOSS_KIND_BCE, LOSS_KIND_MDN, LOSS_KIND_DICE } LossKind;
static const char *const loss_kind_names[] = {"MSELoss", "BCELoss", "MDNLoss", "DiceLoss"};
static const char *const reduction_names[] = {"mean", "sum"};

/* Uservalue slots of a loss userdata. */
enum { UV_GRAD = 1, UV_COUNT = UV_GRAD };

typedef struct LLoss {
    LossKind kind;
    LossReduction reduction;
    float eps;
    int mixtures;   /* MDN: K */
    float smooth;   /* Dice */
    int foreground; /* Dice: 1 or 0 */
} LLoss;

static LLoss *lloss_check(lua_State *L, int idx) {
    LLoss *u = luaL_testudata(L, idx, LOSS_MT);
    if (!u) luaL_typeerror(L, idx, "Loss");
    return u;
}

static LossReduction opt_reduction(lua_State *L, int opts, const char *fn) {
    lua_getfield(L, opts, "reduction");
    LossReduction r = LOSS_MEAN;
    if (!lua_isnil(L, -1)) {
        const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (s && strcmp(s, "mean") == 0) r = LOSS_MEAN;
        else if (s && strcmp(s, "sum") == 0) r = LOSS_SUM;
        else
            dd_error(L, "%s: option 'reduction' must be 'mean' or 'sum', got %s", fn,
                       s ? lua_pushfstring(L, "'%s'", s) : luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    return r;
}

/* The options table at 1 (absent: empty), checked against known. */
static void opts_table(lua_State *L, const char *fn, const char *const *known) {
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    } else if (!lua_istable(L, 1)) {
        dd_error(L, "%s: expected an options table, got %s", fn, luaL_typename(L, 1));
    }
    if (lua_gettop(L) > 1) dd_error(L, "%s: expected one options table, got %d arguments", fn, lua_gettop(L));
    lopts_check(L, 1, fn, known);
}

static LLoss *lloss_push(lua_State *L, LossKind kind) {
    LLoss *u = lua_newuserdatauv(L, sizeof *u, UV_COUNT);
    memset(u, 0, sizeof *u);
    u->kind = kind;
    luaL_setmetatable(L, LOSS_MT);
    return u;
}

static int l_dice(lua_State *L) {
    static const char *const known[] = {"reduction", "smooth", "foreground", NULL};
    opts_table(L, "DiceLoss", known);
    LossReduction r = opt_reduction(L, 1, "DiceLoss");
    double smooth = 1;
    lua_getfield(L, 1, "smooth");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            return dd_error(L, "DiceLoss: option 'smooth' must be a number, got %s", luaL_typename(L, -1));
        smooth = lua_tonumber(L, -1);
        if (!(smooth > 0 && smooth < 1e30))
            return dd_error(L, "DiceLoss: option 'smooth' must be a positive number, got %g", smooth);
    }
    lua_getfield(L, 1, "foreground");
    lua_Integer fg = 1;
    if (!lua_isnil(L, -1)) {
        if (!lua_isinteger(L, -1) || (lua_tointeger(L, -1) != 0 && lua_tointeger(L, -1) != 1))
            return dd_error(L, "DiceLoss: option 'foreground' must be 1 (high values) or 0 (low values), got %s",
                            larg_describe(L, -1));
        fg = lua_tointeger(L, -1);
    }
    lua_pop(L, 2);
    LLoss *u = lloss_push(L, LOSS_KIND_DICE);
    u->reduction = r;
    u->smooth = (float)smooth;
    u->foreground = (int)fg;
    return 1;
}

static int l_mse(lua_State *L) {
    static const char *const known[] = {"reduction", NULL};
    opts_table(L, "MSELoss", known);
    LossReduction r = opt_reduction(L, 1, "MSELoss");
    lloss_push(L, LOSS_KIND_MSE)->reduction = r;
    return 1;
}

static int l_bce(lua_State *L) {
    static const char *const known[] = {"reduction", "eps", NULL};
    opts_table(L, "BCELoss", known);
    LossReduction r = opt_reduction(L, 1, "BCELoss");
    double eps = 1e-7;
    lua_getfield(L, 1, "eps");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            return dd_error(L, "BCELoss: option 'eps' must be a number, got %s", luaL_typename(L, -1));
        eps = lua_tonumber(L, -1);
        if (!(eps >= 0 && eps < 0.5)) return dd_error(L, "BCELoss: option 'eps' must be in [0, 0.5), got %f", eps);
    }
    lua_pop(L, 1);
    LLoss *u = lloss_push(L, LOSS_KIND_BCE);
    u->reduction = r;
    u->eps = (float)eps;
    return 1;
}

static int l_mdn(lua_State *L) {
    static const char *const known[] = {"mixtures", NULL};
    opts_table(L, "MDNLoss", known);
    lua_getfield(L, 1, "mixtures");
    if (lua_isnil(L, -1)) return dd_error(L, "MDNLoss: option 'mixtures' (the number of components K) is required");
    int k = (int)larg_int(L, -1, "MDNLoss: option 'mixtures'", 1, 1 << 20);
    LLoss *u = lloss_push(L, LOSS_KIND_MDN);
    u->reduction = LOSS_MEAN;
    u->mixtures = k;
    return 1;
}

/* ---- forward / backward ---- */

/* A contiguous version of the tensor at idx (replacing it on the stack). */
static Tensor *contiguous_arg(lua_State *L, int idx) {
    Tensor *t = ltensor_check(L, idx);
    if (tensor_is_contiguous(t)) return t;
    Tensor *c = ltensor_push_uninit(L, t->ndim, t->shape);
    tensor_copy_data(c, t);
    lua_replace(L, idx);
    return c;
}

/* MDN: y (..., K*(1+2D)) and target (..., D) with the same leading dims;
 * returns the number of samples and sets *d. */
static int64_t mdn_check_shapes(lua_State *L, const LLoss *u, const char *fn, const Tensor *y, const Tensor *t, int *d) {
    char a[256], b[256];
    shape_format(a, sizeof a, y->ndim, y->shape);
    shape_format(b, sizeof b, t->ndim, t->shape);
    int same_lead = y->ndim == t->ndim && y->ndim >= 1;
    for (int i = 0; same_lead && i < y->ndim - 1; i++) same_lead = y->shape[i] == t->shape[i];
    if (!same_lead)
        dd_error(L, "MDNLoss:%s: prediction %s and target %s must be (N, K*(1+2D)) and (N, D) with the same "
                   "leading dimensions", fn, a, b);
    int64_t dd = t->shape[t->ndim - 1], w = y->shape[y->ndim - 1], k = u->mixtures;
    if (dd < 1 || dd > (1 << 20))
        dd_error(L, "MDNLoss:%s: target %s must have D >= 1 values per sample", fn, b);
    if (w != k * (1 + 2 * dd))
        dd_error(L, "MDNLoss:%s: prediction %s has width %lld, expected K*(1+2D) = %lld*(1+2*%lld) = %lld for "
                   "mixtures=%lld and a target of width D=%lld", fn, a, (lua_Integer)w, (lua_Integer)k, (lua_Integer)dd,
                   (lua_Integer)(k * (1 + 2 * dd)), (lua_Integer)k, (lua_Integer)dd);
    int64_t n = tensor_numel(t) / dd;
    if (n < 1) dd_error(L, "MDNLoss:%s: no samples (target %s)", fn, b);
    *d = (int)dd;
    return n;
}

/* Dice samples: the first dimension; each needs at least one element. */
static int64_t dice_samples(lua_State *L, const Tensor *y, const char *fn) {
    char a[256];
    if (y->ndim < 1 || y->shape[0] < 1 || tensor_numel(y) < 1)
        dd_error(L, "DiceLoss:%s: prediction %s must have a first (sample) dimension of at least 1 and elements in "
                    "each sample", fn, shape_format(a, sizeof a, y->ndim, y->shape));
    return y->shape[0];
}

/* The one shape check shared by forward and backward: y and target are
 * Tensors of exactly the same shape (MSE, BCE) or MDN-compatible shapes.
 * Leaves contiguous versions at 2 and 3. */
static void loss_check_args(lua_State *L, const LLoss *u, const char *fn, Tensor **y, Tensor **t) {
    const char *name = loss_kind_names[u->kind];
    if (!ltensor_test(L, 2))
        dd_error(L, "%s:%s: prediction (argument 1) must be a Tensor, got %s", name, fn, luaL_typename(L, 2));
    if (!ltensor_test(L, 3))
        dd_error(L, "%s:%s: target (argument 2) must be a Tensor, got %s", name, fn, luaL_typename(L, 3));
    lua_settop(L, 3);
    *y = contiguous_arg(L, 2);
    *t = contiguous_arg(L, 3);
    if (u->kind == LOSS_KIND_MDN) return;
    if (!tensor_same_shape(*y, *t)) {
        char a[256], b[256];
        dd_error(L, "%s:%s: prediction has shape %s but target has shape %s (they must match exactly)", name, fn,
                   shape_format(a, sizeof a, (*y)->ndim, (*y)->shape), shape_format(b, sizeof b, (*t)->ndim, (*t)->shape));
    }
}

static int l_forward(lua_State *L) {
    LLoss *u = lloss_check(L, 1);
    Tensor *y, *t;
    loss_check_args(L, u, "forward", &y, &t);
    int64_t n = tensor_numel(y);
    double v = 0;
    switch (u->kind) {
    case LOSS_KIND_MSE: v = mse_forward(tensor_data(y), tensor_data(t), n, u->reduction); break;
    case LOSS_KIND_BCE: v = bce_forward(tensor_data(y), tensor_data(t), n, u->eps, u->reduction); break;
    case LOSS_KIND_DICE: {
        int64_t samples = dice_samples(L, y, "forward");
        v = dice_forward(tensor_data(y), tensor_data(t), samples, n / samples, u->smooth, !u->foreground, u->reduction);
        break;
    }
    case LOSS_KIND_MDN: {
        int d;
        int64_t samples = mdn_check_shapes(L, u, "forward", y, t, &d);
        v = mdn_loss_forward(tensor_data(y), tensor_data(t), samples, u->mixtures, d);
        break;
    }
    }
    lua_pushnumber(L, v);
    return 1;
}

/* The loss's gradient buffer shaped like y, reused when it already has that
 * shape and does not share storage with an input. */
static Tensor *grad_buffer(lua_State *L, const Tensor *y, const Tensor *t) {
    lua_getiuservalue(L, 1, UV_GRAD);
    Tensor *b = ltensor_test(L, -1);
    if (b && tensor_same_shape(b, y) && tensor_is_contiguous(b) && b->storage != y->storage &&
        b->storage != t->storage)
        return b;
    lua_pop(L, 1);
    b = ltensor_push_uninit(L, y->ndim, y->shape);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, UV_GRAD);
    return b;
}

static int l_backward(lua_State *L) {
    LLoss *u = lloss_check(L, 1);
    Tensor *y, *t;
    loss_check_args(L, u, "backward", &y, &t);
    int d = 0;
    int64_t samples = u->kind == LOSS_KIND_MDN ? mdn_check_shapes(L, u, "backward", y, t, &d) : 0;
    Tensor *dy = grad_buffer(L, y, t);
    int64_t n = tensor_numel(y);
    switch (u->kind) {
    case LOSS_KIND_MSE: mse_backward(tensor_data(dy), tensor_data(y), tensor_data(t), n, u->reduction); break;
    case LOSS_KIND_BCE: bce_backward(tensor_data(dy), tensor_data(y), tensor_data(t), n, u->eps, u->reduction); break;
    case LOSS_KIND_DICE: {
        int64_t samples = dice_samples(L, y, "backward");
        dice_backward(tensor_data(dy), tensor_data(y), tensor_data(t), samples, n / samples, u->smooth, !u->foreground,
                      u->reduction);
        break;
    }
    case LOSS_KIND_MDN: /* the kernel accumulates */
        tensor_fill(dy, 0);
        mdn_loss_backward(tensor_data(dy), tensor_data(y), tensor_data(t), samples, u->mixtures, d, 1.0f);
        break;
    }
    return 1;
}

/* loss(y, target) == loss:forward(y, target) */
static int l_call(lua_State *L) { return l_forward(L); }

static int l_tostring(lua_State *L) {
    LLoss *u = lloss_check(L, 1);
    if (u->kind == LOSS_KIND_BCE) {
        char eps[32];
        snprintf(eps, sizeof eps, "%.7g", (double)u->eps);
        lua_pushfstring(L, "BCELoss(reduction='%s', eps=%s)", reduction_names[u->reduction], eps);
    } else if (u->kind == LOSS_KIND_MDN) {
        lua_pushfstring(L, "MDNLoss(mixtures=%d)", u->mixtures);
    } else if (u->kind == LOSS_KIND_DICE) {
        char smooth[32];
        snprintf(smooth, sizeof smooth, "%.7g", (double)u->smooth);
        lua_pushfstring(L, "DiceLoss(reduction='%s', smooth=%s, foreground=%d)", reduction_names[u->reduction], smooth,
                        u->foreground);
    } else
        lua_pushfstring(L, "%s(reduction='%s')", loss_kind_names[u->kind], reduction_names[u->reduction]);
    return 1;
}

static const luaL_Reg loss_methods[] = {{"forward", l_forward}, {"backward", l_backward}, {NULL, NULL}};

static int l_index(lua_State *L) {
    LLoss *u = lloss_check(L, 1);
    const char *key = lua_tostring(L, 2);
    if (key && strcmp(key, "kind") == 0) {
        lua_pushstring(L, loss_kind_names[u->kind]);
        return 1;
    }
    if (key && strcmp(key, "reduction") == 0) {
        lua_pushstring(L, reduction_names[u->reduction]);
        return 1;
    }
    if (key && strcmp(key, "eps") == 0 && u->kind == LOSS_KIND_BCE) {
        lua_pushnumber(L, u->eps);
        return 1;
    }
    if (key && strcmp(key, "smooth") == 0 && u->kind == LOSS_KIND_DICE) {
        lua_pushnumber(L, u->smooth);
        return 1;
    }
    if (key && strcmp(key, "foreground") == 0 && u->kind == LOSS_KIND_DICE) {
        lua_pushinteger(L, u->foreground);
        return 1;
    }
    if (key && strcmp(key, "mixtures") == 0 && u->kind == LOSS_KIND_MDN) {
        lua_pushinteger(L, u->mixtures);
        return 1;
    }
    if (key && strcmp(key, "grad") == 0) { /* the buffer backward returns */
        lua_getiuservalue(L, 1, UV_GRAD);
        return 1;
    }
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
}

static int l_newindex(lua_State *L) {
    LLoss *u = lloss_check(L, 1);
    return dd_error(L, "%s: field '%s' cannot be assigned (make a new loss instead)", loss_kind_names[u->kind],
                      lua_tostring(L, 2) ? lua_tostring(L, 2) : luaL_typename(L, 2));
}

void bind_loss_open(lua_State *L, int dd) {
    dd = lua_absindex(L, dd);
    luaL_newmetatable(L, LOSS_MT);
    lua_pushliteral(L, "Loss");
    lua_setfield(L, -2, "__name");
    lua_newtable(L);
    luaL_setfuncs(L, loss_methods, 0);
    lua_pushcclosure(L, l_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, l_call);
    lua_setfield(L, -2, "__call");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    luaL_getsubtable(L, dd, "nn");
    lua_pushcfunction(L, l_mse);
    lua_setfield(L, -2, "MSELoss");
    lua_pushcfunction(L, l_bce);
    lua_setfield(L, -2, "BCELoss");
    lua_pushcfunction(L, l_mdn);
    lua_setfield(L, -2, "MDNLoss");
    lua_pushcfunction(L, l_dice);
    lua_setfield(L, -2, "DiceLoss");
    lua_pop(L, 1);
}

/* bind_optim.c: optimizers as userdata of one type, "dd.Optimizer", and
 * dd.nn.clip_grad_norm. Update rules are in optim.c.
 *
 *   dd.optim.SGD{params, lr=, momentum=0, dampening=0, weight_decay=0, nesterov=false}
 *   dd.optim.Adam{params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-7, weight_decay=0,
 *                 amsgrad=false, eps_mode='keras'|'torch'}
 *   dd.optim.RMSprop{params, lr=1e-3, rho=0.9, eps=1e-7, momentum=0, centered=false, weight_decay=0}
 *
 * `params` is what m:parameters() returns: an array of {name=, value=, grad=}.
 * At construction every value is copied into one flat float buffer and every
 * grad into another, and each value/grad Tensor userdata is re-pointed into
 * them (storage, offset, contiguous strides), so layers that hold those
 * tensors see the updates and step() is one loop. Parameters that already lie
 * back to back in one storage (built by an earlier optimizer over the same
 * list, or a contiguous part of it) are used where they are, without copying.
 * Views taken of a parameter before the optimizer was built keep the old
 * storage: take views after.
 *
 * Memory: 2n floats of flat value/grad (replacing the layers' own) plus the
 * state: SGD n (with momentum), Adam 2n (3n with amsgrad), RMSprop n to 3n. */
#include "bind.h"
#include "optim.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define OPTIM_MT "dd.Optimizer"
#define OPTIM_MAX_STATES 3

typedef enum OptimKind { OPTIM_SGD, OPTIM_ADAM, OPTIM_RMSPROP, OPTIM_NKINDS } OptimKind;

/* The hyper-parameters of every kind; a kind uses its own member. */
typedef struct OptimHyper {
    SgdParams sgd;
    AdamParams adam;
    RmspropParams rms;
} OptimHyper;

typedef enum HyperType { HP_NUMBER, HP_BOOL, HP_EPS_MODE } HyperType;

/* One hyper-parameter: where it lives in OptimHyper, its default and range.
 * `structural` ones decide which state exists, so load_state_dict requires
 * them to match instead of restoring them. */
typedef struct HyperParam {
    const char *name;
    HyperType type;
    size_t offset;
    int required;
    double dflt, lo, hi;
    int hi_open; /* range [lo, hi) instead of [lo, hi] */
    int structural;
} HyperParam;

#define HPN(kind, field, req, d, lo, hi, open) \
    {#field, HP_NUMBER, offsetof(OptimHyper, kind.field), req, d, lo, hi, open, 0}
#define HPB(kind, field) {#field, HP_BOOL, offsetof(OptimHyper, kind.field), 0, 0, 0, 1, 0, 1}

static const HyperParam sgd_hyper[] = {
    HPN(sgd, lr, 1, 0, 0, INFINITY, 0),
    HPN(sgd, momentum, 0, 0, 0, INFINITY, 0),
    HPN(sgd, dampening, 0, 0, 0, 1, 0),
    HPN(sgd, weight_decay, 0, 0, 0, INFINITY, 0),
    HPB(sgd, nesterov),
    {NULL, 0, 0, 0, 0, 0, 0, 0, 0}};
static const HyperParam adam_hyper[] = {
    HPN(adam, lr, 0, 1e-3, 0, INFINITY, 0),
    HPN(adam, beta1, 0, 0.9, 0, 1, 1),
    HPN(adam, beta2, 0, 0.999, 0, 1, 1),
    HPN(adam, eps, 0, 1e-7, 0, INFINITY, 0),
    HPN(adam, weight_decay, 0, 0, 0, INFINITY, 0),
    HPB(adam, amsgrad),
    {"eps_mode", HP_EPS_MODE, offsetof(OptimHyper, adam.eps_mode), 0, ADAM_EPS_KERAS, 0, 1, 0, 1},
    {NULL, 0, 0, 0, 0, 0, 0, 0, 0}};
static const HyperParam rmsprop_hyper[] = {
    HPN(rms, lr, 0, 1e-3, 0, INFINITY, 0),
    HPN(rms, rho, 0, 0.9, 0, 1, 1),
    HPN(rms, eps, 0, 1e-7, 0, INFINITY, 0),
    HPN(rms, momentum, 0, 0, 0, INFINITY, 0),
    HPB(rms, centered),
    HPN(rms, weight_decay, 0, 0, 0, INFINITY, 0),
    {NULL, 0, 0, 0, 0, 0, 0, 0, 0}};

static const struct {
    const char *name;
    const HyperParam *hyper;
    const char *states[OPTIM_MAX_STATES]; /* names in state_dict, NULL = unused slot */
} kinds[OPTIM_NKINDS] = {
    [OPTIM_SGD] = {"SGD", sgd_hyper, {"momentum_buffer", NULL, NULL}},
    [OPTIM_ADAM] = {"Adam", adam_hyper, {"m", "v", "v_max"}},
    [OPTIM_RMSPROP] = {"RMSprop", rmsprop_hyper, {"square_avg", "grad_avg", "momentum_buffer"}},
};

static const char *const eps_mode_names[] = {"keras", "torch"};

/* Whether state slot i is used with these hyper-parameters. */
static int state_active(OptimKind kind, const OptimHyper *hp, int i) {
    switch (kind) {
    case OPTIM_SGD: return i == 0 && hp->sgd.momentum != 0;
    case OPTIM_ADAM: return i < 2 || (i == 2 && hp->adam.amsgrad);
    case OPTIM_RMSPROP: return i == 0 || (i == 1 && hp->rms.centered) || (i == 2 && hp->rms.momentum > 0);
    default: return 0;
    }
}

/* A parameter: its tensors (kept alive by the params table in the uservalue)
 * and where it starts in the flat range. */
typedef struct ParamRef {
    Tensor *value, *grad;
    int64_t offset;
} ParamRef;

typedef struct LOptim {
    OptimKind kind;
    OptimHyper hp;
    int64_t n;              /* parameter elements in all */
    int64_t step;           /* steps taken */
    Storage *w, *g;         /* flat values and grads (retained) */
    int64_t w_off, g_off;   /* where this optimizer's range starts in them */
    Storage *state[OPTIM_MAX_STATES];
    int nparams;
    ParamRef params[];
} LOptim;

enum { UV_PARAMS = 1, UV_COUNT = UV_PARAMS };

static LOptim *loptim_check(lua_State *L, int idx) {
    LOptim *u = luaL_testudata(L, idx, OPTIM_MT);
    if (!u) luaL_typeerror(L, idx, "Optimizer");
    /* after a direct call of its __gc, which a script can make */
    if (!u->w) dd_error(L, "Optimizer has been freed");
    return u;
}

static int l_gc(lua_State *L) {
    LOptim *u = luaL_checkudata(L, 1, OPTIM_MT);
    storage_release(u->w);
    storage_release(u->g);
    u->w = u->g = NULL;
    for (int i = 0; i < OPTIM_MAX_STATES; i++) {
        storage_release(u->state[i]);
        u->state[i] = NULL;
    }
    return 0;
}

/* ---- hyper-parameters ---- */

static void *hyper_field(OptimHyper *hp, const HyperParam *h) { return (char *)hp + h->offset; }

static const HyperParam *hyper_find(OptimKind kind, const char *name) {
    for (const HyperParam *h = kinds[kind].hyper; h->name; h++)
        if (strcmp(h->name, name) == 0) return h;
    return NULL;
}

static void hyper_push(lua_State *L, const OptimHyper *hp, const HyperParam *h) {
    const void *f = (const char *)hp + h->offset;
    switch (h->type) {
    case HP_NUMBER: lua_pushnumber(L, *(const double *)f); break;
    case HP_BOOL: lua_pushboolean(L, *(const int *)f); break;
    case HP_EPS_MODE: lua_pushstring(L, eps_mode_names[*(const AdamEpsMode *)f]); break;
    }
}

/* Reads the value at idx into hp's field h, or raises "<fn>: <what> ...". */
static void hyper_read(lua_State *L, int idx, OptimHyper *hp, const HyperParam *h, const char *fn, const char *what) {
    void *f = hyper_field(hp, h);
    int t = lua_type(L, idx);
    switch (h->type) {
    case HP_NUMBER: {
        if (t != LUA_TNUMBER) dd_error(L, "%s: %s '%s' must be a number, got %s", fn, what, h->name, luaL_typename(L, idx));
        double v = lua_tonumber(L, idx);
        if (!(v >= h->lo && (h->hi_open ? v < h->hi : v <= h->hi))) {
            char range[64];
            snprintf(range, sizeof range, "[%g, %g%s", h->lo, h->hi, h->hi_open ? ")" : "]");
            dd_error(L, "%s: %s '%s' must be in %s, got %s", fn, what, h->name, range, lua_tostring(L, idx));
        }
        *(double *)f = v;
        break;
    }
    case HP_BOOL:
        if (t != LUA_TBOOLEAN) dd_error(L, "%s: %s '%s' must be a boolean, got %s", fn, what, h->name, luaL_typename(L, idx));
        *(int *)f = lua_toboolean(L, idx);
        break;
    case HP_EPS_MODE: {
        const char *s = t == LUA_TSTRING ? lua_tostring(L, idx) : NULL;
        if (s && strcmp(s, "keras") == 0) *(AdamEpsMode *)f = ADAM_EPS_KERAS;
        else if (s && strcmp(s, "torch") == 0) *(AdamEpsMode *)f = ADAM_EPS_TORCH;
        else
            dd_error(L, "%s: %s '%s' must be 'keras' or 'torch', got %s", fn, what, h->name,
                       s ? lua_pushfstring(L, "'%s'", s) : luaL_typename(L, idx));
        break;
    }
    }
}

static void hyper_defaults(OptimKind kind, OptimHyper *hp) {
    memset(hp, 0, sizeof *hp);
    for (const HyperParam *h = kinds[kind].hyper; h->name; h++) {
        void *f = hyper_field(hp, h);
        switch (h->type) {
        case HP_NUMBER: *(double *)f = h->dflt; break;
        case HP_BOOL: *(int *)f = h->dflt != 0; break;
        case HP_EPS_MODE: *(AdamEpsMode *)f = (AdamEpsMode)h->dflt; break;
        }
    }
}

/* Checks between hyper-parameters (PyTorch's rules for SGD). */
static void hyper_validate(lua_State *L, OptimKind kind, const OptimHyper *hp, const char *fn) {
    if (kind == OPTIM_SGD && hp->sgd.nesterov && (hp->sgd.momentum <= 0 || hp->sgd.dampening != 0))
        dd_error(L, "%s: nesterov=true needs momentum > 0 and dampening = 0, got momentum=%f, dampening=%f", fn,
                   hp->sgd.momentum, hp->sgd.dampening);
}

static double *hyper_lr(OptimKind kind, OptimHyper *hp) {
    return kind == OPTIM_SGD ? &hp->sgd.lr : kind == OPTIM_ADAM ? &hp->adam.lr : &hp->rms.lr;
}

/* "params, lr, momentum, ..." for error messages, pushed on the stack. */
static const char *push_known(lua_State *L, OptimKind kind, const char *first) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    if (first) luaL_addstring(&b, first);
    for (const HyperParam *h = kinds[kind].hyper; h->name; h++) {
        if (first || h != kinds[kind].hyper) luaL_addstring(&b, ", ");
        luaL_addstring(&b, h->name);
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

/* ---- the params list ---- */

/* "params[3] ('bias')" into buf. */
static const char *param_label(char *buf, size_t len, int i, const char *name) {
    if (name) snprintf(buf, len, "params[%d] ('%s')", i, name);
    else snprintf(buf, len, "params[%d]", i);
    return buf;
}

static int ranges_overlap(const Tensor *a, const Tensor *b) {
    if (a->storage != b->storage) return 0;
    int64_t na = tensor_numel(a), nb = tensor_numel(b);
    if (na == 0 || nb == 0) return a == b;
    return a->offset < b->offset + nb && b->offset < a->offset + na;
}

/* Validates the params array at idx and copies it into a fresh array of
 * fresh {name, value, grad} tables pushed on the stack; fills refs (value,
 * grad) when given. Returns the count. Errors name the parameter. */
static int params_collect(lua_State *L, int idx, const char *fn, ParamRef *refs, int64_t *total) {
    idx = lua_absindex(L, idx);
    int np = (int)lua_rawlen(L, idx);
    if (np == 0) dd_error(L, "%s: params is empty (pass model:parameters())", fn);
    lua_createtable(L, np, 0);
    int out = lua_gettop(L);
    int64_t n = 0;
    for (int i = 1; i <= np; i++) {
        char label[160];
        lua_rawgeti(L, idx, i);
        int e = lua_gettop(L);
        if (!lua_istable(L, e))
            dd_error(L, "%s: params[%d] must be a table {name=, value=, grad=}, got %s", fn, i, luaL_typename(L, e));
        lua_getfield(L, e, "name");
        const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        param_label(label, sizeof label, i, name);
        lua_getfield(L, e, "value");
        Tensor *v = ltensor_test(L, -1);
        if (!v) dd_error(L, "%s: %s: value must be a Tensor, got %s", fn, label, luaL_typename(L, -1));
        lua_getfield(L, e, "grad");
        Tensor *g = ltensor_test(L, -1);
        if (!g) dd_error(L, "%s: %s: grad must be a Tensor, got %s", fn, label, luaL_typename(L, -1));
        if (!tensor_same_shape(v, g)) {
            char a[256], b[256];
            dd_error(L, "%s: %s: grad has shape %s but value has shape %s", fn, label,
                       shape_format(a, sizeof a, g->ndim, g->shape), shape_format(b, sizeof b, v->ndim, v->shape));
        }
        if (!tensor_is_contiguous(v) || !tensor_is_contiguous(g))
            dd_error(L, "%s: %s: %s is not contiguous (parameters must own contiguous memory)", fn, label,
                       tensor_is_contiguous(v) ? "grad" : "value");
        if (ranges_overlap(v, g)) dd_error(L, "%s: %s: value and grad share memory", fn, label);
        /* the same tensor (or memory) given twice */
        for (int j = 1; j < i; j++) {
            lua_rawgeti(L, out, j);
            lua_getfield(L, -1, "value");
            lua_getfield(L, -2, "grad");
            Tensor *v2 = lua_touserdata(L, -2), *g2 = lua_touserdata(L, -1);
            if (ranges_overlap(v, v2) || ranges_overlap(v, g2) || ranges_overlap(g, v2) || ranges_overlap(g, g2)) {
                lua_getfield(L, -3, "name");
                char other[160];
                param_label(other, sizeof other, j, lua_tostring(L, -1));
                dd_error(L, "%s: %s is given twice: it is (or shares memory with) %s", fn, label, other);
            }
            lua_pop(L, 3);
        }
        if (refs) {
            refs[i - 1].value = v;
            refs[i - 1].grad = g;
            refs[i - 1].offset = n;
        }
        n += tensor_numel(v);
        lua_createtable(L, 0, 3); /* stack: e, name, value, grad, copy */
        lua_pushvalue(L, e + 1);
        lua_setfield(L, -2, "name");
        lua_pushvalue(L, e + 2);
        lua_setfield(L, -2, "value");
        lua_pushvalue(L, e + 3);
        lua_setfield(L, -2, "grad");
        lua_rawseti(L, out, i);
        lua_settop(L, out);
    }
    *total = n;
    return np;
}

/* Whether the tensors (value or grad of every ref) already lie back to back in
 * one storage; *base gets the first offset. */
static int already_flat(const LOptim *u, int grad, int64_t *base) {
    const Tensor *t0 = grad ? u->params[0].grad : u->params[0].value;
    *base = t0->offset;
    for (int i = 0; i < u->nparams; i++) {
        const Tensor *t = grad ? u->params[i].grad : u->params[i].value;
        if (t->storage != t0->storage || t->offset != *base + u->params[i].offset) return 0;
    }
    return *base + u->n <= t0->storage->size;
}

/* Points t at [off, off + numel) of s, contiguous. */
static void tensor_repoint(Tensor *t, Storage *s, int64_t off) {
    storage_retain(s);
    storage_release(t->storage);
    t->storage = s;
    t->offset = off;
    tensor_contiguous_strides(t->ndim, t->shape, t->stride);
}

/* Makes the values (grad = 0) or grads (grad = 1) flat: reused in place when
 * they already are, else copied into a new storage owned by u. */
static void flatten(lua_State *L, LOptim *u, int grad, const char *fn) {
    Storage **dst = grad ? &u->g : &u->w;
    int64_t *off = grad ? &u->g_off : &u->w_off;
    if (already_flat(u, grad, off)) {
        Storage *s = grad ? u->params[0].grad->storage : u->params[0].value->storage;
        storage_retain(s);
        *dst = s;
        return;
    }
    *dst = storage_new_uninit(u->n);
    if (!*dst) {
        char mib[32];
        snprintf(mib, sizeof mib, "%.1f", (double)u->n * 4 / 1048576.0);
        dd_error(L, "%s: out of memory: cannot allocate the flat %s buffer (%s MiB)", fn, grad ? "gradient" : "parameter", mib);
    }
    *off = 0;
    /* copy everything first: re-pointing releases the old storages */
    for (int i = 0; i < u->nparams; i++) {
        const Tensor *t = grad ? u->params[i].grad : u->params[i].value;
        int64_t k = tensor_numel(t);
        if (k) memcpy((*dst)->data + u->params[i].offset, tensor_data(t), (size_t)k * sizeof(float));
    }
    for (int i = 0; i < u->nparams; i++)
        tensor_repoint(grad ? u->params[i].grad : u->params[i].value, *dst, u->params[i].offset);
}

/* ---- construction ---- */

static int l_construct(lua_State *L) {
    OptimKind kind = (OptimKind)lua_tointeger(L, lua_upvalueindex(1));
    const char *fn = kinds[kind].name;
    if (lua_gettop(L) != 1 || !lua_istable(L, 1))
        return dd_error(L, "%s: expected one options table {params, lr=...}, got %s%s", fn, luaL_typename(L, 1),
                          lua_gettop(L) > 1 ? " and more arguments" : "");
    /* the bare list, dd.optim.Adam(model:parameters()), instead of {list, ...} */
    lua_rawgeti(L, 1, 1);
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "value");
        if (!lua_isnil(L, -1))
            return dd_error(L, "%s: expected {params, lr=...} but got a bare parameter list: write %s{model:parameters(), lr=...}",
                              fn, fn);
    }
    lua_settop(L, 1);
    /* strict keys */
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TNUMBER) {
            if (lua_isinteger(L, -1) && lua_tointeger(L, -1) == 1) continue;
            return dd_error(L, "%s: unexpected positional entry [%s] (only params may be given by position)", fn,
                              lua_tostring(L, -1));
        }
        const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (key && (strcmp(key, "params") == 0 || hyper_find(kind, key))) continue;
        return dd_error(L, "%s: unknown option '%s' (known: %s)", fn, key ? key : luaL_typename(L, -1),
                          push_known(L, kind, "params"));
    }
    /* params: by position or by name */
    lua_rawgeti(L, 1, 1);
    lua_getfield(L, 1, "params");
    if (!lua_isnil(L, -1) && !lua_isnil(L, -2)) return dd_error(L, "%s: params given twice (by position and by name)", fn);
    if (lua_isnil(L, -1)) lua_pop(L, 1);
    else lua_remove(L, -2);
    int plist = lua_gettop(L);
    if (lua_isnil(L, plist)) return dd_error(L, "%s: params is required: %s{model:parameters(), lr=...}", fn, fn);
    if (!lua_istable(L, plist)) return dd_error(L, "%s: params must be a table (from m:parameters()), got %s", fn, luaL_typename(L, plist));
    lua_getfield(L, plist, "value");
    if (!lua_isnil(L, -1))
        return dd_error(L, "%s: params must be a list of {name=, value=, grad=} tables, got a single entry "
                          "(wrap it: {p})", fn);
    lua_pop(L, 1);
    /* hyper-parameters */
    OptimHyper hp;
    hyper_defaults(kind, &hp);
    for (const HyperParam *h = kinds[kind].hyper; h->name; h++) {
        lua_getfield(L, 1, h->name);
        if (!lua_isnil(L, -1)) hyper_read(L, -1, &hp, h, fn, "option");
        else if (h->required) return dd_error(L, "%s: option '%s' is required", fn, h->name);
        lua_pop(L, 1);
    }
    hyper_validate(L, kind, &hp, fn);
    /* validate the list before allocating */
    int64_t n;
    int np = params_collect(L, plist, fn, NULL, &n);
    lua_pop(L, 1);
    LOptim *u = lua_newuserdatauv(L, sizeof *u + (size_t)np * sizeof(ParamRef), UV_COUNT);
    memset(u, 0, sizeof *u);
    luaL_setmetatable(L, OPTIM_MT);
    int self = lua_gettop(L);
    u->kind = kind;
    u->hp = hp;
    u->nparams = np;
    u->n = n;
    params_collect(L, plist, fn, u->params, &n);
    lua_setiuservalue(L, self, UV_PARAMS);
    flatten(L, u, 0, fn);
    flatten(L, u, 1, fn);
    for (int i = 0; i < OPTIM_MAX_STATES; i++) {
        if (!state_active(kind, &hp, i)) continue;
        u->state[i] = storage_new(n);
        if (!u->state[i]) {
            char mib[32];
            snprintf(mib, sizeof mib, "%.1f", (double)n * 4 / 1048576.0);
            return dd_error(L, "%s: out of memory: cannot allocate the state '%s' (%s MiB)", fn, kinds[kind].states[i], mib);
        }
    }
    lua_settop(L, self);
    return 1;
}

/* ---- methods ---- */

/* Raises unless every parameter still lives where this optimizer put it. */
static void check_layout(lua_State *L, LOptim *u, const char *fn) {
    for (int i = 0; i < u->nparams; i++) {
        const ParamRef *r = &u->params[i];
        if (r->value->storage == u->w && r->value->offset == u->w_off + r->offset && r->grad->storage == u->g &&
            r->grad->offset == u->g_off + r->offset)
            continue;
        lua_getiuservalue(L, 1, UV_PARAMS);
        lua_rawgeti(L, -1, i + 1);
        lua_getfield(L, -1, "name");
        char label[160];
        dd_error(L, "%s:%s: %s no longer lives in this optimizer's flat buffer (another optimizer was built over "
                   "part of it?); build this optimizer again", kinds[u->kind].name, fn,
                   param_label(label, sizeof label, i + 1, lua_tostring(L, -1)));
    }
}

static float *state_data(const LOptim *u, int i) { return u->state[i] ? u->state[i]->data : NULL; }

static int l_step(lua_State *L) {
    LOptim *u = loptim_check(L, 1);
    check_layout(L, u, "step");
    float *w = u->w->data + u->w_off;
    const float *g = u->g->data + u->g_off;
    u->step++;
    switch (u->kind) {
    case OPTIM_SGD: sgd_step(w, g, state_data(u, 0), u->n, &u->hp.sgd, u->step); break;
    case OPTIM_ADAM: adam_step(w, g, state_data(u, 0), state_data(u, 1), state_data(u, 2), u->n, &u->hp.adam, u->step); break;
    case OPTIM_RMSPROP: rmsprop_step(w, g, state_data(u, 0), state_data(u, 1), state_data(u, 2), u->n, &u->hp.rms); break;
    default: break;
    }
    lua_settop(L, 1);
    return 1;
}

static int l_zero_grad(lua_State *L) {
    LOptim *u = loptim_check(L, 1);
    check_layout(L, u, "zero_grad");
    memset(u->g->data + u->g_off, 0, (size_t)u->n * sizeof(float));
    lua_settop(L, 1);
    return 1;
}

static int l_params(lua_State *L) {
    loptim_check(L, 1);
    lua_getiuservalue(L, 1, UV_PARAMS);
    return 1;
}

static int l_num_parameters(lua_State *L) {
    lua_pushinteger(L, loptim_check(L, 1)->n);
    return 1;
}

/* state_dict() -> {kind=, step=, <hyper-parameters>, <state tensors>}: a
 * snapshot: the tensors are copies, later steps do not change them. */
static int l_state_dict(lua_State *L) {
    LOptim *u = loptim_check(L, 1);
    lua_newtable(L);
    lua_pushstring(L, kinds[u->kind].name);
    lua_setfield(L, -2, "kind");
    lua_pushinteger(L, u->step);
    lua_setfield(L, -2, "step");
    for (const HyperParam *h = kinds[u->kind].hyper; h->name; h++) {
        hyper_push(L, &u->hp, h);
        lua_setfield(L, -2, h->name);
    }
    for (int i = 0; i < OPTIM_MAX_STATES; i++) {
        if (!u->state[i]) continue;
        Tensor *t = ltensor_push_uninit(L, 1, &u->n);
        if (u->n) memcpy(tensor_data(t), u->state[i]->data, (size_t)u->n * sizeof(float));
        lua_setfield(L, -2, kinds[u->kind].states[i]);
    }
    return 1;
}

/* load_state_dict(t): restores step, the hyper-parameters present in t (lr
 * included) and the state tensors. Flags that decide which state exists must
 * match. Everything is checked before anything changes. */
static int l_load_state_dict(lua_State *L) {
    LOptim *u = loptim_check(L, 1);
    const char *name = kinds[u->kind].name;
    char fn[64];
    snprintf(fn, sizeof fn, "%s:load_state_dict", name);
    if (!lua_istable(L, 2)) return dd_error(L, "%s:load_state_dict: expected a table, got %s", name, luaL_typename(L, 2));
    lua_settop(L, 2);
    /* strict keys */
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        lua_pop(L, 1);
        const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        int ok = key && (strcmp(key, "kind") == 0 || strcmp(key, "step") == 0 || hyper_find(u->kind, key));
        for (int i = 0; key && !ok && i < OPTIM_MAX_STATES; i++)
            ok = kinds[u->kind].states[i] && strcmp(key, kinds[u->kind].states[i]) == 0;
        if (ok) continue;
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        luaL_addstring(&b, push_known(L, u->kind, "kind, step"));
        lua_pop(L, 1);
        for (int i = 0; i < OPTIM_MAX_STATES; i++)
            if (kinds[u->kind].states[i]) {
                luaL_addstring(&b, ", ");
                luaL_addstring(&b, kinds[u->kind].states[i]);
            }
        luaL_pushresult(&b);
        return dd_error(L, "%s:load_state_dict: unexpected entry '%s' (known: %s)", name,
                          key ? key : luaL_typename(L, -2), lua_tostring(L, -1));
    }
    lua_getfield(L, 2, "kind");
    if (!lua_isnil(L, -1) && (lua_type(L, -1) != LUA_TSTRING || strcmp(lua_tostring(L, -1), name) != 0))
        return dd_error(L, "%s:load_state_dict: the state is of a %s optimizer, this one is %s", name,
                          luaL_tolstring(L, -1, NULL), name);
    lua_getfield(L, 2, "step");
    if (lua_isnil(L, -1)) return dd_error(L, "%s:load_state_dict: missing 'step'", name);
    char what[96];
    snprintf(what, sizeof what, "%s: 'step'", fn);
    /* 2^53: far beyond any run, exact as the double bias corrections use, and step() cannot overflow */
    int64_t step = larg_int(L, -1, what, 0, (int64_t)1 << 53);
    OptimHyper hp = u->hp;
    for (const HyperParam *h = kinds[u->kind].hyper; h->name; h++) {
        lua_getfield(L, 2, h->name);
        if (!lua_isnil(L, -1)) {
            OptimHyper in = hp;
            hyper_read(L, -1, &in, h, fn, "entry");
            if (h->structural && memcmp(hyper_field(&in, h), hyper_field(&hp, h), h->type == HP_BOOL ? sizeof(int) : sizeof(AdamEpsMode)) != 0) {
                hyper_push(L, &hp, h);
                const char *mine = luaL_tolstring(L, -1, NULL);
                const char *theirs = luaL_tolstring(L, -3, NULL);
                return dd_error(L, "%s: the state has %s=%s, this optimizer %s=%s: build it with the same setting", fn,
                                  h->name, theirs, h->name, mine);
            }
            hp = in;
        }
        lua_settop(L, 2);
    }
    hyper_validate(L, u->kind, &hp, fn);
    Tensor *src[OPTIM_MAX_STATES] = {NULL};
    for (int i = 0; i < OPTIM_MAX_STATES; i++) {
        const char *sname = kinds[u->kind].states[i];
        if (!sname) continue;
        lua_getfield(L, 2, sname);
        int present = !lua_isnil(L, -1);
        if (state_active(u->kind, &hp, i) != (u->state[i] != NULL))
            return dd_error(L, "%s: the state's settings %s '%s' but this optimizer was built %s it: build it "
                              "with the same momentum, amsgrad and centered settings", fn,
                              u->state[i] ? "do not use" : "need", sname, u->state[i] ? "with" : "without");
        if (!u->state[i]) {
            if (present) return dd_error(L, "%s:load_state_dict: unexpected state '%s': this optimizer does not use it", name, sname);
            continue;
        }
        if (!present) return dd_error(L, "%s:load_state_dict: missing state '%s'", name, sname);
        src[i] = ltensor_test(L, -1);
        if (!src[i]) return dd_error(L, "%s:load_state_dict: '%s' must be a Tensor, got %s", name, sname, luaL_typename(L, -1));
        if (tensor_numel(src[i]) != u->n) {
            char s[256];
            return dd_error(L, "%s:load_state_dict: '%s' has %lld elements (shape %s), the parameters have %lld", name,
                              sname, (lua_Integer)tensor_numel(src[i]), shape_format(s, sizeof s, src[i]->ndim, src[i]->shape),
                              (lua_Integer)u->n);
        }
    }
    /* all checked: apply */
    for (int i = 0; i < OPTIM_MAX_STATES; i++) {
        if (!src[i]) continue;
        Tensor dst = {0};
        dst.storage = u->state[i];
        dst.ndim = 1;
        dst.shape[0] = u->n;
        dst.stride[0] = 1;
        tensor_copy_data(&dst, src[i]); /* any layout of src, in logical order */
    }
    u->hp = hp;
    u->step = step;
    lua_settop(L, 1);
    return 1;
}

static int l_tostring(lua_State *L) {
    LOptim *u = loptim_check(L, 1);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, kinds[u->kind].name);
    luaL_addchar(&b, '(');
    for (const HyperParam *h = kinds[u->kind].hyper; h->name; h++) {
        lua_pushfstring(L, "%s=", h->name);
        luaL_addvalue(&b);
        hyper_push(L, &u->hp, h);
        if (h->type == HP_NUMBER) {
            char num[32];
            snprintf(num, sizeof num, "%.10g", lua_tonumber(L, -1));
            lua_pop(L, 1);
            lua_pushstring(L, num);
        } else if (h->type == HP_EPS_MODE) {
            lua_pushfstring(L, "'%s'", lua_tostring(L, -1));
            lua_remove(L, -2);
        } else {
            lua_pushstring(L, lua_toboolean(L, -1) ? "true" : "false");
            lua_remove(L, -2);
        }
        luaL_addvalue(&b);
        luaL_addstring(&b, ", ");
    }
    lua_pushfstring(L, "%d params, %I elements, step %I)", u->nparams, (lua_Integer)u->n, (lua_Integer)u->step);
    luaL_addvalue(&b);
    luaL_pushresult(&b);
    return 1;
}

static const luaL_Reg optim_methods[] = {
    {"step", l_step}, {"zero_grad", l_zero_grad}, {"params", l_params}, {"state_dict", l_state_dict},
    {"load_state_dict", l_load_state_dict}, {"num_parameters", l_num_parameters}, {NULL, NULL}};

/* Fields: lr (read/write), step_count, kind and the hyper-parameters (read). */
static int l_index(lua_State *L) {
    LOptim *u = loptim_check(L, 1);
    const char *key = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
    if (key) {
        const HyperParam *h = hyper_find(u->kind, key);
        if (h) {
            hyper_push(L, &u->hp, h);
            return 1;
        }
        if (strcmp(key, "step_count") == 0) {
            lua_pushinteger(L, u->step);
            return 1;
        }
        if (strcmp(key, "kind") == 0) {
            lua_pushstring(L, kinds[u->kind].name);
            return 1;
        }
    }
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
}

static int l_newindex(lua_State *L) {
    LOptim *u = loptim_check(L, 1);
    const char *name = kinds[u->kind].name;
    const char *key = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
    if (key && strcmp(key, "lr") == 0) {
        OptimHyper hp = u->hp;
        hyper_read(L, 3, &hp, hyper_find(u->kind, "lr"), name, "field");
        *hyper_lr(u->kind, &u->hp) = *hyper_lr(u->kind, &hp);
        return 0;
    }
    if (key && (hyper_find(u->kind, key) || strcmp(key, "step_count") == 0 || strcmp(key, "kind") == 0))
        return dd_error(L, "%s: field '%s' is read-only (only lr can be assigned)", name, key);
    return dd_error(L, "%s: cannot assign unknown field '%s' (only lr can be assigned)", name,
                      key ? key : luaL_typename(L, 2));
}

/* ---- gradient clipping ---- */

/* dd.nn.clip_grad_norm(params, max_norm) -> total L2 norm of all grads before
 * clipping. PyTorch's rule: when max_norm / (norm + 1e-6) < 1, every grad is
 * multiplied by it. A non-finite norm is returned and the grads left alone
 * (the caller decides to skip the step). params: a list like m:parameters()
 * (any layout), or an Optimizer (its flat gradient buffer). */
static int l_clip_grad_norm(lua_State *L) {
    const char *fn = "clip_grad_norm";
    if (lua_type(L, 2) != LUA_TNUMBER)
        return dd_error(L, "%s: max_norm must be a number, got %s", fn, luaL_typename(L, 2));
    double max_norm = lua_tonumber(L, 2);
    if (!(max_norm >= 0)) return dd_error(L, "%s: max_norm must be >= 0, got %s", fn, lua_tostring(L, 2));
    LOptim *u = luaL_testudata(L, 1, OPTIM_MT) ? loptim_check(L, 1) : NULL;
    if (u) {
        check_layout(L, u, fn);
        float *g = u->g->data + u->g_off;
        double norm = sqrt(grad_sum_squares(g, u->n));
        double coef = max_norm / (norm + 1e-6);
        if (isfinite(norm) && coef < 1.0) grad_scale(g, u->n, (float)coef);
        lua_pushnumber(L, norm);
        return 1;
    }
    if (!lua_istable(L, 1))
        return dd_error(L, "%s: params must be a list like m:parameters() or an Optimizer, got %s", fn, luaL_typename(L, 1));
    int np = (int)lua_rawlen(L, 1);
    lua_settop(L, 2);
    lua_createtable(L, np, 0); /* the grads, each once */
    int grads = lua_gettop(L);
    int ng = 0;
    for (int i = 1; i <= np; i++) {
        lua_rawgeti(L, 1, i);
        if (!lua_istable(L, -1))
            return dd_error(L, "%s: params[%d] must be a table with a grad, got %s", fn, i, luaL_typename(L, -1));
        lua_getfield(L, -1, "grad");
        Tensor *g = ltensor_test(L, -1);
        if (!g) return dd_error(L, "%s: params[%d]: grad must be a Tensor, got %s", fn, i, luaL_typename(L, -1));
        int seen = 0;
        for (int j = 1; j <= ng && !seen; j++) {
            lua_rawgeti(L, grads, j);
            seen = lua_touserdata(L, -1) == (void *)g;
            lua_pop(L, 1);
        }
        if (!seen) lua_rawseti(L, grads, ++ng);
        lua_settop(L, grads);
    }
    double sum = 0;
    for (int j = 1; j <= ng; j++) {
        lua_rawgeti(L, grads, j);
        Tensor *g = lua_touserdata(L, -1);
        if (tensor_is_contiguous(g)) {
            sum += grad_sum_squares(tensor_data(g), tensor_numel(g));
        } else {
            TensorIter it;
            tensor_iter_init(&it, g);
            for (float *p; (p = tensor_iter_next(&it));) sum += (double)*p * (double)*p;
        }
        lua_pop(L, 1);
    }
    double norm = sqrt(sum), coef = max_norm / (norm + 1e-6);
    if (isfinite(norm) && coef < 1.0) {
        for (int j = 1; j <= ng; j++) {
            lua_rawgeti(L, grads, j);
            Tensor *g = lua_touserdata(L, -1);
            if (tensor_is_contiguous(g)) {
                grad_scale(tensor_data(g), tensor_numel(g), (float)coef);
            } else {
                TensorIter it;
                tensor_iter_init(&it, g);
                for (float *p; (p = tensor_iter_next(&it));) *p *= (float)coef;
            }
            lua_pop(L, 1);
        }
    }
    lua_pushnumber(L, norm);
    return 1;
}

void bind_optim_open(lua_State *L, int dd) {
    dd = lua_absindex(L, dd);
    luaL_newmetatable(L, OPTIM_MT);
    lua_pushliteral(L, "Optimizer");
    lua_setfield(L, -2, "__name");
    lua_newtable(L);
    luaL_setfuncs(L, optim_methods, 0);
    lua_pushcclosure(L, l_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    luaL_getsubtable(L, dd, "optim");
    for (int k = 0; k < OPTIM_NKINDS; k++) {
        lua_pushinteger(L, k);
        lua_pushcclosure(L, l_construct, 1);
        lua_setfield(L, -2, kinds[k].name);
    }
    lua_pop(L, 1);
    luaL_getsubtable(L, dd, "nn");
    lua_pushcfunction(L, l_clip_grad_norm);
    lua_setfield(L, -2, "clip_grad_norm");
    lua_pop(L, 1);
}

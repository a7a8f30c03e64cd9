/* bind_nn.c: every layer kind as a Lua userdata, through one generic binding
 * and the one registration table below. Constructors dd.nn.<Kind>{...} parse
 * options strictly against the kind's option list; methods are shared:
 *   forward(x) -> y        y is a buffer the layer owns, overwritten by the next forward
 *   backward(x, dy [, into]) -> dx  dx is owned too, or written into the given
 *                          tensor of x's shape; parameter gradients are added (+=);
 *                          into = false: no dx wanted (returns nothing)
 *   parameters() state_dict() load_state_dict(t [, {strict=}]) zero_grad()
 *                          (buffers such as BatchNorm's running statistics are in
 *                          state_dict() but not in parameters() or num_parameters())
 *   train() eval() num_parameters() output_shape(shape) reset_parameters()
 * Fields: m.<param name> (the tensor), m.kind, m.name, m.training. */
#include "bind.h"
#include "layer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LAYER_MT "dd.Layer"

/* Kind-specific Lua methods (LSTM stepping, MDN sampling) live with their
 * kinds' bindings. */
extern const luaL_Reg lstm_methods[], mdn_methods[];

static const struct {
    const LayerKind *kind;
    const luaL_Reg *methods;
} registry[] = {
    {&linear_kind, NULL},
    {&relu_kind, NULL},
    {&sigmoid_kind, NULL},
    {&tanh_kind, NULL},
    {&hardsigmoid_kind, NULL},
    {&dropout_kind, NULL},
    {&flatten_kind, NULL},
    {&reshape_kind, NULL},
    {&conv2d_kind, NULL},
    {&conv_transpose2d_kind, NULL},
    {&maxpool2d_kind, NULL},
    {&upsample_kind, NULL},
    {&lstm_kind, lstm_methods},
    {&mdn_kind, mdn_methods},
    {&batchnorm1d_kind, NULL},
    {&batchnorm2d_kind, NULL},
};
#define NKINDS (sizeof registry / sizeof registry[0])

/* Uservalues of a layer userdata. */
enum { UV_PARAMS = 1, UV_OUTPUT, UV_GRAD_INPUT, UV_NAME, UV_COUNT = UV_NAME };

typedef struct LLayer {
    Layer m;
    int reg;           /* index into registry */
    OptValues opts;    /* as given, for tostring */
    int given[LAYER_MAX_OPTIONS];
} LLayer;

static LLayer *llayer_check(lua_State *L, int idx) {
    LLayer *u = luaL_testudata(L, idx, LAYER_MT);
    if (!u) luaL_typeerror(L, idx, "Layer");
    /* after a direct call of its __gc, which a script can make */
    if (!u->m.kind) dd_error(L, "Layer has been freed");
    return u;
}

Layer *llayer_check_kind(lua_State *L, int idx, const LayerKind *kind) {
    LLayer *u = llayer_check(L, idx);
    if (u->m.kind != kind) dd_error(L, "expected a %s layer, got %s", kind->name, u->m.kind->name);
    return &u->m;
}

/* "Conv2d 'enc1'" or "Conv2d": how errors name a layer. */
static const char *layer_label(lua_State *L, int idx) {
    LLayer *u = lua_touserdata(L, idx);
    lua_getiuservalue(L, idx, UV_NAME);
    const char *label = lua_isstring(L, -1) ? lua_pushfstring(L, "%s '%s'", u->m.kind->name, lua_tostring(L, -1))
                                            : lua_pushstring(L, u->m.kind->name);
    lua_remove(L, -2);
    return label;
}

static int layer_error(lua_State *L, int idx, const char *msg) {
    const char *label = layer_label(L, idx);
    return dd_error(L, "%s: %s", label, msg);
}

static int l_gc(lua_State *L) {
    LLayer *u = luaL_checkudata(L, 1, LAYER_MT);
    if (u->m.kind && u->m.kind->destroy) u->m.kind->destroy(&u->m);
    u->m.kind = NULL;
    return 0;
}

/* ---- construction ---- */

static void opt_store(lua_State *L, const LayerKind *k, int i, int vidx, OptValues *v, const char *kname) {
    const LayerOption *o = &k->options[i];
    int t = lua_type(L, vidx);
    v->is_string[i] = 0;
    switch (o->type) {
    case OPT_INT:
        if (!lua_isinteger(L, vidx) && !(t == LUA_TNUMBER && lua_tonumber(L, vidx) == (double)(long long)lua_tonumber(L, vidx)))
            dd_error(L, "%s: option '%s' must be an integer, got %s", kname, o->name,
                       t == LUA_TNUMBER ? lua_tostring(L, vidx) : luaL_typename(L, vidx));
        v->num[i] = lua_tonumber(L, vidx);
        break;
    case OPT_NUMBER:
        if (t != LUA_TNUMBER) dd_error(L, "%s: option '%s' must be a number, got %s", kname, o->name, luaL_typename(L, vidx));
        v->num[i] = lua_tonumber(L, vidx);
        break;
    case OPT_BOOL:
        if (t != LUA_TBOOLEAN) dd_error(L, "%s: option '%s' must be a boolean, got %s", kname, o->name, luaL_typename(L, vidx));
        v->num[i] = lua_toboolean(L, vidx);
        break;
    case OPT_STRING:
    case OPT_INT_OR_STRING:
        if (t == LUA_TSTRING) {
            size_t len;
            const char *s = lua_tolstring(L, vidx, &len);
            if (len >= sizeof v->str[i]) dd_error(L, "%s: option '%s' is too long: '%s'", kname, o->name, s);
            memcpy(v->str[i], s, len + 1);
            v->is_string[i] = 1;
        } else if (o->type == OPT_INT_OR_STRING && t == LUA_TNUMBER && lua_tonumber(L, vidx) == (double)(long long)lua_tonumber(L, vidx)) {
            v->num[i] = lua_tonumber(L, vidx);
        } else {
            dd_error(L, "%s: option '%s' must be %s, got %s", kname, o->name,
                       o->type == OPT_STRING ? "a string" : "an integer or a string",
                       t == LUA_TNUMBER ? lua_tostring(L, vidx) : luaL_typename(L, vidx));
        }
        break;
    }
}

static void opt_default(lua_State *L, const LayerKind *k, int i, OptValues *v, const char *kname) {
    const LayerOption *o = &k->options[i];
    if (!o->dflt) dd_error(L, "%s: option '%s' is required", kname, o->name);
    if (strcmp(o->dflt, "true") == 0 || strcmp(o->dflt, "false") == 0) lua_pushboolean(L, o->dflt[0] == 't');
    else if (o->type == OPT_STRING) lua_pushstring(L, o->dflt);
    else {
        char *end;
        double d = strtod(o->dflt, &end);
        if (*end == 0) {
            if (o->type == OPT_INT || o->type == OPT_INT_OR_STRING) lua_pushinteger(L, (lua_Integer)d);
            else lua_pushnumber(L, d);
        } else {
            lua_pushstring(L, o->dflt);
        }
    }
    opt_store(L, k, i, lua_gettop(L), v, kname);
    lua_pop(L, 1);
}

static int option_index(const LayerKind *k, const char *name) {
    for (int i = 0; k->options[i].name; i++)
        if (strcmp(k->options[i].name, name) == 0) return i;
    return -1;
}

static void known_options(lua_State *L, const LayerKind *k) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 0; k->options[i].name; i++) {
        if (i) luaL_addstring(&b, ", ");
        luaL_addstring(&b, k->options[i].name);
    }
    luaL_addstring(&b, ", name");
    luaL_pushresult(&b);
}

/* dd.nn.<Kind>{positional..., key=value...} or dd.nn.<Kind>(positional...). */
static int l_construct(lua_State *L) {
    int reg = (int)lua_tointeger(L, lua_upvalueindex(1));
    const LayerKind *k = registry[reg].kind;
    const char *kname = k->name;
    int nopts = 0, npos = 0;
    while (k->options[nopts].name) {
        if (k->options[nopts].positional) npos++;
        nopts++;
    }
    int nargs = lua_gettop(L);
    int tbl = nargs == 1 && lua_istable(L, 1);
    if (!tbl) { /* plain arguments: pack them as the positional part */
        if (nargs > npos) return dd_error(L, "%s: takes at most %d positional options, got %d", kname, npos, nargs);
        lua_createtable(L, nargs, 0);
        for (int i = 1; i <= nargs; i++) {
            lua_pushvalue(L, i);
            lua_rawseti(L, -2, i);
        }
        lua_insert(L, 1);
        lua_settop(L, 1);
    }
    LLayer *u = lua_newuserdatauv(L, sizeof(LLayer) + k->cfg_size, UV_COUNT);
    memset(u, 0, sizeof(LLayer) + k->cfg_size);
    luaL_setmetatable(L, LAYER_MT);
    int self = lua_gettop(L);
    /* Strict keys: positional entries within range, named ones known. */
    lua_Integer plen = (lua_Integer)lua_rawlen(L, 1);
    if (plen > npos) return dd_error(L, "%s: takes at most %d positional options, got %d", kname, npos, (int)plen);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TNUMBER) {
            lua_Integer i = lua_tointeger(L, -1);
            if (!lua_isinteger(L, -1) || i < 1 || i > plen)
                return dd_error(L, "%s: unexpected positional entry [%s]", kname, lua_tostring(L, -1));
            continue;
        }
        if (lua_type(L, -1) != LUA_TSTRING)
            return dd_error(L, "%s: option keys must be strings, got a %s key", kname, luaL_typename(L, -1));
        const char *key = lua_tostring(L, -1);
        if (strcmp(key, "name") != 0 && option_index(k, key) < 0) {
            known_options(L, k);
            return dd_error(L, "%s: unknown option '%s' (known: %s)", kname, key, lua_tostring(L, -1));
        }
    }
    int pos = 0;
    for (int i = 0; i < nopts; i++) {
        const LayerOption *o = &k->options[i];
        lua_getfield(L, 1, o->name);
        int have_named = !lua_isnil(L, -1);
        if (o->positional) {
            pos++;
            lua_rawgeti(L, 1, pos);
            if (!lua_isnil(L, -1)) {
                if (have_named) return dd_error(L, "%s: option '%s' given twice (by position and by name)", kname, o->name);
                lua_replace(L, -2);
                have_named = 1;
            } else {
                lua_pop(L, 1);
            }
        }
        if (have_named) {
            opt_store(L, k, i, lua_gettop(L), &u->opts, kname);
            u->given[i] = 1;
        } else {
            opt_default(L, k, i, &u->opts, kname);
        }
        lua_pop(L, 1);
    }
    lua_getfield(L, 1, "name");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        return dd_error(L, "%s: option 'name' must be a string, got %s", kname, luaL_typename(L, -1));
    lua_setiuservalue(L, self, UV_NAME);
    u->reg = reg;
    u->m.cfg = (char *)u + sizeof(LLayer);
    u->m.training = 1;
    char err[LAYER_ERR];
    if (k->init(&u->m, &u->opts, err)) return dd_error(L, "%s: %s", kname, err);
    u->m.kind = k; /* only now: __gc calls destroy on initialised layers */
    /* Parameters and their gradients as Lua-owned tensors. */
    lua_createtable(L, 2 * u->m.nparams, 0);
    for (int i = 0; i < u->m.nparams; i++) {
        Param *p = &u->m.params[i];
        p->value = ltensor_push_new(L, p->ndim, p->shape);
        lua_rawseti(L, -2, 2 * i + 1);
        p->grad = ltensor_push_new(L, p->ndim, p->shape);
        lua_rawseti(L, -2, 2 * i + 2);
    }
    lua_setiuservalue(L, self, UV_PARAMS);
    layer_reset_parameters(&u->m);
    lua_settop(L, self);
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

/* The layer's buffer in uservalue slot uv, shaped (ndim, shape); reuses the
 * storage when large enough and not shared with `avoid` (in-place aliasing). */
static Tensor *owned_buffer(lua_State *L, int self, int uv, int ndim, const int64_t *shape, const Tensor *avoid) {
    int64_t numel;
    shape_check(ndim, shape, &numel);
    lua_getiuservalue(L, self, uv);
    Tensor *b = ltensor_test(L, -1);
    if (b && b->storage->refcount == 1 && b->offset == 0 && b->storage->size >= numel && numel > 0 &&
        (!avoid || avoid->storage != b->storage) && b->storage->size <= 2 * numel) {
        tensor_view_as(b, ndim, shape);
        return b;
    }
    lua_pop(L, 1);
    b = ltensor_push_uninit(L, ndim, shape);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, self, uv);
    return b;
}

static int l_forward(lua_State *L) {
    LLayer *u = llayer_check(L, 1);
    Layer *m = &u->m;
    Tensor *x = contiguous_arg(L, 2);
    int ond;
    int64_t oshape[TENSOR_MAX_DIMS];
    char err[LAYER_ERR];
    if (m->kind->shape(m, x->ndim, x->shape, &ond, oshape, err)) return layer_error(L, 1, err);
    Tensor *y = owned_buffer(L, 1, UV_OUTPUT, ond, oshape, x);
    if (m->kind->forward(m, x, y, err)) return layer_error(L, 1, err);
    return 1;
}

static int l_backward(lua_State *L) {
    lua_settop(L, 4); /* slot 4: into or nil; what is pushed below goes above it */
    LLayer *u = llayer_check(L, 1);
    Layer *m = &u->m;
    Tensor *x = contiguous_arg(L, 2);
    Tensor *dy = contiguous_arg(L, 3);
    int ond;
    int64_t oshape[TENSOR_MAX_DIMS];
    char err[LAYER_ERR], a[256], b[256];
    if (m->kind->shape(m, x->ndim, x->shape, &ond, oshape, err)) return layer_error(L, 1, err);
    if (dy->ndim != ond || memcmp(dy->shape, oshape, (size_t)ond * sizeof *oshape) != 0) {
        snprintf(err, sizeof err, "backward: gradient has shape %s, the output has shape %s",
                 shape_format(a, sizeof a, dy->ndim, dy->shape), shape_format(b, sizeof b, ond, oshape));
        return layer_error(L, 1, err);
    }
    lua_getiuservalue(L, 1, UV_OUTPUT);
    Tensor *y = ltensor_test(L, -1);
    if (!y || y->ndim != ond || memcmp(y->shape, oshape, (size_t)ond * sizeof *oshape) != 0)
        return layer_error(L, 1, "backward: call forward with this input first");
    Tensor *dx;
    const int no_dx = lua_isboolean(L, 4) && !lua_toboolean(L, 4);
    if (no_dx) {
        /* false: no input gradient wanted (the model's input); kinds that
         * can skip it do, the others compute it into their own buffer */
        dx = m->kind->skips_dx ? NULL : owned_buffer(L, 1, UV_GRAD_INPUT, x->ndim, x->shape, dy);
    } else if (lua_isnoneornil(L, 4)) {
        dx = owned_buffer(L, 1, UV_GRAD_INPUT, x->ndim, x->shape, dy);
    } else {
        /* into: the caller's buffer for dx (Sequential shares two among its layers) */
        dx = ltensor_check(L, 4);
        if (!tensor_is_contiguous(dx) || dx->ndim != x->ndim ||
            memcmp(dx->shape, x->shape, (size_t)x->ndim * sizeof *x->shape) != 0) {
            snprintf(err, sizeof err, "backward: 'into' must be a contiguous tensor of the input's shape %s, got %s%s",
                     shape_format(a, sizeof a, x->ndim, x->shape), shape_format(b, sizeof b, dx->ndim, dx->shape),
                     tensor_is_contiguous(dx) ? "" : " (not contiguous)");
            return layer_error(L, 1, err);
        }
        if (dx->storage == dy->storage || dx->storage == x->storage || dx->storage == y->storage)
            return layer_error(L, 1, "backward: 'into' shares memory with the input, the output or the gradient");
        lua_pushvalue(L, 4);
        lua_setiuservalue(L, 1, UV_GRAD_INPUT);
        lua_pushvalue(L, 4);
    }
    if (m->kind->backward(m, x, y, dy, dx, err)) return layer_error(L, 1, err);
    return no_dx ? 0 : 1;
}

/* ---- parameters ---- */

static void push_param_tensor(lua_State *L, int self, int i, int grad) {
    lua_getiuservalue(L, self, UV_PARAMS);
    lua_rawgeti(L, -1, 2 * i + 1 + grad);
    lua_remove(L, -2);
}

static int l_parameters(lua_State *L) {
    LLayer *u = llayer_check(L, 1);
    lua_createtable(L, u->m.nparams, 0);
    for (int i = 0, n = 0; i < u->m.nparams; i++) {
        if (u->m.params[i].buffer) continue; /* state, not trained */
        lua_createtable(L, 0, 3);
        lua_pushstring(L, u->m.params[i].name);
        lua_setfield(L, -2, "name");
        push_param_tensor(L, 1, i, 0);
        lua_setfield(L, -2, "value");
        push_param_tensor(L, 1, i, 1);
        lua_setfield(L, -2, "grad");
        lua_rawseti(L, -2, ++n);
    }
    return 1;
}

static int l_state_dict(lua_State *L) {
    LLayer *u = llayer_check(L, 1);
    lua_createtable(L, 0, u->m.nparams);
    for (int i = 0; i < u->m.nparams; i++) {
        push_param_tensor(L, 1, i, 0);
        lua_setfield(L, -2, u->m.params[i].name);
    }
    return 1;
}

static void check_entry_shape(lua_State *L, Tensor *src, const Param *p, const char *key) {
    if (src->ndim != p->ndim || memcmp(src->shape, p->shape, (size_t)p->ndim * sizeof *p->shape) != 0) {
        char a[256], b[256];
        dd_error(L, "load_state_dict: '%s' has shape %s, expected %s", key,
                   shape_format(a, sizeof a, src->ndim, src->shape), shape_format(b, sizeof b, p->ndim, p->shape));
    }
}

/* load_state_dict(t [, {strict=true}]): copies values in; with strict, a
 * missing or extra entry is an error naming it. Shapes must match always. */
static int l_load_state_dict(lua_State *L) {
    LLayer *u = llayer_check(L, 1);
    if (!lua_istable(L, 2)) return dd_error(L, "load_state_dict: expected a table of tensors, got %s", luaL_typename(L, 2));
    int strict = 1;
    if (!lua_isnoneornil(L, 3)) {
        if (!lua_istable(L, 3)) return dd_error(L, "load_state_dict: options must be a table, got %s", luaL_typename(L, 3));
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            lua_pop(L, 1);
            if (lua_type(L, -1) != LUA_TSTRING || strcmp(lua_tostring(L, -1), "strict") != 0)
                return dd_error(L, "load_state_dict: unknown option '%s' (known: strict)", luaL_tolstring(L, -1, NULL));
        }
        lua_getfield(L, 3, "strict");
        strict = lua_isnil(L, -1) ? 1 : lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    Layer *m = &u->m;
    int used = 0;
    for (int i = 0; i < m->nparams; i++) {
        Param *p = &m->params[i];
        lua_getfield(L, 2, p->name);
        Tensor *src = ltensor_test(L, -1);
        if (src) {
            check_entry_shape(L, src, p, p->name);
            tensor_copy_data(p->value, src);
            used++;
        } else if (!lua_isnil(L, -1)) {
            return dd_error(L, "load_state_dict: '%s' must be a Tensor, got %s", p->name, luaL_typename(L, -1));
        } else if (p->sum_of[0][0]) {
            lua_getfield(L, 2, p->sum_of[0]);
            lua_getfield(L, 2, p->sum_of[1]);
            Tensor *a = ltensor_test(L, -2), *b = ltensor_test(L, -1);
            if (a && b) {
                check_entry_shape(L, a, p, p->sum_of[0]);
                check_entry_shape(L, b, p, p->sum_of[1]);
                float *d = tensor_data(p->value);
                Tensor ca, cb;
                tensor_init_view(&ca, a);
                tensor_init_view(&cb, b);
                TensorIter ia, ib;
                tensor_iter_init(&ia, &ca);
                tensor_iter_init(&ib, &cb);
                for (int64_t j = 0, n = tensor_numel(p->value); j < n; j++)
                    d[j] = *tensor_iter_next(&ia) + *tensor_iter_next(&ib);
                tensor_release(&ca);
                tensor_release(&cb);
                used += 2;
            } else if (strict) {
                return dd_error(L, "load_state_dict: missing '%s' (or the pair '%s' + '%s')", p->name, p->sum_of[0], p->sum_of[1]);
            }
            lua_pop(L, 2);
        } else if (strict) {
            return dd_error(L, "load_state_dict: missing '%s'", p->name);
        }
        lua_pop(L, 1);
    }
    if (strict) {
        int total = 0;
        lua_pushnil(L);
        while (lua_next(L, 2)) {
            lua_pop(L, 1);
            total++;
            if (lua_type(L, -1) != LUA_TSTRING) return dd_error(L, "load_state_dict: keys must be strings, got a %s key", luaL_typename(L, -1));
            const char *key = lua_tostring(L, -1);
            int known = 0;
            for (int i = 0; i < m->nparams && !known; i++)
                known = strcmp(key, m->params[i].name) == 0 || strcmp(key, m->params[i].sum_of[0]) == 0 ||
                        strcmp(key, m->params[i].sum_of[1]) == 0;
            if (!known) return dd_error(L, "load_state_dict: unexpected entry '%s'", key);
        }
        (void)total;
    }
    lua_settop(L, 1);
    return 1;
}

static int l_zero_grad(lua_State *L) {
    LLayer *u = llayer_check(L, 1);
    for (int i = 0; i < u->m.nparams; i++) tensor_fill(u->m.params[i].grad, 0);
    lua_settop(L, 1);
    return 1;
}

static int l_train(lua_State *L) {
    LLayer *u = llayer_check(L, 1);
    u->m.training = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
    lua_settop(L, 1);
    return 1;
}

static int l_eval(lua_State *L) {
    llayer_check(L, 1)->m.training = 0;
    lua_settop(L, 1);
    return 1;
}

static int l_num_parameters(lua_State *L) {
    LLayer *u = llayer_check(L, 1);
    int64_t n = 0;
    for (int i = 0; i < u->m.nparams; i++)
        if (!u->m.params[i].buffer) n += tensor_numel(u->m.params[i].value);
    lua_pushinteger(L, n);
    return 1;
}

static int l_reset_parameters(lua_State *L) {
    LLayer *u = llayer_check(L, 1);
    layer_reset_parameters(&u->m);
    lua_settop(L, 1);
    return 1;
}

/* output_shape({N, C, H, W}) -> the output's shape table, or an error. */
static int l_output_shape(lua_State *L) {
    LLayer *u = llayer_check(L, 1);
    if (!lua_istable(L, 2)) return dd_error(L, "output_shape: expected a shape table, got %s", luaL_typename(L, 2));
    int n = (int)lua_rawlen(L, 2);
    if (n > TENSOR_MAX_DIMS) return dd_error(L, "output_shape: at most %d dims, got %d", TENSOR_MAX_DIMS, n);
    int64_t in[TENSOR_MAX_DIMS], out[TENSOR_MAX_DIMS];
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, 2, i + 1);
        in[i] = larg_int(L, -1, "output_shape: size", 0, TENSOR_MAX_NUMEL);
        lua_pop(L, 1);
    }
    int ond;
    char err[LAYER_ERR];
    if (u->m.kind->shape(&u->m, n, in, &ond, out, err)) return layer_error(L, 1, err);
    lua_createtable(L, ond, 0);
    for (int i = 0; i < ond; i++) {
        lua_pushinteger(L, out[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* Conv2d(1, 32, kernel_size=3, padding=same): the given options. */
static int l_tostring(lua_State *L) {
    LLayer *u = llayer_check(L, 1);
    const LayerKind *k = registry[u->reg].kind;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, k->name);
    luaL_addchar(&b, '(');
    int first = 1;
    for (int i = 0; k->options[i].name; i++) {
        if (!u->given[i] && !k->options[i].positional) continue;
        if (!first) luaL_addstring(&b, ", ");
        first = 0;
        if (!k->options[i].positional) {
            luaL_addstring(&b, k->options[i].name);
            luaL_addchar(&b, '=');
        }
        char v[64];
        if (u->opts.is_string[i]) snprintf(v, sizeof v, "'%s'", u->opts.str[i]);
        else if (k->options[i].type == OPT_BOOL) snprintf(v, sizeof v, "%s", u->opts.num[i] ? "true" : "false");
        else snprintf(v, sizeof v, "%.10g", u->opts.num[i]);
        luaL_addstring(&b, v);
    }
    luaL_addchar(&b, ')');
    luaL_pushresult(&b);
    return 1;
}

static int l_index(lua_State *L) {
    LLayer *u = llayer_check(L, 1);
    if (lua_type(L, 2) == LUA_TSTRING) {
        const char *key = lua_tostring(L, 2);
        for (int i = 0; i < u->m.nparams; i++)
            if (strcmp(key, u->m.params[i].name) == 0) {
                push_param_tensor(L, 1, i, 0);
                return 1;
            }
        if (strcmp(key, "kind") == 0) {
            lua_pushstring(L, u->m.kind->name);
            return 1;
        }
        if (strcmp(key, "name") == 0) {
            lua_getiuservalue(L, 1, UV_NAME);
            return 1;
        }
        if (strcmp(key, "training") == 0) {
            lua_pushboolean(L, u->m.training);
            return 1;
        }
        if (strcmp(key, "output") == 0) {
            lua_getiuservalue(L, 1, UV_OUTPUT);
            return 1;
        }
        if (strcmp(key, "grad_input") == 0) {
            lua_getiuservalue(L, 1, UV_GRAD_INPUT);
            return 1;
        }
    }
    /* kind-specific methods, then the shared ones */
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_rawgeti(L, -1, u->reg + 1);
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    if (!lua_isnil(L, -1)) return 1;
    lua_pop(L, 2);
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(2));
    return 1;
}

static int l_newindex(lua_State *L) {
    LLayer *u = llayer_check(L, 1);
    const char *key = lua_tostring(L, 2);
    if (key && strcmp(key, "name") == 0 && (lua_isstring(L, 3) || lua_isnil(L, 3))) {
        lua_pushvalue(L, 3);
        lua_setiuservalue(L, 1, UV_NAME);
        return 0;
    }
    return dd_error(L, "%s: field '%s' cannot be assigned (assign into tensors with :copy())", u->m.kind->name,
                      key ? key : luaL_typename(L, 2));
}

static const luaL_Reg layer_methods[] = {
    {"forward", l_forward}, {"backward", l_backward}, {"parameters", l_parameters},
    {"state_dict", l_state_dict}, {"load_state_dict", l_load_state_dict}, {"zero_grad", l_zero_grad},
    {"train", l_train}, {"eval", l_eval}, {"num_parameters", l_num_parameters},
    {"reset_parameters", l_reset_parameters}, {"output_shape", l_output_shape}, {NULL, NULL}};

/* dd.nn.init.<name>(tensor [, fan_in, fan_out]): the initialisers by hand. */
static int l_init(lua_State *L) {
    ParamInit init = (ParamInit)lua_tointeger(L, lua_upvalueindex(1));
    Tensor *t = ltensor_check(L, 1);
    if (!tensor_is_contiguous(t)) return dd_error(L, "init: tensor must be contiguous");
    int64_t fan_in = 1, fan_out = 1;
    if (t->ndim >= 2) { /* PyTorch's fans: (out, in, k...) */
        int64_t rf = 1;
        for (int i = 2; i < t->ndim; i++) rf *= t->shape[i];
        fan_in = t->shape[1] * rf;
        fan_out = t->shape[0] * rf;
    } else if (t->ndim == 1) {
        fan_in = fan_out = t->shape[0];
    }
    if (!lua_isnoneornil(L, 2)) fan_in = larg_int(L, 2, "init: fan_in", 1, TENSOR_MAX_NUMEL);
    if (!lua_isnoneornil(L, 3)) fan_out = larg_int(L, 3, "init: fan_out", 1, TENSOR_MAX_NUMEL);
    param_init(t, init, fan_in, fan_out, 4);
    lua_settop(L, 1);
    return 1;
}

void bind_nn_open(lua_State *L, int dd) {
    lua_newtable(L); /* dd.nn */
    int nn = lua_gettop(L);
    luaL_newmetatable(L, LAYER_MT);
    int mt = lua_gettop(L);
    lua_pushliteral(L, "Layer");
    lua_setfield(L, mt, "__name");
    lua_createtable(L, NKINDS, 0); /* per-kind method tables */
    for (size_t i = 0; i < NKINDS; i++) {
        lua_newtable(L);
        if (registry[i].methods) luaL_setfuncs(L, registry[i].methods, 0);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_newtable(L);
    luaL_setfuncs(L, layer_methods, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, nn, "Layer"); /* shared methods, for inspection */
    lua_pushcclosure(L, l_index, 2);
    lua_setfield(L, mt, "__index");
    lua_pushcfunction(L, l_newindex);
    lua_setfield(L, mt, "__newindex");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, mt, "__gc");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, mt, "__tostring");
    lua_settop(L, nn);
    for (size_t i = 0; i < NKINDS; i++) {
        lua_pushinteger(L, (lua_Integer)i);
        lua_pushcclosure(L, l_construct, 1);
        lua_setfield(L, nn, registry[i].kind->name);
    }
    lua_newtable(L); /* dd.nn.init */
    static const char *const inits[] = {"zeros", "ones", "glorot_uniform", "glorot_normal", "kaiming_uniform",
                                        "kaiming_normal", "orthogonal", "torch_default"};
    for (size_t i = 0; i < sizeof inits / sizeof inits[0]; i++) {
        ParamInit pi;
        param_init_parse(inits[i], &pi);
        lua_pushinteger(L, pi);
        lua_pushcclosure(L, l_init, 1);
        lua_setfield(L, -2, inits[i]);
    }
    lua_setfield(L, nn, "init");
    lua_setfield(L, dd, "nn");
}

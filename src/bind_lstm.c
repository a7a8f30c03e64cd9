/* bind_lstm.c: the LSTM's own Lua methods, for generation one step at a time.
 *   lstm:step(x)        x (batch, input_size) -> a new tensor (batch, hidden_size):
 *                       the top layer's h. Keeps (h, c) of every layer between
 *                       calls; never applies dropout. The first step after a
 *                       reset fixes the batch size.
 *   lstm:reset_state()  forgets the state: the next step starts from zeros.
 *   lstm:state()        {h = {...}, c = {...}}: copies, one (batch, hidden)
 *                       tensor per layer; nil when there is no state.
 *   lstm:set_state(s)   restores such a table (nil resets).
 * Arguments are checked here; the math is in nn_lstm.c. */
#include "bind.h"
#include "layer.h"
#include "nn_lstm.h"

#include <stdio.h>
#include <string.h>

Layer *llayer_check_kind(lua_State *L, int idx, const LayerKind *kind); /* bind_nn.c */

/* Raises "LSTM 'name': msg" (or "LSTM: msg"), like the shared methods do. */
static int lstm_error(lua_State *L, const char *msg) {
    lua_getfield(L, 1, "name");
    if (lua_type(L, -1) == LUA_TSTRING) return dd_error(L, "LSTM '%s': %s", lua_tostring(L, -1), msg);
    return dd_error(L, "LSTM: %s", msg);
}

/* The tensor at idx as a contiguous tensor (a copy pushed on the stack if needed). */
static Tensor *contiguous_at(lua_State *L, int idx) {
    Tensor *t = ltensor_check(L, idx);
    if (tensor_is_contiguous(t)) return t;
    Tensor *c = ltensor_push_uninit(L, t->ndim, t->shape);
    tensor_copy_data(c, t);
    return c;
}

static int l_step(lua_State *L) {
    Layer *m = llayer_check_kind(L, 1, &lstm_kind);
    Tensor *x = ltensor_check(L, 2);
    int64_t in = lstm_input_size(m);
    char s[256], err[LAYER_ERR];
    if (x->ndim != 2) {
        snprintf(err, sizeof err, "step: input of shape %s must be 2-d (batch, features)",
                 shape_format(s, sizeof s, x->ndim, x->shape));
        return lstm_error(L, err);
    }
    if (x->shape[1] != in) {
        snprintf(err, sizeof err, "step: input of shape %s has %lld features, expected %lld (input_size)",
                 shape_format(s, sizeof s, x->ndim, x->shape), (long long)x->shape[1], (long long)in);
        return lstm_error(L, err);
    }
    x = contiguous_at(L, 2);
    int64_t shape[2] = {x->shape[0], lstm_hidden_size(m)};
    Tensor *y = ltensor_push_uninit(L, 2, shape);
    if (lstm_step(m, tensor_data(y), tensor_data(x), x->shape[0], err)) return lstm_error(L, err);
    return 1;
}

static int l_reset_state(lua_State *L) {
    lstm_state_reset(llayer_check_kind(L, 1, &lstm_kind));
    lua_settop(L, 1);
    return 1;
}

static int l_state(lua_State *L) {
    Layer *m = llayer_check_kind(L, 1, &lstm_kind);
    int64_t shape[2] = {lstm_state_batch(m), lstm_hidden_size(m)};
    if (!shape[0]) {
        lua_pushnil(L);
        return 1;
    }
    int layers = lstm_num_layers(m);
    lua_createtable(L, 0, 2);
    for (int which = 0; which < 2; which++) {
        lua_createtable(L, layers, 0);
        for (int k = 0; k < layers; k++) {
            Tensor *t = ltensor_push_uninit(L, 2, shape);
            memcpy(tensor_data(t), which ? lstm_state_c(m, k) : lstm_state_h(m, k),
                   (size_t)(shape[0] * shape[1]) * sizeof(float));
            lua_rawseti(L, -2, k + 1);
        }
        lua_setfield(L, -2, which ? "c" : "h");
    }
    return 1;
}

static int l_set_state(lua_State *L) {
    Layer *m = llayer_check_kind(L, 1, &lstm_kind);
    char err[LAYER_ERR], a[256], b[256];
    if (lua_isnoneornil(L, 2)) {
        lstm_state_reset(m);
        lua_settop(L, 1);
        return 1;
    }
    if (!lua_istable(L, 2)) {
        snprintf(err, sizeof err, "set_state: expected a table {h = {...}, c = {...}} or nil, got %s", luaL_typename(L, 2));
        return lstm_error(L, err);
    }
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        lua_pop(L, 1);
        const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (!key || (strcmp(key, "h") != 0 && strcmp(key, "c") != 0)) {
            snprintf(err, sizeof err, "set_state: unexpected entry '%s' (known: h, c)", luaL_tolstring(L, -1, NULL));
            return lstm_error(L, err);
        }
    }
    int layers = lstm_num_layers(m);
    int64_t H = lstm_hidden_size(m), batch = -1;
    luaL_checkstack(L, 4 * LSTM_MAX_LAYERS + 8, "set_state");
    const float *ptr[2][LSTM_MAX_LAYERS];
    for (int which = 0; which < 2; which++) {
        const char *name = which ? "c" : "h";
        lua_getfield(L, 2, name);
        int list = lua_gettop(L);
        if (!lua_istable(L, list) || lua_rawlen(L, list) != (size_t)layers) {
            snprintf(err, sizeof err, "set_state: '%s' must be a list of %d tensors (one per layer), got %s", name, layers,
                     lua_istable(L, list) ? lua_pushfstring(L, "%d entries", (int)lua_rawlen(L, list)) : luaL_typename(L, list));
            return lstm_error(L, err);
        }
        for (int k = 0; k < layers; k++) {
            lua_rawgeti(L, list, k + 1);
            Tensor *t = ltensor_test(L, -1);
            if (!t) {
                snprintf(err, sizeof err, "set_state: %s[%d] must be a Tensor, got %s", name, k + 1, luaL_typename(L, -1));
                return lstm_error(L, err);
            }
            if (batch < 0 && t->ndim == 2) batch = t->shape[0];
            if (t->ndim != 2 || t->shape[0] != batch || t->shape[1] != H || batch < 1) {
                /* the first tensor fixes the batch; until then any batch >= 1 would do */
                if (batch >= 1) shape_format(b, sizeof b, 2, (int64_t[2]){batch, H});
                else snprintf(b, sizeof b, "(batch, %lld) with batch >= 1", (long long)H);
                snprintf(err, sizeof err, "set_state: %s[%d] has shape %s, expected %s", name, k + 1,
                         shape_format(a, sizeof a, t->ndim, t->shape), b);
                return lstm_error(L, err);
            }
            ptr[which][k] = tensor_data(contiguous_at(L, lua_gettop(L))); /* stays on the stack */
        }
    }
    if (lstm_state_set(m, batch, ptr[0], ptr[1], err)) return lstm_error(L, err);
    lua_settop(L, 1);
    return 1;
}

const luaL_Reg lstm_methods[] = {
    {"step", l_step}, {"reset_state", l_reset_state}, {"state", l_state}, {"set_state", l_set_state}, {NULL, NULL}};

/* bind_mdn.c: the MDN head's own Lua methods (math in nn_mdn.c).
 *   mdn:sample(out [, temperature=1])  out (batch, K*(1+2D)) -> a new (batch, D):
 *       component from softmax(logits / T), y = mu + sigma * sqrt(T) * noise;
 *       T = 0 gives the most probable component's mean. Draws use rng_global.
 *   mdn:mean(out)                      -> a new (batch, D): sum_k pi_k mu_k. */
#include "bind.h"
#include "layer.h"
#include "nn_mdn.h"

#include <math.h>
#include <stdio.h>

Layer *llayer_check_kind(lua_State *L, int idx, const LayerKind *kind); /* bind_nn.c */

/* Raises "MDN 'name': msg" (or "MDN: msg"). */
static int mdn_error(lua_State *L, const char *msg) {
    lua_getfield(L, 1, "name");
    if (lua_type(L, -1) == LUA_TSTRING) return dd_error(L, "MDN '%s': %s", lua_tostring(L, -1), msg);
    return dd_error(L, "MDN: %s", msg);
}

/* The raw output at idx, checked to be (batch, K*(1+2D)) and made contiguous. */
static Tensor *check_out(lua_State *L, int idx, const Layer *m, const char *fn) {
    Tensor *t = ltensor_check(L, idx);
    int k = mdn_mixtures(m), d = mdn_out_features(m);
    int64_t w = mdn_width(k, d);
    char s[256], err[LAYER_ERR];
    if (t->ndim != 2) {
        snprintf(err, sizeof err, "%s: out of shape %s must be 2-d (batch, %lld)", fn,
                 shape_format(s, sizeof s, t->ndim, t->shape), (long long)w);
        mdn_error(L, err);
    }
    if (t->shape[1] != w) {
        snprintf(err, sizeof err, "%s: out of shape %s must be (batch, %lld): K*(1+2D) with K=%d mixtures, D=%d, got width %lld",
                 fn, shape_format(s, sizeof s, t->ndim, t->shape), (long long)w, k, d, (long long)t->shape[1]);
        mdn_error(L, err);
    }
    if (tensor_is_contiguous(t)) return t;
    Tensor *c = ltensor_push_uninit(L, t->ndim, t->shape);
    tensor_copy_data(c, t);
    return c;
}

/* A temperature argument at idx: a number >= 0, or dflt when absent. */
static double temperature_arg(lua_State *L, int idx, const char *what, double dflt) {
    if (lua_isnoneornil(L, idx)) return dflt;
    char err[LAYER_ERR];
    if (lua_type(L, idx) != LUA_TNUMBER) {
        snprintf(err, sizeof err, "sample: %s must be a number, got %s", what, luaL_typename(L, idx));
        mdn_error(L, err);
    }
    double t = lua_tonumber(L, idx);
    if (!(t >= 0) || isinf(t)) {
        snprintf(err, sizeof err, "sample: %s must be a finite number >= 0, got %g", what, t);
        mdn_error(L, err);
    }
    return t;
}

/* mdn:sample(out [, temperature [, sigma_temperature]]): temperature
 * (default 1) sharpens the choice of component, sigma_temperature (default:
 * temperature) scales the spread of the draw around its mean. */
static int l_sample(lua_State *L) {
    Layer *m = llayer_check_kind(L, 1, &mdn_kind);
    double temperature = temperature_arg(L, 3, "temperature", 1);
    double sigma_temperature = temperature_arg(L, 4, "sigma_temperature", temperature);
    Tensor *out = check_out(L, 2, m, "sample");
    int64_t shape[2] = {out->shape[0], mdn_out_features(m)};
    Tensor *y = ltensor_push_uninit(L, 2, shape);
    mdn_sample(tensor_data(y), tensor_data(out), shape[0], mdn_mixtures(m), (int)shape[1], temperature,
               sigma_temperature, &rng_global);
    return 1;
}

static int l_mean(lua_State *L) {
    Layer *m = llayer_check_kind(L, 1, &mdn_kind);
    Tensor *out = check_out(L, 2, m, "mean");
    int64_t shape[2] = {out->shape[0], mdn_out_features(m)};
    Tensor *y = ltensor_push_uninit(L, 2, shape);
    mdn_mean(tensor_data(y), tensor_data(out), shape[0], mdn_mixtures(m), (int)shape[1]);
    return 1;
}

const luaL_Reg mdn_methods[] = {{"sample", l_sample}, {"mean", l_mean}, {NULL, NULL}};

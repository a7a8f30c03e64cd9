/* bind.h: shared helpers of the Lua bindings and the one table of C modules.
 * Each bind_*.c file registers its functions into the `dd` table (at index dd)
 * through one entry point listed in runtime.c. */
#ifndef DD_BIND_H
#define DD_BIND_H

#include <lua.h>
#include <lauxlib.h>
#include "tensor.h"

#define TENSOR_MT "dd.Tensor"

/* The Tensor at idx, or a Lua error "Tensor expected, got <type>". */
Tensor *ltensor_check(lua_State *L, int idx);
/* The Tensor at idx, or NULL if it is something else. */
Tensor *ltensor_test(lua_State *L, int idx);
/* Pushes a new zeroed contiguous tensor; raises "<fn>: ..." on a bad size or
 * "out of memory" when allocation fails. Never leaks: the userdata owns it. */
Tensor *ltensor_push_new(lua_State *L, int ndim, const int64_t *shape);
/* Same without zeroing: for results every element of which is then written. */
Tensor *ltensor_push_uninit(lua_State *L, int ndim, const int64_t *shape);
/* Pushes a new view of src (shares storage). */
Tensor *ltensor_push_view(lua_State *L, const Tensor *src);

/* Pushes a float as a Lua integer when it is integral (so 39.0 prints as 39),
 * else as a Lua float. */
static inline void lpush_float(lua_State *L, double v) {
    if (v == (double)(lua_Integer)v && v > -9007199254740992.0 && v < 9007199254740992.0)
        lua_pushinteger(L, (lua_Integer)v);
    else
        lua_pushnumber(L, v);
}

/* Reads an integer argument that must lie in [lo, hi]; the error names what. */
int64_t larg_int(lua_State *L, int idx, const char *what, int64_t lo, int64_t hi);

void bind_tensor_open(lua_State *L, int dd);
void bind_math_open(lua_State *L, int dd);
void bind_io_open(lua_State *L, int dd);
void bind_core_open(lua_State *L, int dd);
void bind_json_open(lua_State *L, int dd);
void bind_nn_open(lua_State *L, int dd);
void bind_loss_open(lua_State *L, int dd);
void bind_optim_open(lua_State *L, int dd);
void bind_metrics_open(lua_State *L, int dd);

#endif

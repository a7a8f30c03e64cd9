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
/* Raises "<fn>: cannot write into an expanded tensor ..." when t's elements
 * share memory; every in-place operation calls it on its destination. */
void ltensor_check_writable(lua_State *L, const Tensor *t, const char *fn);
/* Pushes a new view of src (shares storage). */
Tensor *ltensor_push_view(lua_State *L, const Tensor *src);

/* Raises a Lua error like luaL_error (with the caller's position), but with
 * printf formats checked by the compiler: luaL_error goes through
 * lua_pushfstring, which knows only %d %I %f %s %c %p %U and silently turns
 * "%lld" or "%.1f" into a different error. Use this everywhere. */
int dd_error(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Pushes a float as a Lua integer when it is integral (so 39.0 prints as 39),
 * else as a Lua float. */
static inline void lpush_float(lua_State *L, double v) {
    /* range first: casting NaN, inf or a huge value to an integer is undefined */
    if (v > -9007199254740992.0 && v < 9007199254740992.0 && v == (double)(lua_Integer)v)
        lua_pushinteger(L, (lua_Integer)v);
    else
        lua_pushnumber(L, v);
}

/* Strict options: every key of the table at idx (nil: no options) must be
 * one of known (NULL-terminated); otherwise "<fn>: unknown option 'k'
 * (known: a, b, ...)". */
void lopts_check(lua_State *L, int idx, const char *fn, const char *const *known);

/* The value at idx for messages: the number itself, else its type name. */
const char *larg_describe(lua_State *L, int idx);

/* Reads an integer argument that must lie in [lo, hi]; the error names what. */
int64_t larg_int(lua_State *L, int idx, const char *what, int64_t lo, int64_t hi);

void bind_tensor_open(lua_State *L, int dd);
void bind_math_open(lua_State *L, int dd);
void bind_io_open(lua_State *L, int dd);
void bind_core_open(lua_State *L, int dd);
void bind_json_open(lua_State *L, int dd);
void bind_nn_open(lua_State *L, int dd);
void bind_data_open(lua_State *L, int dd);
void bind_loss_open(lua_State *L, int dd);
void bind_optim_open(lua_State *L, int dd);
void bind_metrics_open(lua_State *L, int dd);
void bind_masks_open(lua_State *L, int dd);
void bind_draw_open(lua_State *L, int dd);
void bind_image_open(lua_State *L, int dd);
void bind_vision_open(lua_State *L, int dd);
void bind_video_open(lua_State *L, int dd);
void bind_process_open(lua_State *L, int dd);

#endif

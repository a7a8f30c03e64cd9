/* bind_core.c: runtime-wide functions: clock, seeding, threads, RNG state. */
#include "bind.h"
#include "conv_direct.h"
#include "rng.h"
#include "tensor_math.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int dd_error(lua_State *L, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    luaL_where(L, 1);
    lua_pushstring(L, buf);
    lua_concat(L, 2);
    return lua_error(L);
}

void lopts_check(lua_State *L, int idx, const char *fn, const char *const *known) {
    if (lua_isnoneornil(L, idx)) return;
    if (!lua_istable(L, idx)) dd_error(L, "%s: options must be a table, got %s", fn, luaL_typename(L, idx));
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        int ok = 0;
        for (int i = 0; key && known[i] && !ok; i++) ok = strcmp(key, known[i]) == 0;
        if (ok) continue;
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (int i = 0; known[i]; i++) {
            if (i) luaL_addstring(&b, ", ");
            luaL_addstring(&b, known[i]);
        }
        luaL_pushresult(&b);
        if (!key)
            dd_error(L, "%s: option keys must be strings, got a %s key (known: %s)", fn, luaL_typename(L, -2),
                     lua_tostring(L, -1));
        dd_error(L, "%s: unknown option '%s' (known: %s)", fn, key, lua_tostring(L, -1));
    }
}

static int l_clock(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
    return 1;
}

static int l_manual_seed(lua_State *L) {
    int isnum = 0;
    lua_Integer s = lua_tointegerx(L, 1, &isnum);
    if (!isnum) return dd_error(L, "manual_seed: seed must be an integer, got %s", larg_describe(L, 1));
    rng_seed(&rng_global, (uint64_t)s);
    return 0;
}

/* The generator state as hex, for checkpoints: 64 digits of xoshiro state,
 * then, when Box-Muller holds the second normal of a pair, "+" and its 16
 * digits (its bits), so a restored run draws exactly the same normals. */
static int l_rng_state(lua_State *L) {
    char buf[96];
    int n = snprintf(buf, sizeof buf, "%016llx%016llx%016llx%016llx", (unsigned long long)rng_global.s[0],
                     (unsigned long long)rng_global.s[1], (unsigned long long)rng_global.s[2],
                     (unsigned long long)rng_global.s[3]);
    if (rng_global.has_spare) {
        uint64_t bits;
        memcpy(&bits, &rng_global.spare_normal, sizeof bits);
        snprintf(buf + n, sizeof buf - (size_t)n, "+%016llx", (unsigned long long)bits);
    }
    lua_pushstring(L, buf);
    return 1;
}

static int l_set_rng_state(lua_State *L) {
    size_t len;
    const char *s = lua_tolstring(L, 1, &len);
    int spare = len == 81 && s && s[64] == '+' && strspn(s + 65, "0123456789abcdef") == 16;
    if (!s || lua_type(L, 1) != LUA_TSTRING || (len != 64 && !spare) || strspn(s, "0123456789abcdef") != 64)
        return dd_error(L, "set_rng_state: expected the string dd.rng_state() returns (64 hex digits, "
                           "optionally '+' and 16 more), got %s", lua_type(L, 1) == LUA_TSTRING ? s : luaL_typename(L, 1));
    uint64_t st[4];
    for (int i = 0; i < 4; i++) {
        char part[17];
        memcpy(part, s + 16 * i, 16);
        part[16] = 0;
        unsigned long long v;
        sscanf(part, "%llx", &v);
        st[i] = v;
    }
    if (!(st[0] | st[1] | st[2] | st[3])) return dd_error(L, "set_rng_state: the all-zero state is invalid");
    memcpy(rng_global.s, st, sizeof st);
    rng_global.has_spare = spare;
    if (spare) {
        unsigned long long bits;
        sscanf(s + 65, "%16llx", &bits);
        uint64_t b = bits;
        memcpy(&rng_global.spare_normal, &b, sizeof b);
    }
    return 0;
}

static int l_set_num_threads(lua_State *L) {
    dd_set_num_threads((int)larg_int(L, 1, "set_num_threads: n", 1, 1024));
    return 0;
}

static int l_get_num_threads(lua_State *L) {
    lua_pushinteger(L, dd_get_num_threads());
    return 1;
}

/* dd.set_conv_direct(on): whether stride-1 convolutions take the direct
 * kernels (src/conv_direct.h) where they apply, or always im2col + GEMM;
 * for comparing the two (tests, make bench). Returns the previous setting. */
static int l_set_conv_direct(lua_State *L) {
    if (lua_type(L, 1) != LUA_TBOOLEAN)
        return dd_error(L, "set_conv_direct: on must be a boolean, got %s", larg_describe(L, 1));
    lua_pushboolean(L, conv_direct_enabled());
    conv_direct_set_enabled(lua_toboolean(L, 1));
    return 1;
}

static int l_get_conv_direct(lua_State *L) {
    lua_pushboolean(L, conv_direct_enabled());
    return 1;
}

static const luaL_Reg core_functions[] = {
    {"clock", l_clock}, {"manual_seed", l_manual_seed}, {"rng_state", l_rng_state},
    {"set_rng_state", l_set_rng_state}, {"set_num_threads", l_set_num_threads},
    {"get_num_threads", l_get_num_threads}, {"set_conv_direct", l_set_conv_direct},
    {"get_conv_direct", l_get_conv_direct}, {NULL, NULL}};

void bind_core_open(lua_State *L, int dd) {
    lua_pushvalue(L, dd);
    luaL_setfuncs(L, core_functions, 0);
    lua_pop(L, 1);
}

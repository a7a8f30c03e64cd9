/* fuzz_tensor.c: libFuzzer harness for the tensor-from-Lua-table constructor
 * dd.tensor (table_shape / table_fill in src/bind_tensor.c), run in a real
 * Lua state with dd loaded. The input bytes are a little program that builds
 * one Lua value (see push_value): nested tables of any shape, ragged or not,
 * with holes, shared sub-tables, metatables, strings, booleans, tensors and
 * every kind of number (NaN, infinities, huge integers, raw double bits).
 * dd.tensor(value) must either raise a string error naming "tensor", or give
 * a tensor whose totable() equals the input with each number rounded to
 * float32; tostring and the copy constructor then run on it too. */
#include "fuzz_util.h"
#include "runtime.h"

#include <lauxlib.h>
#include <lua.h>
#include <math.h>

/* MAX_LEAVES bounds the numbers one input can make through shared
 * sub-tables (5^8 would be 390k), keeping runs fast. */
enum { MAX_DEPTH = 12, MAX_WIDTH = 6, MAX_LEAVES = 4096 };

static lua_State *L;

/* check(input, value): dd.tensor(input) either fails with a message naming
 * tensor, or round-trips through totable(); returns nothing, errors on a
 * broken promise with a message starting "FUZZ:". */
static const char *const checker =
    "local input = ...\n"
    "local function f32(x) return (string.unpack('<f', string.pack('<f', x))) end\n"
    "local function same(a, b)\n"
    "  if type(a) == 'number' then local f = f32(a); return f == b or (f ~= f and b ~= b) end\n"
    "  if type(a) ~= 'table' or type(b) ~= 'table' or #b ~= rawlen(a) then return false end\n"
    "  for i = 1, rawlen(a) do if not same(rawget(a, i), b[i]) then return false end end\n"
    "  return true\n"
    "end\n"
    "local ok, t = pcall(dd.tensor, input)\n"
    "if not ok then\n"
    "  if type(t) ~= 'string' or not t:find('tensor', 1, true) then error('FUZZ: bad error ' .. tostring(t)) end\n"
    "  return\n"
    "end\n"
    "if type(input) == 'userdata' then input = input:totable() end\n"
    "if not same(input, t:totable()) then error('FUZZ: totable differs from the input') end\n"
    "local s = tostring(t)\n"
    "if type(s) ~= 'string' or #s == 0 then error('FUZZ: empty tostring') end\n"
    "local c = dd.tensor(t)\n"
    "if not same(input, c:totable()) then error('FUZZ: copy differs') end\n";

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    setenv("DEEPDANCE_HOME", DD_SOURCE_DIR, 0);
    char err[512];
    L = dd_runtime_open(err, sizeof err);
    if (!L) {
        fprintf(stderr, "fuzz_tensor: cannot open the runtime: %s\n", err);
        abort();
    }
    FUZZ_CHECK(luaL_loadstring(L, checker) == LUA_OK);
    lua_setfield(L, LUA_REGISTRYINDEX, "fuzz.check");
    return 0;
}

typedef struct Bytes {
    const uint8_t *p, *end;
} Bytes;

static int take(Bytes *b) { return b->p < b->end ? *b->p++ : 0; }

static const double specials[] = {NAN, INFINITY, -INFINITY, 1e39, -1e39, -0.0, 1e-46, 16777217.0,
                                  3.4028235677973366e38, 0.1};

/* Pushes one value built from the bytes: an opcode, then its operands.
 * Returns the number of non-table values inside it (itself if not a table). */
static int64_t push_value(Bytes *b, int depth) {
    int64_t leaves = 1;
    int op = take(b);
    if (depth > MAX_DEPTH) op = 4;
    switch (op % 16) {
    case 0: case 1: case 2: {   /* a table of n values */
        int n = take(b) % MAX_WIDTH;
        lua_createtable(L, n, 0);
        leaves = 0;
        for (int i = 1; i <= n; i++) {
            leaves += push_value(b, depth + 1);
            lua_rawseti(L, -2, i);
        }
        break;
    }
    case 3: {                   /* a table of n times the same value (rectangular, shared) */
        int n = take(b) % MAX_WIDTH;
        int64_t child = push_value(b, depth + 1);
        if (child * n > MAX_LEAVES) n = 1;
        leaves = child * n;
        lua_createtable(L, n, 0);
        for (int i = 1; i <= n; i++) {
            lua_pushvalue(L, -2);
            lua_rawseti(L, -2, i);
        }
        lua_remove(L, -2);
        break;
    }
    case 4: case 5: case 6: case 7: case 8:
        lua_pushinteger(L, (int8_t)take(b));
        break;
    case 9: {                   /* any double, from its bits */
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++) bits = bits << 8 | (uint64_t)take(b);
        double d;
        memcpy(&d, &bits, sizeof d);
        lua_pushnumber(L, d);
        break;
    }
    case 10:
        lua_pushnumber(L, specials[take(b) % (sizeof specials / sizeof *specials)]);
        break;
    case 11: {
        int k = take(b) % 3;
        lua_pushinteger(L, k == 0 ? LUA_MAXINTEGER : k == 1 ? LUA_MININTEGER : (lua_Integer)1 << 53);
        break;
    }
    case 12:
        if (take(b) & 1) lua_pushliteral(L, "1");
        else lua_pushliteral(L, "x");
        break;
    case 13: {
        int k = take(b) % 3;
        if (k == 0) lua_pushnil(L);
        else lua_pushboolean(L, k == 1);
        break;
    }
    case 14:                    /* a Tensor where a number or table is expected */
        lua_getglobal(L, "dd");
        lua_getfield(L, -1, "ones");
        lua_remove(L, -2);
        lua_pushinteger(L, take(b) % 3);
        lua_call(L, 1, 1);
        break;
    default: {                  /* a table whose metatable lies about its length and items */
        int n = take(b) % MAX_WIDTH;
        lua_createtable(L, n, 0);
        leaves = 0;
        for (int i = 1; i <= n; i++) {
            leaves += push_value(b, depth + 1);
            lua_rawseti(L, -2, i);
        }
        luaL_dostring(L, "return {__len = function() return 3 end, __index = function() return 1 end}");
        lua_setmetatable(L, -2);
        break;
    }
    }
    return leaves;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Bytes b = {data, data + size};
    lua_settop(L, 0);
    lua_getfield(L, LUA_REGISTRYINDEX, "fuzz.check");
    push_value(&b, 0);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "fuzz_tensor: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_settop(L, 0);
    /* A full collection now and then keeps the heap small; one per input
     * would cost half the speed. Run with -detect_leaks=0 (fuzz/run.sh does):
     * Lua's deferred frees look like leaks to libFuzzer's per-input check,
     * while LeakSanitizer's check at exit still reports real ones. */
    static unsigned runs;
    if (++runs % 256 == 0) lua_gc(L, LUA_GCCOLLECT);
    return 0;
}

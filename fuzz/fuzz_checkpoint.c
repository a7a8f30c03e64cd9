/* fuzz_checkpoint.c: libFuzzer harness for loading checkpoints the way a
 * script does, in a real Lua state with dd loaded: dd.safetensors_header,
 * dd.load (src/bind_io.c: the memory estimate, tensor creation, metadata
 * tables) and dd.nn.load into a small model and optimizer
 * (lua/deepdance/checkpoint.lua: format and version checks, strict model
 * matching, the JSON metadata through dd.json.decode, load_state_dict).
 * Each input is a whole file. Every call must either succeed or raise a
 * string error that names the file; nothing else may happen (fuzz_safetensors
 * checks the reader's own promises, faster). */
#include "fuzz_util.h"
#include "runtime.h"

#include <lauxlib.h>
#include <lua.h>

static lua_State *L;

/* check(path): returns nothing, errors with "FUZZ: ..." on a broken promise. */
static const char *const checker =
    "local path = ...\n"
    "local function try(what, f, ...)\n"
    "  local r = table.pack(pcall(f, ...))\n"
    "  if not r[1] and (type(r[2]) ~= 'string' or not r[2]:find(path, 1, true)) then\n"
    "    error('FUZZ: ' .. what .. ' raised an error without the path: ' .. tostring(r[2]))\n"
    "  end\n"
    "  return table.unpack(r, 1, r.n)\n"
    "end\n"
    "try('dd.safetensors_header', dd.safetensors_header, path)\n"
    "local ok, tensors, meta = try('dd.load', dd.load, path)\n"
    "if ok then\n"
    "  for k, t in pairs(tensors) do\n"
    "    if type(k) ~= 'string' then error('FUZZ: a tensor name is a ' .. type(k)) end\n"
    "    if t:numel() <= 4096 then t:totable() end\n"
    "  end\n"
    "  for k, v in pairs(meta) do\n"
    "    if type(k) ~= 'string' or type(v) ~= 'string' then error('FUZZ: metadata is not strings') end\n"
    "  end\n"
    "end\n"
    "try('dd.nn.load', dd.nn.load, path, FUZZ_MODEL, FUZZ_OPT)\n";

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    setenv("DEEPDANCE_HOME", DD_SOURCE_DIR, 0);
    char err[512];
    L = dd_runtime_open(err, sizeof err);
    if (!L) {
        fprintf(stderr, "fuzz_checkpoint: cannot open the runtime: %s\n", err);
        abort();
    }
    /* the model and optimizer of fuzz/corpus/checkpoint/ (fuzz/make_corpus.sh) */
    FUZZ_CHECK(luaL_dostring(L, "FUZZ_MODEL = dd.nn.Sequential{dd.nn.Linear{3, 2}}\n"
                                "FUZZ_OPT = dd.optim.Adam{FUZZ_MODEL:parameters(), lr = 1e-3}") == LUA_OK);
    FUZZ_CHECK(luaL_loadstring(L, checker) == LUA_OK);
    lua_setfield(L, LUA_REGISTRYINDEX, "fuzz.check");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    lua_settop(L, 0);
    lua_getfield(L, LUA_REGISTRYINDEX, "fuzz.check");
    lua_pushstring(L, path);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "fuzz_checkpoint: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_settop(L, 0);
    /* as fuzz_tensor.c: collect now and then, leaks checked at exit */
    static unsigned runs;
    if (++runs % 256 == 0) lua_gc(L, LUA_GCCOLLECT);
    return 0;
}

/* runtime.c: builds the Lua state: standard libraries, the C modules (one
 * table below), the search path of the runtime's Lua library, then init.lua.
 * Also Ctrl-C for long jobs: dd.defer_interrupts and dd.interrupted. */
#include "runtime.h"
#include "bind.h"
#include "tensor_math.h"

#include <lualib.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

static const struct {
    const char *name;
    void (*open)(lua_State *L, int dd);
} dd_modules[] = {
    {"core", bind_core_open},
    {"tensor", bind_tensor_open},
    {"math", bind_math_open},
    {"io", bind_io_open},
    {"json", bind_json_open},
    {"nn", bind_nn_open},
    {"loss", bind_loss_open},
    {"optim", bind_optim_open},
    {"metrics", bind_metrics_open},
    {"masks", bind_masks_open},
    {"draw", bind_draw_open},
    {"image", bind_image_open},
    {"vision", bind_vision_open},
    {"video", bind_video_open},
    {"data", bind_data_open},
    {"process", bind_process_open},
};

static int file_exists(const char *path) { return access(path, R_OK) == 0; }

const char *dd_home(void) {
    static char home[PATH_MAX];
    if (home[0]) return home;
    const char *env = getenv("DEEPDANCE_HOME");
    if (env && *env) {
        snprintf(home, sizeof home, "%s", env);
        return home;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        char probe[PATH_MAX + 64];
        snprintf(probe, sizeof probe, "%s/lua/deepdance/init.lua", exe);
        if (file_exists(probe)) {
            snprintf(home, sizeof home, "%s", exe);
            return home;
        }
        /* installed: PREFIX/bin/deepdance next to PREFIX/share/deepdance */
        snprintf(probe, sizeof probe, "%s/../share/deepdance/lua/deepdance/init.lua", exe);
        if (file_exists(probe)) {
            snprintf(probe, sizeof probe, "%s/../share/deepdance", exe);
            char *real = realpath(probe, NULL);
            snprintf(home, sizeof home, "%s", real ? real : DD_DATADIR);
            free(real);
            return home;
        }
    }
    snprintf(home, sizeof home, "%s", DD_DATADIR);
    return home;
}

int dd_msghandler(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    /* Ctrl-C ("interrupted!", from repl.c's hook or dd.defer_interrupts) is
     * no bug: say where it stopped, without a traceback */
    size_t len = strlen(msg), tail = strlen("interrupted!");
    if (len >= tail && strcmp(msg + len - tail, "interrupted!") == 0) return 1;
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* ---- Ctrl-C, deferred ----
 * Scripts and REPL chunks run with a SIGINT handler that raises "interrupted!"
 * at the next Lua instruction (repl.c), wherever that falls. A job that must
 * stop at a clean point (dd.fit: between batches, after saving a checkpoint)
 * defers interrupts instead: SIGINT then only sets a flag, which the job polls
 * with dd.interrupted(). A second Ctrl-C before the poll kills the process
 * with the default action: the way out of a stuck C call. */

static volatile sig_atomic_t interrupt_pending;
static struct sigaction interrupt_saved;   /* the handler deferral replaced */

static void interrupt_flag(int sig) {
    if (interrupt_pending) {  /* the second Ctrl-C */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    interrupt_pending = 1;
}

static int interrupts_deferred(void) {
    struct sigaction cur;
    return sigaction(SIGINT, NULL, &cur) == 0 && cur.sa_handler == interrupt_flag;
}

/* dd.defer_interrupts(on) -> whether they were deferred before. Turning
 * deferral off puts back the handler it replaced, and raises "interrupted!"
 * for a Ctrl-C that came meanwhile and was not taken by dd.interrupted(). */
static int l_defer_interrupts(lua_State *L) {
    if (lua_type(L, 1) != LUA_TBOOLEAN)
        return dd_error(L, "defer_interrupts: expected a boolean, got %s", larg_describe(L, 1));
    int on = lua_toboolean(L, 1), was = interrupts_deferred();
    if (on && !was) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = interrupt_flag;
        sigemptyset(&sa.sa_mask);
        interrupt_pending = 0;
        sigaction(SIGINT, &sa, &interrupt_saved);
    } else if (!on && was) {
        sigaction(SIGINT, &interrupt_saved, NULL);
        if (interrupt_pending) {
            interrupt_pending = 0;
            return dd_error(L, "interrupted!");
        }
    }
    lua_pushboolean(L, was);
    return 1;
}

/* dd.interrupted() -> whether a Ctrl-C came while deferred; takes it, so the
 * next call is false until another one comes. */
static int l_interrupted(lua_State *L) {
    lua_pushboolean(L, interrupt_pending != 0);
    interrupt_pending = 0;
    return 1;
}

/* Prepends home/lua to package.path so `require "deepdance.x"` finds our files. */
static void set_search_path(lua_State *L, const char *home) {
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s", home, home, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
}

static int runtime_init(lua_State *L) {
    luaL_openlibs(L);
    const char *home = dd_home();
    set_search_path(L, home);
    lua_newtable(L);
    int dd = lua_gettop(L);
    lua_pushstring(L, home);
    lua_setfield(L, dd, "home");
    lua_pushstring(L, DD_VERSION);
    lua_setfield(L, dd, "version");
    for (size_t i = 0; i < sizeof dd_modules / sizeof dd_modules[0]; i++)
        dd_modules[i].open(L, dd);
    lua_pushcfunction(L, l_defer_interrupts);
    lua_setfield(L, dd, "defer_interrupts");
    lua_pushcfunction(L, l_interrupted);
    lua_setfield(L, dd, "interrupted");
    lua_pushvalue(L, dd);
    lua_setglobal(L, "dd");
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, dd);
    lua_setfield(L, -2, "deepdance");
    lua_pop(L, 1);
    /* init.lua extends dd (the same table) with the Lua-side library. */
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/lua/deepdance/init.lua", home);
    if (luaL_loadfile(L, path) != LUA_OK) return lua_error(L);
    lua_pushvalue(L, dd);
    lua_call(L, 1, 0);
    return 0;
}

/* Denormal floats are 10-100x slower on x86 and appear as a network learns
 * (tiny gradients, Adam moments): flush them to zero, as PyTorch's
 * set_flush_denormal(True) does. Set before the first BLAS call so that the
 * BLAS worker threads, created later, inherit it. */
static void fpu_flush_denormals(void) {
#if defined(__SSE__)
    _mm_setcsr(_mm_getcsr() | 0x8040); /* FTZ | DAZ */
#endif
}

/* DEEPDANCE_NUM_THREADS=n sets dd.set_num_threads(n) before any script runs:
 * a sweep gives each trial its share of the cores this way. */
static void threads_from_env(void) {
    const char *env = getenv("DEEPDANCE_NUM_THREADS");
    char *end;
    long n = env ? strtol(env, &end, 10) : 0;
    if (env && *env && *end == 0 && n >= 1 && n <= 1024) dd_set_num_threads((int)n);
}

lua_State *dd_runtime_open(char *err, size_t errlen) {
    fpu_flush_denormals();
    threads_from_env();
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        snprintf(err, errlen, "cannot create Lua state: out of memory");
        return NULL;
    }
    lua_pushcfunction(L, dd_msghandler);
    lua_pushcfunction(L, runtime_init);
    if (lua_pcall(L, 0, 0, -2) != LUA_OK) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_close(L);
        return NULL;
    }
    lua_pop(L, 1);
    return L;
}

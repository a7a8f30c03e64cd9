/* bind_process.c: dd.process, the child processes a sweep runs its trials in
 * (process.c does the work).
 *
 *   local pid = dd.process.spawn{argv = {exe, "trial.lua", "--lr", "0.1"},
 *                                env = {OPENBLAS_NUM_THREADS = "1"}, output = "trial/log.txt"}
 *   local done, code = dd.process.wait({pid}, 1.0)   -- nil after 1 s without an end
 *
 * Memory on errors: the argv and envp arrays are userdata and the strings they
 * point to sit in an anchor table on the stack, so an error leaks nothing. */
#include "bind.h"
#include "process.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

enum { ERR_LEN = 1024, MAX_WAIT = 4096 };

/* Appends the string at the top of the stack to the anchor table and returns
 * it; the anchor keeps it alive for as long as the arrays point to it. */
static const char *anchor_top(lua_State *L, int anchor) {
    const char *s = lua_tostring(L, -1);
    lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
    return s;
}

static const char *opt_string(lua_State *L, int opts, const char *key) {
    lua_getfield(L, opts, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    if (lua_type(L, -1) != LUA_TSTRING)
        dd_error(L, "dd.process.spawn: option '%s' must be a string, got %s", key, luaL_typename(L, -1));
    const char *s = lua_tostring(L, -1);
    lua_pop(L, 1); /* still referenced by the options table */
    return s;
}

/* argv from the list at opts.argv: strings or numbers, at least one. */
static char **spawn_argv(lua_State *L, int opts, int anchor) {
    lua_getfield(L, opts, "argv");
    int list = lua_gettop(L);
    if (!lua_istable(L, list))
        dd_error(L, "dd.process.spawn: option 'argv' must be a list of strings, got %s", luaL_typename(L, list));
    lua_Integer n = (lua_Integer)lua_rawlen(L, list);
    if (n < 1) dd_error(L, "dd.process.spawn: option 'argv' is empty: nothing to run");
    char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
    lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, list, i);
        int t = lua_type(L, -1);
        if (t != LUA_TSTRING && t != LUA_TNUMBER)
            dd_error(L, "dd.process.spawn: argv[%lld] must be a string, got %s", (long long)i, lua_typename(L, t));
        lua_pushstring(L, lua_tostring(L, -1)); /* a number becomes its text */
        argv[i - 1] = (char *)anchor_top(L, anchor);
        lua_pop(L, 1);
    }
    argv[n] = NULL;
    lua_pop(L, 1);
    return argv;
}

/* This process's environment with opts.env applied: NAME = "value" sets,
 * NAME = false removes. */
static char **spawn_envp(lua_State *L, int opts, int anchor) {
    lua_getfield(L, opts, "env");
    int env = lua_gettop(L);
    if (!lua_isnil(L, env) && !lua_istable(L, env))
        dd_error(L, "dd.process.spawn: option 'env' must be a table of NAME = value, got %s", luaL_typename(L, env));
    size_t n_inherited = 0, n_set = 0;
    while (environ[n_inherited]) n_inherited++;
    if (lua_istable(L, env)) {
        lua_pushnil(L);
        while (lua_next(L, env)) {
            if (lua_type(L, -2) != LUA_TSTRING || strchr(lua_tostring(L, -2), '=') || !*lua_tostring(L, -2))
                dd_error(L, "dd.process.spawn: env names must be non-empty strings without '=', got %s",
                         larg_describe(L, -2));
            int t = lua_type(L, -1);
            if (t != LUA_TSTRING && t != LUA_TNUMBER && !(t == LUA_TBOOLEAN && !lua_toboolean(L, -1)))
                dd_error(L, "dd.process.spawn: env '%s' must be a string, a number or false, got %s",
                         lua_tostring(L, -2), lua_typename(L, t));
            n_set++;
            lua_pop(L, 1);
        }
    }
    char **envp = lua_newuserdatauv(L, sizeof(char *) * (n_inherited + n_set + 1), 0);
    lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
    size_t k = 0;
    for (size_t i = 0; i < n_inherited; i++) {
        const char *eq = strchr(environ[i], '=');
        int replaced = 0;
        if (eq && lua_istable(L, env)) {
            lua_pushlstring(L, environ[i], (size_t)(eq - environ[i]));
            replaced = lua_rawget(L, env) != LUA_TNIL;
            lua_pop(L, 1);
        }
        if (!replaced) envp[k++] = environ[i];
    }
    if (lua_istable(L, env)) {
        lua_pushnil(L);
        while (lua_next(L, env)) {
            if (lua_type(L, -1) != LUA_TBOOLEAN) {
                lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
                envp[k++] = (char *)anchor_top(L, anchor);
            }
            lua_pop(L, 1);
        }
    }
    envp[k] = NULL;
    lua_pop(L, 1);
    return envp;
}

/* dd.process.spawn{argv = {...}, env = {NAME = value | false}, output = path, dir = path} -> pid */
static int l_spawn(lua_State *L) {
    static const char *const known[] = {"argv", "env", "output", "dir", NULL};
    if (!lua_istable(L, 1))
        return dd_error(L, "dd.process.spawn: expected a table {argv = {...}, env =, output =, dir =}, got %s",
                        luaL_typename(L, 1));
    lopts_check(L, 1, "dd.process.spawn", known);
    lua_newtable(L);
    int anchor = lua_gettop(L);
    ProcessSpec spec;
    spec.argv = spawn_argv(L, 1, anchor);
    spec.envp = spawn_envp(L, 1, anchor);
    spec.output = opt_string(L, 1, "output");
    spec.dir = opt_string(L, 1, "dir");
    char err[ERR_LEN];
    pid_t pid = process_spawn(&spec, err, sizeof err);
    if (pid < 0) return dd_error(L, "dd.process.spawn: %s", err);
    lua_pushinteger(L, pid);
    return 1;
}

static pid_t check_pid(lua_State *L, int idx, const char *fn) {
    return (pid_t)larg_int(L, idx, fn, 1, INT_MAX);
}

/* dd.process.wait(pid | {pid, ...} [, timeout]) -> pid, code | nil (timeout,
 * or a signal such as Ctrl-C arrived). code is the exit status, 128 + N after
 * signal N, or -1 for a pid that is not a child (any more). */
static int l_wait(lua_State *L) {
    pid_t pids[MAX_WAIT];
    int n = 0;
    if (lua_istable(L, 1)) {
        lua_Integer len = (lua_Integer)lua_rawlen(L, 1);
        if (len < 1 || len > MAX_WAIT)
            return dd_error(L, "dd.process.wait: expected 1 to %d pids, got %lld", MAX_WAIT, (long long)len);
        for (lua_Integer i = 1; i <= len; i++) {
            lua_rawgeti(L, 1, i);
            pids[n++] = check_pid(L, -1, "dd.process.wait: pid");
            lua_pop(L, 1);
        }
    } else {
        pids[n++] = check_pid(L, 1, "dd.process.wait: pid");
    }
    double timeout = -1;
    if (!lua_isnoneornil(L, 2)) {
        if (!lua_isnumber(L, 2) || !(lua_tonumber(L, 2) >= 0)) /* NaN would mean "forever" */
            return dd_error(L, "dd.process.wait: timeout must be a number of seconds >= 0, got %s",
                            larg_describe(L, 2));
        timeout = lua_tonumber(L, 2);
    }
    int code = 0;
    int i = process_wait_any(pids, n, timeout, &code);
    if (i == -1) {
        lua_pushnil(L);
        return 1;
    }
    if (i < 0) return dd_error(L, "dd.process.wait: %s", strerror(errno));
    lua_pushinteger(L, pids[i]);
    lua_pushinteger(L, code);
    return 2;
}

static int signal_number(lua_State *L, int idx) {
    static const struct {
        const char *name;
        int number;
    } names[] = {{"TERM", SIGTERM}, {"KILL", SIGKILL}, {"INT", SIGINT}, {"HUP", SIGHUP}, {"STOP", SIGSTOP},
                 {"CONT", SIGCONT}};
    if (lua_isnoneornil(L, idx)) return SIGTERM;
    if (lua_type(L, idx) == LUA_TSTRING) {
        const char *s = lua_tostring(L, idx);
        if (strncmp(s, "SIG", 3) == 0) s += 3;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strcmp(s, names[i].name) == 0) return names[i].number;
        dd_error(L, "dd.process.kill: unknown signal '%s' (known: TERM, KILL, INT, HUP, STOP, CONT, or a number)",
                 lua_tostring(L, idx));
    }
    return (int)larg_int(L, idx, "dd.process.kill: signal", 0, NSIG - 1);
}

/* dd.process.kill(pid [, "TERM" | "KILL" | "INT" | ... | number]) -> true | nil, message */
static int l_kill(lua_State *L) {
    pid_t pid = check_pid(L, 1, "dd.process.kill: pid");
    int sig = signal_number(L, 2);
    if (kill(pid, sig) == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    lua_pushfstring(L, "dd.process.kill: %d: %s", (int)pid, strerror(errno));
    return 2;
}

/* dd.process.alive(pid) -> whether a process with that pid exists */
static int l_alive(lua_State *L) {
    pid_t pid = check_pid(L, 1, "dd.process.alive: pid");
    lua_pushboolean(L, kill(pid, 0) == 0 || errno == EPERM);
    return 1;
}

static int l_pid(lua_State *L) {
    lua_pushinteger(L, getpid());
    return 1;
}

static int l_sleep(lua_State *L) {
    /* NaN and infinity too: casting them to time_t is undefined */
    if (!lua_isnumber(L, 1) || !(lua_tonumber(L, 1) >= 0) || !isfinite(lua_tonumber(L, 1)))
        return dd_error(L, "dd.process.sleep: seconds must be a finite number >= 0, got %s", larg_describe(L, 1));
    double s = lua_tonumber(L, 1);
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    return 0;
}

static int l_cores(lua_State *L) {
    lua_pushinteger(L, process_cores());
    return 1;
}

/* The running deepdance binary, so trials run the same build as the runner. */
static int l_executable(lua_State *L) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return dd_error(L, "dd.process.executable: cannot read /proc/self/exe: %s", strerror(errno));
    lua_pushlstring(L, exe, (size_t)n);
    return 1;
}

void bind_process_open(lua_State *L, int dd) {
    dd = lua_absindex(L, dd);
    static const luaL_Reg fns[] = {
        {"spawn", l_spawn}, {"wait", l_wait},   {"kill", l_kill},   {"alive", l_alive},
        {"pid", l_pid},     {"sleep", l_sleep}, {"cores", l_cores}, {"executable", l_executable},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    lua_setfield(L, dd, "process");
}

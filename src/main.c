/* main.c: the `deepdance` command. Takes the options of the `lua` executable
 * (same `arg` table, -e, -l, -i, -), then runs a script, -e code or the REPL.
 * The one file allowed to exit(): everything else reports errors to Lua. */
#include "repl.h"
#include "runtime.h"

#include <lauxlib.h>
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_USAGE 2

typedef struct Options {
    int argc;
    char **argv;
    int script;        /* argv index of the script; argc when there is none */
    int interactive;   /* -i */
    int version;       /* -v, --version */
    int help;          /* -h, --help */
    int has_code;      /* some -e or -l */
} Options;

static void usage_print(FILE *f) {
    fputs("usage: deepdance [options] [script [args...]]\n"
          "Runs a Lua 5.4 script with the `dd` library loaded; with no script, -e or -v,\n"
          "starts the interactive REPL (plain lines, no prompt, when stdin is not a terminal).\n"
          "Options:\n"
          "  -e code        run the Lua string 'code' (may be repeated)\n"
          "  -l name        require module 'name' into the global 'name'\n"
          "  -i             enter the REPL after running the script and -e code\n"
          "  -v, --version  print version information\n"
          "  -h, --help     print this help\n"
          "  --             stop handling options\n"
          "  -              run the script read from stdin and stop handling options\n"
          "The script sees its arguments as arg[1..n] and `...`, its name as arg[0].\n"
          "`deepdance sweep SPEC.lua --out DIR` runs a hyperparameter sweep (sweep --help).\n",
          f);
}

/* openblas_get_config() reads "OpenBLAS 0.3.21 DYNAMIC_ARCH ...": keep the number. */
static void version_print(void) {
    const char *config = openblas_get_config();
    const char *tag = "OpenBLAS ";
    int len = 0;
    if (config && strncmp(config, tag, strlen(tag)) == 0) {
        config += strlen(tag);
        len = (int)strcspn(config, " ");
    }
    if (len > 0)
        printf("deepdance %s (%s, OpenBLAS %.*s)\n", DD_VERSION, LUA_RELEASE, len, config);
    else
        printf("deepdance %s (%s)\n", DD_VERSION, LUA_RELEASE);
    fflush(stdout);
}

static void usage_error(const char *fmt, const char *what) {
    fputs("deepdance: ", stderr);
    fprintf(stderr, fmt, what);
    fputs("\n", stderr);
    usage_print(stderr);
    exit(EXIT_USAGE);
}

/* Options come before the script, as with `lua`; the first argument that is
 * not an option is the script and everything after it belongs to the script. */
static void options_parse(Options *o, int argc, char **argv) {
    memset(o, 0, sizeof *o);
    o->argc = argc;
    o->argv = argv;
    int i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || strcmp(a, "-") == 0) break;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            o->help = 1;
        else if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0)
            o->version = 1;
        else if (strcmp(a, "-i") == 0)
            o->interactive = 1;
        else if (a[1] == 'e' || a[1] == 'l') {
            /* "-e code" or "-ecode", as lua accepts both. */
            if (a[2] == 0 && ++i >= argc) usage_error("option '%s' needs an argument", a);
            o->has_code = 1;
        } else
            usage_error("unrecognized option '%s'", a);
    }
    o->script = i;
}

static int report(lua_State *L, int status) {
    if (status != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        fflush(stdout);
        fprintf(stderr, "deepdance: %s\n", msg ? msg : "(error object is not a string)");
        fflush(stderr);
        lua_pop(L, 1);
    }
    return status;
}

/* arg[0] is the script, arg[1..] its arguments, arg[-1..] the interpreter and
 * options in reverse; without a script, arg[0] is the interpreter (as lua). */
static void arg_table_create(lua_State *L, const Options *o) {
    int script = o->script < o->argc ? o->script : 0;
    lua_createtable(L, o->argc - script - 1 > 0 ? o->argc - script - 1 : 0, script + 1);
    for (int i = 0; i < o->argc; i++) {
        lua_pushstring(L, o->argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
}

static int code_run(lua_State *L, const char *code) {
    int status = luaL_loadbuffer(L, code, strlen(code), "=(command line)");
    if (status == LUA_OK) status = repl_docall(L, 0, 0);
    return report(L, status);
}

static int library_run(lua_State *L, const char *name) {
    lua_getglobal(L, "require");
    lua_pushstring(L, name);
    int status = repl_docall(L, 1, 1);
    if (status == LUA_OK) lua_setglobal(L, name);
    return report(L, status);
}

/* Runs -e and -l in the order given; stops at the first error. */
static int options_run(lua_State *L, const Options *o) {
    for (int i = 1; i < o->script; i++) {
        const char *a = o->argv[i];
        if (a[0] != '-' || (a[1] != 'e' && a[1] != 'l')) continue;
        const char *value = a[2] ? a + 2 : o->argv[++i];
        int status = a[1] == 'e' ? code_run(L, value) : library_run(L, value);
        if (status != LUA_OK) return status;
    }
    return LUA_OK;
}

static int script_run(lua_State *L, const Options *o) {
    const char *name = o->argv[o->script];
    /* "-" is stdin, except after "--" where it names a file called "-". */
    int from_stdin = strcmp(name, "-") == 0 && strcmp(o->argv[o->script - 1], "--") != 0;
    /* `deepdance sweep SPEC.lua ...` is the sweep command, a Lua script of
     * the runtime's library (arg[0] stays "sweep"). A relative script path
     * that does not exist here is looked up in the runtime's home, so
     * `deepdance experiments/x.lua` works from any folder and after
     * `make install`. */
    char found[4096];
    if (strcmp(name, "sweep") == 0) {
        snprintf(found, sizeof found, "%s/lua/deepdance/sweep/command.lua", dd_home());
        name = found;
    } else if (!from_stdin && name[0] != '/' && access(name, F_OK) != 0) {
        snprintf(found, sizeof found, "%s/%s", dd_home(), name);
        if (access(found, R_OK) == 0) name = found;
    }
    int status = luaL_loadfile(L, from_stdin ? NULL : name);
    if (status == LUA_OK) {
        int n = o->argc - o->script - 1;
        luaL_checkstack(L, n + 1, "too many arguments to script");
        for (int i = 1; i <= n; i++) lua_pushstring(L, o->argv[o->script + i]);
        status = repl_docall(L, n, LUA_MULTRET);
    }
    return report(L, status);
}

/* Everything that touches the state runs under one pcall so that even an
 * out-of-memory error while building `arg` is reported, not a panic. */
static int main_protected(lua_State *L) {
    const Options *o = lua_touserdata(L, 1);
    arg_table_create(L, o);
    if (options_run(L, o) != LUA_OK) return 0;
    int has_script = o->script < o->argc;
    if (has_script && script_run(L, o) != LUA_OK) return 0;
    if (o->interactive || (!has_script && !o->has_code && !o->version)) repl_run(L);
    lua_pushboolean(L, 1);
    return 1;
}

/* OpenBLAS's idle worker threads spin on sched_yield for 2^28 cycles (about
 * 0.1 s) after every threaded GEMM, and they do so while the runtime's own
 * thread pool runs the convolutions on the same cores: a strided-autoencoder
 * epoch took 12.9 s instead of 8.7 s (perf: 10% in sched_yield, 22% in the
 * kernel). OpenBLAS reads how long to spin only from OPENBLAS_THREAD_TIMEOUT
 * (log2 cycles, 4..30), when the library loads, before main. So when it is
 * unset, set it to 4 (sleep at once) and exec this program again, same pid,
 * same arguments; a value the user set is kept. */
static void blas_spin_limit(char **argv) {
    if (getenv("OPENBLAS_THREAD_TIMEOUT") != NULL) return;
    if (setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1) != 0) return;
    execv("/proc/self/exe", argv);
    /* no exec (no /proc): carry on with spinning workers */
}

int main(int argc, char **argv) {
    blas_spin_limit(argv);
    Options o;
    options_parse(&o, argc, argv);
    if (o.help) {
        usage_print(stdout);
        return EXIT_SUCCESS;
    }
    if (o.version) {
        version_print();
        if (o.script >= argc && !o.has_code && !o.interactive) return EXIT_SUCCESS;
    }
    char err[1024];
    lua_State *L = dd_runtime_open(err, sizeof err);
    if (L == NULL) {
        fprintf(stderr, "deepdance: %s\n", err);
        return EXIT_FAILURE;
    }
    lua_pushcfunction(L, main_protected);
    lua_pushlightuserdata(L, &o);
    int status = lua_pcall(L, 1, 1, 0);
    int ok = status == LUA_OK && lua_toboolean(L, -1);
    if (status != LUA_OK) report(L, status);
    lua_close(L);
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}

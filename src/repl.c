/* repl.c: the interactive loop of `deepdance`: reads Lua chunks (readline on a
 * terminal, plain lines from a pipe), runs them, prints their results; Tab
 * completes global and field names; Ctrl-C interrupts a running chunk.
 *
 * The terminal is read through readline's callback interface rather than
 * readline(): with readline() a Ctrl-C at the prompt is re-raised to the
 * default handler and kills the process, whereas here SIGINT only sets a flag
 * that the select loop turns into "discard this line, fresh prompt". */
#include "repl.h"
#include "runtime.h"

#include <lauxlib.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>
#include <readline/readline.h>
#include <readline/history.h>

#define PROMPT "> "
#define PROMPT_MORE ">> "
#define CHUNKNAME "=stdin"
#define HISTORY_MAX 1000

/* ---- running a chunk, interruptible by Ctrl-C ---- */

/* The hook cannot be set from the signal handler on any state but this one. */
static lua_State *interrupt_L;

static void interrupt_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted!");
}

/* Setting a hook is the one thing Lua allows from a signal handler; the error
 * is raised later, at the next call, return or instruction. */
static void interrupt_on_signal(int sig) {
    (void)sig;
    lua_sethook(interrupt_L, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

int repl_docall(lua_State *L, int narg, int nres) {
    int base = lua_gettop(L) - narg;
    lua_pushcfunction(L, dd_msghandler);
    lua_insert(L, base);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = interrupt_on_signal;
    /* SA_RESETHAND: a second Ctrl-C finds the default action and kills, which
     * is the only way out of a long BLAS call that never returns to Lua. */
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    interrupt_L = L;
    sigaction(SIGINT, &sa, &old);
    int status = lua_pcall(L, narg, nres, base);
    sigaction(SIGINT, &old, NULL);
    /* A Ctrl-C that came as the chunk finished must not hit the next one. */
    if (lua_gethook(L) == interrupt_hook) lua_sethook(L, NULL, 0, 0);
    lua_remove(L, base);
    return status;
}

/* ---- reading lines ---- */

enum { READ_OK, READ_EOF, READ_INTERRUPTED };

static volatile sig_atomic_t prompt_sigint, prompt_sigwinch, prompt_sigtstp;
static char *tty_line;
static int tty_line_done;

static void prompt_on_signal(int sig) {
    if (sig == SIGINT) prompt_sigint = 1;
    else if (sig == SIGTSTP) prompt_sigtstp = 1;
    else prompt_sigwinch = 1;
}

/* Removing the handler here, not after the loop, is what stops readline from
 * printing the prompt again as soon as this returns. */
static void tty_on_line(char *line) {
    tty_line = line;
    tty_line_done = 1;
    rl_callback_handler_remove();
}

/* Ctrl-Z at the prompt: the terminal must be given back in its normal mode
 * before stopping, and readline's mode and the half-typed line restored after
 * `fg`. Readline's own handler would do this only inside rl_callback_read_char. */
static void tty_suspend(void) {
    rl_echo_signal_char(SIGTSTP);
    (*rl_deprep_term_function)();
    struct sigaction dfl, ours;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGTSTP, &dfl, &ours);
    sigset_t tstp, saved;
    sigemptyset(&tstp);
    sigaddset(&tstp, SIGTSTP);
    sigprocmask(SIG_UNBLOCK, &tstp, &saved);
    raise(SIGTSTP);   /* returns once continued */
    sigprocmask(SIG_SETMASK, &saved, NULL);
    sigaction(SIGTSTP, &ours, NULL);
    (*rl_prep_term_function)(1);
    rl_forced_update_display();
}

/* One line from the terminal. SIGINT, SIGWINCH and SIGTSTP stay blocked except
 * inside pselect, so they are only ever seen between two keystrokes, never
 * while readline is half-way through one. */
static int tty_read(const char *prompt, char **line) {
    sigset_t block, orig;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGWINCH);
    sigaddset(&block, SIGTSTP);
    sigprocmask(SIG_BLOCK, &block, &orig);
    struct sigaction sa, old_int, old_winch, old_tstp;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = prompt_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGWINCH, &sa, &old_winch);
    sigaction(SIGTSTP, &sa, &old_tstp);
    prompt_sigint = prompt_sigwinch = prompt_sigtstp = 0;

    /* The window may have been resized while Lua code ran. */
    rl_reset_screen_size();
    tty_line = NULL;
    tty_line_done = 0;
    rl_callback_handler_install(prompt, tty_on_line);
    int result = READ_OK;
    int fd = fileno(rl_instream);
    while (!tty_line_done) {
        if (prompt_sigint) {
            rl_free_line_state();
            rl_callback_sigcleanup();
            rl_echo_signal_char(SIGINT);
            rl_cleanup_after_signal();
            fputs("\n", rl_outstream);
            result = READ_INTERRUPTED;
            break;
        }
        if (prompt_sigwinch) {
            prompt_sigwinch = 0;
            rl_resize_terminal();
        }
        if (prompt_sigtstp) {
            prompt_sigtstp = 0;
            tty_suspend();
        }
        fd_set fds;
        FD_ZERO(&fds);
        FD_SET(fd, &fds);
        int n = pselect(fd + 1, &fds, NULL, NULL, NULL, &orig);
        if (n < 0) {
            if (errno == EINTR) continue;
            break;  /* the terminal went away: treat as end of file */
        }
        rl_callback_read_char();
    }
    rl_callback_handler_remove();
    if (result == READ_OK && !tty_line_done) tty_line = NULL;
    if (result == READ_OK && tty_line == NULL) result = READ_EOF;

    /* Unblock first, while our handler is still installed, so that a pending
     * Ctrl-C lands on it and not on the default action. */
    sigprocmask(SIG_SETMASK, &orig, NULL);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGWINCH, &old_winch, NULL);
    sigaction(SIGTSTP, &old_tstp, NULL);
    *line = result == READ_OK ? tty_line : NULL;
    if (result != READ_OK) free(tty_line);
    return result;
}

static int pipe_read(char **line) {
    size_t cap = 0;
    *line = NULL;
    ssize_t n = getline(line, &cap, stdin);
    if (n < 0) {
        free(*line);
        *line = NULL;
        return READ_EOF;
    }
    if (n > 0 && (*line)[n - 1] == '\n') (*line)[n - 1] = 0;
    return READ_OK;
}

typedef struct Repl {
    lua_State *L;
    int tty;
    char history_path[4096];   /* empty: no history file */
} Repl;

/* On success *line is malloc'ed and the caller frees it. */
static int repl_read(Repl *r, const char *prompt, char **line) {
    fflush(stdout);
    return r->tty ? tty_read(prompt, line) : pipe_read(line);
}

/* ---- history ---- */

static void history_open(Repl *r) {
    const char *env = getenv("DEEPDANCE_HISTORY");
    const char *home = getenv("HOME");
    if (env && *env)
        snprintf(r->history_path, sizeof r->history_path, "%s", env);
    else if (home && *home)
        snprintf(r->history_path, sizeof r->history_path, "%s/.deepdance_history", home);
    else
        return;
    /* Timestamp lines ("#<seconds>") delimit entries in the file, so that a
     * multi-line chunk comes back as one entry and not as scattered lines. */
    history_comment_char = '#';
    history_write_timestamps = 1;
    history_multiline_entries = 1;
    stifle_history(HISTORY_MAX);
    /* append_history() does not create the file. */
    int fd = open(r->history_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd < 0) {
        r->history_path[0] = 0;
        return;
    }
    close(fd);
    history_truncate_file(r->history_path, HISTORY_MAX);
    read_history(r->history_path);
}

static void history_save(Repl *r, const char *chunk) {
    if (!r->tty || chunk[strspn(chunk, " \t\r\n")] == 0) return;
    HIST_ENTRY *last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
    if (last && strcmp(last->line, chunk) == 0) return;
    add_history(chunk);
    /* Appending now keeps the history of a session that gets killed. */
    if (r->history_path[0]) append_history(1, r->history_path);
}

/* ---- completion ---- */

/* Completion only reads the state: raw fields, metatables, upvalues. It never
 * calls an __index function or any other Lua code, so it is safe to press Tab
 * on anything. */
#define LOOKUP_VISITS 32   /* tables visited per lookup: bounds __index cycles */

static lua_State *complete_L;
static char **complete_list;
static size_t complete_count, complete_next;

static const char *const lua_keywords[] = {
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
    "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
};

static int ident_start(int c) { return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int ident_char(int c) { return ident_start(c) || (c >= '0' && c <= '9'); }

static int ident_valid(const char *s, size_t len) {
    if (len == 0 || !ident_start((unsigned char)s[0])) return 0;
    for (size_t i = 1; i < len; i++)
        if (!ident_char((unsigned char)s[i])) return 0;
    return 1;
}

/* Pushes the tables where a lookup in the value at idx goes on after its own
 * fields: its metatable's __index when that is a table, or when __index is a
 * function, the tables that function closes over. The second case is how C
 * bindings usually keep a method table (the Tensor's __index is one). */
static void index_sources_push(lua_State *L, int idx) {
    if (!lua_checkstack(L, 4) || !lua_getmetatable(L, idx)) return;
    lua_pushliteral(L, "__index");
    int type = lua_rawget(L, -2);
    lua_remove(L, -2);
    if (type == LUA_TTABLE) return;
    if (type == LUA_TFUNCTION) {
        int fn = lua_gettop(L);
        const char *name;
        for (int i = 1; lua_checkstack(L, 2) && (name = lua_getupvalue(L, fn, i)) != NULL; i++)
            /* _ENV would offer every global as a method. */
            if (lua_type(L, -1) != LUA_TTABLE || strcmp(name, "_ENV") == 0) lua_pop(L, 1);
        lua_remove(L, fn);
        return;
    }
    lua_pop(L, 1);
}

typedef int (*TableVisit)(lua_State *L, int table, void *ud);

/* Calls visit on the value at the top if it is a table, then on each table a
 * lookup in it falls back to (index_sources_push), breadth first, until visit
 * returns nonzero. Pops the value. */
static void lookup_walk(lua_State *L, TableVisit visit, void *ud) {
    int start = lua_gettop(L);
    for (int at = start; at <= lua_gettop(L) && at < start + LOOKUP_VISITS; at++) {
        if (lua_type(L, at) == LUA_TTABLE && visit(L, at, ud)) break;
        index_sources_push(L, at);
    }
    lua_settop(L, start - 1);
}

typedef struct FieldQuery {
    const char *name;
    size_t len;
    int result;        /* stack slot receiving the value found */
} FieldQuery;

static int field_visit(lua_State *L, int table, void *ud) {
    FieldQuery *q = ud;
    lua_pushlstring(L, q->name, q->len);
    if (lua_rawget(L, table) != LUA_TNIL) {
        lua_replace(L, q->result);
        return 1;
    }
    lua_pop(L, 1);
    return 0;
}

/* Replaces the value at the top with value[name], or pops it and returns 0. */
static int field_lookup(lua_State *L, const char *name, size_t len) {
    int slot = lua_gettop(L);
    lua_pushnil(L);
    lua_insert(L, slot);
    FieldQuery q = {name, len, slot};
    lookup_walk(L, field_visit, &q);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    return 1;
}

static void complete_add(const char *prefix, size_t plen, const char *name, size_t nlen) {
    char **grown = realloc(complete_list, (complete_count + 1) * sizeof *grown);
    if (grown == NULL) return;
    complete_list = grown;
    char *s = malloc(plen + nlen + 1);
    if (s == NULL) return;
    memcpy(s, prefix, plen);
    memcpy(s + plen, name, nlen);
    s[plen + nlen] = 0;
    complete_list[complete_count++] = s;
}

typedef struct NamesQuery {
    const char *prefix;   /* the chain up to and including the last '.' or ':' */
    size_t plen;
    const char *part;     /* the name being typed */
    size_t partlen;
    int methods_only;     /* after ':' only functions make sense */
} NamesQuery;

/* Metamethods ("__index") only show once the user has typed "__". */
static int names_visit(lua_State *L, int table, void *ud) {
    NamesQuery *q = ud;
    int hide_meta = !(q->partlen >= 2 && q->part[0] == '_' && q->part[1] == '_');
    lua_pushnil(L);
    while (lua_next(L, table)) {
        /* Check the type first: lua_tolstring on a number key would convert
         * it in place and break lua_next. */
        if (lua_type(L, -2) == LUA_TSTRING) {
            size_t klen;
            const char *k = lua_tolstring(L, -2, &klen);
            if (klen >= q->partlen && memcmp(k, q->part, q->partlen) == 0 && ident_valid(k, klen) &&
                !(hide_meta && klen >= 2 && k[0] == '_' && k[1] == '_') &&
                (!q->methods_only || lua_type(L, -1) == LUA_TFUNCTION))
                complete_add(q->prefix, q->plen, k, klen);
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* Fills complete_list for text, the identifier chain before the cursor:
 * "str", "dd.ma", "dd.nn.Lin", "t:nu". */
static void complete_build(lua_State *L, const char *text) {
    size_t len = strlen(text);
    size_t sep = len;   /* just after the last '.' or ':' */
    while (sep > 0 && text[sep - 1] != '.' && text[sep - 1] != ':') sep--;
    NamesQuery q = {text, sep, text + sep, len - sep, sep > 0 && text[sep - 1] == ':'};
    if (q.partlen > 0 && !ident_valid(q.part, q.partlen)) return;
    if (!lua_checkstack(L, 8)) return;
    int top = lua_gettop(L);
    lua_pushglobaltable(L);
    /* Walk the names before the last separator; each must be an identifier
     * and all separators but the last must be '.' ("a:b.c" is not Lua). */
    for (size_t i = 0; sep > 0 && i < sep; ) {
        size_t j = i;
        while (text[j] != '.' && text[j] != ':') j++;
        if ((text[j] == ':' && j + 1 != sep) || !ident_valid(text + i, j - i) ||
            !field_lookup(L, text + i, j - i)) {
            lua_settop(L, top);
            return;
        }
        i = j + 1;
    }
    lookup_walk(L, names_visit, &q);
    if (sep == 0)
        for (size_t k = 0; k < sizeof lua_keywords / sizeof lua_keywords[0]; k++)
            if (strncmp(lua_keywords[k], q.part, q.partlen) == 0)
                complete_add("", 0, lua_keywords[k], strlen(lua_keywords[k]));
    lua_settop(L, top);
}

static char *complete_generate(const char *text, int state) {
    if (state == 0) {
        /* Readline took ownership of every string handed out; the rest are ours. */
        for (size_t i = complete_next; i < complete_count; i++) free(complete_list[i]);
        complete_count = complete_next = 0;
        complete_build(complete_L, text);
    }
    return complete_next < complete_count ? complete_list[complete_next++] : NULL;
}

static char **complete_attempt(const char *text, int start, int end) {
    (void)start;
    (void)end;
    rl_attempted_completion_over = 1;   /* never fall back to file names */
    rl_completion_append_character = '\0';
    return rl_completion_matches(text, complete_generate);
}

/* ---- evaluating ---- */

/* Pushes the text shown for the value at idx: dd.inspect(v) for tables when
 * the runtime has it and it returns a string, else tostring(v). */
static const char *value_text(lua_State *L, int idx, size_t *len) {
    idx = lua_absindex(L, idx);
    int top = lua_gettop(L);
    if (lua_type(L, idx) == LUA_TTABLE && lua_getglobal(L, "dd") == LUA_TTABLE &&
        lua_getfield(L, -1, "inspect") == LUA_TFUNCTION) {
        lua_pushvalue(L, idx);
        lua_call(L, 1, 1);
        if (lua_type(L, -1) == LUA_TSTRING) {
            lua_replace(L, top + 1);
            lua_settop(L, top + 1);
            return lua_tolstring(L, -1, len);
        }
    }
    lua_settop(L, top);
    return luaL_tolstring(L, idx, len);
}

/* Prints its arguments tab-separated, like lua.c's REPL; run under repl_docall
 * because __tostring and dd.inspect are user code. */
static int results_print(lua_State *L) {
    int n = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *s = value_text(L, i, &len);
        fwrite(s, 1, len, stdout);
        fputc(i < n ? '\t' : '\n', stdout);
        lua_pop(L, 1);
    }
    fflush(stdout);
    return 0;
}

static void error_report(lua_State *L) {
    const char *msg = lua_tostring(L, -1);
    fflush(stdout);
    fprintf(stderr, "%s\n", msg ? msg : "(error object is not a string)");
    fflush(stderr);
    lua_pop(L, 1);
}

/* A chunk that fails only for want of more text: read another line. */
static int chunk_incomplete(lua_State *L, int status) {
    static const char eof_mark[] = "<eof>";
    size_t marklen = sizeof eof_mark - 1, len;
    if (status != LUA_ERRSYNTAX) return 0;
    const char *msg = lua_tolstring(L, -1, &len);
    return msg && len >= marklen && strcmp(msg + len - marklen, eof_mark) == 0;
}

static int text_append(char **buf, size_t *len, const char *more) {
    size_t mlen = strlen(more);
    char *grown = realloc(*buf, *len + 1 + mlen + 1);
    if (grown == NULL) return 0;
    grown[*len] = '\n';
    memcpy(grown + *len + 1, more, mlen + 1);
    *buf = grown;
    *len += 1 + mlen;
    return 1;
}

enum { CHUNK_EOF = -1, CHUNK_SKIP = -2 };

/* Reads and compiles one chunk. Returns CHUNK_EOF, CHUNK_SKIP (Ctrl-C while
 * typing), or the load status with the function or the error message pushed. */
static int chunk_read(Repl *r) {
    lua_State *L = r->L;
    char *text;
    int got = repl_read(r, PROMPT, &text);
    if (got != READ_OK) return got == READ_EOF ? CHUNK_EOF : CHUNK_SKIP;

    /* First as an expression, so that `1+1` prints 2. */
    const char *ret = lua_pushfstring(L, "return %s", text);
    int status = luaL_loadbuffer(L, ret, strlen(ret), CHUNKNAME);
    lua_remove(L, -2);
    if (status == LUA_OK) {
        history_save(r, text);
        free(text);
        return LUA_OK;
    }
    lua_pop(L, 1);

    size_t len = strlen(text);
    for (;;) {
        status = luaL_loadbuffer(L, text, len, CHUNKNAME);
        if (!chunk_incomplete(L, status)) break;
        char *more;
        got = repl_read(r, PROMPT_MORE, &more);
        if (got == READ_INTERRUPTED) {
            lua_pop(L, 1);
            free(text);
            return CHUNK_SKIP;
        }
        if (got == READ_EOF) break;  /* report the "<eof>" error */
        lua_pop(L, 1);
        int ok = text_append(&text, &len, more);
        free(more);
        if (!ok) {
            free(text);
            lua_pushliteral(L, "out of memory reading input");
            return LUA_ERRMEM;
        }
    }
    history_save(r, text);
    free(text);
    return status;
}

static int chunk_run(lua_State *L) {
    int base = lua_gettop(L);
    int status = repl_docall(L, 0, LUA_MULTRET);
    int n = lua_gettop(L) - base + 1;
    if (status == LUA_OK && n > 0) {
        lua_pushcfunction(L, results_print);
        lua_insert(L, base);
        status = repl_docall(L, n, 0);
    }
    fflush(stdout);
    return status;
}

static void tty_setup(Repl *r) {
    rl_readline_name = "deepdance";
    /* Readline leaves these NULL until its first call, and tty_read needs them first. */
    rl_instream = stdin;
    rl_outstream = stdout;
    /* '.' and ':' are not breaks so that "dd.ma" and "t:nu" are one word. */
    rl_completer_word_break_characters = " \t\n\"'`@$><=;|&{(,)}[]+-*/%^~#";
    rl_attempted_completion_function = complete_attempt;
    complete_L = r->L;
    history_open(r);
    printf("deepdance %s \u2014 %s \u2014 type dd.<TAB> to explore, Ctrl-D to quit\n", DD_VERSION,
           LUA_VERSION);
}

int repl_run(lua_State *L) {
    Repl r;
    memset(&r, 0, sizeof r);
    r.L = L;
    r.tty = isatty(STDIN_FILENO);
    /* On a terminal, a Ctrl-C between reading a line and running it (while
     * compiling, say) is dropped instead of killing the session. */
    struct sigaction sa, old_int;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = prompt_on_signal;
    sigemptyset(&sa.sa_mask);
    if (r.tty) {
        tty_setup(&r);
        sigaction(SIGINT, &sa, &old_int);
    }
    int top = lua_gettop(L);
    for (;;) {
        int status = chunk_read(&r);
        if (status == CHUNK_EOF) break;
        if (status == CHUNK_SKIP) continue;
        if (status == LUA_OK) status = chunk_run(L);
        if (status != LUA_OK) error_report(L);
        lua_settop(L, top);
    }
    if (r.tty) {
        sigaction(SIGINT, &old_int, NULL);
        fputs("\n", stdout);
        for (size_t i = complete_next; i < complete_count; i++) free(complete_list[i]);
        free(complete_list);
        complete_list = NULL;
        complete_count = complete_next = 0;
    }
    fflush(stdout);
    return 0;
}

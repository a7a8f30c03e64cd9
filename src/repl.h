/* repl.h: the interactive read-eval-print loop, and the interruptible call
 * that main.c also uses to run scripts and -e code. */
#ifndef DD_REPL_H
#define DD_REPL_H

#include <lua.h>

/* Runs the function below its narg arguments like lua_pcall, with a traceback
 * appended to errors (dd_msghandler). While it runs, SIGINT (Ctrl-C) raises the
 * Lua error "interrupted!"; a second Ctrl-C before Lua code runs again kills
 * the process, the way out of a long C call. */
int repl_docall(lua_State *L, int narg, int nres);

/* Reads chunks from stdin until end of file and prints what they return.
 * On a terminal: GNU readline with history and completion, prompts and a
 * banner; otherwise plain lines, no prompts, so a pipe can drive it. Errors are
 * printed to stderr and the loop goes on. Returns 0 (the exit status). */
int repl_run(lua_State *L);

#endif

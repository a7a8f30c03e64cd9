/* runtime.h: creating the embedded Lua 5.4 state with the `dd` API loaded. */
#ifndef DD_RUNTIME_H
#define DD_RUNTIME_H

#include <lua.h>
#include <stddef.h>

/* Opens a Lua state with the standard libraries, registers the C modules into
 * the global table `dd`, points package.path at the runtime's Lua library and
 * runs lua/deepdance/init.lua. `require "deepdance"` returns the same table.
 * On failure returns NULL and writes the reason into err. */
lua_State *dd_runtime_open(char *err, size_t errlen);

/* The folder holding lua/, models/ and experiments/: $DEEPDANCE_HOME, else the
 * executable's folder when it holds lua/deepdance/init.lua (source tree), else
 * DD_DATADIR (after `make install`). */
const char *dd_home(void);

/* Message handler for lua_pcall: appends a traceback to the error message. */
int dd_msghandler(lua_State *L);

#endif

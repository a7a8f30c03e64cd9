/* bind_json.c: dd.json.encode / dd.json.decode through cJSON (Debian's
 * libcjson), for reports, results and run metadata. */
#include "bind.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 100

/* A cJSON tree under construction lives in a userdata so a Lua error raised
 * half-way (a bad value) cannot leak it. */
typedef struct JsonBox {
    cJSON *root;
    char *text;
} JsonBox;

static int jsonbox_gc(lua_State *L) {
    JsonBox *b = luaL_checkudata(L, 1, "dd.JsonBox");
    if (b->root) cJSON_Delete(b->root);
    if (b->text) cJSON_free(b->text);
    b->root = NULL;
    b->text = NULL;
    return 0;
}

static JsonBox *jsonbox_push(lua_State *L) {
    JsonBox *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->root = NULL;
    b->text = NULL;
    if (luaL_newmetatable(L, "dd.JsonBox")) {
        lua_pushcfunction(L, jsonbox_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return b;
}

/* A table is an array when its keys are exactly 1..n (n may be 0: an empty
 * table encodes as [] unless it has the dd.json.object marker metatable). */
static int table_is_array(lua_State *L, int idx, lua_Integer *n) {
    lua_Integer count = 0, max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TNUMBER || !lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
            lua_pop(L, 1);
            return 0;
        }
        lua_Integer k = lua_tointeger(L, -1);
        if (k > max) max = k;
        count++;
    }
    *n = max;
    if (count == 0 && lua_getmetatable(L, idx)) {
        luaL_getmetatable(L, "dd.json.object");
        int is_obj = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (is_obj) return 0;
    }
    return count == max;
}

/* Appends the Lua value at idx to parent (an array, or an object under key).
 * Every node is attached before recursing, so a Lua error raised half-way
 * leaves the whole tree reachable from the box's root, which __gc frees. */
static void add_json(lua_State *L, int idx, int depth, const char *path, cJSON *parent, const char *key) {
    idx = lua_absindex(L, idx);
    cJSON *node;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: node = cJSON_CreateNull(); break;
    case LUA_TBOOLEAN: node = cJSON_CreateBool(lua_toboolean(L, idx)); break;
    case LUA_TNUMBER: {
        double v = lua_tonumber(L, idx);
        if (!isfinite(v)) dd_error(L, "json.encode: %s is %f, which JSON cannot represent", path, v);
        node = cJSON_CreateNumber(v);
        break;
    }
    case LUA_TSTRING: node = cJSON_CreateString(lua_tostring(L, idx)); break;
    case LUA_TTABLE: {
        if (depth > JSON_MAX_DEPTH) dd_error(L, "json.encode: %s nests deeper than %d levels (a cycle?)", path, JSON_MAX_DEPTH);
        luaL_checkstack(L, 6, "json.encode");
        lua_Integer n;
        int is_array = table_is_array(L, idx, &n);
        node = is_array ? cJSON_CreateArray() : cJSON_CreateObject();
        break;
    }
    default:
        dd_error(L, "json.encode: %s is a %s, expected nil, boolean, number, string or table", path, luaL_typename(L, idx));
        return;
    }
    if (!node) dd_error(L, "json.encode: out of memory");
    if (key) cJSON_AddItemToObject(parent, key, node);
    else cJSON_AddItemToArray(parent, node);
    if (!cJSON_IsArray(node) && !cJSON_IsObject(node)) return;
    char sub[256];
    if (cJSON_IsArray(node)) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);
            snprintf(sub, sizeof sub, "%s[%lld]", path, (long long)i);
            add_json(L, -1, depth + 1, sub, node, NULL);
            lua_pop(L, 1);
        }
        return;
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            dd_error(L, "json.encode: %s has a %s key, expected string keys (or an array 1..n)", path,
                       luaL_typename(L, -2));
        const char *k = lua_tostring(L, -2);
        snprintf(sub, sizeof sub, "%s.%s", path, k);
        add_json(L, -1, depth + 1, sub, node, k);
        lua_pop(L, 1);
    }
}

static int l_encode(lua_State *L) {
    int pretty = 0;
    if (!lua_isnoneornil(L, 2)) {
        if (!lua_istable(L, 2)) return dd_error(L, "json.encode: options must be a table, got %s", luaL_typename(L, 2));
        lua_getfield(L, 2, "indent");
        pretty = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    JsonBox *b = jsonbox_push(L);
    b->root = cJSON_CreateArray(); /* a holder for the one top-level value */
    if (!b->root) return dd_error(L, "json.encode: out of memory");
    add_json(L, 1, 0, "value", b->root, NULL);
    b->text = pretty ? cJSON_Print(b->root->child) : cJSON_PrintUnformatted(b->root->child);
    if (!b->text) return dd_error(L, "json.encode: out of memory");
    lua_pushstring(L, b->text);
    return 1;
}

static void push_json(lua_State *L, const cJSON *j, int depth) {
    luaL_checkstack(L, 4, "json.decode");
    if (depth > JSON_MAX_DEPTH) dd_error(L, "json.decode: nesting deeper than %d levels", JSON_MAX_DEPTH);
    if (cJSON_IsNull(j)) lua_pushnil(L);
    else if (cJSON_IsBool(j)) lua_pushboolean(L, cJSON_IsTrue(j));
    else if (cJSON_IsNumber(j)) lpush_float(L, j->valuedouble);
    else if (cJSON_IsString(j)) lua_pushstring(L, j->valuestring);
    else if (cJSON_IsArray(j)) {
        lua_createtable(L, cJSON_GetArraySize(j), 0);
        int i = 1;
        for (const cJSON *c = j->child; c; c = c->next) {
            push_json(L, c, depth + 1);
            lua_rawseti(L, -2, i++);
        }
    } else {
        lua_newtable(L);
        for (const cJSON *c = j->child; c; c = c->next) {
            push_json(L, c, depth + 1);
            lua_setfield(L, -2, c->string);
        }
    }
}

static int l_decode(lua_State *L) {
    size_t len;
    const char *s = lua_tolstring(L, 1, &len);
    if (!s || lua_type(L, 1) != LUA_TSTRING) return dd_error(L, "json.decode: expected a string, got %s", luaL_typename(L, 1));
    JsonBox *b = jsonbox_push(L);
    const char *end = NULL;
    b->root = cJSON_ParseWithLengthOpts(s, len, &end, 0);
    if (!b->root) {
        size_t at = end && end >= s ? (size_t)(end - s) : 0;
        return dd_error(L, "json.decode: invalid JSON at byte %d near '%s'", (int)at + 1,
                          lua_pushlstring(L, s + (at < len ? at : len), len - at > 20 ? 20 : len - at));
    }
    push_json(L, b->root, 0);
    return 1;
}

void bind_json_open(lua_State *L, int dd) {
    lua_newtable(L);
    lua_pushcfunction(L, l_encode);
    lua_setfield(L, -2, "encode");
    lua_pushcfunction(L, l_decode);
    lua_setfield(L, -2, "decode");
    /* setmetatable({}, dd.json.object) marks an empty table as {} not []. */
    luaL_newmetatable(L, "dd.json.object");
    lua_setfield(L, -2, "object");
    lua_setfield(L, dd, "json");
}

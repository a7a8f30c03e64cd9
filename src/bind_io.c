/* bind_io.c: Lua bindings of safetensors files: dd.save, dd.load,
 * dd.safetensors_header. The format code is in safetensors.c.
 *
 * Memory on errors: everything dd.save needs is Lua-owned (userdata and a
 * scratch table), and the StFile of dd.load / dd.safetensors_header sits in a
 * to-be-closed userdata, so a Lua error at any point leaks nothing and closes
 * the file at once. */
#include "bind.h"
#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STFILE_MT "dd.SafetensorsFile"

enum { ERR_LEN = 1024 };

static const char *check_path(lua_State *L, int idx, const char *fn) {
    if (lua_type(L, idx) != LUA_TSTRING)
        dd_error(L, "%s: expected a path string as argument %d, got %s", fn, idx,
                   luaL_typename(L, idx));
    return lua_tostring(L, idx);
}

/* The Tensor value at idx (table key `name`), or an error naming both. */
static Tensor *save_check_tensor(lua_State *L, int idx, const char *name) {
    Tensor *t = ltensor_test(L, idx);
    if (t) return t;
    if (luaL_testudata(L, idx, TENSOR_MT))
        dd_error(L, "dd.save: tensor '%s' has been freed", name);
    dd_error(L, "dd.save: tensor '%s': expected a Tensor, got %s", name, luaL_typename(L, idx));
    return NULL;
}

/* The shortest of %.15g, %.16g, %.17g that reads back as the same double:
 * 0.1 is saved as "0.1", and every value survives exactly. */
static void format_double(char *buf, size_t len, double v) {
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* Raises "dd.save: <what> must be strings, got number key 1" for the key at -2
 * of a lua_next loop. */
static void bad_key(lua_State *L, const char *what) {
    const char *type = luaL_typename(L, -2);
    lua_pushvalue(L, -2);   /* tostring on a copy: converting the key would break lua_next */
    const char *text = luaL_tolstring(L, -1, NULL);
    dd_error(L, "dd.save: %s must be strings, got %s key %s", what, type, text);
}

/* Counts and checks the tensors table at idx: string keys, Tensor values. */
static int save_count_tensors(lua_State *L, int idx) {
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            bad_key(L, "tensor names");
        save_check_tensor(L, -1, lua_tostring(L, -2));
        n++;
        lua_pop(L, 1);
    }
    return n;
}

/* Checks the metadata table at idx and fills meta (n pairs); strings made
 * from numbers are kept alive in the scratch table. */
static int save_collect_meta(lua_State *L, int idx, int scratch, StMeta *meta, int n) {
    int i = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            bad_key(L, "metadata keys");
        const char *key = lua_tostring(L, -2);
        const char *value;
        if (lua_type(L, -1) == LUA_TSTRING) {
            value = lua_tostring(L, -1);
        } else if (lua_type(L, -1) == LUA_TNUMBER && meta == NULL) {
            value = NULL;   /* counting pass: formatted in the filling pass */
        } else if (lua_type(L, -1) == LUA_TNUMBER) {
            char buf[64];
            if (lua_isinteger(L, -1))
                snprintf(buf, sizeof buf, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, -1));
            else
                format_double(buf, sizeof buf, (double)lua_tonumber(L, -1));
            value = lua_pushstring(L, buf);
            lua_rawseti(L, scratch, (lua_Integer)lua_rawlen(L, scratch) + 1);
        } else {
            return dd_error(L, "dd.save: metadata '%s': expected a string or number, got %s", key,
                              luaL_typename(L, -1));
        }
        if (meta && i < n) meta[i] = (StMeta){key, value};
        i++;
        lua_pop(L, 1);
    }
    return i;
}

/* dd.save(path, {name = tensor, ...} [, {key = string|number, ...}]) */
static int l_save(lua_State *L) {
    const char *path = check_path(L, 1, "dd.save");
    if (!lua_istable(L, 2))
        return dd_error(L, "dd.save: expected a table of tensors as argument 2, got %s",
                          luaL_typename(L, 2));
    int has_meta = !lua_isnoneornil(L, 3);
    if (has_meta && !lua_istable(L, 3))
        return dd_error(L, "dd.save: expected a metadata table or nil as argument 3, got %s",
                          luaL_typename(L, 3));
    if (lua_gettop(L) > 3)
        return dd_error(L, "dd.save: expected at most 3 arguments, got %d", lua_gettop(L));
    lua_settop(L, 3);
    lua_newtable(L);
    int scratch = lua_gettop(L);

    int nt = save_count_tensors(L, 2);
    int nm = has_meta ? save_collect_meta(L, 3, scratch, NULL, 0) : 0;
    StWriteTensor *ts = lua_newuserdatauv(L, sizeof *ts * (size_t)(nt ? nt : 1), 0);
    lua_rawseti(L, scratch, (lua_Integer)lua_rawlen(L, scratch) + 1);
    StMeta *meta = lua_newuserdatauv(L, sizeof *meta * (size_t)(nm ? nm : 1), 0);
    lua_rawseti(L, scratch, (lua_Integer)lua_rawlen(L, scratch) + 1);
    if (has_meta) save_collect_meta(L, 3, scratch, meta, nm);

    int i = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        const char *name = lua_tostring(L, -2);
        Tensor *t = save_check_tensor(L, -1, name);
        int64_t numel = tensor_numel(t);
        const float *data = NULL;
        if (numel > 0 && tensor_is_contiguous(t)) {
            data = tensor_data(t);
        } else if (numel > 0) {
            /* Copy a strided view in logical order; the buffer is Lua-owned. */
            float *buf = lua_newuserdatauv(L, (size_t)numel * sizeof(float), 0);
            lua_rawseti(L, scratch, (lua_Integer)lua_rawlen(L, scratch) + 1);
            TensorIter it;
            tensor_iter_init(&it, t);
            float *p;
            int64_t k = 0;
            while ((p = tensor_iter_next(&it)) != NULL) buf[k++] = *p;
            data = buf;
        }
        if (i < nt) ts[i++] = (StWriteTensor){name, ST_F32, t->ndim, t->shape, data};
        lua_pop(L, 1);
    }
    char err[ERR_LEN];
    if (st_write(path, ts, nt, meta, nm, err, sizeof err) != 0)
        return dd_error(L, "dd.save: %s", err);
    return 0;
}

static int stfile_close(lua_State *L) {
    StFile **box = luaL_checkudata(L, 1, STFILE_MT);
    st_close(*box);
    *box = NULL;
    return 0;
}

/* Opens path into a to-be-closed box pushed on the stack, or raises. */
static StFile *push_open(lua_State *L, const char *fn, const char *path) {
    StFile **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, STFILE_MT);
    lua_toclose(L, -1);
    char err[ERR_LEN];
    *box = st_open(path, err, sizeof err);
    if (*box == NULL) dd_error(L, "%s: %s", fn, err);
    return *box;
}

static void push_metadata(lua_State *L, const StFile *f) {
    lua_createtable(L, 0, f->nmeta);
    for (int i = 0; i < f->nmeta; i++) {
        lua_pushstring(L, f->meta[i].value);
        lua_setfield(L, -2, f->meta[i].key);
    }
}

/* Refuses, before allocating anything, a file whose tensors as float32 would
 * not fit in this machine's memory (a hostile header can claim terabytes). */
static void check_fits_memory(lua_State *L, const StFile *f) {
    int64_t limit = storage_max_elements(), total = 0;
    for (int i = 0; i < f->nentries; i++) {
        const StEntry *e = &f->entries[i];
        total += e->numel;   /* stops past limit <= 2^40: cannot overflow */
        if (total > limit) {
            char need[64];
            snprintf(need, sizeof need, "%.1f GiB as float32, more than this machine's %.1f GiB",
                     (double)total * 4 / (1 << 30), (double)limit * 4 / (1 << 30));
            dd_error(L, "dd.load: %s: tensors up to '%s' need %s", f->path, e->name, need);
        }
    }
}

/* dd.load(path) -> {name = Tensor (float32)}, {key = string} */
static int l_load(lua_State *L) {
    const char *path = check_path(L, 1, "dd.load");
    if (lua_gettop(L) > 1)
        return dd_error(L, "dd.load: expected 1 argument (path), got %d", lua_gettop(L));
    StFile *f = push_open(L, "dd.load", path);
    check_fits_memory(L, f);
    lua_createtable(L, 0, f->nentries);
    for (int i = 0; i < f->nentries; i++) {
        const StEntry *e = &f->entries[i];
        Tensor *t = ltensor_push_new(L, e->ndim, e->shape);
        char err[ERR_LEN];
        if (e->numel > 0 && st_read_f32(f, e, tensor_data(t), err, sizeof err) != 0)
            return dd_error(L, "dd.load: %s", err);
        lua_setfield(L, -2, e->name);
    }
    push_metadata(L, f);
    return 2;
}

/* dd.safetensors_header(path) -> {name = {dtype=, shape={}, data_offsets={}},
 * __metadata__ = {key = string}}, without reading tensor data. */
static int l_header(lua_State *L) {
    const char *path = check_path(L, 1, "dd.safetensors_header");
    if (lua_gettop(L) > 1)
        return dd_error(L, "dd.safetensors_header: expected 1 argument (path), got %d",
                          lua_gettop(L));
    StFile *f = push_open(L, "dd.safetensors_header", path);
    lua_createtable(L, 0, f->nentries + 1);
    for (int i = 0; i < f->nentries; i++) {
        const StEntry *e = &f->entries[i];
        lua_createtable(L, 0, 3);
        lua_pushstring(L, st_dtype_name(e->dtype));
        lua_setfield(L, -2, "dtype");
        lua_createtable(L, e->ndim, 0);
        for (int d = 0; d < e->ndim; d++) {
            lua_pushinteger(L, (lua_Integer)e->shape[d]);
            lua_rawseti(L, -2, d + 1);
        }
        lua_setfield(L, -2, "shape");
        lua_createtable(L, 2, 0);
        lua_pushinteger(L, (lua_Integer)e->offset);
        lua_rawseti(L, -2, 1);
        lua_pushinteger(L, (lua_Integer)(e->offset + e->nbytes));
        lua_rawseti(L, -2, 2);
        lua_setfield(L, -2, "data_offsets");
        lua_setfield(L, -2, e->name);
    }
    push_metadata(L, f);
    lua_setfield(L, -2, "__metadata__");
    return 1;
}

void bind_io_open(lua_State *L, int dd) {
    dd = lua_absindex(L, dd);
    luaL_newmetatable(L, STFILE_MT);
    lua_pushcfunction(L, stfile_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, stfile_close);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {
        {"save", l_save},
        {"load", l_load},
        {"safetensors_header", l_header},
        {NULL, NULL},
    };
    for (const luaL_Reg *r = fns; r->name; r++) {
        lua_pushcfunction(L, r->func);
        lua_setfield(L, dd, r->name);
    }
}

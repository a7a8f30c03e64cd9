/* bind_data.c: frame caches: N frames of (C, H, W) kept as uint8, in memory
 * and on disk (a safetensors file with one U8 tensor "frames" of shape
 * (N, C, H, W) and string metadata). Float batches are made on the fly, so a
 * data set never exists whole as float.
 *   dd.data.frames(path) -> FrameSet: #fs, fs.n, fs.channels, fs.height,
 *     fs.width, fs.meta; fs:size(), fs:get(i) -> (C, H, W), fs:batch(indices)
 *     -> (B, C, H, W) with 1-based indices (a Lua array or a 1-d tensor).
 *   dd.data.frame_writer{channels=, height=, width=} -> FrameWriter:
 *     w:add(frame) (float (C, H, W) in [0, 1], rounded), w.n, w:save(path,
 *     meta) (atomic), w:frames() -> a FrameSet of what was added. */
#include "bind.h"
#include "safetensors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FRAMESET_MT "dd.FrameSet"
#define FRAMEWRITER_MT "dd.FrameWriter"

typedef struct FrameSet {
    uint8_t *data; /* n * c * h * w bytes; owned */
    size_t cap;    /* frames the buffer holds (writer) */
    int64_t n, c, h, w;
    int freed;     /* its __gc ran (a script can call it directly) */
} FrameSet;

static int64_t frame_bytes(const FrameSet *fs) { return fs->c * fs->h * fs->w; }

static FrameSet *frameset_check(lua_State *L, int idx, const char *mt) {
    FrameSet *fs = luaL_checkudata(L, idx, mt);
    if (fs->freed) dd_error(L, "%s has been freed", mt + 3);
    return fs;
}

static int frameset_gc(lua_State *L) {
    FrameSet *fs = luaL_testudata(L, 1, FRAMESET_MT);
    if (!fs) fs = luaL_checkudata(L, 1, FRAMEWRITER_MT);
    free(fs->data);
    fs->data = NULL;
    fs->n = 0;
    fs->cap = 0;
    fs->freed = 1;
    return 0;
}

static FrameSet *frameset_push(lua_State *L, const char *mt) {
    FrameSet *fs = lua_newuserdatauv(L, sizeof *fs, 1);
    memset(fs, 0, sizeof *fs);
    luaL_setmetatable(L, mt);
    return fs;
}

/* ---- reading ---- */

static int l_frames(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    char err[1024];
    FrameSet *fs = frameset_push(L, FRAMESET_MT);
    StFile *f = st_open(path, err, sizeof err);
    if (!f) return dd_error(L, "data.frames: %s", err);
    const StEntry *e = st_find(f, "frames");
    if (!e || e->dtype != ST_U8 || e->ndim != 4) {
        char s[256] = "missing";
        if (e) snprintf(s, sizeof s, "%s of %d dims", st_dtype_name(e->dtype), e->ndim);
        st_close(f);
        return dd_error(L, "data.frames: %s: expected a U8 tensor 'frames' of shape (N, C, H, W), found %s", path, s);
    }
    fs->n = e->shape[0], fs->c = e->shape[1], fs->h = e->shape[2], fs->w = e->shape[3];
    fs->data = malloc(e->nbytes ? (size_t)e->nbytes : 1);
    if (!fs->data) {
        st_close(f);
        return dd_error(L, "data.frames: %s: out of memory for %.1f MiB of frames", path, (double)e->nbytes / 1048576.0);
    }
    if (st_read_raw(f, e, fs->data, err, sizeof err)) {
        st_close(f);
        return dd_error(L, "data.frames: %s", err);
    }
    lua_createtable(L, 0, f->nmeta); /* metadata, kept as the uservalue */
    for (int i = 0; i < f->nmeta; i++) {
        lua_pushstring(L, f->meta[i].value);
        lua_setfield(L, -2, f->meta[i].key);
    }
    lua_setiuservalue(L, -2, 1);
    st_close(f);
    return 1;
}

static int64_t index_arg(lua_State *L, const FrameSet *fs, double v, const char *fn) {
    if (v != floor(v) || v < 1 || v > (double)fs->n)
        dd_error(L, "%s: index %g out of range [1, %lld]", fn, v, (long long)fs->n);
    return (int64_t)v - 1;
}

static void frame_to_float(float *out, const uint8_t *in, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = (float)in[i] * (1.0f / 255.0f);
}

static int fs_get(lua_State *L) {
    FrameSet *fs = frameset_check(L, 1, FRAMESET_MT);
    int isnum;
    lua_Number v = lua_tonumberx(L, 2, &isnum);
    if (!isnum) return dd_error(L, "get: index must be a number, got %s", larg_describe(L, 2));
    int64_t i = index_arg(L, fs, v, "get");
    int64_t shape[3] = {fs->c, fs->h, fs->w};
    Tensor *t = ltensor_push_uninit(L, 3, shape);
    frame_to_float(tensor_data(t), fs->data + i * frame_bytes(fs), frame_bytes(fs));
    return 1;
}

static int fs_batch(lua_State *L) {
    FrameSet *fs = frameset_check(L, 1, FRAMESET_MT);
    Tensor *it = ltensor_test(L, 2);
    int64_t b;
    if (it) {
        if (it->ndim != 1) return dd_error(L, "batch: index tensor must be 1-d, got %d dims", it->ndim);
        b = it->shape[0];
    } else if (lua_istable(L, 2)) {
        b = (int64_t)lua_rawlen(L, 2);
    } else {
        return dd_error(L, "batch: expected a list of indices or a 1-d tensor, got %s", luaL_typename(L, 2));
    }
    int64_t shape[4] = {b, fs->c, fs->h, fs->w};
    Tensor *t = ltensor_push_uninit(L, 4, shape);
    float *out = tensor_data(t);
    for (int64_t k = 0; k < b; k++) {
        double v;
        if (it) {
            v = tensor_data(it)[k * it->stride[0]];
        } else {
            lua_rawgeti(L, 2, k + 1);
            int isnum;
            v = lua_tonumberx(L, -1, &isnum);
            if (!isnum) return dd_error(L, "batch: index %lld must be a number, got %s", (long long)k + 1, luaL_typename(L, -1));
            lua_pop(L, 1);
        }
        int64_t i = index_arg(L, fs, v, "batch");
        frame_to_float(out + k * frame_bytes(fs), fs->data + i * frame_bytes(fs), frame_bytes(fs));
    }
    return 1;
}

static int fs_size(lua_State *L) {
    lua_pushinteger(L, frameset_check(L, 1, FRAMESET_MT)->n);
    return 1;
}

static int fs_index(lua_State *L) {
    FrameSet *fs = frameset_check(L, 1, FRAMESET_MT);
    const char *k = lua_tostring(L, 2);
    if (k) {
        if (!strcmp(k, "n")) return lua_pushinteger(L, fs->n), 1;
        if (!strcmp(k, "channels")) return lua_pushinteger(L, fs->c), 1;
        if (!strcmp(k, "height")) return lua_pushinteger(L, fs->h), 1;
        if (!strcmp(k, "width")) return lua_pushinteger(L, fs->w), 1;
        if (!strcmp(k, "meta")) return lua_getiuservalue(L, 1, 1), 1;
    }
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
}

static int fs_len(lua_State *L) { return fs_size(L); }

static int fs_tostring(lua_State *L) {
    FrameSet *fs = frameset_check(L, 1, FRAMESET_MT);
    lua_pushfstring(L, "FrameSet(%d frames of %dx%dx%d, uint8)", (int)fs->n, (int)fs->c, (int)fs->h, (int)fs->w);
    return 1;
}

/* ---- writing ---- */

static int l_frame_writer(lua_State *L) {
    if (!lua_istable(L, 1)) return dd_error(L, "data.frame_writer: expected {channels=, height=, width=}, got %s", luaL_typename(L, 1));
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
        if (strcmp(k, "channels") && strcmp(k, "height") && strcmp(k, "width"))
            return dd_error(L, "data.frame_writer: unknown option '%s' (known: channels, height, width)", k);
    }
    int64_t dims[3];
    const char *names[3] = {"channels", "height", "width"};
    for (int i = 0; i < 3; i++) {
        lua_getfield(L, 1, names[i]);
        char what[64];
        snprintf(what, sizeof what, "data.frame_writer: %s", names[i]);
        dims[i] = larg_int(L, -1, what, 1, 1 << 16);
        lua_pop(L, 1);
    }
    FrameSet *fs = frameset_push(L, FRAMEWRITER_MT);
    fs->c = dims[0], fs->h = dims[1], fs->w = dims[2];
    return 1;
}

/* Values in [0, 1] to bytes, rounded to nearest; out of range clamps, NaN is 0. */
static void frame_to_bytes(uint8_t *dst, const float *src, int64_t n) {
    for (int64_t k = 0; k < n; k++) {
        float x = src[k] * 255.0f + 0.5f;
        dst[k] = (uint8_t)(x <= 0 || isnan(x) ? 0 : x >= 255 ? 255 : x);
    }
}

static int fw_add(lua_State *L) {
    FrameSet *fs = frameset_check(L, 1, FRAMEWRITER_MT);
    Tensor *t = ltensor_check(L, 2);
    if (t->ndim != 3 || t->shape[0] != fs->c || t->shape[1] != fs->h || t->shape[2] != fs->w) {
        char s[256];
        return dd_error(L, "add: frame of shape %s, expected (%lld,%lld,%lld)", shape_format(s, sizeof s, t->ndim, t->shape),
                        (long long)fs->c, (long long)fs->h, (long long)fs->w);
    }
    if ((size_t)fs->n == fs->cap) { /* grow by half: amortised appends */
        size_t cap = fs->cap ? fs->cap + fs->cap / 2 + 1 : 64;
        uint8_t *p = realloc(fs->data, cap * (size_t)frame_bytes(fs));
        if (!p) return dd_error(L, "add: out of memory for %zu frames", cap);
        fs->data = p;
        fs->cap = cap;
    }
    uint8_t *dst = fs->data + fs->n * frame_bytes(fs);
    if (tensor_is_contiguous(t)) {
        frame_to_bytes(dst, tensor_data(t), tensor_numel(t));
    } else {
        TensorIter it;
        tensor_iter_init(&it, t);
        float *v;
        int64_t k = 0;
        while ((v = tensor_iter_next(&it))) frame_to_bytes(dst + k++, v, 1);
    }
    fs->n++;
    lua_settop(L, 1);
    return 1;
}

static int fw_save(lua_State *L) {
    FrameSet *fs = frameset_check(L, 1, FRAMEWRITER_MT);
    const char *path = luaL_checkstring(L, 2);
    int nmeta = 0;
    StMeta meta[64];
    if (!lua_isnoneornil(L, 3)) {
        if (!lua_istable(L, 3)) return dd_error(L, "save: metadata must be a table, got %s", luaL_typename(L, 3));
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            if (nmeta == 64) return dd_error(L, "save: at most 64 metadata entries");
            if (lua_type(L, -2) != LUA_TSTRING || (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER))
                return dd_error(L, "save: metadata must map strings to strings or numbers");
            lua_pushvalue(L, -1);
            meta[nmeta].value = lua_tostring(L, -1); /* kept alive on the stack until the write */
            lua_insert(L, -3);
            meta[nmeta].key = lua_tostring(L, -2);
            nmeta++;
            lua_pop(L, 1);
        }
    }
    int64_t shape[4] = {fs->n, fs->c, fs->h, fs->w};
    StWriteTensor t = {"frames", ST_U8, 4, shape, fs->data};
    char err[1024];
    if (st_write(path, &t, 1, meta, nmeta, err, sizeof err)) return dd_error(L, "save: %s", err);
    return 0;
}

static int fw_index(lua_State *L) {
    FrameSet *fs = frameset_check(L, 1, FRAMEWRITER_MT);
    const char *k = lua_tostring(L, 2);
    if (k && !strcmp(k, "n")) return lua_pushinteger(L, fs->n), 1;
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
}

static const luaL_Reg fs_methods[] = {{"get", fs_get}, {"batch", fs_batch}, {"size", fs_size}, {NULL, NULL}};
static const luaL_Reg fw_methods[] = {{"add", fw_add}, {"save", fw_save}, {NULL, NULL}};

static void register_type(lua_State *L, const char *mt, const char *name, const luaL_Reg *methods, lua_CFunction index) {
    luaL_newmetatable(L, mt);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_pushcclosure(L, index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, frameset_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}

void bind_data_open(lua_State *L, int dd) {
    register_type(L, FRAMESET_MT, "FrameSet", fs_methods, fs_index);
    luaL_getmetatable(L, FRAMESET_MT);
    lua_pushcfunction(L, fs_len);
    lua_setfield(L, -2, "__len");
    lua_pushcfunction(L, fs_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    register_type(L, FRAMEWRITER_MT, "FrameWriter", fw_methods, fw_index);
    lua_newtable(L);
    lua_pushcfunction(L, l_frames);
    lua_setfield(L, -2, "frames");
    lua_pushcfunction(L, l_frame_writer);
    lua_setfield(L, -2, "frame_writer");
    lua_setfield(L, dd, "data");
}

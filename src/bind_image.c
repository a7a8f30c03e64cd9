/* bind_image.c: dd.image.* (kernels in image.c, resampling in vision.c).
 *   load(path) -> (C,H,W) tensor in [0,1], info {bits, sample_bits, color, interlaced}
 *   save(path, t [, {bits=8|16}])              t is (C,H,W) with C in 1..4, or (H,W)
 *   grid(frames [, {cols=, pad=2, pad_value=1}]) -> (C,H',W') contact sheet
 *   show(t [, {width=, mode='auto'|'truecolor'|'plain'}])  prints a preview
 *   ascii(t [, {width=, mode=}]) -> the same preview as a string
 * libpng's errors come back as error codes (see image.h); the Lua error is
 * raised only after the C side has freed everything. */
#include "bind.h"
#include "image.h"
#include "vision.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define READER_MT "dd.image.Reader"

/* ---- argument helpers ---- */

/* opts[key] as an integer in [lo, hi], dflt when absent (or no options). */
static int64_t opt_int(lua_State *L, int idx, const char *fn, const char *key, int64_t dflt, int64_t lo, int64_t hi) {
    if (!lua_istable(L, idx)) return dflt;
    int t = lua_getfield(L, idx, key);
    int64_t v = dflt;
    if (t != LUA_TNIL) {
        int isint = 0;
        lua_Integer i = lua_tointegerx(L, -1, &isint);
        if (t != LUA_TNUMBER || !isint)
            dd_error(L, "%s: option '%s' must be an integer, got %s", fn, key,
                       t == LUA_TNUMBER ? lua_tostring(L, -1) : luaL_typename(L, -1));
        if (i < lo || i > hi)
            dd_error(L, "%s: option '%s' must be in [%lld, %lld], got %lld", fn, key, (long long)lo, (long long)hi, (long long)i);
        v = i;
    }
    lua_pop(L, 1);
    return v;
}

static double opt_number(lua_State *L, int idx, const char *fn, const char *key, double dflt) {
    if (!lua_istable(L, idx)) return dflt;
    int t = lua_getfield(L, idx, key);
    double v = dflt;
    if (t != LUA_TNIL) {
        if (t != LUA_TNUMBER) dd_error(L, "%s: option '%s' must be a number, got %s", fn, key, luaL_typename(L, -1));
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

static const char *path_arg(lua_State *L, int idx, const char *fn) {
    if (lua_type(L, idx) != LUA_TSTRING)
        dd_error(L, "%s: path must be a string, got %s", fn, luaL_typename(L, idx));
    return lua_tostring(L, idx);
}

/* An image argument: (C,H,W) with C in 1..4, or (H,W) as one channel. Made
 * contiguous in place on the stack; *c, *h, *w receive its dimensions. */
static Tensor *image_arg(lua_State *L, int idx, const char *fn, const char *what, int *c, int64_t *h, int64_t *w) {
    Tensor *t = ltensor_test(L, idx);
    if (!t) dd_error(L, "%s: %s must be a Tensor, got %s", fn, what, luaL_typename(L, idx));
    char s[256];
    if (!(t->ndim == 2 || (t->ndim == 3 && t->shape[0] >= 1 && t->shape[0] <= 4)))
        dd_error(L, "%s: %s must be (C,H,W) with C in 1..4 or (H,W), got shape %s", fn, what,
                   shape_format(s, sizeof s, t->ndim, t->shape));
    *c = t->ndim == 3 ? (int)t->shape[0] : 1;
    *h = t->shape[t->ndim - 2];
    *w = t->shape[t->ndim - 1];
    if (*h == 0 || *w == 0)
        dd_error(L, "%s: %s is empty (shape %s)", fn, what, shape_format(s, sizeof s, t->ndim, t->shape));
    if (!tensor_is_contiguous(t)) {
        Tensor *copy = ltensor_push_uninit(L, t->ndim, t->shape);
        tensor_copy_data(copy, t);
        lua_replace(L, idx);
        t = copy;
    }
    return t;
}

/* ---- load / save ---- */

/* The reader between open and read lives in a userdata, so that an error in
 * between (the tensor allocation) cannot leak it. */
static int reader_gc(lua_State *L) {
    ImageReader **box = luaL_checkudata(L, 1, READER_MT);
    image_reader_close(*box);
    *box = NULL;
    return 0;
}

static const char *color_name(int color_type) {
    switch (color_type) {
    case 0: return "grey";
    case 2: return "rgb";
    case 3: return "palette";
    case 4: return "grey+alpha";
    case 6: return "rgba";
    default: return "unknown";
    }
}

static int l_load(lua_State *L) {
    const char *fn = "image.load";
    if (lua_gettop(L) != 1) return dd_error(L, "%s: expected (path), got %d arguments", fn, lua_gettop(L));
    const char *path = path_arg(L, 1, fn);
    ImageReader **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, READER_MT);
    char err[512];
    ImageInfo info;
    *box = image_reader_open(path, &info, err, sizeof err);
    if (!*box) return dd_error(L, "%s: '%s': %s", fn, path, err);
    int64_t shape[3] = {info.channels, info.height, info.width};
    Tensor *t = ltensor_push_uninit(L, 3, shape);
    int rc = image_reader_read(*box, tensor_data(t), err, sizeof err);
    image_reader_close(*box);
    *box = NULL;
    if (rc) return dd_error(L, "%s: '%s': %s", fn, path, err);
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, info.file_bits);
    lua_setfield(L, -2, "bits");
    lua_pushinteger(L, info.sample_bits);
    lua_setfield(L, -2, "sample_bits");
    lua_pushstring(L, color_name(info.color_type));
    lua_setfield(L, -2, "color");
    lua_pushboolean(L, info.interlaced);
    lua_setfield(L, -2, "interlaced");
    return 2;
}

static int l_save(lua_State *L) {
    const char *fn = "image.save";
    static const char *const known[] = {"bits", NULL};
    if (lua_gettop(L) < 2 || lua_gettop(L) > 3)
        return dd_error(L, "%s: expected (path, t [, options]), got %d arguments", fn, lua_gettop(L));
    lua_settop(L, 3);
    const char *path = path_arg(L, 1, fn);
    int c;
    int64_t h, w;
    Tensor *t = image_arg(L, 2, fn, "image", &c, &h, &w);
    lopts_check(L, 3, fn, known);
    int bits = (int)opt_int(L, 3, fn, "bits", 8, 8, 16);
    if (bits != 8 && bits != 16) return dd_error(L, "%s: option 'bits' must be 8 or 16, got %d", fn, bits);
    if (h > 0x7fffffff || w > 0x7fffffff)
        return dd_error(L, "%s: a PNG holds at most 2^31-1 rows and columns, got %lldx%lld", fn, (long long)h, (long long)w);
    char err[512];
    if (image_save_png(path, tensor_data(t), c, (int)h, (int)w, bits, err, sizeof err)) {
        if (strstr(err, path)) return dd_error(L, "%s: %s", fn, err); /* fileio's messages name it already */
        return dd_error(L, "%s: '%s': %s", fn, path, err);
    }
    return 0;
}

/* ---- contact sheets ---- */

static int l_grid(lua_State *L) {
    const char *fn = "image.grid";
    static const char *const known[] = {"cols", "pad", "pad_value", NULL};
    if (lua_gettop(L) < 1 || lua_gettop(L) > 2)
        return dd_error(L, "%s: expected (frames [, options]), got %d arguments", fn, lua_gettop(L));
    lua_settop(L, 2);
    lopts_check(L, 2, fn, known);
    char s[256], s2[256];
    Tensor *batch = ltensor_test(L, 1);
    int64_t n64;
    if (batch) {
        if (batch->ndim != 4 || batch->shape[1] < 1 || batch->shape[1] > 4)
            return dd_error(L, "%s: a tensor of frames must be (N,C,H,W) with C in 1..4, got shape %s", fn,
                              shape_format(s, sizeof s, batch->ndim, batch->shape));
        n64 = batch->shape[0];
    } else if (lua_istable(L, 1)) {
        n64 = (int64_t)lua_rawlen(L, 1);
    } else {
        return dd_error(L, "%s: frames must be a list of tensors or an (N,C,H,W) tensor, got %s", fn, luaL_typename(L, 1));
    }
    if (n64 == 0) return dd_error(L, "%s: no frames given", fn);
    if (n64 > 1000000) return dd_error(L, "%s: at most 1000000 frames, got %lld", fn, (long long)n64);
    int n = (int)n64;
    int pad = (int)opt_int(L, 2, fn, "pad", 2, 0, 1 << 16);
    int cols = (int)opt_int(L, 2, fn, "cols", (int64_t)ceil(sqrt((double)n)), 1, 1 << 20);
    if (cols > n) cols = n;
    float pad_value = (float)opt_number(L, 2, fn, "pad_value", 1.0);

    /* pointers and channel counts in one scratch block; contiguous copies of
     * strided frames are kept alive in a table at index 3 */
    const float **frames = lua_newuserdatauv(L, (size_t)n * (sizeof(float *) + sizeof(int)), 0);
    int *channels = (int *)(frames + n);
    lua_newtable(L);
    lua_insert(L, 3);
    int64_t h = 0, w = 0;
    if (batch) {
        if (!tensor_is_contiguous(batch)) {
            Tensor *copy = ltensor_push_uninit(L, 4, batch->shape);
            tensor_copy_data(copy, batch);
            lua_replace(L, 1);
            batch = copy;
        }
        h = batch->shape[2];
        w = batch->shape[3];
        int64_t per = batch->shape[1] * h * w;
        for (int i = 0; i < n; i++) {
            frames[i] = tensor_data(batch) + i * per;
            channels[i] = (int)batch->shape[1];
        }
    } else {
        for (int i = 0; i < n; i++) {
            lua_rawgeti(L, 1, i + 1);
            int top = lua_gettop(L);
            Tensor *f = ltensor_test(L, top);
            if (!f) return dd_error(L, "%s: frame %d must be a Tensor, got %s", fn, i + 1, luaL_typename(L, top));
            char what[32];
            snprintf(what, sizeof what, "frame %d", i + 1);
            int64_t fh, fw;
            f = image_arg(L, top, fn, what, &channels[i], &fh, &fw);
            if (i == 0) {
                h = fh;
                w = fw;
            } else if (fh != h || fw != w) {
                lua_rawgeti(L, 1, 1);
                Tensor *f1 = ltensor_test(L, -1);
                return dd_error(L, "%s: frame %d has shape %s but frame 1 has shape %s (frames must share height and width)",
                                  fn, i + 1, shape_format(s, sizeof s, f->ndim, f->shape),
                                  shape_format(s2, sizeof s2, f1->ndim, f1->shape));
            }
            frames[i] = tensor_data(f);
            lua_rawseti(L, 3, i + 1); /* keeps a copy alive (or the frame itself) */
        }
    }
    int rows = (n + cols - 1) / cols;
    int out_c = image_grid_channels(channels, n);
    int64_t shape[3] = {out_c, rows * (h + pad) + pad, cols * (w + pad) + pad};
    Tensor *out = ltensor_push_uninit(L, 3, shape);
    image_grid(tensor_data(out), out_c, frames, channels, n, h, w, cols, pad, pad_value);
    return 1;
}

/* ---- terminal previews ---- */

static int terminal_width(void) {
    struct winsize ws;
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    return 80;
}

static int truecolor_terminal(void) {
    const char *c = getenv("COLORTERM");
    return c && (strcmp(c, "truecolor") == 0 || strcmp(c, "24bit") == 0);
}

/* Pushes the preview text of the image at 1 with the options at 2. */
static void preview_push(lua_State *L, const char *fn) {
    static const char *const known[] = {"width", "mode", NULL};
    if (lua_gettop(L) < 1 || lua_gettop(L) > 2)
        dd_error(L, "%s: expected (t [, options]), got %d arguments", fn, lua_gettop(L));
    lua_settop(L, 2);
    int c;
    int64_t h, w;
    Tensor *t = image_arg(L, 1, fn, "image", &c, &h, &w);
    lopts_check(L, 2, fn, known);
    int64_t width = opt_int(L, 2, fn, "width", terminal_width(), 1, 100000);
    TextMode mode = truecolor_terminal() ? TEXT_TRUECOLOR : TEXT_PLAIN;
    if (lua_istable(L, 2) && lua_getfield(L, 2, "mode") != LUA_TNIL) {
        const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (m && strcmp(m, "truecolor") == 0) mode = TEXT_TRUECOLOR;
        else if (m && strcmp(m, "plain") == 0) mode = TEXT_PLAIN;
        else if (!m || strcmp(m, "auto") != 0)
            dd_error(L, "%s: option 'mode' must be one of 'auto', 'truecolor', 'plain', got %s", fn,
                       m ? lua_pushfstring(L, "'%s'", m) : luaL_typename(L, -1));
        lua_pop(L, 1);
    } else if (lua_istable(L, 2)) {
        lua_pop(L, 1);
    }
    /* never enlarge; a plain character is about twice as tall as wide, a
     * truecolor cell holds two pixels: both keep the picture's aspect */
    int64_t ow = w < width ? w : width;
    double rows = (double)h * (double)ow / (double)w;
    int64_t oh = (int64_t)floor((mode == TEXT_PLAIN ? rows / 2.0 : rows) + 0.5);
    if (oh < 1) oh = 1;
    ResizeSpec spec = resize_spec_stretch(h, w, oh, ow, RESIZE_AREA);
    size_t plan_bytes = resize_plan_bytes(&spec);
    size_t text_bytes = image_render_bytes(oh, ow, mode);
    size_t bytes = ((size_t)3 * h * w + (size_t)3 * oh * ow) * sizeof(float) + plan_bytes + text_bytes;
    /* the plan first: it starts with int64_t arrays, and only the block's start is 8-byte aligned */
    char *plan_mem = lua_newuserdatauv(L, bytes, 0);
    float *rgb = (float *)(plan_mem + plan_bytes);
    float *small = rgb + 3 * h * w;
    char *text = (char *)(small + 3 * oh * ow);
    image_to_rgb(rgb, tensor_data(t), c, h * w);
    ResizePlan plan;
    resize_plan_init(&plan, plan_mem, &spec);
    for (int k = 0; k < 3; k++) resize_plan_run(&plan, small + k * oh * ow, ow, rgb + k * h * w);
    size_t len = image_render_text(text, small, oh, ow, mode);
    lua_pushlstring(L, text, len);
}

static int l_ascii(lua_State *L) {
    preview_push(L, "image.ascii");
    return 1;
}

static int l_show(lua_State *L) {
    preview_push(L, "image.show");
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    fwrite(s, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static const luaL_Reg image_functions[] = {{"load", l_load}, {"save", l_save}, {"grid", l_grid},
                                           {"show", l_show}, {"ascii", l_ascii}, {NULL, NULL}};

void bind_image_open(lua_State *L, int dd) {
    dd = lua_absindex(L, dd);
    luaL_newmetatable(L, READER_MT);
    lua_pushcfunction(L, reader_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_getsubtable(L, dd, "image");
    luaL_setfuncs(L, image_functions, 0);
    lua_pop(L, 1);
}

/* bind_video.c: dd.video, reading and writing video files.
 *   local v = dd.video.open(path)     v.width, v.height, v.fps, v.duration,
 *                                     v.frame_count, v.codec, v.rotation,
 *                                     v.frames_decoded, v.frames_skipped
 *   for frame, t in v:frames{fps = 3, size = {h, w}} do ... end
 *                                     (3, H, W) tensors in [0, 1], as
 *                                     `ffmpeg -vf fps=3` samples them
 *   v:read() -> frame, t | nil        v:seek(seconds)     v:close()
 *   local w = dd.video.writer(path, {fps = 30, crf = 18, preset = "medium"})
 *   w:write(frame)   w:close()        (.mp4/.m4v/.mov: H.264; .gif)
 * Arguments are checked here; the FFmpeg work is in video.c. Every FFmpeg
 * object is owned by the userdata (freed by close, __close or __gc), so a Lua
 * error at any point leaks nothing and leaves no partial output file. */
#include "bind.h"
#include "video.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define VIDEO_MT "dd.Video"
#define WRITER_MT "dd.VideoWriter"
#define MAX_SIDE 16384

typedef struct LVideo {
    Video *v;
    VideoInfo info;       /* kept after close, so fields stay readable */
    unsigned generation;  /* bumped by frames/read/seek: older iterators refuse to run */
} LVideo;

typedef enum WriterState { WRITER_OPEN, WRITER_CLOSED, WRITER_FAILED } WriterState;

typedef struct LWriter {
    VideoWriter *w;
    WriterState state;
    char failure[VIDEO_ERR_LEN];   /* why it failed, for a later close() */
} LWriter;

/* Raises "<fn>: unknown option 'k' (known: ...)" for any key of the table at
 * idx not in known (NULL-terminated). */
static void check_options(lua_State *L, int idx, const char *fn, const char *const *known, const char *list) {
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int ok = 0;
        if (lua_type(L, -2) == LUA_TSTRING)
            for (const char *const *k = known; *k; k++) ok |= strcmp(lua_tostring(L, -2), *k) == 0;
        if (!ok) {
            lua_pushvalue(L, -2);
            dd_error(L, "%s: unknown option '%s' (known: %s)", fn, luaL_tolstring(L, -1, NULL), list);
        }
        lua_pop(L, 1);
    }
}

static const char *check_path(lua_State *L, int idx, const char *fn) {
    if (lua_type(L, idx) != LUA_TSTRING)
        dd_error(L, "%s: expected a path string as argument %d, got %s", fn, idx, luaL_typename(L, idx));
    return lua_tostring(L, idx);
}

/* ---- Video ---- */

static LVideo *lvideo_check(lua_State *L, int idx) {
    LVideo *u = luaL_testudata(L, idx, VIDEO_MT);
    if (!u) luaL_typeerror(L, idx, "Video");
    return u;
}

/* The open Video at idx, or an error "video is closed". */
static Video *lvideo_open_check(lua_State *L, int idx, const char *fn) {
    LVideo *u = lvideo_check(L, idx);
    if (!u->v) dd_error(L, "%s: video is closed", fn);
    return u->v;
}

static int l_open(lua_State *L) {
    const char *path = check_path(L, 1, "dd.video.open");
    LVideo *u = lua_newuserdatauv(L, sizeof *u, 0);
    memset(u, 0, sizeof *u);
    luaL_setmetatable(L, VIDEO_MT);
    char err[VIDEO_ERR_LEN];
    u->v = video_open(path, err, sizeof err);
    if (!u->v) return dd_error(L, "dd.video.open: %s", err);
    u->info = *video_info(u->v);
    return 1;
}

/* Converts the frame the Video holds into a new (3, h, w) tensor; pushes it and t. */
static int push_frame(lua_State *L, Video *v, int h, int w, double t, const char *fn) {
    int64_t shape[3] = {3, h, w};
    Tensor *x = ltensor_push_uninit(L, 3, shape);
    char err[VIDEO_ERR_LEN];
    if (video_frame_to_float(v, tensor_data(x), h, w, err, sizeof err) < 0) return dd_error(L, "%s: %s", fn, err);
    lua_pushnumber(L, t);
    return 2;
}

/* upvalues: the Video, its generation when frames{} was called, h, w */
static int frames_next(lua_State *L) {
    const char *fn = "Video:frames";
    Video *v = lvideo_open_check(L, lua_upvalueindex(1), fn);
    LVideo *u = lua_touserdata(L, lua_upvalueindex(1));
    if ((lua_Integer)u->generation != lua_tointeger(L, lua_upvalueindex(2)))
        return dd_error(L, "%s: this iterator was superseded by a later frames, read or seek on the same video", fn);
    double t;
    char err[VIDEO_ERR_LEN];
    int r = video_sample_next(v, &t, err, sizeof err);
    if (r < 0) return dd_error(L, "%s: %s", fn, err);
    if (r == 0) return 0;
    return push_frame(L, v, (int)lua_tointeger(L, lua_upvalueindex(3)), (int)lua_tointeger(L, lua_upvalueindex(4)),
                      t, fn);
}

/* v:frames{fps = f, size = {h, w}, workers = n}: all optional; without fps
 * every frame; workers: decoders at once (default one per core), see
 * video_sample_start. */
static int m_frames(lua_State *L) {
    const char *fn = "Video:frames";
    Video *v = lvideo_open_check(L, 1, fn);
    LVideo *u = lua_touserdata(L, 1);
    double fps = 0;
    int h = u->info.height, w = u->info.width, workers = -1;
    if (!lua_isnoneornil(L, 2)) {
        if (!lua_istable(L, 2)) return dd_error(L, "%s: expected an options table, got %s", fn, luaL_typename(L, 2));
        static const char *const known[] = {"fps", "size", "workers", NULL};
        check_options(L, 2, fn, known, "fps, size, workers");
        if (lua_getfield(L, 2, "fps") != LUA_TNIL) {
            int isnum;
            fps = lua_tonumberx(L, -1, &isnum);
            if (!isnum || lua_type(L, -1) != LUA_TNUMBER || !(fps > 0) || !isfinite(fps) || fps > 1e6)
                return dd_error(L, "%s: fps must be a positive number, got %s", fn, luaL_tolstring(L, -1, NULL));
        }
        lua_pop(L, 1);
        if (lua_getfield(L, 2, "size") != LUA_TNIL) {
            if (!lua_istable(L, -1) || lua_rawlen(L, -1) != 2)
                return dd_error(L, "%s: size must be a table {height, width}, got %s", fn,
                                  luaL_tolstring(L, -1, NULL));
            lua_rawgeti(L, -1, 1);
            h = (int)larg_int(L, -1, "Video:frames: size[1] (height)", 1, MAX_SIDE);
            lua_rawgeti(L, -2, 2);
            w = (int)larg_int(L, -1, "Video:frames: size[2] (width)", 1, MAX_SIDE);
            lua_pop(L, 2);
        }
        lua_pop(L, 1);
        if (lua_getfield(L, 2, "workers") != LUA_TNIL) workers = (int)larg_int(L, -1, "Video:frames: workers", 0, 8);
        lua_pop(L, 1);
    }
    char err[VIDEO_ERR_LEN];
    u->generation++;
    if (video_sample_start(v, fps, workers, err, sizeof err) < 0) return dd_error(L, "%s: %s", fn, err);
    lua_pushvalue(L, 1);
    lua_pushinteger(L, (lua_Integer)u->generation);
    lua_pushinteger(L, h);
    lua_pushinteger(L, w);
    lua_pushcclosure(L, frames_next, 4);
    return 1;
}

static int m_read(lua_State *L) {
    Video *v = lvideo_open_check(L, 1, "Video:read");
    LVideo *u = lua_touserdata(L, 1);
    u->generation++;
    double t;
    char err[VIDEO_ERR_LEN];
    int r = video_read(v, &t, err, sizeof err);
    if (r < 0) return dd_error(L, "Video:read: %s", err);
    if (r == 0) {
        lua_pushnil(L);
        return 1;
    }
    return push_frame(L, v, u->info.height, u->info.width, t, "Video:read");
}

static int m_seek(lua_State *L) {
    Video *v = lvideo_open_check(L, 1, "Video:seek");
    LVideo *u = lua_touserdata(L, 1);
    int isnum;
    double s = lua_tonumberx(L, 2, &isnum);
    if (!isnum || lua_type(L, 2) != LUA_TNUMBER || !isfinite(s))
        return dd_error(L, "Video:seek: expected a time in seconds, got %s", luaL_tolstring(L, 2, NULL));
    u->generation++;
    char err[VIDEO_ERR_LEN];
    if (video_seek(v, s, err, sizeof err) < 0) return dd_error(L, "Video:seek: %s", err);
    lua_settop(L, 1);
    return 1;
}

static int m_close(lua_State *L) {
    LVideo *u = lvideo_check(L, 1);
    video_close(u->v);
    u->v = NULL;
    return 0;
}

static int video_tostring(lua_State *L) {
    LVideo *u = lvideo_check(L, 1);
    lua_pushfstring(L, "Video(%dx%d, %f fps, %f s, %s%s)", u->info.width, u->info.height, u->info.fps,
                    u->info.duration, u->info.codec, u->v ? "" : ", closed");
    return 1;
}

/* Methods first, then the read-only fields. */
static int video_index(lua_State *L) {
    LVideo *u = lvideo_check(L, 1);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
    const char *k = lua_tostring(L, 2);
    if (!k) return 1;
    const VideoInfo *in = &u->info;
    if (strcmp(k, "width") == 0) lua_pushinteger(L, in->width);
    else if (strcmp(k, "height") == 0) lua_pushinteger(L, in->height);
    else if (strcmp(k, "fps") == 0) lpush_float(L, in->fps);
    else if (strcmp(k, "duration") == 0) lpush_float(L, in->duration);
    else if (strcmp(k, "frame_count") == 0) lua_pushinteger(L, in->frame_count);
    else if (strcmp(k, "codec") == 0) lua_pushstring(L, in->codec);
    else if (strcmp(k, "rotation") == 0) lua_pushinteger(L, in->rotation);
    else if (strcmp(k, "frames_decoded") == 0 || strcmp(k, "frames_skipped") == 0) {
        int64_t decoded = 0, skipped = 0;
        if (u->v) video_stats(u->v, &decoded, &skipped);
        lua_pushinteger(L, k[7] == 'd' ? decoded : skipped);
    } else if (strcmp(k, "decoders") == 0) lua_pushinteger(L, u->v ? video_decoders(u->v) : 0);
    else lua_pushnil(L);
    return 1;
}

/* ---- VideoWriter ---- */

static LWriter *lwriter_check(lua_State *L, int idx) {
    LWriter *u = luaL_testudata(L, idx, WRITER_MT);
    if (!u) luaL_typeerror(L, idx, "VideoWriter");
    return u;
}

static VideoWriter *lwriter_open_check(lua_State *L, int idx, const char *fn) {
    LWriter *u = lwriter_check(L, idx);
    if (u->state == WRITER_FAILED)
        dd_error(L, "%s: nothing was written, an earlier write failed: %s", fn, u->failure);
    if (u->state == WRITER_CLOSED) dd_error(L, "%s: video writer is closed", fn);
    return u->w;
}

static int l_writer(lua_State *L) {
    const char *fn = "dd.video.writer";
    const char *path = check_path(L, 1, fn);
    VideoWriterOptions opt = {30, -1, NULL};
    int has_h264_opt = 0;
    if (!lua_isnoneornil(L, 2)) {
        if (!lua_istable(L, 2)) return dd_error(L, "%s: expected an options table, got %s", fn, luaL_typename(L, 2));
        static const char *const known[] = {"fps", "crf", "preset", NULL};
        check_options(L, 2, fn, known, "fps, crf, preset");
        if (lua_getfield(L, 2, "fps") != LUA_TNIL) {
            int isnum;
            opt.fps = lua_tonumberx(L, -1, &isnum);
            if (!isnum || lua_type(L, -1) != LUA_TNUMBER || !(opt.fps > 0) || !(opt.fps <= 1000))
                return dd_error(L, "%s: fps must be a number in (0, 1000], got %s", fn, luaL_tolstring(L, -1, NULL));
        }
        if (lua_getfield(L, 2, "crf") != LUA_TNIL) {
            opt.crf = (int)larg_int(L, -1, "dd.video.writer: crf", 0, 51);
            has_h264_opt = 1;
        }
        if (lua_getfield(L, 2, "preset") != LUA_TNIL) {
            if (lua_type(L, -1) != LUA_TSTRING)
                return dd_error(L, "%s: preset must be a string such as \"medium\", got %s", fn,
                                  luaL_typename(L, -1));
            opt.preset = lua_tostring(L, -1);   /* stays on the stack until we return */
            has_h264_opt = 1;
        }
    }
    size_t n = strlen(path);
    if (has_h264_opt && n >= 4 && strcasecmp(path + n - 4, ".gif") == 0)
        return dd_error(L, "%s: %s: crf and preset apply to H.264 (.mp4, .m4v, .mov), not to GIF", fn, path);
    LWriter *u = lua_newuserdatauv(L, sizeof *u, 0);
    memset(u, 0, sizeof *u);
    u->state = WRITER_CLOSED;
    luaL_setmetatable(L, WRITER_MT);
    char err[VIDEO_ERR_LEN];
    u->w = video_writer_open(path, &opt, err, sizeof err);
    if (!u->w) return dd_error(L, "%s: %s", fn, err);
    u->state = WRITER_OPEN;
    return 1;
}

/* Any failed write discards the output: a video silently missing a frame
 * is worse than none. */
static int writer_fail(lua_State *L, LWriter *u, const char *fn, const char *msg) {
    video_writer_abort(u->w);
    u->w = NULL;
    u->state = WRITER_FAILED;
    snprintf(u->failure, sizeof u->failure, "%s", msg);
    return dd_error(L, "%s: %s (output discarded)", fn, msg);
}

static int m_write(lua_State *L) {
    const char *fn = "VideoWriter:write";
    VideoWriter *w = lwriter_open_check(L, 1, fn);
    LWriter *u = lua_touserdata(L, 1);
    Tensor *x = ltensor_test(L, 2);
    char msg[VIDEO_ERR_LEN], s[128];
    if (!x) {
        snprintf(msg, sizeof msg, "expected a (3, H, W) or (1, H, W) Tensor, got %s", luaL_typename(L, 2));
        return writer_fail(L, u, fn, msg);
    }
    if (x->ndim != 3 || (x->shape[0] != 3 && x->shape[0] != 1) || x->shape[1] < 1 || x->shape[2] < 1 ||
        x->shape[1] > MAX_SIDE || x->shape[2] > MAX_SIDE) {
        snprintf(msg, sizeof msg, "frame of shape %s: expected (3, H, W) or (1, H, W) with 1 <= H, W <= %d",
                 shape_format(s, sizeof s, x->ndim, x->shape), MAX_SIDE);
        return writer_fail(L, u, fn, msg);
    }
    if (video_writer_write(w, tensor_data(x), (int)x->shape[0], (int)x->shape[1], (int)x->shape[2], x->stride, msg,
                           sizeof msg) < 0)
        return writer_fail(L, u, fn, msg);
    lua_settop(L, 1);
    return 1;
}

static int m_writer_close(lua_State *L) {
    const char *fn = "VideoWriter:close";
    VideoWriter *w = lwriter_open_check(L, 1, fn);
    LWriter *u = lua_touserdata(L, 1);
    u->w = NULL;
    u->state = WRITER_CLOSED;
    char err[VIDEO_ERR_LEN];
    if (video_writer_close(w, err, sizeof err) < 0) return dd_error(L, "%s: %s", fn, err);
    return 0;
}

/* `local w <close> = ...`: commit on a normal exit, discard on an error. */
static int writer_close_var(lua_State *L) {
    LWriter *u = lwriter_check(L, 1);
    if (u->state != WRITER_OPEN) return 0;
    if (!lua_isnoneornil(L, 2)) {
        video_writer_abort(u->w);
        u->w = NULL;
        u->state = WRITER_CLOSED;
        return 0;
    }
    return m_writer_close(L);
}

static int writer_gc(lua_State *L) {
    LWriter *u = lwriter_check(L, 1);
    video_writer_abort(u->w);   /* never closed: nothing is published */
    u->w = NULL;
    u->state = WRITER_CLOSED;
    return 0;
}

static int writer_tostring(lua_State *L) {
    LWriter *u = lwriter_check(L, 1);
    static const char *names[] = {"open", "closed", "failed"};
    lua_pushfstring(L, "VideoWriter(%s)", names[u->state]);
    return 1;
}

/* dd.video.set_decoder_threads(n): frame threads of one decoder in videos
 * opened afterwards; 0 (the default) for three per core. With 1, decoding a
 * damaged file is deterministic (frame threads conceal errors depending on
 * timing). */
static int l_set_decoder_threads(lua_State *L) {
    video_set_decoder_threads((int)larg_int(L, 1, "dd.video.set_decoder_threads: n", 0, 64));
    return 0;
}

void bind_video_open(lua_State *L, int dd) {
    dd = lua_absindex(L, dd);
    video_log_init();

    static const luaL_Reg video_methods[] = {
        {"frames", m_frames}, {"read", m_read}, {"seek", m_seek}, {"close", m_close}, {NULL, NULL}};
    luaL_newmetatable(L, VIDEO_MT);
    lua_newtable(L);
    luaL_setfuncs(L, video_methods, 0);
    lua_pushcclosure(L, video_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, m_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, m_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, video_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    static const luaL_Reg writer_methods[] = {{"write", m_write}, {"close", m_writer_close}, {NULL, NULL}};
    luaL_newmetatable(L, WRITER_MT);
    lua_newtable(L);
    luaL_setfuncs(L, writer_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, writer_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, writer_close_var);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, writer_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    static const luaL_Reg fns[] = {{"open", l_open}, {"writer", l_writer},
                                   {"set_decoder_threads", l_set_decoder_threads}, {NULL, NULL}};
    luaL_getsubtable(L, dd, "video");
    luaL_setfuncs(L, fns, 0);
    lua_pop(L, 1);
}

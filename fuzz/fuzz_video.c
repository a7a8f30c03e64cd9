/* fuzz_video.c: libFuzzer harness for video open-and-decode (src/video.c)
 * behind dd.video.open, v:read, v:seek and v:frames. Each input is a whole
 * file, opened by path like the binding does (FFmpeg probes the container
 * from the bytes). Then, by input size mod 3: up to 4 frames read in order,
 * 4 frames sampled at 3 fps (the ingest path, with packet skipping), or a
 * seek to 0.5 s and 2 frames. Each frame is converted to floats, at the
 * stream's size when small or else resized like frames{size = {h, w}}, and
 * every value must lie in [0, 1]. Only deepdance's code is instrumented;
 * FFmpeg is Debian's build, so a crash inside FFmpeg shows as a plain SEGV. */
#include "fuzz_util.h"
#include "video.h"

enum { MAX_PIXELS = 1 << 18, SMALL_H = 24, SMALL_W = 32, MAX_FRAMES = 4 };

static float frame_buf[3 * MAX_PIXELS];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    video_log_init();   /* FFmpeg quiet unless DD_FFMPEG_LOGLEVEL is set */
    /* One decoder thread (FFMPEG's frame threads are not ours to fuzz, and
     * starting six per input was most of the time), unless
     * DD_FUZZ_DECODER_THREADS says otherwise (0: the runtime's default). */
    const char *t = getenv("DD_FUZZ_DECODER_THREADS");
    video_set_decoder_threads(t ? atoi(t) : 1);
    /* Frames up to 512x512: a fuzzed header declaring 8000x8000 would make
     * FFmpeg allocate (and the kernel zero) hundreds of MB per input. The
     * size checks themselves are exercised below that limit. */
    video_set_max_pixels(MAX_PIXELS);
    return 0;
}

static void convert(Video *v, const VideoInfo *in) {
    char err[VIDEO_ERR_LEN] = "";
    int h = in->height, w = in->width;
    if ((int64_t)h * w > MAX_PIXELS) h = SMALL_H, w = SMALL_W;
    if (video_frame_to_float(v, frame_buf, h, w, err, sizeof err) < 0) {
        FUZZ_CHECK(fuzz_nonempty(err));
        return;
    }
    for (int64_t i = 0; i < 3 * (int64_t)h * w; i++) FUZZ_CHECK(frame_buf[i] >= 0.0f && frame_buf[i] <= 1.0f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    char err[VIDEO_ERR_LEN] = "";
    Video *v = video_open(path, err, sizeof err);
    if (!v) {
        FUZZ_CHECK(fuzz_nonempty(err) && strncmp(err, path, strlen(path)) == 0);
        return 0;
    }
    const VideoInfo *in = video_info(v);
    FUZZ_CHECK(in->width > 0 && in->height > 0);
    FUZZ_CHECK(in->rotation == 0 || in->rotation == 90 || in->rotation == 180 || in->rotation == 270);
    double t;
    int r = 1, frames = 0;
    switch (size % 3) {
    case 0:
        while (frames < MAX_FRAMES && (r = video_read(v, &t, err, sizeof err)) == 1) {
            convert(v, in);
            frames++;
        }
        break;
    case 1:
        FUZZ_CHECK(video_sample_start(v, 3.0, -1, err, sizeof err) == 0 || fuzz_nonempty(err));
        while (frames < MAX_FRAMES && (r = video_sample_next(v, &t, err, sizeof err)) == 1) {
            convert(v, in);
            frames++;
        }
        break;
    default:
        if (video_seek(v, 0.5, err, sizeof err) == 0)
            while (frames < 2 && (r = video_read(v, &t, err, sizeof err)) == 1) {
                convert(v, in);
                frames++;
            }
        else
            FUZZ_CHECK(fuzz_nonempty(err));
        break;
    }
    if (r < 0) FUZZ_CHECK(fuzz_nonempty(err));
    video_close(v);
    return 0;
}

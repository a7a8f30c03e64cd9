/* test_video.c: the vf_fps resampler of video.c (fps_step) on timestamps
 * alone: hand-worked cases that ffmpeg 5.1's `-vf fps=R` was checked to give
 * (frame counts 9 and 23 for a 3-frame 1 fps clip at 3 and 7.5 fps, frames
 * 4, 14, ... of a 30 fps clip at 3 fps), and a randomized check of the rule
 * that lets the decoder skip frames: removing frames that a later frame
 * rounds onto must not change a single output (time or chosen frame).
 * The file-level behaviour (decoding, pixels) is in tests/lua/video_spec.lua.
 * Seed: env DD_TEST_SEED (default 1234). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libavutil/mathematics.h>

#include "video.h"

enum { MAX_OUT = 1 << 16 };

typedef struct Output {
    int64_t pts;   /* in units of 1/fps */
    int frame;     /* index into the input */
} Output;

/* Runs fps_step over input timestamps (already in units of 1/fps); returns
 * the number of outputs. */
static int run_fps(const int64_t *pts, const int *ids, int n, int64_t eof_pts, Output *out) {
    FpsState s;
    fps_init(&s);
    int held[2] = {-1, -1}, next = 0, nout = 0;
    for (;;) {
        int64_t t;
        switch (fps_step(&s, &t)) {
        case FPS_NEED_INPUT:
            if (next < n) {
                held[s.count] = ids ? ids[next] : next;
                fps_push(&s, pts[next++]);
            } else {
                fps_push_eof(&s, eof_pts);
            }
            break;
        case FPS_DROP:
            held[0] = held[1];
            break;
        case FPS_EMIT:
            assert_true(nout < MAX_OUT);
            out[nout].pts = t;
            out[nout].frame = held[0];
            nout++;
            break;
        case FPS_END:
            return nout;
        }
    }
}

static Output out[MAX_OUT];

static void test_one_fps_clip_at_3(void **state) {
    (void)state;
    /* 1 fps, 3 frames, ends at 3 s: at 3 fps (units of 1/3 s) */
    int64_t pts[] = {0, 3, 6};
    int n = run_fps(pts, NULL, 3, 9, out);
    assert_int_equal(n, 9);
    for (int k = 0; k < 9; k++) {
        assert_int_equal(out[k].pts, k);
        assert_int_equal(out[k].frame, k / 3);
    }
}

static void test_one_fps_clip_at_7_5(void **state) {
    (void)state;
    /* units of 2/15 s: 1 s = 7.5 -> 8 (ties away from zero), 2 s = 15, end 22.5 -> 23 */
    int64_t pts[] = {0, 8, 15};
    int n = run_fps(pts, NULL, 3, 23, out);
    assert_int_equal(n, 23);
    assert_int_equal(out[7].frame, 0);
    assert_int_equal(out[8].frame, 1);
    assert_int_equal(out[14].frame, 1);
    assert_int_equal(out[15].frame, 2);
    assert_int_equal(out[22].frame, 2);
}

static void test_30_to_3_picks_the_latest_frame(void **state) {
    (void)state;
    int64_t pts[120];
    for (int i = 0; i < 120; i++) pts[i] = av_rescale_q_rnd(i, (AVRational){1, 30}, (AVRational){1, 3}, AV_ROUND_NEAR_INF);
    int n = run_fps(pts, NULL, 120, 12, out);
    assert_int_equal(n, 12);
    for (int k = 0; k < 12; k++) assert_int_equal(out[k].frame, 10 * k + 4);
}

static void test_leading_frames_without_time_are_dropped(void **state) {
    (void)state;
    int64_t pts[] = {FPS_NOPTS, FPS_NOPTS, 5, 6};
    int n = run_fps(pts, NULL, 4, 7, out);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].pts, 5);
    assert_int_equal(out[0].frame, 2);
    assert_int_equal(out[1].frame, 3);
}

static void test_empty_input(void **state) {
    (void)state;
    assert_int_equal(run_fps(NULL, NULL, 0, FPS_NOPTS, out), 0);
}

/* ---- the skip rule ---- */

static uint64_t rng_state;

static uint64_t splitmix(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int rand_below(int n) { return (int)(splitmix() % (uint64_t)n); }

/* Random increasing timestamps in a random stream time base, random output
 * rate; frames that a later frame rounds onto are removed at random. The
 * outputs must be identical, and a removable frame is never an output. */
static void test_skip_rule_changes_nothing(void **state) {
    (void)state;
    static const AVRational tbs[] = {{1, 1000}, {1, 90000}, {1, 30}, {1, 15360}, {1001, 30000}};
    static const double rates[] = {0.5, 1, 2, 3, 4.5, 7.5, 12, 24, 29.97, 60};
    static int64_t p[600], q[600], q_kept[600];
    static int ids_kept[600];
    static Output full[MAX_OUT], kept[MAX_OUT];   /* at most 600 s at 60 fps */
    int removed_total = 0;
    for (int trial = 0; trial < 3000; trial++) {
        AVRational tb = tbs[rand_below(5)];
        AVRational out_tb = av_inv_q(av_d2q(rates[rand_below(10)], INT32_MAX));
        int n = 1 + rand_below(600);
        /* bursts of fast (up to 1/10 s apart) and slow (up to 1 s) frames */
        double ticks_per_s = av_q2d(av_inv_q(tb));
        int64_t t = (int64_t)((rand_below(4000) - 1000) / 1000.0 * ticks_per_s);
        for (int i = 0; i < n; i++) {
            p[i] = t;
            double gap = (i % 50 < 25 ? 0.1 : 1.0) * (rand_below(1000) + 1) / 1000.0;
            t += 1 + (int64_t)(gap * ticks_per_s);
        }
        int64_t end = av_rescale_q_rnd(t, tb, out_tb, AV_ROUND_NEAR_INF);
        for (int i = 0; i < n; i++) q[i] = av_rescale_q_rnd(p[i], tb, out_tb, AV_ROUND_NEAR_INF);
        int nfull = run_fps(q, NULL, n, end, full);

        int nk = 0;
        for (int i = 0; i < n; i++) {
            int skippable = 0;
            for (int j = 0; j < n && !skippable; j++) skippable = p[j] > p[i] && q[j] == q[i];
            if (skippable) {
                for (int k = 0; k < nfull; k++) assert_int_not_equal(full[k].frame, i);
                if (rand_below(4) != 0) {   /* non-reference frames are only some of them */
                    removed_total++;
                    continue;
                }
            }
            q_kept[nk] = q[i];
            ids_kept[nk++] = i;
        }
        int nkept = run_fps(q_kept, ids_kept, nk, end, kept);
        assert_int_equal(nkept, nfull);
        for (int k = 0; k < nfull; k++) {
            assert_int_equal(kept[k].pts, full[k].pts);
            assert_int_equal(kept[k].frame, full[k].frame);
        }
    }
    assert_true(removed_total > 0);
}

int main(void) {
    const char *env = getenv("DD_TEST_SEED");
    unsigned long seed = env ? strtoul(env, NULL, 10) : 1234;
    rng_state = seed;
    printf("# seed %lu\n", seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_fps_clip_at_3),
        cmocka_unit_test(test_one_fps_clip_at_7_5),
        cmocka_unit_test(test_30_to_3_picks_the_latest_frame),
        cmocka_unit_test(test_leading_frames_without_time_are_dropped),
        cmocka_unit_test(test_empty_input),
        cmocka_unit_test(test_skip_rule_changes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

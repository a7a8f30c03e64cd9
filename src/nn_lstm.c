/* nn_lstm.c: stacked LSTM (dd.nn.LSTM): kernels, the layer kind, and the
 * stepping state used for generation. No Lua here; see nn_lstm.h for layouts.
 *
 *   i = act(W_ii x + W_hi h + b_i)    f = act(W_if x + W_hf h + b_f)
 *   g = tanh(W_ig x + W_hg h + b_g)   o = act(W_io x + W_ho h + b_o)
 *   c_t = f * c_{t-1} + i * g         h_t = o * tanh(c_t)
 * act is the sigmoid or Keras' hard sigmoid clip(0.2 x + 0.5, 0, 1).
 *
 * Speed: per layer the input projection of all time steps is one GEMM
 * (T*B, in) x (in, 4H); each step adds one (B, H) x (H, 4H) GEMM and a fused
 * element-wise pass. Backward keeps every step's gate gradients so dW_ih,
 * dW_hh and dx are one GEMM each; only dh_{t-1} = dgates_t W_hh is per step.
 * The per-step products use W_hh packed once per call (gemm_packed.h)
 * instead of sgemm, which would re-pack it at every step.
 * The layer's forward and backward split the batch over the pool's threads
 * (see lstm_forward_block); the kernels below see one block at a time.
 *
 * Memory, with N = T*B: forward keeps per layer N*(in_l + 7H) floats (input,
 * 4 gates, c, tanh c, h; the input only for layer 0 or when dropout copies it)
 * plus N*H for a dropout mask; backward borrows the shared workspace for
 * N*(4H + 2*max(in, H)) + B*H floats, plus the layer's parameter count for
 * every block after the first. Stepping keeps 2*layers*B*H + 4*B*H; the
 * packed recurrent weights about layers*4H*H. */
#include "nn_lstm.h"
#include "gemm_packed.h"
#include "parallel.h"
#include "rng.h"
#include "tensor_math.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct LstmSaved {
    SavedBuf x;      /* layer input (T, B, in_l): transposed input (layer 0) or dropped-out h below */
    SavedBuf mask;   /* dropout mask of that input (T, B, H); layers >= 1 in training only */
    SavedBuf gates;  /* (T, B, 4H) activations */
    SavedBuf c, tc, h; /* (T, B, H): c_t, tanh(c_t), h_t */
} LstmSaved;

typedef struct LstmCfg {
    int64_t in, hidden;
    int layers;
    float dropout;
    int return_sequences;
    LstmActivation act;
    /* the latest forward, for backward */
    int saved_valid;
    int64_t batch, time;
    int dropped;
    int blocks; /* the batch's split over threads (see lstm_forward_block) */
    LstmSaved saved[LSTM_MAX_LAYERS];
    /* stepping: h and c are (layers, B, H); batch 0 means no state */
    int64_t state_batch;
    SavedBuf state_h, state_c, step_gates;
    /* every layer's W_hh packed for the step products (gemm_packed.h):
     * W_hh^T by forward, W_hh by backward; layer k at k * packed_stride */
    SavedBuf packed;
} LstmCfg;

enum { OPT_IN, OPT_HIDDEN, OPT_LAYERS, OPT_DROPOUT, OPT_RETSEQ, OPT_RACT, OPT_WINIT, OPT_RINIT, OPT_FORGET };
static const LayerOption lstm_options[] = {
    {"input_size", OPT_INT, NULL, 1},
    {"hidden_size", OPT_INT, NULL, 1},
    {"num_layers", OPT_INT, "1", 0},
    {"dropout", OPT_NUMBER, "0", 0},
    {"return_sequences", OPT_BOOL, "true", 0},
    {"recurrent_activation", OPT_STRING, "sigmoid", 0},
    {"weight_init", OPT_STRING, "glorot_uniform", 0},
    {"recurrent_init", OPT_STRING, "orthogonal", 0},
    {"unit_forget_bias", OPT_BOOL, "true", 0},
    {NULL, 0, NULL, 0}};

/* ---- kernels ---- */

/* The element-wise part sits between the GEMMs of every time step, so
 * it is written with GCC/Clang vector extensions, 4 lanes (one SSE register,
 * the x86-64 baseline; wider vectors would change the ABI of these inline
 * helpers without -mavx). libm's tanhf/expf are calls the compiler cannot
 * vectorize; with them this serial pass was about 1/6 of the notebook model's
 * training step. A row's last H % 4 elements go through the same vector code
 * on a zero-padded copy, so every element sees the same math. */
#define VL 4
typedef float vecf __attribute__((vector_size(VL * 4)));
typedef int32_t veci __attribute__((vector_size(VL * 4)));

/* Whole vectors are a constant-size memcpy (one unaligned move); only a
 * row's tail pays for a variable-size copy. */
static inline vecf vec_load(const float *p, int64_t n) {
    vecf v = {0};
    if (n >= VL) memcpy(&v, p, sizeof v);
    else memcpy(&v, p, (size_t)n * sizeof(float));
    return v;
}
static inline void vec_store(float *p, vecf v, int64_t n) {
    if (n >= VL) memcpy(p, &v, sizeof v);
    else memcpy(p, &v, (size_t)n * sizeof(float));
}
static inline vecf vec_splat(float s) {
    vecf v = {0};
    return v + s;
}
/* mask lanes are all ones or all zeros (the result of a vector comparison) */
static inline vecf vec_select(veci mask, vecf a, vecf b) { return (vecf)((mask & (veci)a) | (~mask & (veci)b)); }

/* tanh as Eigen's rational approximation (generic_fast_tanh_float): max
 * absolute error 4e-7 on [-20, 20] against 1e-7 for libm's tanhf; saturates to
 * +-1 past |x| = 7.9; NaN stays NaN (both comparisons are false). */
static inline vecf vec_tanh(vecf a) {
    const float lim = 7.90531110763549805f;
    vecf x = vec_select(a > lim, vec_splat(lim), a);
    x = vec_select(x < -lim, vec_splat(-lim), x);
    vecf x2 = x * x;
    vecf p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
    p = p * x2 + -8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    vecf q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    return x * p / q;
}

/* sigmoid(x) = (1 + tanh(x / 2)) / 2: one approximation for both, abs error 2e-7. */
static inline vecf vec_sigmoid(vecf x) { return 0.5f * vec_tanh(0.5f * x) + 0.5f; }

/* Keras 2's hard sigmoid clip(0.2 x + 0.5, 0, 1), computed like nn_activation.c. */
static inline vecf vec_hard_sigmoid(vecf x) {
    vecf y = 0.2f * x + 0.5f;
    y = vec_select(y < 0.0f, vec_splat(0.0f), y);
    return vec_select(y > 1.0f, vec_splat(1.0f), y);
}

static inline vecf vec_gate(vecf x, LstmActivation act) {
    return act == LSTM_HARD_SIGMOID ? vec_hard_sigmoid(x) : vec_sigmoid(x);
}

/* d gate / d pre-activation from the gate's value y: y (1 - y) for the sigmoid;
 * 0.2 strictly inside (0, 1) for the hard sigmoid, 0 on its flat parts. */
static inline vecf vec_gate_slope(vecf y, LstmActivation act) {
    if (act == LSTM_HARD_SIGMOID) return vec_select((y > 0.0f) & (y < 1.0f), vec_splat(0.2f), vec_splat(0.0f));
    return y * (1.0f - y);
}

void lstm_cell_forward(float *gates, float *c, float *tc, float *h, const float *c_prev, const float *b,
                       int64_t batch, int64_t hidden, LstmActivation act) {
    const int64_t H = hidden;
    for (int64_t n = 0; n < batch; n++) {
        float *gi = gates + n * 4 * H, *gf = gi + H, *gg = gf + H, *go = gg + H;
        float *cn = c + n * H, *hn = h + n * H, *tcn = tc ? tc + n * H : NULL;
        const float *cp = c_prev ? c_prev + n * H : NULL;
        for (int64_t j = 0; j < H; j += VL) {
            int64_t w = H - j;
            vecf i = vec_gate(vec_load(gi + j, w) + vec_load(b + j, w), act);
            vecf f = vec_gate(vec_load(gf + j, w) + vec_load(b + H + j, w), act);
            vecf g = vec_tanh(vec_load(gg + j, w) + vec_load(b + 2 * H + j, w));
            vecf o = vec_gate(vec_load(go + j, w) + vec_load(b + 3 * H + j, w), act);
            vecf cv = i * g;
            if (cp) cv += f * vec_load(cp + j, w);
            vecf t = vec_tanh(cv);
            vec_store(gi + j, i, w);
            vec_store(gf + j, f, w);
            vec_store(gg + j, g, w);
            vec_store(go + j, o, w);
            vec_store(cn + j, cv, w); /* after reading cp: c may alias c_prev */
            if (tcn) vec_store(tcn + j, t, w);
            vec_store(hn + j, o * t, w);
        }
    }
}

void lstm_layer_forward(float *gates, float *c, float *tc, float *h, const float *x, const float *w_ih,
                        const float *w_hh, const float *whh_packed, const float *b, int64_t time, int64_t batch,
                        int64_t in, int64_t hidden, LstmActivation act) {
    const int64_t H = hidden, G = 4 * hidden, N = time * batch;
    /* all time steps' input projections at once */
    blas_sgemm(0, 1, (int)N, (int)G, (int)in, 1.0f, x, (int)in, w_ih, (int)in, 0.0f, gates, (int)G);
    for (int64_t t = 0; t < time; t++) {
        float *gt = gates + t * batch * G;
        /* h_{-1} = 0: the first step has no recurrent term */
        if (t > 0 && whh_packed)
            gemm_packed(batch, G, H, h + (t - 1) * batch * H, H, whh_packed, 1.0f, gt, G);
        else if (t > 0)
            blas_sgemm(0, 1, (int)batch, (int)G, (int)H, 1.0f, h + (t - 1) * batch * H, (int)H, w_hh, (int)H, 1.0f,
                       gt, (int)G);
        lstm_cell_forward(gt, c + t * batch * H, tc + t * batch * H, h + t * batch * H,
                          t > 0 ? c + (t - 1) * batch * H : NULL, b, batch, H, act);
    }
}

/* One step of backward. dh (B, H) is dL/dh_t in full; dc (B, H) is dL/dc_t
 * from step t+1 on input and dL/dc_{t-1} on output. Writes dgates (B, 4H),
 * the gradients of the gate pre-activations. tanh' = 1 - tanh^2 uses the
 * saved values, so it is the derivative of the exact tanh (the approximation
 * differs from it by < 1e-6). */
static void lstm_cell_backward(float *dgates, float *dc, const float *dh, const float *gates, const float *c_prev,
                               const float *tc, int64_t batch, int64_t hidden, LstmActivation act) {
    const int64_t H = hidden;
    for (int64_t n = 0; n < batch; n++) {
        const float *gi = gates + n * 4 * H, *gf = gi + H, *gg = gf + H, *go = gg + H;
        const float *dhn = dh + n * H, *tcn = tc + n * H, *cp = c_prev ? c_prev + n * H : NULL;
        float *di = dgates + n * 4 * H, *df = di + H, *dg = df + H, *dout = dg + H, *dcn = dc + n * H;
        for (int64_t j = 0; j < H; j += VL) {
            int64_t w = H - j;
            vecf i = vec_load(gi + j, w), f = vec_load(gf + j, w), g = vec_load(gg + j, w), o = vec_load(go + j, w);
            vecf t = vec_load(tcn + j, w), dht = vec_load(dhn + j, w);
            vecf dct = vec_load(dcn + j, w) + dht * o * (1.0f - t * t);
            vecf cpv = cp ? vec_load(cp + j, w) : vec_splat(0.0f);
            vec_store(di + j, dct * g * vec_gate_slope(i, act), w);
            vec_store(df + j, dct * cpv * vec_gate_slope(f, act), w);
            vec_store(dg + j, dct * i * (1.0f - g * g), w);
            vec_store(dout + j, dht * t * vec_gate_slope(o, act), w);
            vec_store(dcn + j, dct * f, w);
        }
    }
}

void lstm_layer_backward(float *dx, float *dw_ih, float *dw_hh, float *db, float *dgates, float *dc, float *dh,
                         const float *x, const float *gates, const float *c, const float *tc, const float *h,
                         const float *w_ih, const float *w_hh, const float *whh_packed, int64_t time, int64_t batch,
                         int64_t in, int64_t hidden, LstmActivation act) {
    const int64_t H = hidden, G = 4 * hidden, N = time * batch, BH = batch * H, BG = batch * G;
    memset(dc, 0, (size_t)BH * sizeof *dc);
    for (int64_t t = time - 1; t >= 0; t--) {
        float *dht = dh + t * BH;
        /* h_t also fed step t+1: dh_t += dgates_{t+1} W_hh */
        if (t < time - 1 && whh_packed)
            gemm_packed(batch, H, G, dgates + (t + 1) * BG, G, whh_packed, 1.0f, dht, H);
        else if (t < time - 1)
            blas_sgemm(0, 0, (int)batch, (int)H, (int)G, 1.0f, dgates + (t + 1) * BG, (int)G, w_hh, (int)H, 1.0f,
                       dht, (int)H);
        lstm_cell_backward(dgates + t * BG, dc, dht, gates + t * BG, t > 0 ? c + (t - 1) * BH : NULL, tc + t * BH,
                           batch, H, act);
    }
    /* dW_ih += dgates^T x over all steps; dW_hh pairs step t's gates with h_{t-1} */
    blas_sgemm(1, 0, (int)G, (int)in, (int)N, 1.0f, dgates, (int)G, x, (int)in, 1.0f, dw_ih, (int)in);
    if (time > 1)
        blas_sgemm(1, 0, (int)G, (int)H, (int)(N - batch), 1.0f, dgates + BG, (int)G, h, (int)H, 1.0f, dw_hh, (int)H);
    for (int64_t r = 0; r < N; r++) {
        const float *row = dgates + r * G;
        for (int64_t j = 0; j < G; j += VL) vec_store(db + j, vec_load(db + j, G - j) + vec_load(row + j, G - j), G - j);
    }
    if (dx) blas_sgemm(0, 0, (int)N, (int)in, (int)G, 1.0f, dgates, (int)G, w_ih, (int)in, 0.0f, dx, (int)in);
}

/* (A, B, F) -> (B, A, F): between batch-first tensors and time-major buffers. */
static void swap_leading(float *dst, const float *src, int64_t a, int64_t b, int64_t f) {
    for (int64_t i = 0; i < a; i++)
        for (int64_t j = 0; j < b; j++) memcpy(dst + (j * a + i) * f, src + (i * b + j) * f, (size_t)f * sizeof *dst);
}

/* ---- the layer kind ---- */

static int lstm_init(Layer *m, const OptValues *v, char *err) {
    LstmCfg *c = m->cfg;
    double in = v->num[OPT_IN], hidden = v->num[OPT_HIDDEN], layers = v->num[OPT_LAYERS], p = v->num[OPT_DROPOUT];
    /* 4H and every GEMM dimension must fit a BLAS int */
    if (in < 1 || in > (1 << 26) || hidden < 1 || hidden > (1 << 26))
        return layer_fail(err, "input_size and hidden_size must be in [1, 2^26], got %.0f and %.0f", in, hidden);
    if (layers < 1 || layers > LSTM_MAX_LAYERS)
        return layer_fail(err, "num_layers must be in [1, %d] (3 parameters per layer, at most %d per layer object), got %.0f",
                          LSTM_MAX_LAYERS, LAYER_MAX_PARAMS, layers);
    if (!(p >= 0 && p < 1)) return layer_fail(err, "dropout must be in [0, 1), got %g", p);
    const char *ract = v->str[OPT_RACT];
    if (strcmp(ract, "sigmoid") == 0) c->act = LSTM_SIGMOID;
    else if (strcmp(ract, "hard_sigmoid") == 0) c->act = LSTM_HARD_SIGMOID;
    else return layer_fail(err, "unknown recurrent_activation '%s' (known: sigmoid, hard_sigmoid)", ract);
    ParamInit wi, ri;
    if (param_init_parse(v->str[OPT_WINIT], &wi))
        return layer_fail(err, "unknown weight_init '%s' (known: %s)", v->str[OPT_WINIT], param_init_names);
    if (param_init_parse(v->str[OPT_RINIT], &ri))
        return layer_fail(err, "unknown recurrent_init '%s' (known: %s)", v->str[OPT_RINIT], param_init_names);
    c->in = (int64_t)in;
    c->hidden = (int64_t)hidden;
    c->layers = (int)layers;
    c->dropout = (float)p;
    c->return_sequences = v->num[OPT_RETSEQ] != 0;
    const int64_t H = c->hidden, G = 4 * H;
    for (int k = 0; k < c->layers; k++) {
        int64_t in_k = k ? H : c->in;
        int64_t wih[2] = {G, in_k}, whh[2] = {G, H};
        char name[32], a[32], b[32];
        /* Keras' fans for a kernel (in, 4H): fan_in = in, fan_out = 4H */
        snprintf(name, sizeof name, "weight_ih_l%d", k);
        layer_add_param(m, name, 2, wih, wi, in_k, G);
        snprintf(name, sizeof name, "weight_hh_l%d", k);
        layer_add_param(m, name, 2, whh, ri, H, G);
        snprintf(name, sizeof name, "bias_l%d", k);
        int bi = layer_add_param(m, name, 1, &G, v->num[OPT_FORGET] ? INIT_LSTM_BIAS : INIT_ZEROS, H, G);
        /* PyTorch has two biases that are only ever summed */
        snprintf(a, sizeof a, "bias_ih_l%d", k);
        snprintf(b, sizeof b, "bias_hh_l%d", k);
        memcpy(m->params[bi].sum_of[0], a, sizeof a);
        memcpy(m->params[bi].sum_of[1], b, sizeof b);
    }
    return 0;
}

/* The one shape check: (batch, time, input_size) -> (batch, time, H) or (batch, H). */
static int lstm_shape(const Layer *m, int ndim, const int64_t *in, int *ondim, int64_t *out, char *err) {
    const LstmCfg *c = m->cfg;
    char s[256];
    if (ndim != 3)
        return layer_fail(err, "input of shape %s must be 3-d (batch, time, features)%s", shape_format(s, sizeof s, ndim, in),
                          ndim == 2 ? "; for one time step use step() or add a time dimension of size 1" : "");
    if (in[2] != c->in)
        return layer_fail(err, "input of shape %s has %lld features, expected %lld (input_size)",
                          shape_format(s, sizeof s, ndim, in), (long long)in[2], (long long)c->in);
    if (in[1] < 1) return layer_fail(err, "input of shape %s has no time steps", shape_format(s, sizeof s, ndim, in));
    if (in[0] > INT_MAX / in[1])
        return layer_fail(err, "input of shape %s: batch * time must be at most %d", shape_format(s, sizeof s, ndim, in), INT_MAX);
    out[0] = in[0];
    if (c->return_sequences) {
        out[1] = in[1];
        out[2] = c->hidden;
        *ondim = 3;
    } else {
        out[1] = c->hidden;
        *ondim = 2;
    }
    return 0;
}

#define P(k, j) tensor_data(m->params[3 * (k) + (j)].value)
#define DP(k, j) tensor_data(m->params[3 * (k) + (j)].grad)

/* Layer k's input as saved by forward, (T, B, in_k). */
static const float *layer_input(const LstmCfg *c, int k) {
    if (k == 0 || c->dropped) return c->saved[k].x.data;
    return c->saved[k - 1].h.data;
}

/* ---- the batch in blocks, one per pool thread ----
 * Sequences never interact, so forward and backward split the batch into
 * `blocks` contiguous blocks (parallel_split) and run each block through every
 * layer on its own pool thread with single-threaded GEMMs: no BLAS threads
 * waiting on each other at every time step, and the element-wise cell passes
 * run on all cores. Block p, batch rows [b0, b1), is itself time-major,
 * (T, b1 - b0, F), starting at float T*b0*F of every (T, B, F) buffer; one
 * block is the plain (T, B, F) layout. The dropout masks are drawn in the
 * order of (T, B, H) whatever the blocks, and every row of every block
 * computes the same math, so results do not depend on the thread timing; the
 * thread count changes only the order of the weight gradients' sums (each
 * block adds into a part of its own, summed in block order). */

typedef struct LstmRun {
    LstmCfg *c;
    Layer *m;
    int64_t B, T;
    const float *packed; /* NULL: the step products go to blas_sgemm */
    int64_t packed_stride;
    /* backward */
    float *dgates, *dh, *dbelow, *dc, *part;
    int64_t room, part_floats; /* room: see blocks_from_batch */
    int want_dx;
} LstmRun;

/* Packs every layer's recurrent weights for the step products: W_hh^T for
 * forward (trans = 1), W_hh for backward. Leaves r->packed NULL (the BLAS
 * path) without AVX2 + FMA, with one time step (there are no step
 * products), or with blocks of one sequence: blas_sgemm sends a one-row
 * product to sgemv, which reads the weights once and packs nothing, so
 * packing them here would only add a pass (the generation and evaluation
 * loops run batch 1). Fails only when out of memory. */
static int pack_recurrent(LstmRun *r, int trans, char *err) {
    LstmCfg *c = r->c;
    Layer *m = r->m;
    const int64_t H = c->hidden, G = 4 * H;
    r->packed = NULL;
    if (r->T < 2 || r->B / c->blocks < 2 || !gemm_packed_usable()) return 0;
    r->packed_stride = gemm_packed_floats(trans ? H : G, trans ? G : H);
    if (!saved_reserve(&c->packed, (size_t)(c->layers * r->packed_stride)))
        return layer_fail(err, "out of memory for the packed recurrent weights (%lld floats)",
                          (long long)(c->layers * r->packed_stride));
    for (int k = 0; k < c->layers; k++)
        gemm_pack_b(c->packed.data + k * r->packed_stride, P(k, 1), trans, trans ? H : G, trans ? G : H, H);
    r->packed = c->packed.data;
    return 0;
}

static const float *packed_layer(const LstmRun *r, int k) {
    return r->packed ? r->packed + k * r->packed_stride : NULL;
}

static int64_t lstm_blocks(int64_t batch) {
    int64_t p = parallel_threads();
    return batch < p ? batch : p;
}

static void block_rows(int64_t *b0, int64_t *b1, const LstmRun *r, int p) {
    parallel_split(b0, b1, r->B, p, r->c->blocks);
}

/* Batch-first (B, T, F) <-> the blocks; the batch's rows of block p are
 * contiguous on the batch-first side. The blocks start at T*b0*room, room >= F:
 * backward's gradient buffers hold F = in or H per layer, and a block's place
 * must not depend on which, as the blocks move through the layers at their
 * own pace. */
static void blocks_from_batch(float *dst, int64_t room, const float *src, int64_t B, int64_t T, int64_t F, int blocks) {
    for (int p = 0; p < blocks; p++) {
        int64_t b0, b1;
        parallel_split(&b0, &b1, B, p, blocks);
        swap_leading(dst + T * b0 * room, src + b0 * T * F, b1 - b0, T, F);
    }
}

static void batch_from_blocks(float *dst, const float *src, int64_t room, int64_t B, int64_t T, int64_t F, int blocks) {
    for (int p = 0; p < blocks; p++) {
        int64_t b0, b1;
        parallel_split(&b0, &b1, B, p, blocks);
        swap_leading(dst + b0 * T * F, src + T * b0 * room, T, b1 - b0, F);
    }
}

/* Runs fn for every block: on the pool, or one after another (BLAS keeping
 * its threads) when the pool has fewer threads than the blocks of the
 * forward that backward follows. */
static void blocks_run(const LstmRun *r, ParallelTask fn) {
    if (r->c->blocks <= parallel_threads()) {
        parallel_run(r->c->blocks, fn, (void *)r);
        return;
    }
    for (int p = 0; p < r->c->blocks; p++) fn((void *)r, p, r->c->blocks);
}

static void lstm_forward_block(void *arg, int p, int nt) {
    const LstmRun *r = arg;
    LstmCfg *c = r->c;
    Layer *m = r->m;
    const int64_t T = r->T, H = c->hidden;
    int64_t b0, b1;
    block_rows(&b0, &b1, r, p);
    (void)nt;
    const int64_t bp = b1 - b0, at = T * b0 * H; /* offset of the block in a (T, B, H) buffer */
    for (int k = 0; k < c->layers; k++) {
        LstmSaved *s = &c->saved[k];
        const int64_t in_k = k ? H : c->in;
        if (k > 0 && c->dropped) /* inverted dropout on the output of the layer below */
            for (int64_t i = at; i < at + T * bp * H; i++) s->x.data[i] = c->saved[k - 1].h.data[i] * s->mask.data[i];
        lstm_layer_forward(s->gates.data + 4 * at, s->c.data + at, s->tc.data + at, s->h.data + at,
                           layer_input(c, k) + T * b0 * in_k, P(k, 0), P(k, 1), packed_layer(r, k), P(k, 2), T, bp,
                           in_k, H, c->act);
    }
}

static int lstm_fwd(Layer *m, const Tensor *x, Tensor *y, char *err) {
    LstmCfg *c = m->cfg;
    const int64_t B = x->shape[0], T = x->shape[1], H = c->hidden, N = B * T;
    c->saved_valid = 0;
    c->dropped = m->training && c->dropout > 0 && c->layers > 1;
    if (N == 0) { /* an empty batch: nothing to compute or save */
        c->batch = B;
        c->time = T;
        c->blocks = 1;
        c->saved_valid = 1;
        return 0;
    }
    for (int k = 0; k < c->layers; k++) {
        LstmSaved *s = &c->saved[k];
        int ok = saved_reserve(&s->gates, (size_t)(N * 4 * H)) && saved_reserve(&s->c, (size_t)(N * H)) &&
                 saved_reserve(&s->tc, (size_t)(N * H)) && saved_reserve(&s->h, (size_t)(N * H));
        if (ok && (k == 0 || c->dropped)) ok = saved_reserve(&s->x, (size_t)(N * (k ? H : c->in))) != NULL;
        if (ok && k > 0 && c->dropped) ok = saved_reserve(&s->mask, (size_t)(N * H)) != NULL;
        if (!ok)
            return layer_fail(err, "out of memory saving activations of layer %d for batch %lld, time %lld", k + 1,
                              (long long)B, (long long)T);
    }
    c->blocks = (int)lstm_blocks(B);
    LstmRun r = {.c = c, .m = m, .B = B, .T = T};
    if (pack_recurrent(&r, 1, err)) return -1;
    blocks_from_batch(c->saved[0].x.data, c->in, tensor_data(x), B, T, c->in, c->blocks);
    if (c->dropped) { /* every mask in (T, B, H) order, stored by block */
        const float keep = 1.0f / (1.0f - c->dropout);
        for (int k = 1; k < c->layers; k++)
            for (int64_t t = 0; t < T; t++)
                for (int p = 0; p < c->blocks; p++) {
                    int64_t b0, b1;
                    block_rows(&b0, &b1, &r, p);
                    float *mask = c->saved[k].mask.data + (T * b0 + t * (b1 - b0)) * H;
                    rng_dropout_mask(&rng_global, mask, (b1 - b0) * H, c->dropout, keep);
                }
    }
    blocks_run(&r, lstm_forward_block);
    const float *top = c->saved[c->layers - 1].h.data;
    if (c->return_sequences) {
        batch_from_blocks(tensor_data(y), top, H, B, T, H, c->blocks);
    } else { /* each block's last step */
        for (int p = 0; p < c->blocks; p++) {
            int64_t b0, b1;
            block_rows(&b0, &b1, &r, p);
            memcpy(tensor_data(y) + b0 * H, top + (T * b0 + (T - 1) * (b1 - b0)) * H, (size_t)((b1 - b0) * H) * sizeof(float));
        }
    }
    c->batch = B;
    c->time = T;
    c->saved_valid = 1;
    return 0;
}

/* Where parameter i's gradient sits in a block's part: the parameters in order. */
static int64_t param_offset(const Layer *m, int i) {
    int64_t at = 0;
    for (int j = 0; j < i; j++) at += tensor_numel(m->params[j].grad);
    return at;
}

/* Backward of block p through every layer, top down. Block 0 adds into the
 * gradients, the others into their own part (zeroed here). */
static void lstm_backward_block(void *arg, int p, int nt) {
    const LstmRun *r = arg;
    const LstmCfg *c = r->c;
    Layer *m = r->m;
    const int64_t T = r->T, H = c->hidden;
    int64_t b0, b1;
    block_rows(&b0, &b1, r, p);
    (void)nt;
    const int64_t bp = b1 - b0, room = r->room;
    float *part = p ? r->part + (p - 1) * r->part_floats : NULL;
    if (part) memset(part, 0, (size_t)r->part_floats * sizeof *part);
    float *dh = r->dh, *dbelow = r->dbelow;
    for (int k = c->layers - 1; k >= 0; k--) {
        const LstmSaved *s = &c->saved[k];
        const int64_t in_k = k ? H : c->in, at = T * b0 * H;
        float *g[3];
        for (int j = 0; j < 3; j++) g[j] = part ? part + param_offset(m, 3 * k + j) : DP(k, j);
        /* the first layer's input gradient only when asked for */
        float *dx = k == 0 && !r->want_dx ? NULL : dbelow + T * b0 * room;
        lstm_layer_backward(dx, g[0], g[1], g[2], r->dgates + 4 * at, r->dc + b0 * H, dh + T * b0 * room,
                            layer_input(c, k) + T * b0 * in_k, s->gates.data + 4 * at, s->c.data + at,
                            s->tc.data + at, s->h.data + at, P(k, 0), P(k, 1), packed_layer(r, k), T, bp, in_k, H,
                            c->act);
        if (k > 0 && c->dropped)
            for (int64_t i = 0; i < T * bp * H; i++) dbelow[T * b0 * room + i] *= s->mask.data[at + i];
        float *tmp = dh;
        dh = dbelow;
        dbelow = tmp;
    }
}

static int lstm_bwd(Layer *m, const Tensor *x, const Tensor *y, const Tensor *dy, Tensor *dx, char *err) {
    LstmCfg *c = m->cfg;
    const int64_t B = x->shape[0], T = x->shape[1], H = c->hidden, N = B * T;
    if (!c->saved_valid || c->batch != B || c->time != T)
        return layer_fail(err, "backward: call forward with this input first");
    if (N == 0) return 0;
    const int64_t wmax = c->in > H ? c->in : H; /* the gradient buffers' room per row */
    const int64_t params = param_offset(m, m->nparams);
    float *ws = workspace_get((size_t)(N * 4 * H + 2 * N * wmax + B * H + (c->blocks - 1) * params));
    if (!ws) return layer_fail(err, "backward: out of memory for the workspace (batch %lld, time %lld)", (long long)B, (long long)T);
    LstmRun r = {.c = c, .m = m, .B = B, .T = T, .dgates = ws, .room = wmax, .want_dx = dx != NULL, .part_floats = params};
    r.dh = r.dgates + N * 4 * H;
    r.dbelow = r.dh + N * wmax;
    r.dc = r.dbelow + N * wmax;
    r.part = r.dc + B * H;
    if (pack_recurrent(&r, 0, err)) return -1;
    if (c->return_sequences) {
        blocks_from_batch(r.dh, wmax, tensor_data(dy), B, T, H, c->blocks);
    } else { /* only the last step's output was used */
        memset(r.dh, 0, (size_t)(N * wmax) * sizeof(float));
        for (int p = 0; p < c->blocks; p++) {
            int64_t b0, b1;
            block_rows(&b0, &b1, &r, p);
            memcpy(r.dh + T * b0 * wmax + (T - 1) * (b1 - b0) * H, tensor_data(dy) + b0 * H, (size_t)((b1 - b0) * H) * sizeof(float));
        }
    }
    blocks_run(&r, lstm_backward_block);
    for (int p = 1; p < c->blocks; p++)
        for (int i = 0; i < m->nparams; i++)
            floats_add(tensor_data(m->params[i].grad), r.part + (p - 1) * params + param_offset(m, i),
                       tensor_numel(m->params[i].grad));
    /* after an even number of layers the input gradient is back in dh */
    if (dx) batch_from_blocks(tensor_data(dx), c->layers % 2 ? r.dbelow : r.dh, wmax, B, T, c->in, c->blocks);
    return 0;
}

static void lstm_destroy(Layer *m) {
    LstmCfg *c = m->cfg;
    for (int k = 0; k < LSTM_MAX_LAYERS; k++) {
        LstmSaved *s = &c->saved[k];
        saved_free(&s->x);
        saved_free(&s->mask);
        saved_free(&s->gates);
        saved_free(&s->c);
        saved_free(&s->tc);
        saved_free(&s->h);
    }
    saved_free(&c->state_h);
    saved_free(&c->state_c);
    saved_free(&c->step_gates);
    saved_free(&c->packed);
}

const LayerKind lstm_kind = {"LSTM", lstm_options, sizeof(LstmCfg), lstm_init, lstm_shape,
                             lstm_fwd, lstm_bwd, lstm_destroy, .skips_dx = 1};

/* ---- sizes and stepping ---- */

int64_t lstm_input_size(const Layer *m) { return ((const LstmCfg *)m->cfg)->in; }
int64_t lstm_hidden_size(const Layer *m) { return ((const LstmCfg *)m->cfg)->hidden; }
int lstm_num_layers(const Layer *m) { return ((const LstmCfg *)m->cfg)->layers; }
int64_t lstm_state_batch(const Layer *m) { return ((const LstmCfg *)m->cfg)->state_batch; }

void lstm_state_reset(Layer *m) { ((LstmCfg *)m->cfg)->state_batch = 0; }

const float *lstm_state_h(const Layer *m, int k) {
    const LstmCfg *c = m->cfg;
    return c->state_batch ? c->state_h.data + k * c->state_batch * c->hidden : NULL;
}

const float *lstm_state_c(const Layer *m, int k) {
    const LstmCfg *c = m->cfg;
    return c->state_batch ? c->state_c.data + k * c->state_batch * c->hidden : NULL;
}

/* Makes room for a state of this batch. A failure drops the old state: its
 * buffers may have been replaced already. */
static int state_reserve(LstmCfg *c, int64_t batch, char *err) {
    size_t n = (size_t)(c->layers * batch * c->hidden);
    if (!saved_reserve(&c->state_h, n) || !saved_reserve(&c->state_c, n) ||
        !saved_reserve(&c->step_gates, (size_t)(batch * 4 * c->hidden))) {
        c->state_batch = 0;
        return layer_fail(err, "out of memory for the state of batch %lld", (long long)batch);
    }
    return 0;
}

int lstm_state_set(Layer *m, int64_t batch, const float *const *h, const float *const *cs, char *err) {
    LstmCfg *c = m->cfg;
    if (batch < 1) return layer_fail(err, "state batch must be at least 1, got %lld", (long long)batch);
    if (state_reserve(c, batch, err)) return -1;
    size_t n = (size_t)(batch * c->hidden);
    for (int k = 0; k < c->layers; k++) {
        memcpy(c->state_h.data + k * n, h[k], n * sizeof(float));
        memcpy(c->state_c.data + k * n, cs[k], n * sizeof(float));
    }
    c->state_batch = batch;
    return 0;
}

int lstm_step(Layer *m, float *y, const float *x, int64_t batch, char *err) {
    LstmCfg *c = m->cfg;
    const int64_t H = c->hidden, G = 4 * H, BH = batch * H;
    if (batch < 1) return layer_fail(err, "step: batch must be at least 1, got %lld", (long long)batch);
    if (c->state_batch && c->state_batch != batch)
        return layer_fail(err, "step: input has batch %lld, the state holds batch %lld (call reset_state() to change it)",
                          (long long)batch, (long long)c->state_batch);
    if (!c->state_batch) {
        if (state_reserve(c, batch, err)) return -1;
        memset(c->state_h.data, 0, (size_t)(c->layers * BH) * sizeof(float));
        memset(c->state_c.data, 0, (size_t)(c->layers * BH) * sizeof(float));
        c->state_batch = batch;
    }
    float *gates = c->step_gates.data;
    for (int k = 0; k < c->layers; k++) {
        const int64_t in_k = k ? H : c->in;
        const float *xin = k ? c->state_h.data + (k - 1) * BH : x;
        float *h = c->state_h.data + k * BH, *cs = c->state_c.data + k * BH;
        /* same order of sums as lstm_layer_forward: (x W_ih^T + h W_hh^T) + b */
        blas_sgemm(0, 1, (int)batch, (int)G, (int)in_k, 1.0f, xin, (int)in_k, P(k, 0), (int)in_k, 0.0f, gates, (int)G);
        blas_sgemm(0, 1, (int)batch, (int)G, (int)H, 1.0f, h, (int)H, P(k, 1), (int)H, 1.0f, gates, (int)G);
        lstm_cell_forward(gates, cs, NULL, h, cs, P(k, 2), batch, H, c->act);
    }
    memcpy(y, c->state_h.data + (c->layers - 1) * BH, (size_t)BH * sizeof(float));
    return 0;
}

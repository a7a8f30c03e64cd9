/* nn_dropout.c: inverted dropout: in training, zero each element with
 * probability p and scale the rest by 1/(1-p); identity in evaluation.
 * The mask (0 or 1/(1-p) per element) is saved for backward. */
#include "layer.h"
#include "rng.h"

#include <string.h>

typedef struct DropoutCfg {
    float p;
    SavedBuf mask;
    int used_mask; /* whether the latest forward drew a mask */
} DropoutCfg;

static const LayerOption dropout_options[] = {{"p", OPT_NUMBER, "0.5", 1}, {NULL, 0, NULL, 0}};

void dropout_forward(float *y, float *mask, const float *x, int64_t n, float p) {
    float keep = 1.0f / (1.0f - p);
    rng_dropout_mask(&rng_global, mask, n, p, keep);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * mask[i];
}

void dropout_backward(float *dx, const float *dy, const float *mask, int64_t n) {
    for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * mask[i];
}

static int dropout_init(Layer *m, const OptValues *v, char *err) {
    DropoutCfg *c = m->cfg;
    if (!(v->num[0] >= 0 && v->num[0] < 1)) return layer_fail(err, "p must be in [0, 1), got %g", v->num[0]);
    c->p = (float)v->num[0];
    return 0;
}

static int dropout_shape(const Layer *m, int ndim, const int64_t *in, int *ondim, int64_t *out, char *err) {
    *ondim = ndim;
    memcpy(out, in, (size_t)ndim * sizeof *in);
    return 0;
}

static int dropout_fwd(Layer *m, const Tensor *x, Tensor *y, char *err) {
    DropoutCfg *c = m->cfg;
    int64_t n = tensor_numel(x);
    c->used_mask = m->training && c->p > 0;
    if (!c->used_mask) {
        memcpy(tensor_data(y), tensor_data(x), (size_t)n * sizeof(float));
        return 0;
    }
    float *mask = saved_reserve(&c->mask, (size_t)n);
    if (!mask) return layer_fail(err, "out of memory for the dropout mask of %lld elements", (long long)n);
    dropout_forward(tensor_data(y), mask, tensor_data(x), n, c->p);
    return 0;
}

static int dropout_bwd(Layer *m, const Tensor *x, const Tensor *y, const Tensor *dy, Tensor *dx, char *err) {
    DropoutCfg *c = m->cfg;
    int64_t n = tensor_numel(x);
    if (!c->used_mask) memcpy(tensor_data(dx), tensor_data(dy), (size_t)n * sizeof(float));
    else dropout_backward(tensor_data(dx), tensor_data(dy), c->mask.data, n);
    return 0;
}

static void dropout_destroy(Layer *m) { saved_free(&((DropoutCfg *)m->cfg)->mask); }

const LayerKind dropout_kind = {"Dropout", dropout_options, sizeof(DropoutCfg), dropout_init, dropout_shape,
                                dropout_fwd, dropout_bwd, dropout_destroy, 0};

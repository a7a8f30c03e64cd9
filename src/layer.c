/* layer.c: what all layer kinds share: parameter declaration and
 * initialisers, the shared workspace, saved buffers, error text. */
#include "layer.h"
#include "rng.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int layer_fail(char *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, LAYER_ERR, fmt, ap);
    va_end(ap);
    return -1;
}

int layer_add_param(Layer *m, const char *name, int ndim, const int64_t *shape, ParamInit init,
                    int64_t fan_in, int64_t fan_out) {
    if (m->nparams >= LAYER_MAX_PARAMS || ndim > 4) return -1;
    Param *p = &m->params[m->nparams];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    memcpy(p->shape, shape, (size_t)ndim * sizeof *shape);
    p->init = init;
    p->fan_in = fan_in;
    p->fan_out = fan_out;
    p->blocks = 4;
    return m->nparams++;
}

/* Orthogonal (Saxe et al.), as Keras: a normal matrix made orthonormal along
 * its shorter side by modified Gram-Schmidt in double precision. */
static void init_orthogonal(float *w, int64_t rows, int64_t cols) {
    int64_t n = rows >= cols ? cols : rows, len = rows >= cols ? rows : cols;
    double *v = malloc((size_t)(n * len) * sizeof *v);
    if (!v) { /* fall back to a scaled normal: still a sane start */
        for (int64_t i = 0; i < rows * cols; i++) w[i] = (float)(rng_normal(&rng_global) / sqrt((double)len));
        return;
    }
    for (int64_t i = 0; i < n * len; i++) v[i] = rng_normal(&rng_global);
    for (int64_t i = 0; i < n; i++) {
        double *vi = v + i * len;
        for (int64_t j = 0; j < i; j++) {
            double *vj = v + j * len, dot = 0;
            for (int64_t k = 0; k < len; k++) dot += vi[k] * vj[k];
            for (int64_t k = 0; k < len; k++) vi[k] -= dot * vj[k];
        }
        double norm = 0;
        for (int64_t k = 0; k < len; k++) norm += vi[k] * vi[k];
        norm = sqrt(norm);
        for (int64_t k = 0; k < len; k++) vi[k] = norm > 0 ? vi[k] / norm : 0;
    }
    /* vectors are columns when rows >= cols, else rows */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            w[r * cols + c] = (float)(rows >= cols ? v[c * len + r] : v[r * len + c]);
    free(v);
}

void param_init(Tensor *t, ParamInit init, int64_t fan_in, int64_t fan_out, int64_t blocks) {
    float *w = tensor_data(t);
    int64_t n = tensor_numel(t);
    double fi = fan_in > 0 ? (double)fan_in : 1, fo = fan_out > 0 ? (double)fan_out : 1;
    double bound;
    switch (init) {
    case INIT_ZEROS: tensor_fill(t, 0); break;
    case INIT_ONES: tensor_fill(t, 1); break;
    case INIT_GLOROT_UNIFORM:
        bound = sqrt(6.0 / (fi + fo));
        for (int64_t i = 0; i < n; i++) w[i] = (float)((2 * rng_uniform(&rng_global) - 1) * bound);
        break;
    case INIT_GLOROT_NORMAL: /* Keras: truncated at 2 std */
        bound = sqrt(2.0 / (fi + fo)) / 0.87962566103423978;
        for (int64_t i = 0; i < n; i++) {
            double z;
            do z = rng_normal(&rng_global); while (fabs(z) > 2);
            w[i] = (float)(z * bound);
        }
        break;
    case INIT_KAIMING_UNIFORM: /* He, for ReLU: gain sqrt(2) */
        bound = sqrt(6.0 / fi);
        for (int64_t i = 0; i < n; i++) w[i] = (float)((2 * rng_uniform(&rng_global) - 1) * bound);
        break;
    case INIT_KAIMING_NORMAL:
        bound = sqrt(2.0 / fi);
        for (int64_t i = 0; i < n; i++) w[i] = (float)(rng_normal(&rng_global) * bound);
        break;
    case INIT_TORCH_DEFAULT: /* PyTorch's Linear/Conv default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
        bound = 1.0 / sqrt(fi);
        for (int64_t i = 0; i < n; i++) w[i] = (float)((2 * rng_uniform(&rng_global) - 1) * bound);
        break;
    case INIT_ORTHOGONAL: {
        int64_t rows = t->ndim >= 1 ? t->shape[0] : 1, cols = rows ? n / rows : 0;
        init_orthogonal(w, rows, cols);
        break;
    }
    case INIT_LSTM_BIAS: { /* zeros, with the forget gate (block 2 of i, f, g, o) at 1 */
        tensor_fill(t, 0);
        int64_t h = blocks > 0 ? n / blocks : n;
        for (int64_t i = h; i < 2 * h && i < n; i++) w[i] = 1;
        break;
    }
    }
}

const char *const param_init_names =
    "zeros, ones, glorot_uniform, glorot_normal, kaiming_uniform, kaiming_normal, orthogonal, torch_default";

int param_init_parse(const char *name, ParamInit *out) {
    static const struct {
        const char *name;
        ParamInit init;
    } table[] = {{"zeros", INIT_ZEROS}, {"ones", INIT_ONES}, {"glorot_uniform", INIT_GLOROT_UNIFORM},
                 {"glorot_normal", INIT_GLOROT_NORMAL}, {"kaiming_uniform", INIT_KAIMING_UNIFORM},
                 {"kaiming_normal", INIT_KAIMING_NORMAL}, {"orthogonal", INIT_ORTHOGONAL},
                 {"torch_default", INIT_TORCH_DEFAULT}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(name, table[i].name) == 0) {
            *out = table[i].init;
            return 0;
        }
    return -1;
}

void layer_reset_parameters(Layer *m) {
    for (int i = 0; i < m->nparams; i++) {
        Param *p = &m->params[i];
        if (p->value) param_init(p->value, p->init, p->fan_in, p->fan_out, p->blocks);
    }
}

static struct {
    float *data;
    size_t cap;
} workspace;

float *workspace_get(size_t floats) {
    if (floats <= workspace.cap && workspace.data) return workspace.data;
    size_t bytes = ((floats ? floats : 1) * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes);
    if (!p) return NULL;
    free(workspace.data);
    workspace.data = p;
    workspace.cap = bytes / sizeof(float);
    return p;
}

void workspace_free(void) {
    free(workspace.data);
    workspace.data = NULL;
    workspace.cap = 0;
}

float *saved_reserve(SavedBuf *b, size_t floats) {
    if (floats <= b->cap && b->data) return b->data;
    size_t bytes = ((floats ? floats : 1) * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes);
    if (!p) return NULL;
    free(b->data);
    b->data = p;
    b->cap = bytes / sizeof(float);
    return p;
}

void saved_free(SavedBuf *b) {
    free(b->data);
    b->data = NULL;
    b->cap = 0;
}

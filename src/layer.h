/* layer.h: the neural-layer framework, in plain C (no Lua).
 *
 * A layer is a Layer struct plus a LayerKind: a table of functions like a
 * vtable. Every kind lives in one file nn_<kind>.c holding its kernels
 * (<kind>_forward / <kind>_backward side by side) and its LayerKind; the Lua
 * binding (bind_nn.c) is generic and lists every kind in one table.
 *
 * Life of a call, driven by the binding:
 *   kind->init(m, opts)        reads parsed options, declares parameters
 *   (binding allocates parameter and gradient tensors, then layer_reset_parameters)
 *   kind->shape(m, in -> out)  the one shape check, shared by forward and backward
 *   kind->forward(m, x, y)     y is owned by the layer (reused between calls)
 *   kind->backward(m, x, y, dy, dx)  adds parameter gradients (+=), writes dx
 *                              (dx NULL: no input gradient, for kinds with skips_dx)
 *   kind->destroy(m)           frees what forward saved for backward
 * Tensors given to forward/backward are contiguous; x and y are the ones of
 * the latest forward (Torch7's contract). */
#ifndef DD_LAYER_H
#define DD_LAYER_H

#include <stddef.h>
#include "tensor.h"

#define LAYER_MAX_PARAMS 16
#define LAYER_MAX_OPTIONS 16
#define LAYER_ERR 512

typedef enum OptType { OPT_INT, OPT_NUMBER, OPT_BOOL, OPT_STRING, OPT_INT_OR_STRING } OptType;

/* An option a kind accepts; positional ones come first, in order. `dflt` is
 * the default as text ("3", "same", "true"); NULL makes it required. */
typedef struct LayerOption {
    const char *name;
    OptType type;
    const char *dflt;
    int positional;
} LayerOption;

/* Parsed option values, indexed like the kind's options array. */
typedef struct OptValues {
    int is_string[LAYER_MAX_OPTIONS];
    double num[LAYER_MAX_OPTIONS];
    char str[LAYER_MAX_OPTIONS][32];
} OptValues;

typedef enum ParamInit {
    INIT_ZEROS, INIT_ONES, INIT_GLOROT_UNIFORM, INIT_GLOROT_NORMAL, INIT_KAIMING_UNIFORM,
    INIT_KAIMING_NORMAL, INIT_ORTHOGONAL, INIT_LSTM_BIAS, INIT_TORCH_DEFAULT,
} ParamInit;

typedef struct Param {
    char name[32];
    int ndim;
    int64_t shape[4];
    ParamInit init;
    int64_t fan_in, fan_out; /* for the scaled initialisers */
    int64_t blocks;          /* LSTM_BIAS: number of gate blocks (4) */
    /* load_state_dict may supply this parameter as the sum of two entries
     * (PyTorch's LSTM bias_ih + bias_hh); empty when not. */
    char sum_of[2][32];
    /* A buffer (BatchNorm's running statistics): saved and loaded with the
     * parameters (state_dict) but not trained (not in parameters()). */
    int buffer;
    Tensor *value, *grad;    /* set by the binding; point into Lua-owned userdata */
} Param;

typedef struct LayerKind LayerKind;

typedef struct Layer {
    const LayerKind *kind;
    int training;
    int nparams;
    Param params[LAYER_MAX_PARAMS];
    void *cfg;       /* the kind's own struct, kind->cfg_size bytes, zeroed */
} Layer;

struct LayerKind {
    const char *name;
    const LayerOption *options; /* terminated by {NULL} */
    size_t cfg_size;
    int (*init)(Layer *m, const OptValues *v, char *err);
    int (*shape)(const Layer *m, int ndim, const int64_t *in, int *out_ndim, int64_t *out, char *err);
    int (*forward)(Layer *m, const Tensor *x, Tensor *y, char *err);
    int (*backward)(Layer *m, const Tensor *x, const Tensor *y, const Tensor *dy, Tensor *dx, char *err);
    void (*destroy)(Layer *m); /* may be NULL */
    /* backward accepts dx == NULL and then skips the input gradient (asked
     * for with backward(x, dy, false): the model's input needs none) */
    int skips_dx;
};

/* Declares parameter i (the binding allocates it). Returns its index. */
int layer_add_param(Layer *m, const char *name, int ndim, const int64_t *shape, ParamInit init,
                    int64_t fan_in, int64_t fan_out);
/* Draws every parameter from its initialiser with rng_global. */
void layer_reset_parameters(Layer *m);
void param_init(Tensor *t, ParamInit init, int64_t fan_in, int64_t fan_out, int64_t blocks);

/* Scratch memory shared by all layers: one buffer, grown to the largest
 * request and reused (darknet's workspace). NULL when out of memory. The
 * contents do not survive the next call of another layer. */
float *workspace_get(size_t floats);
void workspace_free(void);

/* A buffer a layer keeps between forward and backward, grown on demand. */
typedef struct SavedBuf {
    float *data;
    size_t cap;
} SavedBuf;
float *saved_reserve(SavedBuf *b, size_t floats); /* NULL when out of memory */
void saved_free(SavedBuf *b);

/* Error helpers for kinds: write "expected ..., got ..." texts. */
int layer_fail(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "glorot_uniform", "kaiming_normal", ... to a ParamInit; -1 if unknown. */
int param_init_parse(const char *name, ParamInit *out);
extern const char *const param_init_names;

/* Every kind (nn_*.c). The one registration table is in bind_nn.c. */
extern const LayerKind linear_kind, relu_kind, sigmoid_kind, tanh_kind, hardsigmoid_kind,
    dropout_kind, flatten_kind, reshape_kind, conv2d_kind, conv_transpose2d_kind, maxpool2d_kind,
    upsample_kind, lstm_kind, mdn_kind, batchnorm1d_kind, batchnorm2d_kind;

#endif

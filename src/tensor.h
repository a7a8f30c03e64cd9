/* tensor.h: float32 N-d tensors over refcounted storage, in plain C (no Lua).
 *
 * A Tensor is a view: (storage, offset, shape, stride). Views share storage and
 * bump its refcount; the last release frees it. Strides are in elements and may
 * be 0 (broadcast) but never negative. Functions that can fail return NULL or a
 * negative TensorStatus and never abort: the Lua binding turns them into errors. */
#ifndef DD_TENSOR_H
#define DD_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define TENSOR_MAX_DIMS 8
/* Refuse any single tensor above this many elements (2^40 floats = 4 TiB):
 * sizes above it are certainly a bug, and the product cannot overflow size_t. */
#define TENSOR_MAX_NUMEL ((int64_t)1 << 40)

typedef struct Storage {
    float *data;
    int64_t size;     /* elements */
    int refcount;
} Storage;

typedef struct Tensor {
    Storage *storage;
    int64_t offset;                    /* elements into storage->data */
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t stride[TENSOR_MAX_DIMS];
} Tensor;

typedef enum TensorStatus {
    TENSOR_OK = 0,
    TENSOR_ENOMEM = -1,   /* allocation failed */
    TENSOR_ESIZE = -2,    /* negative, too many dims, or too many elements */
} TensorStatus;

/* Storage: allocated 64-byte aligned and zeroed; NULL when out of memory or
 * when larger than the machine's physical memory (refused before touching it). */
Storage *storage_new(int64_t size);
/* Same, but contents are unspecified: for outputs that are fully overwritten. */
Storage *storage_new_uninit(int64_t size);
int64_t storage_max_elements(void);
/* Unmaps the freed large buffers kept for reuse (see tensor.c). */
void storage_cache_clear(void);
void storage_retain(Storage *s);
void storage_release(Storage *s);

/* Checks a shape (0 <= ndim <= TENSOR_MAX_DIMS, every size >= 0, product
 * <= TENSOR_MAX_NUMEL) and stores its element count in *numel. */
TensorStatus shape_check(int ndim, const int64_t *shape, int64_t *numel);

/* Fills t as a new contiguous zeroed tensor. On failure t->storage is NULL. */
TensorStatus tensor_init(Tensor *t, int ndim, const int64_t *shape);
TensorStatus tensor_init_uninit(Tensor *t, int ndim, const int64_t *shape);
/* Makes dst a view of src (same storage, refcount + 1). */
void tensor_init_view(Tensor *dst, const Tensor *src);
void tensor_release(Tensor *t);

int64_t tensor_numel(const Tensor *t);
int tensor_is_contiguous(const Tensor *t);
void tensor_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride);
static inline float *tensor_data(const Tensor *t) { return t->storage->data + t->offset; }
/* Same shape (ndim and every size). */
int tensor_same_shape(const Tensor *a, const Tensor *b);
/* Formats "(2,3,4)" into buf; returns buf. */
char *shape_format(char *buf, size_t len, int ndim, const int64_t *shape);

/* Whether two elements share memory (a stride 0 on a dimension of size > 1,
 * as expand() makes): writing into such a tensor is refused. */
int tensor_has_internal_overlap(const Tensor *t);

/* Offset (elements from tensor_data) of a 0-based multi-index. */
int64_t tensor_index_offset(const Tensor *t, const int64_t *idx);

/* In-place view changes on t (t must already be a view). Callers check ranges. */
void tensor_narrow(Tensor *t, int dim, int64_t start, int64_t len);
void tensor_select(Tensor *t, int dim, int64_t i);
void tensor_transpose(Tensor *t, int a, int b);
/* Re-shapes a contiguous view; numel must match. */
void tensor_view_as(Tensor *t, int ndim, const int64_t *shape);

/* dst and src have the same numel; copies in row-major logical order. */
void tensor_copy_data(Tensor *dst, const Tensor *src);
void tensor_fill(Tensor *t, float v);

/* Visits every element of a (possibly strided) tensor in row-major order. */
typedef struct TensorIter {
    float *ptr;
    int ndim;
    int64_t idx[TENSOR_MAX_DIMS];
    const int64_t *shape;
    const int64_t *stride;
    int64_t remaining;
} TensorIter;
void tensor_iter_init(TensorIter *it, const Tensor *t);
/* Returns the current element pointer and advances, or NULL at the end. */
float *tensor_iter_next(TensorIter *it);

#endif

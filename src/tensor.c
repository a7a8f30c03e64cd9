/* tensor.c: storage, shapes, views, strided copy and iteration. No Lua here. */
#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Large buffers come straight from mmap: page-aligned, already zero, and not
 * touched until used, so a huge zeros() costs nothing until written. */
#define STORAGE_MMAP_BYTES ((size_t)1 << 20)

static size_t storage_bytes(int64_t size) {
    return ((size_t)(size ? size : 1) * sizeof(float) + 63) & ~(size_t)63;
}

int64_t storage_max_elements(void) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) return TENSOR_MAX_NUMEL;
    int64_t n = (int64_t)pages * page / (int64_t)sizeof(float);
    return n < TENSOR_MAX_NUMEL ? n : TENSOR_MAX_NUMEL;
}

/* Freed large buffers are kept for reuse (like PyTorch's caching allocator):
 * a training step allocates the same sizes every time, and a fresh mapping
 * costs page faults plus kernel zeroing on every step. Bounded in count and
 * bytes; the oldest is unmapped first. */
#define CACHE_SLOTS 32
#define CACHE_MAX_BYTES ((size_t)1 << 30)
static struct {
    void *data[CACHE_SLOTS];
    size_t bytes[CACHE_SLOTS];
    int count;
    size_t total;
} cache;

static void *cache_take(size_t bytes) {
    for (int i = cache.count - 1; i >= 0; i--) {
        if (cache.bytes[i] != bytes) continue;
        void *p = cache.data[i];
        cache.total -= bytes;
        memmove(&cache.data[i], &cache.data[i + 1], (size_t)(cache.count - i - 1) * sizeof(void *));
        memmove(&cache.bytes[i], &cache.bytes[i + 1], (size_t)(cache.count - i - 1) * sizeof(size_t));
        cache.count--;
        return p;
    }
    return NULL;
}

static void cache_put(void *p, size_t bytes) {
    if (bytes > CACHE_MAX_BYTES) {
        munmap(p, bytes);
        return;
    }
    while (cache.count > 0 && (cache.count == CACHE_SLOTS || cache.total + bytes > CACHE_MAX_BYTES)) {
        munmap(cache.data[0], cache.bytes[0]);
        cache.total -= cache.bytes[0];
        memmove(&cache.data[0], &cache.data[1], (size_t)(cache.count - 1) * sizeof(void *));
        memmove(&cache.bytes[0], &cache.bytes[1], (size_t)(cache.count - 1) * sizeof(size_t));
        cache.count--;
    }
    cache.data[cache.count] = p;
    cache.bytes[cache.count++] = bytes;
    cache.total += bytes;
}

void storage_cache_clear(void) {
    for (int i = 0; i < cache.count; i++) munmap(cache.data[i], cache.bytes[i]);
    cache.count = 0;
    cache.total = 0;
}

static Storage *storage_alloc(int64_t size, int zero) {
    if (size < 0 || size > storage_max_elements()) return NULL;
    Storage *s = malloc(sizeof *s);
    if (!s) return NULL;
    size_t bytes = storage_bytes(size); /* at least one element: data is never NULL */
    if (bytes >= STORAGE_MMAP_BYTES) {
        s->data = cache_take(bytes);
        if (s->data) {
            if (zero) memset(s->data, 0, bytes);
        } else {
            void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED && cache.count > 0) { /* give the cache back and retry once */
                storage_cache_clear();
                p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            }
            s->data = p == MAP_FAILED ? NULL : p;
        }
    } else {
        s->data = aligned_alloc(64, bytes);
        if (s->data && zero) memset(s->data, 0, bytes);
    }
    if (!s->data) {
        free(s);
        return NULL;
    }
    s->size = size;
    s->refcount = 1;
    return s;
}

Storage *storage_new(int64_t size) { return storage_alloc(size, 1); }
Storage *storage_new_uninit(int64_t size) { return storage_alloc(size, 0); }

void storage_retain(Storage *s) {
    if (s) s->refcount++;
}

void storage_release(Storage *s) {
    if (s && --s->refcount == 0) {
        size_t bytes = storage_bytes(s->size);
        if (bytes >= STORAGE_MMAP_BYTES) cache_put(s->data, bytes);
        else free(s->data);
        free(s);
    }
}

TensorStatus shape_check(int ndim, const int64_t *shape, int64_t *numel) {
    if (ndim < 0 || ndim > TENSOR_MAX_DIMS) return TENSOR_ESIZE;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || shape[i] > TENSOR_MAX_NUMEL) return TENSOR_ESIZE;
        if (shape[i] != 0 && n > TENSOR_MAX_NUMEL / shape[i]) return TENSOR_ESIZE;
        n *= shape[i];
    }
    if (numel) *numel = n;
    return TENSOR_OK;
}

void tensor_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = s;
        s *= shape[i] ? shape[i] : 1;
    }
}

static TensorStatus tensor_init_with(Tensor *t, int ndim, const int64_t *shape, int zero) {
    int64_t n;
    memset(t, 0, sizeof *t);
    TensorStatus st = shape_check(ndim, shape, &n);
    if (st != TENSOR_OK) return st;
    t->storage = storage_alloc(n, zero);
    if (!t->storage) return TENSOR_ENOMEM;
    t->ndim = ndim;
    if (ndim > 0) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    tensor_contiguous_strides(ndim, shape, t->stride);
    return TENSOR_OK;
}

TensorStatus tensor_init(Tensor *t, int ndim, const int64_t *shape) { return tensor_init_with(t, ndim, shape, 1); }

TensorStatus tensor_init_uninit(Tensor *t, int ndim, const int64_t *shape) {
    return tensor_init_with(t, ndim, shape, 0);
}

void tensor_init_view(Tensor *dst, const Tensor *src) {
    *dst = *src;
    storage_retain(dst->storage);
}

void tensor_release(Tensor *t) {
    storage_release(t->storage);
    t->storage = NULL;
}

int64_t tensor_numel(const Tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

int tensor_is_contiguous(const Tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] == 1) continue;
        if (t->stride[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

int tensor_same_shape(const Tensor *a, const Tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

char *shape_format(char *buf, size_t len, int ndim, const int64_t *shape) {
    size_t off = 0;
    off += (size_t)snprintf(buf + off, len - off, "(");
    for (int i = 0; i < ndim && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (off < len) snprintf(buf + off, len - off, ndim == 1 ? ",)" : ")");
    return buf;
}

int tensor_has_internal_overlap(const Tensor *t) {
    for (int i = 0; i < t->ndim; i++)
        if (t->stride[i] == 0 && t->shape[i] > 1) return 1;
    return 0;
}

int64_t tensor_index_offset(const Tensor *t, const int64_t *idx) {
    int64_t off = 0;
    for (int i = 0; i < t->ndim; i++) off += idx[i] * t->stride[i];
    return off;
}

void tensor_narrow(Tensor *t, int dim, int64_t start, int64_t len) {
    if (len > 0) t->offset += start * t->stride[dim];
    t->shape[dim] = len;
}

void tensor_select(Tensor *t, int dim, int64_t i) {
    t->offset += i * t->stride[dim];
    for (int k = dim; k < t->ndim - 1; k++) {
        t->shape[k] = t->shape[k + 1];
        t->stride[k] = t->stride[k + 1];
    }
    t->ndim--;
}

void tensor_transpose(Tensor *t, int a, int b) {
    int64_t s = t->shape[a], st = t->stride[a];
    t->shape[a] = t->shape[b];
    t->stride[a] = t->stride[b];
    t->shape[b] = s;
    t->stride[b] = st;
}

void tensor_view_as(Tensor *t, int ndim, const int64_t *shape) {
    t->ndim = ndim;
    if (ndim > 0) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    tensor_contiguous_strides(ndim, shape, t->stride);
}

void tensor_iter_init(TensorIter *it, const Tensor *t) {
    it->ptr = tensor_data(t);
    it->ndim = t->ndim;
    memset(it->idx, 0, sizeof it->idx);
    it->shape = t->shape;
    it->stride = t->stride;
    it->remaining = tensor_numel(t);
}

float *tensor_iter_next(TensorIter *it) {
    if (it->remaining <= 0) return NULL;
    float *cur = it->ptr;
    if (--it->remaining > 0) {
        for (int d = it->ndim - 1; d >= 0; d--) {
            if (++it->idx[d] < it->shape[d]) {
                it->ptr += it->stride[d];
                break;
            }
            it->ptr -= (it->shape[d] - 1) * it->stride[d];
            it->idx[d] = 0;
        }
    }
    return cur;
}

void tensor_copy_data(Tensor *dst, const Tensor *src) {
    if (tensor_is_contiguous(dst) && tensor_is_contiguous(src)) {
        memmove(tensor_data(dst), tensor_data(src), (size_t)tensor_numel(src) * sizeof(float));
        return;
    }
    /* Overlapping strided copies (a view into itself) go through a temporary. */
    if (dst->storage == src->storage) {
        int64_t n = tensor_numel(src);
        float *tmp = malloc((size_t)(n ? n : 1) * sizeof(float));
        if (tmp) {
            TensorIter is;
            tensor_iter_init(&is, src);
            for (int64_t i = 0; i < n; i++) tmp[i] = *tensor_iter_next(&is);
            TensorIter id;
            tensor_iter_init(&id, dst);
            for (int64_t i = 0; i < n; i++) *tensor_iter_next(&id) = tmp[i];
            free(tmp);
            return;
        }
    }
    /* Same shape with contiguous rows (crops, narrowed batches): copy row by row. */
    int nd = dst->ndim;
    if (tensor_same_shape(dst, src) && nd >= 1 && dst->stride[nd - 1] == 1 && src->stride[nd - 1] == 1) {
        int64_t row = dst->shape[nd - 1], rows = row ? tensor_numel(dst) / row : 0;
        int64_t idx[TENSOR_MAX_DIMS] = {0};
        for (int64_t r = 0; r < rows; r++) {
            memcpy(tensor_data(dst) + tensor_index_offset(dst, idx), tensor_data(src) + tensor_index_offset(src, idx),
                   (size_t)row * sizeof(float));
            for (int k = nd - 2; k >= 0; k--) {
                if (++idx[k] < dst->shape[k]) break;
                idx[k] = 0;
            }
        }
        return;
    }
    TensorIter is, id;
    tensor_iter_init(&is, src);
    tensor_iter_init(&id, dst);
    float *s, *d;
    while ((s = tensor_iter_next(&is)) && (d = tensor_iter_next(&id))) *d = *s;
}

void tensor_fill(Tensor *t, float v) {
    if (tensor_is_contiguous(t)) {
        float *p = tensor_data(t);
        int64_t n = tensor_numel(t);
        for (int64_t i = 0; i < n; i++) p[i] = v;
        return;
    }
    TensorIter it;
    tensor_iter_init(&it, t);
    float *p;
    while ((p = tensor_iter_next(&it))) *p = v;
}

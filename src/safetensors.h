/* safetensors.h: reading and writing the safetensors format, in plain C (no Lua).
 *
 * Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian
 * header length N, N bytes of UTF-8 JSON
 *     {"__metadata__": {"k": "v"}, "name": {"dtype": "F32", "shape": [2, 3],
 *                                           "data_offsets": [begin, end]}, ...}
 * then the data buffer; offsets are bytes relative to the buffer's start.
 *
 * st_open reads and validates only the header, so a file from a stranger
 * cannot make later reads go out of bounds: every entry's range lies inside
 * the buffer, matches its shape and dtype, and overlaps no other. Tensor data
 * is then read on demand with pread (no mmap, so a file truncated while open
 * gives an error, never SIGBUS). Every error message names the file and, where
 * there is one, the tensor and field with the expected and actual value. */
#ifndef DD_SAFETENSORS_H
#define DD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "tensor.h"   /* TENSOR_MAX_DIMS, TENSOR_MAX_NUMEL only */

/* Header limits: the reference implementation's 100 MB cap on the header, and
 * 1 MiB for all metadata keys and values together. */
#define ST_MAX_HEADER_BYTES ((uint64_t)100 << 20)
#define ST_MAX_METADATA_BYTES ((size_t)1 << 20)
/* At most this many JSON values in a header (~100 bytes of parser memory
 * each); enough for ~500k tensors, and caps what a hostile header can cost. */
#define ST_MAX_JSON_VALUES (1 << 23)

typedef enum StDtype {
    ST_F64, ST_F32, ST_F16, ST_BF16, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL,
    ST_DTYPE_COUNT
} StDtype;

/* "F32", ...; NULL for a value out of range. */
const char *st_dtype_name(StDtype d);
/* Bytes per element. */
size_t st_dtype_size(StDtype d);
/* 0 and *out set when name is one of the supported dtypes, else -1. */
int st_dtype_parse(const char *name, StDtype *out);

typedef struct StEntry {
    char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t numel;
    uint64_t offset;     /* bytes from the start of the data buffer */
    uint64_t nbytes;     /* numel * st_dtype_size(dtype) */
} StEntry;

typedef struct StMeta {
    const char *key;
    const char *value;
} StMeta;

typedef struct StFile {
    char *path;
    int fd;
    uint64_t file_size;
    uint64_t header_len;     /* N */
    uint64_t data_start;     /* 8 + N */
    uint64_t data_size;      /* file_size - data_start */
    int nentries;            /* sorted by name */
    StEntry *entries;
    int nmeta;               /* in file order */
    StMeta *meta;
} StFile;

/* Opens path and validates its header. NULL with a message in err on failure. */
StFile *st_open(const char *path, char *err, size_t errlen);
/* Closes the file and frees everything. Accepts NULL. */
void st_close(StFile *f);
/* The entry called name, or NULL. */
const StEntry *st_find(const StFile *f, const char *name);

/* Reads an entry's bytes as stored (little-endian), e->nbytes of them. */
int st_read_raw(const StFile *f, const StEntry *e, void *out, char *err, size_t errlen);
/* Reads an entry converted to float32 into out (e->numel floats): F32 as is,
 * other dtypes rounded to nearest (I64, F64), BOOL as 0 or 1. */
int st_read_f32(const StFile *f, const StEntry *e, float *out, char *err, size_t errlen);

/* One tensor to write: numel * st_dtype_size(dtype) contiguous little-endian
 * bytes at data (may be NULL when numel is 0). */
typedef struct StWriteTensor {
    const char *name;
    StDtype dtype;
    int ndim;
    const int64_t *shape;
    const void *data;
} StWriteTensor;

/* Writes a safetensors file atomically (see fileio.h). The data buffer holds
 * the tensors in the reference implementation's order, larger dtypes first and
 * then by name, so equal inputs give identical bytes; the header lists them in
 * that order after "__metadata__" (keys sorted). Names must be unique and not
 * "__metadata__"; metadata keys unique. Returns 0, or -1 with err set. */
int st_write(const char *path, const StWriteTensor *tensors, int ntensors,
             const StMeta *meta, int nmeta, char *err, size_t errlen);

/* Converts IEEE half and bfloat16 bit patterns to float. */
float st_f16_to_f32(uint16_t h);
float st_bf16_to_f32(uint16_t h);

#endif

/* fuzz_safetensors.c: libFuzzer harness for the safetensors reader
 * (src/safetensors.c), the loader behind dd.load and checkpoints.
 * Each input is a whole file. st_open must either refuse it with a message
 * naming the file, or return entries that keep its promises: sorted unique
 * names, known dtypes, shapes a tensor can have (tensor.c's shape_check),
 * shape x dtype size == byte length, ranges inside the data buffer and
 * pairwise disjoint, metadata under its byte limit. Then every
 * entry (up to a total of 4M elements) is read raw and as float32. */
#include "fuzz_util.h"
#include "safetensors.h"

#include <inttypes.h>

enum { MAX_READ_ELEMENTS = 1 << 22 };

static void check_file(const StFile *f) {
    FUZZ_CHECK(f->header_len <= ST_MAX_HEADER_BYTES);
    FUZZ_CHECK(f->data_start == 8 + f->header_len && f->data_start <= f->file_size);
    FUZZ_CHECK(f->data_size == f->file_size - f->data_start);
    FUZZ_CHECK(f->nentries >= 0 && f->nmeta >= 0);
    size_t meta_bytes = 0;
    for (int i = 0; i < f->nmeta; i++) {
        FUZZ_CHECK(f->meta[i].key && f->meta[i].value);
        meta_bytes += strlen(f->meta[i].key) + strlen(f->meta[i].value);
    }
    FUZZ_CHECK(meta_bytes <= ST_MAX_METADATA_BYTES);
    for (int i = 0; i < f->nentries; i++) {
        const StEntry *e = &f->entries[i];
        FUZZ_CHECK(e->name != NULL && strcmp(e->name, "__metadata__") != 0);
        if (i > 0) FUZZ_CHECK(strcmp(f->entries[i - 1].name, e->name) < 0);
        FUZZ_CHECK(st_dtype_name(e->dtype) != NULL);
        FUZZ_CHECK(e->ndim >= 0 && e->ndim <= TENSOR_MAX_DIMS);
        int64_t numel = 1;
        for (int d = 0; d < e->ndim; d++) {
            FUZZ_CHECK(e->shape[d] >= 0 && e->shape[d] <= TENSOR_MAX_NUMEL);
            numel = e->shape[d] == 0 || numel == 0 ? 0 : numel * e->shape[d];
            FUZZ_CHECK(numel <= TENSOR_MAX_NUMEL);
        }
        FUZZ_CHECK(numel == e->numel);
        int64_t tensor_numel;   /* every shape read can be a tensor (dd.load makes one) */
        FUZZ_CHECK(shape_check(e->ndim, e->shape, &tensor_numel) == TENSOR_OK && tensor_numel == e->numel);
        FUZZ_CHECK(e->nbytes == (uint64_t)e->numel * st_dtype_size(e->dtype));
        FUZZ_CHECK(e->offset <= f->data_size && e->nbytes <= f->data_size - e->offset);
        FUZZ_CHECK(st_find(f, e->name) == e);
        for (int j = 0; j < i; j++) {   /* disjoint: headers with many entries are rare */
            const StEntry *o = &f->entries[j];
            if (e->nbytes && o->nbytes)
                FUZZ_CHECK(e->offset + e->nbytes <= o->offset || o->offset + o->nbytes <= e->offset);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    char err[512] = "";
    StFile *f = st_open(path, err, sizeof err);
    if (!f) {
        FUZZ_CHECK(fuzz_nonempty(err) && strncmp(err, path, strlen(path)) == 0);
        return 0;
    }
    check_file(f);
    int64_t budget = MAX_READ_ELEMENTS;
    for (int i = 0; i < f->nentries && budget > 0; i++) {
        const StEntry *e = &f->entries[i];
        if (e->numel > budget) continue;
        budget -= e->numel;
        float *out = malloc((size_t)e->numel * sizeof *out + 1);
        unsigned char *raw = malloc((size_t)e->nbytes + 1);
        FUZZ_CHECK(out && raw);
        FUZZ_CHECK(st_read_raw(f, e, raw, err, sizeof err) == 0);
        FUZZ_CHECK(st_read_f32(f, e, out, err, sizeof err) == 0);
        if (e->dtype == ST_F32) FUZZ_CHECK(memcmp(out, raw, (size_t)e->nbytes) == 0);
        free(raw);
        free(out);
    }
    st_close(f);
    return 0;
}

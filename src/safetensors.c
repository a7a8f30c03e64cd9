/* safetensors.c: the safetensors reader and writer (see safetensors.h).
 *
 * Reading validates in this order, so the first error reported is the most
 * basic one: file size and header length; a byte-level scan of the header
 * (UTF-8, nesting depth, value count, before cJSON allocates anything);
 * JSON syntax; each entry's fields; duplicate names; overlapping ranges;
 * numbers written with a fraction or exponent ("2.0", "1e3"). */
#include "safetensors.h"
#include "fileio.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Tensor bytes are copied to and from floats as they are in memory. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian machine (the format is little-endian)"
#endif
_Static_assert(sizeof(float) == 4 && sizeof(double) == 8, "IEEE float and double expected");

/* ---- dtypes ---------------------------------------------------------------- */

static const struct {
    const char *name;
    size_t size;
    int rank;   /* the reference writer's dtype order: larger ranks are laid out first */
} dtype_info[ST_DTYPE_COUNT] = {
    [ST_F64] = {"F64", 8, 8},   [ST_F32] = {"F32", 4, 7}, [ST_F16] = {"F16", 2, 4},
    [ST_BF16] = {"BF16", 2, 5}, [ST_I64] = {"I64", 8, 9}, [ST_I32] = {"I32", 4, 6},
    [ST_I16] = {"I16", 2, 3},   [ST_I8] = {"I8", 1, 2},   [ST_U8] = {"U8", 1, 1},
    [ST_BOOL] = {"BOOL", 1, 0},
};
#define ST_DTYPE_LIST "F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL"

static int dtype_valid(StDtype d) { return (int)d >= 0 && d < ST_DTYPE_COUNT; }

const char *st_dtype_name(StDtype d) { return dtype_valid(d) ? dtype_info[d].name : NULL; }
size_t st_dtype_size(StDtype d) { return dtype_valid(d) ? dtype_info[d].size : 0; }

int st_dtype_parse(const char *name, StDtype *out) {
    for (int d = 0; d < ST_DTYPE_COUNT; d++)
        if (strcmp(name, dtype_info[d].name) == 0) {
            *out = (StDtype)d;
            return 0;
        }
    return -1;
}

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24 is exact in float */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    if (exp == 31)
        bits = sign | 0x7f800000u | (mant << 13);              /* inf, nan */
    else
        bits = sign | ((exp + 112) << 23) | (mant << 13);      /* rebias 15 -> 127 */
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float st_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* ---- errors ---------------------------------------------------------------- */

/* Writes "<path>: <message>" into err; returns -1. */
__attribute__((format(printf, 4, 5)))
static int fail(char *err, size_t errlen, const char *path, const char *fmt, ...) {
    int n = snprintf(err, errlen, "%s: ", path);
    if (n < 0 || (size_t)n >= errlen) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* Describes a JSON value for "got ..." in messages. */
static const char *json_describe(const cJSON *v, char *buf, size_t len) {
    if (v == NULL) snprintf(buf, len, "nothing");
    else if (cJSON_IsNumber(v)) snprintf(buf, len, "%.17g", v->valuedouble);
    else if (cJSON_IsString(v)) snprintf(buf, len, "string \"%.40s\"", v->valuestring);
    else if (cJSON_IsArray(v)) snprintf(buf, len, "an array of %d", cJSON_GetArraySize(v));
    else if (cJSON_IsObject(v)) snprintf(buf, len, "an object");
    else if (cJSON_IsBool(v)) snprintf(buf, len, cJSON_IsTrue(v) ? "true" : "false");
    else if (cJSON_IsNull(v)) snprintf(buf, len, "null");
    else snprintf(buf, len, "an invalid value");
    return buf;
}

/* "(2,3,4)", as tensor.c's shape_format, which this file does not link. */
static char *shape_text(char *buf, size_t len, int ndim, const int64_t *shape) {
    size_t at = (size_t)snprintf(buf, len, "(");
    for (int d = 0; d < ndim && at < len; d++)
        at += (size_t)snprintf(buf + at, len - at, d ? ",%" PRId64 : "%" PRId64, shape[d]);
    if (at < len) snprintf(buf + at, len - at, ")");
    return buf;
}

/* ---- reading --------------------------------------------------------------- */

/* Reads exactly n bytes at offset; -1 with errno set (0 for end of file). */
static int pread_full(int fd, void *buf, size_t n, uint64_t offset) {
    unsigned char *p = buf;
    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? (size_t)1 << 30 : n;
        ssize_t r = pread(fd, p, chunk, (off_t)offset);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (r == 0) errno = 0;
            return -1;
        }
        p += r;
        n -= (size_t)r;
        offset += (uint64_t)r;
    }
    return 0;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0) { len = 2; cp = c & 0x1f; min = 0x80; }
    else if ((c & 0xf0) == 0xe0) { len = 3; cp = c & 0x0f; min = 0x800; }
    else if ((c & 0xf8) == 0xf0) { len = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

/* Offset of the first invalid UTF-8 byte, or n when all is valid. */
static size_t utf8_check(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t len = utf8_seq_len(s + i, n - i);
        if (len == 0) return i;
        i += len;
    }
    return n;
}

/* JSON whitespace; strchr would also match the NUL byte. */
static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
static int is_num_char(char c) {
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

/* What the byte scan of the header found: the first number written with a
 * fraction or exponent, with the keys around it, for a later message. */
typedef struct HeaderScan {
    const char *float_tok;
    size_t float_len;
    const char *key[3];      /* key[1]: tensor name, key[2]: field */
    size_t key_len[3];
    const char *float_key[3];
    size_t float_key_len[3];
} HeaderScan;

/* "tensor 'w': shape", "__metadata__: key 'k'" or "header": where the scan
 * is, from the keys at depths 1 and 2. */
static const char *scan_where(const char *const *key, const size_t *len, char *buf, size_t n) {
    int l1 = key[1] ? (int)(len[1] > 60 ? 60 : len[1]) : 0;
    int l2 = key[2] ? (int)(len[2] > 60 ? 60 : len[2]) : 0;
    if (key[1] == NULL) snprintf(buf, n, "header");
    else if (len[1] == 12 && memcmp(key[1], "__metadata__", 12) == 0)
        snprintf(buf, n, "__metadata__: key '%.*s'", l2, key[2] ? key[2] : "");
    else if (key[2] == NULL) snprintf(buf, n, "tensor '%.*s'", l1, key[1]);
    else snprintf(buf, n, "tensor '%.*s': %.*s", l1, key[1], l2, key[2]);
    return buf;
}

/* Checks what cJSON would not, before it allocates: UTF-8, no control bytes
 * or escaped NULs, at most 3 levels of nesting (object > entry > array) and at
 * most ST_MAX_JSON_VALUES values. Tolerates any JSON syntax error: cJSON
 * reports those next. */
static int header_scan(const char *path, const char *h, size_t n, HeaderScan *sc, char *err,
                       size_t errlen) {
    memset(sc, 0, sizeof *sc);
    size_t bad = utf8_check((const unsigned char *)h, n);
    if (bad < n)
        return fail(err, errlen, path, "header is not valid UTF-8 (byte 0x%02x at header offset %zu)",
                    (unsigned char)h[bad], bad);
    size_t start = 0;
    while (start < n && is_ws(h[start])) start++;
    if (start == n || h[start] != '{')
        return fail(err, errlen, path, "header does not start with '{' (not a safetensors file?)");

    int depth = 0;
    char open[4];          /* container kind at each depth: '{' or '[' */
    char prev = 0;         /* previous significant byte outside strings */
    uint64_t values = 1;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if ((unsigned char)c < 0x20 && !is_ws(c))
            return fail(err, errlen, path, "header has control byte 0x%02x at offset %zu",
                        (unsigned char)c, i);
        if (c == '"') {
            size_t s = i + 1, j = s;
            for (; j < n && h[j] != '"'; j++) {
                if ((unsigned char)h[j] < 0x20)
                    return fail(err, errlen, path,
                                "header has control byte 0x%02x inside a string at offset %zu",
                                (unsigned char)h[j], j);
                if (h[j] == '\\') {
                    if (j + 5 < n && memcmp(h + j + 1, "u0000", 5) == 0)
                        return fail(err, errlen, path,
                                    "header has an escaped NUL (\\u0000) at offset %zu", j);
                    j++;
                }
            }
            int is_key = depth >= 1 && open[depth] == '{' && (prev == '{' || prev == ',');
            if (is_key && depth <= 2) {
                sc->key[depth] = h + s;
                sc->key_len[depth] = (j < n ? j : n) - s;
            }
            i = j;
            prev = '"';
            continue;
        }
        if (c == '{' || c == '[') {
            if (depth == 3) {
                char where[160];
                return fail(err, errlen, path,
                            "%s: nested deeper than 3 levels at header offset %zu "
                            "(expected {\"name\": {\"shape\": [..], ...}})",
                            scan_where(sc->key, sc->key_len, where, sizeof where), i);
            }
            open[++depth] = c;
            if (depth <= 2) sc->key[depth] = NULL;
            values++;
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        } else if (c == ',') {
            values++;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t j = i;
            int has_frac = 0;
            while (j < n && is_num_char(h[j])) {
                if (h[j] == '.' || h[j] == 'e' || h[j] == 'E') has_frac = 1;
                j++;
            }
            if (has_frac && sc->float_tok == NULL) {
                sc->float_tok = h + i;
                sc->float_len = j - i;
                memcpy(sc->float_key, sc->key, sizeof sc->key);
                memcpy(sc->float_key_len, sc->key_len, sizeof sc->key_len);
            }
            i = j - 1;
        }
        if (values > ST_MAX_JSON_VALUES)
            return fail(err, errlen, path, "header has more than %d JSON values", ST_MAX_JSON_VALUES);
        if (!is_ws(c)) prev = c;
    }
    return 0;
}

/* Reads a JSON integer in [0, max] (max <= 2^53, so doubles hold it exactly). */
static int json_uint(const cJSON *v, uint64_t max, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!isfinite(d) || d < 0 || d != floor(d) || d > (double)max) return -1;
    *out = (uint64_t)d;
    return 0;
}

#define JSON_MAX_EXACT ((uint64_t)1 << 53)

static int parse_dtype(const char *path, StEntry *e, const cJSON *v, char *err, size_t errlen) {
    char got[96];
    if (!cJSON_IsString(v))
        return fail(err, errlen, path, "tensor '%s': dtype: expected a string (one of %s), got %s",
                    e->name, ST_DTYPE_LIST, json_describe(v, got, sizeof got));
    if (st_dtype_parse(v->valuestring, &e->dtype) != 0)
        return fail(err, errlen, path, "tensor '%s': dtype: '%.40s' is not supported (expected one of %s)",
                    e->name, v->valuestring, ST_DTYPE_LIST);
    return 0;
}

static int parse_shape(const char *path, StEntry *e, const cJSON *v, char *err, size_t errlen) {
    char got[96];
    if (!cJSON_IsArray(v))
        return fail(err, errlen, path, "tensor '%s': shape: expected an array of integers, got %s",
                    e->name, json_describe(v, got, sizeof got));
    int ndim = cJSON_GetArraySize(v);
    if (ndim > TENSOR_MAX_DIMS)
        return fail(err, errlen, path, "tensor '%s': shape: expected at most %d dims, got %d",
                    e->name, TENSOR_MAX_DIMS, ndim);
    e->ndim = ndim;
    int d = 0;
    for (const cJSON *x = v->child; x; x = x->next, d++) {
        uint64_t size;
        if (json_uint(x, (uint64_t)TENSOR_MAX_NUMEL, &size) != 0)
            return fail(err, errlen, path,
                        "tensor '%s': shape[%d]: expected an integer in [0, %" PRId64 "], got %s",
                        e->name, d, TENSOR_MAX_NUMEL, json_describe(x, got, sizeof got));
        e->shape[d] = (int64_t)size;
    }
    /* The rule of tensor.c's shape_check, so every shape read here can be a
     * tensor: no running product of the sizes above the cap, even when a
     * later size is 0 ((2^32, 2^32, 0) would overflow stride arithmetic). */
    int64_t numel = 1;
    for (d = 0; d < ndim; d++) {
        /* numel <= MAX / size keeps numel * size <= MAX: no overflow */
        if (e->shape[d] != 0 && numel > TENSOR_MAX_NUMEL / e->shape[d]) {
            char shape[160];
            return fail(err, errlen, path,
                        "tensor '%s': shape %s: the sizes up to shape[%d] make more than %" PRId64 " elements",
                        e->name, shape_text(shape, sizeof shape, ndim, e->shape), d, TENSOR_MAX_NUMEL);
        }
        numel *= e->shape[d];
    }
    e->numel = numel;
    return 0;
}

static int parse_offsets(const char *path, StEntry *e, const cJSON *v, uint64_t data_size,
                         char *err, size_t errlen) {
    char got[96];
    uint64_t begin, end;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2)
        return fail(err, errlen, path, "tensor '%s': data_offsets: expected [begin, end], got %s",
                    e->name, json_describe(v, got, sizeof got));
    if (json_uint(v->child, JSON_MAX_EXACT, &begin) != 0)
        return fail(err, errlen, path,
                    "tensor '%s': data_offsets[0]: expected an integer in [0, %" PRIu64 "], got %s",
                    e->name, JSON_MAX_EXACT, json_describe(v->child, got, sizeof got));
    if (json_uint(v->child->next, JSON_MAX_EXACT, &end) != 0)
        return fail(err, errlen, path,
                    "tensor '%s': data_offsets[1]: expected an integer in [0, %" PRIu64 "], got %s",
                    e->name, JSON_MAX_EXACT, json_describe(v->child->next, got, sizeof got));
    if (begin > end)
        return fail(err, errlen, path,
                    "tensor '%s': data_offsets: begin %" PRIu64 " is after end %" PRIu64,
                    e->name, begin, end);
    if (end > data_size)
        return fail(err, errlen, path,
                    "tensor '%s': data_offsets: end %" PRIu64 " is beyond the data buffer "
                    "(%" PRIu64 " bytes; file truncated?)",
                    e->name, end, data_size);
    e->offset = begin;
    e->nbytes = end - begin;
    return 0;
}

static int parse_entry(const char *path, StEntry *e, const cJSON *obj, uint64_t data_size,
                       char *err, size_t errlen) {
    char got[96];
    if (!cJSON_IsObject(obj))
        return fail(err, errlen, path,
                    "tensor '%s': expected an object with dtype, shape, data_offsets, got %s",
                    e->name, json_describe(obj, got, sizeof got));
    const cJSON *field[3] = {NULL, NULL, NULL};
    static const char *const names[3] = {"dtype", "shape", "data_offsets"};
    for (const cJSON *f = obj->child; f; f = f->next) {
        int k = 0;
        while (k < 3 && strcmp(f->string, names[k]) != 0) k++;
        if (k == 3)
            return fail(err, errlen, path,
                        "tensor '%s': unknown field '%.40s' (expected dtype, shape, data_offsets)",
                        e->name, f->string);
        if (field[k])
            return fail(err, errlen, path, "tensor '%s': field '%s' appears twice", e->name, names[k]);
        field[k] = f;
    }
    for (int k = 0; k < 3; k++)
        if (field[k] == NULL)
            return fail(err, errlen, path, "tensor '%s': missing field '%s'", e->name, names[k]);
    if (parse_dtype(path, e, field[0], err, errlen) != 0 ||
        parse_shape(path, e, field[1], err, errlen) != 0 ||
        parse_offsets(path, e, field[2], data_size, err, errlen) != 0)
        return -1;
    uint64_t want = (uint64_t)e->numel * dtype_info[e->dtype].size;
    if (want != e->nbytes) {
        char shape[160];
        shape_text(shape, sizeof shape, e->ndim, e->shape);
        return fail(err, errlen, path,
                    "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                    " bytes, shape %s of %s needs %" PRIu64,
                    e->name, e->offset, e->offset + e->nbytes, e->nbytes, shape,
                    dtype_info[e->dtype].name, want);
    }
    return 0;
}

static int str_ptr_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first string of ptrs (n of them) that appears twice, or NULL.
 * Reorders ptrs. */
static const char *find_duplicate(const char **ptrs, int n) {
    qsort(ptrs, (size_t)n, sizeof *ptrs, str_ptr_cmp);
    for (int i = 1; i < n; i++)
        if (strcmp(ptrs[i - 1], ptrs[i]) == 0) return ptrs[i];
    return NULL;
}

static int parse_metadata(const char *path, StFile *f, const cJSON *obj, char *err, size_t errlen) {
    char got[96];
    if (!cJSON_IsObject(obj))
        return fail(err, errlen, path, "__metadata__: expected an object of strings, got %s",
                    json_describe(obj, got, sizeof got));
    int n = cJSON_GetArraySize(obj);
    size_t total = 0;
    for (const cJSON *m = obj->child; m; m = m->next) {
        if (!cJSON_IsString(m))
            return fail(err, errlen, path, "__metadata__: key '%.60s': expected a string value, got %s",
                        m->string, json_describe(m, got, sizeof got));
        /* + 8 per pair so that empty keys and values count too */
        total += strlen(m->string) + strlen(m->valuestring) + 8;
        if (total > ST_MAX_METADATA_BYTES)
            return fail(err, errlen, path, "__metadata__: more than %zu bytes of keys and values",
                        ST_MAX_METADATA_BYTES);
    }
    f->meta = calloc((size_t)n + 1, sizeof *f->meta);
    const char **keys = malloc(((size_t)n + 1) * sizeof *keys);
    if (f->meta == NULL || keys == NULL) {
        free(keys);
        return fail(err, errlen, path, "out of memory");
    }
    int i = 0;
    for (const cJSON *m = obj->child; m; m = m->next) keys[i++] = m->string;
    const char *dup = find_duplicate(keys, n);
    free(keys);
    if (dup) return fail(err, errlen, path, "__metadata__: key '%.60s' appears twice", dup);
    for (const cJSON *m = obj->child; m; m = m->next) {
        char *key = strdup(m->string), *value = strdup(m->valuestring);
        if (!key || !value) {
            free(key);
            free(value);
            return fail(err, errlen, path, "out of memory");
        }
        f->meta[f->nmeta++] = (StMeta){key, value};
    }
    return 0;
}

static int entry_cmp_name(const void *a, const void *b) {
    return strcmp(((const StEntry *)a)->name, ((const StEntry *)b)->name);
}

static int entry_cmp_offset(const void *a, const void *b) {
    const StEntry *x = *(const StEntry *const *)a, *y = *(const StEntry *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* Names are unique and no two non-empty byte ranges share a byte. Entries
 * are sorted by name on return. */
static int check_entries(const char *path, StFile *f, char *err, size_t errlen) {
    int n = f->nentries;
    qsort(f->entries, (size_t)n, sizeof *f->entries, entry_cmp_name);
    for (int i = 1; i < n; i++)
        if (strcmp(f->entries[i - 1].name, f->entries[i].name) == 0)
            return fail(err, errlen, path, "tensor '%s' appears twice in the header",
                        f->entries[i].name);
    const StEntry **by_offset = malloc((size_t)(n ? n : 1) * sizeof *by_offset);
    if (by_offset == NULL) return fail(err, errlen, path, "out of memory");
    for (int i = 0; i < n; i++) by_offset[i] = &f->entries[i];
    qsort(by_offset, (size_t)n, sizeof *by_offset, entry_cmp_offset);
    const StEntry *last = NULL;    /* the non-empty range reaching furthest so far */
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const StEntry *e = by_offset[i];
        if (e->nbytes == 0) continue;
        if (last && e->offset < last->offset + last->nbytes)
            rc = fail(err, errlen, path,
                      "tensors '%s' and '%s' overlap: data_offsets [%" PRIu64 ", %" PRIu64
                      "] and [%" PRIu64 ", %" PRIu64 "]",
                      last->name, e->name, last->offset, last->offset + last->nbytes, e->offset,
                      e->offset + e->nbytes);
        if (!last || e->offset + e->nbytes > last->offset + last->nbytes) last = e;
    }
    free(by_offset);
    return rc;
}

/* Validates the JSON header text and fills f's entries and metadata. */
static int parse_header(const char *path, StFile *f, const char *h, size_t n, char *err,
                        size_t errlen) {
    HeaderScan sc;
    if (header_scan(path, h, n, &sc, err, errlen) != 0) return -1;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(h, n, &end, 0);
    if (root == NULL) {
        size_t at = end && end >= h && end <= h + n ? (size_t)(end - h) : 0;
        return fail(err, errlen, path, "header is not valid JSON (error near offset %zu of %zu)",
                    at, n);
    }
    int rc = -1;
    char got[96];
    for (const char *p = end; p < h + n; p++)
        if (!is_ws(*p)) {
            fail(err, errlen, path, "header has text after the JSON object at offset %zu",
                 (size_t)(p - h));
            goto done;
        }
    if (!cJSON_IsObject(root)) {
        fail(err, errlen, path, "header: expected a JSON object, got %s",
             json_describe(root, got, sizeof got));
        goto done;
    }
    int count = cJSON_GetArraySize(root);
    f->entries = calloc((size_t)count + 1, sizeof *f->entries);
    if (f->entries == NULL) {
        fail(err, errlen, path, "out of memory");
        goto done;
    }
    int seen_meta = 0;
    for (const cJSON *item = root->child; item; item = item->next) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (seen_meta++) {
                fail(err, errlen, path, "__metadata__ appears twice in the header");
                goto done;
            }
            if (parse_metadata(path, f, item, err, errlen) != 0) goto done;
            continue;
        }
        StEntry *e = &f->entries[f->nentries];
        e->name = strdup(item->string);
        if (e->name == NULL) {
            fail(err, errlen, path, "out of memory");
            goto done;
        }
        f->nentries++;
        if (parse_entry(path, e, item, f->data_size, err, errlen) != 0) goto done;
    }
    if (check_entries(path, f, err, errlen) != 0) goto done;
    if (sc.float_tok) {
        char where[160];
        fail(err, errlen, path, "%s: expected integers, got %.*s",
             scan_where(sc.float_key, sc.float_key_len, where, sizeof where),
             (int)(sc.float_len > 40 ? 40 : sc.float_len), sc.float_tok);
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

void st_close(StFile *f) {
    if (f == NULL) return;
    if (f->fd >= 0) close(f->fd);
    for (int i = 0; i < f->nentries; i++) free(f->entries[i].name);
    for (int i = 0; i < f->nmeta; i++) {
        free((char *)f->meta[i].key);     /* owned here; const for users */
        free((char *)f->meta[i].value);
    }
    free(f->entries);
    free(f->meta);
    free(f->path);
    free(f);
}

StFile *st_open(const char *path, char *err, size_t errlen) {
    StFile *f = calloc(1, sizeof *f);
    char *header = NULL;
    if (f == NULL || (f->path = strdup(path)) == NULL) {
        fail(err, errlen, path, "out of memory");
        free(f);
        return NULL;
    }
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (f->fd < 0 || fstat(f->fd, &st) != 0) {
        fail(err, errlen, path, "cannot open: %s", strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        fail(err, errlen, path, "not a regular file%s", S_ISDIR(st.st_mode) ? " (a directory)" : "");
        goto fail;
    }
    f->file_size = (uint64_t)st.st_size;
    if (f->file_size < 8) {
        fail(err, errlen, path,
             "file is %" PRIu64 " bytes, too short for a safetensors file (at least 8)", f->file_size);
        goto fail;
    }
    unsigned char len8[8];
    if (pread_full(f->fd, len8, 8, 0) != 0) {
        fail(err, errlen, path, "cannot read header length: %s", errno ? strerror(errno) : "file truncated");
        goto fail;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | len8[i];
    if (n > ST_MAX_HEADER_BYTES) {
        fail(err, errlen, path, "header length %" PRIu64 " is above the %" PRIu64 "-byte limit",
             n, ST_MAX_HEADER_BYTES);
        goto fail;
    }
    if (n > f->file_size - 8) {
        fail(err, errlen, path,
             "header length %" PRIu64 " is more than the %" PRIu64 " bytes after it "
             "(truncated or not a safetensors file)", n, f->file_size - 8);
        goto fail;
    }
    f->header_len = n;
    f->data_start = 8 + n;
    f->data_size = f->file_size - f->data_start;
    header = malloc((size_t)n + 1);
    if (header == NULL) {
        fail(err, errlen, path, "out of memory for a %" PRIu64 "-byte header", n);
        goto fail;
    }
    if (pread_full(f->fd, header, (size_t)n, 8) != 0) {
        fail(err, errlen, path, "cannot read header: %s", errno ? strerror(errno) : "file truncated");
        goto fail;
    }
    header[n] = 0;
    if (parse_header(path, f, header, (size_t)n, err, errlen) != 0) goto fail;
    free(header);
    return f;
fail:
    free(header);
    st_close(f);
    return NULL;
}

const StEntry *st_find(const StFile *f, const char *name) {
    int lo = 0, hi = f->nentries - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, f->entries[mid].name);
        if (c == 0) return &f->entries[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

static int read_bytes(const StFile *f, const StEntry *e, void *out, uint64_t at, size_t n,
                      char *err, size_t errlen) {
    if (pread_full(f->fd, out, n, f->data_start + e->offset + at) != 0)
        return fail(err, errlen, f->path, "tensor '%s': cannot read %zu bytes at file offset %" PRIu64
                    ": %s", e->name, n, f->data_start + e->offset + at,
                    errno ? strerror(errno) : "file truncated");
    return 0;
}

int st_read_raw(const StFile *f, const StEntry *e, void *out, char *err, size_t errlen) {
    return read_bytes(f, e, out, 0, (size_t)e->nbytes, err, errlen);
}

/* Converts n elements of dtype d at src (any alignment) to float. */
static void convert_to_f32(float *dst, const unsigned char *src, size_t n, StDtype d) {
    switch (d) {
    case ST_F32: memcpy(dst, src, n * 4); break;
    case ST_F64:
        for (size_t i = 0; i < n; i++) { double v; memcpy(&v, src + 8 * i, 8); dst[i] = (float)v; }
        break;
    case ST_F16:
        for (size_t i = 0; i < n; i++) { uint16_t v; memcpy(&v, src + 2 * i, 2); dst[i] = st_f16_to_f32(v); }
        break;
    case ST_BF16:
        for (size_t i = 0; i < n; i++) { uint16_t v; memcpy(&v, src + 2 * i, 2); dst[i] = st_bf16_to_f32(v); }
        break;
    case ST_I64:
        for (size_t i = 0; i < n; i++) { int64_t v; memcpy(&v, src + 8 * i, 8); dst[i] = (float)v; }
        break;
    case ST_I32:
        for (size_t i = 0; i < n; i++) { int32_t v; memcpy(&v, src + 4 * i, 4); dst[i] = (float)v; }
        break;
    case ST_I16:
        for (size_t i = 0; i < n; i++) { int16_t v; memcpy(&v, src + 2 * i, 2); dst[i] = (float)v; }
        break;
    case ST_I8: for (size_t i = 0; i < n; i++) dst[i] = (float)(int8_t)src[i]; break;
    case ST_U8: for (size_t i = 0; i < n; i++) dst[i] = (float)src[i]; break;
    case ST_BOOL: for (size_t i = 0; i < n; i++) dst[i] = src[i] ? 1.0f : 0.0f; break;
    default: break;
    }
}

int st_read_f32(const StFile *f, const StEntry *e, float *out, char *err, size_t errlen) {
    if (e->dtype == ST_F32) return st_read_raw(f, e, out, err, errlen);
    enum { CHUNK = 1 << 16 };   /* bytes; a multiple of every dtype size */
    unsigned char *buf = malloc(CHUNK);
    if (buf == NULL) return fail(err, errlen, f->path, "out of memory");
    size_t esize = dtype_info[e->dtype].size;
    uint64_t done = 0;
    int rc = 0;
    while (done < e->nbytes && rc == 0) {
        size_t n = e->nbytes - done > CHUNK ? CHUNK : (size_t)(e->nbytes - done);
        rc = read_bytes(f, e, buf, done, n, err, errlen);
        if (rc == 0) convert_to_f32(out + done / esize, buf, n / esize, e->dtype);
        done += n;
    }
    free(buf);
    return rc;
}

/* ---- writing --------------------------------------------------------------- */

typedef struct WriteOrder {
    const StWriteTensor *t;
    uint64_t nbytes;
} WriteOrder;

static int write_order_cmp(const void *a, const void *b) {
    const StWriteTensor *x = ((const WriteOrder *)a)->t, *y = ((const WriteOrder *)b)->t;
    int rx = dtype_info[x->dtype].rank, ry = dtype_info[y->dtype].rank;
    if (rx != ry) return ry - rx;
    return strcmp(x->name, y->name);
}

static int meta_cmp(const void *a, const void *b) {
    return strcmp((*(const StMeta *const *)a)->key, (*(const StMeta *const *)b)->key);
}

static int utf8_valid(const char *s) {
    size_t n = strlen(s);
    return utf8_check((const unsigned char *)s, n) == n;
}

/* Checks every tensor and metadata pair before anything is written. */
static int write_check(const char *path, const StWriteTensor *ts, int nt, WriteOrder *order,
                       const StMeta *meta, int nmeta, char *err, size_t errlen) {
    for (int i = 0; i < nt; i++) {
        const StWriteTensor *t = &ts[i];
        if (t->name == NULL) return fail(err, errlen, path, "tensor %d has no name", i + 1);
        if (strcmp(t->name, "__metadata__") == 0)
            return fail(err, errlen, path, "'__metadata__' cannot be a tensor name");
        if (!utf8_valid(t->name))
            return fail(err, errlen, path, "tensor name '%s' is not valid UTF-8", t->name);
        if (!dtype_valid(t->dtype))
            return fail(err, errlen, path, "tensor '%s': dtype %d is not one of %s", t->name,
                        (int)t->dtype, ST_DTYPE_LIST);
        if (t->ndim < 0 || t->ndim > TENSOR_MAX_DIMS)
            return fail(err, errlen, path, "tensor '%s': expected 0 to %d dims, got %d", t->name,
                        TENSOR_MAX_DIMS, t->ndim);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++)
            if (t->shape[d] < 0 || t->shape[d] > TENSOR_MAX_NUMEL)
                return fail(err, errlen, path, "tensor '%s': shape[%d] is %" PRId64, t->name, d,
                            t->shape[d]);
        for (int d = 0; d < t->ndim && numel > 0; d++) {
            if (t->shape[d] > 0 && numel > TENSOR_MAX_NUMEL / t->shape[d])
                return fail(err, errlen, path, "tensor '%s': more than %" PRId64 " elements",
                            t->name, TENSOR_MAX_NUMEL);
            numel *= t->shape[d];
        }
        order[i].t = t;
        order[i].nbytes = (uint64_t)numel * dtype_info[t->dtype].size;
        if (order[i].nbytes > 0 && t->data == NULL)
            return fail(err, errlen, path, "tensor '%s': no data", t->name);
    }
    for (int i = 0; i < nmeta; i++) {
        if (meta[i].key == NULL || meta[i].value == NULL)
            return fail(err, errlen, path, "metadata pair %d has no key or value", i + 1);
        if (!utf8_valid(meta[i].key) || !utf8_valid(meta[i].value))
            return fail(err, errlen, path, "metadata '%s': key or value is not valid UTF-8", meta[i].key);
    }
    return 0;
}

/* The header JSON (unpadded), or NULL with err set. Caller frees. */
static char *header_build(const char *path, const WriteOrder *order, int nt,
                          const StMeta *const *meta, int nmeta, char *err, size_t errlen) {
    cJSON *root = cJSON_CreateObject();
    int ok = root != NULL;
    size_t meta_bytes = 0;
    if (ok && nmeta > 0) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        ok = m != NULL;
        for (int i = 0; ok && i < nmeta; i++) {
            if (i > 0 && strcmp(meta[i - 1]->key, meta[i]->key) == 0) {
                cJSON_Delete(root);
                fail(err, errlen, path, "metadata key '%s' appears twice", meta[i]->key);
                return NULL;
            }
            meta_bytes += strlen(meta[i]->key) + strlen(meta[i]->value);
            ok = cJSON_AddStringToObject(m, meta[i]->key, meta[i]->value) != NULL;
        }
    }
    if (meta_bytes > ST_MAX_METADATA_BYTES) {
        cJSON_Delete(root);
        fail(err, errlen, path, "metadata has %zu bytes of keys and values, at most %zu allowed",
             meta_bytes, ST_MAX_METADATA_BYTES);
        return NULL;
    }
    uint64_t offset = 0;
    char num[32];
    for (int i = 0; ok && i < nt; i++) {
        const StWriteTensor *t = order[i].t;
        /* fields in the reference writer's order: dtype, shape, data_offsets */
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        cJSON *shape = e && cJSON_AddStringToObject(e, "dtype", dtype_info[t->dtype].name)
                           ? cJSON_AddArrayToObject(e, "shape") : NULL;
        ok = shape != NULL;
        /* Integers as raw text: cJSON prints doubles >= 1e15 with an exponent. */
        for (int d = 0; ok && d < t->ndim; d++) {
            snprintf(num, sizeof num, "%" PRId64, t->shape[d]);
            cJSON *x = cJSON_CreateRaw(num);
            ok = x && cJSON_AddItemToArray(shape, x);
            if (!ok) cJSON_Delete(x);
        }
        cJSON *offs = ok ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        ok = offs != NULL;
        for (int k = 0; ok && k < 2; k++) {
            snprintf(num, sizeof num, "%" PRIu64, k == 0 ? offset : offset + order[i].nbytes);
            cJSON *x = cJSON_CreateRaw(num);
            ok = x && cJSON_AddItemToArray(offs, x);
            if (!ok) cJSON_Delete(x);
        }
        offset += order[i].nbytes;
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (text == NULL) fail(err, errlen, path, "out of memory building the header");
    return text;
}

int st_write(const char *path, const StWriteTensor *tensors, int ntensors, const StMeta *meta,
             int nmeta, char *err, size_t errlen) {
    if (ntensors < 0 || nmeta < 0)
        return fail(err, errlen, path, "negative tensor or metadata count");
    WriteOrder *order = calloc((size_t)ntensors + 1, sizeof *order);
    const StMeta **msorted = calloc((size_t)nmeta + 1, sizeof *msorted);
    const char **names = NULL;
    char *json = NULL;
    int rc = -1;
    if (order == NULL || msorted == NULL) {
        fail(err, errlen, path, "out of memory");
        goto done;
    }
    if (write_check(path, tensors, ntensors, order, meta, nmeta, err, errlen) != 0) goto done;
    names = malloc(((size_t)ntensors + 1) * sizeof *names);
    if (names == NULL) {
        fail(err, errlen, path, "out of memory");
        goto done;
    }
    for (int i = 0; i < ntensors; i++) names[i] = tensors[i].name;
    const char *dup = find_duplicate(names, ntensors);
    if (dup) {
        fail(err, errlen, path, "tensor '%s' appears twice", dup);
        goto done;
    }
    qsort(order, (size_t)ntensors, sizeof *order, write_order_cmp);
    for (int i = 0; i < nmeta; i++) msorted[i] = &meta[i];
    qsort(msorted, (size_t)nmeta, sizeof *msorted, meta_cmp);
    json = header_build(path, order, ntensors, msorted, nmeta, err, errlen);
    if (json == NULL) goto done;

    size_t len = strlen(json);
    uint64_t padded = ((uint64_t)len + 7) / 8 * 8;
    if (padded > ST_MAX_HEADER_BYTES) {
        fail(err, errlen, path, "header would be %" PRIu64 " bytes, above the %" PRIu64 "-byte limit",
             padded, ST_MAX_HEADER_BYTES);
        goto done;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(padded >> (8 * i));
    static const char spaces[8] = "        ";
    AtomicFile *af = atomic_open(path, err, errlen);
    if (af == NULL) goto done;
    atomic_write(af, len8, 8);
    atomic_write(af, json, len);
    atomic_write(af, spaces, (size_t)(padded - len));
    for (int i = 0; i < ntensors; i++) atomic_write(af, order[i].t->data, (size_t)order[i].nbytes);
    rc = atomic_commit(af, err, errlen);
done:
    free(json);
    free(names);
    free(order);
    free(msorted);
    return rc;
}

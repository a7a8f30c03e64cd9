/* test_safetensors.c: the safetensors reader/writer and atomic file writes.
 *
 * Every loader rule gets a handcrafted hostile file that must be refused with
 * a message naming the file, the tensor and the field; a mutation sweep checks
 * that no corrupted header crashes or over-reads (run under SANITIZE=address
 * to make that strict). Atomic writes are failed on purpose (missing
 * directory, directory in the way, RLIMIT_FSIZE) and the previous file must
 * survive byte for byte with no temporary file left behind. */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fileio.h"
#include "safetensors.h"

static char tmpdir[256];

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

/* Whole file into a malloc'ed buffer; *n its size. */
static unsigned char *read_bytes(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);
    *n = (size_t)size;
    return buf;
}

/* A safetensors file: length field, header text as given, then ndata bytes
 * counting 0, 1, 2, ... */
static void write_st(const char *path, const char *header, size_t ndata) {
    size_t hlen = strlen(header);
    unsigned char *buf = malloc(8 + hlen + ndata + 1);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, header, hlen);
    for (size_t i = 0; i < ndata; i++) buf[8 + hlen + i] = (unsigned char)i;
    write_bytes(path, buf, 8 + hlen + ndata);
    free(buf);
}

/* st_open must refuse path with a message containing every given string. */
static void expect_refused(const char *path, const char *const *want) {
    char err[1024] = "";
    StFile *f = st_open(path, err, sizeof err);
    if (f) {
        st_close(f);
        fail_msg("%s was accepted, expected an error containing '%s'", path, want[0]);
    }
    print_message("#   -> %s\n", err + strlen(tmpdir) + 1);
    if (strncmp(err, path, strlen(path)) != 0) fail_msg("error does not start with the path: %s", err);
    for (int i = 0; want[i]; i++)
        if (strstr(err, want[i]) == NULL) fail_msg("error '%s' lacks '%s'", err, want[i]);
}

/* Number of temporary files (".*.tmp.*") left in tmpdir. */
static int count_tmp_files(void) {
    DIR *d = opendir(tmpdir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] == '.' && strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

/* ---- round trip ------------------------------------------------------------ */

static void test_round_trip(void **state) {
    float a[6] = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f};
    unsigned char u[4] = {0, 1, 128, 255};
    float z[1];
    int64_t sa[2] = {2, 3}, su[1] = {4}, sz[2] = {0, 5};
    StWriteTensor ts[] = {
        {"weight", ST_F32, 2, sa, a},
        {"frames", ST_U8, 1, su, u},
        {"empty", ST_F32, 2, sz, z},
        {"scalar", ST_F32, 0, NULL, a},
    };
    StMeta meta[] = {{"step", "42"}, {"note", "é unicode \"quoted\""}};
    const char *path = tmp_path("rt.safetensors");
    char err[1024];
    assert_int_equal(st_write(path, ts, 4, meta, 2, err, sizeof err), 0);

    StFile *f = st_open(path, err, sizeof err);
    if (!f) fail_msg("%s", err);
    assert_int_equal(f->nentries, 4);
    assert_int_equal(f->header_len % 8, 0);
    /* entries come back sorted by name */
    assert_string_equal(f->entries[0].name, "empty");
    assert_string_equal(f->entries[1].name, "frames");
    assert_string_equal(f->entries[2].name, "scalar");
    assert_string_equal(f->entries[3].name, "weight");

    const StEntry *w = st_find(f, "weight");
    assert_non_null(w);
    assert_int_equal(w->dtype, ST_F32);
    assert_int_equal(w->ndim, 2);
    assert_int_equal(w->shape[0], 2);
    assert_int_equal(w->shape[1], 3);
    float out[6];
    assert_int_equal(st_read_f32(f, w, out, err, sizeof err), 0);
    assert_memory_equal(out, a, sizeof a);   /* bit-exact, -0.0 included */

    const StEntry *fr = st_find(f, "frames");
    assert_int_equal(fr->dtype, ST_U8);
    unsigned char uout[4];
    assert_int_equal(st_read_raw(f, fr, uout, err, sizeof err), 0);
    assert_memory_equal(uout, u, 4);
    assert_int_equal(st_read_f32(f, fr, out, err, sizeof err), 0);
    assert_true(out[0] == 0 && out[1] == 1 && out[2] == 128 && out[3] == 255);

    const StEntry *e = st_find(f, "empty");
    assert_int_equal(e->numel, 0);
    assert_int_equal(e->nbytes, 0);
    const StEntry *s = st_find(f, "scalar");
    assert_int_equal(s->ndim, 0);
    assert_int_equal(s->numel, 1);
    assert_null(st_find(f, "missing"));

    /* F32 data is laid out before U8 (larger dtypes first) so it stays aligned */
    assert_true(w->offset < fr->offset);
    assert_int_equal(w->offset % 4, 0);

    assert_int_equal(f->nmeta, 2);
    assert_string_equal(f->meta[0].key, "note");   /* written sorted */
    assert_string_equal(f->meta[0].value, "é unicode \"quoted\"");
    assert_string_equal(f->meta[1].key, "step");
    assert_string_equal(f->meta[1].value, "42");
    size_t header_len = (size_t)f->header_len;
    st_close(f);

    /* deterministic: the same input in another order gives the same bytes */
    StWriteTensor rev[] = {ts[3], ts[2], ts[1], ts[0]};
    StMeta mrev[] = {meta[1], meta[0]};
    const char *path2 = tmp_path("rt2.safetensors");
    assert_int_equal(st_write(path2, rev, 4, mrev, 2, err, sizeof err), 0);
    size_t n1, n2;
    unsigned char *b1 = read_bytes(path, &n1), *b2 = read_bytes(path2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    /* the header is compact JSON padded with spaces, __metadata__ first */
    assert_memory_equal(b1 + 8, "{\"__metadata__\":{\"note\":", 24);
    size_t last = 8 + header_len - 1;
    while (b1[last] == ' ') last--;
    assert_int_equal(b1[last], '}');
    assert_true(8 + header_len - 1 - last < 8);
    free(b1);
    free(b2);
    (void)state;
}

static void test_write_refuses_bad_input(void **state) {
    char err[1024];
    float a[2] = {1, 2};
    int64_t shape[1] = {2}, neg[1] = {-1};
    StWriteTensor dup[] = {{"x", ST_F32, 1, shape, a}, {"x", ST_U8, 1, shape, a}};
    const char *path = tmp_path("bad_write.safetensors");
    assert_int_equal(st_write(path, dup, 2, NULL, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "'x' appears twice"));
    StWriteTensor reserved[] = {{"__metadata__", ST_F32, 1, shape, a}};
    assert_int_equal(st_write(path, reserved, 1, NULL, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "__metadata__"));
    StWriteTensor negative[] = {{"n", ST_F32, 1, neg, a}};
    assert_int_equal(st_write(path, negative, 1, NULL, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "'n': shape[0] is -1"));
    StWriteTensor badutf[] = {{"\xff", ST_F32, 1, shape, a}};
    assert_int_equal(st_write(path, badutf, 1, NULL, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "UTF-8"));
    StMeta mdup[] = {{"k", "1"}, {"k", "2"}};
    assert_int_equal(st_write(path, NULL, 0, mdup, 2, err, sizeof err), -1);
    assert_non_null(strstr(err, "'k' appears twice"));
    assert_int_equal(access(path, F_OK), -1);   /* nothing written */
    assert_int_equal(count_tmp_files(), 0);
    (void)state;
}

/* ---- validation: one hostile header per rule --------------------------------- */

typedef struct BadHeader {
    const char *label;
    const char *header;
    size_t ndata;
    const char *want[6];   /* NULL-terminated */
} BadHeader;

#define T(name, dtype, shape, offs) "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offs "}"

static const BadHeader bad_headers[] = {
    {"overlapping ranges", "{" T("a", "F32", "[2]", "[0,8]") "," T("b", "F32", "[2]", "[4,12]") "}", 12,
     {"'a' and 'b' overlap", "[0, 8]", "[4, 12]"}},
    {"same range twice", "{" T("a", "U8", "[4]", "[0,4]") "," T("b", "U8", "[4]", "[0,4]") "}", 4,
     {"overlap"}},
    {"range inside another", "{" T("a", "U8", "[8]", "[0,8]") "," T("b", "U8", "[2]", "[2,4]") "}", 8,
     {"'a' and 'b' overlap"}},
    {"offsets beyond the file", "{" T("a", "F32", "[4]", "[0,16]") "}", 8,
     {"tensor 'a'", "data_offsets", "end 16", "(8 bytes"}},
    {"begin after end", "{" T("a", "F32", "[0]", "[8,4]") "}", 8,
     {"tensor 'a'", "data_offsets", "begin 8 is after end 4"}},
    {"offsets not a pair", "{" T("a", "F32", "[1]", "[0,4,8]") "}", 8,
     {"tensor 'a'", "data_offsets", "expected [begin, end]", "array of 3"}},
    {"negative offset", "{" T("a", "F32", "[1]", "[-4,0]") "}", 8,
     {"tensor 'a'", "data_offsets[0]", "got -4"}},
    {"string offset", "{" T("a", "F32", "[1]", "[\"0\",4]") "}", 8,
     {"tensor 'a'", "data_offsets[0]", "got string \"0\""}},
    {"shape x dtype mismatch", "{" T("w", "F32", "[3]", "[0,8]") "}", 8,
     {"tensor 'w'", "hold 8 bytes", "shape (3) of F32 needs 12"}},
    {"F16 size mismatch", "{" T("w", "F16", "[2,2]", "[0,4]") "}", 8,
     {"tensor 'w'", "shape (2,2) of F16 needs 8"}},
    {"negative dim", "{" T("w", "F32", "[2,-1]", "[0,0]") "}", 8,
     {"tensor 'w'", "shape[1]", "got -1"}},
    {"fractional dim", "{" T("w", "F32", "[2.5]", "[0,8]") "}", 8,
     {"tensor 'w'", "shape[0]", "got 2.5"}},
    {"dim written as float", "{" T("w", "F32", "[2.0]", "[0,8]") "}", 8,
     {"tensor 'w'", "shape", "expected integers, got 2.0"}},
    {"offset written with exponent", "{" T("w", "F32", "[2]", "[0,8e0]") "}", 8,
     {"tensor 'w'", "data_offsets", "got 8e0"}},
    {"string dim", "{" T("w", "F32", "[\"2\"]", "[0,8]") "}", 8,
     {"tensor 'w'", "shape[0]", "string \"2\""}},
    {"huge dim", "{" T("w", "F32", "[1e300]", "[0,8]") "}", 8,
     {"tensor 'w'", "shape[0]", "1.0000000000000001e+300"}},
    {"element count overflow", "{" T("w", "U8", "[1099511627776,1099511627776]", "[0,8]") "}", 8,
     {"tensor 'w'", "shape", "more than 1099511627776 elements"}},
    {"too many dims", "{" T("w", "F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 8,
     {"tensor 'w'", "shape", "at most 8 dims, got 9"}},
    {"shape not an array", "{" T("w", "F32", "2", "[0,8]") "}", 8,
     {"tensor 'w'", "shape", "expected an array", "got 2"}},
    {"nested shape", "{" T("w", "F32", "[[2]]", "[0,8]") "}", 8,
     {"tensor 'w': shape: nested deeper than 3"}},
    {"nested metadata", "{\"__metadata__\":{\"k\":[[1]]}}", 8,
     {"__metadata__: key 'k': nested deeper than 3"}},
    {"unknown dtype", "{" T("q", "F8_E4M3", "[2]", "[0,2]") "}", 8,
     {"tensor 'q'", "dtype", "'F8_E4M3' is not supported", "F64 F32"}},
    {"dtype not a string", "{\"q\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,2]}}", 8,
     {"tensor 'q'", "dtype", "expected a string", "got 7"}},
    {"missing field", "{\"m\":{\"dtype\":\"F32\",\"shape\":[1]}}", 8,
     {"tensor 'm'", "missing field 'data_offsets'"}},
    {"unknown field", "{\"m\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"shp\":[1]}}", 8,
     {"tensor 'm'", "unknown field 'shp'"}},
    {"duplicate field", "{\"m\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
     {"tensor 'm'", "field 'dtype' appears twice"}},
    {"entry not an object", "{\"e\":[1,2]}", 8,
     {"tensor 'e'", "expected an object", "array of 2"}},
    {"duplicate tensor", "{" T("d", "U8", "[1]", "[0,1]") "," T("d", "U8", "[1]", "[1,2]") "}", 8,
     {"tensor 'd' appears twice"}},
    {"bad JSON", "{\"a\": {\"dtype\": ", 8, {"not valid JSON"}},
    {"not JSON at all", "{hello}", 8, {"not valid JSON"}},
    {"top level array", "[1,2]", 8, {"does not start with '{'"}},
    {"text after the object", "{}  x", 8, {"text after the JSON object"}},
    {"two objects", "{}{}", 8, {"text after the JSON object"}},
    {"metadata value not a string", "{\"__metadata__\":{\"epoch\":3}}", 8,
     {"__metadata__", "key 'epoch'", "expected a string value, got 3"}},
    {"metadata value an object", "{\"__metadata__\":{\"cfg\":{\"a\":\"b\"}}}", 8,
     {"__metadata__", "key 'cfg'", "got an object"}},
    {"metadata not an object", "{\"__metadata__\":[\"a\"]}", 8,
     {"__metadata__", "expected an object of strings", "array of 1"}},
    {"metadata null", "{\"__metadata__\":null}", 8, {"__metadata__", "got null"}},
    {"metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 8, {"__metadata__ appears twice"}},
    {"metadata key twice", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 8, {"key 'k' appears twice"}},
    {"invalid UTF-8", "{\"\xc3\x28\":{}}", 8, {"not valid UTF-8", "0xc3"}},
    {"overlong UTF-8", "{\"\xc0\xaf\":{}}", 8, {"not valid UTF-8"}},
    {"escaped NUL", "{\"a\\u0000b\":{}}", 8, {"escaped NUL"}},
    {"control byte", "{\"a\":\x01}", 8, {"control byte 0x01"}},
};

static void test_refuses_bad_headers(void **state) {
    const char *path = tmp_path("bad.safetensors");
    for (size_t i = 0; i < sizeof bad_headers / sizeof bad_headers[0]; i++) {
        const BadHeader *b = &bad_headers[i];
        print_message("# %s\n", b->label);
        write_st(path, b->header, b->ndata);
        expect_refused(path, b->want);
    }
    (void)state;
}

static void test_refuses_nul_byte_in_header(void **state) {
    const char *path = tmp_path("nul.safetensors");
    unsigned char buf[8 + 8] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', 0, ' ', ' ', ' ', ' '};
    write_bytes(path, buf, sizeof buf);
    expect_refused(path, (const char *[]){"control byte 0x00", NULL});
    (void)state;
}

static void test_refuses_bad_files(void **state) {
    const char *path = tmp_path("short.safetensors");
    write_bytes(path, "", 0);
    expect_refused(path, (const char *[]){"file is 0 bytes", "at least 8", NULL});
    write_bytes(path, "\x02\0\0\0\0\0\0", 7);
    expect_refused(path, (const char *[]){"file is 7 bytes", NULL});

    unsigned char huge[16] = {0, 0, 0, 0, 0, 0, 0, 0x80, '{', '}'};
    write_bytes(path, huge, sizeof huge);
    expect_refused(path, (const char *[]){"header length 9223372036854775808", "limit", NULL});
    unsigned char over[16] = {64, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    write_bytes(path, over, sizeof over);
    expect_refused(path, (const char *[]){"header length 64", "8 bytes after it", NULL});

    /* a good file cut anywhere in its data or header */
    write_st(path, "{" T("x", "F32", "[4]", "[0,16]") "}", 16);
    size_t n;
    unsigned char *full = read_bytes(path, &n);
    write_bytes(path, full, n - 1);
    expect_refused(path, (const char *[]){"tensor 'x'", "end 16", "(15 bytes", NULL});
    write_bytes(path, full, 20);
    expect_refused(path, (const char *[]){"more than the 12 bytes after it", NULL});
    free(full);

    expect_refused(tmp_path("does-not-exist.safetensors"),
                   (const char *[]){"cannot open", "No such file", NULL});
    expect_refused(tmpdir, (const char *[]){"not a regular file", "directory", NULL});
    (void)state;
}

/* Corrupts a valid file one header byte at a time: st_open must either refuse
 * or accept a header whose every entry can be read back. */
static void test_mutated_headers_never_crash(void **state) {
    float a[3] = {1, 2, 3};
    unsigned char u[5] = {1, 2, 3, 4, 5};
    int64_t sa[1] = {3}, su[2] = {1, 5};
    StWriteTensor ts[] = {{"a", ST_F32, 1, sa, a}, {"u", ST_U8, 2, su, u}};
    StMeta meta[] = {{"k", "v"}};
    const char *path = tmp_path("mut.safetensors"), *mpath = tmp_path("mut2.safetensors");
    char err[1024];
    assert_int_equal(st_write(path, ts, 2, meta, 1, err, sizeof err), 0);
    size_t n;
    unsigned char *orig = read_bytes(path, &n);
    unsigned char *buf = malloc(n);
    static const unsigned char subst[] = {0, '0', '9', '-', '.', 'e', '[', ']', '{', '}', ',',
                                          '"', '\\', ':', ' ', 0x80, 0xff};
    int accepted = 0, refused = 0;
    for (size_t pos = 0; pos < n; pos++) {
        for (size_t s = 0; s < sizeof subst; s++) {
            memcpy(buf, orig, n);
            if (buf[pos] == subst[s]) continue;
            buf[pos] = subst[s];
            write_bytes(mpath, buf, n);
            StFile *f = st_open(mpath, err, sizeof err);
            if (f == NULL) {
                assert_true(strlen(err) > strlen(mpath));
                refused++;
                continue;
            }
            accepted++;
            for (int i = 0; i < f->nentries; i++) {
                const StEntry *e = &f->entries[i];
                assert_true(e->offset + e->nbytes <= f->data_size);
                float *out = malloc((size_t)e->numel * sizeof(float) + 1);
                assert_int_equal(st_read_f32(f, e, out, err, sizeof err), 0);
                free(out);
            }
            st_close(f);
        }
    }
    print_message("# %d mutations refused, %d accepted\n", refused, accepted);
    assert_true(refused > 0);
    free(buf);
    free(orig);
    (void)state;
}

/* ---- dtype conversions ------------------------------------------------------- */

static void expect_converted(StDtype dtype, const void *raw, int n, const float *want) {
    int64_t shape[1] = {n};
    StWriteTensor t = {"t", dtype, 1, shape, raw};
    const char *path = tmp_path("conv.safetensors");
    char err[1024];
    assert_int_equal(st_write(path, &t, 1, NULL, 0, err, sizeof err), 0);
    StFile *f = st_open(path, err, sizeof err);
    if (!f) fail_msg("%s", err);
    assert_int_equal(f->entries[0].dtype, dtype);
    float out[16];
    assert_int_equal(st_read_f32(f, &f->entries[0], out, err, sizeof err), 0);
    for (int i = 0; i < n; i++) {
        int same = memcmp(&out[i], &want[i], 4) == 0 || (isnan(out[i]) && isnan(want[i]));
        if (!same)
            fail_msg("%s element %d: got %.9g, expected %.9g", st_dtype_name(dtype), i, out[i], want[i]);
    }
    st_close(f);
}

static void test_convert_f16(void **state) {
    uint16_t h[] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x7c00, 0xfc00,
                    0x0000, 0x8000, 0x3555, 0x7e00};
    float want[] = {1.0f, -2.0f, 65504.0f, 0x1p-24f, 1023 * 0x1p-24f, 0x1p-14f, INFINITY, -INFINITY,
                    0.0f, -0.0f, 0.333251953125f, NAN};
    expect_converted(ST_F16, h, 12, want);
    (void)state;
}

static void test_convert_bf16(void **state) {
    uint16_t h[] = {0x3f80, 0xc0a0, 0x7f80, 0x0001, 0x3eab, 0x8000};
    float want[] = {1.0f, -5.0f, INFINITY, 0x1p-133f, 0.333984375f, -0.0f};
    expect_converted(ST_BF16, h, 6, want);
    (void)state;
}

static void test_convert_f64(void **state) {
    double d[] = {0.1, -1.5, 1e300, -1e-300, 16777217.0, 3.4028234663852886e38};
    float want[] = {0.1f, -1.5f, INFINITY, -0.0f, 16777216.0f, 3.4028234663852886e38f};
    expect_converted(ST_F64, d, 6, want);
    (void)state;
}

static void test_convert_integers(void **state) {
    int64_t i64[] = {-3, 0, (int64_t)1 << 40, ((int64_t)1 << 24) + 1, INT64_MIN};
    float w64[] = {-3.0f, 0.0f, 0x1p40f, 16777216.0f, -0x1p63f};
    expect_converted(ST_I64, i64, 5, w64);
    int32_t i32[] = {-7, 2147483647};
    float w32[] = {-7.0f, 2147483648.0f};
    expect_converted(ST_I32, i32, 2, w32);
    int16_t i16[] = {-32768, 32767};
    float w16[] = {-32768.0f, 32767.0f};
    expect_converted(ST_I16, i16, 2, w16);
    int8_t i8[] = {-128, 127, -1};
    float w8[] = {-128.0f, 127.0f, -1.0f};
    expect_converted(ST_I8, i8, 3, w8);
    uint8_t u8[] = {0, 1, 200, 255};
    float wu8[] = {0.0f, 1.0f, 200.0f, 255.0f};
    expect_converted(ST_U8, u8, 4, wu8);
    uint8_t b[] = {0, 1, 2, 255};
    float wb[] = {0.0f, 1.0f, 1.0f, 1.0f};
    expect_converted(ST_BOOL, b, 4, wb);
    (void)state;
}

static void test_convert_large_chunked(void **state) {
    /* more than one 64 KiB conversion chunk, odd length */
    enum { N = 50001 };
    uint16_t *h = malloc(N * sizeof *h);
    float *want = malloc(N * sizeof *want), *out = malloc(N * sizeof *out);
    for (int i = 0; i < N; i++) {
        float v = (float)(i % 256) - 128.0f;     /* exact in bfloat16 */
        uint32_t bits;
        memcpy(&bits, &v, 4);
        h[i] = (uint16_t)(bits >> 16);           /* bf16 of an exact value */
        want[i] = v;
    }
    int64_t shape[1] = {N};
    StWriteTensor t = {"big", ST_BF16, 1, shape, h};
    const char *path = tmp_path("big.safetensors");
    char err[1024];
    assert_int_equal(st_write(path, &t, 1, NULL, 0, err, sizeof err), 0);
    StFile *f = st_open(path, err, sizeof err);
    assert_non_null(f);
    assert_int_equal(st_read_f32(f, &f->entries[0], out, err, sizeof err), 0);
    assert_memory_equal(out, want, N * sizeof *out);
    st_close(f);
    free(h);
    free(want);
    free(out);
    (void)state;
}

/* ---- atomic writes ----------------------------------------------------------- */

static const char old_contents[] = "previous file, must survive";

static void expect_old_file(const char *path) {
    size_t n;
    unsigned char *b = read_bytes(path, &n);
    assert_int_equal(n, sizeof old_contents);
    assert_memory_equal(b, old_contents, n);
    free(b);
}

static void test_atomic_replace_and_abort(void **state) {
    const char *path = tmp_path("atomic.bin");
    write_bytes(path, old_contents, sizeof old_contents);
    char err[512];
    AtomicFile *af = atomic_open(path, err, sizeof err);
    assert_non_null(af);
    atomic_write(af, "half", 4);
    expect_old_file(path);              /* nothing visible before commit */
    assert_int_equal(count_tmp_files(), 1);
    atomic_abort(af);
    expect_old_file(path);
    assert_int_equal(count_tmp_files(), 0);

    const void *chunks[2] = {"new ", "contents"};
    size_t sizes[2] = {4, 8};
    assert_int_equal(file_write_atomic(path, chunks, sizes, 2, err, sizeof err), 0);
    size_t n;
    unsigned char *b = read_bytes(path, &n);
    assert_int_equal(n, 12);
    assert_memory_equal(b, "new contents", 12);
    free(b);
    assert_int_equal(count_tmp_files(), 0);
    atomic_abort(NULL);
    (void)state;
}

static void test_atomic_missing_directory(void **state) {
    char err[512];
    const char *path = tmp_path("no/such/dir/x.safetensors");
    assert_null(atomic_open(path, err, sizeof err));
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "No such file or directory"));
    float a[1] = {1};
    int64_t shape[1] = {1};
    StWriteTensor t = {"a", ST_F32, 1, shape, a};
    assert_int_equal(st_write(path, &t, 1, NULL, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, path));

    /* a regular file where a directory should be */
    const char *file = tmp_path("plainfile");
    write_bytes(file, old_contents, sizeof old_contents);
    char inside[600];
    snprintf(inside, sizeof inside, "%s/x", file);
    assert_null(atomic_open(inside, err, sizeof err));
    assert_non_null(strstr(err, "Not a directory"));
    expect_old_file(file);

    assert_null(atomic_open("", err, sizeof err));
    assert_null(atomic_open(tmp_path(""), err, sizeof err));
    assert_non_null(strstr(err, "directory name"));
    assert_int_equal(count_tmp_files(), 0);
    (void)state;
}

static void test_atomic_readonly_directory(void **state) {
    (void)state;
    if (geteuid() == 0) {
        /* not cmocka's skip(): its TAP "not ok # SKIP" counts as a failure in tests/run.sh */
        print_message("# not checked: root ignores directory permissions\n");
        return;
    }
    const char *dir = tmp_path("ro");
    assert_int_equal(mkdir(dir, 0755), 0);
    char path[600], err[512];
    snprintf(path, sizeof path, "%s/x.bin", dir);
    write_bytes(path, old_contents, sizeof old_contents);
    chmod(dir, 0555);
    const void *chunks[1] = {"new"};
    size_t sizes[1] = {3};
    int rc = file_write_atomic(path, chunks, sizes, 1, err, sizeof err);
    chmod(dir, 0755);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "Permission denied"));
    expect_old_file(path);
    unlink(path);
    rmdir(dir);
}

static void test_atomic_rename_onto_directory(void **state) {
    const char *dir = tmp_path("adir");
    assert_int_equal(mkdir(dir, 0755), 0);
    char err[512];
    const void *chunks[1] = {"x"};
    size_t sizes[1] = {1};
    assert_int_equal(file_write_atomic(dir, chunks, sizes, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "rename failed"));
    assert_non_null(strstr(err, dir));
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(count_tmp_files(), 0);
    rmdir(dir);
    (void)state;
}

/* A file size limit makes write() fail with EFBIG half way, as a full disk
 * would with ENOSPC: the old file must stay, byte for byte. */
static void test_atomic_write_fails_midway(void **state) {
    const char *path = tmp_path("limited.safetensors");
    write_bytes(path, old_contents, sizeof old_contents);
    enum { N = 1 << 18 };   /* 1 MiB of floats, beyond the limit */
    float *a = calloc(N, sizeof *a);
    int64_t shape[1] = {N};
    StWriteTensor t = {"a", ST_F32, 1, shape, a};

    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 64 * 1024;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    char err[512];
    int rc = st_write(path, &t, 1, NULL, 0, err, sizeof err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);

    assert_int_equal(rc, -1);
    print_message("# %s\n", err);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "File too large"));
    expect_old_file(path);
    assert_int_equal(count_tmp_files(), 0);
    free(a);
    (void)state;
}

/* ---- main -------------------------------------------------------------------- */

static int group_setup(void **state) {
    snprintf(tmpdir, sizeof tmpdir, "%s/dd_safetensors_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    DIR *d = opendir(tmpdir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlink(tmp_path(e->d_name));
        closedir(d);
    }
    return rmdir(tmpdir);
}

int main(void) {
    cmocka_set_message_output(CM_OUTPUT_TAP);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_write_refuses_bad_input),
        cmocka_unit_test(test_refuses_bad_headers),
        cmocka_unit_test(test_refuses_nul_byte_in_header),
        cmocka_unit_test(test_refuses_bad_files),
        cmocka_unit_test(test_mutated_headers_never_crash),
        cmocka_unit_test(test_convert_f16),
        cmocka_unit_test(test_convert_bf16),
        cmocka_unit_test(test_convert_f64),
        cmocka_unit_test(test_convert_integers),
        cmocka_unit_test(test_convert_large_chunked),
        cmocka_unit_test(test_atomic_replace_and_abort),
        cmocka_unit_test(test_atomic_missing_directory),
        cmocka_unit_test(test_atomic_readonly_directory),
        cmocka_unit_test(test_atomic_rename_onto_directory),
        cmocka_unit_test(test_atomic_write_fails_midway),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

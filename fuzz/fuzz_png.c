/* fuzz_png.c: libFuzzer harness for the PNG reader (src/image.c) behind
 * dd.image.load. Each input is a whole file: image_reader_open either refuses
 * it with a reason, or describes 1-4 channels of 8 or 16 bits; then pixels
 * are decoded (images up to 1M samples, what a fuzzer can afford) and must
 * all lie in [0, 1]. libpng's errors longjmp inside image.c: any leak or
 * clobbered local there shows up here under ASan. */
#include "fuzz_util.h"
#include "image.h"

enum { MAX_SAMPLES = 1 << 20 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    char err[512] = "";
    ImageInfo info;
    ImageReader *r = image_reader_open(path, &info, err, sizeof err);
    if (!r) {
        FUZZ_CHECK(fuzz_nonempty(err));
        return 0;
    }
    FUZZ_CHECK(info.channels >= 1 && info.channels <= 4);
    FUZZ_CHECK(info.sample_bits == 8 || info.sample_bits == 16);
    FUZZ_CHECK(info.width > 0 && info.height > 0);
    size_t n = (size_t)info.channels * (size_t)info.height * (size_t)info.width;
    if (n <= MAX_SAMPLES) {
        float *out = malloc(n * sizeof *out);
        FUZZ_CHECK(out);
        if (image_reader_read(r, out, err, sizeof err) == 0) {
            for (size_t i = 0; i < n; i++) FUZZ_CHECK(out[i] >= 0.0f && out[i] <= 1.0f);
        } else {
            FUZZ_CHECK(fuzz_nonempty(err));
        }
        free(out);
    }
    image_reader_close(r);
    return 0;
}

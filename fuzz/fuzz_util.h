/* fuzz_util.h: what the libFuzzer harnesses share. The loaders under test
 * open paths (st_open, image_reader_open, video_open), so each input is
 * written to one in-memory file (memfd) and the harness opens it by its path
 * /proc/self/fd/N: the real open path, no disk I/O.
 * FUZZ_CHECK(cond) turns a broken promise of a loader into a crash that
 * libFuzzer reports, with the condition and line. */
#ifndef DD_FUZZ_UTIL_H
#define DD_FUZZ_UTIL_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FUZZ_CHECK(cond)                                                              \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);  \
            abort();                                                                  \
        }                                                                             \
    } while (0)

/* Replaces the memfd's contents with data; returns its path. */
static inline const char *fuzz_file(const uint8_t *data, size_t size) {
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        /* DD_FUZZ_LAST_INPUT=/dev/shm/x keeps each input in a real file, so
         * the input survives a crash that kills the process before libFuzzer
         * can save it (glibc's abort on heap corruption holds malloc's lock) */
        const char *keep = getenv("DD_FUZZ_LAST_INPUT");
        if (keep && strlen(keep) < sizeof path) {
            fd = open(keep, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            snprintf(path, sizeof path, "%s", keep);
        } else {
            fd = memfd_create("fuzz-input", MFD_CLOEXEC);
            snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        }
        FUZZ_CHECK(fd >= 0);
    }
    FUZZ_CHECK(ftruncate(fd, 0) == 0);
    size_t done = 0;
    while (done < size) {
        ssize_t n = pwrite(fd, data + done, size - done, (off_t)done);
        FUZZ_CHECK(n > 0);
        done += (size_t)n;
    }
    return path;
}

/* The loaders promise "<path>: <why>" (or a non-empty reason) on failure. */
static inline int fuzz_nonempty(const char *s) { return s != NULL && s[0] != 0; }

#endif

/* fileio.c: atomic file replacement (see fileio.h). */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct AtomicFile {
    FILE *fp;
    int failed_errno;      /* first write error, 0 if none */
    char *path;
    char *tmp_path;
    char *dir;             /* directory of path, fsync'ed after the rename */
};

static atomic_uint tmp_counter;

static char *str_dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

static void atomic_free(AtomicFile *af) {
    free(af->path);
    free(af->tmp_path);
    free(af->dir);
    free(af);
}

/* Closes (if open), removes the temporary file and frees af. */
static void atomic_discard(AtomicFile *af) {
    if (af->fp) fclose(af->fp);
    unlink(af->tmp_path);
    atomic_free(af);
}

AtomicFile *atomic_open(const char *path, char *err, size_t errlen) {
    if (path == NULL || *path == 0) {
        snprintf(err, errlen, "empty file name");
        return NULL;
    }
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;   /* keeps the slash */
    if (*name == 0 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        snprintf(err, errlen, "%s: is a directory name, not a file name", path);
        return NULL;
    }
    AtomicFile *af = calloc(1, sizeof *af);
    if (af == NULL) goto oom;
    af->path = str_dup_n(path, strlen(path));
    af->dir = dirlen ? str_dup_n(path, dirlen) : str_dup_n(".", 1);
    size_t tmplen = strlen(path) + 64;
    af->tmp_path = malloc(tmplen);
    if (!af->path || !af->dir || !af->tmp_path) goto oom;

    /* O_EXCL: never write into someone else's file. A collision can only be a
     * stale temporary file of a dead process with our pid; try a few counters. */
    int fd = -1;
    for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
        unsigned n = atomic_fetch_add(&tmp_counter, 1);
        snprintf(af->tmp_path, tmplen, "%.*s.%s.tmp.%ld.%u", (int)dirlen, path, name,
                 (long)getpid(), n);
        fd = open(af->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot create temporary file %s: %s", path, af->tmp_path,
                 strerror(errno));
        atomic_free(af);
        return NULL;
    }
    af->fp = fdopen(fd, "wb");
    if (af->fp == NULL) {
        int e = errno;
        close(fd);
        unlink(af->tmp_path);
        snprintf(err, errlen, "%s: cannot open temporary file %s: %s", path, af->tmp_path,
                 strerror(e));
        atomic_free(af);
        return NULL;
    }
    return af;

oom:
    snprintf(err, errlen, "%s: out of memory", path);
    if (af) atomic_free(af);
    return NULL;
}

int atomic_write(AtomicFile *af, const void *buf, size_t n) {
    if (af->failed_errno) return -1;
    if (n == 0) return 0;
    errno = 0;
    if (fwrite(buf, 1, n, af->fp) != n) {
        af->failed_errno = errno ? errno : EIO;
        return -1;
    }
    return 0;
}

int atomic_commit(AtomicFile *af, char *err, size_t errlen) {
    const char *step = "write";
    int e = af->failed_errno;
    /* Disk-full and quota errors often surface only when buffered data is
     * flushed or the file is closed, so every step is checked. */
    if (!e && fflush(af->fp) != 0) { e = errno; step = "flush"; }
    if (!e && fsync(fileno(af->fp)) != 0) { e = errno; step = "fsync"; }
    if (!e) {
        int rc = fclose(af->fp);
        af->fp = NULL;
        if (rc != 0) { e = errno; step = "close"; }
    }
    if (!e && rename(af->tmp_path, af->path) != 0) { e = errno; step = "rename"; }
    if (e) {
        snprintf(err, errlen, "%s: %s failed: %s (file left as it was)", af->path, step,
                 strerror(e));
        atomic_discard(af);
        return -1;
    }
    /* Makes the rename itself durable. Best effort: the file is already in
     * place, and some file systems refuse fsync on directories. */
    int dfd = open(af->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    atomic_free(af);
    return 0;
}

void atomic_abort(AtomicFile *af) {
    if (af) atomic_discard(af);
}

int file_write_atomic(const char *path, const void *const *chunks, const size_t *sizes,
                      int nchunks, char *err, size_t errlen) {
    AtomicFile *af = atomic_open(path, err, errlen);
    if (af == NULL) return -1;
    for (int i = 0; i < nchunks; i++)
        if (atomic_write(af, chunks[i], sizes[i]) != 0) break;
    return atomic_commit(af, err, errlen);
}

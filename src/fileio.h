/* fileio.h: atomic file replacement, in plain C (no Lua).
 *
 * A file written through AtomicFile appears at its path complete or not at
 * all: the bytes go to a temporary file ".<name>.tmp.<pid>.<n>" in the same
 * directory, which is flushed, fsync'ed and then renamed over the path. On any
 * failure (including ENOSPC or EFBIG reported late by fflush/fclose) the
 * temporary file is removed and a file already at the path is left untouched.
 *
 * Usage:
 *     AtomicFile *af = atomic_open(path, err, sizeof err);
 *     if (!af) return fail(err);
 *     atomic_write(af, header, n);          // errors are remembered ...
 *     atomic_write(af, data, m);
 *     if (atomic_commit(af, err, sizeof err) != 0) return fail(err);  // ... and reported here
 *
 * atomic_commit and atomic_abort both free the handle. The new file's mode is
 * 0666 minus the umask (not copied from a replaced file). A symlink at path is
 * replaced by a regular file rather than followed. */
#ifndef DD_FILEIO_H
#define DD_FILEIO_H

#include <stddef.h>

typedef struct AtomicFile AtomicFile;

/* Creates the temporary file. NULL with a message "cannot create <tmp>: <why>"
 * in err when that fails (missing or read-only directory, ...). */
AtomicFile *atomic_open(const char *path, char *err, size_t errlen);

/* Appends n bytes. Returns 0, or -1 once any write has failed; the first
 * failure is kept and reported by atomic_commit, so callers may simply keep
 * writing and check only the commit. */
int atomic_write(AtomicFile *af, const void *buf, size_t n);

/* Flushes, fsyncs, closes and renames the temporary file over the path.
 * Returns 0, or -1 with "<path>: <why>" in err after removing the temporary
 * file. Frees af either way. */
int atomic_commit(AtomicFile *af, char *err, size_t errlen);

/* Discards everything written: closes and removes the temporary file, frees af.
 * Accepts NULL. */
void atomic_abort(AtomicFile *af);

/* One-shot form: writes nchunks buffers back to back, then commits. */
int file_write_atomic(const char *path, const void *const *chunks, const size_t *sizes,
                      int nchunks, char *err, size_t errlen);

#endif

/* process.h: child processes for the sweep runner, in plain C (no Lua).
 *
 * A sweep runs each trial as its own `deepdance` process, several at a time,
 * and must notice which one ended without blocking on any single one. The
 * children are tied to the runner: when the runner dies (even by SIGKILL)
 * they get SIGTERM, so a killed sweep leaves no orphan still writing into a
 * trial directory that the next run would start again.
 *
 * Usage:
 *     char *argv[] = {"deepdance", "trial.lua", "--lr", "0.1", NULL};
 *     ProcessSpec spec = {.argv = argv, .envp = envp, .output = "trial/log.txt"};
 *     pid_t pid = process_spawn(&spec, err, sizeof err);   // -1 and a message on failure
 *     int code;
 *     int i = process_wait_any(&pid, 1, -1, &code);       // 0: pid ended with `code` */
#ifndef DD_PROCESS_H
#define DD_PROCESS_H

#include <stddef.h>
#include <sys/types.h>

typedef struct ProcessSpec {
    char *const *argv;  /* NULL-terminated; argv[0] is looked up in PATH when it has no '/' */
    char *const *envp;  /* NULL-terminated "NAME=value" list: the child's whole environment */
    const char *output; /* stdout and stderr are appended to this file; NULL: inherited */
    const char *dir;    /* working directory of the child; NULL: the caller's */
} ProcessSpec;

/* Starts the child and returns its pid once it has exec'ed, or -1 with
 * "cannot run 'x': <why>" (or "cannot open <output>: <why>", ...) in err when
 * the program, the output file or the directory is unusable. stdin is
 * /dev/null; signal dispositions and mask are reset to the defaults. */
pid_t process_spawn(const ProcessSpec *spec, char *err, size_t errlen);

/* Waits up to `timeout` seconds (< 0: without limit, 0: just polls) for one
 * of the n children to end. Returns its index and sets *code to its exit
 * status, or to 128 + N when signal N ended it (as a shell reports it), or
 * to -1 when that pid is no child (any more) of this process; -1 when the
 * time ran out or a signal arrived; -2 with errno set when waitpid failed. */
int process_wait_any(const pid_t *pids, int n, double timeout, int *code);

/* CPUs this process may run on (its affinity mask, which cgroups, taskset
 * and batch schedulers narrow), at least 1. */
int process_cores(void);

#endif

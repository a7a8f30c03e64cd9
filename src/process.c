/* process.c: child processes (see process.h).
 *
 * fork + exec rather than posix_spawn because the child must ask for
 * PR_SET_PDEATHSIG before it execs. Everything the child needs (argv, envp,
 * the output file) is prepared by the parent, so between fork and exec the
 * child only makes async-signal-safe calls, as it must in a process whose
 * other threads (BLAS workers) vanished at the fork. A close-on-exec pipe
 * carries an exec failure back to the parent: the caller gets "cannot run"
 * at once instead of a child that exits 127 later. */
#include "process.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* What the child failed at, sent through the pipe with errno. */
enum { STAGE_DIR = 1, STAGE_EXEC = 2, STAGE_PARENT = 3 };

typedef struct ChildFailure {
    int stage;
    int error;
} ChildFailure;

static void child_fail(int fd, int stage) {
    ChildFailure f = {stage, errno};
    ssize_t unused = write(fd, &f, sizeof f);
    (void)unused;
    _exit(127);
}

/* Runs in the child: no malloc, no stdio, only async-signal-safe calls. */
static void child_run(const ProcessSpec *spec, pid_t parent, int in_fd, int out_fd, int report_fd) {
    /* Die with the runner. Checking getppid after the prctl closes the race
     * of a parent that died before the request was in place. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) {
        errno = ESRCH;
        child_fail(report_fd, STAGE_PARENT);
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) sigaction(sig, &dfl, NULL); /* fails harmlessly for KILL, STOP */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    dup2(in_fd, STDIN_FILENO);
    if (out_fd >= 0) {
        dup2(out_fd, STDOUT_FILENO);
        dup2(out_fd, STDERR_FILENO);
    }
    if (spec->dir && chdir(spec->dir) != 0) child_fail(report_fd, STAGE_DIR);
    execvpe(spec->argv[0], spec->argv, spec->envp);
    child_fail(report_fd, STAGE_EXEC);
}

pid_t process_spawn(const ProcessSpec *spec, char *err, size_t errlen) {
    if (!spec->argv || !spec->argv[0] || !spec->envp) {
        snprintf(err, errlen, "no program to run");
        return -1;
    }
    int in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (in_fd < 0) {
        snprintf(err, errlen, "cannot open /dev/null: %s", strerror(errno));
        return -1;
    }
    int out_fd = -1;
    if (spec->output) {
        out_fd = open(spec->output, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
        if (out_fd < 0) {
            snprintf(err, errlen, "cannot open %s: %s", spec->output, strerror(errno));
            close(in_fd);
            return -1;
        }
    }
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "cannot create a pipe: %s", strerror(errno));
        close(in_fd);
        if (out_fd >= 0) close(out_fd);
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(report[0]);
        child_run(spec, parent, in_fd, out_fd, report[1]);
    }
    int fork_errno = errno;
    close(report[1]);
    close(in_fd);
    if (out_fd >= 0) close(out_fd);
    if (pid < 0) {
        close(report[0]);
        snprintf(err, errlen, "cannot start '%s': fork: %s", spec->argv[0], strerror(fork_errno));
        return -1;
    }
    ChildFailure f;
    ssize_t n;
    do n = read(report[0], &f, sizeof f);
    while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof f) { /* exec never happened: reap the child and say why */
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
        if (f.stage == STAGE_DIR)
            snprintf(err, errlen, "cannot run '%s' in %s: %s", spec->argv[0], spec->dir, strerror(f.error));
        else if (f.stage == STAGE_PARENT)
            snprintf(err, errlen, "cannot run '%s': the parent process ended", spec->argv[0]);
        else
            snprintf(err, errlen, "cannot run '%s': %s", spec->argv[0], strerror(f.error));
        return -1;
    }
    return pid;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int process_wait_any(const pid_t *pids, int n, double timeout, int *code) {
    /* Polls: waiting on SIGCHLD would need the signal blocked in every
     * thread, BLAS's included. 20 ms is nothing next to a trial's run time. */
    const double tick = 0.02;
    double deadline = now_seconds() + (timeout > 0 ? timeout : 0);
    for (;;) {
        for (int i = 0; i < n; i++) {
            int status;
            pid_t r = waitpid(pids[i], &status, WNOHANG);
            if (r < 0 && errno == ECHILD) { /* reaped already: its status is gone */
                *code = -1;
                return i;
            }
            if (r < 0 && errno != EINTR) return -2;
            if (r == pids[i]) {
                *code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                return i;
            }
        }
        double left = deadline - now_seconds();
        if (timeout >= 0 && left <= 0) return -1;
        double step = timeout < 0 || left > tick ? tick : left;
        struct timespec ts = {0, (long)(step * 1e9)};
        /* A signal (Ctrl-C) ends the wait as a timeout would, so the caller's
         * Lua hook runs at once and no child's status is lost in between. */
        if (nanosleep(&ts, NULL) != 0 && errno == EINTR) return -1;
    }
}

int process_cores(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

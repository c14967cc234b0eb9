/*
 * gcircus-launch: what a child of gcircusd does between its fork and its command's exec, when Python must not run
 * there (gcircus/launcher.py builds the arguments; setup.py compiles this file).
 *
 * gcircusd spawns on CPython's C fork/exec path (a vfork): no preexec step can run in the child without forcing a
 * full fork and running the interpreter in it, about 1.5 ms of the hub's time per spawn. Two things still have to
 * happen in the child before its command runs, so gcircusd execs this program first and it execs the command:
 *
 *   - the parent-death signal (PR_SET_PDEATHSIG), which the kernel clears in every forked child. The kernel only
 *     sends it if the parent dies after the prctl: if gcircusd was killed between the fork and here, this process
 *     was already re-parented, so it compares its parent with gcircusd's pid and, if they differ, signals itself
 *     and never runs the command;
 *   - entering the watcher's cgroup: writing "0" to a cgroup.procs descriptor gcircusd opened (only for a child
 *     that runs as gcircusd's own user: another user's child enters its cgroup before its uid switch). If it
 *     fails, the command is not run: exit 125 with a message on stderr, which the watcher reports.
 *
 * Before this program existed the same steps ran as `setpriv --pdeathsig SIG -- /bin/sh -c '...'`: two execs of
 * general-purpose programs per spawn, which more than doubled the CPU a spawn costs (1.25 ms against 0.5 ms for the
 * command alone, measured on 2 cores). This is one exec of a small static program.
 *
 * Usage: gcircus-launch SIGNAL PARENT_PID CGROUP_FD CGROUP_PROCS -- COMMAND [ARG...]
 *   SIGNAL       parent-death signal number, 0 for none
 *   PARENT_PID   the pid this process must have as its parent (gcircusd's)
 *   CGROUP_FD    an open descriptor on the cgroup's cgroup.procs, -1 for none (closed before the exec)
 *   CGROUP_PROCS the path CGROUP_FD was opened on, only named in the error message
 * Exit status when the command does not run: 125 the cgroup could not be entered, 126 the command cannot be
 * executed, 127 it was not found or the usage is wrong; killed by SIGNAL when the parent was already gone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define CGROUP_PLACEMENT_FAILED 125
#define CANNOT_EXECUTE 126
#define NOT_FOUND 127

static int usage(void)
{
    fputs("usage: gcircus-launch SIGNAL PARENT_PID CGROUP_FD CGROUP_PROCS -- COMMAND [ARG...]\n", stderr);
    return NOT_FOUND;
}

/* A whole decimal number within [low, high]; *ok becomes 0 if `text` is not one. */
static long number(const char *text, long low, long high, int *ok)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end || value < low || value > high)
        *ok = 0;
    return value;
}

int main(int argc, char **argv)
{
    int ok = 1;
    if (argc < 7 || strcmp(argv[5], "--") != 0)
        return usage();
    int signum = (int)number(argv[1], 0, _NSIG - 1, &ok);
    pid_t parent = (pid_t)number(argv[2], 1, INT_MAX, &ok);
    int cgroup_fd = (int)number(argv[3], -1, INT_MAX, &ok);
    if (!ok)
        return usage();

    if (signum) {
        if (prctl(PR_SET_PDEATHSIG, signum) != 0) {
            fprintf(stderr, "gcircus: cannot set the parent-death signal: %s: the command was not started\n",
                    strerror(errno));
            return CANNOT_EXECUTE;
        }
        if (getppid() != parent) {
            /* gcircusd died before the prctl: the signal will never come, so act as if it had. Should the signal
               be ignored or blocked here, the command still must not run unsupervised. */
            kill(getpid(), signum);
            _exit(128 + signum);
        }
    }

    if (cgroup_fd >= 0) {
        ssize_t written = write(cgroup_fd, "0", 1);
        if (written != 1) {
            fprintf(stderr, "gcircus: cannot enter the cgroup %s: %s: the command was not started\n", argv[4],
                    written < 0 ? strerror(errno) : "short write");
            return CGROUP_PLACEMENT_FAILED;
        }
        close(cgroup_fd);
    }

    execvp(argv[6], argv + 6);
    int failure = errno;
    fprintf(stderr, "gcircus: cannot execute %s: %s\n", argv[6], strerror(failure));
    return failure == ENOENT || failure == ENOTDIR ? NOT_FOUND : CANNOT_EXECUTE;
}

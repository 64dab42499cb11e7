/*
 * worker_spawn.h: private to worker.c: starting the child process (worker_spawn.c).
 */
#ifndef RUNSD_WORKER_SPAWN_H
#define RUNSD_WORKER_SPAWN_H

#include <sys/types.h>

#include "exec/worker.h"

/* What a started child leaves the parent: its pid (also its process group id) and the
 * parent's non-blocking ends of its stdin, stdout and stderr. -1 where there is none. */
typedef struct worker_proc {
    pid_t pid;
    int in_fd, out_fd, err_fd;
} worker_proc;

/** Starts spec's command in a process group of its own, killed when the daemon dies. With
 * cg_fd >= 0 (a cgroup.procs, borrowed) the child writes "0" to it before exec: a child that
 * cannot join fails the spawn. 0, or RD_ERR with a reason in err. Even on failure w holds
 * what exists (a child that could not exec is still to be reaped, pipes still to be closed):
 * the caller owns all of it. */
int worker_spawn_process(const rd_worker_spec *spec, int cg_fd, worker_proc *w, char *err,
                         size_t errlen);

#endif

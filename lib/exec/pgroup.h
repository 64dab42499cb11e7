/*
 * pgroup.h: the process groups of running workers, kept in the store so a daemon restarted
 * after a crash can kill what its predecessor left running before it resumes any run.
 *
 * PR_SET_PDEATHSIG kills a worker when the daemon dies, but not what the worker started (a
 * grandchild in its process group), and a worker recorded in a transaction lost with the
 * crash is covered by PDEATHSIG alone. A recorded group is killed at the next start only if
 * it is still ours: the same boot, and either its leader still has the start time recorded
 * at spawn, or (leader gone) every member started after it. A pgid is a pid, and the kernel
 * does not hand a pid out again while a process group of that id has a member, so a group
 * whose recorded leader lives on, or whose members all started after it, is ours unless the
 * whole group died and the id came round again with a leader that has exited since.
 */
#ifndef RUNSD_PGROUP_H
#define RUNSD_PGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "store/store.h"

/* What runsd reads of /proc/<pid>/stat. */
typedef struct rd_pstat {
    int64_t pid;
    char state; /* 'R', 'S', 'Z'... */
    int64_t ppid;
    int64_t pgrp;
    int64_t start_ticks; /* field 22: clock ticks after boot */
} rd_pstat;

/** Parses the text of a /proc/<pid>/stat (len bytes, NUL not needed; the command name may
 * hold spaces and parentheses). 0, or RD_EINVAL when it is not one. Pure. */
int rd_pstat_parse(const char *buf, size_t len, rd_pstat *out);
/** Reads /proc/<pid>/stat. 0, or RD_ENOTFOUND when pid does not exist (or RD_EINVAL). */
int rd_pstat_read(pid_t pid, rd_pstat *out);
/** The kernel's boot id into buf (36 characters and a NUL). 0 or RD_ERR. */
int rd_boot_id(char *buf, size_t len);

/** Records a just-spawned worker's group (pgid = its pid) in the store's open transaction.
 * Failures are logged: PDEATHSIG still covers the worker itself. */
void rd_pgroup_record(rd_store *s, pid_t pgid, const char *run_id);
/** Forgets a group once its worker is reaped (and the group killed). */
void rd_pgroup_forget(rd_store *s, pid_t pgid);
/** At start, before any worker is spawned: SIGKILLs every recorded group that still exists
 * and is still ours, forgets all the records (in the open transaction), and waits up to
 * max_wait_ms (sleeping: only before the loop runs) until the killed groups have no living
 * member. Returns the number of groups still alive at the deadline. */
int rd_pgroup_kill_leftovers(rd_store *s, int64_t max_wait_ms);

#endif

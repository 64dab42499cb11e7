/*
 * cgroup.h: the per-flow process limit (flow key max_processes) through the cgroup pids
 * controller. RLIMIT_NPROC cannot do it: it counts every process of the uid (the daemon and
 * all other workers) and root ignores it. A pids.max on a cgroup of the worker's own bounds
 * the worker and everything it starts, threads included, wherever they move in the process
 * tree (setsid does not leave a cgroup).
 *
 * Detected once at start: cgroup v2 when the daemon's own cgroup lists the pids controller
 * and is writable (under systemd: Delegate=); else a cgroup v1 pids hierarchy; else nothing,
 * and workers run without the limit. Worker cgroups are named runsd-<daemon pid>-<n>, in the
 * daemon's own cgroup; those of a daemon that has died are swept at the next start. The
 * pure helpers take a root prefix so tests can point them at a fake /proc and /sys.
 */
#ifndef RUNSD_CGROUP_H
#define RUNSD_CGROUP_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;

#define RD_CG_PATH 512

typedef enum { RD_CG_NONE, RD_CG_V1, RD_CG_V2 } rd_cg_mode;

/* What a read-only look at the system found. */
typedef struct rd_cg_probe {
    rd_cg_mode mode;         /* the preferred usable hierarchy; NONE when neither */
    bool v2_ok, v1_ok;       /* each one usable, as far as can be told without writing */
    char v2_dir[RD_CG_PATH]; /* root + cgroup2 mount + own path; "" when there is none */
    char v1_dir[RD_CG_PATH]; /* root + v1 pids mount + own path; "" when there is none */
    char why[1536];          /* why v2 and/or v1 are not usable (one sentence each) */
} rd_cg_probe;

/** Parses the text of /proc/self/cgroup: the path of the "0::PATH" line into v2, the path of
 * the line whose controller list holds "pids" into v1 ("" for each one absent). Pure. */
void rd_cg_parse_self(const char *text, char *v2, char *v1, size_t len);
/** Parses the text of /proc/self/mounts: the mount point of the cgroup2 file system into
 * v2mnt and of the cgroup (v1) file system mounted with the pids option into v1mnt ("" when
 * absent; the first of each). Pure. */
void rd_cg_parse_mounts(const char *text, char *v2mnt, char *v1mnt, size_t len);
/** out = root + mnt + path, without a doubled or trailing '/'. 0, or -1 when it does not fit
 * or path holds a ".." component. Pure. */
int rd_cg_join(char *out, size_t len, const char *root, const char *mnt, const char *path);
/** Looks, without writing anything, at <root>/proc/self/{cgroup,mounts} and the cgroup files
 * they lead to. root is "" for the real system. */
void rd_cg_detect(const char *root, rd_cg_probe *out);

typedef struct rd_cgroups rd_cgroups;
typedef struct rd_cgroup rd_cgroup;

/** Detects and prepares the mechanism, once, before the loop runs. With v2 it moves this
 * process into the leaf <own>/daemon and enables +pids in <own>/cgroup.subtree_control (the
 * no-internal-processes rule). Sweeps the worker cgroups of dead daemons. Logs once what it
 * uses, or (warning) why max_processes is not enforced. NULL only when out of memory; the
 * caller owns the result (rd_cgroups_free). */
rd_cgroups *rd_cgroups_new(struct event_base *base, const char *root);
/** Removes what it can of the cgroups still pending (bounded wait, at exit only), frees. */
void rd_cgroups_free(rd_cgroups *cs);
/** True when worker cgroups can be made. */
bool rd_cgroups_enabled(const rd_cgroups *cs);
/** "cgroup v1 pids at DIR", "cgroup v2 at DIR", or why not. Borrowed from cs. */
const char *rd_cgroups_describe(const rd_cgroups *cs);

/** Before a spawn: makes a worker cgroup with pids.max = max and opens its cgroup.procs
 * (O_WRONLY|O_CLOEXEC) for the child to write "0" to before it execs. 0 and *out (owned by
 * the caller until rd_cgroup_release), or -1 with a reason in err. */
int rd_cgroup_new(rd_cgroups *cs, int max, rd_cgroup **out, char *err, size_t errlen);
/** The cgroup.procs fd the child writes to. */
int rd_cgroup_procs_fd(const rd_cgroup *c);
/** The worker is gone (reaped, its process group killed): SIGKILLs what is still in the
 * cgroup and removes it, now or, while it still has members, later from a timer. Never
 * blocks. Takes c; NULL is a no-op. With cs NULL (its owner is gone) there is no later. */
void rd_cgroup_release(rd_cgroups *cs, rd_cgroup *c);

#endif

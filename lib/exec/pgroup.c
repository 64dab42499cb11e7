/*
 * pgroup.c: the process groups of running workers in the store, and the start-up sweep that
 * kills what a crashed daemon left running (pgroup.h says why each check is there). Reading
 * /proc is Linux-only, like PR_SET_PDEATHSIG in worker_spawn.c.
 */
#include "exec/pgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"

#define PGROUP_POLL_MS 10

/* ---- /proc ------------------------------------------------------------------------------ */

static int parse_i64(const char **p, const char *end, int64_t *out)
{
    int64_t v = 0;
    const char *s = *p;

    while (s < end && *s == ' ')
        s++;
    bool neg = s < end && *s == '-';
    if (neg)
        s++;
    if (s >= end || *s < '0' || *s > '9')
        return RD_EINVAL;
    while (s < end && *s >= '0' && *s <= '9') {
        if (v > (INT64_MAX - 9) / 10)
            return RD_EINVAL;
        v = v * 10 + (*s++ - '0');
    }
    *out = neg ? -v : v;
    *p = s;
    return 0;
}

/* Skips one space-separated field. */
static int skip_field(const char **p, const char *end)
{
    const char *s = *p;

    while (s < end && *s == ' ')
        s++;
    if (s >= end)
        return RD_EINVAL;
    while (s < end && *s != ' ')
        s++;
    *p = s;
    return 0;
}

int rd_pstat_parse(const char *buf, size_t len, rd_pstat *out)
{
    const char *end = buf + len, *p = buf, *close = NULL;

    /* "pid (comm) state ppid pgrp ...": comm is anything up to the LAST ')' */
    for (const char *q = buf; q < end; q++)
        if (*q == ')')
            close = q;
    if (!close || parse_i64(&p, close, &out->pid) != 0)
        return RD_EINVAL;
    p = close + 1;
    while (p < end && *p == ' ')
        p++;
    if (p >= end)
        return RD_EINVAL;
    out->state = *p++;
    if (parse_i64(&p, end, &out->ppid) != 0 || parse_i64(&p, end, &out->pgrp) != 0)
        return RD_EINVAL;
    /* fields 6 to 21, then starttime (22) */
    for (int f = 6; f <= 21; f++)
        if (skip_field(&p, end) != 0)
            return RD_EINVAL;
    if (parse_i64(&p, end, &out->start_ticks) != 0)
        return RD_EINVAL;
    return 0;
}

/* Reads a small /proc file into buf (NUL-terminated). Its length, or -1 with errno. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -1;
    do
        n = read(fd, buf, cap - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n >= 0)
        buf[n] = '\0';
    return n;
}

int rd_pstat_read(pid_t pid, rd_pstat *out)
{
    char path[64], buf[1024];
    ssize_t n;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    n = read_small(path, buf, sizeof buf);
    if (n < 0)
        return errno == ENOENT || errno == ESRCH ? RD_ENOTFOUND : RD_EINVAL;
    return rd_pstat_parse(buf, (size_t)n, out);
}

int rd_boot_id(char *buf, size_t len)
{
    ssize_t n = read_small("/proc/sys/kernel/random/boot_id", buf, len);

    if (n <= 0)
        return RD_ERR;
    buf[strcspn(buf, "\n")] = '\0';
    return 0;
}

/* Walks /proc for the members of group pgid: *live counts those that are not zombies,
 * *older those that started before min_start (so cannot descend from its recorded leader). */
static void scan_members(pid_t pgid, int64_t min_start, int *live, int *older)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    rd_pstat st;

    *live = *older = 0;
    if (!d)
        return;
    while ((de = readdir(d))) {
        char *e;
        long pid = strtol(de->d_name, &e, 10);
        if (*e || pid <= 0 || rd_pstat_read((pid_t)pid, &st) != 0 || st.pgrp != pgid)
            continue;
        if (st.state != 'Z')
            (*live)++;
        if (st.start_ticks < min_start)
            (*older)++;
    }
    closedir(d);
}

/* ---- the records ------------------------------------------------------------------------ */

void rd_pgroup_record(rd_store *s, pid_t pgid, const char *run_id)
{
    char boot[64];
    rd_pstat st;
    int rc;

    if (rd_boot_id(boot, sizeof boot) != 0 || rd_pstat_read(pgid, &st) != 0) {
        rd_log_warn("worker %d: cannot read its start time or the boot id: not recorded",
                    (int)pgid);
        return;
    }
    rd_pgroup g = {.pgid = pgid, .start_ticks = st.start_ticks, .boot_id = boot, .run_id = run_id};
    if ((rc = rd_store_pgroup_put(s, &g)) != 0)
        rd_log_warn("worker %d: recording its process group failed (%d)", (int)pgid, rc);
}

void rd_pgroup_forget(rd_store *s, pid_t pgid)
{
    int rc = rd_store_pgroup_del(s, pgid);

    if (rc != 0)
        rd_log_warn("worker %d: forgetting its process group failed (%d)", (int)pgid, rc);
}

/* ---- the start-up sweep ----------------------------------------------------------------- */

typedef struct leftovers {
    rd_pgroup *g; /* boot_id and run_id are not kept */
    bool *same_boot;
    size_t n, cap;
    const char *boot;
} leftovers;

static int collect(const rd_pgroup *g, void *arg)
{
    leftovers *l = arg;

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        rd_pgroup *ng = realloc(l->g, cap * sizeof *ng);
        if (!ng)
            return 1;
        l->g = ng;
        bool *nb = realloc(l->same_boot, cap * sizeof *nb);
        if (!nb)
            return 1;
        l->same_boot = nb;
        l->cap = cap;
    }
    l->g[l->n] = (rd_pgroup){.pgid = g->pgid, .start_ticks = g->start_ticks};
    l->same_boot[l->n++] = strcmp(g->boot_id, l->boot) == 0;
    return 0;
}

/* Whether recorded group g still exists and is the one we recorded (pgroup.h). */
static bool still_ours(const rd_pgroup *g)
{
    pid_t pgid = (pid_t)g->pgid;
    rd_pstat st;
    int live, older;

    if (pgid <= 1 || pgid == getpid() || pgid == getpgrp())
        return false;
    if (rd_pstat_read(pgid, &st) == 0)
        return st.start_ticks == g->start_ticks && st.pgrp == pgid;
    if (kill(-pgid, 0) < 0)
        return false;
    scan_members(pgid, g->start_ticks, &live, &older);
    return live > 0 && older == 0;
}

static bool group_alive(pid_t pgid)
{
    int live, older;

    if (kill(-pgid, 0) < 0 && errno == ESRCH)
        return false;
    scan_members(pgid, 0, &live, &older);
    return live > 0;
}

/* Sleeps until no group of l->g[0..n) has a living member, or the deadline. */
static int wait_gone(const rd_pgroup *g, size_t n, int64_t max_wait_ms)
{
    int64_t deadline = rd_mono_ms() + max_wait_ms;
    struct timespec ts = {0, PGROUP_POLL_MS * 1000000L};
    int alive;

    for (;;) {
        alive = 0;
        for (size_t i = 0; i < n; i++)
            alive += group_alive((pid_t)g[i].pgid);
        if (alive == 0 || rd_mono_ms() >= deadline)
            return alive;
        nanosleep(&ts, NULL);
    }
}

int rd_pgroup_kill_leftovers(rd_store *s, int64_t max_wait_ms)
{
    char boot[64];
    leftovers l = {.boot = boot};
    size_t k = 0;
    int alive = 0;

    if (rd_boot_id(boot, sizeof boot) != 0)
        boot[0] = '\0'; /* nothing matches: nothing is killed */
    if (rd_store_pgroups_scan(s, collect, &l) != 0)
        rd_log_warn("reading the workers' process groups failed: none killed");
    for (size_t i = 0; i < l.n; i++) {
        rd_pgroup_forget(s, (pid_t)l.g[i].pgid);
        if (!l.same_boot[i] || !boot[0] || !still_ours(&l.g[i]))
            continue;
        rd_log_warn("killing process group %lld, left running by the previous daemon",
                    (long long)l.g[i].pgid);
        kill(-(pid_t)l.g[i].pgid, SIGKILL);
        l.g[k++] = l.g[i];
    }
    if (k > 0 && (alive = wait_gone(l.g, k, max_wait_ms)) > 0)
        rd_log_warn("%d process group(s) of the previous daemon are still alive", alive);
    free(l.g);
    free(l.same_boot);
    return alive;
}

/*
 * cgroup.c: worker cgroups with a pids.max, for the flow key max_processes (see cgroup.h for
 * why a cgroup and not RLIMIT_NPROC).
 *
 * It owns three things: the one-time detection (pure parsers over /proc/self/cgroup and
 * /proc/self/mounts, then a read-only look at the files they lead to), the preparation of the
 * chosen hierarchy (v2: the daemon moves into a leaf so its own cgroup may have children with
 * controllers), and the life of each worker cgroup: made and limited by the parent before the
 * spawn, joined by the child itself before it execs (worker_spawn.c), removed after the reap.
 * A cgroup cannot be removed while it has members, so removal is retried from a timer, with
 * the members SIGKILLed on each pass (a grandchild that left the worker's process group is
 * still in its cgroup): the loop never waits for the kernel.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "base/util.h"
#include "exec/cgroup.h"
#include "exec/pgroup.h"

#define CG_RETRY_FIRST_MS 20
#define CG_RETRY_MAX_MS 2000
#define CG_WARN_AFTER_MS 30000
#define CG_FREE_WAIT_MS 1000

/* ---- pure helpers ---------------------------------------------------------------------- */

static void copy_str(char *dst, size_t len, const char *src, size_t n)
{
    if (len == 0)
        return;
    if (n >= len)
        n = len - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* True when token is one of the sep-separated words of list[0..n). */
static bool has_token(const char *list, size_t n, char sep, const char *token)
{
    size_t tl = strlen(token);
    const char *end = list + n;

    while (list < end) {
        const char *e = memchr(list, sep, (size_t)(end - list));
        size_t wl = e ? (size_t)(e - list) : (size_t)(end - list);
        if (wl == tl && memcmp(list, token, tl) == 0)
            return true;
        list += wl + 1;
    }
    return false;
}

void rd_cg_parse_self(const char *text, char *v2, char *v1, size_t len)
{
    copy_str(v2, len, "", 0);
    copy_str(v1, len, "", 0);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        size_t n = strcspn(l, "\n");
        const char *c1 = memchr(l, ':', n);
        const char *c2 = c1 ? memchr(c1 + 1, ':', n - (size_t)(c1 + 1 - l)) : NULL;
        if (!c2)
            continue;
        const char *path = c2 + 1;
        size_t pl = n - (size_t)(path - l);
        if (c1 - l == 1 && l[0] == '0' && c2 == c1 + 1 && v2[0] == '\0')
            copy_str(v2, len, path, pl);
        else if (has_token(c1 + 1, (size_t)(c2 - c1 - 1), ',', "pids") && v1[0] == '\0')
            copy_str(v1, len, path, pl);
    }
}

void rd_cg_parse_mounts(const char *text, char *v2mnt, char *v1mnt, size_t len)
{
    copy_str(v2mnt, len, "", 0);
    copy_str(v1mnt, len, "", 0);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        char mnt[RD_CG_PATH], type[32], opts[512];
        /* "device mountpoint fstype options dump pass"; a space in a mount point is \040. */
        if (sscanf(l, "%*s %511s %31s %511s", mnt, type, opts) != 3)
            continue;
        if (strcmp(type, "cgroup2") == 0 && v2mnt[0] == '\0')
            copy_str(v2mnt, len, mnt, strlen(mnt));
        else if (strcmp(type, "cgroup") == 0 && v1mnt[0] == '\0' &&
                 has_token(opts, strlen(opts), ',', "pids"))
            copy_str(v1mnt, len, mnt, strlen(mnt));
    }
}

int rd_cg_join(char *out, size_t len, const char *root, const char *mnt, const char *path)
{
    char tmp[3 * RD_CG_PATH];
    size_t k = 0;
    int n = snprintf(tmp, sizeof tmp, "%s/%s/%s/", root, mnt, path);

    if (n < 0 || (size_t)n >= sizeof tmp)
        return -1;
    for (const char *p = tmp; *p; p++) {
        if (*p == '/' && k > 0 && out[k - 1] == '/')
            continue; /* doubled slash */
        if (*p == '/' && k >= 3 && memcmp(out + k - 3, "/..", 3) == 0)
            return -1; /* a ".." component */
        if (k + 1 >= len)
            return -1;
        out[k++] = *p;
    }
    if (k > 1)
        k--; /* the trailing slash added above */
    out[k] = '\0';
    return 0;
}

/* ---- detection ------------------------------------------------------------------------- */

static ssize_t read_text(const char *dir, const char *name, char *buf, size_t len)
{
    char path[RD_CG_PATH + 64];
    ssize_t n, total = 0;
    int fd;

    snprintf(path, sizeof path, "%s%s%s", dir, name[0] ? "/" : "", name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    while ((size_t)total + 1 < len && (n = read(fd, buf + total, len - 1 - (size_t)total)) > 0)
        total += n;
    close(fd);
    buf[total] = '\0';
    return total;
}

static bool writable(const char *dir, const char *name)
{
    char path[RD_CG_PATH + 64];

    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(dir, W_OK) == 0 && access(path, W_OK) == 0;
}

static void add_why(rd_cg_probe *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_why(rd_cg_probe *p, const char *fmt, ...)
{
    size_t n = strlen(p->why);
    va_list ap;

    if (n > 0 && n + 2 < sizeof p->why) {
        memcpy(p->why + n, "; ", 3);
        n += 2;
    }
    va_start(ap, fmt);
    vsnprintf(p->why + n, sizeof p->why - n, fmt, ap);
    va_end(ap);
}

static void detect_v2(const char *root, const char *mnt, const char *own, rd_cg_probe *p)
{
    char ctl[512];

    if (!mnt[0] || !own[0]) {
        add_why(p, "no cgroup v2%s", mnt[0] ? " line in /proc/self/cgroup" : " mount");
        return;
    }
    if (rd_cg_join(p->v2_dir, sizeof p->v2_dir, root, mnt, own) < 0) {
        add_why(p, "cgroup v2 path %s%s is unusable", mnt, own);
        return;
    }
    if (read_text(p->v2_dir, "cgroup.controllers", ctl, sizeof ctl) < 0)
        add_why(p, "cannot read %s/cgroup.controllers", p->v2_dir);
    else if (!has_token(ctl, strcspn(ctl, "\n"), ' ', "pids"))
        add_why(p,
                "cgroup v2 at %s does not offer the pids controller (it is bound to "
                "cgroup v1, or not delegated)",
                p->v2_dir);
    else if (!writable(p->v2_dir, "cgroup.subtree_control"))
        add_why(
            p, "cgroup v2 %s is missing or not writable (under systemd: Delegate=pids in the unit)",
            p->v2_dir);
    else
        p->v2_ok = true;
}

static void detect_v1(const char *root, const char *mnt, const char *own, rd_cg_probe *p)
{
    if (!mnt[0] || !own[0]) {
        add_why(p, "no cgroup v1 pids hierarchy%s", mnt[0] ? " in /proc/self/cgroup" : "");
        return;
    }
    if (rd_cg_join(p->v1_dir, sizeof p->v1_dir, root, mnt, own) < 0)
        add_why(p, "cgroup v1 pids path %s%s is unusable", mnt, own);
    else if (!writable(p->v1_dir, "cgroup.procs"))
        add_why(p, "cgroup v1 pids %s is missing or not writable", p->v1_dir);
    else
        p->v1_ok = true;
}

/* The whole of a small kernel file (mounts can be long in a container), malloc'd; NULL with
 * errno on failure. */
static char *read_all(const char *path)
{
    FILE *f = fopen(path, "re");
    char *buf = NULL;
    size_t len = 0, n;
    FILE *m;

    if (!f)
        return NULL;
    m = open_memstream(&buf, &len);
    if (m) {
        char chunk[4096];
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && len < 4 * 1024 * 1024)
            fwrite(chunk, 1, n, m);
        fclose(m);
    }
    fclose(f);
    return buf;
}

void rd_cg_detect(const char *root, rd_cg_probe *out)
{
    char path[RD_CG_PATH], *self, *mounts;
    char own2[RD_CG_PATH], own1[RD_CG_PATH], mnt2[RD_CG_PATH], mnt1[RD_CG_PATH];

    memset(out, 0, sizeof *out);
    snprintf(path, sizeof path, "%s/proc/self/cgroup", root);
    self = read_all(path);
    snprintf(path, sizeof path, "%s/proc/self/mounts", root);
    mounts = self ? read_all(path) : NULL;
    if (!mounts) {
        snprintf(out->why, sizeof out->why, "cannot read %s: %s", path, strerror(errno));
        free(self);
        return;
    }
    rd_cg_parse_self(self, own2, own1, sizeof own2);
    rd_cg_parse_mounts(mounts, mnt2, mnt1, sizeof mnt2);
    free(self);
    free(mounts);
    detect_v2(root, mnt2, own2, out);
    detect_v1(root, mnt1, own1, out);
    out->mode = out->v2_ok ? RD_CG_V2 : out->v1_ok ? RD_CG_V1 : RD_CG_NONE;
}

/* ---- the runtime object ---------------------------------------------------------------- */

struct pending {
    char *path;
    int64_t since;
    bool warned;
};

struct rd_cgroups {
    struct event_base *base;
    rd_cg_mode mode;
    char dir[RD_CG_PATH]; /* the daemon's own cgroup: parent of the worker cgroups */
    char desc[1600];
    char tag[48]; /* "<pid>.<start time>": names this daemon's cgroups, unique across pid reuse */
    unsigned long long seq;
    struct pending *pending; /* worker cgroups still to remove */
    size_t n_pending, cap_pending;
    struct event *retry_ev;
    int64_t retry_ms;
};

struct rd_cgroup {
    int fd;
    char path[RD_CG_PATH + 64];
};

static int write_text(const char *dir, const char *name, const char *text)
{
    char path[RD_CG_PATH + 64];
    size_t n = strlen(text);
    int fd, saved;
    ssize_t w;

    int pl = snprintf(path, sizeof path, "%s/%s", dir, name);
    if (pl < 0 || (size_t)pl >= sizeof path) {
        errno = ENAMETOOLONG; /* never open a cut path */
        return -1;
    }
    fd = open(path, O_WRONLY | O_CLOEXEC); /* no O_CREAT: only the kernel's files */
    if (fd < 0)
        return -1;
    w = write(fd, text, n);
    saved = errno;
    close(fd);
    errno = saved;
    return w == (ssize_t)n ? 0 : -1;
}

/* A child can be made and limited: the proof that detection's guess holds. */
static int probe_child(rd_cgroups *cs, char *why, size_t len)
{
    char path[RD_CG_PATH + 64];
    int rc = 0;

    snprintf(path, sizeof path, "%s/runsd-%s-probe", cs->dir, cs->tag);
    if (mkdir(path, 0755) < 0 && errno != EEXIST) {
        snprintf(why, len, "mkdir %s: %s", path, strerror(errno));
        return -1;
    }
    if (write_text(path, "pids.max", "max") < 0) {
        snprintf(why, len, "%s/pids.max: %s", path, strerror(errno));
        rc = -1;
    }
    rmdir(path);
    return rc;
}

/* v2: a cgroup with processes of its own cannot hand controllers to children, so the daemon
 * first moves into the leaf <own>/daemon. Undone when +pids cannot be enabled (other
 * processes share our cgroup: a login shell, not a delegated service). */
static int setup_v2(rd_cgroups *cs, const char *own, char *why, size_t len)
{
    char leaf[RD_CG_PATH + 16], ctl[256];
    size_t n = strlen(own);

    snprintf(cs->dir, sizeof cs->dir, "%s", own);
    /* Already in the leaf (a second setup in one process): its parent is the one to use. */
    if (n > 7 && strcmp(own + n - 7, "/daemon") == 0) {
        cs->dir[n - 7] = '\0';
        if (read_text(cs->dir, "cgroup.subtree_control", ctl, sizeof ctl) >= 0 &&
            has_token(ctl, strcspn(ctl, "\n"), ' ', "pids"))
            return probe_child(cs, why, len);
        cs->dir[n - 7] = '/';
    }
    snprintf(leaf, sizeof leaf, "%s/daemon", own);
    if (mkdir(leaf, 0755) < 0 && errno != EEXIST) {
        snprintf(why, len, "mkdir %s: %s", leaf, strerror(errno));
        return -1;
    }
    if (write_text(leaf, "cgroup.procs", "0") < 0) {
        snprintf(why, len, "move into %s: %s", leaf, strerror(errno));
        rmdir(leaf);
        return -1;
    }
    if (write_text(own, "cgroup.subtree_control", "+pids") < 0) {
        snprintf(why, len, "enable +pids in %s/cgroup.subtree_control: %s", own, strerror(errno));
        write_text(own, "cgroup.procs", "0");
        rmdir(leaf);
        return -1;
    }
    return probe_child(cs, why, len);
}

static int pending_add(rd_cgroups *cs, const char *path)
{
    if (cs->n_pending == cs->cap_pending) {
        size_t cap = cs->cap_pending ? cs->cap_pending * 2 : 8;
        struct pending *p = realloc(cs->pending, cap * sizeof *p);
        if (!p)
            return -1;
        cs->pending = p;
        cs->cap_pending = cap;
    }
    char *copy = strdup(path);
    if (!copy)
        return -1;
    cs->pending[cs->n_pending++] = (struct pending){copy, rd_mono_ms(), false};
    return 0;
}

/* SIGKILLs every member. v2 has cgroup.kill (Linux 5.14) for that, without the small race of
 * a listed pid that exits and is reused before the kill. */
static void kill_members(const char *path)
{
    char procs[RD_CG_PATH + 64];
    FILE *f;
    int pid;

    if (write_text(path, "cgroup.kill", "1") == 0)
        return;
    snprintf(procs, sizeof procs, "%s/cgroup.procs", path);
    f = fopen(procs, "re");
    if (!f)
        return;
    while (fscanf(f, "%d", &pid) == 1)
        if (pid > 0)
            kill(pid, SIGKILL);
    fclose(f);
}

/* One attempt to remove a worker cgroup: true when it is gone. */
static bool try_remove(const char *path)
{
    if (rmdir(path) == 0 || errno == ENOENT)
        return true;
    if (errno == EBUSY)
        kill_members(path);
    return false;
}

/* One pass over the pending cgroups; returns how many are left. */
static size_t pending_pass(rd_cgroups *cs)
{
    size_t keep = 0;

    for (size_t i = 0; i < cs->n_pending; i++) {
        struct pending *p = &cs->pending[i];
        if (try_remove(p->path)) {
            free(p->path);
            continue;
        }
        if (!p->warned && rd_mono_ms() - p->since > CG_WARN_AFTER_MS) {
            rd_log_warn("cgroup %s still cannot be removed (%s); still trying", p->path,
                        strerror(errno));
            p->warned = true;
        }
        cs->pending[keep++] = *p;
    }
    cs->n_pending = keep;
    return keep;
}

static void cgroups_arm(rd_cgroups *cs)
{
    struct timeval tv;

    if (!cs->retry_ev || evtimer_pending(cs->retry_ev, NULL))
        return;
    tv.tv_sec = cs->retry_ms / 1000;
    tv.tv_usec = (cs->retry_ms % 1000) * 1000;
    evtimer_add(cs->retry_ev, &tv);
}

static void cgroups_on_retry(evutil_socket_t fd, short what, void *arg)
{
    rd_cgroups *cs = arg;

    if (pending_pass(cs) == 0) {
        cs->retry_ms = CG_RETRY_FIRST_MS;
        return;
    }
    cs->retry_ms = cs->retry_ms * 2 > CG_RETRY_MAX_MS ? CG_RETRY_MAX_MS : cs->retry_ms * 2;
    cgroups_arm(cs);
}

/* True when the daemon that named a cgroup runsd-<pid>.<start>-... is gone: no process has
 * that pid, or the one that has it started at another time (a crash, then a new daemon with
 * the same pid, as in a container where runsd is always pid 1). */
static bool owner_gone(const char *name)
{
    long long start;
    int pid, end = 0;
    rd_pstat st;

    if (sscanf(name, "runsd-%d.%lld-%*[0-9a-z]%n", &pid, &start, &end) != 2 || end == 0 ||
        name[end] != '\0' || pid <= 0)
        return false; /* not one of ours */
    int rc = rd_pstat_read((pid_t)pid, &st);
    return rc == RD_ENOTFOUND || (rc == 0 && st.start_ticks != start);
}

/* Worker cgroups of dead daemons are killed and removed. */
static void sweep(rd_cgroups *cs)
{
    DIR *d = opendir(cs->dir);
    struct dirent *e;
    char path[RD_CG_PATH + 300];

    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        if (!owner_gone(e->d_name))
            continue;
        snprintf(path, sizeof path, "%s/%s", cs->dir, e->d_name);
        if (!try_remove(path) && pending_add(cs, path) < 0)
            rd_log_warn("cgroup %s: left in place (out of memory)", path);
    }
    closedir(d);
    if (cs->n_pending > 0) {
        rd_log_info("removing %zu worker cgroup(s) of an earlier daemon", cs->n_pending);
        cgroups_arm(cs);
    }
}

/* Tries v2, then v1; cs->mode and cs->desc say what came of it. */
static void cgroups_setup(rd_cgroups *cs, const rd_cg_probe *p)
{
    char why[1200] = "";

    if (p->v2_ok && setup_v2(cs, p->v2_dir, why, sizeof why) == 0) {
        cs->mode = RD_CG_V2;
        snprintf(cs->desc, sizeof cs->desc, "cgroup v2 at %s (daemon in %s/daemon)", cs->dir,
                 cs->dir);
        return;
    }
    if (why[0])
        rd_log_info("cgroup v2 not used for max_processes: %s", why);
    snprintf(cs->dir, sizeof cs->dir, "%s", p->v1_dir);
    if (p->v1_ok && probe_child(cs, why, sizeof why) == 0) {
        cs->mode = RD_CG_V1;
        snprintf(cs->desc, sizeof cs->desc, "cgroup v1 pids at %s", cs->dir);
        return;
    }
    cs->dir[0] = '\0';
    snprintf(cs->desc, sizeof cs->desc, "%s", why[0] ? why : p->why);
}

rd_cgroups *rd_cgroups_new(struct event_base *base, const char *root)
{
    rd_cgroups *cs = calloc(1, sizeof *cs);
    rd_cg_probe p;

    if (!cs)
        return NULL;
    cs->base = base;
    cs->retry_ms = CG_RETRY_FIRST_MS;
    rd_pstat self = {.start_ticks = 0};
    rd_pstat_read(getpid(), &self);
    snprintf(cs->tag, sizeof cs->tag, "%d.%lld", (int)getpid(), (long long)self.start_ticks);
    if (base && !(cs->retry_ev = evtimer_new(base, cgroups_on_retry, cs))) {
        free(cs);
        return NULL;
    }
    rd_cg_detect(root, &p);
    cgroups_setup(cs, &p);
    if (cs->mode == RD_CG_NONE) {
        rd_log_warn("max_processes is not enforced: %s; workers run without a process limit",
                    cs->desc);
        return cs;
    }
    rd_log_info("max_processes enforced through %s", cs->desc);
    sweep(cs);
    return cs;
}

void rd_cgroups_free(rd_cgroups *cs)
{
    if (!cs)
        return;
    /* At exit only: the members were SIGKILLed, give the kernel a moment to finish them. */
    for (int64_t end = rd_mono_ms() + CG_FREE_WAIT_MS; pending_pass(cs) > 0 && rd_mono_ms() < end;)
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    for (size_t i = 0; i < cs->n_pending; i++) {
        rd_log_warn("cgroup %s left behind (the next start removes it)", cs->pending[i].path);
        free(cs->pending[i].path);
    }
    free(cs->pending);
    if (cs->retry_ev)
        event_free(cs->retry_ev);
    free(cs);
}

bool rd_cgroups_enabled(const rd_cgroups *cs)
{
    return cs && cs->mode != RD_CG_NONE;
}

const char *rd_cgroups_describe(const rd_cgroups *cs)
{
    return cs->desc;
}

/* Opens path/cgroup.procs for the child's "0": the open checks permissions now, in the
 * parent, where a failure can still be reported with a path. */
static int open_procs(const char *path)
{
    char procs[RD_CG_PATH + 80];

    snprintf(procs, sizeof procs, "%s/cgroup.procs", path);
    return open(procs, O_WRONLY | O_CLOEXEC);
}

int rd_cgroup_new(rd_cgroups *cs, int max, rd_cgroup **out, char *err, size_t errlen)
{
    rd_cgroup *c = calloc(1, sizeof *c);
    char num[24];

    *out = NULL;
    if (!c) {
        snprintf(err, errlen, "cgroup: out of memory");
        return -1;
    }
    c->fd = -1;
    for (int tries = 0;; tries++) {
        /* EEXIST only for a leftover the sweep could not remove yet: take the next name. */
        snprintf(c->path, sizeof c->path, "%s/runsd-%s-%llu", cs->dir, cs->tag, cs->seq++);
        if (mkdir(c->path, 0755) == 0)
            break;
        if (errno != EEXIST || tries == 8) {
            snprintf(err, errlen, "cgroup: mkdir %s: %s", c->path, strerror(errno));
            free(c);
            return -1;
        }
    }
    snprintf(num, sizeof num, "%d", max);
    if (write_text(c->path, "pids.max", num) < 0 || (c->fd = open_procs(c->path)) < 0) {
        snprintf(err, errlen, "cgroup %s: %s", c->path, strerror(errno));
        rmdir(c->path);
        free(c);
        return -1;
    }
    *out = c;
    return 0;
}

int rd_cgroup_procs_fd(const rd_cgroup *c)
{
    return c->fd;
}

void rd_cgroup_release(rd_cgroups *cs, rd_cgroup *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    if (!try_remove(c->path)) {
        if (!cs || pending_add(cs, c->path) < 0)
            rd_log_warn("cgroup %s: left in place (out of memory)", c->path);
        else
            cgroups_arm(cs);
    }
    free(c);
}

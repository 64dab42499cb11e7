/*
 * test_cgroup.c: the detection of a cgroup that can carry max_processes, on fake /proc and
 * /sys trees in a temp dir (the parsers of /proc/self/cgroup and /proc/self/mounts, the path
 * joining, each hierarchy's reasons for being unusable); and, where this machine's cgroups are
 * writable, a real worker cgroup: a child that joins it cannot fork past pids.max, and the
 * cgroup is removed (its members killed) on release. The start-up sweep removes the cgroups of
 * a dead daemon and leaves a live one's alone.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exec/cgroup.h"
#include "exec/pgroup.h"

/* This machine's kind: v1 controllers plus a cgroup2 mount without pids (hybrid). */
static const char *HYBRID_SELF = "9:name=systemd:/\n8:pids:/svc/a\n7:blkio:/\n"
                                 "4:memory:/process_api/7117\n1:cpu:/\n0::/\n";
static const char *HYBRID_MOUNTS =
    "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0\n"
    "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n"
    "cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0\n"
    "cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0\n"
    "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";
static const char *V2_SELF = "0::/system.slice/runsd.service\n";
static const char *V2_MOUNTS = "proc /proc proc rw 0 0\n"
                               "cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n";

static void test_parse_self(void **state)
{
    char v2[RD_CG_PATH], v1[RD_CG_PATH];

    rd_cg_parse_self(HYBRID_SELF, v2, v1, sizeof v2);
    assert_string_equal(v2, "/");
    assert_string_equal(v1, "/svc/a");
    rd_cg_parse_self(V2_SELF, v2, v1, sizeof v2);
    assert_string_equal(v2, "/system.slice/runsd.service");
    assert_string_equal(v1, "");
    /* pids among other controllers of one v1 hierarchy; no trailing newline. */
    rd_cg_parse_self("5:cpu,pids:/x/y\n3:name=pids:/no", v2, v1, sizeof v2);
    assert_string_equal(v2, "");
    assert_string_equal(v1, "/x/y");
    /* "pidsx" is not "pids"; a line without two colons is skipped. */
    rd_cg_parse_self("garbage\n4:pidsx:/a\n", v2, v1, sizeof v2);
    assert_string_equal(v1, "");
    rd_cg_parse_self("", v2, v1, sizeof v2);
    assert_string_equal(v2, "");
}

static void test_parse_mounts(void **state)
{
    char v2[RD_CG_PATH], v1[RD_CG_PATH];

    rd_cg_parse_mounts(HYBRID_MOUNTS, v2, v1, sizeof v2);
    assert_string_equal(v2, "/sys/fs/cgroup/unified");
    assert_string_equal(v1, "/sys/fs/cgroup/pids");
    rd_cg_parse_mounts(V2_MOUNTS, v2, v1, sizeof v2);
    assert_string_equal(v2, "/sys/fs/cgroup");
    assert_string_equal(v1, "");
    rd_cg_parse_mounts("proc /proc proc rw 0 0\n", v2, v1, sizeof v2);
    assert_string_equal(v2, "");
    assert_string_equal(v1, "");
}

static void test_join(void **state)
{
    char out[RD_CG_PATH], small[12];

    assert_int_equal(rd_cg_join(out, sizeof out, "", "/sys/fs/cgroup/pids", "/"), 0);
    assert_string_equal(out, "/sys/fs/cgroup/pids");
    assert_int_equal(rd_cg_join(out, sizeof out, "/tmp/r/", "/sys/fs/cgroup", "/a/b/"), 0);
    assert_string_equal(out, "/tmp/r/sys/fs/cgroup/a/b");
    assert_int_equal(rd_cg_join(out, sizeof out, "", "/", "/"), 0);
    assert_string_equal(out, "/");
    assert_int_equal(rd_cg_join(out, sizeof out, "", "/m", "/a..b/..c"), 0);
    assert_string_equal(out, "/m/a..b/..c");
    assert_int_equal(rd_cg_join(out, sizeof out, "", "/m", "/a/../../etc"), -1);
    assert_int_equal(rd_cg_join(out, sizeof out, "", "/m", "/a/.."), -1);
    assert_int_equal(rd_cg_join(small, sizeof small, "", "/sys/fs/cgroup", "/"), -1);
}

/* ---- fake trees ------------------------------------------------------------------------ */

static char root[64];

static void put(const char *rel, const char *text)
{
    char path[512], cmd[600];

    snprintf(path, sizeof path, "%s/%s", root, rel);
    snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname '%s')\"", path);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int tree_setup(void **state)
{
    snprintf(root, sizeof root, "/tmp/runsd-cgtest-XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int tree_teardown(void **state)
{
    char cmd[128];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_detect_hybrid_uses_v1(void **state)
{
    char want[RD_CG_PATH];
    rd_cg_probe p;

    put("proc/self/cgroup", HYBRID_SELF);
    put("proc/self/mounts", HYBRID_MOUNTS);
    put("sys/fs/cgroup/unified/cgroup.controllers", "hugetlb\n");
    put("sys/fs/cgroup/unified/cgroup.subtree_control", "");
    put("sys/fs/cgroup/pids/svc/a/cgroup.procs", "");
    rd_cg_detect(root, &p);
    assert_int_equal(p.mode, RD_CG_V1);
    assert_false(p.v2_ok);
    assert_true(p.v1_ok);
    snprintf(want, sizeof want, "%s/sys/fs/cgroup/pids/svc/a", root);
    assert_string_equal(p.v1_dir, want);
    assert_non_null(strstr(p.why, "does not offer the pids controller"));
}

static void test_detect_v2_delegated(void **state)
{
    char want[RD_CG_PATH];
    rd_cg_probe p;

    put("proc/self/cgroup", V2_SELF);
    put("proc/self/mounts", V2_MOUNTS);
    put("sys/fs/cgroup/system.slice/runsd.service/cgroup.controllers", "cpu io memory pids\n");
    put("sys/fs/cgroup/system.slice/runsd.service/cgroup.subtree_control", "");
    rd_cg_detect(root, &p);
    assert_int_equal(p.mode, RD_CG_V2);
    snprintf(want, sizeof want, "%s/sys/fs/cgroup/system.slice/runsd.service", root);
    assert_string_equal(p.v2_dir, want);
    assert_false(p.v1_ok);
}

static void test_detect_v2_without_pids(void **state)
{
    rd_cg_probe p;

    put("proc/self/cgroup", V2_SELF);
    put("proc/self/mounts", V2_MOUNTS);
    put("sys/fs/cgroup/system.slice/runsd.service/cgroup.controllers", "cpu memory\n");
    rd_cg_detect(root, &p);
    assert_int_equal(p.mode, RD_CG_NONE);
    assert_non_null(strstr(p.why, "does not offer the pids controller"));
    assert_non_null(strstr(p.why, "no cgroup v1 pids hierarchy"));
}

static void test_detect_missing(void **state)
{
    rd_cg_probe p;

    /* No /proc at all. */
    rd_cg_detect(root, &p);
    assert_int_equal(p.mode, RD_CG_NONE);
    assert_non_null(strstr(p.why, "cannot read"));
    /* No cgroup file systems mounted. */
    put("proc/self/cgroup", "0::/\n");
    put("proc/self/mounts", "proc /proc proc rw 0 0\n");
    rd_cg_detect(root, &p);
    assert_int_equal(p.mode, RD_CG_NONE);
    assert_non_null(strstr(p.why, "no cgroup v2 mount"));
    /* Mounted, but our v1 cgroup's directory is not there. */
    put("proc/self/cgroup", HYBRID_SELF);
    put("proc/self/mounts", HYBRID_MOUNTS);
    rd_cg_detect(root, &p);
    assert_int_equal(p.mode, RD_CG_NONE);
    assert_non_null(strstr(p.why, "is missing or not writable"));
    /* A ".." in our own path is refused, not followed. */
    put("proc/self/cgroup", "8:pids:/../../etc\n");
    put("sys/fs/cgroup/pids/cgroup.procs", "");
    rd_cg_detect(root, &p);
    assert_int_equal(p.mode, RD_CG_NONE);
    assert_non_null(strstr(p.why, "is unusable"));
}

/* ---- this machine ---------------------------------------------------------------------- */

/* The worker cgroups' parent, from rd_cgroups_describe ("... at DIR ..."). */
static void parent_dir(const rd_cgroups *cs, char *dir, size_t len)
{
    const char *at = strstr(rd_cgroups_describe(cs), " at ");

    assert_non_null(at);
    snprintf(dir, len, "%.*s", (int)strcspn(at + 4, " "), at + 4);
}

static int count_children(const char *dir, const char *prefix)
{
    char cmd[1200], buf[32];
    int n = snprintf(cmd, sizeof cmd, "ls '%s' | grep -c '^%s' || true", dir, prefix);
    assert_true(n > 0 && (size_t)n < sizeof cmd);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof buf, f));
    pclose(f);
    return atoi(buf);
}

/* A child joins the cgroup as worker_spawn's child does, then forks until it cannot. */
static int forks_inside(const rd_cgroup *c)
{
    int status, n = 0;
    pid_t pid = fork();

    if (pid == 0) {
        if (write(rd_cgroup_procs_fd(c), "0", 1) != 1)
            _exit(99);
        for (int i = 0; i < 10; i++) {
            pid_t g = fork();
            if (g == 0) {
                pause();
                _exit(0);
            }
            if (g < 0)
                break;
            n++;
        }
        _exit(n);
    }
    assert_true(pid > 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_real_cgroup(void **state)
{
    char dir[RD_CG_PATH], err[256], stale[RD_CG_PATH + 64], path[RD_CG_PATH + 64];
    rd_cgroup *c;
    rd_pstat self;

    rd_cgroups *cs = rd_cgroups_new(NULL, "");
    assert_non_null(cs);
    if (!rd_cgroups_enabled(cs)) {
        fprintf(stderr, "skipped: %s\n", rd_cgroups_describe(cs));
        rd_cgroups_free(cs);
        skip();
    }
    parent_dir(cs, dir, sizeof dir);
    /* The grandchildren come back to us when their parent exits, to be reaped. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    assert_int_equal(rd_cgroup_new(cs, 3, &c, err, sizeof err), 0);
    assert_int_equal(rd_pstat_read(getpid(), &self), 0);
    snprintf(path, sizeof path, "runsd-%d.%lld-", (int)getpid(), (long long)self.start_ticks);
    assert_int_equal(count_children(dir, path), 1);
    /* The child itself and 2 of its children: pids.max = 3. */
    assert_int_equal(forks_inside(c), 2);
    rd_cgroup_release(cs, c); /* the 2 paused grandchildren are SIGKILLed */
    /* A stale cgroup of a daemon that is gone, and one of a live daemon (ours). */
    snprintf(stale, sizeof stale, "%s/runsd-999999999.1-0", dir);
    assert_int_equal(mkdir(stale, 0755), 0);
    rd_cgroups_free(cs); /* waits (bounded) until the released one could be removed */
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    assert_int_equal(count_children(dir, path), 0);
    snprintf(path, sizeof path, "%s/runsd-%d.%lld-7", dir, (int)getpid(),
             (long long)self.start_ticks);
    assert_int_equal(mkdir(path, 0755), 0);
    cs = rd_cgroups_new(NULL, "");
    assert_int_equal(access(stale, F_OK), -1); /* swept */
    assert_int_equal(access(path, F_OK), 0);   /* ours: alive, left alone */
    assert_int_equal(rmdir(path), 0);
    rd_cgroups_free(cs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_self),
        cmocka_unit_test(test_parse_mounts),
        cmocka_unit_test(test_join),
        cmocka_unit_test_setup_teardown(test_detect_hybrid_uses_v1, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_detect_v2_delegated, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_detect_v2_without_pids, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_detect_missing, tree_setup, tree_teardown),
        cmocka_unit_test(test_real_cgroup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

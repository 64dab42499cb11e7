/*
 * metrics_proc.c: the process families every Prometheus client library exports, with their
 * standard names, read from /proc/self at each exposition (Linux only, like the daemon).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/metrics.h"

typedef struct proc_fams {
    rd_metric *cpu, *rss, *vsize, *fds, *max_fds, *start;
    double boot_time; /* seconds since the epoch, from /proc/stat */
} proc_fams;

static double boot_time(void)
{
    FILE *f = fopen("/proc/stat", "r");
    char line[256];
    double bt = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "btime %lf", &bt) == 1)
            break;
    if (f)
        fclose(f);
    return bt;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

/* Fields 14-15 (utime, stime), 22 (starttime), 23 (vsize), 24 (rss) of /proc/self/stat,
 * counted after the command name, which may hold spaces and parentheses. */
static void proc_collect(void *arg)
{
    proc_fams *p = arg;
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    char *s = strrchr(buf, ')');
    unsigned long utime, stime, vsize;
    unsigned long long start;
    long rss;
    double tick = (double)sysconf(_SC_CLK_TCK);
    if (s &&
        sscanf(s + 2,
               "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d "
               "%*d %llu %lu %ld",
               &utime, &stime, &start, &vsize, &rss) == 5 &&
        tick > 0) {
        rd_metric_set(p->cpu, NULL, (double)(utime + stime) / tick);
        rd_metric_set(p->vsize, NULL, (double)vsize);
        rd_metric_set(p->rss, NULL, (double)rss * (double)sysconf(_SC_PAGESIZE));
        rd_metric_set(p->start, NULL, p->boot_time + (double)start / tick);
    }
    int fds = count_fds();
    if (fds >= 0)
        rd_metric_set(p->fds, NULL, fds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        rd_metric_set(p->max_fds, NULL, rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur);
}

static void proc_free(void *arg)
{
    free(arg);
}

int rd_metrics_process(rd_metrics *m)
{
    proc_fams *p = calloc(1, sizeof *p);
    if (!p)
        return -1;
    p->boot_time = boot_time();
    p->cpu = rd_metrics_counter(m, "process_cpu_seconds_total",
                                "Total user and system CPU time spent in seconds.", NULL);
    p->rss = rd_metrics_gauge(m, "process_resident_memory_bytes", "Resident memory size in bytes.",
                              NULL);
    p->vsize =
        rd_metrics_gauge(m, "process_virtual_memory_bytes", "Virtual memory size in bytes.", NULL);
    p->fds = rd_metrics_gauge(m, "process_open_fds", "Number of open file descriptors.", NULL);
    p->max_fds =
        rd_metrics_gauge(m, "process_max_fds", "Maximum number of open file descriptors.", NULL);
    p->start = rd_metrics_gauge(m, "process_start_time_seconds",
                                "Start time of the process since unix epoch in seconds.", NULL);
    if (!p->cpu || !p->rss || !p->vsize || !p->fds || !p->max_fds || !p->start ||
        rd_metrics_collector(m, proc_collect, p, proc_free) != 0) {
        free(p);
        return -1;
    }
    return 0;
}

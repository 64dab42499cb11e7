/*
 * config_cmd.c: where a flow's worker command is, and whether it can run. A relative program
 * path (one with a '/' that does not start with one, such as flows/worker.py) names a file
 * next to the config, so a config finds its workers from whatever directory runsd is started
 * in, and the flow's cwd does not move them; a bare name is left to PATH, as a shell would.
 * The check (runsd -t) looks at the file system only; it runs nothing.
 */
#include "config/config_int.h"
#include "base/util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The absolute directory of the config file name (the current directory for a bare name or a
 * config given as a string). NULL when memory runs out. */
static char *config_dir(const char *name)
{
    char *dir = strdup(name), *slash, *abs;

    if (dir == NULL)
        return NULL;
    slash = strrchr(dir, '/');
    if (slash == NULL)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    abs = realpath(dir, NULL);
    if (abs == NULL && dir[0] != '/') {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof cwd) != NULL && asprintf(&abs, "%s/%s", cwd, dir) < 0)
            abs = NULL;
    } else if (abs == NULL) {
        abs = strdup(dir);
    }
    free(dir);
    return abs;
}

char *config_path(parse_ctx *ctx, const char *rel)
{
    char *dir, *path;

    if (rel[0] == '/')
        return strdup(rel);
    dir = config_dir(ctx->name);
    if (dir == NULL || asprintf(&path, "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", rel) < 0)
        path = NULL;
    free(dir);
    return path;
}

bool config_resolve_command(parse_ctx *ctx, rd_flow_config *f)
{
    char *path;

    if (f->argc == 0 || f->argv[0][0] == '/' || strchr(f->argv[0], '/') == NULL)
        return true;
    path = config_path(ctx, f->argv[0]);
    if (path == NULL)
        return false;
    free(f->argv[0]);
    f->argv[0] = path;
    return true;
}

/* Why path cannot be executed, or NULL when it can. */
static const char *not_executable(const char *path)
{
    struct stat st;

    if (stat(path, &st) != 0)
        return errno == ENOENT ? "does not exist" : strerror(errno);
    if (S_ISDIR(st.st_mode))
        return "is a directory";
    if (!S_ISREG(st.st_mode))
        return "is not a regular file";
    if (access(path, X_OK) != 0)
        return "is not executable (no x permission for runsd's user)";
    return NULL;
}

/* The PATH the worker's execvpe will search: its env, else runsd's, else the default. */
static const char *flow_path(const rd_flow_config *f)
{
    const char *p = getenv("PATH");

    for (int i = 0; i < f->n_env; i++)
        if (strncmp(f->env[i], "PATH=", 5) == 0)
            return f->env[i] + 5;
    return p ? p : "/usr/local/bin:/usr/bin:/bin";
}

/* Why the flow's program cannot be started, or NULL when it can; where says where it looked
 * for a bare name. */
static const char *command_problem(const rd_flow_config *f, char *where, size_t wherelen)
{
    const char *p;

    where[0] = '\0';
    if (strchr(f->argv[0], '/') != NULL)
        return not_executable(f->argv[0]);
    for (p = flow_path(f); p != NULL;) {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        char cand[PATH_MAX];

        snprintf(cand, sizeof cand, "%.*s/%s", (int)n, n ? p : ".", f->argv[0]);
        if (not_executable(cand) == NULL)
            return NULL;
        p = colon ? colon + 1 : NULL;
    }
    snprintf(where, wherelen, " (PATH=%s)", flow_path(f));
    return "not found in PATH";
}

int rd_config_check_commands(const rd_config *cfg, char *err, size_t errlen)
{
    int bad = 0;
    size_t used = 0;

    if (errlen > 0)
        err[0] = '\0';
    for (int i = 0; i < cfg->n_flows; i++) {
        const rd_flow_config *f = &cfg->flows[i];
        char where[512];
        const char *why;

        if (f->external || f->argc == 0 || (why = command_problem(f, where, sizeof where)) == NULL)
            continue;
        bad++;
        if (used < errlen) {
            int n = snprintf(err + used, errlen - used, "%s:%d: key 'command': %s %s%s\n",
                             cfg->path, f->command_line, f->argv[0], why, where);
            used += n > 0 ? (size_t)n : 0;
        }
    }
    return bad;
}

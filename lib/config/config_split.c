/*
 * config_split.c: splits a flow's command line into argv the way a POSIX shell splits words
 * (single and double quotes, backslash escapes) but with no expansion of any kind, so what
 * runs is exactly what the config says and no shell is ever involved.
 */
#include "config/config.h"
#include "base/util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* Reads one shell word starting at *pp into word (which has room for the whole command).
 * Returns its length, or -1 on an unbalanced quote or a trailing backslash. */
static long split_word(const char **pp, char *word)
{
    const char *p = *pp;
    long n = 0;

    while (*p != '\0' && !isspace((unsigned char)*p)) {
        if (*p == '\'') {
            const char *close = strchr(p + 1, '\'');

            if (close == NULL)
                return -1;
            memcpy(word + n, p + 1, (size_t)(close - p - 1));
            n += close - p - 1;
            p = close + 1;
        } else if (*p == '"') {
            for (p++; *p != '"'; p++) {
                if (*p == '\0')
                    return -1;
                /* Inside double quotes a backslash escapes only these, as in POSIX sh. */
                if (*p == '\\' && p[1] != '\0' && strchr("\"\\$`", p[1]) != NULL)
                    p++;
                word[n++] = *p;
            }
            p++;
        } else if (*p == '\\') {
            if (p[1] == '\0')
                return -1;
            word[n++] = p[1];
            p += 2;
        } else {
            word[n++] = *p++;
        }
    }
    *pp = p;
    return n;
}

int rd_split_command(const char *cmd, char **argv, int max_argv)
{
    char *word;
    int argc = 0;

    if (cmd == NULL || argv == NULL || max_argv <= 0)
        return RD_EINVAL;
    argv[0] = NULL;
    word = malloc(strlen(cmd) + 1);
    if (word == NULL)
        return RD_EINVAL;
    for (const char *p = cmd;;) {
        long n;

        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0')
            break;
        n = split_word(&p, word);
        if (n < 0 || argc == max_argv)
            goto fail;
        argv[argc] = strndup(word, (size_t)n);
        if (argv[argc] == NULL)
            goto fail;
        argv[++argc] = NULL;
    }
    free(word);
    if (argc == 0)
        return RD_EINVAL;
    return argc;
fail:
    free(word);
    /* NULL every slot we used: the caller's array (a flow's argv) is freed again later. */
    while (argc > 0) {
        free(argv[--argc]);
        argv[argc] = NULL;
    }
    return RD_EINVAL;
}

/*
 * util_log.c: the daemon's log lines (see util.h). One formatter per output format, both fed
 * by one writer of escaped values, so a line parses whatever a value holds: logfmt values
 * are bare when they are plain printable ASCII without '"', '=' or '\', and otherwise
 * quoted with JSON's escapes (\" \\ \n \t \u00XX); invalid UTF-8 becomes U+FFFD in both
 * formats. A line has a fixed bound and is cut inside a value or between fields, never in
 * the middle of an escape, so a cut line still parses.
 */
#include "base/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOG_LINE_MAX 8192
/* Kept free at every step for what closes a line: the cut mark, a quote, '}' and '\n'. */
#define LOG_RESERVE 16

/* The process-wide log settings: the threshold, the format and whether stderr is the
 * journal are properties of the one stderr, so they are the mutable globals of lib/. */
static int log_threshold = RD_LOG_INFO;
static int log_format = RD_LOG_LOGFMT;
static int log_journal = -1; /* -1: not yet checked */

void rd_log_set_level(int level)
{
    if (level < 0)
        level = 0;
    if (level > RD_LOG_DEBUG)
        level = RD_LOG_DEBUG;
    log_threshold = level;
}

void rd_log_set_format(int format)
{
    log_format = format == RD_LOG_JSON ? RD_LOG_JSON : RD_LOG_LOGFMT;
}

bool rd_log_enabled(int level)
{
    return level <= log_threshold;
}

/* systemd sets JOURNAL_STREAM to "<dev>:<inode>" of the stream it connected to stderr;
 * a stderr redirected elsewhere since (a shell, a test) no longer matches it. */
static bool stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) != 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

static const char *level_name(int level)
{
    static const char *const names[] = {"emerg", "alert",  "crit", "error",
                                        "warn",  "notice", "info", "debug"};
    return level >= 0 && level <= RD_LOG_DEBUG ? names[level] : "debug";
}

/* ---- the line buffer ---- */

typedef struct lbuf {
    char *p;
    size_t len, cap; /* cap excludes LOG_RESERVE */
    bool cut;
    bool any; /* a field was written: the next one needs its separator */
} lbuf;

static bool lb_fits(const lbuf *b, size_t n)
{
    return b->len + n <= b->cap;
}

static void lb_put(lbuf *b, const char *s, size_t n)
{
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* The length of the valid UTF-8 sequence at s (of at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t need;
    unsigned cp;

    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        need = 2, cp = s[0] & 0x1fu;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        need = 3, cp = s[0] & 0x0fu;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        need = 4, cp = s[0] & 0x07u;
    else
        return 0;
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    /* Overlong forms, surrogates and code points past U+10FFFF are not UTF-8. */
    if ((need == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (need == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return need;
}

/* True when a logfmt value can go bare. */
static bool plain(const char *s)
{
    if (!*s)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || *p == '"' || *p == '=' || *p == '\\')
            return false;
    return true;
}

/* Writes s quoted and escaped; cut short with "..." inside the quotes when it does not fit. */
static void lb_quoted(lbuf *b, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str);

    lb_put(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        char esc[8];
        const char *out = esc;
        size_t k, olen;

        if (s[i] == '"' || s[i] == '\\')
            esc[0] = '\\', esc[1] = (char)s[i], olen = 2, k = 1;
        else if (s[i] == '\n')
            memcpy(esc, "\\n", 2), olen = 2, k = 1;
        else if (s[i] == '\t')
            memcpy(esc, "\\t", 2), olen = 2, k = 1;
        else if (s[i] < 0x20 || s[i] == 0x7f)
            olen = (size_t)snprintf(esc, sizeof esc, "\\u%04x", s[i]), k = 1;
        else if (s[i] < 0x80)
            out = (const char *)s + i, olen = k = 1;
        else if ((k = utf8_len(s + i, n - i)) > 0)
            out = (const char *)s + i, olen = k;
        else
            memcpy(esc, "\\ufffd", 6), olen = 6, k = 1;
        if (!lb_fits(b, olen)) {
            lb_put(b, "...", 3); /* within the reserve */
            b->cut = true;
            break;
        }
        lb_put(b, out, olen);
        i += k;
    }
    lb_put(b, "\"", 1);
}

/* One field: ` key=value` (logfmt) or `,"key":value` (JSON). Left out when the key does
 * not fit; a value that does not fit is cut. */
static void lb_field(lbuf *b, int format, const char *key, const char *str, const int64_t *num)
{
    char nbuf[24];
    size_t klen = strlen(key);

    if (b->cut || !lb_fits(b, klen + 8)) {
        b->cut = true;
        return;
    }
    if (b->any)
        lb_put(b, format == RD_LOG_JSON ? "," : " ", 1);
    b->any = true;
    if (format == RD_LOG_JSON) {
        lb_put(b, "\"", 1);
        lb_put(b, key, klen);
        lb_put(b, "\":", 2);
    } else {
        lb_put(b, key, klen);
        lb_put(b, "=", 1);
    }
    if (num) {
        int nl = snprintf(nbuf, sizeof nbuf, "%lld", (long long)*num);
        if (lb_fits(b, (size_t)nl))
            lb_put(b, nbuf, (size_t)nl);
        else
            lb_put(b, "0", 1), b->cut = true;
    } else if (format == RD_LOG_LOGFMT && plain(str) && lb_fits(b, strlen(str))) {
        lb_put(b, str, strlen(str));
    } else {
        lb_quoted(b, str);
    }
}

size_t rd_log_format_line(char *buf, size_t cap, int format, bool journal, int64_t ts_ms, int level,
                          const char *msg, const rd_log_field *fields, size_t n)
{
    lbuf b = {.p = buf, .cap = cap - LOG_RESERVE};
    char ts[40];

    if (journal)
        b.len = (size_t)snprintf(buf, cap, "<%d>", level < 0 ? 0 : level > 7 ? 7 : level);
    if (format == RD_LOG_JSON)
        lb_put(&b, "{", 1);
    if (!journal) {
        rd_rfc3339(ts_ms, ts, sizeof ts);
        lb_field(&b, format, "ts", ts, NULL);
    }
    lb_field(&b, format, "level", level_name(level), NULL);
    lb_field(&b, format, "msg", msg ? msg : "", NULL);
    for (size_t i = 0; i < n; i++)
        if (fields[i].is_num || fields[i].str)
            lb_field(&b, format, fields[i].key, fields[i].str,
                     fields[i].is_num ? &fields[i].num : NULL);
    if (format == RD_LOG_JSON)
        buf[b.len++] = '}';
    buf[b.len++] = '\n';
    buf[b.len] = '\0';
    return b.len;
}

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* nowhere else to report a failing stderr */
        buf += w;
        len -= (size_t)w;
    }
}

void rd_log_fields(int level, const char *msg, const rd_log_field *fields, size_t n)
{
    char line[LOG_LINE_MAX];
    int saved_errno = errno;
    size_t len;

    if (level > log_threshold)
        return;
    if (log_journal < 0)
        log_journal = stderr_is_journal();
    len = rd_log_format_line(line, sizeof line, log_format, log_journal == 1, rd_now_ms(), level,
                             msg, fields, n);
    write_all(STDERR_FILENO, line, len);
    errno = saved_errno; /* callers may still want errno for their own message */
}

void rd_log(int level, const char *fmt, ...)
{
    char msg[LOG_LINE_MAX / 2];
    int saved_errno = errno;
    va_list ap;

    if (level > log_threshold)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    errno = saved_errno;
    rd_log_fields(level, msg, NULL, 0);
}

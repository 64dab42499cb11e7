/*
 * store_pg_conn.c: the PostgreSQL backend's connection when the server does not answer or is
 * gone: waiting with a deadline, reconnecting without waiting, and the commit marker that tells
 * whether a commit whose answer was lost was committed (docs/postgresql.md, "When the database
 * fails").
 *
 * Deadline. Every wait for the server ends by [store] timeout: a call that must wait (a read, a
 * synchronous commit, the commit in flight when a call needs the connection) polls with the
 * time left, and a commit in flight or a probe left unanswered past it is given up when it is
 * next polled. The connection is then dropped as if it were lost: the journal keeps what was
 * not committed and the reconnection below makes a new one (to the next host of a multi-host
 * dsn, after a failover; after a partition that brought no RST).
 *
 * In doubt. When the connection goes after COMMIT was sent, the server may have committed. Every
 * transaction therefore first sets this daemon's row of runsd_writers (writer: random for the
 * process) from the value it last committed (mark) to a new one (tx_mark), under the row's lock,
 * with a check that fails the transaction if the row holds anything else. After such a loss the
 * new connection, before it is ready, runs MARK_RESOLVE: it waits for the row's lock (so the lost
 * transaction, if the server still runs it, ends first), and if the row still holds the value
 * before, it writes the negated new one, which fences the lost transaction off for good (its
 * check fails if it ever runs). The row then says which: the new value (committed) or its
 * negation (not). The journal asks (rd_store_commit_landed) before it writes anything again.
 */
#include "store/store_pg_int.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "base/util.h"

#define RECONNECT_MS 250
/* A reconnection that has not finished in this long is given up (libpq's connect_timeout
 * does not apply to PQconnectPoll) and started again at the next attempt. */
#define CONNECT_MS 5000
/* Writers' rows not written for this long belong to daemons long gone. */
#define WRITER_KEEP_MS ((int64_t)30 * 24 * 3600 * 1000)

int64_t rd_pg_until(const rd_pg *s)
{
    return rd_mono_ms() + s->timeout_ms;
}

void rd_pg_drop(rd_pg *s, const char *what)
{
    if (s->up)
        rd_log_err("store: postgresql: no answer from the server in %" PRId64
                   " ms (%s): dropping the connection ([store] timeout)",
                   s->timeout_ms, what);
    s->up = false; /* rd_pg_down logs nothing more */
    rd_pg_down(s, what);
}

int rd_pg_wait(rd_pg *s, bool result, int64_t until, const char *what)
{
    for (;;) {
        int fl = PQflush(s->conn);
        if (fl < 0 || PQconsumeInput(s->conn) != 1)
            break;
        if (result ? !PQisBusy(s->conn) : fl == 0)
            return 0;
        int64_t left = until - rd_mono_ms();
        if (left <= 0) {
            rd_pg_drop(s, what);
            return RD_EIO;
        }
        struct pollfd p = {.fd = PQsocket(s->conn), .events = (short)(POLLIN | (fl ? POLLOUT : 0))};
        if (poll(&p, 1, (int)(left < 1000000 ? left : 1000000)) < 0 && errno != EINTR)
            break;
    }
    rd_pg_down(s, what);
    return RD_EIO;
}

/* ---- the commit marker ------------------------------------------------------------------ */

int rd_pg_mark_send(rd_pg *s)
{
    pg_args a = {0};
    pga_str(&a, s->writer);
    pga_i64(&a, s->mark);
    pga_i64(&a, s->tx_mark = ++s->mark_seq);
    pga_i64(&a, rd_now_ms());
    return PQsendQueryPrepared(s->conn, rd_pg_st_name(PS_MARK), a.n, a.v, NULL, NULL, 0) == 1
               ? 0
               : RD_EIO;
}

int rd_pg_mark_open(rd_pg *s, char *err, size_t errlen)
{
    unsigned char raw[16];
    char cut[24];

    if (rd_random_bytes(raw, sizeof raw) != 0)
        return snprintf(err, errlen, "no random bytes for the writer id"), RD_EIO;
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(s->writer + 2 * i, 3, "%02x", raw[i]);
    snprintf(cut, sizeof cut, "%" PRId64, rd_now_ms() - WRITER_KEEP_MS);
    const char *v[] = {cut};
    PGresult *r = PQexecParams(s->conn, "DELETE FROM runsd_writers WHERE updated_at < $1", 1, NULL,
                               v, NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : RD_EIO;
    if (rc != 0)
        snprintf(err, errlen, "runsd_writers: %s", PQresultErrorMessage(r));
    PQclear(r);
    return rc;
}

/* Sends the lookup of the commit in doubt (see the file's comment), waiting at most the
 * timeout for the row's lock. */
static int resolve_send(rd_pg *s)
{
    char ms[24];
    pg_args a = {0};
    const char *lt[] = {ms};

    snprintf(ms, sizeof ms, "%" PRId64, s->timeout_ms);
    pga_str(&a, s->writer);
    pga_i64(&a, s->doubt_prev);
    pga_i64(&a, s->doubt_mark);
    pga_i64(&a, rd_now_ms());
    if (PQsendQueryParams(s->conn, "SELECT set_config('lock_timeout', $1, true)", 1, NULL, lt, NULL,
                          NULL, 0) != 1 ||
        PQsendQueryPrepared(s->conn, rd_pg_st_name(PS_MARK_RESOLVE), a.n, a.v, NULL, NULL, 0) !=
            1 ||
        PQpipelineSync(s->conn) != 1 || PQflush(s->conn) < 0)
        return RD_EIO;
    s->resolving = true;
    s->conn_until = rd_mono_ms() + s->timeout_ms + CONNECT_MS;
    return 0;
}

/* The lookup's answer v: the commit in doubt was committed (v is its value) or fenced off. */
static void resolved(rd_pg *s, int64_t v)
{
    s->doubt = s->resolving = false;
    s->mark = v;
    s->outcome = v == s->doubt_mark ? 1 : 0;
    rd_log_info("store: postgresql: the commit whose answer was lost %s",
                s->outcome ? "was committed: it is not written again"
                           : "was not committed: it is written again");
}

/* ---- reconnecting without waiting ------------------------------------------------------- */

void rd_pg_params(const rd_pg *s, const char *hostaddr, const char **keys, const char **vals)
{
    int n = 0;
    keys[n] = "connect_timeout", vals[n++] = "5";
    keys[n] = "application_name", vals[n++] = "runsd";
    if (s->password_file) /* else libpq's own default (PGPASSFILE, ~/.pgpass) */
        keys[n] = "passfile", vals[n++] = s->password_file;
    keys[n] = "dbname", vals[n++] = s->dsn;
    if (hostaddr) /* after the dsn: it wins over a hostaddr there would be (there is none) */
        keys[n] = "hostaddr", vals[n++] = hostaddr;
    keys[n] = vals[n] = NULL;
}

/* A new connection, started without waiting: with the addresses resolved on the loop when the
 * dsn names hosts (none yet: the resolution is started, and this attempt fails). */
static int connect_start(rd_pg *s)
{
    const char *keys[8], *vals[8], *hostaddr = NULL;

    if (s->dns) {
        if (!rd_pg_dns_resolve(s->dns))
            return RD_EIO;
        hostaddr = rd_pg_dns_take(s->dns);
    }
    rd_pg_params(s, hostaddr, keys, vals);
    PGconn *c = PQconnectStartParams(keys, vals, 1);
    if (!c)
        return RD_EIO;
    PQfinish(s->conn);
    s->conn = c;
    return PQstatus(c) == CONNECTION_BAD ? RD_EIO : 0;
}

/* Sends every statement's prepare in one pipeline, then a Sync, without waiting. */
static int prepare_send(rd_pg *s)
{
    char sql[8192];

    if (PQsetnonblocking(s->conn, 1) != 0 || PQenterPipelineMode(s->conn) != 1)
        return RD_EIO;
    for (int i = 0; i < PS__COUNT; i++) {
        if (!rd_pg_sql((pg_st)i, sql, sizeof sql) ||
            PQsendPrepare(s->conn, rd_pg_st_name((pg_st)i), sql, 0, NULL) != 1)
            return RD_EIO;
    }
    return PQpipelineSync(s->conn) == 1 && PQflush(s->conn) >= 0 ? 0 : RD_EIO;
}

/* Whether the socket is already as PQconnectPoll asked (never waits). */
static bool conn_io_ready(rd_pg *s)
{
    struct pollfd p = {.fd = PQsocket(s->conn),
                       .events = s->conn_st == PGRES_POLLING_READING ? POLLIN : POLLOUT};
    return p.fd >= 0 && poll(&p, 1, 0) == 1;
}

/* Starts a reconnection when none is under way (at most one per RECONNECT_MS). */
static int reconnect_start(rd_pg *s)
{
    int64_t now = rd_mono_ms();

    if (s->connecting) {
        if (now <= s->conn_until)
            return 0;
        rd_log_err("store: postgresql: %s after %" PRId64 " ms; trying again",
                   s->resolving ? "the commit in doubt is still locked" : "no connection",
                   now - s->last_try);
        s->connecting = s->preparing = s->resolving = false;
    }
    if (s->last_try && now - s->last_try < RECONNECT_MS)
        return RD_EIO;
    s->last_try = now;
    s->conn_until = now + CONNECT_MS;
    if (connect_start(s) != 0)
        return RD_EIO;
    s->connecting = true;
    s->preparing = s->resolving = s->prep_bad = false;
    s->conn_st = PGRES_POLLING_WRITING;
    return 0;
}

/* Connected: the prepares go out. RD_EIO when they cannot be sent. */
static int connected(rd_pg *s)
{
    if (prepare_send(s) != 0) {
        rd_log_err("store: postgresql: after reconnecting: %s", PQerrorMessage(s->conn));
        s->connecting = false;
        return RD_EIO;
    }
    s->preparing = true;
    return 0;
}

/* Reads what arrived of the prepares, then of the lookup of a commit in doubt: 0 all done,
 * 1 not yet (wait as *w says), RD_EIO failed. */
static int setup_read(rd_pg *s, rd_store_wait *w)
{
    for (;;) {
        int64_t v = 0;
        int fl = PQflush(s->conn);
        int rc = fl < 0 ? RD_EIO
                        : rd_pg_read_to_sync(s, false, &s->prep_bad, s->resolving ? &v : NULL,
                                             s->resolving ? "commit in doubt" : "prepare");
        if (rc == 1) {
            rd_pg_want_io(s, w, true, fl == 1);
            return 1;
        }
        if (rc != 0 || s->prep_bad)
            return RD_EIO;
        if (s->resolving) {
            resolved(s, v);
            return 0;
        }
        if (!s->doubt)
            return 0;
        if (resolve_send(s) != 0)
            return RD_EIO;
    }
}

int rd_pg_reconnect(rd_pg *s, rd_store_wait *w)
{
    if (reconnect_start(s) != 0)
        return RD_EIO;
    while (!s->preparing && conn_io_ready(s)) {
        s->conn_st = PQconnectPoll(s->conn);
        if (s->conn_st == PGRES_POLLING_FAILED) {
            s->connecting = false;
            return RD_EIO;
        }
        if (s->conn_st == PGRES_POLLING_OK && connected(s) != 0)
            return RD_EIO;
    }
    if (!s->preparing) {
        rd_pg_want_io(s, w, s->conn_st == PGRES_POLLING_READING,
                      s->conn_st != PGRES_POLLING_READING);
        return 1;
    }
    int rc = setup_read(s, w);
    if (rc == 1)
        return 1;
    s->connecting = s->preparing = s->resolving = false;
    if (rc != 0)
        return RD_EIO;
    s->up = true;
    s->failed = false;
    rd_log_info("store: postgresql: connected again");
    return 0;
}

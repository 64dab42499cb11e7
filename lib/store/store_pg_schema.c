/*
 * store_pg_schema.c: the PostgreSQL schema, as numbered migrations, and the SQL of every
 * statement. runsd_schema holds the version the database is at. Migrating takes a
 * transaction-scoped advisory lock first, so several daemons starting at once against one
 * database apply each step once: the others wait, then find the work done. A database whose
 * version is newer than this binary's is refused (an older runsd must not write a schema it
 * does not know).
 *
 * Indexes match the SQLite backend's (store_sqlite.c): the (run_id, item_seq) partial unique
 * index serves results paging and cursors, (run_id, id) a run's event log, the primary key
 * the global event log, and the outbox's partial indexes its due-queue.
 */
#include "store/store_pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_cols.h"
#include "base/util.h"

/* A constant of our own for pg_advisory_xact_lock: "runsd" in ASCII. */
#define MIGRATE_LOCK "495874995044"

/* Version 1: the core tables. The runs table's columns come from store_cols.c; a column
 * added there later needs a migration step of its own (ALTER TABLE runs ADD COLUMN). */
static const char v1_sql[] =
    "CREATE INDEX runs_status ON runs (status, created_at, seq);"
    "CREATE INDEX runs_flow_created ON runs (flow, created_at, seq);"
    "CREATE INDEX runs_created ON runs (created_at, seq);"
    "CREATE TABLE events (id BIGINT PRIMARY KEY, run_id TEXT NOT NULL, flow TEXT,"
    " type TEXT NOT NULL, ts BIGINT NOT NULL, data TEXT NOT NULL, item_seq BIGINT);"
    "CREATE INDEX events_run ON events (run_id, id);"
    "CREATE UNIQUE INDEX events_item ON events (run_id, item_seq) WHERE item_seq IS NOT NULL;"
    "CREATE TABLE runsd_event_seq (one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),"
    " last_id BIGINT NOT NULL);"
    "INSERT INTO runsd_event_seq (last_id) VALUES (0);"
    "CREATE TABLE idempotency (key_hash TEXT PRIMARY KEY, run_id TEXT, body_hash TEXT,"
    " created_at BIGINT);"
    "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT);"
    "CREATE TABLE pgroups (pgid BIGINT PRIMARY KEY, start_ticks BIGINT NOT NULL,"
    " boot_id TEXT NOT NULL, run_id TEXT);"
    "CREATE TABLE enrichments (run_id TEXT NOT NULL, item_seq BIGINT NOT NULL,"
    " flow TEXT NOT NULL, data TEXT NOT NULL, ts BIGINT NOT NULL,"
    " PRIMARY KEY (run_id, item_seq, flow));";

/* Version 2: the webhook outbox. */
static const char v2_sql[] =
    "CREATE TABLE deliveries (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " id TEXT NOT NULL UNIQUE, run_id TEXT NOT NULL, type TEXT NOT NULL, url TEXT NOT NULL,"
    " source INTEGER NOT NULL, secret TEXT, body TEXT NOT NULL, state INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL, manual INTEGER NOT NULL DEFAULT 0,"
    " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, next_at BIGINT NOT NULL,"
    " last_code INTEGER NOT NULL, last_error TEXT);"
    "CREATE INDEX deliveries_due ON deliveries (next_at, seq) WHERE state = 0;"
    "CREATE INDEX deliveries_sending ON deliveries (seq) WHERE state = 1;"
    "CREATE INDEX deliveries_run_seq ON deliveries (run_id, seq);"
    "CREATE INDEX deliveries_endpoint ON deliveries (run_id, url, state);"
    "CREATE TABLE delivery_attempts (delivery_id TEXT NOT NULL, n INTEGER NOT NULL,"
    " manual INTEGER NOT NULL, at BIGINT NOT NULL, duration_ms BIGINT NOT NULL,"
    " status_code INTEGER NOT NULL, error TEXT, next_at BIGINT NOT NULL,"
    " PRIMARY KEY (delivery_id, n));";

/* Version 3: the commit marker. Every transaction of a daemon sets its row (writer: random, per
 * process) first, so a commit whose answer was lost is looked up (store_pg_conn.c). */
static const char v3_sql[] =
    "CREATE TABLE runsd_writers (writer TEXT PRIMARY KEY, commit_seq BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL);";

#define SCHEMA_VERSION 3

int rd_pg_schema_version(void)
{
    return SCHEMA_VERSION;
}

/* ---- generated SQL ---------------------------------------------------------------------- */

static void sb_cols(rd_sqlbuf *b)
{
    for (size_t i = 0; i < rd_n_run_cols; i++)
        rd_sqlbuf_add(b, "%s%s", i ? ", " : "", rd_run_cols[i].name);
}

static void sb_create_runs(rd_sqlbuf *b)
{
    rd_sqlbuf_add(b, "CREATE TABLE runs (");
    for (size_t i = 0; i < rd_n_run_cols; i++) {
        col_kind k = rd_run_cols[i].kind;
        rd_sqlbuf_add(b, "%s%s %s%s", i ? ", " : "", rd_run_cols[i].name,
                      k == COL_STR || k == COL_JSON ? "TEXT" : "BIGINT",
                      i == 0         ? " PRIMARY KEY"
                      : k == COL_STR ? " NOT NULL DEFAULT ''"
                                     : "");
    }
    /* The insertion order, which breaks ties on created_at (SQLite's rowid). */
    rd_sqlbuf_add(b, ", seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE);");
}

/* The runs statements: $1..$n are the columns in rd_run_cols order; the list and count take
 * $1 statuses (int[] or NULL), $2 flow (or NULL), and the list $3 limit, $4 offset. */
static void run_sql(pg_st st, rd_sqlbuf *b)
{
    const char *filter = " WHERE ($1::int[] IS NULL OR status = ANY($1::int[]))"
                         " AND ($2::text IS NULL OR flow = $2::text)";
    if (st == PS_RUN_INSERT) {
        rd_sqlbuf_add(b, "INSERT INTO runs (");
        sb_cols(b);
        rd_sqlbuf_add(b, ") VALUES (");
        for (size_t i = 0; i < rd_n_run_cols; i++)
            rd_sqlbuf_add(b, "%s$%zu", i ? ", " : "", i + 1);
        rd_sqlbuf_add(b, ") ON CONFLICT DO NOTHING");
    } else if (st == PS_RUN_UPDATE) {
        bool first = true;
        rd_sqlbuf_add(b, "UPDATE runs SET ");
        for (size_t i = 0; i < rd_n_run_cols; i++) {
            if (rd_run_col_immutable(rd_run_cols[i].name))
                continue;
            rd_sqlbuf_add(b, "%s%s = $%zu", first ? "" : ", ", rd_run_cols[i].name, i + 1);
            first = false;
        }
        /* Every parameter must appear for its type to be known: the immutable columns (never
         * assigned, as in the SQLite backend) are named in always-true terms. */
        rd_sqlbuf_add(b, " WHERE id = $1");
        for (size_t i = 1; i < rd_n_run_cols; i++)
            if (rd_run_col_immutable(rd_run_cols[i].name))
                rd_sqlbuf_add(b, " AND $%zu::%s IS NOT NULL", i + 1,
                              rd_run_cols[i].kind == COL_STR ? "text" : "bigint");
    } else if (st == PS_RUN_COUNT) {
        rd_sqlbuf_add(b, "SELECT COUNT(*) FROM runs%s", filter);
    } else {
        rd_sqlbuf_add(b, "SELECT ");
        sb_cols(b);
        rd_sqlbuf_add(b, " FROM runs");
        if (st == PS_RUN_GET)
            rd_sqlbuf_add(b, " WHERE id = $1");
        else if (st == PS_RUNS_ACTIVE)
            rd_sqlbuf_add(b, " WHERE status = ANY($1::int[]) ORDER BY created_at, seq");
        else
            rd_sqlbuf_add(b, "%s ORDER BY created_at DESC, seq DESC LIMIT $3 OFFSET $4", filter);
    }
}

static const char *const st_sql[] = {
#define X_SQL(name, sql) sql,
    PG_LIST(X_SQL)
#undef X_SQL
};

static const char *const st_name[] = {
#define X_NAME(name, sql) "PS_" #name,
    PG_LIST(X_NAME)
#undef X_NAME
};

const char *rd_pg_st_name(pg_st st)
{
    return st_name[st];
}

bool rd_pg_sql(pg_st st, char *buf, size_t len)
{
    rd_sqlbuf b = {.s = buf, .cap = len, .n = 0};

    if (st_sql[st])
        rd_sqlbuf_add(&b, "%s", st_sql[st]);
    else
        run_sql(st, &b);
    return b.n < b.cap;
}

/* ---- migrations ------------------------------------------------------------------------- */

static int exec_ok(PGconn *conn, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *r = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : RD_EIO;

    if (rc != 0)
        snprintf(err, errlen, "%s: %s", what, PQresultErrorMessage(r));
    PQclear(r);
    return rc;
}

/* The version the database is at (0: a new database), read under the migration lock. */
static int read_version(PGconn *conn, int *out, char *err, size_t errlen)
{
    PGresult *r = PQexec(conn, "SELECT COALESCE(MAX(version), 0) FROM runsd_schema");
    int rc = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? 0 : RD_EIO;

    if (rc == 0)
        *out = atoi(PQgetvalue(r, 0, 0));
    else
        snprintf(err, errlen, "read the schema version: %s", PQresultErrorMessage(r));
    PQclear(r);
    return rc;
}

/* Applies the steps after version, in order. */
static int apply_steps(PGconn *conn, int version, char *err, size_t errlen)
{
    char runs[8192], set[96];
    int rc = 0;

    if (version < 1) {
        rd_sqlbuf b = {.s = runs, .cap = sizeof runs, .n = 0};
        sb_create_runs(&b);
        if (b.n >= b.cap)
            return snprintf(err, errlen, "schema SQL is too long"), RD_EIO;
        if ((rc = exec_ok(conn, runs, "migration 1 (runs)", err, errlen)) != 0 ||
            (rc = exec_ok(conn, v1_sql, "migration 1", err, errlen)) != 0)
            return rc;
    }
    if (version < 2 && (rc = exec_ok(conn, v2_sql, "migration 2", err, errlen)) != 0)
        return rc;
    if (version < 3 && (rc = exec_ok(conn, v3_sql, "migration 3", err, errlen)) != 0)
        return rc;
    snprintf(set, sizeof set, "DELETE FROM runsd_schema; INSERT INTO runsd_schema VALUES (%d)",
             SCHEMA_VERSION);
    return exec_ok(conn, set, "record the schema version", err, errlen);
}

int rd_pg_migrate(PGconn *conn, char *err, size_t errlen)
{
    int version = 0, rc;

    if ((rc = exec_ok(conn, "BEGIN", "begin", err, errlen)) != 0)
        return rc;
    /* The lock first: two daemons must not both see an empty database and build it. */
    rc = exec_ok(conn, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK ")", "migration lock", err,
                 errlen);
    if (rc == 0)
        rc = exec_ok(conn, "CREATE TABLE IF NOT EXISTS runsd_schema (version INTEGER NOT NULL)",
                     "create runsd_schema", err, errlen);
    if (rc == 0)
        rc = read_version(conn, &version, err, errlen);
    if (rc == 0 && version > SCHEMA_VERSION) {
        snprintf(err, errlen,
                 "the database schema is version %d, newer than this runsd's (%d): upgrade runsd",
                 version, SCHEMA_VERSION);
        rc = RD_EINVAL;
    }
    if (rc == 0 && version < SCHEMA_VERSION) {
        rd_log_info("store: postgresql schema version %d -> %d", version, SCHEMA_VERSION);
        rc = apply_steps(conn, version, err, errlen);
    }
    if (rc == 0)
        return exec_ok(conn, "COMMIT", "commit the migration", err, errlen);
    PQclear(PQexec(conn, "ROLLBACK"));
    return rc;
}

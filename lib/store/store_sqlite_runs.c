/*
 * store_sqlite_runs.c: the runs table of the SQLite store. The table is described once, by
 * rd_run_cols[] (store_cols.c, shared with the PostgreSQL backend): its CREATE TABLE, INSERT,
 * UPDATE and SELECT statements and the code that binds and reads a record are all generated
 * from it, so adding a field to rd_run is one line there.
 * store_sqlite.c prepares the generated statements with the others and runs the CREATE in
 * its migration.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_cols.h"
#include "store/store_sqlite_int.h"
#include "base/util.h"

#define run_cols rd_run_cols
#define N_RUN_COLS rd_n_run_cols
#define active_mask rd_run_active_mask

/* ---- the generated SQL ------------------------------------------------------------------ */

/* "id, flow, ..." or, with assign, "flow = ?2, ..." (the immutable columns excluded). */
static void sb_cols(rd_sqlbuf *b, bool assign)
{
    bool first = true;
    for (size_t i = 0; i < N_RUN_COLS; i++) {
        if (assign && rd_run_col_immutable(run_cols[i].name))
            continue;
        const char *sep = first ? "" : ", ";
        first = false;
        if (assign)
            rd_sqlbuf_add(b, "%s%s = ?%zu", sep, run_cols[i].name, i + 1);
        else
            rd_sqlbuf_add(b, "%s%s", sep, run_cols[i].name);
    }
}

static void sb_create_runs(rd_sqlbuf *b)
{
    rd_sqlbuf_add(b, "CREATE TABLE IF NOT EXISTS runs (");
    for (size_t i = 0; i < N_RUN_COLS; i++) {
        col_kind k = run_cols[i].kind;
        const char *type = k == COL_STR || k == COL_JSON ? "TEXT" : "INTEGER";
        rd_sqlbuf_add(b, "%s%s %s%s", i ? ", " : "", run_cols[i].name, type,
                      i == 0         ? " PRIMARY KEY"
                      : k == COL_STR ? " NOT NULL DEFAULT ''"
                                     : "");
    }
    rd_sqlbuf_add(b, ")");
}

/* The WHERE clause of a RUN_LIST / RUN_COUNT variant: + 1 status filter, + 2 flow filter. */
static void sb_run_filter(rd_sqlbuf *b, int v)
{
    if (v & 1)
        rd_sqlbuf_add(b, " WHERE " STATUS_IN);
    if (v & 2)
        rd_sqlbuf_add(b, "%s flow = :flow", v & 1 ? " AND" : " WHERE");
}

/* Generates the SQL of the runs statements (those with a NULL entry in ST_LIST). */
static void run_sql(st_id id, rd_sqlbuf *b)
{
    if (id == ST_RUN_INSERT) {
        rd_sqlbuf_add(b, "INSERT INTO runs (");
        sb_cols(b, false);
        rd_sqlbuf_add(b, ") VALUES (");
        for (size_t i = 0; i < N_RUN_COLS; i++)
            rd_sqlbuf_add(b, "%s?%zu", i ? ", " : "", i + 1);
        rd_sqlbuf_add(b, ")");
    } else if (id == ST_RUN_UPDATE) {
        rd_sqlbuf_add(b, "UPDATE runs SET ");
        sb_cols(b, true);
        rd_sqlbuf_add(b, " WHERE id = ?1");
    } else if (id >= ST_RUN_COUNT) {
        rd_sqlbuf_add(b, "SELECT COUNT(*) FROM runs");
        sb_run_filter(b, (int)id - ST_RUN_COUNT);
    } else {
        rd_sqlbuf_add(b, "SELECT ");
        sb_cols(b, false);
        rd_sqlbuf_add(b, " FROM runs");
        if (id == ST_RUN_GET) {
            rd_sqlbuf_add(b, " WHERE id = ?1");
        } else if (id == ST_RUNS_ACTIVE) {
            rd_sqlbuf_add(b, " WHERE " STATUS_IN " ORDER BY created_at, rowid");
        } else {
            sb_run_filter(b, (int)id - ST_RUN_LIST);
            rd_sqlbuf_add(b, " ORDER BY created_at DESC, rowid DESC LIMIT :limit OFFSET :offset");
        }
    }
}

bool rd_sqlite_runs_schema(char *buf, size_t len)
{
    rd_sqlbuf b = {.s = buf, .cap = len, .n = 0};

    sb_create_runs(&b);
    return b.n < b.cap;
}

bool rd_sqlite_runs_sql(st_id id, char *buf, size_t len)
{
    rd_sqlbuf b = {.s = buf, .cap = len, .n = 0};

    run_sql(id, &b);
    return b.n < b.cap;
}

/* ---- binding and reading records -------------------------------------------------------- */

static int bind_json(sqlite3_stmt *st, int i, const json_t *j)
{
    char *txt;

    if (!j)
        return sqlite3_bind_null(st, i);
    /* ENCODE_ANY: input and result may be bare scalars, not only objects or arrays. */
    txt = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!txt)
        return SQLITE_NOMEM;
    return sqlite3_bind_text(st, i, txt, -1, free); /* SQLite frees txt, even on failure */
}

static int bind_col(sqlite3_stmt *st, int i, const run_col *c, const rd_run *r)
{
    const char *p = (const char *)r + c->off;

    switch (c->kind) {
    case COL_STR:
        return sqlite3_bind_text(st, i, p, (int)strnlen(p, c->size), SQLITE_STATIC);
    case COL_I64:
        return sqlite3_bind_int64(st, i, *(const int64_t *)p);
    case COL_INT:
        return sqlite3_bind_int(st, i, *(const int *)p);
    case COL_BOOL:
        return sqlite3_bind_int(st, i, *(const bool *)p ? 1 : 0);
    case COL_STATUS:
        return sqlite3_bind_int(st, i, (int)*(const rd_status *)p);
    case COL_REASON:
        return sqlite3_bind_int(st, i, (int)*(const rd_reason *)p);
    case COL_JSON:
        return bind_json(st, i, *(json_t *const *)p);
    }
    return SQLITE_MISUSE;
}

static int bind_run(rd_sqlite *s, sqlite3_stmt *st, const rd_run *r, const char *what)
{
    for (size_t i = 0; i < N_RUN_COLS; i++) {
        if (bind_col(st, (int)i + 1, &run_cols[i], r) != SQLITE_OK) {
            rd_log_err("store: %s: cannot bind %s: %s", what, run_cols[i].name,
                       sqlite3_errmsg(s->db));
            rd_sqlite_done(st);
            return RD_EIO;
        }
    }
    return 0;
}

static int read_json(sqlite3_stmt *st, int i, json_t **out)
{
    json_error_t jerr;

    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return 0;
    /* ALLOW_NUL: json_dumps wrote "\u0000" escapes for strings holding NUL bytes. */
    *out = json_loadb((const char *)sqlite3_column_text(st, i), (size_t)sqlite3_column_bytes(st, i),
                      JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    return *out ? 0 : -1;
}

/* Reads result column i into the record. -1 when the stored value is not a valid one. */
static int read_col(sqlite3_stmt *st, int i, const run_col *c, rd_run *r)
{
    char *p = (char *)r + c->off;

    if (c->kind == COL_STR)
        return rd_sqlite_copy_out(st, i, p, c->size);
    if (c->kind == COL_JSON)
        return read_json(st, i, (json_t **)p);
    return rd_run_col_set_int(c, r, sqlite3_column_int64(st, i));
}

static int row_to_run(sqlite3_stmt *st, rd_run **out)
{
    rd_run *r = rd_run_new();

    if (!r) {
        rd_log_err("store: out of memory reading a run");
        return RD_EIO;
    }
    for (size_t i = 0; i < N_RUN_COLS; i++) {
        if (read_col(st, (int)i, &run_cols[i], r) != 0) {
            rd_log_err("store: run %s: invalid stored %s", sqlite3_column_text(st, 0),
                       run_cols[i].name);
            rd_run_free(r);
            return RD_EIO;
        }
    }
    *out = r;
    return 0;
}

/* Steps st to the end, collecting every row as a record; releases st. */
static int collect_runs(rd_sqlite *s, sqlite3_stmt *st, rd_run ***out, size_t *n)
{
    rd_run **v = NULL;
    size_t len = 0, cap = 0;
    int rc, ret = 0;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (len == cap) {
            rd_run **nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v));
            if (!nv) {
                ret = RD_EIO;
                rd_log_err("store: out of memory listing runs");
                break;
            }
            v = nv;
        }
        if ((ret = row_to_run(st, &v[len])) != 0)
            break;
        len++;
    }
    if (ret == 0 && rc != SQLITE_DONE)
        ret = rd_sqlite_fail(s, "run list");
    rd_sqlite_done(st);
    if (ret != 0) {
        rd_run_array_free(v, len);
        return ret;
    }
    *out = v;
    *n = len;
    return 0;
}

/* ---- the operations --------------------------------------------------------------------- */

int rd_sqlite_run_insert(rd_store *base, const rd_run *r)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_RUN_INSERT];
    int rc = rd_sqlite_tx_begin(s);

    if (rc != 0 || (rc = bind_run(s, st, r, "run insert")) != 0)
        return rc;
    return rd_sqlite_step_done(s, st, "run insert");
}

int rd_sqlite_run_update(rd_store *base, const rd_run *r)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_RUN_UPDATE];
    int rc = rd_sqlite_tx_begin(s);

    if (rc != 0 || (rc = bind_run(s, st, r, "run update")) != 0)
        return rc;
    if ((rc = rd_sqlite_step_done(s, st, "run update")) != 0)
        return rc;
    return sqlite3_changes(s->db) > 0 ? 0 : RD_ENOTFOUND;
}

int rd_sqlite_run_get(rd_store *base, const char *id, rd_run **out)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_RUN_GET];
    int rc = SQLITE_OK, ret;

    rd_sqlite_bind_text(st, 1, id, &rc);
    if (rc != SQLITE_OK)
        return rd_sqlite_bind_fail(s, st, "run get");
    if ((ret = rd_sqlite_step_row(s, st, "run get")) == SQLITE_ROW)
        ret = row_to_run(st, out);
    rd_sqlite_done(st);
    return ret;
}

/* Binds ?1..?11 of STATUS_IN: the status itself when its bit is set, else NULL, which never
 * matches. A mask naming no valid status therefore matches nothing. */
static void bind_status_mask(sqlite3_stmt *st, unsigned mask, int *rc)
{
    for (int i = 0; i < RD_ST__COUNT && *rc == SQLITE_OK; i++)
        *rc = mask & (1u << i) ? sqlite3_bind_int(st, i + 1, i) : sqlite3_bind_null(st, i + 1);
}

/* Binds the filter part shared by a RUN_LIST* statement and its RUN_COUNT* twin. */
static void bind_run_filter(sqlite3_stmt *st, const rd_run_filter *f, int *rc)
{
    if (f->status_mask)
        bind_status_mask(st, f->status_mask, rc);
    if (f->flow)
        rd_sqlite_bind_text(st, sqlite3_bind_parameter_index(st, ":flow"), f->flow, rc);
}

int rd_sqlite_run_list(rd_store *base, const rd_run_filter *f, int64_t offset, int limit,
                       rd_run ***out, size_t *n, int64_t *total)
{
    rd_sqlite *s = (rd_sqlite *)base;
    static const rd_run_filter any = {0, NULL};
    int variant, rc = SQLITE_OK;
    sqlite3_stmt *st;

    f = f ? f : &any;
    variant = (f->status_mask ? 1 : 0) + (f->flow ? 2 : 0);
    if (total) {
        st = s->st[ST_RUN_COUNT + variant];
        bind_run_filter(st, f, &rc);
        if (rc != SQLITE_OK)
            return rd_sqlite_bind_fail(s, st, "run count");
        if ((rc = rd_sqlite_step_i64(s, st, total, "run count")) != 0)
            return rc;
    }
    st = s->st[ST_RUN_LIST + variant];
    bind_run_filter(st, f, &rc);
    rd_sqlite_bind_i64(st, sqlite3_bind_parameter_index(st, ":limit"), limit > 0 ? limit : -1, &rc);
    rd_sqlite_bind_i64(st, sqlite3_bind_parameter_index(st, ":offset"), offset > 0 ? offset : 0,
                       &rc);
    if (rc != SQLITE_OK)
        return rd_sqlite_bind_fail(s, st, "run list");
    return collect_runs(s, st, out, n);
}

int rd_sqlite_runs_active(rd_store *base, rd_run ***out, size_t *n)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_RUNS_ACTIVE];
    int rc = SQLITE_OK;

    bind_status_mask(st, active_mask, &rc);
    if (rc != SQLITE_OK)
        return rd_sqlite_bind_fail(s, st, "runs active");
    return collect_runs(s, st, out, n);
}

/*
 * store_pg_runs.c: the runs table of the PostgreSQL store. Records are bound and read from
 * the shared column table (store_cols.c) as text parameters and text results; JSON columns
 * hold json_dumps() output, as in the SQLite backend.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_cols.h"
#include "store/store_pg_int.h"
#include "base/util.h"

/* Binds every column of r; the JSON texts are malloc'd into json[] (freed by the caller). */
static int bind_run(const rd_run *r, pg_args *a, char **json)
{
    for (size_t i = 0; i < rd_n_run_cols; i++) {
        const run_col *c = &rd_run_cols[i];
        const char *p = (const char *)r + c->off;
        json[i] = NULL;
        switch (c->kind) {
        case COL_STR:
            pga_str(a, p); /* NUL-terminated within its buffer (rd_run's invariant) */
            break;
        case COL_I64:
            pga_i64(a, *(const int64_t *)p);
            break;
        case COL_INT:
            pga_i64(a, *(const int *)p);
            break;
        case COL_BOOL:
            pga_i64(a, *(const bool *)p ? 1 : 0);
            break;
        case COL_STATUS:
            pga_i64(a, (int64_t) * (const rd_status *)p);
            break;
        case COL_REASON:
            pga_i64(a, (int64_t) * (const rd_reason *)p);
            break;
        case COL_JSON: {
            const json_t *j = *(json_t *const *)p;
            if (j && !(json[i] = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY)))
                return RD_EIO;
            pga_str(a, json[i]);
            break;
        }
        }
    }
    return 0;
}

static void free_json(char **json)
{
    for (size_t i = 0; i < rd_n_run_cols; i++)
        free(json[i]);
}

/* Reads column i of row into the record. -1 when the stored value is not a valid one. */
static int read_col(const PGresult *res, int row, int i, const run_col *c, rd_run *r)
{
    char *p = (char *)r + c->off;
    const char *txt = rd_pg_str(res, row, i);
    json_error_t jerr;

    switch (c->kind) {
    case COL_STR:
        return (size_t)snprintf(p, c->size, "%s", txt ? txt : "") < c->size ? 0 : -1;
    case COL_JSON:
        if (!txt)
            return 0;
        *(json_t **)p = json_loads(txt, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        return *(json_t **)p ? 0 : -1;
    default:
        return rd_run_col_set_int(c, r, rd_pg_i64(res, row, i));
    }
}

static int row_to_run(const PGresult *res, int row, rd_run **out)
{
    rd_run *r = rd_run_new();

    if (!r) {
        rd_log_err("store: out of memory reading a run");
        return RD_EIO;
    }
    for (size_t i = 0; i < rd_n_run_cols; i++) {
        if (read_col(res, row, (int)i, &rd_run_cols[i], r) != 0) {
            rd_log_err("store: run %s: invalid stored %s", PQgetvalue(res, row, 0),
                       rd_run_cols[i].name);
            rd_run_free(r);
            return RD_EIO;
        }
    }
    *out = r;
    return 0;
}

static int collect_runs(PGresult *res, rd_run ***out, size_t *n)
{
    int rows = PQntuples(res), ret = 0;
    rd_run **v = calloc(rows ? (size_t)rows : 1, sizeof *v);
    size_t len = 0;

    if (!v)
        ret = RD_EIO;
    for (int i = 0; ret == 0 && i < rows; i++)
        if ((ret = row_to_run(res, i, &v[len])) == 0)
            len++;
    PQclear(res);
    if (ret != 0) {
        rd_run_array_free(v, len);
        return ret;
    }
    *out = v;
    *n = len;
    return 0;
}

/* An insert or update of a run; *rows gets the affected row count when wanted (an insert
 * must answer a conflict), else the write is only queued. */
static int run_write(rd_store *s, pg_st st, const rd_run *r, int64_t *rows)
{
    pg_args a = {0};
    char *json[PG_MAX_ARGS];
    int rc = bind_run(r, &a, json);

    if (rc == 0)
        rc = rows ? rd_pg_call_n(s, st, &a, rows) : rd_pg_send(s, st, &a);
    free_json(json);
    return rc;
}

int rd_pg_run_insert(rd_store *s, const rd_run *r)
{
    int64_t n = 0;
    int rc = run_write(s, PS_RUN_INSERT, r, &n);
    return rc != 0 ? rc : n > 0 ? 0 : RD_ECONFLICT;
}

/* Queued: the engine only updates runs it inserted, so "not found" is not asked for. */
int rd_pg_run_update(rd_store *s, const rd_run *r)
{
    return run_write(s, PS_RUN_UPDATE, r, NULL);
}

int rd_pg_run_get(rd_store *s, const char *id, rd_run **out)
{
    pg_args a = {0};
    PGresult *res;
    int rc;

    pga_str(&a, id);
    if (rd_pg_call(s, PS_RUN_GET, &a, false, &res) != 0)
        return RD_EIO;
    rc = PQntuples(res) == 0 ? RD_ENOTFOUND : row_to_run(res, 0, out);
    PQclear(res);
    return rc;
}

/* "{1,2,5}": the statuses of mask as a PostgreSQL int[] literal; "{}" matches nothing. */
static void status_array(unsigned mask, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "{");
    for (int i = 0; i < RD_ST__COUNT && n < len; i++)
        if (mask & (1u << i))
            n += (size_t)snprintf(buf + n, len - n, "%s%d", n > 1 ? "," : "", i);
    if (n < len)
        snprintf(buf + n, len - n, "}");
}

int rd_pg_run_list(rd_store *s, const rd_run_filter *f, int64_t offset, int limit, rd_run ***out,
                   size_t *n, int64_t *total)
{
    static const rd_run_filter any = {0, NULL};
    char statuses[128];
    pg_args a = {0};
    PGresult *res;

    f = f ? f : &any;
    status_array(f->status_mask, statuses, sizeof statuses);
    pga_str(&a, f->status_mask ? statuses : NULL);
    pga_str(&a, f->flow);
    if (total && rd_pg_call_i64(s, PS_RUN_COUNT, &a, total) != 0)
        return RD_EIO;
    if (limit > 0)
        pga_i64(&a, limit);
    else
        pga_str(&a, NULL); /* LIMIT NULL: no limit */
    pga_i64(&a, offset > 0 ? offset : 0);
    if (rd_pg_call(s, PS_RUN_LIST, &a, false, &res) != 0)
        return RD_EIO;
    return collect_runs(res, out, n);
}

int rd_pg_runs_active(rd_store *s, rd_run ***out, size_t *n)
{
    char statuses[128];
    pg_args a = {0};
    PGresult *res;

    status_array(rd_run_active_mask, statuses, sizeof statuses);
    pga_str(&a, statuses);
    if (rd_pg_call(s, PS_RUNS_ACTIVE, &a, false, &res) != 0)
        return RD_EIO;
    return collect_runs(res, out, n);
}

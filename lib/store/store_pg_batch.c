/*
 * store_pg_batch.c: a transaction's events, gathered into one multi-row INSERT. Profiling the
 * one-worker items benchmark showed the server's cost per statement (Bind, Execute, executor
 * start and end for each one-row INSERT) dominating, not the rows themselves: one
 * `INSERT ... SELECT * FROM unnest($1::bigint[], ...)` per batch of events costs the server
 * one statement for hundreds of rows.
 *
 * Each column is kept as the text of a PostgreSQL array literal, built as events arrive
 * ({1,2,3} for integers, {"a","b\"c"} for text: every text element quoted, with '"' and '\'
 * escaped, NULL unquoted). store_pg.c sends the batch before any other statement of the
 * transaction and before COMMIT, so statements reach the server in the order they were
 * made, and forgets it when the transaction ends any other way.
 */
#include "store/store_pg_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

/* Grows column c to hold need more bytes (and a final '}' and NUL). */
static int col_reserve(pg_batch *b, int c, size_t need)
{
    size_t want = b->len[c] + need + 2;
    if (want <= b->cap[c])
        return 0;
    size_t cap = b->cap[c] ? b->cap[c] : 4096;
    while (cap < want)
        cap *= 2;
    char *p = realloc(b->col[c], cap);
    if (!p)
        return RD_EIO;
    b->col[c] = p;
    b->cap[c] = cap;
    return 0;
}

/* Appends one element's separator: '{' before the first, ',' before the others. */
static void col_sep(pg_batch *b, int c)
{
    b->col[c][b->len[c]++] = b->rows == 0 ? '{' : ',';
}

static int col_i64(pg_batch *b, int c, int64_t v, bool null)
{
    if (col_reserve(b, c, 24) != 0)
        return RD_EIO;
    col_sep(b, c);
    b->len[c] += null ? (size_t)snprintf(b->col[c] + b->len[c], 24, "NULL")
                      : (size_t)snprintf(b->col[c] + b->len[c], 24, "%" PRId64, v);
    return 0;
}

static int col_str(pg_batch *b, int c, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    /* At worst every byte is escaped; plus the separator and two quotes (or NULL). */
    if (col_reserve(b, c, 2 * n + 5) != 0)
        return RD_EIO;
    col_sep(b, c);
    char *o = b->col[c] + b->len[c];
    if (!s) {
        memcpy(o, "NULL", 4);
        b->len[c] += 4;
        return 0;
    }
    *o++ = '"';
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\')
            *o++ = '\\';
        *o++ = *p;
    }
    *o++ = '"';
    b->len[c] = (size_t)(o - b->col[c]);
    return 0;
}

int rd_pg_batch_add(pg_batch *b, int64_t id, const char *run_id, const char *flow, const char *type,
                    int64_t ts, const char *data, int64_t item_seq)
{
    /* A failed append leaves the batch inconsistent; the caller fails the transaction. */
    if (col_i64(b, 0, id, false) != 0 || col_str(b, 1, run_id) != 0 || col_str(b, 2, flow) != 0 ||
        col_str(b, 3, type) != 0 || col_i64(b, 4, ts, false) != 0 || col_str(b, 5, data) != 0 ||
        col_i64(b, 6, item_seq, item_seq <= 0) != 0)
        return RD_EIO;
    b->rows++;
    return 0;
}

bool rd_pg_batch_full(const pg_batch *b)
{
    /* The data column dominates the statement's size. */
    return b->rows >= PG_BATCH_ROWS || b->len[5] >= PG_BATCH_BYTES;
}

void rd_pg_batch_args(pg_batch *b, pg_args *a)
{
    a->n = 0;
    for (int c = 0; c < PG_BATCH_COLS; c++) {
        b->col[c][b->len[c]++] = '}';
        b->col[c][b->len[c]] = '\0';
        pga_str(a, b->col[c]);
    }
}

void rd_pg_batch_reset(pg_batch *b)
{
    for (int c = 0; c < PG_BATCH_COLS; c++)
        b->len[c] = 0;
    b->rows = 0;
}

void rd_pg_batch_dispose(pg_batch *b)
{
    for (int c = 0; c < PG_BATCH_COLS; c++)
        free(b->col[c]);
    memset(b, 0, sizeof *b);
}

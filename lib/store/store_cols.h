/*
 * store_cols.h: the runs table described once, for every backend. Each backend generates its
 * CREATE TABLE, INSERT, UPDATE and SELECT of runs, and the code that binds and reads a record,
 * from rd_run_cols[], so adding a field to rd_run is one line in store_cols.c and the backends
 * cannot drift apart. Private to lib/store.
 */
#ifndef RUNSD_STORE_COLS_H
#define RUNSD_STORE_COLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { COL_STR, COL_I64, COL_INT, COL_BOOL, COL_STATUS, COL_REASON, COL_JSON } col_kind;

typedef struct run_col {
    const char *name;
    col_kind kind;
    size_t off;  /* of the field in rd_run */
    size_t size; /* of the field (COL_STR: the buffer) */
} run_col;

/** The columns in rd_run's order: column i is parameter i + 1 and result column i. id is
 * first (an UPDATE binds it as parameter 1 in its WHERE clause). */
extern const run_col rd_run_cols[];
extern const size_t rd_n_run_cols;
/** Bitmask (1u << status) of the active statuses. */
extern const unsigned rd_run_active_mask;

/** A bounded string builder for the generated SQL; overflow shows as n >= cap at the end. */
typedef struct rd_sqlbuf {
    char *s;
    size_t cap, n;
} rd_sqlbuf;
void rd_sqlbuf_add(rd_sqlbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

struct rd_run;
/** Sets c's field of r from the integer v as stored (COL_I64, COL_INT, COL_BOOL, COL_STATUS,
 * COL_REASON). -1 when v is not a valid value of the field, or c is not an integer column. */
int rd_run_col_set_int(const run_col *c, struct rd_run *r, int64_t v);

/** Columns an UPDATE leaves alone: they never change after insert, and assigning an indexed
 * column makes a database rewrite its index entries. */
bool rd_run_col_immutable(const char *name);

#endif

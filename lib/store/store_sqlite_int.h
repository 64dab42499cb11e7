/*
 * store_sqlite_int.h: private to the SQLite backend's files. store_sqlite.c owns the
 * connection, its transaction and the core tables; store_sqlite_outbox.c owns the webhook
 * outbox tables (deliveries, delivery_attempts) and their statements. Nothing else includes
 * this header.
 */
#ifndef RUNSD_STORE_SQLITE_INT_H
#define RUNSD_STORE_SQLITE_INT_H

#include <sqlite3.h>

#include "store/store.h"

/* store_sqlite.c, for its satellites */
/** The connection of a SQLite store. */
sqlite3 *rd_sqlite_db(rd_store *s);
/** Called before every write: opens the batch's transaction if none is open. 0 or RD_EIO. */
int rd_sqlite_write_begin(rd_store *s);
typedef struct rd_sqlite_outbox rd_sqlite_outbox;
/** The outbox statements of a store (NULL before they are prepared). */
rd_sqlite_outbox *rd_sqlite_outbox_of(rd_store *s);

/* store_sqlite_ckpt.c: WAL checkpoints on a thread of their own */
typedef struct rd_sqlite_ckpt rd_sqlite_ckpt;
/** Starts the checkpointer for the file at path and turns the writer's automatic checkpoints
 * off. 0 (with *out NULL when it could not start: the writer then keeps checkpointing). */
int rd_sqlite_ckpt_start(const char *path, sqlite3 *writer, rd_sqlite_ckpt **out);
/** Stops the thread and checkpoints the WAL fully on the writer. NULL is a no-op. */
void rd_sqlite_ckpt_stop(rd_sqlite_ckpt *c, sqlite3 *writer);

/* store_sqlite_outbox.c */
/** CREATE ... IF NOT EXISTS of the outbox tables; run by migrate() in its transaction. */
extern const char rd_sqlite_outbox_schema[];
/** Prepares the outbox statements on db. 0, or RD_EIO with a reason in err. */
int rd_sqlite_outbox_open(sqlite3 *db, rd_sqlite_outbox **out, char *err, size_t errlen);
/** Finalizes the statements; NULL is a no-op. Call before sqlite3_close. */
void rd_sqlite_outbox_close(rd_sqlite_outbox *ob);

int rd_sqlite_dlv_insert(rd_store *s, const rd_delivery *d);
int rd_sqlite_dlv_update(rd_store *s, const rd_delivery *d);
int rd_sqlite_dlv_get(rd_store *s, const char *id, rd_delivery_cb cb, void *arg);
int rd_sqlite_dlv_due(rd_store *s, int64_t now, int limit, rd_delivery_cb cb, void *arg);
int rd_sqlite_dlv_next_due(rd_store *s, int64_t *out);
int rd_sqlite_dlv_run_scan(rd_store *s, const char *run_id, int64_t offset, int limit,
                           rd_delivery_cb cb, void *arg, int64_t *total);
int rd_sqlite_dlv_stop(rd_store *s, const char *run_id, const char *url, int64_t now,
                       const char *why);
int rd_sqlite_dlv_stopped(rd_store *s, const char *run_id, const char *url, bool *out);
int rd_sqlite_dlv_lease(rd_store *s, const char *id);
int rd_sqlite_dlv_unlease(rd_store *s);
int rd_sqlite_dlv_attempt_add(rd_store *s, const rd_delivery_attempt *a);
int rd_sqlite_dlv_prune(rd_store *s, int64_t before_ms, int limit, int64_t *n_deleted);
int rd_sqlite_dlv_attempts_scan(rd_store *s, const char *delivery_id, rd_attempt_cb cb, void *arg);

/* The outbox members of store_sqlite.c's rd_store_ops table. */
#define RD_SQLITE_OUTBOX_OPS                                                                       \
    .dlv_insert = rd_sqlite_dlv_insert, .dlv_update = rd_sqlite_dlv_update,                        \
    .dlv_get = rd_sqlite_dlv_get, .dlv_due = rd_sqlite_dlv_due,                                    \
    .dlv_next_due = rd_sqlite_dlv_next_due, .dlv_run_scan = rd_sqlite_dlv_run_scan,                \
    .dlv_stop = rd_sqlite_dlv_stop, .dlv_stopped = rd_sqlite_dlv_stopped,                          \
    .dlv_lease = rd_sqlite_dlv_lease, .dlv_unlease = rd_sqlite_dlv_unlease,                        \
    .dlv_attempt_add = rd_sqlite_dlv_attempt_add,                                                  \
    .dlv_attempts_scan = rd_sqlite_dlv_attempts_scan, .dlv_prune = rd_sqlite_dlv_prune

#endif

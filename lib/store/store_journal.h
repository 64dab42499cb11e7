/*
 * store_journal.h: a store that survives a failed commit. It wraps any backend and keeps, in
 * memory, every write made since the last successful commit. When a write or the commit
 * fails (disk full, I/O error, read-only), the backend's transaction is rolled back but the
 * journal is kept; the next transaction begins by writing the journal again, in order, so
 * the store catches up with what the daemon already holds in memory, with the same event
 * ids. Nothing the daemon published or acknowledged is lost (it publishes only after a
 * commit succeeds), and nothing it holds in memory is missing from the store once the store
 * works again.
 */
#ifndef RUNSD_STORE_JOURNAL_H
#define RUNSD_STORE_JOURNAL_H

#include <stdbool.h>
#include <stdio.h>

#include "store/store.h"

/** Wraps inner (taking ownership: closing the journal closes it). NULL on out of memory
 * (inner is then closed). */
rd_store *rd_store_journal_wrap(rd_store *inner);
/** Bytes and writes held for the next transaction (0 after a successful commit, and for a
 * store that is not a journal). */
size_t rd_store_journal_bytes(const rd_store *s);
size_t rd_store_journal_writes(const rd_store *s);
struct rd_metrics;
/** Registers the journal's families in reg (borrowed; it must outlive the store's scrapes):
 * the commit latency histogram, the bytes and writes held, the bound and the replays. 0 or
 * RD_ERR; nothing when s is not a journal. */
int rd_store_journal_set_metrics(rd_store *s, struct rd_metrics *reg);

/** The journal's bound: once it holds more than max bytes (0: no bound), fn(arg, true) is
 * called, from inside the write that went past it, so the owner can stop the producers; once
 * a commit has emptied it, fn(arg, false), from inside that commit: fn must not write to the
 * store then. fn is told the same way, whatever max, while the writes held behind a commit in
 * flight pass a fixed size (512 KiB), until that commit completes. Nothing is ever dropped: the
 * bound only tells. Setting a new bound (a reload) calls fn(arg, false) when the journal is no
 * longer over it. No-op on a store that is not a journal. fn may be NULL. */
void rd_store_journal_bound(rd_store *s, size_t max, void (*fn)(void *arg, bool over), void *arg);
/** True while the journal holds more than its bound (and has not been emptied since). */
bool rd_store_journal_over(const rd_store *s);

#endif

/*
 * store_sqlite_ckpt.c: WAL checkpoints off the event loop. SQLite's automatic checkpoint
 * runs inside the commit that crosses its threshold, on the loop thread, and a checkpoint
 * syncs the database file: a multi-millisecond stall of every client and worker every few
 * hundred commits. Here the writer's automatic checkpoint is off, a wal_hook on the writer
 * counts WAL frames after each commit, and a thread with its own connection runs PASSIVE
 * checkpoints (they never block the writer) when the WAL has grown, or every second.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "store/store_sqlite_int.h"
#include "base/util.h"

#define CKPT_FRAMES 1000 /* wake the checkpointer once the WAL holds this many frames */
#define CKPT_PERIOD_MS 1000

struct rd_sqlite_ckpt {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    bool wake;
    sqlite3 *db; /* the checkpointer's own connection */
};

static int ckpt_on_wal(void *arg, sqlite3 *db, const char *name, int frames)
{
    rd_sqlite_ckpt *c = arg;
    /* The flag spares a signal per commit while a checkpoint is already asked for. */
    if (frames >= CKPT_FRAMES && !__atomic_load_n(&c->wake, __ATOMIC_RELAXED)) {
        pthread_mutex_lock(&c->mu);
        __atomic_store_n(&c->wake, true, __ATOMIC_RELAXED);
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
    return SQLITE_OK;
}

static void *ckpt_main(void *arg)
{
    rd_sqlite_ckpt *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += CKPT_PERIOD_MS / 1000;
        while (!c->stop && !__atomic_load_n(&c->wake, __ATOMIC_RELAXED))
            if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) != 0)
                break;
        __atomic_store_n(&c->wake, false, __ATOMIC_RELAXED);
        if (c->stop)
            break;
        pthread_mutex_unlock(&c->mu);
        int log = 0, done = 0;
        int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            rd_log_warn("store: checkpoint: %s", sqlite3_errmsg(c->db));
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

int rd_sqlite_ckpt_start(const char *path, sqlite3 *writer, rd_sqlite_ckpt **out)
{
    rd_sqlite_ckpt *c = calloc(1, sizeof *c);
    *out = NULL;
    if (!c)
        return RD_EIO;
    if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        rd_log_warn("store: checkpointer: %s; checkpoints stay on the writer",
                    c->db ? sqlite3_errmsg(c->db) : "out of memory");
        sqlite3_close(c->db);
        free(c);
        return 0;
    }
    sqlite3_busy_timeout(c->db, 1000);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (pthread_create(&c->thread, NULL, ckpt_main, c) != 0) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        sqlite3_close(c->db);
        free(c);
        return 0; /* the writer keeps checkpointing itself */
    }
    sqlite3_wal_autocheckpoint(writer, 0);
    sqlite3_wal_hook(writer, ckpt_on_wal, c);
    *out = c;
    return 0;
}

void rd_sqlite_ckpt_stop(rd_sqlite_ckpt *c, sqlite3 *writer)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    if (writer) {
        sqlite3_wal_hook(writer, NULL, NULL);
        /* A last full checkpoint so the next start opens a short WAL. */
        sqlite3_wal_checkpoint_v2(writer, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    }
    sqlite3_close(c->db);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

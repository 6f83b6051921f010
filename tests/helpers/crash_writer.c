/*
 * Crash-test child: writes from several threads and prints each key on stdout, one line per
 * key, only once its write is acknowledged (batch: after the fsync covering it; periodic: as
 * soon as storage_apply / commitlog_append returned). The test kills it with SIGKILL at a
 * random moment, reopens the data in-process and checks every printed key is there.
 *
 *   crash_writer engine <dir> <first key> <threads> [batch|periodic]   storage engine in
 *                                                   <dir>/data, <dir>/commitlog
 *   crash_writer log    <dir> <first key> <threads> [batch|periodic]   the commit log alone in <dir>
 *
 * Keys are first + i * threads + thread; crash_writer_value() gives each key's value, so the
 * checker can verify contents, not only presence. Runs until killed.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ilion/storage/commitlog.h"
#include "ilion/storage/engine.h"
#include "ilion/util/buf.h"
#include "ilion/util/clock.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"

#include "crash_writer.h"

typedef struct wctx {
    storage_engine *e;
    commitlog *cl;
    uint64_t first;
    uint32_t tid, nthreads;
} wctx;

static void emit(uint64_t key) {
    char line[32];
    int n = snprintf(line, sizeof line, "%llu\n", (unsigned long long)key);
    if (write(STDOUT_FILENO, line, (size_t)n) != n) _exit(3);   /* one write per line: atomic */
}

static void *engine_writer(void *arg) {
    wctx *w = arg;
    st_arena a;
    arena_init(&a);
    uint8_t pk[8], val[CRASH_WRITER_MAX_VALUE];
    for (uint64_t i = 0;; i++) {
        uint64_t key = w->first + i * w->nthreads + w->tid;
        be64_put(pk, key);
        uint32_t len = crash_writer_value(key, val);
        st_partition *p = st_partition_new(&a, CRASH_WRITER_TABLE, pk, sizeof pk);
        st_row *r = p ? st_partition_row(&a, p, "", 0) : NULL;
        if (!r || st_row_set_cell(&a, r, 1, clock_now_us(), 0, clock_now_s(), val, len) != 0) _exit(4);
        uint64_t pos;
        int rc = storage_apply(w->e, p, &pos);
        if (!rc) rc = storage_wait_synced(w->e, pos);
        if (rc) {
            fprintf(stderr, "crash_writer: write failed: %s\n", ilion_strerror(rc));
            _exit(5);
        }
        emit(key);
        arena_reset(&a);
    }
    return NULL;
}

static void *log_writer(void *arg) {
    wctx *w = arg;
    uint8_t rec[8 + CRASH_WRITER_MAX_VALUE];
    for (uint64_t i = 0;; i++) {
        uint64_t key = w->first + i * w->nthreads + w->tid;
        be64_put(rec, key);
        uint32_t len = crash_writer_value(key, rec + 8);
        uint64_t pos;
        int rc = commitlog_append(w->cl, rec, 8 + len, &pos);
        if (!rc) rc = commitlog_wait(w->cl, pos);
        if (rc) {
            fprintf(stderr, "crash_writer: append failed: %s\n", ilion_strerror(rc));
            _exit(5);
        }
        emit(key);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: crash_writer engine|log <dir> <first key> <threads> [batch|periodic]\n");
        return 2;
    }
    bool engine = strcmp(argv[1], "engine") == 0;
    const char *dir = argv[2];
    uint64_t first = strtoull(argv[3], NULL, 10);
    uint32_t nthreads = (uint32_t)atoi(argv[4]);
    if (nthreads < 1 || nthreads > 64) return 2;
    enum storage_sync_mode mode = crash_writer_mode(argc == 6 ? argv[5] : NULL);
    log_set_level(LOG_LEVEL_WARN);

    storage_engine *e = NULL;
    commitlog *cl = NULL;
    int rc;
    if (engine) {
        char data[4096], cld[4096];
        snprintf(data, sizeof data, "%s/data", dir);
        snprintf(cld, sizeof cld, "%s/commitlog", dir);
        storage_options o;
        crash_writer_engine_options(&o, data, cld, mode);
        rc = storage_open(&o, &e);
        if (!rc) {
            storage_table_options to;
            storage_table_options_default(&to);
            rc = storage_table_create(e, CRASH_WRITER_TABLE, &to);
        }
    } else {
        commitlog_options o = {0};
        crash_writer_log_options(&o, dir, mode);
        rc = commitlog_open(&o, 0, NULL, NULL, &cl);
    }
    if (rc) {
        fprintf(stderr, "crash_writer: open failed: %s\n", ilion_strerror(rc));
        return 1;
    }
    pthread_t t[64];
    wctx w[64];
    for (uint32_t i = 0; i < nthreads; i++) {
        w[i] = (wctx){e, cl, first, i, nthreads};
        pthread_create(&t[i], NULL, engine ? engine_writer : log_writer, &w[i]);
    }
    for (uint32_t i = 0; i < nthreads; i++) pthread_join(t[i], NULL);
    return 0;
}

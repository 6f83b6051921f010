/* Commit log: sync modes, group commit, replay, recycling, failure latch, torn tails and
 * corruption. Deterministic (seeded); the sync hook stands in for fdatasync where a test needs
 * to count or fail syncs. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ilion/storage/commitlog.h"
#include "ilion/util/buf.h"
#include "ilion/util/crc32c.h"
#include "ilion/util/clock.h"
#include "ilion/util/err.h"

/* ---- helpers ------------------------------------------------------------------------- */

static char *mkdtemp_dir(void) {
    char *t = strdup("/tmp/ilion-cl-XXXXXX");
    cr_assert_not_null(mkdtemp(t));
    return t;
}

static void rm_rf(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[4096];
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int count_files(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (!strncmp(de->d_name, prefix, strlen(prefix))) n++;
    closedir(d);
    return n;
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Payload for record k: 8-byte key then bytes derived from it; length from the key. */
static size_t make_payload(uint64_t k, uint8_t *out, size_t maxlen) {
    size_t len = 8 + (size_t)((k * 2654435761u) % 300);
    if (len > maxlen) len = maxlen;
    be64_put(out, k);
    for (size_t i = 8; i < len; i++) out[i] = (uint8_t)(k * 31 + i * 7);
    return len;
}

static bool check_payload(const uint8_t *p, size_t len, uint64_t *k) {
    if (len < 8) return false;
    *k = be64_get(p);
    uint8_t tmp[512];
    size_t want = make_payload(*k, tmp, sizeof tmp);
    return want == len && memcmp(tmp, p, len) == 0;
}

typedef struct collected {
    uint64_t *keys;
    uint64_t *pos;
    size_t n, cap;
    bool bad;
} collected;

static int collect_cb(void *arg, const uint8_t *payload, size_t len, uint64_t pos) {
    collected *c = arg;
    uint64_t k;
    if (!check_payload(payload, len, &k)) c->bad = true;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 256;
        c->keys = realloc(c->keys, c->cap * sizeof *c->keys);
        c->pos = realloc(c->pos, c->cap * sizeof *c->pos);
    }
    if (c->n > 0 && pos <= c->pos[c->n - 1]) c->bad = true;  /* positions must increase */
    c->keys[c->n] = k;
    c->pos[c->n++] = pos;
    return 0;
}

static void collected_free(collected *c) {
    free(c->keys);
    free(c->pos);
    memset(c, 0, sizeof *c);
}

typedef struct sync_hook {
    pthread_mutex_t mu;
    int calls;
    int fail_at;        /* call number (1-based) that fails with -EIO; 0 = never */
    int sleep_us;
    bool no_real_sync;
} sync_hook;

static int hook_fn(void *arg, int fd) {
    sync_hook *h = arg;
    pthread_mutex_lock(&h->mu);
    int n = ++h->calls;
    pthread_mutex_unlock(&h->mu);
    if (h->sleep_us) usleep((useconds_t)h->sleep_us);
    if (h->fail_at && n >= h->fail_at) return -EIO;
    if (h->no_real_sync) return 0;
    return fdatasync(fd) == 0 ? 0 : -errno;
}

static int hook_calls(sync_hook *h) {
    pthread_mutex_lock(&h->mu);
    int n = h->calls;
    pthread_mutex_unlock(&h->mu);
    return n;
}

static commitlog_options opts(const char *dir, enum storage_sync_mode m, uint64_t segsize, sync_hook *h) {
    commitlog_options o = {0};
    o.dir = dir;
    o.sync_mode = m;
    o.segment_size = segsize;
    o.sync_period_ms = 50;
    o.group_window_ms = 10;
    if (h) {
        o.sync_fn = hook_fn;
        o.sync_fn_arg = h;
    }
    return o;
}

static void reopen_collect(const char *dir, uint64_t segsize, uint64_t replay_from, collected *c, int want_rc) {
    sync_hook h = {.mu = PTHREAD_MUTEX_INITIALIZER, .no_real_sync = true};
    commitlog_options o = opts(dir, STORAGE_SYNC_BATCH, segsize, &h);
    commitlog *cl = NULL;
    int rc = commitlog_open(&o, replay_from, collect_cb, c, &cl);
    cr_assert_eq(rc, want_rc, "open: %s (want %s)", ilion_strerror(rc), ilion_strerror(want_rc));
    if (cl) commitlog_close(cl);
}

/* ---- basic write/replay ------------------------------------------------------------- */

Test(commitlog, append_close_replay_across_segments) {
    char *dir = mkdtemp_dir();
    commitlog_options o = opts(dir, STORAGE_SYNC_PERIODIC, 64 << 10, NULL);
    commitlog *cl;
    cr_assert_eq(commitlog_open(&o, 0, NULL, NULL, &cl), 0);
    uint8_t p[512];
    uint64_t last = 0, pos;
    for (uint64_t k = 0; k < 3000; k++) {
        size_t len = make_payload(k, p, sizeof p);
        cr_assert_eq(commitlog_append(cl, p, len, &pos), 0);
        cr_assert_gt(pos, last);
        last = pos;
    }
    cr_assert_eq(commitlog_position(cl), last);
    uint8_t big[70 << 10];
    memset(big, 1, sizeof big);
    cr_assert_eq(commitlog_append(cl, big, sizeof big, &pos), ILION_ETOOBIG);
    cr_assert_eq(commitlog_append(cl, big, 0, &pos), ILION_EINVALID);
    commitlog_stats st;
    commitlog_stats_get(cl, &st);
    cr_assert_gt(st.segments_live, 5);
    cr_assert_gt(commitlog_active_bytes(cl), 5 * (64 << 10) - 1);
    commitlog_close(cl);

    collected c = {0};
    reopen_collect(dir, 64 << 10, 0, &c, 0);
    cr_assert_eq(c.n, 3000);
    cr_assert(!c.bad);
    for (uint64_t k = 0; k < 3000; k++) cr_assert_eq(c.keys[k], k);
    cr_assert_eq(c.pos[2999], last);

    /* replay_from skips records up to and including that position */
    collected c2 = {0};
    reopen_collect(dir, 64 << 10, c.pos[1999], &c2, 0);
    cr_assert_eq(c2.n, 1000);
    cr_assert_eq(c2.keys[0], 2000);
    collected_free(&c);
    collected_free(&c2);
    rm_rf(dir);
    free(dir);
}

Test(commitlog, positions_survive_reopen_and_append_continues) {
    char *dir = mkdtemp_dir();
    uint8_t p[512];
    uint64_t pos = 0, prev = 0;
    for (int round = 0; round < 3; round++) {
        collected c = {0};
        commitlog_options o = opts(dir, STORAGE_SYNC_BATCH, 16 << 10, NULL);
        commitlog *cl;
        cr_assert_eq(commitlog_open(&o, 0, collect_cb, &c, &cl), 0);
        cr_assert_eq(c.n, (size_t)round * 100);
        cr_assert(!c.bad);
        cr_assert_gt(commitlog_position(cl), prev);
        for (uint64_t k = (uint64_t)round * 100; k < (uint64_t)round * 100 + 100; k++) {
            size_t len = make_payload(k, p, sizeof p);
            cr_assert_eq(commitlog_append(cl, p, len, &pos), 0);
            cr_assert_gt(pos, prev);
            prev = pos;
        }
        cr_assert_eq(commitlog_wait(cl, pos), 0);
        commitlog_close(cl);
        for (size_t i = 0; i < c.n; i++) cr_assert_eq(c.keys[i], i);
        collected_free(&c);
    }
    rm_rf(dir);
    free(dir);
}

/* ---- sync modes ---------------------------------------------------------------------- */

typedef struct cb_state {
    pthread_mutex_t mu;
    uint64_t max_pos;
    int calls;
    int last_err;
} cb_state;

static void sync_cb(void *arg, uint64_t pos, int err) {
    cb_state *s = arg;
    pthread_mutex_lock(&s->mu);
    if (pos > s->max_pos) s->max_pos = pos;
    s->calls++;
    s->last_err = err;
    pthread_mutex_unlock(&s->mu);
}

Test(commitlog, batch_waits_for_fsync) {
    char *dir = mkdtemp_dir();
    sync_hook h = {.mu = PTHREAD_MUTEX_INITIALIZER, .sleep_us = 30000};
    commitlog_options o = opts(dir, STORAGE_SYNC_BATCH, 1 << 20, &h);
    commitlog *cl;
    cr_assert_eq(commitlog_open(&o, 0, NULL, NULL, &cl), 0);
    cb_state cs = {.mu = PTHREAD_MUTEX_INITIALIZER};
    commitlog_set_sync_callback(cl, sync_cb, &cs);
    uint8_t p[64];
    size_t len = make_payload(1, p, sizeof p);
    uint64_t pos;
    uint64_t t0 = clock_mono_ns();
    cr_assert_eq(commitlog_append(cl, p, len, &pos), 0);
    cr_assert(!commitlog_is_synced(cl, pos), "batch mode must not be synced before the fsync");
    cr_assert_eq(commitlog_wait(cl, pos), 0);
    uint64_t dt = clock_mono_ns() - t0;
    cr_assert(commitlog_is_synced(cl, pos));
    cr_assert_geq(dt, 30000000ull, "wait returned after %llu ns, before the 30 ms fsync", (unsigned long long)dt);
    cr_assert_geq(hook_calls(&h), 1);
    pthread_mutex_lock(&cs.mu);
    cr_assert_geq(cs.max_pos, pos);
    cr_assert_eq(cs.last_err, 0);
    pthread_mutex_unlock(&cs.mu);
    commitlog_close(cl);
    rm_rf(dir);
    free(dir);
}

typedef struct writer_arg {
    commitlog *cl;
    int id, n;
    int err;
} writer_arg;

static void *writer_main(void *arg) {
    writer_arg *w = arg;
    uint8_t p[512];
    for (int i = 0; i < w->n; i++) {
        uint64_t k = (uint64_t)w->id * 1000000 + (uint64_t)i, pos;
        size_t len = make_payload(k, p, sizeof p);
        int rc = commitlog_append(w->cl, p, len, &pos);
        if (!rc) rc = commitlog_wait(w->cl, pos);
        if (!rc && !commitlog_is_synced(w->cl, pos)) rc = -1;
        if (rc) { w->err = rc; return NULL; }
    }
    return NULL;
}

static void run_writers(commitlog *cl, int nthreads, int per, writer_arg *wa) {
    pthread_t t[16];
    for (int i = 0; i < nthreads; i++) {
        wa[i] = (writer_arg){.cl = cl, .id = i + 1, .n = per};
        pthread_create(&t[i], NULL, writer_main, &wa[i]);
    }
    for (int i = 0; i < nthreads; i++) pthread_join(t[i], NULL);
}

static void group_commit_case(enum storage_sync_mode mode) {
    char *dir = mkdtemp_dir();
    sync_hook h = {.mu = PTHREAD_MUTEX_INITIALIZER, .sleep_us = 2000, .no_real_sync = true};
    commitlog_options o = opts(dir, mode, 1 << 20, &h);
    o.group_window_ms = 3;
    commitlog *cl;
    cr_assert_eq(commitlog_open(&o, 0, NULL, NULL, &cl), 0);
    enum { NT = 8, PER = 150 };
    writer_arg wa[NT];
    run_writers(cl, NT, PER, wa);
    for (int i = 0; i < NT; i++) cr_assert_eq(wa[i].err, 0, "writer %d: %s", i, ilion_strerror(wa[i].err));
    commitlog_stats st;
    commitlog_stats_get(cl, &st);
    cr_assert_eq(st.appends, NT * PER);
    /* 8 writers each waiting for its fsync: each fsync must serve several of them. */
    cr_assert_lt(st.syncs, NT * PER / 2, "%llu fsyncs for %d writes: no group commit",
                 (unsigned long long)st.syncs, NT * PER);
    cr_log_info("%s: %d writes, %llu fsyncs", mode == STORAGE_SYNC_BATCH ? "batch" : "group", NT * PER,
                (unsigned long long)st.syncs);
    commitlog_close(cl);
    collected c = {0};
    reopen_collect(dir, 1 << 20, 0, &c, 0);
    cr_assert_eq(c.n, NT * PER);
    cr_assert(!c.bad);
    collected_free(&c);
    rm_rf(dir);
    free(dir);
}

Test(commitlog, batch_group_commit_fewer_fsyncs_than_writes) { group_commit_case(STORAGE_SYNC_BATCH); }
Test(commitlog, group_mode_fewer_fsyncs_than_writes) { group_commit_case(STORAGE_SYNC_GROUP); }

Test(commitlog, group_mode_waits_for_window) {
    char *dir = mkdtemp_dir();
    sync_hook h = {.mu = PTHREAD_MUTEX_INITIALIZER, .no_real_sync = true};
    commitlog_options o = opts(dir, STORAGE_SYNC_GROUP, 1 << 20, &h);
    o.group_window_ms = 40;
    commitlog *cl;
    cr_assert_eq(commitlog_open(&o, 0, NULL, NULL, &cl), 0);
    uint8_t p[64];
    size_t len = make_payload(5, p, sizeof p);
    uint64_t pos;
    /* first write activates the segment; measure the second */
    cr_assert_eq(commitlog_append(cl, p, len, &pos), 0);
    cr_assert_eq(commitlog_wait(cl, pos), 0);
    uint64_t t0 = clock_mono_ns();
    cr_assert_eq(commitlog_append(cl, p, len, &pos), 0);
    cr_assert_eq(commitlog_wait(cl, pos), 0);
    uint64_t dt = clock_mono_ns() - t0;
    cr_assert_geq(dt, 35000000ull, "group mode synced after %llu ns, window is 40 ms", (unsigned long long)dt);
    commitlog_close(cl);
    rm_rf(dir);
    free(dir);
}

Test(commitlog, periodic_acks_at_once_and_syncs_periodically) {
    char *dir = mkdtemp_dir();
    sync_hook h = {.mu = PTHREAD_MUTEX_INITIALIZER, .sleep_us = 20000, .no_real_sync = true};
    commitlog_options o = opts(dir, STORAGE_SYNC_PERIODIC, 1 << 20, &h);
    o.sync_period_ms = 50;
    commitlog *cl;
    cr_assert_eq(commitlog_open(&o, 0, NULL, NULL, &cl), 0);
    cb_state cs = {.mu = PTHREAD_MUTEX_INITIALIZER};
    commitlog_set_sync_callback(cl, sync_cb, &cs);
    uint8_t p[512];
    uint64_t pos = 0;
    uint64_t t0 = clock_mono_ns();
    for (uint64_t k = 0; k < 500; k++) {
        size_t len = make_payload(k, p, sizeof p);
        cr_assert_eq(commitlog_append(cl, p, len, &pos), 0);
        cr_assert(commitlog_is_synced(cl, pos));
        cr_assert_eq(commitlog_wait(cl, pos), 0);
    }
    cr_assert_lt(clock_mono_ns() - t0, 250000000ull, "periodic appends must not wait for fsync");
    for (int i = 0; i < 100; i++) {
        pthread_mutex_lock(&cs.mu);
        bool done = cs.max_pos >= pos;
        pthread_mutex_unlock(&cs.mu);
        if (done) break;
        usleep(10000);
    }
    pthread_mutex_lock(&cs.mu);
    cr_assert_geq(cs.max_pos, pos, "no periodic sync within a second");
    pthread_mutex_unlock(&cs.mu);
    commitlog_close(cl);
    collected c = {0};
    reopen_collect(dir, 1 << 20, 0, &c, 0);
    cr_assert_eq(c.n, 500);
    collected_free(&c);
    rm_rf(dir);
    free(dir);
}

/* Periodic mode acknowledges before any fsync: the record must still be in the file when the
 * process dies right after commitlog_append returned (no close, no sync, no thread left). */
Test(commitlog, periodic_records_survive_the_process_dying) {
    char *dir = mkdtemp_dir();
    enum { N = 3000 };
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        sync_hook h = {.mu = PTHREAD_MUTEX_INITIALIZER, .no_real_sync = true};
        commitlog_options o = opts(dir, STORAGE_SYNC_PERIODIC, 64 << 10, &h);
        o.sync_period_ms = 100000;   /* never within the test */
        commitlog *cl;
        if (commitlog_open(&o, 0, NULL, NULL, &cl) != 0) _exit(2);
        uint8_t p[512];
        uint64_t pos;
        for (uint64_t k = 0; k < N; k++) {   /* ~500 KB: several segments */
            size_t len = make_payload(k, p, sizeof p);
            if (commitlog_append(cl, p, len, &pos) != 0) _exit(3);
        }
        raise(SIGKILL);
        _exit(4);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child failed (status %d)", status);
    collected c = {0};
    reopen_collect(dir, 64 << 10, 0, &c, 0);
    cr_assert(!c.bad);
    cr_assert_eq(c.n, N, "%zu of %d acknowledged records after the kill", c.n, N);
    for (uint64_t k = 0; k < N; k++) cr_assert_eq(c.keys[k], k);
    collected_free(&c);
    rm_rf(dir);
    free(dir);
}

/* ---- failure latch ------------------------------------------------------------------- */

Test(commitlog, failed_fsync_is_final) {
    char *dir = mkdtemp_dir();
    sync_hook h = {.mu = PTHREAD_MUTEX_INITIALIZER, .no_real_sync = true, .fail_at = 2};
    commitlog_options o = opts(dir, STORAGE_SYNC_BATCH, 1 << 20, &h);
    commitlog *cl;
    cr_assert_eq(commitlog_open(&o, 0, NULL, NULL, &cl), 0);
    cb_state cs = {.mu = PTHREAD_MUTEX_INITIALIZER};
    commitlog_set_sync_callback(cl, sync_cb, &cs);
    uint8_t p[64];
    size_t len = make_payload(9, p, sizeof p);
    uint64_t pos;
    int rc = 0, i;
    /* sync 1 covers the first write (and the new segment's header), sync 2 fails */
    for (i = 0; i < 10 && rc == 0; i++) {
        rc = commitlog_append(cl, p, len, &pos);
        if (!rc) rc = commitlog_wait(cl, pos);
    }
    cr_assert_eq(rc, ILION_ESYNCFAILED);
    cr_assert_eq(i, 2);
    cr_assert(!commitlog_is_synced(cl, pos));
    cr_assert_eq(commitlog_append(cl, p, len, &pos), ILION_ESYNCFAILED);
    cr_assert_eq(commitlog_wait(cl, 0), ILION_ESYNCFAILED);
    pthread_mutex_lock(&cs.mu);
    cr_assert_eq(cs.last_err, ILION_ESYNCFAILED);
    pthread_mutex_unlock(&cs.mu);
    int calls = hook_calls(&h);
    struct timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    usleep(100000);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    cr_assert_eq(hook_calls(&h), calls, "no fsync retried after a failure");
    double cpu_ms = (double)(c1.tv_sec - c0.tv_sec) * 1e3 + (double)(c1.tv_nsec - c0.tv_nsec) / 1e6;
    cr_assert_lt(cpu_ms, 30.0, "the failed log keeps a CPU busy (%.1f ms in 100 ms)", cpu_ms);
    commitlog_close(cl);
    rm_rf(dir);
    free(dir);
}

Test(commitlog, failed_fsync_periodic_latches) {
    char *dir = mkdtemp_dir();
    sync_hook h = {.mu = PTHREAD_MUTEX_INITIALIZER, .no_real_sync = true, .fail_at = 1};
    commitlog_options o = opts(dir, STORAGE_SYNC_PERIODIC, 1 << 20, &h);
    o.sync_period_ms = 10;
    commitlog *cl;
    cr_assert_eq(commitlog_open(&o, 0, NULL, NULL, &cl), 0);
    uint8_t p[64];
    size_t len = make_payload(9, p, sizeof p);
    uint64_t pos;
    int rc = 0;
    for (int i = 0; i < 200 && rc == 0; i++) {
        rc = commitlog_append(cl, p, len, &pos);
        usleep(2000);
    }
    cr_assert_eq(rc, ILION_ESYNCFAILED);
    cr_assert_eq(commitlog_wait(cl, pos), ILION_ESYNCFAILED);
    cr_assert(!commitlog_is_synced(cl, pos));
    commitlog_close(cl);
    rm_rf(dir);
    free(dir);
}

/* ---- recycling ----------------------------------------------------------------------- */

typedef struct key_list {
    uint64_t keys[2000];
    size_t n;
} key_list;

static int key_list_cb(void *arg, const uint8_t *pl, size_t len, uint64_t ps) {
    (void)ps;
    key_list *x = arg;
    if (len != 100 || x->n >= 2000) return -1;
    x->keys[x->n++] = be64_get(pl);
    return 0;
}

Test(commitlog, discard_recycles_segments_and_stale_bytes_never_replay) {
    char *dir = mkdtemp_dir();
    const uint64_t seg = 16 << 10;
    commitlog_options o = opts(dir, STORAGE_SYNC_BATCH, seg, NULL);
    commitlog *cl;
    cr_assert_eq(commitlog_open(&o, 0, NULL, NULL, &cl), 0);
    /* fixed-size records so a recycled segment has exactly the same layout as before */
    uint8_t p[100];
    uint64_t pos[1000];
    for (uint64_t k = 0; k < 1000; k++) {
        memset(p, 0, sizeof p);
        be64_put(p, k);
        cr_assert_eq(commitlog_append(cl, p, sizeof p, &pos[k]), 0);
    }
    cr_assert_eq(commitlog_wait(cl, pos[999]), 0);
    uint64_t active_before = commitlog_active_bytes(cl);
    int segs_before = count_files(dir, "CommitLog-1-");
    cr_assert_geq(segs_before, 7);
    commitlog_discard_before(cl, pos[999]);   /* everything but the current segment */
    cr_assert_lt(commitlog_active_bytes(cl), active_before);
    cr_assert_leq(commitlog_active_bytes(cl), seg);
    cr_assert_eq(count_files(dir, "CommitLog-1-"), 1);
    cr_assert_geq(count_files(dir, "CommitLog-free-"), 1);

    /* write a little into recycled segments (same layout, different segment ids) */
    uint64_t last = 0;
    for (uint64_t k = 5000; k < 5300; k++) {
        memset(p, 0, sizeof p);
        be64_put(p, k);
        cr_assert_eq(commitlog_append(cl, p, sizeof p, &last), 0);
    }
    cr_assert_eq(commitlog_wait(cl, last), 0);
    commitlog_stats st;
    commitlog_stats_get(cl, &st);
    cr_assert_geq(st.segments_recycled, 1);
    commitlog_close(cl);

    /* replay: the undiscarded tail of the old run, then only the new records */
    sync_hook h = {.mu = PTHREAD_MUTEX_INITIALIZER, .no_real_sync = true};
    commitlog_options o2 = opts(dir, STORAGE_SYNC_BATCH, seg, &h);
    key_list kl = {.n = 0};
    cr_assert_eq(commitlog_open(&o2, 0, key_list_cb, &kl, &cl), 0);
    uint64_t *keys = kl.keys;
    size_t n = kl.n;
    commitlog_close(cl);
    size_t i = 0;
    while (i < n && keys[i] < 5000) i++;   /* records of the still-live old segment */
    cr_assert_lt(i, 200);
    cr_assert_eq(n - i, 300);
    for (size_t j = i; j < n; j++) cr_assert_eq(keys[j], 5000 + (j - i));
    rm_rf(dir);
    free(dir);
}

/* ---- torn tails and corruption ------------------------------------------------------- */

static char *seg_file(const char *dir, int nth) {
    /* the nth (0-based) segment file in id order */
    DIR *d = opendir(dir);
    unsigned ids[256];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < 256) {
        unsigned id;
        if (sscanf(de->d_name, "CommitLog-1-%u.log", &id) == 1) ids[n++] = id;
    }
    closedir(d);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (ids[j] < ids[i]) { unsigned t = ids[i]; ids[i] = ids[j]; ids[j] = t; }
    if (nth < 0) nth += n;
    cr_assert(nth >= 0 && nth < n);
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/CommitLog-1-%u.log", dir, ids[nth]);
    return p;
}

static uint8_t *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n ? *n : 1);
    cr_assert_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void write_file(const char *path, const uint8_t *b, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(b, 1, n, f), n);
    fclose(f);
}

/* Writes `n` records (keys 0..n-1) into a fresh log of one segment; returns end positions. */
static uint64_t *write_log(const char *dir, uint64_t segsize, int n) {
    commitlog_options o = opts(dir, STORAGE_SYNC_PERIODIC, segsize, NULL);
    commitlog *cl;
    cr_assert_eq(commitlog_open(&o, 0, NULL, NULL, &cl), 0);
    uint64_t *pos = malloc((size_t)n * sizeof *pos);
    uint8_t p[512];
    for (int k = 0; k < n; k++) {
        size_t len = make_payload((uint64_t)k, p, sizeof p);
        cr_assert_eq(commitlog_append(cl, p, len, &pos[k]), 0);
    }
    commitlog_close(cl);
    return pos;
}

Test(commitlog, truncated_last_segment_replays_every_complete_record) {
    char *src = mkdtemp_dir();
    const int N = 60;
    uint64_t *pos = write_log(src, 64 << 10, N);
    char *sp = seg_file(src, 0);
    size_t n;
    uint8_t *img = read_file(sp, &n);
    uint32_t data_end = (uint32_t)pos[N - 1];
    char *dir = mkdtemp_dir();
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, strrchr(sp, '/') + 1);
    uint64_t seed = 12345;
    int cuts = 0;
    for (uint32_t cut = 32; cut <= data_end + 8; cut += (cut < 600 ? 1 : 1 + (uint32_t)(rng_next(&seed) % 97))) {
        for (int variant = 0; variant < 2; variant++) {
            rm_rf(dir);
            mkdir(dir, 0755);
            if (variant == 0) {
                write_file(path, img, cut);           /* file cut short */
            } else {
                uint8_t *z = malloc(n);              /* preallocated file, tail never written */
                memcpy(z, img, cut);
                memset(z + cut, 0, n - cut);
                write_file(path, z, n);
                free(z);
            }
            size_t want = 0;
            while (want < (size_t)N && (uint32_t)pos[want] <= cut) want++;
            collected c = {0};
            reopen_collect(dir, 64 << 10, 0, &c, 0);
            cr_assert_eq(c.n, want, "cut at %u (variant %d): %zu records, want %zu", cut, variant, c.n, want);
            cr_assert(!c.bad);
            for (size_t i = 0; i < want; i++) cr_assert_eq(c.keys[i], i);
            collected_free(&c);
            /* reopening again (the cut segment is sealed, no longer last) still works, and
             * new appends land after it */
            sync_hook h = {.mu = PTHREAD_MUTEX_INITIALIZER, .no_real_sync = true};
            commitlog_options o = opts(dir, STORAGE_SYNC_BATCH, 64 << 10, &h);
            commitlog *cl;
            cr_assert_eq(commitlog_open(&o, 0, NULL, NULL, &cl), 0);
            uint8_t p[512];
            uint64_t ps;
            size_t len = make_payload(want, p, sizeof p);
            cr_assert_eq(commitlog_append(cl, p, len, &ps), 0);
            cr_assert_eq(commitlog_wait(cl, ps), 0);
            commitlog_close(cl);
            collected c2 = {0};
            reopen_collect(dir, 64 << 10, 0, &c2, 0);
            cr_assert_eq(c2.n, want + 1, "cut at %u variant %d after reopen: %zu", cut, variant, c2.n);
            for (size_t i = 0; i <= want; i++) cr_assert_eq(c2.keys[i], i);
            collected_free(&c2);
            cuts++;
        }
    }
    cr_assert_gt(cuts, 1000);
    free(img);
    free(sp);
    free(pos);
    rm_rf(dir);
    rm_rf(src);
    free(dir);
    free(src);
}

/* Captures what the log writes to stderr while fn runs. */
static char *capture_stderr(void (*fn)(void *), void *arg) {
    char tmpl[] = "/tmp/ilion-cl-err-XXXXXX";
    int fd = mkstemp(tmpl);
    cr_assert_geq(fd, 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    size_t n;
    uint8_t *b = read_file(tmpl, &n);
    close(fd);
    unlink(tmpl);
    char *s = malloc(n + 1);
    memcpy(s, b, n);
    s[n] = 0;
    free(b);
    return s;
}

typedef struct open_case {
    const char *dir;
    int rc;
} open_case;

static void open_only(void *arg) {
    open_case *oc = arg;
    sync_hook h = {.mu = PTHREAD_MUTEX_INITIALIZER, .no_real_sync = true};
    commitlog_options o = opts(oc->dir, STORAGE_SYNC_BATCH, 16 << 10, &h);
    commitlog *cl = NULL;
    collected c = {0};
    oc->rc = commitlog_open(&o, 0, collect_cb, &c, &cl);
    if (cl) commitlog_close(cl);
    collected_free(&c);
}

static void flip_and_expect(int nth_seg, bool in_length) {
    char *dir = mkdtemp_dir();
    uint64_t *pos = write_log(dir, 16 << 10, 300);   /* several segments */
    /* pick a record in the middle of the chosen segment */
    char *sp = seg_file(dir, nth_seg);
    unsigned id;
    sscanf(strrchr(sp, '/') + 1, "CommitLog-1-%u.log", &id);
    int first = -1, last = -1;
    for (int k = 0; k < 300; k++)
        if ((pos[k] >> 32) == id) { if (first < 0) first = k; last = k; }
    cr_assert(first >= 0 && last > first + 2);
    int k = (first + last) / 2;
    uint32_t rec_start = (uint32_t)pos[k - 1];
    if ((pos[k - 1] >> 32) != id) rec_start = 32;
    uint32_t off = in_length ? rec_start + 1 : rec_start + 8 + 3;
    int fd = open(sp, O_RDWR);
    uint8_t b;
    cr_assert_eq(pread(fd, &b, 1, off), 1);
    b ^= 0x10;
    cr_assert_eq(pwrite(fd, &b, 1, off), 1);
    close(fd);
    open_case oc = {dir, 0};
    char *err = capture_stderr(open_only, &oc);
    cr_assert_eq(oc.rc, ILION_ECORRUPT, "flipped byte at %u: open gave %s", off, ilion_strerror(oc.rc));
    char want[4200];
    snprintf(want, sizeof want, "%s at offset %u", strrchr(sp, '/') + 1, rec_start);
    cr_assert_not_null(strstr(err, want), "log does not name segment and offset (%s): %s", want, err);
    free(err);
    free(sp);
    free(pos);
    rm_rf(dir);
    free(dir);
}

Test(commitlog, flipped_payload_byte_in_older_segment_is_corruption) { flip_and_expect(1, false); }
Test(commitlog, flipped_length_byte_in_older_segment_is_corruption) { flip_and_expect(0, true); }
Test(commitlog, flipped_payload_byte_in_last_segment_is_corruption) { flip_and_expect(-1, false); }
Test(commitlog, flipped_length_byte_in_last_segment_is_corruption) { flip_and_expect(-1, true); }

Test(commitlog, garbage_segments_never_crash) {
    uint64_t seed = 99;
    char *dir = mkdtemp_dir();
    for (int round = 0; round < 200; round++) {
        rm_rf(dir);
        mkdir(dir, 0755);
        size_t n = (size_t)(rng_next(&seed) % 5000);
        uint8_t *b = malloc(n + 64);
        for (size_t i = 0; i < n; i++) b[i] = (uint8_t)rng_next(&seed);
        if (n >= 32 && round % 2) {   /* a valid header so the record parser is exercised */
            memcpy(b, "ILCL", 4);
            be32_put(b + 4, 1);
            be64_put(b + 8, 7);
            be64_put(b + 16, 4096 + rng_next(&seed) % 8192);
            b[24] = b[25] = b[26] = b[27] = 0;
            /* header CRC is CRC32C of bytes 0..27 */
            be32_put(b + 28, crc32c(0, b, 28));
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/CommitLog-1-7.log", dir);
        write_file(path, b, n);
        free(b);
        sync_hook h = {.mu = PTHREAD_MUTEX_INITIALIZER, .no_real_sync = true};
        commitlog_options o = opts(dir, STORAGE_SYNC_BATCH, 16 << 10, &h);
        commitlog *cl = NULL;
        collected c = {0};
        int rc = commitlog_open(&o, 0, collect_cb, &c, &cl);
        cr_assert(rc == 0 || rc == ILION_ECORRUPT || rc == ILION_EFORMAT, "rc %s", ilion_strerror(rc));
        if (cl) commitlog_close(cl);
        collected_free(&c);
    }
    rm_rf(dir);
    free(dir);
}

Test(commitlog, discard_of_segments_not_yet_written_is_deferred) {
    char *dir = mkdtemp_dir();
    sync_hook h = {.mu = PTHREAD_MUTEX_INITIALIZER, .no_real_sync = true, .sleep_us = 20000};
    commitlog_options o = opts(dir, STORAGE_SYNC_PERIODIC, 16 << 10, &h);
    o.sync_period_ms = 100000;
    commitlog *cl;
    cr_assert_eq(commitlog_open(&o, 0, NULL, NULL, &cl), 0);
    uint8_t p[512];
    uint64_t pos = 0;
    for (uint64_t k = 0; k < 600; k++) {   /* ~100 KB: several segments, mostly still in memory */
        size_t len = make_payload(k, p, sizeof p);
        cr_assert_eq(commitlog_append(cl, p, len, &pos), 0);
    }
    commitlog_discard_before(cl, pos);
    cr_assert_leq(commitlog_active_bytes(cl), 16 << 10);
    uint64_t more = 0;
    for (uint64_t k = 600; k < 610; k++) {
        size_t len = make_payload(k, p, sizeof p);
        cr_assert_eq(commitlog_append(cl, p, len, &more), 0);
    }
    commitlog_close(cl);   /* writes everything; discarded segments go to the pool as it passes them */
    cr_assert_leq(count_files(dir, "CommitLog-1-"), 2);
    collected c = {0};
    reopen_collect(dir, 16 << 10, 0, &c, 0);
    cr_assert(!c.bad);
    cr_assert_geq(c.n, 10);
    cr_assert_eq(c.keys[c.n - 1], 609);
    for (size_t i = 0; i < c.n; i++) cr_assert_geq(c.pos[i] >> 32, pos >> 32, "a discarded segment was replayed");
    collected_free(&c);
    rm_rf(dir);
    free(dir);
}

Test(commitlog, ids_stay_above_replay_position_when_files_are_gone) {
    char *dir = mkdtemp_dir();
    commitlog_options o = opts(dir, STORAGE_SYNC_BATCH, 16 << 10, NULL);
    commitlog *cl;
    uint64_t from = (50ull << 32) | 1000;
    cr_assert_eq(commitlog_open(&o, from, NULL, NULL, &cl), 0);
    cr_assert_gt(commitlog_position(cl), from);
    uint8_t p[64];
    size_t len = make_payload(3, p, sizeof p);
    uint64_t pos;
    cr_assert_eq(commitlog_append(cl, p, len, &pos), 0);
    cr_assert_eq(commitlog_wait(cl, pos), 0);
    cr_assert_eq(pos >> 32, 51);
    commitlog_close(cl);
    collected c = {0};
    reopen_collect(dir, 16 << 10, from, &c, 0);
    cr_assert_eq(c.n, 1);
    collected_free(&c);
    rm_rf(dir);
    free(dir);
}

Test(commitlog, spare_segment_is_prepared_ahead_and_used) {
    char *dir = mkdtemp_dir();
    /* a half-written spare left by a crash: must be replaced, not used as is */
    char sp[4200];
    snprintf(sp, sizeof sp, "%s/CommitLog-spare-7.log", dir);
    uint8_t junk[1000];
    memset(junk, 0xAB, sizeof junk);
    write_file(sp, junk, sizeof junk);
    sync_hook h = {.mu = PTHREAD_MUTEX_INITIALIZER, .no_real_sync = true};
    commitlog_options o = opts(dir, STORAGE_SYNC_BATCH, 64 << 10, &h);
    commitlog *cl;
    cr_assert_eq(commitlog_open(&o, 0, NULL, NULL, &cl), 0);
    uint8_t p[512];
    uint64_t pos = 0;
    for (uint64_t k = 0; k < 1500; k++) {   /* ~250 KB: several segments */
        size_t len = make_payload(k, p, sizeof p);
        cr_assert_eq(commitlog_append(cl, p, len, &pos), 0);
        cr_assert_eq(commitlog_wait(cl, pos), 0);
        if (k % 100 == 0) usleep(2000);      /* idle moments for the sync thread */
    }
    commitlog_stats st;
    commitlog_stats_get(cl, &st);
    cr_assert_geq(st.segments_created, 4);
    commitlog_close(cl);
    cr_assert_eq(count_files(dir, "CommitLog-spare-7"), 0, "the broken spare was used or kept");
    collected c = {0};
    reopen_collect(dir, 64 << 10, 0, &c, 0);
    cr_assert_eq(c.n, 1500);
    cr_assert(!c.bad);
    collected_free(&c);
    rm_rf(dir);
    free(dir);
}

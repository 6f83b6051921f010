/* Crash safety: tests/helpers/crash_writer writes and prints each key once its write is
 * acknowledged (batch: synced; periodic: appended, no fsync); we SIGKILL it at random (seeded)
 * moments, reopen in-process and check that every acknowledged write is present with its value
 * and nothing is reported corrupt (20 rounds of at most ~0.4 s of writing, for the commit log
 * alone and for the engine, in batch and in periodic mode: a process crash loses nothing
 * acknowledged in any mode). A last test emulates power loss: only what was fsynced (plus an
 * in-order prefix of later writes) survives. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ilion/storage/commitlog.h"
#include "ilion/storage/engine.h"
#include "ilion/util/buf.h"
#include "ilion/util/clock.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"

#include "../helpers/crash_writer.h"

enum { ROUNDS = 20, THREADS = 4 };

static void helper_path(char *out, size_t n) {
    char self[4096];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    cr_assert_gt(k, 0);
    self[k] = 0;
    snprintf(out, n, "%s/crash_writer", dirname(self));
    cr_assert_eq(access(out, X_OK), 0, "helper %s not built", out);
}

static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[4096];
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) rm_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

typedef struct keyset {
    uint64_t *k;
    size_t n, cap;
} keyset;

static void keyset_add(keyset *s, uint64_t k) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->k = realloc(s->k, s->cap * sizeof *s->k);
        cr_assert_not_null(s->k);
    }
    s->k[s->n++] = k;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Runs the child for a random time, kills it, adds the keys it acknowledged to acked. */
static void run_round(const char *helper, const char *mode, const char *sync, const char *dir,
                      uint64_t first, uint64_t *seed, keyset *acked) {
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        closefrom(3);   /* nothing of Criterion's (its IPC with the runner) goes to the child */
        char fk[32], nt[8];
        snprintf(fk, sizeof fk, "%llu", (unsigned long long)first);
        snprintf(nt, sizeof nt, "%d", THREADS);
        execl(helper, helper, mode, dir, fk, nt, sync, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    uint64_t run_ms = 20 + *seed % 380;
    uint64_t deadline = clock_mono_ns() + run_ms * 1000000ull;
    char buf[65536];
    size_t have = 0;
    bool eof = false, killed = false;
    while (!eof) {
        uint64_t now = clock_mono_ns();
        if (!killed && now >= deadline) {
            kill(pid, SIGKILL);
            killed = true;
        }
        struct pollfd p = {fds[0], POLLIN, 0};
        int to = killed ? 1000 : (int)((deadline - now) / 1000000ull) + 1;
        int r = poll(&p, 1, to);
        if (r <= 0) continue;
        ssize_t k = read(fds[0], buf + have, sizeof buf - have - 1);
        if (k <= 0) { eof = true; break; }
        have += (size_t)k;
        /* consume complete lines; a partial last line was never fully acknowledged */
        size_t start = 0;
        for (size_t i = 0; i < have; i++) {
            if (buf[i] != '\n') continue;
            buf[i] = 0;
            keyset_add(acked, strtoull(buf + start, NULL, 10));
            start = i + 1;
        }
        memmove(buf, buf + start, have - start);
        have -= start;
    }
    close(fds[0]);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "crash_writer exited by itself (status %d) — it failed", status);
}

/* ---- the commit log alone -------------------------------------------------------------- */

static int log_collect(void *arg, const uint8_t *payload, size_t len, uint64_t pos) {
    keyset *s = arg;
    if (len < 9) return -1000;
    uint64_t key = be64_get(payload);
    uint8_t v[CRASH_WRITER_MAX_VALUE];
    uint32_t vl = crash_writer_value(key, v);
    if (vl != len - 8 || memcmp(v, payload + 8, vl) != 0) return -1001;
    keyset_add(s, key);
    return 0;
}

static void log_case(const char *sync, uint64_t seed) {
    char helper[4096];
    helper_path(helper, sizeof helper);
    char dir[] = "/tmp/ilion-crash-log-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    log_set_level(LOG_LEVEL_WARN);
    keyset acked = {0};
    size_t total_replayed = 0;
    for (int round = 0; round < ROUNDS; round++) {
        run_round(helper, "log", sync, dir, (uint64_t)round * 100000000ull, &seed, &acked);
        keyset got = {0};
        commitlog_options o;
        crash_writer_log_options(&o, dir, crash_writer_mode(sync));
        commitlog *cl = NULL;
        int rc = commitlog_open(&o, 0, log_collect, &got, &cl);
        cr_assert_eq(rc, 0, "round %d: reopen failed: %s", round, ilion_strerror(rc));
        commitlog_close(cl);
        qsort(got.k, got.n, sizeof *got.k, cmp_u64);
        for (size_t i = 0; i < acked.n; i++)
            cr_assert_not_null(bsearch(&acked.k[i], got.k, got.n, sizeof *got.k, cmp_u64),
                               "round %d: acknowledged key %llu lost", round,
                               (unsigned long long)acked.k[i]);
        total_replayed = got.n;
        free(got.k);
    }
    cr_assert_gt(acked.n, 100, "only %zu writes acknowledged in %d rounds", acked.n, ROUNDS);
    cr_log_info("log (%s): %zu acknowledged, %zu replayed after %d kills", sync, acked.n, total_replayed,
                ROUNDS);
    free(acked.k);
    rm_tree(dir);
}

Test(commitlog_crash, log_alone_keeps_every_acknowledged_write, .timeout = 120) { log_case("batch", 0xC0FFEEull); }
Test(commitlog_crash, log_alone_periodic_keeps_every_acknowledged_write, .timeout = 120) {
    log_case("periodic", 0xFACADEull);
}

/* ---- the storage engine -------------------------------------------------------------- */

static void engine_case(const char *sync, uint64_t seed) {
    char helper[4096];
    helper_path(helper, sizeof helper);
    char dir[] = "/tmp/ilion-crash-engine-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    log_set_level(LOG_LEVEL_WARN);
    char data[4096], cld[4096];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(cld, sizeof cld, "%s/commitlog", dir);
    keyset acked = {0};
    size_t checked_from = 0;
    for (int round = 0; round < ROUNDS; round++) {
        run_round(helper, "engine", sync, dir, (uint64_t)round * 100000000ull, &seed, &acked);
        storage_options o;
        crash_writer_engine_options(&o, data, cld, crash_writer_mode(sync));
        storage_engine *e = NULL;
        int rc = storage_open(&o, &e);
        cr_assert_eq(rc, 0, "round %d: reopen failed: %s", round, ilion_strerror(rc));
        /* every key acknowledged so far, in every round, with its value */
        st_arena a;
        arena_init(&a);
        int32_t now = clock_now_s();
        size_t from = round % 5 == 4 ? 0 : checked_from;   /* all keys every fifth round */
        for (size_t i = from; i < acked.n; i++) {
            uint8_t pk[8], v[CRASH_WRITER_MAX_VALUE];
            be64_put(pk, acked.k[i]);
            uint32_t vl = crash_writer_value(acked.k[i], v);
            st_partition *p = NULL;
            rc = storage_read(e, CRASH_WRITER_TABLE, pk, 8, NULL, now, &a, &p);
            cr_assert_eq(rc, 0, "round %d: read of %llu: %s", round, (unsigned long long)acked.k[i],
                         ilion_strerror(rc));
            cr_assert_not_null(p, "round %d: acknowledged key %llu lost", round,
                               (unsigned long long)acked.k[i]);
            cr_assert_eq(p->nrows, 1);
            cr_assert_eq(p->rows[0].ncells, 1);
            const st_cell *c = &p->rows[0].cells[0];
            cr_assert(c->len == vl && memcmp(c->value, v, vl) == 0,
                      "round %d: key %llu has a wrong value", round, (unsigned long long)acked.k[i]);
            arena_reset(&a);
        }
        arena_free(&a);
        checked_from = acked.n;
        storage_close(e);
    }
    cr_assert_gt(acked.n, 100, "only %zu writes acknowledged in %d rounds", acked.n, ROUNDS);
    cr_log_info("engine (%s): %zu acknowledged writes survived %d kills", sync, acked.n, ROUNDS);
    free(acked.k);
    rm_tree(dir);
}

Test(commitlog_crash, engine_keeps_every_acknowledged_write, .timeout = 180) { engine_case("batch", 0xBADC0DEull); }
Test(commitlog_crash, engine_periodic_keeps_every_acknowledged_write, .timeout = 180) {
    engine_case("periodic", 0xDEC0DEDull);
}

/* ---- power loss, emulated ------------------------------------------------------------ */
/* The sync hook keeps, per file, the image the disk would have after each fsync. At a random
 * moment the images are frozen; writes acknowledged before that must be in the log rebuilt from
 * the images plus an in-order prefix of the later, unsynced writes (what reached the disk). */

typedef struct image {
    char path[512];
    uint8_t *data;
    size_t len;
} image;

typedef struct power {
    pthread_mutex_t mu;
    image img[64];
    int nimg;
    bool frozen;
    keyset acked;
    commitlog *cl;
    uint64_t first;
    int stop;
} power;

static int power_sync(void *arg, int fd) {
    power *pw = arg;
    usleep(300);   /* an fsync takes time; the data is durable only when it returns */
    char link[64], path[512];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t k = readlink(link, path, sizeof path - 1);
    if (k <= 0) return -EIO;
    path[k] = 0;
    struct stat sb;
    if (fstat(fd, &sb) != 0) return -errno;
    uint8_t *d = malloc((size_t)sb.st_size + 1);
    if (!d) return -ENOMEM;
    if (pread(fd, d, (size_t)sb.st_size, 0) != sb.st_size) { free(d); return -EIO; }
    pthread_mutex_lock(&pw->mu);
    if (pw->frozen) {
        free(d);
    } else {
        int i = 0;
        while (i < pw->nimg && strcmp(pw->img[i].path, path) != 0) i++;
        if (i == pw->nimg && pw->nimg < 64) snprintf(pw->img[pw->nimg++].path, 512, "%s", path);
        if (i < 64) {
            free(pw->img[i].data);
            pw->img[i].data = d;
            pw->img[i].len = (size_t)sb.st_size;
        } else {
            free(d);
        }
    }
    pthread_mutex_unlock(&pw->mu);
    return 0;
}

typedef struct pw_writer { power *pw; uint32_t tid; } pw_writer;

static void *power_writer(void *arg) {
    pw_writer *w = arg;
    power *pw = w->pw;
    uint8_t rec[8 + CRASH_WRITER_MAX_VALUE];
    for (uint64_t i = 0; !__atomic_load_n(&pw->stop, __ATOMIC_ACQUIRE); i++) {
        uint64_t key = pw->first + i * 4 + w->tid;
        be64_put(rec, key);
        uint32_t len = crash_writer_value(key, rec + 8);
        uint64_t pos;
        if (commitlog_append(pw->cl, rec, 8 + len, &pos) != 0) break;
        if (commitlog_wait(pw->cl, pos) != 0) break;
        pthread_mutex_lock(&pw->mu);
        if (!pw->frozen) keyset_add(&pw->acked, key);   /* acknowledged before the power cut */
        pthread_mutex_unlock(&pw->mu);
    }
    return NULL;
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n + 1);
    if (fread(b, 1, *n, f) != *n) { free(b); b = NULL; }
    fclose(f);
    return b;
}

Test(commitlog_crash, power_loss_keeps_every_synced_write, .timeout = 120) {
    char dir[] = "/tmp/ilion-power-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    log_set_level(LOG_LEVEL_WARN);
    uint64_t seed = 0x5EED5ull;
    size_t total_acked = 0;
    for (int round = 0; round < 12; round++) {
        power *pw = calloc(1, sizeof *pw);
        pthread_mutex_init(&pw->mu, NULL);
        pw->first = (uint64_t)round * 100000000ull;
        commitlog_options o;
        crash_writer_log_options(&o, dir, STORAGE_SYNC_BATCH);
        o.segment_size = 16u << 10;   /* several segments per round */
        o.sync_fn = power_sync;
        o.sync_fn_arg = pw;
        keyset before = {0};
        cr_assert_eq(commitlog_open(&o, 0, log_collect, &before, &pw->cl), 0, "round %d", round);
        free(before.k);
        pthread_t t[4];
        pw_writer w[4];
        for (uint32_t i = 0; i < 4; i++) {
            w[i] = (pw_writer){pw, i};
            pthread_create(&t[i], NULL, power_writer, &w[i]);
        }
        seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
        usleep((useconds_t)(5000 + seed % 60000));
        pthread_mutex_lock(&pw->mu);
        pw->frozen = true;                 /* the power goes out */
        pthread_mutex_unlock(&pw->mu);
        __atomic_store_n(&pw->stop, 1, __ATOMIC_RELEASE);
        for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
        commitlog_close(pw->cl);

        /* Rebuild the directory as the disk would have it: synced images, plus for the newest
         * file an in-order prefix of what was written after its last sync. Files never synced
         * (created after the cut) are gone. */
        DIR *d = opendir(dir);
        struct dirent *de;
        char p[4200];
        while ((de = readdir(d)) != NULL) {
            if (strncmp(de->d_name, "CommitLog-1-", 12) != 0) continue;
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            int i = 0;
            while (i < pw->nimg && strcmp(pw->img[i].path, p) != 0) i++;
            if (i == pw->nimg) unlink(p);
        }
        closedir(d);
        int newest = -1;
        unsigned newest_id = 0;
        for (int i = 0; i < pw->nimg; i++) {
            unsigned id;
            const char *base = strrchr(pw->img[i].path, '/') + 1;
            if (sscanf(base, "CommitLog-1-%u.log", &id) == 1 && id >= newest_id && access(pw->img[i].path, F_OK) == 0) {
                newest_id = id;
                newest = i;
            }
        }
        for (int i = 0; i < pw->nimg; i++) {
            if (access(pw->img[i].path, F_OK) != 0) continue;   /* recycled or removed since */
            size_t rn = 0;
            uint8_t *real = slurp(pw->img[i].path, &rn);
            uint8_t *out = malloc(pw->img[i].len + 1);
            memcpy(out, pw->img[i].data, pw->img[i].len);
            if (i == newest && real) {
                seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
                size_t cut = (size_t)(seed % (pw->img[i].len + 1));
                memcpy(out, real, cut < rn ? cut : rn);
            }
            FILE *f = fopen(pw->img[i].path, "wb");
            fwrite(out, 1, pw->img[i].len, f);
            fclose(f);
            free(out);
            free(real);
        }

        keyset got = {0};
        commitlog_options o2;
        crash_writer_log_options(&o2, dir, STORAGE_SYNC_BATCH);
        o2.segment_size = 16u << 10;
        commitlog *cl = NULL;
        int rc = commitlog_open(&o2, 0, log_collect, &got, &cl);
        cr_assert_eq(rc, 0, "round %d: replay after power loss: %s", round, ilion_strerror(rc));
        commitlog_close(cl);
        qsort(got.k, got.n, sizeof *got.k, cmp_u64);
        for (size_t i = 0; i < pw->acked.n; i++)
            cr_assert_not_null(bsearch(&pw->acked.k[i], got.k, got.n, sizeof *got.k, cmp_u64),
                               "round %d: synced key %llu lost", round, (unsigned long long)pw->acked.k[i]);
        total_acked += pw->acked.n;
        free(got.k);
        free(pw->acked.k);
        for (int i = 0; i < pw->nimg; i++) free(pw->img[i].data);
        pthread_mutex_destroy(&pw->mu);
        free(pw);
    }
    cr_assert_gt(total_acked, 100);
    cr_log_info("power loss: %zu synced writes survived 12 cuts", total_acked);
    rm_tree(dir);
}

/*
 * Storage engine benchmark, the engine embedded (no network), in the shape of RocksDB's
 * db_bench so bench/storage_vs_rocksdb.sh can put the two side by side: 16-byte keys
 * ("%016llu" of a number in [0, num)), 100-byte values, one partition per key, one cell.
 *
 *   bench_storage fillrandom <dir> <num>                 one thread, commit log periodic
 *   bench_storage readrandom <dir> <num> <reads>         existing data, one thread
 *   bench_storage fillsync   <dir> <num> <threads>       each thread num writes, batch sync,
 *                                                        each write waits for its fsync
 *
 * Prints one line per run: "<name>: <ops> ops in <s> s: <ops/s> ops/s [extra]".
 * Options via environment: ILION_BENCH_MEMTABLE_MB (default 128, i.e. two 64 MiB memtables
 * like RocksDB's write_buffer_size), ILION_BENCH_COMPRESSION (lz4|deflate|none, default lz4),
 * ILION_BENCH_BLOCK_SIZE (default 4096, RocksDB's block_size; the table default is 16 KiB).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/storage/engine.h"
#include "ilion/util/clock.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"

#define TABLE_ID 1u
#define KEY_SIZE 16
#define VALUE_SIZE 100

static void die(const char *what, int rc) {
    fprintf(stderr, "bench_storage: %s: %s\n", what, ilion_strerror(rc));
    exit(1);
}

static uint64_t rng(uint64_t *s) {
    /* splitmix64: fast, good enough to pick keys uniformly */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void make_key(uint64_t k, uint8_t out[KEY_SIZE]) {
    /* the 16 low decimal digits, zero-padded, like db_bench's keys */
    for (int i = KEY_SIZE - 1; i >= 0; i--) {
        out[i] = (uint8_t)('0' + k % 10);
        k /= 10;
    }
}

static void make_value(uint64_t *s, uint8_t out[VALUE_SIZE]) {
    /* half random, half repeated: compresses about 2:1 like db_bench's default ratio 0.5 */
    for (int i = 0; i < VALUE_SIZE / 2; i += 8) {
        uint64_t r = rng(s);
        memcpy(out + i, &r, (VALUE_SIZE / 2 - i) < 8 ? (size_t)(VALUE_SIZE / 2 - i) : 8);
    }
    memset(out + VALUE_SIZE / 2, 'v', VALUE_SIZE - VALUE_SIZE / 2);
}

static storage_engine *open_engine(const char *dir, enum storage_sync_mode mode) {
    static char data[4096], cl[4096];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(cl, sizeof cl, "%s/commitlog", dir);
    storage_options o;
    storage_options_default(&o);
    o.data_dir = data;
    o.commitlog_dir = cl;
    o.sync_mode = mode;
    const char *mb = getenv("ILION_BENCH_MEMTABLE_MB");
    o.memtable_space = (uint64_t)(mb ? atoi(mb) : 128) << 20;
    storage_engine *e;
    int rc = storage_open(&o, &e);
    if (rc) die("storage_open", rc);
    storage_table_options to;
    storage_table_options_default(&to);
    const char *c = getenv("ILION_BENCH_COMPRESSION");
    if (c && !strcmp(c, "none")) to.compression = STORAGE_COMPRESS_NONE;
    if (c && !strcmp(c, "deflate")) to.compression = STORAGE_COMPRESS_DEFLATE;
    const char *bs = getenv("ILION_BENCH_BLOCK_SIZE");
    to.block_size = (uint32_t)(bs ? atoi(bs) : 4096);
    rc = storage_table_create(e, TABLE_ID, &to);
    if (rc) die("storage_table_create", rc);
    return e;
}

static int put(storage_engine *e, st_arena *a, uint64_t k, uint64_t *seed, uint64_t *pos) {
    uint8_t key[KEY_SIZE], val[VALUE_SIZE];
    make_key(k, key);
    make_value(seed, val);
    st_partition *p = st_partition_new(a, TABLE_ID, key, KEY_SIZE);
    st_row *r = p ? st_partition_row(a, p, "", 0) : NULL;
    if (!r) return -12;
    int rc = st_row_set_cell(a, r, 1, clock_now_us(), 0, 0, val, VALUE_SIZE);
    if (!rc) rc = storage_apply(e, p, pos);
    return rc;
}

static void report(const char *name, uint64_t ops, uint64_t ns, const char *extra) {
    double s = (double)ns / 1e9;
    printf("%s: %" PRIu64 " ops in %.3f s: %.0f ops/s%s%s\n", name, ops, s, (double)ops / s,
           extra ? " " : "", extra ? extra : "");
    fflush(stdout);
}

static void fillrandom(const char *dir, uint64_t num) {
    storage_engine *e = open_engine(dir, STORAGE_SYNC_PERIODIC);
    st_arena a;
    arena_init(&a);
    uint64_t seed = 301, vseed = 17, pos;
    uint64_t t0 = clock_mono_ns();
    for (uint64_t i = 0; i < num; i++) {
        int rc = put(e, &a, rng(&seed) % num, &vseed, &pos);
        if (rc) die("storage_apply", rc);
        arena_reset(&a);
    }
    uint64_t t1 = clock_mono_ns();
    arena_free(&a);
    storage_table_stats st;
    storage_table_stats_get(e, TABLE_ID, &st);
    char extra[160];
    snprintf(extra, sizeof extra, "(memtable %.1f MB, %u sstables %.1f MB)", st.memtable_bytes / 1e6,
             st.sstable_count, st.sstable_bytes / 1e6);
    report("fillrandom", num, t1 - t0, extra);
    storage_close(e);
}

static void readrandom(const char *dir, uint64_t num, uint64_t reads) {
    storage_engine *e = open_engine(dir, STORAGE_SYNC_PERIODIC);
    st_arena a;
    arena_init(&a);
    uint64_t seed = 977, found = 0;
    int32_t now = clock_now_s();
    uint8_t key[KEY_SIZE];
    uint64_t t0 = clock_mono_ns();
    for (uint64_t i = 0; i < reads; i++) {
        make_key(rng(&seed) % num, key);
        st_partition *p;
        int rc = storage_read(e, TABLE_ID, key, KEY_SIZE, NULL, now, &a, &p);
        if (rc) die("storage_read", rc);
        if (p && p->nrows == 1 && p->rows[0].ncells == 1 && p->rows[0].cells[0].len == VALUE_SIZE) found++;
        arena_reset(&a);
    }
    uint64_t t1 = clock_mono_ns();
    arena_free(&a);
    storage_table_stats st;
    storage_table_stats_get(e, TABLE_ID, &st);
    char extra[160];
    snprintf(extra, sizeof extra, "(%" PRIu64 " of %" PRIu64 " found; %u sstables)", found, reads,
             st.sstable_count);
    report("readrandom", reads, t1 - t0, extra);
    storage_close(e);
}

typedef struct sync_arg {
    storage_engine *e;
    uint64_t num, id;
    int err;
} sync_arg;

static void *sync_writer(void *arg) {
    sync_arg *w = arg;
    st_arena a;
    arena_init(&a);
    uint64_t seed = 1000 + w->id, vseed = 2000 + w->id, pos;
    for (uint64_t i = 0; i < w->num; i++) {
        int rc = put(w->e, &a, rng(&seed) % (w->num * 8), &vseed, &pos);
        if (!rc) rc = storage_wait_synced(w->e, pos);
        if (rc) { w->err = rc; break; }
        arena_reset(&a);
    }
    arena_free(&a);
    return NULL;
}

static void fillsync(const char *dir, uint64_t num, int threads) {
    storage_engine *e = open_engine(dir, STORAGE_SYNC_BATCH);
    pthread_t t[64];
    sync_arg w[64];
    uint64_t t0 = clock_mono_ns();
    for (int i = 0; i < threads; i++) {
        w[i] = (sync_arg){e, num, (uint64_t)i, 0};
        pthread_create(&t[i], NULL, sync_writer, &w[i]);
    }
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    uint64_t t1 = clock_mono_ns();
    for (int i = 0; i < threads; i++)
        if (w[i].err) die("durable write", w[i].err);
    char extra[64];
    snprintf(extra, sizeof extra, "(%d threads)", threads);
    report("fillsync", num * (uint64_t)threads, t1 - t0, extra);
    storage_close(e);
}

int main(int argc, char **argv) {
    log_set_level(LOG_LEVEL_WARN);
    if (argc == 4 && !strcmp(argv[1], "fillrandom")) {
        fillrandom(argv[2], strtoull(argv[3], NULL, 10));
    } else if (argc == 5 && !strcmp(argv[1], "readrandom")) {
        readrandom(argv[2], strtoull(argv[3], NULL, 10), strtoull(argv[4], NULL, 10));
    } else if (argc == 5 && !strcmp(argv[1], "fillsync")) {
        int th = atoi(argv[4]);
        if (th < 1 || th > 64) th = 8;
        fillsync(argv[2], strtoull(argv[3], NULL, 10), th);
    } else {
        fprintf(stderr,
                "usage: bench_storage fillrandom <dir> <num>\n"
                "       bench_storage readrandom <dir> <num> <reads>\n"
                "       bench_storage fillsync <dir> <num per thread> <threads>\n");
        return 2;
    }
    return 0;
}

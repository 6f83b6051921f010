/* Block cache: LRU and byte budget, held blocks outliving eviction, and SSTable point reads
 * through the cache (same answers as without it; corrupt blocks never cached). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ilion/storage/blockcache.h"
#include "ilion/storage/memtable.h"
#include "ilion/storage/partition.h"
#include "ilion/storage/sstable.h"
#include "ilion/util/err.h"
#include "ilion/util/murmur3.h"

static char tmpdir[256];

static void mkdir_tmp(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ilion_bc_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}
static void rm_tmp(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

Test(storage_blockcache, lookup_insert_lru_budget) {
    sst_block_cache *c;
    /* 16 shards of 4 KiB each. */
    cr_assert_eq(sst_block_cache_new(64 << 10, &c), 0);
    uint8_t data[1000];
    for (int i = 0; i < 1000; i++) data[i] = (uint8_t)(i * 7);
    uint64_t f = sst_block_cache_new_file_id();
    cr_assert_null(sst_block_cache_lookup(c, f, 0));
    const sst_cached_block *b = sst_block_cache_insert(c, f, 0, data, sizeof data);
    cr_assert_not_null(b);
    cr_assert_eq(b->len, 1000);
    cr_assert(memcmp(b->data, data, 1000) == 0);
    sst_block_cache_release(b);
    b = sst_block_cache_lookup(c, f, 0);
    cr_assert_not_null(b);
    cr_assert(memcmp(b->data, data, 1000) == 0);
    /* Held across heavy eviction: still readable (ASan would see a use after free). */
    for (uint32_t i = 1; i < 2000; i++) sst_block_cache_release(sst_block_cache_insert(c, f, i, data, 1000));
    cr_assert(memcmp(b->data, data, 1000) == 0);
    sst_block_cache_release(b);
    sst_block_cache_stats st;
    sst_block_cache_get_stats(c, &st);
    cr_assert_leq(st.bytes, 64 << 10, "over budget: %llu", (unsigned long long)st.bytes);
    cr_assert_gt(st.evictions, 1000);
    cr_assert_eq(st.hits, 1);
    cr_assert_eq(st.misses, 1);
    /* The newest blocks are there, the oldest are gone. */
    int recent = 0, old = 0;
    for (uint32_t i = 1990; i < 2000; i++) {
        const sst_cached_block *x = sst_block_cache_lookup(c, f, i);
        recent += x != NULL;
        sst_block_cache_release(x);
    }
    for (uint32_t i = 1; i < 100; i++) {
        const sst_cached_block *x = sst_block_cache_lookup(c, f, i);
        old += x != NULL;
        sst_block_cache_release(x);
    }
    cr_assert_geq(recent, 8);
    cr_assert_eq(old, 0);
    /* A block bigger than a shard's budget is returned but not kept. */
    uint8_t *big = calloc(1, 8192);
    b = sst_block_cache_insert(c, f, 5000, big, 8192);
    cr_assert_not_null(b);
    cr_assert_eq(b->len, 8192);
    sst_block_cache_release(b);
    cr_assert_null(sst_block_cache_lookup(c, f, 5000));
    free(big);
    sst_block_cache_unref(c);
}

Test(storage_blockcache, files_are_separate_and_erased) {
    sst_block_cache *c;
    cr_assert_eq(sst_block_cache_new(1 << 20, &c), 0);
    uint64_t f1 = sst_block_cache_new_file_id(), f2 = sst_block_cache_new_file_id();
    cr_assert_neq(f1, f2);
    for (uint32_t i = 0; i < 50; i++) {
        uint8_t v1[8] = {1, (uint8_t)i}, v2[8] = {2, (uint8_t)i};
        sst_block_cache_release(sst_block_cache_insert(c, f1, i, v1, 8));
        sst_block_cache_release(sst_block_cache_insert(c, f2, i, v2, 8));
    }
    /* Re-inserting a block replaces it. */
    uint8_t v3[4] = {3, 3, 3, 3};
    sst_block_cache_release(sst_block_cache_insert(c, f1, 7, v3, 4));
    const sst_cached_block *b = sst_block_cache_lookup(c, f1, 7);
    cr_assert_eq(b->len, 4);
    cr_assert_eq(b->data[0], 3);
    sst_block_cache_release(b);
    b = sst_block_cache_lookup(c, f2, 7);
    cr_assert_eq(b->data[0], 2);
    cr_assert_eq(b->data[1], 7);
    sst_block_cache_erase_file(c, f2);
    /* Still held by us after the erase. */
    cr_assert_eq(b->data[1], 7);
    sst_block_cache_release(b);
    sst_block_cache_stats st;
    sst_block_cache_get_stats(c, &st);
    cr_assert_eq(st.entries, 50);
    for (uint32_t i = 0; i < 50; i++) {
        cr_assert_null(sst_block_cache_lookup(c, f2, i));
        b = sst_block_cache_lookup(c, f1, i);
        cr_assert_not_null(b);
        sst_block_cache_release(b);
    }
    sst_block_cache_unref(c);
}

static st_partition *make_part(st_arena *a, int key, int nrows, int64_t ts) {
    char pk[32];
    int n = snprintf(pk, sizeof pk, "key%08d", key);
    st_partition *p = st_partition_new(a, 1, pk, (uint32_t)n);
    cr_assert_not_null(p);
    for (int r = 0; r < nrows; r++) {
        char ck[16];
        snprintf(ck, sizeof ck, "r%05d", r);
        st_row *row = st_partition_row(a, p, ck, 6);
        cr_assert_not_null(row);
        char v[40];
        int vn = snprintf(v, sizeof v, "value-%d-%d-padding", key, r);
        cr_assert_eq(st_row_set_cell(a, row, 1, ts, 0, 0, v, (uint32_t)vn), 0);
    }
    return p;
}

static void write_sst(int nkeys, int nrows, uint32_t block_size) {
    storage_table_options o;
    storage_table_options_default(&o);
    o.block_size = block_size;
    memtable *m = memtable_new(1, 0);
    st_arena a;
    arena_init(&a);
    for (int i = 0; i < nkeys; i++) cr_assert_eq(memtable_apply(m, make_part(&a, i, nrows, 100 + i)), 0);
    sst_writer *w;
    cr_assert_eq(sst_writer_open(tmpdir, 1, 1, &o, (uint64_t)nkeys, &w), 0);
    memtable_iter it;
    memtable_iter_seek(&it, m, INT64_MIN, NULL, 0, true);
    st_partition *p;
    while (memtable_iter_next(&it, &a, &p) == 1) cr_assert_eq(sst_writer_add(w, p), 0);
    cr_assert_eq(sst_writer_finish(w, 1, NULL, 0), 0);
    arena_free(&a);
    memtable_unref(m);
}

static void same_partition(const st_partition *x, const st_partition *y) {
    cr_assert_eq(x == NULL, y == NULL);
    if (!x) return;
    cr_assert_eq(x->pklen, y->pklen);
    cr_assert(memcmp(x->pk, y->pk, x->pklen) == 0);
    cr_assert_eq(x->nrows, y->nrows);
    for (uint32_t r = 0; r < x->nrows; r++) {
        cr_assert_eq(x->rows[r].cklen, y->rows[r].cklen);
        cr_assert(memcmp(x->rows[r].ck, y->rows[r].ck, x->rows[r].cklen) == 0);
        cr_assert_eq(x->rows[r].ncells, y->rows[r].ncells);
        for (uint32_t j = 0; j < x->rows[r].ncells; j++) {
            cr_assert_eq(x->rows[r].cells[j].ts, y->rows[r].cells[j].ts);
            cr_assert_eq(x->rows[r].cells[j].len, y->rows[r].cells[j].len);
            cr_assert(memcmp(x->rows[r].cells[j].value, y->rows[r].cells[j].value, x->rows[r].cells[j].len) == 0);
        }
    }
}

/* Cached reads answer exactly like uncached ones, with whole partitions and slices of wide
 * partitions spanning continuation blocks, also while the cache evicts. */
static void compare_cached(int nkeys, int nrows, uint32_t block_size, uint64_t cache_bytes) {
    write_sst(nkeys, nrows, block_size);
    sstable *plain, *cached;
    cr_assert_eq(sstable_open(tmpdir, 1, &plain), 0);
    cr_assert_eq(sstable_open(tmpdir, 1, &cached), 0);
    sst_block_cache *c;
    cr_assert_eq(sst_block_cache_new(cache_bytes, &c), 0);
    sstable_set_block_cache(cached, c);
    st_arena a;
    arena_init(&a);
    uint64_t seed = 7;
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < nkeys + 10; i++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            int k = (int)((seed >> 33) % (uint64_t)(nkeys + 10)); /* some absent keys */
            char pk[32];
            int n = snprintf(pk, sizeof pk, "key%08d", k);
            int64_t tok = murmur3_token(pk, (size_t)n);
            storage_slice sl;
            const storage_slice *slp = NULL;
            char sb[16], eb[16];
            if (nrows > 1 && (seed >> 20) % 2) {
                int lo = (int)((seed >> 40) % (uint64_t)nrows), hi = lo + (int)((seed >> 50) % 9);
                snprintf(sb, sizeof sb, "r%05d", lo);
                snprintf(eb, sizeof eb, "r%05d", hi);
                sl = (storage_slice){(const uint8_t *)sb, 6, true, (const uint8_t *)eb, 6, false, false, 0};
                slp = &sl;
            }
            st_partition *x, *y;
            cr_assert_eq(sstable_get(plain, tok, (const uint8_t *)pk, (uint32_t)n, slp, &a, &x), 0);
            cr_assert_eq(sstable_get(cached, tok, (const uint8_t *)pk, (uint32_t)n, slp, &a, &y), 0);
            same_partition(x, y);
            if (k < nkeys && !slp) cr_assert_eq(y->nrows, (uint32_t)nrows);
            arena_free(&a);
        }
    }
    sst_block_cache_stats st;
    sst_block_cache_get_stats(c, &st);
    cr_assert_gt(st.hits, 0);
    cr_assert_gt(st.misses, 0);
    cr_assert_leq(st.bytes, cache_bytes);
    arena_free(&a);
    sstable_unref(plain);
    sstable_unref(cached);
    sst_block_cache_unref(c); /* the sstable's reference went with it; this is the last */
}

Test(storage_blockcache, sstable_reads_same_as_uncached, .init = mkdir_tmp, .fini = rm_tmp) {
    compare_cached(2000, 1, 1024, 1 << 20);
}

Test(storage_blockcache, sstable_wide_partitions_small_cache, .init = mkdir_tmp, .fini = rm_tmp) {
    /* 64 KiB over 16 shards: constant eviction. */
    compare_cached(200, 60, 512, 64 << 10);
}

static void flip_byte(uint64_t off) {
    char path[512];
    snprintf(path, sizeof path, "%s/1.sst", tmpdir);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    uint8_t b;
    cr_assert_eq(pread(fd, &b, 1, (off_t)off), 1);
    b ^= 0x5a;
    cr_assert_eq(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

/* A corrupt block fails on every read — it is never cached — and never yields wrong data;
 * blocks that verified are served from the cache. */
Test(storage_blockcache, corrupt_block_never_cached, .init = mkdir_tmp, .fini = rm_tmp) {
    write_sst(500, 1, 1024);
    flip_byte(300); /* inside the first data block */
    sstable *s;
    cr_assert_eq(sstable_open(tmpdir, 1, &s), 0);
    sst_block_cache *c;
    cr_assert_eq(sst_block_cache_new(1 << 20, &c), 0);
    sstable_set_block_cache(s, c);
    st_arena a;
    arena_init(&a);
    int errors[2] = {0, 0};
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < 500; i++) {
            char pk[32];
            int n = snprintf(pk, sizeof pk, "key%08d", i);
            st_partition *p;
            int rc = sstable_get(s, murmur3_token(pk, (size_t)n), (const uint8_t *)pk, (uint32_t)n, NULL, &a, &p);
            if (rc) {
                cr_assert(rc == ILION_ECHECKSUM || rc == ILION_ECORRUPT, "rc %d", rc);
                errors[pass]++;
                continue;
            }
            cr_assert_not_null(p);
            char v[40];
            int vn = snprintf(v, sizeof v, "value-%d-%d-padding", i, 0);
            cr_assert_eq(p->rows[0].cells[0].len, (uint32_t)vn);
            cr_assert(memcmp(p->rows[0].cells[0].value, v, (size_t)vn) == 0);
            arena_free(&a);
        }
    }
    cr_assert_gt(errors[0], 0);
    cr_assert_eq(errors[0], errors[1], "a bad block was served from the cache");
    sst_block_cache_stats st;
    sst_block_cache_get_stats(c, &st);
    cr_assert_gt(st.hits, 0);
    arena_free(&a);
    sstable_unref(s);
    sst_block_cache_unref(c);
}

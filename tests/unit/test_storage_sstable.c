/* Bloom filter, memtable, SSTable write/read and corruption detection. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ilion/storage/memtable.h"
#include "ilion/storage/partition.h"
#include "ilion/storage/sstable.h"
#include "ilion/util/bloom.h"
#include "ilion/util/err.h"
#include "ilion/util/murmur3.h"

static char tmpdir[256];

static void mkdir_tmp(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ilion_sst_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}
static void rm_tmp(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

static uint64_t rng_state;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

Test(storage_bloom, false_positive_rate_near_target) {
    bloom b;
    cr_assert_eq(bloom_init(&b, 100000, 0.01), 0);
    cr_assert_eq(b.k, 7);
    cr_assert_lt((double)b.nbits / 100000, 10.0);
    char key[32];
    for (int i = 0; i < 100000; i++) {
        int n = snprintf(key, sizeof key, "in-%d", i);
        uint64_t h[2];
        murmur3_x64_128(key, (size_t)n, 0, h);
        bloom_add(&b, h[0], h[1]);
    }
    for (int i = 0; i < 100000; i++) {
        int n = snprintf(key, sizeof key, "in-%d", i);
        uint64_t h[2];
        murmur3_x64_128(key, (size_t)n, 0, h);
        cr_assert(bloom_may_contain(&b, h[0], h[1]));
    }
    int fp = 0;
    for (int i = 0; i < 100000; i++) {
        int n = snprintf(key, sizeof key, "out-%d", i);
        uint64_t h[2];
        murmur3_x64_128(key, (size_t)n, 0, h);
        fp += bloom_may_contain(&b, h[0], h[1]);
    }
    cr_assert_lt(fp, 1300, "false positives %d / 100000", fp);
    cr_assert_gt(fp, 500, "suspiciously few false positives %d", fp);
    buf e;
    buf_init(&e);
    bloom_encode(&b, &e);
    bloom c;
    cr_assert_eq(bloom_decode(&c, e.data, e.len), 0);
    cr_assert_eq(c.nbits, b.nbits);
    cr_assert(memcmp(c.words, b.words, bloom_bytes(&b)) == 0);
    bloom_free(&c);
    cr_assert_eq(bloom_decode(&c, e.data, e.len - 1), ILION_ECORRUPT);
    buf_free(&e);
    bloom_free(&b);
}

static st_partition *make_part(st_arena *a, int key, int nrows, int64_t ts, const char *val) {
    char pk[32];
    int n = snprintf(pk, sizeof pk, "key%08d", key);
    st_partition *p = st_partition_new(a, 1, pk, (uint32_t)n);
    for (int r = 0; r < nrows; r++) {
        char ck[16];
        snprintf(ck, sizeof ck, "r%05d", r);
        st_row *row = st_partition_row(a, p, ck, 6);
        row->marker = (st_liveness){ts, 0, ST_NO_EXPIRY};
        st_row_set_cell(a, row, 1, ts, 0, 0, val, (uint32_t)strlen(val));
    }
    return p;
}

Test(storage_memtable, apply_get_iterate_in_token_order) {
    memtable *m = memtable_new(1, 0);
    st_arena a;
    arena_init(&a);
    for (int i = 0; i < 2000; i++) cr_assert_eq(memtable_apply(m, make_part(&a, i % 1000, 2, 10 + i, "v")), 0);
    /* Overwrite one cell with a newer value; an older write must not win. */
    cr_assert_eq(memtable_apply(m, make_part(&a, 5, 1, 5000, "newest")), 0);
    cr_assert_eq(memtable_apply(m, make_part(&a, 5, 1, 1, "ancient")), 0);
    cr_assert_eq(memtable_partitions(m), 1000);
    cr_assert_gt(memtable_bytes(m), 2000 * 50);
    st_partition *p;
    char pk[32];
    int n = snprintf(pk, sizeof pk, "key%08d", 5);
    cr_assert_eq(memtable_get(m, murmur3_token(pk, (size_t)n), (const uint8_t *)pk, (uint32_t)n, NULL, &a, &p), 0);
    cr_assert_not_null(p);
    cr_assert_eq(p->nrows, 2);
    cr_assert_eq(p->rows[0].cells[0].len, 6);
    cr_assert(memcmp(p->rows[0].cells[0].value, "newest", 6) == 0);
    cr_assert_eq(memtable_get(m, murmur3_token("nope", 4), (const uint8_t *)"nope", 4, NULL, &a, &p), 0);
    cr_assert_null(p);
    /* Partition deletion entry. */
    st_partition *d = st_partition_new(&a, 1, pk, (uint32_t)n);
    d->del = (st_deletion){7000, 1};
    cr_assert_eq(memtable_apply(m, d), 0);
    memtable_get(m, murmur3_token(pk, (size_t)n), (const uint8_t *)pk, (uint32_t)n, NULL, &a, &p);
    cr_assert_eq(p->del.ts, 7000);
    memtable_iter it;
    memtable_iter_seek(&it, m, INT64_MIN, NULL, 0, true);
    int count = 0;
    int64_t last = INT64_MIN;
    while (memtable_iter_next(&it, &a, &p) == 1) {
        cr_assert_geq(p->token, last);
        last = p->token;
        count++;
    }
    cr_assert_eq(count, 1000);
    arena_free(&a);
    memtable_unref(m);
}

/* Writes nkeys partitions (keys 0..nkeys-1, each with nrows rows) as generation 1. */
static void write_sst(int nkeys, int nrows, enum storage_compression comp, uint32_t block_size) {
    storage_table_options o;
    storage_table_options_default(&o);
    o.compression = comp;
    o.block_size = block_size;
    memtable *m = memtable_new(1, 0);
    st_arena a;
    arena_init(&a);
    for (int i = 0; i < nkeys; i++) {
        st_partition *p = make_part(&a, i, nrows, 100 + i, "value-value-value-value");
        if (i % 10 == 3) p->del = (st_deletion){50, 1000};
        cr_assert_eq(memtable_apply(m, p), 0);
    }
    sst_writer *w;
    cr_assert_eq(sst_writer_open(tmpdir, 1, 1, &o, (uint64_t)nkeys, &w), 0);
    memtable_iter it;
    memtable_iter_seek(&it, m, INT64_MIN, NULL, 0, true);
    st_partition *p;
    while (memtable_iter_next(&it, &a, &p) == 1) cr_assert_eq(sst_writer_add(w, p), 0);
    cr_assert_eq(sst_writer_finish(w, 1234, NULL, 0), 0);
    arena_free(&a);
    memtable_unref(m);
}

static void check_sst(int nkeys, int nrows) {
    sstable *s;
    cr_assert_eq(sstable_open(tmpdir, 1, &s), 0);
    const sst_stats *st = sstable_stats(s);
    cr_assert_eq(st->partitions, (uint64_t)nkeys);
    cr_assert_eq(st->rows, (uint64_t)nkeys * nrows);
    cr_assert_eq(st->commitlog_pos, 1234);
    cr_assert_eq(st->min_ts, 50);
    st_arena a;
    arena_init(&a);
    for (int i = 0; i < nkeys; i++) {
        char pk[32];
        int n = snprintf(pk, sizeof pk, "key%08d", i);
        int64_t tok = murmur3_token(pk, (size_t)n);
        st_partition *p;
        cr_assert(sstable_may_contain(s, tok, sst_hash_key((const uint8_t *)pk, (uint32_t)n)));
        cr_assert_eq(sstable_get(s, tok, (const uint8_t *)pk, (uint32_t)n, NULL, &a, &p), 0);
        cr_assert_not_null(p, "key %d", i);
        cr_assert_eq(p->nrows, (uint32_t)nrows, "key %d rows %u", i, p->nrows);
        cr_assert_eq(p->rows[0].cells[0].ts, 100 + i);
        cr_assert_eq(p->del.ts, i % 10 == 3 ? 50 : ST_NO_TIMESTAMP);
        if (nrows > 4) {
            storage_slice sl = {(const uint8_t *)"r00001", 6, true, (const uint8_t *)"r00003", 6, false, false, 0};
            cr_assert_eq(sstable_get(s, tok, (const uint8_t *)pk, (uint32_t)n, &sl, &a, &p), 0);
            cr_assert_eq(p->nrows, 2);
            cr_assert(memcmp(p->rows[0].ck, "r00001", 6) == 0);
            /* Every [lo, hi) window of a wide partition spanning many blocks. */
            for (int lo = 0; lo < nrows; lo += 3) {
                for (int hi = lo; hi <= nrows; hi += 7) {
                    char sb[16], eb[16];
                    snprintf(sb, sizeof sb, "r%05d", lo);
                    snprintf(eb, sizeof eb, "r%05d", hi);
                    storage_slice w = {(const uint8_t *)sb, 6, true, (const uint8_t *)eb, 6, false, false, 0};
                    cr_assert_eq(sstable_get(s, tok, (const uint8_t *)pk, (uint32_t)n, &w, &a, &p), 0);
                    uint32_t want = (uint32_t)(hi - lo);
                    cr_assert_eq(p ? p->nrows : 0, want, "key %d [%d,%d)", i, lo, hi);
                    for (uint32_t q = 0; q < want; q++) {
                        char ck[16];
                        snprintf(ck, sizeof ck, "r%05d", lo + (int)q);
                        cr_assert(memcmp(p->rows[q].ck, ck, 6) == 0);
                    }
                    if (i % 10 == 3 && p) cr_assert_eq(p->del.ts, 50); /* header repeated */
                }
            }
        }
        if (i % 64 == 0) arena_free(&a);
    }
    st_partition *p;
    cr_assert_eq(sstable_get(s, murmur3_token("zz", 2), (const uint8_t *)"zz", 2, NULL, &a, &p), 0);
    cr_assert_null(p);
    /* Full iteration in token order, then from the middle. */
    sst_iter *it;
    cr_assert_eq(sst_iter_new(s, INT64_MIN, NULL, 0, true, &it), 0);
    int count = 0;
    int64_t last = INT64_MIN, mid_tok = 0;
    const uint8_t *mid_pk = NULL;
    uint32_t mid_len = 0;
    while (sst_iter_next(it, &a, &p) == 1) {
        cr_assert_geq(p->token, last);
        cr_assert_eq(p->nrows, (uint32_t)nrows);
        last = p->token;
        if (++count == nkeys / 2) {
            mid_tok = p->token;
            mid_pk = p->pk;
            mid_len = p->pklen;
        }
    }
    sst_iter_free(it);
    cr_assert_eq(count, nkeys);
    cr_assert_eq(sst_iter_new(s, mid_tok, mid_pk, mid_len, false, &it), 0);
    count = 0;
    while (sst_iter_next(it, &a, &p) == 1) {
        cr_assert_gt(p->token, mid_tok);
        count++;
    }
    cr_assert_eq(count, nkeys - nkeys / 2);
    sst_iter_free(it);
    arena_free(&a);
    sstable_unref(s);
}

Test(storage_sstable, roundtrip_lz4_small_blocks_wide_partitions, .init = mkdir_tmp, .fini = rm_tmp) {
    write_sst(300, 40, STORAGE_COMPRESS_LZ4, 512);
    check_sst(300, 40);
}

Test(storage_sstable, roundtrip_deflate, .init = mkdir_tmp, .fini = rm_tmp) {
    write_sst(2000, 1, STORAGE_COMPRESS_DEFLATE, 4096);
    check_sst(2000, 1);
}

Test(storage_sstable, roundtrip_uncompressed, .init = mkdir_tmp, .fini = rm_tmp) {
    write_sst(1000, 3, STORAGE_COMPRESS_NONE, 16384);
    check_sst(1000, 3);
    struct stat sb;
    char path[512];
    snprintf(path, sizeof path, "%s/1.sst.tmp", tmpdir);
    cr_assert_neq(stat(path, &sb), 0, "temporary file left behind");
}

/* Reads every key; returns how many reads failed with a checksum/corruption error, and
 * asserts that no read ever returned wrong data. */
static int read_all_check(sstable *s, int nkeys, int nrows) {
    st_arena a;
    arena_init(&a);
    int errors = 0;
    for (int i = 0; i < nkeys; i++) {
        char pk[32];
        int n = snprintf(pk, sizeof pk, "key%08d", i);
        st_partition *p;
        int rc = sstable_get(s, murmur3_token(pk, (size_t)n), (const uint8_t *)pk, (uint32_t)n, NULL, &a, &p);
        if (rc) {
            cr_assert(rc == ILION_ECHECKSUM || rc == ILION_ECORRUPT, "rc %d", rc);
            errors++;
            continue;
        }
        cr_assert_not_null(p);
        cr_assert_eq(p->nrows, (uint32_t)nrows);
        for (int r = 0; r < nrows; r++) {
            cr_assert_eq(p->rows[r].cells[0].ts, 100 + i);
            cr_assert_eq(p->rows[r].cells[0].len, 23);
            cr_assert(memcmp(p->rows[r].cells[0].value, "value-value-value-value", 23) == 0);
        }
        arena_free(&a);
    }
    arena_free(&a);
    return errors;
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

static uint64_t footer_field(int at) {
    char path[512];
    snprintf(path, sizeof path, "%s/1.sst", tmpdir);
    int fd = open(path, O_RDONLY);
    struct stat sb;
    fstat(fd, &sb);
    uint8_t f[80];
    cr_assert_eq(pread(fd, f, 80, sb.st_size - 80), 80);
    close(fd);
    return be64_get(f + at);
}

Test(storage_sstable, corrupt_data_block_detected, .init = mkdir_tmp, .fini = rm_tmp) {
    write_sst(500, 1, STORAGE_COMPRESS_LZ4, 1024);
    uint64_t data_end = footer_field(16);
    rng_state = 42;
    for (int round = 0; round < 5; round++) {
        uint64_t off = rnd() % data_end;
        flip_byte(off);
        sstable *s;
        cr_assert_eq(sstable_open(tmpdir, 1, &s), 0);
        int errors = read_all_check(s, 500, 1);
        cr_assert_gt(errors, 0, "flip at %llu went unnoticed", (unsigned long long)off);
        /* Iteration also stops with an error rather than wrong data. */
        sst_iter *it;
        st_arena a;
        arena_init(&a);
        cr_assert_eq(sst_iter_new(s, INT64_MIN, NULL, 0, true, &it), 0);
        st_partition *p;
        int rc;
        while ((rc = sst_iter_next(it, &a, &p)) == 1) {
            cr_assert_eq(p->rows[0].cells[0].len, 23);
        }
        cr_assert(rc == ILION_ECHECKSUM || rc == ILION_ECORRUPT);
        sst_iter_free(it);
        arena_free(&a);
        sstable_unref(s);
        flip_byte(off); /* restore */
    }
}

Test(storage_sstable, corrupt_index_filter_stats_footer_refused, .init = mkdir_tmp, .fini = rm_tmp) {
    write_sst(500, 1, STORAGE_COMPRESS_LZ4, 1024);
    uint64_t sections[] = {footer_field(16) + 20, footer_field(36) + 100, footer_field(56) + 10};
    for (int i = 0; i < 3; i++) {
        flip_byte(sections[i]);
        sstable *s;
        int rc = sstable_open(tmpdir, 1, &s);
        cr_assert_eq(rc, ILION_ECHECKSUM, "section %d rc %d", i, rc);
        flip_byte(sections[i]);
    }
    char path[512];
    snprintf(path, sizeof path, "%s/1.sst", tmpdir);
    struct stat sb;
    stat(path, &sb);
    flip_byte((uint64_t)sb.st_size - 30);
    sstable *s;
    cr_assert_eq(sstable_open(tmpdir, 1, &s), ILION_ECHECKSUM);
    flip_byte((uint64_t)sb.st_size - 30);
    cr_assert_eq(truncate(path, sb.st_size - 1), 0);
    cr_assert_lt(sstable_open(tmpdir, 1, &s), 0);
}

#include "ilion/util/crc32c.h"

Test(storage_crc32c, known_vectors) {
    cr_assert_eq(crc32c(0, "123456789", 9), 0xE3069283u);
    uint8_t zeros[32] = {0};
    cr_assert_eq(crc32c(0, zeros, 32), 0x8A9136AAu);
    /* Incremental equals one shot, across the 8-byte fast path. */
    const char *s = "The quick brown fox jumps over the lazy dog";
    uint32_t one = crc32c(0, s, strlen(s));
    cr_assert_eq(crc32c(crc32c(0, s, 13), s + 13, strlen(s) - 13), one);
    cr_assert_eq(one, 0x22620404u);
}

Test(storage_sstable, any_flipped_byte_is_an_error_never_wrong_data, .init = mkdir_tmp, .fini = rm_tmp) {
    write_sst(200, 2, STORAGE_COMPRESS_LZ4, 700);
    char path[512];
    snprintf(path, sizeof path, "%s/1.sst", tmpdir);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    rng_state = 7;
    int open_errors = 0, read_errors = 0;
    for (int round = 0; round < 150; round++) {
        uint64_t off = rnd() % (uint64_t)sb.st_size;
        flip_byte(off);
        sstable *s;
        int rc = sstable_open(tmpdir, 1, &s);
        if (rc) {
            cr_assert(rc == ILION_ECHECKSUM || rc == ILION_ECORRUPT || rc == ILION_EFORMAT, "rc %d", rc);
            open_errors++;
        } else {
            int n = read_all_check(s, 200, 2);
            cr_assert_gt(n, 0, "flip at %llu unnoticed", (unsigned long long)off);
            read_errors++;
            sstable_unref(s);
        }
        flip_byte(off);
    }
    cr_assert_gt(open_errors, 0);
    cr_assert_gt(read_errors, 0);
}

/* Garbage inside a block whose checksum is made valid again: the block parser itself must
 * stay inside its bounds and answer with an error (or data) — never crash. */
Test(storage_sstable, garbage_with_valid_crc_never_crashes, .init = mkdir_tmp, .fini = rm_tmp) {
    write_sst(100, 3, STORAGE_COMPRESS_NONE, 600);
    char path[512];
    snprintf(path, sizeof path, "%s/1.sst", tmpdir);
    uint64_t data_end = footer_field(16);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    uint8_t *orig = malloc(data_end);
    cr_assert_eq(pread(fd, orig, data_end, 0), (ssize_t)data_end);
    rng_state = 99;
    int corrupt = 0;
    for (int round = 0; round < 300; round++) {
        /* Walk to a random block and damage 1-4 bytes of its payload, fixing the CRC. */
        uint64_t off = 0, target = rnd() % data_end, boff = 0;
        uint32_t stored = 0;
        while (off < data_end) {
            stored = be32_get(orig + off + 5);
            if (off + 9 + stored + 4 > target) break;
            off += 9 + stored + 4;
        }
        boff = off;
        uint8_t *blk = malloc(9 + stored + 4);
        memcpy(blk, orig + boff, 9 + stored + 4);
        int nflip = 1 + (int)(rnd() % 4);
        for (int k = 0; k < nflip; k++) blk[9 + rnd() % stored] ^= (uint8_t)(1 + rnd() % 255);
        be32_put(blk + 9 + stored, crc32c(0, blk, 9 + stored));
        cr_assert_eq(pwrite(fd, blk, 9 + stored + 4, (off_t)boff), (ssize_t)(9 + stored + 4));
        sstable *s;
        cr_assert_eq(sstable_open(tmpdir, 1, &s), 0);
        st_arena a;
        arena_init(&a);
        for (int i = 0; i < 100; i++) {
            char pk[32];
            int n = snprintf(pk, sizeof pk, "key%08d", i);
            st_partition *p;
            int rc = sstable_get(s, murmur3_token(pk, (size_t)n), (const uint8_t *)pk, (uint32_t)n, NULL, &a, &p);
            cr_assert(rc == 0 || rc == ILION_ECORRUPT, "rc %d", rc);
            corrupt += rc != 0;
        }
        sst_iter *it;
        cr_assert_eq(sst_iter_new(s, INT64_MIN, NULL, 0, true, &it), 0);
        st_partition *p;
        int rc;
        while ((rc = sst_iter_next(it, &a, &p)) == 1) {
        }
        cr_assert(rc == 0 || rc == ILION_ECORRUPT);
        sst_iter_free(it);
        arena_free(&a);
        sstable_unref(s);
        cr_assert_eq(pwrite(fd, orig + boff, 9 + stored + 4, (off_t)boff), (ssize_t)(9 + stored + 4));
        free(blk);
    }
    cr_assert_gt(corrupt, 0);
    close(fd);
    free(orig);
}

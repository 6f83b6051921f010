/* Memtable with a token directory (many bucket skiplists) answers exactly like the memtable
 * with one list: iteration order, seeks across empty buckets, point reads, overwrites. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "ilion/storage/memtable.h"
#include "ilion/storage/partition.h"
#include "ilion/util/murmur3.h"

static uint64_t seed;
static uint64_t rnd(void) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return seed >> 17;
}

static st_partition *random_part(st_arena *a, int nkeys, int64_t ts) {
    char pk[32];
    int n = snprintf(pk, sizeof pk, "pk-%llu", (unsigned long long)(rnd() % (uint64_t)nkeys));
    st_partition *p = st_partition_new(a, 1, pk, (uint32_t)n);
    cr_assert_not_null(p);
    if (rnd() % 13 == 0) p->del = (st_deletion){ts - 5, 1000};
    int nrows = (int)(rnd() % 3);
    if (nrows == 0 && p->del.ts == ST_NO_TIMESTAMP) nrows = 1;
    for (int r = 0; r < nrows; r++) {
        char ck[16];
        int cn = snprintf(ck, sizeof ck, "c%03llu", (unsigned long long)(rnd() % 20));
        st_row *row = st_partition_row(a, p, ck, (uint32_t)cn);
        cr_assert_not_null(row);
        char v[24];
        int vn = snprintf(v, sizeof v, "v%lld", (long long)ts);
        cr_assert_eq(st_row_set_cell(a, row, (uint16_t)(rnd() % 3), ts, 0, 0, v, (uint32_t)vn), 0);
    }
    return p;
}

static void same_partition(const st_partition *x, const st_partition *y) {
    cr_assert_eq(x == NULL, y == NULL);
    if (!x) return;
    cr_assert_eq(x->token, y->token);
    cr_assert_eq(x->pklen, y->pklen);
    cr_assert(memcmp(x->pk, y->pk, x->pklen) == 0);
    cr_assert_eq(x->del.ts, y->del.ts);
    cr_assert_eq(x->nrows, y->nrows);
    for (uint32_t r = 0; r < x->nrows; r++) {
        cr_assert_eq(x->rows[r].cklen, y->rows[r].cklen);
        cr_assert(memcmp(x->rows[r].ck, y->rows[r].ck, x->rows[r].cklen) == 0);
        cr_assert_eq(x->rows[r].ncells, y->rows[r].ncells);
        for (uint32_t j = 0; j < x->rows[r].ncells; j++) {
            cr_assert_eq(x->rows[r].cells[j].ts, y->rows[r].cells[j].ts);
            cr_assert_eq(x->rows[r].cells[j].len, y->rows[r].cells[j].len);
        }
    }
}

static void check_same(memtable *one, memtable *dir, int nkeys, st_arena *a) {
    /* Full iteration. */
    memtable_iter i1, i2;
    memtable_iter_seek(&i1, one, INT64_MIN, NULL, 0, true);
    memtable_iter_seek(&i2, dir, INT64_MIN, NULL, 0, true);
    st_partition *x, *y;
    int count = 0;
    int64_t last = INT64_MIN;
    for (;;) {
        int r1 = memtable_iter_next(&i1, a, &x), r2 = memtable_iter_next(&i2, a, &y);
        cr_assert_eq(r1, r2);
        if (r1 != 1) break;
        same_partition(x, y);
        cr_assert_geq(y->token, last);
        last = y->token;
        count++;
    }
    cr_assert_eq((uint64_t)count, memtable_partitions(dir));
    /* Point reads, present and absent. */
    for (int k = 0; k < nkeys + 50; k++) {
        char pk[32];
        int n = snprintf(pk, sizeof pk, "pk-%d", k);
        int64_t t = murmur3_token(pk, (size_t)n);
        cr_assert_eq(memtable_get(one, t, (const uint8_t *)pk, (uint32_t)n, NULL, a, &x), 0);
        cr_assert_eq(memtable_get(dir, t, (const uint8_t *)pk, (uint32_t)n, NULL, a, &y), 0);
        same_partition(x, y);
    }
    /* Seeks from random positions (keys and bare tokens, inclusive or not): same next 3. */
    for (int q = 0; q < 400; q++) {
        char pk[32];
        int n = snprintf(pk, sizeof pk, "pk-%llu", (unsigned long long)(rnd() % (uint64_t)(nkeys + 50)));
        int64_t t = murmur3_token(pk, (size_t)n);
        bool incl = rnd() % 2, bare = rnd() % 3 == 0;
        if (q % 50 == 0) t = q % 100 ? INT64_MAX : INT64_MIN + 1;
        memtable_iter_seek(&i1, one, t, bare ? NULL : (const uint8_t *)pk, (uint32_t)n, incl);
        memtable_iter_seek(&i2, dir, t, bare ? NULL : (const uint8_t *)pk, (uint32_t)n, incl);
        for (int s = 0; s < 3; s++) {
            int r1 = memtable_iter_next(&i1, a, &x), r2 = memtable_iter_next(&i2, a, &y);
            cr_assert_eq(r1, r2, "seek %d step %d", q, s);
            if (r1 != 1) break;
            same_partition(x, y);
        }
        arena_reset(a);
    }
}

Test(storage_memtable, directory_matches_single_list) {
    seed = 12345;
    memtable *one = memtable_new(1, 0);
    /* 256 MiB expected: the largest directory (4096 buckets), mostly empty here. */
    memtable *dir = memtable_new_sized(1, 0, 256u << 20);
    cr_assert_not_null(one);
    cr_assert_not_null(dir);
    st_arena a;
    arena_init(&a);
    const int nkeys = 3000;
    for (int i = 0; i < 12000; i++) {
        uint64_t save = seed;
        st_partition *p = random_part(&a, nkeys, 1000 + i);
        cr_assert_eq(memtable_apply(one, p), 0);
        seed = save;
        p = random_part(&a, nkeys, 1000 + i);
        cr_assert_eq(memtable_apply(dir, p), 0);
        arena_reset(&a);
        if (i == 200 || i == 11999) check_same(one, dir, nkeys, &a); /* sparse, then dense */
    }
    cr_assert_eq(memtable_entries(one), memtable_entries(dir));
    cr_assert_eq(memtable_partitions(one), memtable_partitions(dir));
    arena_free(&a);
    memtable_unref(one);
    memtable_unref(dir);
}

Test(storage_memtable, empty_directory_iterates_nothing) {
    memtable *dir = memtable_new_sized(1, 0, 64u << 20);
    st_arena a;
    arena_init(&a);
    memtable_iter it;
    st_partition *p;
    memtable_iter_seek(&it, dir, INT64_MIN, NULL, 0, true);
    cr_assert_eq(memtable_iter_next(&it, &a, &p), 0);
    memtable_iter_seek(&it, dir, 0, (const uint8_t *)"x", 1, true);
    cr_assert_eq(memtable_iter_next(&it, &a, &p), 0);
    cr_assert_eq(memtable_get(dir, 5, (const uint8_t *)"x", 1, NULL, &a, &p), 0);
    cr_assert_null(p);
    arena_free(&a);
    memtable_unref(dir);
}

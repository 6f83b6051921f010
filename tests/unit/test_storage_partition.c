#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/storage/partition.h"
#include "ilion/util/err.h"
#include "ilion/util/murmur3.h"

static st_partition *mk(st_arena *a, const char *pk) {
    return st_partition_new(a, 7, pk, (uint32_t)strlen(pk));
}

Test(storage_partition, build_orders_rows_and_cells) {
    st_arena a;
    arena_init(&a);
    st_partition *p = mk(&a, "k");
    cr_assert_eq(p->token, murmur3_token("k", 1));
    const char *cks[] = {"m", "a", "z", "b", "ab", "a"};
    for (int i = 0; i < 6; i++) {
        st_row *r = st_partition_row(&a, p, cks[i], (uint32_t)strlen(cks[i]));
        cr_assert_not_null(r);
        cr_assert_eq(st_row_set_cell(&a, r, (uint16_t)(10 - i), 100 + i, 0, 1000, "v", 1), 0);
        cr_assert_eq(st_row_set_cell(&a, r, 3, 100 + i, 0, 1000, "w", 1), 0);
    }
    cr_assert_eq(p->nrows, 5);
    const char *want[] = {"a", "ab", "b", "m", "z"};
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(p->rows[i].cklen, strlen(want[i]));
        cr_assert(memcmp(p->rows[i].ck, want[i], p->rows[i].cklen) == 0);
        for (uint32_t j = 1; j < p->rows[i].ncells; j++)
            cr_assert_lt(p->rows[i].cells[j - 1].col, p->rows[i].cells[j].col);
    }
    /* "a" got cols 10, 3 and (again) 5 and 3: 3 cells. */
    cr_assert_eq(p->rows[0].ncells, 3);
    arena_free(&a);
}

Test(storage_partition, reconcile_rules) {
    st_cell live1 = {.col = 1, .ts = 10, .expiry = ST_NO_EXPIRY, .value = (const uint8_t *)"a", .len = 1};
    st_cell live2 = {.col = 1, .ts = 10, .expiry = ST_NO_EXPIRY, .value = (const uint8_t *)"b", .len = 1};
    st_cell tomb = {.col = 1, .ts = 10, .flags = ST_CELL_TOMBSTONE, .expiry = 5};
    st_cell newer = {.col = 1, .ts = 11, .expiry = ST_NO_EXPIRY, .value = (const uint8_t *)"a", .len = 1};
    cr_assert_gt(st_cell_compare(&tomb, &live2), 0);   /* tie: tombstone wins */
    cr_assert_lt(st_cell_compare(&live1, &live2), 0);  /* then greater value */
    cr_assert_gt(st_cell_compare(&newer, &tomb), 0);   /* higher ts wins */
    cr_assert_eq(st_cell_compare(&live1, &live1), 0);
    st_cell ttl = live1;
    ttl.expiry = 100;
    cr_assert(st_cell_live(&ttl, 99));
    cr_assert_not(st_cell_live(&ttl, 100));
    cr_assert_not(st_cell_live(&tomb, 0));
}

Test(storage_partition, merge_and_liveness) {
    st_arena a;
    arena_init(&a);
    st_partition *x = mk(&a, "k"), *y = mk(&a, "k");
    st_row *r = st_partition_row(&a, x, "a", 1);
    st_row_set_cell(&a, r, 1, 10, 0, 0, "old", 3);
    st_row_set_cell(&a, r, 2, 10, 0, 0, "keep", 4);
    r = st_partition_row(&a, y, "a", 1);
    st_row_set_cell(&a, r, 1, 20, 0, 0, "new", 3);
    r = st_partition_row(&a, y, "b", 1);
    r->del = (st_deletion){30, 5};
    st_row_set_cell(&a, r, 1, 25, 0, 0, "dead", 4);
    y->del = (st_deletion){5, 1};
    st_partition *m = st_partition_merge(&a, x, y);
    cr_assert_not_null(m);
    cr_assert_eq(m->nrows, 2);
    cr_assert_eq(m->del.ts, 5);
    cr_assert_eq(m->rows[0].ncells, 2);
    cr_assert(memcmp(m->rows[0].cells[0].value, "new", 3) == 0);
    cr_assert(memcmp(m->rows[0].cells[1].value, "keep", 4) == 0);
    cr_assert(st_row_live(&m->rows[0], &m->del, 0));
    cr_assert_not(st_row_live(&m->rows[1], &m->del, 0));
    /* A partition deletion newer than everything kills row a. */
    st_deletion big = {100, 0};
    cr_assert_not(st_row_live(&m->rows[0], &big, 0));
    /* Merge is commutative. */
    st_partition *m2 = st_partition_merge(&a, y, x);
    buf b1, b2;
    buf_init(&b1);
    buf_init(&b2);
    st_partition_encode(m, &b1);
    st_partition_encode(m2, &b2);
    cr_assert_eq(b1.len, b2.len);
    cr_assert(memcmp(b1.data, b2.data, b1.len) == 0);
    buf_free(&b1);
    buf_free(&b2);
    arena_free(&a);
}

Test(storage_partition, encode_roundtrip) {
    st_arena a;
    arena_init(&a);
    st_partition *p = mk(&a, "pkey");
    p->del = (st_deletion){77, 88};
    for (int i = 0; i < 50; i++) {
        char ck[8];
        snprintf(ck, sizeof ck, "c%03d", i);
        st_row *r = st_partition_row(&a, p, ck, 4);
        if (i % 3 == 0) r->marker = (st_liveness){1000 + i, i % 2 ? 60 : 0, i % 2 ? 5000 : ST_NO_EXPIRY};
        if (i % 7 == 0) r->del = (st_deletion){500, 9};
        st_row_set_cell(&a, r, 1, 1000 + i, i % 5, 100, "value", 5);
        st_row_set_cell(&a, r, 300, 1000 + i, 0, 100, i % 4 ? "x" : NULL, 1);
        st_row_set_cell(&a, r, 2, 1000 + i, 0, 100, "", 0);
    }
    buf b;
    buf_init(&b);
    st_partition_encode(p, &b);
    st_partition *q;
    cr_assert_eq(st_partition_decode(&a, b.data, b.len, &q), 0);
    cr_assert_eq(q->token, p->token);
    cr_assert_eq(q->table_id, 7);
    cr_assert_eq(q->del.ts, 77);
    cr_assert_eq(q->nrows, 50);
    buf b2;
    buf_init(&b2);
    st_partition_encode(q, &b2);
    cr_assert_eq(b.len, b2.len);
    cr_assert(memcmp(b.data, b2.data, b.len) == 0);
    cr_assert_gt(st_partition_size(q), 50 * 5);
    /* Every truncation fails cleanly. */
    for (size_t n = 0; n < b.len; n++) {
        st_arena t;
        arena_init(&t);
        int rc = st_partition_decode(&t, b.data, n, &q);
        cr_assert(rc == ILION_ETRUNCATED || rc == ILION_ECORRUPT, "len %zu rc %d", n, rc);
        arena_free(&t);
    }
    buf_free(&b);
    buf_free(&b2);
    arena_free(&a);
}

Test(storage_partition, decode_random_bytes_never_crashes) {
    srand(12345);
    uint8_t data[256];
    st_arena a;
    arena_init(&a);
    st_partition *p = mk(&a, "pk");
    st_row *r = st_partition_row(&a, p, "ck", 2);
    st_row_set_cell(&a, r, 1, 5, 0, 0, "val", 3);
    buf b;
    buf_init(&b);
    st_partition_encode(p, &b);
    for (int it = 0; it < 20000; it++) {
        size_t n;
        if (it % 2) {
            n = (size_t)(rand() % (int)sizeof data);
            for (size_t i = 0; i < n; i++) data[i] = (uint8_t)rand();
            if (n) data[0] = ST_PARTITION_FORMAT;
        } else {
            n = b.len;
            memcpy(data, b.data, n);
            data[rand() % (int)n] ^= (uint8_t)(1 + rand() % 255);
        }
        st_arena t;
        arena_init(&t);
        st_partition *q;
        (void)st_partition_decode(&t, data, n, &q);
        arena_free(&t);
    }
    buf_free(&b);
    arena_free(&a);
}

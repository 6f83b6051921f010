/* Single-node coordinator: consistency level checks, write acknowledgement after sync in batch
 * mode, reads and scans of the local engine, shutdown with writes pending. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "ilion/coord/coord.h"
#include "ilion/util/err.h"

static char dir[64];
static uv_loop_t loop;
static storage_engine *eng;
static coord *co;

static void open_mode(enum storage_sync_mode mode) {
    strcpy(dir, "/tmp/ilion_coord_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char d[96], c[96];
    snprintf(d, sizeof d, "%s/data", dir);
    snprintf(c, sizeof c, "%s/cl", dir);
    storage_options so;
    storage_options_default(&so);
    so.data_dir = d;
    so.commitlog_dir = c;
    so.sync_mode = mode;
    so.group_window_ms = 2;
    cr_assert_eq(storage_open(&so, &eng), 0);
    uv_loop_init(&loop);
    cr_assert_eq(coord_create(&loop, eng, NULL, &co), 0);
    storage_table_options to;
    storage_table_options_default(&to);
    cr_assert_eq(storage_table_create(eng, 500, &to), 0);
}

static void setup_periodic(void) { open_mode(STORAGE_SYNC_PERIODIC); }
static void setup_batch(void) { open_mode(STORAGE_SYNC_BATCH); }

static void teardown(void) {
    if (co) coord_destroy(co);
    co = NULL;
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    storage_close(eng);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

static schema_replication simple(uint32_t rf) {
    schema_replication r;
    memset(&r, 0, sizeof r);
    r.cls = SCHEMA_REPL_SIMPLE;
    r.rf = rf;
    return r;
}

Test(coord, consistency_levels, .init = setup_periodic, .fini = teardown) {
    coord_error e;
    schema_replication r1 = simple(1), r3 = simple(3);
    cr_assert_eq(coord_check_cl(co, &r1, COORD_CL_ONE, true, &e), 0);
    cr_assert_eq(coord_check_cl(co, &r1, COORD_CL_QUORUM, true, &e), 0);
    cr_assert_eq(coord_check_cl(co, &r1, COORD_CL_ALL, false, &e), 0);
    cr_assert_eq(coord_check_cl(co, &r1, COORD_CL_LOCAL_ONE, false, &e), 0);
    cr_assert_eq(coord_check_cl(co, &r3, COORD_CL_ONE, true, &e), 0);
    cr_assert_eq(coord_check_cl(co, &r3, COORD_CL_ANY, true, &e), 0);
    cr_assert_eq(coord_check_cl(co, &r3, COORD_CL_QUORUM, true, &e), ILION_EUNAVAILABLE);
    cr_assert_eq(e.code, 0x1000);
    cr_assert_eq(e.required, 2);
    cr_assert_eq(e.alive, 1);
    cr_assert_eq(coord_check_cl(co, &r3, COORD_CL_ALL, false, &e), ILION_EUNAVAILABLE);
    cr_assert_eq(e.required, 3);
    cr_assert_eq(coord_check_cl(co, &r3, COORD_CL_TWO, true, &e), ILION_EUNAVAILABLE);
    cr_assert_eq(coord_check_cl(co, &r1, COORD_CL_ANY, false, &e), ILION_EINVALID);
    cr_assert_eq(e.code, 0x2200);
    cr_assert_eq(coord_check_cl(co, &r1, COORD_CL_SERIAL, true, &e), ILION_EINVALID);
    /* NetworkTopologyStrategy: only this node's DC has a replica here */
    coord_set_local_dc(co, "dc1");
    schema_replication n;
    memset(&n, 0, sizeof n);
    n.cls = SCHEMA_REPL_NTS;
    n.ndcs = 2;
    strcpy(n.dcs[0].name, "dc1");
    n.dcs[0].rf = 1;
    strcpy(n.dcs[1].name, "dc2");
    n.dcs[1].rf = 2;
    cr_assert_eq(coord_check_cl(co, &n, COORD_CL_LOCAL_QUORUM, true, &e), 0);
    cr_assert_eq(coord_check_cl(co, &n, COORD_CL_QUORUM, true, &e), ILION_EUNAVAILABLE);
    cr_assert_eq(e.required, 2);
    cr_assert_eq(coord_check_cl(co, &n, COORD_CL_EACH_QUORUM, true, &e), ILION_EUNAVAILABLE);
    cr_assert_eq(e.required, 2);
    cr_assert_eq(e.alive, 0);
    strcpy(n.dcs[0].name, "elsewhere");
    cr_assert_eq(coord_check_cl(co, &n, COORD_CL_ONE, true, &e), ILION_EUNAVAILABLE);
    cr_assert_eq(e.alive, 0);
}

typedef struct wres {
    int calls;
    bool err;
    uint32_t code;
} wres;

static void on_write(void *arg, const coord_error *e) {
    wres *w = arg;
    w->calls++;
    w->err = e != NULL;
    w->code = e ? e->code : 0;
}

static st_partition *mutation(st_arena *a, int i) {
    char k[16];
    snprintf(k, sizeof k, "key%d", i);
    st_partition *p = st_partition_new(a, 500, k, (uint32_t)strlen(k));
    st_row *r = st_partition_row(a, p, "", 0);
    r->marker.ts = 1000 + i;
    r->marker.ttl = 0;
    r->marker.expiry = ST_NO_EXPIRY;
    st_row_set_cell(a, r, 1, 1000 + i, 0, 0, "v", 1);
    return p;
}

Test(coord, batch_mode_acks_after_sync, .init = setup_batch, .fini = teardown, .timeout = 30) {
    st_arena a;
    arena_init(&a);
    schema_replication r1 = simple(1);
    wres w[10];
    memset(w, 0, sizeof w);
    for (int i = 0; i < 10; i++) {
        st_partition *m = mutation(&a, i);
        cr_assert_eq(coord_write(co, &r1, &m, 1, COORD_CL_ONE, COORD_WT_SIMPLE, on_write, &w[i]), 0);
    }
    for (int spin = 0; spin < 10000; spin++) {
        bool all = true;
        for (int i = 0; i < 10; i++) all &= w[i].calls == 1;
        if (all) break;
        uv_run(&loop, UV_RUN_ONCE);
    }
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(w[i].calls, 1);
        cr_assert(!w[i].err);
    }
    /* what was acknowledged is readable */
    wres u = {0};
    schema_replication r3 = simple(3);
    st_partition *m = mutation(&a, 99);
    cr_assert_eq(coord_write(co, &r3, &m, 1, COORD_CL_QUORUM, COORD_WT_SIMPLE, on_write, &u), 0);
    cr_assert_eq(u.calls, 1);
    cr_assert_eq(u.code, 0x1000);
    arena_free(&a);
}

Test(coord, destroy_fails_or_completes_pending_once, .init = setup_batch, .fini = teardown, .timeout = 30) {
    st_arena a;
    arena_init(&a);
    schema_replication r1 = simple(1);
    wres w = {0};
    st_partition *m = mutation(&a, 1);
    cr_assert_eq(coord_write(co, &r1, &m, 1, COORD_CL_ONE, COORD_WT_SIMPLE, on_write, &w), 0);
    coord_destroy(co);
    co = NULL;
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(w.calls, 1);
    arena_free(&a);
}

typedef struct rres {
    int calls;
    uint32_t rows;
    uint32_t parts;
} rres;

static void on_read(void *arg, const coord_error *e, const st_partition *p) {
    rres *r = arg;
    r->calls++;
    cr_assert_null(e);
    r->rows = p ? p->nrows : 0;
}

static void on_read_err_check(void *arg, const coord_error *e, const st_partition *p) {
    rres *r = arg;
    r->calls++;
    cr_assert_not_null(e);
    cr_assert_eq(e->code, 0x2200);
}

static int on_part(void *arg, const st_partition *p) {
    rres *r = arg;
    r->parts++;
    return 0;
}

static void on_scan_done(void *arg, const coord_error *e) {
    rres *r = arg;
    r->calls++;
    cr_assert_null(e);
}

Test(coord, read_and_scan, .init = setup_periodic, .fini = teardown) {
    st_arena a;
    arena_init(&a);
    schema_replication r1 = simple(1);
    st_partition *ms[5];
    for (int i = 0; i < 5; i++) ms[i] = mutation(&a, i);
    wres w = {0};
    cr_assert_eq(coord_write(co, &r1, ms, 5, COORD_CL_ONE, COORD_WT_BATCH, on_write, &w), 0);
    cr_assert_eq(w.calls, 1, "periodic mode acknowledges at once");
    rres rr = {0};
    cr_assert_eq(coord_read(co, &r1, 500, "key3", 4, NULL, COORD_CL_ONE, on_read, &rr), 0);
    cr_assert_eq(rr.calls, 1);
    cr_assert_eq(rr.rows, 1);
    rres sc = {0};
    cr_assert_eq(coord_scan(co, &r1, 500, INT64_MIN, NULL, 0, 0, COORD_CL_ONE, on_part, on_scan_done, &sc), 0);
    cr_assert_eq(sc.calls, 1);
    cr_assert_eq(sc.parts, 5);
    rres bad = {0};
    cr_assert_eq(coord_read(co, &r1, 500, "key3", 4, NULL, COORD_CL_ANY, on_read_err_check, &bad), 0);
    cr_assert_eq(bad.calls, 1);
    arena_free(&a);
}

/* End-to-end executor tests: a real engine in a temporary directory, the single-node
 * coordinator, the parser, and RESULT/ERROR bodies decoded here. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "ilion/coord/coord.h"
#include "ilion/cql/exec.h"
#include "ilion/storage/engine.h"
#include "ilion/util/buf.h"
#include "ilion/util/murmur3.h"

typedef struct env {
    char dir[64];
    uv_loop_t loop;
    storage_engine *eng;
    coord *co;
    cql_executor *x;
    cql_session *s;
    enum storage_sync_mode mode;
} env;

static env E;

static void env_open(env *e) {
    storage_options so;
    storage_options_default(&so);
    char data[96], cl[96];
    snprintf(data, sizeof data, "%s/data", e->dir);
    snprintf(cl, sizeof cl, "%s/commitlog", e->dir);
    so.data_dir = data;
    so.commitlog_dir = cl;
    so.sync_mode = e->mode;
    so.group_window_ms = 2;
    cr_assert_eq(storage_open(&so, &e->eng), 0);
    cr_assert_eq(coord_create(&e->loop, e->eng, NULL, &e->co), 0);
    cql_executor_options xo;
    memset(&xo, 0, sizeof xo);
    static const uint8_t hid[16] = {1, 2, 3, 4, 5, 6, 0x47, 8, 0x89, 10, 11, 12, 13, 14, 15, 16};
    static const int64_t toks[2] = {-100, 12345};
    xo.loop = &e->loop;
    xo.coord = e->co;
    xo.engine = e->eng;
    xo.cluster_name = "Test Cluster";
    xo.listen_address = "127.0.0.1";
    xo.rpc_address = "127.0.0.1";
    xo.native_port = 9042;
    xo.data_center = "dc1";
    xo.rack = "rack1";
    xo.host_id = hid;
    xo.tokens = toks;
    xo.ntokens = 2;
    cr_assert_eq(cql_executor_create(&xo, &e->x), 0);
    e->s = cql_session_new(e->x);
}

static void env_close(env *e) {
    cql_session_free(e->s);
    cql_executor_destroy(e->x);
    coord_destroy(e->co);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    storage_close(e->eng);
}

static void setup_mode(enum storage_sync_mode mode) {
    memset(&E, 0, sizeof E);
    strcpy(E.dir, "/tmp/ilion_exec_XXXXXX");
    cr_assert_not_null(mkdtemp(E.dir));
    uv_loop_init(&E.loop);
    E.mode = mode;
    env_open(&E);
}
static void setup(void) { setup_mode(STORAGE_SYNC_PERIODIC); }
static void setup_batch(void) { setup_mode(STORAGE_SYNC_BATCH); }

static void teardown(void) {
    env_close(&E);
    uv_loop_close(&E.loop);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", E.dir);
    cr_assert_eq(system(cmd), 0);
}

/* --- responses ---------------------------------------------------------------------------- */

typedef struct resp {
    bool done;
    uint8_t opcode;
    uint8_t *body;
    size_t len;
    uint8_t *event;
    size_t event_len;
} resp;

static void on_done(void *arg, cql_response *r) {
    resp *o = arg;
    o->done = true;
    o->opcode = r->opcode;
    o->body = r->body;
    o->len = r->len;
    o->event = r->event;
    o->event_len = r->event_len;
    r->body = r->event = NULL;
}

static void wait_done(resp *o) {
    for (int i = 0; i < 100000 && !o->done; i++) uv_run(&E.loop, UV_RUN_ONCE);
    cr_assert(o->done, "no response");
}

static void resp_free(resp *o) {
    free(o->body);
    free(o->event);
}

/* Decoded Rows result. */
typedef struct rows {
    uint32_t kind;
    uint32_t flags, ncols, nrows;
    char names[32][64];
    uint16_t types[32];
    uint8_t paging[512];
    int32_t paging_len;
    const uint8_t *cell[256][32];
    int32_t clen[256][32];
    resp r;
    uint32_t err;
    char msg[512];
} rows;

static uint32_t u32(rd *r) { uint32_t v = 0; cr_assert_eq(rd_u32(r, &v), 0); return v; }
static uint16_t u16(rd *r) { uint16_t v = 0; cr_assert_eq(rd_u16(r, &v), 0); return v; }
static void str(rd *r, char *out, size_t cap) {
    uint16_t n = u16(r);
    const uint8_t *p;
    cr_assert_eq(rd_bytes(r, n, &p), 0);
    snprintf(out, cap, "%.*s", (int)n, (const char *)p);
}

static void decode(rows *o) {
    rd r;
    rd_init(&r, o->r.body, o->r.len);
    if (o->r.opcode == 0x00) {
        o->err = u32(&r);
        str(&r, o->msg, sizeof o->msg);
        return;
    }
    cr_assert_eq(o->r.opcode, 0x08);
    o->kind = u32(&r);
    if (o->kind != 2) return;
    o->flags = u32(&r);
    o->ncols = u32(&r);
    cr_assert_leq(o->ncols, 32);
    if (o->flags & 0x02) {
        o->paging_len = (int32_t)u32(&r);
        const uint8_t *p;
        cr_assert_eq(rd_bytes(&r, (size_t)o->paging_len, &p), 0);
        cr_assert_leq(o->paging_len, 512);
        memcpy(o->paging, p, (size_t)o->paging_len);
    }
    if (!(o->flags & 0x04)) {
        char tmp[64];
        if (o->flags & 0x01) {
            str(&r, tmp, sizeof tmp);
            str(&r, tmp, sizeof tmp);
        }
        for (uint32_t i = 0; i < o->ncols; i++) {
            str(&r, o->names[i], sizeof o->names[i]);
            o->types[i] = u16(&r);
            if (o->types[i] == 0x20 || o->types[i] == 0x22) u16(&r);
            if (o->types[i] == 0x21) { u16(&r); u16(&r); }
        }
    }
    o->nrows = u32(&r);
    cr_assert_leq(o->nrows, 256);
    for (uint32_t i = 0; i < o->nrows; i++)
        for (uint32_t c = 0; c < o->ncols; c++) {
            int32_t n = (int32_t)u32(&r);
            o->clen[i][c] = n;
            o->cell[i][c] = NULL;
            if (n > 0) cr_assert_eq(rd_bytes(&r, (size_t)n, &o->cell[i][c]), 0);
        }
    cr_assert_eq(rd_left(&r), 0, "trailing bytes in Rows");
}

static rows *query_p(const char *q, int32_t page_size, const uint8_t *ps, int32_t pslen,
                     cql_value *vals, uint16_t nvals, uint16_t cl) {
    rows *o = calloc(1, sizeof *o);
    cql_query_params p;
    memset(&p, 0, sizeof p);
    p.consistency = cl;
    p.page_size = page_size;
    p.paging_state = ps;
    p.paging_state_len = pslen;
    p.values = vals;
    p.nvalues = nvals;
    p.serial_consistency = 8;
    p.default_timestamp = INT64_MIN;
    cr_assert_eq(cql_exec_query(E.x, E.s, q, strlen(q), &p, on_done, &o->r), 0);
    wait_done(&o->r);
    decode(o);
    return o;
}

static rows *query(const char *q) { return query_p(q, -1, NULL, 0, NULL, 0, 1); }

static void rows_free(rows *o) {
    resp_free(&o->r);
    free(o);
}

static void ok(const char *q) {
    rows *o = query(q);
    cr_assert_eq(o->r.opcode, 0x08, "%s -> error 0x%04x %s", q, o->err, o->msg);
    rows_free(o);
}

static void expect_err(const char *q, uint32_t code) {
    rows *o = query(q);
    cr_assert_eq(o->r.opcode, 0x00, "%s should fail", q);
    cr_assert_eq(o->err, code, "%s -> 0x%04x %s", q, o->err, o->msg);
    rows_free(o);
}

static int32_t cell_int(rows *o, uint32_t row, uint32_t col) {
    cr_assert_eq(o->clen[row][col], 4);
    return (int32_t)be32_get(o->cell[row][col]);
}

static int col_of(rows *o, const char *name) {
    for (uint32_t i = 0; i < o->ncols; i++)
        if (strcmp(o->names[i], name) == 0) return (int)i;
    cr_assert(false, "no column %s", name);
    return -1;
}

static void schema_basic(void) {
    ok("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    ok("USE ks");
    ok("CREATE TABLE t (k int, c int, v text, PRIMARY KEY (k, c))");
}

TestSuite(exec, .init = setup, .fini = teardown, .timeout = 60);

Test(exec, insert_select_roundtrip) {
    schema_basic();
    ok("INSERT INTO t (k, c, v) VALUES (1, 2, 'two')");
    ok("INSERT INTO t (k, c, v) VALUES (1, 1, 'one')");
    ok("INSERT INTO ks.t (k, c) VALUES (2, 1)");
    rows *o = query("SELECT * FROM t WHERE k = 1");
    cr_assert_eq(o->kind, 2);
    cr_assert_eq(o->ncols, 3);
    cr_assert_str_eq(o->names[0], "k");
    cr_assert_str_eq(o->names[1], "c");
    cr_assert_str_eq(o->names[2], "v");
    cr_assert_eq(o->types[2], 0x0D);
    cr_assert_eq(o->nrows, 2);
    cr_assert_eq(cell_int(o, 0, 1), 1);
    cr_assert_eq(o->clen[0][2], 3);
    cr_assert_eq(memcmp(o->cell[0][2], "one", 3), 0);
    cr_assert_eq(cell_int(o, 1, 1), 2);
    rows_free(o);
    o = query("SELECT v, k FROM t WHERE k = 2 AND c = 1");
    cr_assert_eq(o->nrows, 1);
    cr_assert_eq(o->clen[0][0], -1, "row marker keeps a row whose only column is null");
    cr_assert_eq(cell_int(o, 0, 1), 2);
    rows_free(o);
    o = query("SELECT * FROM t");
    cr_assert_eq(o->nrows, 3);
    rows_free(o);
}

Test(exec, update_delete) {
    schema_basic();
    ok("UPDATE t SET v = 'x' WHERE k = 5 AND c = 1");
    ok("UPDATE t SET v = 'y' WHERE k = 5 AND c IN (2, 3)");
    rows *o = query("SELECT c, v FROM t WHERE k = 5");
    cr_assert_eq(o->nrows, 3);
    rows_free(o);
    ok("DELETE v FROM t WHERE k = 5 AND c = 2");
    o = query("SELECT c FROM t WHERE k = 5");
    cr_assert_eq(o->nrows, 2, "an UPDATE row without marker disappears when its cells are deleted");
    rows_free(o);
    ok("DELETE FROM t WHERE k = 5 AND c = 1");
    o = query("SELECT c FROM t WHERE k = 5");
    cr_assert_eq(o->nrows, 1);
    cr_assert_eq(cell_int(o, 0, 0), 3);
    rows_free(o);
    ok("DELETE FROM t WHERE k = 5");
    o = query("SELECT c FROM t WHERE k = 5");
    cr_assert_eq(o->nrows, 0);
    rows_free(o);
    expect_err("DELETE FROM t WHERE c = 1", 0x2200);
    expect_err("UPDATE t SET k = 1 WHERE k = 1 AND c = 1", 0x2200);
    expect_err("UPDATE t SET v = 'a' WHERE k = 1", 0x2200);
}

Test(exec, errors_have_codes) {
    expect_err("SELEC * FROM x", 0x2000);
    expect_err("SELECT * FROM t", 0x2200); /* no keyspace */
    schema_basic();
    expect_err("SELECT * FROM nosuch", 0x2200);
    expect_err("SELECT nosuch FROM t", 0x2200);
    rows *o = query("CREATE TABLE t (k int PRIMARY KEY)");
    cr_assert_eq(o->err, 0x2400);
    rd r;
    rd_init(&r, o->r.body, o->r.len);
    char s[64];
    u32(&r);
    str(&r, s, sizeof s);
    str(&r, s, sizeof s);
    cr_assert_str_eq(s, "ks");
    str(&r, s, sizeof s);
    cr_assert_str_eq(s, "t");
    rows_free(o);
    expect_err("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}", 0x2400);
    ok("CREATE KEYSPACE IF NOT EXISTS ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    ok("CREATE TABLE IF NOT EXISTS t (k int PRIMARY KEY)");
    expect_err("INSERT INTO t (k, c, v) VALUES (1, 'a', 'x')", 0x2200);
    expect_err("INSERT INTO t (k, v) VALUES (1, 'x')", 0x2200);
    expect_err("SELECT * FROM t WHERE v = 'x'", 0x2200);  /* needs ALLOW FILTERING */
    expect_err("SELECT * FROM system_virtual_schema.keyspaces", 0x2200);
    expect_err("DROP KEYSPACE system", 0x2100);
    /* a bound value of the wrong length */
    cql_value bad = {.data = (const uint8_t *)"\0\0\1", .len = 3};
    o = query_p("INSERT INTO t (k, c, v) VALUES (?, 1, 'x')", -1, NULL, 0, &bad, 1, 1);
    cr_assert_eq(o->err, 0x2200);
    cr_assert(strstr(o->msg, "Expected 4 byte int"), "%s", o->msg);
    rows_free(o);
}

Test(exec, unavailable_with_rf3_quorum) {
    ok("CREATE KEYSPACE k3 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}");
    ok("CREATE TABLE k3.t (k int PRIMARY KEY, v int)");
    rows *o = query_p("INSERT INTO k3.t (k, v) VALUES (1, 1)", -1, NULL, 0, NULL, 0, 4 /* QUORUM */);
    cr_assert_eq(o->err, 0x1000, "0x%x %s", o->err, o->msg);
    rd r;
    rd_init(&r, o->r.body, o->r.len);
    char s[256];
    u32(&r);
    str(&r, s, sizeof s);
    cr_assert_eq(u16(&r), 4);
    cr_assert_eq(u32(&r), 2);  /* required */
    cr_assert_eq(u32(&r), 1);  /* alive */
    rows_free(o);
    o = query_p("INSERT INTO k3.t (k, v) VALUES (1, 1)", -1, NULL, 0, NULL, 0, 1 /* ONE */);
    cr_assert_eq(o->r.opcode, 0x08);
    rows_free(o);
    o = query_p("INSERT INTO k3.t (k, v) VALUES (1, 1)", -1, NULL, 0, NULL, 0, 0 /* ANY */);
    cr_assert_eq(o->r.opcode, 0x08);
    rows_free(o);
    o = query_p("SELECT * FROM k3.t WHERE k = 1", -1, NULL, 0, NULL, 0, 5 /* ALL */);
    cr_assert_eq(o->err, 0x1000);
    rows_free(o);
}

Test(exec, clustering_order_slices_limits) {
    ok("CREATE KEYSPACE ks WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 1}");
    ok("USE ks");
    ok("CREATE TABLE d (k text, c bigint, v int, PRIMARY KEY (k, c)) WITH CLUSTERING ORDER BY (c DESC)");
    char q[128];
    for (int i = -5; i <= 5; i++) {
        snprintf(q, sizeof q, "INSERT INTO d (k, c, v) VALUES ('a', %d, %d)", i, i * 10);
        ok(q);
    }
    rows *o = query("SELECT c FROM d WHERE k = 'a'");
    cr_assert_eq(o->nrows, 11);
    cr_assert_eq((int64_t)be64_get(o->cell[0][0]), 5);
    cr_assert_eq((int64_t)be64_get(o->cell[10][0]), -5);
    rows_free(o);
    o = query("SELECT c FROM d WHERE k = 'a' AND c > -2 AND c <= 3");
    cr_assert_eq(o->nrows, 5);
    cr_assert_eq((int64_t)be64_get(o->cell[0][0]), 3);
    cr_assert_eq((int64_t)be64_get(o->cell[4][0]), -1);
    rows_free(o);
    o = query("SELECT c FROM d WHERE k = 'a' AND c >= -2 ORDER BY c ASC LIMIT 3");
    cr_assert_eq(o->nrows, 3);
    cr_assert_eq((int64_t)be64_get(o->cell[0][0]), -2);
    cr_assert_eq((int64_t)be64_get(o->cell[2][0]), 0);
    rows_free(o);
    o = query("SELECT count(*) FROM d WHERE k = 'a' AND c < 0");
    cr_assert_eq(o->nrows, 1);
    cr_assert_str_eq(o->names[0], "count");
    cr_assert_eq((int64_t)be64_get(o->cell[0][0]), 5);
    rows_free(o);
    ok("INSERT INTO d (k, c, v) VALUES ('b', 1, 1) USING TTL 1000 AND TIMESTAMP 12345");
    ok("INSERT INTO d (k, c, v) VALUES ('b', 2, 2)");
    o = query("SELECT writetime(v), ttl(v), token(k) FROM d WHERE k = 'b' AND c = 1");
    cr_assert_eq(o->nrows, 1);
    cr_assert_str_eq(o->names[0], "writetime(v)");
    cr_assert_eq((int64_t)be64_get(o->cell[0][0]), 12345);
    int32_t ttl = cell_int(o, 0, 1);
    cr_assert(ttl > 990 && ttl <= 1000, "ttl %d", ttl);
    cr_assert_eq((int64_t)be64_get(o->cell[0][2]), murmur3_token("b", 1));
    rows_free(o);
    o = query("SELECT k, c FROM d PER PARTITION LIMIT 1");
    cr_assert_eq(o->nrows, 2);
    rows_free(o);
    o = query("SELECT k, c FROM d WHERE k IN ('a', 'b') AND c = 1");
    cr_assert_eq(o->nrows, 2);
    rows_free(o);
    o = query("SELECT * FROM d WHERE v = 20 ALLOW FILTERING");
    cr_assert_eq(o->nrows, 1);
    rows_free(o);
}

static uint32_t page_through(const char *q, int32_t page, uint32_t *pages) {
    uint8_t ps[512];
    int32_t pslen = 0;
    uint32_t total = 0;
    *pages = 0;
    for (;;) {
        rows *o = query_p(q, page, pslen ? ps : NULL, pslen, NULL, 0, 1);
        cr_assert_eq(o->r.opcode, 0x08, "0x%x %s", o->err, o->msg);
        cr_assert_leq(o->nrows, (uint32_t)page);
        total += o->nrows;
        (*pages)++;
        bool more = o->flags & 0x02;
        if (more) {
            memcpy(ps, o->paging, (size_t)o->paging_len);
            pslen = o->paging_len;
        }
        rows_free(o);
        if (!more) break;
        cr_assert_lt(*pages, 1000);
    }
    return total;
}

Test(exec, paging_partition_scan_and_system) {
    schema_basic();
    char q[128];
    for (int i = 0; i < 25; i++) {
        snprintf(q, sizeof q, "INSERT INTO t (k, c, v) VALUES (7, %d, 'x')", i);
        ok(q);
    }
    for (int k = 100; k < 130; k++) {
        snprintf(q, sizeof q, "INSERT INTO t (k, c, v) VALUES (%d, 1, 'y')", k);
        ok(q);
        snprintf(q, sizeof q, "INSERT INTO t (k, c, v) VALUES (%d, 2, 'y')", k);
        ok(q);
    }
    uint32_t pages;
    cr_assert_eq(page_through("SELECT * FROM t WHERE k = 7", 10, &pages), 25);
    cr_assert_eq(pages, 3);
    cr_assert_eq(page_through("SELECT * FROM t WHERE k = 7 ORDER BY c DESC", 7, &pages), 25);
    cr_assert_eq(page_through("SELECT * FROM t", 9, &pages), 85);
    cr_assert_geq(pages, 10);
    cr_assert_eq(page_through("SELECT * FROM t LIMIT 20", 9, &pages), 20);
    cr_assert_eq(page_through("SELECT * FROM t WHERE k IN (7, 100, 101)", 4, &pages), 29);
    cr_assert_eq(page_through("SELECT * FROM system_schema.columns", 2, &pages) > 20, true);
    rows *o = query_p("SELECT * FROM t WHERE k = 7", 5, (const uint8_t *)"garbage", 7, NULL, 0, 1);
    cr_assert_eq(o->err, 0x000A);
    rows_free(o);
}

static resp prepare(const char *q) {
    resp r = {0};
    cr_assert_eq(cql_exec_prepare(E.x, E.s, q, strlen(q), on_done, &r), 0);
    wait_done(&r);
    return r;
}

static rows *execute(const uint8_t *id, cql_value *vals, uint16_t n) {
    rows *o = calloc(1, sizeof *o);
    cql_query_params p;
    memset(&p, 0, sizeof p);
    p.consistency = 1;
    p.page_size = -1;
    p.values = vals;
    p.nvalues = n;
    p.default_timestamp = INT64_MIN;
    p.serial_consistency = 8;
    cr_assert_eq(cql_exec_execute(E.x, E.s, id, 16, &p, on_done, &o->r), 0);
    wait_done(&o->r);
    decode(o);
    return o;
}

Test(exec, prepared_statements) {
    ok("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    ok("USE ks");
    ok("CREATE TABLE p (a text, b int, c int, v bigint, PRIMARY KEY ((b, a), c))");
    resp pr = prepare("INSERT INTO p (v, a, c, b) VALUES (?, ?, ?, ?)");
    cr_assert_eq(pr.opcode, 0x08);
    rd r;
    rd_init(&r, pr.body, pr.len);
    cr_assert_eq(u32(&r), 4);
    uint16_t idlen = u16(&r);
    cr_assert_eq(idlen, 16);
    const uint8_t *id;
    rd_bytes(&r, 16, &id);
    uint8_t iid[16];
    memcpy(iid, id, 16);
    cr_assert_eq(u32(&r), 0x01);   /* global table spec */
    cr_assert_eq(u32(&r), 4);      /* 4 binds */
    cr_assert_eq(u32(&r), 2);      /* pk count */
    cr_assert_eq(u16(&r), 3);      /* b is bind 3 */
    cr_assert_eq(u16(&r), 1);      /* a is bind 1 */
    char s[64];
    str(&r, s, sizeof s);
    cr_assert_str_eq(s, "ks");
    str(&r, s, sizeof s);
    cr_assert_str_eq(s, "p");
    str(&r, s, sizeof s);
    cr_assert_str_eq(s, "v");
    cr_assert_eq(u16(&r), 0x02);
    resp_free(&pr);
    uint8_t v8[8], b4[4], c4[4];
    be64_put(v8, 99);
    be32_put(b4, 5);
    be32_put(c4, 6);
    cql_value vals[4] = {{v8, 8, NULL, 0}, {(const uint8_t *)"hi", 2, NULL, 0}, {c4, 4, NULL, 0}, {b4, 4, NULL, 0}};
    rows *o = execute(iid, vals, 4);
    cr_assert_eq(o->r.opcode, 0x08, "0x%x %s", o->err, o->msg);
    cr_assert_eq(o->kind, 1);
    rows_free(o);
    pr = prepare("SELECT v FROM p WHERE a = ? AND b = ?");
    cr_assert_eq(pr.opcode, 0x08);
    rd_init(&r, pr.body, pr.len);
    u32(&r);
    u16(&r);
    rd_bytes(&r, 16, &id);
    memcpy(iid, id, 16);
    resp_free(&pr);
    cql_value sv[2] = {{(const uint8_t *)"hi", 2, NULL, 0}, {b4, 4, NULL, 0}};
    o = execute(iid, sv, 2);
    cr_assert_eq(o->nrows, 1);
    cr_assert_eq((int64_t)be64_get(o->cell[0][0]), 99);
    rows_free(o);
    uint8_t unknown[16] = {0};
    o = execute(unknown, NULL, 0);
    cr_assert_eq(o->err, 0x2500);
    rows_free(o);
    o = execute(iid, sv, 1);
    cr_assert_eq(o->err, 0x2200, "too few values");
    rows_free(o);
}

Test(exec, lightweight_transactions) {
    schema_basic();
    rows *o = query("INSERT INTO t (k, c, v) VALUES (1, 1, 'a') IF NOT EXISTS");
    cr_assert_eq(o->nrows, 1);
    cr_assert_str_eq(o->names[0], "[applied]");
    cr_assert_eq(o->cell[0][0][0], 1);
    rows_free(o);
    o = query("INSERT INTO t (k, c, v) VALUES (1, 1, 'b') IF NOT EXISTS");
    cr_assert_eq(o->cell[0][0][0], 0);
    cr_assert_eq(o->ncols, 4);
    int vi = col_of(o, "v");
    cr_assert_eq(memcmp(o->cell[0][vi], "a", 1), 0);
    rows_free(o);
    o = query("UPDATE t SET v = 'c' WHERE k = 1 AND c = 1 IF v = 'zzz'");
    cr_assert_eq(o->cell[0][0][0], 0);
    rows_free(o);
    o = query("UPDATE t SET v = 'c' WHERE k = 1 AND c = 1 IF v = 'a'");
    cr_assert_eq(o->cell[0][0][0], 1);
    rows_free(o);
    o = query("DELETE FROM t WHERE k = 1 AND c = 2 IF EXISTS");
    cr_assert_eq(o->cell[0][0][0], 0);
    rows_free(o);
    o = query("SELECT v FROM t WHERE k = 1 AND c = 1");
    cr_assert_eq(memcmp(o->cell[0][0], "c", 1), 0);
    rows_free(o);
}

Test(exec, batches) {
    schema_basic();
    ok("BEGIN BATCH INSERT INTO t (k, c, v) VALUES (1, 1, 'a'); INSERT INTO t (k, c, v) VALUES (2, 1, 'b'); "
       "DELETE FROM t WHERE k = 3 APPLY BATCH");
    rows *o = query("SELECT * FROM t");
    cr_assert_eq(o->nrows, 2);
    rows_free(o);
    const char *q1 = "INSERT INTO t (k, c, v) VALUES (?, ?, 'p')";
    uint8_t a[4], b[4];
    be32_put(a, 9);
    be32_put(b, 1);
    cql_value v1[2] = {{a, 4, NULL, 0}, {b, 4, NULL, 0}};
    cql_batch_entry e[2] = {{false, (const uint8_t *)q1, (uint32_t)strlen(q1), 2, v1},
                            {false, (const uint8_t *)"DELETE FROM t WHERE k = 1", 25, 0, NULL}};
    cql_batch bt = {.type = 1, .nentries = 2, .entries = e, .consistency = 1, .serial_consistency = 8,
                    .default_timestamp = INT64_MIN};
    resp r = {0};
    cr_assert_eq(cql_exec_batch(E.x, E.s, &bt, on_done, &r), 0);
    wait_done(&r);
    cr_assert_eq(r.opcode, 0x08);
    resp_free(&r);
    o = query("SELECT k FROM t");
    cr_assert_eq(o->nrows, 2);
    rows_free(o);
    o = query("BEGIN BATCH SELECT * FROM t APPLY BATCH");
    cr_assert_eq(o->r.opcode, 0x00);
    rows_free(o);
}

Test(exec, system_tables) {
    rows *o = query("SELECT * FROM system.local WHERE key = 'local'");
    cr_assert_eq(o->nrows, 1);
    int sv = col_of(o, "schema_version"), tk = col_of(o, "tokens"), rv = col_of(o, "release_version");
    cr_assert_eq(o->types[sv], 0x0C);
    cr_assert_eq(o->types[tk], 0x22);
    cr_assert_eq(o->types[col_of(o, "rpc_address")], 0x10);
    cr_assert_eq(o->types[col_of(o, "host_id")], 0x0C);
    cr_assert_eq(o->clen[0][rv], 6);
    cr_assert_eq(memcmp(o->cell[0][rv], "4.0.11", 6), 0);
    cr_assert_eq(o->clen[0][col_of(o, "cluster_name")], 12);
    uint8_t v1[16];
    memcpy(v1, o->cell[0][sv], 16);
    rows_free(o);
    o = query("SELECT * FROM system.peers");
    cr_assert_eq(o->nrows, 0);
    cr_assert_eq(o->types[col_of(o, "peer")], 0x10);
    rows_free(o);
    o = query("SELECT * FROM system.peers_v2");
    cr_assert_eq(o->nrows, 0);
    cr_assert_eq(o->types[col_of(o, "native_port")], 0x09);
    rows_free(o);
    ok("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    ok("CREATE TABLE ks.t (k int, c int, v text, PRIMARY KEY (k, c)) WITH CLUSTERING ORDER BY (c DESC) AND comment = 'hello'");
    o = query("SELECT schema_version FROM system.local");
    cr_assert_neq(memcmp(o->cell[0][0], v1, 16), 0, "DDL changes schema_version");
    rows_free(o);
    o = query("SELECT keyspace_name, replication FROM system_schema.keyspaces");
    cr_assert_eq(o->nrows, 3); /* ks, system, system_schema */
    cr_assert_eq(o->types[1], 0x21);
    rows_free(o);
    o = query("SELECT * FROM system_schema.tables WHERE keyspace_name = 'ks'");
    cr_assert_eq(o->nrows, 1);
    int cm = col_of(o, "comment");
    cr_assert_eq(memcmp(o->cell[0][cm], "hello", 5), 0);
    rows_free(o);
    o = query("SELECT column_name, kind, position, clustering_order, type FROM system_schema.columns WHERE keyspace_name = 'ks' AND table_name = 't'");
    cr_assert_eq(o->nrows, 3);
    cr_assert_eq(memcmp(o->cell[1][0], "c", 1), 0);
    cr_assert_eq(memcmp(o->cell[1][1], "clustering", 10), 0);
    cr_assert_eq(memcmp(o->cell[1][3], "desc", 4), 0);
    cr_assert_eq(cell_int(o, 2, 2), -1);
    rows_free(o);
    const char *empty[] = {"types", "functions", "aggregates", "triggers", "indexes", "views"};
    for (size_t i = 0; i < 6; i++) {
        char q[96];
        snprintf(q, sizeof q, "SELECT * FROM system_schema.%s", empty[i]);
        o = query(q);
        cr_assert_eq(o->kind, 2);
        cr_assert_eq(o->nrows, 0);
        rows_free(o);
    }
}

Test(exec, schema_change_event_and_drop) {
    rows *o = query("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    cr_assert_eq(o->kind, 5);
    cr_assert_not_null(o->r.event);
    rd r;
    rd_init(&r, o->r.event, o->r.event_len);
    char s[64];
    str(&r, s, sizeof s);
    cr_assert_str_eq(s, "SCHEMA_CHANGE");
    str(&r, s, sizeof s);
    cr_assert_str_eq(s, "CREATED");
    str(&r, s, sizeof s);
    cr_assert_str_eq(s, "KEYSPACE");
    rows_free(o);
    ok("CREATE TABLE ks.t (k int PRIMARY KEY, v int) WITH compression = {'class': 'DeflateCompressor'} AND gc_grace_seconds = 10");
    ok("INSERT INTO ks.t (k, v) VALUES (1, 1)");
    ok("TRUNCATE ks.t");
    o = query("SELECT * FROM ks.t");
    cr_assert_eq(o->nrows, 0);
    rows_free(o);
    ok("DROP TABLE ks.t");
    expect_err("SELECT * FROM ks.t", 0x2200);
    ok("DROP TABLE IF EXISTS ks.t");
    ok("DROP KEYSPACE ks");
    expect_err("USE ks", 0x2200);
}

Test(exec, schema_and_data_survive_restart) {
    schema_basic();
    ok("INSERT INTO t (k, c, v) VALUES (1, 1, 'persist')");
    ok("CREATE TABLE gone (k int PRIMARY KEY)");
    ok("DROP TABLE gone");
    rows *o = query("SELECT schema_version FROM system.local");
    uint8_t v1[16];
    memcpy(v1, o->cell[0][0], 16);
    rows_free(o);
    env_close(&E);
    env_open(&E);
    ok("USE ks");
    o = query("SELECT v FROM t WHERE k = 1 AND c = 1");
    cr_assert_eq(o->nrows, 1);
    cr_assert_eq(memcmp(o->cell[0][0], "persist", 7), 0);
    rows_free(o);
    expect_err("SELECT * FROM gone", 0x2200);
    o = query("SELECT schema_version FROM system.local");
    cr_assert_eq(memcmp(o->cell[0][0], v1, 16), 0, "same schema, same version after restart");
    rows_free(o);
}

Test(exec_batchmode, writes_ack_after_sync, .init = setup_batch, .fini = teardown, .timeout = 60) {
    schema_basic();
    for (int i = 0; i < 20; i++) {
        char q[96];
        snprintf(q, sizeof q, "INSERT INTO t (k, c, v) VALUES (%d, 1, 'b')", i);
        ok(q);
    }
    rows *o = query("SELECT count(*) FROM t");
    cr_assert_eq((int64_t)be64_get(o->cell[0][0]), 20);
    rows_free(o);
}

/* Mutated statements, random bound values and random paging states: every request gets an
 * answer (RESULT or ERROR), nothing crashes (run under ASan/UBSan in CI). */
Test(exec, garbage_never_crashes, .timeout = 120) {
    schema_basic();
    ok("CREATE TABLE d (k text, c bigint, v int, PRIMARY KEY (k, c)) WITH CLUSTERING ORDER BY (c DESC)");
    ok("INSERT INTO t (k, c, v) VALUES (1, 1, 'a')");
    const char *base[] = {
        "SELECT * FROM t WHERE k = 1 AND c > 0 ORDER BY c DESC LIMIT 5",
        "INSERT INTO d (k, c, v) VALUES ('x', 5, 6) USING TTL 10",
        "UPDATE t SET v = 'q' WHERE k IN (1, 2) AND c = 3 IF v = 'a'",
        "DELETE v FROM t WHERE k = 1 AND c = 1",
        "SELECT count(*), writetime(v) FROM t WHERE token(k) > 5 ALLOW FILTERING",
        "CREATE TABLE x (a int, b text, PRIMARY KEY ((a, b))) WITH comment = 'c'",
        "SELECT * FROM system_schema.columns WHERE keyspace_name = 'ks'",
        "BEGIN BATCH INSERT INTO t (k, c) VALUES (?, ?); DELETE FROM t WHERE k = ? APPLY BATCH",
    };
    uint64_t st = 12345;
    for (int it = 0; it < 1500; it++) {
        st ^= st << 13; st ^= st >> 7; st ^= st << 17;
        char q[256];
        const char *b = base[st % (sizeof base / sizeof base[0])];
        size_t n = strlen(b);
        memcpy(q, b, n + 1);
        int flips = (int)(st >> 8) % 4;
        for (int f = 0; f < flips; f++) {
            st ^= st << 13; st ^= st >> 7; st ^= st << 17;
            q[st % n] = (char)(" ()',?=<>0123456789abcxyz.*;\xff"[(st >> 16) % 30]);
        }
        uint8_t vb[3][9];
        cql_value vals[3];
        for (int i = 0; i < 3; i++) {
            st ^= st << 13; st ^= st >> 7; st ^= st << 17;
            int len = (int)(st % 12) - 2;
            if (len > 9) len = 9;
            for (int j = 0; j < 9; j++) vb[i][j] = (uint8_t)(st >> (j * 7));
            vals[i].data = len > 0 ? vb[i] : NULL;
            vals[i].len = len;
            vals[i].name = NULL;
            vals[i].name_len = 0;
        }
        uint8_t ps[24];
        for (int j = 0; j < 24; j++) ps[j] = (uint8_t)(st >> (j % 8 * 8));
        ps[0] = 1;
        rows *o = query_p(q, (it % 3) ? 3 : -1, (it % 5 == 0) ? ps : NULL, (int32_t)(st % 24), vals,
                          (uint16_t)(st % 4), (uint16_t)(st % 12));
        cr_assert(o->r.opcode == 0x08 || o->r.opcode == 0x00);
        rows_free(o);
    }
    /* still healthy */
    rows *o = query("SELECT * FROM ks.t WHERE k = 1");
    cr_assert_eq(o->r.opcode, 0x08);
    rows_free(o);
}

Test(exec, binds_in_lists_named_distinct_filter_paging) {
    schema_basic();
    char q[128];
    for (int k = 0; k < 12; k++)
        for (int c = 0; c < 3; c++) {
            snprintf(q, sizeof q, "INSERT INTO t (k, c, v) VALUES (%d, %d, '%s')", k, c, c == 1 ? "one" : "other");
            ok(q);
        }
    /* IN ? with a bound list<int> */
    uint8_t list[4 + 3 * 8];
    be32_put(list, 3);
    for (int i = 0; i < 3; i++) {
        be32_put(list + 4 + 8 * i, 4);
        be32_put(list + 8 + 8 * i, (uint32_t)(i * 2));
    }
    cql_value lv = {list, sizeof list, NULL, 0};
    rows *o = query_p("SELECT k, c FROM t WHERE k IN ? AND c = 1", -1, NULL, 0, &lv, 1, 1);
    cr_assert_eq(o->r.opcode, 0x08, "0x%x %s", o->err, o->msg);
    cr_assert_eq(o->nrows, 3);
    rows_free(o);
    /* named values, in any order */
    uint8_t kb[4], cb4[4];
    be32_put(kb, 4);
    be32_put(cb4, 2);
    cql_value nv[2] = {{cb4, 4, "cc", 2}, {kb, 4, "kk", 2}};
    o = query_p("SELECT v FROM t WHERE k = :kk AND c = :cc", -1, NULL, 0, nv, 2, 1);
    cr_assert_eq(o->nrows, 1, "0x%x %s", o->err, o->msg);
    cr_assert_eq(memcmp(o->cell[0][0], "other", 5), 0);
    rows_free(o);
    uint32_t pages;
    cr_assert_eq(page_through("SELECT DISTINCT k FROM t", 5, &pages), 12);
    cr_assert_eq(page_through("SELECT * FROM t WHERE v = 'one' ALLOW FILTERING", 5, &pages), 12);
    cr_assert_eq(page_through("SELECT * FROM t WHERE c = 2 ALLOW FILTERING", 4, &pages), 12);
    cr_assert_eq(page_through("SELECT * FROM t WHERE token(k) >= -9223372036854775808", 7, &pages), 36);
    o = query("SELECT token(k) FROM t PER PARTITION LIMIT 1");
    cr_assert_eq(o->nrows, 12);
    int64_t mid = (int64_t)be64_get(o->cell[5][0]);
    for (uint32_t i = 1; i < o->nrows; i++)
        cr_assert_lt((int64_t)be64_get(o->cell[i - 1][0]), (int64_t)be64_get(o->cell[i][0]), "token order");
    rows_free(o);
    snprintf(q, sizeof q, "SELECT k FROM t WHERE token(k) > %lld PER PARTITION LIMIT 1", (long long)mid);
    cr_assert_eq(page_through(q, 2, &pages), 6);
    expect_err("SELECT * FROM t WHERE c = 2", 0x2200);
    o = query("SELEC * FROM t");
    cr_assert_eq(o->err, 0x2000);
    cr_assert(strstr(o->msg, "line 1:"), "syntax errors carry a position: %s", o->msg);
    rows_free(o);
}

Test(exec, prepared_use_changes_session) {
    ok("CREATE KEYSPACE ks2 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    ok("CREATE TABLE ks2.z (k int PRIMARY KEY)");
    resp pr = prepare("USE ks2");
    cr_assert_eq(pr.opcode, 0x08);
    rd r;
    rd_init(&r, pr.body, pr.len);
    u32(&r);
    u16(&r);
    const uint8_t *id;
    rd_bytes(&r, 16, &id);
    uint8_t iid[16];
    memcpy(iid, id, 16);
    resp_free(&pr);
    rows *o = execute(iid, NULL, 0);
    cr_assert_eq(o->kind, 3);
    rows_free(o);
    ok("SELECT * FROM z");
}

Test(exec, collections_replace_whole_values) {
    schema_basic();
    ok("CREATE TABLE c (k int PRIMARY KEY, l list<int>, s set<text>, m map<text, bigint>, f frozen<set<int>>)");
    ok("INSERT INTO c (k, l, s, m, f) VALUES (1, [3, 1, 3], {'b', 'a', 'b'}, {'y': 2, 'x': 1}, {})");
    rows *o = query("SELECT l, s, m, f FROM c WHERE k = 1");
    cr_assert_eq(o->nrows, 1, "0x%x %s", o->err, o->msg);
    cr_assert_eq(o->types[0], 0x20);
    cr_assert_eq(o->types[1], 0x22);
    cr_assert_eq(o->types[2], 0x21);
    /* list keeps order and duplicates: 3 elements */
    cr_assert_eq(be32_get(o->cell[0][0]), 3);
    /* set sorted, deduplicated: {'a', 'b'} */
    cr_assert_eq(o->clen[0][1], 4 + 2 * 5);
    cr_assert_eq(be32_get(o->cell[0][1]), 2);
    cr_assert_eq(o->cell[0][1][8], 'a');
    /* map sorted by key: x first */
    cr_assert_eq(be32_get(o->cell[0][2]), 2);
    cr_assert_eq(o->cell[0][2][8], 'x');
    /* an empty frozen collection is a value */
    cr_assert_eq(o->clen[0][3], 4);
    rows_free(o);
    ok("UPDATE c SET s = {} WHERE k = 1");
    o = query("SELECT s FROM c WHERE k = 1");
    cr_assert_eq(o->clen[0][0], -1, "an empty collection is null");
    rows_free(o);
    ok("INSERT INTO c (k, l, s, m) VALUES (5, [7], {'q'}, {'key': 42})");
    o = query("SELECT k FROM c WHERE l CONTAINS 7 ALLOW FILTERING");
    cr_assert_eq(o->nrows, 1, "0x%x %s", o->err, o->msg);
    cr_assert_eq(cell_int(o, 0, 0), 5);
    rows_free(o);
    o = query("SELECT k FROM c WHERE m CONTAINS KEY 'key' AND m CONTAINS 42 AND s CONTAINS 'q' ALLOW FILTERING");
    cr_assert_eq(o->nrows, 1, "0x%x %s", o->err, o->msg);
    rows_free(o);
    o = query("SELECT k FROM c WHERE m CONTAINS 41 ALLOW FILTERING");
    cr_assert_eq(o->nrows, 0);
    rows_free(o);
    expect_err("SELECT k FROM c WHERE l CONTAINS 7", 0x2200);
    expect_err("SELECT k FROM c WHERE l CONTAINS KEY 7 ALLOW FILTERING", 0x2200);
    expect_err("UPDATE c SET l = l + [1] WHERE k = 1", 0x2200);
    expect_err("INSERT INTO c (k, l) VALUES (2, {1, 2})", 0x2200);
    expect_err("INSERT INTO c (k, m) VALUES (2, {'a': null})", 0x2200);
    expect_err("CREATE TABLE bad (k list<int> PRIMARY KEY)", 0x2200);
    o = query("SELECT type FROM system_schema.columns WHERE keyspace_name = 'ks' AND table_name = 'c' AND column_name = 'f'");
    cr_assert_eq(o->nrows, 1);
    cr_assert_eq(o->clen[0][0], 16);
    cr_assert_eq(memcmp(o->cell[0][0], "frozen<set<int>>", 16), 0);
    rows_free(o);
    /* a bound collection value is validated */
    uint8_t badlist[6] = {0, 0, 0, 1, 0, 0};
    cql_value bv = {badlist, 6, NULL, 0};
    o = query_p("INSERT INTO c (k, l) VALUES (3, ?)", -1, NULL, 0, &bv, 1, 1);
    cr_assert_eq(o->err, 0x2200);
    rows_free(o);
}

Test(exec, bound_sets_and_maps_are_normalized) {
    schema_basic();
    ok("CREATE TABLE c (k int PRIMARY KEY, s set<int>, m map<text, int>)");
    /* set {3, 1, 3} and map {'z': 1, 'y': 2, 'z': 9} as a driver may send them */
    uint8_t sv[4 + 3 * 8], mv[4 + 3 * 13];
    be32_put(sv, 3);
    int sx[3] = {3, 1, 3};
    for (int i = 0; i < 3; i++) {
        be32_put(sv + 4 + 8 * i, 4);
        be32_put(sv + 8 + 8 * i, (uint32_t)sx[i]);
    }
    be32_put(mv, 3);
    const char *mk = "zyz";
    int mx[3] = {1, 2, 9};
    for (int i = 0; i < 3; i++) {
        uint8_t *p = mv + 4 + 13 * i;
        be32_put(p, 1);
        p[4] = (uint8_t)mk[i];
        be32_put(p + 5, 4);
        be32_put(p + 9, (uint32_t)mx[i]);
    }
    cql_value v[2] = {{sv, sizeof sv, NULL, 0}, {mv, sizeof mv, NULL, 0}};
    rows *o = query_p("INSERT INTO c (k, s, m) VALUES (1, ?, ?)", -1, NULL, 0, v, 2, 1);
    cr_assert_eq(o->r.opcode, 0x08, "0x%x %s", o->err, o->msg);
    rows_free(o);
    o = query("SELECT s, m FROM c WHERE k = 1");
    cr_assert_eq(be32_get(o->cell[0][0]), 2);
    cr_assert_eq(be32_get(o->cell[0][0] + 8), 1);
    cr_assert_eq(be32_get(o->cell[0][0] + 16), 3);
    cr_assert_eq(be32_get(o->cell[0][1]), 2);
    cr_assert_eq(o->cell[0][1][8], 'y');
    cr_assert_eq(o->cell[0][1][4 + 13 + 4], 'z');
    cr_assert_eq(be32_get(o->cell[0][1] + 4 + 13 + 9), 9, "the later duplicate key wins");
    rows_free(o);
}

Test(exec, multi_column_clustering_relations) {
    schema_basic();
    ok("CREATE TABLE g (k int, c1 int, c2 int, PRIMARY KEY (k, c1, c2))");
    ok("CREATE TABLE gd (k int, c1 int, c2 int, PRIMARY KEY (k, c1, c2)) WITH CLUSTERING ORDER BY (c1 DESC, c2 DESC)");
    char q[128];
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            snprintf(q, sizeof q, "INSERT INTO g (k, c1, c2) VALUES (1, %d, %d)", a, b);
            ok(q);
            snprintf(q, sizeof q, "INSERT INTO gd (k, c1, c2) VALUES (1, %d, %d)", a, b);
            ok(q);
        }
    const char *tabs[2] = {"g", "gd"};
    for (int i = 0; i < 2; i++) {
        snprintf(q, sizeof q, "SELECT c1, c2 FROM %s WHERE k = 1 AND (c1, c2) > (1, 2)", tabs[i]);
        rows *o = query(q);
        cr_assert_eq(o->nrows, 9, "%s: %u 0x%x %s", tabs[i], o->nrows, o->err, o->msg);
        rows_free(o);
        snprintf(q, sizeof q, "SELECT c1, c2 FROM %s WHERE k = 1 AND (c1, c2) >= (1, 2) AND (c1, c2) < (3, 1)", tabs[i]);
        o = query(q);
        cr_assert_eq(o->nrows, 7, "%s", tabs[i]);
        rows_free(o);
        snprintf(q, sizeof q, "SELECT c1, c2 FROM %s WHERE k = 1 AND (c1) <= (0)", tabs[i]);
        o = query(q);
        cr_assert_eq(o->nrows, 4, "%s", tabs[i]);
        rows_free(o);
        snprintf(q, sizeof q, "SELECT c1, c2 FROM %s WHERE k = 1 AND (c1, c2) = (2, 3)", tabs[i]);
        o = query(q);
        cr_assert_eq(o->nrows, 1);
        cr_assert_eq(cell_int(o, 0, 0), 2);
        cr_assert_eq(cell_int(o, 0, 1), 3);
        rows_free(o);
    }
    uint8_t tup[16];
    be32_put(tup, 4);
    be32_put(tup + 4, 2);
    be32_put(tup + 8, 4);
    be32_put(tup + 12, 2);
    cql_value tv = {tup, 16, NULL, 0};
    rows *o = query_p("SELECT c1, c2 FROM g WHERE k = 1 AND (c1, c2) > ?", -1, NULL, 0, &tv, 1, 1);
    cr_assert_eq(o->nrows, 5, "0x%x %s", o->err, o->msg); /* (2,3), (3,0..3) */
    rows_free(o);
    expect_err("SELECT * FROM g WHERE k = 1 AND (c2, c1) > (1, 1)", 0x2200);
    expect_err("SELECT * FROM g WHERE k = 1 AND c1 = 1 AND (c1, c2) > (1, 1)", 0x2200);
}

Test(exec, static_columns) {
    schema_basic();
    ok("CREATE TABLE st (k int, c int, s text STATIC, v int, PRIMARY KEY (k, c))");
    expect_err("CREATE TABLE bad (k int PRIMARY KEY, s int STATIC)", 0x2200);
    ok("INSERT INTO st (k, c, s, v) VALUES (1, 1, 'a', 10)");
    ok("INSERT INTO st (k, c, v) VALUES (1, 2, 20)");
    ok("INSERT INTO st (k, s) VALUES (2, 'only')");
    rows *o = query("SELECT * FROM st WHERE k = 1");
    cr_assert_eq(o->nrows, 2, "0x%x %s", o->err, o->msg);
    int si = col_of(o, "s");
    cr_assert_str_eq(o->names[2], "s", "static columns come right after the key");
    cr_assert_eq(memcmp(o->cell[0][si], "a", 1), 0);
    cr_assert_eq(memcmp(o->cell[1][si], "a", 1), 0, "the static value shows on every row");
    rows_free(o);
    o = query("SELECT k, c, s, v FROM st WHERE k = 2");
    cr_assert_eq(o->nrows, 1, "a partition with only static values is one row");
    cr_assert_eq(o->clen[0][1], -1);
    cr_assert_eq(memcmp(o->cell[0][2], "only", 4), 0);
    rows_free(o);
    ok("UPDATE st SET s = 'b' WHERE k = 1");
    expect_err("UPDATE st SET s = 'b' WHERE k = 1 AND c = 1", 0x2200);
    expect_err("UPDATE st SET v = 1 WHERE k = 1", 0x2200);
    o = query("SELECT s FROM st WHERE k = 1 AND c = 2");
    cr_assert_eq(o->nrows, 1);
    cr_assert_eq(memcmp(o->cell[0][0], "b", 1), 0, "a slice still sees the static row");
    rows_free(o);
    uint32_t pages;
    cr_assert_eq(page_through("SELECT * FROM st", 1, &pages), 3);
    cr_assert_eq(page_through("SELECT DISTINCT k, s FROM st", 1, &pages), 2);
    ok("DELETE s FROM st WHERE k = 1");
    o = query("SELECT s, v FROM st WHERE k = 1");
    cr_assert_eq(o->nrows, 2);
    cr_assert_eq(o->clen[0][0], -1);
    cr_assert_eq(cell_int(o, 0, 1), 10);
    rows_free(o);
    ok("DELETE s FROM st WHERE k = 2");
    o = query("SELECT * FROM st WHERE k = 2");
    cr_assert_eq(o->nrows, 0);
    rows_free(o);
    o = query("SELECT kind FROM system_schema.columns WHERE keyspace_name = 'ks' AND table_name = 'st' AND column_name = 's'");
    cr_assert_eq(memcmp(o->cell[0][0], "static", 6), 0);
    rows_free(o);
}

Test(exec, prepare_reports_unknown_columns) {
    schema_basic();
    const char *bad[] = {"INSERT INTO t (k, c, nope) VALUES (?, ?, ?)", "UPDATE t SET nope = ? WHERE k = ? AND c = ?",
                         "DELETE nope FROM t WHERE k = ?", "SELECT * FROM t WHERE nope = ?"};
    for (int i = 0; i < 4; i++) {
        resp pr = prepare(bad[i]);
        cr_assert_eq(pr.opcode, 0x00, "%s", bad[i]);
        rd r;
        rd_init(&r, pr.body, pr.len);
        cr_assert_eq(u32(&r), 0x2200);
        char msg[128];
        str(&r, msg, sizeof msg);
        cr_assert(strstr(msg, "nope"), "%s", msg);
        resp_free(&pr);
    }
}

Test(exec, drop_forgets_prepared_statements) {
    schema_basic();
    resp pr = prepare("SELECT * FROM t WHERE k = ?");
    rd r;
    rd_init(&r, pr.body, pr.len);
    u32(&r);
    u16(&r);
    const uint8_t *id;
    rd_bytes(&r, 16, &id);
    uint8_t iid[16];
    memcpy(iid, id, 16);
    resp_free(&pr);
    ok("DROP TABLE t");
    ok("CREATE TABLE t (k int PRIMARY KEY, other text)");
    uint8_t kb[4];
    be32_put(kb, 1);
    cql_value v = {kb, 4, NULL, 0};
    rows *o = execute(iid, &v, 1);
    cr_assert_eq(o->err, 0x2500, "a statement prepared against the dropped table must be prepared again");
    rows_free(o);
}

/* Differential test: random clustering slices, orders, limits and page sizes on a table with
 * mixed clustering orders, against a model. */
typedef struct mrow {
    int c1;
    const char *c2;
    int v;
} mrow;

static int model_cmp(const mrow *a, const mrow *b) {
    if (a->c1 != b->c1) return a->c1 > b->c1 ? -1 : 1; /* c1 DESC */
    return strcmp(a->c2, b->c2);                          /* c2 ASC */
}

Test(exec, random_slices_match_model, .timeout = 120) {
    schema_basic();
    /* the static column makes every read start at the static row, whatever the slice */
    ok("CREATE TABLE m (k int, c1 int, c2 text, s int STATIC, v int, PRIMARY KEY (k, c1, c2)) WITH CLUSTERING ORDER BY (c1 DESC, c2 ASC)");
    ok("UPDATE m SET s = 7 WHERE k = 1");
    static const char *c2s[] = {"", "a", "ab", "b"};
    mrow model[64];
    int n = 0;
    uint64_t st = 777;
#define RND() (st ^= st << 13, st ^= st >> 7, st ^= st << 17, st)
    char q[256];
    for (int c1 = -3; c1 <= 3; c1++)
        for (int j = 0; j < 4; j++) {
            if (RND() % 3 == 0) continue;
            model[n].c1 = c1;
            model[n].c2 = c2s[j];
            model[n].v = n;
            snprintf(q, sizeof q, "INSERT INTO m (k, c1, c2, v) VALUES (1, %d, '%s', %d)", c1, c2s[j], n);
            ok(q);
            n++;
        }
    for (int it = 0; it < 400; it++) {
        int kind = (int)(RND() % 6), x = (int)(RND() % 9) - 4, y = (int)(RND() % 9) - 4;
        const char *ops[] = {">", ">=", "<", "<="};
        const char *op1 = ops[RND() % 4], *op2 = ops[RND() % 4];
        bool asc = RND() % 2, limit = RND() % 3 == 0;
        int lim = 1 + (int)(RND() % 10), page = 1 + (int)(RND() % 6);
        const char *c2v = c2s[RND() % 4];
        char where[128] = "";
        if (kind == 1) snprintf(where, sizeof where, " AND c1 %s %d", op1, x);
        else if (kind == 2) snprintf(where, sizeof where, " AND c1 %s %d AND c1 %s %d", op1[0] == '>' ? op1 : ">", x, op2[0] == '<' ? op2 : "<", y);
        else if (kind == 3) snprintf(where, sizeof where, " AND c1 = %d", x);
        else if (kind == 4) snprintf(where, sizeof where, " AND c1 = %d AND c2 %s '%s'", x, op1, c2v);
        else if (kind == 5) snprintf(where, sizeof where, " AND (c1, c2) %s (%d, '%s')", op1[0] == '>' ? "<=" : ">=", x, c2v);
        snprintf(q, sizeof q, "SELECT c1, c2, v FROM m WHERE k = 1%s%s%s", where,
                 asc ? " ORDER BY c1 ASC" : "", limit ? "" : "");
        if (limit) snprintf(q + strlen(q), sizeof q - strlen(q), " LIMIT %d", lim);
        /* expected */
        mrow exp[64];
        int ne = 0;
        for (int i = 0; i < n; i++) {
            const mrow *m = &model[i];
            bool keep = true;
            const char *o1 = kind == 2 ? (op1[0] == '>' ? op1 : ">") : op1;
            const char *o2 = op2[0] == '<' ? op2 : "<";
            int cmp1 = (m->c1 > x) - (m->c1 < x);
            if (kind == 1 || kind == 2)
                keep = !strcmp(o1, ">") ? cmp1 > 0 : !strcmp(o1, ">=") ? cmp1 >= 0 : !strcmp(o1, "<") ? cmp1 < 0 : cmp1 <= 0;
            if (kind == 2) keep = keep && (!strcmp(o2, "<") ? m->c1 < y : m->c1 <= y);
            if (kind == 3) keep = m->c1 == x;
            if (kind == 4) {
                int c = strcmp(m->c2, c2v);
                keep = m->c1 == x && (!strcmp(op1, ">") ? c > 0 : !strcmp(op1, ">=") ? c >= 0 : !strcmp(op1, "<") ? c < 0 : c <= 0);
            }
            if (kind == 5) {
                /* tuple order: (c1, c2) compared as values: c1 then c2 */
                int c = m->c1 != x ? (m->c1 > x ? 1 : -1) : strcmp(m->c2, c2v);
                keep = op1[0] == '>' ? c <= 0 : c >= 0;
            }
            if (keep) exp[ne++] = *m;
        }
        for (int i = 0; i < ne; i++)
            for (int j = i + 1; j < ne; j++) {
                int c = model_cmp(&exp[i], &exp[j]);
                if (asc ? c < 0 : c > 0) {
                    mrow t = exp[i];
                    exp[i] = exp[j];
                    exp[j] = t;
                }
            }
        if (limit && ne > lim) ne = lim;
        /* actual, page by page */
        uint8_t ps[512];
        int32_t pslen = 0;
        int got = 0;
        for (int pg = 0; pg < 100; pg++) {
            rows *o = query_p(q, page, pslen ? ps : NULL, pslen, NULL, 0, 1);
            if (kind == 5) { /* a tuple over columns of mixed clustering order: refused */
                cr_assert_eq(o->err, 0x2200, "%s", q);
                rows_free(o);
                got = -1;
                break;
            }
            cr_assert_eq(o->r.opcode, 0x08, "%s: 0x%x %s", q, o->err, o->msg);
            for (uint32_t i = 0; i < o->nrows; i++, got++) {
                cr_assert_lt(got, ne, "%s: too many rows", q);
                cr_assert_eq(cell_int(o, i, 0), exp[got].c1, "%s row %d", q, got);
                cr_assert_eq(cell_int(o, i, 2), exp[got].v, "%s row %d", q, got);
            }
            bool more = o->flags & 0x02;
            if (more) {
                memcpy(ps, o->paging, (size_t)o->paging_len);
                pslen = o->paging_len;
            }
            rows_free(o);
            if (!more) break;
        }
        if (got >= 0) cr_assert_eq(got, ne, "%s: %d rows, expected %d", q, got, ne);
    }
#undef RND
}

/* Differential test across partitions: scans (token order), IN lists (ring order, duplicates
 * once), PER PARTITION LIMIT, LIMIT, filtering, DISTINCT, count, random page sizes. */
typedef struct prow {
    int k, c, v;
    int64_t tok;
} prow;

static int prow_cmp(const void *a, const void *b) {
    const prow *x = a, *y = b;
    if (x->tok != y->tok) return x->tok < y->tok ? -1 : 1;
    if (x->k != y->k) return x->k < y->k ? -1 : 1;
    return (x->c > y->c) - (x->c < y->c);
}

Test(exec, random_multi_partition_queries_match_model, .timeout = 120) {
    schema_basic();
    ok("CREATE TABLE mp (k int, c int, v int, PRIMARY KEY (k, c))");
    prow model[128];
    int n = 0;
    uint64_t st = 4242;
#define RND() (st ^= st << 13, st ^= st >> 7, st ^= st << 17, st)
    char q[256];
    for (int k = 0; k < 8; k++)
        for (int c = 0; c < 6; c++) {
            if (RND() % 2) continue;
            uint8_t kb[4];
            be32_put(kb, (uint32_t)k);
            model[n] = (prow){k, c, (int)(RND() % 10), murmur3_token(kb, 4)};
            snprintf(q, sizeof q, "INSERT INTO mp (k, c, v) VALUES (%d, %d, %d)", k, c, model[n].v);
            ok(q);
            n++;
        }
    qsort(model, (size_t)n, sizeof *model, prow_cmp);
    for (int it = 0; it < 400; it++) {
        int mode = (int)(RND() % 4);   /* 0 scan, 1 IN, 2 DISTINCT scan, 3 count */
        int ppl = RND() % 3 == 0 ? 1 + (int)(RND() % 3) : 0;
        int lim = RND() % 3 == 0 ? 1 + (int)(RND() % 12) : 0;
        int vmin = RND() % 3 == 0 ? (int)(RND() % 10) : -1;
        int page = 1 + (int)(RND() % 7);
        bool inset[8] = {false};
        char where[128] = "";
        if (mode == 1) {
            strcpy(where, " WHERE k IN (");
            int m = 1 + (int)(RND() % 5);
            for (int i = 0; i < m; i++) {
                int k = (int)(RND() % 9); /* 8: a partition that does not exist */
                if (k < 8) inset[k] = true;
                snprintf(where + strlen(where), sizeof where - strlen(where), "%s%d", i ? ", " : "", k);
            }
            strcat(where, ")");
        }
        if (vmin >= 0 && mode != 2)
            snprintf(where + strlen(where), sizeof where - strlen(where), "%s v >= %d", where[0] ? " AND" : " WHERE", vmin);
        int cmin = mode != 2 && RND() % 3 == 0 ? (int)(RND() % 6) : -1;
        if (cmin >= 0)
            snprintf(where + strlen(where), sizeof where - strlen(where), "%s c >= %d", where[0] ? " AND" : " WHERE", cmin);
        bool tok = mode != 1 && RND() % 3 == 0;
        int64_t tmin = tok ? model[RND() % (uint64_t)n].tok : INT64_MIN;
        if (tok)
            snprintf(where + strlen(where), sizeof where - strlen(where), "%s token(k) > %lld", where[0] ? " AND" : " WHERE", (long long)tmin);
        snprintf(q, sizeof q, "SELECT %s FROM mp%s", mode == 2 ? "DISTINCT k" : mode == 3 ? "count(*)" : "k, c, v", where);
        if (ppl && mode != 2) snprintf(q + strlen(q), sizeof q - strlen(q), " PER PARTITION LIMIT %d", ppl);
        if (lim) snprintf(q + strlen(q), sizeof q - strlen(q), " LIMIT %d", lim);
        if ((vmin >= 0 && mode != 2) || (cmin >= 0 && mode != 1)) strcat(q, " ALLOW FILTERING");
        prow exp[128];
        int ne = 0, taken_in_part = 0, lastk = -1;
        for (int i = 0; i < n; i++) {
            const prow *m = &model[i];
            if (mode == 1 && !inset[m->k]) continue;
            if (vmin >= 0 && mode != 2 && m->v < vmin) continue;
            if (cmin >= 0 && m->c < cmin) continue;
            if (tok && m->tok <= tmin) continue;
            if (m->k != lastk) {
                lastk = m->k;
                taken_in_part = 0;
            }
            if (mode == 2 && taken_in_part >= 1) continue;
            if (ppl && mode != 2 && taken_in_part >= ppl) continue;
            taken_in_part++;
            exp[ne++] = *m;
        }
        if (mode == 3) {
            rows *o = query_p(q, page, NULL, 0, NULL, 0, 1);
            cr_assert_eq(o->nrows, 1, "%s: 0x%x %s", q, o->err, o->msg);
            cr_assert_eq((int64_t)be64_get(o->cell[0][0]), ne, "%s", q);
            rows_free(o);
            continue;
        }
        if (lim && ne > lim) ne = lim;
        uint8_t ps[512];
        int32_t pslen = 0;
        int got = 0;
        for (int pg = 0; pg < 200; pg++) {
            rows *o = query_p(q, page, pslen ? ps : NULL, pslen, NULL, 0, 1);
            cr_assert_eq(o->r.opcode, 0x08, "%s: 0x%x %s", q, o->err, o->msg);
            for (uint32_t i = 0; i < o->nrows; i++, got++) {
                cr_assert_lt(got, ne, "%s: too many rows", q);
                cr_assert_eq(cell_int(o, i, 0), exp[got].k, "%s page size %d row %d: k %d c %d, expected k %d c %d", q, page, got,
                             cell_int(o, i, 0), mode != 2 ? cell_int(o, i, 1) : -1, exp[got].k, exp[got].c);
                if (mode != 2) cr_assert_eq(cell_int(o, i, 1), exp[got].c, "%s page size %d row %d: c %d expected %d", q, page, got, cell_int(o, i, 1), exp[got].c);
            }
            bool more = o->flags & 0x02;
            if (more) {
                memcpy(ps, o->paging, (size_t)o->paging_len);
                pslen = o->paging_len;
            }
            rows_free(o);
            if (!more) break;
        }
        cr_assert_eq(got, ne, "%s: %d rows, expected %d", q, got, ne);
    }
#undef RND
}

/* Differential test of writes: random INSERT / UPDATE / DELETE (cells, rows, partitions,
 * static columns) with increasing timestamps, then every partition read back and compared with
 * a model of Cassandra's semantics (row markers, tombstones, static rows). */
typedef struct wcell {
    bool set;
    int val;
} wcell;

typedef struct wrow {
    bool marker;
    wcell v, w;
} wrow;

Test(exec, random_writes_match_model, .timeout = 120) {
    schema_basic();
    ok("CREATE TABLE wm (k int, c int, s int STATIC, v int, w int, PRIMARY KEY (k, c))");
    enum { NK = 4, NC = 4 };
    wrow rowm[NK][NC];
    wcell stat[NK];
    memset(rowm, 0, sizeof rowm);
    memset(stat, 0, sizeof stat);
    uint64_t st = 99;
#define RND() (st ^= st << 13, st ^= st >> 7, st ^= st << 17, st)
    char q[200];
    long long ts = 1000;
    for (int it = 0; it < 600; it++) {
        int k = (int)(RND() % NK), c = (int)(RND() % NC), x = (int)(RND() % 100);
        int op = (int)(RND() % 9);
        ts++;
        switch (op) {
        case 0: case 1:
            snprintf(q, sizeof q, "INSERT INTO wm (k, c, v) VALUES (%d, %d, %d) USING TIMESTAMP %lld", k, c, x, ts);
            rowm[k][c].marker = true;
            rowm[k][c].v = (wcell){true, x};
            break;
        case 2:
            snprintf(q, sizeof q, "INSERT INTO wm (k, c, w, s) VALUES (%d, %d, %d, %d) USING TIMESTAMP %lld", k, c, x, x + 1, ts);
            rowm[k][c].marker = true;
            rowm[k][c].w = (wcell){true, x};
            stat[k] = (wcell){true, x + 1};
            break;
        case 3:
            snprintf(q, sizeof q, "UPDATE wm USING TIMESTAMP %lld SET w = %d WHERE k = %d AND c = %d", ts, x, k, c);
            rowm[k][c].w = (wcell){true, x};
            break;
        case 4:
            snprintf(q, sizeof q, "DELETE v FROM wm USING TIMESTAMP %lld WHERE k = %d AND c = %d", ts, k, c);
            rowm[k][c].v.set = false;
            break;
        case 5:
            snprintf(q, sizeof q, "DELETE FROM wm USING TIMESTAMP %lld WHERE k = %d AND c = %d", ts, k, c);
            memset(&rowm[k][c], 0, sizeof rowm[k][c]);
            break;
        case 6:
            if (RND() % 4) continue;
            snprintf(q, sizeof q, "DELETE FROM wm USING TIMESTAMP %lld WHERE k = %d", ts, k);
            memset(rowm[k], 0, sizeof rowm[k]);
            stat[k].set = false;
            break;
        case 7:
            snprintf(q, sizeof q, "UPDATE wm USING TIMESTAMP %lld SET s = %d WHERE k = %d", ts, x, k);
            stat[k] = (wcell){true, x};
            break;
        default:
            snprintf(q, sizeof q, "DELETE s FROM wm USING TIMESTAMP %lld WHERE k = %d", ts, k);
            stat[k].set = false;
            break;
        }
        ok(q);
        if (it % 150 == 149) cr_assert_eq(storage_flush(E.eng, 0, true), 0); /* reads merge SSTables too */
        if (it % 50 != 49) continue;
        for (int kk = 0; kk < NK; kk++) {
            snprintf(q, sizeof q, "SELECT c, s, v, w FROM wm WHERE k = %d", kk);
            rows *o = query(q);
            cr_assert_eq(o->r.opcode, 0x08);
            uint32_t got = 0;
            for (int cc = 0; cc < NC; cc++) {
                const wrow *m = &rowm[kk][cc];
                if (!m->marker && !m->v.set && !m->w.set) continue;
                cr_assert_lt(got, o->nrows, "k %d: missing row c %d (iteration %d)", kk, cc, it);
                cr_assert_eq(cell_int(o, got, 0), cc, "k %d row %u", kk, got);
                if (stat[kk].set) cr_assert_eq(cell_int(o, got, 1), stat[kk].val);
                else cr_assert_eq(o->clen[got][1], -1);
                if (m->v.set) cr_assert_eq(cell_int(o, got, 2), m->v.val);
                else cr_assert_eq(o->clen[got][2], -1, "k %d c %d: v should be null", kk, cc);
                if (m->w.set) cr_assert_eq(cell_int(o, got, 3), m->w.val);
                else cr_assert_eq(o->clen[got][3], -1);
                got++;
            }
            if (got == 0 && stat[kk].set) {
                cr_assert_eq(o->nrows, 1, "k %d: static-only partition", kk);
                cr_assert_eq(o->clen[0][0], -1);
                cr_assert_eq(cell_int(o, 0, 1), stat[kk].val);
                got = 1;
            }
            cr_assert_eq(o->nrows, got, "k %d: %u rows, expected %u (iteration %d)", kk, o->nrows, got, it);
            rows_free(o);
        }
    }
#undef RND
}

Test(exec, ttl_expiry) {
    schema_basic();
    ok("CREATE TABLE tt (k int, c int, v int, PRIMARY KEY (k, c)) WITH default_time_to_live = 1");
    ok("INSERT INTO t (k, c, v) VALUES (1, 1, 'gone') USING TTL 1");
    ok("INSERT INTO t (k, c) VALUES (1, 2)");
    ok("UPDATE t USING TTL 1 SET v = 'cell' WHERE k = 1 AND c = 2");
    ok("INSERT INTO tt (k, c, v) VALUES (1, 1, 1)");
    ok("INSERT INTO tt (k, c, v) VALUES (1, 2, 2) USING TTL 0");
    rows *o = query("SELECT c, v FROM t WHERE k = 1");
    cr_assert_eq(o->nrows, 2);
    rows_free(o);
    usleep(2100 * 1000);
    o = query("SELECT c, v FROM t WHERE k = 1");
    cr_assert_eq(o->nrows, 1, "the row written with TTL 1 expired");
    cr_assert_eq(cell_int(o, 0, 0), 2);
    cr_assert_eq(o->clen[0][1], -1, "the cell written with TTL 1 expired; the row marker without TTL stays");
    rows_free(o);
    o = query("SELECT c FROM tt WHERE k = 1");
    cr_assert_eq(o->nrows, 1, "default_time_to_live applies unless USING TTL 0");
    cr_assert_eq(cell_int(o, 0, 0), 2);
    rows_free(o);
}

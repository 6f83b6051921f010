/* Prepared statements run from the cached parse tree: repeated EXECUTEs with varied values
 * (the shared tree is never modified), the keyspace a statement was prepared in, statements in
 * flight while a DROP clears the cache (the request keeps its entry alive), BATCH of prepared
 * ids, and catalog changes between EXECUTEs (the remembered table is looked up again). */
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

typedef struct env {
    char dir[64];
    uv_loop_t loop;
    storage_engine *eng;
    coord *co;
    cql_executor *x;
    cql_session *s;
} env;

static env E;

static void setup_mode(enum storage_sync_mode mode) {
    memset(&E, 0, sizeof E);
    strcpy(E.dir, "/tmp/ilion_prep_XXXXXX");
    cr_assert_not_null(mkdtemp(E.dir));
    uv_loop_init(&E.loop);
    storage_options so;
    storage_options_default(&so);
    char data[96], cl[96];
    snprintf(data, sizeof data, "%s/data", E.dir);
    snprintf(cl, sizeof cl, "%s/commitlog", E.dir);
    so.data_dir = data;
    so.commitlog_dir = cl;
    so.sync_mode = mode;
    so.group_window_ms = 2;
    cr_assert_eq(storage_open(&so, &E.eng), 0);
    cr_assert_eq(coord_create(&E.loop, E.eng, NULL, &E.co), 0);
    cql_executor_options xo;
    memset(&xo, 0, sizeof xo);
    static const uint8_t hid[16] = {1, 2, 3, 4, 5, 6, 0x47, 8, 0x89, 10, 11, 12, 13, 14, 15, 16};
    static const int64_t toks[1] = {0};
    xo.loop = &E.loop;
    xo.coord = E.co;
    xo.engine = E.eng;
    xo.host_id = hid;
    xo.tokens = toks;
    xo.ntokens = 1;
    cr_assert_eq(cql_executor_create(&xo, &E.x), 0);
    E.s = cql_session_new(E.x);
}
static void setup(void) { setup_mode(STORAGE_SYNC_PERIODIC); }
static void setup_batch(void) { setup_mode(STORAGE_SYNC_BATCH); }

static void teardown(void) {
    cql_session_free(E.s);
    cql_executor_destroy(E.x);
    coord_destroy(E.co);
    uv_run(&E.loop, UV_RUN_NOWAIT);
    storage_close(E.eng);
    uv_loop_close(&E.loop);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", E.dir);
    cr_assert_eq(system(cmd), 0);
}

typedef struct resp {
    bool done;
    uint8_t opcode;
    uint8_t *body;
    size_t len;
} resp;

static void on_done(void *arg, cql_response *r) {
    resp *o = arg;
    o->done = true;
    o->opcode = r->opcode;
    o->body = r->body;
    o->len = r->len;
    r->body = NULL;
    free(r->event);
    r->event = NULL;
}

static void wait_done(resp *o) {
    for (int i = 0; i < 100000 && !o->done; i++) uv_run(&E.loop, UV_RUN_ONCE);
    cr_assert(o->done, "no response");
}

static cql_query_params params(cql_value *vals, uint16_t n) {
    cql_query_params p;
    memset(&p, 0, sizeof p);
    p.consistency = 1;
    p.page_size = -1;
    p.values = vals;
    p.nvalues = n;
    p.default_timestamp = INT64_MIN;
    p.serial_consistency = 8;
    return p;
}

static void ok(const char *q) {
    resp r = {0};
    cql_query_params p = params(NULL, 0);
    cr_assert_eq(cql_exec_query(E.x, E.s, q, strlen(q), &p, on_done, &r), 0);
    wait_done(&r);
    cr_assert_eq(r.opcode, 0x08, "%s failed: %.*s", q, r.len > 6 ? (int)r.len - 6 : 0,
                 r.len > 6 ? (const char *)r.body + 6 : "");
    free(r.body);
}

static void prepare(const char *q, uint8_t id[16]) {
    resp r = {0};
    cr_assert_eq(cql_exec_prepare(E.x, E.s, q, strlen(q), on_done, &r), 0);
    wait_done(&r);
    cr_assert_eq(r.opcode, 0x08, "PREPARE %s failed", q);
    rd d;
    rd_init(&d, r.body, r.len);
    uint32_t kind;
    uint16_t idlen;
    const uint8_t *p;
    cr_assert_eq(rd_u32(&d, &kind), 0);
    cr_assert_eq(kind, 4);
    cr_assert_eq(rd_u16(&d, &idlen), 0);
    cr_assert_eq(idlen, 16);
    cr_assert_eq(rd_bytes(&d, 16, &p), 0);
    memcpy(id, p, 16);
    free(r.body);
}

/* Starts an EXECUTE; the answer lands in *r. */
static void execute_async(const uint8_t id[16], cql_value *vals, uint16_t n, resp *r) {
    memset(r, 0, sizeof *r);
    cql_query_params p = params(vals, n);
    cr_assert_eq(cql_exec_execute(E.x, E.s, id, 16, &p, on_done, r), 0);
}

static resp execute(const uint8_t id[16], cql_value *vals, uint16_t n) {
    resp r;
    execute_async(id, vals, n, &r);
    wait_done(&r);
    return r;
}

static uint32_t err_code(const resp *r) {
    cr_assert_eq(r->opcode, 0x00);
    return be32_get(r->body);
}

/* Rows result with metadata: the int cells of column 0, row by row (NULL: -1). */
static uint32_t rows_ints(const resp *r, int32_t *out, uint32_t cap) {
    cr_assert_eq(r->opcode, 0x08);
    rd d;
    rd_init(&d, r->body, r->len);
    uint32_t kind, flags, ncols, nrows;
    cr_assert_eq(rd_u32(&d, &kind), 0);
    cr_assert_eq(kind, 2);
    cr_assert_eq(rd_u32(&d, &flags), 0);
    cr_assert_eq(rd_u32(&d, &ncols), 0);
    cr_assert_eq(flags & 0x06, 0, "no paging state, metadata present");
    if (flags & 0x01) {
        for (int i = 0; i < 2; i++) {
            uint16_t l;
            const uint8_t *p;
            cr_assert_eq(rd_u16(&d, &l), 0);
            cr_assert_eq(rd_bytes(&d, l, &p), 0);
        }
    }
    for (uint32_t c = 0; c < ncols; c++) {
        uint16_t l, ty;
        const uint8_t *p;
        cr_assert_eq(rd_u16(&d, &l), 0);
        cr_assert_eq(rd_bytes(&d, l, &p), 0);
        cr_assert_eq(rd_u16(&d, &ty), 0);
        cr_assert(ty < 0x20, "only simple types here");
    }
    cr_assert_eq(rd_u32(&d, &nrows), 0);
    cr_assert_leq(nrows, cap);
    for (uint32_t i = 0; i < nrows; i++)
        for (uint32_t c = 0; c < ncols; c++) {
            uint32_t l;
            const uint8_t *p = NULL;
            cr_assert_eq(rd_u32(&d, &l), 0);
            if ((int32_t)l > 0) cr_assert_eq(rd_bytes(&d, l, &p), 0);
            if (c == 0) out[i] = (int32_t)l == 4 ? (int32_t)be32_get(p) : -1;
        }
    cr_assert_eq(rd_left(&d), 0);
    return nrows;
}

static cql_value ival(uint8_t *buf4, int32_t v) {
    be32_put(buf4, (uint32_t)v);
    cql_value c = {.data = buf4, .len = 4};
    return c;
}

TestSuite(prepared, .init = setup, .fini = teardown, .timeout = 60);

/* A deterministic mix of writes and range reads through two prepared statements, checked
 * against a model: every EXECUTE binds other values into the same cached tree. */
Test(prepared, repeated_executes_match_a_model) {
    ok("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    ok("USE ks");
    ok("CREATE TABLE t (k int, c int, v int, PRIMARY KEY (k, c))");
    uint8_t ins[16], sel[16];
    prepare("INSERT INTO t (k, c, v) VALUES (?, ?, ?)", ins);
    prepare("SELECT v, c FROM t WHERE k = ? AND c >= ? AND c < ?", sel);
    enum { NK = 8, NC = 16 };
    int32_t model[NK][NC];
    for (int k = 0; k < NK; k++)
        for (int c = 0; c < NC; c++) model[k][c] = -1;
    uint64_t rng = 0x2545F4914F6CDD1DULL;
    for (int i = 0; i < 1500; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        int k = (int)(rng % NK), c = (int)((rng >> 8) % NC), v = (int)((rng >> 20) % 100000);
        uint8_t b[3][4];
        if ((rng >> 40) % 3) {
            cql_value vals[3] = {ival(b[0], k), ival(b[1], c), ival(b[2], v)};
            resp r = execute(ins, vals, 3);
            cr_assert_eq(r.opcode, 0x08);
            free(r.body);
            model[k][c] = v;
        } else {
            int lo = c, hi = c + (int)((rng >> 32) % 6);
            cql_value vals[3] = {ival(b[0], k), ival(b[1], lo), ival(b[2], hi)};
            resp r = execute(sel, vals, 3);
            int32_t got[NC];
            uint32_t n = rows_ints(&r, got, NC);
            uint32_t j = 0;
            for (int cc = lo; cc < hi && cc < NC; cc++)
                if (model[k][cc] >= 0) {
                    cr_assert_lt(j, n, "step %d: missing row k=%d c=%d", i, k, cc);
                    cr_assert_eq(got[j], model[k][cc], "step %d: k=%d c=%d", i, k, cc);
                    j++;
                }
            cr_assert_eq(j, n, "step %d: %u rows, expected %u", i, n, j);
            free(r.body);
        }
    }
}

/* A statement resolves names in the keyspace it was prepared in, whatever the session uses
 * later, including after a prepared USE ran. */
Test(prepared, keyspace_of_preparation) {
    ok("CREATE KEYSPACE a WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    ok("CREATE KEYSPACE b WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    ok("CREATE TABLE a.t (k int PRIMARY KEY, v int)");
    ok("CREATE TABLE b.t (k int PRIMARY KEY, v int)");
    ok("USE a");
    uint8_t ins[16], use_b[16], sel[16];
    prepare("INSERT INTO t (k, v) VALUES (?, ?)", ins);
    prepare("SELECT v FROM t WHERE k = ?", sel);
    prepare("USE b", use_b);
    for (int round = 0; round < 3; round++) {
        resp u = execute(use_b, NULL, 0);
        cr_assert_eq(u.opcode, 0x08);
        free(u.body);
        uint8_t b[2][4];
        cql_value vals[2] = {ival(b[0], round), ival(b[1], 100 + round)};
        resp r = execute(ins, vals, 2);
        cr_assert_eq(r.opcode, 0x08);
        free(r.body);
        resp s = execute(sel, vals, 1);
        int32_t got[4];
        cr_assert_eq(rows_ints(&s, got, 4), 1, "the row went to a.t");
        cr_assert_eq(got[0], 100 + round);
        free(s.body);
    }
    /* The session itself is in b now: its own unqualified names go there. */
    uint8_t sel_b[16];
    prepare("SELECT v FROM t WHERE k = ?", sel_b);
    cr_assert_neq(memcmp(sel_b, sel, 16), 0, "the id covers the keyspace");
    uint8_t b0[4];
    cql_value v0 = ival(b0, 0);
    resp s = execute(sel_b, &v0, 1);
    int32_t got[4];
    cr_assert_eq(rows_ints(&s, got, 4), 0, "b.t is empty");
    free(s.body);
}

/* Catalog changes between EXECUTEs: an unrelated new table keeps the statement working; a
 * dropped and re-created table makes it Unprepared, and once prepared again it sees the new
 * definition. */
Test(prepared, catalog_changes) {
    ok("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    ok("USE ks");
    ok("CREATE TABLE t (k int PRIMARY KEY, v int)");
    uint8_t sel[16], ins[16];
    prepare("SELECT v FROM t WHERE k = ?", sel);
    prepare("INSERT INTO t (k, v) VALUES (?, ?)", ins);
    uint8_t b[2][4];
    cql_value vals[2] = {ival(b[0], 1), ival(b[1], 7)};
    resp r = execute(ins, vals, 2);
    free(r.body);
    ok("CREATE TABLE other (k int PRIMARY KEY)");
    r = execute(sel, vals, 1);
    int32_t got[4];
    cr_assert_eq(rows_ints(&r, got, 4), 1);
    cr_assert_eq(got[0], 7);
    free(r.body);
    ok("DROP TABLE t");
    ok("CREATE TABLE t (k int PRIMARY KEY, w int, v int)");
    r = execute(sel, vals, 1);
    cr_assert_eq(err_code(&r), 0x2500);
    free(r.body);
    prepare("SELECT v FROM t WHERE k = ?", sel);
    r = execute(sel, vals, 1);
    cr_assert_eq(rows_ints(&r, got, 4), 0, "the new table is empty");
    free(r.body);
}

/* BATCH of prepared ids runs the cached trees with each entry's own values. */
Test(prepared, batch_of_prepared_ids) {
    ok("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    ok("USE ks");
    ok("CREATE TABLE t (k int PRIMARY KEY, v int)");
    uint8_t ins[16], sel[16];
    prepare("INSERT INTO t (k, v) VALUES (?, ?)", ins);
    prepare("SELECT v FROM t WHERE k = ?", sel);
    uint8_t b[8][4];
    cql_value v[4][2];
    cql_batch_entry e[4];
    for (int i = 0; i < 4; i++) {
        v[i][0] = ival(b[2 * i], i);
        v[i][1] = ival(b[2 * i + 1], 10 * i + 3);
        e[i] = (cql_batch_entry){.prepared = true, .query_or_id = ins, .len = 16, .nvalues = 2,
                                 .values = v[i]};
    }
    cql_batch bt = {.type = 1, .nentries = 4, .entries = e, .consistency = 1,
                    .serial_consistency = 8, .default_timestamp = INT64_MIN};
    resp r = {0};
    cr_assert_eq(cql_exec_batch(E.x, E.s, &bt, on_done, &r), 0);
    wait_done(&r);
    cr_assert_eq(r.opcode, 0x08);
    free(r.body);
    for (int i = 0; i < 4; i++) {
        resp s = execute(sel, v[i], 1);
        int32_t got[2];
        cr_assert_eq(rows_ints(&s, got, 2), 1);
        cr_assert_eq(got[0], 10 * i + 3);
        free(s.body);
    }
}

TestSuite(prepared_inflight, .init = setup_batch, .fini = teardown, .timeout = 60);

/* In batch sync mode a write is answered only after its fsync, so EXECUTEs are still in flight
 * when the DROP below clears the prepared cache: they keep their entries (no use after free
 * under ASan) and all answer. */
Test(prepared_inflight, drop_while_executes_are_in_flight) {
    ok("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    ok("USE ks");
    ok("CREATE TABLE t (k int PRIMARY KEY, v int)");
    uint8_t ins[16];
    prepare("INSERT INTO t (k, v) VALUES (?, ?)", ins);
    enum { N = 32 };
    static resp rs[N];
    uint8_t b[N][2][4];
    cql_value vals[N][2];
    for (int i = 0; i < N; i++) {
        vals[i][0] = ival(b[i][0], i);
        vals[i][1] = ival(b[i][1], i);
        execute_async(ins, vals[i], 2, &rs[i]);
    }
    int pending = 0;
    for (int i = 0; i < N; i++) pending += !rs[i].done;
    cr_assert_gt(pending, 0, "writes wait for their fsync");
    ok("DROP TABLE t");
    for (int i = 0; i < N; i++) {
        wait_done(&rs[i]);
        free(rs[i].body);
    }
    resp r = execute(ins, vals[0], 2);
    cr_assert_eq(err_code(&r), 0x2500, "the cache forgot the statement");
    free(r.body);
}

/* Every entry holds a parse tree, so the cache is bounded in bytes as well as entries: after
 * many distinct statements the oldest answer Unprepared and the newest still run. */
Test(prepared, cache_bounded_in_bytes) {
    ok("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    ok("USE ks");
    ok("CREATE TABLE t (k int PRIMARY KEY, v int)");
    enum { N = 10000 };   /* > 32 MiB of trees at >= 4 KiB each, < the 20000-entry bound */
    uint8_t first[16], last[16];
    char q[96];
    for (int i = 0; i < N; i++) {
        snprintf(q, sizeof q, "SELECT v FROM t WHERE k = ? LIMIT %d", i + 1);
        prepare(q, i == 0 ? first : last);
    }
    uint8_t b0[4];
    cql_value v0 = ival(b0, 0);
    resp r = execute(first, &v0, 1);
    cr_assert_eq(err_code(&r), 0x2500, "the oldest statement was evicted");
    free(r.body);
    r = execute(last, &v0, 1);
    int32_t got[2];
    cr_assert_eq(rows_ints(&r, got, 2), 0);
    free(r.body);
}

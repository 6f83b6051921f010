/* The coordinator over a real cluster: three nodes on 127.0.0.1-3 in one process and one loop
 * (engine + cluster service + coordinator each), gossip every 100 ms, RF 3. Consistency levels
 * and Unavailable, write timeouts from a replica that never answers, read repair, range scans,
 * hinted handoff across a replica's and the coordinator's restart. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ilion/cluster/cluster.h"
#include "ilion/coord/coord.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"
#include "ilion/util/buf.h"
#include "ilion/util/murmur3.h"

#define TABLE 700
#define N 3

static uv_loop_t loop;
static char tmpdir[64];
static uint16_t port;

typedef struct node {
    storage_engine *eng;
    cluster *cl;
    coord *co;
    bool up;
} node;
static node nodes[N];
static uint32_t hint_window_ms; /* 0: the default */
/* Generous, so that a loaded machine (fsync stalls hit all three nodes at once) does not turn
 * successes into timeouts; the timeout tests set short ones. */
static uint32_t request_timeout_ms;
static enum storage_sync_mode sync_mode;

static void run_ms(uint64_t ms) {
    uv_update_time(&loop);
    uint64_t end = uv_now(&loop) + ms;
    while (uv_now(&loop) < end) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(500);
        uv_update_time(&loop);
    }
}

#define RUN_UNTIL(cond, ms)                                   \
    do {                                                      \
        for (int w_ = 0; w_ < (ms) / 10 && !(cond); w_++) run_ms(10); \
    } while (0)

static void node_start(int i, const char *dc) {
    node *n = &nodes[i];
    char d[128], c[128], h[128], ip[32], seed[64];
    snprintf(d, sizeof d, "%s/n%d/data", tmpdir, i + 1);
    snprintf(c, sizeof c, "%s/n%d/commitlog", tmpdir, i + 1);
    snprintf(h, sizeof h, "%s/n%d/hints", tmpdir, i + 1);
    snprintf(ip, sizeof ip, "127.0.0.%d", i + 1);
    storage_options so;
    storage_options_default(&so);
    so.data_dir = d;
    so.commitlog_dir = c;
    so.sync_mode = sync_mode;
    so.group_window_ms = 2;
    cr_assert_eq(storage_open(&so, &n->eng), 0);
    storage_table_options to;
    storage_table_options_default(&to);
    cr_assert_eq(storage_table_create(n->eng, TABLE, &to), 0);

    cluster_options o;
    cluster_options_default(&o);
    char cd[128];
    snprintf(cd, sizeof cd, "%s/n%d", tmpdir, i + 1);
    o.cluster_name = "Coord Test";
    o.listen_address = ip;
    o.storage_port = port;
    o.data_dir = cd;
    o.gossip_interval_ms = 100;
    o.net_backoff_max_ms = 200;
    o.rng_seed = (uint64_t)(i + 1) * 7777;
    o.dc = dc;
    snprintf(seed, sizeof seed, "127.0.0.1:%u,127.0.0.2:%u", port, port);
    const char *seeds[] = {seed};
    o.seeds = seeds;
    o.nseeds = port ? 1 : 0;
    cr_assert_eq(cluster_create(&loop, &o, &n->cl), 0, "cluster_create %d", i + 1);
    if (!port) port = cluster_local_addr(n->cl)->port;
    cr_assert_eq(cluster_start(n->cl), 0);

    coord_options co;
    coord_options_default(&co);
    co.write_request_timeout_ms = request_timeout_ms;
    co.read_request_timeout_ms = request_timeout_ms;
    co.range_request_timeout_ms = 2 * request_timeout_ms;
    co.hints_directory = h;
    co.hint_check_interval_ms = 100;
    if (hint_window_ms) co.max_hint_window_ms = hint_window_ms;
    cr_assert_eq(coord_create_ex(&loop, n->eng, n->cl, &co, &n->co), 0);
    n->up = true;
}

/* A clean stop: the others hear of it at once. */
static void node_stop(int i) {
    node *n = &nodes[i];
    if (!n->up) return;
    coord_destroy(n->co);
    cluster_stop(n->cl);
    run_ms(50);
    cluster_destroy(n->cl);
    run_ms(20);
    storage_close(n->eng);
    n->up = false;
}

static bool all_alive(void) {
    for (int i = 0; i < N; i++) {
        if (!nodes[i].up) continue;
        if (ring_endpoint_count(cluster_ring(nodes[i].cl)) != N) return false;
        for (int k = 0; k < N; k++)
            if (nodes[k].up && !cluster_is_alive(nodes[i].cl, cluster_local_addr(nodes[k].cl))) return false;
    }
    return true;
}

static void start_all(const char *const *dcs) {
    port = 0;
    for (int i = 0; i < N; i++) node_start(i, dcs ? dcs[i] : NULL);
    RUN_UNTIL(all_alive(), 8000);
    cr_assert(all_alive(), "cluster did not converge");
}

static void setup(void) {
    log_set_level(LOG_LEVEL_ERROR);
    uv_loop_init(&loop);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ilion_cc_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    memset(nodes, 0, sizeof nodes);
    hint_window_ms = 0;
    request_timeout_ms = 8000;
    sync_mode = STORAGE_SYNC_GROUP;
}

static void teardown(void) {
    for (int i = 0; i < N; i++) node_stop(i);
    for (int i = 0; i < 300 && uv_run(&loop, UV_RUN_NOWAIT); i++) usleep(1000);
    cr_expect_eq(uv_loop_close(&loop), 0, "handles left open");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(coord_cluster, .init = setup, .fini = teardown, .timeout = 90);

/* ------------------------------------------------------------------------ helpers --- */

static schema_replication simple(uint32_t rf) {
    schema_replication r;
    memset(&r, 0, sizeof r);
    r.cls = SCHEMA_REPL_SIMPLE;
    r.rf = rf;
    return r;
}

static st_partition *mutation(st_arena *a, const char *key, const char *val, int64_t ts) {
    st_partition *p = st_partition_new(a, TABLE, key, (uint32_t)strlen(key));
    st_row *r = st_partition_row(a, p, "", 0);
    r->marker.ts = ts;
    r->marker.ttl = 0;
    r->marker.expiry = ST_NO_EXPIRY;
    st_row_set_cell(a, r, 1, ts, 0, 0, val, (uint32_t)strlen(val));
    return p;
}

typedef struct wres {
    int calls;
    coord_error e;
    bool err;
} wres;

static void on_write(void *arg, const coord_error *e) {
    wres *w = arg;
    w->calls++;
    w->err = e != NULL;
    if (e) w->e = *e;
}

static wres write_kv(int via, const schema_replication *r, const char *key, const char *val, int64_t ts,
                     enum coord_cl cl) {
    st_arena a;
    arena_init(&a);
    st_partition *m = mutation(&a, key, val, ts);
    wres w = {0};
    cr_assert_eq(coord_write(nodes[via].co, r, &m, 1, cl, COORD_WT_SIMPLE, on_write, &w), 0);
    arena_free(&a);
    RUN_UNTIL(w.calls > 0, 20000);
    cr_assert_eq(w.calls, 1);
    return w;
}

typedef struct rres {
    int calls;
    coord_error e;
    bool err;
    char val[64];
} rres;

static void value_of(const st_partition *p, char *out, size_t n) {
    out[0] = 0;
    if (!p) return;
    for (uint32_t i = 0; i < p->nrows; i++)
        for (uint32_t k = 0; k < p->rows[i].ncells; k++) {
            const st_cell *c = &p->rows[i].cells[k];
            if (c->col == 1 && c->value) snprintf(out, n, "%.*s", (int)c->len, (const char *)c->value);
        }
}

static void on_read(void *arg, const coord_error *e, const st_partition *p) {
    rres *r = arg;
    r->calls++;
    r->err = e != NULL;
    if (e) r->e = *e;
    else value_of(p, r->val, sizeof r->val);
}

static rres read_k(int via, const schema_replication *r, const char *key, enum coord_cl cl) {
    rres x = {0};
    cr_assert_eq(coord_read(nodes[via].co, r, TABLE, key, (uint32_t)strlen(key), NULL, cl, on_read, &x), 0);
    RUN_UNTIL(x.calls > 0, 20000);
    cr_assert_eq(x.calls, 1);
    return x;
}

/* The value a node's own engine holds (no coordinator involved). */
static void engine_value(int i, const char *key, char *out, size_t n) {
    st_arena a;
    arena_init(&a);
    st_partition *p = NULL;
    cr_assert_eq(storage_read(nodes[i].eng, TABLE, key, (uint32_t)strlen(key), NULL, 2000000000, &a, &p), 0);
    value_of(p, out, n);
    arena_free(&a);
}

/* -------------------------------------------------------------------------- tests --- */

Test(coord_cluster, quorum_with_one_node_down_all_unavailable) {
    sync_mode = STORAGE_SYNC_PERIODIC; /* the local replica acknowledges at once */
    start_all(NULL);
    schema_replication r3 = simple(3);
    wres w = write_kv(0, &r3, "k1", "v1", 1000, COORD_CL_ALL);
    cr_assert(!w.err, "ALL with everyone up: %s", w.e.message);
    char v[64];
    for (int i = 0; i < N; i++) {
        engine_value(i, "k1", v, sizeof v);
        cr_assert_str_eq(v, "v1", "node %d", i + 1);
    }
    node_stop(2);
    net_addr a3;
    net_addr_parse("127.0.0.3", port, &a3);
    RUN_UNTIL(!cluster_is_alive(nodes[0].cl, &a3) && !cluster_is_alive(nodes[1].cl, &a3), 5000);
    cr_assert(!cluster_is_alive(nodes[0].cl, &a3));

    w = write_kv(0, &r3, "k2", "v2", 2000, COORD_CL_QUORUM);
    cr_assert(!w.err, "QUORUM with 2 of 3: %s", w.e.message);
    w = write_kv(1, &r3, "k3", "v3", 2000, COORD_CL_TWO);
    cr_assert(!w.err);
    w = write_kv(0, &r3, "k2", "v9", 3000, COORD_CL_ALL);
    cr_assert(w.err);
    cr_assert_eq(w.e.code, 0x1000);
    cr_assert_eq(w.e.cl, COORD_CL_ALL);
    cr_assert_eq(w.e.required, 3);
    cr_assert_eq(w.e.alive, 2);
    w = write_kv(0, &r3, "k2", "v9", 3000, COORD_CL_THREE);
    cr_assert_eq(w.e.code, 0x1000);
    coord_error e;
    cr_assert_eq(coord_check_cl(nodes[0].co, &r3, COORD_CL_ALL, false, &e), ILION_EUNAVAILABLE);
    cr_assert_eq(e.required, 3);
    cr_assert_eq(e.alive, 2);
    cr_assert_eq(coord_check_cl(nodes[0].co, &r3, COORD_CL_QUORUM, false, &e), 0);

    rres r = read_k(1, &r3, "k2", COORD_CL_QUORUM);
    cr_assert(!r.err, "%s", r.e.message);
    cr_assert_str_eq(r.val, "v2");
    r = read_k(0, &r3, "k1", COORD_CL_ALL);
    cr_assert(r.err);
    cr_assert_eq(r.e.code, 0x1000);
    cr_assert_eq(r.e.required, 3);
    cr_assert_eq(r.e.alive, 2);
    r = read_k(0, &r3, "k1", COORD_CL_ANY);
    cr_assert_eq(r.e.code, 0x2200);
}

Test(coord_cluster, write_timeout_when_a_replica_never_answers) {
    request_timeout_ms = 2000;
    start_all(NULL);
    schema_replication r3 = simple(3);
    /* Node 3 keeps gossiping (the detector sees it alive) but drops every mutation. */
    net_register(cluster_messaging(nodes[2].cl), NET_VERB_MUTATION, NULL, NULL);
    wres w = write_kv(0, &r3, "t1", "x", 1000, COORD_CL_ALL);
    cr_assert(w.err);
    cr_assert_eq(w.e.code, 0x1100, "code %x: %s", w.e.code, w.e.message);
    cr_assert_eq(w.e.received, 2);
    cr_assert_eq(w.e.blockfor, 3);
    cr_assert_eq(w.e.cl, COORD_CL_ALL);
    cr_assert_eq(w.e.write_type, COORD_WT_SIMPLE);
    w = write_kv(1, &r3, "t2", "y", 1000, COORD_CL_QUORUM);
    cr_assert(!w.err, "QUORUM is met by the two that answer");
    /* The silent replica gets a hint once its request times out (late state is harmless). */
    coord_stats st;
    coord_get_stats(nodes[0].co, &st);
    RUN_UNTIL((coord_get_stats(nodes[0].co, &st), st.hints_written >= 1), 5000);
    cr_assert_geq(st.hints_written, 1);
    cr_assert_eq(st.write_timeouts, 1);
    /* Reads time out the same way when the replica drops READ. */
    net_register(cluster_messaging(nodes[2].cl), NET_VERB_READ, NULL, NULL);
    rres r = read_k(0, &r3, "t1", COORD_CL_ALL);
    cr_assert(r.err);
    cr_assert_eq(r.e.code, 0x1200);
    cr_assert_eq(r.e.received, 2);
    cr_assert_eq(r.e.blockfor, 3);
    cr_assert(r.e.data_present);
}

Test(coord_cluster, read_repair_fixes_stale_replicas) {
    start_all(NULL);
    schema_replication r3 = simple(3);
    wres w = write_kv(0, &r3, "rr", "old", 1000, COORD_CL_ALL);
    cr_assert(!w.err);
    /* A newer value reaches node 2's engine only. */
    st_arena a;
    arena_init(&a);
    uint64_t pos;
    cr_assert_eq(storage_apply(nodes[1].eng, mutation(&a, "rr", "new", 5000), &pos), 0);
    arena_free(&a);
    char v[64];
    engine_value(0, "rr", v, sizeof v);
    cr_assert_str_eq(v, "old");
    rres r = read_k(0, &r3, "rr", COORD_CL_ALL);
    cr_assert(!r.err, "%s", r.e.message);
    cr_assert_str_eq(r.val, "new");
    coord_stats st;
    coord_get_stats(nodes[0].co, &st);
    cr_assert_eq(st.digest_mismatches, 1);
    cr_assert_eq(st.read_repairs, 2);
    /* The answer waited for the repairs: the stale replicas already hold the new value. */
    for (int i = 0; i < N; i++) {
        engine_value(i, "rr", v, sizeof v);
        cr_assert_str_eq(v, "new", "node %d not repaired", i + 1);
    }
    /* Equal replicas: no mismatch, no repair. */
    r = read_k(2, &r3, "rr", COORD_CL_QUORUM);
    cr_assert_str_eq(r.val, "new");
    coord_get_stats(nodes[2].co, &st);
    cr_assert_eq(st.digest_mismatches, 0);
    /* A key only one replica has, read at QUORUM from a node without it. */
    arena_init(&a);
    cr_assert_eq(storage_apply(nodes[2].eng, mutation(&a, "only3", "z", 7000), &pos), 0);
    arena_free(&a);
    r = read_k(0, &r3, "only3", COORD_CL_QUORUM);
    cr_assert(!r.err);
    /* QUORUM contacts node 1 (itself) and one other: the value shows up when node 3 is one. */
    engine_value(0, "only3", v, sizeof v);
    r = read_k(0, &r3, "only3", COORD_CL_ALL);
    cr_assert_str_eq(r.val, "z");
    engine_value(0, "only3", v, sizeof v);
    cr_assert_str_eq(v, "z");
    engine_value(1, "only3", v, sizeof v);
    cr_assert_str_eq(v, "z");
}

typedef struct scan_res {
    const char *watch;      /* key whose value is recorded */
    char watched[64];
    int parts, done;
    bool err;
    coord_error e;
    int64_t last_token;
    bool ordered;
    int stop_after;
} scan_res;

static int on_part(void *arg, const st_partition *p) {
    scan_res *s = arg;
    if (s->parts && p->token < s->last_token) s->ordered = false;
    s->last_token = p->token;
    s->parts++;
    if (s->watch && p->pklen == strlen(s->watch) && memcmp(p->pk, s->watch, p->pklen) == 0)
        value_of(p, s->watched, sizeof s->watched);
    return s->stop_after && s->parts >= s->stop_after;
}

static void on_scan_done(void *arg, const coord_error *e) {
    scan_res *s = arg;
    s->done++;
    s->err = e != NULL;
    if (e) s->e = *e;
}

static const char *scan_watch;
static scan_res scan_all(int via, const schema_replication *r, enum coord_cl cl, int stop_after) {
    scan_res s = {.ordered = true, .stop_after = stop_after, .watch = scan_watch};
    cr_assert_eq(coord_scan(nodes[via].co, r, TABLE, INT64_MIN, NULL, 0, 0, cl, on_part, on_scan_done, &s), 0);
    RUN_UNTIL(s.done > 0, 10000);
    cr_assert_eq(s.done, 1);
    return s;
}

Test(coord_cluster, range_scan_walks_the_ring) {
    start_all(NULL);
    schema_replication r2 = simple(2), r3 = simple(3);
    int n = 600; /* more than one batch per range for some ranges */
    st_arena a;
    arena_init(&a);
    st_partition **ms = calloc((size_t)n, sizeof *ms);
    char key[32];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "s%04d", i);
        ms[i] = mutation(&a, key, "v", 1000);
    }
    wres w = {0};
    cr_assert_eq(coord_write(nodes[0].co, &r2, ms, (size_t)n, COORD_CL_ALL, COORD_WT_UNLOGGED_BATCH, on_write, &w), 0);
    RUN_UNTIL(w.calls > 0, 20000);
    cr_assert(!w.err, "%s", w.e.message);
    free(ms);
    arena_free(&a);
    /* RF 2: every node holds only part of the data. */
    for (int i = 0; i < N; i++) {
        storage_table_stats ts;
        storage_table_stats_get(nodes[i].eng, TABLE, &ts);
        cr_assert_lt(ts.memtable_partitions, (uint64_t)n);
    }
    for (int via = 0; via < N; via++) {
        scan_res s = scan_all(via, &r2, COORD_CL_ONE, 0);
        cr_assert(!s.err, "%s", s.e.message);
        cr_assert_eq(s.parts, n, "via node %d", via + 1);
        cr_assert(s.ordered);
    }
    scan_res s = scan_all(1, &r2, COORD_CL_QUORUM, 0);
    cr_assert_eq(s.parts, n);
    cr_assert(s.ordered);
    s = scan_all(2, &r2, COORD_CL_ONE, 17);
    cr_assert(!s.err);
    cr_assert_eq(s.parts, 17);
    /* One replica of a key holds a newer value: a scan at ALL merges both and shows it. */
    {
        net_addr rep[2];
        const char *k7 = "s0007";
        cr_assert_eq(cluster_replicas(nodes[0].cl, &r2, murmur3_token(k7, strlen(k7)), rep, 2), 2);
        int holder = rep[1].ip[3] - 1;
        st_arena b;
        arena_init(&b);
        uint64_t pos;
        cr_assert_eq(storage_apply(nodes[holder].eng, mutation(&b, k7, "newer", 5000), &pos), 0);
        arena_free(&b);
        scan_watch = k7;
        for (int via = 0; via < N; via++) {
            scan_res x = scan_all(via, &r2, COORD_CL_ALL, 0);
            cr_assert_eq(x.parts, n);
            cr_assert_str_eq(x.watched, "newer", "via node %d", via + 1);
        }
        scan_watch = NULL;
    }
    /* Resuming after a key gives the rest. */
    scan_res t = {.ordered = true};
    snprintf(key, sizeof key, "s%04d", 5);
    int64_t tok = murmur3_token(key, strlen(key));
    cr_assert_eq(coord_scan(nodes[0].co, &r2, TABLE, tok, key, (uint32_t)strlen(key), 0, COORD_CL_ONE, on_part,
                            on_scan_done, &t), 0);
    RUN_UNTIL(t.done > 0, 10000);
    cr_assert_eq(t.done, 1);
    cr_assert(t.parts > 0 && t.parts < n);
    cr_assert(t.last_token >= tok);
    /* With a node down, ONE still sees everything (RF 2 keeps one copy alive), ALL cannot. */
    node_stop(2);
    net_addr a3;
    net_addr_parse("127.0.0.3", port, &a3);
    RUN_UNTIL(!cluster_is_alive(nodes[0].cl, &a3), 5000);
    s = scan_all(0, &r2, COORD_CL_ONE, 0);
    cr_assert(!s.err, "%s", s.e.message);
    cr_assert_eq(s.parts, n);
    s = scan_all(0, &r3, COORD_CL_ALL, 0);
    cr_assert(s.err);
    cr_assert_eq(s.e.code, 0x1000);
}

static int count_hint_files(int i) {
    char d[128];
    snprintf(d, sizeof d, "%s/n%d/hints", tmpdir, i + 1);
    DIR *dir = opendir(d);
    if (!dir) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dir)))
        if (strstr(de->d_name, ".hints")) n++;
    closedir(dir);
    return n;
}

Test(coord_cluster, hint_delivered_when_the_node_comes_back) {
    start_all(NULL);
    schema_replication r3 = simple(3);
    node_stop(2);
    net_addr a3;
    net_addr_parse("127.0.0.3", port, &a3);
    RUN_UNTIL(!cluster_is_alive(nodes[0].cl, &a3), 5000);
    wres w = write_kv(0, &r3, "h1", "hinted", 1000, COORD_CL_QUORUM);
    cr_assert(!w.err, "%x %s", w.e.code, w.e.message);
    w = write_kv(0, &r3, "h2", "hinted2", 1000, COORD_CL_ONE);
    cr_assert(!w.err);
    coord_stats st;
    coord_get_stats(nodes[0].co, &st);
    cr_assert_eq(st.hints_written, 2);
    cr_assert_eq(st.hints_pending, 2);
    cr_assert_eq(count_hint_files(0), 1);
    node_start(2, NULL);
    RUN_UNTIL((coord_get_stats(nodes[0].co, &st), st.hints_pending == 0), 10000);
    cr_assert_eq(st.hints_delivered, 2);
    cr_assert_eq(count_hint_files(0), 0, "delivered hints are deleted");
    char v[64];
    engine_value(2, "h1", v, sizeof v);
    cr_assert_str_eq(v, "hinted");
    engine_value(2, "h2", v, sizeof v);
    cr_assert_str_eq(v, "hinted2");
    /* Node 3 alone answers at ONE with what the hints brought. */
    node_stop(0);
    node_stop(1);
    rres r = read_k(2, &r3, "h1", COORD_CL_ONE);
    cr_assert(!r.err, "%s", r.e.message);
    cr_assert_str_eq(r.val, "hinted");
}

Test(coord_cluster, hints_survive_a_coordinator_restart) {
    start_all(NULL);
    schema_replication r3 = simple(3), r1 = simple(1);
    node_stop(2);
    net_addr a3;
    net_addr_parse("127.0.0.3", port, &a3);
    RUN_UNTIL(!cluster_is_alive(nodes[0].cl, &a3), 5000);
    wres w = write_kv(0, &r3, "p1", "kept", 1000, COORD_CL_ONE);
    cr_assert(!w.err);
    /* ANY is met by a hint alone: a RF 1 key whose only replica is node 3. */
    char key[32] = "";
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "any%d", i);
        net_addr rep[1];
        cr_assert_eq(cluster_replicas(nodes[0].cl, &r1, murmur3_token(key, strlen(key)), rep, 1), 1);
        if (net_addr_eq(&rep[0], &a3)) break;
    }
    w = write_kv(0, &r1, key, "any", 1000, COORD_CL_ANY);
    cr_assert(!w.err, "%s", w.e.message);
    w = write_kv(0, &r1, key, "one", 1000, COORD_CL_ONE);
    cr_assert_eq(w.e.code, 0x1000);
    coord_stats st;
    coord_get_stats(nodes[0].co, &st);
    cr_assert_eq(st.hints_written, 2);
    /* The coordinator node restarts (engine, cluster and coordinator), then node 3 returns. */
    node_stop(0);
    cr_assert_eq(count_hint_files(0), 1);
    /* A crash in the middle of appending: a torn record at the end is cut off on load. */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "for f in %s/n1/hints/*.hints; do printf '\\000\\000\\001\\000\\001' >> $f; done",
             tmpdir);
    cr_assert_eq(system(cmd), 0);
    node_start(0, NULL);
    coord_get_stats(nodes[0].co, &st);
    cr_assert_eq(st.hints_pending, 2, "hints loaded from disk");
    node_start(2, NULL);
    RUN_UNTIL((coord_get_stats(nodes[0].co, &st), st.hints_pending == 0), 10000);
    cr_assert_eq(st.hints_delivered, 2);
    char v[64];
    engine_value(2, "p1", v, sizeof v);
    cr_assert_str_eq(v, "kept");
    engine_value(2, key, v, sizeof v);
    cr_assert_str_eq(v, "any");
}

Test(coord_cluster, data_centers_local_and_each_quorum) {
    const char *dcs[] = {"dc1", "dc1", "dc2"};
    start_all(dcs);
    schema_replication nts;
    memset(&nts, 0, sizeof nts);
    nts.cls = SCHEMA_REPL_NTS;
    nts.ndcs = 2;
    snprintf(nts.dcs[0].name, sizeof nts.dcs[0].name, "dc1");
    nts.dcs[0].rf = 2;
    snprintf(nts.dcs[1].name, sizeof nts.dcs[1].name, "dc2");
    nts.dcs[1].rf = 1;
    wres w = write_kv(0, &nts, "d1", "x", 1000, COORD_CL_EACH_QUORUM);
    cr_assert(!w.err, "%s", w.e.message);
    char v[64];
    for (int i = 0; i < N; i++) {
        engine_value(i, "d1", v, sizeof v);
        cr_assert_str_eq(v, "x", "node %d", i + 1);
    }
    node_stop(2);
    net_addr a3;
    net_addr_parse("127.0.0.3", port, &a3);
    RUN_UNTIL(!cluster_is_alive(nodes[0].cl, &a3) && !cluster_is_alive(nodes[1].cl, &a3), 5000);
    w = write_kv(0, &nts, "d2", "y", 1000, COORD_CL_LOCAL_QUORUM);
    cr_assert(!w.err, "%s", w.e.message);
    w = write_kv(1, &nts, "d2", "y", 1000, COORD_CL_QUORUM);
    cr_assert(!w.err, "%s", w.e.message);
    w = write_kv(0, &nts, "d2", "z", 2000, COORD_CL_EACH_QUORUM);
    cr_assert_eq(w.e.code, 0x1000);
    cr_assert_eq(w.e.required, 1);
    cr_assert_eq(w.e.alive, 0);
    rres r = read_k(1, &nts, "d2", COORD_CL_LOCAL_QUORUM);
    cr_assert(!r.err, "%s", r.e.message);
    cr_assert_str_eq(r.val, "y");
    r = read_k(1, &nts, "d2", COORD_CL_EACH_QUORUM);
    cr_assert_eq(r.e.code, 0x2200, "EACH_QUORUM is for writes");
    node_stop(1);
    net_addr a2;
    net_addr_parse("127.0.0.2", port, &a2);
    RUN_UNTIL(!cluster_is_alive(nodes[0].cl, &a2), 5000);
    w = write_kv(0, &nts, "d3", "q", 1000, COORD_CL_LOCAL_QUORUM);
    cr_assert_eq(w.e.code, 0x1000);
    cr_assert_eq(w.e.required, 2);
    cr_assert_eq(w.e.alive, 1);
    w = write_kv(0, &nts, "d3", "q", 1000, COORD_CL_LOCAL_ONE);
    cr_assert(!w.err);
    r = read_k(0, &nts, "d3", COORD_CL_LOCAL_ONE);
    cr_assert_str_eq(r.val, "q");
}

static int bad_answers, bad_ok;
static void bad_cb(void *arg, int err, uint8_t verb, const uint8_t *p, size_t len) {
    if (err) bad_answers++;
    else bad_ok++;
}

/* Damaged coordinator messages get error answers; the replica keeps serving. */
Test(coord_cluster, damaged_messages_are_refused) {
    start_all(NULL);
    schema_replication r3 = simple(3);
    wres w = write_kv(0, &r3, "good", "v", 1000, COORD_CL_ALL);
    cr_assert(!w.err);
    net_service *ns = cluster_messaging(nodes[0].cl);
    const net_addr *to = cluster_local_addr(nodes[1].cl);
    /* A valid message of each kind, then truncations and random bit flips of it. */
    buf msgs[4];
    for (int i = 0; i < 4; i++) buf_init(&msgs[i]);
    st_arena a;
    arena_init(&a);
    buf enc;
    buf_init(&enc);
    st_partition_encode(mutation(&a, "m", "v", 1), &enc);
    buf_u8(&msgs[0], 1);
    buf_u32(&msgs[0], 1);
    buf_u32(&msgs[0], (uint32_t)enc.len);
    buf_put(&msgs[0], enc.data, enc.len);
    buf_put(&msgs[1], msgs[0].data, msgs[0].len);
    buf_u8(&msgs[2], 1);   /* READ of "good", data */
    buf_u8(&msgs[2], 0);
    buf_u64(&msgs[2], TABLE);
    buf_u32(&msgs[2], 4);
    buf_put(&msgs[2], "good", 4);
    buf_u32(&msgs[2], 2000000000);
    buf_u8(&msgs[2], 0);
    buf_u32(&msgs[2], 0);
    buf_u8(&msgs[3], 1);   /* RANGE_READ of everything */
    buf_u64(&msgs[3], TABLE);
    buf_u64(&msgs[3], (uint64_t)INT64_MIN);
    buf_u8(&msgs[3], 0);
    buf_u64(&msgs[3], (uint64_t)INT64_MAX);
    buf_u32(&msgs[3], 10);
    buf_u32(&msgs[3], 2000000000);
    const uint8_t verbs[4] = {NET_VERB_MUTATION, NET_VERB_HINT, NET_VERB_READ, NET_VERB_RANGE_READ};
    int sent = 0;
    for (int i = 0; i < 4; i++) {
        bad_answers = bad_ok = 0;
        cr_assert_eq(net_request(ns, to, verbs[i], msgs[i].data, msgs[i].len, 3000, bad_cb, NULL, NULL), 0);
        RUN_UNTIL(bad_ok + bad_answers == 1, 3000);
        cr_assert_eq(bad_ok, 1, "the intact %s is served", net_verb_name(verbs[i]));
    }
    srand(4242);
    bad_answers = bad_ok = 0;
    for (int i = 0; i < 4; i++) {
        for (size_t cut = 0; cut < msgs[i].len; cut += 1 + msgs[i].len / 40) {
            cr_assert_eq(net_request(ns, to, verbs[i], msgs[i].data, cut, 3000, bad_cb, NULL, NULL), 0);
            sent++;
        }
        uint8_t *copy = malloc(msgs[i].len);
        for (int k = 0; k < 60; k++) {
            memcpy(copy, msgs[i].data, msgs[i].len);
            for (int f = 0; f < 3; f++) copy[(size_t)rand() % msgs[i].len] ^= (uint8_t)(1 + rand() % 255);
            cr_assert_eq(net_request(ns, to, verbs[i], copy, msgs[i].len, 3000, bad_cb, NULL, NULL), 0);
            sent++;
        }
        free(copy);
        RUN_UNTIL(bad_ok + bad_answers == sent, 5000);
    }
    cr_assert_eq(bad_ok + bad_answers, sent, "every request answered");
    cr_assert_gt(bad_answers, sent / 4);
    for (int i = 0; i < 4; i++) buf_free(&msgs[i]);
    buf_free(&enc);
    arena_free(&a);
    /* Node 2 still serves. */
    rres r = read_k(1, &r3, "good", COORD_CL_ALL);
    cr_assert(!r.err, "%s", r.e.message);
    cr_assert_str_eq(r.val, "v");
}

/* A hint for a table the target does not know yet (schema still on its way) is retried until
 * the table exists there. */
Test(coord_cluster, refused_hint_is_retried) {
    start_all(NULL);
    schema_replication r3 = simple(3);
    storage_table_options to;
    storage_table_options_default(&to);
    for (int i = 0; i < 2; i++) cr_assert_eq(storage_table_create(nodes[i].eng, TABLE + 1, &to), 0);
    node_stop(2);
    net_addr a3;
    net_addr_parse("127.0.0.3", port, &a3);
    RUN_UNTIL(!cluster_is_alive(nodes[0].cl, &a3), 5000);
    st_arena a;
    arena_init(&a);
    st_partition *m = mutation(&a, "late", "schema", 1000);
    m->table_id = TABLE + 1;
    wres w = {0};
    cr_assert_eq(coord_write(nodes[0].co, &r3, &m, 1, COORD_CL_QUORUM, COORD_WT_SIMPLE, on_write, &w), 0);
    arena_free(&a);
    RUN_UNTIL(w.calls > 0, 20000);
    cr_assert(!w.err, "%s", w.e.message);
    node_start(2, NULL);  /* without table TABLE + 1 */
    run_ms(1000);
    coord_stats st;
    coord_get_stats(nodes[0].co, &st);
    cr_assert_eq(st.hints_pending, 1, "refused, kept");
    cr_assert_eq(st.hints_delivered, 0);
    cr_assert_eq(storage_table_create(nodes[2].eng, TABLE + 1, &to), 0);
    RUN_UNTIL((coord_get_stats(nodes[0].co, &st), st.hints_pending == 0), 5000);
    cr_assert_eq(st.hints_delivered, 1);
    st_partition *p = NULL;
    arena_init(&a);
    cr_assert_eq(storage_read(nodes[2].eng, TABLE + 1, "late", 4, NULL, 2000000000, &a, &p), 0);
    char v[64];
    value_of(p, v, sizeof v);
    cr_assert_str_eq(v, "schema");
    arena_free(&a);
}

/* Many requests in flight at once through every coordinator: all complete, reads see the
 * writes. Prints the rates (in-process, loopback, group commit, one loop for all 3 nodes). */
typedef struct pipe_state {
    int issued, done, failed, inflight;
    coord_error last;
    char expect[16];
    int mismatches;
} pipe_state;

static void pipe_wdone(void *arg, const coord_error *e) {
    pipe_state *p = arg;
    p->done++;
    p->inflight--;
    if (e) {
        p->failed++;
        p->last = *e;
    }
}

static void pipe_rdone(void *arg, const coord_error *e, const st_partition *part) {
    pipe_state *p = arg;
    p->done++;
    p->inflight--;
    if (e) {
        p->failed++;
        p->last = *e;
        return;
    }
    char v[64];
    value_of(part, v, sizeof v);
    if (strcmp(v, "pv") != 0) p->mismatches++;
}

static void pipelined(void) {
    start_all(NULL);
    schema_replication r3 = simple(3);
    const int total = 3000, depth = 64;
    pipe_state ws = {0};
    st_arena a;
    arena_init(&a);
    char key[32];
    uint64_t t0 = uv_hrtime();
    while (ws.done < total) {
        while (ws.issued < total && ws.inflight < depth) {
            snprintf(key, sizeof key, "p%05d", ws.issued);
            st_partition *m = mutation(&a, key, "pv", 1000);
            ws.inflight++;
            cr_assert_eq(coord_write(nodes[ws.issued % N].co, &r3, &m, 1, COORD_CL_QUORUM, COORD_WT_SIMPLE,
                                     pipe_wdone, &ws), 0);
            ws.issued++;
        }
        arena_reset(&a);
        uv_run(&loop, UV_RUN_ONCE);
        cr_assert_lt(uv_hrtime() - t0, 30ull * 1000000000ull, "writes take too long");
    }
    double wsec = (double)(uv_hrtime() - t0) / 1e9;
    cr_assert_eq(ws.failed, 0, "%s", ws.last.message);
    run_ms(200); /* the third replica of the last writes */
    pipe_state rs = {0};
    t0 = uv_hrtime();
    while (rs.done < total) {
        while (rs.issued < total && rs.inflight < depth) {
            snprintf(key, sizeof key, "p%05d", rs.issued);
            rs.inflight++;
            cr_assert_eq(coord_read(nodes[rs.issued % N].co, &r3, TABLE, key, (uint32_t)strlen(key), NULL,
                                    COORD_CL_QUORUM, pipe_rdone, &rs), 0);
            rs.issued++;
        }
        uv_run(&loop, UV_RUN_ONCE);
        cr_assert_lt(uv_hrtime() - t0, 30ull * 1000000000ull, "reads take too long");
    }
    double rsec = (double)(uv_hrtime() - t0) / 1e9;
    arena_free(&a);
    cr_assert_eq(rs.failed, 0, "%s", rs.last.message);
    cr_assert_eq(rs.mismatches, 0);
    coord_stats st;
    for (int i = 0; i < N; i++) {
        coord_get_stats(nodes[i].co, &st);
        cr_assert_eq(st.digest_mismatches, 0, "replicas agree after QUORUM writes settle");
    }
    cr_log_info("%d QUORUM writes in %.2f s (%.0f/s), %d QUORUM reads in %.2f s (%.0f/s), depth %d",
                total, wsec, total / wsec, total, rsec, total / rsec, depth);
    fprintf(stderr, "coord_cluster: %d QUORUM writes %.0f/s, QUORUM reads %.0f/s (depth %d, 3 nodes, one loop, %s)\n",
            total, total / wsec, total / rsec, depth, sync_mode == STORAGE_SYNC_GROUP ? "group commit" : "periodic");
}

Test(coord_cluster, pipelined_quorum_writes_and_reads) { pipelined(); }

Test(coord_cluster, pipelined_quorum_writes_and_reads_periodic) {
    sync_mode = STORAGE_SYNC_PERIODIC;
    pipelined();
}

/* Hints older than max_hint_window_ms are dropped, not delivered. */
Test(coord_cluster, old_hints_are_dropped) {
    hint_window_ms = 300;
    start_all(NULL);
    schema_replication r3 = simple(3);
    node_stop(2);
    net_addr a3;
    net_addr_parse("127.0.0.3", port, &a3);
    RUN_UNTIL(!cluster_is_alive(nodes[0].cl, &a3), 5000);
    wres w = write_kv(0, &r3, "old", "x", 1000, COORD_CL_QUORUM);
    cr_assert(!w.err);
    run_ms(600);
    node_start(2, NULL);
    coord_stats st;
    RUN_UNTIL((coord_get_stats(nodes[0].co, &st), st.hints_pending == 0), 5000);
    cr_assert_eq(st.hints_written, 1);
    cr_assert_eq(st.hints_dropped, 1);
    cr_assert_eq(st.hints_delivered, 0);
    cr_assert_eq(count_hint_files(0), 0);
    char v[64];
    engine_value(2, "old", v, sizeof v);
    cr_assert_str_eq(v, "");
}

Test(coord_cluster, truncate_reaches_every_node) {
    start_all(NULL);
    schema_replication r3 = simple(3);
    wres w = write_kv(0, &r3, "tr", "v", 1000, COORD_CL_ALL);
    cr_assert(!w.err);
    w = (wres){0};
    cr_assert_eq(coord_truncate(nodes[1].co, TABLE, on_write, &w), 0);
    RUN_UNTIL(w.calls > 0, 20000);
    cr_assert_eq(w.calls, 1);
    cr_assert(!w.err, "%s", w.e.message);
    char v[64];
    for (int i = 0; i < N; i++) {
        engine_value(i, "tr", v, sizeof v);
        cr_assert_str_eq(v, "", "node %d still has the row", i + 1);
    }
    node_stop(2);
    net_addr a3;
    net_addr_parse("127.0.0.3", port, &a3);
    RUN_UNTIL(!cluster_is_alive(nodes[0].cl, &a3), 5000);
    w = (wres){0};
    cr_assert_eq(coord_truncate(nodes[0].co, TABLE, on_write, &w), 0);
    cr_assert_eq(w.calls, 1);
    cr_assert_eq(w.e.code, 0x1000);
    cr_assert_eq(w.e.required, 3);
    cr_assert_eq(w.e.alive, 2);
}

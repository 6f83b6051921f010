/* Schema propagation (cql/schema_sync.h) between real nodes in one process: each node has its
 * own engine, cluster service (127.77.200.x, gossip every 100 ms), coordinator and executor. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "ilion/cluster/cluster.h"
#include "ilion/coord/coord.h"
#include "ilion/cql/exec.h"
#include "ilion/cql/schema_sync.h"
#include "ilion/storage/engine.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"

#define MAXN 3

typedef struct tnode {
    storage_engine *eng;
    cluster *cl;
    coord *co;
    cql_executor *x;
    cql_session *s;
    cql_schema_sync *sync;
    int events;
    char last_event[256];
} tnode;

static uv_loop_t loop;
static char tmpdir[64];
static tnode N[MAXN];
static uint16_t seed_port;

static void setup(void) {
    log_set_level(LOG_LEVEL_WARN);
    uv_loop_init(&loop);
    memset(N, 0, sizeof N);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ilion_ss_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void run_ms(uint64_t ms) {
    uv_update_time(&loop);
    uint64_t end = uv_now(&loop) + ms;
    while (uv_now(&loop) < end) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(500);
        uv_update_time(&loop);
    }
}

static void on_event(void *arg, const uint8_t *body, size_t len) {
    tnode *n = arg;
    n->events++;
    /* [string]s: keep the printable bytes for the assertions */
    size_t k = 0;
    for (size_t i = 0; i < len && k + 1 < sizeof n->last_event; i++)
        n->last_event[k++] = body[i] >= 0x20 && body[i] < 0x7f ? (char)body[i] : ' ';
    n->last_event[k] = 0;
}

static void node_open(int i) {
    tnode *n = &N[i];
    char dir[128], data[160], cl[160], ip[32], seed[64];
    snprintf(dir, sizeof dir, "%s/n%d", tmpdir, i);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(cl, sizeof cl, "%s/commitlog", dir);
    snprintf(ip, sizeof ip, "127.77.200.%d", i + 1);
    storage_options so;
    storage_options_default(&so);
    so.data_dir = data;
    so.commitlog_dir = cl;
    cr_assert_eq(storage_open(&so, &n->eng), 0);
    cluster_options o;
    cluster_options_default(&o);
    o.cluster_name = "schema-sync-test";
    o.listen_address = ip;
    o.storage_port = i == 0 ? 0 : seed_port;
    o.data_dir = data;
    o.gossip_interval_ms = 100;
    o.net_backoff_max_ms = 300;
    o.rng_seed = 99u + (uint64_t)i;
    snprintf(seed, sizeof seed, "127.77.200.1:%u", seed_port);
    const char *seeds[] = {seed};
    o.seeds = seeds;
    o.nseeds = i == 0 ? 0 : 1;
    int rc = cluster_create(&loop, &o, &n->cl);
    cr_assert_eq(rc, 0, "cluster_create: %s", ilion_strerror(rc));
    if (i == 0) seed_port = cluster_local_addr(n->cl)->port;
    cr_assert_eq(coord_create(&loop, n->eng, n->cl, &n->co), 0);
    cql_executor_options xo;
    memset(&xo, 0, sizeof xo);
    xo.loop = &loop;
    xo.coord = n->co;
    xo.engine = n->eng;
    xo.cluster = n->cl;
    xo.cluster_name = "schema-sync-test";
    xo.listen_address = ip;
    xo.data_center = cluster_local_dc(n->cl);
    xo.rack = cluster_local_rack(n->cl);
    xo.host_id = cluster_host_id(n->cl);
    uint32_t nt;
    xo.tokens = cluster_local_tokens(n->cl, &nt);
    xo.ntokens = nt;
    cr_assert_eq(cql_executor_create(&xo, &n->x), 0);
    n->s = cql_session_new(n->x);
    cr_assert_eq(cql_schema_sync_start(n->x, &loop, 200, on_event, n, &n->sync), 0);
    cr_assert_eq(cluster_start(n->cl), 0);
}

static void node_close(int i) {
    tnode *n = &N[i];
    if (!n->x) return;
    cluster_stop(n->cl);
    cql_schema_sync_detach(n->sync);
    cql_session_free(n->s);
    cql_executor_destroy(n->x);
    coord_destroy(n->co);
    cluster_destroy(n->cl);
    cql_schema_sync_free(n->sync);
    run_ms(50);
    storage_close(n->eng);
    memset(n, 0, sizeof *n);
}

static void teardown(void) {
    for (int i = 0; i < MAXN; i++) node_close(i);
    for (int i = 0; i < 200 && uv_run(&loop, UV_RUN_NOWAIT); i++) usleep(1000);
    cr_expect_eq(uv_loop_close(&loop), 0, "handles left open");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    cr_expect_eq(system(cmd), 0);
}

typedef struct resp {
    bool done;
    uint8_t opcode;
} resp;

static void on_done(void *arg, cql_response *r) {
    resp *o = arg;
    o->done = true;
    o->opcode = r->opcode;
    free(r->body);
    free(r->event);
    r->body = r->event = NULL;
}

static void query(int i, const char *q) {
    resp o = {0};
    cql_query_params p;
    memset(&p, 0, sizeof p);
    p.consistency = 1;
    p.page_size = -1;
    p.default_timestamp = INT64_MIN;
    p.serial_consistency = 8;
    cr_assert_eq(cql_exec_query(N[i].x, N[i].s, q, strlen(q), &p, on_done, &o), 0);
    for (int k = 0; k < 2000 && !o.done; k++) run_ms(5);
    cr_assert(o.done, "no answer to %s", q);
    cr_assert_eq(o.opcode, 0x08, "%s failed on node %d", q, i + 1);
}

static bool has_table(int i, const char *ks, const char *t) {
    uint64_t id;
    return cql_executor_table_ids(N[i].x, ks, t, &id, 1) == 1;
}

static bool wait_for(bool (*cond)(void), int ms) {
    for (int waited = 0; waited < ms; waited += 20) {
        if (cond()) return true;
        run_ms(20);
    }
    return cond();
}

static int nodes_up;
static bool converged(void) {
    for (int i = 0; i < nodes_up; i++) {
        if (cluster_peer_count(N[i].cl) != (size_t)nodes_up - 1) return false;
        for (size_t k = 0; k < (size_t)nodes_up - 1; k++) {
            cluster_peer p;
            if (cluster_peer_get(N[i].cl, k, &p) || !p.alive) return false;
        }
    }
    return true;
}

static bool agreed(void) {
    for (int i = 0; i < nodes_up; i++)
        if (!cluster_schema_agrees(N[i].cl)) return false;
    return true;
}

static bool b_has_t(void) { return has_table(1, "ks", "t"); }
static bool a_lost_t(void) { return !has_table(0, "ks", "t") && has_table(0, "ks", "u"); }
static bool c_has_all(void) { return has_table(2, "ks", "u") && !has_table(2, "ks", "t") && has_table(2, "ks2", "w"); }

TestSuite(schema_sync, .init = setup, .fini = teardown, .timeout = 60);

Test(schema_sync, ddl_reaches_peers_by_push_and_late_node_by_pull) {
    node_open(0);
    node_open(1);
    nodes_up = 2;
    cr_assert(wait_for(converged, 5000), "two nodes did not converge");
    cr_assert(wait_for(agreed, 3000), "empty schemas agree");

    query(0, "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 2}");
    query(0, "CREATE TABLE ks.t (k int PRIMARY KEY, v text)");
    /* pushed before the answer: the peer has it after one loop turn or two */
    cr_assert(wait_for(b_has_t, 1000), "node 2 did not learn ks.t from the push");
    cr_assert(wait_for(agreed, 3000), "no agreement after CREATE");
    cr_assert_geq(N[1].events, 2, "node 2's clients hear of the remote DDL");
    cr_assert(strstr(N[1].last_event, "CREATED") && strstr(N[1].last_event, "TABLE"), "%s",
              N[1].last_event);
    cr_assert_eq(N[0].events, 0, "the DDL's own node answers with the event, no second one");

    /* A drop and a create through node 2 reach node 1. */
    query(1, "DROP TABLE ks.t");
    query(1, "CREATE TABLE ks.u (a int, b int, PRIMARY KEY (a, b))");
    cr_assert(wait_for(a_lost_t, 2000), "node 1 still has ks.t or lacks ks.u");
    cr_assert(wait_for(agreed, 3000), "no agreement after DROP/CREATE");
    query(0, "CREATE KEYSPACE ks2 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    query(0, "CREATE TABLE ks2.w (k int PRIMARY KEY)");

    /* A node that starts afterwards learns everything (tombstone of ks.t included) by pulling. */
    node_open(2);
    nodes_up = 3;
    cr_assert(wait_for(converged, 5000), "three nodes did not converge");
    cr_assert(wait_for(c_has_all, 5000), "node 3 did not pull the schema");
    cr_assert(wait_for(agreed, 3000), "no agreement with the late node");
    cql_schema_sync_stats st;
    cql_schema_sync_stats_get(N[2].sync, &st);
    cr_assert_geq(st.pulls_sent, 1);
    cr_assert_eq(st.bad_messages, 0);
}

Test(schema_sync, bad_payloads_are_refused) {
    node_open(0);
    node_open(1);
    nodes_up = 2;
    cr_assert(wait_for(converged, 5000));
    query(0, "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    cr_assert(wait_for(agreed, 3000));
    const net_addr *to = cluster_local_addr(N[1].cl);
    net_service *ns = cluster_messaging(N[0].cl);
    srand(7);
    uint8_t junk[300];
    /* wrong format, truncated counts, huge counts, random bytes, a partition of another table */
    uint8_t fmt2[] = {2, 0, 0, 0, 0};
    uint8_t huge[] = {1, 0xff, 0xff, 0xff, 0xff};
    uint8_t trunc[] = {1, 0, 0, 0, 1, 0, 0, 0, 50, 1, 2};
    cr_assert_eq(net_send(ns, to, NET_VERB_SCHEMA_PUSH, fmt2, sizeof fmt2), 0);
    cr_assert_eq(net_send(ns, to, NET_VERB_SCHEMA_PUSH, huge, sizeof huge), 0);
    cr_assert_eq(net_send(ns, to, NET_VERB_SCHEMA_PUSH, trunc, sizeof trunc), 0);
    for (int r = 0; r < 50; r++) {
        size_t n = (size_t)(rand() % (int)sizeof junk);
        for (size_t k = 0; k < n; k++) junk[k] = (uint8_t)rand();
        if (n) junk[0] = 1;
        cr_assert_eq(net_send(ns, to, NET_VERB_SCHEMA_PUSH, junk, n), 0);
    }
    run_ms(500);
    cql_schema_sync_stats st;
    cql_schema_sync_stats_get(N[1].sync, &st);
    cr_assert_geq(st.bad_messages, 40, "bad payloads counted (%llu)", (unsigned long long)st.bad_messages);
    /* Node 2 is fine and still agrees; later DDL still propagates. */
    cr_assert(agreed());
    query(0, "CREATE TABLE ks.t (k int PRIMARY KEY)");
    cr_assert(wait_for(b_has_t, 2000));
}

/* Schema propagation support: rows of one node's schema table applied to another node's, then
 * schema_store_reload rebuilds that node's catalog and reports each change. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../../src/cql/exec_int.h"
#include "ilion/util/clock.h"

typedef struct node {
    char dir[64];
    uv_loop_t loop;
    storage_engine *eng;
    coord *co;
    cql_executor *x;
    cql_session *s;
} node;

static void node_open(node *n) {
    strcpy(n->dir, "/tmp/ilion_reload_XXXXXX");
    cr_assert_not_null(mkdtemp(n->dir));
    char d[96], c[96];
    snprintf(d, sizeof d, "%s/data", n->dir);
    snprintf(c, sizeof c, "%s/cl", n->dir);
    storage_options so;
    storage_options_default(&so);
    so.data_dir = d;
    so.commitlog_dir = c;
    cr_assert_eq(storage_open(&so, &n->eng), 0);
    uv_loop_init(&n->loop);
    cr_assert_eq(coord_create(&n->loop, n->eng, NULL, &n->co), 0);
    cql_executor_options xo;
    memset(&xo, 0, sizeof xo);
    xo.loop = &n->loop;
    xo.coord = n->co;
    xo.engine = n->eng;
    cr_assert_eq(cql_executor_create(&xo, &n->x), 0);
    n->s = cql_session_new(n->x);
}

static void node_close(node *n) {
    cql_session_free(n->s);
    cql_executor_destroy(n->x);
    coord_destroy(n->co);
    uv_run(&n->loop, UV_RUN_DEFAULT);
    uv_loop_close(&n->loop);
    storage_close(n->eng);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", n->dir);
    cr_assert_eq(system(cmd), 0);
}

static uint8_t last_op;
static void on_done(void *arg, cql_response *r) {
    last_op = r->opcode;
    free(r->body);
    free(r->event);
    r->body = r->event = NULL;
}

static void run(node *n, const char *q) {
    cql_query_params p;
    memset(&p, 0, sizeof p);
    p.consistency = 1;
    p.page_size = -1;
    p.default_timestamp = INT64_MIN;
    last_op = 0xFF;
    cr_assert_eq(cql_exec_query(n->x, n->s, q, strlen(q), &p, on_done, NULL), 0);
    cr_assert_eq(last_op, 0x08, "%s failed", q);
}

static int copy_part(void *arg, const st_partition *p) {
    node *to = arg;
    uint64_t pos;
    cr_assert_eq(storage_apply(to->eng, p, &pos), 0);
    return 0;
}

static void push_schema(node *from, node *to) {
    cr_assert_eq(storage_scan(from->eng, EXEC_SCHEMA_TABLE_ID, INT64_MIN, NULL, 0, INT64_MAX, 0,
                              clock_now_s(), copy_part, to), 0);
}

static char events[16][96];
static int nevents;
static void on_change(void *arg, const char *change, const char *target, const char *ks,
                      const char *table) {
    if (nevents < 16)
        snprintf(events[nevents++], sizeof events[0], "%s %s %s%s%s", change, target, ks,
                 table ? "." : "", table ? table : "");
}

Test(reload, schema_rows_from_another_node) {
    node a, b;
    node_open(&a);
    node_open(&b);
    run(&a, "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    run(&a, "CREATE TABLE ks.t (k int PRIMARY KEY, v text)");
    run(&a, "CREATE TABLE ks.u (k int PRIMARY KEY)");
    cr_assert_neq(memcmp(a.x->cat->version, b.x->cat->version, 16), 0);
    push_schema(&a, &b);
    nevents = 0;
    cr_assert_eq(schema_store_reload(b.x, on_change, NULL), 0);
    cr_assert_eq(nevents, 3);
    cr_assert_str_eq(events[0], "CREATED KEYSPACE ks");
    cr_assert_str_eq(events[1], "CREATED TABLE ks.t");
    cr_assert_str_eq(events[2], "CREATED TABLE ks.u");
    cr_assert_eq(memcmp(a.x->cat->version, b.x->cat->version, 16), 0, "same schema, same version");
    run(&b, "INSERT INTO ks.t (k, v) VALUES (1, 'b')");
    /* nothing new: no events */
    nevents = 0;
    cr_assert_eq(schema_store_reload(b.x, on_change, NULL), 0);
    cr_assert_eq(nevents, 0);
    run(&a, "DROP TABLE ks.u");
    run(&a, "ALTER KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 2}");
    push_schema(&a, &b);
    nevents = 0;
    cr_assert_eq(schema_store_reload(b.x, on_change, NULL), 0);
    cr_assert_eq(nevents, 2);
    cr_assert_str_eq(events[0], "UPDATED KEYSPACE ks");
    cr_assert_str_eq(events[1], "DROPPED TABLE ks.u");
    cr_assert_null(schema_table_get(b.x->cat, "ks", "u"));
    cr_assert_eq(schema_keyspace_get(b.x->cat, "ks")->repl.rf, 2);
    cr_assert_eq(memcmp(a.x->cat->version, b.x->cat->version, 16), 0);
    run(&a, "DROP KEYSPACE ks");
    push_schema(&a, &b);
    nevents = 0;
    cr_assert_eq(schema_store_reload(b.x, on_change, NULL), 0);
    cr_assert_eq(nevents, 1);
    cr_assert_str_eq(events[0], "DROPPED KEYSPACE ks");
    cr_assert_null(schema_keyspace_get(b.x->cat, "ks"));
    node_close(&a);
    node_close(&b);
}

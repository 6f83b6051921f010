/* Paxos: ballots, the durable replica state, single-node CAS, and three replicas over real
 * messaging on 127.0.0.1-3 in one process (concurrent CAS increments, re-proposal of a value
 * accepted by one replica, failed conditions completing the round, Unavailable). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ilion/cluster/cluster.h"
#include "ilion/paxos/paxos.h"
#include "ilion/util/buf.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"

#define TABLE 900
#define N 3

static uv_loop_t loop;
static char tmpdir[64];
static uint16_t port;

typedef struct node {
    storage_engine *eng;
    cluster *cl;
    paxos *px;
    bool up;
} node;
static node nodes[N];

static void run_ms(uint64_t ms) {
    uv_update_time(&loop);
    uint64_t end = uv_now(&loop) + ms;
    while (uv_now(&loop) < end) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(300);
        uv_update_time(&loop);
    }
}

#define RUN_UNTIL(cond, ms)                                             \
    do {                                                                \
        for (int w_ = 0; w_ < (ms) / 5 && !(cond); w_++) run_ms(5);     \
    } while (0)

static void open_engine(int i, storage_engine **out) {
    char d[128], c[128];
    snprintf(d, sizeof d, "%s/n%d/data", tmpdir, i + 1);
    snprintf(c, sizeof c, "%s/n%d/commitlog", tmpdir, i + 1);
    storage_options so;
    storage_options_default(&so);
    so.data_dir = d;
    so.commitlog_dir = c;
    so.sync_mode = STORAGE_SYNC_GROUP;
    so.group_window_ms = 2;
    cr_assert_eq(storage_open(&so, out), 0);
    storage_table_options to;
    storage_table_options_default(&to);
    cr_assert_eq(storage_table_create(*out, TABLE, &to), 0);
}

/* An injected wall clock for ballots (0: the real one). */
static int64_t fake_us;
static uint32_t state_ttl_s;
static int64_t fake_clock(void *arg) {
    (void)arg;
    return fake_us;
}

static void open_paxos(int i, bool with_cluster) {
    node *n = &nodes[i];
    char d[128];
    snprintf(d, sizeof d, "%s/n%d", tmpdir, i + 1);
    paxos_options po;
    paxos_options_default(&po);
    if (fake_us) po.clock_us = fake_clock;
    if (state_ttl_s) po.state_ttl_s = state_ttl_s;
    po.data_dir = d;
    po.rng_seed = (uint64_t)(i + 1) * 31337;
    po.cas_contention_timeout_ms = 5000;
    po.request_timeout_ms = 5000;
    cr_assert_eq(paxos_create(&loop, n->eng, with_cluster ? n->cl : NULL, &po, &n->px), 0);
}

static const char *node_dc[N]; /* NULL: the default */

static void node_start(int i) {
    node *n = &nodes[i];
    char ip[32], seed[64], cd[128];
    open_engine(i, &n->eng);
    snprintf(ip, sizeof ip, "127.0.0.%d", i + 1);
    snprintf(cd, sizeof cd, "%s/n%d", tmpdir, i + 1);
    cluster_options o;
    cluster_options_default(&o);
    o.cluster_name = "Paxos Test";
    o.listen_address = ip;
    o.storage_port = port;
    o.data_dir = cd;
    o.gossip_interval_ms = 100;
    o.net_backoff_max_ms = 200;
    o.rng_seed = (uint64_t)(i + 1) * 7777;
    o.dc = node_dc[i];
    snprintf(seed, sizeof seed, "127.0.0.1:%u,127.0.0.2:%u", port, port);
    const char *seeds[] = {seed};
    o.seeds = seeds;
    o.nseeds = port ? 1 : 0;
    cr_assert_eq(cluster_create(&loop, &o, &n->cl), 0, "cluster_create %d", i + 1);
    if (!port) port = cluster_local_addr(n->cl)->port;
    cr_assert_eq(cluster_start(n->cl), 0);
    open_paxos(i, true);
    n->up = true;
}

static void node_stop(int i) {
    node *n = &nodes[i];
    if (!n->up) return;
    paxos_destroy(n->px);
    run_ms(20);
    if (n->cl) {
        cluster_stop(n->cl);
        run_ms(50);
        cluster_destroy(n->cl);
        run_ms(20);
    }
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

static void start_all(void) {
    port = 0;
    for (int i = 0; i < N; i++) node_start(i);
    RUN_UNTIL(all_alive(), 8000);
    cr_assert(all_alive(), "cluster did not converge");
}

static void setup(void) {
    log_set_level(LOG_LEVEL_ERROR);
    uv_loop_init(&loop);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ilion_px_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    memset(nodes, 0, sizeof nodes);
    fake_us = 0;
    state_ttl_s = 0;
    memset(node_dc, 0, sizeof node_dc);
}

static void teardown(void) {
    for (int i = 0; i < N; i++) node_stop(i);
    for (int i = 0; i < 300 && uv_run(&loop, UV_RUN_NOWAIT); i++) usleep(1000);
    cr_expect_eq(uv_loop_close(&loop), 0, "handles left open");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(paxos, .init = setup, .fini = teardown, .timeout = 120);

/* ------------------------------------------------------------------------ helpers --- */

static schema_replication simple3(void) {
    schema_replication r;
    memset(&r, 0, sizeof r);
    r.cls = SCHEMA_REPL_SIMPLE;
    r.rf = 3;
    return r;
}

/* The register: row "" of partition key, column 1 = u64 big-endian. -1: absent. */
static int64_t reg_value(const st_partition *p) {
    if (!p) return -1;
    for (uint32_t i = 0; i < p->nrows; i++)
        for (uint32_t j = 0; j < p->rows[i].ncells; j++) {
            const st_cell *c = &p->rows[i].cells[j];
            if (c->col == 1 && !(c->flags & ST_CELL_TOMBSTONE) && c->len == 8 && c->ts > p->del.ts)
                return (int64_t)be64_get(c->value);
        }
    return -1;
}

static st_partition *reg_mutation(st_arena *a, const char *key, uint64_t v) {
    st_partition *p = st_partition_new(a, TABLE, key, (uint32_t)strlen(key));
    st_row *r = st_partition_row(a, p, "", 0);
    r->marker.ts = 1;
    r->marker.ttl = 0;
    r->marker.expiry = ST_NO_EXPIRY;
    uint8_t b[8];
    be64_put(b, v);
    st_row_set_cell(a, r, 1, 1, 0, 0, b, 8);
    return p;
}

/* One CAS client: "if value == expected then value = expected + 1". */
typedef struct client {
    const char *key;
    int64_t expected;      /* -1: absent (then writes 0) */
    int64_t wrote;         /* what the applied attempt wrote */
    bool busy;
    int calls;
    paxos_outcome last;
    int64_t seen;          /* value in current */
} client;

static int cond_incr(void *arg, const st_partition *cur, st_arena *a, st_partition **m) {
    client *c = arg;
    int64_t v = reg_value(cur);
    c->seen = v;
    *m = NULL;
    if (v != c->expected) return 0;
    c->wrote = v + 1;
    *m = reg_mutation(a, c->key, (uint64_t)(v + 1));
    return 0;
}

static void on_done(void *arg, const paxos_outcome *o) {
    client *c = arg;
    c->calls++;
    c->busy = false;
    c->last = *o;
    c->last.current = NULL;
    if (!o->err) c->seen = reg_value(o->current);
}

static void cas_start(paxos *px, client *c, paxos_cond_cb cond) {
    schema_replication r = simple3();
    c->busy = true;
    cr_assert_eq(paxos_cas(px, &r, TABLE, c->key, (uint32_t)strlen(c->key), NULL, PAXOS_CL_SERIAL, 4, cond,
                           on_done, c), 0);
}

static paxos_outcome cas_wait(paxos *px, client *c, paxos_cond_cb cond) {
    int before = c->calls;
    cas_start(px, c, cond);
    RUN_UNTIL(c->calls > before, 20000);
    cr_assert_eq(c->calls, before + 1);
    return c->last;
}

__attribute__((unused)) static int cond_never(void *arg, const st_partition *cur, st_arena *a, st_partition **m) {
    client *c = arg;
    c->seen = reg_value(cur);
    *m = NULL;
    return 0;
}

/* --------------------------------------------------------------------- ballots --- */

Test(paxos_ballot, strictly_increasing_whatever_the_clock) {
    paxos_ballot_gen g;
    uint8_t node[6] = {1, 2, 3, 4, 5, 6};
    paxos_ballot_gen_init(&g, node, 77);
    paxos_ballot prev, b;
    memset(&prev, 0, sizeof prev);
    cr_assert(paxos_ballot_is_none(&prev));
    int64_t clock = 1700000000000000LL;
    uint64_t seed = 42;
    for (int i = 0; i < 10000; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        /* the clock jumps back by up to a second now and then */
        clock += (int64_t)(seed >> 40) % 2000 - ((seed >> 20) % 7 == 0 ? 1000000 : 0);
        paxos_ballot_next(&g, clock, &b);
        cr_assert_gt(paxos_ballot_cmp(&b, &prev), 0, "ballot %d not greater", i);
        cr_assert_gt(paxos_ballot_us(&b), paxos_ballot_us(&prev));
        cr_assert_eq(b.b[6] >> 4, 1, "version 1 UUID");
        cr_assert_eq(b.b[8] & 0xc0, 0x80, "RFC 4122 variant");
        prev = b;
    }
    /* A ballot seen from another node far in the future pushes ours past it. */
    paxos_ballot_gen other;
    uint8_t node2[6] = {9, 9, 9, 9, 9, 9};
    paxos_ballot_gen_init(&other, node2, 1);
    paxos_ballot future;
    paxos_ballot_next(&other, clock + 3600LL * 1000000, &future);
    paxos_ballot_observe(&g, &future);
    paxos_ballot_next(&g, clock, &b);
    cr_assert_gt(paxos_ballot_cmp(&b, &future), 0);
    cr_assert_gt(paxos_ballot_us(&b), paxos_ballot_us(&future));
    cr_assert_eq(paxos_ballot_us(&future), clock + 3600LL * 1000000);
}

/* ----------------------------------------------------------------- single node --- */

static void single_open(void) {
    open_engine(0, &nodes[0].eng);
    open_paxos(0, false);
    nodes[0].up = true;
}

Test(paxos, single_node_cas_and_conditions) {
    single_open();
    client c = {.key = "k1", .expected = -1};
    paxos_outcome o = cas_wait(nodes[0].px, &c, cond_incr);
    cr_assert_eq(o.err, 0);
    cr_assert(o.applied);
    /* same expectation again: not applied, the current value is returned */
    o = cas_wait(nodes[0].px, &c, cond_incr);
    cr_assert_eq(o.err, 0);
    cr_assert(!o.applied);
    cr_assert_eq(c.seen, 0);
    c.expected = 0;
    o = cas_wait(nodes[0].px, &c, cond_incr);
    cr_assert(o.applied);
    /* SERIAL read */
    o = cas_wait(nodes[0].px, &c, NULL);
    cr_assert_eq(o.err, 0);
    cr_assert(!o.applied);
    cr_assert_eq(c.seen, 1);
    /* the data is an ordinary write in the engine, with the ballot's timestamp */
    st_arena a;
    arena_init(&a);
    st_partition *p = NULL;
    cr_assert_eq(storage_read(nodes[0].eng, TABLE, "k1", 2, NULL, 2000000000, &a, &p), 0);
    cr_assert_eq(reg_value(p), 1);
    paxos_replica_state s;
    cr_assert_eq(paxos_replica_get(nodes[0].px, TABLE, "k1", 2, &a, &s), 0);
    cr_assert_gt(p->rows[0].cells[0].ts, 1000000, "the ballot's timestamp, not the mutation's");
    cr_assert_lt(p->rows[0].cells[0].ts, paxos_ballot_us(&s.committed));
    cr_assert_eq(paxos_ballot_cmp(&s.promised, &s.committed), 0, "the SERIAL read completed its round");
    cr_assert_null(s.proposal, "a committed proposal is pruned");
    arena_free(&a);
}

typedef struct tres {
    int calls, err;
} tres;
static void on_test(void *arg, int err) {
    tres *t = arg;
    t->calls++;
    t->err = err;
}

Test(paxos, replica_state_survives_restart_and_is_reproposed) {
    single_open();
    client c = {.key = "rk", .expected = -1};
    cr_assert(cas_wait(nodes[0].px, &c, cond_incr).applied);
    /* A proposer that dies after one accept: only the accepted state remains. */
    st_arena a;
    arena_init(&a);
    tres t = {0};
    cr_assert_eq(paxos_test_propose_only(nodes[0].px, TABLE, reg_mutation(&a, "rk", 41), NULL, on_test, &t), 0);
    RUN_UNTIL(t.calls > 0, 5000);
    cr_assert_eq(t.calls, 1);
    cr_assert_eq(t.err, 0);
    paxos_replica_state before, after;
    cr_assert_eq(paxos_replica_get(nodes[0].px, TABLE, "rk", 2, &a, &before), 0);
    cr_assert_not_null(before.proposal);
    /* the reply was sent, so the state is on disk: a restart finds it */
    paxos_destroy(nodes[0].px);
    run_ms(10);
    for (int round = 0; round < 2; round++) {
        open_paxos(0, false);
        cr_assert_eq(paxos_replica_get(nodes[0].px, TABLE, "rk", 2, &a, &after), 0);
        cr_assert_eq(paxos_ballot_cmp(&before.promised, &after.promised), 0);
        cr_assert_eq(paxos_ballot_cmp(&before.accepted, &after.accepted), 0);
        cr_assert_eq(paxos_ballot_cmp(&before.committed, &after.committed), 0);
        cr_assert_eq(after.proposal_len, before.proposal_len);
        cr_assert_eq(memcmp(after.proposal, before.proposal, before.proposal_len), 0);
        if (round == 0) {
            paxos_compact(nodes[0].px); /* the rewritten log must hold the same state */
            run_ms(50);
            paxos_stats st;
            paxos_get_stats(nodes[0].px, &st);
            cr_assert_eq(st.log_compactions, 1);
            paxos_destroy(nodes[0].px);
            run_ms(10);
        }
    }
    /* The next proposer finishes the accepted value first (value 41), then evaluates. */
    c.expected = 1;
    paxos_outcome o = cas_wait(nodes[0].px, &c, cond_incr);
    cr_assert_eq(o.err, 0);
    cr_assert(!o.applied, "the re-proposed 41 replaced 1");
    cr_assert_eq(c.seen, 41);
    paxos_stats st;
    paxos_get_stats(nodes[0].px, &st);
    cr_assert_geq(st.reproposals, 1);
    /* A torn tail (a record cut by a crash) is dropped; the rest loads. */
    paxos_destroy(nodes[0].px);
    run_ms(10);
    char path[160];
    snprintf(path, sizeof path, "%s/n1/paxos/paxos.log", tmpdir);
    FILE *f = fopen(path, "ab");
    cr_assert_not_null(f);
    fwrite("\x00\x00\x01\x00garbage", 1, 11, f);
    fclose(f);
    open_paxos(0, false);
    cr_assert_eq(paxos_replica_get(nodes[0].px, TABLE, "rk", 2, &a, &after), 0);
    cr_assert_gt(paxos_ballot_cmp(&after.committed, &before.accepted), 0);
    arena_free(&a);
}

Test(paxos, corrupt_record_in_the_middle_is_reported) {
    single_open();
    client c = {.key = "ck", .expected = -1};
    for (int i = 0; i < 3; i++) {
        cr_assert(cas_wait(nodes[0].px, &c, cond_incr).applied);
        c.expected++;
    }
    paxos_destroy(nodes[0].px);
    run_ms(10);
    char path[160];
    snprintf(path, sizeof path, "%s/n1/paxos/paxos.log", tmpdir);
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f);
    fseek(f, 30, SEEK_SET);
    int byte = fgetc(f);
    fseek(f, 30, SEEK_SET);
    fputc(byte ^ 0xff, f);
    fclose(f);
    paxos_options po;
    paxos_options_default(&po);
    char d[128];
    snprintf(d, sizeof d, "%s/n1", tmpdir);
    po.data_dir = d;
    cr_assert_eq(paxos_create(&loop, nodes[0].eng, NULL, &po, &nodes[0].px), ILION_ECORRUPT);
    nodes[0].px = NULL;
    storage_close(nodes[0].eng);
    nodes[0].up = false;
}

/* ------------------------------------------------------------- three replicas --- */

#define CLIENTS 6
#define OPS_PER_CLIENT 12

Test(paxos, concurrent_cas_increments_lose_nothing) {
    start_all();
    client cl[CLIENTS];
    char keybuf[] = "reg";
    memset(cl, 0, sizeof cl);
    int done_ops[CLIENTS] = {0};
    int applied = 0, unknown = 0, total = 0;
    int64_t written[CLIENTS * OPS_PER_CLIENT];
    int nwritten = 0;
    for (int i = 0; i < CLIENTS; i++) {
        cl[i].key = keybuf;
        cl[i].expected = -1;
    }
    /* two clients per node, all on one register, each re-trying with what it last saw */
    for (int i = 0; i < CLIENTS; i++) cas_start(nodes[i % N].px, &cl[i], cond_incr);
    uint64_t guard = 0;
    while (total < CLIENTS * OPS_PER_CLIENT && guard++ < 200000) {
        run_ms(1);
        for (int i = 0; i < CLIENTS; i++) {
            if (cl[i].busy || done_ops[i] >= OPS_PER_CLIENT || cl[i].calls == done_ops[i]) continue;
            done_ops[i] = cl[i].calls;
            total++;
            const paxos_outcome *o = &cl[i].last;
            if (o->err == ILION_ETIMEOUT) {
                unknown++;
                cl[i].expected = -2; /* unknown: learn the value from the next round */
            } else {
                cr_assert_eq(o->err, 0, "client %d: %s", i, ilion_strerror(o->err));
                if (o->applied) {
                    applied++;
                    written[nwritten++] = cl[i].wrote;
                    cl[i].expected = cl[i].wrote;
                } else {
                    cl[i].expected = cl[i].seen;
                }
            }
            if (done_ops[i] < OPS_PER_CLIENT) cas_start(nodes[i % N].px, &cl[i], cond_incr);
        }
    }
    cr_assert_eq(total, CLIENTS * OPS_PER_CLIENT, "operations did not finish");
    /* Every applied CAS wrote a distinct value: none overwrote another's. */
    for (int i = 0; i < nwritten; i++)
        for (int k = i + 1; k < nwritten; k++) cr_assert_neq(written[i], written[k], "value %lld written twice", (long long)written[i]);
    /* The final value, read at SERIAL from each node, counts every applied increment once. */
    client r = {.key = keybuf};
    for (int i = 0; i < N; i++) {
        paxos_outcome o = cas_wait(nodes[i].px, &r, NULL);
        cr_assert_eq(o.err, 0);
        int64_t final = r.seen;
        cr_assert_geq(final + 1, applied, "final %lld < %d applied", (long long)final, applied);
        cr_assert_leq(final + 1, applied + unknown);
        for (int k = 0; k < nwritten; k++) cr_assert_leq(written[k], final);
    }
    cr_assert_gt(applied, CLIENTS, "contention should still let most operations through");
    paxos_stats st;
    uint64_t contentions = 0;
    for (int i = 0; i < N; i++) {
        paxos_get_stats(nodes[i].px, &st);
        contentions += st.contentions;
    }
    cr_log_info("applied %d, unknown %d, contentions %llu", applied, unknown, (unsigned long long)contentions);
}

Test(paxos, value_accepted_by_one_replica_is_reproposed) {
    start_all();
    /* With node 3 down, every quorum includes node 2, which alone accepted 77. */
    node_stop(2);
    run_ms(100);
    st_arena a;
    arena_init(&a);
    tres t = {0};
    cr_assert_eq(paxos_test_propose_only(nodes[0].px, TABLE, reg_mutation(&a, "k6012", 77),
                                         cluster_local_addr(nodes[1].cl), on_test, &t), 0);
    RUN_UNTIL(t.calls > 0, 5000);
    cr_assert_eq(t.err, 0);
    paxos_replica_state s;
    cr_assert_eq(paxos_replica_get(nodes[0].px, TABLE, "k6012", 5, &a, &s), ILION_ENOTFOUND);
    client c = {.key = "k6012", .expected = -1};
    paxos_outcome o = cas_wait(nodes[0].px, &c, cond_incr);
    cr_assert_eq(o.err, 0);
    cr_assert(!o.applied, "77 must win: the register is not absent any more");
    cr_assert_eq(c.seen, 77);
    paxos_stats st;
    paxos_get_stats(nodes[0].px, &st);
    cr_assert_geq(st.reproposals, 1);
    /* committed on both live replicas, with the data */
    for (int i = 0; i < 2; i++) {
        st_partition *p = NULL;
        RUN_UNTIL((p = NULL, storage_read(nodes[i].eng, TABLE, "k6012", 5, NULL, 2000000000, &a, &p), reg_value(p) == 77), 2000);
        cr_assert_eq(reg_value(p), 77, "node %d", i + 1);
    }
    arena_free(&a);
}

Test(paxos, failed_condition_still_completes_the_round) {
    start_all();
    client w = {.key = "kf", .expected = -1};
    cr_assert(cas_wait(nodes[0].px, &w, cond_incr).applied);
    client c = {.key = "kf"};
    paxos_outcome o = cas_wait(nodes[1].px, &c, cond_never);
    cr_assert_eq(o.err, 0);
    cr_assert(!o.applied);
    cr_assert_eq(c.seen, 0);
    /* every replica learns the commit of the (empty) proposal: the round is closed */
    st_arena a;
    arena_init(&a);
    paxos_replica_state s[N];
    for (int i = 0; i < N; i++) {
        RUN_UNTIL(paxos_replica_get(nodes[i].px, TABLE, "kf", 2, &a, &s[i]) == 0 &&
                      !paxos_ballot_is_none(&s[i].committed) && paxos_ballot_cmp(&s[i].committed, &s[i].accepted) == 0,
                  2000);
        cr_assert_eq(paxos_replica_get(nodes[i].px, TABLE, "kf", 2, &a, &s[i]), 0);
        cr_assert_eq(paxos_ballot_cmp(&s[i].committed, &s[i].accepted), 0, "node %d", i + 1);
        cr_assert_null(s[i].proposal);
    }
    cr_assert_eq(paxos_ballot_cmp(&s[0].committed, &s[1].committed), 0);
    arena_free(&a);
}

Test(paxos, two_of_three_down_is_unavailable) {
    start_all();
    node_stop(1);
    node_stop(2);
    client c = {.key = "ku", .expected = -1};
    paxos_outcome o = cas_wait(nodes[0].px, &c, cond_never);
    cr_assert_eq(o.err, ILION_EUNAVAILABLE);
    cr_assert_eq(o.required, 2);
    cr_assert_eq(o.alive, 1);
    cr_assert_eq(o.cl, PAXOS_CL_SERIAL);
}

Test(paxos, pruning_keeps_the_promise_high_water_mark) {
    fake_us = 1700000000000000LL;
    state_ttl_s = 60;
    single_open();
    client c = {.key = "old", .expected = -1};
    cr_assert(cas_wait(nodes[0].px, &c, cond_incr).applied);
    st_arena a;
    arena_init(&a);
    paxos_replica_state old, inprog, s;
    cr_assert_eq(paxos_replica_get(nodes[0].px, TABLE, "old", 3, &a, &old), 0);
    /* a value accepted but never committed must never be pruned */
    tres t = {0};
    cr_assert_eq(paxos_test_propose_only(nodes[0].px, TABLE, reg_mutation(&a, "inprog", 5), NULL, on_test, &t), 0);
    RUN_UNTIL(t.calls > 0, 5000);
    cr_assert_eq(t.err, 0);
    cr_assert_eq(paxos_replica_get(nodes[0].px, TABLE, "inprog", 6, &a, &inprog), 0);
    fake_us += 3600LL * 1000000;
    for (int round = 0; round < 2; round++) {
        if (round == 0) {
            paxos_compact(nodes[0].px);
            run_ms(50);
        } else { /* the floor is durable too */
            paxos_destroy(nodes[0].px);
            run_ms(10);
            open_paxos(0, false);
        }
        cr_assert_eq(paxos_replica_get(nodes[0].px, TABLE, "old", 3, &a, &s), 0);
        cr_assert_null(s.proposal);
        cr_assert(paxos_ballot_is_none(&s.accepted), "the entry itself was pruned");
        cr_assert_geq(paxos_ballot_cmp(&s.promised, &old.promised), 0, "promise high-water mark lost");
        /* another key never seen also starts at the floor */
        cr_assert_eq(paxos_replica_get(nodes[0].px, TABLE, "never", 5, &a, &s), 0);
        cr_assert_geq(paxos_ballot_cmp(&s.promised, &old.promised), 0);
        cr_assert_eq(paxos_replica_get(nodes[0].px, TABLE, "inprog", 6, &a, &s), 0);
        cr_assert_not_null(s.proposal, "an uncommitted accepted value was pruned");
        cr_assert_eq(paxos_ballot_cmp(&s.accepted, &inprog.accepted), 0);
    }
    /* the pruned key still works, with a ballot above the floor */
    c.expected = 0;
    cr_assert(cas_wait(nodes[0].px, &c, cond_incr).applied);
    cr_assert_eq(paxos_replica_get(nodes[0].px, TABLE, "old", 3, &a, &s), 0);
    cr_assert_gt(paxos_ballot_cmp(&s.committed, &old.promised), 0);
    arena_free(&a);
}

static paxos_outcome cas_repl(paxos *px, const schema_replication *r, client *c, uint16_t scl) {
    int before = c->calls;
    c->busy = true;
    cr_assert_eq(paxos_cas(px, r, TABLE, c->key, (uint32_t)strlen(c->key), NULL, scl, 6 /* LOCAL_QUORUM */,
                           cond_incr, on_done, c), 0);
    RUN_UNTIL(c->calls > before, 20000);
    cr_assert_eq(c->calls, before + 1);
    return c->last;
}

Test(paxos, local_serial_counts_local_dc_replicas_only) {
    node_dc[0] = "dc1";
    node_dc[1] = "dc1";
    node_dc[2] = "dc2";
    start_all();
    schema_replication r;
    memset(&r, 0, sizeof r);
    r.cls = SCHEMA_REPL_NTS;
    r.ndcs = 2;
    snprintf(r.dcs[0].name, sizeof r.dcs[0].name, "dc1");
    r.dcs[0].rf = 2;
    snprintf(r.dcs[1].name, sizeof r.dcs[1].name, "dc2");
    r.dcs[1].rf = 1;
    client c = {.key = "ls", .expected = -1};
    paxos_outcome o = cas_repl(nodes[0].px, &r, &c, PAXOS_CL_LOCAL_SERIAL);
    cr_assert_eq(o.err, 0, "%s", ilion_strerror(o.err));
    cr_assert(o.applied);
    /* dc2's replica is not a participant of LOCAL_SERIAL, but it receives the commit */
    st_arena a;
    arena_init(&a);
    paxos_replica_state s;
    RUN_UNTIL(paxos_replica_get(nodes[2].px, TABLE, "ls", 2, &a, &s) == 0 && !paxos_ballot_is_none(&s.committed), 2000);
    cr_assert_eq(paxos_replica_get(nodes[2].px, TABLE, "ls", 2, &a, &s), 0);
    cr_assert(paxos_ballot_is_none(&s.accepted), "dc2 took part in a LOCAL_SERIAL round");
    cr_assert(!paxos_ballot_is_none(&s.committed));
    /* with the other dc1 replica down: LOCAL_SERIAL cannot reach 2 of dc1's 2, SERIAL reaches 2 of 3 */
    node_stop(1);
    run_ms(100);
    c.expected = 0;
    o = cas_repl(nodes[0].px, &r, &c, PAXOS_CL_LOCAL_SERIAL);
    cr_assert_eq(o.err, ILION_EUNAVAILABLE);
    cr_assert_eq(o.required, 2);
    cr_assert_eq(o.alive, 1);
    cr_assert_eq(o.cl, PAXOS_CL_LOCAL_SERIAL);
    client c2 = {.key = "ls", .expected = 0};
    int before = c2.calls;
    c2.busy = true;
    cr_assert_eq(paxos_cas(nodes[0].px, &r, TABLE, "ls", 2, NULL, PAXOS_CL_SERIAL, 1 /* ONE */, cond_incr, on_done, &c2), 0);
    RUN_UNTIL(c2.calls > before, 20000);
    cr_assert_eq(c2.last.err, 0, "%s", ilion_strerror(c2.last.err));
    cr_assert(c2.last.applied);
    arena_free(&a);
}

/* "if column 1 == expected then set column 2" */
static int cond_other_column(void *arg, const st_partition *cur, st_arena *a, st_partition **m) {
    client *c = arg;
    c->seen = reg_value(cur);
    *m = NULL;
    if (c->seen != c->expected) return 0;
    st_partition *p = st_partition_new(a, TABLE, c->key, (uint32_t)strlen(c->key));
    st_row *r = st_partition_row(a, p, "", 0);
    st_row_set_cell(a, r, 2, 1, 0, 0, "x", 1);
    *m = p;
    return 0;
}

Test(paxos, a_commit_missed_by_a_promiser_is_repaired_first) {
    start_all();
    /* A commit of 55 reached node 1 only (its proposer's other commits were lost). */
    st_arena a;
    arena_init(&a);
    tres t = {0};
    cr_assert_eq(paxos_test_commit_only(nodes[0].px, TABLE, reg_mutation(&a, "krep", 55), NULL, on_test, &t), 0);
    RUN_UNTIL(t.calls > 0, 5000);
    cr_assert_eq(t.err, 0);
    /* With node 3 down the quorum is {1, 2}: node 2 must learn 55 before anything newer. */
    node_stop(2);
    run_ms(100);
    client c = {.key = "krep", .expected = 55};
    paxos_outcome o = cas_wait(nodes[1].px, &c, cond_other_column);
    cr_assert_eq(o.err, 0, "%s", ilion_strerror(o.err));
    cr_assert(o.applied);
    paxos_stats st;
    paxos_get_stats(nodes[1].px, &st);
    cr_assert_geq(st.commit_repairs, 1);
    /* node 2 now holds the repaired commit's data (column 1 = 55; the CAS wrote column 2 only),
     * so the quorum {2, 3} would see it too */
    st_partition *p = NULL;
    cr_assert_eq(storage_read(nodes[1].eng, TABLE, "krep", 4, NULL, 2000000000, &a, &p), 0);
    cr_assert_eq(reg_value(p), 55);
    paxos_replica_state s1, s2;
    cr_assert_eq(paxos_replica_get(nodes[0].px, TABLE, "krep", 4, &a, &s1), 0);
    cr_assert_eq(paxos_replica_get(nodes[1].px, TABLE, "krep", 4, &a, &s2), 0);
    cr_assert_eq(paxos_ballot_cmp(&s1.committed, &s2.committed), 0);
    arena_free(&a);
}

/* A node that has just restarted knows only itself until gossip brings its peers back: the
 * ring then gives it one replica of an RF 3 keyspace. A "quorum" of that single stale replica
 * must not decide (it read the value from before its restart, and an update conditioned on
 * that old value was applied a second time: test_lwt's duplicate claims). */
Test(paxos, a_restarted_node_that_knows_no_peer_yet_does_not_decide_alone) {
    start_all();
    client c = {.key = "kring", .expected = -1};
    paxos_outcome o = cas_wait(nodes[0].px, &c, cond_incr); /* absent -> 0 */
    cr_assert_eq(o.err, 0, "%s", ilion_strerror(o.err));
    cr_assert(o.applied);
    RUN_UNTIL(false, 300); /* the commit reaches node 3 too */
    node_stop(2);
    run_ms(100);
    c.expected = 0;
    o = cas_wait(nodes[0].px, &c, cond_incr); /* 0 -> 1 on nodes 1 and 2 */
    cr_assert_eq(o.err, 0, "%s", ilion_strerror(o.err));
    cr_assert(o.applied);
    /* node 3 comes back; before its loop has run, its ring holds only itself */
    node_start(2);
    cr_assert_lt(ring_endpoint_count(cluster_ring(nodes[2].cl)), N);
    client stale = {.key = "kring", .expected = 0};
    int before = stale.calls;
    cas_start(nodes[2].px, &stale, cond_incr);
    RUN_UNTIL(stale.calls > before, 20000);
    cr_assert_eq(stale.calls, before + 1);
    cr_assert(stale.last.err != 0 || !stale.last.applied,
              "the restarted node applied 'if v = 0' although v = 1 on a quorum");
    if (stale.last.err) {
        cr_assert_eq(stale.last.err, ILION_EUNAVAILABLE, "%s", ilion_strerror(stale.last.err));
        cr_assert_eq(stale.last.required, 2);
    }
    /* once it knows its peers it takes part normally */
    RUN_UNTIL(all_alive(), 8000);
    cr_assert(all_alive());
    client d = {.key = "kring", .expected = 1};
    o = cas_wait(nodes[2].px, &d, cond_incr);
    cr_assert_eq(o.err, 0, "%s", ilion_strerror(o.err));
    cr_assert(o.applied, "seen %lld", (long long)d.seen);
}

/* The cluster service over real sockets: three nodes on 127.0.0.1-3 in one process and one
 * loop, gossip every 100 ms. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ilion/cluster/cluster.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"

static uv_loop_t loop;
static char tmpdir[64];

static void setup(void) {
    log_set_level(LOG_LEVEL_WARN);
    uv_loop_init(&loop);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ilion_cs_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void) {
    for (int i = 0; i < 200 && uv_run(&loop, UV_RUN_NOWAIT); i++) usleep(1000);
    cr_expect_eq(uv_loop_close(&loop), 0, "handles left open");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    cr_expect_eq(system(cmd), 0);
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

typedef struct events {
    int up, down, join, restart;
} events;

static void e_up(void *a, const net_addr *ep) { ((events *)a)->up++; }
static void e_down(void *a, const net_addr *ep) { ((events *)a)->down++; }
static void e_join(void *a, const net_addr *ep) { ((events *)a)->join++; }
static void e_restart(void *a, const net_addr *ep) { ((events *)a)->restart++; }

static char seedbuf[64];

static cluster *node(int i, const char *name, uint16_t port, events *ev) {
    cluster_options o;
    cluster_options_default(&o);
    char ip[32], dir[128];
    snprintf(ip, sizeof ip, "127.0.0.%d", i);
    snprintf(dir, sizeof dir, "%s/n%d", tmpdir, i);
    o.cluster_name = name;
    o.listen_address = ip;
    o.storage_port = port;
    o.data_dir = dir;
    o.gossip_interval_ms = 100;
    o.net_backoff_max_ms = 300;
    o.rng_seed = (uint64_t)i * 1234567;
    const char *seeds[] = {seedbuf};
    o.seeds = seeds;
    o.nseeds = seedbuf[0] ? 1 : 0;
    cluster *c;
    int rc = cluster_create(&loop, &o, &c);
    cr_assert_eq(rc, 0, "cluster_create %d: %s", i, ilion_strerror(rc));
    if (ev) {
        cluster_listener l = {e_join, e_up, e_down, e_restart, NULL, ev};
        cluster_add_listener(c, &l);
    }
    cr_assert_eq(cluster_start(c), 0);
    return c;
}

static bool all_see(cluster **cs, int n, int expect_peers) {
    for (int i = 0; i < n; i++) {
        if (cluster_peer_count(cs[i]) != (size_t)expect_peers) return false;
        for (size_t k = 0; k < (size_t)expect_peers; k++) {
            cluster_peer p;
            if (cluster_peer_get(cs[i], k, &p) != 0 || !p.alive || p.ntokens != 16) return false;
        }
        if (ring_token_count(cluster_ring(cs[i])) != (uint32_t)(16 * n)) return false;
    }
    return true;
}

static void echo_handler(void *arg, net_service *ns, const net_msg *m, const uint8_t *p, size_t len) {
    net_respond(ns, m, NET_VERB_READ_RSP, p, len);
}

static int resp_done, resp_err;
static void resp_cb(void *arg, int err, uint8_t verb, const uint8_t *p, size_t len) {
    resp_done++;
    resp_err = err;
}

TestSuite(cluster_service, .init = setup, .fini = teardown, .timeout = 60);

Test(cluster_service, three_nodes_converge_detect_failure_and_restart) {
    seedbuf[0] = 0;
    events ev[4] = {{0}};
    cluster *cs[3];
    cs[0] = node(1, "Test Cluster", 0, &ev[0]);
    uint16_t port = cluster_local_addr(cs[0])->port;
    snprintf(seedbuf, sizeof seedbuf, "127.0.0.1:%u", port);
    cs[1] = node(2, "Test Cluster", port, &ev[1]);
    cs[2] = node(3, "Test Cluster", port, &ev[2]);
    int waited = 0;
    while (!all_see(cs, 3, 2) && waited < 5000) {
        run_ms(50);
        waited += 50;
    }
    cr_log_info("3 nodes converged in %d ms (gossip interval 100 ms)", waited);
    cr_assert(all_see(cs, 3, 2), "no convergence in 5 s");
    /* Every node computes the same replicas. */
    schema_replication repl = {.cls = SCHEMA_REPL_SIMPLE, .rf = 3};
    for (int64_t t = -9000000000000000000; t < 9000000000000000000; t += 900000000000000000) {
        net_addr r0[3], r1[3], r2[3];
        cr_assert_eq(cluster_replicas(cs[0], &repl, t, r0, 3), 3);
        cr_assert_eq(cluster_replicas(cs[1], &repl, t, r1, 3), 3);
        cr_assert_eq(cluster_replicas(cs[2], &repl, t, r2, 3), 3);
        for (int k = 0; k < 3; k++) cr_assert(net_addr_eq(&r0[k], &r1[k]) && net_addr_eq(&r0[k], &r2[k]));
    }
    cluster_peer p;
    cr_assert_eq(cluster_peer_find(cs[0], cluster_local_addr(cs[2]), &p), 0);
    cr_assert_str_eq(p.dc, "datacenter1");
    cr_assert_str_eq(p.rack, "rack1");
    cr_assert_str_eq(p.rpc_address, "127.0.0.3");
    cr_assert_str_eq(p.status, "NORMAL");
    cr_assert_arr_eq(p.host_id, cluster_host_id(cs[2]), 16);

    /* Schema version spreads; agreement once everyone announces the same one. */
    cr_assert(!cluster_schema_agrees(cs[0]), "nobody announced a schema yet");
    cluster_set_schema_version(cs[0], "11111111-2222-4333-8444-555555555555");
    cluster_set_schema_version(cs[2], "11111111-2222-4333-8444-555555555555");
    cluster_set_schema_version(cs[1], "11111111-2222-4333-8444-555555555555");
    waited = 0;
    while (waited < 3000) {
        cluster_peer q;
        cluster_peer_find(cs[2], cluster_local_addr(cs[1]), &q);
        if (strcmp(q.schema_version, "11111111-2222-4333-8444-555555555555") == 0) break;
        run_ms(50);
        waited += 50;
    }
    cr_assert_lt(waited, 3000);
    while (!(cluster_schema_agrees(cs[0]) && cluster_schema_agrees(cs[1]) && cluster_schema_agrees(cs[2])) &&
           waited < 3000) {
        run_ms(50);
        waited += 50;
    }
    cr_assert(cluster_schema_agrees(cs[0]) && cluster_schema_agrees(cs[2]));
    cluster_set_schema_version(cs[2], "99999999-2222-4333-8444-555555555555");
    run_ms(500);
    cr_assert(!cluster_schema_agrees(cs[0]));
    cluster_set_schema_version(cs[2], "11111111-2222-4333-8444-555555555555");

    /* A node announcing LEFT leaves the ring; back to NORMAL, it returns. */
    cluster_set_app_state(cs[1], GOSSIP_APP_STATUS, "LEFT", 4);
    waited = 0;
    while (ring_endpoint_count(cluster_ring(cs[0])) != 2 && waited < 3000) {
        run_ms(50);
        waited += 50;
    }
    cr_assert_eq(ring_endpoint_count(cluster_ring(cs[0])), 2);
    cr_assert_eq(ring_token_count(cluster_ring(cs[0])), 32);
    cluster_set_app_state(cs[1], GOSSIP_APP_STATUS, "NORMAL", 6);
    waited = 0;
    while (ring_endpoint_count(cluster_ring(cs[0])) != 3 && waited < 3000) {
        run_ms(50);
        waited += 50;
    }
    cr_assert_eq(ring_token_count(cluster_ring(cs[0])), 48);

    /* Messaging through the service. */
    net_register(cluster_messaging(cs[2]), NET_VERB_READ, echo_handler, NULL);
    resp_done = 0;
    cr_assert_eq(net_request(cluster_messaging(cs[0]), cluster_local_addr(cs[2]), NET_VERB_READ, "q", 1,
                             2000, resp_cb, NULL, NULL), 0);
    for (int i = 0; i < 100 && !resp_done; i++) run_ms(20);
    cr_assert_eq(resp_done, 1);
    cr_assert_eq(resp_err, 0);
    /* ECHO is answered by the cluster service itself. */
    resp_done = 0;
    cr_assert_eq(net_request(cluster_messaging(cs[1]), cluster_local_addr(cs[0]), NET_VERB_ECHO, NULL, 0,
                             2000, resp_cb, NULL, NULL), 0);
    for (int i = 0; i < 100 && !resp_done; i++) run_ms(20);
    cr_assert_eq(resp_done, 1);
    cr_assert_eq(resp_err, 0);

    /* Node 3 dies without a word: phi convicts it. */
    uint8_t hid3[16];
    memcpy(hid3, cluster_host_id(cs[2]), 16);
    uint32_t nt;
    int64_t tok3[16];
    memcpy(tok3, cluster_local_tokens(cs[2], &nt), sizeof tok3);
    int32_t gen3 = p.generation;
    net_addr a3 = *cluster_local_addr(cs[2]);
    cluster_destroy(cs[2]);
    waited = 0;
    while ((cluster_is_alive(cs[0], &a3) || cluster_is_alive(cs[1], &a3)) && waited < 15000) {
        run_ms(50);
        waited += 50;
    }
    cr_log_info("silent node convicted after %d ms", waited);
    cr_assert(!cluster_is_alive(cs[0], &a3) && !cluster_is_alive(cs[1], &a3));
    cr_assert_geq(waited, 1000, "convicted too early");
    cr_assert_eq(ev[0].down, 1);
    /* A request to it now fails at once. */
    cr_assert_eq(net_request(cluster_messaging(cs[0]), &a3, NET_VERB_READ, "q", 1, 2000, resp_cb, NULL, NULL),
                 ILION_EUNAVAILABLE);

    /* It restarts on the same data directory: same host id and tokens, newer generation (the
     * previous one + 1 when restarted within the same second). */
    events ev3 = {0};
    cs[2] = node(3, "Test Cluster", port, &ev3);
    cr_assert_arr_eq(cluster_host_id(cs[2]), hid3, 16);
    cr_assert_arr_eq(cluster_local_tokens(cs[2], &nt), tok3, sizeof tok3);
    waited = 0;
    while (!(cluster_is_alive(cs[0], &a3) && cluster_is_alive(cs[1], &a3)) && waited < 5000) {
        run_ms(50);
        waited += 50;
    }
    cr_assert(cluster_is_alive(cs[0], &a3));
    cr_assert_eq(cluster_peer_find(cs[0], &a3, &p), 0);
    cr_assert_gt(p.generation, gen3);
    cr_assert_eq(ev[0].restart, 1);
    cr_assert_eq(ev[0].up, 2 + 1);

    /* A clean stop is seen at once. */
    cluster_stop(cs[1]);
    run_ms(300);
    cr_assert(!cluster_is_alive(cs[0], cluster_local_addr(cs[1])));
    cr_assert(!cluster_is_alive(cs[2], cluster_local_addr(cs[1])));
    for (int i = 0; i < 3; i++) cluster_destroy(cs[i]);
}

Test(cluster_service, other_cluster_never_joins) {
    seedbuf[0] = 0;
    cluster *a = node(1, "Prod", 0, NULL);
    snprintf(seedbuf, sizeof seedbuf, "127.0.0.1:%u", cluster_local_addr(a)->port);
    /* A list in one entry, with a bad address and spaces: the good one is used. */
    snprintf(seedbuf, sizeof seedbuf, " nosuchhost , 127.0.0.1:%u,", cluster_local_addr(a)->port);
    cluster *b = node(2, "Prod", cluster_local_addr(a)->port, NULL);
    cluster *x = node(3, "Staging", cluster_local_addr(a)->port, NULL);
    run_ms(1500);
    cr_assert_eq(cluster_peer_count(a), 1);
    cr_assert_eq(cluster_peer_count(b), 1);
    cr_assert_eq(cluster_peer_count(x), 0);
    net_stats st;
    net_get_stats(cluster_messaging(a), &st);
    cr_assert_gt(st.handshakes_refused, 0);
    /* The data directory remembers its cluster: reopening it under another name fails. */
    cluster_destroy(x);
    run_ms(50);
    cluster_options o;
    cluster_options_default(&o);
    char dir[128];
    snprintf(dir, sizeof dir, "%s/n3", tmpdir);
    o.cluster_name = "Prod";
    o.listen_address = "127.0.0.3";
    o.storage_port = 0;
    o.data_dir = dir;
    cluster *y;
    cr_assert_eq(cluster_create(&loop, &o, &y), ILION_EINVALID);
    cluster_destroy(a);
    cluster_destroy(b);
}

/* The whole cluster restarts while its only seed stays down: the nodes still find each other
 * through the peers they remembered from the previous run (without them they would wait for
 * the seed forever). */
Test(cluster_service, restart_without_seeds_uses_known_peers) {
    seedbuf[0] = 0;
    cluster *s1 = node(1, "Test Cluster", 0, NULL);
    uint16_t port = cluster_local_addr(s1)->port;
    snprintf(seedbuf, sizeof seedbuf, "127.0.0.1:%u", port);
    cluster *n2 = node(2, "Test Cluster", port, NULL);
    cluster *n3 = node(3, "Test Cluster", port, NULL);
    int waited = 0;
    while ((cluster_peer_count(n3) < 2 || cluster_peer_count(n2) < 2) && waited < 5000) {
        run_ms(50);
        waited += 50;
    }
    cr_assert_eq(cluster_peer_count(n3), 2);
    net_addr a2 = *cluster_local_addr(n2), a3 = *cluster_local_addr(n3);
    cluster_destroy(n2);
    cluster_destroy(n3);
    cluster_destroy(s1);
    run_ms(100);
    n2 = node(2, "Test Cluster", port, NULL);
    n3 = node(3, "Test Cluster", port, NULL);
    waited = 0;
    while (!(cluster_is_alive(n3, &a2) && cluster_is_alive(n2, &a3)) && waited < 5000) {
        run_ms(50);
        waited += 50;
    }
    cr_log_info("restarted nodes found each other in %d ms with the seed down", waited);
    cr_assert(cluster_is_alive(n3, &a2));
    cr_assert(cluster_is_alive(n2, &a3));
    cluster_destroy(n2);
    cluster_destroy(n3);
}

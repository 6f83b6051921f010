/* Gossip over a simulated network: N gossipers in one process, a virtual clock advanced one
 * gossip interval per round, messages delivered (or dropped) by the test. Deterministic: every
 * random choice comes from a seed. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/cluster/gossip.h"
#include "ilion/cluster/tokens.h"
#include "ilion/util/buf.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"

#define MAXN 64

typedef struct simmsg {
    int from, to;
    uint8_t verb;
    uint8_t *p;
    size_t len;
} simmsg;

typedef struct sim sim;
typedef struct nodectx {
    sim *s;
    int i;
} nodectx;

struct sim {
    int n;
    gossip *g[MAXN];
    net_addr addr[MAXN];
    nodectx ctx[MAXN];
    bool stopped[MAXN];
    int32_t gen[MAXN];
    uint64_t now;
    simmsg *q;
    size_t qn, qcap, qhead;
    uint64_t rng;
    double drop;       /* probability that a message is lost */
    int ups[MAXN], downs[MAXN], joins[MAXN], restarts[MAXN];
    int cut_a, cut_b;  /* when >= 0, messages between the two groups [0,cut_a) and [cut_a,n) drop */
    simmsg *captured;  /* a copy of delivered messages, for fuzzing */
    size_t ncaptured, capcap;
};

static uint64_t srnd(sim *s) {
    uint64_t z = (s->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int find_node(sim *s, const net_addr *a) {
    for (int i = 0; i < s->n; i++)
        if (net_addr_eq(&s->addr[i], a)) return i;
    return -1;
}

static int sim_send(void *ctx, const net_addr *to, uint8_t verb, const uint8_t *p, size_t len) {
    nodectx *c = ctx;
    sim *s = c->s;
    int t = find_node(s, to);
    if (t < 0) return -1;
    if (s->qn == s->qcap) {
        s->qcap = s->qcap ? s->qcap * 2 : 256;
        s->q = realloc(s->q, s->qcap * sizeof *s->q);
    }
    simmsg *m = &s->q[s->qn++];
    m->from = c->i;
    m->to = t;
    m->verb = verb;
    m->p = malloc(len ? len : 1);
    memcpy(m->p, p, len);
    m->len = len;
    return 0;
}

static uint64_t sim_now(void *ctx) { return ((nodectx *)ctx)->s->now; }

static void ev_up(void *arg, const net_addr *ep) { nodectx *c = arg; c->s->ups[c->i]++; }
static void ev_down(void *arg, const net_addr *ep) { nodectx *c = arg; c->s->downs[c->i]++; }
static void ev_join(void *arg, const net_addr *ep) { nodectx *c = arg; c->s->joins[c->i]++; }
static void ev_restart(void *arg, const net_addr *ep) { nodectx *c = arg; c->s->restarts[c->i]++; }

static void node_start(sim *s, int i, const char *cluster, int nseeds) {
    gossip_options o;
    gossip_options_default(&o);
    o.cluster_name = cluster;
    o.local = s->addr[i];
    net_addr seeds[4];
    for (int k = 0; k < nseeds; k++) seeds[k] = s->addr[k];
    o.seeds = seeds;
    o.nseeds = (size_t)nseeds;
    o.generation = s->gen[i];
    o.rng_seed = srnd(s) | 1;
    gossip_transport t = {sim_send, sim_now, &s->ctx[i]};
    cr_assert_eq(gossip_create(&o, &t, &s->g[i]), 0);
    gossip_listener l = {ev_join, ev_up, ev_down, ev_restart, NULL, &s->ctx[i]};
    gossip_add_listener(s->g[i], &l);
    int64_t tok[16];
    tokens_generate(16, (uint64_t)i * 7919 + (uint64_t)s->gen[i], tok);
    buf b;
    buf_init(&b);
    tokens_serialize(tok, 16, &b);
    gossip_set_local(s->g[i], GOSSIP_APP_TOKENS, b.data, b.len);
    buf_free(&b);
    gossip_set_local(s->g[i], GOSSIP_APP_STATUS, "NORMAL", 6);
    gossip_set_local(s->g[i], GOSSIP_APP_DC, "datacenter1", 11);
    gossip_set_local(s->g[i], GOSSIP_APP_RACK, "rack1", 5);
    uint8_t hid[16];
    memset(hid, i, 16);
    gossip_set_local(s->g[i], GOSSIP_APP_HOST_ID, hid, 16);
    s->stopped[i] = false;
}

static sim *sim_new(int n, int nseeds, uint64_t seed) {
    sim *s = calloc(1, sizeof *s);
    s->n = n;
    s->rng = seed;
    s->now = 1000000;
    s->cut_a = -1;
    for (int i = 0; i < n; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "127.0.%d.%d", i / 200, i % 200 + 1);
        net_addr_parse(ip, 7000, &s->addr[i]);
        s->ctx[i] = (nodectx){s, i};
        s->gen[i] = 1700000000 + i;
        node_start(s, i, "Test Cluster", nseeds);
    }
    return s;
}

static void sim_free(sim *s) {
    for (int i = 0; i < s->n; i++) gossip_destroy(s->g[i]);
    for (size_t i = s->qhead; i < s->qn; i++) free(s->q[i].p);
    for (size_t i = 0; i < s->ncaptured; i++) free(s->captured[i].p);
    free(s->captured);
    free(s->q);
    free(s);
}

static bool cut(const sim *s, int a, int b) {
    return s->cut_a >= 0 && ((a < s->cut_a) != (b < s->cut_a));
}

static void deliver(sim *s) {
    while (s->qhead < s->qn) {
        simmsg m = s->q[s->qhead++];
        bool lost = s->stopped[m.to] || s->stopped[m.from] || cut(s, m.from, m.to) ||
                    (s->drop > 0 && (double)(srnd(s) >> 11) / 9007199254740992.0 < s->drop);
        if (!lost) {
            if (s->captured && s->ncaptured < s->capcap) {
                s->captured[s->ncaptured] = m;
                s->captured[s->ncaptured].p = malloc(m.len ? m.len : 1);
                memcpy(s->captured[s->ncaptured].p, m.p, m.len);
                s->ncaptured++;
            }
            gossip_receive(s->g[m.to], &s->addr[m.from], m.verb, m.p, m.len);
        }
        free(m.p);
    }
    s->qn = s->qhead = 0;
}

static void round_(sim *s) {
    s->now += 1000;
    for (int i = 0; i < s->n; i++)
        if (!s->stopped[i]) gossip_tick(s->g[i]);
    deliver(s);
}

/* Every running node knows every running node's TOKENS at the version its owner holds. */
static bool converged(sim *s) {
    for (int i = 0; i < s->n; i++) {
        if (s->stopped[i]) continue;
        for (int j = 0; j < s->n; j++) {
            if (s->stopped[j]) continue;
            uint32_t v1, v2;
            const uint8_t *p1, *p2;
            size_t l1, l2;
            if (gossip_get_app(s->g[j], &s->addr[j], GOSSIP_APP_SCHEMA, &p1, &l1, &v1) == 0) {
                if (gossip_get_app(s->g[i], &s->addr[j], GOSSIP_APP_SCHEMA, &p2, &l2, &v2) != 0 || v1 != v2)
                    return false;
            }
            if (gossip_get_app(s->g[i], &s->addr[j], GOSSIP_APP_TOKENS, &p2, &l2, &v2) != 0) return false;
            gossip_get_app(s->g[j], &s->addr[j], GOSSIP_APP_TOKENS, &p1, &l1, &v1);
            if (v1 != v2 || l1 != l2 || memcmp(p1, p2, l1) != 0) return false;
            if (!gossip_is_alive(s->g[i], &s->addr[j])) return false;
        }
    }
    return true;
}

static int rounds_to_converge(sim *s, int max) {
    for (int r = 1; r <= max; r++) {
        round_(s);
        if (converged(s)) return r;
    }
    return -1;
}

static void quiet(void) { log_set_level(LOG_LEVEL_ERROR); }

TestSuite(gossip, .init = quiet, .timeout = 60);

/* Stated bound: from a cold start where every node knows only the seeds (2 of them),
 * N = 8, 16, 32 nodes converge (everyone knows everyone's tokens and sees everyone up) within
 * 2*log2(N) + 4 rounds, for each of 10 seeds. The same with 20% of messages lost within
 * 4*log2(N) + 8 rounds. */
Test(gossip, convergence_within_bound) {
    int ns[] = {8, 16, 32};
    for (int k = 0; k < 3; k++) {
        int n = ns[k], lg = 0;
        while ((1 << lg) < n) lg++;
        int worst = 0, worst_lossy = 0;
        for (uint64_t seed = 1; seed <= 10; seed++) {
            sim *s = sim_new(n, 2, seed);
            int r = rounds_to_converge(s, 100);
            cr_assert_gt(r, 0, "n=%d seed=%llu did not converge", n, (unsigned long long)seed);
            if (r > worst) worst = r;
            for (int i = 0; i < n; i++) {
                cr_assert_eq(s->joins[i], n - 1, "every node joined once");
                cr_assert_eq(s->downs[i], 0);
            }
            sim_free(s);
            s = sim_new(n, 2, seed + 100);
            s->drop = 0.2;
            r = rounds_to_converge(s, 200);
            cr_assert_gt(r, 0);
            if (r > worst_lossy) worst_lossy = r;
            sim_free(s);
        }
        cr_log_info("n=%d: converged in <= %d rounds (bound %d); with 20%% loss <= %d (bound %d)", n,
                    worst, 2 * lg + 4, worst_lossy, 4 * lg + 8);
        cr_assert_leq(worst, 2 * lg + 4, "n=%d took %d rounds", n, worst);
        cr_assert_leq(worst_lossy, 4 * lg + 8, "n=%d lossy took %d rounds", n, worst_lossy);
    }
}

/* A changed state (a new schema version) reaches every node within 2*log2(N) + 4 rounds. */
Test(gossip, state_change_spreads) {
    sim *s = sim_new(16, 2, 77);
    cr_assert_gt(rounds_to_converge(s, 50), 0);
    gossip_set_local(s->g[9], GOSSIP_APP_SCHEMA, "5b0e6a3e-0000-4000-8000-000000000001", 36);
    int r = rounds_to_converge(s, 50);
    cr_log_info("schema change reached 16 nodes in %d rounds", r);
    cr_assert_gt(r, 0);
    cr_assert_leq(r, 12);
    const uint8_t *p;
    size_t l;
    cr_assert_eq(gossip_get_app(s->g[3], &s->addr[9], GOSSIP_APP_SCHEMA, &p, &l, NULL), 0);
    cr_assert_eq(l, 36);
    cr_assert_eq(memcmp(p, "5b0e6a3e", 8), 0);
    sim_free(s);
}

/* A stopped node is convicted by everyone after about phi_convict_threshold * ln10 * mean
 * interval of silence (at least 10 rounds, at most 40), no one else is; a restart with a new
 * generation brings it back. 10% message loss throughout. */
Test(gossip, failure_detection_and_restart) {
    sim *s = sim_new(10, 2, 5);
    s->drop = 0.1;
    cr_assert_gt(rounds_to_converge(s, 60), 0);
    for (int r = 0; r < 100; r++) round_(s);
    for (int i = 0; i < 10; i++) cr_assert_eq(s->downs[i], 0, "false conviction at node %d", i);
    s->stopped[4] = true;
    int first = -1, all = -1;
    for (int r = 1; r <= 60 && all < 0; r++) {
        round_(s);
        int d = 0;
        for (int i = 0; i < 10; i++)
            if (i != 4 && !gossip_is_alive(s->g[i], &s->addr[4])) d++;
        if (d > 0 && first < 0) first = r;
        if (d == 9) all = r;
    }
    cr_log_info("stopped node: first conviction after %d rounds, all after %d", first, all);
    cr_assert_geq(first, 10);
    cr_assert_gt(all, 0);
    cr_assert_leq(all, 40);
    for (int i = 0; i < 10; i++) {
        if (i == 4) continue;
        cr_assert_eq(s->downs[i], 1, "node %d: one down event", i);
        for (int j = 0; j < 10; j++)
            if (j != 4 && j != i) cr_assert(gossip_is_alive(s->g[i], &s->addr[j]));
        cr_assert_gt(gossip_phi(s->g[i], &s->addr[4]), 8.0);
    }
    /* Restart: new generation, same address. */
    gossip_destroy(s->g[4]);
    s->gen[4] += 100;
    node_start(s, 4, "Test Cluster", 2);
    int r = rounds_to_converge(s, 60);
    cr_log_info("restarted node back everywhere after %d rounds", r);
    cr_assert_gt(r, 0);
    for (int i = 0; i < 10; i++) {
        if (i == 4) continue;
        int32_t gen;
        gossip_get_heartbeat(s->g[i], &s->addr[4], &gen, NULL);
        cr_assert_eq(gen, s->gen[4]);
        cr_assert_eq(s->restarts[i], 1);
        cr_assert_eq(s->ups[i], 9 + 1, "node %d: up for everyone, then again for the restart", i);
    }
    sim_free(s);
}

/* A partition: each side convicts the other, then heals. */
Test(gossip, partition_and_heal) {
    sim *s = sim_new(6, 2, 9);
    cr_assert_gt(rounds_to_converge(s, 60), 0);
    s->cut_a = 3;  /* {0,1,2} | {3,4,5} */
    for (int r = 0; r < 45; r++) round_(s);
    cr_assert(!gossip_is_alive(s->g[0], &s->addr[4]));
    cr_assert(!gossip_is_alive(s->g[5], &s->addr[1]));
    cr_assert(gossip_is_alive(s->g[0], &s->addr[2]));
    cr_assert(gossip_is_alive(s->g[5], &s->addr[3]));
    s->cut_a = -1;
    int r = rounds_to_converge(s, 30);
    cr_assert_gt(r, 0);
    cr_log_info("partition healed in %d rounds", r);
    sim_free(s);
}

Test(gossip, refuses_other_cluster) {
    sim *s = sim_new(5, 1, 3);
    /* Node 4 belongs to another cluster but uses node 0 as its seed. */
    gossip_destroy(s->g[4]);
    node_start(s, 4, "Other Cluster", 1);
    for (int r = 0; r < 30; r++) round_(s);
    for (int i = 0; i < 4; i++) {
        cr_assert(!gossip_knows(s->g[i], &s->addr[4]), "node %d learnt the foreign node", i);
        for (int j = 0; j < 4; j++) cr_assert(gossip_knows(s->g[i], &s->addr[j]));
    }
    cr_assert_eq(gossip_endpoint_count(s->g[4]), 1);
    gossip_stats st;
    gossip_get_stats(s->g[0], &st);
    cr_assert_gt(st.wrong_cluster, 0);
    sim_free(s);
}

/* Forged claims: about the receiver itself, and older than what the receiver holds. */
static void put_state(buf *b, const net_addr *a, int32_t gen, uint32_t hb, uint8_t key, uint32_t ver,
                      const char *val) {
    buf_u8(b, 4);
    buf_put(b, a->ip, 4);
    buf_u16(b, a->port);
    buf_u32(b, (uint32_t)gen);
    buf_u32(b, hb);
    buf_u8(b, 1);
    buf_u8(b, key);
    buf_u32(b, ver);
    buf_u32(b, (uint32_t)strlen(val));
    buf_put(b, val, strlen(val));
}

Test(gossip, ignores_forged_and_old_claims) {
    sim *s = sim_new(4, 1, 21);
    cr_assert_gt(rounds_to_converge(s, 40), 0);
    /* Node 3 tells node 0 that node 0 is LEAVING, with a huge version and a newer generation. */
    buf b;
    buf_init(&b);
    buf_u32(&b, 2);
    put_state(&b, &s->addr[0], s->gen[0], 1000000, GOSSIP_APP_STATUS, 999999, "LEAVING");
    put_state(&b, &s->addr[0], s->gen[0] + 10, 1, GOSSIP_APP_STATUS, 1, "LEFT");
    cr_assert_eq(gossip_receive(s->g[0], &s->addr[3], NET_VERB_GOSSIP_ACK2, b.data, b.len), 0);
    const uint8_t *p;
    size_t l;
    cr_assert_eq(gossip_get_app(s->g[0], &s->addr[0], GOSSIP_APP_STATUS, &p, &l, NULL), 0);
    cr_assert_eq(l, 6);
    cr_assert_eq(memcmp(p, "NORMAL", 6), 0);
    int32_t gen;
    gossip_get_heartbeat(s->g[0], &s->addr[0], &gen, NULL);
    cr_assert_eq(gen, s->gen[0]);
    gossip_stats st;
    gossip_get_stats(s->g[0], &st);
    cr_assert_eq(st.ignored_self_claims, 2);
    buf_free(&b);

    /* Node 3 tells node 0 about node 1 with an older generation. */
    buf_init(&b);
    buf_u32(&b, 1);
    put_state(&b, &s->addr[1], s->gen[1] - 1, 999999, GOSSIP_APP_STATUS, 999999, "LEFT");
    cr_assert_eq(gossip_receive(s->g[0], &s->addr[3], NET_VERB_GOSSIP_ACK2, b.data, b.len), 0);
    cr_assert_eq(gossip_get_app(s->g[0], &s->addr[1], GOSSIP_APP_STATUS, &p, &l, NULL), 0);
    cr_assert_eq(memcmp(p, "NORMAL", 6), 0);
    buf_free(&b);
    /* A generation a year ahead is a lie too. */
    buf_init(&b);
    buf_u32(&b, 1);
    put_state(&b, &s->addr[1], s->gen[0] + 400 * 86400, 1, GOSSIP_APP_STATUS, 1, "LEFT");
    gossip_receive(s->g[0], &s->addr[3], NET_VERB_GOSSIP_ACK2, b.data, b.len);
    gossip_get_heartbeat(s->g[0], &s->addr[1], &gen, NULL);
    cr_assert_eq(gen, s->gen[1]);
    buf_free(&b);
    /* And the cluster still converges on the truth. */
    for (int r = 0; r < 10; r++) round_(s);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(gossip_get_app(s->g[i], &s->addr[0], GOSSIP_APP_STATUS, &p, &l, NULL), 0);
        cr_assert_eq(memcmp(p, "NORMAL", 6), 0);
    }
    sim_free(s);
}

Test(gossip, shutdown_marks_down_at_once) {
    sim *s = sim_new(5, 2, 13);
    cr_assert_gt(rounds_to_converge(s, 40), 0);
    gossip_announce_shutdown(s->g[2]);
    deliver(s);
    s->stopped[2] = true;
    for (int i = 0; i < 5; i++) {
        if (i == 2) continue;
        cr_assert(!gossip_is_alive(s->g[i], &s->addr[2]), "node %d", i);
        cr_assert_eq(s->downs[i], 1);
    }
    for (int r = 0; r < 5; r++) round_(s);
    for (int i = 0; i < 5; i++)
        if (i != 2) cr_assert(!gossip_is_alive(s->g[i], &s->addr[2]), "stays down");
    sim_free(s);
}

/* Truncated, mutated and random messages are refused with an error, never a crash. */
Test(gossip, bad_messages) {
    sim *s = sim_new(6, 2, 31);
    s->capcap = 300;
    s->captured = calloc(s->capcap, sizeof *s->captured);
    for (int r = 0; r < 10; r++) round_(s);
    cr_assert_gt(s->ncaptured, 50);
    gossip_options o;
    gossip_options_default(&o);
    o.cluster_name = "Test Cluster";
    net_addr victim;
    net_addr_parse("127.9.9.9", 7000, &victim);
    o.local = victim;
    o.generation = 1;
    nodectx dummy = {s, 0};
    gossip_transport t = {sim_send, sim_now, &dummy};
    gossip *g;
    cr_assert_eq(gossip_create(&o, &t, &g), 0);
    uint64_t rs = 99;
    int errors = 0;
    for (size_t i = 0; i < s->ncaptured; i++) {
        simmsg *m = &s->captured[i];
        for (size_t cutlen = 0; cutlen < m->len; cutlen += 1 + m->len / 16) {
            errors += gossip_receive(g, &s->addr[1], m->verb, m->p, cutlen) < 0;
        }
        uint8_t *c = malloc(m->len ? m->len : 1);
        for (int k = 0; k < 20; k++) {
            memcpy(c, m->p, m->len);
            for (int f = 0; f < 3 && m->len; f++) {
                rs = rs * 6364136223846793005ull + 1442695040888963407ull;
                c[(rs >> 33) % m->len] ^= (uint8_t)(1u << ((rs >> 20) & 7));
            }
            gossip_receive(g, &s->addr[1], m->verb, c, m->len);
        }
        free(c);
    }
    uint8_t junk[512];
    for (int k = 0; k < 2000; k++) {
        size_t len = (size_t)(k % 512);
        for (size_t i = 0; i < len; i++) {
            rs = rs * 6364136223846793005ull + 1442695040888963407ull;
            junk[i] = (uint8_t)(rs >> 56);
        }
        gossip_receive(g, &s->addr[1], (uint8_t)(1 + k % 4), junk, len);
    }
    cr_assert_gt(errors, 0);
    gossip_stats st;
    gossip_get_stats(g, &st);
    cr_assert_gt(st.bad_messages, 0);
    deliver(s);  /* the victim's answers go to node 0: harmless */
    gossip_destroy(g);
    sim_free(s);
}

/* Chaos, replayable from its seed: 12 nodes for 400 rounds with 15% loss, reordering and
 * duplication of messages, random stops, restarts (new generation) and schema changes.
 * Invariants checked every round at every node: the generation and versions it holds for any
 * endpoint never go back, and its own state is its own. After the chaos the network heals and
 * every node must converge within 30 rounds. */
static void shuffle_and_duplicate(sim *s) {
    size_t n = s->qn - s->qhead;
    for (size_t i = n; i > 1; i--) {
        size_t j = srnd(s) % i;
        simmsg t = s->q[s->qhead + i - 1];
        s->q[s->qhead + i - 1] = s->q[s->qhead + j];
        s->q[s->qhead + j] = t;
    }
    for (size_t i = 0; i < n; i++) {
        if (srnd(s) % 10 != 0) continue;
        simmsg m = s->q[s->qhead + i];
        uint8_t *copy = malloc(m.len ? m.len : 1);
        memcpy(copy, m.p, m.len);
        m.p = copy;
        if (s->qn == s->qcap) {
            s->qcap *= 2;
            s->q = realloc(s->q, s->qcap * sizeof *s->q);
        }
        s->q[s->qn++] = m;
    }
}

Test(gossip, chaos_invariants_then_convergence) {
    const int n = 12;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        sim *s = sim_new(n, 2, seed * 7777);
        s->drop = 0.15;
        int32_t seen_gen[MAXN][MAXN] = {{0}};
        uint32_t seen_ver[MAXN][MAXN] = {{0}};
        int schema_no = 0;
        for (int r = 0; r < 400; r++) {
            uint64_t x = srnd(s);
            int who = (int)(x % (uint64_t)n);
            int act = (int)((x >> 8) % 100);
            if (act < 3 && !s->stopped[who]) {
                s->stopped[who] = true;
            } else if (act < 6 && s->stopped[who]) {
                gossip_destroy(s->g[who]);
                s->gen[who] += 1 + (int32_t)((x >> 16) % 5);
                node_start(s, who, "Test Cluster", 2);
                for (int i = 0; i < n; i++) seen_ver[i][who] = 0;  /* a new generation restarts versions */
            } else if (act < 10 && !s->stopped[who]) {
                char v[40];
                snprintf(v, sizeof v, "00000000-0000-4000-8000-%012d", ++schema_no);
                gossip_set_local(s->g[who], GOSSIP_APP_SCHEMA, v, strlen(v));
            }
            s->now += 1000;
            for (int i = 0; i < n; i++)
                if (!s->stopped[i]) gossip_tick(s->g[i]);
            shuffle_and_duplicate(s);
            deliver(s);
            for (int i = 0; i < n; i++) {
                if (s->stopped[i]) continue;
                int32_t g;
                gossip_get_heartbeat(s->g[i], &s->addr[i], &g, NULL);
                cr_assert_eq(g, s->gen[i], "seed %llu round %d: node %d's own generation changed",
                             (unsigned long long)seed, r, i);
                for (int j = 0; j < n; j++) {
                    uint32_t v;
                    if (gossip_get_heartbeat(s->g[i], &s->addr[j], &g, &v) != 0) continue;
                    cr_assert_geq(g, seen_gen[i][j], "node %d saw %d's generation go back", i, j);
                    cr_assert_leq(g, s->gen[j], "node %d holds a generation %d never had", i, j);
                    if (g == seen_gen[i][j])
                        cr_assert_geq(v, seen_ver[i][j], "node %d saw %d's version go back", i, j);
                    seen_gen[i][j] = g;
                    seen_ver[i][j] = v;
                }
            }
        }
        s->drop = 0;
        for (int i = 0; i < n; i++) {
            if (!s->stopped[i]) continue;
            gossip_destroy(s->g[i]);
            s->gen[i] += 1;
            node_start(s, i, "Test Cluster", 2);
        }
        int r = rounds_to_converge(s, 30);
        cr_log_info("chaos seed %llu: %d schema changes; converged %d rounds after healing",
                    (unsigned long long)seed, schema_no, r);
        cr_assert_gt(r, 0, "seed %llu: no convergence after healing", (unsigned long long)seed);
        sim_free(s);
    }
}

/* A node that was paused (SIGSTOP, a stalled loop) must not convict everyone when it wakes
 * up: its own silence is not theirs. The others convict it and see it come back. */
Test(gossip, local_pause_convicts_nobody) {
    sim *s = sim_new(6, 2, 41);
    cr_assert_gt(rounds_to_converge(s, 40), 0);
    for (int r = 0; r < 20; r++) round_(s);
    s->stopped[0] = true;  /* no ticks, nothing in or out */
    for (int r = 0; r < 40; r++) round_(s);
    for (int i = 1; i < 6; i++) cr_assert(!gossip_is_alive(s->g[i], &s->addr[0]));
    s->stopped[0] = false;
    for (int r = 0; r < 10; r++) round_(s);
    cr_assert_eq(s->downs[0], 0, "the paused node convicted %d peers", s->downs[0]);
    for (int i = 1; i < 6; i++) {
        cr_assert(gossip_is_alive(s->g[0], &s->addr[i]));
        cr_assert(gossip_is_alive(s->g[i], &s->addr[0]), "node %d sees the paused node back", i);
    }
    sim_free(s);
}

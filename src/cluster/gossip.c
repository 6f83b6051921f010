/* Gossip (see include/ilion/cluster/gossip.h; wire format in docs/internode-protocol.md). */
#include "ilion/cluster/gossip.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/cluster/fd.h"
#include "ilion/util/buf.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"

#define MOD "gossip"
#define MAX_LISTENERS 8
#define MAX_APPS_PER_STATE 64
#define MAX_GENERATION_AHEAD (86400 * 365)   /* a generation a year ahead of ours is a lie */
#define MAX_LOCAL_PAUSE_MS 5000              /* after a local pause, convict nobody for this long */

typedef struct app_val {
    uint32_t version;
    uint32_t len;
    uint8_t *data;
    bool set;
} app_val;

typedef struct ep_state {
    net_addr addr;
    int32_t generation;
    uint32_t hb_version;
    app_val app[GOSSIP_APP_COUNT];
    bool alive;
    bool is_local;
    fd_window fd;
} ep_state;

struct gossip {
    gossip_options opt;
    char *cluster_name;
    net_addr *seeds;
    size_t nseeds;
    net_addr *contacts;
    size_t ncontacts;
    gossip_transport t;
    ep_state **eps;     /* eps[0] is the local endpoint */
    size_t neps, epcap;
    uint32_t counter;   /* the local version counter */
    gossip_listener ls[MAX_LISTENERS];
    int nls;
    uint64_t rng;
    uint64_t last_tick_ms, last_pause_ms;
    bool ticked;
    gossip_stats st;
};

const char *gossip_app_name(enum gossip_app k) {
    static const char *const names[] = {"STATUS", "TOKENS", "SCHEMA", "DC", "RACK", "RPC_ADDRESS",
                                        "HOST_ID", "RELEASE_VERSION", "LOAD", "NATIVE_PORT"};
    return (unsigned)k < GOSSIP_APP_COUNT ? names[k] : "UNKNOWN";
}

static uint64_t rnd(gossip *g) {
    /* xorshift64* */
    uint64_t x = g->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    g->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static double rnd01(gossip *g) { return (double)(rnd(g) >> 11) / 9007199254740992.0; }

static uint32_t max_version(const ep_state *e) {
    uint32_t m = e->hb_version;
    for (int k = 0; k < GOSSIP_APP_COUNT; k++)
        if (e->app[k].set && e->app[k].version > m) m = e->app[k].version;
    return m;
}

static ep_state *find(const gossip *g, const net_addr *a) {
    for (size_t i = 0; i < g->neps; i++)
        if (net_addr_eq(&g->eps[i]->addr, a)) return g->eps[i];
    return NULL;
}

static void ep_free(ep_state *e) {
    for (int k = 0; k < GOSSIP_APP_COUNT; k++) free(e->app[k].data);
    fd_window_free(&e->fd);
    free(e);
}

static ep_state *ep_add(gossip *g, const net_addr *a) {
    if (g->neps >= GOSSIP_MAX_ENDPOINTS) return NULL;
    if (g->neps == g->epcap) {
        size_t nc = g->epcap ? g->epcap * 2 : 16;
        ep_state **n = realloc(g->eps, nc * sizeof *n);
        if (!n) return NULL;
        g->eps = n;
        g->epcap = nc;
    }
    ep_state *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->addr = *a;
    uint32_t iv = g->opt.interval_ms * 2;
    if (fd_window_init(&e->fd, FD_DEFAULT_WINDOW, iv, iv) < 0) {
        free(e);
        return NULL;
    }
    g->eps[g->neps++] = e;
    return e;
}

static int app_set(app_val *v, uint32_t version, const uint8_t *p, size_t len) {
    uint8_t *d = malloc(len ? len : 1);
    if (!d) return -ENOMEM;
    if (len) memcpy(d, p, len);
    free(v->data);
    v->data = d;
    v->len = (uint32_t)len;
    v->version = version;
    v->set = true;
    return 0;
}

/* ---- listeners ---------------------------------------------------------------------------- */

#define FIRE(g, cbname, ...)                                        \
    do {                                                            \
        for (int i_ = 0; i_ < (g)->nls; i_++)                       \
            if ((g)->ls[i_].cbname) (g)->ls[i_].cbname((g)->ls[i_].arg, __VA_ARGS__); \
    } while (0)

static void mark_alive(gossip *g, ep_state *e) {
    if (e->alive) return;
    e->alive = true;
    char a[NET_ADDR_STRLEN];
    LOG_INFO(MOD, "%s is now UP", net_addr_str(&e->addr, a, sizeof a));
    FIRE(g, on_up, &e->addr);
}

static void mark_dead(gossip *g, ep_state *e) {
    if (!e->alive) return;
    e->alive = false;
    char a[NET_ADDR_STRLEN];
    LOG_INFO(MOD, "%s is now DOWN", net_addr_str(&e->addr, a, sizeof a));
    FIRE(g, on_down, &e->addr);
}

/* ---- encoding ----------------------------------------------------------------------------- */

typedef struct digest {
    net_addr addr;
    int32_t gen;
    uint32_t maxv;
} digest;

static void put_digest(buf *b, const net_addr *a, int32_t gen, uint32_t maxv) {
    net_addr_encode(b, a);
    buf_u32(b, (uint32_t)gen);
    buf_u32(b, maxv);
}

static int get_digest(rd *r, digest *d) {
    int rc = net_addr_decode(r, &d->addr);
    if (rc < 0) return rc;
    uint32_t g;
    if (rd_u32(r, &g) < 0 || rd_u32(r, &d->maxv) < 0) return ILION_ETRUNCATED;
    d->gen = (int32_t)g;
    return 0;
}

/* The endpoint's heartbeat and every application state newer than minv. */
static void put_state(buf *b, const ep_state *e, uint32_t minv) {
    net_addr_encode(b, &e->addr);
    buf_u32(b, (uint32_t)e->generation);
    buf_u32(b, e->hb_version);
    size_t at = b->len;
    buf_u8(b, 0);
    uint8_t n = 0;
    for (int k = 0; k < GOSSIP_APP_COUNT; k++) {
        const app_val *v = &e->app[k];
        if (!v->set || v->version <= minv) continue;
        buf_u8(b, (uint8_t)k);
        buf_u32(b, v->version);
        buf_u32(b, v->len);
        buf_put(b, v->data, v->len);
        n++;
    }
    if (!b->oom) b->data[at] = n;
}

/* A parsed remote endpoint state, pointing into the message. */
typedef struct rstate {
    net_addr addr;
    int32_t gen;
    uint32_t hb;
    uint8_t napp;
    struct {
        uint8_t key;
        uint32_t version, len;
        const uint8_t *data;
    } app[MAX_APPS_PER_STATE];
} rstate;

static int get_state(rd *r, rstate *s) {
    int rc = net_addr_decode(r, &s->addr);
    if (rc < 0) return rc;
    uint32_t g;
    if (rd_u32(r, &g) < 0 || rd_u32(r, &s->hb) < 0 || rd_u8(r, &s->napp) < 0) return ILION_ETRUNCATED;
    s->gen = (int32_t)g;
    if (s->napp > MAX_APPS_PER_STATE) return ILION_ECORRUPT;
    for (uint8_t i = 0; i < s->napp; i++) {
        if (rd_u8(r, &s->app[i].key) < 0 || rd_u32(r, &s->app[i].version) < 0 ||
            rd_u32(r, &s->app[i].len) < 0)
            return ILION_ETRUNCATED;
        if (s->app[i].len > GOSSIP_MAX_VALUE) return ILION_ETOOBIG;
        if (rd_bytes(r, s->app[i].len, &s->app[i].data) < 0) return ILION_ETRUNCATED;
    }
    return 0;
}

/* ---- applying what peers tell us ---------------------------------------------------------- */

static uint64_t now_ms(gossip *g) { return g->t.now_ms(g->t.ctx); }

static void apply_state(gossip *g, const rstate *s) {
    char a[NET_ADDR_STRLEN];
    if (net_addr_eq(&s->addr, &g->eps[0]->addr)) {
        /* Only we produce our state, whatever others believe about it. */
        g->st.ignored_self_claims++;
        return;
    }
    if ((int64_t)s->gen > (int64_t)g->opt.generation + MAX_GENERATION_AHEAD) {
        LOG_WARN(MOD, "ignoring generation %d for %s: too far ahead of ours (%d)", s->gen,
                 net_addr_str(&s->addr, a, sizeof a), g->opt.generation);
        g->st.ignored_old_claims++;
        return;
    }
    uint64_t now = now_ms(g);
    ep_state *e = find(g, &s->addr);
    bool joined = false, restarted = false;
    if (!e) {
        e = ep_add(g, &s->addr);
        if (!e) return;
        e->generation = s->gen;
        e->hb_version = s->hb;
        joined = true;
    } else if (s->gen > e->generation) {
        for (int k = 0; k < GOSSIP_APP_COUNT; k++) {
            free(e->app[k].data);
            memset(&e->app[k], 0, sizeof e->app[k]);
        }
        e->generation = s->gen;
        e->hb_version = s->hb;
        fd_window_free(&e->fd);
        uint32_t iv = g->opt.interval_ms * 2;
        fd_window_init(&e->fd, FD_DEFAULT_WINDOW, iv, iv);
        restarted = true;
    } else if (s->gen < e->generation) {
        g->st.ignored_old_claims++;
        return;
    }
    bool hb_newer = joined || restarted || s->hb > e->hb_version;
    if (s->hb > e->hb_version) e->hb_version = s->hb;
    bool changed[GOSSIP_APP_COUNT] = {false};
    for (uint8_t i = 0; i < s->napp; i++) {
        uint8_t k = s->app[i].key;
        if (k >= GOSSIP_APP_COUNT) continue;  /* a newer release's state: not ours to interpret */
        app_val *v = &e->app[k];
        if (v->set && s->app[i].version <= v->version) continue;
        if (app_set(v, s->app[i].version, s->app[i].data, s->app[i].len) == 0) changed[k] = true;
    }
    if (joined) {
        LOG_INFO(MOD, "discovered %s (generation %d)", net_addr_str(&s->addr, a, sizeof a), s->gen);
        FIRE(g, on_join, &e->addr);
    } else if (restarted) {
        LOG_INFO(MOD, "%s restarted (generation %d)", net_addr_str(&s->addr, a, sizeof a), s->gen);
        FIRE(g, on_restart, &e->addr);
    }
    for (int k = 0; k < GOSSIP_APP_COUNT; k++)
        if (changed[k]) FIRE(g, on_change, &e->addr, (enum gossip_app)k, e->app[k].data, e->app[k].len);
    if (hb_newer) {
        fd_report(&e->fd, now);
        /* A node that announced shutdown stays down until its heartbeat moves again. */
        mark_alive(g, e);
    }
}

static int parse_states(gossip *g, rd *r) {
    uint32_t n;
    if (rd_u32(r, &n) < 0) return ILION_ETRUNCATED;
    if (n > GOSSIP_MAX_ENDPOINTS) return ILION_ECORRUPT;
    rstate *s = malloc(sizeof *s);
    if (!s) return -ENOMEM;
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        rc = get_state(r, s);
        if (rc == 0) apply_state(g, s);
    }
    free(s);
    return rc;
}

/* ---- the three messages ------------------------------------------------------------------- */

static void send_syn(gossip *g, const net_addr *to, const buf *syn) {
    g->st.syn_sent++;
    g->t.send(g->t.ctx, to, NET_VERB_GOSSIP_SYN, syn->data, syn->len);
}

static int on_syn(gossip *g, const net_addr *from, rd *r) {
    g->st.syn_recv++;
    uint16_t nl;
    const uint8_t *name;
    if (rd_u16(r, &nl) < 0 || rd_bytes(r, nl, &name) < 0) return ILION_ETRUNCATED;
    if (nl != strlen(g->cluster_name) || memcmp(name, g->cluster_name, nl) != 0) {
        char a[NET_ADDR_STRLEN];
        g->st.wrong_cluster++;
        LOG_WARN(MOD, "ignoring SYN from %s: cluster '%.*s' is not ours ('%s')",
                 net_addr_str(from, a, sizeof a), (int)nl, (const char *)name, g->cluster_name);
        return ILION_EPROTOCOL;
    }
    uint32_t n;
    if (rd_u32(r, &n) < 0) return ILION_ETRUNCATED;
    if (n > GOSSIP_MAX_ENDPOINTS || rd_left(r) < (size_t)n * 11) return ILION_ECORRUPT;
    bool *covered = calloc(g->neps ? g->neps : 1, sizeof *covered);
    if (!covered) return -ENOMEM;
    buf req, st;
    buf_init(&req);
    buf_init(&st);
    uint32_t nreq = 0, nst = 0;
    int rc = 0;
    for (uint32_t i = 0; i < n; i++) {
        digest d;
        rc = get_digest(r, &d);
        if (rc < 0) break;
        ep_state *e = NULL;
        size_t idx = 0;
        for (; idx < g->neps; idx++)
            if (net_addr_eq(&g->eps[idx]->addr, &d.addr)) {
                e = g->eps[idx];
                break;
            }
        if (!e) {
            put_digest(&req, &d.addr, d.gen, 0);
            nreq++;
            continue;
        }
        covered[idx] = true;
        if (d.gen > e->generation) {
            if (!e->is_local) {
                put_digest(&req, &d.addr, d.gen, 0);
                nreq++;
            }
        } else if (d.gen < e->generation) {
            put_state(&st, e, 0);
            nst++;
        } else {
            uint32_t mv = max_version(e);
            if (d.maxv > mv && !e->is_local) {
                put_digest(&req, &d.addr, d.gen, mv);
                nreq++;
            } else if (d.maxv < mv) {
                put_state(&st, e, d.maxv);
                nst++;
            }
        }
    }
    if (rc == 0) {
        /* Endpoints the sender did not mention at all: it learns them from us now. */
        for (size_t i = 0; i < g->neps; i++) {
            if (covered[i] || net_addr_eq(&g->eps[i]->addr, from)) continue;
            put_state(&st, g->eps[i], 0);
            nst++;
        }
        buf ack;
        buf_init(&ack);
        buf_u32(&ack, nreq);
        buf_put(&ack, req.data, req.len);
        buf_u32(&ack, nst);
        buf_put(&ack, st.data, st.len);
        if (!ack.oom) g->t.send(g->t.ctx, from, NET_VERB_GOSSIP_ACK, ack.data, ack.len);
        buf_free(&ack);
    }
    free(covered);
    buf_free(&req);
    buf_free(&st);
    return rc;
}

static int on_ack(gossip *g, const net_addr *from, rd *r) {
    g->st.ack_recv++;
    uint32_t n;
    if (rd_u32(r, &n) < 0) return ILION_ETRUNCATED;
    if (n > GOSSIP_MAX_ENDPOINTS || rd_left(r) < (size_t)n * 11) return ILION_ECORRUPT;
    digest *ds = malloc((n ? n : 1) * sizeof *ds);
    if (!ds) return -ENOMEM;
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++) rc = get_digest(r, &ds[i]);
    if (rc == 0) rc = parse_states(g, r);
    if (rc == 0) {
        buf ack2;
        buf_init(&ack2);
        buf_u32(&ack2, 0);
        uint32_t cnt = 0;
        for (uint32_t i = 0; i < n; i++) {
            ep_state *e = find(g, &ds[i].addr);
            if (!e) continue;
            if (e->generation == ds[i].gen) {
                if (max_version(e) <= ds[i].maxv) continue;
                put_state(&ack2, e, ds[i].maxv);
            } else if (e->generation > ds[i].gen) {
                put_state(&ack2, e, 0);
            } else {
                continue;
            }
            cnt++;
        }
        if (!ack2.oom) {
            buf_patch_u32(&ack2, 0, cnt);
            if (cnt) g->t.send(g->t.ctx, from, NET_VERB_GOSSIP_ACK2, ack2.data, ack2.len);
        }
        buf_free(&ack2);
    }
    free(ds);
    return rc;
}

static int on_shutdown(gossip *g, const net_addr *from, rd *r) {
    uint32_t gen, hb;
    if (rd_u32(r, &gen) < 0 || rd_u32(r, &hb) < 0) return ILION_ETRUNCATED;
    ep_state *e = find(g, from);
    if (!e || e->is_local || (int32_t)gen != e->generation) return 0;
    if (hb > e->hb_version) e->hb_version = hb;
    static const char shut[] = "shutdown";
    if (app_set(&e->app[GOSSIP_APP_STATUS], e->app[GOSSIP_APP_STATUS].version,
                (const uint8_t *)shut, sizeof shut - 1) == 0)
        FIRE(g, on_change, &e->addr, GOSSIP_APP_STATUS, e->app[GOSSIP_APP_STATUS].data,
             e->app[GOSSIP_APP_STATUS].len);
    mark_dead(g, e);
    return 0;
}

int gossip_receive(gossip *g, const net_addr *from, uint8_t verb, const uint8_t *p, size_t len) {
    rd r;
    rd_init(&r, p, len);
    int rc;
    switch (verb) {
    case NET_VERB_GOSSIP_SYN: rc = on_syn(g, from, &r); break;
    case NET_VERB_GOSSIP_ACK: rc = on_ack(g, from, &r); break;
    case NET_VERB_GOSSIP_ACK2:
        g->st.ack2_recv++;
        rc = parse_states(g, &r);
        break;
    case NET_VERB_GOSSIP_SHUTDOWN: rc = on_shutdown(g, from, &r); break;
    default: rc = ILION_EINVALID;
    }
    if (rc < 0 && rc != ILION_EPROTOCOL) {
        char a[NET_ADDR_STRLEN];
        g->st.bad_messages++;
        LOG_WARN(MOD, "bad %s from %s: %s", net_verb_name(verb), net_addr_str(from, a, sizeof a),
                 ilion_strerror(rc));
    }
    return rc;
}

/* ---- rounds ------------------------------------------------------------------------------- */

static bool is_seed(const gossip *g, const net_addr *a) {
    for (size_t i = 0; i < g->nseeds; i++)
        if (net_addr_eq(&g->seeds[i], a)) return true;
    return false;
}

void gossip_tick(gossip *g) {
    uint64_t now = now_ms(g);
    g->st.rounds++;
    ep_state *self = g->eps[0];
    self->hb_version = ++g->counter;

    /* SYN: cluster name and a digest of every endpoint, in random order. */
    size_t n = g->neps;
    size_t *order = malloc(n * sizeof *order);
    size_t *live = malloc(n * sizeof *live);
    size_t *dead = malloc(n * sizeof *dead);
    if (!order || !live || !dead) {
        free(order); free(live); free(dead);
        return;
    }
    for (size_t i = 0; i < n; i++) order[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = rnd(g) % i;
        size_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    buf syn;
    buf_init(&syn);
    size_t nl = strlen(g->cluster_name);
    buf_u16(&syn, (uint16_t)nl);
    buf_put(&syn, g->cluster_name, nl);
    buf_u32(&syn, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        ep_state *e = g->eps[order[i]];
        put_digest(&syn, &e->addr, e->generation, max_version(e));
    }
    size_t nlive = 0, ndead = 0;
    for (size_t i = 1; i < n; i++) {
        if (g->eps[i]->alive) live[nlive++] = i;
        else dead[ndead++] = i;
    }
    if (!syn.oom) {
        bool to_seed = false;
        if (nlive) {
            ep_state *e = g->eps[live[rnd(g) % nlive]];
            send_syn(g, &e->addr, &syn);
            to_seed = is_seed(g, &e->addr);
        }
        if (ndead && rnd01(g) < (double)ndead / (double)(nlive + 1)) {
            send_syn(g, &g->eps[dead[rnd(g) % ndead]]->addr, &syn);
        }
        /* Seeds other than ourselves. */
        size_t ns = 0;
        for (size_t i = 0; i < g->nseeds; i++) ns += !net_addr_eq(&g->seeds[i], &self->addr);
        if (ns && (!to_seed || nlive < g->nseeds)) {
            bool go = nlive == 0 || rnd01(g) <= (double)g->nseeds / (double)(nlive + ndead);
            if (go) {
                size_t pick = rnd(g) % ns, k = 0;
                for (size_t i = 0; i < g->nseeds; i++) {
                    if (net_addr_eq(&g->seeds[i], &self->addr)) continue;
                    if (k++ == pick) {
                        send_syn(g, &g->seeds[i], &syn);
                        break;
                    }
                }
            }
        }
    }
    /* Alone (the seeds are down, say): try a node we knew in an earlier run. */
    if (!syn.oom && nlive == 0 && g->ncontacts) {
        const net_addr *c = &g->contacts[rnd(g) % g->ncontacts];
        if (!net_addr_eq(c, &self->addr) && !is_seed(g, c)) send_syn(g, c, &syn);
    }
    buf_free(&syn);
    free(order);
    free(live);
    free(dead);

    /* Failure detection. After a local pause (the process was stopped, the loop blocked) our
     * own silence would convict everyone: wait until heartbeats had a chance to arrive. */
    if (g->ticked && now - g->last_tick_ms > MAX_LOCAL_PAUSE_MS) {
        LOG_WARN(MOD, "local pause of %llu ms detected; not convicting anyone for %u ms",
                 (unsigned long long)(now - g->last_tick_ms), MAX_LOCAL_PAUSE_MS);
        g->last_pause_ms = now;
    }
    g->ticked = true;
    g->last_tick_ms = now;
    if (g->last_pause_ms && now - g->last_pause_ms < MAX_LOCAL_PAUSE_MS) return;
    for (size_t i = 1; i < g->neps; i++) {
        ep_state *e = g->eps[i];
        if (e->alive && fd_phi(&e->fd, now) > g->opt.phi_convict_threshold) {
            char a[NET_ADDR_STRLEN];
            LOG_DEBUG(MOD, "convicting %s: phi %.2f > %.2f", net_addr_str(&e->addr, a, sizeof a),
                      fd_phi(&e->fd, now), g->opt.phi_convict_threshold);
            mark_dead(g, e);
        }
    }
}

void gossip_announce_shutdown(gossip *g) {
    ep_state *self = g->eps[0];
    static const char shut[] = "shutdown";
    gossip_set_local(g, GOSSIP_APP_STATUS, shut, sizeof shut - 1);
    uint8_t p[8];
    be32_put(p, (uint32_t)self->generation);
    be32_put(p + 4, max_version(self));
    for (size_t i = 1; i < g->neps; i++)
        if (g->eps[i]->alive) g->t.send(g->t.ctx, &g->eps[i]->addr, NET_VERB_GOSSIP_SHUTDOWN, p, sizeof p);
}

/* ---- lifecycle and queries ---------------------------------------------------------------- */

void gossip_options_default(gossip_options *o) {
    memset(o, 0, sizeof *o);
    o->interval_ms = 1000;
    o->phi_convict_threshold = FD_DEFAULT_PHI;
    o->rng_seed = 1;
}

int gossip_create(const gossip_options *o, const gossip_transport *t, gossip **out) {
    if (!o->cluster_name || strlen(o->cluster_name) > 255 || !t || !t->send || !t->now_ms ||
        (o->local.family != 4 && o->local.family != 6) || o->nseeds > GOSSIP_MAX_SEEDS ||
        o->ncontacts > GOSSIP_MAX_ENDPOINTS)
        return ILION_EINVALID;
    gossip *g = calloc(1, sizeof *g);
    if (!g) return -ENOMEM;
    g->opt = *o;
    if (!g->opt.interval_ms) g->opt.interval_ms = 1000;
    if (g->opt.phi_convict_threshold <= 0) g->opt.phi_convict_threshold = FD_DEFAULT_PHI;
    g->t = *t;
    g->cluster_name = strdup(o->cluster_name);
    g->seeds = calloc(o->nseeds ? o->nseeds : 1, sizeof *g->seeds);
    if (!g->cluster_name || !g->seeds) goto oom;
    if (o->nseeds) memcpy(g->seeds, o->seeds, o->nseeds * sizeof *g->seeds);
    g->nseeds = o->nseeds;
    g->opt.seeds = g->seeds;
    if (o->ncontacts) {
        g->contacts = calloc(o->ncontacts, sizeof *g->contacts);
        if (!g->contacts) goto oom;
        memcpy(g->contacts, o->contacts, o->ncontacts * sizeof *g->contacts);
        g->ncontacts = o->ncontacts;
    }
    g->opt.contacts = g->contacts;
    g->opt.cluster_name = g->cluster_name;
    uint64_t s = o->rng_seed ? o->rng_seed : 0x1234567;
    g->rng = s ^ 0x9E3779B97F4A7C15ull;
    if (!g->rng) g->rng = 1;
    ep_state *self = ep_add(g, &o->local);
    if (!self) goto oom;
    self->is_local = true;
    self->alive = true;
    self->generation = o->generation;
    *out = g;
    return 0;
oom:
    free(g->cluster_name);
    free(g->seeds);
    free(g->contacts);
    free(g->eps);
    free(g);
    return -ENOMEM;
}

void gossip_destroy(gossip *g) {
    if (!g) return;
    for (size_t i = 0; i < g->neps; i++) ep_free(g->eps[i]);
    free(g->eps);
    free(g->seeds);
    free(g->contacts);
    free(g->cluster_name);
    free(g);
}

int gossip_add_listener(gossip *g, const gossip_listener *l) {
    if (g->nls == MAX_LISTENERS) return ILION_ETOOBIG;
    g->ls[g->nls++] = *l;
    return 0;
}

int gossip_set_local(gossip *g, enum gossip_app key, const void *value, size_t len) {
    if ((unsigned)key >= GOSSIP_APP_COUNT) return ILION_EINVALID;
    if (len > GOSSIP_MAX_VALUE) return ILION_ETOOBIG;
    return app_set(&g->eps[0]->app[key], ++g->counter, value, len);
}

bool gossip_is_alive(const gossip *g, const net_addr *ep) {
    const ep_state *e = find(g, ep);
    return e && e->alive;
}

bool gossip_knows(const gossip *g, const net_addr *ep) { return find(g, ep) != NULL; }
size_t gossip_endpoint_count(const gossip *g) { return g->neps; }
const net_addr *gossip_endpoint_at(const gossip *g, size_t i) { return i < g->neps ? &g->eps[i]->addr : NULL; }
const net_addr *gossip_local(const gossip *g) { return &g->eps[0]->addr; }

int gossip_get_app(const gossip *g, const net_addr *ep, enum gossip_app key, const uint8_t **value,
                   size_t *len, uint32_t *version) {
    const ep_state *e = find(g, ep);
    if (!e || (unsigned)key >= GOSSIP_APP_COUNT || !e->app[key].set) return ILION_ENOTFOUND;
    if (value) *value = e->app[key].data;
    if (len) *len = e->app[key].len;
    if (version) *version = e->app[key].version;
    return 0;
}

int gossip_get_heartbeat(const gossip *g, const net_addr *ep, int32_t *generation, uint32_t *maxv) {
    const ep_state *e = find(g, ep);
    if (!e) return ILION_ENOTFOUND;
    if (generation) *generation = e->generation;
    if (maxv) *maxv = max_version(e);
    return 0;
}

double gossip_phi(const gossip *g, const net_addr *ep) {
    const ep_state *e = find(g, ep);
    if (!e || e->is_local) return 0;
    return fd_phi(&e->fd, g->t.now_ms(g->t.ctx));
}

void gossip_get_stats(const gossip *g, gossip_stats *out) { *out = g->st; }

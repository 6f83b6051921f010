/* The coordinator core and the write path. A write request finds the replicas of each
 * mutation's token, checks the level against the alive ones up front (Unavailable), applies
 * the local share directly and sends each remote replica one MUTATION message with its share,
 * and answers once every mutation has its level's acknowledgements, or with WriteTimeout /
 * WriteFailure. The request lives on until every replica answered or timed out, so late
 * answers are harmless; a replica that was down or did not answer gets a hint.
 * Local writes are acknowledged once the engine says their commit log position is synced; the
 * engine reports syncs on its sync thread, which only records it and wakes the loop. */
#include "coord_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/util/arena.h"
#include "ilion/util/clock.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"
#include "ilion/util/murmur3.h"

/* ---------------------------------------------------------------- small helpers --- */

void coord_set_err(coord_error *e, uint32_t code, enum coord_cl cl, const char *fmt, ...) {
    memset(e, 0, sizeof *e);
    e->code = code;
    e->cl = (uint16_t)cl;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

const char *coord_cl_name(enum coord_cl cl) {
    static const char *n[] = {"ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM",
                              "EACH_QUORUM", "SERIAL", "LOCAL_SERIAL", "LOCAL_ONE"};
    return (unsigned)cl < sizeof n / sizeof n[0] ? n[cl] : "UNKNOWN";
}

void coord_req_link(coord *c, coord_req *r, void (*abort)(coord_req *)) {
    r->abort = abort;
    r->next = c->reqs.next;
    r->prev = &c->reqs;
    c->reqs.next->prev = r;
    c->reqs.next = r;
}

void coord_req_unlink(coord_req *r) {
    if (!r->next) return;
    r->prev->next = r->next;
    r->next->prev = r->prev;
    r->next = r->prev = NULL;
}

/* ------------------------------------------------------------ local sync waiting --- */

static void on_sync(void *arg, uint64_t synced_pos, int err) {
    coord *c = arg;
    (void)synced_pos;
    pthread_mutex_lock(&c->mu);
    if (err && !c->sync_err) c->sync_err = err;
    if (!c->closing) uv_async_send(&c->async);
    pthread_mutex_unlock(&c->mu);
}

static void drain(coord *c, bool all_fail) {
    pthread_mutex_lock(&c->mu);
    int serr = c->sync_err;
    pthread_mutex_unlock(&c->mu);
    coord_sync_waiter **pp = &c->whead, *done = NULL, **dtail = &done;
    c->wtail = NULL;
    while (*pp) {
        coord_sync_waiter *w = *pp;
        if (all_fail || serr || storage_is_synced(c->engine, w->pos)) {
            *pp = w->next;
            w->next = NULL;
            *dtail = w;
            dtail = &w->next;
        } else {
            c->wtail = w;
            pp = &w->next;
        }
    }
    /* Callbacks run after the list is consistent: they may start new writes. */
    while (done) {
        coord_sync_waiter *w = done;
        done = w->next;
        w->done(c, w->arg, all_fail ? ILION_ECLOSED : serr);
        free(w);
    }
}

static void on_async(uv_async_t *h) { drain(h->data, false); }

int coord_wait_sync(coord *c, uint64_t pos, void (*done)(coord *, void *, int), void *arg) {
    if (storage_is_synced(c->engine, pos)) {
        done(c, arg, 0);
        return 0;
    }
    coord_sync_waiter *w = calloc(1, sizeof *w);
    if (!w) return -ENOMEM;
    w->pos = pos;
    w->done = done;
    w->arg = arg;
    if (c->wtail) c->wtail->next = w;
    else c->whead = w;
    c->wtail = w;
    /* The sync may have happened between apply and enqueue: check again on the loop. */
    uv_async_send(&c->async);
    return 0;
}

/* ------------------------------------------------------------- mutation messages --- */

void coord_message_begin(buf *b, uint32_t n) {
    buf_u8(b, COORD_MSG_VERSION);
    buf_u32(b, n);
}

void coord_message_add(buf *b, const uint8_t *enc, size_t len) {
    buf_u32(b, (uint32_t)len);
    buf_put(b, enc, len);
}

int coord_apply_message(coord *c, const uint8_t *p, size_t len, uint64_t *pos) {
    rd r;
    rd_init(&r, p, len);
    uint8_t ver;
    uint32_t n;
    *pos = 0;
    if (rd_u8(&r, &ver) || rd_u32(&r, &n)) return ILION_ETRUNCATED;
    if (ver != COORD_MSG_VERSION) return ILION_EFORMAT;
    if (n > rd_left(&r) / 4) return ILION_ECORRUPT;
    st_arena a;
    arena_init(&a);
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        uint32_t l;
        const uint8_t *q;
        st_partition *m;
        if (rd_u32(&r, &l) || rd_bytes(&r, l, &q)) {
            rc = ILION_ETRUNCATED;
            break;
        }
        rc = st_partition_decode(&a, q, l, &m);
        if (rc) break;
        uint64_t ps = 0;
        rc = storage_apply(c->engine, m, &ps);
        if (ps > *pos) *pos = ps;
    }
    arena_free(&a);
    return rc;
}

/* Replica side of MUTATION and HINT: apply, answer after the sync the engine's mode needs. */
typedef struct mut_reply {
    net_msg m;
    uint8_t verb;
} mut_reply;

static void mut_synced(coord *c, void *arg, int err) {
    mut_reply *r = arg;
    if (err == ILION_ECLOSED) {
        /* Shutting down: no answer, the coordinator times out and keeps a hint. */
    } else if (err) {
        net_respond_error(c->ns, &r->m, err);
    } else {
        net_respond(c->ns, &r->m, r->verb, NULL, 0);
    }
    free(r);
}

static void on_mutation(void *arg, net_service *ns, const net_msg *m, const uint8_t *p, size_t len) {
    coord *c = arg;
    uint64_t pos;
    int rc = coord_apply_message(c, p, len, &pos);
    if (rc) {
        char a[NET_ADDR_STRLEN];
        LOG_WARN("coord", "%s from %s not applied: %s", net_verb_name(m->verb),
                 net_addr_str(&m->from, a, sizeof a), ilion_strerror(rc));
        net_respond_error(ns, m, rc);
        return;
    }
    mut_reply *r = malloc(sizeof *r);
    if (!r) {
        net_respond_error(ns, m, -12);
        return;
    }
    r->m = *m;
    r->verb = m->verb == NET_VERB_HINT ? NET_VERB_HINT_RSP : NET_VERB_MUTATION_RSP;
    if (coord_wait_sync(c, pos, mut_synced, r)) {
        free(r);
        net_respond_error(ns, m, -12);
    }
}

/* ------------------------------------------------------------------ create/destroy --- */

void coord_options_default(coord_options *o) {
    memset(o, 0, sizeof *o);
    o->write_request_timeout_ms = 2000;
    o->read_request_timeout_ms = 5000;
    o->range_request_timeout_ms = 10000;
    o->truncate_request_timeout_ms = 60000;
    o->hinted_handoff_enabled = true;
    o->max_hint_window_ms = 10800000;
    o->hint_check_interval_ms = 1000;
}

void coord_handle_closed(uv_handle_t *h) {
    coord *c = h->data;
    if (--c->open_handles > 0) return;
    pthread_mutex_destroy(&c->mu);
    free(c->hints_dir);
    free(c);
}

int coord_create_ex(uv_loop_t *loop, storage_engine *engine, struct cluster *cluster,
                    const coord_options *o, coord **out) {
    coord *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    c->loop = loop;
    c->engine = engine;
    c->cluster = cluster;
    c->ns = cluster ? cluster_messaging(cluster) : NULL;
    if (o) c->opt = *o;
    else coord_options_default(&c->opt);
    if (!c->opt.write_request_timeout_ms) c->opt.write_request_timeout_ms = 2000;
    if (!c->opt.read_request_timeout_ms) c->opt.read_request_timeout_ms = 5000;
    if (!c->opt.range_request_timeout_ms) c->opt.range_request_timeout_ms = 10000;
    if (!c->opt.truncate_request_timeout_ms) c->opt.truncate_request_timeout_ms = 60000;
    if (!c->opt.hint_check_interval_ms) c->opt.hint_check_interval_ms = 1000;
    c->opt.hints_directory = NULL;
    if (o && o->hints_directory && o->hints_directory[0]) {
        c->hints_dir = strdup(o->hints_directory);
        if (!c->hints_dir) {
            free(c);
            return -ENOMEM;
        }
    }
    c->reqs.next = c->reqs.prev = &c->reqs;
    if (cluster) snprintf(c->local_dc, sizeof c->local_dc, "%s", cluster_local_dc(cluster));
    pthread_mutex_init(&c->mu, NULL);
    int rc = uv_async_init(loop, &c->async, on_async);
    if (rc) {
        pthread_mutex_destroy(&c->mu);
        free(c->hints_dir);
        free(c);
        return rc;
    }
    c->async.data = c;
    c->open_handles = 1;
    if (cluster) {
        rc = coord_hints_open(c);
        if (rc) {
            LOG_ERROR("coord", "hints directory %s: %s", c->hints_dir ? c->hints_dir : "-",
                      ilion_strerror(rc));
            coord_hints_close(c);
            uv_close((uv_handle_t *)&c->async, coord_handle_closed);
            return rc;
        }
        net_register(c->ns, NET_VERB_MUTATION, on_mutation, c);
        net_register(c->ns, NET_VERB_HINT, on_mutation, c);
        coord_read_register(c);
        coord_truncate_register(c);
    }
    storage_set_sync_callback(engine, on_sync, c);
    *out = c;
    return 0;
}

int coord_create(uv_loop_t *loop, storage_engine *engine, struct cluster *cluster, coord **out) {
    return coord_create_ex(loop, engine, cluster, NULL, out);
}

void coord_destroy(coord *c) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    c->closing = true;
    pthread_mutex_unlock(&c->mu);
    storage_set_sync_callback(c->engine, NULL, NULL);
    if (c->cluster) {
        static const uint8_t verbs[] = {NET_VERB_MUTATION, NET_VERB_HINT, NET_VERB_READ,
                                        NET_VERB_RANGE_READ, NET_VERB_TRUNCATE};
        for (size_t i = 0; i < sizeof verbs; i++) net_register(c->ns, verbs[i], NULL, NULL);
    }
    drain(c, true);
    while (c->reqs.next != &c->reqs) {
        coord_req *r = c->reqs.next;
        coord_req_unlink(r);
        r->abort(r);
    }
    if (c->cluster) coord_hints_close(c);
    uv_close((uv_handle_t *)&c->async, coord_handle_closed);
}

void coord_set_local_dc(coord *c, const char *dc) {
    if (c->cluster) return; /* the cluster's snitch decides */
    snprintf(c->local_dc, sizeof c->local_dc, "%s", dc ? dc : "");
}

void coord_get_stats(const coord *c, coord_stats *out) { *out = c->stats; }

/* ------------------------------------------------------------- consistency levels --- */

int coord_cl_valid(enum coord_cl cl, bool is_write, coord_error *err) {
    if ((unsigned)cl > COORD_CL_LOCAL_ONE) {
        coord_set_err(err, 0x2200, cl, "Unknown consistency level %u", (unsigned)cl);
        return ILION_EINVALID;
    }
    if (!is_write && (cl == COORD_CL_ANY || cl == COORD_CL_EACH_QUORUM)) {
        coord_set_err(err, 0x2200, cl, "%s ConsistencyLevel is only supported for writes",
                      coord_cl_name(cl));
        return ILION_EINVALID;
    }
    if (is_write && (cl == COORD_CL_SERIAL || cl == COORD_CL_LOCAL_SERIAL)) {
        coord_set_err(err, 0x2200, cl, "You must use conditional updates for serializable writes");
        return ILION_EINVALID;
    }
    return 0;
}

/* Replica factor of the keyspace in the local DC and in total. */
static void repl_factors(const coord *c, const schema_replication *r, int *total, int *local) {
    *total = *local = 0;
    switch (r->cls) {
    case SCHEMA_REPL_LOCAL: *total = *local = 1; return;
    case SCHEMA_REPL_SIMPLE: *total = *local = (int)r->rf; return;
    case SCHEMA_REPL_NTS:
        for (uint32_t i = 0; i < r->ndcs && i < SCHEMA_MAX_DCS; i++) {
            *total += (int)r->dcs[i].rf;
            if (!c->local_dc[0] || strcmp(c->local_dc, r->dcs[i].name) == 0)
                if ((int)r->dcs[i].rf > *local) *local = (int)r->dcs[i].rf;
        }
        return;
    }
}

static int unavailable(coord_error *err, enum coord_cl cl, int required, int alive) {
    coord_set_err(err, 0x1000, cl, "Cannot achieve consistency level %s: %d replicas required, %d alive",
                  coord_cl_name(cl), required, alive);
    err->required = required;
    err->alive = alive;
    return ILION_EUNAVAILABLE;
}

/* One node: the only replica is this node, when the keyspace places one in its DC.
 * Fills the level's requirement and the alive count it is compared with. */
static void check_single(coord *c, const schema_replication *repl, enum coord_cl cl,
                         int *required_out, int *alive_out) {
    int total, local;
    repl_factors(c, repl, &total, &local);
    int alive = local >= 1 ? 1 : 0;
    int required;
    switch (cl) {
    case COORD_CL_ANY: required = 1; alive = 1; break; /* the local write is the hint */
    case COORD_CL_ONE: case COORD_CL_LOCAL_ONE: required = 1; break;
    case COORD_CL_TWO: required = 2; break;
    case COORD_CL_THREE: required = 3; break;
    case COORD_CL_QUORUM: case COORD_CL_SERIAL: required = total / 2 + 1; break;
    case COORD_CL_ALL: required = total; break;
    case COORD_CL_LOCAL_QUORUM: case COORD_CL_LOCAL_SERIAL: required = local / 2 + 1; break;
    case COORD_CL_EACH_QUORUM:
        required = total / 2 + 1;
        if (repl->cls == SCHEMA_REPL_NTS) {
            /* The first DC whose quorum cannot be met decides; this node serves only its own. */
            required = 1;
            for (uint32_t i = 0; i < repl->ndcs && i < SCHEMA_MAX_DCS; i++) {
                int q = (int)repl->dcs[i].rf / 2 + 1;
                bool mine = !c->local_dc[0] || strcmp(c->local_dc, repl->dcs[i].name) == 0;
                int a = mine ? alive : 0;
                if (q > a) {
                    required = q;
                    alive = a;
                    break;
                }
            }
        }
        break;
    default: required = 1; break;
    }
    if (required < 1) required = 1;
    *required_out = required;
    *alive_out = alive;
}

/* Group of a replica in DC `dc` for level cl, and the groups' needs. */
static void level_groups(const coord *c, const schema_replication *repl, enum coord_cl cl,
                         coord_groups *g) {
    int total, local;
    repl_factors(c, repl, &total, &local);
    g->n = 1;
    switch (cl) {
    case COORD_CL_ANY: case COORD_CL_ONE: case COORD_CL_LOCAL_ONE: g->need[0] = 1; break;
    case COORD_CL_TWO: g->need[0] = 2; break;
    case COORD_CL_THREE: g->need[0] = 3; break;
    case COORD_CL_QUORUM: case COORD_CL_SERIAL: g->need[0] = total / 2 + 1; break;
    case COORD_CL_ALL: g->need[0] = total; break;
    case COORD_CL_LOCAL_QUORUM: case COORD_CL_LOCAL_SERIAL: g->need[0] = local / 2 + 1; break;
    case COORD_CL_EACH_QUORUM:
        if (repl->cls == SCHEMA_REPL_NTS) {
            g->n = 0;
            for (uint32_t i = 0; i < repl->ndcs && i < SCHEMA_MAX_DCS; i++)
                g->need[g->n++] = repl->dcs[i].rf ? (int)repl->dcs[i].rf / 2 + 1 : 0;
            if (g->n > 0) return; /* a DC with RF 0 needs nobody */
            g->n = 1;
            g->need[0] = 1;
        } else {
            g->need[0] = total / 2 + 1;
        }
        break;
    default: g->need[0] = 1; break;
    }
    for (int i = 0; i < g->n; i++)
        if (g->need[i] < 1) g->need[i] = 1;
}

static int rep_group(const coord *c, const schema_replication *repl, enum coord_cl cl,
                     const char *dc) {
    bool local_only = cl == COORD_CL_LOCAL_ONE || cl == COORD_CL_LOCAL_QUORUM ||
                      cl == COORD_CL_LOCAL_SERIAL;
    if (local_only) return strcmp(dc, c->local_dc) == 0 ? 0 : -1;
    if (cl == COORD_CL_EACH_QUORUM && repl->cls == SCHEMA_REPL_NTS) {
        for (uint32_t i = 0; i < repl->ndcs && i < SCHEMA_MAX_DCS; i++)
            if (strcmp(repl->dcs[i].name, dc) == 0) return (int)i;
        return -1;
    }
    return 0;
}

int coord_replicas_for(coord *c, const schema_replication *repl, int64_t token, enum coord_cl cl,
                       bool is_write, coord_rep *reps, size_t *nreps, coord_groups *g,
                       coord_error *err) {
    *nreps = 0;
    if (!c->cluster) {
        int required, alive, total, local;
        check_single(c, repl, cl, &required, &alive);
        repl_factors(c, repl, &total, &local);
        g->n = 1;
        g->need[0] = required;
        if (local >= 1 || cl == COORD_CL_ANY) {
            memset(&reps[0], 0, sizeof reps[0]);
            reps[0].local = reps[0].alive = true;
            reps[0].group = 0;
            *nreps = 1;
        }
        if (required > alive) return unavailable(err, cl, required, alive);
        return 0;
    }
    net_addr addrs[COORD_MAX_REPLICAS];
    int n = cluster_replicas(c->cluster, repl, token, addrs, COORD_MAX_REPLICAS);
    if (n < 0) n = 0;
    level_groups(c, repl, cl, g);
    const ring *rg = cluster_ring(c->cluster);
    /* Order: local, then the local DC, then the others (the order reads contact them in). */
    coord_rep tmp[COORD_MAX_REPLICAS];
    int rank[COORD_MAX_REPLICAS];
    for (int i = 0; i < n; i++) {
        coord_rep *r = &tmp[i];
        r->addr = addrs[i];
        r->local = cluster_is_local(c->cluster, &addrs[i]);
        r->alive = r->local || cluster_is_alive(c->cluster, &addrs[i]);
        const char *dc = c->local_dc;
        if (!r->local) {
            const ring_endpoint *ep = ring_find(rg, &addrs[i]);
            dc = ep ? ep->dc : "";
        }
        r->group = rep_group(c, repl, cl, dc);
        rank[i] = r->local ? 0 : strcmp(dc, c->local_dc) == 0 ? 1 : 2;
    }
    size_t k = 0;
    for (int pass = 0; pass < 3; pass++)
        for (int i = 0; i < n; i++)
            if (rank[i] == pass) reps[k++] = tmp[i];
    *nreps = k;
    if (cl == COORD_CL_ANY && is_write && coord_hints_enabled(c)) return 0;
    for (int gi = 0; gi < g->n; gi++) {
        int alive = 0;
        for (size_t i = 0; i < k; i++) alive += reps[i].group == gi && reps[i].alive;
        if (alive < g->need[gi]) return unavailable(err, cl, g->need[gi], alive);
    }
    return 0;
}

static int check_cl(coord *c, const schema_replication *repl, enum coord_cl cl, bool is_write,
                    coord_error *err) {
    if (coord_cl_valid(cl, is_write, err)) return ILION_EINVALID;
    if (!c->cluster) {
        coord_rep reps[1];
        size_t n;
        coord_groups g;
        return coord_replicas_for(c, repl, 0, cl, is_write, reps, &n, &g, err);
    }
    /* Token-independent: per group, the alive endpoints that could be replicas, capped by
     * the replication factor there. */
    coord_groups g;
    level_groups(c, repl, cl, &g);
    if (cl == COORD_CL_ANY && is_write && coord_hints_enabled(c)) return 0;
    const ring *rg = cluster_ring(c->cluster);
    int alive[SCHEMA_MAX_DCS] = {0};
    for (uint32_t i = 0; i < ring_endpoint_count(rg); i++) {
        const ring_endpoint *ep = ring_endpoint_at(rg, i);
        bool local = cluster_is_local(c->cluster, &ep->addr);
        if (!local && !cluster_is_alive(c->cluster, &ep->addr)) continue;
        int gi = rep_group(c, repl, cl, local ? c->local_dc : ep->dc);
        if (gi >= 0 && gi < SCHEMA_MAX_DCS) alive[gi]++;
    }
    int total, localrf;
    repl_factors(c, repl, &total, &localrf);
    for (int gi = 0; gi < g.n; gi++) {
        int cap = total;
        if (cl == COORD_CL_EACH_QUORUM && repl->cls == SCHEMA_REPL_NTS) cap = (int)repl->dcs[gi].rf;
        else if (cl == COORD_CL_LOCAL_ONE || cl == COORD_CL_LOCAL_QUORUM || cl == COORD_CL_LOCAL_SERIAL)
            cap = localrf;
        if (repl->cls == SCHEMA_REPL_LOCAL) cap = 1;
        int a = alive[gi] < cap ? alive[gi] : cap;
        if (a < g.need[gi]) return unavailable(err, cl, g.need[gi], a);
    }
    return 0;
}

int coord_check_cl(coord *c, const schema_replication *repl, enum coord_cl cl, bool is_write,
                   coord_error *err) {
    return check_cl(c, repl, cl, is_write, err);
}

/* ---------------------------------------------------------------------- writes --- */

typedef struct wreq wreq;

typedef struct wtarget {
    wreq *w;
    coord_rep rep;
    uint32_t nm;
    uint32_t *midx;          /* mutations this replica holds */
    int *grp;                /* and the group it counts in for each */
    buf msg;                 /* remote: the MUTATION payload */
    uint64_t msg_id;
    bool outstanding;        /* a request or a local sync is pending */
    bool failed;
} wtarget;

typedef struct wmut {
    coord_groups g;
    int got[SCHEMA_MAX_DCS];
    int pend[SCHEMA_MAX_DCS];   /* replicas of the group still expected to answer */
} wmut;

struct wreq {
    coord_req link;
    coord *c;
    coord_write_cb cb;
    void *arg;
    enum coord_cl cl;
    enum coord_write_type wt;
    size_t nmut, nt;
    wmut *muts;
    wtarget *t;
    int refs;                /* outstanding replica answers + the starter */
    bool answered, explicit_failure, timer_on;
    bool sending;            /* targets not sent yet count as pending */
    int failure;             /* the first error a replica reported */
    uv_timer_t timer;
};

static void wreq_free(wreq *w) {
    for (size_t i = 0; i < w->nt; i++) {
        free(w->t[i].midx);
        free(w->t[i].grp);
        buf_free(&w->t[i].msg);
    }
    free(w->t);
    free(w->muts);
    free(w);
}

static void wreq_timer_closed(uv_handle_t *h) { wreq_free(h->data); }

static void wreq_answer(wreq *w, const coord_error *e) {
    if (w->answered) return;
    w->answered = true;
    if (e && e->code == 0x1100) w->c->stats.write_timeouts++;
    w->cb(w->arg, e);
}

static bool wreq_met(const wreq *w, int *recv, int *blockfor) {
    for (size_t i = 0; i < w->nmut; i++) {
        const wmut *m = &w->muts[i];
        int r = 0, b = 0;
        bool ok = true;
        for (int g = 0; g < m->g.n; g++) {
            r += m->got[g] < m->g.need[g] ? m->got[g] : m->g.need[g];
            b += m->g.need[g];
            if (m->got[g] < m->g.need[g]) ok = false;
        }
        if (!ok) {
            *recv = r;
            *blockfor = b;
            return false;
        }
    }
    return true;
}

/* Can every mutation still get its acknowledgements from the replicas not yet answered? */
static bool wreq_possible(const wreq *w) {
    for (size_t i = 0; i < w->nmut; i++) {
        const wmut *m = &w->muts[i];
        for (int g = 0; g < m->g.n; g++)
            if (m->got[g] + m->pend[g] < m->g.need[g]) return false;
    }
    return true;
}

/* A target starts (+1) or stops (-1) being expected. */
static void target_pending(wtarget *t, int delta) {
    t->outstanding = delta > 0;
    t->w->refs += delta;
    for (uint32_t k = 0; k < t->nm; k++)
        if (t->grp[k] >= 0) t->w->muts[t->midx[k]].pend[t->grp[k]] += delta;
}

static void wreq_check(wreq *w) {
    if (!w->answered) {
        int recv = 0, bf = 0;
        coord_error e;
        if (wreq_met(w, &recv, &bf)) {
            wreq_answer(w, NULL);
        } else if (w->c->closing) {
            coord_set_err(&e, 0x0000, w->cl, "coordinator shutting down");
            e.write_type = w->wt;
            wreq_answer(w, &e);
        } else if (!w->sending && !wreq_possible(w)) {
            if (w->explicit_failure)
                coord_set_err(&e, 0x1500, w->cl, "Operation failed - received %d responses and 1 failures (%s)",
                              recv, ilion_strerror(w->failure));
            else
                coord_set_err(&e, 0x1100, w->cl,
                              "Operation timed out - received only %d responses.", recv);
            e.received = recv;
            e.blockfor = bf;
            e.write_type = w->wt;
            wreq_answer(w, &e);
        }
    }
    if (w->answered && w->refs == 0) {
        coord_req_unlink(&w->link);
        if (w->timer_on) {
            w->timer_on = false;
            uv_close((uv_handle_t *)&w->timer, wreq_timer_closed);
        } else {
            wreq_free(w);
        }
    }
}

static void target_acked(wtarget *t) {
    for (uint32_t k = 0; k < t->nm; k++)
        if (t->grp[k] >= 0) t->w->muts[t->midx[k]].got[t->grp[k]]++;
}

/* Hint for a replica that was down or did not answer; ANY counts it. */
static void target_hint(wtarget *t) {
    wreq *w = t->w;
    if (t->rep.local || !coord_hints_enabled(w->c) || w->c->closing) return;
    /* Only a hint that acknowledges (ANY) is fsynced now; others with the next check. */
    if (coord_hints_store(w->c, &t->rep.addr, t->msg.data, t->msg.len, w->cl == COORD_CL_ANY) != 0)
        return;
    if (w->cl == COORD_CL_ANY)
        for (uint32_t k = 0; k < t->nm; k++) w->muts[t->midx[k]].got[0]++;
}

static void local_synced(coord *c, void *arg, int err) {
    wtarget *t = arg;
    wreq *w = t->w;
    target_pending(t, -1);
    if (err == 0) {
        target_acked(t);
    } else {
        t->failed = true;
        if (err != ILION_ECLOSED) {
            w->explicit_failure = true;
            if (!w->failure) w->failure = err;
        }
    }
    wreq_check(w);
}

static void remote_answered(void *arg, int err, uint8_t verb, const uint8_t *p, size_t len) {
    wtarget *t = arg;
    wreq *w = t->w;
    target_pending(t, -1);
    if (err == 0) {
        target_acked(t);
    } else {
        t->failed = true;
        if (err == ILION_ETIMEOUT || err == ILION_EUNAVAILABLE || err == ILION_ECLOSED ||
            err == -ECONNREFUSED) {
            if (err != ILION_ECLOSED) target_hint(t);
        } else {
            w->explicit_failure = true;
            if (!w->failure) w->failure = err;
        }
    }
    wreq_check(w);
}

static void wreq_timeout(uv_timer_t *h) {
    wreq *w = h->data;
    if (!w->answered) {
        int recv = 0, bf = 0;
        if (!wreq_met(w, &recv, &bf)) {
            coord_error e;
            coord_set_err(&e, 0x1100, w->cl, "Operation timed out - received only %d responses.", recv);
            e.received = recv;
            e.blockfor = bf;
            e.write_type = w->wt;
            wreq_answer(w, &e);
        }
    }
    wreq_check(w);
}

static void wreq_abort(coord_req *r) {
    wreq *w = (wreq *)r;
    for (size_t i = 0; i < w->nt; i++) {
        wtarget *t = &w->t[i];
        if (t->outstanding && !t->rep.local) {
            if (net_cancel(w->c->ns, t->msg_id) == 0) target_pending(t, -1);
        }
    }
    wreq_check(w); /* answers "shutting down" (closing is set), frees once refs reach 0 */
}

static wtarget *target_for(wreq *w, const coord_rep *r) {
    for (size_t i = 0; i < w->nt; i++)
        if (w->t[i].rep.local == r->local && (r->local || net_addr_eq(&w->t[i].rep.addr, &r->addr)))
            return &w->t[i];
    wtarget *t = &w->t[w->nt++];
    memset(t, 0, sizeof *t);
    t->w = w;
    t->rep = *r;
    buf_init(&t->msg);
    return t;
}

static int target_add(wtarget *t, uint32_t mi, int grp, size_t cap) {
    if (!t->midx) {
        t->midx = calloc(cap, sizeof *t->midx);
        t->grp = calloc(cap, sizeof *t->grp);
        if (!t->midx || !t->grp) return -ENOMEM;
    }
    t->midx[t->nm] = mi;
    t->grp[t->nm] = grp;
    t->nm++;
    return 0;
}

int coord_write(coord *c, const schema_replication *repl, st_partition *const *muts, size_t n,
                enum coord_cl cl, enum coord_write_type wt, coord_write_cb cb, void *arg) {
    if (!c || !repl || (!muts && n) || !cb) return ILION_EINVALID;
    coord_error err;
    c->stats.writes++;
    if (coord_cl_valid(cl, true, &err)) {
        err.write_type = wt;
        cb(arg, &err);
        return 0;
    }
    wreq *w = calloc(1, sizeof *w);
    if (!w) return -ENOMEM;
    w->c = c;
    w->cb = cb;
    w->arg = arg;
    w->cl = cl;
    w->wt = wt;
    w->nmut = n;
    w->muts = calloc(n ? n : 1, sizeof *w->muts);
    size_t maxt = c->cluster ? ring_endpoint_count(cluster_ring(c->cluster)) + 1 : 1;
    if (maxt > n * COORD_MAX_REPLICAS + 1) maxt = n * COORD_MAX_REPLICAS + 1;
    w->t = calloc(maxt, sizeof *w->t);
    if (!w->muts || !w->t) {
        wreq_free(w);
        return -ENOMEM;
    }
    /* Replicas per mutation and the targets they form. */
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        coord_rep reps[COORD_MAX_REPLICAS];
        size_t nr;
        int64_t token = murmur3_token(muts[i]->pk, muts[i]->pklen);
        if (coord_replicas_for(c, repl, token, cl, true, reps, &nr, &w->muts[i].g, &err)) {
            c->stats.unavailables++;
            err.write_type = wt;
            wreq_free(w);
            cb(arg, &err);
            return 0;
        }
        for (size_t k = 0; k < nr && rc == 0; k++)
            rc = target_add(target_for(w, &reps[k]), (uint32_t)i, reps[k].group, n);
    }
    if (rc) {
        wreq_free(w);
        return rc;
    }
    /* Messages for the remote targets (also what a hint keeps). */
    bool any_remote = false;
    for (size_t ti = 0; ti < w->nt; ti++) any_remote |= !w->t[ti].rep.local;
    buf enc;
    buf_init(&enc);
    size_t *off = calloc(n + 1, sizeof *off);
    if (!off) {
        wreq_free(w);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n && any_remote; i++) {
        off[i] = enc.len;
        st_partition_encode(muts[i], &enc);
    }
    off[n] = enc.len;
    for (size_t ti = 0; ti < w->nt; ti++) {
        wtarget *t = &w->t[ti];
        if (t->rep.local) continue;
        coord_message_begin(&t->msg, t->nm);
        for (uint32_t k = 0; k < t->nm; k++)
            coord_message_add(&t->msg, enc.data + off[t->midx[k]], off[t->midx[k] + 1] - off[t->midx[k]]);
    }
    bool oom = enc.oom;
    for (size_t ti = 0; ti < w->nt; ti++) oom |= w->t[ti].msg.oom;
    buf_free(&enc);
    free(off);
    if (oom) {
        wreq_free(w);
        return -ENOMEM;
    }
    w->refs = 1;
    w->sending = true;
    coord_req_link(c, &w->link, wreq_abort);
    for (size_t ti = 0; ti < w->nt; ti++) {
        wtarget *t = &w->t[ti];
        if (t->rep.local) {
            uint64_t pos = 0;
            for (uint32_t k = 0; k < t->nm && rc == 0; k++) {
                uint64_t p = 0;
                rc = storage_apply(c->engine, muts[t->midx[k]], &p);
                if (p > pos) pos = p;
            }
            if (rc) {
                LOG_WARN("coord", "local write failed: %s", ilion_strerror(rc));
                t->failed = true;
                w->explicit_failure = true;
                if (!w->failure) w->failure = rc;
                rc = 0;
                continue;
            }
            target_pending(t, +1);
            if (coord_wait_sync(c, pos, local_synced, t)) {
                target_pending(t, -1);
                t->failed = true;
                w->explicit_failure = true;
                if (!w->failure) w->failure = -ENOMEM;
            }
        } else if (!t->rep.alive) {
            t->failed = true;
            target_hint(t);
        } else {
            target_pending(t, +1);
            int r = net_request(c->ns, &t->rep.addr, NET_VERB_MUTATION, t->msg.data, t->msg.len,
                                c->opt.write_request_timeout_ms, remote_answered, t, &t->msg_id);
            if (r) {
                target_pending(t, -1);
                t->failed = true;
                if (r == ILION_EUNAVAILABLE) {
                    target_hint(t);
                } else {
                    w->explicit_failure = true;
                    if (!w->failure) w->failure = r;
                }
            }
        }
    }
    w->refs--;
    w->sending = false;
    if (!w->answered || w->refs > 0) {
        /* Something is still to come: the timeout runs from now (sends are immediate). */
        uv_timer_init(c->loop, &w->timer);
        w->timer.data = w;
        w->timer_on = true;
        uv_timer_start(&w->timer, wreq_timeout, c->opt.write_request_timeout_ms, 0);
    }
    wreq_check(w);
    return 0;
}

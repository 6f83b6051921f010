/* The paxos service: replica verbs answered only after their state is durable (batched
 * fdatasync on the thread pool), and the proposer (paxos_cas). Wire format: docs/paxos.md. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/cluster/cluster.h"
#include "ilion/net/messaging.h"
#include "ilion/util/clock.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"
#include "ilion/util/murmur3.h"
#include "paxos_int.h"

#define PX_VERSION 1
#define PX_MAX_REPLICAS 32
#define PX_COMPACT_MIN (4u << 20)

enum { PH_PREPARE = 1, PH_PROPOSE = 2, PH_COMMIT = 3, PH_BACKOFF = 4, PH_REPAIR = 5 };

typedef void (*px_local_cb)(void *arg, int err, uint8_t verb, const uint8_t *p, size_t n);

/* A reply held until the state it reports is durable. */
typedef struct px_reply {
    struct px_reply *next;
    bool local;
    net_msg m;               /* remote: the request answered */
    px_local_cb cb;          /* local: the proposer's callback */
    void *cb_arg;
    uint8_t verb;
    int err;                 /* != 0: an error answer */
    buf out;
} px_reply;

typedef struct px_op px_op;

/* One outstanding request of a proposer to one replica. */
typedef struct px_call {
    struct px_call *next;
    px_op *op;
    uint32_t attempt;
    uint8_t phase;
    bool local;
    int idx;                 /* replica index in the operation */
    uint64_t net_id;
} px_call;

struct paxos {
    uv_loop_t *loop;
    storage_engine *engine;
    struct cluster *cluster;
    net_service *ns;
    paxos_options o;
    px_store st;
    paxos_ballot_gen gen;
    uint64_t rng;
    /* durability batching */
    px_reply *rq_head, **rq_tail;
    uint64_t rq_pos;
    bool rq_fsync;           /* a promise or an acceptance waits in the batch */
    bool job_running, job_rewrite, job_fsync, want_compact;
    buf job_data;
    px_reply *job_replies;
    uint64_t job_pos;
    int job_err;
    uv_work_t work;
    int failed;              /* sticky: a failed fsync stops every later answer */
    uint64_t compact_floor;
    bool closing, free_after_job;
    px_op *ops;
    paxos_stats stats;
};

struct px_op {
    paxos *p;
    px_op *next, **pprev;
    int refs;
    bool finished;
    st_arena arena;
    uint64_t table_id;
    uint8_t *pk;
    uint32_t pklen;
    buf slice;               /* encoded slice for PREPARE */
    uint16_t serial_cl, commit_cl;
    paxos_cond_cb cond;
    paxos_done_cb done;
    void *arg;
    net_addr reps[PX_MAX_REPLICAS];
    bool rep_local[PX_MAX_REPLICAS], rep_scope[PX_MAX_REPLICAS];
    size_t nrep;
    int quorum, nscope, blockfor;
    uint64_t start_ms;
    uint32_t attempt;
    uint8_t phase;
    paxos_ballot ballot;
    int ok, rej, fail, timeouts, expected;
    /* prepare results */
    paxos_ballot max_commit, inprog_ballot, max_seen;
    uint8_t *inprog;         /* arena */
    uint32_t inprog_len;
    bool have_inprog;
    bool promised_by[PX_MAX_REPLICAS];
    paxos_ballot rep_commit[PX_MAX_REPLICAS];
    uint8_t *mc_value;       /* arena: the value of max_commit, when a promise carried it */
    uint32_t mc_len;
    bool have_mc_value;
    st_partition *merged;
    bool reproposing, empty;
    uint8_t *proposal;       /* arena */
    uint32_t proposal_len;
    px_call *calls;
    uv_timer_t timer;
};

static void kick(paxos *p);

/* ------------------------------------------------------------------- small helpers --- */

static uint64_t rng_next(paxos *p) {
    uint64_t x = p->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    p->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static int64_t now_us(paxos *p) { return p->o.clock_us ? p->o.clock_us(p->o.clock_arg) : clock_now_us(); }

static int rd_ballot(rd *r, paxos_ballot *b) {
    const uint8_t *q;
    if (rd_bytes(r, 16, &q)) return -1;
    memcpy(b->b, q, 16);
    return 0;
}

/* u32 length (UINT32_MAX = absent) then bytes. */
static int rd_opt_bytes(rd *r, const uint8_t **q, uint32_t *n, bool *present) {
    if (rd_u32(r, n)) return -1;
    *present = *n != UINT32_MAX;
    if (!*present) {
        *q = NULL;
        *n = 0;
        return 0;
    }
    return rd_bytes(r, *n, q);
}

static void put_opt_bytes(buf *b, const uint8_t *q, uint32_t n, bool present) {
    buf_u32(b, present ? n : UINT32_MAX);
    if (present && n) buf_put(b, q, n);
}

static void put_key(buf *b, uint64_t tid, const uint8_t *pk, uint32_t pklen) {
    buf_u8(b, PX_VERSION);
    buf_u64(b, tid);
    buf_u32(b, pklen);
    buf_put(b, pk, pklen);
}

static int rd_key(rd *r, uint64_t *tid, const uint8_t **pk, uint32_t *pklen) {
    uint8_t v;
    if (rd_u8(r, &v) || v != PX_VERSION || rd_u64(r, tid) || rd_u32(r, pklen) || *pklen > (1u << 16) ||
        rd_bytes(r, *pklen, pk))
        return -1;
    return 0;
}

/* Every timestamp of the mutation becomes the ballot's µs (commits are ordered by ballot). */
static void set_timestamps(st_partition *m, int64_t us) {
    if (m->del.ts != ST_NO_TIMESTAMP) m->del.ts = us;
    for (uint32_t i = 0; i < m->nrows; i++) {
        st_row *r = &m->rows[i];
        if (r->marker.ts != ST_NO_TIMESTAMP) r->marker.ts = us;
        if (r->del.ts != ST_NO_TIMESTAMP) r->del.ts = us;
        for (uint32_t j = 0; j < r->ncells; j++) r->cells[j].ts = us;
    }
}

/* ------------------------------------------------------------- durable replies --- */

static void reply_free(px_reply *r) {
    buf_free(&r->out);
    free(r);
}

/* A reply that will never be delivered: a local requester still hears of it (and frees its
 * request). */
static void reply_abort(px_reply *r) {
    if (r->local) r->cb(r->cb_arg, ILION_ECLOSED, 0, NULL, 0);
    reply_free(r);
}

static void reply_queue(paxos *p, px_reply *r) {
    r->next = NULL;
    *p->rq_tail = r;
    p->rq_tail = &r->next;
    kick(p);
}

static void reply_deliver(paxos *p, px_reply *r) {
    int err = r->err ? r->err : p->failed;
    if (r->local) {
        if (err) r->cb(r->cb_arg, err, 0, NULL, 0);
        else r->cb(r->cb_arg, 0, r->verb, r->out.data, r->out.len);
    } else if (p->ns) {
        if (err) net_respond_error(p->ns, &r->m, err);
        else net_respond(p->ns, &r->m, r->verb, r->out.data, r->out.len);
    }
}

static void paxos_free(paxos *p) {
    for (px_reply *r = p->rq_head, *n; r; r = n) {
        n = r->next;
        reply_free(r);
    }
    buf_free(&p->job_data);
    pxs_close(&p->st);
    free(p);
}

static void job_work(uv_work_t *w) {
    paxos *p = w->data;
    p->job_err = pxs_write(&p->st, p->job_data.data, p->job_data.len, p->job_rewrite, p->job_fsync);
    if (!p->job_err && p->job_pos) p->job_err = storage_wait_synced(p->engine, p->job_pos);
}

static void job_after(uv_work_t *w, int status) {
    paxos *p = w->data;
    p->job_running = false;
    px_reply *list = p->job_replies;
    p->job_replies = NULL;
    if (p->closing) {
        for (px_reply *n; list; list = n) {
            n = list->next;
            reply_abort(list);
        }
        if (p->free_after_job) paxos_free(p);
        return;
    }
    int err = status ? status : p->job_err;
    if (err && !p->failed) {
        p->failed = err;
        LOG_ERROR("paxos", "state log sync failed (%s): paxos requests are refused from now on",
                  ilion_strerror(err));
    }
    p->stats.log_syncs++;
    if (p->job_rewrite) p->stats.log_compactions++;
    for (px_reply *n; list; list = n) {
        n = list->next;
        reply_deliver(p, list);
        reply_free(list);
    }
    kick(p);
}

static void kick(paxos *p) {
    if (p->job_running || p->closing) return;
    if (!p->rq_head && !p->st.pending.len && !p->want_compact) return;
    p->job_replies = p->rq_head;
    p->rq_head = NULL;
    p->rq_tail = &p->rq_head;
    p->job_pos = p->rq_pos;
    p->rq_pos = 0;
    p->job_fsync = p->rq_fsync;
    p->rq_fsync = false;
    buf_reset(&p->job_data);
    p->job_rewrite = p->want_compact ||
                     (p->st.log_bytes > PX_COMPACT_MIN && p->st.log_bytes > 4 * p->compact_floor);
    p->want_compact = false;
    if (p->job_rewrite) {
        buf_reset(&p->st.pending);
        pxs_snapshot(&p->st, &p->job_data, now_us(p) - (int64_t)p->o.state_ttl_s * 1000000);
        p->compact_floor = p->st.live_bytes;
    } else {
        buf tmp = p->job_data;
        p->job_data = p->st.pending;
        p->st.pending = tmp;
    }
    if (p->job_data.oom) {
        p->failed = -ENOMEM;
        buf_reset(&p->job_data);
    }
    p->work.data = p;
    p->job_running = true;
    int rc = uv_queue_work(p->loop, &p->work, job_work, job_after);
    if (rc) {
        p->job_running = false;
        p->failed = rc;
        px_reply *list = p->job_replies;
        p->job_replies = NULL;
        for (px_reply *n; list; list = n) {
            n = list->next;
            reply_deliver(p, list);
            reply_free(list);
        }
    }
}

/* --------------------------------------------------------------- replica side --- */

static int decode_slice(rd *r, storage_slice *s) {
    uint8_t f;
    uint32_t n;
    memset(s, 0, sizeof *s);
    if (rd_u8(r, &f)) return -1;
    if (f & 1) {
        if (rd_u32(r, &n) || rd_bytes(r, n, &s->start)) return -1;
        s->start_len = n;
        s->start_incl = (f & 2) != 0;
    }
    if (f & 4) {
        if (rd_u32(r, &n) || rd_bytes(r, n, &s->end)) return -1;
        s->end_len = n;
        s->end_incl = (f & 8) != 0;
    }
    return (f & 16) ? 1 : 0;   /* 16: whole partition */
}

static void encode_slice(buf *b, const storage_slice *s) {
    if (!s) {
        buf_u8(b, 16);
        return;
    }
    uint8_t f = (uint8_t)((s->start ? 1 : 0) | (s->start_incl ? 2 : 0) | (s->end ? 4 : 0) | (s->end_incl ? 8 : 0));
    buf_u8(b, f);
    if (s->start) {
        buf_u32(b, s->start_len);
        buf_put(b, s->start, s->start_len);
    }
    if (s->end) {
        buf_u32(b, s->end_len);
        buf_put(b, s->end, s->end_len);
    }
}

static void replica_prepare(paxos *p, rd *r, px_reply *out) {
    uint64_t tid;
    const uint8_t *pk;
    uint32_t pklen;
    paxos_ballot b;
    storage_slice sl;
    int whole;
    if (rd_key(r, &tid, &pk, &pklen) || rd_ballot(r, &b) || (whole = decode_slice(r, &sl)) < 0 ||
        paxos_ballot_is_none(&b)) {
        out->err = ILION_EPROTOCOL;
        return;
    }
    p->stats.prepares++;
    paxos_ballot_observe(&p->gen, &b);
    px_entry *e = pxs_find(&p->st, tid, pk, pklen, true);
    if (!e) {
        out->err = -ENOMEM;
        return;
    }
    out->verb = NET_VERB_PAXOS_PREPARE_RSP;
    buf *o = &out->out;
    buf_u8(o, PX_VERSION);
    if (paxos_ballot_cmp(&b, &e->promised) <= 0) {
        buf_u8(o, 0);
        buf_put(o, e->promised.b, 16);
        return;
    }
    st_arena a;
    arena_init(&a);
    st_partition *cur = NULL;
    int rc = storage_read(p->engine, tid, pk, pklen, whole ? NULL : &sl, clock_now_s(), &a, &cur);
    if (rc) {
        arena_free(&a);
        buf_reset(o);
        out->err = rc;
        return;
    }
    e->promised = b;
    pxs_record(&p->st, e);
    p->rq_fsync = true;
    buf_u8(o, 1);
    buf_put(o, e->promised.b, 16);
    buf_put(o, e->accepted.b, 16);
    put_opt_bytes(o, e->proposal, e->proposal_len, e->proposal != NULL);
    buf_put(o, e->committed.b, 16);
    put_opt_bytes(o, e->cvalue, e->cvalue_len, e->cvalue != NULL);
    if (cur) {
        buf enc;
        buf_init(&enc);
        st_partition_encode(cur, &enc);
        put_opt_bytes(o, enc.data, (uint32_t)enc.len, true);
        buf_free(&enc);
    } else {
        put_opt_bytes(o, NULL, 0, false);
    }
    arena_free(&a);
}

/* Checks that a proposal is an encoded update of this very partition (or empty). */
static int check_proposal(uint64_t tid, const uint8_t *pk, uint32_t pklen, const uint8_t *prop,
                          uint32_t len, st_arena *a, st_partition **m) {
    *m = NULL;
    if (!len) return 0;
    if (st_partition_decode(a, prop, len, m)) return ILION_EPROTOCOL;
    if ((*m)->table_id != tid || (*m)->pklen != pklen || memcmp((*m)->pk, pk, pklen) != 0) return ILION_EPROTOCOL;
    return 0;
}

/* PROPOSE and COMMIT bodies: key, a ballot (never "none") and the proposal bytes. */
static int rd_ballot_msg(rd *r, uint64_t *tid, const uint8_t **pk, uint32_t *pklen, paxos_ballot *b,
                         const uint8_t **prop, uint32_t *plen) {
    if (rd_key(r, tid, pk, pklen) || rd_ballot(r, b) || rd_u32(r, plen) || rd_bytes(r, *plen, prop) ||
        paxos_ballot_is_none(b))
        return ILION_EPROTOCOL;
    return 0;
}

static void replica_propose(paxos *p, rd *r, px_reply *out) {
    uint64_t tid;
    const uint8_t *pk, *prop;
    uint32_t pklen, plen;
    paxos_ballot b;
    st_arena a;
    st_partition *m;
    if (rd_ballot_msg(r, &tid, &pk, &pklen, &b, &prop, &plen)) {
        out->err = ILION_EPROTOCOL;
        return;
    }
    arena_init(&a);
    int rc = check_proposal(tid, pk, pklen, prop, plen, &a, &m);
    arena_free(&a);
    if (rc) {
        out->err = rc;
        return;
    }
    p->stats.proposes++;
    paxos_ballot_observe(&p->gen, &b);
    px_entry *e = pxs_find(&p->st, tid, pk, pklen, true);
    uint8_t *copy = malloc(plen ? plen : 1);
    if (!e || !copy) {
        free(copy);
        out->err = -ENOMEM;
        return;
    }
    out->verb = NET_VERB_PAXOS_PROPOSE_RSP;
    buf_u8(&out->out, PX_VERSION);
    /* A ballot at or below a known commit is from a finished round: refusing is always safe. */
    if (paxos_ballot_cmp(&b, &e->promised) < 0 || paxos_ballot_cmp(&b, &e->committed) <= 0) {
        free(copy);
        buf_u8(&out->out, 0);
        const paxos_ballot *hi = paxos_ballot_cmp(&e->promised, &e->committed) > 0 ? &e->promised : &e->committed;
        buf_put(&out->out, hi->b, 16);
        return;
    }
    memcpy(copy, prop, plen);
    e->promised = b;
    e->accepted = b;
    free(e->proposal);
    e->proposal = copy;
    e->proposal_len = plen;
    pxs_record(&p->st, e);
    p->rq_fsync = true;
    buf_u8(&out->out, 1);
    buf_put(&out->out, b.b, 16);
}

static void replica_commit(paxos *p, rd *r, px_reply *out) {
    uint64_t tid;
    const uint8_t *pk, *prop;
    uint32_t pklen, plen;
    paxos_ballot b;
    st_arena a;
    st_partition *m;
    if (rd_ballot_msg(r, &tid, &pk, &pklen, &b, &prop, &plen)) {
        out->err = ILION_EPROTOCOL;
        return;
    }
    arena_init(&a);
    int rc = check_proposal(tid, pk, pklen, prop, plen, &a, &m);
    if (!rc && m && (m->nrows || m->del.ts != ST_NO_TIMESTAMP)) {
        uint64_t pos = 0;
        rc = storage_apply(p->engine, m, &pos);
        if (!rc && pos > p->rq_pos) p->rq_pos = pos;
    }
    arena_free(&a);
    if (rc) {
        out->err = rc;
        return;
    }
    p->stats.commits++;
    paxos_ballot_observe(&p->gen, &b);
    px_entry *e = pxs_find(&p->st, tid, pk, pklen, true);
    if (!e) {
        out->err = -ENOMEM;
        return;
    }
    if (paxos_ballot_cmp(&b, &e->committed) > 0) {
        uint8_t *cv = malloc(plen ? plen : 1);
        if (!cv) {
            out->err = -ENOMEM;
            return;
        }
        memcpy(cv, prop, plen);
        free(e->cvalue);
        e->cvalue = cv;
        e->cvalue_len = plen;
        e->committed = b;
        /* The accepted value is decided now: its bytes are no longer needed (the ballots are
         * kept, so the promise high-water mark survives). */
        if (paxos_ballot_cmp(&e->accepted, &b) <= 0 && e->proposal) {
            free(e->proposal);
            e->proposal = NULL;
            e->proposal_len = 0;
        }
        pxs_record(&p->st, e);
    }
    out->verb = NET_VERB_PAXOS_COMMIT_RSP;
    buf_u8(&out->out, PX_VERSION);
}

static void replica_handle(paxos *p, uint8_t verb, const uint8_t *payload, size_t len, px_reply *out) {
    rd r;
    rd_init(&r, payload, len);
    if (p->failed) out->err = p->failed;
    else if (verb == NET_VERB_PAXOS_PREPARE) replica_prepare(p, &r, out);
    else if (verb == NET_VERB_PAXOS_PROPOSE) replica_propose(p, &r, out);
    else if (verb == NET_VERB_PAXOS_COMMIT) replica_commit(p, &r, out);
    else out->err = ILION_EPROTOCOL;
    if (out->out.oom && !out->err) out->err = -ENOMEM;
    reply_queue(p, out);
}

static void on_verb(void *arg, net_service *ns, const net_msg *m, const uint8_t *payload, size_t len) {
    paxos *p = arg;
    px_reply *r = calloc(1, sizeof *r);
    if (!r) {
        net_respond_error(ns, m, -ENOMEM);
        return;
    }
    buf_init(&r->out);
    r->m = *m;
    replica_handle(p, m->verb, payload, len, r);
}

static void local_request(paxos *p, uint8_t verb, const uint8_t *payload, size_t len, px_local_cb cb, void *arg) {
    px_reply *r = calloc(1, sizeof *r);
    if (!r) {
        cb(arg, -ENOMEM, 0, NULL, 0);
        return;
    }
    buf_init(&r->out);
    r->local = true;
    r->cb = cb;
    r->cb_arg = arg;
    replica_handle(p, verb, payload, len, r);
}

/* ----------------------------------------------------------------- lifecycle --- */

void paxos_options_default(paxos_options *o) {
    memset(o, 0, sizeof *o);
    o->cas_contention_timeout_ms = 1000;
    o->request_timeout_ms = 2000;
    o->state_ttl_s = 864000;
}

int paxos_create(uv_loop_t *loop, storage_engine *engine, struct cluster *cluster, const paxos_options *o,
                 paxos **out) {
    if (!loop || !engine || !o || !o->data_dir || !out) return ILION_EINVALID;
    paxos *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    p->loop = loop;
    p->engine = engine;
    p->cluster = cluster;
    p->o = *o;
    if (!p->o.cas_contention_timeout_ms) p->o.cas_contention_timeout_ms = 1000;
    if (!p->o.request_timeout_ms) p->o.request_timeout_ms = 2000;
    if (!p->o.state_ttl_s) p->o.state_ttl_s = 864000;
    p->rq_tail = &p->rq_head;
    buf_init(&p->job_data);
    int rc = pxs_open(&p->st, o->data_dir);
    if (rc) {
        pxs_close(&p->st);
        free(p);
        return rc;
    }
    p->compact_floor = p->st.log_bytes;
    p->rng = o->rng_seed ? o->rng_seed : (clock_mono_ns() ^ (uint64_t)clock_now_us());
    if (!p->rng) p->rng = 0x9e3779b97f4a7c15ULL;
    uint8_t node[6];
    if (cluster) {
        memcpy(node, cluster_host_id(cluster), 6);
        node[5] ^= cluster_host_id(cluster)[15];
    } else {
        uint64_t x = rng_next(p);
        memcpy(node, &x, 6);
    }
    paxos_ballot_gen_init(&p->gen, node, (uint16_t)rng_next(p));
    /* A restart must not reuse ballots it promised or accepted before. */
    paxos_ballot_observe(&p->gen, &p->st.floor);
    for (size_t i = 0; i < p->st.nbuckets; i++)
        for (px_entry *e = p->st.buckets[i]; e; e = e->next) {
            paxos_ballot_observe(&p->gen, &e->promised);
            paxos_ballot_observe(&p->gen, &e->committed);
        }
    if (cluster) {
        p->ns = cluster_messaging(cluster);
        net_register(p->ns, NET_VERB_PAXOS_PREPARE, on_verb, p);
        net_register(p->ns, NET_VERB_PAXOS_PROPOSE, on_verb, p);
        net_register(p->ns, NET_VERB_PAXOS_COMMIT, on_verb, p);
    }
    *out = p;
    return 0;
}

static void op_finish(px_op *op, paxos_outcome *oc);

void paxos_destroy(paxos *p) {
    if (!p) return;
    if (p->ns) {
        net_register(p->ns, NET_VERB_PAXOS_PREPARE, NULL, NULL);
        net_register(p->ns, NET_VERB_PAXOS_PROPOSE, NULL, NULL);
        net_register(p->ns, NET_VERB_PAXOS_COMMIT, NULL, NULL);
    }
    p->closing = true;
    while (p->ops) {
        paxos_outcome oc;
        memset(&oc, 0, sizeof oc);
        oc.err = ILION_ECLOSED;
        op_finish(p->ops, &oc);
    }
    /* Replies not yet durable are never sent: their requesters time out (or, local, end here). */
    px_reply *list = p->rq_head;
    p->rq_head = NULL;
    p->rq_tail = &p->rq_head;
    for (px_reply *n; list; list = n) {
        n = list->next;
        reply_abort(list);
    }
    if (p->job_running) p->free_after_job = true;
    else paxos_free(p);
}

void paxos_get_stats(const paxos *p, paxos_stats *out) { *out = p->stats; }

int paxos_replica_get(paxos *p, uint64_t table_id, const void *pk, uint32_t pklen, st_arena *a,
                      paxos_replica_state *out) {
    px_entry *e = pxs_find(&p->st, table_id, pk, pklen, false);
    if (!e) {
        if (paxos_ballot_is_none(&p->st.floor)) return ILION_ENOTFOUND;
        memset(out, 0, sizeof *out);
        out->promised = p->st.floor;
        return 0;
    }
    out->promised = e->promised;
    out->accepted = e->accepted;
    out->committed = e->committed;
    out->proposal = e->proposal ? arena_dup(a, e->proposal, e->proposal_len ? e->proposal_len : 1) : NULL;
    out->proposal_len = e->proposal_len;
    return 0;
}

int paxos_compact(paxos *p) {
    p->want_compact = true;
    kick(p);
    return 0;
}

/* ------------------------------------------------------------------- proposer --- */

static void op_unref(px_op *op) {
    if (--op->refs > 0) return;
    arena_free(&op->arena);
    buf_free(&op->slice);
    free(op->pk);
    free(op);
}

static void op_timer_closed(uv_handle_t *h) { op_unref(h->data); }

static void op_finish(px_op *op, paxos_outcome *oc) {
    paxos *p = op->p;
    if (op->finished) return;
    op->finished = true;
    *op->pprev = op->next;
    if (op->next) op->next->pprev = op->pprev;
    /* Requests still out are cancelled (remote) or their replies ignored (local). */
    for (px_call *c = op->calls, *n; c; c = n) {
        n = c->next;
        if (!c->local && p->ns && net_cancel(p->ns, c->net_id) == 0) {
            free(c);
            op->refs--;
        } else {
            c->op = NULL; /* still pending locally: freed when it answers */
            op->refs--;
        }
    }
    op->calls = NULL;
    oc->attempts = op->attempt;
    if (!oc->cl) oc->cl = op->serial_cl;
    if (oc->err == ILION_EUNAVAILABLE) p->stats.unavailable++;
    else if (oc->err == ILION_ETIMEOUT) p->stats.timeouts++;
    else if (!oc->err && oc->applied) p->stats.applied++;
    else if (!oc->err) p->stats.not_applied++;
    op->done(op->arg, oc);
    uv_timer_stop(&op->timer);
    uv_close((uv_handle_t *)&op->timer, op_timer_closed);
}

static void op_timeout(px_op *op, int received, int blockfor, bool commit_phase) {
    paxos_outcome oc;
    memset(&oc, 0, sizeof oc);
    oc.err = ILION_ETIMEOUT;
    oc.received = received;
    oc.blockfor = blockfor;
    oc.commit_phase = commit_phase;
    oc.cl = commit_phase ? op->commit_cl : op->serial_cl;
    op_finish(op, &oc);
}

static void on_call_rsp(void *arg, int err, uint8_t verb, const uint8_t *payload, size_t len);

static void call_remove(px_op *op, px_call *c) {
    for (px_call **pp = &op->calls; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            return;
        }
}

/* Sends verb+payload to every alive replica (in scope or all); counts immediate failures. */
static void send_phase(px_op *op, uint8_t phase, uint8_t verb, const buf *payload, bool scope_only,
                       const bool *only) {
    paxos *p = op->p;
    op->phase = phase;
    op->ok = op->rej = op->fail = op->timeouts = op->expected = 0;
    for (size_t i = 0; i < op->nrep; i++) {
        if ((scope_only && !op->rep_scope[i]) || (only && !only[i])) continue;
        if (!op->rep_local[i] && !cluster_is_alive(p->cluster, &op->reps[i])) continue;
        op->expected++;
    }
    int need = phase == PH_COMMIT ? op->blockfor : phase == PH_REPAIR ? 1 : op->quorum;
    if (op->expected < need) {
        /* Replicas went down since the start: nothing would complete this phase. */
        paxos_outcome oc;
        memset(&oc, 0, sizeof oc);
        if (phase == PH_COMMIT || phase == PH_REPAIR) {
            op_timeout(op, 0, need, phase == PH_COMMIT && !op->reproposing);
            return;
        }
        if (phase == PH_PREPARE) {
            oc.err = ILION_EUNAVAILABLE;
            oc.required = need;
            oc.alive = op->expected;
            op_finish(op, &oc);
        } else {
            op_timeout(op, 0, need, false);
        }
        return;
    }
    uint32_t attempt = op->attempt;
    for (size_t i = 0; i < op->nrep && !op->finished && op->attempt == attempt && op->phase == phase; i++) {
        if ((scope_only && !op->rep_scope[i]) || (only && !only[i])) continue;
        if (!op->rep_local[i] && !cluster_is_alive(p->cluster, &op->reps[i])) continue;
        px_call *c = calloc(1, sizeof *c);
        if (!c) {
            on_call_rsp(NULL, -ENOMEM, 0, NULL, 0);
            continue;
        }
        c->op = op;
        c->attempt = op->attempt;
        c->phase = phase;
        c->local = op->rep_local[i];
        c->idx = (int)i;
        c->next = op->calls;
        op->calls = c;
        op->refs++;
        if (c->local) {
            local_request(p, verb, payload->data, payload->len, on_call_rsp, c);
        } else {
            int rc = net_request(p->ns, &op->reps[i], verb, payload->data, payload->len, p->o.request_timeout_ms,
                                 on_call_rsp, c, &c->net_id);
            if (rc) on_call_rsp(c, rc, 0, NULL, 0);
        }
    }
}

static void start_attempt(px_op *op);

static void on_backoff(uv_timer_t *t) {
    px_op *op = t->data;
    if (!op->finished) start_attempt(op);
}

/* Contention or a finished re-proposal: another ballot, after a jittered pause if asked. */
static void retry(px_op *op, bool backoff) {
    paxos *p = op->p;
    uv_update_time(p->loop);
    uint64_t elapsed = uv_now(p->loop) - op->start_ms;
    if (elapsed >= p->o.cas_contention_timeout_ms) {
        op_timeout(op, 0, op->quorum, false);
        return;
    }
    op->phase = PH_BACKOFF;
    op->attempt++;
    if (!backoff) {
        uv_timer_start(&op->timer, on_backoff, 0, 0);
        return;
    }
    p->stats.contentions++;
    uint64_t cap = (uint64_t)5 << (op->attempt < 5 ? op->attempt : 5); /* 10..160 ms */
    if (cap > 100) cap = 100;
    uint64_t left = p->o.cas_contention_timeout_ms - elapsed;
    uint64_t ms = 1 + rng_next(p) % cap;
    if (ms > left) ms = left;
    uv_timer_start(&op->timer, on_backoff, ms, 0);
}

static void send_propose(px_op *op) {
    buf b;
    buf_init(&b);
    put_key(&b, op->table_id, op->pk, op->pklen);
    buf_put(&b, op->ballot.b, 16);
    buf_u32(&b, op->proposal_len);
    if (op->proposal_len) buf_put(&b, op->proposal, op->proposal_len);
    send_phase(op, PH_PROPOSE, NET_VERB_PAXOS_PROPOSE, &b, true, NULL);
    buf_free(&b);
}

static void send_commit(px_op *op) {
    buf b;
    buf_init(&b);
    put_key(&b, op->table_id, op->pk, op->pklen);
    buf_put(&b, op->ballot.b, 16);
    buf_u32(&b, op->proposal_len);
    if (op->proposal_len) buf_put(&b, op->proposal, op->proposal_len);
    uint32_t attempt = op->attempt;
    send_phase(op, PH_COMMIT, NET_VERB_PAXOS_COMMIT, &b, false, NULL);
    buf_free(&b);
    /* ANY: nobody needs to answer. */
    if (!op->finished && op->attempt == attempt && op->phase == PH_COMMIT && op->blockfor == 0) {
        if (op->reproposing) {
            retry(op, false);
        } else {
            paxos_outcome oc;
            memset(&oc, 0, sizeof oc);
            oc.applied = !op->empty;
            oc.current = op->merged;
            op_finish(op, &oc);
        }
    }
}

static void prepare_done(px_op *op) {
    paxos *p = op->p;
    if (op->have_inprog && paxos_ballot_cmp(&op->inprog_ballot, &op->max_commit) > 0) {
        /* CASSANDRA-6012: finish the round some earlier proposer left accepted, first. */
        p->stats.reproposals++;
        op->reproposing = true;
        op->empty = op->inprog_len == 0;
        op->proposal = op->inprog;
        op->proposal_len = op->inprog_len;
        send_propose(op);
        return;
    }
    /* A promiser that missed the most recent commit learns it first, so that the value is
     * held by a quorum before anything newer is decided (Cassandra's commit repair). */
    if (op->have_mc_value) {
        bool stale[PX_MAX_REPLICAS] = {false};
        bool any = false;
        for (size_t i = 0; i < op->nrep; i++)
            if (op->promised_by[i] && paxos_ballot_cmp(&op->rep_commit[i], &op->max_commit) < 0) stale[i] = any = true;
        if (any) {
            p->stats.commit_repairs++;
            buf b;
            buf_init(&b);
            put_key(&b, op->table_id, op->pk, op->pklen);
            buf_put(&b, op->max_commit.b, 16);
            buf_u32(&b, op->mc_len);
            if (op->mc_len) buf_put(&b, op->mc_value, op->mc_len);
            send_phase(op, PH_REPAIR, NET_VERB_PAXOS_COMMIT, &b, false, stale);
            buf_free(&b);
            return;
        }
    }
    /* Our commit must be newer (in µs) than every commit and acceptance seen. */
    if (paxos_ballot_us(&op->ballot) <= paxos_ballot_us(&op->max_seen)) {
        retry(op, false);
        return;
    }
    op->reproposing = false;
    st_partition *m = NULL;
    if (op->cond) {
        int rc = op->cond(op->arg, op->merged, &op->arena, &m);
        if (rc) {
            paxos_outcome oc;
            memset(&oc, 0, sizeof oc);
            oc.err = rc;
            oc.current = op->merged;
            op_finish(op, &oc);
            return;
        }
    }
    op->empty = m == NULL;
    op->proposal = NULL;
    op->proposal_len = 0;
    if (m) {
        if (m->table_id != op->table_id || m->pklen != op->pklen || memcmp(m->pk, op->pk, op->pklen)) {
            paxos_outcome oc;
            memset(&oc, 0, sizeof oc);
            oc.err = ILION_EINVALID;
            op_finish(op, &oc);
            return;
        }
        st_partition *c = st_partition_copy(&op->arena, m);
        buf b;
        buf_init(&b);
        if (c) {
            set_timestamps(c, paxos_ballot_us(&op->ballot));
            st_partition_encode(c, &b);
        }
        if (!c || b.oom || !(op->proposal = arena_dup(&op->arena, b.data, b.len))) {
            buf_free(&b);
            paxos_outcome oc;
            memset(&oc, 0, sizeof oc);
            oc.err = -ENOMEM;
            op_finish(op, &oc);
            return;
        }
        op->proposal_len = (uint32_t)b.len;
        buf_free(&b);
    }
    send_propose(op);
}

static void handle_promise(px_op *op, int idx, const uint8_t *payload, size_t len) {
    paxos *p = op->p;
    rd r;
    rd_init(&r, payload, len);
    uint8_t v, ok;
    paxos_ballot promised, accepted, committed;
    const uint8_t *prop, *data, *cv;
    uint32_t plen, dlen, cvlen;
    bool has_prop, has_data, has_cv;
    if (rd_u8(&r, &v) || v != PX_VERSION || rd_u8(&r, &ok) || rd_ballot(&r, &promised)) {
        op->fail++;
        return;
    }
    paxos_ballot_observe(&p->gen, &promised);
    if (!ok) {
        op->rej++;
        return;
    }
    /* A promise is for our ballot. Anything else is a reply to another request that reached
     * us under this request's id (a restarted node reuses message ids; replies queued for its
     * previous incarnation arrive later): its data and ballots are from another round. */
    if (paxos_ballot_cmp(&promised, &op->ballot) != 0) {
        p->stats.stale_replies++;
        op->fail++;
        return;
    }
    if (rd_ballot(&r, &accepted) || rd_opt_bytes(&r, &prop, &plen, &has_prop) || rd_ballot(&r, &committed) ||
        rd_opt_bytes(&r, &cv, &cvlen, &has_cv) || rd_opt_bytes(&r, &data, &dlen, &has_data)) {
        op->fail++;
        return;
    }
    paxos_ballot_observe(&p->gen, &accepted);
    paxos_ballot_observe(&p->gen, &committed);
    if (paxos_ballot_cmp(&committed, &op->max_commit) > 0) {
        op->max_commit = committed;
        op->have_mc_value = false;
    }
    if (has_cv && !op->have_mc_value && paxos_ballot_cmp(&committed, &op->max_commit) == 0) {
        op->mc_value = cvlen ? arena_dup(&op->arena, cv, cvlen) : NULL;
        op->mc_len = op->mc_value ? cvlen : 0;
        op->have_mc_value = true;
    }
    if (idx >= 0 && idx < PX_MAX_REPLICAS) {
        op->promised_by[idx] = true;
        op->rep_commit[idx] = committed;
    }
    if (paxos_ballot_cmp(&committed, &op->max_seen) > 0) op->max_seen = committed;
    if (paxos_ballot_cmp(&accepted, &op->max_seen) > 0) op->max_seen = accepted;
    if (has_prop && paxos_ballot_cmp(&accepted, &op->inprog_ballot) > 0) {
        op->have_inprog = true;
        op->inprog_ballot = accepted;
        op->inprog = plen ? arena_dup(&op->arena, prop, plen) : NULL;
        op->inprog_len = op->inprog ? plen : 0;
    }
    if (has_data) {
        uint8_t *copy = arena_dup(&op->arena, data, dlen ? dlen : 1);
        st_partition *d = NULL;
        if (!copy || st_partition_decode(&op->arena, copy, dlen, &d) || d->table_id != op->table_id) {
            op->fail++;
            return;
        }
        op->merged = op->merged ? st_partition_merge(&op->arena, op->merged, d) : d;
    }
    op->ok++;
}

static void on_call_rsp(void *arg, int err, uint8_t verb, const uint8_t *payload, size_t len) {
    px_call *c = arg;
    if (!c) return;
    px_op *op = c->op;
    if (!op) { /* its operation ended while this local request was pending */
        free(c);
        return;
    }
    call_remove(op, c);
    bool current = !op->finished && c->attempt == op->attempt && c->phase == op->phase;
    uint8_t phase = c->phase;
    int idx = c->idx;
    free(c);
    if (!current) {
        if (!err && phase == PH_PREPARE && len >= 18) { /* still learn its ballots */
            paxos_ballot b;
            memcpy(b.b, payload + 2, 16);
            paxos_ballot_observe(&op->p->gen, &b);
        }
        op_unref(op);
        return;
    }
    op->refs++; /* hold op across the handlers below */
    op_unref(op);
    if (err) {
        op->fail++;
        if (err == ILION_ETIMEOUT) op->timeouts++;
    } else if (phase == PH_PREPARE) {
        if (verb != NET_VERB_PAXOS_PREPARE_RSP) op->fail++;
        else handle_promise(op, idx, payload, len);
    } else if (phase == PH_PROPOSE) {
        rd r;
        rd_init(&r, payload, len);
        uint8_t v, ok;
        paxos_ballot b;
        if (verb != NET_VERB_PAXOS_PROPOSE_RSP || rd_u8(&r, &v) || rd_u8(&r, &ok) || rd_ballot(&r, &b)) {
            op->fail++;
        } else {
            paxos_ballot_observe(&op->p->gen, &b);
            if (ok && paxos_ballot_cmp(&b, &op->ballot) != 0) { /* not our round's acceptance */
                op->p->stats.stale_replies++;
                op->fail++;
            } else if (ok) {
                op->ok++;
            } else {
                op->rej++;
            }
        }
    } else if (phase == PH_COMMIT || phase == PH_REPAIR) {
        if (verb != NET_VERB_PAXOS_COMMIT_RSP) op->fail++;
        else op->ok++;
    }
    int answered = op->ok + op->rej + op->fail;
    int need = phase == PH_COMMIT ? op->blockfor : phase == PH_REPAIR ? op->expected : op->quorum;
    if (op->ok >= need) {
        if (phase == PH_REPAIR) retry(op, false);
        else if (phase == PH_PREPARE) prepare_done(op);
        else if (phase == PH_PROPOSE) send_commit(op);
        else if (op->reproposing) retry(op, false);
        else {
            paxos_outcome oc;
            memset(&oc, 0, sizeof oc);
            oc.applied = !op->empty;
            oc.current = op->merged;
            op_finish(op, &oc);
        }
    } else if (op->ok + (op->expected - answered) < need) {
        if (phase == PH_PREPARE) {
            if (op->rej) retry(op, true);
            else op_timeout(op, op->ok, need, false);
        } else if (phase == PH_PROPOSE) {
            /* A value accepted by some may still be chosen later: unknown outcome. Our own
             * value is retried only once every replica refused it (a refusal is final). */
            if (op->reproposing || op->empty) retry(op, true);
            else if (op->ok > 0 || op->timeouts > 0 || op->fail > 0) op_timeout(op, op->ok, need, false);
            else if (answered == op->expected) retry(op, true);
        } else {
            op_timeout(op, op->ok, need, phase == PH_COMMIT && !op->reproposing);
        }
    }
    op_unref(op);
}

static void start_attempt(px_op *op) {
    paxos *p = op->p;
    /* Everything from the previous attempt is dead: responses carry the attempt number. */
    arena_reset(&op->arena);
    op->merged = NULL;
    op->have_inprog = false;
    op->inprog = NULL;
    op->inprog_len = 0;
    memset(&op->inprog_ballot, 0, sizeof op->inprog_ballot);
    memset(&op->max_commit, 0, sizeof op->max_commit);
    memset(&op->max_seen, 0, sizeof op->max_seen);
    memset(op->promised_by, 0, sizeof op->promised_by);
    op->have_mc_value = false;
    op->mc_value = NULL;
    op->mc_len = 0;
    op->reproposing = false;
    paxos_ballot_next(&p->gen, now_us(p), &op->ballot);
    buf b;
    buf_init(&b);
    put_key(&b, op->table_id, op->pk, op->pklen);
    buf_put(&b, op->ballot.b, 16);
    buf_put(&b, op->slice.data, op->slice.len);
    send_phase(op, PH_PREPARE, NET_VERB_PAXOS_PREPARE, &b, true, NULL);
    buf_free(&b);
}

static int commit_blockfor(uint16_t cl, int n, int nlocal) {
    switch (cl) {
    case 0: return 0;
    case 1: case 10: return 1;
    case 2: return 2;
    case 3: return 3;
    case 5: return n;
    case 6: return nlocal / 2 + 1;
    default: return n / 2 + 1;
    }
}

int paxos_cas(paxos *p, const schema_replication *repl, uint64_t table_id, const void *pk, uint32_t pklen,
              const storage_slice *slice, uint16_t serial_cl, uint16_t commit_cl, paxos_cond_cb cond,
              paxos_done_cb done, void *arg) {
    if (!p || !done || (!pk && pklen) || p->closing) return ILION_EINVALID;
    if (serial_cl != PAXOS_CL_SERIAL && serial_cl != PAXOS_CL_LOCAL_SERIAL) return ILION_EINVALID;
    if (commit_cl == PAXOS_CL_SERIAL || commit_cl == PAXOS_CL_LOCAL_SERIAL || commit_cl > 10) return ILION_EINVALID;
    px_op *op = calloc(1, sizeof *op);
    if (!op) return -ENOMEM;
    op->p = p;
    op->refs = 1;
    arena_init(&op->arena);
    buf_init(&op->slice);
    encode_slice(&op->slice, slice);
    op->pk = malloc(pklen ? pklen : 1);
    if (!op->pk || op->slice.oom) {
        buf_free(&op->slice);
        free(op->pk);
        free(op);
        return -ENOMEM;
    }
    memcpy(op->pk, pk, pklen);
    op->pklen = pklen;
    op->table_id = table_id;
    op->serial_cl = serial_cl;
    op->commit_cl = commit_cl;
    op->cond = cond;
    op->done = done;
    op->arg = arg;
    op->attempt = 1;
    int nlocal = 0, alive_scope = 0, alive_all = 0;
    if (!p->cluster) {
        op->nrep = 1;
        op->rep_local[0] = op->rep_scope[0] = true;
    } else {
        int n = cluster_replicas(p->cluster, repl, murmur3_token(pk, pklen), op->reps, PX_MAX_REPLICAS);
        if (n < 0) n = 0;
        op->nrep = (size_t)n;
        const char *mydc = cluster_local_dc(p->cluster);
        for (size_t i = 0; i < op->nrep; i++) {
            op->rep_local[i] = cluster_is_local(p->cluster, &op->reps[i]);
            bool same_dc = op->rep_local[i];
            if (!same_dc) {
                cluster_peer peer;
                same_dc = cluster_peer_find(p->cluster, &op->reps[i], &peer) == 0 && mydc &&
                          strcmp(peer.dc, mydc) == 0;
            }
            nlocal += same_dc;
            op->rep_scope[i] = serial_cl == PAXOS_CL_SERIAL || same_dc;
        }
    }
    for (size_t i = 0; i < op->nrep; i++) {
        bool alive = op->rep_local[i] || cluster_is_alive(p->cluster, &op->reps[i]);
        alive_all += alive;
        if (op->rep_scope[i]) {
            op->nscope++;
            alive_scope += alive;
        }
    }
    if (!p->cluster) nlocal = 1;
    /* Quorums count the replication factor, not the replicas the ring gives now: a node that
     * has just started (peers not yet learned from gossip) finds only itself in the ring, and
     * a quorum of that one stale replica would decide alone (Cassandra also sizes the quorum
     * from the replication strategy). */
    int rf_all = (int)op->nrep, rf_local = nlocal, rf_scope = op->nscope;
    if (p->cluster && repl) {
        if (repl->cls == SCHEMA_REPL_SIMPLE) {
            rf_all = rf_local = rf_scope = (int)repl->rf;
        } else if (repl->cls == SCHEMA_REPL_NTS) {
            const char *mydc = cluster_local_dc(p->cluster);
            int sum = 0, mine = 0;
            for (uint32_t i = 0; i < repl->ndcs && i < SCHEMA_MAX_DCS; i++) {
                sum += (int)repl->dcs[i].rf;
                if (mydc && strcmp(repl->dcs[i].name, mydc) == 0) mine = (int)repl->dcs[i].rf;
            }
            rf_all = sum;
            rf_local = mine;
            rf_scope = serial_cl == PAXOS_CL_SERIAL ? sum : mine;
        }
    }
    if (rf_all < (int)op->nrep) rf_all = (int)op->nrep;
    if (rf_local < nlocal) rf_local = nlocal;
    if (rf_scope < op->nscope) rf_scope = op->nscope;
    op->quorum = rf_scope / 2 + 1;
    op->blockfor = commit_blockfor(commit_cl, rf_all, rf_local);
    p->stats.cas++;
    uv_timer_init(p->loop, &op->timer);
    op->timer.data = op;
    op->next = p->ops;
    if (p->ops) p->ops->pprev = &op->next;
    op->pprev = &p->ops;
    p->ops = op;
    uv_update_time(p->loop);
    op->start_ms = uv_now(p->loop);
    paxos_outcome oc;
    memset(&oc, 0, sizeof oc);
    if (op->nscope == 0 || alive_scope < op->quorum) {
        oc.err = ILION_EUNAVAILABLE;
        oc.cl = serial_cl;
        oc.required = op->quorum;
        oc.alive = alive_scope;
        op_finish(op, &oc);
        return 0;
    }
    if (alive_all < op->blockfor) {
        oc.err = ILION_EUNAVAILABLE;
        oc.cl = commit_cl;
        oc.required = op->blockfor;
        oc.alive = alive_all;
        op_finish(op, &oc);
        return 0;
    }
    op->refs++;
    start_attempt(op);
    op_unref(op);
    return 0;
}

/* ----------------------------------------------------------------- test hook --- */

typedef struct px_test_call {
    paxos_test_cb cb;
    void *arg;
} px_test_call;

static void on_test_rsp(void *arg, int err, uint8_t verb, const uint8_t *payload, size_t len) {
    px_test_call *t = arg;
    if (!err) {
        rd r;
        rd_init(&r, payload, len);
        uint8_t v, ok;
        if (verb == NET_VERB_PAXOS_COMMIT_RSP) err = 0;
        else if (verb != NET_VERB_PAXOS_PROPOSE_RSP || rd_u8(&r, &v) || rd_u8(&r, &ok)) err = ILION_EPROTOCOL;
        else if (!ok) err = ILION_EEXISTS;
    }
    t->cb(t->arg, err);
    free(t);
}

static int test_send(paxos *p, uint8_t verb, uint64_t table_id, const st_partition *mutation, const void *to,
                     paxos_test_cb cb, void *arg) {
    if (!mutation || !cb || mutation->table_id != table_id || (to && !p->ns)) return ILION_EINVALID;
    paxos_ballot b;
    paxos_ballot_next(&p->gen, now_us(p), &b);
    st_arena a;
    arena_init(&a);
    st_partition *c = st_partition_copy(&a, mutation);
    if (!c) {
        arena_free(&a);
        return -ENOMEM;
    }
    set_timestamps(c, paxos_ballot_us(&b));
    buf enc, msg;
    buf_init(&enc);
    buf_init(&msg);
    st_partition_encode(c, &enc);
    put_key(&msg, table_id, c->pk, c->pklen);
    buf_put(&msg, b.b, 16);
    buf_u32(&msg, (uint32_t)enc.len);
    buf_put(&msg, enc.data, enc.len);
    arena_free(&a);
    buf_free(&enc);
    px_test_call *t = malloc(sizeof *t);
    int rc = 0;
    if (!t || msg.oom) {
        rc = -ENOMEM;
        free(t);
    } else {
        t->cb = cb;
        t->arg = arg;
        if (!to) local_request(p, verb, msg.data, msg.len, on_test_rsp, t);
        else if ((rc = net_request(p->ns, to, verb, msg.data, msg.len, p->o.request_timeout_ms,
                                   on_test_rsp, t, NULL)))
            free(t);
    }
    buf_free(&msg);
    return rc;
}

int paxos_test_propose_only(paxos *p, uint64_t table_id, const st_partition *mutation, const void *to,
                            paxos_test_cb cb, void *arg) {
    return test_send(p, NET_VERB_PAXOS_PROPOSE, table_id, mutation, to, cb, arg);
}

int paxos_test_commit_only(paxos *p, uint64_t table_id, const st_partition *mutation, const void *to,
                           paxos_test_cb cb, void *arg) {
    return test_send(p, NET_VERB_PAXOS_COMMIT, table_id, mutation, to, cb, arg);
}

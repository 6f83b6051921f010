/* Schema propagation between nodes: see include/ilion/cql/schema_sync.h. */
#include <errno.h>
#include "ilion/cql/schema_sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec_int.h"
#include "ilion/cluster/cluster.h"
#include "ilion/cql/wire.h"
#include "ilion/util/clock.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"

#define MOD "schema"
#define SYNC_FORMAT 1
#define SYNC_MAX_PARTITIONS 100000
#define PULL_TIMEOUT_MS 5000
#define MAX_PULLS 4

struct cql_schema_sync {
    cql_executor *x;          /* NULL once detached */
    cluster *c;
    net_service *ns;
    uv_loop_t *loop;
    uv_timer_t timer;
    uint32_t check_ms;
    cql_schema_event_cb cb;
    void *arg;
    bool merging;             /* exec_schema_changed from a merge: do not push */
    bool freed;
    uint32_t pulls_in_flight;
    uint32_t refs;            /* pending pull requests + the timer */
    cql_schema_sync_stats st;
};

/* ---- the payload: every partition of the schema table -------------------------------------- */

typedef struct enc_ctx {
    buf *b;
    uint32_t n;
} enc_ctx;

static int enc_partition(void *arg, const st_partition *p) {
    enc_ctx *ec = arg;
    buf one;
    buf_init(&one);
    st_partition_encode(p, &one);
    buf_u32(ec->b, (uint32_t)one.len);
    buf_put(ec->b, one.data, one.len);
    buf_free(&one);
    ec->n++;
    return 0;
}

/* u8 format, u32 count, count × (u32 len, partition): see docs/internode-protocol.md. */
static int encode_schema(cql_executor *x, buf *out) {
    buf_u8(out, SYNC_FORMAT);
    size_t count_at = out->len;
    buf_u32(out, 0);
    enc_ctx ec = {out, 0};
    int rc = storage_scan(x->engine, EXEC_SCHEMA_TABLE_ID, INT64_MIN, NULL, 0, INT64_MAX, 0,
                          clock_now_s(), enc_partition, &ec);
    if (rc < 0) return rc;
    if (out->oom) return -ENOMEM;
    be32_put(out->data + count_at, ec.n);
    return 0;
}

/* ---- catalog reconciliation -------------------------------------------------------------- */

static void on_reload_change(void *arg, const char *change, const char *target, const char *ks,
                             const char *table) {
    cql_schema_sync *s = arg;
    LOG_INFO(MOD, "learnt from a peer: %s %s %s%s%s", change, target, ks, table ? "." : "",
             table ? table : "");
    s->st.changes_applied++;
    if (!s->cb) return;
    buf b;
    buf_init(&b);
    exec_schema_event_body(&b, change, target, ks, table);
    if (!b.oom) s->cb(s->arg, b.data, b.len);
    buf_free(&b);
}

/* Makes the catalog match the (merged) schema table; the version is recomputed and gossiped
 * but not pushed (the peers learn it from gossip). */
static int reconcile(cql_schema_sync *s) {
    s->merging = true;
    int rc = schema_store_reload(s->x, on_reload_change, s);
    s->merging = false;
    return rc;
}

/* Applies the received schema rows; those that change nothing are skipped so an agreeing
 * peer costs no write. */
static int merge(cql_schema_sync *s, const uint8_t *payload, size_t len) {
    cql_executor *x = s->x;
    rd r;
    rd_init(&r, payload, len);
    uint8_t fmt;
    uint32_t count;
    if (rd_u8(&r, &fmt) || fmt != SYNC_FORMAT || rd_u32(&r, &count) || count > SYNC_MAX_PARTITIONS)
        return ILION_ECORRUPT;
    st_arena a;
    arena_init(&a);
    int rc = 0;
    uint64_t pos = 0;
    uint32_t applied = 0;
    int32_t now = clock_now_s();
    for (uint32_t i = 0; i < count && rc == 0; i++) {
        uint32_t n;
        const uint8_t *d;
        if (rd_u32(&r, &n) || rd_bytes(&r, n, &d)) {
            rc = ILION_ETRUNCATED;
            break;
        }
        st_partition *p;
        if ((rc = st_partition_decode(&a, d, n, &p))) break;
        if (p->table_id != EXEC_SCHEMA_TABLE_ID || p->pklen == 0 || p->pklen >= SCHEMA_NAME_MAX) {
            rc = ILION_ECORRUPT;
            break;
        }
        st_partition *local = NULL;
        if ((rc = storage_read(x->engine, EXEC_SCHEMA_TABLE_ID, p->pk, p->pklen, NULL, now, &a,
                               &local)))
            break;
        if (local) {
            st_partition *m = st_partition_merge(&a, local, p);
            if (!m) {
                rc = -ENOMEM;
                break;
            }
            buf e1, e2;
            buf_init(&e1);
            buf_init(&e2);
            st_partition_encode(local, &e1);
            st_partition_encode(m, &e2);
            bool same = e1.len == e2.len && memcmp(e1.data, e2.data, e1.len) == 0;
            buf_free(&e1);
            buf_free(&e2);
            if (same) continue;
        }
        uint64_t at;
        if ((rc = storage_apply(x->engine, p, &at))) break;
        if (at > pos) pos = at;
        applied++;
    }
    if (rc == 0 && rd_left(&r) != 0) rc = ILION_ECORRUPT;
    arena_free(&a);
    if (applied) {
        /* Durable before the catalog changes, as for a local DDL. */
        int r2 = storage_wait_synced(x->engine, pos);
        if (r2 == 0) r2 = storage_flush(x->engine, EXEC_SCHEMA_TABLE_ID, true);
        if (r2 && rc == 0) rc = r2;
    }
    s->st.merges++;
    int r3 = applied ? reconcile(s) : 0;
    return rc ? rc : r3;
}

/* ---- verbs ------------------------------------------------------------------------------- */

static void on_push(void *arg, net_service *ns, const net_msg *m, const uint8_t *p, size_t len) {
    cql_schema_sync *s = arg;
    if (!s->x) return;
    s->st.pushes_received++;
    int rc = merge(s, p, len);
    if (rc) {
        char a[NET_ADDR_STRLEN];
        s->st.bad_messages++;
        LOG_WARN(MOD, "schema from %s not applied: %s", net_addr_str(&m->from, a, sizeof a),
                 ilion_strerror(rc));
    }
    (void)ns;
}

static void on_pull(void *arg, net_service *ns, const net_msg *m, const uint8_t *p, size_t len) {
    cql_schema_sync *s = arg;
    (void)p;
    (void)len;
    if (!s->x) {
        net_respond_error(ns, m, ILION_ECLOSED);
        return;
    }
    buf b;
    buf_init(&b);
    int rc = encode_schema(s->x, &b);
    if (rc) net_respond_error(ns, m, rc);
    else net_respond(ns, m, NET_VERB_SCHEMA_PUSH, b.data, b.len);
    s->st.pulls_answered++;
    buf_free(&b);
}

static void maybe_free(cql_schema_sync *s) {
    if (s->freed && s->refs == 0) free(s);
}

typedef struct pull_req {
    cql_schema_sync *s;
    net_addr peer;
} pull_req;

static void pull_done(void *arg, int err, uint8_t verb, const uint8_t *payload, size_t len) {
    pull_req *pr = arg;
    cql_schema_sync *s = pr->s;
    s->pulls_in_flight--;
    s->refs--;
    char a[NET_ADDR_STRLEN];
    if (s->x && !s->freed) {
        if (err) {
            LOG_DEBUG(MOD, "schema pull from %s failed: %s", net_addr_str(&pr->peer, a, sizeof a),
                      ilion_strerror(err));
        } else if (verb == NET_VERB_SCHEMA_PUSH) {
            int rc = merge(s, payload, len);
            if (rc) {
                s->st.bad_messages++;
                LOG_WARN(MOD, "schema pulled from %s not applied: %s",
                         net_addr_str(&pr->peer, a, sizeof a), ilion_strerror(rc));
            }
        }
    }
    free(pr);
    maybe_free(s);
}

static void pull(cql_schema_sync *s, const net_addr *peer) {
    if (s->pulls_in_flight >= MAX_PULLS) return;
    pull_req *pr = malloc(sizeof *pr);
    if (!pr) return;
    pr->s = s;
    pr->peer = *peer;
    if (net_request(s->ns, peer, NET_VERB_SCHEMA_PULL, NULL, 0, PULL_TIMEOUT_MS, pull_done, pr,
                    NULL)) {
        free(pr);
        return;
    }
    s->pulls_in_flight++;
    s->refs++;
    s->st.pulls_sent++;
}

static void our_version(cql_schema_sync *s, char out[40]) {
    const uint8_t *u = s->x->cat->version;
    snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
             u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
             u[15]);
}

/* Pulls from one live peer whose gossiped version differs from ours (a random one, so a
 * peer that cannot answer does not block the others). */
static void check(cql_schema_sync *s) {
    if (!s->x || s->freed) return;
    char mine[40];
    our_version(s, mine);
    size_t n = cluster_peer_count(s->c);
    if (!n) return;
    size_t start = (size_t)rand() % n;
    for (size_t k = 0; k < n; k++) {
        cluster_peer p;
        if (cluster_peer_get(s->c, (start + k) % n, &p)) continue;
        if (!p.alive || !p.schema_version[0] || strcmp(p.schema_version, mine) == 0) continue;
        pull(s, &p.addr);
        return;
    }
}

static void on_timer(uv_timer_t *t) { check(t->data); }

static void on_change(void *arg, const net_addr *ep, enum gossip_app key, const uint8_t *value,
                      size_t len) {
    cql_schema_sync *s = arg;
    if (key != GOSSIP_APP_SCHEMA || !s->x || s->freed || !cluster_is_alive(s->c, ep)) return;
    char mine[40];
    our_version(s, mine);
    if (len == strlen(mine) && memcmp(value, mine, len) == 0) return;
    pull(s, ep);
}

static void on_up(void *arg, const net_addr *ep) {
    cql_schema_sync *s = arg;
    if (!s->x || s->freed) return;
    cluster_peer p;
    char mine[40];
    our_version(s, mine);
    if (cluster_peer_find(s->c, ep, &p) == 0 && p.schema_version[0] &&
        strcmp(p.schema_version, mine))
        pull(s, ep);
}

/* Called by exec_schema_changed after a local DDL: push the whole schema to live peers. */
void schema_sync_local_change(cql_schema_sync *s) {
    if (!s || !s->x || s->merging || s->freed) return;
    buf b;
    buf_init(&b);
    if (encode_schema(s->x, &b)) {
        buf_free(&b);
        return;
    }
    size_t n = cluster_peer_count(s->c);
    for (size_t i = 0; i < n; i++) {
        cluster_peer p;
        if (cluster_peer_get(s->c, i, &p) || !p.alive) continue;
        if (net_send(s->ns, &p.addr, NET_VERB_SCHEMA_PUSH, b.data, b.len) == 0) s->st.pushes_sent++;
    }
    buf_free(&b);
}

int cql_schema_sync_start(cql_executor *x, uv_loop_t *loop, uint32_t check_ms,
                          cql_schema_event_cb cb, void *arg, cql_schema_sync **out) {
    if (!x || !x->cluster || !loop) return ILION_EINVALID;
    cql_schema_sync *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->x = x;
    s->c = x->cluster;
    s->ns = cluster_messaging(x->cluster);
    s->loop = loop;
    s->cb = cb;
    s->arg = arg;
    s->check_ms = check_ms ? check_ms : 2000;
    cluster_listener l;
    memset(&l, 0, sizeof l);
    l.on_change = on_change;
    l.on_up = on_up;
    l.arg = s;
    int rc = cluster_add_listener(s->c, &l);
    if (rc) {
        free(s);
        return rc;
    }
    net_register(s->ns, NET_VERB_SCHEMA_PUSH, on_push, s);
    net_register(s->ns, NET_VERB_SCHEMA_PULL, on_pull, s);
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    s->refs = 1;
    uv_timer_start(&s->timer, on_timer, s->check_ms, s->check_ms);
    x->sync = s;
    *out = s;
    return 0;
}

void cql_schema_sync_detach(cql_schema_sync *s) {
    if (!s || !s->x) return;
    s->x->sync = NULL;
    s->x = NULL;
    uv_timer_stop(&s->timer);
}

static void timer_closed(uv_handle_t *h) {
    cql_schema_sync *s = h->data;
    s->refs--;
    maybe_free(s);
}

void cql_schema_sync_free(cql_schema_sync *s) {
    if (!s) return;
    cql_schema_sync_detach(s);
    s->freed = true;
    uv_close((uv_handle_t *)&s->timer, timer_closed);
}

void cql_schema_sync_stats_get(const cql_schema_sync *s, cql_schema_sync_stats *out) { *out = s->st; }

int cql_executor_table_ids(cql_executor *x, const char *ks, const char *table, uint64_t *ids,
                           size_t max) {
    size_t n = 0;
    bool found_ks = false, found_t = false;
    for (size_t i = 0; i < x->cat->nks; i++) {
        schema_keyspace *k = x->cat->ks[i];
        if (k->is_system) continue;
        if (ks && strcmp(k->name, ks)) continue;
        found_ks = true;
        for (size_t j = 0; j < k->ntables; j++) {
            if (table && strcmp(k->tables[j]->name, table)) continue;
            found_t = true;
            if (n < max) ids[n] = k->tables[j]->id;
            n++;
        }
    }
    if ((ks && !found_ks) || (table && !found_t)) return ILION_ENOTFOUND;
    return (int)n;
}

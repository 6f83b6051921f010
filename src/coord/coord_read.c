/* Reads. A partition read asks the closest replica (this node when it is one) for the data
 * and as many others as the level needs for a digest (MD5 of the encoded result). Equal
 * digests: the data is the answer. Different: every contacted replica is asked for the full
 * data, the versions are merged (st_partition_merge), replicas whose version differs get the
 * merged partition as a mutation (read repair), and the answer waits for their
 * acknowledgements. A range scan walks the ring's token ranges in order, asking each range's
 * replicas (as many as the level needs) for batches of partitions and merging them.
 * Keyspaces with LOCAL replication (system tables) and the single-node case read the local
 * engine directly. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_int.h"
#include "ilion/schema/md5.h"
#include "ilion/util/arena.h"
#include "ilion/util/clock.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"
#include "ilion/util/murmur3.h"

#define SCAN_BATCH 256
#define SCAN_MAX_BYTES (4u << 20)

enum { RD_DATA = 0, RD_DIGEST = 1 };

/* ------------------------------------------------------------------ replica side --- */

static void slice_encode(buf *b, const storage_slice *s) {
    uint8_t f = 0;
    if (s && s->start) f |= 1;
    if (s && s->start_incl) f |= 2;
    if (s && s->end) f |= 4;
    if (s && s->end_incl) f |= 8;
    if (s && s->reversed) f |= 16;
    buf_u8(b, f);
    if (f & 1) {
        buf_u32(b, s->start_len);
        buf_put(b, s->start, s->start_len);
    }
    if (f & 4) {
        buf_u32(b, s->end_len);
        buf_put(b, s->end, s->end_len);
    }
    buf_u32(b, s ? s->limit : 0);
}

static int slice_decode(rd *r, storage_slice *s) {
    uint8_t f;
    memset(s, 0, sizeof *s);
    if (rd_u8(r, &f)) return ILION_ETRUNCATED;
    s->start_incl = f & 2;
    s->end_incl = f & 8;
    s->reversed = f & 16;
    if (f & 1) {
        uint32_t l;
        if (rd_u32(r, &l) || rd_bytes(r, l, &s->start)) return ILION_ETRUNCATED;
        s->start_len = l;
        if (!s->start) s->start = (const uint8_t *)"";
    }
    if (f & 4) {
        uint32_t l;
        if (rd_u32(r, &l) || rd_bytes(r, l, &s->end)) return ILION_ETRUNCATED;
        s->end_len = l;
        if (!s->end) s->end = (const uint8_t *)"";
    }
    if (rd_u32(r, &s->limit)) return ILION_ETRUNCATED;
    return 0;
}

/* The data answer: u8 present, then the partition's encoding. */
static int local_data(coord *c, uint64_t table_id, const uint8_t *pk, uint32_t pklen,
                      const storage_slice *s, int32_t now_s, buf *out) {
    st_arena a;
    arena_init(&a);
    st_partition *p = NULL;
    int rc = storage_read(c->engine, table_id, pk, pklen, s, now_s, &a, &p);
    if (rc == 0) {
        buf_u8(out, p != NULL);
        if (p) {
            p->table_id = table_id;
            st_partition_encode(p, out);
        }
        if (out->oom) rc = -ENOMEM;
    }
    arena_free(&a);
    return rc;
}

static void on_read(void *arg, net_service *ns, const net_msg *m, const uint8_t *p, size_t len) {
    coord *c = arg;
    rd r;
    rd_init(&r, p, len);
    uint8_t ver, kind;
    uint64_t table_id;
    uint32_t pklen, now;
    const uint8_t *pk;
    storage_slice s;
    if (rd_u8(&r, &ver) || rd_u8(&r, &kind) || rd_u64(&r, &table_id) || rd_u32(&r, &pklen) ||
        rd_bytes(&r, pklen, &pk) || rd_u32(&r, &now) || slice_decode(&r, &s)) {
        net_respond_error(ns, m, ILION_ETRUNCATED);
        return;
    }
    if (ver != COORD_MSG_VERSION || kind > RD_DIGEST) {
        net_respond_error(ns, m, ILION_EFORMAT);
        return;
    }
    buf d, out;
    buf_init(&d);
    buf_init(&out);
    int rc = local_data(c, table_id, pk ? pk : (const uint8_t *)"", pklen, &s, (int32_t)now, &d);
    if (rc) {
        net_respond_error(ns, m, rc);
    } else {
        buf_u8(&out, kind);
        if (kind == RD_DATA) {
            buf_put(&out, d.data, d.len);
        } else {
            uint8_t h[16];
            schema_md5(d.data, d.len, h);
            buf_put(&out, h, 16);
        }
        net_respond(ns, m, NET_VERB_READ_RSP, out.data, out.len);
    }
    buf_free(&d);
    buf_free(&out);
}

typedef struct scan_acc {
    buf *out;
    uint32_t count, max;
    bool more;
} scan_acc;

static int scan_collect(void *arg, const st_partition *p) {
    scan_acc *a = arg;
    size_t at = a->out->len;
    buf_u32(a->out, 0);
    st_partition_encode(p, a->out);
    buf_patch_u32(a->out, at, (uint32_t)(a->out->len - at - 4));
    a->count++;
    if (a->count >= a->max || a->out->len >= SCAN_MAX_BYTES) {
        a->more = true;
        return 1;
    }
    return 0;
}

/* The range answer: u8 more, u32 count, count × (u32 len, partition). */
static int local_range(coord *c, uint64_t table_id, int64_t start, const uint8_t *pk, uint32_t pklen,
                       int64_t end, uint32_t max, int32_t now_s, buf *out) {
    buf_u8(out, 0);
    buf_u32(out, 0);
    scan_acc a = {out, 0, max ? max : SCAN_BATCH, false};
    int rc = storage_scan(c->engine, table_id, start, pk, pklen, end, 0, now_s, scan_collect, &a);
    if (rc < 0) return rc;
    if (out->oom) return -ENOMEM;
    out->data[0] = a.more;
    be32_put(out->data + 1, a.count);
    return 0;
}

static void on_range_read(void *arg, net_service *ns, const net_msg *m, const uint8_t *p, size_t len) {
    coord *c = arg;
    rd r;
    rd_init(&r, p, len);
    uint8_t ver, has_pk;
    uint64_t table_id, start, end;
    uint32_t pklen = 0, max, now;
    const uint8_t *pk = NULL;
    if (rd_u8(&r, &ver) || rd_u64(&r, &table_id) || rd_u64(&r, &start) || rd_u8(&r, &has_pk) ||
        (has_pk && (rd_u32(&r, &pklen) || rd_bytes(&r, pklen, &pk))) || rd_u64(&r, &end) ||
        rd_u32(&r, &max) || rd_u32(&r, &now)) {
        net_respond_error(ns, m, ILION_ETRUNCATED);
        return;
    }
    if (ver != COORD_MSG_VERSION) {
        net_respond_error(ns, m, ILION_EFORMAT);
        return;
    }
    if (has_pk && !pk) pk = (const uint8_t *)"";
    if (max == 0 || max > SCAN_BATCH * 16) max = SCAN_BATCH;
    buf out;
    buf_init(&out);
    int rc = local_range(c, table_id, (int64_t)start, has_pk ? pk : NULL, pklen, (int64_t)end, max,
                         (int32_t)now, &out);
    if (rc) net_respond_error(ns, m, rc);
    else net_respond(ns, m, NET_VERB_RANGE_READ_RSP, out.data, out.len);
    buf_free(&out);
}

void coord_read_register(coord *c) {
    net_register(c->ns, NET_VERB_READ, on_read, c);
    net_register(c->ns, NET_VERB_RANGE_READ, on_range_read, c);
}

/* ------------------------------------------------------------ choosing contacts --- */

/* The first alive replicas (in proximity order) that meet every group; returns their count. */
static int pick_contacts(const coord_rep *reps, size_t n, const coord_groups *g, coord_rep *out) {
    int have[SCHEMA_MAX_DCS] = {0};
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        int gi = reps[i].group;
        if (!reps[i].alive || gi < 0 || gi >= g->n || have[gi] >= g->need[gi]) continue;
        have[gi]++;
        out[k++] = reps[i];
    }
    return k;
}

/* ------------------------------------------------------------- local-only paths --- */

static int read_local(coord *c, const schema_replication *repl, uint64_t table_id, const void *pk,
                      uint32_t pklen, const storage_slice *slice, enum coord_cl cl, coord_read_cb cb,
                      void *arg) {
    coord_error err;
    /* LOCAL keyspaces (system tables) have exactly this node as replica, whatever the ring. */
    if (repl->cls == SCHEMA_REPL_LOCAL ? coord_cl_valid(cl, false, &err)
                                       : coord_check_cl(c, repl, cl, false, &err)) {
        if (err.code == 0x1000) c->stats.unavailables++;
        cb(arg, &err, NULL);
        return 0;
    }
    st_arena a;
    arena_init(&a);
    st_partition *p = NULL;
    int rc = storage_read(c->engine, table_id, pk, pklen, slice, clock_now_s(), &a, &p);
    if (rc) {
        coord_set_err(&err, 0x0000, cl, "read failed: %s", ilion_strerror(rc));
        cb(arg, &err, NULL);
    } else {
        cb(arg, NULL, p);
    }
    arena_free(&a);
    return 0;
}

static int scan_local(coord *c, const schema_replication *repl, uint64_t table_id, int64_t start_token,
                      const void *start_pk, uint32_t start_pklen, uint32_t max_partitions,
                      enum coord_cl cl, coord_scan_part_cb part_cb, coord_scan_done_cb done_cb,
                      void *arg) {
    coord_error err;
    if (repl->cls == SCHEMA_REPL_LOCAL ? coord_cl_valid(cl, false, &err)
                                       : coord_check_cl(c, repl, cl, false, &err)) {
        if (err.code == 0x1000) c->stats.unavailables++;
        done_cb(arg, &err);
        return 0;
    }
    int rc = storage_scan(c->engine, table_id, start_token, start_pk, start_pklen, INT64_MAX,
                          max_partitions, clock_now_s(), part_cb, arg);
    if (rc < 0) {
        coord_set_err(&err, 0x0000, cl, "scan failed: %s", ilion_strerror(rc));
        done_cb(arg, &err);
    } else {
        done_cb(arg, NULL);
    }
    return 0;
}

/* ---------------------------------------------------------------- partition read --- */

typedef struct rreq rreq;

typedef struct rcontact {
    rreq *r;
    coord_rep rep;
    bool outstanding, answered, failed;
    uint64_t msg_id;
    uint8_t *data;           /* data answer (u8 present + partition) */
    size_t len;
    bool has_data;
    uint8_t digest[16];
    bool repair_pending;
} rcontact;

struct rreq {
    coord_req link;
    coord *c;
    coord_read_cb cb;
    void *arg;
    enum coord_cl cl;
    uint64_t table_id;
    uint8_t *pk;
    uint32_t pklen;
    storage_slice slice;
    uint8_t *bounds;         /* copies of the slice bounds */
    int32_t now_s;
    int phase;               /* 1 data + digests, 2 full data from all, 3 repairs */
    int nc;
    rcontact cont[COORD_MAX_REPLICAS];
    int refs;
    bool answered, explicit_failure, timer_on;
    uv_timer_t timer;
    st_arena arena;
    st_partition *merged;
};

static void rreq_free(rreq *r) {
    for (int i = 0; i < r->nc; i++) free(r->cont[i].data);
    arena_free(&r->arena);
    free(r->pk);
    free(r->bounds);
    free(r);
}

static void rreq_closed(uv_handle_t *h) { rreq_free(h->data); }

static void rreq_release(rreq *r) {
    if (!r->answered || r->refs > 0) return;
    coord_req_unlink(&r->link);
    if (r->timer_on) {
        r->timer_on = false;
        uv_close((uv_handle_t *)&r->timer, rreq_closed);
    } else {
        rreq_free(r);
    }
}

static void rreq_answer(rreq *r, const coord_error *e, const st_partition *p) {
    if (r->answered) return;
    r->answered = true;
    if (r->timer_on) uv_timer_stop(&r->timer);
    if (e && e->code == 0x1200) r->c->stats.read_timeouts++;
    r->cb(r->arg, e, p);
}

static int rreq_received(const rreq *r, bool *data_present) {
    int n = 0;
    *data_present = false;
    for (int i = 0; i < r->nc; i++) {
        const rcontact *k = &r->cont[i];
        if (r->phase == 3) {
            n += !k->repair_pending && !k->failed;
            *data_present = true;
        } else if (k->answered && !k->failed) {
            n++;
            if (k->has_data) *data_present = true;
        }
    }
    return n;
}

static void rreq_fail(rreq *r, bool timeout) {
    coord_error e;
    bool dp;
    int recv = rreq_received(r, &dp);
    if (timeout || !r->explicit_failure)
        coord_set_err(&e, 0x1200, r->cl, "Operation timed out - received only %d responses.", recv);
    else
        coord_set_err(&e, 0x1300, r->cl, "Operation failed - received %d responses and 1 failures", recv);
    e.received = recv;
    e.blockfor = r->nc;
    e.data_present = dp;
    rreq_answer(r, &e, NULL);
}

static void rreq_timeout(uv_timer_t *h) {
    rreq *r = h->data;
    rreq_fail(r, true);
    rreq_release(r);
}

static void rreq_restart_timer(rreq *r, uint32_t ms) {
    uv_timer_stop(&r->timer);
    uv_timer_start(&r->timer, rreq_timeout, ms, 0);
}

/* Decodes a data answer into the request's arena; *p NULL when the replica had nothing. */
static int decode_data(rreq *r, const rcontact *k, st_partition **p) {
    *p = NULL;
    if (k->len < 1) return ILION_ETRUNCATED;
    if (!k->data[0]) return 0;
    int rc = st_partition_decode(&r->arena, k->data + 1, k->len - 1, p);
    if (rc == 0) (*p)->table_id = r->table_id;
    return rc;
}

/* Keeps the slice's first `limit` live rows (the last ones when reversed). */
static void trim_to_limit(st_partition *p, const storage_slice *s, int32_t now_s) {
    if (!p || !s || !s->limit) return;
    uint32_t live = 0;
    if (!s->reversed) {
        for (uint32_t i = 0; i < p->nrows; i++)
            if (st_row_live(&p->rows[i], &p->del, now_s) && ++live == s->limit) {
                p->nrows = i + 1;
                return;
            }
    } else {
        for (uint32_t i = p->nrows; i-- > 0;)
            if (st_row_live(&p->rows[i], &p->del, now_s) && ++live == s->limit) {
                p->rows += i;
                p->nrows -= i;
                p->rows_cap = 0;
                return;
            }
    }
}

static void rreq_send(rreq *r, rcontact *k, uint8_t kind, bool full);

static void rreq_step(rreq *r);

static void repair_done(rcontact *k, int err) {
    rreq *r = k->r;
    k->repair_pending = false;
    r->refs--;
    if (err) {
        k->failed = true;
        char a[NET_ADDR_STRLEN];
        LOG_DEBUG("coord", "read repair of %s failed: %s", net_addr_str(&k->rep.addr, a, sizeof a),
                  ilion_strerror(err));
    }
    rreq_step(r);
    rreq_release(r);
}

static void repair_local_synced(coord *c, void *arg, int err) { repair_done(arg, err); }

static void repair_remote_answered(void *arg, int err, uint8_t verb, const uint8_t *p, size_t len) {
    repair_done(arg, err);
}

/* Every contact answered with data: merge, repair the stale ones. */
static void rreq_resolve(rreq *r) {
    st_partition *m = NULL;
    for (int i = 0; i < r->nc; i++) {
        st_partition *p;
        if (decode_data(r, &r->cont[i], &p)) {
            r->explicit_failure = true;
            rreq_fail(r, false);
            return;
        }
        if (!p) continue;
        m = m ? st_partition_merge(&r->arena, m, p) : p;
        if (!m) {
            rreq_fail(r, false);
            return;
        }
    }
    r->merged = m;
    buf enc, msg;
    buf_init(&enc);
    buf_init(&msg);
    buf_u8(&enc, m != NULL);
    if (m) st_partition_encode(m, &enc);
    uint8_t h[16];
    schema_md5(enc.data, enc.len, h);
    if (m) {
        coord_message_begin(&msg, 1);
        coord_message_add(&msg, enc.data + 1, enc.len - 1);
    }
    r->phase = 3;
    rreq_restart_timer(r, r->c->opt.write_request_timeout_ms);
    /* Mark every stale replica first: a local repair may complete inside this loop. */
    for (int i = 0; i < r->nc && m && !msg.oom; i++) {
        rcontact *k = &r->cont[i];
        uint8_t kh[16];
        schema_md5(k->data, k->len, kh);
        if (memcmp(kh, h, 16) == 0) continue;
        r->c->stats.read_repairs++;
        k->repair_pending = true;
        r->refs++;
    }
    for (int i = 0; i < r->nc && !r->answered; i++) {
        rcontact *k = &r->cont[i];
        if (!k->repair_pending) continue;
        if (k->rep.local) {
            uint64_t pos = 0;
            int rc = storage_apply(r->c->engine, m, &pos);
            if (rc || coord_wait_sync(r->c, pos, repair_local_synced, k)) repair_done(k, rc ? rc : -12);
        } else {
            int rc = net_request(r->c->ns, &k->rep.addr, NET_VERB_MUTATION, msg.data, msg.len,
                                 r->c->opt.write_request_timeout_ms, repair_remote_answered, k, &k->msg_id);
            if (rc) repair_done(k, rc);
        }
    }
    buf_free(&enc);
    buf_free(&msg);
}

/* Advances the request after an answer. */
static void rreq_step(rreq *r) {
    if (r->answered) return;
    for (int i = 0; i < r->nc; i++) {
        const rcontact *k = &r->cont[i];
        if (r->phase < 3 && k->failed) {
            rreq_fail(r, false);
            return;
        }
        if (r->phase < 3 && !k->answered) return;
        if (r->phase == 3 && k->repair_pending) return;
    }
    if (r->phase == 1) {
        /* Data and digests are in: equal digests answer at once. */
        uint8_t h[16];
        schema_md5(r->cont[0].data, r->cont[0].len, h);
        bool same = true;
        for (int i = 1; i < r->nc; i++) same &= memcmp(h, r->cont[i].digest, 16) == 0;
        if (same) {
            st_partition *p;
            if (decode_data(r, &r->cont[0], &p)) {
                r->explicit_failure = true;
                rreq_fail(r, false);
                return;
            }
            rreq_answer(r, NULL, p);
            return;
        }
        r->c->stats.digest_mismatches++;
        r->phase = 2;
        rreq_restart_timer(r, r->c->opt.read_request_timeout_ms);
        for (int i = 0; i < r->nc; i++) {
            r->cont[i].answered = false;
            free(r->cont[i].data);
            r->cont[i].data = NULL;
            r->cont[i].has_data = false;
        }
        r->refs++;
        for (int i = 0; i < r->nc && !r->answered; i++) rreq_send(r, &r->cont[i], RD_DATA, true);
        r->refs--;
        rreq_step(r); /* answers that came back at once (local, refused) */
        return;
    }
    if (r->phase == 2) {
        r->refs++; /* repairs may finish inside; the caller releases */
        rreq_resolve(r);
        r->refs--;
        if (r->answered) return;
        /* fall through when no repair was needed or all were local and synced */
        for (int i = 0; i < r->nc; i++)
            if (r->cont[i].repair_pending) return;
    }
    if (r->phase == 3) {
        trim_to_limit(r->merged, &r->slice, r->now_s);
        rreq_answer(r, NULL, r->merged);
    }
}

static void contact_answer(rcontact *k, int err, const uint8_t *p, size_t len) {
    rreq *r = k->r;
    k->answered = true;
    if (err) {
        k->failed = true;
        if (err != ILION_ETIMEOUT && err != ILION_EUNAVAILABLE && err != ILION_ECLOSED)
            r->explicit_failure = true;
        return;
    }
    if (len < 1 || (p[0] == RD_DIGEST && len != 17) || p[0] > RD_DIGEST) {
        k->failed = true;
        r->explicit_failure = true;
        return;
    }
    if (p[0] == RD_DIGEST) {
        memcpy(k->digest, p + 1, 16);
    } else {
        free(k->data);
        k->data = malloc(len - 1 ? len - 1 : 1);
        if (!k->data) {
            k->failed = true;
            r->explicit_failure = true;
            return;
        }
        memcpy(k->data, p + 1, len - 1);
        k->len = len - 1;
        k->has_data = true;
        schema_md5(k->data, k->len, k->digest);
    }
}

static void remote_read_answered(void *arg, int err, uint8_t verb, const uint8_t *p, size_t len) {
    rcontact *k = arg;
    rreq *r = k->r;
    k->outstanding = false;
    r->refs--;
    if (!r->answered) {
        contact_answer(k, err, p, len);
        rreq_step(r);
    }
    rreq_release(r);
}

static void rreq_send(rreq *r, rcontact *k, uint8_t kind, bool full) {
    storage_slice s = r->slice;
    if (full) s.limit = 0; /* merging limited answers could miss rows (short reads) */
    if (k->rep.local) {
        buf d, ans;
        buf_init(&d);
        buf_init(&ans);
        int rc = local_data(r->c, r->table_id, r->pk, r->pklen, &s, r->now_s, &d);
        if (rc == 0) {
            buf_u8(&ans, kind);
            if (kind == RD_DATA) {
                buf_put(&ans, d.data, d.len);
            } else {
                uint8_t h[16];
                schema_md5(d.data, d.len, h);
                buf_put(&ans, h, 16);
            }
        }
        contact_answer(k, rc, ans.data, ans.len);
        buf_free(&d);
        buf_free(&ans);
        return;
    }
    buf q;
    buf_init(&q);
    buf_u8(&q, COORD_MSG_VERSION);
    buf_u8(&q, kind);
    buf_u64(&q, r->table_id);
    buf_u32(&q, r->pklen);
    buf_put(&q, r->pk, r->pklen);
    buf_u32(&q, (uint32_t)r->now_s);
    slice_encode(&q, &s);
    k->outstanding = true;
    r->refs++;
    int rc = q.oom ? -12
                   : net_request(r->c->ns, &k->rep.addr, NET_VERB_READ, q.data, q.len,
                                 r->c->opt.read_request_timeout_ms, remote_read_answered, k, &k->msg_id);
    buf_free(&q);
    if (rc) {
        k->outstanding = false;
        r->refs--;
        contact_answer(k, rc, NULL, 0);
    }
}

static void rreq_abort(coord_req *link) {
    rreq *r = (rreq *)link;
    for (int i = 0; i < r->nc; i++) {
        rcontact *k = &r->cont[i];
        if ((k->outstanding || k->repair_pending) && !k->rep.local && net_cancel(r->c->ns, k->msg_id) == 0) {
            k->outstanding = k->repair_pending = false;
            r->refs--;
        }
    }
    coord_error e;
    coord_set_err(&e, 0x0000, r->cl, "coordinator shutting down");
    rreq_answer(r, &e, NULL);
    rreq_release(r);
}

int coord_read(coord *c, const schema_replication *repl, uint64_t table_id, const void *pk,
               uint32_t pklen, const storage_slice *slice, enum coord_cl cl, coord_read_cb cb,
               void *arg) {
    if (!c || !repl || !cb || (!pk && pklen)) return ILION_EINVALID;
    c->stats.reads++;
    if (!c->cluster || repl->cls == SCHEMA_REPL_LOCAL)
        return read_local(c, repl, table_id, pk, pklen, slice, cl, cb, arg);
    coord_error err;
    if (coord_cl_valid(cl, false, &err)) {
        cb(arg, &err, NULL);
        return 0;
    }
    coord_rep reps[COORD_MAX_REPLICAS];
    size_t nr;
    coord_groups g;
    if (coord_replicas_for(c, repl, murmur3_token(pk, pklen), cl, false, reps, &nr, &g, &err)) {
        c->stats.unavailables++;
        cb(arg, &err, NULL);
        return 0;
    }
    coord_rep cs[COORD_MAX_REPLICAS];
    int nc = pick_contacts(reps, nr, &g, cs);
    if (nc == 1 && cs[0].local) {
        /* ONE/LOCAL_ONE on a replica: nothing to compare, no request state. */
        st_arena a;
        arena_init(&a);
        st_partition *p = NULL;
        int rc = storage_read(c->engine, table_id, pk, pklen, slice, clock_now_s(), &a, &p);
        if (rc) {
            coord_set_err(&err, 0x1300, cl, "Operation failed - received 0 responses and 1 failures (%s)",
                          ilion_strerror(rc));
            err.blockfor = 1;
            cb(arg, &err, NULL);
        } else {
            cb(arg, NULL, p);
        }
        arena_free(&a);
        return 0;
    }
    rreq *r = calloc(1, sizeof *r);
    if (!r) return -ENOMEM;
    r->c = c;
    r->cb = cb;
    r->arg = arg;
    r->cl = cl;
    r->table_id = table_id;
    r->pklen = pklen;
    r->pk = malloc(pklen ? pklen : 1);
    if (slice) r->slice = *slice;
    size_t bl = slice ? (slice->start ? slice->start_len : 0) + (slice->end ? slice->end_len : 0) : 0;
    r->bounds = malloc(bl ? bl : 1);
    if (!r->pk || !r->bounds) {
        free(r->pk);
        free(r->bounds);
        free(r);
        return -ENOMEM;
    }
    if (pklen) memcpy(r->pk, pk, pklen);
    if (slice && slice->start) {
        memcpy(r->bounds, slice->start, slice->start_len);
        r->slice.start = r->bounds;
    }
    if (slice && slice->end) {
        memcpy(r->bounds + (slice->start ? slice->start_len : 0), slice->end, slice->end_len);
        r->slice.end = r->bounds + (slice->start ? slice->start_len : 0);
    }
    r->now_s = clock_now_s();
    arena_init(&r->arena);
    r->nc = nc;
    for (int i = 0; i < r->nc; i++) {
        r->cont[i].r = r;
        r->cont[i].rep = cs[i];
    }
    r->phase = 1;
    r->refs = 1;
    coord_req_link(c, &r->link, rreq_abort);
    uv_timer_init(c->loop, &r->timer);
    r->timer.data = r;
    r->timer_on = true;
    uv_timer_start(&r->timer, rreq_timeout, c->opt.read_request_timeout_ms, 0);
    for (int i = 0; i < r->nc && !r->answered; i++)
        rreq_send(r, &r->cont[i], i == 0 ? RD_DATA : RD_DIGEST, false);
    r->refs--;
    rreq_step(r);
    rreq_release(r);
    return 0;
}

/* -------------------------------------------------------------------- range scan --- */

typedef struct sreq sreq;

typedef struct scontact {
    sreq *s;
    coord_rep rep;
    bool outstanding, answered, failed;
    uint64_t msg_id;
    uint8_t *data;           /* range answer */
    size_t len;
} scontact;

struct sreq {
    coord_req link;
    coord *c;
    schema_replication repl;
    enum coord_cl cl;
    uint64_t table_id;
    coord_scan_part_cb part_cb;
    coord_scan_done_cb done_cb;
    void *arg;
    uint32_t max_partitions, delivered;
    int64_t pos_token;       /* continue strictly after (pos_token, pos_pk) */
    uint8_t *pos_pk;         /* NULL: after every key of pos_token (or the start) */
    uint32_t pos_pklen;
    bool at_start;
    int64_t hi;              /* the current range is (pos, hi] */
    bool last_range;
    int nc, waiting;
    bool batch_on, in_pump, answered, explicit_failure, timer_on;
    scontact cont[COORD_MAX_REPLICAS];
    int refs;
    int32_t now_s;
    uv_timer_t timer;
};

static void sreq_free(sreq *s) {
    for (int i = 0; i < s->nc; i++) free(s->cont[i].data);
    free(s->pos_pk);
    free(s);
}

static void sreq_closed(uv_handle_t *h) { sreq_free(h->data); }

static void sreq_release(sreq *s) {
    if (!s->answered || s->refs > 0 || s->in_pump) return;
    coord_req_unlink(&s->link);
    if (s->timer_on) {
        s->timer_on = false;
        uv_close((uv_handle_t *)&s->timer, sreq_closed);
    } else {
        sreq_free(s);
    }
}

static void sreq_answer(sreq *s, const coord_error *e) {
    if (s->answered) return;
    s->answered = true;
    if (s->timer_on) uv_timer_stop(&s->timer);
    if (e && e->code == 0x1200) s->c->stats.read_timeouts++;
    s->done_cb(s->arg, e);
}

static void sreq_fail(sreq *s, bool timeout) {
    int recv = 0;
    bool dp = false;
    for (int i = 0; i < s->nc; i++)
        if (s->cont[i].answered && !s->cont[i].failed) {
            recv++;
            dp = true;
        }
    coord_error e;
    if (timeout || !s->explicit_failure)
        coord_set_err(&e, 0x1200, s->cl, "Operation timed out - received only %d responses.", recv);
    else
        coord_set_err(&e, 0x1300, s->cl, "Operation failed - received %d responses and 1 failures", recv);
    e.received = recv;
    e.blockfor = s->nc;
    e.data_present = dp;
    sreq_answer(s, &e);
}

static void sreq_timeout(uv_timer_t *h) {
    sreq *s = h->data;
    sreq_fail(s, true);
    sreq_release(s);
}

static int set_pos(sreq *s, int64_t token, const uint8_t *pk, uint32_t pklen) {
    uint8_t *np = NULL;
    if (pk) {
        np = malloc(pklen ? pklen : 1);
        if (!np) return -ENOMEM;
        if (pklen) memcpy(np, pk, pklen);
    }
    free(s->pos_pk);
    s->pos_pk = np;
    s->pos_pklen = pklen;
    s->pos_token = token;
    s->at_start = false;
    return 0;
}

static void scontact_answer(scontact *k, int err, const uint8_t *p, size_t len) {
    k->answered = true;
    if (err) {
        k->failed = true;
        if (err != ILION_ETIMEOUT && err != ILION_EUNAVAILABLE && err != ILION_ECLOSED)
            k->s->explicit_failure = true;
        return;
    }
    k->data = malloc(len ? len : 1);
    if (!k->data) {
        k->failed = true;
        k->s->explicit_failure = true;
        return;
    }
    memcpy(k->data, p, len);
    k->len = len;
}

static void sreq_pump(sreq *s);

static void remote_range_answered(void *arg, int err, uint8_t verb, const uint8_t *p, size_t len) {
    scontact *k = arg;
    sreq *s = k->s;
    k->outstanding = false;
    s->refs--;
    if (!s->answered) {
        scontact_answer(k, err, p, len);
        s->waiting--;
        sreq_pump(s);
    }
    sreq_release(s);
}

/* The range after the position: (pos, hi]; the last one runs to the end of the token space
 * and belongs to the first token's replicas. */
static int sreq_range(sreq *s, const ring *rg) {
    uint32_t n = ring_token_count(rg);
    if (n == 0) return -1;
    s->last_range = false;
    if (s->at_start) {
        s->hi = ring_token_at(rg, 0);
        return 0;
    }
    uint32_t i = ring_first_index(rg, s->pos_token);
    int64_t t = ring_token_at(rg, i);
    if (t < s->pos_token) {
        s->hi = INT64_MAX;
    } else if (t == s->pos_token && !s->pos_pk) {
        s->hi = i + 1 < n ? ring_token_at(rg, i + 1) : INT64_MAX;
    } else {
        s->hi = t;
    }
    if (s->hi == INT64_MAX) s->last_range = true;
    return 0;
}

static void sreq_issue(sreq *s) {
    coord *c = s->c;
    coord_error err;
    for (int i = 0; i < s->nc; i++) {
        free(s->cont[i].data);
        memset(&s->cont[i], 0, sizeof s->cont[i]);
    }
    s->nc = 0;
    if (sreq_range(s, cluster_ring(c->cluster))) {
        coord_set_err(&err, 0x1000, s->cl, "Cannot achieve consistency level %s: no ring yet",
                      coord_cl_name(s->cl));
        err.required = 1;
        sreq_answer(s, &err);
        return;
    }
    coord_rep reps[COORD_MAX_REPLICAS], cs[COORD_MAX_REPLICAS];
    size_t nr;
    coord_groups g;
    if (coord_replicas_for(c, &s->repl, s->hi, s->cl, false, reps, &nr, &g, &err)) {
        c->stats.unavailables++;
        sreq_answer(s, &err);
        return;
    }
    s->nc = pick_contacts(reps, nr, &g, cs);
    s->batch_on = true;
    s->waiting = s->nc;
    uv_timer_stop(&s->timer);
    uv_timer_start(&s->timer, sreq_timeout, c->opt.range_request_timeout_ms, 0);
    for (int i = 0; i < s->nc; i++) {
        scontact *k = &s->cont[i];
        k->s = s;
        k->rep = cs[i];
        if (k->rep.local) {
            buf out;
            buf_init(&out);
            int rc = local_range(c, s->table_id, s->at_start ? INT64_MIN : s->pos_token, s->pos_pk,
                                 s->pos_pklen, s->hi, SCAN_BATCH, s->now_s, &out);
            scontact_answer(k, rc, out.data, out.len);
            buf_free(&out);
            s->waiting--;
            continue;
        }
        buf q;
        buf_init(&q);
        buf_u8(&q, COORD_MSG_VERSION);
        buf_u64(&q, s->table_id);
        buf_u64(&q, (uint64_t)(s->at_start ? INT64_MIN : s->pos_token));
        buf_u8(&q, s->pos_pk != NULL);
        if (s->pos_pk) {
            buf_u32(&q, s->pos_pklen);
            buf_put(&q, s->pos_pk, s->pos_pklen);
        }
        buf_u64(&q, (uint64_t)s->hi);
        buf_u32(&q, SCAN_BATCH);
        buf_u32(&q, (uint32_t)s->now_s);
        k->outstanding = true;
        s->refs++;
        int rc = q.oom ? -12
                       : net_request(c->ns, &k->rep.addr, NET_VERB_RANGE_READ, q.data, q.len,
                                     c->opt.range_request_timeout_ms, remote_range_answered, k, &k->msg_id);
        buf_free(&q);
        if (rc) {
            k->outstanding = false;
            s->refs--;
            scontact_answer(k, rc, NULL, 0);
            s->waiting--;
        }
    }
}

typedef struct sresp {
    bool more;
    uint32_t n, at;
    st_partition **parts;
} sresp;

static int parse_range(st_arena *a, const scontact *k, sresp *out) {
    rd r;
    rd_init(&r, k->data, k->len);
    uint8_t more;
    uint32_t n;
    if (rd_u8(&r, &more) || rd_u32(&r, &n)) return ILION_ETRUNCATED;
    if (n > rd_left(&r) / 4) return ILION_ECORRUPT;
    out->more = more;
    out->n = n;
    out->at = 0;
    out->parts = arena_alloc(a, (n ? n : 1) * sizeof *out->parts);
    if (!out->parts) return -ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t l;
        const uint8_t *q;
        if (rd_u32(&r, &l) || rd_bytes(&r, l, &q)) return ILION_ETRUNCATED;
        int rc = st_partition_decode(a, q, l, &out->parts[i]);
        if (rc) return rc;
        if (i && st_key_compare(out->parts[i - 1]->token, out->parts[i - 1]->pk, out->parts[i - 1]->pklen,
                                out->parts[i]->token, out->parts[i]->pk, out->parts[i]->pklen) >= 0)
            return ILION_ECORRUPT;
    }
    return 0;
}

/* Every contact answered the batch: merge in key order up to the frontier (the smallest last
 * key of the answers that were cut short), hand the partitions over, move the position. */
static void sreq_process(sreq *s) {
    for (int i = 0; i < s->nc; i++)
        if (s->cont[i].failed) {
            sreq_fail(s, false);
            return;
        }
    st_arena a;
    arena_init(&a);
    sresp rs[COORD_MAX_REPLICAS];
    const st_partition *front = NULL;
    int rc = 0;
    for (int i = 0; i < s->nc && rc == 0; i++) {
        rc = parse_range(&a, &s->cont[i], &rs[i]);
        if (rc == 0 && rs[i].more && rs[i].n) {
            const st_partition *l = rs[i].parts[rs[i].n - 1];
            if (!front || st_key_compare(l->token, l->pk, l->pklen, front->token, front->pk, front->pklen) < 0)
                front = l;
        }
    }
    if (rc) {
        arena_free(&a);
        s->explicit_failure = true;
        sreq_fail(s, false);
        return;
    }
    bool stop = false;
    for (;;) {
        const st_partition *min = NULL;
        for (int i = 0; i < s->nc; i++) {
            if (rs[i].at >= rs[i].n) continue;
            const st_partition *p = rs[i].parts[rs[i].at];
            if (!min || st_key_compare(p->token, p->pk, p->pklen, min->token, min->pk, min->pklen) < 0) min = p;
        }
        if (!min) break;
        if (front && st_key_compare(min->token, min->pk, min->pklen, front->token, front->pk, front->pklen) > 0)
            break;
        const st_partition *m = NULL;
        const st_partition *key = min;
        for (int i = 0; i < s->nc; i++) {
            if (rs[i].at >= rs[i].n) continue;
            st_partition *p = rs[i].parts[rs[i].at];
            if (st_key_compare(p->token, p->pk, p->pklen, key->token, key->pk, key->pklen) != 0) continue;
            rs[i].at++;
            m = m ? st_partition_merge(&a, m, p) : p;
            if (!m) break;
        }
        if (!m) {
            rc = -ENOMEM;
            break;
        }
        ((st_partition *)m)->table_id = s->table_id;
        if (set_pos(s, m->token, m->pk, m->pklen)) {
            rc = -ENOMEM;
            break;
        }
        s->delivered++;
        if (s->part_cb(s->arg, m) || (s->max_partitions && s->delivered >= s->max_partitions)) {
            stop = true;
            break;
        }
    }
    if (rc == 0 && !stop) {
        if (front) rc = set_pos(s, front->token, front->pk, front->pklen);
        else if (s->last_range) stop = true;
        else rc = set_pos(s, s->hi, NULL, 0);
    }
    arena_free(&a);
    if (rc) {
        coord_error e;
        coord_set_err(&e, 0x0000, s->cl, "scan failed: %s", ilion_strerror(rc));
        sreq_answer(s, &e);
    } else if (stop) {
        sreq_answer(s, NULL);
    }
}

static void sreq_pump(sreq *s) {
    if (s->in_pump) return;
    s->in_pump = true;
    while (!s->answered && s->waiting == 0) {
        if (s->batch_on) {
            s->batch_on = false;
            sreq_process(s);
        } else {
            sreq_issue(s);
        }
    }
    s->in_pump = false;
}

static void sreq_abort(coord_req *link) {
    sreq *s = (sreq *)link;
    for (int i = 0; i < s->nc; i++) {
        scontact *k = &s->cont[i];
        if (k->outstanding && net_cancel(s->c->ns, k->msg_id) == 0) {
            k->outstanding = false;
            s->refs--;
        }
    }
    coord_error e;
    coord_set_err(&e, 0x0000, s->cl, "coordinator shutting down");
    sreq_answer(s, &e);
    sreq_release(s);
}

int coord_scan(coord *c, const schema_replication *repl, uint64_t table_id, int64_t start_token,
               const void *start_pk, uint32_t start_pklen, uint32_t max_partitions,
               enum coord_cl cl, coord_scan_part_cb part_cb, coord_scan_done_cb done_cb,
               void *arg) {
    if (!c || !repl || !part_cb || !done_cb) return ILION_EINVALID;
    c->stats.scans++;
    if (!c->cluster || repl->cls == SCHEMA_REPL_LOCAL)
        return scan_local(c, repl, table_id, start_token, start_pk, start_pklen, max_partitions, cl,
                          part_cb, done_cb, arg);
    coord_error err;
    if (coord_cl_valid(cl, false, &err)) {
        done_cb(arg, &err);
        return 0;
    }
    sreq *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->c = c;
    s->repl = *repl;
    s->cl = cl;
    s->table_id = table_id;
    s->part_cb = part_cb;
    s->done_cb = done_cb;
    s->arg = arg;
    s->max_partitions = max_partitions;
    s->now_s = clock_now_s();
    if (!start_pk && start_token == INT64_MIN) {
        s->at_start = true;
    } else if (set_pos(s, start_token, start_pk, start_pklen)) {
        free(s);
        return -ENOMEM;
    }
    coord_req_link(c, &s->link, sreq_abort);
    uv_timer_init(c->loop, &s->timer);
    s->timer.data = s;
    s->timer_on = true;
    s->refs = 0;
    sreq_pump(s);
    sreq_release(s);
    return 0;
}

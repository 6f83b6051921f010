/* Single-node coordinator. The shape is the cluster's: pick the replicas for the token, check
 * the consistency level against the alive ones, send to each (here only the local engine),
 * count acknowledgements. Writes are acknowledged once the engine says their commit log
 * position is synced; the engine reports syncs on its sync thread, which only records the
 * position and wakes the loop with uv_async_send. */
#include "ilion/coord/coord.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/util/arena.h"
#include "ilion/util/clock.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"

typedef struct coord_pending {
    struct coord_pending *next;
    uint64_t pos;            /* local commit log position whose sync is the local ack */
    int needed, acks;        /* acknowledgements the level needs / received */
    bool local_waiting;      /* the local ack is still waiting for its sync */
    coord_write_cb cb;
    void *arg;
    enum coord_cl cl;
    enum coord_write_type wt;
} coord_pending;

struct coord {
    uv_loop_t *loop;
    storage_engine *engine;
    struct cluster *cluster;
    uv_async_t async;
    pthread_mutex_t mu;      /* guards sync_err and closing against the sync thread */
    int sync_err;
    bool closing;
    coord_pending *head, *tail;
    char local_dc[SCHEMA_NAME_MAX];
};

/* A replica of a token. Today only the local node; remote replicas add an address here. */
typedef struct coord_replica {
    bool local;
    bool alive;
} coord_replica;

static void on_sync(void *arg, uint64_t synced_pos, int err) {
    coord *c = arg;
    (void)synced_pos;
    pthread_mutex_lock(&c->mu);
    if (err && !c->sync_err) c->sync_err = err;
    if (!c->closing) uv_async_send(&c->async);
    pthread_mutex_unlock(&c->mu);
}

static void set_err(coord_error *e, uint32_t code, enum coord_cl cl, const char *msg) {
    memset(e, 0, sizeof *e);
    e->code = code;
    e->cl = (uint16_t)cl;
    snprintf(e->message, sizeof e->message, "%s", msg);
}

static void drain(coord *c, bool all_fail) {
    pthread_mutex_lock(&c->mu);
    int serr = c->sync_err;
    pthread_mutex_unlock(&c->mu);
    coord_pending **pp = &c->head, *done = NULL, **dtail = &done;
    c->tail = NULL;
    while (*pp) {
        coord_pending *p = *pp;
        if (p->local_waiting && !all_fail && !serr && storage_is_synced(c->engine, p->pos)) {
            p->local_waiting = false;
            p->acks++;
        }
        if (all_fail || serr || p->acks >= p->needed) {
            *pp = p->next;
            p->next = NULL;
            *dtail = p;
            dtail = &p->next;
        } else {
            c->tail = p;
            pp = &p->next;
        }
    }
    /* Callbacks run after the list is consistent: they may start new writes. */
    while (done) {
        coord_pending *p = done;
        done = p->next;
        if (all_fail || serr) {
            coord_error e;
            set_err(&e, 0x0000, p->cl, all_fail ? "coordinator shutting down"
                                                : "commit log sync failed; write not durable");
            e.write_type = p->wt;
            p->cb(p->arg, &e);
        } else {
            p->cb(p->arg, NULL);
        }
        free(p);
    }
}

static void on_async(uv_async_t *h) { drain(h->data, false); }

int coord_create(uv_loop_t *loop, storage_engine *engine, struct cluster *cluster, coord **out) {
    coord *c = calloc(1, sizeof *c);
    if (!c) return -12;
    c->loop = loop;
    c->engine = engine;
    c->cluster = cluster;
    pthread_mutex_init(&c->mu, NULL);
    int rc = uv_async_init(loop, &c->async, on_async);
    if (rc) {
        pthread_mutex_destroy(&c->mu);
        free(c);
        return rc;
    }
    c->async.data = c;
    storage_set_sync_callback(engine, on_sync, c);
    *out = c;
    return 0;
}

static void on_closed(uv_handle_t *h) {
    coord *c = h->data;
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void coord_destroy(coord *c) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    c->closing = true;
    pthread_mutex_unlock(&c->mu);
    storage_set_sync_callback(c->engine, NULL, NULL);
    drain(c, true);
    uv_close((uv_handle_t *)&c->async, on_closed);
}

void coord_set_local_dc(coord *c, const char *dc) {
    snprintf(c->local_dc, sizeof c->local_dc, "%s", dc ? dc : "");
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

/* The replicas of a token: on one node, this node when the keyspace places a replica in its
 * DC. */
static size_t replicas(const coord *c, const schema_replication *repl, coord_replica *out) {
    int total, local;
    repl_factors(c, repl, &total, &local);
    if (local < 1) return 0;
    out[0].local = true;
    out[0].alive = true;
    return 1;
}

static const char *cl_name(enum coord_cl cl) {
    static const char *n[] = {"ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM",
                              "EACH_QUORUM", "SERIAL", "LOCAL_SERIAL", "LOCAL_ONE"};
    return (unsigned)cl < sizeof n / sizeof n[0] ? n[cl] : "UNKNOWN";
}

static int check_cl(coord *c, const schema_replication *repl, enum coord_cl cl, bool is_write,
                    coord_error *err, int *required_out);

int coord_check_cl(coord *c, const schema_replication *repl, enum coord_cl cl, bool is_write,
                   coord_error *err) {
    int required;
    return check_cl(c, repl, cl, is_write, err, &required);
}

static int check_cl(coord *c, const schema_replication *repl, enum coord_cl cl, bool is_write,
                    coord_error *err, int *required_out) {
    *required_out = 1;
    char msg[160];
    if ((unsigned)cl > COORD_CL_LOCAL_ONE) {
        snprintf(msg, sizeof msg, "Unknown consistency level %u", (unsigned)cl);
        set_err(err, 0x2200, cl, msg);
        return ILION_EINVALID;
    }
    if (!is_write && (cl == COORD_CL_ANY || cl == COORD_CL_EACH_QUORUM)) {
        snprintf(msg, sizeof msg, "%s ConsistencyLevel is only supported for writes", cl_name(cl));
        set_err(err, 0x2200, cl, msg);
        return ILION_EINVALID;
    }
    if (is_write && (cl == COORD_CL_SERIAL || cl == COORD_CL_LOCAL_SERIAL)) {
        snprintf(msg, sizeof msg, "You must use conditional updates for serializable writes");
        set_err(err, 0x2200, cl, msg);
        return ILION_EINVALID;
    }
    int total, local;
    repl_factors(c, repl, &total, &local);
    coord_replica reps[1];
    size_t n = replicas(c, repl, reps);
    int alive = 0;
    for (size_t i = 0; i < n; i++) alive += reps[i].alive;
    int required;
    switch (cl) {
    case COORD_CL_ANY: return 0;          /* a hint would do; the local write always happens */
    case COORD_CL_ONE: case COORD_CL_LOCAL_ONE: required = 1; break;
    case COORD_CL_TWO: required = 2; break;
    case COORD_CL_THREE: required = 3; break;
    case COORD_CL_QUORUM: case COORD_CL_SERIAL: required = total / 2 + 1; break;
    case COORD_CL_ALL: required = total; break;
    case COORD_CL_LOCAL_QUORUM: case COORD_CL_LOCAL_SERIAL: required = local / 2 + 1; break;
    case COORD_CL_EACH_QUORUM: {
        required = 0;
        if (repl->cls == SCHEMA_REPL_NTS) {
            /* The first DC whose quorum cannot be met decides; this node serves only its own. */
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
        } else {
            required = total / 2 + 1;
        }
        break;
    }
    default: required = 1; break;
    }
    if (required < 1) required = 1;
    if (required > alive) {
        snprintf(msg, sizeof msg,
                 "Cannot achieve consistency level %s: %d replicas required, %d alive",
                 cl_name(cl), required, alive);
        set_err(err, 0x1000, cl, msg);
        err->required = required;
        err->alive = alive;
        return ILION_EUNAVAILABLE;
    }
    *required_out = required;
    return 0;
}

static void storage_err(coord_error *e, enum coord_cl cl, int rc, const char *what) {
    char msg[200];
    snprintf(msg, sizeof msg, "%s failed: %s", what, ilion_strerror(rc));
    set_err(e, 0x0000, cl, msg);
}

/* Sends the mutations to the local replica: applied now, acknowledged once *pos is synced.
 * (A remote replica is sent a message instead and acknowledges through messaging.) */
static int replica_send_local(coord *c, st_partition *const *muts, size_t n, uint64_t *pos) {
    *pos = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t p = 0;
        int rc = storage_apply(c->engine, muts[i], &p);
        if (rc) return rc;
        if (p > *pos) *pos = p;
    }
    return 0;
}

int coord_write(coord *c, const schema_replication *repl, st_partition *const *muts, size_t n,
                enum coord_cl cl, enum coord_write_type wt, coord_write_cb cb, void *arg) {
    if (!c || !repl || (!muts && n) || !cb) return ILION_EINVALID;
    coord_error err;
    int needed;
    if (check_cl(c, repl, cl, true, &err, &needed)) {
        err.write_type = wt;
        cb(arg, &err);
        return 0;
    }
    coord_replica reps[1];
    size_t nrep = replicas(c, repl, reps);
    if (nrep == 0 && cl == COORD_CL_ANY) {
        /* No replica can take it: ANY accepts a hint, which on one node is the local write. */
        reps[0].local = reps[0].alive = true;
        nrep = 1;
    }
    int acks = 0;
    bool local_pending = false;
    uint64_t pos = 0;
    for (size_t i = 0; i < nrep; i++) {
        if (!reps[i].alive) continue;
        if (reps[i].local) {
            int rc = replica_send_local(c, muts, n, &pos);
            if (rc) {
                storage_err(&err, cl, rc, "write");
                err.write_type = wt;
                cb(arg, &err);
                return 0;
            }
            if (n == 0 || storage_is_synced(c->engine, pos)) acks++;
            else local_pending = true;
        }
    }
    if (acks >= needed) {
        cb(arg, NULL);
        return 0;
    }
    if (!local_pending) { /* nothing more can arrive */
        set_err(&err, 0x1500, cl, "not enough replicas acknowledged the write");
        err.received = acks;
        err.blockfor = needed;
        err.write_type = wt;
        cb(arg, &err);
        return 0;
    }
    coord_pending *p = calloc(1, sizeof *p);
    if (!p) return -12; /* applied but not acknowledged: the client sees a server error */
    p->pos = pos;
    p->needed = needed;
    p->acks = acks;
    p->local_waiting = true;
    p->cb = cb;
    p->arg = arg;
    p->cl = cl;
    p->wt = wt;
    if (c->tail) c->tail->next = p;
    else c->head = p;
    c->tail = p;
    /* The sync may have happened between apply and enqueue: check again on the loop. */
    uv_async_send(&c->async);
    return 0;
}

int coord_read(coord *c, const schema_replication *repl, uint64_t table_id, const void *pk,
               uint32_t pklen, const storage_slice *slice, enum coord_cl cl, coord_read_cb cb,
               void *arg) {
    if (!c || !repl || !cb) return ILION_EINVALID;
    coord_error err;
    if (coord_check_cl(c, repl, cl, false, &err)) {
        cb(arg, &err, NULL);
        return 0;
    }
    st_arena a;
    arena_init(&a);
    st_partition *p = NULL;
    int rc = storage_read(c->engine, table_id, pk, pklen, slice, clock_now_s(), &a, &p);
    if (rc) {
        storage_err(&err, cl, rc, "read");
        cb(arg, &err, NULL);
    } else {
        cb(arg, NULL, p);
    }
    arena_free(&a);
    return 0;
}

int coord_scan(coord *c, const schema_replication *repl, uint64_t table_id, int64_t start_token,
               const void *start_pk, uint32_t start_pklen, uint32_t max_partitions,
               enum coord_cl cl, coord_scan_part_cb part_cb, coord_scan_done_cb done_cb,
               void *arg) {
    if (!c || !repl || !part_cb || !done_cb) return ILION_EINVALID;
    coord_error err;
    if (coord_check_cl(c, repl, cl, false, &err)) {
        done_cb(arg, &err);
        return 0;
    }
    int rc = storage_scan(c->engine, table_id, start_token, start_pk, start_pklen, INT64_MAX,
                          max_partitions, clock_now_s(), part_cb, arg);
    if (rc < 0) {
        storage_err(&err, cl, rc, "scan");
        done_cb(arg, &err);
    } else {
        done_cb(arg, NULL);
    }
    return 0;
}

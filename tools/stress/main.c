/*
 * ilion-stress: a cassandra-stress-like load generator on one libuv loop. It connects to the
 * given node, creates keyspace1.standard1, learns the ring from system.local/system.peers,
 * opens connections to every node, and runs `threads * inflight` logical request slots, each
 * routing its key to a replica by Murmur3 token.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "cqlclient.h"
#include "dist.h"
#include "hist.h"
#include "ilion/util/clock.h"
#include "ilion/util/err.h"
#include "ilion/util/murmur3.h"
#include "opts.h"
#include "report.h"

#define MAX_SHOWN_ERRORS 10

typedef struct stress stress;
typedef struct snode snode;

typedef struct sconn {
    stress *st;
    snode *node;
    cqlc_conn *c;
    bool ready;
    bool failed;
    uint8_t ins_id[256];
    uint16_t ins_len;
    uint8_t sel_id[256];
    uint16_t sel_len;
    /* A node that has not yet applied the new table answers PREPARE with Invalid: retry. */
    uv_timer_t retry;
    bool retry_init;
    int retries;
} sconn;

struct snode {
    char addr[64];
    sconn *conns;
    int nconns;
};

typedef struct ring_entry {
    int64_t token;
    int node;
} ring_entry;

typedef struct worker {
    stress *st;
    int id;
    int thread;
    bool busy;
    bool parked;      /* waiting for the throttle */
    bool is_write;
    uint64_t key;
    uint64_t start_ns;
    /* -rate fixed=: the slot's ideal timeline (see issue) */
    uint64_t queue_ns;
    uint64_t vstart_ns;
    uint64_t vfree_ns;
} worker;

struct stress {
    stress_opts o;
    char cmdline[2048];
    uv_loop_t *loop;
    uv_timer_t tick, throttle_timer, stop_timer;
    uv_signal_t sigint;

    /* bootstrap */
    cqlc_conn *boot;
    int boot_idx;      /* contact point (index into nodes) of the bootstrap connection */
    bool boot_lz4;
    int phase;
    snode nodes[STRESS_MAX_NODES];
    int nnodes;
    ring_entry *ring;
    size_t nring, ring_cap;
    int conns_pending;

    /* statements */
    char ins_cql[8192];
    char sel_cql[8192];

    /* run */
    worker *workers;
    int nworkers;
    stress_keygen keys;
    stress_rng oprng;
    uint64_t issued, completed;
    uint64_t writes, reads;
    uint64_t errors, mismatches, missing;
    uint64_t iv_ops, iv_errors, iv_mismatches, iv_missing;
    bool stopping;
    bool aborted;
    bool started;
    uint64_t start_ns, last_tick_ns;
    int parked;
    hist iv_hist, total_hist;
    hist write_hist, read_hist;   /* per operation type, whole run (mixed summary) */
    stress_series series;
    FILE *log;
    FILE *hdr;
    int shown_errors;
    uint8_t *valbuf;
    size_t valcap;
    int exit_code;
    int rr;
};

static bool finished;
static void start_run(stress *st);
static void issue(worker *w);
static void finish(stress *st);

static void fatal_setup(stress *st, const char *what, int rc, const cqlc_result *res) {
    if (res && res->kind == CQLC_KIND_ERROR)
        fprintf(stderr, "ilion-stress: %s: %s (0x%04x): %s\n", what, cqlc_error_name(res->err_code),
                res->err_code, res->err_msg);
    else
        fprintf(stderr, "ilion-stress: %s: %s\n", what, ilion_strerror(rc));
    st->exit_code = 2;
    st->stopping = true;
    finish(st);
}

static void note_error(stress *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_error(stress *st, const char *fmt, ...) {
    if (st->shown_errors >= MAX_SHOWN_ERRORS) return;
    st->shown_errors++;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "%s\n", st->shown_errors == MAX_SHOWN_ERRORS ? " (further errors not shown)" : "");
    va_end(ap);
}

/* ---- ring ---- */

static int ring_cmp(const void *a, const void *b) {
    const ring_entry *x = a, *y = b;
    return x->token < y->token ? -1 : x->token > y->token;
}

static int ring_add(stress *st, int64_t token, int node) {
    if (st->nring == st->ring_cap) {
        size_t cap = st->ring_cap ? st->ring_cap * 2 : 256;
        ring_entry *r = realloc(st->ring, cap * sizeof *r);
        if (!r) return -ENOMEM;
        st->ring = r;
        st->ring_cap = cap;
    }
    st->ring[st->nring++] = (ring_entry){token, node};
    return 0;
}

/* The node owning token t: the first ring token >= t, wrapping. */
static int ring_owner(const stress *st, int64_t t) {
    size_t lo = 0, hi = st->nring;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (st->ring[mid].token < t) lo = mid + 1;
        else hi = mid;
    }
    if (lo == st->nring) lo = 0;
    return st->ring[lo].node;
}

static int node_find_or_add(stress *st, const char *addr) {
    for (int i = 0; i < st->nnodes; i++)
        if (strcmp(st->nodes[i].addr, addr) == 0) return i;
    if (st->nnodes == STRESS_MAX_NODES) return -1;
    snprintf(st->nodes[st->nnodes].addr, sizeof st->nodes[0].addr, "%s", addr);
    return st->nnodes++;
}

static void add_tokens(stress *st, const cqlc_cell *cell, int node) {
    size_t pos = 0;
    const uint8_t *e;
    int32_t el;
    while (cqlc_cell_collection_next(cell, &pos, &e, &el) == 1) {
        if (el <= 0 || el >= 32) continue;
        char tmp[32];
        memcpy(tmp, e, (size_t)el);
        tmp[el] = 0;
        char *end;
        errno = 0;
        long long t = strtoll(tmp, &end, 10);
        if (errno || *end) continue;
        ring_add(st, (int64_t)t, node);
    }
}

/* ---- bootstrap: schema, topology, connections, prepares ---- */

static void boot_step(cqlc_conn *c, int status, const cqlc_result *res, void *arg);
static void boot_connected(cqlc_conn *c, int status, void *arg);

enum { PH_KEYSPACE = 1, PH_TABLE, PH_LOCAL, PH_PEERS };

static int boot_query(stress *st, const char *cql) {
    cqlc_params p;
    cqlc_params_init(&p, CQLC_ONE);
    return cqlc_query(st->boot, cql, &p, boot_step, st);
}

static void build_statements(stress *st) {
    const stress_opts *o = &st->o;
    size_t n = 0;
    n += (size_t)snprintf(st->ins_cql + n, sizeof st->ins_cql - n,
                          "INSERT INTO %s.standard1 (key", o->keyspace);
    for (int i = 0; i < o->ncols && n < sizeof st->ins_cql; i++)
        n += (size_t)snprintf(st->ins_cql + n, sizeof st->ins_cql - n, ", \"C%d\"", i);
    if (n < sizeof st->ins_cql)
        n += (size_t)snprintf(st->ins_cql + n, sizeof st->ins_cql - n, ") VALUES (?");
    for (int i = 0; i < o->ncols && n < sizeof st->ins_cql; i++)
        n += (size_t)snprintf(st->ins_cql + n, sizeof st->ins_cql - n, ", ?");
    if (n < sizeof st->ins_cql) snprintf(st->ins_cql + n, sizeof st->ins_cql - n, ")");
    n = (size_t)snprintf(st->sel_cql, sizeof st->sel_cql, "SELECT ");
    for (int i = 0; i < o->ncols && n < sizeof st->sel_cql; i++)
        n += (size_t)snprintf(st->sel_cql + n, sizeof st->sel_cql - n, "%s\"C%d\"", i ? ", " : "", i);
    if (n < sizeof st->sel_cql)
        snprintf(st->sel_cql + n, sizeof st->sel_cql - n, " FROM %s.standard1 WHERE key = ?",
                 o->keyspace);
}

static void conn_prepared(cqlc_conn *c, int status, const cqlc_result *res, void *arg);
static void prepare_next(sconn *sc);

static void conn_settled(stress *st) {
    if (--st->conns_pending > 0) return;
    int ready = 0;
    for (int i = 0; i < st->nnodes; i++)
        for (int j = 0; j < st->nodes[i].nconns; j++) ready += st->nodes[i].conns[j].ready;
    if (ready == 0) {
        fprintf(stderr, "ilion-stress: no connection could be set up\n");
        st->exit_code = 2;
        st->stopping = true;
        finish(st);
        return;
    }
    start_run(st);
}

static void conn_ready(cqlc_conn *c, int status, void *arg) {
    sconn *sc = arg;
    stress *st = sc->st;
    if (status < 0) {
        fprintf(stderr, "ilion-stress: connection to %s failed: %s\n", sc->node->addr,
                ilion_strerror(status));
        sc->failed = true;
        conn_settled(st);
        return;
    }
    if (!st->o.prepared) {
        sc->ready = true;
        conn_settled(st);
        return;
    }
    prepare_next(sc);
}

static void prepare_next(sconn *sc) {
    int rc = cqlc_prepare(sc->c, sc->ins_len ? sc->st->sel_cql : sc->st->ins_cql, conn_prepared, sc);
    if (rc < 0) {
        sc->failed = true;
        conn_settled(sc->st);
    }
}

static void on_prepare_retry(uv_timer_t *t) {
    sconn *sc = t->data;
    if (finished || !sc->c || !cqlc_conn_ready(sc->c)) {
        sc->failed = true;
        conn_settled(sc->st);
        return;
    }
    prepare_next(sc);
}

static void conn_prepared(cqlc_conn *c, int status, const cqlc_result *res, void *arg) {
    sconn *sc = arg;
    stress *st = sc->st;
    if (status == 0 && res->kind == CQLC_KIND_ERROR && res->err_code == 0x2200 && sc->retries < 50 &&
        !finished) {
        /* Schema not there yet (a peer behind on the CREATE TABLE): try again in 200 ms. */
        sc->retries++;
        if (!sc->retry_init) {
            uv_timer_init(st->loop, &sc->retry);
            sc->retry.data = sc;
            sc->retry_init = true;
        }
        uv_timer_start(&sc->retry, on_prepare_retry, 200, 0);
        return;
    }
    if (status < 0 || res->kind != CQLC_KIND_PREPARED || res->prepared_id_len > sizeof sc->ins_id) {
        if (res && res->kind == CQLC_KIND_ERROR)
            fprintf(stderr, "ilion-stress: PREPARE on %s: %s: %s\n", sc->node->addr,
                    cqlc_error_name(res->err_code), res->err_msg);
        else
            fprintf(stderr, "ilion-stress: PREPARE on %s failed: %s\n", sc->node->addr,
                    status < 0 ? ilion_strerror(status) : "unexpected result");
        sc->failed = true;
        conn_settled(st);
        return;
    }
    if (sc->ins_len == 0) {
        memcpy(sc->ins_id, res->prepared_id, res->prepared_id_len);
        sc->ins_len = res->prepared_id_len;
        prepare_next(sc);
        return;
    }
    memcpy(sc->sel_id, res->prepared_id, res->prepared_id_len);
    sc->sel_len = res->prepared_id_len;
    sc->ready = true;
    conn_settled(st);
}

static void open_all(stress *st) {
    const stress_opts *o = &st->o;
    st->conns_pending = 1; /* held until every open was started */
    for (int i = 0; i < st->nnodes; i++) {
        snode *n = &st->nodes[i];
        n->conns = calloc((size_t)o->connections_per_host, sizeof(sconn));
        if (!n->conns) continue;
        n->nconns = o->connections_per_host;
        for (int j = 0; j < n->nconns; j++) {
            sconn *sc = &n->conns[j];
            sc->st = st;
            sc->node = n;
            cqlc_conn_opts co = {.host = n->addr, .port = o->port, .lz4 = o->lz4,
                                 .timeout_ms = o->timeout_ms};
            int rc = cqlc_conn_open(st->loop, &co, conn_ready, sc, &sc->c);
            if (rc < 0) {
                fprintf(stderr, "ilion-stress: cannot connect to %s: %s\n", n->addr,
                        ilion_strerror(rc));
                sc->c = NULL;
                sc->failed = true;
                continue;
            }
            st->conns_pending++;
        }
    }
    conn_settled(st);
}

static void boot_done(stress *st) {
    /* The bootstrap connection has served its purpose; the run uses fresh ones. */
    st->boot_lz4 = cqlc_conn_compressed(st->boot);
    cqlc_conn_close(st->boot, NULL, NULL);
    st->boot = NULL;
    if (st->nring) qsort(st->ring, st->nring, sizeof *st->ring, ring_cmp);
    printf("Connected to %d node(s), %zu ring token(s)%s%s\n", st->nnodes, st->nring,
           st->nring && st->o.token_aware ? ", token-aware routing" : ", round-robin routing",
           !st->o.lz4 ? "" : st->boot_lz4 ? ", lz4 frames" : ", lz4 not offered by the server");
    open_all(st);
}

static void boot_step(cqlc_conn *c, int status, const cqlc_result *res, void *arg) {
    stress *st = arg;
    if (st->stopping) return;
    const stress_opts *o = &st->o;
    char cql[8192];
    switch (st->phase) {
    case PH_KEYSPACE:
        if (status < 0 || (res->kind == CQLC_KIND_ERROR && res->err_code != 0x2400)) {
            fatal_setup(st, "CREATE KEYSPACE", status, res);
            return;
        }
        {
            size_t n = (size_t)snprintf(cql, sizeof cql,
                                        "CREATE TABLE IF NOT EXISTS %s.standard1 (key blob PRIMARY KEY",
                                        o->keyspace);
            for (int i = 0; i < o->ncols && n < sizeof cql; i++)
                n += (size_t)snprintf(cql + n, sizeof cql - n, ", \"C%d\" blob", i);
            if (n < sizeof cql) n += (size_t)snprintf(cql + n, sizeof cql - n, ")");
            const char *glue = " WITH";
            if (o->compaction[0] && n < sizeof cql) {
                n += (size_t)snprintf(cql + n, sizeof cql - n, "%s compaction = {'class': '%s'}",
                                      glue, o->compaction);
                glue = " AND";
            }
            if (o->compression[0] && n < sizeof cql)
                n += (size_t)snprintf(cql + n, sizeof cql - n, "%s compression = {'class': '%s'}",
                                      glue, o->compression);
            if (n >= sizeof cql) {
                fatal_setup(st, "CREATE TABLE", ILION_ETOOBIG, NULL);
                return;
            }
        }
        st->phase = PH_TABLE;
        if ((status = boot_query(st, cql)) < 0) fatal_setup(st, "CREATE TABLE", status, NULL);
        return;
    case PH_TABLE:
        if (status < 0 || (res->kind == CQLC_KIND_ERROR && res->err_code != 0x2400)) {
            fatal_setup(st, "CREATE TABLE", status, res);
            return;
        }
        st->phase = PH_LOCAL;
        if ((status = boot_query(st, "SELECT tokens FROM system.local WHERE key = 'local'")) < 0)
            fatal_setup(st, "system.local", status, NULL);
        return;
    case PH_LOCAL:
        if (status == 0 && res->kind == CQLC_KIND_ROWS && res->nrows > 0 && res->meta.ncols >= 1) {
            add_tokens(st, &res->cells[0], st->boot_idx);
        } else {
            fprintf(stderr, "ilion-stress: warning: no tokens from system.local (%s); routing "
                            "round-robin\n",
                    status < 0 ? ilion_strerror(status)
                               : res->kind == CQLC_KIND_ERROR ? res->err_msg : "no rows");
        }
        st->phase = PH_PEERS;
        if ((status = boot_query(st, "SELECT peer, rpc_address, tokens FROM system.peers")) < 0)
            fatal_setup(st, "system.peers", status, NULL);
        return;
    case PH_PEERS:
        if (status == 0 && res->kind == CQLC_KIND_ROWS && res->meta.ncols >= 3) {
            for (int32_t r = 0; r < res->nrows; r++) {
                const cqlc_cell *row = &res->cells[(size_t)r * (size_t)res->meta.ncols];
                char addr[64];
                if (cqlc_cell_inet(&row[1], addr, sizeof addr) < 0 || !strcmp(addr, "0.0.0.0") ||
                    !strcmp(addr, "::")) {
                    if (cqlc_cell_inet(&row[0], addr, sizeof addr) < 0) continue;
                }
                int ni = node_find_or_add(st, addr);
                if (ni >= 0) add_tokens(st, &row[2], ni);
            }
        } else if (status < 0 || res->kind == CQLC_KIND_ERROR) {
            fprintf(stderr, "ilion-stress: warning: system.peers unreadable (%s); using -node only\n",
                    status < 0 ? ilion_strerror(status) : res->err_msg);
        }
        boot_done(st);
        return;
    }
}

/* Opens the bootstrap connection to the next contact point (-node) that accepts one. */
static void boot_open_next(stress *st) {
    while (++st->boot_idx < st->nnodes) {
        cqlc_conn_opts co = {.host = st->nodes[st->boot_idx].addr, .port = st->o.port,
                             .lz4 = st->o.lz4, .timeout_ms = st->o.timeout_ms};
        int rc = cqlc_conn_open(st->loop, &co, boot_connected, st, &st->boot);
        if (rc == 0) return;
        st->boot = NULL;
        fprintf(stderr, "ilion-stress: cannot connect to %s: %s\n", co.host, ilion_strerror(rc));
    }
    fprintf(stderr, "ilion-stress: no contact point could be reached\n");
    st->exit_code = 2;
    finish(st);
}

static void boot_connected(cqlc_conn *c, int status, void *arg) {
    stress *st = arg;
    if (status < 0) {
        fprintf(stderr, "ilion-stress: cannot connect to %s: %s\n", st->nodes[st->boot_idx].addr,
                ilion_strerror(status));
        cqlc_conn_close(st->boot, NULL, NULL);
        st->boot = NULL;
        if (!finished) boot_open_next(st);
        return;
    }
    char cql[512];
    if (st->o.create_schema) {
        st->phase = PH_KEYSPACE;
        snprintf(cql, sizeof cql,
                 "CREATE KEYSPACE IF NOT EXISTS %s WITH replication = {'class': 'SimpleStrategy', "
                 "'replication_factor': %d}",
                 st->o.keyspace, st->o.rf);
    } else {
        st->phase = PH_LOCAL;
        snprintf(cql, sizeof cql, "SELECT tokens FROM system.local WHERE key = 'local'");
    }
    int rc = boot_query(st, cql);
    if (rc < 0) fatal_setup(st, "bootstrap query", rc, NULL);
}

/* ---- the run ---- */

static uint64_t elapsed_ns(const stress *st) { return clock_mono_ns() - st->start_ns; }

static bool may_issue(stress *st) {
    if (st->stopping) return false;
    if (st->o.n && st->issued >= st->o.n) return false;
    if (st->o.duration_s > 0 && (double)elapsed_ns(st) / 1e9 >= st->o.duration_s) return false;
    return true;
}

static bool throttled(stress *st) {
    if (st->o.throttle <= 0) return false;
    /* Operation i (from 0) may start at i / rate seconds. */
    return (double)st->issued > (double)elapsed_ns(st) / 1e9 * st->o.throttle;
}

static sconn *pick_conn(stress *st, worker *w, const uint8_t *key, size_t klen) {
    int node = -1;
    if (st->o.token_aware && st->nring) node = ring_owner(st, murmur3_token(key, klen));
    if (node >= 0) {
        snode *n = &st->nodes[node];
        for (int j = 0; j < n->nconns; j++) {
            sconn *sc = &n->conns[(w->thread + j) % n->nconns];
            if (sc->ready && cqlc_conn_ready(sc->c)) return sc;
        }
    }
    /* No owner known or it has no usable connection: spread over every live connection. */
    for (int tries = 0; tries < st->nnodes; tries++) {
        snode *n = &st->nodes[(st->rr++) % st->nnodes];
        for (int j = 0; j < n->nconns; j++) {
            sconn *sc = &n->conns[(w->thread + j) % n->nconns];
            if (sc->ready && cqlc_conn_ready(sc->c)) return sc;
        }
    }
    return NULL;
}

static void hexify(char *out, const uint8_t *p, size_t n) {
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[p[i] >> 4];
        out[2 * i + 1] = hx[p[i] & 15];
    }
    out[2 * n] = 0;
}

static void verify_row(stress *st, worker *w, const cqlc_result *res) {
    const stress_opts *o = &st->o;
    if (res->nrows == 0) {
        st->missing++;
        st->iv_missing++;
        return;
    }
    if (!o->verify) return;
    if (res->meta.ncols < o->ncols) {
        st->mismatches++;
        st->iv_mismatches++;
        note_error(st, "read of key %" PRIu64 " returned %d columns, expected %d", w->key,
                   res->meta.ncols, o->ncols);
        return;
    }
    for (int c = 0; c < o->ncols; c++) {
        const cqlc_cell *cell = &res->cells[c];
        size_t want = stress_value_size(w->key, c, &o->col_size);
        bool ok = cell->len >= 0 && (size_t)cell->len == want;
        if (ok) {
            stress_value_fill(w->key, c, st->valbuf, want);
            ok = memcmp(cell->data, st->valbuf, want) == 0;
        }
        if (!ok) {
            st->mismatches++;
            st->iv_mismatches++;
            note_error(st, "read of key %" PRIu64 " column C%d: value differs from what write stores",
                       w->key, c);
            return;
        }
    }
}

static void check_threshold(stress *st) {
    if (st->errors + st->mismatches > st->o.errors_max && !st->aborted) {
        st->aborted = true;
        st->stopping = true;
        fprintf(stderr, "ilion-stress: %" PRIu64 " errors and %" PRIu64
                        " mismatches exceed -errors max=%" PRIu64 "; stopping\n",
                st->errors, st->mismatches, st->o.errors_max);
    }
}

static void maybe_finish(stress *st) {
    if (st->completed == st->issued && !may_issue(st)) finish(st);
}

static void op_done(cqlc_conn *c, int status, const cqlc_result *res, void *arg) {
    worker *w = arg;
    stress *st = w->st;
    uint64_t now = clock_mono_ns();
    if (finished) return; /* connections closing after the summary */
    w->busy = false;
    uint64_t service = now - w->start_ns;
    w->vfree_ns = w->vstart_ns + service;
    st->completed++;
    bool ok = false;
    if (status < 0) {
        note_error(st, "%s key %" PRIu64 ": %s", w->is_write ? "write" : "read", w->key,
                   ilion_strerror(status));
    } else if (res->kind == CQLC_KIND_ERROR) {
        note_error(st, "%s key %" PRIu64 ": %s: %s", w->is_write ? "write" : "read", w->key,
                   cqlc_error_name(res->err_code), res->err_msg);
    } else if (w->is_write) {
        ok = res->kind == CQLC_KIND_VOID;
        if (!ok) note_error(st, "write answered with result kind %d", res->kind);
    } else {
        ok = res->kind == CQLC_KIND_ROWS;
        if (ok) verify_row(st, w, res);
        else note_error(st, "read answered with result kind %d", res->kind);
    }
    if (ok) {
        hist_record(&st->iv_hist, w->queue_ns + service);
        hist_record(w->is_write ? &st->write_hist : &st->read_hist, w->queue_ns + service);
        st->iv_ops++;
        if (w->is_write) st->writes++;
        else st->reads++;
    } else {
        st->errors++;
        st->iv_errors++;
    }
    check_threshold(st);
    if (may_issue(st)) issue(w);
    else maybe_finish(st);
}

static void issue(worker *w) {
    stress *st = w->st;
    const stress_opts *o = &st->o;
    if (!may_issue(st)) return;
    if (throttled(st)) {
        if (!w->parked) {
            w->parked = true;
            st->parked++;
        }
        return;
    }
    uint8_t key[24];
    w->key = stress_keygen_next(&st->keys);
    size_t klen = stress_key_bytes(w->key, key);
    if (o->command == STRESS_WRITE) w->is_write = true;
    else if (o->command == STRESS_READ) w->is_write = false;
    else w->is_write = stress_rng_below(&st->oprng, o->ratio_write + o->ratio_read) < o->ratio_write;
    sconn *sc = pick_conn(st, w, key, klen);
    w->busy = true;
    w->start_ns = clock_mono_ns();
    w->queue_ns = 0;
    if (o->fixed) {
        /* Operation i is due at start + i/rate. On the slot's ideal timeline (every operation
         * taking its measured service time, no timer lag of ours) it starts at
         * max(due, the slot's ideal free time); the wait from `due` to that start is delay the
         * system caused and is added to the latency (no coordinated omission). */
        uint64_t due = st->start_ns + (uint64_t)((double)st->issued / o->throttle * 1e9);
        uint64_t vstart = w->vfree_ns > due ? w->vfree_ns : due;
        w->queue_ns = vstart - due;
        w->vstart_ns = vstart;
    }
    st->issued++;
    int rc;
    if (!sc) {
        rc = ILION_EUNAVAILABLE;
    } else if (o->prepared) {
        cqlc_value vals[1 + 1000];
        cqlc_params p;
        cqlc_params_init(&p, (uint16_t)o->cl);
        vals[0] = (cqlc_value){key, (int32_t)klen};
        if (w->is_write) {
            size_t off = 0;
            for (int c = 0; c < o->ncols; c++) {
                size_t n = stress_value_size(w->key, c, &o->col_size);
                stress_value_fill(w->key, c, st->valbuf + off, n);
                vals[1 + c] = (cqlc_value){st->valbuf + off, (int32_t)n};
                off += n;
            }
            p.values = vals;
            p.nvalues = (uint16_t)(1 + o->ncols);
            rc = cqlc_execute(sc->c, sc->ins_id, sc->ins_len, &p, op_done, w);
        } else {
            p.values = vals;
            p.nvalues = 1;
            p.skip_metadata = true;
            rc = cqlc_execute(sc->c, sc->sel_id, sc->sel_len, &p, op_done, w);
        }
    } else {
        /* Simple statements carry their values as literals, exercising the server's parser. */
        static char cql[1 << 21];
        char khex[64];
        hexify(khex, key, klen);
        size_t n;
        if (w->is_write) {
            n = (size_t)snprintf(cql, sizeof cql, "INSERT INTO %s.standard1 (key", o->keyspace);
            for (int c = 0; c < o->ncols; c++)
                n += (size_t)snprintf(cql + n, sizeof cql - n, ", \"C%d\"", c);
            n += (size_t)snprintf(cql + n, sizeof cql - n, ") VALUES (0x%s", khex);
            for (int c = 0; c < o->ncols; c++) {
                size_t vn = stress_value_size(w->key, c, &o->col_size);
                if (n + 2 * vn + 8 >= sizeof cql) break;
                stress_value_fill(w->key, c, st->valbuf, vn);
                memcpy(cql + n, ", 0x", 4);
                n += 4;
                hexify(cql + n, st->valbuf, vn);
                n += 2 * vn;
            }
            snprintf(cql + n, sizeof cql - n, ")");
        } else {
            n = (size_t)snprintf(cql, sizeof cql, "%s", st->sel_cql);
            /* sel_cql ends in "?": replace the marker with the literal. */
            snprintf(cql + n - 1, sizeof cql - n + 1, "0x%s", khex);
        }
        cqlc_params p;
        cqlc_params_init(&p, (uint16_t)o->cl);
        rc = cqlc_query(sc->c, cql, &p, op_done, w);
    }
    if (rc < 0) {
        /* Not sent: count it as a failed operation and let the next tick retry this slot. */
        w->busy = false;
        st->completed++;
        st->errors++;
        st->iv_errors++;
        note_error(st, "cannot send request: %s", ilion_strerror(rc));
        check_threshold(st);
        if (!w->parked) {
            w->parked = true;
            st->parked++;
        }
    }
}

static void release_parked(stress *st) {
    for (int i = 0; i < st->nworkers && st->parked > 0; i++) {
        worker *w = &st->workers[i];
        if (!w->parked) continue;
        if (!may_issue(st)) break;
        if (throttled(st)) break;
        w->parked = false;
        st->parked--;
        issue(w);
    }
}

static void on_throttle(uv_timer_t *t) {
    stress *st = t->data;
    release_parked(st);
    maybe_finish(st);
}

static void emit_interval(stress *st, uint64_t now) {
    stress_interval iv = {0};
    iv.t_s = (double)(now - st->start_ns) / 1e9;
    iv.len_s = (double)(now - st->last_tick_ns) / 1e9;
    iv.ops = st->iv_ops;
    iv.errors = st->iv_errors;
    iv.mismatches = st->iv_mismatches;
    iv.missing = st->iv_missing;
    iv.rate = iv.len_s > 0 ? (double)iv.ops / iv.len_s : 0;
    stress_interval_fill(&iv, &st->iv_hist);
    stress_print_interval(stdout, &iv);
    fflush(stdout);
    if (st->log) {
        stress_print_interval(st->log, &iv);
        fflush(st->log);
    }
    stress_series_add(&st->series, &iv);
    if (st->hdr) {
        fprintf(st->hdr, "%.3f %.3f ", iv.t_s, iv.len_s);
        hist_write_sparse(st->hdr, &st->iv_hist);
        fputc('\n', st->hdr);
        fflush(st->hdr);
    }
    hist_merge(&st->total_hist, &st->iv_hist);
    hist_init(&st->iv_hist);
    st->iv_ops = st->iv_errors = st->iv_mismatches = st->iv_missing = 0;
    st->last_tick_ns = now;
}

static void on_tick(uv_timer_t *t) {
    stress *st = t->data;
    emit_interval(st, clock_mono_ns());
    release_parked(st);
    if (!may_issue(st)) maybe_finish(st);
}

static void on_stop_timer(uv_timer_t *t) {
    stress *st = t->data;
    /* The duration is over: idle slots (parked by the throttle) will issue nothing more. */
    maybe_finish(st);
}

static void on_sigint(uv_signal_t *s, int signum) {
    stress *st = s->data;
    if (st->stopping) {
        fprintf(stderr, "ilion-stress: interrupted twice, exiting\n");
        exit(130);
    }
    fprintf(stderr, "ilion-stress: interrupted, draining requests in flight\n");
    st->stopping = true;
    if (!st->started) finish(st);
    else maybe_finish(st);
}

static void start_run(stress *st) {
    const stress_opts *o = &st->o;
    st->nworkers = o->threads * o->inflight;
    st->workers = calloc((size_t)st->nworkers, sizeof(worker));
    if (!st->workers) {
        fatal_setup(st, "start", -ENOMEM, NULL);
        return;
    }
    stress_keygen_init(&st->keys, &o->pop, o->seed);
    stress_rng_seed(&st->oprng, o->seed ^ 0x0b5u);
    hist_init(&st->iv_hist);
    hist_init(&st->total_hist);
    hist_init(&st->write_hist);
    hist_init(&st->read_hist);
    st->started = true;
    stress_print_header(stdout);
    if (st->log) stress_print_header(st->log);
    st->start_ns = st->last_tick_ns = clock_mono_ns();
    uint64_t ms = (uint64_t)(o->log_interval_s * 1000);
    uv_timer_start(&st->tick, on_tick, ms, ms);
    if (o->throttle > 0) uv_timer_start(&st->throttle_timer, on_throttle, 1, 1);
    if (o->duration_s > 0)
        uv_timer_start(&st->stop_timer, on_stop_timer, (uint64_t)(o->duration_s * 1000) + 1, 0);
    for (int i = 0; i < st->nworkers; i++) {
        worker *w = &st->workers[i];
        w->st = st;
        w->id = i;
        w->thread = i / o->inflight;
        w->vfree_ns = st->start_ns;
        issue(w);
    }
    maybe_finish(st);
}

static void finish(stress *st) {
    if (finished) return;
    finished = true;
    st->stopping = true;
    uv_timer_stop(&st->tick);
    uv_timer_stop(&st->throttle_timer);
    uv_timer_stop(&st->stop_timer);
    if (st->started) {
        uint64_t now = clock_mono_ns();
        if (st->iv_ops || st->iv_errors || now - st->last_tick_ns > 1000000) emit_interval(st, now);
        stress_interval total = {0};
        total.t_s = total.len_s = (double)(now - st->start_ns) / 1e9;
        total.ops = st->total_hist.count;
        total.errors = st->errors;
        total.mismatches = st->mismatches;
        total.missing = st->missing;
        total.rate = total.len_s > 0 ? (double)total.ops / total.len_s : 0;
        stress_interval_fill(&total, &st->total_hist);
        stress_print_summary(stdout, &st->o, &total, st->writes, st->reads);
        if (st->log) stress_print_summary(st->log, &st->o, &total, st->writes, st->reads);
        if (st->o.command == STRESS_MIXED) {
            printf("Per operation:\n");
            stress_print_op_line(stdout, "write", &st->write_hist, total.len_s);
            stress_print_op_line(stdout, "read", &st->read_hist, total.len_s);
            if (st->log) {
                fprintf(st->log, "Per operation:\n");
                stress_print_op_line(st->log, "write", &st->write_hist, total.len_s);
                stress_print_op_line(st->log, "read", &st->read_hist, total.len_s);
            }
        }
        if (st->o.graph_file[0]) {
            int rc = stress_write_html(st->o.graph_file, &st->o, st->cmdline, &st->series, &total);
            if (rc < 0) fprintf(stderr, "ilion-stress: cannot write %s: %s\n", st->o.graph_file,
                                strerror(-rc));
        }
        if (st->exit_code == 0 && st->errors + st->mismatches > st->o.errors_max) st->exit_code = 1;
    }
    if (st->boot) {
        cqlc_conn_close(st->boot, NULL, NULL);
        st->boot = NULL;
    }
    for (int i = 0; i < st->nnodes; i++) {
        for (int j = 0; j < st->nodes[i].nconns; j++) {
            sconn *sc = &st->nodes[i].conns[j];
            if (sc->retry_init) {
                uv_close((uv_handle_t *)&sc->retry, NULL);
                sc->retry_init = false;
            }
            if (sc->c) {
                cqlc_conn_close(sc->c, NULL, NULL);
                sc->c = NULL;
                sc->ready = false;
            }
        }
    }
    uv_close((uv_handle_t *)&st->tick, NULL);
    uv_close((uv_handle_t *)&st->throttle_timer, NULL);
    uv_close((uv_handle_t *)&st->stop_timer, NULL);
    uv_close((uv_handle_t *)&st->sigint, NULL);
}

int main(int argc, char **argv) {
    static stress st_storage;
    stress *st = &st_storage;
    char err[256];
    int rc = stress_opts_parse(&st->o, argc, argv, err, sizeof err);
    if (rc == 1) {
        stress_usage(stdout);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "ilion-stress: %s\n", err);
        stress_usage(stderr);
        return 2;
    }
    size_t n = 0;
    for (int i = 0; i < argc && n < sizeof st->cmdline - 1; i++)
        n += (size_t)snprintf(st->cmdline + n, sizeof st->cmdline - n, "%s%s", i ? " " : "", argv[i]);
    st->valcap = 0;
    for (int c = 0; c < st->o.ncols; c++) st->valcap += st->o.col_size.hi;
    st->valbuf = malloc(st->valcap + 16);
    if (!st->valbuf) return 2;
    if (st->o.log_file[0]) {
        st->log = fopen(st->o.log_file, "w");
        if (!st->log) {
            fprintf(stderr, "ilion-stress: cannot open %s: %s\n", st->o.log_file, strerror(errno));
            return 2;
        }
        fprintf(st->log, "# %s\n", st->cmdline);
    }
    if (st->o.hdr_file[0]) {
        st->hdr = fopen(st->o.hdr_file, "w");
        if (!st->hdr) {
            fprintf(stderr, "ilion-stress: cannot open %s: %s\n", st->o.hdr_file, strerror(errno));
            return 2;
        }
        fprintf(st->hdr, "# %s\n# ilion-stress interval histograms: t_end_s len_s count min_ns max_ns "
                         "sum_ns bucket:count... (buckets: tools/stress/hist.h, 128 per octave)\n",
                st->cmdline);
    }
    signal(SIGPIPE, SIG_IGN);
    build_statements(st);
    st->loop = uv_default_loop();
    uv_timer_init(st->loop, &st->tick);
    uv_timer_init(st->loop, &st->throttle_timer);
    uv_timer_init(st->loop, &st->stop_timer);
    st->tick.data = st->throttle_timer.data = st->stop_timer.data = st;
    uv_signal_init(st->loop, &st->sigint);
    st->sigint.data = st;
    uv_signal_start(&st->sigint, on_sigint, SIGINT);
    for (int i = 0; i < st->o.nnodes; i++) {
        if (node_find_or_add(st, st->o.nodes[i]) < 0) break;
    }
    const char *mode = st->o.prepared ? "prepared" : "simple";
    printf("ilion-stress %s: %d threads x %d in flight = %d requests in flight, %s statements, "
           "compression %s, cl=%s\n",
           st->o.command == STRESS_WRITE ? "write" : st->o.command == STRESS_READ ? "read" : "mixed",
           st->o.threads, st->o.inflight, st->o.threads * st->o.inflight, mode,
           st->o.lz4 ? "lz4" : "none", cqlc_consistency_name(st->o.cl));
    st->boot_idx = -1;
    boot_open_next(st);
    uv_run(st->loop, UV_RUN_DEFAULT);
    uv_loop_close(st->loop);
    if (st->log) fclose(st->log);
    if (st->hdr) fclose(st->hdr);
    for (int i = 0; i < st->nnodes; i++) free(st->nodes[i].conns);
    free(st->workers);
    free(st->ring);
    free(st->valbuf);
    stress_series_free(&st->series);
    return st->exit_code;
}

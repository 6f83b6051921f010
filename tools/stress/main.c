/*
 * ilion-stress: a cassandra-stress-like load generator on one libuv loop. It connects to the
 * given node, creates keyspace1.standard1 (cas: keyspace1.cas1), learns the ring from
 * system.local/system.peers, opens connections to every node, and runs `threads * inflight`
 * logical request slots, each routing its key to a replica by Murmur3 token. `cas` ends with a
 * SERIAL read of every register it touched, checked against the outcomes it counted.
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
    uint8_t upd_id[256];      /* cas: the conditional UPDATE */
    uint16_t upd_len;
    int nprep;                /* statements prepared so far (ins, sel[, upd]) */
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
    /* cas */
    bool cas_update;  /* UPDATE .. IF v = expect (else INSERT .. IF NOT EXISTS) */
    int64_t expect;
    int retries;      /* final check: attempts of this key's SERIAL read */
} worker;

/* One register of `cas` (key index - pop.lo). A register is created with v = 0 and only ever
 * incremented by one with `IF v = old`, so it moves by the number of increments applied:
 * at least those answered [applied]=true, at most those plus the ones whose outcome is
 * unknown (WriteTimeout, lost connection, client timeout). Its starting value (`base`: 0, or
 * what an earlier run left) is the value in the first answer for the key: every increment is
 * sent after that answer arrived, so none can be counted in it. */
enum { REG_UNTOUCHED = 0, REG_CREATING, REG_KNOWN };
typedef struct cas_reg {
    int64_t base;      /* value before this run's increments (valid once has_base) */
    int64_t value;     /* the last value seen (a guess while others race on the key) */
    uint32_t applied;  /* increments answered [applied]=true */
    uint32_t unknown;  /* increments whose outcome is unknown */
    uint8_t state;
    bool has_base;
} cas_reg;

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
    char upd_cql[1024];

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

    /* cas */
    cas_reg *regs;
    uint64_t nregs;
    uint64_t applied, not_applied, unknown, increments, created;
    uint64_t iv_applied, iv_not_applied, iv_unknown;
    bool verifying, verify_stop;
    uint64_t run_end_ns;
    uint64_t verify_pos;
    int verify_inflight;
    uint64_t checked, violations, unverified;
};

static bool finished;
static void start_run(stress *st);
static void issue(worker *w);
static void finish(stress *st);
static void verify_start(stress *st);
static void op_done(cqlc_conn *c, int status, const cqlc_result *res, void *arg);

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
    if (o->command == STRESS_CAS) {
        snprintf(st->ins_cql, sizeof st->ins_cql,
                 "INSERT INTO %s.cas1 (k, v) VALUES (?, ?) IF NOT EXISTS", o->keyspace);
        snprintf(st->upd_cql, sizeof st->upd_cql, "UPDATE %s.cas1 SET v = ? WHERE k = ? IF v = ?",
                 o->keyspace);
        snprintf(st->sel_cql, sizeof st->sel_cql, "SELECT v FROM %s.cas1 WHERE k = ?", o->keyspace);
        return;
    }
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

/* Statements prepared on every connection: the insert, the select, and for cas the update. */
static int nstatements(const stress *st) { return st->o.command == STRESS_CAS ? 3 : 2; }

static void prepare_next(sconn *sc) {
    const stress *st = sc->st;
    const char *cql = sc->nprep == 0 ? st->ins_cql : sc->nprep == 1 ? st->sel_cql : st->upd_cql;
    int rc = cqlc_prepare(sc->c, cql, conn_prepared, sc);
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
    uint8_t *id = sc->nprep == 0 ? sc->ins_id : sc->nprep == 1 ? sc->sel_id : sc->upd_id;
    uint16_t *idlen = sc->nprep == 0 ? &sc->ins_len : sc->nprep == 1 ? &sc->sel_len : &sc->upd_len;
    memcpy(id, res->prepared_id, res->prepared_id_len);
    *idlen = res->prepared_id_len;
    if (++sc->nprep < nstatements(st)) {
        prepare_next(sc);
        return;
    }
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
            size_t n;
            if (o->command == STRESS_CAS) {
                n = (size_t)snprintf(cql, sizeof cql,
                                     "CREATE TABLE IF NOT EXISTS %s.cas1 (k blob PRIMARY KEY, v bigint)",
                                     o->keyspace);
            } else {
                n = (size_t)snprintf(cql, sizeof cql,
                                     "CREATE TABLE IF NOT EXISTS %s.standard1 (key blob PRIMARY KEY",
                                     o->keyspace);
                for (int i = 0; i < o->ncols && n < sizeof cql; i++)
                    n += (size_t)snprintf(cql + n, sizeof cql - n, ", \"C%d\" blob", i);
                if (n < sizeof cql) n += (size_t)snprintf(cql + n, sizeof cql - n, ")");
            }
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
    if (st->verifying) return; /* the final check ends the run itself */
    if (st->completed == st->issued && !may_issue(st)) {
        if (st->o.command == STRESS_CAS && st->started) verify_start(st);
        else finish(st);
    }
}

/* ---- cas ---- */

static cas_reg *reg_of(stress *st, uint64_t key) { return &st->regs[key - st->o.pop.lo]; }

static void put_be64(uint8_t *p, int64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)((uint64_t)v >> (56 - 8 * i));
}

/* Sends the next operation of a cas slot on key w->key: the creation of the register while
 * its value is not known, else an increment conditional on the value last seen. */
static int send_cas(stress *st, worker *w, sconn *sc, const uint8_t *key, size_t klen) {
    const stress_opts *o = &st->o;
    cas_reg *g = reg_of(st, w->key);
    w->cas_update = g->state == REG_KNOWN;
    w->expect = g->value;
    if (g->state == REG_UNTOUCHED) g->state = REG_CREATING;
    cqlc_params p;
    cqlc_params_init(&p, (uint16_t)o->cl);
    p.serial_consistency = (uint16_t)o->serial_cl;
    if (o->prepared) {
        uint8_t nv[8], ov[8];
        cqlc_value vals[3];
        if (w->cas_update) {
            put_be64(nv, w->expect + 1);
            put_be64(ov, w->expect);
            vals[0] = (cqlc_value){nv, 8};
            vals[1] = (cqlc_value){key, (int32_t)klen};
            vals[2] = (cqlc_value){ov, 8};
            p.values = vals;
            p.nvalues = 3;
            return cqlc_execute(sc->c, sc->upd_id, sc->upd_len, &p, op_done, w);
        }
        put_be64(nv, 0);
        vals[0] = (cqlc_value){key, (int32_t)klen};
        vals[1] = (cqlc_value){nv, 8};
        p.values = vals;
        p.nvalues = 2;
        return cqlc_execute(sc->c, sc->ins_id, sc->ins_len, &p, op_done, w);
    }
    char khex[64], cql[512];
    hexify(khex, key, klen);
    if (w->cas_update)
        snprintf(cql, sizeof cql, "UPDATE %s.cas1 SET v = %" PRId64 " WHERE k = 0x%s IF v = %" PRId64,
                 o->keyspace, w->expect + 1, khex, w->expect);
    else
        snprintf(cql, sizeof cql, "INSERT INTO %s.cas1 (k, v) VALUES (0x%s, 0) IF NOT EXISTS",
                 o->keyspace, khex);
    return cqlc_query(sc->c, cql, &p, op_done, w);
}

/* Errors after which the statement certainly did not run (it was refused before any Paxos
 * round started); any other failure leaves the outcome unknown. */
static bool error_is_definite(uint32_t code) {
    switch (code) {
    case 0x000A: /* Protocol error */
    case 0x1000: /* Unavailable: nothing sent */
    case 0x1001: /* Overloaded */
    case 0x1002: /* IsBootstrapping */
    case 0x2000: /* Syntax error */
    case 0x2100: /* Unauthorized */
    case 0x2200: /* Invalid */
    case 0x2300: /* Config error */
    case 0x2500: /* Unprepared */
        return true;
    default:
        return false;
    }
}

/* Accounts one cas answer; returns true when it was a definite answer ([applied] true/false). */
static bool cas_outcome(stress *st, worker *w, int status, const cqlc_result *res) {
    cas_reg *g = reg_of(st, w->key);
    const char *what = w->cas_update ? "update" : "create";
    bool indeterminate = false, definite = false;
    if (status < 0) {
        note_error(st, "cas %s key %" PRIu64 ": %s (outcome unknown)", what, w->key,
                   ilion_strerror(status));
        indeterminate = true;
    } else if (res->kind == CQLC_KIND_ERROR && res->err_code == 0x1100) {
        /* WriteTimeout: CAS (the Paxos round did not finish: the value may still be chosen),
         * or SIMPLE in the commit phase (decided, but we cannot tell whether the condition
         * held). Either way the register may or may not have moved. */
        st->unknown++;
        st->iv_unknown++;
        indeterminate = true;
    } else if (res->kind == CQLC_KIND_ERROR) {
        indeterminate = !error_is_definite(res->err_code);
        note_error(st, "cas %s key %" PRIu64 ": %s: %s%s", what, w->key, cqlc_error_name(res->err_code),
                   res->err_msg, indeterminate ? " (outcome unknown)" : "");
    } else if (res->kind != CQLC_KIND_ROWS || res->nrows < 1 || res->meta.ncols < 1 ||
               res->cells[0].len != 1) {
        note_error(st, "cas %s key %" PRIu64 ": answer is not an [applied] row (kind %d)", what,
                   w->key, res->kind);
        indeterminate = true;
    } else if (res->cells[0].data[0]) {
        definite = true;
        st->applied++;
        st->iv_applied++;
        if (w->cas_update) {
            g->applied++;
            st->increments++;
            g->value = w->expect + 1;
        } else {
            st->created++;
            g->value = 0;
        }
        if (!g->has_base) g->base = g->value, g->has_base = true;
        g->state = REG_KNOWN;
    } else {
        definite = true;
        st->not_applied++;
        st->iv_not_applied++;
        int vi = res->meta.no_metadata ? -1 : cqlc_result_column(res, "v");
        int64_t v;
        if (vi < 0) {
            /* No row (only [applied] comes back): the register must be created first. */
            g->state = g->state == REG_KNOWN ? REG_CREATING : g->state;
        } else if (cqlc_cell_bigint(&res->cells[vi], &v) == 0) {
            g->value = v;
            if (!g->has_base) g->base = v, g->has_base = true;
            g->state = REG_KNOWN;
        } else {
            note_error(st, "cas %s key %" PRIu64 ": the register holds no bigint (length %d)", what,
                       w->key, (int)res->cells[vi].len);
            definite = false;
        }
    }
    if (indeterminate && w->cas_update) g->unknown++;
    return definite;
}

/* ---- cas: the final check, one SERIAL read per register touched ---- */

#define VERIFY_SLOTS 64
#define VERIFY_ATTEMPTS 5

static void verify_done(cqlc_conn *c, int status, const cqlc_result *res, void *arg);

static int verify_send(stress *st, worker *w) {
    const stress_opts *o = &st->o;
    uint8_t key[24];
    size_t klen = stress_key_bytes(w->key, key);
    sconn *sc = pick_conn(st, w, key, klen);
    if (!sc) return ILION_EUNAVAILABLE;
    cqlc_params p;
    cqlc_params_init(&p, (uint16_t)o->serial_cl);
    if (o->prepared) {
        cqlc_value v = {key, (int32_t)klen};
        p.values = &v;
        p.nvalues = 1;
        return cqlc_execute(sc->c, sc->sel_id, sc->sel_len, &p, verify_done, w);
    }
    char khex[64], cql[512];
    hexify(khex, key, klen);
    snprintf(cql, sizeof cql, "SELECT v FROM %s.cas1 WHERE k = 0x%s", o->keyspace, khex);
    return cqlc_query(sc->c, cql, &p, verify_done, w);
}

/* Gives slot w the next register to check (or again the same one when retry); finishes the
 * run once every register was checked and no read is in flight. */
static void verify_next(stress *st, worker *w, bool retry) {
    for (;;) {
        if (!retry) {
            while (!st->verify_stop && st->verify_pos < st->nregs &&
                   st->regs[st->verify_pos].state == REG_UNTOUCHED)
                st->verify_pos++;
            if (st->verify_stop || st->verify_pos >= st->nregs) {
                if (st->verify_inflight == 0) finish(st);
                return;
            }
            w->key = st->o.pop.lo + st->verify_pos++;
            w->retries = 0;
        }
        retry = false;
        int rc = verify_send(st, w);
        if (rc == 0) {
            st->verify_inflight++;
            return;
        }
        st->unverified++;
        note_error(st, "SERIAL read of key %" PRIu64 " not sent: %s", w->key, ilion_strerror(rc));
    }
}

static void verify_done(cqlc_conn *c, int status, const cqlc_result *res, void *arg) {
    (void)c;
    worker *w = arg;
    stress *st = w->st;
    if (finished) return;
    st->verify_inflight--;
    int64_t v = 0;
    bool ok = status == 0 && res->kind == CQLC_KIND_ROWS;
    if (ok && res->nrows > 0 && res->meta.ncols >= 1 && res->cells[0].len >= 0)
        ok = cqlc_cell_bigint(&res->cells[0], &v) == 0;   /* no row or null: still 0 */
    if (!ok) {
        if (w->retries + 1 < VERIFY_ATTEMPTS && !st->verify_stop) {
            w->retries++;
            verify_next(st, w, true);
            return;
        }
        st->unverified++;
        if (status < 0)
            note_error(st, "SERIAL read of key %" PRIu64 ": %s", w->key, ilion_strerror(status));
        else if (res->kind == CQLC_KIND_ERROR)
            note_error(st, "SERIAL read of key %" PRIu64 ": %s: %s", w->key,
                       cqlc_error_name(res->err_code), res->err_msg);
        else
            note_error(st, "SERIAL read of key %" PRIu64 ": unexpected answer", w->key);
    } else {
        const cas_reg *g = reg_of(st, w->key);
        /* A register never answered for may have been created (an INSERT of unknown outcome)
         * or not: either way it holds its starting value, 0 here. */
        int64_t lo = g->base + (int64_t)g->applied, hi = lo + (int64_t)g->unknown;
        st->checked++;
        if (v < lo || v > hi) {
            if (st->violations < 20)
                printf("violation: key %" PRIu64 " holds %" PRId64 ", expected %" PRId64
                       " (start) + %u applied + up to %u unknown\n",
                       w->key, v, g->base, g->applied, g->unknown);
            st->violations++;
        }
    }
    verify_next(st, w, false);
}

static void emit_interval(stress *st, uint64_t now);

static void verify_start(stress *st) {
    st->verifying = true;
    st->run_end_ns = clock_mono_ns();
    uv_timer_stop(&st->tick);
    uv_timer_stop(&st->throttle_timer);
    uv_timer_stop(&st->stop_timer);
    if (st->iv_ops || st->iv_errors || st->iv_unknown || st->run_end_ns - st->last_tick_ns > 1000000)
        emit_interval(st, st->run_end_ns);
    uint64_t n = 0;
    for (uint64_t i = 0; i < st->nregs; i++) n += st->regs[i].state != REG_UNTOUCHED;
    printf("Checking %" PRIu64 " register(s) with %s reads\n", n,
           cqlc_consistency_name(st->o.serial_cl));
    fflush(stdout);
    int slots = st->nworkers < VERIFY_SLOTS ? st->nworkers : VERIFY_SLOTS;
    for (int i = 0; i < slots && !finished; i++) verify_next(st, &st->workers[i], false);
    if (!finished && st->verify_inflight == 0) finish(st);
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
    if (st->o.command == STRESS_CAS) {
        if (cas_outcome(st, w, status, res)) {
            hist_record(&st->iv_hist, w->queue_ns + service);
            hist_record(res->cells[0].data[0] ? &st->write_hist : &st->read_hist, w->queue_ns + service);
            st->iv_ops++;
        } else if (!(status == 0 && res->kind == CQLC_KIND_ERROR && res->err_code == 0x1100)) {
            st->errors++;
            st->iv_errors++;
        }
        check_threshold(st);
        if (may_issue(st)) issue(w);
        else maybe_finish(st);
        return;
    }
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
    if (o->command == STRESS_WRITE || o->command == STRESS_CAS) w->is_write = true;
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
    } else if (o->command == STRESS_CAS) {
        rc = send_cas(st, w, sc, key, klen);
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
    iv.applied = st->iv_applied;
    iv.not_applied = st->iv_not_applied;
    iv.unknown = st->iv_unknown;
    iv.rate = iv.len_s > 0 ? (double)iv.ops / iv.len_s : 0;
    stress_interval_fill(&iv, &st->iv_hist);
    bool cas = st->o.command == STRESS_CAS;
    (cas ? stress_print_interval_cas : stress_print_interval)(stdout, &iv);
    fflush(stdout);
    if (st->log) {
        (cas ? stress_print_interval_cas : stress_print_interval)(st->log, &iv);
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
    st->iv_applied = st->iv_not_applied = st->iv_unknown = 0;
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
    if (st->verifying) {
        /* The check is incomplete: stop it and fail the run. */
        st->verify_stop = true;
        st->exit_code = 1;
        if (st->verify_inflight == 0) finish(st);
        return;
    }
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
    if (o->command == STRESS_CAS) {
        st->nregs = o->pop.hi - o->pop.lo + 1;
        st->regs = calloc(st->nregs, sizeof *st->regs);
        if (!st->regs) {
            fatal_setup(st, "start", -ENOMEM, NULL);
            return;
        }
    }
    stress_keygen_init(&st->keys, &o->pop, o->seed);
    stress_rng_seed(&st->oprng, o->seed ^ 0x0b5u);
    hist_init(&st->iv_hist);
    hist_init(&st->total_hist);
    hist_init(&st->write_hist);
    hist_init(&st->read_hist);
    st->started = true;
    void (*header)(FILE *) = o->command == STRESS_CAS ? stress_print_header_cas : stress_print_header;
    header(stdout);
    if (st->log) header(st->log);
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
        uint64_t now = st->run_end_ns ? st->run_end_ns : clock_mono_ns();
        if (!st->run_end_ns && (st->iv_ops || st->iv_errors || now - st->last_tick_ns > 1000000))
            emit_interval(st, now);
        stress_interval total = {0};
        total.t_s = total.len_s = (double)(now - st->start_ns) / 1e9;
        total.ops = st->total_hist.count;
        total.errors = st->errors;
        total.mismatches = st->mismatches;
        total.missing = st->missing;
        total.applied = st->applied;
        total.not_applied = st->not_applied;
        total.unknown = st->unknown;
        total.rate = total.len_s > 0 ? (double)total.ops / total.len_s : 0;
        stress_interval_fill(&total, &st->total_hist);
        bool cas = st->o.command == STRESS_CAS;
        uint64_t w = cas ? st->applied : st->writes, r = cas ? st->not_applied : st->reads;
        stress_print_summary(stdout, &st->o, &total, w, r);
        if (st->log) stress_print_summary(st->log, &st->o, &total, w, r);
        if (cas) {
            stress_print_cas_summary(stdout, &total, st->increments, st->created, st->checked,
                                     st->violations, st->unverified);
            if (st->log)
                stress_print_cas_summary(st->log, &total, st->increments, st->created, st->checked,
                                         st->violations, st->unverified);
            printf("Per outcome:\n");
            stress_print_op_line(stdout, "applied", &st->write_hist, total.len_s);
            stress_print_op_line(stdout, "not applied", &st->read_hist, total.len_s);
            if (st->violations || st->unverified) st->exit_code = st->exit_code ? st->exit_code : 1;
        }
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
           "compression %s, cl=%s%s%s\n",
           st->o.command == STRESS_WRITE ? "write" : st->o.command == STRESS_READ ? "read"
           : st->o.command == STRESS_CAS ? "cas" : "mixed",
           st->o.threads, st->o.inflight, st->o.threads * st->o.inflight, mode,
           st->o.lz4 ? "lz4" : "none", cqlc_consistency_name(st->o.cl),
           st->o.command == STRESS_CAS ? ", serial_cl=" : "",
           st->o.command == STRESS_CAS ? cqlc_consistency_name(st->o.serial_cl) : "");
    st->boot_idx = -1;
    boot_open_next(st);
    uv_run(st->loop, UV_RUN_DEFAULT);
    uv_loop_close(st->loop);
    if (st->log) fclose(st->log);
    if (st->hdr) fclose(st->hdr);
    for (int i = 0; i < st->nnodes; i++) free(st->nodes[i].conns);
    free(st->workers);
    free(st->ring);
    free(st->regs);
    free(st->valbuf);
    stress_series_free(&st->series);
    return st->exit_code;
}

/* TRUNCATE over the cluster: every node of the ring empties the table (durably, before it
 * answers); all must be up, as in Cassandra, since a node that missed it would bring the data
 * back through read repair and hints. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "coord_int.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"

static void on_truncate(void *arg, net_service *ns, const net_msg *m, const uint8_t *p, size_t len) {
    coord *c = arg;
    rd r;
    rd_init(&r, p, len);
    uint8_t ver;
    uint64_t table_id;
    if (rd_u8(&r, &ver) || rd_u64(&r, &table_id)) {
        net_respond_error(ns, m, ILION_ETRUNCATED);
        return;
    }
    if (ver != COORD_MSG_VERSION) {
        net_respond_error(ns, m, ILION_EFORMAT);
        return;
    }
    /* A table this node does not have is empty here already. */
    int rc = storage_table_exists(c->engine, table_id) ? storage_table_truncate(c->engine, table_id) : 0;
    if (rc) net_respond_error(ns, m, rc);
    else net_respond(ns, m, NET_VERB_TRUNCATE_RSP, NULL, 0);
}

void coord_truncate_register(coord *c) { net_register(c->ns, NET_VERB_TRUNCATE, on_truncate, c); }

typedef struct treq treq;
typedef struct tpeer {
    treq *t;
    net_addr addr;
    uint64_t msg_id;
    bool outstanding;
} tpeer;

struct treq {
    coord_req link;
    coord *c;
    coord_write_cb cb;
    void *arg;
    int n, waiting;
    bool answered;
    tpeer *peers;
};

static void treq_answer(treq *t, const coord_error *e) {
    if (t->answered) return;
    t->answered = true;
    t->cb(t->arg, e);
}

static void treq_release(treq *t) {
    if (t->waiting > 0) return;
    coord_req_unlink(&t->link);
    free(t->peers);
    free(t);
}

static void peer_answered(void *arg, int err, uint8_t verb, const uint8_t *p, size_t len) {
    tpeer *pe = arg;
    treq *t = pe->t;
    pe->outstanding = false;
    t->waiting--;
    if (err) {
        char a[NET_ADDR_STRLEN];
        coord_error e;
        coord_set_err(&e, 0x0000, COORD_CL_ALL, "Error during truncate: %s on %s", ilion_strerror(err),
                      net_addr_str(&pe->addr, a, sizeof a));
        treq_answer(t, &e);
    } else if (t->waiting == 0) {
        treq_answer(t, NULL);
    }
    treq_release(t);
}

static void treq_abort(coord_req *link) {
    treq *t = (treq *)link;
    for (int i = 0; i < t->n; i++)
        if (t->peers[i].outstanding && net_cancel(t->c->ns, t->peers[i].msg_id) == 0) {
            t->peers[i].outstanding = false;
            t->waiting--;
        }
    coord_error e;
    coord_set_err(&e, 0x0000, COORD_CL_ALL, "coordinator shutting down");
    treq_answer(t, &e);
    t->link.next = NULL; /* already unlinked by coord_destroy */
    treq_release(t);
}

int coord_truncate(coord *c, uint64_t table_id, coord_write_cb cb, void *arg) {
    if (!c || !cb) return ILION_EINVALID;
    coord_error e;
    if (c->cluster) {
        const ring *rg = cluster_ring(c->cluster);
        uint32_t n = ring_endpoint_count(rg), alive = 0;
        for (uint32_t i = 0; i < n; i++) {
            const net_addr *a = &ring_endpoint_at(rg, i)->addr;
            alive += cluster_is_local(c->cluster, a) || cluster_is_alive(c->cluster, a);
        }
        if (alive < n) {
            coord_set_err(&e, 0x1000, COORD_CL_ALL,
                          "Cannot achieve consistency level ALL: truncate needs every node (%u of %u alive)",
                          alive, n);
            e.required = (int32_t)n;
            e.alive = (int32_t)alive;
            cb(arg, &e);
            return 0;
        }
    }
    int rc = storage_table_truncate(c->engine, table_id);
    if (rc) {
        coord_set_err(&e, 0x0000, COORD_CL_ALL, "Error during truncate: %s", ilion_strerror(rc));
        cb(arg, &e);
        return 0;
    }
    if (!c->cluster) {
        cb(arg, NULL);
        return 0;
    }
    const ring *rg = cluster_ring(c->cluster);
    uint32_t n = ring_endpoint_count(rg);
    treq *t = calloc(1, sizeof *t);
    if (!t || !(t->peers = calloc(n ? n : 1, sizeof *t->peers))) {
        free(t);
        return -ENOMEM;
    }
    t->c = c;
    t->cb = cb;
    t->arg = arg;
    t->waiting = 1;
    coord_req_link(c, &t->link, treq_abort);
    uint8_t msg[9];
    msg[0] = COORD_MSG_VERSION;
    be64_put(msg + 1, table_id);
    for (uint32_t i = 0; i < n && !t->answered; i++) {
        const net_addr *a = &ring_endpoint_at(rg, i)->addr;
        if (cluster_is_local(c->cluster, a)) continue;
        tpeer *pe = &t->peers[t->n++];
        pe->t = t;
        pe->addr = *a;
        pe->outstanding = true;
        t->waiting++;
        rc = net_request(c->ns, a, NET_VERB_TRUNCATE, msg, sizeof msg, c->opt.truncate_request_timeout_ms,
                         peer_answered, pe, &pe->msg_id);
        if (rc) {
            pe->outstanding = false;
            t->waiting--;
            char s[NET_ADDR_STRLEN];
            coord_set_err(&e, 0x0000, COORD_CL_ALL, "Error during truncate: %s on %s", ilion_strerror(rc),
                          net_addr_str(a, s, sizeof s));
            treq_answer(t, &e);
        }
    }
    t->waiting--;
    if (t->waiting == 0) treq_answer(t, NULL);
    treq_release(t);
    return 0;
}

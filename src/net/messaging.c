/* Internode messaging over libuv TCP. See include/ilion/net/messaging.h and
 * docs/internode-protocol.md (frame and handshake layouts). */
#include "ilion/net/messaging.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "ilion/util/buf.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"

#define MOD "net"

#define FRAME_HDR 8           /* u32 body length, u32 crc32(length bytes ++ body) */
#define MSG_HDR 10            /* u8 verb, u8 flags, u64 id */
#define HS_MAGIC 0x494c4e4du  /* "ILNM": handshake */
#define HS_ACK_MAGIC 0x494c4e41u /* "ILNA": handshake answer */
#define HS_MAX 1024           /* a handshake frame is small; refuse anything larger */

#define FLAG_REQUEST 0x01     /* sender waits for a response with the same id */
#define FLAG_RESPONSE 0x02
#define FLAG_ERROR 0x04       /* response payload is an i32 error code */

enum { HS_OK = 0, HS_WRONG_CLUSTER = 1, HS_WRONG_VERSION = 2 };
enum { CT_GOSSIP = 0, CT_DATA = 1 };
enum { OC_IDLE, OC_CONNECTING, OC_READY, OC_BACKOFF };

typedef struct outmsg {
    struct outmsg *next;
    size_t len;
    uint8_t data[];
} outmsg;

struct peer;
struct conn;

typedef struct outconn {
    struct peer *peer;
    int type;
    int state;
    struct conn *conn;          /* current connection attempt or established connection */
    uv_timer_t timer;           /* backoff and connect timeout */
    outmsg *qhead, *qtail;     /* not yet handed to libuv */
    size_t qbytes;
    uint32_t backoff_ms;
    bool dirty;                /* on the service's list of connections to write out */
    struct outconn *dirty_next;
} outconn;

typedef struct peer {
    net_service *ns;
    net_addr addr;
    bool down;
    int open_timers;           /* freed when both outconn timers are closed */
    outconn oc[2];
    struct peer *next;
} peer;

typedef struct conn {
    net_service *ns;
    uv_tcp_t tcp;
    uv_connect_t creq;
    outconn *oc;               /* outbound: owner; inbound: NULL */
    bool handshaken;
    bool closing;
    bool refuse_after_write;   /* inbound: close once the refusal is written */
    net_addr peer_addr;        /* inbound: from the handshake */
    uint8_t peer_host_id[16];
    uint8_t *rbuf;
    size_t rlen, rcap;
    uint64_t opened_ms;        /* inbound: accept time, for the handshake deadline */
    struct conn *next, *prev;  /* all live connections */
} conn;

typedef struct pending {
    net_service *ns;
    uint64_t id;
    net_addr to;
    net_response_cb cb;
    void *arg;
    uv_timer_t timer;
    struct pending *hnext;
} pending;

struct net_service {
    uv_loop_t *loop;
    net_options opt;
    char *cluster_name;
    uv_tcp_t listener;
    uv_timer_t sweep;          /* closes inbound connections that never complete a handshake */
    uv_prepare_t prep;         /* write out queued messages before the loop polls ... */
    uv_check_t chk;            /* ... and right after, so one write(2) carries many messages */
    struct outconn *dirty;
    net_addr local;
    bool closing;
    int nhandles;
    uint64_t next_id;
    peer *peers;
    conn *conns;
    pending **ptab;
    size_t pcap, pcount;
    struct {
        net_handler h;
        void *arg;
    } verbs[NET_VERB_MAX];
    net_refused_cb refused_cb;
    void *refused_arg;
    net_stats st;
};

/* ---- helpers ------------------------------------------------------------------------------ */

static void addr_to_sockaddr(const net_addr *a, uint16_t port, struct sockaddr_storage *ss) {
    memset(ss, 0, sizeof *ss);
    if (a->family == 6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, a->ip, 16);
        s6->sin6_port = htons(port);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, a->ip, 4);
        s4->sin_port = htons(port);
    }
}

static uint32_t frame_crc(const uint8_t *lenbytes, const uint8_t *body, size_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    c = crc32(c, lenbytes, 4);
    if (n) c = crc32(c, body, (uInt)n);
    return (uint32_t)c;
}

/* A complete frame (header + body) in one allocation, ready to write. */
static outmsg *frame_build(const uint8_t *body1, size_t n1, const uint8_t *body2, size_t n2) {
    size_t n = n1 + n2;
    outmsg *m = malloc(sizeof *m + FRAME_HDR + n);
    if (!m) return NULL;
    m->next = NULL;
    m->len = FRAME_HDR + n;
    be32_put(m->data, (uint32_t)n);
    if (n1) memcpy(m->data + FRAME_HDR, body1, n1);
    if (n2) memcpy(m->data + FRAME_HDR + n1, body2, n2);
    be32_put(m->data + 4, frame_crc(m->data, m->data + FRAME_HDR, n));
    return m;
}

static outmsg *msg_build(uint8_t verb, uint8_t flags, uint64_t id, const void *payload, size_t len) {
    uint8_t h[MSG_HDR];
    h[0] = verb;
    h[1] = flags;
    be64_put(h + 2, id);
    return frame_build(h, MSG_HDR, payload, len);
}

static void handle_closed(net_service *ns);

/* ---- pending requests --------------------------------------------------------------------- */

static size_t ptab_slot(const net_service *ns, uint64_t id) {
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 20) & (ns->pcap - 1);
}

static int ptab_insert(net_service *ns, pending *p) {
    if (ns->pcount + 1 > ns->pcap) {
        size_t ncap = ns->pcap ? ns->pcap * 2 : 64;
        pending **nt = calloc(ncap, sizeof *nt);
        if (!nt) return -ENOMEM;
        pending **old = ns->ptab;
        size_t ocap = ns->pcap;
        ns->ptab = nt;
        ns->pcap = ncap;
        for (size_t i = 0; i < ocap; i++) {
            pending *e = old[i];
            while (e) {
                pending *nx = e->hnext;
                size_t s = ptab_slot(ns, e->id);
                e->hnext = nt[s];
                nt[s] = e;
                e = nx;
            }
        }
        free(old);
    }
    size_t s = ptab_slot(ns, p->id);
    p->hnext = ns->ptab[s];
    ns->ptab[s] = p;
    ns->pcount++;
    return 0;
}

static pending *ptab_take(net_service *ns, uint64_t id) {
    if (!ns->pcap) return NULL;
    pending **pp = &ns->ptab[ptab_slot(ns, id)];
    while (*pp) {
        if ((*pp)->id == id) {
            pending *p = *pp;
            *pp = p->hnext;
            ns->pcount--;
            return p;
        }
        pp = &(*pp)->hnext;
    }
    return NULL;
}

static void pending_closed(uv_handle_t *h) {
    pending *p = h->data;
    net_service *ns = p->ns;
    free(p);
    handle_closed(ns);
}

/* Removes p (already taken out of the table), stops its timer, calls back with err. */
static void pending_finish(pending *p, int err, uint8_t verb, const uint8_t *payload, size_t len) {
    uv_timer_stop(&p->timer);
    net_response_cb cb = p->cb;
    void *arg = p->arg;
    uv_close((uv_handle_t *)&p->timer, pending_closed);
    if (cb) cb(arg, err, verb, payload, len);
}

static void pending_timeout(uv_timer_t *t) {
    pending *p = t->data;
    net_service *ns = p->ns;
    if (ptab_take(ns, p->id) != p) return;
    ns->st.timeouts++;
    pending_finish(p, ILION_ETIMEOUT, NET_VERB_NONE, NULL, 0);
}

/* Fails every pending request (to `to`, or all when to == NULL) with err. */
static void pending_fail_all(net_service *ns, const net_addr *to, int err) {
    size_t n = 0;
    for (size_t i = 0; i < ns->pcap; i++)
        for (pending *p = ns->ptab[i]; p; p = p->hnext)
            if (!to || net_addr_eq(&p->to, to)) n++;
    if (!n) return;
    uint64_t *ids = malloc(n * sizeof *ids);
    if (!ids) return;  /* they will time out instead */
    size_t k = 0;
    for (size_t i = 0; i < ns->pcap; i++)
        for (pending *p = ns->ptab[i]; p; p = p->hnext)
            if (!to || net_addr_eq(&p->to, to)) ids[k++] = p->id;
    for (size_t i = 0; i < k; i++) {
        pending *p = ptab_take(ns, ids[i]);  /* a callback may have completed others */
        if (p) pending_finish(p, err, NET_VERB_NONE, NULL, 0);
    }
    free(ids);
}

/* ---- connections -------------------------------------------------------------------------- */

static void conn_closed(uv_handle_t *h) {
    conn *c = h->data;
    net_service *ns = c->ns;
    if (c->prev) c->prev->next = c->next; else ns->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    free(c->rbuf);
    free(c);
    handle_closed(ns);
}

static void outconn_failed(outconn *oc);

static void conn_close(conn *c) {
    if (c->closing) return;
    c->closing = true;
    if (c->oc && c->oc->conn == c) {
        outconn *oc = c->oc;
        oc->conn = NULL;
        c->oc = NULL;
        outconn_failed(oc);
    }
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static conn *conn_new(net_service *ns) {
    conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->ns = ns;
    if (uv_tcp_init(ns->loop, &c->tcp) < 0) {
        free(c);
        return NULL;
    }
    ns->nhandles++;
    c->tcp.data = c;
    c->next = ns->conns;
    if (ns->conns) ns->conns->prev = c;
    ns->conns = c;
    return c;
}

typedef struct wreq {
    uv_write_t req;
    conn *c;
    outmsg *m;
    size_t nbatch;
    outmsg **batch;            /* batch writes: nbatch messages, freed together */
} wreq;

static void write_done(uv_write_t *req, int status) {
    wreq *w = (wreq *)req;
    conn *c = w->c;
    free(w->m);
    for (size_t i = 0; i < w->nbatch; i++) free(w->batch[i]);
    free(w);
    if (status < 0) {
        if (status != UV_ECANCELED) conn_close(c);
        return;
    }
    if (c->refuse_after_write) conn_close(c);
}

/* Takes ownership of m. */
static int conn_write(conn *c, outmsg *m) {
    wreq *w = malloc(sizeof *w);
    if (!w) {
        free(m);
        return -ENOMEM;
    }
    w->c = c;
    w->m = m;
    w->nbatch = 0;
    w->batch = NULL;
    uv_buf_t b = uv_buf_init((char *)m->data, (unsigned)m->len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_done);
    if (rc < 0) {
        free(m);
        free(w);
        conn_close(c);
        return rc;
    }
    c->ns->st.sent_msgs++;
    c->ns->st.sent_bytes += m->len;
    return 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
    conn *c = h->data;
    size_t want = 65536;
    if (c->rcap - c->rlen < want) {
        size_t ncap = c->rcap ? c->rcap : want;
        while (ncap - c->rlen < want) ncap *= 2;
        uint8_t *nb = realloc(c->rbuf, ncap);
        if (!nb) {
            *b = uv_buf_init(NULL, 0);
            return;
        }
        c->rbuf = nb;
        c->rcap = ncap;
    }
    *b = uv_buf_init((char *)c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

static int handle_frame(conn *c, const uint8_t *body, size_t n);

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
    conn *c = s->data;
    net_service *ns = c->ns;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (nread == 0) return;
    if (c->closing) return;
    c->rlen += (size_t)nread;
    ns->st.recv_bytes += (uint64_t)nread;
    size_t off = 0;
    while (!c->closing && c->rlen - off >= FRAME_HDR) {
        const uint8_t *h = c->rbuf + off;
        uint32_t len = be32_get(h);
        uint32_t limit = c->handshaken ? ns->opt.max_message_size + MSG_HDR : HS_MAX;
        if (len > limit) {
            char a[NET_ADDR_STRLEN];
            LOG_WARN(MOD, "closing connection from %s: frame of %u bytes over the limit %u",
                     c->handshaken ? net_addr_str(&c->peer_addr, a, sizeof a) : "(handshaking)",
                     len, limit);
            ns->st.bad_frames++;
            conn_close(c);
            return;
        }
        if (c->rlen - off < FRAME_HDR + (size_t)len) break;
        if (frame_crc(h, h + FRAME_HDR, len) != be32_get(h + 4)) {
            LOG_WARN(MOD, "closing connection: frame checksum mismatch");
            ns->st.bad_frames++;
            conn_close(c);
            return;
        }
        int rc = handle_frame(c, h + FRAME_HDR, len);
        off += FRAME_HDR + len;
        if (rc < 0) {
            ns->st.bad_frames++;
            conn_close(c);
            return;
        }
    }
    if (off) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    /* Don't hold a huge buffer after one large message. */
    if (c->rlen == 0 && c->rcap > (1u << 20)) {
        free(c->rbuf);
        c->rbuf = NULL;
        c->rcap = 0;
    }
}

/* ---- handshake ---------------------------------------------------------------------------- */

static outmsg *handshake_build(net_service *ns, uint32_t magic, uint8_t status_or_type) {
    buf b;
    buf_init(&b);
    buf_u32(&b, magic);
    buf_u8(&b, NET_MESSAGING_VERSION);
    buf_u8(&b, status_or_type);
    size_t nl = strlen(ns->cluster_name);
    buf_u16(&b, (uint16_t)nl);
    buf_put(&b, ns->cluster_name, nl);
    buf_put(&b, ns->opt.host_id, 16);
    net_addr_encode(&b, &ns->local);
    outmsg *m = b.oom ? NULL : frame_build(b.data, b.len, NULL, 0);
    buf_free(&b);
    return m;
}

typedef struct hs {
    uint32_t magic;
    uint8_t version, code;
    const uint8_t *name;
    uint16_t name_len;
    const uint8_t *host_id;
    net_addr addr;
} hs;

static int handshake_parse(const uint8_t *p, size_t n, hs *h) {
    rd r;
    rd_init(&r, p, n);
    if (rd_u32(&r, &h->magic) < 0 || rd_u8(&r, &h->version) < 0 || rd_u8(&r, &h->code) < 0 ||
        rd_u16(&r, &h->name_len) < 0 || rd_bytes(&r, h->name_len, &h->name) < 0 ||
        rd_bytes(&r, 16, &h->host_id) < 0)
        return ILION_ETRUNCATED;
    int rc = net_addr_decode(&r, &h->addr);
    if (rc < 0) return rc;
    return 0;
}

static bool name_matches(const net_service *ns, const hs *h) {
    return h->name_len == strlen(ns->cluster_name) && memcmp(h->name, ns->cluster_name, h->name_len) == 0;
}

static void outconn_flush(outconn *oc);

static int handle_inbound_handshake(conn *c, const uint8_t *body, size_t n) {
    net_service *ns = c->ns;
    hs h;
    if (handshake_parse(body, n, &h) < 0 || h.magic != HS_MAGIC) {
        LOG_WARN(MOD, "closing inbound connection: bad handshake");
        return ILION_EPROTOCOL;
    }
    char a[NET_ADDR_STRLEN];
    net_addr_str(&h.addr, a, sizeof a);
    uint8_t status = HS_OK;
    if (!name_matches(ns, &h)) {
        status = HS_WRONG_CLUSTER;
        LOG_WARN(MOD, "refusing connection from %s: cluster name '%.*s' is not ours ('%s')", a,
                 (int)h.name_len, (const char *)h.name, ns->cluster_name);
        ns->st.handshakes_refused++;
        if (ns->refused_cb) {
            char their[256];
            size_t l = h.name_len < sizeof their - 1 ? h.name_len : sizeof their - 1;
            memcpy(their, h.name, l);
            their[l] = 0;
            ns->refused_cb(ns->refused_arg, &h.addr, their);
        }
    } else if (h.version != NET_MESSAGING_VERSION) {
        status = HS_WRONG_VERSION;
        LOG_WARN(MOD, "refusing connection from %s: messaging version %u, ours %u", a, h.version,
                 NET_MESSAGING_VERSION);
        ns->st.handshakes_refused++;
    }
    outmsg *m = handshake_build(ns, HS_ACK_MAGIC, status);
    if (!m) return -ENOMEM;
    if (status != HS_OK) {
        c->refuse_after_write = true;
        uv_read_stop((uv_stream_t *)&c->tcp);
        conn_write(c, m);
        return 0;
    }
    c->handshaken = true;
    c->peer_addr = h.addr;
    memcpy(c->peer_host_id, h.host_id, 16);
    ns->st.handshakes_ok++;
    LOG_DEBUG(MOD, "inbound %s connection from %s", h.code == CT_GOSSIP ? "gossip" : "data", a);
    return conn_write(c, m);
}

static int handle_outbound_handshake(conn *c, const uint8_t *body, size_t n) {
    net_service *ns = c->ns;
    outconn *oc = c->oc;
    hs h;
    if (!oc || handshake_parse(body, n, &h) < 0 || h.magic != HS_ACK_MAGIC) {
        LOG_WARN(MOD, "closing outbound connection: bad handshake answer");
        return ILION_EPROTOCOL;
    }
    char a[NET_ADDR_STRLEN];
    net_addr_str(&oc->peer->addr, a, sizeof a);
    if (h.code != HS_OK || !name_matches(ns, &h)) {
        LOG_WARN(MOD, "connection to %s refused: its cluster is '%.*s' (version %u), ours '%s' "
                 "(version %u)", a, (int)h.name_len, (const char *)h.name, h.version,
                 ns->cluster_name, NET_MESSAGING_VERSION);
        ns->st.handshakes_refused++;
        if (ns->refused_cb && (h.code == HS_WRONG_CLUSTER || !name_matches(ns, &h))) {
            char their[256];
            size_t l = h.name_len < sizeof their - 1 ? h.name_len : sizeof their - 1;
            memcpy(their, h.name, l);
            their[l] = 0;
            ns->refused_cb(ns->refused_arg, &oc->peer->addr, their);
        }
        /* Nothing queued for this peer can be delivered: drop it and fail its requests. */
        for (outmsg *m = oc->qhead, *nx; m; m = nx) {
            nx = m->next;
            free(m);
        }
        oc->qhead = oc->qtail = NULL;
        oc->qbytes = 0;
        net_addr to = oc->peer->addr;
        oc->backoff_ms = ns->opt.backoff_max_ms;
        conn_close(c);
        pending_fail_all(ns, &to, -ECONNREFUSED);
        return 0;
    }
    c->handshaken = true;
    c->peer_addr = oc->peer->addr;
    memcpy(c->peer_host_id, h.host_id, 16);
    ns->st.handshakes_ok++;
    oc->state = OC_READY;
    oc->backoff_ms = ns->opt.backoff_initial_ms;
    uv_timer_stop(&oc->timer);
    outconn_flush(oc);
    return 0;
}

/* ---- message dispatch --------------------------------------------------------------------- */

static int handle_frame(conn *c, const uint8_t *body, size_t n) {
    net_service *ns = c->ns;
    if (!c->handshaken) {
        return c->oc ? handle_outbound_handshake(c, body, n) : handle_inbound_handshake(c, body, n);
    }
    if (c->oc) return 0;  /* outbound connections carry nothing back after the handshake */
    if (n < MSG_HDR) return ILION_ETRUNCATED;
    ns->st.recv_msgs++;
    uint8_t verb = body[0], flags = body[1];
    uint64_t id = be64_get(body + 2);
    const uint8_t *payload = body + MSG_HDR;
    size_t len = n - MSG_HDR;
    if (flags & FLAG_RESPONSE) {
        pending *p = ptab_take(ns, id);
        if (!p) return 0;  /* late: already timed out or cancelled */
        if (!net_addr_eq(&p->to, &c->peer_addr)) {
            /* Not from the node we asked: put it back and ignore the impostor. */
            ptab_insert(ns, p);
            return 0;
        }
        ns->st.responses++;
        if (flags & FLAG_ERROR) {
            int32_t code = len >= 4 ? (int32_t)be32_get(payload) : ILION_EPROTOCOL;
            if (code >= 0) code = ILION_EPROTOCOL;
            pending_finish(p, code, verb, NULL, 0);
        } else {
            pending_finish(p, 0, verb, payload, len);
        }
        return 0;
    }
    if (verb >= NET_VERB_MAX || !ns->verbs[verb].h) {
        ns->st.dropped_no_handler++;
        LOG_DEBUG(MOD, "dropping %s (%u): no handler", net_verb_name(verb), verb);
        return 0;
    }
    net_msg m;
    m.from = c->peer_addr;
    memcpy(m.from_host_id, c->peer_host_id, 16);
    m.verb = verb;
    m.id = id;
    m.expects_reply = (flags & FLAG_REQUEST) != 0;
    ns->verbs[verb].h(ns->verbs[verb].arg, ns, &m, payload, len);
    return 0;
}

static void inbound_cb(uv_stream_t *server, int status) {
    net_service *ns = server->data;
    if (status < 0 || ns->closing) return;
    conn *c = conn_new(ns);
    if (!c) return;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) < 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->opened_ms = uv_now(ns->loop);
}

static void sweep_cb(uv_timer_t *t) {
    net_service *ns = t->data;
    uint64_t now = uv_now(ns->loop);
    for (conn *c = ns->conns, *nx; c; c = nx) {
        nx = c->next;
        if (!c->oc && !c->handshaken && !c->closing && !c->refuse_after_write &&
            now - c->opened_ms > ns->opt.connect_timeout_ms) {
            LOG_WARN(MOD, "closing inbound connection: no handshake within %u ms", ns->opt.connect_timeout_ms);
            ns->st.bad_frames++;
            conn_close(c);
        }
    }
}

/* ---- outbound connections ----------------------------------------------------------------- */

static void outconn_connect(outconn *oc);

static void oc_timer_cb(uv_timer_t *t) {
    outconn *oc = t->data;
    if (oc->peer->ns->closing) return;
    if (oc->state == OC_BACKOFF) {
        oc->state = OC_IDLE;
        if (oc->qhead) outconn_connect(oc);
    } else if (oc->state == OC_CONNECTING && oc->conn) {
        char a[NET_ADDR_STRLEN];
        LOG_DEBUG(MOD, "connect to %s timed out", net_addr_str(&oc->peer->addr, a, sizeof a));
        conn_close(oc->conn);  /* -> outconn_failed */
    }
}

/* The connection went away: retry after a backoff if there is something to send. */
static void outconn_failed(outconn *oc) {
    net_service *ns = oc->peer->ns;
    bool was_ready = oc->state == OC_READY;
    uv_timer_stop(&oc->timer);
    if (ns->closing) {
        oc->state = OC_IDLE;
        return;
    }
    if (!was_ready) ns->st.connect_failures++;
    if (was_ready && !oc->qhead) {
        oc->state = OC_IDLE;
        return;
    }
    oc->state = OC_BACKOFF;
    uint32_t d = oc->backoff_ms;
    uv_timer_start(&oc->timer, oc_timer_cb, d, 0);
    uint64_t nb = (uint64_t)oc->backoff_ms * 2;
    oc->backoff_ms = nb > ns->opt.backoff_max_ms ? ns->opt.backoff_max_ms : (uint32_t)nb;
}

static void connect_cb(uv_connect_t *req, int status) {
    conn *c = req->data;
    net_service *ns = c->ns;
    if (c->closing || !c->oc) return;
    if (status < 0) {
        char a[NET_ADDR_STRLEN];
        LOG_DEBUG(MOD, "connect to %s failed: %s", net_addr_str(&c->oc->peer->addr, a, sizeof a),
                  uv_strerror(status));
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    outmsg *m = handshake_build(ns, HS_MAGIC, (uint8_t)c->oc->type);
    if (!m || uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) < 0) {
        free(m);
        conn_close(c);
        return;
    }
    conn_write(c, m);
}

static void outconn_connect(outconn *oc) {
    net_service *ns = oc->peer->ns;
    conn *c = conn_new(ns);
    if (!c) {
        outconn_failed(oc);
        return;
    }
    c->oc = oc;
    oc->conn = c;
    oc->state = OC_CONNECTING;
    ns->st.connects++;
    struct sockaddr_storage local, remote;
    addr_to_sockaddr(&ns->local, 0, &local);
    (void)uv_tcp_bind(&c->tcp, (struct sockaddr *)&local, 0);  /* best effort: source = listen ip */
    addr_to_sockaddr(&oc->peer->addr, oc->peer->addr.port, &remote);
    c->creq.data = c;
    int rc = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&remote, connect_cb);
    if (rc < 0) {
        conn_close(c);
        return;
    }
    uv_timer_start(&oc->timer, oc_timer_cb, ns->opt.connect_timeout_ms, 0);
}

#define BATCH_MAX 256

/* Hands everything queued to libuv, up to BATCH_MAX messages per write request. */
static void outconn_write_queue(outconn *oc) {
    net_service *ns = oc->peer->ns;
    while (oc->qhead && oc->state == OC_READY && oc->conn && !oc->conn->closing) {
        size_t n = 0;
        for (outmsg *m = oc->qhead; m && n < BATCH_MAX; m = m->next) n++;
        wreq *w = malloc(sizeof *w + n * (sizeof(outmsg *) + sizeof(uv_buf_t)));
        if (!w) return;  /* retried at the next flush */
        w->c = oc->conn;
        w->m = NULL;
        w->nbatch = n;
        w->batch = (outmsg **)(w + 1);
        uv_buf_t *bufs = (uv_buf_t *)(w->batch + n);
        size_t bytes = 0;
        for (size_t i = 0; i < n; i++) {
            outmsg *m = oc->qhead;
            oc->qhead = m->next;
            w->batch[i] = m;
            bufs[i] = uv_buf_init((char *)m->data, (unsigned)m->len);
            bytes += m->len;
        }
        if (!oc->qhead) oc->qtail = NULL;
        oc->qbytes -= bytes;
        int rc = uv_write(&w->req, (uv_stream_t *)&oc->conn->tcp, bufs, (unsigned)n, write_done);
        if (rc < 0) {
            for (size_t i = 0; i < n; i++) free(w->batch[i]);
            free(w);
            conn_close(oc->conn);
            return;
        }
        ns->st.sent_msgs += n;
        ns->st.sent_bytes += bytes;
    }
}

static void mark_dirty(outconn *oc) {
    net_service *ns = oc->peer->ns;
    if (oc->dirty) return;
    oc->dirty = true;
    oc->dirty_next = ns->dirty;
    ns->dirty = oc;
}

static void flush_all(net_service *ns) {
    while (ns->dirty) {
        outconn *oc = ns->dirty;
        ns->dirty = oc->dirty_next;
        oc->dirty = false;
        outconn_write_queue(oc);
    }
}

static void prep_cb(uv_prepare_t *h) { flush_all(h->data); }
static void chk_cb(uv_check_t *h) { flush_all(h->data); }

static void outconn_flush(outconn *oc) { mark_dirty(oc); }

/* Takes ownership of m. Messages queue until the loop's next prepare/check phase writes them
 * out together, or until the connection is ready. */
static int outconn_send(outconn *oc, outmsg *m) {
    net_service *ns = oc->peer->ns;
    /* Gossip to an unreachable peer is retried every round with fresh state: keep little. */
    size_t cap = oc->type == CT_GOSSIP && ns->opt.max_queued_bytes > (1u << 20) ? (1u << 20)
                                                                               : ns->opt.max_queued_bytes;
    size_t inflight = oc->state == OC_READY && oc->conn
                          ? uv_stream_get_write_queue_size((uv_stream_t *)&oc->conn->tcp) : 0;
    if (oc->qbytes + inflight + m->len > cap) {
        free(m);
        ns->st.dropped_queue_full++;
        return ILION_EOVERLOADED;
    }
    m->next = NULL;
    if (oc->qtail) oc->qtail->next = m; else oc->qhead = m;
    oc->qtail = m;
    oc->qbytes += m->len;
    if (oc->state == OC_IDLE) outconn_connect(oc);
    else if (oc->state == OC_READY) mark_dirty(oc);
    return 0;
}

static void peer_timer_closed(uv_handle_t *h) {
    outconn *oc = h->data;
    peer *p = oc->peer;
    net_service *ns = p->ns;
    for (outmsg *m = oc->qhead, *nx; m; m = nx) {
        nx = m->next;
        free(m);
    }
    oc->qhead = oc->qtail = NULL;
    if (--p->open_timers == 0) free(p);
    handle_closed(ns);
}

static peer *peer_get(net_service *ns, const net_addr *a, bool create) {
    for (peer *p = ns->peers; p; p = p->next)
        if (net_addr_eq(&p->addr, a)) return p;
    if (!create) return NULL;
    peer *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->ns = ns;
    p->addr = *a;
    for (int i = 0; i < 2; i++) {
        outconn *oc = &p->oc[i];
        oc->peer = p;
        oc->type = i;
        oc->state = OC_IDLE;
        oc->backoff_ms = ns->opt.backoff_initial_ms;
        uv_timer_init(ns->loop, &oc->timer);
        oc->timer.data = oc;
        ns->nhandles++;
        p->open_timers++;
    }
    p->next = ns->peers;
    ns->peers = p;
    return p;
}

/* ---- public API --------------------------------------------------------------------------- */

void net_options_default(net_options *o) {
    memset(o, 0, sizeof *o);
    o->max_message_size = NET_DEFAULT_MAX_MESSAGE;
    o->backoff_initial_ms = 100;
    o->backoff_max_ms = 10000;
    o->connect_timeout_ms = 2000;
    o->max_queued_bytes = 64u << 20;
}

static void listener_closed(uv_handle_t *h) { handle_closed(h->data); }

static void handle_closed(net_service *ns) {
    if (--ns->nhandles == 0 && ns->closing) {
        free(ns->ptab);
        free(ns->cluster_name);
        free(ns);
    }
}

int net_create(uv_loop_t *loop, const net_options *o, net_service **out) {
    if (!o->cluster_name || (o->listen.family != 4 && o->listen.family != 6) ||
        strlen(o->cluster_name) > 255)
        return ILION_EINVALID;
    static const uint8_t zero[16];
    if (memcmp(o->listen.ip, zero, o->listen.family == 6 ? 16 : 4) == 0) {
        /* Peers answer to the address we announce: it has to be one they can reach. */
        LOG_ERROR(MOD, "listen_address must be a concrete address, not 0.0.0.0 or ::");
        return ILION_EINVALID;
    }
    net_service *ns = calloc(1, sizeof *ns);
    if (!ns) return -ENOMEM;
    ns->loop = loop;
    ns->opt = *o;
    net_options d;
    net_options_default(&d);
    if (!ns->opt.max_message_size) ns->opt.max_message_size = d.max_message_size;
    if (!ns->opt.backoff_initial_ms) ns->opt.backoff_initial_ms = d.backoff_initial_ms;
    if (!ns->opt.backoff_max_ms) ns->opt.backoff_max_ms = d.backoff_max_ms;
    if (!ns->opt.connect_timeout_ms) ns->opt.connect_timeout_ms = d.connect_timeout_ms;
    if (!ns->opt.max_queued_bytes) ns->opt.max_queued_bytes = d.max_queued_bytes;
    ns->cluster_name = strdup(o->cluster_name);
    ns->opt.cluster_name = ns->cluster_name;
    ns->next_id = 1;
    ns->local = o->listen;
    if (!ns->cluster_name) {
        free(ns);
        return -ENOMEM;
    }
    uv_tcp_init(loop, &ns->listener);
    ns->listener.data = ns;
    ns->nhandles = 1;
    struct sockaddr_storage ss;
    addr_to_sockaddr(&o->listen, o->listen.port, &ss);
    int rc = uv_tcp_bind(&ns->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&ns->listener, 128, inbound_cb);
    if (rc < 0) {
        char a[NET_ADDR_STRLEN];
        LOG_ERROR(MOD, "cannot listen on %s: %s", net_addr_str(&o->listen, a, sizeof a), uv_strerror(rc));
        ns->closing = true;
        uv_close((uv_handle_t *)&ns->listener, listener_closed);
        return rc;
    }
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    if (uv_tcp_getsockname(&ns->listener, (struct sockaddr *)&bound, &blen) == 0) {
        if (bound.ss_family == AF_INET)
            ns->local.port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
        else
            ns->local.port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
    }
    uv_timer_init(loop, &ns->sweep);
    ns->sweep.data = ns;
    ns->nhandles++;
    uint64_t every = ns->opt.connect_timeout_ms / 2 ? ns->opt.connect_timeout_ms / 2 : 1;
    uv_timer_start(&ns->sweep, sweep_cb, every, every);
    uv_unref((uv_handle_t *)&ns->sweep);
    uv_prepare_init(loop, &ns->prep);
    uv_check_init(loop, &ns->chk);
    ns->prep.data = ns->chk.data = ns;
    ns->nhandles += 2;
    uv_prepare_start(&ns->prep, prep_cb);
    uv_check_start(&ns->chk, chk_cb);
    uv_unref((uv_handle_t *)&ns->prep);
    uv_unref((uv_handle_t *)&ns->chk);
    *out = ns;
    return 0;
}

void net_destroy(net_service *ns) {
    if (!ns || ns->closing) return;
    ns->closing = true;
    pending_fail_all(ns, NULL, ILION_ECLOSED);
    uv_close((uv_handle_t *)&ns->listener, listener_closed);
    uv_timer_stop(&ns->sweep);
    uv_close((uv_handle_t *)&ns->sweep, listener_closed);
    ns->dirty = NULL;
    uv_close((uv_handle_t *)&ns->prep, listener_closed);
    uv_close((uv_handle_t *)&ns->chk, listener_closed);
    for (conn *c = ns->conns; c; c = c->next) {
        if (c->oc) c->oc->conn = NULL;
        c->oc = NULL;
        if (!c->closing) {
            c->closing = true;
            uv_close((uv_handle_t *)&c->tcp, conn_closed);
        }
    }
    for (peer *p = ns->peers, *nx; p; p = nx) {
        nx = p->next;
        for (int i = 0; i < 2; i++) {
            uv_timer_stop(&p->oc[i].timer);
            uv_close((uv_handle_t *)&p->oc[i].timer, peer_timer_closed);
        }
    }
    ns->peers = NULL;
}

const net_addr *net_local_addr(const net_service *ns) { return &ns->local; }

int net_register(net_service *ns, uint8_t verb, net_handler h, void *arg) {
    if (verb == NET_VERB_NONE || verb >= NET_VERB_MAX) return ILION_EINVALID;
    ns->verbs[verb].h = h;
    ns->verbs[verb].arg = arg;
    return 0;
}

static int send_frame(net_service *ns, const net_addr *to, uint8_t verb, outmsg *m) {
    peer *p = peer_get(ns, to, true);
    if (!p) {
        free(m);
        return -ENOMEM;
    }
    return outconn_send(&p->oc[net_verb_is_gossip(verb) ? CT_GOSSIP : CT_DATA], m);
}

int net_request(net_service *ns, const net_addr *to, uint8_t verb, const void *payload, size_t len,
                uint32_t timeout_ms, net_response_cb cb, void *arg, uint64_t *id_out) {
    if (ns->closing) return ILION_ECLOSED;
    if (verb == NET_VERB_NONE || verb >= NET_VERB_MAX || (to->family != 4 && to->family != 6))
        return ILION_EINVALID;
    if (len > ns->opt.max_message_size) return ILION_ETOOBIG;
    peer *pr = peer_get(ns, to, false);
    if (pr && pr->down) return ILION_EUNAVAILABLE;
    pending *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    p->ns = ns;
    p->id = ns->next_id++;
    p->to = *to;
    p->cb = cb;
    p->arg = arg;
    outmsg *m = msg_build(verb, FLAG_REQUEST, p->id, payload, len);
    if (!m || ptab_insert(ns, p) < 0) {
        free(m);
        free(p);
        return -ENOMEM;
    }
    int rc = send_frame(ns, to, verb, m);
    if (rc < 0) {
        ptab_take(ns, p->id);
        free(p);
        return rc;
    }
    uv_timer_init(ns->loop, &p->timer);
    ns->nhandles++;
    p->timer.data = p;
    uv_timer_start(&p->timer, pending_timeout, timeout_ms, 0);
    ns->st.requests++;
    if (id_out) *id_out = p->id;
    return 0;
}

int net_send(net_service *ns, const net_addr *to, uint8_t verb, const void *payload, size_t len) {
    if (ns->closing) return ILION_ECLOSED;
    if (verb == NET_VERB_NONE || verb >= NET_VERB_MAX || (to->family != 4 && to->family != 6))
        return ILION_EINVALID;
    if (len > ns->opt.max_message_size) return ILION_ETOOBIG;
    outmsg *m = msg_build(verb, 0, ns->next_id++, payload, len);
    if (!m) return -ENOMEM;
    return send_frame(ns, to, verb, m);
}

int net_respond(net_service *ns, const net_msg *m, uint8_t verb, const void *payload, size_t len) {
    if (!m->expects_reply) return 0;
    if (ns->closing) return ILION_ECLOSED;
    if (len > ns->opt.max_message_size) return ILION_ETOOBIG;
    outmsg *o = msg_build(verb, FLAG_RESPONSE, m->id, payload, len);
    if (!o) return -ENOMEM;
    return send_frame(ns, &m->from, verb == NET_VERB_NONE ? m->verb : verb, o);
}

int net_respond_error(net_service *ns, const net_msg *m, int code) {
    if (!m->expects_reply) return 0;
    if (ns->closing) return ILION_ECLOSED;
    uint8_t p[4];
    be32_put(p, (uint32_t)(int32_t)code);
    outmsg *o = msg_build(NET_VERB_FAILURE_RSP, FLAG_RESPONSE | FLAG_ERROR, m->id, p, 4);
    if (!o) return -ENOMEM;
    return send_frame(ns, &m->from, m->verb, o);
}

int net_cancel(net_service *ns, uint64_t id) {
    pending *p = ptab_take(ns, id);
    if (!p) return ILION_ENOTFOUND;
    p->cb = NULL;
    pending_finish(p, 0, NET_VERB_NONE, NULL, 0);
    return 0;
}

void net_set_peer_down(net_service *ns, const net_addr *a, bool down) {
    if (ns->closing) return;
    peer *p = peer_get(ns, a, true);
    if (!p) return;
    bool was = p->down;
    p->down = down;
    if (down && !was) {
        pending_fail_all(ns, a, ILION_EUNAVAILABLE);
    } else if (!down && was) {
        for (int i = 0; i < 2; i++) {
            outconn *oc = &p->oc[i];
            oc->backoff_ms = ns->opt.backoff_initial_ms;
            if (oc->state == OC_BACKOFF) {
                uv_timer_stop(&oc->timer);
                oc->state = OC_IDLE;
                if (oc->qhead) outconn_connect(oc);
            }
        }
    }
}

bool net_peer_is_down(const net_service *ns, const net_addr *a) {
    peer *p = peer_get((net_service *)ns, a, false);
    return p && p->down;
}

void net_set_refused_cb(net_service *ns, net_refused_cb cb, void *arg) {
    ns->refused_cb = cb;
    ns->refused_arg = arg;
}

void net_get_stats(const net_service *ns, net_stats *out) {
    *out = ns->st;
    out->pending = (uint32_t)ns->pcount;
}

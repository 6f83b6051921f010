/* The native protocol server over libuv: see include/ilion/cql/server.h. */
#include "ilion/cql/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/cql/frame.h"
#include "ilion/cql/wire.h"
#include "ilion/util/arena.h"
#include "ilion/util/buf.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"

#define RBUF_INITIAL (64u * 1024)
#define RBUF_SHRINK_ABOVE (1024u * 1024)
/* Above this many bytes of unsent responses the connection stops reading requests until the
 * client has taken some: a client that never reads cannot make the server buffer unboundedly. */
#define WBUF_HIGH_WATER (8u * 1024 * 1024)
#define WBUF_KEEP_CAP (1024u * 1024)

typedef struct conn conn;

struct cql_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_check_t check;     /* flushes dirty connections once per loop iteration */
    uv_idle_t idle;       /* active while something is dirty: the loop must not block first */
    uv_timer_t drain_timer;
    cql_server_handler h;
    uint32_t max_frame;
    int port;
    conn *conns;          /* every open connection */
    conn *dirty;          /* connections with unsent responses */
    cql_server_stats st;
    bool stopping, draining_done;
    int handles_open;     /* listener, check, idle, timer */
    cql_server_stopped_cb stop_cb;
    void *stop_arg;
};

struct conn {
    union {
        uv_tcp_t tcp;             /* accepted clients */
        uv_pipe_t pipe;           /* cql_server_adopt_fd (tests, fuzzing) */
    } h;
    cql_server *srv;
    conn *next, *prev;            /* srv->conns */
    conn *dnext, *dprev;          /* srv->dirty */
    bool is_dirty;
    uint8_t *rbuf;
    size_t rlen, rcap;
    buf wbuf;                     /* responses waiting for the next write */
    buf wfly;                     /* the write in progress */
    uv_write_t wreq;
    bool writing;
    uint8_t version;              /* 0 until the first supported frame */
    bool ready;                   /* STARTUP done */
    bool lz4;
    bool closing;                 /* uv_close called */
    bool handle_closed;
    bool close_after_flush;
    bool reading;
    unsigned events;              /* CQLF_EVENT_* bits from REGISTER */
    uint32_t inflight;
    cql_session *session;
};

typedef struct req {
    conn *c;
    int16_t stream;
    uint8_t opcode;
    st_arena arena;               /* starts on amem: decoding a small request costs no malloc */
    uint64_t amem[48];
    uint8_t *zbody;               /* decompressed body, when the frame was compressed */
    size_t len;
    uint8_t body[];               /* the frame body as received */
} req;

static void conn_close(conn *c);
static void conn_flush(conn *c);
static void srv_maybe_stopped(cql_server *s);

/* ---- output ---- */

static void idle_cb(uv_idle_t *h) { (void)h; }

static void mark_dirty(conn *c) {
    cql_server *s = c->srv;
    if (c->is_dirty || c->closing) return;
    if (s->draining_done) {
        /* The check and idle handles are closed: write now. */
        conn_flush(c);
        return;
    }
    c->is_dirty = true;
    c->dprev = NULL;
    c->dnext = s->dirty;
    if (s->dirty) s->dirty->dprev = c;
    s->dirty = c;
    if (!uv_is_active((uv_handle_t *)&s->idle)) uv_idle_start(&s->idle, idle_cb);
}

static void unmark_dirty(conn *c) {
    if (!c->is_dirty) return;
    cql_server *s = c->srv;
    if (c->dprev) c->dprev->dnext = c->dnext;
    else s->dirty = c->dnext;
    if (c->dnext) c->dnext->dprev = c->dprev;
    c->is_dirty = false;
    c->dnext = c->dprev = NULL;
}


static void check_cb(uv_check_t *h) {
    cql_server *s = h->data;
    while (s->dirty) {
        conn *c = s->dirty;
        unmark_dirty(c);
        conn_flush(c);
    }
    uv_idle_stop(&s->idle);
}

static void conn_send(conn *c, uint8_t flags, int16_t stream, uint8_t opcode,
                      const uint8_t *body, size_t len) {
    if (c->closing) return;
    uint8_t v = c->version ? c->version : CQLF_VERSION_MAX;
    cqlf_frame_put(&c->wbuf, v, flags, stream, opcode, body, len, c->lz4);
    if (c->wbuf.oom) {
        LOG_ERROR("server", "out of memory buffering a response; closing the connection");
        conn_close(c);
        return;
    }
    mark_dirty(c);
}

static void conn_send_error(conn *c, int16_t stream, uint32_t code, const char *msg) {
    if (code == CQLF_ERR_PROTOCOL) c->srv->st.protocol_errors++;
    buf b;
    buf_init(&b);
    cqlw_error(&b, code, msg);
    if (!b.oom) conn_send(c, 0, stream, CQLF_OP_ERROR, b.data, b.len);
    buf_free(&b);
}

static void read_start(conn *c);
static void process_input(conn *c);

static void write_cb(uv_write_t *w, int status) {
    conn *c = w->data;
    c->writing = false;
    if (c->wfly.cap > WBUF_KEEP_CAP) buf_free(&c->wfly);
    else buf_reset(&c->wfly);
    if (status < 0) {
        if (status != UV_ECANCELED)
            LOG_DEBUG("server", "write failed: %s", uv_strerror(status));
        conn_close(c);
        return;
    }
    if (c->closing) return;
    if (c->wbuf.len) {
        mark_dirty(c);
    } else if (c->close_after_flush) {
        conn_close(c);
        return;
    }
    if (!c->reading && !c->close_after_flush && !c->srv->stopping &&
        c->wbuf.len < WBUF_HIGH_WATER / 2) {
        /* Frames that arrived before reading stopped are handled first. */
        process_input(c);
        if (!c->closing && !c->close_after_flush && c->wbuf.len + c->wfly.len <= WBUF_HIGH_WATER)
            read_start(c);
    }
}

static void conn_flush(conn *c) {
    if (c->closing || c->writing) return;
    if (!c->wbuf.len) {
        if (c->close_after_flush) conn_close(c);
        return;
    }
    buf t = c->wfly;
    c->wfly = c->wbuf;
    c->wbuf = t;
    uv_buf_t b = uv_buf_init((char *)c->wfly.data, (unsigned)c->wfly.len);
    c->wreq.data = c;
    int r = uv_write(&c->wreq, (uv_stream_t *)&c->h, &b, 1, write_cb);
    if (r < 0) {
        LOG_DEBUG("server", "write failed: %s", uv_strerror(r));
        conn_close(c);
        return;
    }
    c->writing = true;
}

/* ---- connection lifetime ---- */

static void conn_free(conn *c) {
    cql_server *s = c->srv;
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->st.connections_open--;
    if (c->session && s->h.session_free) s->h.session_free(s->h.ctx, c->session);
    free(c->rbuf);
    buf_free(&c->wbuf);
    buf_free(&c->wfly);
    free(c);
    srv_maybe_stopped(s);
}

static void on_conn_closed(uv_handle_t *h) {
    conn *c = h->data;
    c->handle_closed = true;
    if (c->inflight == 0) conn_free(c);
}

static void conn_close(conn *c) {
    if (c->closing) return;
    c->closing = true;
    unmark_dirty(c);
    uv_close((uv_handle_t *)&c->h, on_conn_closed);
}

/* ---- requests ---- */

static void req_free(req *r) {
    arena_free(&r->arena);
    free(r->zbody);
    free(r);
}

static void req_done(void *arg, cql_response *resp) {
    req *r = arg;
    conn *c = r->c;
    cql_server *s = c->srv;
    if (resp && !c->closing) {
        if (resp->body) {
            uint8_t *v3 = NULL;
            size_t v3len = 0;
            if (c->version == 3 && resp->opcode == CQLF_OP_RESULT)
                cqlf_result_to_v3(resp->body, resp->len, &v3, &v3len);
            if (v3) conn_send(c, 0, r->stream, resp->opcode, v3, v3len);
            else conn_send(c, 0, r->stream, resp->opcode, resp->body, resp->len);
            free(v3);
        } else {
            conn_send_error(c, r->stream, CQLF_ERR_SERVER, "Out of memory building the response");
        }
    }
    if (resp && resp->event) {
        unsigned bit = resp->event_type ? cqlf_event_type_bit(resp->event_type,
                                                              strlen(resp->event_type))
                                        : CQLF_EVENT_SCHEMA_CHANGE;
        if (bit) cql_server_broadcast_event(s, bit, resp->event, resp->event_len);
    }
    if (resp) {
        free(resp->body);
        free(resp->event);
        resp->body = resp->event = NULL;
    }
    req_free(r);
    c->inflight--;
    s->st.in_flight--;
    if (c->inflight == 0 && c->handle_closed) conn_free(c);
    else if (s->stopping) srv_maybe_stopped(s);
}

/* Hands a decoded request to the handler; the request is freed by req_done. */
static void dispatch(conn *c, req *r, const uint8_t *body, size_t len) {
    cql_server *s = c->srv;
    const char *err = NULL;
    int rc = 0;
    c->inflight++;
    s->st.in_flight++;
    switch (r->opcode) {
    case CQLF_OP_QUERY: {
        cqlf_query q;
        rc = cqlf_decode_query(body, len, c->version, &r->arena, &q, &err);
        if (rc == 0) {
            rc = s->h.query(s->h.ctx, c->session, q.query, q.len, &q.params, req_done, r);
            if (rc < 0) goto handler_failed;
            return;   /* req_done owns r now (it may have run already) */
        }
        break;
    }
    case CQLF_OP_PREPARE: {
        cqlf_prepare p;
        rc = cqlf_decode_prepare(body, len, &p, &err);
        if (rc == 0) {
            rc = s->h.prepare(s->h.ctx, c->session, p.query, p.len, req_done, r);
            if (rc < 0) goto handler_failed;
            return;   /* req_done owns r now (it may have run already) */
        }
        break;
    }
    case CQLF_OP_EXECUTE: {
        cqlf_execute e;
        rc = cqlf_decode_execute(body, len, c->version, &r->arena, &e, &err);
        if (rc == 0) {
            rc = s->h.execute(s->h.ctx, c->session, e.id, e.idlen, &e.params, req_done, r);
            if (rc < 0) goto handler_failed;
            return;   /* req_done owns r now (it may have run already) */
        }
        break;
    }
    case CQLF_OP_BATCH: {
        cql_batch b;
        rc = cqlf_decode_batch(body, len, c->version, &r->arena, &b, &err);
        if (rc == 0) {
            rc = s->h.batch(s->h.ctx, c->session, &b, req_done, r);
            if (rc < 0) goto handler_failed;
            return;   /* req_done owns r now (it may have run already) */
        }
        break;
    }
    default:
        rc = -1;
        err = "Unexpected opcode";
    }
    /* Decoding failed: the handler was not called. */
    conn_send_error(c, r->stream, rc == -2 ? CQLF_ERR_INVALID : CQLF_ERR_PROTOCOL, err);
    goto finish;
handler_failed: {
        char msg[160];
        snprintf(msg, sizeof msg, "Request failed: %s", ilion_strerror(rc));
        conn_send_error(c, r->stream, CQLF_ERR_SERVER, msg);
    }
finish:
    req_free(r);
    c->inflight--;
    s->st.in_flight--;
    if (s->stopping) srv_maybe_stopped(s);
}

/* Handles one complete frame. body points into the read buffer (valid only during the call). */
static void handle_frame(conn *c, const cqlf_header *h, const uint8_t *body) {
    cql_server *s = c->srv;
    char msg[200];
    s->st.requests++;
    if (h->response) {
        conn_send_error(c, h->stream, CQLF_ERR_PROTOCOL, "Invalid frame: the response bit is set");
        return;
    }
    if (c->version && h->version != c->version) {
        snprintf(msg, sizeof msg,
                 "Invalid message version. Got %d but previous messages on this connection had "
                 "version %d", h->version, c->version);
        conn_send_error(c, h->stream, CQLF_ERR_PROTOCOL, msg);
        return;
    }
    c->version = h->version;
    if (h->stream < 0) {
        conn_send_error(c, h->stream, CQLF_ERR_PROTOCOL, "Invalid stream id (negative)");
        return;
    }
    const uint8_t *b = body;
    size_t len = h->length;
    uint8_t *z = NULL;
    if (h->flags & CQLF_FLAG_COMPRESSED) {
        if (!c->lz4 || h->opcode == CQLF_OP_STARTUP) {
            conn_send_error(c, h->stream, CQLF_ERR_PROTOCOL,
                            "Received a compressed frame but compression was not negotiated");
            return;
        }
        size_t zlen;
        if (cqlf_lz4_decompress(body, len, s->max_frame, &z, &zlen)) {
            conn_send_error(c, h->stream, CQLF_ERR_PROTOCOL, "Invalid lz4 compressed body");
            return;
        }
        b = z;
        len = zlen;
    }
    const char *err = NULL;
    switch (h->opcode) {
    case CQLF_OP_OPTIONS: {
        buf o;
        buf_init(&o);
        cqlf_supported_body(&o);
        conn_send(c, 0, h->stream, CQLF_OP_SUPPORTED, o.data, o.len);
        buf_free(&o);
        break;
    }
    case CQLF_OP_STARTUP: {
        cqlf_startup st;
        if (c->ready) {
            conn_send_error(c, h->stream, CQLF_ERR_PROTOCOL,
                            "Unexpected message STARTUP, the connection is already initialized");
        } else if (cqlf_decode_startup(b, len, &st, &err)) {
            conn_send_error(c, h->stream, CQLF_ERR_PROTOCOL, err);
        } else {
            c->ready = true;
            conn_send(c, 0, h->stream, CQLF_OP_READY, NULL, 0);   /* never compressed */
            c->lz4 = st.compression_lz4;
        }
        break;
    }
    case CQLF_OP_REGISTER: {
        unsigned mask;
        if (!c->ready) {
            conn_send_error(c, h->stream, CQLF_ERR_PROTOCOL,
                            "Unexpected message REGISTER, expecting STARTUP or OPTIONS");
        } else if (cqlf_decode_register(b, len, &mask, &err)) {
            conn_send_error(c, h->stream, CQLF_ERR_PROTOCOL, err);
        } else {
            c->events |= mask;
            conn_send(c, 0, h->stream, CQLF_OP_READY, NULL, 0);
        }
        break;
    }
    case CQLF_OP_QUERY:
    case CQLF_OP_PREPARE:
    case CQLF_OP_EXECUTE:
    case CQLF_OP_BATCH: {
        if (!c->ready) {
            snprintf(msg, sizeof msg, "Unexpected message %s, expecting STARTUP or OPTIONS",
                     cqlf_opcode_name(h->opcode));
            conn_send_error(c, h->stream, CQLF_ERR_PROTOCOL, msg);
            break;
        }
        size_t off = 0;
        if ((h->flags & CQLF_FLAG_CUSTOM_PAYLOAD) &&
            cqlf_skip_custom_payload(b, len, &off, &err)) {
            conn_send_error(c, h->stream, CQLF_ERR_PROTOCOL, err);
            break;
        }
        /* The handler may answer later: the request keeps its own copy of the body. */
        req *r;
        if (z) {
            r = malloc(sizeof *r);
            if (r) r->zbody = z;
        } else {
            r = malloc(sizeof *r + len);
            if (r) {
                r->zbody = NULL;
                memcpy(r->body, b, len);
            }
        }
        if (!r) {
            conn_send_error(c, h->stream, CQLF_ERR_OVERLOADED, "Out of memory");
            break;
        }
        r->c = c;
        r->stream = h->stream;
        r->opcode = h->opcode;
        r->len = len;
        arena_init_buf(&r->arena, r->amem, sizeof r->amem);
        z = NULL;   /* owned by r now */
        const uint8_t *rb = r->zbody ? r->zbody : r->body;
        dispatch(c, r, rb + off, len - off);
        break;
    }
    case CQLF_OP_AUTH_RESPONSE:
        conn_send_error(c, h->stream, CQLF_ERR_PROTOCOL,
                        "Unexpected message AUTH_RESPONSE: authentication is not enabled");
        break;
    default:
        snprintf(msg, sizeof msg, "Unknown or unexpected opcode 0x%02x (%s) in a request",
                 h->opcode, cqlf_opcode_name(h->opcode));
        conn_send_error(c, h->stream, CQLF_ERR_PROTOCOL, msg);
    }
    free(z);
}

/* Parses and handles every complete frame in the read buffer; keeps the partial rest. */
static void process_input(conn *c) {
    cql_server *s = c->srv;
    size_t off = 0;
    while (!c->closing && !c->close_after_flush && c->rlen - off >= 8 &&
           c->wbuf.len + c->wfly.len <= WBUF_HIGH_WATER) {
        cqlf_header h;
        if ((c->rbuf[off] & 0x7f) < CQLF_VERSION_MIN) {
            /* v1/v2 headers are 8 bytes with a one-byte stream: answer without waiting for a
             * ninth byte that may never come. */
            uint8_t h8[CQLF_HEADER_LEN] = {0};
            memcpy(h8, c->rbuf + off, 8);
            cqlf_header_parse(h8, &h);
            h.stream = (int8_t)c->rbuf[off + 2];
        } else if (c->rlen - off < CQLF_HEADER_LEN) {
            break;
        } else {
            cqlf_header_parse(c->rbuf + off, &h);
        }
        if (h.version < CQLF_VERSION_MIN || h.version > CQLF_VERSION_MAX) {
            /* Drivers probe with a higher version and retry lower on exactly this answer.
             * Framing of other versions may differ, so the connection ends here. */
            char msg[160];
            snprintf(msg, sizeof msg, CQLF_UNSUPPORTED_VERSION_FMT, h.version);
            uint8_t v = c->version;
            c->version = CQLF_VERSION_MAX;
            conn_send_error(c, h.stream, CQLF_ERR_PROTOCOL, msg);
            c->version = v;
            c->close_after_flush = true;
            break;
        }
        if (h.length > s->max_frame) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "Request is too big: length %u exceeds maximum allowed length %u",
                     h.length, s->max_frame);
            if (!c->version) c->version = h.version;
            conn_send_error(c, h.stream, CQLF_ERR_PROTOCOL, msg);
            c->close_after_flush = true;   /* the rest of the stream is out of sync */
            break;
        }
        if (c->rlen - off < CQLF_HEADER_LEN + (size_t)h.length) break;
        handle_frame(c, &h, c->rbuf + off + CQLF_HEADER_LEN);
        off += CQLF_HEADER_LEN + h.length;
    }
    if (c->close_after_flush) {
        uv_read_stop((uv_stream_t *)&c->h);
        c->reading = false;
        c->rlen = 0;
        mark_dirty(c);
        return;
    }
    if (off) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    if (c->rcap > RBUF_SHRINK_ABOVE && c->rlen < RBUF_INITIAL) {
        uint8_t *n = realloc(c->rbuf, RBUF_INITIAL);
        if (n) {
            c->rbuf = n;
            c->rcap = RBUF_INITIAL;
        }
    }
    if (c->wbuf.len + c->wfly.len > WBUF_HIGH_WATER && c->reading) {
        uv_read_stop((uv_stream_t *)&c->h);
        c->reading = false;
    }
}

static void alloc_cb(uv_handle_t *hd, size_t suggested, uv_buf_t *out) {
    conn *c = hd->data;
    (void)suggested;
    size_t need = RBUF_INITIAL;
    if (c->rlen >= CQLF_HEADER_LEN) {
        /* Grow only to the declared frame size (already checked against the limit). */
        size_t frame = CQLF_HEADER_LEN + (size_t)be32_get(c->rbuf + 5);
        if (frame > need) need = frame;
    }
    if (need < c->rlen + 1) need = c->rlen + 1;
    if (c->rcap < need) {
        uint8_t *n = realloc(c->rbuf, need);
        if (!n) {
            out->base = NULL;
            out->len = 0;
            return;
        }
        c->rbuf = n;
        c->rcap = need;
    }
    out->base = (char *)c->rbuf + c->rlen;
    out->len = c->rcap - c->rlen;
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
    conn *c = st->data;
    (void)b;
    if (n < 0) {
        if (n != UV_EOF) LOG_DEBUG("server", "read failed: %s", uv_strerror((int)n));
        /* The client is gone or half-closed: in-flight answers have nowhere to go. */
        conn_close(c);
        return;
    }
    if (n == 0) return;
    c->rlen += (size_t)n;
    process_input(c);
}

static void read_start(conn *c) {
    if (c->reading || c->closing) return;
    if (uv_read_start((uv_stream_t *)&c->h, alloc_cb, read_cb) == 0) c->reading = true;
}

/* A new connection object, linked into the server; its handle is initialized by the caller. */
static conn *conn_new(cql_server *s) {
    conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->srv = s;
    buf_init(&c->wbuf);
    buf_init(&c->wfly);
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->st.connections_open++;
    return c;
}

/* Session, then reading: the connection is served from here on. */
static void conn_begin(conn *c) {
    cql_server *s = c->srv;
    s->st.connections_accepted++;
    c->session = s->h.session_new ? s->h.session_new(s->h.ctx) : NULL;
    if (s->h.session_new && !c->session) {
        LOG_ERROR("server", "cannot create a session for a new connection");
        conn_close(c);
        return;
    }
    read_start(c);
}

static void on_connection(uv_stream_t *ls, int status) {
    cql_server *s = ls->data;
    if (status < 0) {
        LOG_WARN("server", "accept failed: %s", uv_strerror(status));
        return;
    }
    conn *c = conn_new(s);
    if (!c) return;
    uv_tcp_init(s->loop, &c->h.tcp);
    c->h.tcp.data = c;
    if (uv_accept(ls, (uv_stream_t *)&c->h) < 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->h.tcp, 1);
    conn_begin(c);
}

int cql_server_adopt_fd(cql_server *s, int fd) {
    if (s->stopping) return ILION_ECLOSED;
    conn *c = conn_new(s);
    if (!c) return -ENOMEM;
    uv_pipe_init(s->loop, &c->h.pipe, 0);
    c->h.pipe.data = c;
    int r = uv_pipe_open(&c->h.pipe, fd);
    if (r < 0) {
        /* The handle is initialized: it is closed like any other; fd stays the caller's. */
        conn_close(c);
        return r;
    }
    conn_begin(c);
    return 0;
}

/* ---- server ---- */

void cql_server_broadcast_event(cql_server *s, unsigned type_bit, const uint8_t *body,
                                size_t len) {
    for (conn *c = s->conns; c; c = c->next)
        if (c->ready && (c->events & type_bit) && !c->closing && !c->close_after_flush)
            conn_send(c, 0, -1, CQLF_OP_EVENT, body, len);
}

static int resolve(const char *host, uint16_t port, struct sockaddr_storage *ss) {
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0) return 0;
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int r = getaddrinfo(host, NULL, &hints, &ai);
    if (r || !ai) return -EINVAL;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    if (ss->ss_family == AF_INET) ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
    freeaddrinfo(ai);
    return 0;
}

static void on_handle_closed(uv_handle_t *h) {
    cql_server *s = h->data;
    s->handles_open--;
    srv_maybe_stopped(s);
}

static void free_on_close(uv_handle_t *h) { free(h->data); }

int cql_server_start(const cql_server_options *o, cql_server **out) {
    if (!o->loop || !o->handler.query || !o->handler.prepare || !o->handler.execute ||
        !o->handler.batch)
        return ILION_EINVALID;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    int r = resolve(o->host ? o->host : "127.0.0.1", o->port, &ss);
    if (r) return r;
    cql_server *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    s->loop = o->loop;
    s->h = o->handler;
    s->max_frame = o->max_frame_size ? o->max_frame_size : CQLF_DEFAULT_MAX_FRAME;
    uv_tcp_init(s->loop, &s->listener);
    s->listener.data = s;
    r = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0);
    if (r == 0) r = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection);
    if (r < 0) {
        /* Closing needs a loop turn; the caller's loop runs it and frees s. */
        uv_close((uv_handle_t *)&s->listener, free_on_close);
        return r;
    }
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &blen);
    s->port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                          : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    uv_check_init(s->loop, &s->check);
    s->check.data = s;
    uv_check_start(&s->check, check_cb);
    uv_idle_init(s->loop, &s->idle);
    s->idle.data = s;
    uv_timer_init(s->loop, &s->drain_timer);
    s->drain_timer.data = s;
    uv_unref((uv_handle_t *)&s->check);
    uv_unref((uv_handle_t *)&s->drain_timer);
    s->handles_open = 4;
    *out = s;
    return 0;
}

int cql_server_port(const cql_server *s) { return s->port; }

void cql_server_stats_get(const cql_server *s, cql_server_stats *st) { *st = s->st; }

/* Once nothing is in flight: flush what is buffered and close every connection. */
static void close_all(cql_server *s) {
    if (s->draining_done) return;
    s->draining_done = true;
    uv_timer_stop(&s->drain_timer);
    for (conn *c = s->conns; c; c = c->next) {
        if (c->closing) continue;
        c->close_after_flush = true;
        if (!c->writing && !c->wbuf.len) conn_close(c);
        else mark_dirty(c);
    }
    uv_close((uv_handle_t *)&s->check, on_handle_closed);
    uv_close((uv_handle_t *)&s->idle, on_handle_closed);
    uv_close((uv_handle_t *)&s->drain_timer, on_handle_closed);
    /* The check handle is gone: flush the last responses directly. */
    while (s->dirty) {
        conn *c = s->dirty;
        unmark_dirty(c);
        conn_flush(c);
    }
}

static void srv_maybe_stopped(cql_server *s) {
    if (!s->stopping) return;
    if (!s->draining_done) {
        if (s->st.in_flight == 0) close_all(s);
        return;
    }
    if (s->conns || s->handles_open || s->st.in_flight) return;
    cql_server_stopped_cb cb = s->stop_cb;
    s->stop_cb = NULL;
    if (cb) cb(s->stop_arg);
}

static void drain_timeout_cb(uv_timer_t *t) {
    cql_server *s = t->data;
    LOG_WARN("server", "%u requests still in flight after the drain timeout; closing connections",
             s->st.in_flight);
    close_all(s);
}

void cql_server_stop(cql_server *s, uint32_t drain_ms, cql_server_stopped_cb cb, void *arg) {
    if (s->stopping) return;
    s->stopping = true;
    s->stop_cb = cb;
    s->stop_arg = arg;
    uv_close((uv_handle_t *)&s->listener, on_handle_closed);
    for (conn *c = s->conns; c; c = c->next) {
        if (c->reading && !c->closing) uv_read_stop((uv_stream_t *)&c->h);
        c->reading = false;
    }
    if (s->st.in_flight) {
        uv_ref((uv_handle_t *)&s->drain_timer);
        uv_timer_start(&s->drain_timer, drain_timeout_cb, drain_ms, 0);
    }
    srv_maybe_stopped(s);
}

void cql_server_free(cql_server *s) { free(s); }

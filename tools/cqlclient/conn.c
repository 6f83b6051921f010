/* One CQL connection over libuv: handshake, stream table, write coalescing, response dispatch
 * and request timeouts. Runs on the loop thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cqlclient.h"
#include "ilion/util/clock.h"
#include "ilion/util/err.h"

enum conn_state { ST_CONNECTING, ST_HANDSHAKE, ST_READY, ST_DEAD };

typedef struct slot {
    cqlc_cb cb;
    void *arg;
    uint64_t deadline_ns;
    bool used;
    bool orphan; /* timed out: the id stays taken until its late answer arrives */
} slot;

struct cqlc_conn {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_connect_t connreq;
    uv_timer_t timer;
    uv_prepare_t flusher;
    uv_write_t wreq;
    int handles_open;
    bool user_closed;
    bool writing;
    bool flush_armed;
    int state;
    char host[64];
    int port;
    bool want_lz4;
    bool lz4;
    uint64_t timeout_ns;
    uint64_t connect_deadline_ns;

    cqlc_connect_cb connect_cb;
    void *connect_arg;
    cqlc_close_cb close_cb;
    void *close_arg;
    cqlc_event_cb event_cb;
    void *event_arg;

    slot *slots;
    int nslots;
    int16_t *freelist;
    int nfree;
    int inflight;
    int orphans;       /* timed-out streams still reserved */

    uint8_t *rbuf;
    size_t rlen, rcap;
    buf out_pending, out_writing;
    buf scratch, zbuf, dbuf;
    st_arena arena;
};

static void conn_fail(cqlc_conn *c, int err);

static void maybe_free(cqlc_conn *c) {
    if (c->handles_open > 0 || !c->user_closed) return;
    if (c->close_cb) c->close_cb(c, c->close_arg);
    free(c->slots);
    free(c->freelist);
    free(c->rbuf);
    buf_free(&c->out_pending);
    buf_free(&c->out_writing);
    buf_free(&c->scratch);
    buf_free(&c->zbuf);
    buf_free(&c->dbuf);
    arena_free(&c->arena);
    free(c);
}

static void on_handle_closed(uv_handle_t *h) {
    cqlc_conn *c = h->data;
    c->handles_open--;
    maybe_free(c);
}

static int grow_slots(cqlc_conn *c) {
    int n = c->nslots ? c->nslots * 2 : 128;
    if (n > CQLC_MAX_STREAMS) n = CQLC_MAX_STREAMS;
    if (n <= c->nslots) return ILION_EOVERLOADED;
    slot *s = realloc(c->slots, sizeof(slot) * (size_t)n);
    if (!s) return -ENOMEM;
    c->slots = s;
    int16_t *f = realloc(c->freelist, sizeof(int16_t) * (size_t)n);
    if (!f) return -ENOMEM;
    c->freelist = f;
    memset(&c->slots[c->nslots], 0, sizeof(slot) * (size_t)(n - c->nslots));
    /* Push in reverse so low ids are handed out first. */
    for (int i = n - 1; i >= c->nslots; i--) c->freelist[c->nfree++] = (int16_t)i;
    c->nslots = n;
    return 0;
}

static int stream_take(cqlc_conn *c) {
    if (c->nfree == 0) {
        int rc = grow_slots(c);
        if (rc < 0) return rc;
    }
    return c->freelist[--c->nfree];
}

static void stream_put(cqlc_conn *c, int id) {
    if (c->slots[id].orphan) c->orphans--;
    c->slots[id].used = false;
    c->slots[id].orphan = false;
    c->slots[id].cb = NULL;
    c->freelist[c->nfree++] = (int16_t)id;
}

/* ---- writing ---- */

static void flush_out(cqlc_conn *c);

static void on_write(uv_write_t *req, int status) {
    cqlc_conn *c = req->data;
    c->writing = false;
    buf_reset(&c->out_writing);
    if (status < 0) {
        if (c->state != ST_DEAD) conn_fail(c, status);
        return;
    }
    if (c->out_pending.len && c->state != ST_DEAD) flush_out(c);
}

static void flush_out(cqlc_conn *c) {
    if (c->writing || c->out_pending.len == 0 || c->state == ST_DEAD) return;
    buf t = c->out_writing;
    c->out_writing = c->out_pending;
    c->out_pending = t;
    uv_buf_t b = uv_buf_init((char *)c->out_writing.data, (unsigned)c->out_writing.len);
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0) {
        buf_reset(&c->out_writing);
        conn_fail(c, rc);
        return;
    }
    c->writing = true;
}

/* Runs once per loop iteration before polling, so every request issued meanwhile (in answer
 * callbacks, timers) leaves in one write. */
static void on_prepare(uv_prepare_t *p) {
    cqlc_conn *c = p->data;
    uv_prepare_stop(&c->flusher);
    c->flush_armed = false;
    flush_out(c);
}

static int enqueue(cqlc_conn *c, int stream, uint8_t opcode, const uint8_t *body, size_t len) {
    bool compress = c->lz4 && opcode != CQLC_OP_STARTUP && opcode != CQLC_OP_OPTIONS && len > 0;
    if (len > CQLC_MAX_BODY) return ILION_ETOOBIG;
    size_t start = cqlc_frame_begin(&c->out_pending, compress ? CQLC_FLAG_COMPRESSED : 0,
                                    (int16_t)stream, opcode);
    if (compress) {
        buf_reset(&c->zbuf);
        int rc = cqlc_lz4_compress(body, len, &c->zbuf);
        if (rc < 0) {
            c->out_pending.len = start;
            return rc;
        }
        buf_put(&c->out_pending, c->zbuf.data, c->zbuf.len);
    } else {
        buf_put(&c->out_pending, body, len);
    }
    cqlc_frame_end(&c->out_pending, start);
    if (c->out_pending.oom) {
        c->out_pending.oom = false;
        c->out_pending.len = start;
        return -ENOMEM;
    }
    if (!c->flush_armed) {
        uv_prepare_start(&c->flusher, on_prepare);
        c->flush_armed = true;
    }
    return 0;
}

static int send_request(cqlc_conn *c, uint8_t opcode, const uint8_t *body, size_t len,
                        cqlc_cb cb, void *arg) {
    if (c->state == ST_DEAD || c->user_closed) return ILION_ECLOSED;
    int id = stream_take(c);
    if (id < 0) return id;
    int rc = enqueue(c, id, opcode, body, len);
    if (rc < 0) {
        c->freelist[c->nfree++] = (int16_t)id;
        return rc;
    }
    slot *s = &c->slots[id];
    s->cb = cb;
    s->arg = arg;
    s->used = true;
    s->orphan = false;
    s->deadline_ns = clock_mono_ns() + c->timeout_ns;
    c->inflight++;
    return 0;
}

/* ---- failing and closing ---- */

static void fail_pending(cqlc_conn *c, int err) {
    for (int i = 0; i < c->nslots; i++) {
        slot *s = &c->slots[i];
        if (!s->used) continue;
        cqlc_cb cb = s->cb;
        void *arg = s->arg;
        bool orphan = s->orphan;
        stream_put(c, i);
        if (!orphan) {
            c->inflight--;
            if (cb) cb(c, err, NULL, arg);
        }
    }
}

static void close_handles(cqlc_conn *c) {
    uv_handle_t *hs[] = {(uv_handle_t *)&c->tcp, (uv_handle_t *)&c->timer,
                         (uv_handle_t *)&c->flusher};
    for (size_t i = 0; i < 3; i++)
        if (!uv_is_closing(hs[i])) uv_close(hs[i], on_handle_closed);
}

static void conn_fail(cqlc_conn *c, int err) {
    if (c->state == ST_DEAD) return;
    int prev = c->state;
    c->state = ST_DEAD;
    close_handles(c);
    if (prev != ST_READY && c->connect_cb) {
        cqlc_connect_cb cb = c->connect_cb;
        c->connect_cb = NULL;
        cb(c, err, c->connect_arg);
    }
    fail_pending(c, err);
}

void cqlc_conn_close(cqlc_conn *c, cqlc_close_cb cb, void *arg) {
    if (c->user_closed) return;
    c->close_cb = cb;
    c->close_arg = arg;
    if (c->state != ST_DEAD) {
        c->connect_cb = NULL; /* the owner gave up on it: no handshake report */
        conn_fail(c, ILION_ECLOSED);
    }
    c->user_closed = true;
    maybe_free(c);
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out) {
    cqlc_conn *c = h->data;
    size_t want = 65536;
    if (c->rcap - c->rlen < want) {
        size_t ncap = c->rcap ? c->rcap : want;
        while (ncap - c->rlen < want) ncap *= 2;
        uint8_t *n = realloc(c->rbuf, ncap);
        if (!n) {
            *out = uv_buf_init(NULL, 0);
            return;
        }
        c->rbuf = n;
        c->rcap = ncap;
    }
    *out = uv_buf_init((char *)c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

static void handshake_step(cqlc_conn *c, int status, const cqlc_result *res, void *arg);

static void deliver_event(cqlc_conn *c, const cqlc_header *h, const uint8_t *body) {
    const uint8_t *p = body;
    size_t len = h->length;
    if (h->flags & CQLC_FLAG_COMPRESSED) {
        if (cqlc_lz4_decompress(body, len, CQLC_MAX_BODY, &c->dbuf) < 0) return;
        p = c->dbuf.data;
        len = c->dbuf.len;
    }
    rd r;
    rd_init(&r, p, len);
    uint16_t n;
    const uint8_t *t;
    char type[64];
    if (rd_u16(&r, &n) < 0 || rd_bytes(&r, n, &t) < 0 || n >= sizeof type) return;
    memcpy(type, t, n);
    type[n] = 0;
    c->event_cb(c, type, r.p, rd_left(&r), c->event_arg);
}

static void dispatch(cqlc_conn *c, const cqlc_header *h, const uint8_t *body) {
    if (h->stream == -1 && h->opcode == CQLC_OP_EVENT) {
        if (c->event_cb) deliver_event(c, h, body);
        return;
    }
    if (h->stream < 0 || h->stream >= c->nslots || !c->slots[h->stream].used) return;
    slot *s = &c->slots[h->stream];
    cqlc_cb cb = s->cb;
    void *arg = s->arg;
    bool orphan = s->orphan;
    stream_put(c, h->stream);
    if (orphan) return;
    c->inflight--;
    const uint8_t *p = body;
    size_t len = h->length;
    if (h->flags & CQLC_FLAG_COMPRESSED) {
        int rc = cqlc_lz4_decompress(body, len, CQLC_MAX_BODY, &c->dbuf);
        if (rc < 0) {
            if (cb) cb(c, ILION_EPROTOCOL, NULL, arg);
            return;
        }
        p = c->dbuf.data;
        len = c->dbuf.len;
    }
    cqlc_result res;
    arena_reset(&c->arena);
    int rc = cqlc_decode_response(h->opcode, h->flags, p, len, &c->arena, &res);
    if (!cb) return;
    if (rc < 0)
        cb(c, rc, NULL, arg);
    else
        cb(c, 0, &res, arg);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
    cqlc_conn *c = st->data;
    if (nread == 0) return;
    if (nread < 0) {
        conn_fail(c, nread == UV_EOF ? ILION_ECLOSED : (int)nread);
        return;
    }
    c->rlen += (size_t)nread;
    size_t off = 0;
    while (c->state != ST_DEAD && c->rlen - off >= CQLC_HEADER_LEN) {
        cqlc_header h;
        int rc = cqlc_header_decode(c->rbuf + off, CQLC_MAX_BODY, &h);
        if (rc < 0) {
            conn_fail(c, ILION_EPROTOCOL);
            return;
        }
        if (c->rlen - off - CQLC_HEADER_LEN < h.length) break;
        dispatch(c, &h, c->rbuf + off + CQLC_HEADER_LEN);
        off += CQLC_HEADER_LEN + h.length;
    }
    if (c->state == ST_DEAD) return;
    if (off) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
}

/* ---- timers ---- */

static void on_timer(uv_timer_t *t) {
    cqlc_conn *c = t->data;
    uint64_t now = clock_mono_ns();
    if (c->state == ST_CONNECTING || c->state == ST_HANDSHAKE) {
        if (now > c->connect_deadline_ns) conn_fail(c, ILION_ETIMEOUT);
        return;
    }
    if (c->state != ST_READY) return;
    for (int i = 0; i < c->nslots && c->state == ST_READY; i++) {
        slot *s = &c->slots[i];
        if (!s->used || s->orphan || s->deadline_ns > now) continue;
        cqlc_cb cb = s->cb;
        void *arg = s->arg;
        s->orphan = true;
        s->cb = NULL;
        c->inflight--;
        c->orphans++;
        if (cb) cb(c, ILION_ETIMEOUT, NULL, arg);
    }
    /* A server that stopped answering would pin every stream id: give the connection up. */
    if (c->state == ST_READY && c->orphans > CQLC_MAX_STREAMS / 2) conn_fail(c, ILION_ETIMEOUT);
}

/* ---- handshake ---- */

static int send_startup(cqlc_conn *c) {
    buf_reset(&c->scratch);
    cqlc_body_startup(&c->scratch, c->want_lz4 ? "lz4" : NULL);
    return send_request(c, CQLC_OP_STARTUP, c->scratch.data, c->scratch.len, handshake_step,
                        NULL);
}

static void handshake_step(cqlc_conn *c, int status, const cqlc_result *res, void *arg) {
    if (c->state != ST_HANDSHAKE) return;
    if (status < 0) {
        conn_fail(c, status);
        return;
    }
    if (res->kind == CQLC_KIND_SUPPORTED) {
        bool has_lz4 = false;
        for (int i = 0; i < res->nsupported; i++)
            if (strcmp(res->supported[i], "COMPRESSION=lz4") == 0) has_lz4 = true;
        if (!has_lz4) c->want_lz4 = false;
        int rc = send_startup(c);
        if (rc < 0) conn_fail(c, rc);
        return;
    }
    if (res->kind == CQLC_KIND_READY) {
        c->lz4 = c->want_lz4;
        c->state = ST_READY;
        cqlc_connect_cb cb = c->connect_cb;
        c->connect_cb = NULL;
        if (cb) cb(c, 0, c->connect_arg);
        return;
    }
    /* ERROR or AUTHENTICATE: this client has no authenticator. */
    conn_fail(c, ILION_EPROTOCOL);
}

static void on_connect(uv_connect_t *req, int status) {
    cqlc_conn *c = req->data;
    if (c->state != ST_CONNECTING) return;
    if (status < 0) {
        conn_fail(c, status);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->state = ST_HANDSHAKE;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc == 0) rc = send_request(c, CQLC_OP_OPTIONS, NULL, 0, handshake_step, NULL);
    if (rc < 0) conn_fail(c, rc);
}

int cqlc_conn_open(uv_loop_t *loop, const cqlc_conn_opts *opts, cqlc_connect_cb cb, void *arg,
                   cqlc_conn **out) {
    struct sockaddr_storage sa;
    int port = opts->port ? opts->port : 9042;
    if (uv_ip4_addr(opts->host, port, (struct sockaddr_in *)&sa) != 0 &&
        uv_ip6_addr(opts->host, port, (struct sockaddr_in6 *)&sa) != 0)
        return ILION_EINVALID;
    cqlc_conn *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    c->loop = loop;
    snprintf(c->host, sizeof c->host, "%s", opts->host);
    c->port = port;
    c->want_lz4 = opts->lz4;
    c->timeout_ns = (uint64_t)(opts->timeout_ms ? opts->timeout_ms : 12000) * 1000000u;
    c->connect_deadline_ns =
        clock_mono_ns() + (uint64_t)(opts->connect_timeout_ms ? opts->connect_timeout_ms : 5000) *
                              1000000u;
    c->connect_cb = cb;
    c->connect_arg = arg;
    c->state = ST_CONNECTING;
    buf_init(&c->out_pending);
    buf_init(&c->out_writing);
    buf_init(&c->scratch);
    buf_init(&c->zbuf);
    buf_init(&c->dbuf);
    arena_init(&c->arena);
    int rc = grow_slots(c);
    if (rc < 0) {
        free(c->slots);
        free(c->freelist);
        free(c);
        return rc;
    }
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    uv_prepare_init(loop, &c->flusher);
    c->tcp.data = c->timer.data = c->flusher.data = c;
    c->handles_open = 3;
    uv_timer_start(&c->timer, on_timer, 100, 100);
    uv_unref((uv_handle_t *)&c->timer);
    c->connreq.data = c;
    rc = uv_tcp_connect(&c->connreq, &c->tcp, (struct sockaddr *)&sa, on_connect);
    if (rc < 0) {
        /* No callback may follow a failed start: close quietly and free in the close cb. */
        c->connect_cb = NULL;
        c->state = ST_DEAD;
        c->user_closed = true;
        close_handles(c);
        return rc;
    }
    *out = c;
    return 0;
}

void cqlc_conn_on_event(cqlc_conn *c, cqlc_event_cb cb, void *arg) {
    c->event_cb = cb;
    c->event_arg = arg;
}

int cqlc_register(cqlc_conn *c, const char *const *types, size_t n, cqlc_cb cb, void *arg) {
    buf_reset(&c->scratch);
    buf_u16(&c->scratch, (uint16_t)n);
    for (size_t i = 0; i < n; i++) cqlc_put_string(&c->scratch, types[i], strlen(types[i]));
    if (c->scratch.oom) return -ENOMEM;
    return cqlc_request(c, CQLC_OP_REGISTER, c->scratch.data, c->scratch.len, cb, arg);
}

bool cqlc_conn_ready(const cqlc_conn *c) { return c->state == ST_READY; }
bool cqlc_conn_compressed(const cqlc_conn *c) { return c->lz4; }
int cqlc_conn_inflight(const cqlc_conn *c) { return c->inflight; }
const char *cqlc_conn_host(const cqlc_conn *c) { return c->host; }

int cqlc_request(cqlc_conn *c, uint8_t opcode, const uint8_t *body, size_t len, cqlc_cb cb,
                 void *arg) {
    if (c->state != ST_READY) return ILION_ECLOSED;
    return send_request(c, opcode, body, len, cb, arg);
}

int cqlc_query(cqlc_conn *c, const char *cql, const cqlc_params *p, cqlc_cb cb, void *arg) {
    buf_reset(&c->scratch);
    cqlc_body_query(&c->scratch, cql, strlen(cql), p);
    if (c->scratch.oom) return -ENOMEM;
    return cqlc_request(c, CQLC_OP_QUERY, c->scratch.data, c->scratch.len, cb, arg);
}

int cqlc_prepare(cqlc_conn *c, const char *cql, cqlc_cb cb, void *arg) {
    buf_reset(&c->scratch);
    cqlc_body_prepare(&c->scratch, cql, strlen(cql));
    if (c->scratch.oom) return -ENOMEM;
    return cqlc_request(c, CQLC_OP_PREPARE, c->scratch.data, c->scratch.len, cb, arg);
}

int cqlc_execute(cqlc_conn *c, const uint8_t *id, uint16_t idlen, const cqlc_params *p,
                 cqlc_cb cb, void *arg) {
    buf_reset(&c->scratch);
    cqlc_body_execute(&c->scratch, id, idlen, p);
    if (c->scratch.oom) return -ENOMEM;
    return cqlc_request(c, CQLC_OP_EXECUTE, c->scratch.data, c->scratch.len, cb, arg);
}

/* Native protocol frames and the server, with a test request handler (no executor). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "ilion/cql/frame.h"
#include "ilion/cql/server.h"
#include "ilion/cql/wire.h"

/* ---------------- decoders ---------------- */

static void put_query_params(buf *b, uint8_t flags, bool named) {
    buf_u16(b, 4);          /* QUORUM */
    buf_u8(b, flags);
    if (flags & 0x01) {
        buf_u16(b, 3);
        if (named) cqlw_string(b, "a");
        cqlw_bytes(b, "\x00\x00\x00\x07", 4);
        if (named) cqlw_string(b, "bb");
        cqlw_bytes(b, NULL, -1);
        if (named) cqlw_string(b, "c");
        buf_u32(b, (uint32_t)-2);
    }
    if (flags & 0x04) buf_u32(b, 100);
    if (flags & 0x08) cqlw_bytes(b, "PS", 2);
    if (flags & 0x10) buf_u16(b, 9);
    if (flags & 0x20) buf_u64(b, 1234567);
}

Test(frame, query_all_flags) {
    buf b;
    buf_init(&b);
    cqlw_long_string(&b, "SELECT 1", 8);
    put_query_params(&b, 0x7f, true);
    st_arena a;
    arena_init(&a);
    cqlf_query q;
    const char *err = NULL;
    cr_assert_eq(cqlf_decode_query(b.data, b.len, 4, &a, &q, &err), 0, "%s", err);
    cr_assert_eq(q.len, 8);
    cr_assert(memcmp(q.query, "SELECT 1", 8) == 0);
    cql_query_params *p = &q.params;
    cr_assert_eq(p->consistency, 4);
    cr_assert_eq(p->nvalues, 3);
    cr_assert_str_eq(p->values[0].name, "a");
    cr_assert_eq(p->values[0].len, 4);
    cr_assert_eq(p->values[0].data[3], 7);
    cr_assert_str_eq(p->values[1].name, "bb");
    cr_assert_eq(p->values[1].len, -1);
    cr_assert_eq(p->values[2].len, -2);
    cr_assert(p->skip_metadata);
    cr_assert_eq(p->page_size, 100);
    cr_assert_eq(p->paging_state_len, 2);
    cr_assert(memcmp(p->paging_state, "PS", 2) == 0);
    cr_assert_eq(p->serial_consistency, 9);
    cr_assert_eq(p->default_timestamp, 1234567);

    /* Every truncation fails cleanly. */
    for (size_t n = 0; n < b.len; n++) {
        st_arena a2;
        arena_init(&a2);
        cr_assert_neq(cqlf_decode_query(b.data, n, 4, &a2, &q, &err), 0, "prefix %zu", n);
        arena_free(&a2);
    }
    /* v3 has no unset values. */
    cr_assert_eq(cqlf_decode_query(b.data, b.len, 3, &a, &q, &err), -1);
    arena_free(&a);
    buf_free(&b);
}

Test(frame, query_defaults_and_bad_fields) {
    buf b;
    buf_init(&b);
    cqlw_long_string(&b, "X", 1);
    put_query_params(&b, 0, false);
    st_arena a;
    arena_init(&a);
    cqlf_query q;
    const char *err;
    cr_assert_eq(cqlf_decode_query(b.data, b.len, 4, &a, &q, &err), 0);
    cr_assert_eq(q.params.nvalues, 0);
    cr_assert_eq(q.params.page_size, -1);
    cr_assert_null(q.params.paging_state);
    cr_assert_eq(q.params.serial_consistency, 8);
    cr_assert_eq(q.params.default_timestamp, INT64_MIN);

    /* Unknown consistency: protocol error. */
    buf_reset(&b);
    cqlw_long_string(&b, "X", 1);
    buf_u16(&b, 11);
    buf_u8(&b, 0);
    cr_assert_eq(cqlf_decode_query(b.data, b.len, 4, &a, &q, &err), -1);
    /* Serial consistency ONE: invalid request. */
    buf_reset(&b);
    cqlw_long_string(&b, "X", 1);
    buf_u16(&b, 1);
    buf_u8(&b, 0x10);
    buf_u16(&b, 1);
    cr_assert_eq(cqlf_decode_query(b.data, b.len, 4, &a, &q, &err), -2);
    /* A huge value count with no bytes behind it is refused before allocating. */
    buf_reset(&b);
    cqlw_long_string(&b, "X", 1);
    buf_u16(&b, 1);
    buf_u8(&b, 0x01);
    buf_u16(&b, 65535);
    cr_assert_eq(cqlf_decode_query(b.data, b.len, 4, &a, &q, &err), -1);
    /* A negative query length. */
    buf_reset(&b);
    buf_u32(&b, 0xffffffffu);
    cr_assert_eq(cqlf_decode_query(b.data, b.len, 4, &a, &q, &err), -1);
    arena_free(&a);
    buf_free(&b);
}

Test(frame, execute_prepare_batch) {
    buf b;
    buf_init(&b);
    st_arena a;
    arena_init(&a);
    const char *err;
    cqlw_short_bytes(&b, "\x01\x02\x03", 3);
    put_query_params(&b, 0x25, false);
    cqlf_execute e;
    cr_assert_eq(cqlf_decode_execute(b.data, b.len, 4, &a, &e, &err), 0);
    cr_assert_eq(e.idlen, 3);
    cr_assert_eq(e.params.nvalues, 3);
    cr_assert_eq(e.params.page_size, 100);
    cr_assert_null(e.params.values[0].name);

    buf_reset(&b);
    cqlw_long_string(&b, "INSERT", 6);
    cqlf_prepare p;
    cr_assert_eq(cqlf_decode_prepare(b.data, b.len, &p, &err), 0);
    cr_assert_eq(p.len, 6);

    buf_reset(&b);
    buf_u8(&b, 1);                       /* unlogged */
    buf_u16(&b, 2);
    buf_u8(&b, 0);
    cqlw_long_string(&b, "INSERT a", 8);
    buf_u16(&b, 1);
    cqlw_bytes(&b, "v", 1);
    buf_u8(&b, 1);
    cqlw_short_bytes(&b, "ID", 2);
    buf_u16(&b, 0);
    buf_u16(&b, 1);                      /* ONE */
    buf_u8(&b, 0x30);
    buf_u16(&b, 8);
    buf_u64(&b, 42);
    cql_batch bt;
    cr_assert_eq(cqlf_decode_batch(b.data, b.len, 4, &a, &bt, &err), 0, "%s", err);
    cr_assert_eq(bt.type, 1);
    cr_assert_eq(bt.nentries, 2);
    cr_assert(!bt.entries[0].prepared);
    cr_assert_eq(bt.entries[0].len, 8);
    cr_assert_eq(bt.entries[0].nvalues, 1);
    cr_assert(bt.entries[1].prepared);
    cr_assert_eq(bt.entries[1].len, 2);
    cr_assert_eq(bt.consistency, 1);
    cr_assert_eq(bt.serial_consistency, 8);
    cr_assert_eq(bt.default_timestamp, 42);
    for (size_t n = 0; n < b.len; n++)
        cr_assert_neq(cqlf_decode_batch(b.data, n, 4, &a, &bt, &err), 0, "prefix %zu", n);
    b.data[b.len - 11] = 0x70;           /* named values flag */
    cr_assert_eq(cqlf_decode_batch(b.data, b.len, 4, &a, &bt, &err), -1);
    b.data[0] = 3;                       /* unknown type */
    cr_assert_eq(cqlf_decode_batch(b.data, b.len, 4, &a, &bt, &err), -1);
    arena_free(&a);
    buf_free(&b);
}

static void startup_body(buf *b, const char *cqlv, const char *comp) {
    buf_u16(b, (uint16_t)(1 + (comp != NULL) + (cqlv != NULL)));
    cqlw_string(b, "DRIVER_NAME");
    cqlw_string(b, "test");
    if (cqlv) {
        cqlw_string(b, "CQL_VERSION");
        cqlw_string(b, cqlv);
    }
    if (comp) {
        cqlw_string(b, "COMPRESSION");
        cqlw_string(b, comp);
    }
}

Test(frame, startup_register) {
    buf b;
    buf_init(&b);
    cqlf_startup st;
    const char *err;
    startup_body(&b, "3.0.0", "lz4");
    cr_assert_eq(cqlf_decode_startup(b.data, b.len, &st, &err), 0);
    cr_assert(st.compression_lz4);
    buf_reset(&b);
    startup_body(&b, "3.4.5", NULL);
    cr_assert_eq(cqlf_decode_startup(b.data, b.len, &st, &err), 0);
    cr_assert(!st.compression_lz4);
    buf_reset(&b);
    startup_body(&b, NULL, NULL);
    cr_assert_eq(cqlf_decode_startup(b.data, b.len, &st, &err), -1);
    cr_assert(strstr(err, "CQL_VERSION"));
    buf_reset(&b);
    startup_body(&b, "3.0.0", "snappy");
    cr_assert_eq(cqlf_decode_startup(b.data, b.len, &st, &err), -1);
    buf_reset(&b);
    startup_body(&b, "2.0.0", NULL);
    cr_assert_eq(cqlf_decode_startup(b.data, b.len, &st, &err), -1);

    static const char *const ev[] = {"SCHEMA_CHANGE", "STATUS_CHANGE"};
    buf_reset(&b);
    cqlw_string_list(&b, ev, 2);
    unsigned mask;
    cr_assert_eq(cqlf_decode_register(b.data, b.len, &mask, &err), 0);
    cr_assert_eq(mask, CQLF_EVENT_SCHEMA_CHANGE | CQLF_EVENT_STATUS_CHANGE);
    static const char *const bad[] = {"NOPE"};
    buf_reset(&b);
    cqlw_string_list(&b, bad, 1);
    cr_assert_eq(cqlf_decode_register(b.data, b.len, &mask, &err), -1);
    buf_free(&b);
}

Test(frame, lz4_roundtrip_and_garbage) {
    uint8_t src[5000];
    for (size_t i = 0; i < sizeof src; i++) src[i] = (uint8_t)(i % 13);
    buf b;
    buf_init(&b);
    cr_assert_eq(cqlf_lz4_compress(&b, src, sizeof src), 0);
    cr_assert_lt(b.len, sizeof src);
    uint8_t *out;
    size_t n;
    cr_assert_eq(cqlf_lz4_decompress(b.data, b.len, 1 << 20, &out, &n), 0);
    cr_assert_eq(n, sizeof src);
    cr_assert(memcmp(out, src, n) == 0);
    free(out);
    /* Declared length over the limit. */
    cr_assert_eq(cqlf_lz4_decompress(b.data, b.len, 100, &out, &n), -1);
    /* Length lies. */
    be32_put(b.data, 4999);
    cr_assert_eq(cqlf_lz4_decompress(b.data, b.len, 1 << 20, &out, &n), -1);
    be32_put(b.data, 5000);
    /* Random garbage never crashes. */
    srand(7);
    for (int i = 0; i < 2000; i++) {
        size_t len = (size_t)(rand() % 64);
        uint8_t g[64];
        for (size_t j = 0; j < len; j++) g[j] = (uint8_t)rand();
        if (cqlf_lz4_decompress(g, len, 1 << 16, &out, &n) == 0) free(out);
    }
    buf_free(&b);
}

Test(frame, frame_put_compresses_when_useful) {
    uint8_t body[1000];
    memset(body, 'a', sizeof body);
    buf b;
    buf_init(&b);
    cqlf_frame_put(&b, 4, 0, 7, CQLF_OP_RESULT, body, sizeof body, true);
    cqlf_header h;
    cqlf_header_parse(b.data, &h);
    cr_assert(h.response);
    cr_assert_eq(h.version, 4);
    cr_assert_eq(h.stream, 7);
    cr_assert(h.flags & CQLF_FLAG_COMPRESSED);
    cr_assert_eq(h.length, b.len - CQLF_HEADER_LEN);
    uint8_t *out;
    size_t n;
    cr_assert_eq(cqlf_lz4_decompress(b.data + 9, h.length, 1 << 20, &out, &n), 0);
    cr_assert_eq(n, sizeof body);
    free(out);
    buf_reset(&b);
    cqlf_frame_put(&b, 4, 0, -1, CQLF_OP_EVENT, body, 10, true);   /* small: plain */
    cqlf_header_parse(b.data, &h);
    cr_assert_eq(h.flags, 0);
    cr_assert_eq(h.stream, -1);
    cr_assert_eq(h.length, 10);
    buf_free(&b);
}

Test(frame, result_to_v3) {
    buf b;
    buf_init(&b);
    buf_u32(&b, 4);
    cqlw_short_bytes(&b, "ID", 2);
    buf_u32(&b, 1);      /* flags: global spec */
    buf_u32(&b, 2);      /* columns */
    buf_u32(&b, 1);      /* pk count */
    buf_u16(&b, 0);      /* pk index */
    cqlw_string(&b, "ks");
    size_t tail = b.len;
    uint8_t *out;
    size_t n;
    cr_assert_eq(cqlf_result_to_v3(b.data, b.len, &out, &n), 0);
    cr_assert_not_null(out);
    cr_assert_eq(n, b.len - 6);
    cr_assert(memcmp(out + 4 + 4 + 4 + 4, b.data + tail - 4, 4) == 0);
    free(out);
    buf_reset(&b);
    buf_u32(&b, 1);      /* Void: unchanged */
    cr_assert_eq(cqlf_result_to_v3(b.data, b.len, &out, &n), 0);
    cr_assert_null(out);
    buf_free(&b);
}

/* ---------------- the server over a socket, with a test handler ---------------- */

typedef struct tsrv_sess { int n; } tsrv_sess;

static uv_loop_t tsrv_loop;
static cql_server *tsrv;
static uv_async_t tsrv_async;
static pthread_t tsrv_thread;
static volatile int tsrv_stop_requested;
static int tsrv_sessions;

typedef struct tsrv_later {
    uv_timer_t t;
    cql_done_cb cb;
    void *arg;
    int n;
} tsrv_later;

static void tsrv_void(cql_done_cb cb, void *arg, uint8_t *event, size_t event_len) {
    cql_response r;
    memset(&r, 0, sizeof r);
    buf b;
    buf_init(&b);
    buf_u32(&b, 1);
    r.opcode = CQLF_OP_RESULT;
    r.body = buf_steal(&b, &r.len);
    r.event = event;
    r.event_len = event_len;
    r.event_type = event ? "SCHEMA_CHANGE" : NULL;
    cb(arg, &r);
}

static void tsrv_later_closed(uv_handle_t *h) { free(h->data); }

static void tsrv_later_fire(uv_timer_t *t) {
    tsrv_later *l = t->data;
    /* Answer with the delay, so the client can match answers to requests. */
    cql_response r;
    memset(&r, 0, sizeof r);
    buf b;
    buf_init(&b);
    buf_u32(&b, 1);
    buf_u32(&b, (uint32_t)l->n);
    r.opcode = CQLF_OP_RESULT;
    r.body = buf_steal(&b, &r.len);
    l->cb(l->arg, &r);
    uv_close((uv_handle_t *)t, tsrv_later_closed);
}

static cql_session *tsrv_session_new(void *ctx) {
    tsrv_sessions++;
    return (cql_session *)calloc(1, sizeof(tsrv_sess));
}

static void tsrv_session_free(void *ctx, cql_session *s) {
    tsrv_sessions--;
    free(s);
}

static int tsrv_query(void *ctx, cql_session *s, const char *q, size_t len,
                      const cql_query_params *p, cql_done_cb cb, void *arg) {
    char text[64];
    if (len >= sizeof text) len = sizeof text - 1;
    memcpy(text, q, len);
    text[len] = 0;
    if (strcmp(text, "FAIL") == 0) return -5;
    if (strncmp(text, "LATER ", 6) == 0) {
        tsrv_later *l = calloc(1, sizeof *l);
        l->cb = cb;
        l->arg = arg;
        l->n = atoi(text + 6);
        uv_timer_init(&tsrv_loop, &l->t);
        l->t.data = l;
        uv_timer_start(&l->t, tsrv_later_fire, (uint64_t)l->n, 0);
        return 0;
    }
    if (strcmp(text, "SCHEMA") == 0) {
        buf e;
        buf_init(&e);
        cqlw_string(&e, "SCHEMA_CHANGE");
        cqlw_string(&e, "CREATED");
        cqlw_string(&e, "KEYSPACE");
        cqlw_string(&e, "ks");
        size_t n;
        uint8_t *ev = buf_steal(&e, &n);
        tsrv_void(cb, arg, ev, n);
        return 0;
    }
    if (strcmp(text, "STATUS") == 0) {
        buf e;
        buf_init(&e);
        uint8_t addr[4] = {127, 0, 0, 2};
        cqlf_event_status_body(&e, "UP", addr, 4, 9042);
        cql_server_broadcast_event(tsrv, CQLF_EVENT_STATUS_CHANGE, e.data, e.len);
        buf_free(&e);
        tsrv_void(cb, arg, NULL, 0);
        return 0;
    }
    if (strncmp(text, "BIG ", 4) == 0) {
        int n = atoi(text + 4);
        cql_response r;
        memset(&r, 0, sizeof r);
        buf b;
        buf_init(&b);
        buf_u32(&b, 1);
        for (int i = 0; i < n; i++) buf_u8(&b, (uint8_t)('a' + i % 3));
        r.opcode = CQLF_OP_RESULT;
        r.body = buf_steal(&b, &r.len);
        cb(arg, &r);
        return 0;
    }
    /* Anything else: Void, with the value count as a check of the decoding. */
    cql_response r;
    memset(&r, 0, sizeof r);
    buf b;
    buf_init(&b);
    buf_u32(&b, 1);
    buf_u32(&b, p->nvalues);
    r.opcode = CQLF_OP_RESULT;
    r.body = buf_steal(&b, &r.len);
    cb(arg, &r);
    return 0;
}

static int tsrv_prepare(void *ctx, cql_session *s, const char *q, size_t len, cql_done_cb cb,
                        void *arg) {
    cql_response r;
    memset(&r, 0, sizeof r);
    buf b;
    buf_init(&b);
    buf_u32(&b, 4);
    cqlw_short_bytes(&b, "ID", 2);
    buf_u32(&b, 1);
    buf_u32(&b, 1);
    buf_u32(&b, 1);
    buf_u16(&b, 0);
    cqlw_string(&b, "ks");
    cqlw_string(&b, "t");
    cqlw_string(&b, "k");
    buf_u16(&b, 9);
    buf_u32(&b, 4);      /* result metadata: no metadata flag */
    buf_u32(&b, 0);
    r.opcode = CQLF_OP_RESULT;
    r.body = buf_steal(&b, &r.len);
    cb(arg, &r);
    return 0;
}

static int tsrv_execute(void *ctx, cql_session *s, const uint8_t *id, size_t idlen,
                        const cql_query_params *p, cql_done_cb cb, void *arg) {
    cql_response r;
    memset(&r, 0, sizeof r);
    if (idlen == 2 && memcmp(id, "ID", 2) == 0) {
        buf b;
        buf_init(&b);
        buf_u32(&b, 1);
        r.opcode = CQLF_OP_RESULT;
        r.body = buf_steal(&b, &r.len);
    } else {
        r.opcode = CQLF_OP_ERROR;
        r.body = cql_error_body(0x2500, "Unprepared", &r.len);
    }
    cb(arg, &r);
    return 0;
}

static int tsrv_batch(void *ctx, cql_session *s, const cql_batch *bt, cql_done_cb cb,
                      void *arg) {
    cql_response r;
    memset(&r, 0, sizeof r);
    buf b;
    buf_init(&b);
    buf_u32(&b, 1);
    buf_u32(&b, bt->nentries);
    r.opcode = CQLF_OP_RESULT;
    r.body = buf_steal(&b, &r.len);
    cb(arg, &r);
    return 0;
}

static void tsrv_stopped(void *arg) {
    uv_close((uv_handle_t *)&tsrv_async, NULL);
}

static volatile int tsrv_adopt_fd = -1;
static volatile int tsrv_adopt_rc = 1;

static void tsrv_async_cb(uv_async_t *a) {
    if (tsrv_adopt_fd >= 0) {
        tsrv_adopt_rc = cql_server_adopt_fd(tsrv, tsrv_adopt_fd);
        tsrv_adopt_fd = -1;
    }
    if (tsrv_stop_requested) cql_server_stop(tsrv, 2000, tsrv_stopped, NULL);
}

static void *tsrv_run(void *arg) {
    uv_run(&tsrv_loop, UV_RUN_DEFAULT);
    return NULL;
}

static int tsrv_port;

static void tsrv_setup_with(uint32_t max_frame) {
    uv_loop_init(&tsrv_loop);
    cql_server_options o;
    memset(&o, 0, sizeof o);
    o.loop = &tsrv_loop;
    o.host = "127.0.0.1";
    o.port = 0;
    o.max_frame_size = max_frame;
    o.handler.session_new = tsrv_session_new;
    o.handler.session_free = tsrv_session_free;
    o.handler.query = tsrv_query;
    o.handler.prepare = tsrv_prepare;
    o.handler.execute = tsrv_execute;
    o.handler.batch = tsrv_batch;
    cr_assert_eq(cql_server_start(&o, &tsrv), 0);
    tsrv_port = cql_server_port(tsrv);
    cr_assert_gt(tsrv_port, 0);
    uv_async_init(&tsrv_loop, &tsrv_async, tsrv_async_cb);
    tsrv_stop_requested = 0;
    pthread_create(&tsrv_thread, NULL, tsrv_run, NULL);
}

static void tsrv_setup(void) { tsrv_setup_with(1024 * 1024); }

static void tsrv_teardown(void) {
    tsrv_stop_requested = 1;
    uv_async_send(&tsrv_async);
    pthread_join(tsrv_thread, NULL);
    cql_server_free(tsrv);
    cr_assert_eq(uv_loop_close(&tsrv_loop), 0);
    cr_assert_eq(tsrv_sessions, 0);
}

static int cl_connect(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)tsrv_port);
    sa.sin_addr.s_addr = htonl(0x7f000001);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void cl_send(int fd, uint8_t version, uint8_t flags, int16_t stream, uint8_t op,
                    const void *body, size_t len) {
    uint8_t h[9];
    h[0] = version;
    h[1] = flags;
    be16_put(h + 2, (uint16_t)stream);
    h[4] = op;
    be32_put(h + 5, (uint32_t)len);
    cr_assert_eq(write(fd, h, 9), 9);
    if (len) cr_assert_eq(write(fd, body, len), (ssize_t)len);
}

static int read_full(int fd, void *p, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (uint8_t *)p + got, n - got);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

/* Reads one frame; the body (malloc'd, decompressed when flagged) in *body. -1 on EOF. */
static int cl_recv(int fd, cqlf_header *h, uint8_t **body, size_t *len) {
    uint8_t hb[9];
    if (read_full(fd, hb, 9)) return -1;
    cqlf_header_parse(hb, h);
    uint8_t *b = malloc(h->length + 1);
    cr_assert_eq(read_full(fd, b, h->length), 0);
    *len = h->length;
    if (h->flags & CQLF_FLAG_COMPRESSED) {
        uint8_t *z;
        size_t zn;
        cr_assert_eq(cqlf_lz4_decompress(b, h->length, 1 << 24, &z, &zn), 0);
        free(b);
        b = z;
        *len = zn;
    }
    *body = b;
    return 0;
}

static void cl_startup(int fd, uint8_t version, const char *comp) {
    buf b;
    buf_init(&b);
    startup_body(&b, "3.0.0", comp);
    cl_send(fd, version, 0, 0, CQLF_OP_STARTUP, b.data, b.len);
    buf_free(&b);
    cqlf_header h;
    uint8_t *body;
    size_t n;
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(h.opcode, CQLF_OP_READY);
    cr_assert_eq(h.flags & CQLF_FLAG_COMPRESSED, 0);
    cr_assert_eq(h.version, version);
    free(body);
}

static void cl_query(int fd, int16_t stream, const char *q, uint8_t flags) {
    buf b;
    buf_init(&b);
    cqlw_long_string(&b, q, strlen(q));
    buf_u16(&b, 1);
    buf_u8(&b, 0);
    if (flags & CQLF_FLAG_COMPRESSED) {
        buf z;
        buf_init(&z);
        cqlf_lz4_compress(&z, b.data, b.len);
        cl_send(fd, 4, flags, stream, CQLF_OP_QUERY, z.data, z.len);
        buf_free(&z);
    } else {
        cl_send(fd, 4, flags, stream, CQLF_OP_QUERY, b.data, b.len);
    }
    buf_free(&b);
}

static uint32_t error_code(const uint8_t *body, size_t n) {
    cr_assert_geq(n, 4);
    return be32_get(body);
}

TestSuite(server, .init = tsrv_setup, .fini = tsrv_teardown, .timeout = 30);

Test(server, options_supported) {
    int fd = cl_connect();
    cl_send(fd, 4, 0, 3, CQLF_OP_OPTIONS, NULL, 0);
    cqlf_header h;
    uint8_t *body;
    size_t n;
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(h.opcode, CQLF_OP_SUPPORTED);
    cr_assert_eq(h.stream, 3);
    cr_assert(h.response);
    cr_assert(memmem(body, n, "CQL_VERSION", 11));
    cr_assert(memmem(body, n, "3.4.5", 5));
    cr_assert(memmem(body, n, "COMPRESSION", 11));
    cr_assert(memmem(body, n, "lz4", 3));
    cr_assert(memmem(body, n, "4/v4", 4));
    free(body);
    close(fd);
}

Test(server, unsupported_version_answered_then_closed) {
    int fd = cl_connect();
    cl_send(fd, 0x42, 0, 5, CQLF_OP_OPTIONS, NULL, 0);
    cqlf_header h;
    uint8_t *body;
    size_t n;
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(h.version, 4);
    cr_assert(h.response);
    cr_assert_eq(h.stream, 5);
    cr_assert_eq(h.opcode, CQLF_OP_ERROR);
    cr_assert_eq(error_code(body, n), 0x000A);
    const char *want =
        "Invalid or unsupported protocol version (66); supported versions are (3/v3, 4/v4)";
    cr_assert_eq(be16_get(body + 4), strlen(want));
    cr_assert(memcmp(body + 6, want, strlen(want)) == 0);
    free(body);
    cr_assert_eq(cl_recv(fd, &h, &body, &n), -1, "connection should be closed");
    close(fd);
}

Test(server, handshake_query_and_errors) {
    int fd = cl_connect();
    cqlf_header h;
    uint8_t *body;
    size_t n;
    /* QUERY before STARTUP. */
    cl_query(fd, 1, "X", 0);
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(h.opcode, CQLF_OP_ERROR);
    cr_assert_eq(h.stream, 1);
    cr_assert_eq(error_code(body, n), 0x000A);
    free(body);
    cl_startup(fd, 4, NULL);
    cl_query(fd, 2, "X", 0);
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(h.opcode, CQLF_OP_RESULT);
    cr_assert_eq(h.stream, 2);
    free(body);
    /* Malformed QUERY body: protocol error, the connection goes on. */
    cl_send(fd, 4, 0, 3, CQLF_OP_QUERY, "\x00\x00\x00\x09XY", 6);
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(h.stream, 3);
    cr_assert_eq(error_code(body, n), 0x000A);
    free(body);
    /* Unknown opcode. */
    cl_send(fd, 4, 0, 4, 0x33, "abc", 3);
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(h.stream, 4);
    cr_assert_eq(error_code(body, n), 0x000A);
    free(body);
    /* Bad serial consistency: invalid. */
    buf b;
    buf_init(&b);
    cqlw_long_string(&b, "X", 1);
    buf_u16(&b, 1);
    buf_u8(&b, 0x10);
    buf_u16(&b, 1);
    cl_send(fd, 4, 0, 5, CQLF_OP_QUERY, b.data, b.len);
    buf_free(&b);
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(error_code(body, n), 0x2200);
    free(body);
    /* Handler failure: server error. */
    cl_query(fd, 6, "FAIL", 0);
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(h.stream, 6);
    cr_assert_eq(error_code(body, n), 0x0000);
    free(body);
    /* Version change mid-connection. */
    cl_send(fd, 3, 0, 7, CQLF_OP_OPTIONS, NULL, 0);
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(error_code(body, n), 0x000A);
    free(body);
    /* Still alive. */
    cl_query(fd, 8, "X", 0);
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(h.opcode, CQLF_OP_RESULT);
    cr_assert_eq(h.stream, 8);
    free(body);
    close(fd);
}

Test(server, many_streams_out_of_order) {
    int fd = cl_connect();
    cl_startup(fd, 4, NULL);
    /* Stream s waits (40 - s) ms: answers come back in reverse order, each on its stream. */
    enum { N = 40 };
    for (int s = 1; s <= N; s++) {
        char q[32];
        snprintf(q, sizeof q, "LATER %d", (N - s) * 2);
        cl_query(fd, (int16_t)s, q, 0);
    }
    bool seen[N + 1] = {0};
    for (int i = 0; i < N; i++) {
        cqlf_header h;
        uint8_t *body;
        size_t n;
        cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
        cr_assert_eq(h.opcode, CQLF_OP_RESULT);
        cr_assert(h.stream >= 1 && h.stream <= N);
        cr_assert(!seen[h.stream]);
        seen[h.stream] = true;
        cr_assert_eq(n, 8);
        cr_assert_eq((int)be32_get(body + 4), (N - h.stream) * 2);
        free(body);
    }
    close(fd);
}

Test(server, pipelined_burst_in_one_write) {
    int fd = cl_connect();
    cl_startup(fd, 4, NULL);
    buf all;
    buf_init(&all);
    for (int s = 0; s < 500; s++) {
        buf b;
        buf_init(&b);
        cqlw_long_string(&b, "X", 1);
        buf_u16(&b, 1);
        buf_u8(&b, 1);
        buf_u16(&b, 2);
        cqlw_bytes(&b, "ab", 2);
        cqlw_bytes(&b, NULL, -1);
        uint8_t h[9] = {4, 0, 0, 0, CQLF_OP_QUERY};
        be16_put(h + 2, (uint16_t)s);
        be32_put(h + 5, (uint32_t)b.len);
        buf_put(&all, h, 9);
        buf_put(&all, b.data, b.len);
        buf_free(&b);
    }
    cr_assert_eq(write(fd, all.data, all.len), (ssize_t)all.len);
    buf_free(&all);
    for (int s = 0; s < 500; s++) {
        cqlf_header h;
        uint8_t *body;
        size_t n;
        cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
        cr_assert_eq(h.stream, s);
        cr_assert_eq(be32_get(body + 4), 2);
        free(body);
    }
    close(fd);
}

Test(server, lz4_connection) {
    int fd = cl_connect();
    cl_startup(fd, 4, "lz4");
    cqlf_header h;
    uint8_t *body;
    size_t n;
    cl_query(fd, 1, "BIG 10000", CQLF_FLAG_COMPRESSED);
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert(h.flags & CQLF_FLAG_COMPRESSED);
    cr_assert_lt(h.length, 2000);
    cr_assert_eq(n, 10004);
    cr_assert_eq(body[4 + 9999], 'a');
    free(body);
    /* Corrupt compressed body: protocol error, connection continues. */
    cl_send(fd, 4, CQLF_FLAG_COMPRESSED, 2, CQLF_OP_QUERY, "\x00\x00\x10\x00\xff\xff", 6);
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(h.stream, 2);
    cr_assert_eq(error_code(body, n), 0x000A);
    free(body);
    cl_query(fd, 3, "X", 0);    /* uncompressed requests are still fine */
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(h.opcode, CQLF_OP_RESULT);
    free(body);
    close(fd);
}

Test(server, compressed_without_negotiation) {
    int fd = cl_connect();
    cl_startup(fd, 4, NULL);
    cl_query(fd, 1, "X", CQLF_FLAG_COMPRESSED);
    cqlf_header h;
    uint8_t *body;
    size_t n;
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(error_code(body, n), 0x000A);
    free(body);
    close(fd);
}

Test(server, oversized_frame_refused_before_body) {
    int fd = cl_connect();
    cl_startup(fd, 4, NULL);
    uint8_t hb[9] = {4, 0, 0, 9, CQLF_OP_QUERY};
    be32_put(hb + 5, 2u * 1024 * 1024);   /* limit in this suite: 1 MiB; body never sent */
    cr_assert_eq(write(fd, hb, 9), 9);
    cqlf_header h;
    uint8_t *body;
    size_t n;
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(h.stream, 9);
    cr_assert_eq(error_code(body, n), 0x000A);
    cr_assert(memmem(body, n, "too big", 7));
    free(body);
    cr_assert_eq(cl_recv(fd, &h, &body, &n), -1);
    close(fd);
}

Test(server, large_frame_under_limit) {
    int fd = cl_connect();
    cl_startup(fd, 4, NULL);
    size_t qlen = 900 * 1024;
    char *q = malloc(qlen + 1);
    memset(q, ' ', qlen);
    memcpy(q, "X", 1);
    q[qlen] = 0;
    cl_query(fd, 1, q, 0);
    free(q);
    cqlf_header h;
    uint8_t *body;
    size_t n;
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(h.opcode, CQLF_OP_RESULT);
    free(body);
    close(fd);
}

Test(server, events_schema_and_status) {
    int a = cl_connect(), b = cl_connect();
    cl_startup(a, 4, NULL);
    cl_startup(b, 4, NULL);
    static const char *const ev[] = {"SCHEMA_CHANGE", "STATUS_CHANGE"};
    buf r;
    buf_init(&r);
    cqlw_string_list(&r, ev, 2);
    cl_send(a, 4, 0, 1, CQLF_OP_REGISTER, r.data, r.len);
    buf_free(&r);
    cqlf_header h;
    uint8_t *body;
    size_t n;
    cr_assert_eq(cl_recv(a, &h, &body, &n), 0);
    cr_assert_eq(h.opcode, CQLF_OP_READY);
    free(body);
    cl_query(b, 1, "SCHEMA", 0);
    cr_assert_eq(cl_recv(b, &h, &body, &n), 0);
    cr_assert_eq(h.opcode, CQLF_OP_RESULT);
    free(body);
    cr_assert_eq(cl_recv(a, &h, &body, &n), 0);
    cr_assert_eq(h.opcode, CQLF_OP_EVENT);
    cr_assert_eq(h.stream, -1);
    cr_assert(memmem(body, n, "SCHEMA_CHANGE", 13));
    free(body);
    cl_query(b, 2, "STATUS", 0);
    cr_assert_eq(cl_recv(b, &h, &body, &n), 0);
    cr_assert_eq(h.opcode, CQLF_OP_RESULT);   /* b did not register: no event before it */
    free(body);
    cr_assert_eq(cl_recv(a, &h, &body, &n), 0);
    cr_assert_eq(h.opcode, CQLF_OP_EVENT);
    cr_assert(memmem(body, n, "STATUS_CHANGE", 13));
    free(body);
    close(a);
    close(b);
}

Test(server, v3_prepare_execute_batch) {
    int fd = cl_connect();
    cl_startup(fd, 3, NULL);
    buf b;
    buf_init(&b);
    cqlw_long_string(&b, "INSERT", 6);
    cl_send(fd, 3, 0, 1, CQLF_OP_PREPARE, b.data, b.len);
    cqlf_header h;
    uint8_t *body;
    size_t n;
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(h.version, 3);
    cr_assert_eq(h.opcode, CQLF_OP_RESULT);
    /* v3 prepared: kind, id, flags, columns, then straight to the table spec. */
    cr_assert_eq(be32_get(body), 4);
    cr_assert_eq(be32_get(body + 4 + 4 + 4), 1);
    cr_assert_eq(be16_get(body + 16), 2);
    cr_assert(memcmp(body + 18, "ks", 2) == 0);
    free(body);
    buf_reset(&b);
    cqlw_short_bytes(&b, "ID", 2);
    buf_u16(&b, 1);
    buf_u8(&b, 0);
    cl_send(fd, 3, 0, 2, CQLF_OP_EXECUTE, b.data, b.len);
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(be32_get(body), 1);
    free(body);
    buf_reset(&b);
    cqlw_short_bytes(&b, "NO", 2);
    buf_u16(&b, 1);
    buf_u8(&b, 0);
    cl_send(fd, 3, 0, 3, CQLF_OP_EXECUTE, b.data, b.len);
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(error_code(body, n), 0x2500);
    free(body);
    buf_reset(&b);
    buf_u8(&b, 0);
    buf_u16(&b, 1);
    buf_u8(&b, 0);
    cqlw_long_string(&b, "INSERT", 6);
    buf_u16(&b, 0);
    buf_u16(&b, 1);
    buf_u8(&b, 0);
    cl_send(fd, 3, 0, 4, CQLF_OP_BATCH, b.data, b.len);
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(be32_get(body + 4), 1);
    free(body);
    buf_free(&b);
    close(fd);
}

Test(server, custom_payload_skipped) {
    int fd = cl_connect();
    cl_startup(fd, 4, NULL);
    buf b;
    buf_init(&b);
    buf_u16(&b, 1);
    cqlw_string(&b, "k");
    cqlw_bytes(&b, "v", 1);
    cqlw_long_string(&b, "X", 1);
    buf_u16(&b, 1);
    buf_u8(&b, 0);
    cl_send(fd, 4, CQLF_FLAG_CUSTOM_PAYLOAD, 1, CQLF_OP_QUERY, b.data, b.len);
    buf_free(&b);
    cqlf_header h;
    uint8_t *body;
    size_t n;
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(h.opcode, CQLF_OP_RESULT);
    free(body);
    close(fd);
}

Test(server, client_disconnects_with_requests_in_flight) {
    int fd = cl_connect();
    cl_startup(fd, 4, NULL);
    for (int s = 1; s <= 5; s++) cl_query(fd, (int16_t)s, "LATER 50", 0);
    close(fd);
    usleep(150 * 1000);
    /* Teardown checks every session was freed. */
}

/* A graceful stop answers what is in flight before closing. */
Test(server_stop, answers_in_flight_then_closes, .timeout = 30) {
    tsrv_setup();
    int fd = cl_connect();
    cl_startup(fd, 4, NULL);
    cl_query(fd, 1, "LATER 300", 0);
    usleep(50 * 1000);
    tsrv_stop_requested = 1;
    uv_async_send(&tsrv_async);
    cqlf_header h;
    uint8_t *body;
    size_t n;
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(h.opcode, CQLF_OP_RESULT);
    cr_assert_eq(h.stream, 1);
    free(body);
    cr_assert_eq(cl_recv(fd, &h, &body, &n), -1);
    close(fd);
    pthread_join(tsrv_thread, NULL);
    cql_server_free(tsrv);
    cr_assert_eq(uv_loop_close(&tsrv_loop), 0);
    cr_assert_eq(tsrv_sessions, 0);
}

/* A client that stops reading: the server stops taking its requests once 8 MiB of answers
 * wait, and resumes when the client reads; nothing is lost or reordered per stream. */
Test(server, slow_reader_backpressure) {
    int fd = cl_connect();
    cl_startup(fd, 4, NULL);
    enum { N = 300 };   /* 300 answers of 100 kB: 30 MB, well over the 8 MiB high-water mark */
    for (int s = 1; s <= N; s++) cl_query(fd, (int16_t)s, "BIG 100000", 0);
    usleep(300 * 1000);
    cql_server_stats st;
    cql_server_stats_get(tsrv, &st);
    cr_assert_lt(st.requests, N + 1, "the server stopped reading before taking every request");
    for (int s = 1; s <= N; s++) {
        cqlf_header h;
        uint8_t *body;
        size_t n;
        cr_assert_eq(cl_recv(fd, &h, &body, &n), 0, "answer %d", s);
        cr_assert_eq(h.stream, s);
        cr_assert_eq(n, 100004);
        free(body);
    }
    close(fd);
}

/* Frames cut anywhere by TCP: a request trickling in one byte at a time, then two requests
 * in one segment with the second cut inside its header. */
Test(server, fragmented_frames) {
    int fd = cl_connect();
    cl_startup(fd, 4, NULL);
    buf b;
    buf_init(&b);
    for (int s = 1; s <= 3; s++) {
        buf q;
        buf_init(&q);
        cqlw_long_string(&q, "X", 1);
        buf_u16(&q, 1);
        buf_u8(&q, 0);
        uint8_t h[9] = {4, 0, 0, 0, CQLF_OP_QUERY};
        be16_put(h + 2, (uint16_t)s);
        be32_put(h + 5, (uint32_t)q.len);
        buf_put(&b, h, 9);
        buf_put(&b, q.data, q.len);
        buf_free(&q);
    }
    size_t one = b.len / 3;
    for (size_t i = 0; i < one; i++) {
        cr_assert_eq(write(fd, b.data + i, 1), 1);
        usleep(1000);
    }
    cqlf_header h;
    uint8_t *body;
    size_t n;
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(h.stream, 1);
    free(body);
    size_t cut = one + one + 4;   /* inside the third frame's header */
    cr_assert_eq(write(fd, b.data + one, cut - one), (ssize_t)(cut - one));
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(h.stream, 2);
    free(body);
    usleep(20 * 1000);
    cr_assert_eq(write(fd, b.data + cut, b.len - cut), (ssize_t)(b.len - cut));
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(h.stream, 3);
    free(body);
    buf_free(&b);
    /* REGISTER before STARTUP on a fresh connection. */
    int fd2 = cl_connect();
    static const char *const ev[] = {"SCHEMA_CHANGE"};
    buf r;
    buf_init(&r);
    cqlw_string_list(&r, ev, 1);
    cl_send(fd2, 4, 0, 1, CQLF_OP_REGISTER, r.data, r.len);
    buf_free(&r);
    cr_assert_eq(cl_recv(fd2, &h, &body, &n), 0);
    cr_assert_eq(error_code(body, n), 0x000A);
    free(body);
    close(fd2);
    close(fd);
}

/* A connection the server adopts from a socketpair behaves like an accepted one. */
Test(server, adopted_socketpair) {
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct timeval tv = {5, 0};
    setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    tsrv_adopt_fd = sv[0];
    uv_async_send(&tsrv_async);
    cl_startup(sv[1], 4, "lz4");
    cl_query(sv[1], 7, "BIG 5000", CQLF_FLAG_COMPRESSED);
    cqlf_header h;
    uint8_t *body;
    size_t n;
    cr_assert_eq(cl_recv(sv[1], &h, &body, &n), 0);
    cr_assert_eq(tsrv_adopt_rc, 0);
    cr_assert_eq(h.stream, 7);
    cr_assert(h.flags & CQLF_FLAG_COMPRESSED);
    cr_assert_eq(n, 5004);
    free(body);
    close(sv[1]);
}

/* A v2 client (8-byte header, one-byte stream) is answered at once, in a v4 header. */
Test(server, v2_header_answered) {
    int fd = cl_connect();
    uint8_t h8[8] = {2, 0, 9, CQLF_OP_OPTIONS, 0, 0, 0, 0};
    cr_assert_eq(write(fd, h8, 8), 8);
    cqlf_header h;
    uint8_t *body;
    size_t n;
    cr_assert_eq(cl_recv(fd, &h, &body, &n), 0);
    cr_assert_eq(h.version, 4);
    cr_assert_eq(h.stream, 9);
    cr_assert_eq(error_code(body, n), 0x000A);
    cr_assert(memmem(body, n, "protocol version (2)", 20));
    free(body);
    cr_assert_eq(cl_recv(fd, &h, &body, &n), -1);
    close(fd);
}

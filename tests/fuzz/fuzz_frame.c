/* libFuzzer target for the native protocol request path, in two passes over each input.
 *
 * 1. The decoders alone: the input is a byte stream of frames, cut as the server cuts it
 *    (9-byte header, length checked against the limit before the body is used); each body is
 *    decompressed when flagged, its custom payload skipped, and decoded by opcode. The first
 *    byte selects whether lz4 counts as negotiated.
 * 2. The whole connection code: the same bytes (after the first) are written into one end of
 *    a socketpair whose other end an in-process server adopts (cql_server_adopt_fd), with a
 *    handler that answers at once; the loop runs until the server has closed the connection.
 *    No TCP, no network. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "ilion/cql/frame.h"
#include "ilion/cql/server.h"
#include "ilion/cql/wire.h"

#define FUZZ_MAX_FRAME (256u * 1024)

static void decode_body(uint8_t opcode, uint8_t version, const uint8_t *b, size_t len) {
    st_arena a;
    arena_init(&a);
    const char *err = NULL;
    switch (opcode) {
    case CQLF_OP_STARTUP: {
        cqlf_startup s;
        cqlf_decode_startup(b, len, &s, &err);
        break;
    }
    case CQLF_OP_REGISTER: {
        unsigned mask;
        cqlf_decode_register(b, len, &mask, &err);
        break;
    }
    case CQLF_OP_QUERY: {
        cqlf_query q;
        if (cqlf_decode_query(b, len, version, &a, &q, &err) == 0) {
            /* Touch everything the executor would read. */
            volatile uint8_t sink = 0;
            for (uint16_t i = 0; i < q.params.nvalues; i++)
                if (q.params.values[i].len > 0)
                    sink ^= q.params.values[i].data[q.params.values[i].len - 1];
            if (q.len) sink ^= (uint8_t)q.query[q.len - 1];
            (void)sink;
        }
        break;
    }
    case CQLF_OP_PREPARE: {
        cqlf_prepare p;
        cqlf_decode_prepare(b, len, &p, &err);
        break;
    }
    case CQLF_OP_EXECUTE: {
        cqlf_execute e;
        cqlf_decode_execute(b, len, version, &a, &e, &err);
        break;
    }
    case CQLF_OP_BATCH: {
        cql_batch bt;
        if (cqlf_decode_batch(b, len, version, &a, &bt, &err) == 0) {
            volatile uint8_t sink = 0;
            for (uint16_t i = 0; i < bt.nentries; i++) {
                if (bt.entries[i].len) sink ^= bt.entries[i].query_or_id[bt.entries[i].len - 1];
                for (uint16_t j = 0; j < bt.entries[i].nvalues; j++)
                    if (bt.entries[i].values[j].len > 0)
                        sink ^= bt.entries[i].values[j].data[bt.entries[i].values[j].len - 1];
            }
            (void)sink;
        }
        break;
    }
    case CQLF_OP_RESULT: {
        /* Result bodies come from our executor, but the v3 rewrite must not trust them. */
        uint8_t *out;
        size_t n;
        if (cqlf_result_to_v3(b, len, &out, &n) == 0) free(out);
        break;
    }
    default:
        break;
    }
    arena_free(&a);
}

/* ---- pass 2: an in-process server with an immediate handler ---- */

static uv_loop_t fz_loop;
static cql_server *fz_srv;

static cql_session *fz_session_new(void *ctx) { return (cql_session *)malloc(1); }
static void fz_session_free(void *ctx, cql_session *s) { free(s); }

static void fz_answer(cql_done_cb cb, void *arg, const char *q, size_t len) {
    cql_response r;
    memset(&r, 0, sizeof r);
    buf b;
    buf_init(&b);
    if (len && q[0] == 'E') {
        r.opcode = CQLF_OP_ERROR;
        cqlw_error(&b, 0x2200, "fuzz error");
    } else {
        r.opcode = CQLF_OP_RESULT;
        if (len && q[0] == 'P') {   /* a Prepared body, for the v3 rewrite */
            buf_u32(&b, 4);
            cqlw_short_bytes(&b, "ID", 2);
            buf_u32(&b, 0);
            buf_u32(&b, 0);
            buf_u32(&b, 0);
            buf_u32(&b, 4);
            buf_u32(&b, 0);
        } else {
            buf_u32(&b, 1);
        }
        if (len && q[0] == 'S') {
            buf e;
            buf_init(&e);
            cqlw_string(&e, "SCHEMA_CHANGE");
            cqlw_string(&e, "CREATED");
            cqlw_string(&e, "KEYSPACE");
            cqlw_string(&e, "ks");
            r.event = buf_steal(&e, &r.event_len);
            r.event_type = "SCHEMA_CHANGE";
        }
    }
    r.body = buf_steal(&b, &r.len);
    cb(arg, &r);
}

static int fz_query(void *ctx, cql_session *s, const char *q, size_t len,
                    const cql_query_params *p, cql_done_cb cb, void *arg) {
    if (len && q[0] == 'F') return -5;
    fz_answer(cb, arg, q, len);
    return 0;
}
static int fz_prepare(void *ctx, cql_session *s, const char *q, size_t len, cql_done_cb cb,
                      void *arg) {
    fz_answer(cb, arg, "P", 1);
    return 0;
}
static int fz_execute(void *ctx, cql_session *s, const uint8_t *id, size_t idlen,
                      const cql_query_params *p, cql_done_cb cb, void *arg) {
    fz_answer(cb, arg, (const char *)id, idlen);
    return 0;
}
static int fz_batch(void *ctx, cql_session *s, const cql_batch *b, cql_done_cb cb, void *arg) {
    fz_answer(cb, arg, "B", 1);
    return 0;
}

static void fz_init(void) {
    uv_loop_init(&fz_loop);
    cql_server_options o;
    memset(&o, 0, sizeof o);
    o.loop = &fz_loop;
    o.host = "127.0.0.1";
    o.port = 0;
    o.max_frame_size = FUZZ_MAX_FRAME;
    o.handler.session_new = fz_session_new;
    o.handler.session_free = fz_session_free;
    o.handler.query = fz_query;
    o.handler.prepare = fz_prepare;
    o.handler.execute = fz_execute;
    o.handler.batch = fz_batch;
    if (cql_server_start(&o, &fz_srv)) abort();
}

static void server_pass(const uint8_t *data, size_t size) {
    int sv[2];
    if (!fz_srv) fz_init();
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return;
    fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
    if (cql_server_adopt_fd(fz_srv, sv[0])) {
        close(sv[0]);
        close(sv[1]);
        return;
    }
    size_t sent = 0;
    bool shut = false;
    uint8_t sink[65536];
    for (int i = 0; i < 100000; i++) {
        if (sent < size) {
            ssize_t w = write(sv[1], data + sent, size - sent);
            if (w > 0) sent += (size_t)w;
        } else if (!shut) {
            shutdown(sv[1], SHUT_WR);
            shut = true;
        }
        uv_run(&fz_loop, UV_RUN_NOWAIT);
        while (read(sv[1], sink, sizeof sink) > 0) {
        }
        cql_server_stats st;
        cql_server_stats_get(fz_srv, &st);
        if (st.connections_open == 0) break;
    }
    close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    server_pass(data + 1, size - 1);
    bool lz4 = data[0] & 1;
    size_t off = 1;
    while (size - off >= CQLF_HEADER_LEN) {
        cqlf_header h;
        cqlf_header_parse(data + off, &h);
        if (h.version < CQLF_VERSION_MIN || h.version > CQLF_VERSION_MAX) break;
        if (h.length > FUZZ_MAX_FRAME) break;
        if (size - off - CQLF_HEADER_LEN < h.length) break;
        const uint8_t *body = data + off + CQLF_HEADER_LEN;
        size_t len = h.length;
        off += CQLF_HEADER_LEN + h.length;
        uint8_t *z = NULL;
        if (h.flags & CQLF_FLAG_COMPRESSED) {
            if (!lz4) continue;
            size_t zlen;
            if (cqlf_lz4_decompress(body, len, FUZZ_MAX_FRAME, &z, &zlen)) continue;
            body = z;
            len = zlen;
        }
        size_t skip = 0;
        const char *err;
        if ((h.flags & CQLF_FLAG_CUSTOM_PAYLOAD) &&
            cqlf_skip_custom_payload(body, len, &skip, &err)) {
            free(z);
            continue;
        }
        decode_body(h.opcode, h.version, body + skip, len - skip);
        free(z);
    }
    return 0;
}

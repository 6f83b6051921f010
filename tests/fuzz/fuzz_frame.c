/* libFuzzer target: the native protocol request decoding path, without a socket. The input
 * is a byte stream of frames, cut as the server cuts it (9-byte header, length checked against
 * the limit before the body is used); each body is decompressed when flagged, its custom
 * payload skipped, and decoded by opcode — the same functions, in the same order, that
 * cql/server.c applies. The first byte selects whether lz4 counts as negotiated. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/cql/frame.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
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

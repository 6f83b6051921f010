/*
 * Native protocol v4 (and v3) frames: the 9-byte header, the lz4 body compression, and the
 * decoding of request bodies (STARTUP, REGISTER, QUERY, PREPARE, EXECUTE, BATCH) into the
 * structures of cql/exec.h, plus the builders of the few bodies the server itself answers
 * (SUPPORTED, READY, EVENT). Everything here works on bytes in memory — no sockets — so the
 * decoder can be unit-tested and fuzzed on its own; the connection handling is cql/server.h.
 *
 * All decoders take untrusted bytes and never read past them. They return 0, or -1 with *err
 * set to a static message for a protocol error (ERROR 0x000A), or -2 with *err set for an
 * invalid request (ERROR 0x2200, e.g. a bad serial consistency). Pure functions; any thread.
 */
#ifndef ILION_CQL_FRAME_H
#define ILION_CQL_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ilion/cql/exec.h"
#include "ilion/util/arena.h"
#include "ilion/util/buf.h"

#define CQLF_HEADER_LEN 9
#define CQLF_VERSION_MIN 3
#define CQLF_VERSION_MAX 4
#define CQLF_RESPONSE 0x80
#define CQLF_DEFAULT_MAX_FRAME (16u * 1024 * 1024)
#define CQLF_UNSUPPORTED_VERSION_FMT \
    "Invalid or unsupported protocol version (%d); supported versions are (3/v3, 4/v4)"

/* Header flags. */
enum {
    CQLF_FLAG_COMPRESSED = 0x01,
    CQLF_FLAG_TRACING = 0x02,
    CQLF_FLAG_CUSTOM_PAYLOAD = 0x04,
    CQLF_FLAG_WARNING = 0x08,
};

enum cqlf_opcode {
    CQLF_OP_ERROR = 0x00, CQLF_OP_STARTUP = 0x01, CQLF_OP_READY = 0x02,
    CQLF_OP_AUTHENTICATE = 0x03, CQLF_OP_OPTIONS = 0x05, CQLF_OP_SUPPORTED = 0x06,
    CQLF_OP_QUERY = 0x07, CQLF_OP_RESULT = 0x08, CQLF_OP_PREPARE = 0x09, CQLF_OP_EXECUTE = 0x0A,
    CQLF_OP_REGISTER = 0x0B, CQLF_OP_EVENT = 0x0C, CQLF_OP_BATCH = 0x0D,
    CQLF_OP_AUTH_CHALLENGE = 0x0E, CQLF_OP_AUTH_RESPONSE = 0x0F, CQLF_OP_AUTH_SUCCESS = 0x10,
};

/* Error codes the server itself sends. */
enum {
    CQLF_ERR_SERVER = 0x0000,
    CQLF_ERR_PROTOCOL = 0x000A,
    CQLF_ERR_OVERLOADED = 0x1001,
    CQLF_ERR_INVALID = 0x2200,
};

/* Event types a connection may REGISTER for (a bit mask). */
enum {
    CQLF_EVENT_TOPOLOGY_CHANGE = 1,
    CQLF_EVENT_STATUS_CHANGE = 2,
    CQLF_EVENT_SCHEMA_CHANGE = 4,
};

typedef struct cqlf_header {
    uint8_t version;      /* without the response bit */
    bool response;        /* the direction bit was set */
    uint8_t flags;
    int16_t stream;
    uint8_t opcode;
    uint32_t length;      /* body length as declared (unchecked) */
} cqlf_header;

/* Parses 9 header bytes. Never fails: checks are the caller's (version, length). */
void cqlf_header_parse(const uint8_t p[CQLF_HEADER_LEN], cqlf_header *h);
/* Writes a response header (version | 0x80). */
void cqlf_header_put(uint8_t p[CQLF_HEADER_LEN], uint8_t version, uint8_t flags, int16_t stream,
                     uint8_t opcode, uint32_t length);
/* Name of an opcode for messages ("QUERY"), "UNKNOWN" for others. Static storage. */
const char *cqlf_opcode_name(uint8_t opcode);

/* Appends a whole response frame (header + body) to out. With compress, the body is lz4
 * compressed (and the flag set) when that is worth it; the decision is per frame, which every
 * driver accepts. `flags` are extra header flags (e.g. warnings). */
void cqlf_frame_put(buf *out, uint8_t version, uint8_t flags, int16_t stream, uint8_t opcode,
                    const uint8_t *body, size_t len, bool compress);

/* lz4 body compression (v4): [4-byte BE uncompressed length][raw LZ4 block]. */
int cqlf_lz4_compress(buf *out, const uint8_t *src, size_t len);
/* Decompresses into a malloc'd buffer (*out, freed by the caller); an uncompressed length above
 * max_len, or a block that does not decode to exactly that length, is -ILION_EPROTOCOL-like
 * failure (returns -1). */
int cqlf_lz4_decompress(const uint8_t *src, size_t len, size_t max_len, uint8_t **out,
                        size_t *out_len);

/* ---- request bodies ---- */

typedef struct cqlf_startup {
    bool compression_lz4;           /* COMPRESSION = lz4 */
    const char *cql_version;        /* not NUL-terminated */
    uint16_t cql_version_len;
} cqlf_startup;

/* On failure (-1) *err points to a static message for the protocol error. */
int cqlf_decode_startup(const uint8_t *body, size_t len, cqlf_startup *s, const char **err);
/* REGISTER: *mask receives CQLF_EVENT_* bits. */
int cqlf_decode_register(const uint8_t *body, size_t len, unsigned *mask, const char **err);

/* Skips a leading [bytes map] custom payload; *off receives the bytes consumed. */
int cqlf_skip_custom_payload(const uint8_t *body, size_t len, size_t *off, const char **err);

/* Query parameters (QUERY / EXECUTE) from r. Arrays and copied names live in arena a; other
 * pointers point into the body. `version` is the connection's protocol version (3 rejects
 * unset values). */
int cqlf_decode_query_params(rd *r, uint8_t version, st_arena *a, cql_query_params *p,
                             const char **err);

typedef struct cqlf_query {
    const char *query;
    size_t len;
    cql_query_params params;
} cqlf_query;
int cqlf_decode_query(const uint8_t *body, size_t len, uint8_t version, st_arena *a,
                      cqlf_query *q, const char **err);

typedef struct cqlf_prepare {
    const char *query;
    size_t len;
} cqlf_prepare;
int cqlf_decode_prepare(const uint8_t *body, size_t len, cqlf_prepare *p, const char **err);

typedef struct cqlf_execute {
    const uint8_t *id;
    size_t idlen;
    cql_query_params params;
} cqlf_execute;
int cqlf_decode_execute(const uint8_t *body, size_t len, uint8_t version, st_arena *a,
                        cqlf_execute *e, const char **err);

int cqlf_decode_batch(const uint8_t *body, size_t len, uint8_t version, st_arena *a,
                      cql_batch *b, const char **err);

/* ---- response bodies the server builds ---- */

/* SUPPORTED: CQL_VERSION ["3.4.5"], COMPRESSION ["lz4"], PROTOCOL_VERSIONS ["3/v3","4/v4"]. */
void cqlf_supported_body(buf *b);

/* EVENT bodies. change: "NEW_NODE" / "REMOVED_NODE" (topology), "UP" / "DOWN" (status).
 * addr is 4 or 16 bytes. */
void cqlf_event_topology_body(buf *b, const char *change, const uint8_t *addr, uint8_t addrlen,
                              int32_t port);
void cqlf_event_status_body(buf *b, const char *change, const uint8_t *addr, uint8_t addrlen,
                            int32_t port);
/* Maps "SCHEMA_CHANGE" etc. to a CQLF_EVENT_* bit, 0 when unknown. */
unsigned cqlf_event_type_bit(const char *name, size_t len);

/* Rewrites a v4 RESULT body into its v3 form where they differ (a Prepared result has no
 * partition key indexes in v3). Returns a malloc'd body in *out, or 0 with *out NULL when the
 * body is the same in both versions. */
int cqlf_result_to_v3(const uint8_t *body, size_t len, uint8_t **out, size_t *out_len);

#endif

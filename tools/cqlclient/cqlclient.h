/*
 * A small asynchronous CQL native-protocol v4 client over libuv, shared by ilion-stress, the
 * admin tool and the shell. A connection does OPTIONS/STARTUP (optionally negotiating lz4
 * frame compression), then carries QUERY, PREPARE and EXECUTE requests with up to 32767
 * streams in flight; responses arrive in any order and are matched to their request by
 * stream id. Results (Rows, Prepared, Void, Set_keyspace, Schema_change) and ERROR frames are
 * decoded into a `cqlc_result` whose pointers stay valid only during the callback.
 *
 * The frame and body codecs (cqlc_encode_*, cqlc_decode_*) are pure functions usable from
 * any thread and without a server. Everything taking a `cqlc_conn` must run on the thread of
 * the uv_loop the connection was opened on. A call that fails (returns < 0) never calls its
 * callback; otherwise the callback runs exactly once, never before the call returns.
 */
#ifndef ILION_CQLCLIENT_H
#define ILION_CQLCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "ilion/util/arena.h"
#include "ilion/util/buf.h"

/* Frame header (native_protocol_v4.spec §2). */
#define CQLC_VERSION 0x04
#define CQLC_HEADER_LEN 9
#define CQLC_FLAG_COMPRESSED 0x01
#define CQLC_FLAG_TRACING 0x02
#define CQLC_FLAG_CUSTOM_PAYLOAD 0x04
#define CQLC_FLAG_WARNING 0x08
/* Largest body we accept (Cassandra's native_transport_max_frame_size default). */
#define CQLC_MAX_BODY (256u * 1024 * 1024)
#define CQLC_MAX_STREAMS 32768

enum cqlc_opcode {
    CQLC_OP_ERROR = 0x00, CQLC_OP_STARTUP = 0x01, CQLC_OP_READY = 0x02,
    CQLC_OP_AUTHENTICATE = 0x03, CQLC_OP_OPTIONS = 0x05, CQLC_OP_SUPPORTED = 0x06,
    CQLC_OP_QUERY = 0x07, CQLC_OP_RESULT = 0x08, CQLC_OP_PREPARE = 0x09,
    CQLC_OP_EXECUTE = 0x0A, CQLC_OP_REGISTER = 0x0B, CQLC_OP_EVENT = 0x0C,
    CQLC_OP_BATCH = 0x0D, CQLC_OP_AUTH_CHALLENGE = 0x0E, CQLC_OP_AUTH_RESPONSE = 0x0F,
    CQLC_OP_AUTH_SUCCESS = 0x10,
};

enum cqlc_consistency {
    CQLC_ANY = 0, CQLC_ONE = 1, CQLC_TWO = 2, CQLC_THREE = 3, CQLC_QUORUM = 4, CQLC_ALL = 5,
    CQLC_LOCAL_QUORUM = 6, CQLC_EACH_QUORUM = 7, CQLC_SERIAL = 8, CQLC_LOCAL_SERIAL = 9,
    CQLC_LOCAL_ONE = 10,
};
/* "QUORUM" -> 4 (case-insensitive); -1 when unknown. */
int cqlc_consistency_parse(const char *name);
const char *cqlc_consistency_name(int cl);

/* Type option ids (§6 of the spec). */
enum cqlc_type {
    CQLC_T_CUSTOM = 0x00, CQLC_T_ASCII = 0x01, CQLC_T_BIGINT = 0x02, CQLC_T_BLOB = 0x03,
    CQLC_T_BOOLEAN = 0x04, CQLC_T_COUNTER = 0x05, CQLC_T_DECIMAL = 0x06, CQLC_T_DOUBLE = 0x07,
    CQLC_T_FLOAT = 0x08, CQLC_T_INT = 0x09, CQLC_T_TIMESTAMP = 0x0B, CQLC_T_UUID = 0x0C,
    CQLC_T_VARCHAR = 0x0D, CQLC_T_VARINT = 0x0E, CQLC_T_TIMEUUID = 0x0F, CQLC_T_INET = 0x10,
    CQLC_T_DATE = 0x11, CQLC_T_TIME = 0x12, CQLC_T_SMALLINT = 0x13, CQLC_T_TINYINT = 0x14,
    CQLC_T_LIST = 0x20, CQLC_T_MAP = 0x21, CQLC_T_SET = 0x22, CQLC_T_UDT = 0x30,
    CQLC_T_TUPLE = 0x31,
};

/* A bound value: len -1 is null, -2 unset. */
typedef struct cqlc_value {
    const void *data;
    int32_t len;
} cqlc_value;

/* Raw bytes of one cell, pointing into the response body. len -1: null. */
typedef struct cqlc_cell {
    const uint8_t *data;
    int32_t len;
} cqlc_cell;

typedef struct cqlc_column {
    const char *keyspace;   /* NUL-terminated copies in the result arena */
    const char *table;
    const char *name;
    uint16_t type;          /* enum cqlc_type */
    uint16_t sub[2];        /* element type(s) of list/set (sub[0]) and map (key, value) */
} cqlc_column;

typedef struct cqlc_metadata {
    int32_t flags;
    int32_t ncols;
    bool no_metadata;            /* flag 0x04: columns absent (skip_metadata) */
    const uint8_t *paging_state; /* NULL when there are no more pages */
    int32_t paging_state_len;
    cqlc_column *cols;           /* ncols entries unless no_metadata */
} cqlc_metadata;

enum cqlc_kind {
    CQLC_KIND_ERROR = 0,       /* an ERROR frame */
    CQLC_KIND_VOID = 1,
    CQLC_KIND_ROWS = 2,
    CQLC_KIND_SET_KEYSPACE = 3,
    CQLC_KIND_PREPARED = 4,
    CQLC_KIND_SCHEMA_CHANGE = 5,
    CQLC_KIND_READY = 100,     /* handshake answers, used internally and by raw requests */
    CQLC_KIND_SUPPORTED = 101,
    CQLC_KIND_AUTHENTICATE = 102,
    CQLC_KIND_OTHER = 103,
};

/* A decoded RESULT or ERROR. All pointers refer into the response body or the result arena
 * and are valid only until the callback returns. */
typedef struct cqlc_result {
    int kind;                   /* enum cqlc_kind */
    uint8_t opcode;
    /* ERROR */
    uint32_t err_code;
    const char *err_msg;        /* NUL-terminated */
    /* Code-specific fields, when the body carries them (else err_cl 0xffff, others 0/NULL):
     * Unavailable (cl, required in err_blockfor, alive in err_received), ReadTimeout,
     * WriteTimeout and WriteFailure (cl, received, blockfor); the write type ("SIMPLE",
     * "BATCH", "CAS", ...) of WriteTimeout and WriteFailure, NUL-terminated. */
    uint16_t err_cl;
    int32_t err_received, err_blockfor;
    const char *err_write_type;
    /* ROWS */
    cqlc_metadata meta;
    int32_t nrows;
    cqlc_cell *cells;           /* nrows * meta.ncols, row-major */
    /* PREPARED */
    const uint8_t *prepared_id;
    uint16_t prepared_id_len;
    cqlc_metadata bind;         /* bind variables */
    int32_t npk;
    uint16_t *pk_index;         /* partition key positions among the bind variables */
    /* SET_KEYSPACE */
    const char *keyspace;
    /* SUPPORTED: flattened multimap, "KEY=VALUE" strings */
    int nsupported;
    const char **supported;
    /* Warnings (flag 0x08), NUL-terminated */
    int nwarnings;
    const char **warnings;
} cqlc_result;

/* ---- Pure codecs --------------------------------------------------------------------- */

/* Appends a frame header with a placeholder length; returns its offset for cqlc_frame_end. */
size_t cqlc_frame_begin(buf *b, uint8_t flags, int16_t stream, uint8_t opcode);
void cqlc_frame_end(buf *b, size_t start);

/* Notation writers (§3). */
void cqlc_put_string(buf *b, const char *s, size_t n);
void cqlc_put_long_string(buf *b, const char *s, size_t n);
void cqlc_put_value(buf *b, const cqlc_value *v);
void cqlc_put_string_map(buf *b, const char *const *kv, size_t npairs);

/* Query parameters shared by QUERY and EXECUTE. */
typedef struct cqlc_params {
    uint16_t consistency;
    const cqlc_value *values;
    uint16_t nvalues;
    bool skip_metadata;
    int32_t page_size;           /* <= 0: no paging */
    const uint8_t *paging_state;
    int32_t paging_state_len;
    int64_t timestamp;           /* INT64_MIN: none */
    uint16_t serial_consistency; /* SERIAL or LOCAL_SERIAL for conditional statements and
                                  * SERIAL reads (flag 0x10); 0: not sent (server default) */
} cqlc_params;
void cqlc_params_init(cqlc_params *p, uint16_t consistency);

/* Bodies (no header). */
void cqlc_body_startup(buf *b, const char *compression /* NULL: none */);
void cqlc_body_query(buf *b, const char *cql, size_t len, const cqlc_params *p);
void cqlc_body_prepare(buf *b, const char *cql, size_t len);
void cqlc_body_execute(buf *b, const uint8_t *id, uint16_t idlen, const cqlc_params *p);

typedef struct cqlc_header {
    uint8_t version;
    uint8_t flags;
    int16_t stream;
    uint8_t opcode;
    uint32_t length;
} cqlc_header;
/* Parses 9 header bytes; -ILION_EPROTOCOL-style negative error on a bad version or a length
 * above max_body. Accepts only v4 responses (0x84). */
int cqlc_header_decode(const uint8_t *p, uint32_t max_body, cqlc_header *h);

/* lz4 body compression in the v4 layout (u32 big-endian uncompressed length + raw block). */
int cqlc_lz4_compress(const uint8_t *in, size_t n, buf *out);
/* Decompresses into out (reset first); fails on a length above max or a corrupt block. */
int cqlc_lz4_decompress(const uint8_t *in, size_t n, uint32_t max, buf *out);

/* Decodes a response body for opcode (RESULT, ERROR, READY, SUPPORTED, AUTHENTICATE) into res,
 * allocating arrays in arena. flags are the frame flags (warnings are skipped first).
 * Returns 0 or a negative error on malformed input; never reads past body+len. */
int cqlc_decode_response(uint8_t opcode, uint8_t flags, const uint8_t *body, size_t len,
                         st_arena *arena, cqlc_result *res);

/* Cell decoders: 0 or negative on a wrong length. */
int cqlc_cell_int(const cqlc_cell *c, int32_t *v);
int cqlc_cell_bigint(const cqlc_cell *c, int64_t *v);
/* inet cell (4 or 16 bytes) -> text address in out. */
int cqlc_cell_inet(const cqlc_cell *c, char *out, size_t outlen);
/* Copies a text cell into out (NUL-terminated, truncated to outlen-1). */
int cqlc_cell_text(const cqlc_cell *c, char *out, size_t outlen);
/* Iterates a set<text>/list<text> cell: call with *pos = 0; each call yields the next element
 * and returns 1, 0 at the end, negative on malformed bytes. */
int cqlc_cell_collection_next(const cqlc_cell *c, size_t *pos, const uint8_t **elem,
                              int32_t *elen);
/* Renders a cell as CQL-literal-like text into out (always NUL-terminated; truncated text ends
 * in "..."): null, numbers, 'text', 0xblob, true/false, uuids, inet, timestamps as ms since the
 * epoch, dates as days, list/set/map of simple types as [..], {..}, {k: v}; other types as
 * 0xhex. Returns the length written, or a negative error when the bytes do not fit the type
 * (then out holds 0xhex of the raw bytes). type/sub as in cqlc_column. */
int cqlc_cell_format(uint16_t type, const uint16_t sub[2], const cqlc_cell *c, char *out,
                     size_t outlen);

/* Column index by name, -1 when absent. */
int cqlc_result_column(const cqlc_result *r, const char *name);

/* Error code name ("Invalid", "WriteTimeout", ...). */
const char *cqlc_error_name(uint32_t code);

/* ---- Connections --------------------------------------------------------------------- */

typedef struct cqlc_conn cqlc_conn;

typedef struct cqlc_conn_opts {
    const char *host;           /* numeric IPv4/IPv6 address */
    int port;                   /* default 9042 */
    bool lz4;                   /* ask for lz4 when the server supports it */
    uint32_t timeout_ms;        /* per request; 0: 12000 */
    uint32_t connect_timeout_ms;/* 0: 5000 */
} cqlc_conn_opts;

/* status 0: res is a RESULT (kind 1..5) or an ERROR (kind 0) frame. status < 0: no answer
 * (ILION_ETIMEOUT, ILION_ECLOSED, ILION_EPROTOCOL, -errno) and res is NULL. */
typedef void (*cqlc_cb)(cqlc_conn *c, int status, const cqlc_result *res, void *arg);
/* Handshake finished (status 0) or failed. After a failure (or a later connection loss) the
 * socket is closed and requests fail with ILION_ECLOSED, but the object stays allocated: the
 * owner always ends it with exactly one cqlc_conn_close. */
typedef void (*cqlc_connect_cb)(cqlc_conn *c, int status, void *arg);
typedef void (*cqlc_close_cb)(cqlc_conn *c, void *arg);

/* Starts connecting; *out is valid at once. */
int cqlc_conn_open(uv_loop_t *loop, const cqlc_conn_opts *opts, cqlc_connect_cb cb, void *arg,
                   cqlc_conn **out);
/* Fails every pending request with ILION_ECLOSED, closes the socket, then calls cb (may be
 * NULL; only the pointer value of c may be used in it) from the loop and frees the connection. Call exactly once per cqlc_conn_open that
 * returned 0; c must not be used after this call. */
void cqlc_conn_close(cqlc_conn *c, cqlc_close_cb cb, void *arg);

/* Server-pushed EVENT frames (stream -1, after a REGISTER): type is "TOPOLOGY_CHANGE",
 * "STATUS_CHANGE" or "SCHEMA_CHANGE" (NUL-terminated), body/len the rest of the event body
 * after the type, undecoded. Valid during the call only. cb NULL stops delivery. */
typedef void (*cqlc_event_cb)(cqlc_conn *c, const char *type, const uint8_t *body, size_t len,
                              void *arg);
void cqlc_conn_on_event(cqlc_conn *c, cqlc_event_cb cb, void *arg);
/* REGISTER for the given event types (e.g. {"SCHEMA_CHANGE"}); answered with READY. */
int cqlc_register(cqlc_conn *c, const char *const *types, size_t n, cqlc_cb cb, void *arg);

bool cqlc_conn_ready(const cqlc_conn *c);
bool cqlc_conn_compressed(const cqlc_conn *c);
int cqlc_conn_inflight(const cqlc_conn *c);
const char *cqlc_conn_host(const cqlc_conn *c);

int cqlc_query(cqlc_conn *c, const char *cql, const cqlc_params *p, cqlc_cb cb, void *arg);
int cqlc_prepare(cqlc_conn *c, const char *cql, cqlc_cb cb, void *arg);
int cqlc_execute(cqlc_conn *c, const uint8_t *id, uint16_t idlen, const cqlc_params *p,
                 cqlc_cb cb, void *arg);
/* Sends any request body (already encoded, uncompressed) with the given opcode. */
int cqlc_request(cqlc_conn *c, uint8_t opcode, const uint8_t *body, size_t len, cqlc_cb cb,
                 void *arg);

#endif

/*
 * The boundary between the native-protocol server (cql/server*, frames and connections) and
 * the CQL language layer (cql/parser, statements, schema, system tables). The server decodes
 * QUERY / PREPARE / EXECUTE / BATCH bodies into the structures below and hands them to the
 * executor; the executor answers with a complete RESULT or ERROR body, which the server frames.
 *
 * Threads: everything runs on the event loop. A call that returns an error (< 0) never calls
 * its callback; otherwise the callback runs exactly once, possibly before the call returns.
 */
#ifndef ILION_CQL_EXEC_H
#define ILION_CQL_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One bound value as it came off the wire. len -1 = null, -2 = unset (v4). */
typedef struct cql_value {
    const uint8_t *data;
    int32_t len;
    const char *name;      /* named values (flag 0x40): NUL-terminated, else NULL */
    uint16_t name_len;
} cql_value;

/* Query parameters (QUERY and EXECUTE), pointers valid until the callback has run. */
typedef struct cql_query_params {
    uint16_t consistency;
    uint8_t flags;               /* the raw flags byte */
    uint16_t nvalues;
    cql_value *values;
    bool skip_metadata;
    int32_t page_size;           /* <= 0: no paging */
    const uint8_t *paging_state; /* NULL when absent */
    int32_t paging_state_len;
    uint16_t serial_consistency; /* default SERIAL (8) */
    int64_t default_timestamp;   /* INT64_MIN when absent */
} cql_query_params;

/* One BATCH entry: a query string or a prepared id, with its values. */
typedef struct cql_batch_entry {
    bool prepared;
    const uint8_t *query_or_id;
    uint32_t len;
    uint16_t nvalues;
    cql_value *values;
} cql_batch_entry;

typedef struct cql_batch {
    uint8_t type;                /* 0 logged, 1 unlogged, 2 counter */
    uint16_t nentries;
    cql_batch_entry *entries;
    uint16_t consistency;
    uint16_t serial_consistency;
    int64_t default_timestamp;   /* INT64_MIN when absent */
} cql_batch;

/* The answer: opcode 0x08 RESULT or 0x00 ERROR with its body (malloc'd, the server frees it).
 * `event` (may be NULL) is an EVENT body (SCHEMA_CHANGE) to broadcast to registered
 * connections after the response is sent; the server frees it too. */
typedef struct cql_response {
    uint8_t opcode;
    uint8_t *body;
    size_t len;
    uint8_t *event;
    size_t event_len;
    const char *event_type;      /* "SCHEMA_CHANGE" when event != NULL */
} cql_response;

typedef void (*cql_done_cb)(void *arg, cql_response *resp);

typedef struct cql_executor cql_executor;
typedef struct cql_session cql_session;   /* per connection: current keyspace */

struct uv_loop_s;
struct coord;
struct storage_engine;
struct cluster;
struct paxos;

/* What the executor needs to know about the node (system.local is served from it). */
typedef struct cql_executor_options {
    struct uv_loop_s *loop;
    struct coord *coord;
    struct storage_engine *engine;       /* schema and system tables live here */
    struct cluster *cluster;             /* NULL on a single node */
    struct paxos *paxos;                 /* LWT through Paxos; NULL: read-then-write on the loop */
    const char *cluster_name;
    const char *listen_address;          /* dotted IPv4 or IPv6 text */
    const char *rpc_address;
    uint16_t native_port;
    const char *data_center;
    const char *rack;
    const uint8_t *host_id;              /* 16 bytes */
    const int64_t *tokens;               /* this node's tokens */
    uint32_t ntokens;
} cql_executor_options;

/* Loads the schema from the engine's system tables. *out owned by caller. */
int cql_executor_create(const cql_executor_options *o, cql_executor **out);
void cql_executor_destroy(cql_executor *x);

cql_session *cql_session_new(cql_executor *x);
void cql_session_free(cql_session *s);

int cql_exec_query(cql_executor *x, cql_session *s, const char *query, size_t len,
                   const cql_query_params *p, cql_done_cb cb, void *arg);
int cql_exec_prepare(cql_executor *x, cql_session *s, const char *query, size_t len,
                     cql_done_cb cb, void *arg);
int cql_exec_execute(cql_executor *x, cql_session *s, const uint8_t *id, size_t idlen,
                     const cql_query_params *p, cql_done_cb cb, void *arg);
int cql_exec_batch(cql_executor *x, cql_session *s, const cql_batch *b, cql_done_cb cb, void *arg);

/* Helpers both sides use to build an ERROR body (code + [string] message). malloc'd. */
uint8_t *cql_error_body(uint32_t code, const char *msg, size_t *len);

#endif

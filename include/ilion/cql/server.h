/*
 * The native protocol server: accepts client TCP connections on a libuv loop, reads frames
 * (refusing a frame over the size limit before reading its body), negotiates the protocol
 * version and lz4 compression, answers OPTIONS / STARTUP / REGISTER itself and hands QUERY,
 * PREPARE, EXECUTE and BATCH to a request handler — normally the CQL executor of cql/exec.h.
 * Responses are written as they complete, many streams at once per connection, and coalesced
 * into one write per connection per loop iteration. EVENT frames go to the connections that
 * registered for their type.
 *
 * Threads: every function here runs on the loop given to cql_server_start, and handler
 * callbacks run there too.
 */
#ifndef ILION_CQL_SERVER_H
#define ILION_CQL_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ilion/cql/exec.h"

typedef struct cql_server cql_server;

/* Where requests go. The executor's functions have this shape; tests plug in their own. The
 * rules of cql/exec.h apply: a call returning < 0 never calls cb, otherwise cb runs exactly
 * once, possibly before the call returns. */
typedef struct cql_server_handler {
    void *ctx;
    cql_session *(*session_new)(void *ctx);            /* one per connection; NULL = OOM */
    void (*session_free)(void *ctx, cql_session *s);
    int (*query)(void *ctx, cql_session *s, const char *q, size_t len,
                 const cql_query_params *p, cql_done_cb cb, void *arg);
    int (*prepare)(void *ctx, cql_session *s, const char *q, size_t len, cql_done_cb cb,
                   void *arg);
    int (*execute)(void *ctx, cql_session *s, const uint8_t *id, size_t idlen,
                   const cql_query_params *p, cql_done_cb cb, void *arg);
    int (*batch)(void *ctx, cql_session *s, const cql_batch *b, cql_done_cb cb, void *arg);
} cql_server_handler;

/* Fills h with the functions of cql/exec.h over executor x. */
void cql_server_handler_executor(cql_executor *x, cql_server_handler *h);

typedef struct cql_server_options {
    uv_loop_t *loop;
    const char *host;            /* address or name to listen on, e.g. "127.0.0.1" */
    uint16_t port;               /* 0: any free port (see cql_server_port) */
    uint32_t max_frame_size;     /* bytes; 0 = 16 MiB (native_transport_max_frame_size_in_mb) */
    cql_server_handler handler;
} cql_server_options;

typedef struct cql_server_stats {
    uint64_t connections_accepted;
    uint32_t connections_open;
    uint64_t requests;           /* frames dispatched */
    uint64_t protocol_errors;
    uint32_t in_flight;          /* requests handed to the handler and not answered yet */
} cql_server_stats;

/* Binds and listens. *out owned by the caller: cql_server_stop, then cql_server_free. */
int cql_server_start(const cql_server_options *o, cql_server **out);
/* Serves an already-connected stream socket (one end of a socketpair: unit tests and the
 * fuzzer drive the connection code without TCP). The server owns fd from here on when this
 * returns 0. */
int cql_server_adopt_fd(cql_server *s, int fd);
/* The port actually bound. */
int cql_server_port(const cql_server *s);
void cql_server_stats_get(const cql_server *s, cql_server_stats *st);

/* Sends an EVENT frame (stream -1) with `body` to every connection registered for `type_bit`
 * (CQLF_EVENT_* in cql/frame.h). For the cluster layer: STATUS_CHANGE / TOPOLOGY_CHANGE
 * (bodies from cqlf_event_status_body / cqlf_event_topology_body). Copies body. */
void cql_server_broadcast_event(cql_server *s, unsigned type_bit, const uint8_t *body,
                                size_t len);

/* Graceful stop: closes the listener, stops reading requests, waits for in-flight requests
 * to be answered (at most drain_ms, then closes anyway), flushes their responses and closes
 * every connection. cb runs on the loop once all connections are gone and every handler
 * callback has run; then call cql_server_free. */
typedef void (*cql_server_stopped_cb)(void *arg);
void cql_server_stop(cql_server *s, uint32_t drain_ms, cql_server_stopped_cb cb, void *arg);
void cql_server_free(cql_server *s);

#endif

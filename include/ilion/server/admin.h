/*
 * The node's admin interface: a small HTTP/1.1 server on admin_http_port (bound to the listen
 * address) answering JSON for the admin tool (tools/admin, `ilion-admin`) — status, ring,
 * info, describecluster, flush, compact — and Prometheus text at /metrics. One request per
 * connection (Connection: close); requests are bounded (8 KiB of headers, no body read).
 * Endpoints and their JSON are documented in docs/admin.md.
 *
 * Threads: the event loop passed to admin_start; handlers run on it (flush and compact wait
 * for the storage engine, so they hold the loop while they run).
 */
#ifndef ILION_SERVER_ADMIN_H
#define ILION_SERVER_ADMIN_H

#include <stdint.h>
#include <uv.h>

struct cluster;
struct storage_engine;
struct cql_executor;
struct cql_server;
struct cql_schema_sync;

typedef struct admin_server admin_server;

typedef struct admin_options {
    uv_loop_t *loop;
    const char *host;                  /* numeric address to bind (the listen address) */
    uint16_t port;                     /* 0: any free port (admin_port tells which) */
    const char *cluster_name;
    const char *partitioner;
    const char *snitch;
    struct cluster *cluster;           /* may be NULL (then a one-node view) */
    struct storage_engine *engine;
    struct cql_executor *exec;
    int64_t started_ms;                /* wall clock at start-up, for uptime */
    uint32_t idle_timeout_ms;          /* a connection without a complete request is closed
                                          after this; 0: 10000 */
} admin_options;

/* Binds and listens; *out owned by the caller (admin_stop). -errno (uv error) on bind failure. */
int admin_start(const admin_options *o, admin_server **out);
int admin_port(const admin_server *a);
/* The CQL server whose counters /metrics shows (may be NULL; set it to NULL before freeing it). */
void admin_set_cql_server(admin_server *a, struct cql_server *s);
void admin_set_schema_sync(admin_server *a, struct cql_schema_sync *s);
/* Stops the executor/engine from being used by later requests (they get 503). */
void admin_detach(admin_server *a);
/* Closes the listener and open connections; memory goes once libuv closed them. */
void admin_stop(admin_server *a);

#endif

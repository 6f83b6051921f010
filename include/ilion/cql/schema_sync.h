/*
 * Schema propagation between the nodes of a cluster. A DDL statement applied on one node is
 * pushed (SCHEMA_PUSH: every row of the schema table, tombstones included) to every live peer;
 * a node that sees a peer gossip another SCHEMA version than its own pulls (SCHEMA_PULL) the
 * peer's schema table. Either way the received rows are applied to the local schema table,
 * where they reconcile by timestamp like any data, and the catalog is rebuilt from the merged
 * table: keyspaces and tables appear, change or go, their storage is created or dropped, and
 * a SCHEMA_CHANGE event body is handed to the node for each change learnt that way (CQL
 * clients of this node hear of remote DDL too). Equal schema tables give equal versions, so
 * every node ends up gossiping one schema version (what drivers wait for after DDL).
 * Payload format: docs/internode-protocol.md ("Schema verbs").
 *
 * Threads: the event loop of the executor and its cluster.
 */
#ifndef ILION_CQL_SCHEMA_SYNC_H
#define ILION_CQL_SCHEMA_SYNC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ilion/cql/exec.h"

typedef struct cql_schema_sync cql_schema_sync;

/* An EVENT body (SCHEMA_CHANGE) to broadcast to the clients registered for schema events. */
typedef void (*cql_schema_event_cb)(void *arg, const uint8_t *body, size_t len);

/* Starts propagation for x (which must have a cluster): registers the schema verbs, listens
 * to gossip and checks for disagreement every check_ms (0: 2000). *out owned by the caller. */
int cql_schema_sync_start(cql_executor *x, uv_loop_t *loop, uint32_t check_ms,
                          cql_schema_event_cb cb, void *arg, cql_schema_sync **out);
/* The executor is going away: the sync stops touching it (messages are answered with an error). */
void cql_schema_sync_detach(cql_schema_sync *s);
/* Frees s once its timer is closed; call after the cluster is destroyed (pending requests
 * answered), keep running the loop. */
void cql_schema_sync_free(cql_schema_sync *s);

typedef struct cql_schema_sync_stats {
    uint64_t pushes_sent, pushes_received, pulls_sent, pulls_answered, merges, changes_applied;
    uint64_t bad_messages;
} cql_schema_sync_stats;
void cql_schema_sync_stats_get(const cql_schema_sync *s, cql_schema_sync_stats *out);

/* Storage table ids of the user tables of keyspace ks (NULL: every non-system keyspace),
 * optionally only table `table`. Returns how many there are (ids filled up to max), or
 * ILION_ENOTFOUND when ks or table does not exist. For the admin interface (flush, compact). */
int cql_executor_table_ids(cql_executor *x, const char *ks, const char *table, uint64_t *ids,
                           size_t max);

#endif

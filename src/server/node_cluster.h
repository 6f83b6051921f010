/*
 * The node's side of the cluster (server-private): builds the cluster service from the
 * configuration, starts gossip, keeps the gossiped LOAD and SCHEMA states current, turns
 * membership changes into STATUS_CHANGE / TOPOLOGY_CHANGE events for CQL clients, and runs
 * schema propagation (cql/schema_sync.h).
 *
 * Order: node_cluster_create (before the coordinator and executor, which take
 * node_cluster_get), node_cluster_start (after the executor, before the native server),
 * node_cluster_set_server, then at shutdown node_cluster_stop (first: announces it),
 * node_cluster_detach (before the executor is destroyed) and node_cluster_destroy (after the
 * coordinator is destroyed; the loop must keep running so libuv can close the handles).
 *
 * Threads: the event loop only.
 */
#ifndef ILION_SERVER_NODE_CLUSTER_H
#define ILION_SERVER_NODE_CLUSTER_H

#include <uv.h>

#include "ilion/server/config.h"
#include "ilion/server/node.h"

struct cluster;
struct cql_executor;
struct cql_server;
struct storage_engine;

typedef struct node_cluster node_cluster;

int node_cluster_create(uv_loop_t *loop, const server_config *c, const char *config_dir,
                        const node_identity *id, node_cluster **out);
struct cluster *node_cluster_get(node_cluster *nc);
/* Schema propagation once started (for the admin metrics), else NULL. */
struct cql_schema_sync *node_cluster_sync(node_cluster *nc);
/* Starts gossip, schema propagation and the LOAD timer. */
int node_cluster_start(node_cluster *nc, struct storage_engine *e, struct cql_executor *x);
/* Where client events go (NULL: nowhere). */
void node_cluster_set_server(node_cluster *nc, struct cql_server *s);
/* Announces shutdown to the peers, stops gossip and the timers. */
void node_cluster_stop(node_cluster *nc);
/* The executor is about to go away: schema propagation stops using it. */
void node_cluster_detach(node_cluster *nc);
void node_cluster_destroy(node_cluster *nc);

#endif

/*
 * A node's life: start-up in dependency order (identity, storage engine, coordinator, CQL
 * executor, native protocol server), then the event loop until SIGTERM/SIGINT, then shutdown
 * in reverse (stop accepting, answer in-flight requests, destroy the executor and
 * coordinator, sync the commit log and close the engine).
 *
 * Threads: node_run runs the event loop on the calling thread (the main thread) and returns
 * when the node has stopped.
 */
#ifndef ILION_SERVER_NODE_H
#define ILION_SERVER_NODE_H

#include <stdint.h>

#include "ilion/server/config.h"

/* The node's persistent identity, created on first start in the data directory. */
typedef struct node_identity {
    uint8_t host_id[16];
    uint32_t ntokens;
    int64_t *tokens;             /* malloc'd; node_identity_free */
    int32_t generation;
    char data_center[128];
    char rack[64];
} node_identity;

/* Loads the identity kept in c's first data directory, or creates and saves one (random
 * version-4 UUID, num_tokens random Murmur3 tokens). The generation is bumped and saved on each
 * call. ILION_EINVALID when the directory belongs to another cluster name. */
int node_identity_load(const server_config *c, const char *config_dir, node_identity *id);
void node_identity_free(node_identity *id);

/* Runs the node until a stop signal; 0 after a clean shutdown, negative when start-up failed
 * (the reason is logged). config_dir: directory of the configuration file (for
 * cassandra-rackdc.properties), may be NULL. */
int node_run(const server_config *c, const char *config_dir);

#endif

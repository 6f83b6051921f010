/*
 * The cluster service a node runs: internode messaging (net/), gossip with the phi-accrual
 * failure detector, the token ring with replica placement, the snitch, and the node's
 * persistent identity (host id, tokens, generation). The node creates one at start-up on its
 * event loop; the coordinator asks it for replicas and liveness and sends requests through
 * its messaging service; the CQL layer maps its listener events to STATUS_CHANGE and
 * TOPOLOGY_CHANGE, and serves system.local/system.peers from cluster_peer_get.
 *
 * Threads: everything on the loop passed to cluster_create; listeners run on it.
 */
#ifndef ILION_CLUSTER_CLUSTER_H
#define ILION_CLUSTER_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ilion/cluster/gossip.h"
#include "ilion/cluster/ring.h"
#include "ilion/cluster/tokens.h"
#include "ilion/net/messaging.h"
#include "ilion/schema/replication.h"

typedef struct cluster cluster;

typedef struct cluster_options {
    const char *cluster_name;        /* default "Test Cluster" */
    const char *listen_address;      /* numeric IP, default "127.0.0.1" */
    uint16_t storage_port;           /* default 7000 (0: ephemeral, tests) */
    const char *const *seeds;        /* "ip" (port = storage_port) or "ip:port", or several of them
                                        comma-separated in one entry; may list self */
    size_t nseeds;
    uint32_t num_tokens;             /* default 16; used on first start only */
    const char *initial_token;       /* optional "t1,t2,..." instead of random, first start only */
    const char *dc, *rack;           /* NULL: from rackdc_path, else datacenter1/rack1 */
    const char *rackdc_path;         /* cassandra-rackdc.properties, may be NULL */
    const char *data_dir;            /* required: identity kept in data_dir/system/local.state */
    double phi_convict_threshold;    /* default 8 */
    uint32_t gossip_interval_ms;     /* default 1000 */
    const char *rpc_address;         /* address clients use; default listen_address */
    uint16_t native_port;            /* default 9042, gossiped */
    const char *release_version;     /* default "4.0.11" (what drivers expect to parse) */
    const uint8_t *host_id;          /* 16 bytes to force one on first start; NULL: random */
    uint64_t rng_seed;               /* 0: from the OS */
    uint32_t net_backoff_max_ms;     /* default 10000 */
    /* The identity, when the caller already loaded and saved it (server/node.c does): host id,
     * tokens and this start's generation are taken from here and data_dir is not touched.
     * NULL: cluster_create loads or creates data_dir/system/local.state itself. */
    const struct localstate *identity;
} cluster_options;

void cluster_options_default(cluster_options *o);

/* Loads or creates the identity (host id, tokens, generation = max(now, last + 1), saved before
 * return) unless options carry one, binds storage_port, sets up gossip. Nothing is sent before cluster_start.
 * *out owned by the caller (cluster_destroy). -errno, ILION_EINVALID (bad option),
 * ILION_EINVALID also when data_dir belongs to another cluster name. */
int cluster_create(uv_loop_t *loop, const cluster_options *o, cluster **out);
/* Starts gossip rounds (first round at once) with STATUS NORMAL. */
int cluster_start(cluster *c);
/* Announces shutdown to live peers and stops gossip; messaging stays up until destroy. */
void cluster_stop(cluster *c);
/* Stops everything; memory is released once libuv closed the handles: keep running the loop. */
void cluster_destroy(cluster *c);

/* Identity. */
const net_addr *cluster_local_addr(const cluster *c);
const uint8_t *cluster_host_id(const cluster *c);                 /* 16 bytes */
const int64_t *cluster_local_tokens(const cluster *c, uint32_t *n);
const char *cluster_local_dc(const cluster *c);
const char *cluster_local_rack(const cluster *c);
const char *cluster_name(const cluster *c);

/* The ring of every endpoint whose TOKENS are known (the local node included). Valid until the
 * next loop turn that processes gossip; use ring_version to notice changes. */
const ring *cluster_ring(const cluster *c);
/* Replicas for a token, primary first (see ring_replicas). LOCAL keyspaces: the local node. */
int cluster_replicas(const cluster *c, const schema_replication *repl, int64_t token,
                     net_addr *out, size_t max);

/* Alive as the failure detector says; the local node is always alive. */
bool cluster_is_alive(const cluster *c, const net_addr *ep);
bool cluster_is_local(const cluster *c, const net_addr *ep);

/* Our own gossiped states. */
int cluster_set_app_state(cluster *c, enum gossip_app key, const void *value, size_t len);
int cluster_set_schema_version(cluster *c, const char *uuid_text);
int cluster_set_load(cluster *c, uint64_t bytes);
/* True when every live peer gossips the same SCHEMA version as ours (what drivers wait for
 * after DDL); peers that have not announced one yet count as disagreeing. */
bool cluster_schema_agrees(const cluster *c);

/* Membership events; up to 8 listeners. The same callbacks as gossip's. */
typedef gossip_listener cluster_listener;
int cluster_add_listener(cluster *c, const cluster_listener *l);

/* Another node as gossip describes it (for system.peers, the admin tool and metrics). */
typedef struct cluster_peer {
    net_addr addr;
    bool alive;
    bool has_host_id;
    uint8_t host_id[16];
    char dc[64], rack[64];
    char rpc_address[64];
    uint16_t native_port;
    char release_version[64];
    char schema_version[64];
    char status[32];
    uint64_t load;
    int32_t generation;
    const int64_t *tokens;   /* valid until the next cluster_peer_get/find call */
    uint32_t ntokens;
    double phi;
} cluster_peer;
/* Peers known to gossip, the local node excluded. */
size_t cluster_peer_count(const cluster *c);
int cluster_peer_get(const cluster *c, size_t i, cluster_peer *out);
int cluster_peer_find(const cluster *c, const net_addr *ep, cluster_peer *out);

/* The messaging service (verbs, requests, responses). Gossip verbs are registered by the
 * cluster itself; everything else by its owner. */
net_service *cluster_messaging(cluster *c);
gossip *cluster_gossip(cluster *c);

#endif

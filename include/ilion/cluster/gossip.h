/*
 * Gossip: membership and per-node state, spread epidemically. Every interval a node bumps its
 * heartbeat and sends a SYN (cluster name + a digest (endpoint, generation, max version) of
 * every endpoint it knows) to a random live peer, sometimes to an unreachable one and
 * sometimes to a seed; the peer answers ACK with the states it has newer and digests of what
 * it wants; ACK2 carries those. Endpoint state = heartbeat (generation = start time in s, and a
 * version) + versioned application states; all versions of a node come from one counter.
 *
 * Trust: a node's state is only ever produced by that node. Claims about our own endpoint are
 * ignored, and so are claims older than what we have (a lower generation, or a version we
 * already hold) and generations too far in the future.
 *
 * This module does no I/O and reads no clock: the caller supplies a transport (send a payload
 * with a verb to an address), a millisecond clock and an RNG seed, calls gossip_tick every
 * interval and hands every received gossip message to gossip_receive. So several gossipers
 * run in one process over a simulated network, deterministically (tests), and cluster.c runs
 * one over net/ with a libuv timer. The wire format is in docs/internode-protocol.md.
 *
 * Threads: one thread (the event loop) per gossiper; listeners run on it, inside
 * gossip_tick/gossip_receive.
 */
#ifndef ILION_CLUSTER_GOSSIP_H
#define ILION_CLUSTER_GOSSIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ilion/net/messaging.h"

/* Application state keys; ids are part of the wire format (append only). */
enum gossip_app {
    GOSSIP_APP_STATUS = 0,          /* "NORMAL", "BOOT" (joining: owns nothing yet), "LEAVING",
                                       "LEFT" (owns nothing), "shutdown" (stopped, still owns) */
    GOSSIP_APP_TOKENS = 1,          /* tokens_serialize() bytes */
    GOSSIP_APP_SCHEMA = 2,          /* schema version UUID, text */
    GOSSIP_APP_DC = 3,
    GOSSIP_APP_RACK = 4,
    GOSSIP_APP_RPC_ADDRESS = 5,     /* client address, text "1.2.3.4" */
    GOSSIP_APP_HOST_ID = 6,         /* 16 raw bytes */
    GOSSIP_APP_RELEASE_VERSION = 7, /* text */
    GOSSIP_APP_LOAD = 8,            /* bytes on disk, decimal text */
    GOSSIP_APP_NATIVE_PORT = 9,     /* decimal text */
    GOSSIP_APP_COUNT
};
const char *gossip_app_name(enum gossip_app k);

#define GOSSIP_MAX_VALUE (64u << 10)   /* larger values are refused */
#define GOSSIP_MAX_ENDPOINTS 4096
#define GOSSIP_MAX_SEEDS 64

typedef struct gossip gossip;

typedef struct gossip_transport {
    /* Sends one gossip message; may drop it (return value only logged). */
    int (*send)(void *ctx, const net_addr *to, uint8_t verb, const uint8_t *payload, size_t len);
    uint64_t (*now_ms)(void *ctx);   /* monotonic milliseconds */
    void *ctx;
} gossip_transport;

/* Membership events (any member may be NULL). on_change fires once per application state that
 * changed (including the states of a node just joined, after on_join). */
typedef struct gossip_listener {
    void (*on_join)(void *arg, const net_addr *ep);
    void (*on_up)(void *arg, const net_addr *ep);
    void (*on_down)(void *arg, const net_addr *ep);
    void (*on_restart)(void *arg, const net_addr *ep);  /* a newer generation was seen */
    void (*on_change)(void *arg, const net_addr *ep, enum gossip_app key, const uint8_t *value,
                      size_t len);
    void *arg;
} gossip_listener;

typedef struct gossip_options {
    const char *cluster_name;
    net_addr local;
    const net_addr *seeds;          /* copied; may include the local address */
    size_t nseeds;
    const net_addr *contacts;       /* copied: nodes known from an earlier run, tried (one per
                                       round) only while no peer is alive; may be NULL */
    size_t ncontacts;
    int32_t generation;             /* normally the start time in seconds, > any earlier one */
    uint32_t interval_ms;           /* default 1000; the failure detector's initial interval is 2x */
    double phi_convict_threshold;   /* default 8 */
    uint64_t rng_seed;
} gossip_options;

void gossip_options_default(gossip_options *o);
/* *out owned by the caller (gossip_destroy). Listeners are called from then on. */
int gossip_create(const gossip_options *o, const gossip_transport *t, gossip **out);
void gossip_destroy(gossip *g);

/* Up to 8 listeners; 0 or ILION_ETOOBIG. */
int gossip_add_listener(gossip *g, const gossip_listener *l);

/* Sets one of our own states (copied); it gets a new version and spreads from the next round. */
int gossip_set_local(gossip *g, enum gossip_app key, const void *value, size_t len);

/* One gossip round: heartbeat, SYNs, then failure detection over every known endpoint. */
void gossip_tick(gossip *g);
/* A received GOSSIP_SYN/ACK/ACK2/SHUTDOWN payload from `from` (the sender's listen address).
 * Bad payloads are counted and dropped: returns 0 or a negative error for tests/logs. */
int gossip_receive(gossip *g, const net_addr *from, uint8_t verb, const uint8_t *p, size_t len);
/* Tells live peers we are shutting down (they mark us down at once). */
void gossip_announce_shutdown(gossip *g);

/* Liveness as judged here; the local endpoint is always alive. */
bool gossip_is_alive(const gossip *g, const net_addr *ep);
bool gossip_knows(const gossip *g, const net_addr *ep);
/* Endpoints known, the local one included, in no particular order. */
size_t gossip_endpoint_count(const gossip *g);
const net_addr *gossip_endpoint_at(const gossip *g, size_t i);
/* Value of an application state: 0 with the value and its length (valid until the next gossip call) and
 * *version, or ILION_ENOTFOUND. */
int gossip_get_app(const gossip *g, const net_addr *ep, enum gossip_app key, const uint8_t **value,
                   size_t *len, uint32_t *version);
/* Heartbeat generation and the endpoint's max version; ILION_ENOTFOUND. */
int gossip_get_heartbeat(const gossip *g, const net_addr *ep, int32_t *generation,
                         uint32_t *max_version);
double gossip_phi(const gossip *g, const net_addr *ep);
const net_addr *gossip_local(const gossip *g);

typedef struct gossip_stats {
    uint64_t rounds, syn_sent, syn_recv, ack_recv, ack2_recv, bad_messages;
    uint64_t wrong_cluster, ignored_self_claims, ignored_old_claims;
} gossip_stats;
void gossip_get_stats(const gossip *g, gossip_stats *out);

#endif

/*
 * The token ring: every endpoint's tokens in one sorted array, replica placement by
 * SimpleStrategy and NetworkTopologyStrategy (Cassandra's algorithm: distinct racks first
 * within a DC, rack repeats only when a DC has fewer racks than its RF), ownership shares.
 * A key with token t belongs to the first ring token >= t, wrapping to the first token.
 *
 * Threads: one thread (the event loop) owns a ring; lookups are const and may run concurrently
 * with each other but not with a change.
 */
#ifndef ILION_CLUSTER_RING_H
#define ILION_CLUSTER_RING_H

#include <stddef.h>
#include <stdint.h>

#include "ilion/net/messaging.h"
#include "ilion/schema/replication.h"

#define RING_NAME_MAX 64

typedef struct ring ring;

typedef struct ring_endpoint {
    net_addr addr;
    uint8_t host_id[16];
    char dc[RING_NAME_MAX];
    char rack[RING_NAME_MAX];
    uint32_t ntokens;
} ring_endpoint;

/* *out owned by the caller (ring_destroy). */
int ring_create(ring **out);
void ring_destroy(ring *r);

/* Adds or replaces an endpoint with its tokens (copied). A token already owned by another
 * endpoint moves to this one (the newer claim wins, as when a node replaces another).
 * 0, -ENOMEM, ILION_EINVALID. */
int ring_set_endpoint(ring *r, const net_addr *ep, const uint8_t host_id[16], const char *dc,
                      const char *rack, const int64_t *tokens, uint32_t ntokens);
/* 0 or ILION_ENOTFOUND. */
int ring_remove_endpoint(ring *r, const net_addr *ep);
/* The node itself, answered for SCHEMA_REPL_LOCAL keyspaces. */
void ring_set_local(ring *r, const net_addr *ep);

/* Bumped by every change (callers cache placements per version). */
uint64_t ring_version(const ring *r);

uint32_t ring_endpoint_count(const ring *r);
const ring_endpoint *ring_endpoint_at(const ring *r, uint32_t i);
const ring_endpoint *ring_find(const ring *r, const net_addr *ep);

uint32_t ring_token_count(const ring *r);
int64_t ring_token_at(const ring *r, uint32_t i);                 /* ascending */
const ring_endpoint *ring_token_owner(const ring *r, uint32_t i);
/* Index of the first ring token >= token, wrapping to 0 (binary search). Ring must be
 * non-empty. */
uint32_t ring_first_index(const ring *r, int64_t token);

/* Replicas of `token` under repl, primary first, into out (capacity max). Returns the count
 * (0 on an empty ring; fewer than RF when there are too few endpoints) or ILION_EINVALID. */
int ring_replicas(const ring *r, const schema_replication *repl, int64_t token, net_addr *out,
                  size_t max);

/* Share of the token space each endpoint owns as primary (ranges (prev, t] of its tokens),
 * in ring_endpoint_at order; shares sum to 1. out has ring_endpoint_count entries. */
void ring_ownership(const ring *r, double *out);

#endif

/*
 * Lightweight transactions: one Paxos instance per partition among its replicas
 * (docs/paxos.md). The replica side keeps, per (table id, partition key), the promised
 * ballot, the accepted (ballot, proposal) and the most recent commit in a small durable store
 * (data_dir/paxos/, fdatasync'd before every reply) and answers the PAXOS_PREPARE / PROPOSE /
 * COMMIT verbs. The proposer side (paxos_cas) runs prepare → (re-propose in-progress value) →
 * read at the promise quorum → condition → propose → commit, with ballots that are strictly
 * greater than any this node has seen, and retries contention with jittered backoff.
 *
 * Threads: everything runs on the loop given to paxos_create; callbacks run on it. Durability
 * work (fdatasync of the state log, waiting for the commit log sync) runs on libuv's thread
 * pool and only hands results back to the loop.
 */
#ifndef ILION_PAXOS_PAXOS_H
#define ILION_PAXOS_PAXOS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "ilion/schema/replication.h"
#include "ilion/storage/engine.h"
#include "ilion/storage/partition.h"

struct cluster;  /* NULL on a single node: the local node is the only replica */

/* ---- ballots: version 1 (time-based) UUIDs ---------------------------------------------- */

typedef struct paxos_ballot {
    uint8_t b[16];   /* RFC 4122 byte order; all zero = "none" (lower than any real ballot) */
} paxos_ballot;

/* Orders by the UUID timestamp, then by the remaining bytes (clock sequence, node). */
int paxos_ballot_cmp(const paxos_ballot *a, const paxos_ballot *b);
bool paxos_ballot_is_none(const paxos_ballot *a);
/* The ballot's time in µs since the Unix epoch (the write timestamp its commit uses). */
int64_t paxos_ballot_us(const paxos_ballot *a);

/* A node's ballot generator: every ballot it makes is strictly greater (in µs, hence in
 * order) than every ballot it made or observed, whatever the clock says. */
typedef struct paxos_ballot_gen {
    int64_t last_us;
    uint8_t node[6];
    uint16_t clock_seq;
} paxos_ballot_gen;
void paxos_ballot_gen_init(paxos_ballot_gen *g, const uint8_t node[6], uint16_t clock_seq);
void paxos_ballot_observe(paxos_ballot_gen *g, const paxos_ballot *seen);
void paxos_ballot_next(paxos_ballot_gen *g, int64_t now_us, paxos_ballot *out);

/* ---- the service -------------------------------------------------------------------------- */

typedef struct paxos paxos;

typedef struct paxos_options {
    const char *data_dir;                 /* required: state in data_dir/paxos/ */
    uint32_t cas_contention_timeout_ms;   /* default 1000: total time a CAS may spend retrying */
    uint32_t request_timeout_ms;          /* default 2000 (write_request_timeout_in_ms) */
    uint64_t rng_seed;                    /* 0: from the clock */
    /* Keys whose ballots are all older than this and keep no uncommitted value are dropped
     * from the state when the log is rewritten (their promises live on in one floor ballot).
     * Default 864000 (10 days, gc_grace_seconds' default). */
    uint32_t state_ttl_s;
    /* Injected wall clock for ballots (tests); NULL: clock_now_us. */
    int64_t (*clock_us)(void *arg);
    void *clock_arg;
} paxos_options;
void paxos_options_default(paxos_options *o);

/* Loads data_dir/paxos/ (creating it) and registers the PAXOS_* verbs on the cluster's
 * messaging service (cluster may be NULL). *out owned by the caller (paxos_destroy).
 * Errors: -errno, ILION_ECORRUPT (a damaged record in the middle of the state log). */
int paxos_create(uv_loop_t *loop, storage_engine *engine, struct cluster *cluster,
                 const paxos_options *o, paxos **out);
/* Unregisters the verbs, fails CAS operations in flight with ILION_ECLOSED (their callbacks run
 * before this returns), frees once background syncs finished: keep running the loop. Call
 * before cluster_destroy. */
void paxos_destroy(paxos *p);

/* Serial consistency levels (native protocol codes) and commit levels use coord_cl's codes:
 * 8 SERIAL, 9 LOCAL_SERIAL; commit: 0 ANY, 1 ONE, 2 TWO, 3 THREE, 4 QUORUM, 5 ALL,
 * 6 LOCAL_QUORUM, 7 EACH_QUORUM, 10 LOCAL_ONE. */
enum { PAXOS_CL_SERIAL = 8, PAXOS_CL_LOCAL_SERIAL = 9 };

/* How a CAS ended. err: 0; ILION_EUNAVAILABLE (fewer than a quorum alive, nothing was sent:
 * required/alive set); ILION_ETIMEOUT (unknown outcome: the mutation may or may not be applied;
 * received/blockfor set, commit_phase tells a timeout after the value was chosen — Cassandra
 * reports write type SIMPLE then, CAS otherwise); ILION_ECLOSED; another negative error. */
typedef struct paxos_outcome {
    int err;
    bool applied;
    const st_partition *current;   /* merged data of the promise quorum before the update
                                      (NULL: none); valid during the callback */
    uint16_t cl;                   /* the level that failed */
    int32_t required, alive;       /* Unavailable */
    int32_t received, blockfor;    /* timeouts */
    bool commit_phase;
    uint32_t attempts;             /* ballots used (1 = no contention) */
} paxos_outcome;

/* Called once per attempt with the current data (merged over the promise quorum, NULL when
 * the partition is empty). Return 0 with *mutation = NULL for "condition not met" (the round
 * still completes with an empty proposal) or a mutation of the same partition, in `a` or any
 * memory valid until the callback returns (it is copied at once; its timestamps are replaced
 * by the ballot's µs); a negative value aborts with that error. May run several times (after
 * re-proposals or contention): only its last call's verdict counts. */
typedef int (*paxos_cond_cb)(void *arg, const st_partition *current, st_arena *a,
                             st_partition **mutation);
typedef void (*paxos_done_cb)(void *arg, const paxos_outcome *o);

/* Runs a compare-and-set on (table_id, pk). slice (may be NULL: the whole partition; copied)
 * bounds the data read at the promise quorum. cond NULL: a SERIAL read (an empty proposal;
 * applied is false). done runs exactly once, possibly before this returns (Unavailable).
 * Returns ILION_EINVALID for bad arguments (then done is never called). */
int paxos_cas(paxos *p, const schema_replication *repl, uint64_t table_id, const void *pk,
              uint32_t pklen, const storage_slice *slice, uint16_t serial_cl, uint16_t commit_cl,
              paxos_cond_cb cond, paxos_done_cb done, void *arg);

/* ---- hooks for tests ------------------------------------------------------------------- */

typedef struct paxos_stats {
    uint64_t cas, applied, not_applied, unavailable, timeouts, contentions, reproposals, commit_repairs;
    uint64_t prepares, proposes, commits;  /* replica side, handled */
    uint64_t log_syncs, log_compactions;
    uint64_t stale_replies;  /* proposer: a promise/acceptance for another ballot, ignored */
} paxos_stats;
void paxos_get_stats(const paxos *p, paxos_stats *out);

/* Replica state of one key as this node holds it (a pruned key: promised = the floor);
 * ILION_ENOTFOUND when none. The proposal
 * bytes (if any) are copied into a. */
typedef struct paxos_replica_state {
    paxos_ballot promised, accepted, committed;
    const uint8_t *proposal;
    uint32_t proposal_len;
} paxos_replica_state;
int paxos_replica_get(paxos *p, uint64_t table_id, const void *pk, uint32_t pklen, st_arena *a,
                      paxos_replica_state *out);

/* Sends only a PROPOSE of `mutation` (timestamps set to the ballot) to one replica, with a
 * fresh ballot promised by nobody — a proposer that dies after one accept (CASSANDRA-6012
 * tests). cb gets 0 when it was accepted. */
typedef void (*paxos_test_cb)(void *arg, int err);
int paxos_test_propose_only(paxos *p, uint64_t table_id, const st_partition *mutation,
                            const void *to /* const net_addr *, NULL: local */, paxos_test_cb cb,
                            void *arg);

/* Sends only a COMMIT of `mutation` (fresh ballot) to one replica: a commit that reached one
 * replica only (commit repair tests). */
int paxos_test_commit_only(paxos *p, uint64_t table_id, const st_partition *mutation,
                           const void *to, paxos_test_cb cb, void *arg);

/* Forces a rewrite of the state log (normally done when it grows). */
int paxos_compact(paxos *p);

#endif

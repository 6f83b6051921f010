/*
 * The coordinator: turns a statement's mutations and reads into replica operations at a
 * consistency level, and answers with the result or a Cassandra error (Unavailable,
 * WriteTimeout, ReadTimeout, ...). On one node the only replica is the local engine; with a
 * cluster the replicas come from the ring, remote ones are reached through the MUTATION, READ
 * and RANGE_READ verbs (docs/internode-protocol.md, "Replication and consistency"), reads
 * compare digests and repair stale replicas, and writes a replica missed are kept as durable
 * hints (hints_directory) and replayed when the failure detector sees the replica up again.
 *
 * Threads: everything here runs on the event loop that was passed to coord_create; callbacks
 * are invoked on that loop, never from inside the starting call's failure path (a call that
 * returns an error never calls its callback).
 */
#ifndef ILION_COORD_COORD_H
#define ILION_COORD_COORD_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "ilion/schema/replication.h"
#include "ilion/storage/engine.h"
#include "ilion/storage/partition.h"

typedef struct coord coord;
struct cluster;  /* cluster/ membership; NULL on a single node */

/* Consistency levels, with the native protocol's codes. */
enum coord_cl {
    COORD_CL_ANY = 0, COORD_CL_ONE = 1, COORD_CL_TWO = 2, COORD_CL_THREE = 3,
    COORD_CL_QUORUM = 4, COORD_CL_ALL = 5, COORD_CL_LOCAL_QUORUM = 6, COORD_CL_EACH_QUORUM = 7,
    COORD_CL_SERIAL = 8, COORD_CL_LOCAL_SERIAL = 9, COORD_CL_LOCAL_ONE = 10
};

enum coord_write_type { COORD_WT_SIMPLE, COORD_WT_BATCH, COORD_WT_UNLOGGED_BATCH, COORD_WT_COUNTER,
                        COORD_WT_BATCH_LOG, COORD_WT_CAS };

/* An error in the shape the native protocol reports it. */
typedef struct coord_error {
    uint32_t code;          /* CQL error code: 0x1000 unavailable, 0x1100 write timeout, 0x1200
                               read timeout, 0x1500 write failure, 0x0000 server, ... */
    uint16_t cl;
    int32_t required;       /* unavailable */
    int32_t alive;          /* unavailable */
    int32_t received;       /* timeouts */
    int32_t blockfor;       /* timeouts */
    enum coord_write_type write_type;
    bool data_present;      /* read timeout */
    char message[256];
} coord_error;

/* Creates the coordinator on `loop` over the local engine; cluster may be NULL (one node).
 * Same as coord_create_ex with default options (no hints directory: hinted handoff off). */
int coord_create(uv_loop_t *loop, storage_engine *engine, struct cluster *cluster, coord **out);

/* Options from cassandra.yaml. The node (server/node.c) is expected to call
 *     coord_options o; coord_options_default(&o);
 *     o.write_request_timeout_ms = cfg write_request_timeout_in_ms;   (and read/range)
 *     o.hints_directory = cfg hints_directory; o.max_hint_window_ms = cfg max_hint_window_in_ms;
 *     o.hinted_handoff_enabled = cfg hinted_handoff_enabled;
 *     coord_create_ex(loop, engine, cluster, &o, &coord);
 * and destroy the coordinator before the cluster (coord_destroy unregisters its verbs). */
typedef struct coord_options {
    uint32_t write_request_timeout_ms;   /* default 2000 */
    uint32_t read_request_timeout_ms;    /* default 5000 */
    uint32_t range_request_timeout_ms;   /* default 10000 */
    uint32_t truncate_request_timeout_ms;/* default 60000 */
    const char *hints_directory;         /* NULL or "": no hints are kept */
    bool hinted_handoff_enabled;         /* default true (needs hints_directory) */
    uint32_t max_hint_window_ms;         /* default 10800000 (3 h): older hints are dropped */
    uint32_t hint_check_interval_ms;     /* default 1000: how often hint targets are checked
                                            for being up again */
} coord_options;
void coord_options_default(coord_options *o);
/* Opens (creating) hints_directory and loads the hints kept there by an earlier run. */
int coord_create_ex(uv_loop_t *loop, storage_engine *engine, struct cluster *cluster,
                    const coord_options *o, coord **out);
/* Fails pending requests, then frees once their callbacks ran. With a cluster: call before
 * cluster_destroy. */
void coord_destroy(coord *c);

/* Counters (tests, metrics). */
typedef struct coord_stats {
    uint64_t writes, reads, scans;
    uint64_t unavailables, write_timeouts, read_timeouts;
    uint64_t digest_mismatches, read_repairs;   /* repairs = mutations sent to stale replicas */
    uint64_t hints_written, hints_delivered, hints_dropped;
    uint64_t hints_pending;                     /* records on disk not yet delivered */
} coord_stats;
void coord_get_stats(const coord *c, coord_stats *out);
/* The node's data center (NetworkTopologyStrategy placement and LOCAL_* levels on one node);
 * NULL or unset: every DC named in a keyspace's replication is taken to include this node. */
void coord_set_local_dc(coord *c, const char *dc);

/* The replica count check alone (no I/O): 0 when cl can be met for a keyspace with `repl`, or
 * fills err (Unavailable 0x1000 with required/alive, or Invalid 0x2200 for a level the
 * operation does not support) and returns ILION_EUNAVAILABLE / ILION_EINVALID. */
int coord_check_cl(coord *c, const schema_replication *repl, enum coord_cl cl, bool is_write,
                   coord_error *err);

typedef void (*coord_write_cb)(void *arg, const coord_error *err /* NULL: success */);
/* Writes the mutations (copied before return) at consistency cl; the callback runs once every
 * mutation is acknowledged by cl's number of replicas (after the commit log sync the engine's
 * mode requires). */
int coord_write(coord *c, const schema_replication *repl, st_partition *const *muts, size_t n,
                enum coord_cl cl, enum coord_write_type wt, coord_write_cb cb, void *arg);

/* p (may be NULL: no data) lives until the callback returns. Tombstones are kept in p. */
typedef void (*coord_read_cb)(void *arg, const coord_error *err, const st_partition *p);
int coord_read(coord *c, const schema_replication *repl, uint64_t table_id, const void *pk,
               uint32_t pklen, const storage_slice *slice, enum coord_cl cl, coord_read_cb cb,
               void *arg);

/* Range scan in token order after (start_token, start_pk); each partition goes to part_cb
 * (return non-zero to stop), then done_cb runs once. */
typedef int (*coord_scan_part_cb)(void *arg, const st_partition *p);
typedef void (*coord_scan_done_cb)(void *arg, const coord_error *err);
int coord_scan(coord *c, const schema_replication *repl, uint64_t table_id, int64_t start_token,
               const void *start_pk, uint32_t start_pklen, uint32_t max_partitions,
               enum coord_cl cl, coord_scan_part_cb part_cb, coord_scan_done_cb done_cb, void *arg);

/* TRUNCATE: empties the table on every node of the ring (Cassandra requires them all up:
 * Unavailable with cl ALL otherwise). The callback runs once every node truncated durably, or
 * with a server error (0x0000) naming the node that failed or timed out. One node: local. */
int coord_truncate(coord *c, uint64_t table_id, coord_write_cb cb, void *arg);

#endif

/* Coordinator internals shared by coord.c (core, writes, MUTATION), coord_read.c (reads,
 * digests, read repair, range scans) and coord_hints.c (hinted handoff). Loop thread only,
 * except the sync callback fields guarded by mu. */
#ifndef ILION_COORD_INT_H
#define ILION_COORD_INT_H

#include <pthread.h>

#include "ilion/cluster/cluster.h"
#include "ilion/coord/coord.h"
#include "ilion/net/messaging.h"
#include "ilion/util/buf.h"

#define COORD_MAX_REPLICAS 32
#define COORD_MSG_VERSION 1

/* Something waiting for a local commit log position to be synced. done gets 0, the sync
 * error, or ILION_ECLOSED when the coordinator shuts down. */
typedef struct coord_sync_waiter {
    struct coord_sync_waiter *next;
    uint64_t pos;
    void (*done)(coord *c, void *arg, int err);
    void *arg;
} coord_sync_waiter;

/* Every request in flight, so that coord_destroy can end them. */
typedef struct coord_req {
    struct coord_req *prev, *next;
    void (*abort)(struct coord_req *r);
} coord_req;

typedef struct coord_hints coord_hints;

struct coord {
    uv_loop_t *loop;
    storage_engine *engine;
    struct cluster *cluster;
    net_service *ns;
    coord_options opt;
    char *hints_dir;
    uv_async_t async;
    pthread_mutex_t mu;      /* guards sync_err and closing against the sync thread */
    int sync_err;
    bool closing;
    coord_sync_waiter *whead, *wtail;
    coord_req reqs;          /* sentinel of the in-flight list */
    char local_dc[SCHEMA_NAME_MAX];
    coord_hints *hints;
    uv_timer_t hint_timer;
    int open_handles;        /* async + hint timer; freed when 0 */
    coord_stats stats;
};

/* A replica of one token, with the consistency group it counts in (-1: does not count). */
typedef struct coord_rep {
    net_addr addr;
    bool local;
    bool alive;
    int group;
} coord_rep;

/* Blockfor groups of a level: all must be met (EACH_QUORUM has one per DC). */
typedef struct coord_groups {
    int n;
    int need[SCHEMA_MAX_DCS];
} coord_groups;

void coord_set_err(coord_error *e, uint32_t code, enum coord_cl cl, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const char *coord_cl_name(enum coord_cl cl);
/* Level valid for the operation? 0 or fills err (Invalid). */
int coord_cl_valid(enum coord_cl cl, bool is_write, coord_error *err);
/* Replicas of token (local first, then the local DC, then the others) with their groups and
 * liveness, and the groups' needs. Fills err and returns ILION_EUNAVAILABLE when the alive
 * members cannot meet a group (hints_ok: ANY is met by a hint). */
int coord_replicas_for(coord *c, const schema_replication *repl, int64_t token, enum coord_cl cl,
                       bool is_write, coord_rep *reps, size_t *nreps, coord_groups *g,
                       coord_error *err);
/* Close callback of the coordinator's own handles (data = the coord). */
void coord_handle_closed(uv_handle_t *h);
void coord_req_link(coord *c, coord_req *r, void (*abort)(coord_req *));
void coord_req_unlink(coord_req *r);
/* Waits for the local commit log position pos (done may run before return if synced). */
int coord_wait_sync(coord *c, uint64_t pos, void (*done)(coord *, void *, int), void *arg);
/* Applies an encoded mutation message (u8 version, u32 n, n × (u32 len, partition)) to the
 * local engine; *pos the highest position to wait for. */
int coord_apply_message(coord *c, const uint8_t *p, size_t len, uint64_t *pos);
/* Builds a mutation message of the given encoded partitions. */
void coord_message_begin(buf *b, uint32_t n);
void coord_message_add(buf *b, const uint8_t *enc, size_t len);

/* coord_read.c, coord_truncate.c: verb handlers */
void coord_read_register(coord *c);
void coord_truncate_register(coord *c);

/* coord_hints.c: hints per target host id. */
int coord_hints_open(coord *c);
void coord_hints_close(coord *c);
bool coord_hints_enabled(const coord *c);
/* Stores a hint for the endpoint; 0 or -errno. sync: fsynced before return, else by the next
 * hint check (within hint_check_interval_ms), as Cassandra flushes hints periodically. */
int coord_hints_store(coord *c, const net_addr *target, const uint8_t *msg, size_t len, bool sync);

#endif

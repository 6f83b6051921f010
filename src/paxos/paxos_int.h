/* Internals of the paxos module shared between its files: the replica state store. */
#ifndef ILION_PAXOS_INT_H
#define ILION_PAXOS_INT_H

#include "ilion/paxos/paxos.h"
#include "ilion/util/buf.h"

#define PXS_MAGIC 0x494c5058u   /* "ILPX" */
#define PXS_FORMAT 1u
#define PXS_MAX_RECORD (64u << 20)

typedef struct px_entry {
    struct px_entry *next;
    uint64_t table_id;
    uint64_t hash;
    uint8_t *pk;
    uint32_t pklen;
    paxos_ballot promised, accepted, committed;
    uint8_t *proposal;       /* malloc'd; NULL: none kept (none accepted, or committed since) */
    uint32_t proposal_len;
    uint8_t *cvalue;         /* malloc'd: the value of the most recent commit (NULL: unknown) */
    uint32_t cvalue_len;
} px_entry;

typedef struct px_store {
    char dir[4096];
    char path[4200];
    int fd;                  /* append-only log; used by the sync job while one runs */
    px_entry **buckets;
    size_t nbuckets, count;
    buf pending;             /* records appended since the last sync job started */
    uint64_t log_bytes;      /* bytes in the file (after the jobs in flight) */
    uint64_t live_bytes;     /* bytes a rewrite would produce */
    /* The highest ballot promised or committed by any key pruned so far: a key without an
     * entry has promised this much (the high-water mark survives pruning). */
    paxos_ballot floor;
} px_store;

/* Opens dir (created), loads the log. -errno or ILION_ECORRUPT. */
int pxs_open(px_store *s, const char *data_dir);
void pxs_close(px_store *s);
px_entry *pxs_find(px_store *s, uint64_t table_id, const void *pk, uint32_t pklen, bool create);
/* Appends the entry's full state to s->pending (made durable by the next sync job). */
void pxs_record(px_store *s, const px_entry *e);
/* Drops entries with no proposal kept whose ballots are all older than prune_before_us
 * (raising the floor), then encodes the floor and every entry as a fresh log body (no
 * header) into out. */
void pxs_snapshot(px_store *s, buf *out, int64_t prune_before_us);
/* Sync-job side (any thread, one at a time): appends data and (with fsync) fdatasyncs; or, with rewrite,
 * writes header+data to a temporary file, fsyncs, renames over the log, fsyncs the dir and
 * switches s->fd. Only touches s->fd, s->dir, s->path. */
int pxs_write(px_store *s, const uint8_t *data, size_t len, bool rewrite, bool do_sync);

#endif

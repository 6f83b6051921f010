/*
 * The commit log: an append-only sequence of records in preallocated, fixed-size segment files
 * that are recycled once their data is in SSTables (byte format in docs/commitlog-format.md).
 * Payloads are opaque bytes (the engine writes table id + encoded partition). Positions are
 * 64-bit: segment id << 32 | offset in the segment, increasing across segments and across
 * restarts (segment ids are never reused).
 *
 * Threads: commitlog_append, commitlog_wait, commitlog_is_synced, commitlog_position,
 * commitlog_discard_before and commitlog_active_bytes are safe from many threads at once.
 * Segment files are memory-mapped: commitlog_append copies the record into the mapping (the
 * page cache), so once it returns the record survives a crash of the process in every sync
 * mode; only an OS crash or power loss can lose what is not yet fdatasynced. A sync thread owned
 * by the log fdatasyncs; in batch mode a thread blocked in commitlog_wait that finds the log idle
 * does that fsync itself for everyone pending (leader-based group commit, no thread hand-off).
 * The sync callback runs on whichever of those threads did the sync, one call at a time, and
 * must only hand off. A failed fsync is final: every later append and wait fails with
 * ILION_ESYNCFAILED and the callback gets that error.
 */
#ifndef ILION_STORAGE_COMMITLOG_H
#define ILION_STORAGE_COMMITLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ilion/storage/engine.h"

typedef struct commitlog commitlog;

typedef struct commitlog_options {
    const char *dir;                   /* created if missing */
    enum storage_sync_mode sync_mode;
    uint32_t sync_period_ms;           /* periodic: 0 = 10000 */
    uint32_t group_window_ms;          /* group: 0 = 15 */
    uint64_t segment_size;             /* 0 = 32 MiB; 4 KiB .. 4 GiB - 1 */
    /* Test hook: called instead of fdatasync(fd) when set; returns 0 or -errno. */
    int (*sync_fn)(void *arg, int fd);
    void *sync_fn_arg;
} commitlog_options;

/* Called for each record found during replay, in log order. `pos` is the position just past
 * the record (what commitlog_append returned for it); `payload` is valid only during the call.
 * Returning non-zero stops replay and commitlog_open returns that value. */
typedef int (*commitlog_replay_cb)(void *arg, const uint8_t *payload, size_t len, uint64_t pos);

/* Opens the log directory. Existing segments are replayed through cb (cb may be NULL) before
 * any new record is written; a torn record at the end of the last segment ends the log, a
 * complete record with a bad checksum (or any damage before the last segment's end) is
 * ILION_ECORRUPT, logged with segment file and offset. Records whose end position is
 * <= replay_from are skipped (already in SSTables) and segments entirely before replay_from
 * are recycled at once. New records go to a fresh segment. *out owned by caller
 * (commitlog_close). */
int commitlog_open(const commitlog_options *o, uint64_t replay_from, commitlog_replay_cb cb,
                   void *arg, commitlog **out);
void commitlog_close(commitlog *cl);   /* writes and syncs what was appended, stops the thread */

/* Appends one record of 1 or more bytes (copied into the segment's mapping under a lock: one
 * memcpy, plus a rename when it starts a new segment); *pos is the position just past it (what
 * must be synced). Never waits for I/O. ILION_EINVALID for an empty payload, ILION_ETOOBIG when
 * it cannot fit in a segment, ILION_ESYNCFAILED after a failure, -errno when a new segment
 * file cannot be made (nothing appended; a later append tries again). */
int commitlog_append(commitlog *cl, const void *payload, size_t len, uint64_t *pos);
/* True when pos may be acknowledged: always in periodic mode (unless failed), else once the
 * fsync covering pos has returned. */
bool commitlog_is_synced(commitlog *cl, uint64_t pos);
/* Blocks until commitlog_is_synced(pos); 0 or ILION_ESYNCFAILED. */
int commitlog_wait(commitlog *cl, uint64_t pos);
/* cb(arg, highest synced position, 0 or ILION_ESYNCFAILED) after each sync. Set before writes. */
void commitlog_set_sync_callback(commitlog *cl, storage_sync_cb cb, void *arg);
uint64_t commitlog_position(commitlog *cl);   /* position the next record will start at */
/* Every record before pos is in SSTables: segments entirely before it are recycled (renamed to
 * the free pool and reused for later segments). */
void commitlog_discard_before(commitlog *cl, uint64_t pos);
/* Bytes of segments holding data not yet discarded (drives flush on commitlog_total_space). */
uint64_t commitlog_active_bytes(commitlog *cl);

typedef struct commitlog_stats {
    uint64_t appends;           /* records appended since open */
    uint64_t syncs;             /* fdatasync calls (including the test hook's) */
    uint64_t writes;            /* records and end markers copied into segment mappings */
    uint64_t bytes_written;     /* their bytes */
    uint64_t segments_created;  /* new files (zero-filled ahead of need by the sync thread, or allocated on demand) */
    uint64_t segments_recycled; /* discarded segment files reused for a new segment */
    uint64_t segments_live;     /* segments not yet discarded (including the current one) */
    uint64_t free_segments;     /* files in the free pool (recycled and zero-filled spares) */
} commitlog_stats;
void commitlog_stats_get(commitlog *cl, commitlog_stats *s);

#endif

/*
 * The commit log: an append-only sequence of records in preallocated, fixed-size segment files
 * (format in docs/storage-format.md, "commit log"). Payloads are opaque bytes (the engine
 * writes table id + encoded partition). Positions are 64-bit: segment id << 32 | offset,
 * increasing across segments.
 *
 * Threads: commitlog_append is safe from many threads at once; a sync thread owned by the log
 * writes and fsyncs; the sync callback runs on that thread. A failed fsync is final: every
 * later append and wait fails with ILION_ESYNCFAILED.
 */
#ifndef ILION_STORAGE_COMMITLOG_H
#define ILION_STORAGE_COMMITLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ilion/storage/engine.h"

typedef struct commitlog commitlog;

typedef struct commitlog_options {
    const char *dir;
    enum storage_sync_mode sync_mode;
    uint32_t sync_period_ms;
    uint32_t group_window_ms;
    uint64_t segment_size;
} commitlog_options;

/* Called for each record found during replay, in log order. Returning non-zero stops replay
 * with that value. */
typedef int (*commitlog_replay_cb)(void *arg, const uint8_t *payload, size_t len, uint64_t pos);

/* Opens the log directory. Existing segments are replayed through cb (cb may be NULL) before
 * any new record is written; a torn record at the end of the last segment ends the log, a
 * complete record with a bad checksum is ILION_ECORRUPT (logged with segment file and offset).
 * Records at positions < replay_from are skipped (already in SSTables). */
int commitlog_open(const commitlog_options *o, uint64_t replay_from, commitlog_replay_cb cb,
                   void *arg, commitlog **out);
void commitlog_close(commitlog *cl);   /* syncs what was appended, stops the thread */

/* Appends one record; *pos is the position just past it (what must be synced). */
int commitlog_append(commitlog *cl, const void *payload, size_t len, uint64_t *pos);
bool commitlog_is_synced(commitlog *cl, uint64_t pos);
int commitlog_wait(commitlog *cl, uint64_t pos);
void commitlog_set_sync_callback(commitlog *cl, storage_sync_cb cb, void *arg);
uint64_t commitlog_position(commitlog *cl);   /* position the next record will start at */
/* Every record before pos is in SSTables: segments entirely before it are recycled. */
void commitlog_discard_before(commitlog *cl, uint64_t pos);
/* Bytes of segments holding data not yet discarded (drives flush on commitlog_total_space). */
uint64_t commitlog_active_bytes(commitlog *cl);

#endif

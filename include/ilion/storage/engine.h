/*
 * The per-node storage engine: commit log + memtables + SSTables + compaction for a set of
 * tables, usable as a library with no network. One engine per node today; designed so one can
 * be instantiated per core-slice later (no globals).
 *
 * Threads: storage_apply, storage_read, storage_scan and the table functions are called from
 * one thread (the event loop, or a test/benchmark thread) — or from several when the caller
 * serializes them itself; storage_apply and storage_read are additionally safe to call
 * concurrently from many threads (the durable-write benchmark does). The engine runs its own
 * commit log sync thread and flush/compaction threads; the sync callback runs on the sync
 * thread and must only hand off (e.g. uv_async_send).
 */
#ifndef ILION_STORAGE_ENGINE_H
#define ILION_STORAGE_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "ilion/storage/partition.h"

typedef struct storage_engine storage_engine;

enum storage_sync_mode { STORAGE_SYNC_PERIODIC, STORAGE_SYNC_BATCH, STORAGE_SYNC_GROUP };
enum storage_failure_policy { STORAGE_POLICY_STOP, STORAGE_POLICY_DIE, STORAGE_POLICY_IGNORE };
enum storage_compression { STORAGE_COMPRESS_LZ4, STORAGE_COMPRESS_DEFLATE, STORAGE_COMPRESS_NONE };

typedef struct storage_options {
    const char *data_dir;              /* tables live in data_dir/<table_id hex>/ */
    const char *commitlog_dir;
    enum storage_sync_mode sync_mode;  /* default periodic */
    uint32_t sync_period_ms;           /* periodic: default 10000 */
    uint32_t group_window_ms;          /* group: default 15 */
    uint64_t segment_size;             /* bytes, default 32 MiB */
    uint64_t commitlog_total_space;    /* bytes, default 8 GiB; above it every memtable is flushed */
    /* Bytes across all tables, default 512 MiB. When the active memtables pass half of it the
     * largest is frozen and flushed; writers wait while active + flushing pass all of it. */
    uint64_t memtable_space;
    enum storage_failure_policy commit_failure_policy; /* default stop */
    enum storage_failure_policy disk_failure_policy;   /* default stop */
    uint32_t flush_threads;            /* default 1 */
    uint32_t compaction_threads;       /* default 1 */
    /* Bytes of decompressed, checksum-verified SSTable blocks kept for point reads, shared by
     * all tables; default 256 MiB, 0 disables (cassandra.yaml file_cache_size_in_mb). */
    uint64_t block_cache_bytes;
} storage_options;

/* Fills in the defaults listed above. */
void storage_options_default(storage_options *o);

/* Opens (creating directories as needed): opens every table found on disk, removes leftovers of
 * interrupted flushes/compactions, replays the commit log. *out owned by caller (storage_close).
 * A damaged SSTable fails the open (ILION_ECORRUPT/ECHECKSUM, file and offset logged) unless
 * disk_failure_policy is ignore, which skips it. */
int storage_open(const storage_options *o, storage_engine **out);
/* Flushes nothing: syncs the commit log, stops background threads, frees. */
void storage_close(storage_engine *e);

typedef struct storage_table_options {
    enum storage_compression compression;  /* default lz4 */
    uint32_t block_size;                   /* uncompressed bytes per data block, default 4 KiB (measured: 2x faster point reads than 16 KiB) */
    double bloom_fp_chance;                /* default 0.01 */
    int32_t gc_grace_seconds;              /* default 864000 */
    uint32_t compaction_min_threshold;     /* default 4 */
    uint32_t compaction_max_threshold;     /* default 32 */
} storage_table_options;

void storage_table_options_default(storage_table_options *o);

/* Creates the table durably (its options persisted) or opens it if it exists. */
int storage_table_create(storage_engine *e, uint64_t table_id, const storage_table_options *o);
/* Removes the table and its files; later commit log records for it are ignored. */
int storage_table_drop(storage_engine *e, uint64_t table_id);
/* Deletes all data of the table (durable before it returns). */
int storage_table_truncate(storage_engine *e, uint64_t table_id);
bool storage_table_exists(storage_engine *e, uint64_t table_id);

/* Appends m to the commit log and applies it to the memtable. *sync_pos receives the commit
 * log position that must be synced before the write may be acknowledged (always, whatever the
 * mode: in periodic mode it is already "synced enough" and storage_is_synced says so).
 * Fails with ILION_ESYNCFAILED after a commit log sync failure, ILION_ENOTFOUND for an
 * unknown table, ILION_ECLOSED after a flush/compaction failure under disk_failure_policy
 * stop, ILION_ETOOBIG when the record cannot fit in a commit log segment. May wait while
 * memtables exceed memtable_space until a flush frees memory. */
int storage_apply(storage_engine *e, const st_partition *m, uint64_t *sync_pos);

/* True when pos may be acknowledged under the engine's sync mode. */
bool storage_is_synced(storage_engine *e, uint64_t pos);
/* Blocks until storage_is_synced(pos) or the sync failed (then ILION_ESYNCFAILED). */
int storage_wait_synced(storage_engine *e, uint64_t pos);
/* Called on the sync thread after each sync with the highest synced position (and an error
 * != 0 when the sync failed). Set before writes start. */
typedef void (*storage_sync_cb)(void *arg, uint64_t synced_pos, int err);
void storage_set_sync_callback(storage_engine *e, storage_sync_cb cb, void *arg);

/* A clustering slice: [start, end] with inclusive/exclusive bounds; a NULL bound is open. */
typedef struct storage_slice {
    const uint8_t *start; uint32_t start_len; bool start_incl;
    const uint8_t *end;   uint32_t end_len;   bool end_incl;
    bool reversed;         /* the limit counts live rows from the end of the slice (a descending
                            * query); the result's rows stay in ascending order */
    uint32_t limit;        /* live rows; 0 = no limit */
} storage_slice;

/* True when ck lies inside the slice bounds (the limit and direction are not considered). */
static inline bool storage_slice_contains(const storage_slice *s, const uint8_t *ck, uint32_t cklen) {
    if (!s) return true;
    if (s->start) {
        int c = st_ck_compare(ck, cklen, s->start, s->start_len);
        if (c < 0 || (c == 0 && !s->start_incl)) return false;
    }
    if (s->end) {
        int c = st_ck_compare(ck, cklen, s->end, s->end_len);
        if (c > 0 || (c == 0 && !s->end_incl)) return false;
    }
    return true;
}

/* Reads one partition merged across memtables and SSTables. Tombstones not yet purgeable are
 * kept in the result (the coordinator needs them to reconcile replicas); expired cells are
 * returned as tombstones. A partition with nothing in it gives *out == NULL and 0.
 * The result lives in `a`. Errors: ILION_ECORRUPT/ILION_ECHECKSUM name file and offset in
 * the log. */
int storage_read(storage_engine *e, uint64_t table_id, const void *pk, uint32_t pklen,
                 const storage_slice *slice, int32_t now_s, st_arena *a, st_partition **out);

/* Scans partitions in (token, key) order, starting after (start_token, start_pk) — or from the
 * start of the ring when start_pk is NULL and start_token is INT64_MIN — calling cb for each
 * partition with data until cb returns non-zero or max_partitions were visited (0 = no limit).
 * Each partition passed to cb lives until cb returns. start_pk NULL with another start_token
 * starts after that token; the scan stops at the first partition whose token is > end_token
 * (callers split a range that wraps around the ring). Purgeable tombstones are dropped and
 * expired cells returned as tombstones, as in storage_read. */
typedef int (*storage_scan_cb)(void *arg, const st_partition *p);
int storage_scan(storage_engine *e, uint64_t table_id, int64_t start_token, const void *start_pk,
                 uint32_t start_pklen, int64_t end_token, uint32_t max_partitions,
                 int32_t now_s, storage_scan_cb cb, void *arg);

/* Flushes the table's memtable (all tables when table_id == 0); waits when `wait`. */
int storage_flush(storage_engine *e, uint64_t table_id, bool wait);
/* Runs a major compaction of the table and waits for it. */
int storage_compact(storage_engine *e, uint64_t table_id);

typedef struct storage_table_stats {
    uint64_t memtable_bytes;
    uint64_t memtable_partitions;
    uint32_t sstable_count;
    uint64_t sstable_bytes;
    uint64_t compactions_done;
    uint64_t bloom_negatives;      /* reads an SSTable's bloom filter answered "absent" */
} storage_table_stats;
int storage_table_stats_get(storage_engine *e, uint64_t table_id, storage_table_stats *s);

/* Total on-disk bytes of live SSTables across tables (the LOAD gossip state). */
uint64_t storage_load_bytes(storage_engine *e);

#endif

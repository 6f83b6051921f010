/*
 * SSTables: one immutable file per flush or compaction, "<generation>.sst" in the table's
 * directory (format: docs/sstable-format.md). Data blocks of partitions in (token, key)
 * order, each compressed (lz4, deflate or none) with a CRC32 checked on every read; a
 * block index (first key of every block) loaded into memory at open as the summary; a bloom
 * filter over partition keys; statistics; and a fixed-size footer (the table of contents)
 * with the format version and each section's offset, length and CRC.
 *
 * Written under "<generation>.sst.tmp", fsynced, renamed, directory fsynced.
 *
 * Threads: a writer belongs to one thread (flush or compaction). An open sstable is
 * immutable and reference counted; sstable_get and iterators may run on any number of
 * threads at once (each iterator belongs to one thread).
 */
#ifndef ILION_STORAGE_SSTABLE_H
#define ILION_STORAGE_SSTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ilion/storage/engine.h"
#include "ilion/storage/partition.h"

#define SST_FORMAT_VERSION 2
#define SST_MAX_REPLACES 64

typedef struct sst_stats {
    uint64_t table_id;
    int64_t min_ts, max_ts;            /* over cells, markers and deletions */
    int64_t min_token, max_token;
    uint64_t partitions, rows, cells;
    uint64_t tombstones;               /* partition, row and cell deletions */
    int32_t max_local_deletion_time;   /* INT32_MIN when no tombstones */
    uint64_t commitlog_pos;            /* this table's records at positions <= this are inside */
    uint64_t data_bytes;               /* bytes of the data section */
    uint32_t nreplaces;                /* generations this file replaced (compaction inputs) */
    uint64_t replaces[SST_MAX_REPLACES];
} sst_stats;

/* --- writing ------------------------------------------------------------------------- */

typedef struct sst_writer sst_writer;

/* Starts "<dir>/<gen>.sst.tmp". expected_partitions sizes the bloom filter. */
int sst_writer_open(const char *dir, uint64_t gen, uint64_t table_id,
                    const storage_table_options *o, uint64_t expected_partitions,
                    sst_writer **out);
/* Adds a partition; partitions must come in increasing (token, key) order. Rows with nothing
 * in them are written as given (callers drop what should be purged first). */
int sst_writer_add(sst_writer *w, const st_partition *p);
/* Writes index, filter, statistics and footer, fsyncs, renames, fsyncs the directory.
 * commitlog_pos and the replaced generations go into the statistics. Frees w either way. */
int sst_writer_finish(sst_writer *w, uint64_t commitlog_pos, const uint64_t *replaces,
                      uint32_t nreplaces);
/* Removes the temporary file and frees w. */
void sst_writer_abort(sst_writer *w);
uint64_t sst_writer_partitions(const sst_writer *w);

/* --- reading ------------------------------------------------------------------------- */

typedef struct sstable sstable;

/* Opens "<dir>/<gen>.sst": checks the footer, loads and checks index, filter and stats.
 * Errors ILION_ECORRUPT/ILION_ECHECKSUM/ILION_EFORMAT are logged with file and offset. */
int sstable_open(const char *dir, uint64_t gen, sstable **out);
void sstable_ref(sstable *s);
/* The last unref closes the file, and unlinks it when sstable_mark_obsolete was called. */
void sstable_unref(sstable *s);
void sstable_mark_obsolete(sstable *s);
/* Point reads (sstable_get) of s keep the blocks they verified and decompressed in cache c
 * and look there first; iterators (scans, compaction) bypass it. Call once, before s is
 * shared with other threads; s holds a reference on c. NULL or a second call: no effect. */
struct sst_block_cache;
void sstable_set_block_cache(sstable *s, struct sst_block_cache *c);

uint64_t sstable_generation(const sstable *s);
const sst_stats *sstable_stats(const sstable *s);
uint64_t sstable_file_bytes(const sstable *s);
const char *sstable_path(const sstable *s);

/* Key hash for the bloom filter (the two Murmur3 halves of the partition key). */
typedef struct sst_keyhash { uint64_t h1, h2; } sst_keyhash;
sst_keyhash sst_hash_key(const uint8_t *pk, uint32_t pklen);
/* False when the file certainly holds no data for the key (token range, bloom filter). */
bool sstable_may_contain(const sstable *s, int64_t token, sst_keyhash h);

/* Reads partition pk restricted to slice (NULL: all rows) into arena a (fully copied).
 * *out NULL when absent. ILION_ECHECKSUM/ILION_ECORRUPT when a block is bad (logged). */
int sstable_get(sstable *s, int64_t token, const uint8_t *pk, uint32_t pklen,
                const storage_slice *slice, st_arena *a, st_partition **out);

/* Sequential reader over partitions in (token, key) order. */
typedef struct sst_iter sst_iter;
/* Positioned at the first partition > (token, pk) — >= when inclusive; pk NULL with
 * token INT64_MIN starts at the beginning; pk NULL otherwise: first token > token
 * (>= when inclusive). The iterator holds a reference on s. */
int sst_iter_new(sstable *s, int64_t token, const uint8_t *pk, uint32_t pklen, bool inclusive,
                 sst_iter **out);
/* 1 with *out (in arena a, fully copied) set, 0 at the end, negative on error. */
int sst_iter_next(sst_iter *it, st_arena *a, st_partition **out);
void sst_iter_free(sst_iter *it);

#endif

/*
 * Memtable: one table's recent writes in skiplists over an arena, ordered by
 * (token, partition key, entry kind, clustering key): a directory of buckets over the token
 * space (sized from the memtable budget), each bucket its own skiplist, so a search walks a
 * short list (docs/sstable-format.md §5). A partition deletion is an entry of kind
 * "header" sorted before the partition's rows; each row is its own entry. Updating an existing
 * row stores a freshly merged row and publishes it with one atomic pointer swap, so the old
 * bytes stay valid for readers until the memtable is freed.
 *
 * Threads: one writer at a time (the engine holds the table's write mutex around
 * memtable_apply); any number of readers concurrently with it and with each other, lock-free.
 * Reference counted: the engine's read views and the flush thread each hold a reference.
 */
#ifndef ILION_STORAGE_MEMTABLE_H
#define ILION_STORAGE_MEMTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ilion/storage/engine.h"
#include "ilion/storage/partition.h"

typedef struct memtable memtable;

/* A new empty memtable; start_pos is the commit log position before its first record.
 * NULL on OOM. The caller holds the one reference. */
memtable *memtable_new(uint64_t table_id, uint64_t start_pos);
/* The same, with the key filter sized for about expected_bytes of data. */
memtable *memtable_new_sized(uint64_t table_id, uint64_t start_pos, size_t expected_bytes);
void memtable_ref(memtable *m);
void memtable_unref(memtable *m);

/* Applies a mutation (its bytes are copied). 0 or -ENOMEM. One writer at a time. */
int memtable_apply(memtable *m, const st_partition *p);

size_t memtable_bytes(const memtable *m);         /* arena bytes in use, any thread */
uint64_t memtable_partitions(const memtable *m);  /* distinct partitions (approximate) */
uint64_t memtable_entries(const memtable *m);
bool memtable_empty(const memtable *m);
int64_t memtable_min_timestamp(const memtable *m); /* INT64_MAX when empty */
uint64_t memtable_start_pos(const memtable *m);
uint64_t memtable_table_id(const memtable *m);

/* Reads partition pk (its token given) restricted to rows inside slice (NULL: all rows), into
 * arena a (values point into the memtable, which the caller keeps referenced). *out is NULL
 * when the memtable holds nothing for it. */
int memtable_get(memtable *m, int64_t token, const uint8_t *pk, uint32_t pklen,
                 const storage_slice *slice, st_arena *a, st_partition **out);

/* Iterates partitions in (token, key) order. The partitions returned live in the arena given
 * to memtable_iter_next (values point into the memtable). */
typedef struct memtable_iter {
    memtable *m;
    const void *node;
} memtable_iter;
/* Positions before the first partition > (token, pk) — or >= when `inclusive`; pk NULL with
 * token INT64_MIN starts at the beginning. */
void memtable_iter_seek(memtable_iter *it, memtable *m, int64_t token, const uint8_t *pk,
                        uint32_t pklen, bool inclusive);
/* 1 with *out set, 0 at the end, negative on OOM. */
int memtable_iter_next(memtable_iter *it, st_arena *a, st_partition **out);

#endif

/*
 * Block cache: decompressed SSTable data blocks whose CRC was verified when they were read from
 * the file, kept so that point reads of hot (or merely recent) blocks skip pread, CRC-32C and
 * decompression (docs/sstable-format.md §5 has the measurements). Bounded by a byte budget and
 * split into shards, each an LRU list and hash table under its own mutex, so concurrent readers
 * rarely meet. A block is only ever inserted after its checksum was verified, so a cached block
 * is as trustworthy as a freshly read one.
 *
 * Entries are reference counted: a block returned by lookup or insert stays valid until the
 * caller releases it, even if the cache evicts it meanwhile. The cache itself is reference
 * counted too (the engine and every SSTable attached to it hold a reference).
 *
 * Threads: every function may be called from any thread.
 */
#ifndef ILION_STORAGE_BLOCKCACHE_H
#define ILION_STORAGE_BLOCKCACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct sst_block_cache sst_block_cache;

/* One cached block: `len` plain (decompressed, verified) bytes at `data`. */
typedef struct sst_cached_block {
    const uint8_t *data;
    uint32_t len;
} sst_cached_block;

typedef struct sst_block_cache_stats {
    uint64_t hits, misses, inserts, evictions;
    uint64_t bytes, entries;          /* charged bytes and entries held now */
    uint64_t capacity;
} sst_block_cache_stats;

/* A cache holding up to capacity_bytes (entry overhead included). -ENOMEM on OOM; capacity 0
 * is allowed (nothing is kept, every insert is returned to its caller only). The caller holds
 * one reference. */
int sst_block_cache_new(uint64_t capacity_bytes, sst_block_cache **out);
void sst_block_cache_ref(sst_block_cache *c);
void sst_block_cache_unref(sst_block_cache *c);

/* A fresh id for a file whose blocks go into a cache (ids are never reused in a process). */
uint64_t sst_block_cache_new_file_id(void);

/* Block `block` of file `file_id`, or NULL. A non-NULL result must be released. */
const sst_cached_block *sst_block_cache_lookup(sst_block_cache *c, uint64_t file_id, uint32_t block);
/* Copies len verified plain bytes in as block `block` of `file_id` (replacing an entry for the
 * same block) and returns it referenced (release it), or NULL on OOM. Evicts the least recently
 * used blocks of the shard past its budget; a block larger than a shard's budget is returned
 * without being kept. */
const sst_cached_block *sst_block_cache_insert(sst_block_cache *c, uint64_t file_id, uint32_t block,
                                               const uint8_t *data, uint32_t len);
void sst_block_cache_release(const sst_cached_block *b);
/* Drops every block of file_id. Walks the whole cache: not for the event loop. */
void sst_block_cache_erase_file(sst_block_cache *c, uint64_t file_id);
void sst_block_cache_get_stats(sst_block_cache *c, sst_block_cache_stats *out);

#endif

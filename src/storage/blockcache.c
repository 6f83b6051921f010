/* Sharded LRU cache of verified, decompressed SSTable blocks; see include/ilion/storage/blockcache.h. */
#include "ilion/storage/blockcache.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define BC_SHARD_BITS 4
#define BC_SHARDS (1u << BC_SHARD_BITS)

typedef struct bc_entry {
    sst_cached_block pub;      /* first: a released sst_cached_block * is a bc_entry * */
    atomic_int refs;           /* the cache's own while linked, plus one per holder */
    bool linked;
    uint32_t block;
    uint64_t file_id;
    uint64_t hash;
    size_t charge;
    struct bc_entry *hnext;    /* hash chain */
    struct bc_entry *lprev, *lnext; /* LRU ring; lnext of the sentinel is the oldest */
    /* The block's bytes follow the struct in the same allocation (no flexible array member:
     * a shard embeds an entry as its LRU sentinel). */
} bc_entry;

typedef struct bc_shard {
    pthread_mutex_t mu;
    bc_entry **buckets;
    uint32_t mask;             /* nbuckets - 1 */
    bc_entry lru;              /* sentinel */
    uint64_t usage, capacity, entries;
    uint64_t hits, misses, inserts, evictions;
} __attribute__((aligned(64))) bc_shard;

struct sst_block_cache {
    atomic_int refs;
    uint64_t capacity;
    bc_shard shards[BC_SHARDS];
};

static _Atomic uint64_t next_file_id = 1;

uint64_t sst_block_cache_new_file_id(void) {
    return atomic_fetch_add_explicit(&next_file_id, 1, memory_order_relaxed);
}

static inline uint64_t bc_hash(uint64_t file_id, uint32_t block) {
    uint64_t h = file_id * 0x9E3779B97F4A7C15ULL ^ ((uint64_t)block + 1) * 0xC2B2AE3D27D4EB4FULL;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 29;
    return h;
}

int sst_block_cache_new(uint64_t capacity_bytes, sst_block_cache **out) {
    sst_block_cache *c = aligned_alloc(64, (sizeof *c + 63) & ~(size_t)63);
    if (!c) return -ENOMEM;
    memset(c, 0, sizeof *c);
    atomic_init(&c->refs, 1);
    c->capacity = capacity_bytes;
    for (uint32_t i = 0; i < BC_SHARDS; i++) {
        bc_shard *s = &c->shards[i];
        s->mask = 63;
        s->buckets = calloc(s->mask + 1, sizeof *s->buckets);
        if (!s->buckets) {
            for (uint32_t j = 0; j < i; j++) {
                free(c->shards[j].buckets);
                pthread_mutex_destroy(&c->shards[j].mu);
            }
            free(c);
            return -ENOMEM;
        }
        pthread_mutex_init(&s->mu, NULL);
        s->lru.lprev = s->lru.lnext = &s->lru;
        s->capacity = capacity_bytes / BC_SHARDS;
    }
    *out = c;
    return 0;
}

void sst_block_cache_ref(sst_block_cache *c) { atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed); }

static void entry_unref(bc_entry *e) {
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) free(e);
}

void sst_block_cache_release(const sst_cached_block *b) {
    if (b) entry_unref((bc_entry *)(uintptr_t)b);
}

/* Unlinks e from hash chain and LRU ring (shard locked); the caller drops the cache's ref. */
static void shard_unlink(bc_shard *s, bc_entry *e) {
    bc_entry **pp = &s->buckets[e->hash & s->mask];
    while (*pp != e) pp = &(*pp)->hnext;
    *pp = e->hnext;
    e->lprev->lnext = e->lnext;
    e->lnext->lprev = e->lprev;
    e->linked = false;
    s->usage -= e->charge;
    s->entries--;
}

void sst_block_cache_unref(sst_block_cache *c) {
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1) return;
    for (uint32_t i = 0; i < BC_SHARDS; i++) {
        bc_shard *s = &c->shards[i];
        while (s->lru.lnext != &s->lru) {
            bc_entry *e = s->lru.lnext;
            shard_unlink(s, e);
            entry_unref(e);
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->mu);
    }
    free(c);
}

static bc_entry *shard_find(bc_shard *s, uint64_t h, uint64_t file_id, uint32_t block) {
    for (bc_entry *e = s->buckets[h & s->mask]; e; e = e->hnext)
        if (e->hash == h && e->file_id == file_id && e->block == block) return e;
    return NULL;
}

static void lru_push_newest(bc_shard *s, bc_entry *e) {
    e->lnext = &s->lru;
    e->lprev = s->lru.lprev;
    s->lru.lprev->lnext = e;
    s->lru.lprev = e;
}

const sst_cached_block *sst_block_cache_lookup(sst_block_cache *c, uint64_t file_id, uint32_t block) {
    uint64_t h = bc_hash(file_id, block);
    bc_shard *s = &c->shards[h >> (64 - BC_SHARD_BITS)];
    pthread_mutex_lock(&s->mu);
    bc_entry *e = shard_find(s, h, file_id, block);
    if (e) {
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
        /* Move to the newest end of the LRU ring. */
        e->lprev->lnext = e->lnext;
        e->lnext->lprev = e->lprev;
        lru_push_newest(s, e);
        s->hits++;
    } else {
        s->misses++;
    }
    pthread_mutex_unlock(&s->mu);
    return e ? &e->pub : NULL;
}

/* Doubles the bucket array when chains grow long; failure to grow only costs speed. */
static void shard_maybe_grow(bc_shard *s) {
    if (s->entries <= (uint64_t)s->mask + 1) return;
    uint32_t nmask = s->mask * 2 + 1;
    bc_entry **nb = calloc((size_t)nmask + 1, sizeof *nb);
    if (!nb) return;
    for (uint32_t i = 0; i <= s->mask; i++) {
        bc_entry *e = s->buckets[i];
        while (e) {
            bc_entry *next = e->hnext;
            e->hnext = nb[e->hash & nmask];
            nb[e->hash & nmask] = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = nb;
    s->mask = nmask;
}

const sst_cached_block *sst_block_cache_insert(sst_block_cache *c, uint64_t file_id, uint32_t block,
                                               const uint8_t *data, uint32_t len) {
    bc_entry *e = malloc(sizeof *e + (len ? len : 1));
    if (!e) return NULL;
    uint8_t *bytes = (uint8_t *)(e + 1);
    memcpy(bytes, data, len);
    e->pub.data = bytes;
    e->pub.len = len;
    e->file_id = file_id;
    e->block = block;
    e->hash = bc_hash(file_id, block);
    e->charge = sizeof *e + len;
    e->linked = false;
    e->hnext = e->lprev = e->lnext = NULL;
    bc_shard *s = &c->shards[e->hash >> (64 - BC_SHARD_BITS)];
    if (e->charge > s->capacity) {
        atomic_init(&e->refs, 1); /* the caller's only */
        return &e->pub;
    }
    atomic_init(&e->refs, 2); /* the cache's and the caller's */
    pthread_mutex_lock(&s->mu);
    bc_entry *old = shard_find(s, e->hash, file_id, block);
    if (old) {
        shard_unlink(s, old);
        entry_unref(old);
    }
    while (s->usage + e->charge > s->capacity && s->lru.lnext != &s->lru) {
        bc_entry *victim = s->lru.lnext;
        shard_unlink(s, victim);
        entry_unref(victim);
        s->evictions++;
    }
    bc_entry **b = &s->buckets[e->hash & s->mask];
    e->hnext = *b;
    *b = e;
    lru_push_newest(s, e);
    e->linked = true;
    s->usage += e->charge;
    s->entries++;
    s->inserts++;
    shard_maybe_grow(s);
    pthread_mutex_unlock(&s->mu);
    return &e->pub;
}

void sst_block_cache_erase_file(sst_block_cache *c, uint64_t file_id) {
    for (uint32_t i = 0; i < BC_SHARDS; i++) {
        bc_shard *s = &c->shards[i];
        pthread_mutex_lock(&s->mu);
        bc_entry *e = s->lru.lnext;
        while (e != &s->lru) {
            bc_entry *next = e->lnext;
            if (e->file_id == file_id) {
                shard_unlink(s, e);
                entry_unref(e);
            }
            e = next;
        }
        pthread_mutex_unlock(&s->mu);
    }
}

void sst_block_cache_get_stats(sst_block_cache *c, sst_block_cache_stats *out) {
    memset(out, 0, sizeof *out);
    out->capacity = c->capacity;
    for (uint32_t i = 0; i < BC_SHARDS; i++) {
        bc_shard *s = &c->shards[i];
        pthread_mutex_lock(&s->mu);
        out->hits += s->hits;
        out->misses += s->misses;
        out->inserts += s->inserts;
        out->evictions += s->evictions;
        out->bytes += s->usage;
        out->entries += s->entries;
        pthread_mutex_unlock(&s->mu);
    }
}

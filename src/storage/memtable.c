/* Skiplist memtable; see include/ilion/storage/memtable.h. */
#include "ilion/storage/memtable.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/util/arena.h"

#define MT_MAX_HEIGHT 16
#define MT_MAX_BUCKETS_LG 12
/* Bytes of data per directory bucket when sizing the directory (~500 small rows). */
#define MT_BUCKET_BYTES (64u << 10)

enum { KIND_HEADER = 0, KIND_ROW = 1 };

typedef struct mt_node {
    int64_t token;
    const uint8_t *pk;
    const uint8_t *ck;
    uint32_t pklen;
    uint32_t cklen;
    uint8_t kind;
    uint8_t height;
    _Atomic(void *) data;                 /* header: st_deletion*, row: st_row* */
    struct mt_link {
        _Atomic(struct mt_node *) ptr;
        /* The successor's token, so a search can tell it overshoots without loading the
         * successor (a cache miss). Readers may see it stale against ptr: it is used only to
         * descend early at levels above 0, which is always safe. */
        _Atomic int64_t token;
    } next[];
} mt_node;

struct memtable {
    atomic_int refs;
    uint64_t table_id;
    uint64_t start_pos;
    st_arena arena;            /* keys, rows, values */
    st_arena nodes;            /* skiplist nodes only, packed densely: a search touches nodes
                                * alone (tokens are inline), so fewer pages and cache lines */
    /* Directory over the token space: bucket b holds the tokens whose top bits are b (in
     * unsigned order), each bucket its own skiplist. Partitions are ordered by token first,
     * so the buckets in order are the memtable in order; a search starts in a list of
     * ~1/nbuckets of the entries, saving the dependent cache misses of the upper levels of
     * one big list (see docs/sstable-format.md §5). */
    uint8_t *heads;            /* nbuckets head nodes of HEAD_SIZE bytes */
    _Atomic uint8_t *hgt;      /* per bucket: height of its list - 1 */
    unsigned blg;              /* log2(nbuckets) */
    uint32_t nbuckets;
    uint64_t rng;
    _Atomic size_t bytes;      /* arena bytes beyond the empty memtable's */
    size_t base;
    _Atomic uint64_t partitions;
    _Atomic uint64_t entries;
    _Atomic int64_t min_ts;
    /* Partition-key filter over tokens (one 64-bit word per key, 3 bits): point reads of keys
     * this memtable does not hold skip the skiplist search, which costs a cache miss per level. */
    _Atomic uint64_t *filter;
    unsigned filter_shift;
};

static inline _Atomic uint64_t *filter_word(const memtable *m, int64_t token) {
    return &m->filter[((uint64_t)token * 0x9E3779B97F4A7C15ULL) >> m->filter_shift];
}
static inline uint64_t filter_bits(int64_t token) {
    uint64_t t = (uint64_t)token;
    return (1ULL << (t & 63)) | (1ULL << ((t >> 6) & 63)) | (1ULL << ((t >> 12) & 63));
}

#define HEAD_SIZE (sizeof(mt_node) + MT_MAX_HEIGHT * sizeof(struct mt_link))

static inline uint32_t bucket_of(const memtable *m, int64_t token) {
    return m->blg ? (uint32_t)(((uint64_t)token ^ (1ULL << 63)) >> (64 - m->blg)) : 0;
}
static inline mt_node *bhead(const memtable *m, uint32_t b) {
    return (mt_node *)(void *)(m->heads + (size_t)b * HEAD_SIZE);
}

memtable *memtable_new(uint64_t table_id, uint64_t start_pos) {
    return memtable_new_sized(table_id, start_pos, 0);
}

memtable *memtable_new_sized(uint64_t table_id, uint64_t start_pos, size_t expected_bytes) {
    memtable *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    /* About 8 bits per expected partition of ~128 bytes, 1 KiB .. 4 MiB. */
    size_t words = 128;
    unsigned lg = 7;
    while (words < expected_bytes / 1024 && words < (4u << 20) / 8) {
        words <<= 1;
        lg++;
    }
    m->filter = calloc(words, sizeof *m->filter);
    if (!m->filter) {
        free(m);
        return NULL;
    }
    m->filter_shift = 64 - lg;
    atomic_init(&m->refs, 1);
    m->table_id = table_id;
    m->start_pos = start_pos;
    arena_init(&m->arena);
    arena_init(&m->nodes);
    unsigned blg = 0;
    while (blg < MT_MAX_BUCKETS_LG && ((size_t)MT_BUCKET_BYTES << (blg + 1)) <= expected_bytes) blg++;
    m->blg = blg;
    m->nbuckets = 1u << blg;
    /* calloc: large zeroed blocks come from mmap, so untouched buckets cost no memory. */
    m->heads = calloc(m->nbuckets, HEAD_SIZE);
    m->hgt = calloc(m->nbuckets, sizeof *m->hgt);
    if (!m->heads || !m->hgt) {
        free(m->heads);
        free((void *)m->hgt);
        free((void *)m->filter);
        free(m);
        return NULL;
    }
    m->rng = 0x9E3779B97F4A7C15ULL ^ table_id ^ start_pos;
    m->base = m->arena.total + m->nodes.total;
    atomic_init(&m->bytes, 0);
    atomic_init(&m->min_ts, INT64_MAX);
    return m;
}

void memtable_ref(memtable *m) { atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed); }

void memtable_unref(memtable *m) {
    if (!m) return;
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) {
        arena_free(&m->arena);
        arena_free(&m->nodes);
        free(m->heads);
        free((void *)m->hgt);
        free((void *)m->filter);
        free(m);
    }
}

size_t memtable_bytes(const memtable *m) { return atomic_load_explicit(&m->bytes, memory_order_relaxed); }
uint64_t memtable_partitions(const memtable *m) { return atomic_load_explicit(&m->partitions, memory_order_relaxed); }
uint64_t memtable_entries(const memtable *m) { return atomic_load_explicit(&m->entries, memory_order_relaxed); }
bool memtable_empty(const memtable *m) { return memtable_entries(m) == 0; }
int64_t memtable_min_timestamp(const memtable *m) { return atomic_load_explicit(&m->min_ts, memory_order_relaxed); }
uint64_t memtable_start_pos(const memtable *m) { return m->start_pos; }
uint64_t memtable_table_id(const memtable *m) { return m->table_id; }

static inline mt_node *nx(mt_node *n, int level) {
    return atomic_load_explicit(&n->next[level].ptr, memory_order_acquire);
}

/* Orders entries: (token, pk, kind, ck). */
static inline int node_cmp(const mt_node *n, int64_t token, const uint8_t *pk, uint32_t pklen,
                           int kind, const uint8_t *ck, uint32_t cklen) {
    /* The token decides almost every comparison: no call, no key bytes touched. */
    if (n->token != token) return n->token < token ? -1 : 1;
    int c = st_key_compare(n->token, n->pk, n->pklen, token, pk, pklen);
    if (c) return c;
    if (n->kind != kind) return n->kind < kind ? -1 : 1;
    if (kind == KIND_HEADER) return 0;
    return st_ck_compare(n->ck, n->cklen, ck, cklen);
}

/* First node >= key in the key's bucket (NULL: none there, look in the following buckets);
 * fills prev[] when given. */
static mt_node *find_ge(memtable *m, int64_t token, const uint8_t *pk, uint32_t pklen, int kind,
                        const uint8_t *ck, uint32_t cklen, mt_node **prev) {
    uint32_t b = bucket_of(m, token);
    mt_node *x = bhead(m, b);
    int level = atomic_load_explicit(&m->hgt[b], memory_order_acquire);
    for (;;) {
        mt_node *n = nx(x, level);
        if (n && (level == 0 || atomic_load_explicit(&x->next[level].token, memory_order_relaxed) <= token) &&
            node_cmp(n, token, pk, pklen, kind, ck, cklen) < 0) {
            x = n;
            continue;
        }
        if (prev) prev[level] = x;
        if (level == 0) return n;
        level--;
    }
}

static int random_height(memtable *m) {
    int h = 1;
    while (h < MT_MAX_HEIGHT) {
        m->rng ^= m->rng << 13;
        m->rng ^= m->rng >> 7;
        m->rng ^= m->rng << 17;
        if ((m->rng & 3) != 0) break;
        h++;
    }
    return h;
}

static void note_ts(memtable *m, int64_t ts) {
    if (ts != ST_NO_TIMESTAMP && ts < atomic_load_explicit(&m->min_ts, memory_order_relaxed))
        atomic_store_explicit(&m->min_ts, ts, memory_order_relaxed);
}

/* Copies a row (cells and values, not the ck) into the arena as one allocation. */
static st_row *row_copy(st_arena *a, const st_row *src, const uint8_t *ck) {
    size_t vbytes = 0;
    for (uint32_t i = 0; i < src->ncells; i++) vbytes += (src->cells[i].len + 7) & ~(size_t)7;
    size_t sz = sizeof(st_row) + sizeof(st_cell) * src->ncells + vbytes;
    uint8_t *mem = arena_alloc(a, sz);
    if (!mem) return NULL;
    st_row *r = (st_row *)mem;
    *r = *src;
    r->ck = ck;
    r->cells_cap = 0;
    r->cells = src->ncells ? (st_cell *)(mem + sizeof(st_row)) : NULL;
    uint8_t *v = mem + sizeof(st_row) + sizeof(st_cell) * src->ncells;
    for (uint32_t i = 0; i < src->ncells; i++) {
        r->cells[i] = src->cells[i];
        if (src->cells[i].value) {
            if (src->cells[i].len) memcpy(v, src->cells[i].value, src->cells[i].len);
            r->cells[i].value = v;
            v += (src->cells[i].len + 7) & ~(size_t)7;
        }
    }
    return r;
}

static mt_node *insert_node(memtable *m, mt_node **prev, int64_t token, const uint8_t *pk,
                            uint32_t pklen, int kind, const uint8_t *ck, uint32_t cklen, void *data) {
    int h = random_height(m);
    mt_node *n = arena_alloc(&m->nodes, sizeof(mt_node) + (size_t)h * sizeof(struct mt_link));
    if (!n) return NULL;
    n->token = token;
    n->pk = pk;
    n->pklen = pklen;
    n->ck = ck;
    n->cklen = cklen;
    n->kind = (uint8_t)kind;
    n->height = (uint8_t)h;
    atomic_init(&n->data, data);
    uint32_t b = bucket_of(m, token);
    int cur = atomic_load_explicit(&m->hgt[b], memory_order_relaxed) + 1;
    if (h > cur) {
        for (int i = cur; i < h; i++) prev[i] = bhead(m, b);
    }
    for (int i = 0; i < h; i++) {
        atomic_init(&n->next[i].ptr, atomic_load_explicit(&prev[i]->next[i].ptr, memory_order_relaxed));
        atomic_init(&n->next[i].token, atomic_load_explicit(&prev[i]->next[i].token, memory_order_relaxed));
        atomic_store_explicit(&prev[i]->next[i].token, token, memory_order_relaxed);
        atomic_store_explicit(&prev[i]->next[i].ptr, n, memory_order_release);
    }
    /* Raised after the links are in: a reader seeing the new height finds them set (a reader
     * with the old height just does not use the new levels). */
    if (h > cur) atomic_store_explicit(&m->hgt[b], (uint8_t)(h - 1), memory_order_release);
    atomic_fetch_add_explicit(&m->entries, 1, memory_order_relaxed);
    return n;
}

static inline bool same_pk(const mt_node *n, int64_t token, const uint8_t *pk, uint32_t pklen) {
    return n && n->token == token && n->pklen == pklen && memcmp(n->pk, pk, pklen) == 0;
}

int memtable_apply(memtable *m, const st_partition *p) {
    mt_node *prev[MT_MAX_HEIGHT];
    const uint8_t *pk = NULL; /* arena copy of the key, shared by the partition's nodes */
    bool new_partition = false;
    /* One search finds both the insertion point of the first row and whether the partition
     * exists already (its entries would be right before or at that point). */
    mt_node *first;
    if (p->nrows)
        first = find_ge(m, p->token, p->pk, p->pklen, KIND_ROW, p->rows[0].ck, p->rows[0].cklen, prev);
    else
        first = find_ge(m, p->token, p->pk, p->pklen, KIND_HEADER, NULL, 0, prev);
    if (same_pk(first, p->token, p->pk, p->pklen)) {
        pk = first->pk;
    } else if (prev[0] != bhead(m, bucket_of(m, p->token)) && same_pk(prev[0], p->token, p->pk, p->pklen)) {
        pk = prev[0]->pk;
    } else {
        pk = arena_dup(&m->arena, p->pk, p->pklen);
        if (!pk && p->pklen) return -ENOMEM;
        if (!pk) pk = (const uint8_t *)"";
        new_partition = true;
    }
    bool have_prev = p->del.ts == ST_NO_TIMESTAMP;
    if (new_partition) atomic_fetch_or_explicit(filter_word(m, p->token), filter_bits(p->token), memory_order_relaxed);
    if (p->del.ts != ST_NO_TIMESTAMP) {
        note_ts(m, p->del.ts);
        mt_node *n = find_ge(m, p->token, pk, p->pklen, KIND_HEADER, NULL, 0, prev);
        if (n && node_cmp(n, p->token, pk, p->pklen, KIND_HEADER, NULL, 0) == 0) {
            st_deletion *old = atomic_load_explicit(&n->data, memory_order_relaxed);
            st_deletion d = st_deletion_max(*old, p->del);
            if (d.ts != old->ts || d.local_time != old->local_time) {
                st_deletion *nd = arena_alloc(&m->arena, sizeof *nd);
                if (!nd) return -ENOMEM;
                *nd = d;
                atomic_store_explicit(&n->data, nd, memory_order_release);
            }
        } else {
            st_deletion *nd = arena_alloc(&m->arena, sizeof *nd);
            if (!nd) return -ENOMEM;
            *nd = p->del;
            if (!insert_node(m, prev, p->token, pk, p->pklen, KIND_HEADER, NULL, 0, nd)) return -ENOMEM;
        }
    }
    for (uint32_t i = 0; i < p->nrows; i++) {
        const st_row *r = &p->rows[i];
        note_ts(m, r->marker.ts);
        note_ts(m, r->del.ts);
        for (uint32_t j = 0; j < r->ncells; j++) note_ts(m, r->cells[j].ts);
        mt_node *n = (i == 0 && have_prev) ? first
                                           : find_ge(m, p->token, pk, p->pklen, KIND_ROW, r->ck, r->cklen, prev);
        if (n && node_cmp(n, p->token, pk, p->pklen, KIND_ROW, r->ck, r->cklen) == 0) {
            st_row *old = atomic_load_explicit(&n->data, memory_order_relaxed);
            st_row *cp = row_copy(&m->arena, r, n->ck);
            st_row *merged = arena_alloc(&m->arena, sizeof *merged);
            if (!cp || !merged) return -ENOMEM;
            if (st_row_merge(&m->arena, old, cp, merged) != 0) return -ENOMEM;
            atomic_store_explicit(&n->data, merged, memory_order_release);
        } else {
            const uint8_t *ck = r->cklen ? arena_dup(&m->arena, r->ck, r->cklen) : (const uint8_t *)"";
            if (!ck) return -ENOMEM;
            st_row *cp = row_copy(&m->arena, r, ck);
            if (!cp) return -ENOMEM;
            if (!insert_node(m, prev, p->token, pk, p->pklen, KIND_ROW, ck, r->cklen, cp)) return -ENOMEM;
        }
    }
    if (new_partition && (p->nrows || p->del.ts != ST_NO_TIMESTAMP))
        atomic_fetch_add_explicit(&m->partitions, 1, memory_order_relaxed);
    atomic_store_explicit(&m->bytes, m->arena.total + m->nodes.total - m->base, memory_order_relaxed);
    return 0;
}

/* Collects the entries of the partition starting at n (its first entry) into a new
 * st_partition; *after receives the first node of the next partition. */
static int collect(mt_node *n, const storage_slice *slice, uint64_t table_id, st_arena *a,
                   st_partition **out, mt_node **after) {
    st_partition *p = arena_alloc(a, sizeof *p);
    if (!p) return -ENOMEM;
    memset(p, 0, sizeof *p);
    p->table_id = table_id;
    p->token = n->token;
    p->pk = n->pk;
    p->pklen = n->pklen;
    p->del.ts = ST_NO_TIMESTAMP;
    mt_node *x = n;
    uint32_t count = 0;
    /* Count first so the row array is allocated once. */
    for (mt_node *y = n; y && y->token == n->token && y->pklen == n->pklen &&
                         (y->pk == n->pk || memcmp(y->pk, n->pk, n->pklen) == 0);
         y = nx(y, 0))
        if (y->kind == KIND_ROW) count++;
    p->rows = count ? arena_alloc(a, sizeof(st_row) * count) : NULL;
    if (count && !p->rows) return -ENOMEM;
    for (; x && x->token == n->token && x->pklen == n->pklen &&
           (x->pk == n->pk || memcmp(x->pk, n->pk, n->pklen) == 0);
         x = nx(x, 0)) {
        void *d = atomic_load_explicit(&x->data, memory_order_acquire);
        if (x->kind == KIND_HEADER) {
            p->del = *(st_deletion *)d;
        } else if (p->nrows < count && storage_slice_contains(slice, x->ck, x->cklen)) {
            p->rows[p->nrows++] = *(st_row *)d;
        }
    }
    *after = x;
    *out = p;
    return 0;
}

int memtable_get(memtable *m, int64_t token, const uint8_t *pk, uint32_t pklen,
                 const storage_slice *slice, st_arena *a, st_partition **out) {
    *out = NULL;
    uint64_t want = filter_bits(token);
    if ((atomic_load_explicit(filter_word(m, token), memory_order_relaxed) & want) != want) return 0;
    mt_node *n = find_ge(m, token, pk, pklen, KIND_HEADER, NULL, 0, NULL);
    if (!n || st_key_compare(n->token, n->pk, n->pklen, token, pk, pklen) != 0) return 0;
    mt_node *after;
    int rc = collect(n, slice, m->table_id, a, out, &after);
    if (rc) return rc;
    if ((*out)->nrows == 0 && (*out)->del.ts == ST_NO_TIMESTAMP) *out = NULL;
    return 0;
}

/* The first entry of bucket b or of the buckets after it. */
static mt_node *first_from(memtable *m, uint32_t b) {
    for (; b < m->nbuckets; b++) {
        mt_node *n = nx(bhead(m, b), 0);
        if (n) return n;
    }
    return NULL;
}

/* The entry after n in key order, across buckets. */
static mt_node *succ(memtable *m, mt_node *n) {
    mt_node *s = nx(n, 0);
    return s ? s : first_from(m, bucket_of(m, n->token) + 1);
}

void memtable_iter_seek(memtable_iter *it, memtable *m, int64_t token, const uint8_t *pk,
                        uint32_t pklen, bool inclusive) {
    it->m = m;
    if (!pk && token == INT64_MIN) {
        it->node = first_from(m, 0);
        return;
    }
    if (!pk) {
        /* Everything with this token or after (inclusive) / strictly after the token. */
        mt_node *n = find_ge(m, token, (const uint8_t *)"", 0, KIND_HEADER, NULL, 0, NULL);
        if (!n) n = first_from(m, bucket_of(m, token) + 1);
        if (!inclusive)
            while (n && n->token == token) n = succ(m, n);
        it->node = n;
        return;
    }
    mt_node *n = find_ge(m, token, pk, pklen, KIND_HEADER, NULL, 0, NULL);
    if (!n) n = first_from(m, bucket_of(m, token) + 1);
    if (!inclusive)
        while (n && st_key_compare(n->token, n->pk, n->pklen, token, pk, pklen) == 0) n = succ(m, n);
    it->node = n;
}

int memtable_iter_next(memtable_iter *it, st_arena *a, st_partition **out) {
    mt_node *n = (mt_node *)it->node;
    if (!n) return 0;
    mt_node *after;
    int rc = collect(n, NULL, it->m->table_id, a, out, &after);
    if (rc) return rc;
    it->node = after ? after : first_from(it->m, bucket_of(it->m, n->token) + 1);
    return 1;
}

/* The prepared statement cache: id (MD5 of keyspace + query) → query text, keyspace and the
 * parsed statement. EXECUTE runs the cached syntax tree instead of parsing the text again; the
 * tree holds no pointers into the schema (names are resolved at every execution), so a schema
 * change never leaves it dangling. Entries are reference counted: a request holds its entry
 * while it runs, so eviction or prepared_clear (after a DROP) never frees a tree in use.
 * Bounded: past PREPARED_MAX entries or PREPARED_MAX_BYTES the oldest are evicted, and an
 * EXECUTE of an evicted id gets Unprepared, which drivers answer by preparing again. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec_int.h"
#include "ilion/schema/md5.h"

#define PREPARED_BUCKETS 4096
#define PREPARED_MAX 20000
/* Each entry holds a parse tree (an arena of at least one 4 KiB block): bound the bytes too. */
#define PREPARED_MAX_BYTES (32u << 20)

struct prepared_stmt {
    struct prepared_stmt *next;          /* bucket chain */
    struct prepared_stmt *older, *newer; /* age list */
    int refs;                            /* the cache's own (while cached) + requests' */
    bool cached;
    uint8_t id[16];
    cql_session sess;                    /* the keyspace names resolve against */
    st_arena arena;                      /* the parsed tree */
    cql_stmt *st;                        /* NULL if the text did not parse (then EXECUTE parses) */
    /* The table the statement names, as last resolved, valid while the catalog generation is
     * unchanged (every catalog change bumps it). */
    const void *tq;
    schema_table *t;
    const schema_keyspace *k;
    uint64_t tgen;
    size_t len;
    char q[];
};

struct prepared_cache {
    prepared_stmt *buckets[PREPARED_BUCKETS];
    prepared_stmt *oldest, *newest;
    size_t n;
    size_t bytes;                        /* entry_bytes of the cached entries */
};

static size_t entry_bytes(const prepared_stmt *e) { return sizeof *e + e->len + 1 + e->arena.total; }

prepared_cache *prepared_cache_new(void) { return calloc(1, sizeof(prepared_cache)); }

static void entry_free(prepared_stmt *e) {
    arena_free(&e->arena);
    free(e);
}

void prepared_ref(prepared_stmt *e) { e->refs++; }

void prepared_unref(prepared_stmt *e) {
    if (e && --e->refs == 0) entry_free(e);
}

/* Drops the cache's reference to every entry; entries held by requests live on, uncached. */
static void drop_all(prepared_cache *c) {
    prepared_stmt *e = c->oldest;
    while (e) {
        prepared_stmt *n = e->newer;
        e->cached = false;
        e->next = e->older = e->newer = NULL;
        prepared_unref(e);
        e = n;
    }
    memset(c, 0, sizeof *c);
}

void prepared_cache_free(prepared_cache *c) {
    if (!c) return;
    drop_all(c);
    free(c);
}

void prepared_id(const char *ks, const char *q, size_t len, uint8_t id[16]) {
    schema_md5_ctx m;
    schema_md5_init(&m);
    if (ks) schema_md5_update(&m, ks, strlen(ks) + 1);
    else schema_md5_update(&m, "", 1);
    schema_md5_update(&m, q, len);
    schema_md5_final(&m, id);
}

static size_t bucket(const uint8_t *id) {
    return (size_t)(((uint32_t)id[0] << 8 | id[1]) % PREPARED_BUCKETS);
}

static void unlink_entry(prepared_cache *c, prepared_stmt *e) {
    prepared_stmt **pp = &c->buckets[bucket(e->id)];
    while (*pp && *pp != e) pp = &(*pp)->next;
    if (*pp) *pp = e->next;
    if (e->older) e->older->newer = e->newer;
    else c->oldest = e->newer;
    if (e->newer) e->newer->older = e->older;
    else c->newest = e->older;
    e->next = e->older = e->newer = NULL;
    e->cached = false;
    c->n--;
    c->bytes -= entry_bytes(e);
}

int prepared_put(prepared_cache *c, const uint8_t id[16], const char *ks, const char *q,
                 size_t len) {
    if (prepared_find(c, id, 16)) return 0;
    prepared_stmt *e = malloc(sizeof *e + len + 1);
    if (!e) return -ENOMEM;
    memset(e, 0, sizeof *e);
    memcpy(e->id, id, 16);
    snprintf(e->sess.ks, sizeof e->sess.ks, "%s", ks ? ks : "");
    e->len = len;
    memcpy(e->q, q, len);
    e->q[len] = 0;
    arena_init(&e->arena);
    /* The caller parsed this text already; a failure here (out of memory) only costs the
     * EXECUTEs a parse of their own. */
    if (cql_parse(e->q, len, &e->arena, &e->st, NULL) != 0) {
        arena_free(&e->arena);
        e->st = NULL;
    }
    e->refs = 1;
    e->cached = true;
    size_t b = bucket(id);
    e->next = c->buckets[b];
    c->buckets[b] = e;
    e->older = c->newest;
    if (c->newest) c->newest->newer = e;
    else c->oldest = e;
    c->newest = e;
    c->n++;
    c->bytes += entry_bytes(e);
    while (c->n > PREPARED_MAX || (c->bytes > PREPARED_MAX_BYTES && c->oldest != e)) {
        prepared_stmt *o = c->oldest;
        unlink_entry(c, o);
        prepared_unref(o);
    }
    return 0;
}

prepared_stmt *prepared_find(prepared_cache *c, const uint8_t *id, size_t idlen) {
    if (idlen != 16) return NULL;
    for (prepared_stmt *e = c->buckets[bucket(id)]; e; e = e->next)
        if (memcmp(e->id, id, 16) == 0) return e;
    return NULL;
}

bool prepared_get(prepared_cache *c, const uint8_t *id, size_t idlen, const char **ks,
                  const char **q, size_t *len) {
    prepared_stmt *e = prepared_find(c, id, idlen);
    if (!e) return false;
    *ks = e->sess.ks;
    *q = e->q;
    *len = e->len;
    return true;
}

const char *prepared_query(const prepared_stmt *e, size_t *len) {
    *len = e->len;
    return e->q;
}

cql_session *prepared_session(prepared_stmt *e, cql_executor *x) {
    e->sess.x = x;
    return &e->sess;
}

cql_stmt *prepared_parsed(prepared_stmt *e) { return e->st; }

schema_table *prepared_table(const prepared_stmt *e, const void *q, uint64_t gen,
                             const schema_keyspace **k) {
    if (!e->t || e->tq != q || e->tgen != gen) return NULL;
    if (k) *k = e->k;
    return e->t;
}

const schema_keyspace *prepared_table_keyspace(const prepared_stmt *e, const schema_table *t,
                                               uint64_t gen) {
    return e->t && e->t == t && e->tgen == gen ? e->k : NULL;
}

void prepared_table_remember(prepared_stmt *e, const void *q, uint64_t gen, schema_table *t,
                             const schema_keyspace *k) {
    e->tq = q;
    e->tgen = gen;
    e->t = t;
    e->k = k;
}

void prepared_clear(prepared_cache *c) { drop_all(c); }

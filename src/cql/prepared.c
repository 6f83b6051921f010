/* The prepared statement cache: id (MD5 of keyspace + query) → query text and keyspace. The
 * statement is parsed again at EXECUTE, so a cached entry never holds pointers into a schema
 * that may have changed. Bounded: past PREPARED_MAX entries the oldest are evicted, and an
 * EXECUTE of an evicted id gets Unprepared, which drivers answer by preparing again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec_int.h"
#include "ilion/schema/md5.h"

#define PREPARED_BUCKETS 4096
#define PREPARED_MAX 20000

typedef struct prep_entry {
    struct prep_entry *next;         /* bucket chain */
    struct prep_entry *older, *newer; /* age list */
    uint8_t id[16];
    char ks[SCHEMA_NAME_MAX];
    size_t len;
    char q[];
} prep_entry;

struct prepared_cache {
    prep_entry *buckets[PREPARED_BUCKETS];
    prep_entry *oldest, *newest;
    size_t n;
};

prepared_cache *prepared_cache_new(void) { return calloc(1, sizeof(prepared_cache)); }

void prepared_cache_free(prepared_cache *c) {
    if (!c) return;
    prep_entry *e = c->oldest;
    while (e) {
        prep_entry *n = e->newer;
        free(e);
        e = n;
    }
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

static void unlink_entry(prepared_cache *c, prep_entry *e) {
    prep_entry **pp = &c->buckets[bucket(e->id)];
    while (*pp && *pp != e) pp = &(*pp)->next;
    if (*pp) *pp = e->next;
    if (e->older) e->older->newer = e->newer;
    else c->oldest = e->newer;
    if (e->newer) e->newer->older = e->older;
    else c->newest = e->older;
    c->n--;
}

int prepared_put(prepared_cache *c, const uint8_t id[16], const char *ks, const char *q,
                 size_t len) {
    const char *k2, *q2;
    size_t l2;
    if (prepared_get(c, id, 16, &k2, &q2, &l2)) return 0;
    prep_entry *e = malloc(sizeof *e + len + 1);
    if (!e) return -12;
    memcpy(e->id, id, 16);
    snprintf(e->ks, sizeof e->ks, "%s", ks ? ks : "");
    e->len = len;
    memcpy(e->q, q, len);
    e->q[len] = 0;
    size_t b = bucket(id);
    e->next = c->buckets[b];
    c->buckets[b] = e;
    e->newer = NULL;
    e->older = c->newest;
    if (c->newest) c->newest->newer = e;
    else c->oldest = e;
    c->newest = e;
    c->n++;
    while (c->n > PREPARED_MAX) {
        prep_entry *o = c->oldest;
        unlink_entry(c, o);
        free(o);
    }
    return 0;
}

bool prepared_get(prepared_cache *c, const uint8_t *id, size_t idlen, const char **ks,
                  const char **q, size_t *len) {
    if (idlen != 16) return false;
    for (prep_entry *e = c->buckets[bucket(id)]; e; e = e->next)
        if (memcmp(e->id, id, 16) == 0) {
            *ks = e->ks;
            *q = e->q;
            *len = e->len;
            return true;
        }
    return false;
}

void prepared_clear(prepared_cache *c) {
    prep_entry *e = c->oldest;
    while (e) {
        prep_entry *n = e->newer;
        free(e);
        e = n;
    }
    memset(c, 0, sizeof *c);
}

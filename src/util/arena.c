#include "ilion/util/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct st_arena_block {
    st_arena_block *next;
    size_t size;
    max_align_t data[];
};

#define ARENA_BLOCK 4096u

void arena_init(st_arena *a) { memset(a, 0, sizeof *a); }

void arena_init_buf(st_arena *a, void *mem, size_t n) {
    memset(a, 0, sizeof *a);
    uintptr_t p = ((uintptr_t)mem + 7) & ~(uintptr_t)7;
    uintptr_t e = (uintptr_t)mem + n;
    if (!mem || e <= p) return;
    /* No block owns this space: arena_free only walks head, so it is never freed. */
    a->ptr = (char *)p;
    a->end = (char *)e;
}

void *arena_alloc(st_arena *a, size_t n) {
    n = (n + 7) & ~(size_t)7;
    if (n == 0) n = 8;
    if ((size_t)(a->end - a->ptr) < n || !a->ptr) {
        size_t sz = n > ARENA_BLOCK / 4 ? n : ARENA_BLOCK;
        st_arena_block *b = malloc(sizeof *b + sz);
        if (!b) return NULL;
        b->size = sz;
        a->total += sizeof *b + sz;
        if (n > ARENA_BLOCK / 4 && a->head && a->ptr) {
            /* A big allocation gets its own block behind the current one, which stays in use. */
            b->next = a->head->next;
            a->head->next = b;
            return b->data;
        }
        b->next = a->head;
        a->head = b;
        a->ptr = (char *)b->data;
        a->end = a->ptr + sz;
    }
    void *p = a->ptr;
    a->ptr += n;
    return p;
}

void *arena_dup(st_arena *a, const void *p, size_t n) {
    void *d = arena_alloc(a, n);
    if (d && n) memcpy(d, p, n);
    return d;
}

void arena_free(st_arena *a) {
    st_arena_block *b = a->head;
    while (b) {
        st_arena_block *n = b->next;
        free(b);
        b = n;
    }
    memset(a, 0, sizeof *a);
}

void arena_reset(st_arena *a) { arena_free(a); }

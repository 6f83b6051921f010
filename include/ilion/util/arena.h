/*
 * Bump allocator: many small allocations freed all at once. Not synchronized: an arena
 * belongs to one thread at a time (the request that uses it, or the flush that owns it).
 */
#ifndef ILION_UTIL_ARENA_H
#define ILION_UTIL_ARENA_H

#include <stddef.h>

typedef struct st_arena_block st_arena_block;
typedef struct st_arena {
    st_arena_block *head;
    char *ptr;
    char *end;
    size_t total;          /* bytes obtained from malloc, for accounting */
} st_arena;

void arena_init(st_arena *a);
/* Like arena_init, but allocations use the caller's buffer mem[0..n) first (e.g. space inside
 * the object that owns the arena, so a small request costs no malloc); blocks are malloc'd only
 * once it is full. arena_free never frees mem; re-init the arena to reuse it. */
void arena_init_buf(st_arena *a, void *mem, size_t n);
/* 8-byte aligned; NULL on OOM. Memory lives until arena_free/arena_reset. */
void *arena_alloc(st_arena *a, size_t n);
void *arena_dup(st_arena *a, const void *p, size_t n);
void arena_reset(st_arena *a);   /* frees all but keeps nothing; arena usable again */
void arena_free(st_arena *a);

#endif

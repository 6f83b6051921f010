/*
 * Byte buffers: `buf` is a growable output buffer with big-endian writers; `rd` is a bounded
 * reader over untrusted bytes whose getters fail (return -1) instead of reading past the end.
 * The CQL wire format, internode messages and storage encodings are built from these.
 * Not synchronized: one thread per buffer.
 */
#ifndef ILION_UTIL_BUF_H
#define ILION_UTIL_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    bool oom; /* set when a growth failed; further writes are dropped */
} buf;

void buf_init(buf *b);
void buf_free(buf *b);
void buf_reset(buf *b);                 /* len = 0, keeps capacity */
int buf_reserve(buf *b, size_t extra);  /* 0 or -ENOMEM */
/* Hands the bytes to the caller (free() them) and leaves b empty. */
uint8_t *buf_steal(buf *b, size_t *len);

void buf_put(buf *b, const void *p, size_t n);
void buf_u8(buf *b, uint8_t v);
void buf_u16(buf *b, uint16_t v);
void buf_u32(buf *b, uint32_t v);
void buf_u64(buf *b, uint64_t v);
/* Unsigned LEB128 varint. */
void buf_varint(buf *b, uint64_t v);
/* Patch a big-endian u32 at offset off (for length prefixes written after the body). */
void buf_patch_u32(buf *b, size_t off, uint32_t v);

typedef struct rd {
    const uint8_t *p;
    const uint8_t *end;
} rd;

static inline void rd_init(rd *r, const void *p, size_t n) {
    r->p = p;
    r->end = (const uint8_t *)p + n;
}
static inline size_t rd_left(const rd *r) { return (size_t)(r->end - r->p); }

int rd_u8(rd *r, uint8_t *v);
int rd_u16(rd *r, uint16_t *v);
int rd_u32(rd *r, uint32_t *v);
int rd_u64(rd *r, uint64_t *v);
int rd_varint(rd *r, uint64_t *v);
/* Points *p at the next n bytes without copying. */
int rd_bytes(rd *r, size_t n, const uint8_t **p);

/* Plain big-endian loads/stores for fixed layouts. */
static inline void be16_put(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void be32_put(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void be64_put(uint8_t *p, uint64_t v) { be32_put(p, (uint32_t)(v >> 32)); be32_put(p + 4, (uint32_t)v); }
static inline uint16_t be16_get(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t be32_get(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t be64_get(const uint8_t *p) { return ((uint64_t)be32_get(p) << 32) | be32_get(p + 4); }

#endif

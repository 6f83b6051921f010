#include "ilion/util/buf.h"

#include <errno.h>
#include <stdlib.h>

void buf_init(buf *b) { memset(b, 0, sizeof *b); }

void buf_free(buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

void buf_reset(buf *b) { b->len = 0; }

int buf_reserve(buf *b, size_t extra) {
    if (b->oom) return -ENOMEM;
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra) cap *= 2;
    uint8_t *d = realloc(b->data, cap);
    if (!d) {
        b->oom = true;
        return -ENOMEM;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

uint8_t *buf_steal(buf *b, size_t *len) {
    uint8_t *d = b->data;
    if (len) *len = b->len;
    memset(b, 0, sizeof *b);
    return d;
}

void buf_put(buf *b, const void *p, size_t n) {
    if (n == 0 || buf_reserve(b, n) != 0) return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void buf_u8(buf *b, uint8_t v) { buf_put(b, &v, 1); }
void buf_u16(buf *b, uint16_t v) { uint8_t t[2]; be16_put(t, v); buf_put(b, t, 2); }
void buf_u32(buf *b, uint32_t v) { uint8_t t[4]; be32_put(t, v); buf_put(b, t, 4); }
void buf_u64(buf *b, uint64_t v) { uint8_t t[8]; be64_put(t, v); buf_put(b, t, 8); }

void buf_varint(buf *b, uint64_t v) {
    uint8_t t[10];
    size_t n = 0;
    while (v >= 0x80) {
        t[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    t[n++] = (uint8_t)v;
    buf_put(b, t, n);
}

void buf_patch_u32(buf *b, size_t off, uint32_t v) {
    if (off + 4 <= b->len) be32_put(b->data + off, v);
}

int rd_u8(rd *r, uint8_t *v) {
    if (rd_left(r) < 1) return -1;
    *v = *r->p++;
    return 0;
}
int rd_u16(rd *r, uint16_t *v) {
    if (rd_left(r) < 2) return -1;
    *v = be16_get(r->p);
    r->p += 2;
    return 0;
}
int rd_u32(rd *r, uint32_t *v) {
    if (rd_left(r) < 4) return -1;
    *v = be32_get(r->p);
    r->p += 4;
    return 0;
}
int rd_u64(rd *r, uint64_t *v) {
    if (rd_left(r) < 8) return -1;
    *v = be64_get(r->p);
    r->p += 8;
    return 0;
}
int rd_varint(rd *r, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return -1;
        uint8_t c = *r->p++;
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}
int rd_bytes(rd *r, size_t n, const uint8_t **p) {
    if (rd_left(r) < n) return -1;
    *p = r->p;
    r->p += n;
    return 0;
}

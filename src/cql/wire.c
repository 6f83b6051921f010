#include "ilion/cql/wire.h"

#include <stdlib.h>
#include <string.h>

#include "ilion/cql/exec.h"

void cqlw_string_n(buf *b, const char *s, size_t n) {
    if (n > UINT16_MAX) n = UINT16_MAX;
    buf_u16(b, (uint16_t)n);
    buf_put(b, s, n);
}

void cqlw_string(buf *b, const char *s) { cqlw_string_n(b, s, strlen(s)); }

void cqlw_long_string(buf *b, const char *s, size_t n) {
    buf_u32(b, (uint32_t)n);
    buf_put(b, s, n);
}

void cqlw_bytes(buf *b, const void *p, int32_t n) {
    buf_u32(b, (uint32_t)n);
    if (n > 0) buf_put(b, p, (size_t)n);
}

void cqlw_short_bytes(buf *b, const void *p, uint16_t n) {
    buf_u16(b, n);
    buf_put(b, p, n);
}

void cqlw_string_list(buf *b, const char *const *items, size_t n) {
    buf_u16(b, (uint16_t)n);
    for (size_t i = 0; i < n; i++) cqlw_string(b, items[i]);
}

void cqlw_inet(buf *b, const uint8_t *addr, uint8_t addrlen, int32_t port) {
    buf_u8(b, addrlen);
    buf_put(b, addr, addrlen);
    buf_u32(b, (uint32_t)port);
}

int cqlr_string(rd *r, const char **s, uint16_t *n) {
    const uint8_t *p;
    if (rd_u16(r, n) || rd_bytes(r, *n, &p)) return -1;
    *s = (const char *)p;
    return 0;
}

int cqlr_long_string(rd *r, const char **s, int32_t *n) {
    uint32_t u;
    const uint8_t *p;
    if (rd_u32(r, &u) || (int32_t)u < 0 || rd_bytes(r, u, &p)) return -1;
    *n = (int32_t)u;
    *s = (const char *)p;
    return 0;
}

int cqlr_bytes(rd *r, const uint8_t **p, int32_t *n) {
    uint32_t u;
    if (rd_u32(r, &u)) return -1;
    int32_t v = (int32_t)u;
    if (v < 0) {
        if (v < -2) return -1;
        *p = NULL;
        *n = v;
        return 0;
    }
    if (rd_bytes(r, (size_t)v, p)) return -1;
    *n = v;
    return 0;
}

int cqlr_short_bytes(rd *r, const uint8_t **p, uint16_t *n) {
    if (rd_u16(r, n) || rd_bytes(r, *n, p)) return -1;
    return 0;
}

void cqlw_error(buf *b, uint32_t code, const char *msg) {
    buf_u32(b, code);
    cqlw_string(b, msg);
}

uint8_t *cql_error_body(uint32_t code, const char *msg, size_t *len) {
    buf b;
    buf_init(&b);
    cqlw_error(&b, code, msg);
    if (b.oom) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b, len);
}

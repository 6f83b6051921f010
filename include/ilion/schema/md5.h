/*
 * MD5 (RFC 1321), for identifiers only — prepared statement ids and the schema version UUID —
 * never for security. Pure functions; any thread.
 */
#ifndef ILION_SCHEMA_MD5_H
#define ILION_SCHEMA_MD5_H

#include <stddef.h>
#include <stdint.h>

typedef struct schema_md5_ctx {
    uint32_t h[4];
    uint64_t total;
    uint8_t block[64];
    size_t fill;
} schema_md5_ctx;

void schema_md5_init(schema_md5_ctx *c);
void schema_md5_update(schema_md5_ctx *c, const void *p, size_t n);
void schema_md5_final(schema_md5_ctx *c, uint8_t out[16]);
void schema_md5(const void *p, size_t n, uint8_t out[16]);
/* A name-based UUID (version 3 bits set on an MD5 digest). */
void schema_uuid_v3(const void *p, size_t n, uint8_t out[16]);

#endif

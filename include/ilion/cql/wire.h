/*
 * Native protocol v4 notation (section 3 of native_protocol_v4.spec): [int] [long] [short]
 * [string] [long string] [bytes] [short bytes] [string list] [string map] [inet] ...
 * Writers append to a `buf`; readers take untrusted bytes from an `rd` and return -1 on any
 * malformed or truncated input. Pure functions; any thread.
 */
#ifndef ILION_CQL_WIRE_H
#define ILION_CQL_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "ilion/util/buf.h"

void cqlw_string(buf *b, const char *s);                  /* [string]: u16 length + bytes */
void cqlw_string_n(buf *b, const char *s, size_t n);
void cqlw_long_string(buf *b, const char *s, size_t n);   /* [long string]: i32 length */
void cqlw_bytes(buf *b, const void *p, int32_t n);        /* [bytes]; n < 0 writes null */
void cqlw_short_bytes(buf *b, const void *p, uint16_t n); /* [short bytes] */
void cqlw_string_list(buf *b, const char *const *items, size_t n);
void cqlw_inet(buf *b, const uint8_t *addr, uint8_t addrlen, int32_t port); /* [inet] */

/* Readers: pointers refer into the input; strings are NOT NUL-terminated. */
int cqlr_string(rd *r, const char **s, uint16_t *n);
int cqlr_long_string(rd *r, const char **s, int32_t *n);
int cqlr_bytes(rd *r, const uint8_t **p, int32_t *n);      /* n == -1 null, -2 unset */
int cqlr_short_bytes(rd *r, const uint8_t **p, uint16_t *n);

/* An ERROR body: [int] code + [string] message. */
void cqlw_error(buf *b, uint32_t code, const char *msg);

#endif

/* Arbitrary-precision integer helpers for varint/decimal (two's complement big-endian, the
 * CQL serialization). Internal to schema/. Pure functions. */
#ifndef ILION_SCHEMA_BIGNUM_H
#define ILION_SCHEMA_BIGNUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ilion/util/buf.h"

/* Largest varint/decimal magnitude accepted (bytes); bigger values are refused as invalid. */
#define BIGNUM_MAX_BYTES 4096

/* Decimal digits of |v| (no leading zeros, "0" for zero) appended to out; *neg set.
 * 0, or -1 when len is 0 or too big. */
int bignum_to_decimal(const uint8_t *v, size_t len, bool *neg, buf *out);
/* Minimal two's complement bytes of (neg ? -digits : digits) appended to out. digits are
 * ASCII '0'..'9'. 0, or -1 on a non-digit or too many digits. */
int bignum_from_decimal(const char *digits, size_t n, bool neg, buf *out);
/* Length of the minimal two's complement form of v (drops redundant sign bytes). */
size_t bignum_minimal_offset(const uint8_t *v, size_t len);

#endif

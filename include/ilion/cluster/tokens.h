/*
 * Murmur3 tokens of a node (vnodes): generated at random on a node's first start, then kept
 * (the caller persists them, see localstate.h). A binary form travels in gossip's TOKENS state;
 * a text form ("-9123,42,...", as in cassandra.yaml's initial_token) is for config and logs.
 * Pure functions; any thread.
 */
#ifndef ILION_CLUSTER_TOKENS_H
#define ILION_CLUSTER_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include "ilion/util/buf.h"

#define TOKENS_MAX 1024  /* more vnodes than any sane configuration */

/* n distinct random tokens in (INT64_MIN, INT64_MAX], sorted ascending, from a 64-bit seed
 * (same seed, same tokens). 0 or ILION_EINVALID (n == 0 or n > TOKENS_MAX). */
int tokens_generate(uint32_t n, uint64_t seed, int64_t *out);

/* Sorts ascending and reports duplicates: 0 or ILION_EINVALID. */
int tokens_normalize(int64_t *t, uint32_t n);

/* Binary form: u32 count, then count big-endian i64 (ascending). */
void tokens_serialize(const int64_t *t, uint32_t n, buf *out);
/* Parses the binary form into out (capacity max). 0, ILION_ETRUNCATED, ILION_ECORRUPT
 * (unsorted/duplicate) or ILION_ETOOBIG (count > max). */
int tokens_parse(const uint8_t *p, size_t len, int64_t *out, uint32_t max, uint32_t *n);

/* Text form: decimal tokens separated by commas (spaces allowed). */
void tokens_format(const int64_t *t, uint32_t n, buf *out);   /* NUL-terminated */
int tokens_parse_text(const char *s, int64_t *out, uint32_t max, uint32_t *n);

#endif

/*
 * Bloom filter over 128-bit key hashes (the two Murmur3 halves the token comes from), with
 * Kirsch–Mitzenmacher double hashing. Sized from an expected key count and a false-positive
 * chance (about 9.6 bits and 7 probes per key at 1%). Serialized form in
 * docs/sstable-format.md ("filter"). Building is single-threaded; a finished filter is
 * immutable and may be queried from any thread.
 */
#ifndef ILION_UTIL_BLOOM_H
#define ILION_UTIL_BLOOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ilion/util/buf.h"

typedef struct bloom {
    uint64_t nbits;    /* > 0 */
    uint32_t k;        /* probes per key, 1..30 */
    uint64_t *words;   /* nbits rounded up to 64, owned */
} bloom;

/* 0 or -ENOMEM. fp in (0, 1); nkeys may be 0. */
int bloom_init(bloom *b, uint64_t nkeys, double fp);
void bloom_free(bloom *b);
void bloom_add(bloom *b, uint64_t h1, uint64_t h2);
bool bloom_may_contain(const bloom *b, uint64_t h1, uint64_t h2);
/* Appends k (u32), nbits (u64), then the words (little-endian u64). */
void bloom_encode(const bloom *b, buf *out);
/* Copies from untrusted bytes; ILION_ECORRUPT when the sizes disagree. */
int bloom_decode(bloom *b, const uint8_t *data, size_t len);
size_t bloom_bytes(const bloom *b);

#endif

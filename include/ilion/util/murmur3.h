/*
 * Murmur3 tokens exactly as Cassandra's Murmur3Partitioner computes them: the first 64-bit
 * half of MurmurHash3 x64_128 (seed 0) with Cassandra's signed reading of tail bytes, and
 * INT64_MIN mapped to INT64_MAX. Pure functions; any thread.
 */
#ifndef ILION_UTIL_MURMUR3_H
#define ILION_UTIL_MURMUR3_H

#include <stddef.h>
#include <stdint.h>

/* Token of a serialized partition key (the routing key bytes). */
int64_t murmur3_token(const void *key, size_t len);

/* Full x64_128 hash (Cassandra variant) — out[0] is h1, out[1] is h2. */
void murmur3_x64_128(const void *key, size_t len, uint64_t seed, uint64_t out[2]);

#endif

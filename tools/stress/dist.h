/*
 * Deterministic data for ilion-stress: a seeded RNG, the key populations (seq, uniform,
 * gaussian), and the key and column bytes derived from a key's index alone, so a `read` run
 * can check what an earlier `write` run stored. Pure; one generator per thread.
 */
#ifndef ILION_STRESS_DIST_H
#define ILION_STRESS_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "opts.h"

typedef struct stress_rng {
    uint64_t s;
} stress_rng;

void stress_rng_seed(stress_rng *r, uint64_t seed);
uint64_t stress_rng_next(stress_rng *r);
double stress_rng_double(stress_rng *r);      /* [0, 1) */
double stress_rng_gauss(stress_rng *r);       /* standard normal */
uint64_t stress_rng_below(stress_rng *r, uint64_t n);  /* [0, n), n > 0 */

typedef struct stress_keygen {
    stress_range r;
    uint64_t next;      /* seq position */
    stress_rng rng;
} stress_keygen;

void stress_keygen_init(stress_keygen *g, const stress_range *r, uint64_t seed);
/* Next key index within [r.lo, r.hi]. seq walks lo..hi and wraps. */
uint64_t stress_keygen_next(stress_keygen *g);

#define STRESS_KEY_LEN 10
/* The partition key bytes of index k: 10 lowercase hex digits (more above 2^40). Returns the
 * length written to out (>= 17 bytes). */
size_t stress_key_bytes(uint64_t k, uint8_t *out);
/* Size of column c of key k under the size distribution. */
size_t stress_value_size(uint64_t k, int c, const stress_range *size);
/* Fills out with the bytes of column c of key k (stress_value_size bytes). */
void stress_value_fill(uint64_t k, int c, uint8_t *out, size_t n);

#endif

/* Seeded generators and key/value derivation for ilion-stress. */
#include "dist.h"

#include <math.h>
#include <stdio.h>

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void stress_rng_seed(stress_rng *r, uint64_t seed) { r->s = mix64(seed + 0x9e3779b97f4a7c15ull); }

uint64_t stress_rng_next(stress_rng *r) {
    r->s += 0x9e3779b97f4a7c15ull;
    return mix64(r->s);
}

double stress_rng_double(stress_rng *r) { return (double)(stress_rng_next(r) >> 11) * 0x1.0p-53; }

double stress_rng_gauss(stress_rng *r) {
    double u1 = stress_rng_double(r), u2 = stress_rng_double(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

uint64_t stress_rng_below(stress_rng *r, uint64_t n) {
    /* Multiply-high: unbiased enough for n far below 2^64 and branch-free. */
    return (uint64_t)(((unsigned __int128)stress_rng_next(r) * n) >> 64);
}

void stress_keygen_init(stress_keygen *g, const stress_range *r, uint64_t seed) {
    g->r = *r;
    g->next = 0;
    stress_rng_seed(&g->rng, seed);
}

uint64_t stress_keygen_next(stress_keygen *g) {
    uint64_t span = g->r.hi - g->r.lo + 1; /* 0 when the range is the whole of uint64 */
    switch (g->r.kind) {
    case DIST_SEQ: {
        uint64_t k = g->r.lo + (span ? g->next % span : g->next);
        g->next++;
        return k;
    }
    case DIST_UNIFORM:
        return g->r.lo + (span ? stress_rng_below(&g->rng, span) : stress_rng_next(&g->rng));
    case DIST_GAUSSIAN: {
        double mean = ((double)g->r.lo + (double)g->r.hi) / 2.0;
        double stdev = ((double)g->r.hi - (double)g->r.lo) / 2.0 / g->r.stdvrng;
        double v = round(mean + stdev * stress_rng_gauss(&g->rng));
        if (v < (double)g->r.lo) return g->r.lo;
        if (v >= (double)g->r.hi) return g->r.hi;
        return (uint64_t)v;
    }
    default:
        return g->r.lo;
    }
}

size_t stress_key_bytes(uint64_t k, uint8_t *out) {
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%010llx", (unsigned long long)k);
    for (int i = 0; i < n; i++) out[i] = (uint8_t)tmp[i];
    return (size_t)n;
}

size_t stress_value_size(uint64_t k, int c, const stress_range *size) {
    if (size->kind != DIST_UNIFORM || size->hi == size->lo) return (size_t)size->lo;
    uint64_t h = mix64(k * 0x2545f4914f6cdd1dull + (uint64_t)c * 0x9e3779b97f4a7c15ull + 1);
    return (size_t)(size->lo + h % (size->hi - size->lo + 1));
}

void stress_value_fill(uint64_t k, int c, uint8_t *out, size_t n) {
    uint64_t s = mix64(k ^ ((uint64_t)(c + 1) << 48) ^ 0x5157a1e5ull);
    size_t i = 0;
    while (i < n) {
        s += 0x9e3779b97f4a7c15ull;
        uint64_t w = mix64(s);
        for (int b = 0; b < 8 && i < n; b++, i++) out[i] = (uint8_t)(w >> (8 * b));
    }
}

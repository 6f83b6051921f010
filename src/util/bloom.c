#include "ilion/util/bloom.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/util/err.h"

int bloom_init(bloom *b, uint64_t nkeys, double fp) {
    if (!(fp > 0 && fp < 1)) fp = 0.01;
    if (nkeys == 0) nkeys = 1;
    double bpk = -log(fp) / (M_LN2 * M_LN2);
    uint64_t nbits = (uint64_t)ceil((double)nkeys * bpk);
    if (nbits < 64) nbits = 64;
    int k = (int)lround(bpk * M_LN2);
    if (k < 1) k = 1;
    if (k > 30) k = 30;
    b->nbits = nbits;
    b->k = (uint32_t)k;
    b->words = calloc((nbits + 63) / 64, 8);
    return b->words ? 0 : -ENOMEM;
}

void bloom_free(bloom *b) {
    free(b->words);
    memset(b, 0, sizeof *b);
}

void bloom_add(bloom *b, uint64_t h1, uint64_t h2) {
    uint64_t h = h1;
    for (uint32_t i = 0; i < b->k; i++) {
        uint64_t bit = h % b->nbits;
        b->words[bit >> 6] |= 1ULL << (bit & 63);
        h += h2;
    }
}

bool bloom_may_contain(const bloom *b, uint64_t h1, uint64_t h2) {
    uint64_t h = h1;
    for (uint32_t i = 0; i < b->k; i++) {
        uint64_t bit = h % b->nbits;
        if (!(b->words[bit >> 6] & (1ULL << (bit & 63)))) return false;
        h += h2;
    }
    return true;
}

size_t bloom_bytes(const bloom *b) { return (size_t)((b->nbits + 63) / 64) * 8; }

void bloom_encode(const bloom *b, buf *out) {
    buf_u32(out, b->k);
    buf_u64(out, b->nbits);
    size_t n = (size_t)((b->nbits + 63) / 64);
    if (buf_reserve(out, n * 8) != 0) return;
    for (size_t i = 0; i < n; i++) {
        uint64_t w = b->words[i];
        for (int j = 0; j < 8; j++) out->data[out->len++] = (uint8_t)(w >> (8 * j));
    }
}

int bloom_decode(bloom *b, const uint8_t *data, size_t len) {
    memset(b, 0, sizeof *b);
    if (len < 12) return ILION_ECORRUPT;
    uint32_t k = be32_get(data);
    uint64_t nbits = be64_get(data + 4);
    if (k < 1 || k > 30 || nbits == 0 || nbits > (uint64_t)1 << 40) return ILION_ECORRUPT;
    size_t n = (size_t)((nbits + 63) / 64);
    if (len - 12 != n * 8) return ILION_ECORRUPT;
    b->words = malloc(n * 8);
    if (!b->words) return -ENOMEM;
    const uint8_t *p = data + 12;
    for (size_t i = 0; i < n; i++, p += 8) {
        uint64_t w = 0;
        for (int j = 0; j < 8; j++) w |= (uint64_t)p[j] << (8 * j);
        b->words[i] = w;
    }
    b->k = k;
    b->nbits = nbits;
    return 0;
}

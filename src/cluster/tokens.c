#include "ilion/cluster/tokens.h"

#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "ilion/util/err.h"

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int tokens_normalize(int64_t *t, uint32_t n) {
    qsort(t, n, sizeof *t, cmp_i64);
    for (uint32_t i = 1; i < n; i++)
        if (t[i] == t[i - 1]) return ILION_EINVALID;
    return 0;
}

int tokens_generate(uint32_t n, uint64_t seed, int64_t *out) {
    if (n == 0 || n > TOKENS_MAX) return ILION_EINVALID;
    uint64_t s = seed;
    uint32_t have = 0;
    while (have < n) {
        int64_t v = (int64_t)splitmix64(&s);
        if (v == INT64_MIN) continue;  /* the partitioner's minimum token is never owned */
        bool dup = false;
        for (uint32_t i = 0; i < have; i++) dup |= out[i] == v;
        if (!dup) out[have++] = v;
    }
    qsort(out, n, sizeof *out, cmp_i64);
    return 0;
}

void tokens_serialize(const int64_t *t, uint32_t n, buf *out) {
    buf_u32(out, n);
    for (uint32_t i = 0; i < n; i++) buf_u64(out, (uint64_t)t[i]);
}

int tokens_parse(const uint8_t *p, size_t len, int64_t *out, uint32_t max, uint32_t *n) {
    rd r;
    rd_init(&r, p, len);
    uint32_t cnt;
    if (rd_u32(&r, &cnt) < 0) return ILION_ETRUNCATED;
    if (cnt > max) return ILION_ETOOBIG;
    if (rd_left(&r) != (size_t)cnt * 8) return rd_left(&r) < (size_t)cnt * 8 ? ILION_ETRUNCATED : ILION_ECORRUPT;
    for (uint32_t i = 0; i < cnt; i++) {
        uint64_t v;
        rd_u64(&r, &v);
        out[i] = (int64_t)v;
        if (i && out[i] <= out[i - 1]) return ILION_ECORRUPT;
    }
    *n = cnt;
    return 0;
}

void tokens_format(const int64_t *t, uint32_t n, buf *out) {
    char tmp[32];
    for (uint32_t i = 0; i < n; i++) {
        int k = snprintf(tmp, sizeof tmp, "%s%" PRId64, i ? "," : "", t[i]);
        buf_put(out, tmp, (size_t)k);
    }
    buf_u8(out, 0);
    out->len--;  /* keep the NUL in the buffer but not in the length */
}

int tokens_parse_text(const char *s, int64_t *out, uint32_t max, uint32_t *n) {
    uint32_t cnt = 0;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) break;
        if (cnt == max) return ILION_ETOOBIG;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno == ERANGE) return ILION_EINVALID;
        out[cnt++] = (int64_t)v;
        p = end;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == ',') p++;
        else if (*p) return ILION_EINVALID;
    }
    if (cnt == 0) return ILION_EINVALID;
    *n = cnt;
    return tokens_normalize(out, cnt);
}

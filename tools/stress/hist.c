/* Log-linear histogram: index = exact value below 256, else (octave, top 8 bits). */
#include "hist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void hist_init(hist *h) {
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

uint32_t hist_index(uint64_t v) {
    if (v < HIST_LINEAR) return (uint32_t)v;
    unsigned k = 63u - (unsigned)__builtin_clzll(v);   /* k >= 8 */
    unsigned shift = k - HIST_SUB_BITS;                /* keep the top 8 bits: [128, 256) */
    uint64_t sub = v >> shift;
    return HIST_LINEAR + (k - (HIST_SUB_BITS + 1)) * HIST_SUB + (uint32_t)(sub - HIST_SUB);
}

void hist_bucket_range(uint32_t idx, uint64_t *lo, uint64_t *hi) {
    if (idx < HIST_LINEAR) {
        *lo = *hi = idx;
        return;
    }
    uint32_t rel = idx - HIST_LINEAR;
    unsigned k = rel / HIST_SUB + HIST_SUB_BITS + 1;
    unsigned shift = k - HIST_SUB_BITS;
    uint64_t sub = HIST_SUB + rel % HIST_SUB;
    *lo = sub << shift;
    *hi = *lo + ((1ull << shift) - 1);
}

void hist_record_n(hist *h, uint64_t v, uint64_t n) {
    if (n == 0) return;
    h->counts[hist_index(v)] += n;
    h->count += n;
    h->sum += (double)v * (double)n;
    if (v < h->min) h->min = v;
    if (v > h->max) h->max = v;
}

void hist_record(hist *h, uint64_t v) { hist_record_n(h, v, 1); }

void hist_merge(hist *into, const hist *from) {
    if (from->count == 0) return;
    for (uint32_t i = 0; i < HIST_BUCKETS; i++) into->counts[i] += from->counts[i];
    into->count += from->count;
    into->sum += from->sum;
    if (from->min < into->min) into->min = from->min;
    if (from->max > into->max) into->max = from->max;
}

uint64_t hist_percentile(const hist *h, double p) {
    if (h->count == 0) return 0;
    if (p <= 0) return h->min;
    if (p >= 100) return h->max;
    /* rank = ceil(p/100 * count), at least 1: the same definition as a sorted-array lookup. */
    /* The epsilon keeps binary rounding (99.9% of 1000 = 999.0000000000001) from adding one. */
    double exact = p / 100.0 * (double)h->count * (1.0 - 1e-12);
    uint64_t rank = (uint64_t)exact;
    if ((double)rank < exact) rank++;
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t lo, hi;
            hist_bucket_range(i, &lo, &hi);
            uint64_t mid = lo + (hi - lo) / 2;
            if (mid < h->min) mid = h->min;
            if (mid > h->max) mid = h->max;
            return mid;
        }
    }
    return h->max;
}

double hist_mean(const hist *h) { return h->count ? h->sum / (double)h->count : 0.0; }

int hist_write_sparse(FILE *out, const hist *h) {
    fprintf(out, "%llu %llu %llu %.0f", (unsigned long long)h->count,
            (unsigned long long)(h->count ? h->min : 0), (unsigned long long)h->max, h->sum);
    for (uint32_t i = 0; i < HIST_BUCKETS; i++)
        if (h->counts[i]) fprintf(out, " %u:%llu", i, (unsigned long long)h->counts[i]);
    return ferror(out) ? -EIO : 0;
}

int hist_read_sparse(hist *h, const char *line) {
    hist_init(h);
    char *end;
    errno = 0;
    unsigned long long count = strtoull(line, &end, 10);
    if (end == line || errno) return -1;
    const char *p = end;
    unsigned long long mn = strtoull(p, &end, 10);
    if (end == p) return -1;
    p = end;
    unsigned long long mx = strtoull(p, &end, 10);
    if (end == p) return -1;
    p = end;
    double sum = strtod(p, &end);
    if (end == p) return -1;
    p = end;
    uint64_t seen = 0;
    while (*p == ' ') {
        p++;
        unsigned long idx = strtoul(p, &end, 10);
        if (end == p || *end != ':' || idx >= HIST_BUCKETS) return -1;
        p = end + 1;
        unsigned long long n = strtoull(p, &end, 10);
        if (end == p) return -1;
        p = end;
        h->counts[idx] += n;
        seen += n;
    }
    while (*p == '\n' || *p == '\r') p++;
    if (*p || seen != count || (count && (mn > mx || hist_index(mn) > hist_index(mx)))) return -1;
    h->count = count;
    h->min = count ? mn : UINT64_MAX;
    h->max = mx;
    h->sum = sum;
    return 0;
}

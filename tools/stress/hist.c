/* Log-linear histogram: index = exact value below 256, else (octave, top 8 bits). */
#include "hist.h"

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
    double exact = p / 100.0 * (double)h->count;
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

/*
 * A high-dynamic-range latency histogram for ilion-stress: log-linear buckets (each power of
 * two split into 128 linear sub-buckets), so any recorded value from 1 ns to 2^63 ns is kept
 * with a relative error under 0.4% (half a bucket), in a fixed 59 KiB of counters.
 * Histograms of the same layout merge by adding counters (interval -> total).
 * Not synchronized: one thread per histogram.
 */
#ifndef ILION_STRESS_HIST_H
#define ILION_STRESS_HIST_H

#include <stdint.h>
#include <stdio.h>

#define HIST_SUB_BITS 7                       /* 128 sub-buckets per octave */
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_LINEAR (2u * HIST_SUB)           /* values below 256 are exact */
#define HIST_BUCKETS (HIST_LINEAR + (64u - HIST_SUB_BITS - 1u) * HIST_SUB)

typedef struct hist {
    uint64_t count;
    uint64_t min, max;
    double sum;
    uint64_t counts[HIST_BUCKETS];
} hist;

void hist_init(hist *h);
void hist_record(hist *h, uint64_t v);
void hist_record_n(hist *h, uint64_t v, uint64_t n);
void hist_merge(hist *into, const hist *from);
/* Value at percentile p in [0, 100]: the smallest recorded value v such that at least p% of
 * the values are <= v, approximated by its bucket's midpoint, clamped to [min, max].
 * 0 when empty. */
uint64_t hist_percentile(const hist *h, double p);
double hist_mean(const hist *h);

/* Text form for interval logs (-log hdrfile=): "count min max sum i:n i:n ..." listing the
 * non-empty buckets (index:count) on one line, without the newline. Returns 0 or -errno. */
int hist_write_sparse(FILE *out, const hist *h);
/* Parses that form (h is reset first); 0, or -1 on malformed text or a bucket out of range. */
int hist_read_sparse(hist *h, const char *line);

/* Bucket index and its value range [lo, hi] (exposed for tests). */
uint32_t hist_index(uint64_t v);
void hist_bucket_range(uint32_t idx, uint64_t *lo, uint64_t *hi);

#endif

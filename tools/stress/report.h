/*
 * ilion-stress output: the per-interval line (stdout and the -log file), the final summary,
 * and the self-contained HTML report (-graph file=): inline SVG charts of throughput and
 * latency percentiles over time, no scripts or network. Single-threaded.
 */
#ifndef ILION_STRESS_REPORT_H
#define ILION_STRESS_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hist.h"
#include "opts.h"

typedef struct stress_interval {
    double t_s;            /* end of the interval, seconds since the start */
    double len_s;
    uint64_t ops, errors, mismatches, missing;
    /* cas: answers [applied]=true, [applied]=false, and WriteTimeout (outcome unknown);
     * ops = applied + not_applied */
    uint64_t applied, not_applied, unknown;
    double rate;           /* ops/s */
    double mean_ms, p50_ms, p95_ms, p99_ms, p999_ms, max_ms;
} stress_interval;

typedef struct stress_series {
    stress_interval *v;
    size_t n, cap;
} stress_series;

/* Fills the latency fields of iv from h (ns values). */
void stress_interval_fill(stress_interval *iv, const hist *h);
int stress_series_add(stress_series *s, const stress_interval *iv);
void stress_series_free(stress_series *s);

void stress_print_header(FILE *out);
void stress_print_interval(FILE *out, const stress_interval *iv);
/* The `cas` forms: the mismatch column is replaced by applied, not applied and unknown. */
void stress_print_header_cas(FILE *out);
void stress_print_interval_cas(FILE *out, const stress_interval *iv);
/* Summary block; `total` covers the whole run. */
void stress_print_summary(FILE *out, const stress_opts *o, const stress_interval *total,
                          uint64_t writes, uint64_t reads);
/* The cas part of the summary: outcome counts and the result of the final SERIAL check of
 * every register touched (checked, violations, keys that could not be read). */
void stress_print_cas_summary(FILE *out, const stress_interval *total, uint64_t increments,
                              uint64_t created, uint64_t checked, uint64_t violations,
                              uint64_t unverified);
/* One line of latency figures for one operation type (mixed runs), from h (ns values). */
void stress_print_op_line(FILE *out, const char *op, const hist *h, double secs);
/* Writes the HTML report; 0 or -errno. */
int stress_write_html(const char *path, const stress_opts *o, const char *cmdline,
                      const stress_series *s, const stress_interval *total);

#endif

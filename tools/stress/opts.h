/*
 * Command-line options of ilion-stress, in cassandra-stress's syntax: a command (write, read,
 * mixed, cas) with its options, then option groups (-rate, -node, -schema, -col, -pop, -mode,
 * -log, -graph, -errors, -port). Parsing is pure (no I/O besides the error text) so it is
 * unit-tested. Single-threaded.
 */
#ifndef ILION_STRESS_OPTS_H
#define ILION_STRESS_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define STRESS_MAX_NODES 64

enum stress_cmd { STRESS_WRITE, STRESS_READ, STRESS_MIXED, STRESS_CAS };
/* `cas` keeps one register per key; the population may hold at most this many keys (the tool
 * keeps per-key counts for the final check). */
#define STRESS_CAS_MAX_KEYS 10000000ull
enum stress_dist { DIST_SEQ, DIST_UNIFORM, DIST_GAUSSIAN, DIST_FIXED };

typedef struct stress_range {
    int kind;          /* enum stress_dist */
    uint64_t lo, hi;   /* inclusive */
    double stdvrng;    /* gaussian: (hi-lo)/2 / stdev, default 3 */
} stress_range;

typedef struct stress_opts {
    int command;
    uint32_t ratio_write, ratio_read;   /* mixed */
    uint64_t n;                         /* operations; 0 when a duration is given */
    double duration_s;
    int cl;                             /* consistency code (cas: the commit level) */
    int serial_cl;                      /* cas: SERIAL or LOCAL_SERIAL */
    /* Concurrency: `threads` logical clients, each keeping `inflight` requests outstanding,
     * so threads * inflight requests are in flight; they share connections_per_host
     * connections to each node. */
    int threads;
    int inflight;
    double throttle;                    /* ops/s in total, 0: unthrottled */
    bool fixed;                         /* throttle is a schedule: latency counts from each
                                         * operation's intended start (no coordinated omission) */
    char *nodes[STRESS_MAX_NODES];
    int nnodes;
    int port;
    bool create_schema;
    char keyspace[64];
    int rf;
    char compaction[128];               /* empty: server default */
    char compression[64];               /* sstable compression class, empty: default */
    int ncols;
    stress_range col_size;              /* FIXED(n) or UNIFORM(a..b) */
    stress_range pop;
    bool prepared;
    bool lz4;
    int connections_per_host;
    bool token_aware;
    uint32_t timeout_ms;
    double log_interval_s;
    char log_file[512];
    char hdr_file[512];                 /* per-interval histograms (hist_write_sparse lines) */
    char graph_file[512];
    char title[128];
    char revision[128];                 /* -graph revision=: add this run to an existing report */
    uint64_t errors_max;
    uint64_t seed;
    bool verify;                        /* reads compare values with what write stores */
} stress_opts;

void stress_opts_defaults(stress_opts *o);
/* Parses argv[1..argc-1] into o (defaults first). 0 ok, 1 when help was asked for, -1 on an
 * error described in err. Node names point into argv. */
int stress_opts_parse(stress_opts *o, int argc, char **argv, char *err, size_t errlen);
/* "30s", "2m", "1h", "500ms", plain seconds -> seconds; -1 on bad input. */
double stress_parse_duration(const char *s);
/* "1000000", "1M", "10k" -> count; -1 on bad input. */
int64_t stress_parse_count(const char *s);
void stress_usage(FILE *out);

#endif

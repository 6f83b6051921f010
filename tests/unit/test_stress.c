/* ilion-stress pieces that need no server: the latency histogram, option parsing, key
 * distributions and value derivation, and the report writers. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../tools/cqlclient/codec.c"
#include "../../tools/stress/dist.c"
#include "../../tools/stress/hist.c"
#include "../../tools/stress/opts.c"
#include "../../tools/stress/report.c"

/* ---------------- histogram ---------------- */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The sorted-array percentile with the histogram's rank definition: ceil(p/100 * n). */
static uint64_t exact_percentile(const uint64_t *sorted, size_t n, double p) {
    if (p <= 0) return sorted[0];
    double e = p / 100.0 * (double)n * (1.0 - 1e-12);
    size_t rank = (size_t)e;
    if ((double)rank < e) rank++;
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return sorted[rank - 1];
}

static void check_against_sorted(uint64_t *v, size_t n) {
    static hist h;
    hist_init(&h);
    for (size_t i = 0; i < n; i++) hist_record(&h, v[i]);
    qsort(v, n, sizeof *v, cmp_u64);
    static const double ps[] = {0, 1, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        uint64_t want = exact_percentile(v, n, ps[i]);
        uint64_t got = hist_percentile(&h, ps[i]);
        double rel = want ? fabs((double)got - (double)want) / (double)want : (double)got;
        cr_expect(rel <= 0.01, "p%g: histogram %llu vs exact %llu (%.4f%%)", ps[i],
                  (unsigned long long)got, (unsigned long long)want, rel * 100);
    }
    cr_expect_eq(h.count, n);
    cr_expect_eq(h.min, v[0]);
    cr_expect_eq(h.max, v[n - 1]);
}

Test(hist, index_and_range_cover_every_value) {
    /* Every bucket's range contains the values that map to it, and ranges are contiguous. */
    uint64_t prev_hi = 0;
    for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
        uint64_t lo, hi;
        hist_bucket_range(i, &lo, &hi);
        if (i > 0) cr_assert_eq(lo, prev_hi + 1, "bucket %u starts at %llu", i, (unsigned long long)lo);
        cr_assert_eq(hist_index(lo), i);
        cr_assert_eq(hist_index(hi), i);
        /* Half a bucket is under 0.4% of its lower bound (1% is the promise). */
        if (lo > 0) cr_assert_leq((double)(hi - lo) / 2.0 / (double)lo, 0.004);
        prev_hi = hi;
    }
    cr_assert_eq(prev_hi, UINT64_MAX);
}

Test(hist, exponential_latencies_match_sorted_array) {
    /* A latency-like shape: exponential body around 200 us with a heavy tail up to seconds. */
    size_t n = 200000;
    uint64_t *v = malloc(n * sizeof *v);
    stress_rng r;
    stress_rng_seed(&r, 42);
    for (size_t i = 0; i < n; i++) {
        double u = stress_rng_double(&r);
        double x = -log(1 - u) * 200000.0 + 20000; /* ns */
        if (i % 1000 == 0) x *= 1000;               /* rare stalls */
        v[i] = (uint64_t)x;
    }
    check_against_sorted(v, n);
    free(v);
}

Test(hist, small_and_huge_values) {
    size_t n = 5000;
    uint64_t *v = malloc(n * sizeof *v);
    stress_rng r;
    stress_rng_seed(&r, 7);
    for (size_t i = 0; i < n; i++) {
        unsigned shift = (unsigned)stress_rng_below(&r, 62);
        v[i] = (stress_rng_next(&r) >> 1) >> shift;
    }
    check_against_sorted(v, n);
    free(v);
}

Test(hist, exact_below_256_and_known_percentiles) {
    hist h;
    hist_init(&h);
    for (uint64_t i = 1; i <= 100; i++) hist_record(&h, i);
    cr_expect_eq(hist_percentile(&h, 50), 50);
    cr_expect_eq(hist_percentile(&h, 99), 99);
    cr_expect_eq(hist_percentile(&h, 99.9), 100);   /* rank ceil(99.9) = 100 */
    cr_expect_eq(hist_percentile(&h, 100), 100);
    cr_expect_eq(hist_percentile(&h, 0), 1);
    cr_expect_float_eq(hist_mean(&h), 50.5, 1e-9);
    hist e;
    hist_init(&e);
    cr_expect_eq(hist_percentile(&e, 99), 0);
    hist_init(&h);
    for (uint64_t i = 1; i <= 1000; i++) hist_record(&h, i);
    /* 99.9% of 1000 is rank 999 (not 1000 through binary rounding): 999's bucket [996, 999]. */
    uint64_t p999 = hist_percentile(&h, 99.9);
    cr_expect(p999 >= 996 && p999 <= 999, "p99.9 of 1..1000 = %llu", (unsigned long long)p999);
}

Test(hist, merge_equals_recording_everything_once) {
    static hist a, b, all;
    hist_init(&a);
    hist_init(&b);
    hist_init(&all);
    stress_rng r;
    stress_rng_seed(&r, 3);
    for (int i = 0; i < 50000; i++) {
        uint64_t v = stress_rng_below(&r, 50000000);
        hist_record(i % 3 ? &a : &b, v);
        hist_record(&all, v);
    }
    hist_merge(&a, &b);
    cr_assert_eq(a.count, all.count);
    cr_assert_eq(a.min, all.min);
    cr_assert_eq(a.max, all.max);
    cr_assert_eq(memcmp(a.counts, all.counts, sizeof a.counts), 0);
    for (double p = 1; p < 100; p += 7.5)
        cr_expect_eq(hist_percentile(&a, p), hist_percentile(&all, p));
}

Test(hist, sparse_text_round_trip_and_rejects_bad_lines) {
    static hist h, back, sum;
    hist_init(&h);
    stress_rng r;
    stress_rng_seed(&r, 9);
    for (int i = 0; i < 20000; i++) hist_record(&h, stress_rng_below(&r, 1u << 30) + 1);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_eq(hist_write_sparse(f, &h), 0);
    fclose(f);
    cr_assert_eq(hist_read_sparse(&back, text), 0);
    cr_expect_eq(back.count, h.count);
    cr_expect_eq(back.min, h.min);
    cr_expect_eq(back.max, h.max);
    cr_expect_eq(memcmp(back.counts, h.counts, sizeof h.counts), 0);
    /* Logged intervals merge like live ones. */
    hist_init(&sum);
    hist_merge(&sum, &back);
    hist_merge(&sum, &back);
    cr_expect_eq(sum.count, 2 * h.count);
    cr_expect_eq(hist_percentile(&sum, 99), hist_percentile(&h, 99));
    free(text);
    static const char *bad[] = {"", "x", "3 1 2 6", "1 1 1 1 99999:1", "2 1 1 2 1:1", "1 1 1 1 1;1",
                                "1 5 1 5 5:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(hist_read_sparse(&back, bad[i]), -1, "accepted '%s'", bad[i]);
    cr_expect_eq(hist_read_sparse(&back, "0 0 0 0"), 0);
    cr_expect_eq(back.count, 0);
}

/* ---------------- options ---------------- */

static int parse(stress_opts *o, const char *line, char *err) {
    static char storage[4096];
    static char *argv[128];
    snprintf(storage, sizeof storage, "%s", line);
    int argc = 0;
    argv[argc++] = "ilion-stress";
    for (char *t = strtok(storage, " "); t && argc < 127; t = strtok(NULL, " ")) argv[argc++] = t;
    return stress_opts_parse(o, argc, argv, err, 256);
}

Test(opts, full_cassandra_stress_line) {
    stress_opts o;
    char err[256];
    int rc = parse(&o,
                   "mixed ratio(write=1,read=3) duration=2m cl=QUORUM -rate threads=50 "
                   "throttle=10000/s -node 127.0.0.1,127.0.0.2 -schema replication(factor=3) "
                   "compaction(strategy=SizeTieredCompactionStrategy) compression=LZ4Compressor "
                   "-col n=7 size=FIXED(100) -pop dist=gaussian(1..1000000) -mode native cql3 "
                   "simple compression=lz4 -log interval=2 file=/tmp/x.log -graph file=r.html "
                   "-errors max=10",
                   err);
    cr_assert_eq(rc, 0, "%s", err);
    cr_expect_eq(o.command, STRESS_MIXED);
    cr_expect_eq(o.ratio_write, 1);
    cr_expect_eq(o.ratio_read, 3);
    cr_expect_float_eq(o.duration_s, 120.0, 1e-9);
    cr_expect_eq(o.n, 0);
    cr_expect_eq(o.cl, CQLC_QUORUM);
    cr_expect_eq(o.threads, 50);
    cr_expect_eq(o.inflight, 1);
    cr_expect_float_eq(o.throttle, 10000.0, 1e-9);
    cr_expect_eq(o.nnodes, 2);
    cr_expect_str_eq(o.nodes[1], "127.0.0.2");
    cr_expect_eq(o.rf, 3);
    cr_expect_str_eq(o.compaction, "SizeTieredCompactionStrategy");
    cr_expect_str_eq(o.compression, "LZ4Compressor");
    cr_expect_eq(o.ncols, 7);
    cr_expect_eq(o.col_size.kind, DIST_FIXED);
    cr_expect_eq(o.col_size.lo, 100);
    cr_expect_eq(o.pop.kind, DIST_GAUSSIAN);
    cr_expect_eq(o.pop.lo, 1);
    cr_expect_eq(o.pop.hi, 1000000);
    cr_expect_float_eq(o.pop.stdvrng, 3.0, 1e-9);
    cr_expect(!o.prepared);
    cr_expect(o.lz4);
    cr_expect_float_eq(o.log_interval_s, 2.0, 1e-9);
    cr_expect_str_eq(o.log_file, "/tmp/x.log");
    cr_expect_str_eq(o.graph_file, "r.html");
    cr_expect_eq(o.errors_max, 10);
}

Test(opts, defaults_and_counts) {
    stress_opts o;
    char err[256];
    cr_assert_eq(parse(&o, "write n=1M -pop seq=1..1000 -rate threads=16 inflight=16", err), 0, "%s", err);
    cr_expect_eq(o.command, STRESS_WRITE);
    cr_expect_eq(o.n, 1000000);
    cr_expect_eq(o.threads * o.inflight, 256);
    cr_expect_eq(o.pop.kind, DIST_SEQ);
    cr_expect_eq(o.pop.hi, 1000);
    cr_expect(o.prepared);
    cr_expect_eq(o.nnodes, 1);
    cr_expect_str_eq(o.nodes[0], "127.0.0.1");
    cr_assert_eq(parse(&o, "read", err), 0);
    cr_expect_eq(o.n, 1000000);
    cr_expect_eq(o.cl, CQLC_LOCAL_ONE);
    cr_assert_eq(parse(&o, "help", err), 1);
    cr_assert_eq(parse(&o, "write -rate fixed=500/s", err), 0, "%s", err);
    cr_expect(o.fixed);
    cr_expect_float_eq(o.throttle, 500.0, 1e-9);
    cr_assert_eq(parse(&o, "write -rate threads=1000 inflight=100 -mode connectionsPerHost=4", err), 0, "%s", err);
    cr_assert_eq(parse(&o, "write -rate throttle=500/s", err), 0, "%s", err);
    cr_expect(!o.fixed);
}

Test(opts, cas_command) {
    stress_opts o;
    char err[256];
    cr_assert_eq(parse(&o, "cas n=5000 cl=QUORUM serial_cl=LOCAL_SERIAL -pop seq=1..10 -rate threads=16", err),
                 0, "%s", err);
    cr_expect_eq(o.command, STRESS_CAS);
    cr_expect_eq(o.cl, CQLC_QUORUM);
    cr_expect_eq(o.serial_cl, CQLC_LOCAL_SERIAL);
    cr_expect_eq(o.n, 5000);
    cr_expect_eq(o.pop.hi, 10);
    cr_assert_eq(parse(&o, "cas", err), 0, "%s", err);
    cr_expect_eq(o.serial_cl, CQLC_SERIAL);
    cr_expect_eq(o.cl, CQLC_LOCAL_ONE);
    cr_assert_eq(parse(&o, "cas serial_cl=serial -pop dist=uniform(1..10000000)", err), 0, "%s", err);
}

Test(opts, durations_and_counts) {
    cr_expect_float_eq(stress_parse_duration("30s"), 30.0, 1e-9);
    cr_expect_float_eq(stress_parse_duration("2m"), 120.0, 1e-9);
    cr_expect_float_eq(stress_parse_duration("1h"), 3600.0, 1e-9);
    cr_expect_float_eq(stress_parse_duration("250ms"), 0.25, 1e-9);
    cr_expect_float_eq(stress_parse_duration("5"), 5.0, 1e-9);
    cr_expect_lt(stress_parse_duration("5x"), 0);
    cr_expect_lt(stress_parse_duration("-3s"), 0);
    cr_expect_eq(stress_parse_count("10k"), 10000);
    cr_expect_eq(stress_parse_count("3M"), 3000000);
    cr_expect_lt(stress_parse_count("x"), 0);
    cr_expect_lt(stress_parse_count("99999999999999999999"), 0);
}

Test(opts, errors_are_reported) {
    stress_opts o;
    char err[256];
    static const char *bad[] = {
        "",                                 /* no command */
        "frobnicate",                       /* unknown command */
        "write n=0",                        /* zero ops */
        "write duration=soon",
        "write cl=SOMETIMES",
        "write ratio(write=1)",             /* ratio outside mixed */
        "mixed ratio(delete=1)",
        "mixed ratio(write=0,read=0)",
        "write -rate threads=0",
        "write -rate throttle=fast",
        "write -rate bogus=1",
        "write -col size=GAUSSIAN(1..3)",
        "write -pop seq=10..1",
        "write -pop dist=zipf(1..10)",
        "write -mode compression=snappy",
        "write -schema replication(factor=x)",
        "write -schema compaction(strategy=a'b)",
        "write -bogus x",
        "write -rate",                      /* empty group */
        "write -log interval=0",
        "write -rate threads=1000 inflight=100",   /* 100000 streams on one connection */
        "cas serial_cl=QUORUM",             /* not a serial level */
        "write serial_cl=SERIAL",           /* serial_cl= outside cas */
        "cas cl=SERIAL",                    /* cl= is the commit level */
        "cas -pop seq=1..20000000",         /* more registers than the tool keeps */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        cr_expect_eq(parse(&o, bad[i], err), -1, "'%s' was accepted", bad[i]);
        cr_expect_neq(err[0], 0, "'%s' gave no message", bad[i]);
    }
}

/* ---------------- distributions ---------------- */

Test(dist, seq_walks_and_wraps) {
    stress_range r = {DIST_SEQ, 5, 8, 3};
    stress_keygen g;
    stress_keygen_init(&g, &r, 1);
    uint64_t want[] = {5, 6, 7, 8, 5, 6};
    for (size_t i = 0; i < 6; i++) cr_expect_eq(stress_keygen_next(&g), want[i]);
}

Test(dist, uniform_in_range_and_flat) {
    stress_range r = {DIST_UNIFORM, 1, 10, 3};
    stress_keygen g;
    stress_keygen_init(&g, &r, 99);
    int counts[11] = {0};
    for (int i = 0; i < 100000; i++) {
        uint64_t k = stress_keygen_next(&g);
        cr_assert(k >= 1 && k <= 10);
        counts[k]++;
    }
    for (int k = 1; k <= 10; k++) cr_expect(abs(counts[k] - 10000) < 500, "bucket %d: %d", k, counts[k]);
}

Test(dist, gaussian_mean_and_spread) {
    stress_range r = {DIST_GAUSSIAN, 1, 1000000, 3};
    stress_keygen g;
    stress_keygen_init(&g, &r, 5);
    double sum = 0, sq = 0;
    int n = 100000, within1 = 0;
    double mean = 500000.5, sd = 999999.0 / 2 / 3;
    for (int i = 0; i < n; i++) {
        uint64_t k = stress_keygen_next(&g);
        cr_assert(k >= 1 && k <= 1000000);
        sum += (double)k;
        sq += ((double)k - mean) * ((double)k - mean);
        if (fabs((double)k - mean) <= sd) within1++;
    }
    cr_expect(fabs(sum / n - mean) < sd * 0.02, "mean %f", sum / n);
    cr_expect(fabs(sqrt(sq / n) / sd - 1) < 0.05, "stdev %f vs %f", sqrt(sq / n), sd);
    cr_expect(fabs((double)within1 / n - 0.6827) < 0.01, "within 1 sd: %f", (double)within1 / n);
}

Test(dist, same_seed_same_sequence) {
    stress_range r = {DIST_UNIFORM, 1, 1u << 30, 3};
    stress_keygen a, b, c;
    stress_keygen_init(&a, &r, 11);
    stress_keygen_init(&b, &r, 11);
    stress_keygen_init(&c, &r, 12);
    int differ = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = stress_keygen_next(&a);
        cr_assert_eq(x, stress_keygen_next(&b));
        differ += x != stress_keygen_next(&c);
    }
    cr_expect_gt(differ, 90);
}

Test(dist, keys_and_values_are_deterministic) {
    uint8_t k[24];
    cr_expect_eq(stress_key_bytes(1, k), 10);
    cr_expect_eq(memcmp(k, "0000000001", 10), 0);
    cr_expect_eq(stress_key_bytes(0xabcdef, k), 10);
    cr_expect_eq(memcmp(k, "0000abcdef", 10), 0);
    uint8_t a[100], b[100], c[100];
    stress_value_fill(42, 0, a, sizeof a);
    stress_value_fill(42, 0, b, sizeof b);
    stress_value_fill(42, 1, c, sizeof c);
    cr_expect_eq(memcmp(a, b, sizeof a), 0);
    cr_expect_neq(memcmp(a, c, sizeof a), 0);
    stress_value_fill(43, 0, c, sizeof c);
    cr_expect_neq(memcmp(a, c, sizeof a), 0);
    stress_range fixed = {DIST_FIXED, 100, 100, 0}, uni = {DIST_UNIFORM, 10, 20, 0};
    cr_expect_eq(stress_value_size(5, 2, &fixed), 100);
    for (uint64_t key = 0; key < 1000; key++) {
        size_t s = stress_value_size(key, 1, &uni);
        cr_assert(s >= 10 && s <= 20);
        cr_assert_eq(s, stress_value_size(key, 1, &uni));
    }
}

/* ---------------- reports ---------------- */

Test(report, html_is_self_contained) {
    stress_opts o;
    stress_opts_defaults(&o);
    stress_series s = {0};
    static hist h;
    for (int i = 0; i < 5; i++) {
        hist_init(&h);
        for (int j = 1; j <= 1000; j++) hist_record(&h, (uint64_t)j * 1000 * (uint64_t)(i + 1));
        stress_interval iv = {.t_s = i + 1, .len_s = 1, .ops = 1000, .rate = 1000.0 * (i + 1)};
        stress_interval_fill(&iv, &h);
        cr_assert_eq(stress_series_add(&s, &iv), 0);
    }
    cr_expect_float_eq(s.v[0].p50_ms, 0.5, 0.005);
    char path[] = "/tmp/test_stress_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(stress_write_html(path, &o, "ilion-stress write <n=5>", &s, &s.v[4]), 0);
    FILE *f = fopen(path, "r");
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    unlink(path);
    text[n] = 0;
    cr_expect(strstr(text, "<svg") != NULL);
    cr_expect(strstr(text, "<polyline") != NULL);
    cr_expect(strstr(text, "&lt;n=5&gt;") != NULL, "command line not escaped");
    cr_expect(strstr(text, "http://") == NULL || strstr(text, "xmlns=\"http://www.w3.org/2000/svg\"") != NULL);
    cr_expect(strstr(text, "<script src") == NULL);
    stress_series_free(&s);
}

static size_t count_in_file(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    size_t c = 0;
    for (const char *p = text; (p = strstr(p, needle)); p++) c++;
    return c;
}

Test(report, revisions_accumulate_in_one_file) {
    stress_opts o;
    stress_opts_defaults(&o);
    char path[] = "/tmp/test_stress_rev_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    stress_series s = {0};
    static hist h;
    hist_init(&h);
    for (int j = 1; j <= 100; j++) hist_record(&h, (uint64_t)j * 10000);
    for (int i = 0; i < 3; i++) {
        stress_interval iv = {.t_s = i + 1, .len_s = 1, .ops = 100, .rate = 100};
        stress_interval_fill(&iv, &h);
        stress_series_add(&s, &iv);
    }
    stress_interval total = s.v[2];
    total.len_s = 3;
    snprintf(o.revision, sizeof o.revision, "first");
    cr_assert_eq(stress_write_html(path, &o, "ilion-stress write --x", &s, &total), 0);
    snprintf(o.revision, sizeof o.revision, "second");
    cr_assert_eq(stress_write_html(path, &o, "ilion-stress read", &s, &total), 0);
    cr_expect_eq(count_in_file(path, "\nrun\t"), 2);
    cr_expect_eq(count_in_file(path, "\niv "), 6);
    /* The same revision replaces its run; "--" in a command line cannot end the data block. */
    snprintf(o.revision, sizeof o.revision, "first");
    cr_assert_eq(stress_write_html(path, &o, "ilion-stress write --y", &s, &total), 0);
    cr_expect_eq(count_in_file(path, "\nrun\t"), 2);
    cr_expect_eq(count_in_file(path, "-_y"), 2, "command line in table and data block");
    cr_expect_eq(count_in_file(path, "<polyline"), 1 * 2 + 2 * 2, "throughput per run, p50+p99 per run");
    /* Without a revision the file is replaced by this run alone. */
    o.revision[0] = 0;
    cr_assert_eq(stress_write_html(path, &o, "ilion-stress write", &s, &total), 0);
    cr_expect_eq(count_in_file(path, "\nrun\t"), 1);
    cr_expect_eq(count_in_file(path, "<polyline"), 1 + 5);
    unlink(path);
    stress_series_free(&s);
}

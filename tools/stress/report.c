/* Interval lines, summary and the HTML/SVG report of ilion-stress. */
#include "report.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../cqlclient/cqlclient.h"

void stress_interval_fill(stress_interval *iv, const hist *h) {
    iv->mean_ms = hist_mean(h) / 1e6;
    iv->p50_ms = (double)hist_percentile(h, 50) / 1e6;
    iv->p95_ms = (double)hist_percentile(h, 95) / 1e6;
    iv->p99_ms = (double)hist_percentile(h, 99) / 1e6;
    iv->p999_ms = (double)hist_percentile(h, 99.9) / 1e6;
    iv->max_ms = h->count ? (double)h->max / 1e6 : 0;
}

int stress_series_add(stress_series *s, const stress_interval *iv) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        stress_interval *v = realloc(s->v, cap * sizeof *v);
        if (!v) return -ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = *iv;
    return 0;
}

void stress_series_free(stress_series *s) {
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

void stress_print_header(FILE *out) {
    fprintf(out, "%8s %10s %10s %8s %8s %8s %8s %8s %8s %7s %7s\n", "time_s", "ops", "ops/s",
            "mean_ms", "p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms", "errors", "mismatch");
}

void stress_print_interval(FILE *out, const stress_interval *iv) {
    fprintf(out, "%8.1f %10llu %10.0f %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f %7llu %7llu\n", iv->t_s,
            (unsigned long long)iv->ops, iv->rate, iv->mean_ms, iv->p50_ms, iv->p95_ms,
            iv->p99_ms, iv->p999_ms, iv->max_ms, (unsigned long long)iv->errors,
            (unsigned long long)iv->mismatches);
}

static const char *cmd_name(int c) {
    return c == STRESS_WRITE ? "write" : c == STRESS_READ ? "read" : "mixed";
}

void stress_print_summary(FILE *out, const stress_opts *o, const stress_interval *t,
                          uint64_t writes, uint64_t reads) {
    fprintf(out, "\nResults (%s, cl=%s, %d threads x %d in flight = %d requests in flight):\n",
            cmd_name(o->command), cqlc_consistency_name(o->cl), o->threads, o->inflight,
            o->threads * o->inflight);
    fprintf(out, "Op rate                   : %10.0f op/s\n", t->rate);
    fprintf(out, "Total operations          : %10llu (writes %llu, reads %llu)\n",
            (unsigned long long)t->ops, (unsigned long long)writes, (unsigned long long)reads);
    fprintf(out, "Latency mean              : %10.3f ms\n", t->mean_ms);
    fprintf(out, "Latency median            : %10.3f ms\n", t->p50_ms);
    fprintf(out, "Latency 95th percentile   : %10.3f ms\n", t->p95_ms);
    fprintf(out, "Latency 99th percentile   : %10.3f ms\n", t->p99_ms);
    fprintf(out, "Latency 99.9th percentile : %10.3f ms\n", t->p999_ms);
    fprintf(out, "Latency max               : %10.3f ms\n", t->max_ms);
    fprintf(out, "Errors                    : %10llu (max allowed %llu)\n",
            (unsigned long long)t->errors, (unsigned long long)o->errors_max);
    fprintf(out, "Read mismatches           : %10llu\n", (unsigned long long)t->mismatches);
    fprintf(out, "Reads of missing rows     : %10llu\n", (unsigned long long)t->missing);
    fprintf(out, "Total operation time      : %10.1f s\n", t->len_s);
}

void stress_print_op_line(FILE *out, const char *op, const hist *h, double secs) {
    fprintf(out, "  %-5s: %10llu ops, %8.0f op/s, mean %.3f, p50 %.3f, p95 %.3f, p99 %.3f, "
                 "p99.9 %.3f, max %.3f ms\n",
            op, (unsigned long long)h->count, secs > 0 ? (double)h->count / secs : 0,
            hist_mean(h) / 1e6, (double)hist_percentile(h, 50) / 1e6,
            (double)hist_percentile(h, 95) / 1e6, (double)hist_percentile(h, 99) / 1e6,
            (double)hist_percentile(h, 99.9) / 1e6, h->count ? (double)h->max / 1e6 : 0);
}

/* ---- HTML ---- */

static void html_escape(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

#define CW 900.0
#define CH 320.0
#define ML 70.0
#define MR 150.0
#define MT 20.0
#define MB 40.0

typedef struct series_def {
    const char *name;
    const char *color;
    size_t off; /* offsetof the double in stress_interval */
} series_def;

static double field(const stress_interval *iv, size_t off) {
    return *(const double *)((const char *)iv + off);
}

/* "Nice" step for about n ticks over [0, max]. */
static double nice_step(double max, int n) {
    double raw = max / n;
    double p = pow(10, floor(log10(raw)));
    double m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void chart(FILE *f, const char *title, const char *ylabel, const stress_series *s,
                  const series_def *defs, size_t ndefs, bool logy) {
    double xmax = s->n ? s->v[s->n - 1].t_s : 1;
    if (xmax <= 0) xmax = 1;
    double ymax = 0, ymin = INFINITY;
    for (size_t i = 0; i < s->n; i++)
        for (size_t d = 0; d < ndefs; d++) {
            double v = field(&s->v[i], defs[d].off);
            if (v > ymax) ymax = v;
            if (v > 0 && v < ymin) ymin = v;
        }
    if (ymax <= 0) ymax = 1;
    double lo = 0, hi = ymax * 1.05;
    if (logy) {
        if (!isfinite(ymin)) ymin = ymax / 10;
        lo = pow(10, floor(log10(ymin)));
        hi = pow(10, ceil(log10(ymax)));
        if (hi <= lo) hi = lo * 10;
    }
    double pw = CW - ML - MR, ph = CH - MT - MB;
#define XP(x) (ML + (x) / xmax * pw)
#define YP(y) (logy ? MT + ph - (log10((y) > lo ? (y) : lo) - log10(lo)) / (log10(hi) - log10(lo)) * ph \
                    : MT + ph - ((y) - lo) / (hi - lo) * ph)
    fprintf(f, "<h2>");
    html_escape(f, title);
    fprintf(f, "</h2>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "font-family=\"sans-serif\" font-size=\"11\">\n", CW, CH);
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#fafafa\" "
               "stroke=\"#888\"/>\n", ML, MT, pw, ph);
    /* y grid */
    if (logy) {
        for (double t = lo; t <= hi * 1.0001; t *= 10) {
            fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                       "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                    ML, ML + pw, YP(t), YP(t), ML - 4, YP(t) + 4, t);
        }
    } else {
        double st = nice_step(hi, 5);
        for (double t = 0; t <= hi; t += st)
            fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                       "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                    ML, ML + pw, YP(t), YP(t), ML - 4, YP(t) + 4, t);
    }
    double xs = nice_step(xmax, 8);
    for (double t = 0; t <= xmax * 1.0001; t += xs)
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
                XP(t), XP(t), MT, MT + ph, XP(t), MT + ph + 14, t);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">time (s)</text>\n",
            ML + pw / 2, CH - 6);
    fprintf(f, "<text x=\"14\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 14 %.1f)\">",
            MT + ph / 2, MT + ph / 2);
    html_escape(f, ylabel);
    fprintf(f, "</text>\n");
    for (size_t d = 0; d < ndefs; d++) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
                defs[d].color);
        for (size_t i = 0; i < s->n; i++)
            fprintf(f, "%.1f,%.1f ", XP(s->v[i].t_s), YP(field(&s->v[i], defs[d].off)));
        fprintf(f, "\"/>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"3\" fill=\"%s\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                ML + pw + 10, MT + 10 + 16.0 * (double)d, defs[d].color, ML + pw + 26,
                MT + 14 + 16.0 * (double)d, defs[d].name);
    }
    fprintf(f, "</svg>\n");
#undef XP
#undef YP
}

int stress_write_html(const char *path, const stress_opts *o, const char *cmdline,
                      const stress_series *s, const stress_interval *t) {
    FILE *f = fopen(path, "w");
    if (!f) return -errno;
    fprintf(f, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
    html_escape(f, o->title[0] ? o->title : "ilion-stress report");
    fprintf(f, "</title>\n<style>body{font-family:sans-serif;margin:20px}"
               "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
               "text-align:right}code{background:#eee;padding:2px}</style></head><body>\n<h1>");
    html_escape(f, o->title[0] ? o->title : "ilion-stress report");
    fprintf(f, "</h1>\n<p><code>");
    html_escape(f, cmdline);
    fprintf(f, "</code></p>\n<table><tr><th>op rate (op/s)</th><th>operations</th><th>mean ms</th>"
               "<th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th>"
               "<th>errors</th><th>mismatches</th><th>duration s</th></tr>\n");
    fprintf(f, "<tr><td>%.0f</td><td>%llu</td><td>%.3f</td><td>%.3f</td><td>%.3f</td><td>%.3f</td>"
               "<td>%.3f</td><td>%.3f</td><td>%llu</td><td>%llu</td><td>%.1f</td></tr></table>\n",
            t->rate, (unsigned long long)t->ops, t->mean_ms, t->p50_ms, t->p95_ms, t->p99_ms,
            t->p999_ms, t->max_ms, (unsigned long long)t->errors,
            (unsigned long long)t->mismatches, t->len_s);
    static const series_def thr[] = {{"ops/s", "#1f77b4", offsetof(stress_interval, rate)}};
    static const series_def lat[] = {
        {"p50", "#2ca02c", offsetof(stress_interval, p50_ms)},
        {"p95", "#1f77b4", offsetof(stress_interval, p95_ms)},
        {"p99", "#ff7f0e", offsetof(stress_interval, p99_ms)},
        {"p99.9", "#d62728", offsetof(stress_interval, p999_ms)},
        {"max", "#7f7f7f", offsetof(stress_interval, max_ms)},
    };
    chart(f, "Throughput", "operations per second", s, thr, 1, false);
    chart(f, "Latency percentiles per interval (log scale)", "latency (ms)", s, lat, 5, true);
    fprintf(f, "<h2>Intervals</h2>\n<table><tr><th>time s</th><th>ops</th><th>ops/s</th>"
               "<th>mean</th><th>p50</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th>"
               "<th>errors</th><th>mismatches</th></tr>\n");
    for (size_t i = 0; i < s->n; i++) {
        const stress_interval *v = &s->v[i];
        fprintf(f, "<tr><td>%.1f</td><td>%llu</td><td>%.0f</td><td>%.3f</td><td>%.3f</td>"
                   "<td>%.3f</td><td>%.3f</td><td>%.3f</td><td>%.3f</td><td>%llu</td><td>%llu</td>"
                   "</tr>\n",
                v->t_s, (unsigned long long)v->ops, v->rate, v->mean_ms, v->p50_ms, v->p95_ms,
                v->p99_ms, v->p999_ms, v->max_ms, (unsigned long long)v->errors,
                (unsigned long long)v->mismatches);
    }
    fprintf(f, "</table>\n</body></html>\n");
    int rc = ferror(f) ? -EIO : 0;
    if (fclose(f) != 0 && rc == 0) rc = -errno;
    return rc;
}

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

void stress_print_header_cas(FILE *out) {
    fprintf(out, "%8s %10s %10s %8s %8s %8s %8s %8s %8s %7s %8s %8s %7s\n", "time_s", "ops",
            "ops/s", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms", "errors",
            "applied", "notappl", "unknown");
}

void stress_print_interval_cas(FILE *out, const stress_interval *iv) {
    fprintf(out, "%8.1f %10llu %10.0f %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f %7llu %8llu %8llu %7llu\n",
            iv->t_s, (unsigned long long)iv->ops, iv->rate, iv->mean_ms, iv->p50_ms, iv->p95_ms,
            iv->p99_ms, iv->p999_ms, iv->max_ms, (unsigned long long)iv->errors,
            (unsigned long long)iv->applied, (unsigned long long)iv->not_applied,
            (unsigned long long)iv->unknown);
}

static const char *cmd_name(int c) {
    return c == STRESS_WRITE ? "write" : c == STRESS_READ ? "read" : c == STRESS_CAS ? "cas" : "mixed";
}

void stress_print_summary(FILE *out, const stress_opts *o, const stress_interval *t,
                          uint64_t writes, uint64_t reads) {
    fprintf(out, "\nResults (%s, cl=%s, %d threads x %d in flight = %d requests in flight):\n",
            cmd_name(o->command), cqlc_consistency_name(o->cl), o->threads, o->inflight,
            o->threads * o->inflight);
    fprintf(out, "Op rate                   : %10.0f op/s\n", t->rate);
    if (o->command == STRESS_CAS)
        fprintf(out, "Total operations          : %10llu (applied %llu, not applied %llu)\n",
                (unsigned long long)t->ops, (unsigned long long)writes, (unsigned long long)reads);
    else
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
    if (o->command != STRESS_CAS) {
        fprintf(out, "Read mismatches           : %10llu\n", (unsigned long long)t->mismatches);
        fprintf(out, "Reads of missing rows     : %10llu\n", (unsigned long long)t->missing);
    }
    fprintf(out, "Total operation time      : %10.1f s\n", t->len_s);
}

void stress_print_cas_summary(FILE *out, const stress_interval *t, uint64_t increments,
                              uint64_t created, uint64_t checked, uint64_t violations,
                              uint64_t unverified) {
    fprintf(out, "CAS applied               : %10llu (increments %llu, registers created %llu)\n",
            (unsigned long long)t->applied, (unsigned long long)increments,
            (unsigned long long)created);
    fprintf(out, "CAS not applied           : %10llu\n", (unsigned long long)t->not_applied);
    fprintf(out, "CAS unknown (WriteTimeout): %10llu\n", (unsigned long long)t->unknown);
    fprintf(out, "Registers checked (SERIAL): %10llu\n", (unsigned long long)checked);
    fprintf(out, "Register violations       : %10llu\n", (unsigned long long)violations);
    if (unverified)
        fprintf(out, "Registers not readable    : %10llu\n", (unsigned long long)unverified);
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

/* Runs kept in a report file, so later runs (-graph revision=) are drawn beside earlier ones.
 * The data travels inside the HTML as a comment block, version 1:
 *   <!--ilion-stress-data v1
 *   run<TAB>revision<TAB>command line<TAB>rate ops mean p50 p95 p99 p999 max errors mismatches len
 *   iv t rate mean p50 p95 p99 p999 max ops errors mismatches
 *   ...
 *   -->                                                                                      */
typedef struct stress_run {
    char revision[128];
    char cmdline[2048];
    stress_interval total;
    stress_series s;
} stress_run;

#define MAX_RUNS 32

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

/* Copies s without tabs, newlines or "--" (which would end the comment block). */
static void clean_copy(char *out, size_t outlen, const char *s) {
    size_t n = 0;
    for (; *s && n + 1 < outlen; s++) {
        char ch = *s;
        if (ch == '\t' || ch == '\n' || ch == '\r') ch = ' ';
        if (ch == '-' && n > 0 && out[n - 1] == '-') ch = '_';
        out[n++] = ch;
    }
    out[n] = 0;
}

static int parse_iv(const char *p, stress_interval *v, bool with_t) {
    unsigned long long ops, errs, mism;
    int k;
    if (with_t) {
        k = sscanf(p, "%lf %lf %lf %lf %lf %lf %lf %lf %llu %llu %llu", &v->t_s, &v->rate, &v->mean_ms,
                   &v->p50_ms, &v->p95_ms, &v->p99_ms, &v->p999_ms, &v->max_ms, &ops, &errs, &mism);
        if (k != 11) return -1;
    } else {
        k = sscanf(p, "%lf %llu %lf %lf %lf %lf %lf %lf %llu %llu %lf", &v->rate, &ops, &v->mean_ms,
                   &v->p50_ms, &v->p95_ms, &v->p99_ms, &v->p999_ms, &v->max_ms, &errs, &mism,
                   &v->len_s);
        if (k != 11) return -1;
        v->t_s = v->len_s;
    }
    v->ops = ops;
    v->errors = errs;
    v->mismatches = mism;
    return 0;
}

/* Earlier runs from an existing report; a file without the block (or none) gives 0 runs. */
static int load_runs(const char *path, stress_run *runs, int max) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    bool in = false;
    stress_run *cur = NULL;
    while (getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\n")] = 0;
        if (!in) {
            in = strcmp(line, "<!--ilion-stress-data v1") == 0;
            continue;
        }
        if (strcmp(line, "-->") == 0) break;
        if (!strncmp(line, "run\t", 4)) {
            cur = NULL;
            if (n == max) continue;
            char *rev = line + 4, *cmd = strchr(rev, '\t');
            char *tot = cmd ? strchr(cmd + 1, '\t') : NULL;
            if (!cmd || !tot) continue;
            *cmd++ = 0;
            *tot++ = 0;
            stress_run *r = &runs[n];
            memset(r, 0, sizeof *r);
            clean_copy(r->revision, sizeof r->revision, rev);
            clean_copy(r->cmdline, sizeof r->cmdline, cmd);
            if (parse_iv(tot, &r->total, false) < 0) continue;
            cur = r;
            n++;
        } else if (!strncmp(line, "iv ", 3) && cur) {
            stress_interval v = {0};
            if (parse_iv(line + 3, &v, true) == 0 && stress_series_add(&cur->s, &v) < 0) break;
        }
    }
    free(line);
    fclose(f);
    return n;
}

static void save_runs(FILE *f, const stress_run *runs, int n) {
    fprintf(f, "<!--ilion-stress-data v1\n");
    for (int i = 0; i < n; i++) {
        const stress_run *r = &runs[i];
        const stress_interval *t = &r->total;
        fprintf(f, "run\t%s\t%s\t%.3f %llu %.6f %.6f %.6f %.6f %.6f %.6f %llu %llu %.3f\n",
                r->revision, r->cmdline, t->rate, (unsigned long long)t->ops, t->mean_ms, t->p50_ms,
                t->p95_ms, t->p99_ms, t->p999_ms, t->max_ms, (unsigned long long)t->errors,
                (unsigned long long)t->mismatches, t->len_s);
        for (size_t j = 0; j < r->s.n; j++) {
            const stress_interval *v = &r->s.v[j];
            fprintf(f, "iv %.3f %.3f %.6f %.6f %.6f %.6f %.6f %.6f %llu %llu %llu\n", v->t_s,
                    v->rate, v->mean_ms, v->p50_ms, v->p95_ms, v->p99_ms, v->p999_ms, v->max_ms,
                    (unsigned long long)v->ops, (unsigned long long)v->errors,
                    (unsigned long long)v->mismatches);
        }
    }
    fprintf(f, "-->\n");
}

#define CW 900.0
#define CH 320.0
#define ML 70.0
#define MR 190.0
#define MT 20.0
#define MB 40.0

typedef struct line_def {
    const stress_series *s;
    size_t off;            /* offsetof the double in stress_interval */
    const char *color;
    const char *dash;      /* SVG stroke-dasharray or NULL */
    char name[160];
} line_def;

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

static void chart(FILE *f, const char *title, const char *ylabel, const line_def *lines,
                  size_t nlines, bool logy) {
    double xmax = 0, ymax = 0, ymin = INFINITY;
    for (size_t d = 0; d < nlines; d++) {
        const stress_series *s = lines[d].s;
        if (s->n && s->v[s->n - 1].t_s > xmax) xmax = s->v[s->n - 1].t_s;
        for (size_t i = 0; i < s->n; i++) {
            double v = field(&s->v[i], lines[d].off);
            if (v > ymax) ymax = v;
            if (v > 0 && v < ymin) ymin = v;
        }
    }
    if (xmax <= 0) xmax = 1;
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
               "font-family=\"sans-serif\" font-size=\"11\">\n", CW,
            CH > MT + 16.0 * (double)nlines + 20 ? CH : MT + 16.0 * (double)nlines + 20);
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#fafafa\" "
               "stroke=\"#888\"/>\n", ML, MT, pw, ph);
    if (logy) {
        for (double t = lo; t <= hi * 1.0001; t *= 10)
            fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                       "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                    ML, ML + pw, YP(t), YP(t), ML - 4, YP(t) + 4, t);
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
    for (size_t d = 0; d < nlines; d++) {
        const stress_series *s = lines[d].s;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\"%s%s%s points=\"",
                lines[d].color, lines[d].dash ? " stroke-dasharray=\"" : "",
                lines[d].dash ? lines[d].dash : "", lines[d].dash ? "\"" : "");
        for (size_t i = 0; i < s->n; i++)
            fprintf(f, "%.1f,%.1f ", XP(s->v[i].t_s), YP(field(&s->v[i], lines[d].off)));
        fprintf(f, "\"/>\n<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                   "stroke-width=\"2\"%s%s%s/><text x=\"%.1f\" y=\"%.1f\">",
                ML + pw + 8, ML + pw + 24, MT + 10 + 16.0 * (double)d, MT + 10 + 16.0 * (double)d,
                lines[d].color, lines[d].dash ? " stroke-dasharray=\"" : "",
                lines[d].dash ? lines[d].dash : "", lines[d].dash ? "\"" : "", ML + pw + 28,
                MT + 14 + 16.0 * (double)d);
        html_escape(f, lines[d].name);
        fprintf(f, "</text>\n");
    }
    fprintf(f, "</svg>\n");
#undef XP
#undef YP
}

static const char *const palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

static void write_report(FILE *f, const stress_opts *o, const stress_run *runs, int n) {
    const char *title = o->title[0] ? o->title : "ilion-stress report";
    fprintf(f, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
    html_escape(f, title);
    fprintf(f, "</title>\n<style>body{font-family:sans-serif;margin:20px}"
               "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
               "text-align:right}td.l{text-align:left}code{background:#eee;padding:2px}</style>"
               "</head><body>\n<h1>");
    html_escape(f, title);
    fprintf(f, "</h1>\n<table><tr><th>run</th><th>op rate (op/s)</th><th>operations</th>"
               "<th>mean ms</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>p99.9 ms</th>"
               "<th>max ms</th><th>errors</th><th>mismatches</th><th>duration s</th>"
               "<th>command</th></tr>\n");
    for (int i = 0; i < n; i++) {
        const stress_interval *t = &runs[i].total;
        fprintf(f, "<tr><td class=\"l\">");
        html_escape(f, runs[i].revision);
        fprintf(f, "</td><td>%.0f</td><td>%llu</td><td>%.3f</td><td>%.3f</td><td>%.3f</td>"
                   "<td>%.3f</td><td>%.3f</td><td>%.3f</td><td>%llu</td><td>%llu</td><td>%.1f</td>"
                   "<td class=\"l\"><code>",
                t->rate, (unsigned long long)t->ops, t->mean_ms, t->p50_ms, t->p95_ms, t->p99_ms,
                t->p999_ms, t->max_ms, (unsigned long long)t->errors,
                (unsigned long long)t->mismatches, t->len_s);
        html_escape(f, runs[i].cmdline);
        fprintf(f, "</code></td></tr>\n");
    }
    fprintf(f, "</table>\n");
    line_def lines[3 * MAX_RUNS];
    size_t nl = 0;
    for (int i = 0; i < n; i++) {
        line_def *l = &lines[nl++];
        *l = (line_def){&runs[i].s, offsetof(stress_interval, rate), palette[i % 10], NULL, ""};
        /* the precision bounds the copy below the name's size at every optimisation level */
        snprintf(l->name, sizeof l->name, "%.120s", n > 1 ? runs[i].revision : "ops/s");
    }
    chart(f, "Throughput", "operations per second", lines, nl, false);
    nl = 0;
    if (n == 1) {
        static const struct { const char *name, *color; size_t off; } pct[] = {
            {"p50", "#2ca02c", offsetof(stress_interval, p50_ms)},
            {"p95", "#1f77b4", offsetof(stress_interval, p95_ms)},
            {"p99", "#ff7f0e", offsetof(stress_interval, p99_ms)},
            {"p99.9", "#d62728", offsetof(stress_interval, p999_ms)},
            {"max", "#7f7f7f", offsetof(stress_interval, max_ms)},
        };
        for (size_t k = 0; k < 5; k++) {
            line_def *l = &lines[nl++];
            *l = (line_def){&runs[0].s, pct[k].off, pct[k].color, NULL, ""};
            snprintf(l->name, sizeof l->name, "%s", pct[k].name);
        }
    } else {
        /* Several runs: each run's colour, p50 dashed, p99 solid. */
        for (int i = 0; i < n; i++) {
            line_def *l = &lines[nl++];
            *l = (line_def){&runs[i].s, offsetof(stress_interval, p99_ms), palette[i % 10], NULL, ""};
            snprintf(l->name, sizeof l->name, "%.60s p99", runs[i].revision);
            l = &lines[nl++];
            *l = (line_def){&runs[i].s, offsetof(stress_interval, p50_ms), palette[i % 10], "4 3", ""};
            snprintf(l->name, sizeof l->name, "%.60s p50", runs[i].revision);
        }
    }
    chart(f, "Latency percentiles per interval (log scale)", "latency (ms)", lines, nl, true);
    for (int i = 0; i < n; i++) {
        fprintf(f, "<h2>Intervals: ");
        html_escape(f, runs[i].revision);
        fprintf(f, "</h2>\n<table><tr><th>time s</th><th>ops</th><th>ops/s</th><th>mean</th>"
                   "<th>p50</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th><th>errors</th>"
                   "<th>mismatches</th></tr>\n");
        for (size_t j = 0; j < runs[i].s.n; j++) {
            const stress_interval *v = &runs[i].s.v[j];
            fprintf(f, "<tr><td>%.1f</td><td>%llu</td><td>%.0f</td><td>%.3f</td><td>%.3f</td>"
                       "<td>%.3f</td><td>%.3f</td><td>%.3f</td><td>%.3f</td><td>%llu</td>"
                       "<td>%llu</td></tr>\n",
                    v->t_s, (unsigned long long)v->ops, v->rate, v->mean_ms, v->p50_ms,
                    v->p95_ms, v->p99_ms, v->p999_ms, v->max_ms, (unsigned long long)v->errors,
                    (unsigned long long)v->mismatches);
        }
        fprintf(f, "</table>\n");
    }
    save_runs(f, runs, n);
    fprintf(f, "</body></html>\n");
}

int stress_write_html(const char *path, const stress_opts *o, const char *cmdline,
                      const stress_series *s, const stress_interval *total) {
    static stress_run runs[MAX_RUNS + 1];
    int n = o->revision[0] ? load_runs(path, runs, MAX_RUNS) : 0;
    char rev[128];
    clean_copy(rev, sizeof rev, o->revision[0] ? o->revision : "run");
    /* A run with the same revision name replaces the earlier one. */
    int slot = n;
    for (int i = 0; i < n; i++)
        if (strcmp(runs[i].revision, rev) == 0) slot = i;
    if (slot == MAX_RUNS) slot = MAX_RUNS - 1;
    if (slot < n) stress_series_free(&runs[slot].s);
    stress_run *r = &runs[slot];
    memset(r, 0, sizeof *r);
    snprintf(r->revision, sizeof r->revision, "%s", rev);
    clean_copy(r->cmdline, sizeof r->cmdline, cmdline);
    r->total = *total;
    int rc = 0;
    for (size_t j = 0; j < s->n && rc == 0; j++) rc = stress_series_add(&r->s, &s->v[j]);
    if (slot == n) n++;
    FILE *f = rc == 0 ? fopen(path, "w") : NULL;
    if (rc == 0 && !f) rc = -errno;
    if (f) {
        write_report(f, o, runs, n);
        if (ferror(f)) rc = -EIO;
        if (fclose(f) != 0 && rc == 0) rc = -errno;
    }
    for (int i = 0; i < n; i++) stress_series_free(&runs[i].s);
    return rc;
}

/* ilion-stress option parsing (cassandra-stress syntax). */
#include "opts.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../cqlclient/cqlclient.h"

void stress_opts_defaults(stress_opts *o) {
    memset(o, 0, sizeof *o);
    o->command = STRESS_WRITE;
    o->ratio_write = 1;
    o->ratio_read = 1;
    o->cl = CQLC_LOCAL_ONE;
    o->serial_cl = CQLC_SERIAL;
    o->threads = 50;
    o->inflight = 1;
    o->port = 9042;
    o->create_schema = true;
    snprintf(o->keyspace, sizeof o->keyspace, "keyspace1");
    o->rf = 1;
    o->ncols = 5;
    o->col_size = (stress_range){DIST_FIXED, 34, 34, 0};
    o->pop = (stress_range){DIST_SEQ, 1, 1000000, 3};
    o->prepared = true;
    o->lz4 = false;
    o->connections_per_host = 1;
    o->token_aware = true;
    o->timeout_ms = 12000;
    o->log_interval_s = 1.0;
    o->errors_max = 0;
    o->seed = 0x5eed;
    o->verify = true;
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

double stress_parse_duration(const char *s) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0 || !isfinite(v)) return -1;
    if (*end == 0 || strcmp(end, "s") == 0) return v;
    if (strcmp(end, "ms") == 0) return v / 1000.0;
    if (strcmp(end, "m") == 0) return v * 60.0;
    if (strcmp(end, "h") == 0) return v * 3600.0;
    return -1;
}

int64_t stress_parse_count(const char *s) {
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)s[0])) return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return -1;
    uint64_t mul = 1;
    if (*end == 'k' || *end == 'K') mul = 1000, end++;
    else if (*end == 'm' || *end == 'M') mul = 1000000, end++;
    else if (*end == 'b' || *end == 'B') mul = 1000000000, end++;
    if (*end) return -1;
    if (v > (unsigned long long)(INT64_MAX / (int64_t)mul)) return -1;
    return (int64_t)(v * mul);
}

/* "a..b" -> lo, hi (counts); "a..b,c" also fills extra. */
static int parse_range(const char *s, uint64_t *lo, uint64_t *hi, double *extra) {
    const char *dots = strstr(s, "..");
    if (!dots) return -1;
    char a[64], b[64];
    size_t an = (size_t)(dots - s);
    if (an == 0 || an >= sizeof a) return -1;
    memcpy(a, s, an);
    a[an] = 0;
    snprintf(b, sizeof b, "%s", dots + 2);
    char *comma = strchr(b, ',');
    if (comma) {
        *comma = 0;
        if (!extra) return -1;
        char *end;
        *extra = strtod(comma + 1, &end);
        if (end == comma + 1 || *end || *extra <= 0) return -1;
    }
    int64_t x = stress_parse_count(a), y = stress_parse_count(b);
    if (x < 0 || y < 0 || y < x) return -1;
    *lo = (uint64_t)x;
    *hi = (uint64_t)y;
    return 0;
}

/* NAME(args) -> args copied to out; returns 0 when s starts with name( and ends with ). */
static int call_args(const char *s, const char *name, char *out, size_t outlen) {
    size_t n = strlen(name);
    if (strncasecmp(s, name, n) != 0 || s[n] != '(') return -1;
    size_t len = strlen(s);
    if (len < n + 2 || s[len - 1] != ')') return -1;
    size_t an = len - n - 2;
    if (an >= outlen) return -1;
    memcpy(out, s + n + 1, an);
    out[an] = 0;
    return 0;
}

/* dist=uniform(1..1000) | gaussian(1..1000[,stdvrng]) | fixed(100) | seq=1..N */
static int parse_dist(const char *s, stress_range *r) {
    char args[128];
    if (call_args(s, "uniform", args, sizeof args) == 0) {
        r->kind = DIST_UNIFORM;
        return parse_range(args, &r->lo, &r->hi, NULL);
    }
    if (call_args(s, "gaussian", args, sizeof args) == 0 ||
        call_args(s, "gauss", args, sizeof args) == 0 ||
        call_args(s, "normal", args, sizeof args) == 0) {
        r->kind = DIST_GAUSSIAN;
        r->stdvrng = 3;
        return parse_range(args, &r->lo, &r->hi, &r->stdvrng);
    }
    if (call_args(s, "fixed", args, sizeof args) == 0) {
        int64_t v = stress_parse_count(args);
        if (v < 0) return -1;
        r->kind = DIST_FIXED;
        r->lo = r->hi = (uint64_t)v;
        return 0;
    }
    return -1;
}

static bool is_group(const char *s) { return s[0] == '-' && isalpha((unsigned char)s[1]); }

static bool parse_bool(const char *v, bool *out) {
    if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcmp(v, "1")) return *out = true, true;
    if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcmp(v, "0")) return *out = false, true;
    return false;
}

static int parse_command_opt(stress_opts *o, const char *a, char *err, size_t errlen) {
    char args[128];
    if (!strncmp(a, "n=", 2)) {
        int64_t v = stress_parse_count(a + 2);
        if (v <= 0) return fail(err, errlen, "bad operation count '%s'", a);
        o->n = (uint64_t)v;
        o->duration_s = 0;
        return 0;
    }
    if (!strncmp(a, "duration=", 9)) {
        double d = stress_parse_duration(a + 9);
        if (d <= 0) return fail(err, errlen, "bad duration '%s' (e.g. 30s, 2m)", a);
        o->duration_s = d;
        o->n = 0;
        return 0;
    }
    if (!strncmp(a, "cl=", 3)) {
        int cl = cqlc_consistency_parse(a + 3);
        if (cl < 0) return fail(err, errlen, "unknown consistency level '%s'", a + 3);
        o->cl = cl;
        return 0;
    }
    if (!strncmp(a, "serial_cl=", 10)) {
        int cl = cqlc_consistency_parse(a + 10);
        if (cl != CQLC_SERIAL && cl != CQLC_LOCAL_SERIAL)
            return fail(err, errlen, "serial_cl= must be SERIAL or LOCAL_SERIAL, not '%s'", a + 10);
        if (o->command != STRESS_CAS) return fail(err, errlen, "serial_cl= is for cas");
        o->serial_cl = cl;
        return 0;
    }
    if (call_args(a, "ratio", args, sizeof args) == 0) {
        if (o->command != STRESS_MIXED) return fail(err, errlen, "ratio(...) is for mixed");
        o->ratio_write = o->ratio_read = 0;
        for (char *tok = strtok(args, ","); tok; tok = strtok(NULL, ",")) {
            char *eq = strchr(tok, '=');
            if (!eq) return fail(err, errlen, "bad ratio entry '%s'", tok);
            *eq = 0;
            int64_t v = stress_parse_count(eq + 1);
            if (v < 0 || v > 1000000) return fail(err, errlen, "bad ratio weight '%s'", eq + 1);
            if (!strcasecmp(tok, "write") || !strcasecmp(tok, "insert")) o->ratio_write = (uint32_t)v;
            else if (!strcasecmp(tok, "read") || !strcasecmp(tok, "simple1")) o->ratio_read = (uint32_t)v;
            else return fail(err, errlen, "unknown ratio operation '%s' (write, read)", tok);
        }
        if (o->ratio_write + o->ratio_read == 0) return fail(err, errlen, "ratio weights are all 0");
        return 0;
    }
    if (!strcmp(a, "no-warmup") || !strcmp(a, "no_warmup")) return 0; /* there is no warm-up */
    if (!strncmp(a, "verify=", 7)) {
        if (!parse_bool(a + 7, &o->verify)) return fail(err, errlen, "bad verify= value");
        return 0;
    }
    return fail(err, errlen, "unknown command option '%s'", a);
}

static int parse_group_opt(stress_opts *o, const char *group, char *a, char *err, size_t errlen) {
    char args[256];
    if (!strcmp(group, "-rate")) {
        if (!strncmp(a, "threads=", 8)) {
            int64_t v = stress_parse_count(a + 8);
            if (v <= 0 || v > 100000) return fail(err, errlen, "bad threads= '%s'", a + 8);
            o->threads = (int)v;
            return 0;
        }
        if (!strncmp(a, "inflight=", 9)) {
            int64_t v = stress_parse_count(a + 9);
            if (v <= 0 || v > 32768) return fail(err, errlen, "bad inflight= '%s'", a + 9);
            o->inflight = (int)v;
            return 0;
        }
        bool fixed = !strncmp(a, "fixed=", 6);
        if (fixed || !strncmp(a, "throttle=", 9)) {
            const char *v0 = a + (fixed ? 6 : 9);
            char *end;
            double v = strtod(v0, &end);
            if (end == v0 || v <= 0 || !isfinite(v) || (*end && strcmp(end, "/s")))
                return fail(err, errlen, "bad rate '%s' (e.g. 10000/s)", a);
            o->throttle = v;
            o->fixed = fixed;
            return 0;
        }
        return fail(err, errlen,
                    "unknown -rate option '%s' (threads=, inflight=, throttle=, fixed=)", a);
    }
    if (!strcmp(group, "-node")) {
        for (char *tok = strtok(a, ","); tok; tok = strtok(NULL, ",")) {
            if (o->nnodes == STRESS_MAX_NODES) return fail(err, errlen, "too many nodes");
            o->nodes[o->nnodes++] = tok;
        }
        return 0;
    }
    if (!strcmp(group, "-port")) {
        if (!strncmp(a, "native=", 7)) {
            int64_t v = stress_parse_count(a + 7);
            if (v <= 0 || v > 65535) return fail(err, errlen, "bad port '%s'", a + 7);
            o->port = (int)v;
            return 0;
        }
        return fail(err, errlen, "unknown -port option '%s' (native=)", a);
    }
    if (!strcmp(group, "-schema")) {
        if (call_args(a, "replication", args, sizeof args) == 0) {
            if (strncmp(args, "factor=", 7)) return fail(err, errlen, "replication(factor=N) expected");
            int64_t v = stress_parse_count(args + 7);
            if (v <= 0 || v > 100) return fail(err, errlen, "bad replication factor");
            o->rf = (int)v;
            return 0;
        }
        if (call_args(a, "compaction", args, sizeof args) == 0) {
            if (strncmp(args, "strategy=", 9) || !args[9])
                return fail(err, errlen, "compaction(strategy=NAME) expected");
            for (const char *p = args + 9; *p; p++)
                if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_')
                    return fail(err, errlen, "bad compaction strategy name");
            if (strlen(args + 9) >= sizeof o->compaction) return fail(err, errlen, "compaction strategy name too long");
            memcpy(o->compaction, args + 9, strlen(args + 9) + 1);
            return 0;
        }
        if (!strncmp(a, "compression=", 12)) {
            for (const char *p = a + 12; *p; p++)
                if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_')
                    return fail(err, errlen, "bad compression class name");
            snprintf(o->compression, sizeof o->compression, "%s", a + 12);
            return 0;
        }
        if (!strncmp(a, "keyspace=", 9)) {
            const char *k = a + 9;
            if (!*k || strlen(k) >= sizeof o->keyspace) return fail(err, errlen, "bad keyspace name");
            for (const char *p = k; *p; p++)
                if (!isalnum((unsigned char)*p) && *p != '_') return fail(err, errlen, "bad keyspace name");
            snprintf(o->keyspace, sizeof o->keyspace, "%s", k);
            return 0;
        }
        if (!strncmp(a, "create=", 7)) {
            if (!parse_bool(a + 7, &o->create_schema)) return fail(err, errlen, "bad create= value");
            return 0;
        }
        return fail(err, errlen, "unknown -schema option '%s'", a);
    }
    if (!strcmp(group, "-col")) {
        if (!strncmp(a, "n=", 2)) {
            stress_range r;
            int64_t v;
            if (parse_dist(a + 2, &r) == 0 && r.kind == DIST_FIXED) v = (int64_t)r.lo;
            else v = stress_parse_count(a + 2);
            if (v <= 0 || v > 1000) return fail(err, errlen, "bad column count '%s'", a + 2);
            o->ncols = (int)v;
            return 0;
        }
        if (!strncmp(a, "size=", 5)) {
            stress_range r;
            if (parse_dist(a + 5, &r) < 0 || (r.kind != DIST_FIXED && r.kind != DIST_UNIFORM) ||
                r.hi > 16 * 1024 * 1024)
                return fail(err, errlen, "bad size= '%s' (FIXED(n) or UNIFORM(a..b))", a + 5);
            o->col_size = r;
            return 0;
        }
        return fail(err, errlen, "unknown -col option '%s' (n=, size=)", a);
    }
    if (!strcmp(group, "-pop")) {
        stress_range r = {0, 0, 0, 3};
        if (!strncmp(a, "seq=", 4)) {
            r.kind = DIST_SEQ;
            if (parse_range(a + 4, &r.lo, &r.hi, NULL) < 0) return fail(err, errlen, "bad seq= range");
        } else if (!strncmp(a, "dist=", 5)) {
            if (parse_dist(a + 5, &r) < 0 || r.kind == DIST_FIXED)
                return fail(err, errlen, "bad dist= '%s' (uniform(a..b), gaussian(a..b))", a + 5);
        } else {
            return fail(err, errlen, "unknown -pop option '%s' (seq=, dist=)", a);
        }
        o->pop = r;
        return 0;
    }
    if (!strcmp(group, "-mode")) {
        if (!strcmp(a, "native") || !strcmp(a, "cql3")) return 0;
        if (!strcmp(a, "prepared")) return o->prepared = true, 0;
        if (!strcmp(a, "simple") || !strcmp(a, "unprepared")) return o->prepared = false, 0;
        if (!strncmp(a, "compression=", 12)) {
            if (!strcasecmp(a + 12, "lz4")) o->lz4 = true;
            else if (!strcasecmp(a + 12, "none")) o->lz4 = false;
            else return fail(err, errlen, "compression must be lz4 or none");
            return 0;
        }
        if (!strncmp(a, "connectionsPerHost=", 19)) {
            int64_t v = stress_parse_count(a + 19);
            if (v <= 0 || v > 1024) return fail(err, errlen, "bad connectionsPerHost=");
            o->connections_per_host = (int)v;
            return 0;
        }
        if (!strncmp(a, "timeout=", 8)) {
            double d = stress_parse_duration(a + 8);
            if (d <= 0 || d > 3600) return fail(err, errlen, "bad timeout= (e.g. 12s)");
            o->timeout_ms = (uint32_t)(d * 1000);
            return 0;
        }
        if (!strncmp(a, "tokenaware=", 11)) {
            if (!parse_bool(a + 11, &o->token_aware)) return fail(err, errlen, "bad tokenaware=");
            return 0;
        }
        return fail(err, errlen, "unknown -mode option '%s'", a);
    }
    if (!strcmp(group, "-log")) {
        if (!strncmp(a, "interval=", 9)) {
            double d = stress_parse_duration(a + 9);
            if (d < 0.1 || d > 3600) return fail(err, errlen, "bad interval= (0.1s .. 1h)");
            o->log_interval_s = d;
            return 0;
        }
        if (!strncmp(a, "file=", 5)) {
            snprintf(o->log_file, sizeof o->log_file, "%s", a + 5);
            return 0;
        }
        if (!strncmp(a, "hdrfile=", 8)) {
            snprintf(o->hdr_file, sizeof o->hdr_file, "%s", a + 8);
            return 0;
        }
        return fail(err, errlen, "unknown -log option '%s' (interval=, file=, hdrfile=)", a);
    }
    if (!strcmp(group, "-graph")) {
        if (!strncmp(a, "file=", 5)) {
            snprintf(o->graph_file, sizeof o->graph_file, "%s", a + 5);
            return 0;
        }
        if (!strncmp(a, "title=", 6)) {
            snprintf(o->title, sizeof o->title, "%s", a + 6);
            return 0;
        }
        if (!strncmp(a, "revision=", 9)) {
            if (!a[9]) return fail(err, errlen, "empty revision=");
            snprintf(o->revision, sizeof o->revision, "%s", a + 9);
            return 0;
        }
        return fail(err, errlen, "unknown -graph option '%s' (file=, title=, revision=)", a);
    }
    if (!strcmp(group, "-errors")) {
        if (!strncmp(a, "max=", 4)) {
            int64_t v = stress_parse_count(a + 4);
            if (v < 0) return fail(err, errlen, "bad max= '%s'", a + 4);
            o->errors_max = (uint64_t)v;
            return 0;
        }
        return fail(err, errlen, "unknown -errors option '%s' (max=)", a);
    }
    if (!strcmp(group, "-seed")) {
        int64_t v = stress_parse_count(a);
        if (v < 0) return fail(err, errlen, "bad seed");
        o->seed = (uint64_t)v;
        return 0;
    }
    return fail(err, errlen, "unknown option group '%s'", group);
}

int stress_opts_parse(stress_opts *o, int argc, char **argv, char *err, size_t errlen) {
    stress_opts_defaults(o);
    err[0] = 0;
    int i = 1;
    if (i >= argc) return fail(err, errlen, "no command (write, read, mixed, cas)");
    const char *cmd = argv[i++];
    if (!strcmp(cmd, "help") || !strcmp(cmd, "-h") || !strcmp(cmd, "--help")) return 1;
    if (!strcmp(cmd, "write")) o->command = STRESS_WRITE;
    else if (!strcmp(cmd, "read")) o->command = STRESS_READ;
    else if (!strcmp(cmd, "mixed")) o->command = STRESS_MIXED;
    else if (!strcmp(cmd, "cas")) o->command = STRESS_CAS;
    else return fail(err, errlen, "unknown command '%s' (write, read, mixed, cas)", cmd);
    if (o->command == STRESS_MIXED) o->ratio_write = 1, o->ratio_read = 1;
    for (; i < argc && !is_group(argv[i]); i++)
        if (parse_command_opt(o, argv[i], err, errlen) < 0) return -1;
    while (i < argc) {
        const char *group = argv[i++];
        if (!is_group(group)) return fail(err, errlen, "expected an option group, got '%s'", group);
        int nargs = 0;
        for (; i < argc && !is_group(argv[i]); i++, nargs++)
            if (parse_group_opt(o, group, argv[i], err, errlen) < 0) return -1;
        if (nargs == 0) return fail(err, errlen, "option group %s needs arguments", group);
    }
    if (o->n == 0 && o->duration_s == 0) o->n = 1000000;
    if (o->nnodes == 0) o->nodes[o->nnodes++] = "127.0.0.1";
    if (o->command == STRESS_CAS && o->pop.hi - o->pop.lo >= STRESS_CAS_MAX_KEYS)
        return fail(err, errlen, "cas keeps a register per key: -pop may span at most %llu keys",
                    (unsigned long long)STRESS_CAS_MAX_KEYS);
    if (o->command == STRESS_CAS && (o->cl == CQLC_SERIAL || o->cl == CQLC_LOCAL_SERIAL))
        return fail(err, errlen, "cas: cl= is the commit level (e.g. QUORUM); use serial_cl= for "
                                 "the Paxos level");
    if ((uint64_t)o->threads * (uint64_t)o->inflight > 1000000)
        return fail(err, errlen, "threads x inflight too large");
    /* All slots may land on one node's connections; each carries at most 32767 streams. */
    if ((uint64_t)o->threads * (uint64_t)o->inflight > 32767ull * (uint64_t)o->connections_per_host)
        return fail(err, errlen, "threads x inflight = %llu exceeds 32767 streams per connection x "
                    "%d connectionsPerHost",
                    (unsigned long long)o->threads * (unsigned long long)o->inflight,
                    o->connections_per_host);
    return 0;
}

void stress_usage(FILE *out) {
    fputs(
        "usage: ilion-stress write|read|mixed|cas [n=N | duration=30s|2m] [cl=ONE]\n"
        "                    [ratio(write=1,read=3)] [verify=true|false]\n"
        "  cas: conditional increments of a register per key (keyspace.cas1, v bigint):\n"
        "       UPDATE .. SET v = ? WHERE k = ? IF v = ? (INSERT .. IF NOT EXISTS first);\n"
        "       cl= is the commit level, serial_cl=SERIAL|LOCAL_SERIAL the Paxos level; counts\n"
        "       applied, not applied and unknown (WriteTimeout) outcomes, then checks every\n"
        "       register with a SERIAL read: start + applied <= v <= start + applied + unknown\n"
        "       (exit status 1 if not); cas [n= | duration=] [cl=LOCAL_ONE] [serial_cl=SERIAL]\n"
        "  -rate threads=N [inflight=K] [throttle=10000/s | fixed=10000/s]\n"
        "        N logical clients each keeping K requests in flight: N*K requests in flight\n"
        "  -node 127.0.0.1[,127.0.0.2...]    -port native=9042\n"
        "  -schema [replication(factor=3)] [compaction(strategy=SizeTieredCompactionStrategy)]\n"
        "          [compression=LZ4Compressor] [keyspace=keyspace1] [create=true|false]\n"
        "  -col n=5 size=FIXED(34)|UNIFORM(10..100)\n"
        "  -pop seq=1..1000000 | dist=uniform(1..1000000) | dist=gaussian(1..1000000[,3])\n"
        "  -mode native cql3 prepared|simple compression=lz4|none connectionsPerHost=1\n"
        "        timeout=12s tokenaware=true\n"
        "  -log interval=1 file=PATH [hdrfile=PATH]\n"
        "  -graph file=report.html [title=...] [revision=NAME: add this run to the file's runs]\n"
        "  -errors max=0                 -seed N\n",
        out);
}

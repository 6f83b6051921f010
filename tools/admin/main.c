/*
 * ilion-admin: the node's admin tool (nodetool's counterpart). Talks HTTP/JSON to a node's
 * admin interface (admin_http_port, docs/admin.md) and prints what nodetool prints:
 *
 *   ilion-admin [-h HOST] [-p PORT] [--json] status|ring|info|describecluster
 *   ilion-admin [-h HOST] [-p PORT] flush|compact [KEYSPACE [TABLE]]
 *
 * Exit status 0 on success, 1 when the node cannot be reached or answers an error, 2 on usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "json.h"

#define DEFAULT_PORT "7199"
#define MAX_RESPONSE (64u << 20)
#define TIMEOUT_MS 60000

static const char *host = "127.0.0.1", *port = DEFAULT_PORT;

static void usage(void) {
    fprintf(stderr,
            "usage: ilion-admin [-h HOST] [-p PORT] [--json] COMMAND [ARGS]\n"
            "commands:\n"
            "  status                      nodes per data center: state, address, load, tokens, owns, host id, rack\n"
            "  ring                        every token and the node owning it\n"
            "  info                        this node: host id, gossip generation, load, uptime, dc/rack\n"
            "  describecluster             name, snitch, partitioner, schema versions and their nodes\n"
            "  flush [KEYSPACE [TABLE]]    write memtables to SSTables\n"
            "  compact [KEYSPACE [TABLE]]  major compaction\n"
            "HOST defaults to 127.0.0.1, PORT to " DEFAULT_PORT " (the node's admin_http_port).\n");
    exit(2);
}

/* One HTTP/1.1 request; returns the status code and the body (malloc'd) or -1. */
static int http(const char *method, const char *path, char **body, size_t *blen) {
    struct addrinfo hints, *res;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    int r = getaddrinfo(host, port, &hints, &res);
    if (r) {
        fprintf(stderr, "ilion-admin: %s:%s: %s\n", host, port, gai_strerror(r));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "ilion-admin: cannot connect to %s:%s: %s (is admin_http_port set?)\n", host,
                port, strerror(errno));
        return -1;
    }
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: ilion-admin\r\n"
                     "Content-Length: 0\r\nConnection: close\r\n\r\n",
                     method, path, host, port);
    if (n < 0 || (size_t)n >= sizeof req || write(fd, req, (size_t)n) != n) {
        fprintf(stderr, "ilion-admin: sending the request failed\n");
        close(fd);
        return -1;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        return -1;
    }
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, TIMEOUT_MS) <= 0) {
            fprintf(stderr, "ilion-admin: no answer from %s:%s within %d s\n", host, port, TIMEOUT_MS / 1000);
            free(buf);
            close(fd);
            return -1;
        }
        if (len == cap) {
            if (cap >= MAX_RESPONSE) break;
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
        ssize_t got = read(fd, buf + len, cap - len);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        len += (size_t)got;
    }
    close(fd);
    buf[len] = 0;
    int status;
    char *hdr_end = strstr(buf, "\r\n\r\n");
    if (!hdr_end || sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
        fprintf(stderr, "ilion-admin: not an HTTP answer from %s:%s\n", host, port);
        free(buf);
        return -1;
    }
    hdr_end += 4;
    *blen = len - (size_t)(hdr_end - buf);
    memmove(buf, hdr_end, *blen + 1);
    *body = buf;
    return status;
}

/* GET or POST path and parse the JSON answer; exits on failure. */
static json *call(const char *method, const char *path, bool print_raw) {
    char *body;
    size_t blen;
    int status = http(method, path, &body, &blen);
    if (status < 0) exit(1);
    if (print_raw) {
        fwrite(body, 1, blen, stdout);
        putchar('\n');
    }
    char err[128];
    json *j = json_parse(body, blen, err, sizeof err);
    if (!j) {
        fprintf(stderr, "ilion-admin: bad JSON from the node (%s)\n", err);
        free(body);
        exit(1);
    }
    free(body);
    if (status != 200) {
        fprintf(stderr, "ilion-admin: %s %s: HTTP %d: %s\n", method, path, status,
                json_str(j, "error", "error"));
        json_free(j);
        exit(1);
    }
    return j;
}

static void human_bytes(double b, char *out, size_t cap) {
    const char *u[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) {
        b /= 1024;
        i++;
    }
    if (i == 0) snprintf(out, cap, "%.0f %s", b, u[i]);
    else snprintf(out, cap, "%.2f %s", b, u[i]);
}

static const char *state_letter(const char *state) {
    if (!strcmp(state, "NORMAL") || !strcmp(state, "shutdown")) return "N";
    if (!strcmp(state, "BOOT")) return "J";
    if (!strcmp(state, "LEAVING") || !strcmp(state, "LEFT")) return "L";
    if (!strcmp(state, "MOVING")) return "M";
    return "?";
}

static int cmp_node(const void *a, const void *b) {
    const json *x = *(const json *const *)a, *y = *(const json *const *)b;
    int c = strcmp(json_str(x, "data_center", ""), json_str(y, "data_center", ""));
    if (c) return c;
    /* addresses in numeric order */
    unsigned a1[4] = {0}, b1[4] = {0};
    sscanf(json_str(x, "address", ""), "%u.%u.%u.%u", &a1[0], &a1[1], &a1[2], &a1[3]);
    sscanf(json_str(y, "address", ""), "%u.%u.%u.%u", &b1[0], &b1[1], &b1[2], &b1[3]);
    for (int i = 0; i < 4; i++)
        if (a1[i] != b1[i]) return a1[i] < b1[i] ? -1 : 1;
    return strcmp(json_str(x, "address", ""), json_str(y, "address", ""));
}

static void dc_header(const char *dc) {
    size_t n = strlen("Datacenter: ") + strlen(dc);
    printf("Datacenter: %s\n", dc);
    for (size_t i = 0; i < n; i++) putchar('=');
    putchar('\n');
}

static int cmd_status(bool raw) {
    json *j = call("GET", "/status", raw);
    if (raw) return 0;
    const json *nodes = json_get(j, "nodes");
    if (!nodes || nodes->kind != JSON_ARRAY) {
        fprintf(stderr, "ilion-admin: no node list in the answer\n");
        return 1;
    }
    json **v = malloc((nodes->n ? nodes->n : 1) * sizeof *v);
    if (!v) return 1;
    memcpy(v, nodes->items, nodes->n * sizeof *v);
    qsort(v, nodes->n, sizeof *v, cmp_node);
    const char *dc = NULL;
    for (size_t i = 0; i < nodes->n; i++) {
        const char *d = json_str(v[i], "data_center", "?");
        if (!dc || strcmp(dc, d)) {
            if (dc) putchar('\n');
            dc = d;
            dc_header(dc);
            printf("Status=Up/Down\n|/ State=Normal/Leaving/Joining/Moving\n");
            printf("%-3s %-16s %-12s %-7s %-8s %-37s %s\n", "--", "Address", "Load", "Tokens",
                   "Owns", "Host ID", "Rack");
        }
        char load[32], owns[16];
        human_bytes(json_num(v[i], "load", 0), load, sizeof load);
        snprintf(owns, sizeof owns, "%.1f%%", 100.0 * json_num(v[i], "owns", 0));
        char st[3];
        snprintf(st, sizeof st, "%c%s", strcmp(json_str(v[i], "status", ""), "UP") ? 'D' : 'U',
                 state_letter(json_str(v[i], "state", "")));
        printf("%-3s %-16s %-12s %-7.0f %-8s %-37s %s\n", st, json_str(v[i], "address", "?"), load,
               json_num(v[i], "tokens", 0), owns, json_str(v[i], "host_id", "?"),
               json_str(v[i], "rack", "?"));
    }
    free(v);
    json_free(j);
    return 0;
}

static int cmd_ring(bool raw) {
    json *j = call("GET", "/ring", raw);
    if (raw) return 0;
    json *st = call("GET", "/status", false);
    const json *toks = json_get(j, "tokens"), *nodes = json_get(st, "nodes");
    if (!toks || toks->kind != JSON_ARRAY) return 1;
    /* Per data center, like nodetool: the last token first, then every token in order. */
    const char *dcs[64];
    size_t ndcs = 0;
    for (size_t i = 0; i < toks->n; i++) {
        const char *d = json_str(toks->items[i], "data_center", "?");
        size_t k;
        for (k = 0; k < ndcs; k++)
            if (!strcmp(dcs[k], d)) break;
        if (k == ndcs && ndcs < 64) dcs[ndcs++] = d;
    }
    {
        for (size_t k = 0; k < ndcs; k++) {
            if (k) putchar('\n');
            dc_header(dcs[k]);
            printf("%-16s %-10s %-7s %-9s %-12s %-8s %s\n", "Address", "Rack", "Status", "State",
                   "Load", "Owns", "Token");
            const json *last = NULL;
            for (size_t i = 0; i < toks->n; i++)
                if (!strcmp(json_str(toks->items[i], "data_center", "?"), dcs[k])) last = toks->items[i];
            if (last) printf("%-16s %-10s %-7s %-9s %-12s %-8s %s\n", "", "", "", "", "", "",
                             json_str(last, "token", "?"));
            for (size_t i = 0; i < toks->n; i++) {
                const json *t = toks->items[i];
                if (strcmp(json_str(t, "data_center", "?"), dcs[k])) continue;
                const char *addr = json_str(t, "address", "?");
                const json *nd = NULL;
                for (size_t m = 0; nodes && m < nodes->n; m++)
                    if (!strcmp(json_str(nodes->items[m], "address", ""), addr)) nd = nodes->items[m];
                char load[32] = "?", owns[16] = "?";
                if (nd) {
                    human_bytes(json_num(nd, "load", 0), load, sizeof load);
                    snprintf(owns, sizeof owns, "%.1f%%", 100.0 * json_num(nd, "owns", 0));
                }
                const char *state = nd ? json_str(nd, "state", "?") : "?";
                printf("%-16s %-10s %-7s %-9s %-12s %-8s %s\n", addr, json_str(t, "rack", "?"),
                       strcmp(json_str(t, "status", ""), "UP") ? "Down" : "Up",
                       !strcmp(state, "NORMAL") ? "Normal" : state, load, owns,
                       json_str(t, "token", "?"));
            }
        }
    }
    json_free(st);
    json_free(j);
    return 0;
}

static int cmd_info(bool raw) {
    json *j = call("GET", "/info", raw);
    if (raw) return 0;
    char load[32];
    human_bytes(json_num(j, "load", 0), load, sizeof load);
    printf("%-23s: %s\n", "ID", json_str(j, "host_id", "?"));
    printf("%-23s: %s\n", "Gossip active", json_bool(j, "gossip_active", false) ? "true" : "false");
    printf("%-23s: %s\n", "Native Transport active", "true");
    printf("%-23s: %s\n", "Load", load);
    printf("%-23s: %s\n", "Generation No", json_str(j, "generation", "?"));
    printf("%-23s: %s\n", "Uptime (seconds)", json_str(j, "uptime_seconds", "?"));
    printf("%-23s: %s\n", "Data Center", json_str(j, "data_center", "?"));
    printf("%-23s: %s\n", "Rack", json_str(j, "rack", "?"));
    printf("%-23s: %s:%s\n", "Address", json_str(j, "address", "?"), json_str(j, "storage_port", "?"));
    printf("%-23s: %s:%s\n", "Native address", json_str(j, "rpc_address", "?"), json_str(j, "native_port", "?"));
    printf("%-23s: %s\n", "Schema version", json_str(j, "schema_version", "?"));
    printf("%-23s: %s\n", "Release version", json_str(j, "release_version", "?"));
    printf("%-23s: (%s tokens; see ilion-admin ring)\n", "Token", json_str(j, "tokens", "?"));
    json_free(j);
    return 0;
}

static void print_list(const json *a) {
    putchar('[');
    for (size_t i = 0; a && a->kind == JSON_ARRAY && i < a->n; i++)
        printf("%s%s", i ? ", " : "", a->items[i]->kind == JSON_STRING ? a->items[i]->str : "?");
    putchar(']');
}

static int cmd_describecluster(bool raw) {
    json *j = call("GET", "/describecluster", raw);
    if (raw) return 0;
    printf("Cluster Information:\n");
    printf("\tName: %s\n", json_str(j, "name", "?"));
    printf("\tSnitch: %s\n", json_str(j, "snitch", "?"));
    printf("\tPartitioner: %s\n", json_str(j, "partitioner", "?"));
    printf("\tSchema versions:\n");
    const json *sv = json_get(j, "schema_versions");
    for (size_t i = 0; sv && sv->kind == JSON_OBJECT && i < sv->n; i++) {
        printf("\t\t%s: ", sv->keys[i]);
        print_list(sv->items[i]);
        printf("\n\n");
    }
    const json *un = json_get(j, "unreachable");
    if (un && un->kind == JSON_ARRAY && un->n) {
        printf("\t\tUNREACHABLE: ");
        print_list(un);
        printf("\n");
    }
    json_free(j);
    return 0;
}

static bool plain(const char *s) {
    if (!*s || strlen(s) > 48) return false;
    for (; *s; s++)
        if (!(*s == '_' || (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
            return false;
    return true;
}

static int cmd_tables(const char *what, int argc, char **argv, bool raw) {
    if (argc > 2) usage();
    char path[256];
    int n = snprintf(path, sizeof path, "/%s", what);
    for (int i = 0; i < argc; i++) {
        if (!plain(argv[i])) {
            fprintf(stderr, "ilion-admin: '%s' is not a keyspace or table name\n", argv[i]);
            return 2;
        }
        n += snprintf(path + n, sizeof path - (size_t)n, "%s%s=%s", i ? "&" : "?",
                      i ? "table" : "keyspace", argv[i]);
    }
    json *j = call("POST", path, raw);
    json_free(j);
    return 0;
}

int main(int argc, char **argv) {
    bool raw = false;
    int i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--host")) {
            if (++i >= argc) usage();
            host = argv[i];
        } else if (!strcmp(argv[i], "-p") || !strcmp(argv[i], "--port")) {
            if (++i >= argc) usage();
            port = argv[i];
        } else if (!strcmp(argv[i], "--json")) {
            raw = true;
        } else if (!strcmp(argv[i], "--help")) {
            usage();
        } else {
            break;
        }
    }
    if (i >= argc) usage();
    const char *cmd = argv[i++];
    int rest = argc - i;
    if (!strcmp(cmd, "status") && rest == 0) return cmd_status(raw);
    if (!strcmp(cmd, "ring") && rest == 0) return cmd_ring(raw);
    if (!strcmp(cmd, "info") && rest == 0) return cmd_info(raw);
    if (!strcmp(cmd, "describecluster") && rest == 0) return cmd_describecluster(raw);
    if (!strcmp(cmd, "flush") || !strcmp(cmd, "compact")) return cmd_tables(cmd, rest, argv + i, raw);
    usage();
    return 2;
}

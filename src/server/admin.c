/* The admin HTTP/JSON interface: see include/ilion/server/admin.h and docs/admin.md. */
#include "ilion/server/admin.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ilion/cluster/cluster.h"
#include "ilion/cql/schema_sync.h"
#include "ilion/cql/server.h"
#include "ilion/storage/engine.h"
#include "ilion/util/buf.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"

#define ADMIN_MAX_REQUEST 8192
#define ADMIN_MAX_CONNS 64
#define ADMIN_MAX_TABLES 4096
#define ADMIN_IDLE_MS 10000    /* default idle_timeout_ms */

typedef struct admin_conn admin_conn;

struct admin_server {
    admin_options o;
    char cluster_name[256], partitioner[128], snitch[128];
    uv_tcp_t listener;
    uv_timer_t sweep;
    struct cql_server *cql;
    struct cql_schema_sync *sync;
    admin_conn *conns;
    uint32_t nconns;
    uint32_t open_handles;   /* listener + connections; freed at 0 once stopping */
    bool stopping, detached;
    uint64_t requests;
};

struct admin_conn {
    uv_tcp_t tcp;
    uv_write_t wr;
    admin_server *a;
    admin_conn *next, *prev;
    uint64_t opened_ms;
    char req[ADMIN_MAX_REQUEST + 1];
    size_t len;
    bool answered;
    buf out;
};

/* ---- small output helpers ---------------------------------------------------------------- */

static void bprintf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(buf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        buf_put(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    buf_put(b, big, (size_t)n);
    free(big);
}

static void jstr(buf *b, const char *s) {
    buf_u8(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            buf_u8(b, '\\');
            buf_u8(b, *p);
        } else if (*p < 0x20) {
            bprintf(b, "\\u%04x", *p);
        } else {
            buf_u8(b, *p);
        }
    }
    buf_u8(b, '"');
}

static void jkv_str(buf *b, const char *k, const char *v, bool comma) {
    if (comma) buf_u8(b, ',');
    jstr(b, k);
    buf_u8(b, ':');
    jstr(b, v);
}

static void uuid_text(const uint8_t *u, char out[37]) {
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
             u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
             u[15]);
}

/* ---- one node's description (local or peer) ----------------------------------------------- */

typedef struct node_view {
    net_addr addr;
    bool local, alive, has_host_id;
    uint8_t host_id[16];
    char dc[64], rack[64], state[32], schema[64], rpc[64], release[64];
    uint16_t native_port;
    uint64_t load;
    int32_t generation;
    uint32_t ntokens;
    double phi, owns;
} node_view;

static double owns_of(const ring *r, const net_addr *ep) {
    if (!r) return 0;
    uint32_t n = ring_endpoint_count(r);
    if (!n) return 0;
    double *shares = calloc(n, sizeof *shares);
    if (!shares) return 0;
    ring_ownership(r, shares);
    double v = 0;
    for (uint32_t i = 0; i < n; i++)
        if (net_addr_eq(&ring_endpoint_at(r, i)->addr, ep)) v = shares[i];
    free(shares);
    return v;
}

static void local_view(admin_server *a, node_view *v) {
    memset(v, 0, sizeof *v);
    cluster *c = a->o.cluster;
    v->local = v->alive = v->has_host_id = true;
    v->addr = *cluster_local_addr(c);
    memcpy(v->host_id, cluster_host_id(c), 16);
    snprintf(v->dc, sizeof v->dc, "%s", cluster_local_dc(c));
    snprintf(v->rack, sizeof v->rack, "%s", cluster_local_rack(c));
    snprintf(v->state, sizeof v->state, "%s", a->stopping ? "shutdown" : "NORMAL");
    const uint8_t *val;
    size_t len;
    uint32_t ver;
    gossip *g = cluster_gossip(c);
    if (gossip_get_app(g, &v->addr, GOSSIP_APP_SCHEMA, &val, &len, &ver) == 0 && len < sizeof v->schema) {
        memcpy(v->schema, val, len);
        v->schema[len] = 0;
    }
    if (gossip_get_app(g, &v->addr, GOSSIP_APP_RPC_ADDRESS, &val, &len, &ver) == 0 && len < sizeof v->rpc) {
        memcpy(v->rpc, val, len);
        v->rpc[len] = 0;
    }
    if (gossip_get_app(g, &v->addr, GOSSIP_APP_RELEASE_VERSION, &val, &len, &ver) == 0 &&
        len < sizeof v->release) {
        memcpy(v->release, val, len);
        v->release[len] = 0;
    }
    if (gossip_get_app(g, &v->addr, GOSSIP_APP_NATIVE_PORT, &val, &len, &ver) == 0 && len < 8) {
        char t[8];
        memcpy(t, val, len);
        t[len] = 0;
        v->native_port = (uint16_t)atoi(t);
    }
    uint32_t maxv;
    gossip_get_heartbeat(g, &v->addr, &v->generation, &maxv);
    cluster_local_tokens(c, &v->ntokens);
    v->load = a->o.engine && !a->detached ? storage_load_bytes(a->o.engine) : 0;
    v->owns = owns_of(cluster_ring(c), &v->addr);
}

static void peer_view(admin_server *a, const cluster_peer *p, node_view *v) {
    memset(v, 0, sizeof *v);
    v->addr = p->addr;
    v->alive = p->alive;
    v->has_host_id = p->has_host_id;
    memcpy(v->host_id, p->host_id, 16);
    snprintf(v->dc, sizeof v->dc, "%s", p->dc);
    snprintf(v->rack, sizeof v->rack, "%s", p->rack);
    snprintf(v->state, sizeof v->state, "%s", p->status[0] ? p->status : "UNKNOWN");
    snprintf(v->schema, sizeof v->schema, "%s", p->schema_version);
    snprintf(v->rpc, sizeof v->rpc, "%s", p->rpc_address);
    snprintf(v->release, sizeof v->release, "%s", p->release_version);
    v->native_port = p->native_port;
    v->load = p->load;
    v->generation = p->generation;
    v->ntokens = p->ntokens;
    v->phi = p->phi;
    v->owns = owns_of(cluster_ring(a->o.cluster), &p->addr);
}

static void view_json(buf *b, const node_view *v) {
    char ip[NET_ADDR_STRLEN], hid[37] = "";
    net_addr_ip_str(&v->addr, ip, sizeof ip);
    if (v->has_host_id) uuid_text(v->host_id, hid);
    buf_u8(b, '{');
    jkv_str(b, "address", ip, false);
    bprintf(b, ",\"storage_port\":%u", v->addr.port);
    jkv_str(b, "status", v->alive ? "UP" : "DOWN", true);
    jkv_str(b, "state", v->state, true);
    jkv_str(b, "data_center", v->dc, true);
    jkv_str(b, "rack", v->rack, true);
    jkv_str(b, "host_id", hid, true);
    bprintf(b, ",\"load\":%" PRIu64 ",\"tokens\":%u,\"owns\":%.6f,\"generation\":%d", v->load,
            v->ntokens, v->owns, v->generation);
    jkv_str(b, "schema_version", v->schema, true);
    jkv_str(b, "rpc_address", v->rpc, true);
    bprintf(b, ",\"native_port\":%u", v->native_port);
    jkv_str(b, "release_version", v->release, true);
    bprintf(b, ",\"local\":%s,\"phi\":%.3f}", v->local ? "true" : "false", v->phi);
}

/* ---- endpoints ---------------------------------------------------------------------------- */

static void ep_status(admin_server *a, buf *b) {
    node_view v;
    buf_u8(b, '{');
    jkv_str(b, "cluster_name", a->cluster_name, false);
    jkv_str(b, "partitioner", a->partitioner, true);
    bprintf(b, ",\"nodes\":[");
    local_view(a, &v);
    view_json(b, &v);
    size_t n = cluster_peer_count(a->o.cluster);
    for (size_t i = 0; i < n; i++) {
        cluster_peer p;
        if (cluster_peer_get(a->o.cluster, i, &p)) continue;
        peer_view(a, &p, &v);
        buf_u8(b, ',');
        view_json(b, &v);
    }
    bprintf(b, "]}");
}

static void ep_ring(admin_server *a, buf *b) {
    const ring *r = cluster_ring(a->o.cluster);
    buf_u8(b, '{');
    jkv_str(b, "cluster_name", a->cluster_name, false);
    bprintf(b, ",\"tokens\":[");
    uint32_t n = r ? ring_token_count(r) : 0;
    for (uint32_t i = 0; i < n; i++) {
        const ring_endpoint *e = ring_token_owner(r, i);
        char ip[NET_ADDR_STRLEN];
        net_addr_ip_str(&e->addr, ip, sizeof ip);
        if (i) buf_u8(b, ',');
        bprintf(b, "{\"token\":\"%" PRId64 "\"", ring_token_at(r, i));
        jkv_str(b, "address", ip, true);
        jkv_str(b, "data_center", e->dc, true);
        jkv_str(b, "rack", e->rack, true);
        jkv_str(b, "status", cluster_is_alive(a->o.cluster, &e->addr) ? "UP" : "DOWN", true);
        buf_u8(b, '}');
    }
    bprintf(b, "]}");
}

static void ep_info(admin_server *a, buf *b) {
    node_view v;
    local_view(a, &v);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    char ip[NET_ADDR_STRLEN], hid[37];
    net_addr_ip_str(&v.addr, ip, sizeof ip);
    uuid_text(v.host_id, hid);
    buf_u8(b, '{');
    jkv_str(b, "host_id", hid, false);
    jkv_str(b, "address", ip, true);
    bprintf(b, ",\"storage_port\":%u,\"gossip_active\":%s,\"generation\":%d", v.addr.port,
            a->stopping ? "false" : "true", v.generation);
    bprintf(b, ",\"load\":%" PRIu64 ",\"uptime_seconds\":%" PRId64 ",\"tokens\":%u", v.load,
            (now_ms - a->o.started_ms) / 1000, v.ntokens);
    jkv_str(b, "data_center", v.dc, true);
    jkv_str(b, "rack", v.rack, true);
    jkv_str(b, "schema_version", v.schema, true);
    jkv_str(b, "rpc_address", v.rpc, true);
    bprintf(b, ",\"native_port\":%u", v.native_port);
    jkv_str(b, "release_version", v.release, true);
    jkv_str(b, "cluster_name", a->cluster_name, true);
    bprintf(b, ",\"schema_agreement\":%s}", cluster_schema_agrees(a->o.cluster) ? "true" : "false");
}

static void ep_describecluster(admin_server *a, buf *b) {
    /* schema version -> endpoints; unreachable nodes apart (nodetool's layout). */
    enum { MAXV = 64 };
    char versions[MAXV][64];
    buf lists[MAXV];
    size_t nv = 0;
    buf unreachable;
    buf_init(&unreachable);
    size_t n = cluster_peer_count(a->o.cluster);
    for (size_t i = 0; i <= n; i++) {
        node_view v;
        if (i == 0) {
            local_view(a, &v);
        } else {
            cluster_peer p;
            if (cluster_peer_get(a->o.cluster, i - 1, &p)) continue;
            peer_view(a, &p, &v);
        }
        char ip[NET_ADDR_STRLEN];
        net_addr_ip_str(&v.addr, ip, sizeof ip);
        if (!v.alive) {
            if (unreachable.len) buf_u8(&unreachable, ',');
            jstr(&unreachable, ip);
            continue;
        }
        size_t k;
        for (k = 0; k < nv; k++)
            if (strcmp(versions[k], v.schema) == 0) break;
        if (k == nv) {
            if (nv == MAXV) continue;
            snprintf(versions[nv], sizeof versions[nv], "%s", v.schema);
            buf_init(&lists[nv]);
            nv++;
        }
        if (lists[k].len) buf_u8(&lists[k], ',');
        jstr(&lists[k], ip);
    }
    buf_u8(b, '{');
    jkv_str(b, "name", a->cluster_name, false);
    jkv_str(b, "partitioner", a->partitioner, true);
    jkv_str(b, "snitch", a->snitch, true);
    bprintf(b, ",\"schema_versions\":{");
    for (size_t k = 0; k < nv; k++) {
        if (k) buf_u8(b, ',');
        jstr(b, versions[k][0] ? versions[k] : "UNKNOWN");
        bprintf(b, ":[");
        buf_put(b, lists[k].data, lists[k].len);
        buf_u8(b, ']');
        buf_free(&lists[k]);
    }
    bprintf(b, "},\"unreachable\":[");
    buf_put(b, unreachable.data, unreachable.len);
    bprintf(b, "]}");
    buf_free(&unreachable);
}

/* Value of name=... in a query string (names are plain identifiers: no decoding needed
 * beyond refusing anything else). */
static bool query_param(const char *q, const char *name, char *out, size_t cap) {
    size_t nl = strlen(name);
    while (q && *q) {
        const char *amp = strchr(q, '&');
        size_t seg = amp ? (size_t)(amp - q) : strlen(q);
        if (seg > nl && strncmp(q, name, nl) == 0 && q[nl] == '=') {
            size_t vl = seg - nl - 1;
            if (vl == 0 || vl >= cap) return false;
            memcpy(out, q + nl + 1, vl);
            out[vl] = 0;
            return true;
        }
        q = amp ? amp + 1 : NULL;
    }
    return false;
}

static bool plain_name(const char *s) {
    for (; *s; s++)
        if (!(*s == '_' || (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
            return false;
    return true;
}

/* flush / compact: every user table, a keyspace's tables, or one table. */
static int ep_tables(admin_server *a, const char *query, bool compact, buf *b) {
    char ks[64] = "", table[64] = "";
    bool has_ks = query_param(query, "keyspace", ks, sizeof ks);
    bool has_t = query_param(query, "table", table, sizeof table);
    if ((has_ks && !plain_name(ks)) || (has_t && !plain_name(table)) || (has_t && !has_ks)) {
        bprintf(b, "{\"error\":\"bad keyspace or table name\"}");
        return 400;
    }
    uint64_t *ids = calloc(ADMIN_MAX_TABLES, sizeof *ids);
    if (!ids) {
        bprintf(b, "{\"error\":\"out of memory\"}");
        return 500;
    }
    int n = cql_executor_table_ids(a->o.exec, has_ks ? ks : NULL, has_t ? table : NULL, ids,
                                   ADMIN_MAX_TABLES);
    if (n < 0) {
        free(ids);
        buf_u8(b, '{');
        jkv_str(b, "error", has_t ? "no such table" : "no such keyspace", false);
        buf_u8(b, '}');
        return 404;
    }
    if (n > ADMIN_MAX_TABLES) n = ADMIN_MAX_TABLES;
    int failed = 0, rc = 0;
    for (int i = 0; i < n; i++) {
        int r = compact ? storage_compact(a->o.engine, ids[i]) : storage_flush(a->o.engine, ids[i], true);
        if (r) {
            failed++;
            rc = r;
        }
    }
    free(ids);
    LOG_INFO("admin", "%s of %d table(s)%s%s%s%s: %d failed", compact ? "compaction" : "flush", n,
             has_ks ? " in " : "", has_ks ? ks : "", has_t ? "." : "", has_t ? table : "", failed);
    bprintf(b, "{\"operation\":\"%s\",\"tables\":%d,\"failed\":%d", compact ? "compact" : "flush",
            n, failed);
    if (failed) {
        bprintf(b, ",");
        jkv_str(b, "error", ilion_strerror(rc), false);
    }
    buf_u8(b, '}');
    return failed ? 500 : 200;
}

static void ep_metrics(admin_server *a, buf *b) {
    cluster *c = a->o.cluster;
    size_t n = cluster_peer_count(c), up = 0;
    bprintf(b, "# HELP ilion_peers Peers known to gossip, by liveness.\n# TYPE ilion_peers gauge\n");
    for (size_t i = 0; i < n; i++) {
        cluster_peer p;
        if (cluster_peer_get(c, i, &p) == 0 && p.alive) up++;
    }
    bprintf(b, "ilion_peers{status=\"up\"} %zu\nilion_peers{status=\"down\"} %zu\n", up, n - up);
    bprintf(b, "# HELP ilion_peer_phi Failure detector phi per peer.\n# TYPE ilion_peer_phi gauge\n");
    for (size_t i = 0; i < n; i++) {
        cluster_peer p;
        char ip[NET_ADDR_STRLEN];
        if (cluster_peer_get(c, i, &p)) continue;
        bprintf(b, "ilion_peer_phi{peer=\"%s\"} %.3f\n", net_addr_ip_str(&p.addr, ip, sizeof ip), p.phi);
    }
    gossip_stats gs;
    gossip_get_stats(cluster_gossip(c), &gs);
    bprintf(b, "# TYPE ilion_gossip_rounds_total counter\nilion_gossip_rounds_total %" PRIu64 "\n", gs.rounds);
    bprintf(b, "# TYPE ilion_gossip_bad_messages_total counter\nilion_gossip_bad_messages_total %" PRIu64 "\n",
            gs.bad_messages);
    net_stats ns;
    net_get_stats(cluster_messaging(c), &ns);
    bprintf(b, "# TYPE ilion_internode_messages_total counter\n"
               "ilion_internode_messages_total{dir=\"sent\"} %" PRIu64 "\n"
               "ilion_internode_messages_total{dir=\"received\"} %" PRIu64 "\n",
            ns.sent_msgs, ns.recv_msgs);
    bprintf(b, "# TYPE ilion_internode_timeouts_total counter\nilion_internode_timeouts_total %" PRIu64 "\n",
            ns.timeouts);
    if (a->sync) {
        cql_schema_sync_stats ss;
        cql_schema_sync_stats_get(a->sync, &ss);
        bprintf(b, "# TYPE ilion_schema_pulls_total counter\nilion_schema_pulls_total %" PRIu64 "\n"
                   "# TYPE ilion_schema_pushes_total counter\nilion_schema_pushes_total{dir=\"sent\"} %" PRIu64
                   "\nilion_schema_pushes_total{dir=\"received\"} %" PRIu64 "\n",
                ss.pulls_sent, ss.pushes_sent, ss.pushes_received);
    }
    if (a->cql) {
        cql_server_stats st;
        cql_server_stats_get(a->cql, &st);
        bprintf(b, "# TYPE ilion_cql_requests_total counter\nilion_cql_requests_total %" PRIu64 "\n"
                   "# TYPE ilion_cql_connections gauge\nilion_cql_connections %u\n"
                   "# TYPE ilion_cql_in_flight gauge\nilion_cql_in_flight %u\n",
                st.requests, st.connections_open, st.in_flight);
    }
    if (a->o.engine && !a->detached)
        bprintf(b, "# TYPE ilion_load_bytes gauge\nilion_load_bytes %" PRIu64 "\n",
                storage_load_bytes(a->o.engine));
    bprintf(b, "# TYPE ilion_admin_requests_total counter\nilion_admin_requests_total %" PRIu64 "\n",
            a->requests);
}

/* Fills the response; returns the HTTP status. */
static int route(admin_server *a, const char *method, const char *path, const char *query,
                 buf *body, const char **ctype) {
    *ctype = "application/json";
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    if (!get && !post) {
        bprintf(body, "{\"error\":\"method not allowed\"}");
        return 405;
    }
    if (a->detached || !a->o.cluster) {
        bprintf(body, "{\"error\":\"the node is shutting down\"}");
        return 503;
    }
    if (!strcmp(path, "/status")) ep_status(a, body);
    else if (!strcmp(path, "/ring")) ep_ring(a, body);
    else if (!strcmp(path, "/info")) ep_info(a, body);
    else if (!strcmp(path, "/describecluster")) ep_describecluster(a, body);
    else if (!strcmp(path, "/flush") || !strcmp(path, "/compact")) {
        if (!post) {
            bprintf(body, "{\"error\":\"use POST\"}");
            return 405;
        }
        return ep_tables(a, query, path[1] == 'c', body);
    } else if (!strcmp(path, "/metrics")) {
        *ctype = "text/plain; version=0.0.4";
        ep_metrics(a, body);
    } else {
        bprintf(body, "{\"error\":\"not found\",\"endpoints\":[\"/status\",\"/ring\",\"/info\","
                      "\"/describecluster\",\"/flush\",\"/compact\",\"/metrics\"]}");
        return 404;
    }
    return 200;
}

/* ---- HTTP plumbing ---------------------------------------------------------------------- */

static void maybe_free(admin_server *a) {
    if (a->stopping && a->open_handles == 0) free(a);
}

static void conn_closed(uv_handle_t *h) {
    admin_conn *cn = h->data;
    admin_server *a = cn->a;
    if (cn->prev) cn->prev->next = cn->next;
    else a->conns = cn->next;
    if (cn->next) cn->next->prev = cn->prev;
    a->nconns--;
    a->open_handles--;
    buf_free(&cn->out);
    free(cn);
    maybe_free(a);
}

static void conn_close(admin_conn *cn) {
    if (!uv_is_closing((uv_handle_t *)&cn->tcp)) uv_close((uv_handle_t *)&cn->tcp, conn_closed);
}

static void written(uv_write_t *w, int status) {
    (void)status;
    conn_close(w->data);
}

static const char *reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Internal Server Error";
    }
}

static void respond(admin_conn *cn, int status, const char *ctype, buf *body) {
    cn->answered = true;
    buf_init(&cn->out);
    bprintf(&cn->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
            status, reason(status), ctype, body->len);
    buf_put(&cn->out, body->data, body->len);
    if (cn->out.oom) {
        conn_close(cn);
        return;
    }
    uv_buf_t ub = uv_buf_init((char *)cn->out.data, (unsigned)cn->out.len);
    cn->wr.data = cn;
    uv_read_stop((uv_stream_t *)&cn->tcp);
    if (uv_write(&cn->wr, (uv_stream_t *)&cn->tcp, &ub, 1, written)) conn_close(cn);
}

static void handle_request(admin_conn *cn) {
    admin_server *a = cn->a;
    a->requests++;
    buf body;
    buf_init(&body);
    const char *ctype = "application/json";
    int status;
    /* Request line: METHOD SP target SP HTTP/1.x */
    char *line_end = strstr(cn->req, "\r\n");
    char method[16], target[1024];
    if (!line_end || sscanf(cn->req, "%15s %1023s", method, target) != 2 || target[0] != '/') {
        bprintf(&body, "{\"error\":\"bad request line\"}");
        status = 400;
    } else {
        char *q = strchr(target, '?');
        if (q) *q++ = 0;
        status = route(a, method, target, q ? q : "", &body, &ctype);
    }
    if (body.oom) {
        buf_reset(&body);
        body.oom = false;
        status = 500;
    }
    respond(cn, status, ctype, &body);
    buf_free(&body);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *out) {
    (void)suggested;
    admin_conn *cn = h->data;
    out->base = cn->req + cn->len;
    out->len = ADMIN_MAX_REQUEST - cn->len;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
    (void)b;
    admin_conn *cn = s->data;
    if (n < 0) {
        conn_close(cn);
        return;
    }
    if (n == 0 || cn->answered) return;
    cn->len += (size_t)n;
    cn->req[cn->len] = 0;
    if (memchr(cn->req, 0, cn->len)) {
        conn_close(cn);   /* not HTTP */
        return;
    }
    if (strstr(cn->req, "\r\n\r\n") || strstr(cn->req, "\n\n")) {
        handle_request(cn);
    } else if (cn->len >= ADMIN_MAX_REQUEST) {
        buf body;
        buf_init(&body);
        bprintf(&body, "{\"error\":\"request too large\"}");
        respond(cn, 431, "application/json", &body);
        buf_free(&body);
    }
}

static void on_connection(uv_stream_t *l, int status) {
    admin_server *a = l->data;
    if (status < 0 || a->stopping) return;
    admin_conn *cn = calloc(1, sizeof *cn);
    if (!cn) return;
    cn->a = a;
    uv_tcp_init(a->o.loop, &cn->tcp);
    cn->tcp.data = cn;
    cn->next = a->conns;
    if (a->conns) a->conns->prev = cn;
    a->conns = cn;
    a->nconns++;
    a->open_handles++;
    cn->opened_ms = uv_now(a->o.loop);
    if (uv_accept(l, (uv_stream_t *)&cn->tcp) || a->nconns > ADMIN_MAX_CONNS ||
        uv_read_start((uv_stream_t *)&cn->tcp, alloc_cb, read_cb))
        conn_close(cn);
}

static void listener_closed(uv_handle_t *h) {
    admin_server *a = h->data;
    a->open_handles--;
    maybe_free(a);
}

/* Closes connections that never completed a request (slow or silent clients). */
static void on_sweep(uv_timer_t *t) {
    admin_server *a = t->data;
    uint64_t now = uv_now(a->o.loop);
    for (admin_conn *cn = a->conns; cn; cn = cn->next)
        if (!cn->answered && now - cn->opened_ms > a->o.idle_timeout_ms) conn_close(cn);
}

int admin_start(const admin_options *o, admin_server **out) {
    admin_server *a = calloc(1, sizeof *a);
    if (!a) return -ENOMEM;
    a->o = *o;
    snprintf(a->cluster_name, sizeof a->cluster_name, "%s", o->cluster_name ? o->cluster_name : "");
    snprintf(a->partitioner, sizeof a->partitioner, "%s",
             o->partitioner ? o->partitioner : "org.apache.cassandra.dht.Murmur3Partitioner");
    snprintf(a->snitch, sizeof a->snitch, "%s", o->snitch ? o->snitch : "SimpleSnitch");
    a->o.cluster_name = a->o.partitioner = a->o.snitch = NULL;
    struct sockaddr_storage ss;
    int r = uv_ip4_addr(o->host, o->port, (struct sockaddr_in *)&ss);
    if (r) r = uv_ip6_addr(o->host, o->port, (struct sockaddr_in6 *)&ss);
    if (r) {
        free(a);
        return r;
    }
    uv_tcp_init(o->loop, &a->listener);
    a->listener.data = a;
    a->open_handles = 1;
    if ((r = uv_tcp_bind(&a->listener, (struct sockaddr *)&ss, 0)) ||
        (r = uv_listen((uv_stream_t *)&a->listener, 32, on_connection))) {
        a->stopping = true;
        uv_close((uv_handle_t *)&a->listener, listener_closed);
        *out = NULL;
        return r;
    }
    uv_timer_init(o->loop, &a->sweep);
    a->sweep.data = a;
    a->open_handles++;
    if (!a->o.idle_timeout_ms) a->o.idle_timeout_ms = ADMIN_IDLE_MS;
    uint64_t every = a->o.idle_timeout_ms / 2 ? a->o.idle_timeout_ms / 2 : 1;
    uv_timer_start(&a->sweep, on_sweep, every, every);
    *out = a;
    return 0;
}

int admin_port(const admin_server *a) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getsockname(&a->listener, (struct sockaddr *)&ss, &len)) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

void admin_set_cql_server(admin_server *a, struct cql_server *s) {
    if (a) a->cql = s;
}

void admin_set_schema_sync(admin_server *a, struct cql_schema_sync *s) {
    if (a) a->sync = s;
}

void admin_detach(admin_server *a) {
    if (!a) return;
    a->detached = true;
    a->cql = NULL;
    a->sync = NULL;
}

void admin_stop(admin_server *a) {
    if (!a) return;
    admin_detach(a);
    a->stopping = true;
    for (admin_conn *cn = a->conns; cn; cn = cn->next) conn_close(cn);
    uv_close((uv_handle_t *)&a->sweep, listener_closed);
    uv_close((uv_handle_t *)&a->listener, listener_closed);
}

/* The cluster service: gossip over net/, the ring kept in step with gossip, identity. */
#include "ilion/cluster/cluster.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "ilion/cluster/localstate.h"
#include "ilion/cluster/snitch.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"

#define MOD "cluster"

struct cluster {
    uv_loop_t *loop;
    net_service *ns;
    gossip *g;
    ring *ring;
    uv_timer_t timer;
    bool timer_open, started, destroyed;
    char name[256];
    char dc[64], rack[64];
    char rpc[64];
    char release[64];
    uint16_t native_port;
    net_addr local;
    uint8_t host_id[16];
    int32_t generation;
    uint32_t ntokens;
    int64_t *tokens;
    uint32_t interval_ms;
    char *data_dir;               /* NULL: nothing persisted here (identity given by the caller) */
    int64_t scratch[TOKENS_MAX];  /* cluster_peer_get's tokens */
};

void cluster_options_default(cluster_options *o) {
    memset(o, 0, sizeof *o);
    o->cluster_name = "Test Cluster";
    o->listen_address = "127.0.0.1";
    o->storage_port = 7000;
    o->num_tokens = 16;
    o->phi_convict_threshold = 8.0;
    o->gossip_interval_ms = 1000;
    o->native_port = 9042;
    o->release_version = "4.0.11";
    o->net_backoff_max_ms = 10000;
}

static int parse_seed(const char *s, uint16_t defport, net_addr *out) {
    char ip[80];
    uint16_t port = defport;
    const char *colon = strrchr(s, ':');
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || (size_t)(rb - s - 1) >= sizeof ip) return ILION_EINVALID;
        memcpy(ip, s + 1, (size_t)(rb - s - 1));
        ip[rb - s - 1] = 0;
        if (rb[1] == ':') port = (uint16_t)atoi(rb + 2);
    } else if (colon && strchr(s, ':') == colon) {
        if ((size_t)(colon - s) >= sizeof ip) return ILION_EINVALID;
        memcpy(ip, s, (size_t)(colon - s));
        ip[colon - s] = 0;
        port = (uint16_t)atoi(colon + 1);
    } else {
        size_t l = strlen(s);
        if (l >= sizeof ip) return ILION_EINVALID;
        memcpy(ip, s, l + 1);
    }
    return net_addr_parse(ip, port, out);
}

/* ---- known peers -------------------------------------------------------------------------
 * <data_dir>/system/peers: the addresses of the other nodes seen, one "ip port" per line, so
 * that a restarted node whose seeds are down can still find the cluster (gossip tries them
 * while nobody is alive). A hint, not state: a missing or damaged file only loses the hint. */

#define PEERS_HEADER "# ilion known peers, format 1: ip port\n"

static void peers_path(const cluster *c, char *out, size_t n, const char *suffix) {
    snprintf(out, n, "%s/system/peers%s", c->data_dir, suffix);
}

static size_t peers_load(const cluster *c, net_addr *out, size_t max) {
    char path[PATH_MAX];
    peers_path(c, path, sizeof path, "");
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[128];
    size_t n = 0;
    while (n < max && fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        char ip[80];
        unsigned port;
        if (sscanf(line, "%79s %u", ip, &port) != 2 || port > 65535) continue;
        if (net_addr_parse(ip, (uint16_t)port, &out[n]) == 0 && !net_addr_eq(&out[n], &c->local)) n++;
    }
    fclose(f);
    return n;
}

static void peers_save(cluster *c) {
    if (!c->data_dir) return;
    char path[PATH_MAX], tmp[PATH_MAX], dir[PATH_MAX];
    peers_path(c, path, sizeof path, "");
    peers_path(c, tmp, sizeof tmp, ".tmp");
    snprintf(dir, sizeof dir, "%s/system", c->data_dir);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    fputs(PEERS_HEADER, f);
    for (size_t i = 0; i < gossip_endpoint_count(c->g); i++) {
        const net_addr *ep = gossip_endpoint_at(c->g, i);
        if (net_addr_eq(ep, &c->local)) continue;
        char ip[64];
        fprintf(f, "%s %u\n", net_addr_ip_str(ep, ip, sizeof ip), ep->port);
    }
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
}

/* ---- keeping the ring in step with gossip ------------------------------------------------- */

static void get_text(cluster *c, const net_addr *ep, enum gossip_app k, char *out, size_t n, const char *def) {
    const uint8_t *p;
    size_t l;
    if (gossip_get_app(c->g, ep, k, &p, &l, NULL) == 0 && l > 0) {
        if (l >= n) l = n - 1;
        memcpy(out, p, l);
        out[l] = 0;
    } else {
        snprintf(out, n, "%s", def);
    }
}

/* Statuses of nodes that own no range: joining ones, and ones that left. */
static bool owns_nothing(cluster *c, const net_addr *ep) {
    char st[32];
    get_text(c, ep, GOSSIP_APP_STATUS, st, sizeof st, "");
    return strcmp(st, "BOOT") == 0 || strcmp(st, "LEFT") == 0 || strcmp(st, "removed") == 0;
}

static void ring_update(cluster *c, const net_addr *ep) {
    if (net_addr_eq(ep, &c->local)) return;
    const uint8_t *p;
    size_t l;
    if (owns_nothing(c, ep)) {
        if (ring_find(c->ring, ep)) ring_remove_endpoint(c->ring, ep);
        return;
    }
    if (gossip_get_app(c->g, ep, GOSSIP_APP_TOKENS, &p, &l, NULL) != 0) return;
    uint32_t n;
    if (tokens_parse(p, l, c->scratch, TOKENS_MAX, &n) < 0) {
        char a[NET_ADDR_STRLEN];
        LOG_WARN(MOD, "ignoring bad TOKENS from %s", net_addr_str(ep, a, sizeof a));
        return;
    }
    char dc[64], rack[64];
    get_text(c, ep, GOSSIP_APP_DC, dc, sizeof dc, SNITCH_DEFAULT_DC);
    get_text(c, ep, GOSSIP_APP_RACK, rack, sizeof rack, SNITCH_DEFAULT_RACK);
    uint8_t hid[16] = {0};
    if (gossip_get_app(c->g, ep, GOSSIP_APP_HOST_ID, &p, &l, NULL) == 0 && l == 16) memcpy(hid, p, 16);
    const ring_endpoint *cur = ring_find(c->ring, ep);
    if (cur && cur->ntokens == n && strcmp(cur->dc, dc) == 0 && strcmp(cur->rack, rack) == 0 &&
        memcmp(cur->host_id, hid, 16) == 0)
        return;
    ring_set_endpoint(c->ring, ep, hid, dc, rack, c->scratch, n);
}

static void on_change(void *arg, const net_addr *ep, enum gossip_app key, const uint8_t *v, size_t len) {
    cluster *c = arg;
    if (key == GOSSIP_APP_TOKENS || key == GOSSIP_APP_DC || key == GOSSIP_APP_RACK ||
        key == GOSSIP_APP_HOST_ID || key == GOSSIP_APP_STATUS)
        ring_update(c, ep);
}

static void on_join(void *arg, const net_addr *ep) { peers_save(arg); }

static void on_up(void *arg, const net_addr *ep) {
    cluster *c = arg;
    net_set_peer_down(c->ns, ep, false);
}

static void on_down(void *arg, const net_addr *ep) {
    cluster *c = arg;
    net_set_peer_down(c->ns, ep, true);
}

/* ---- transport ---------------------------------------------------------------------------- */

static int tr_send(void *ctx, const net_addr *to, uint8_t verb, const uint8_t *p, size_t len) {
    cluster *c = ctx;
    return net_send(c->ns, to, verb, p, len);
}

static uint64_t tr_now(void *ctx) {
    cluster *c = ctx;
    return uv_now(c->loop);
}

static void gossip_handler(void *arg, net_service *ns, const net_msg *m, const uint8_t *p, size_t len) {
    cluster *c = arg;
    if (c->g) gossip_receive(c->g, &m->from, m->verb, p, len);
}

/* ECHO: a liveness probe any node (or the admin tool) may send; answered with an empty body. */
static void echo_handler(void *arg, net_service *ns, const net_msg *m, const uint8_t *p, size_t len) {
    net_respond(ns, m, NET_VERB_ECHO, NULL, 0);
}

static void tick(uv_timer_t *t) {
    cluster *c = t->data;
    /* Catch up the loop's clock: a blocked loop must look like a pause to the detector. */
    uv_update_time(c->loop);
    gossip_tick(c->g);
}

/* ---- identity ----------------------------------------------------------------------------- */

static int load_identity(cluster *c, const cluster_options *o) {
    if (o->identity) {
        memcpy(c->host_id, o->identity->host_id, 16);
        c->generation = o->identity->generation;
        c->ntokens = o->identity->ntokens;
        c->tokens = malloc(sizeof(int64_t) * (c->ntokens ? c->ntokens : 1));
        if (!c->tokens) return -ENOMEM;
        memcpy(c->tokens, o->identity->tokens, sizeof(int64_t) * c->ntokens);
        return 0;
    }
    localstate *ls = calloc(1, sizeof *ls);
    if (!ls) return -ENOMEM;
    int rc = localstate_load(o->data_dir, ls);
    int32_t now = (int32_t)time(NULL);
    if (rc == -ENOENT) {
        memset(ls, 0, sizeof *ls);
        if (o->host_id) {
            memcpy(ls->host_id, o->host_id, 16);
        } else if (getrandom(ls->host_id, 16, 0) != 16) {
            free(ls);
            return -EIO;
        }
        if (!o->host_id) {
            ls->host_id[6] = (uint8_t)((ls->host_id[6] & 0x0f) | 0x40);  /* UUID version 4 */
            ls->host_id[8] = (uint8_t)((ls->host_id[8] & 0x3f) | 0x80);
        }
        snprintf(ls->cluster_name, sizeof ls->cluster_name, "%s", o->cluster_name);
        ls->generation = now;
        rc = 0;
    } else if (rc < 0) {
        LOG_ERROR(MOD, "cannot read %s/system/local.state: %s", o->data_dir, ilion_strerror(rc));
        free(ls);
        return rc;
    } else {
        if (ls->cluster_name[0] && strcmp(ls->cluster_name, o->cluster_name) != 0) {
            LOG_ERROR(MOD, "%s belongs to cluster '%s', not '%s'", o->data_dir, ls->cluster_name,
                      o->cluster_name);
            free(ls);
            return ILION_EINVALID;
        }
        ls->generation = now > ls->generation ? now : ls->generation + 1;
    }
    if (ls->ntokens == 0) {
        if (o->initial_token && o->initial_token[0]) {
            rc = tokens_parse_text(o->initial_token, ls->tokens, TOKENS_MAX, &ls->ntokens);
        } else {
            uint64_t seed = o->rng_seed;
            if (!seed && getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = (uint64_t)now;
            ls->ntokens = o->num_tokens;
            rc = tokens_generate(o->num_tokens, seed ^ 0x5eedf00dull, ls->tokens);
        }
        if (rc < 0) {
            LOG_ERROR(MOD, "bad initial_token/num_tokens");
            free(ls);
            return rc;
        }
    }
    rc = localstate_save(o->data_dir, ls);
    if (rc < 0) {
        LOG_ERROR(MOD, "cannot save %s/system/local.state: %s", o->data_dir, ilion_strerror(rc));
        free(ls);
        return rc;
    }
    memcpy(c->host_id, ls->host_id, 16);
    c->generation = ls->generation;
    c->ntokens = ls->ntokens;
    c->tokens = malloc(sizeof(int64_t) * (c->ntokens ? c->ntokens : 1));
    if (c->tokens) memcpy(c->tokens, ls->tokens, sizeof(int64_t) * c->ntokens);
    free(ls);
    return c->tokens ? 0 : -ENOMEM;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static void free_cluster(cluster *c) {
    gossip_destroy(c->g);
    ring_destroy(c->ring);
    free(c->data_dir);
    free(c->tokens);
    free(c);
}

static void timer_closed(uv_handle_t *h) { free_cluster(h->data); }

int cluster_create(uv_loop_t *loop, const cluster_options *o, cluster **out) {
    if (!o->cluster_name || !o->listen_address || (!o->data_dir && !o->identity) ||
        strlen(o->cluster_name) >= 256)
        return ILION_EINVALID;
    cluster *c = calloc(1, sizeof *c);
    if (!c) return -ENOMEM;
    c->loop = loop;
    snprintf(c->name, sizeof c->name, "%s", o->cluster_name);
    int rc = net_addr_parse(o->listen_address, o->storage_port, &c->local);
    if (rc < 0) {
        LOG_ERROR(MOD, "listen_address '%s' is not a numeric IP address", o->listen_address);
        free(c);
        return rc;
    }
    /* Data center and rack. */
    snitch_info si;
    snitch_defaults(&si);
    if (o->rackdc_path) {
        rc = snitch_load(o->rackdc_path, &si);
        if (rc < 0 && rc != -ENOENT) {
            LOG_ERROR(MOD, "%s: %s", o->rackdc_path, ilion_strerror(rc));
            free(c);
            return rc;
        }
    }
    snprintf(c->dc, sizeof c->dc, "%s", o->dc ? o->dc : si.dc);
    if (!o->dc && si.dc_suffix[0] && strlen(c->dc) + strlen(si.dc_suffix) < sizeof c->dc)
        strcat(c->dc, si.dc_suffix);
    snprintf(c->rack, sizeof c->rack, "%s", o->rack ? o->rack : si.rack);
    snprintf(c->rpc, sizeof c->rpc, "%s", o->rpc_address ? o->rpc_address : o->listen_address);
    snprintf(c->release, sizeof c->release, "%s", o->release_version ? o->release_version : "4.0.11");
    c->native_port = o->native_port ? o->native_port : 9042;
    c->interval_ms = o->gossip_interval_ms ? o->gossip_interval_ms : 1000;

    if ((rc = load_identity(c, o)) < 0) {
        free(c->tokens);
        free(c);
        return rc;
    }
    net_options no;
    net_options_default(&no);
    no.cluster_name = c->name;
    no.listen = c->local;
    memcpy(no.host_id, c->host_id, 16);
    if (o->net_backoff_max_ms) no.backoff_max_ms = o->net_backoff_max_ms;
    if ((rc = net_create(loop, &no, &c->ns)) < 0) {
        free(c->tokens);
        free(c);
        return rc;
    }
    c->local = *net_local_addr(c->ns);  /* the port, when 0 was asked */

    net_addr seeds[GOSSIP_MAX_SEEDS];
    size_t nseeds = 0;
    /* Each entry may itself be a comma-separated list ("127.0.0.1, 127.0.0.2"). */
    for (size_t i = 0; i < o->nseeds; i++) {
        const char *p = o->seeds[i];
        while (p && *p && nseeds < GOSSIP_MAX_SEEDS) {
            while (*p == ' ' || *p == '\t' || *p == ',') p++;
            size_t l = strcspn(p, ",");
            while (l && (p[l - 1] == ' ' || p[l - 1] == '\t')) l--;
            char one[96];
            if (l == 0) break;
            if (l < sizeof one) {
                memcpy(one, p, l);
                one[l] = 0;
                if (parse_seed(one, o->storage_port ? o->storage_port : c->local.port, &seeds[nseeds]) == 0)
                    nseeds++;
                else
                    LOG_WARN(MOD, "ignoring seed '%s': not a numeric address", one);
            }
            p += strcspn(p, ",");
        }
    }
    gossip_options go;
    gossip_options_default(&go);
    go.cluster_name = c->name;
    go.local = c->local;
    go.seeds = seeds;
    go.nseeds = nseeds;
    go.generation = c->generation;
    go.interval_ms = c->interval_ms;
    if (o->phi_convict_threshold > 0) go.phi_convict_threshold = o->phi_convict_threshold;
    uint64_t seed = o->rng_seed;
    if (!seed && getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = (uint64_t)time(NULL);
    go.rng_seed = seed;
    if (o->data_dir && !(c->data_dir = strdup(o->data_dir))) {
        net_destroy(c->ns);
        free(c->tokens);
        free(c);
        return -ENOMEM;
    }
    net_addr *contacts = c->data_dir ? calloc(GOSSIP_MAX_ENDPOINTS, sizeof *contacts) : NULL;
    go.contacts = contacts;
    go.ncontacts = contacts ? peers_load(c, contacts, GOSSIP_MAX_ENDPOINTS) : 0;
    gossip_transport tr = {tr_send, tr_now, c};
    rc = gossip_create(&go, &tr, &c->g);
    free(contacts);
    if (rc < 0 || (rc = ring_create(&c->ring)) < 0) {
        net_destroy(c->ns);
        gossip_destroy(c->g);
        free(c->data_dir);
        free(c->tokens);
        free(c);
        return rc;
    }
    gossip_listener l = {on_join, on_up, on_down, NULL, on_change, c};
    gossip_add_listener(c->g, &l);

    buf b;
    buf_init(&b);
    tokens_serialize(c->tokens, c->ntokens, &b);
    char port[16];
    snprintf(port, sizeof port, "%u", c->native_port);
    if (b.oom || gossip_set_local(c->g, GOSSIP_APP_TOKENS, b.data, b.len) < 0 ||
        gossip_set_local(c->g, GOSSIP_APP_HOST_ID, c->host_id, 16) < 0 ||
        gossip_set_local(c->g, GOSSIP_APP_DC, c->dc, strlen(c->dc)) < 0 ||
        gossip_set_local(c->g, GOSSIP_APP_RACK, c->rack, strlen(c->rack)) < 0 ||
        gossip_set_local(c->g, GOSSIP_APP_RPC_ADDRESS, c->rpc, strlen(c->rpc)) < 0 ||
        gossip_set_local(c->g, GOSSIP_APP_RELEASE_VERSION, c->release, strlen(c->release)) < 0 ||
        gossip_set_local(c->g, GOSSIP_APP_NATIVE_PORT, port, strlen(port)) < 0 ||
        ring_set_endpoint(c->ring, &c->local, c->host_id, c->dc, c->rack, c->tokens, c->ntokens) < 0) {
        buf_free(&b);
        net_destroy(c->ns);
        free_cluster(c);
        return -ENOMEM;
    }
    buf_free(&b);
    ring_set_local(c->ring, &c->local);
    net_register(c->ns, NET_VERB_GOSSIP_SYN, gossip_handler, c);
    net_register(c->ns, NET_VERB_GOSSIP_ACK, gossip_handler, c);
    net_register(c->ns, NET_VERB_GOSSIP_ACK2, gossip_handler, c);
    net_register(c->ns, NET_VERB_GOSSIP_SHUTDOWN, gossip_handler, c);
    net_register(c->ns, NET_VERB_ECHO, echo_handler, c);
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->timer_open = true;
    char a[NET_ADDR_STRLEN];
    LOG_INFO(MOD, "node %s in cluster '%s', dc %s rack %s, %u tokens, generation %d",
             net_addr_str(&c->local, a, sizeof a), c->name, c->dc, c->rack, c->ntokens, c->generation);
    *out = c;
    return 0;
}

int cluster_start(cluster *c) {
    if (c->started || c->destroyed) return ILION_EINVALID;
    gossip_set_local(c->g, GOSSIP_APP_STATUS, "NORMAL", 6);
    c->started = true;
    return uv_timer_start(&c->timer, tick, 0, c->interval_ms);
}

void cluster_stop(cluster *c) {
    if (!c->started) return;
    c->started = false;
    uv_timer_stop(&c->timer);
    gossip_announce_shutdown(c->g);
}

void cluster_destroy(cluster *c) {
    if (!c || c->destroyed) return;
    c->destroyed = true;
    uv_timer_stop(&c->timer);
    net_destroy(c->ns);
    c->ns = NULL;
    uv_close((uv_handle_t *)&c->timer, timer_closed);
}

/* ---- queries ------------------------------------------------------------------------------ */

const net_addr *cluster_local_addr(const cluster *c) { return &c->local; }
const uint8_t *cluster_host_id(const cluster *c) { return c->host_id; }
const int64_t *cluster_local_tokens(const cluster *c, uint32_t *n) {
    *n = c->ntokens;
    return c->tokens;
}
const char *cluster_local_dc(const cluster *c) { return c->dc; }
const char *cluster_local_rack(const cluster *c) { return c->rack; }
const char *cluster_name(const cluster *c) { return c->name; }
const ring *cluster_ring(const cluster *c) { return c->ring; }

int cluster_replicas(const cluster *c, const schema_replication *repl, int64_t token, net_addr *out,
                     size_t max) {
    return ring_replicas(c->ring, repl, token, out, max);
}

bool cluster_is_local(const cluster *c, const net_addr *ep) { return net_addr_eq(ep, &c->local); }
bool cluster_is_alive(const cluster *c, const net_addr *ep) {
    return cluster_is_local(c, ep) || gossip_is_alive(c->g, ep);
}

int cluster_set_app_state(cluster *c, enum gossip_app key, const void *value, size_t len) {
    return gossip_set_local(c->g, key, value, len);
}

int cluster_set_schema_version(cluster *c, const char *uuid) {
    return gossip_set_local(c->g, GOSSIP_APP_SCHEMA, uuid, strlen(uuid));
}

int cluster_set_load(cluster *c, uint64_t bytes) {
    char t[32];
    int n = snprintf(t, sizeof t, "%" PRIu64, bytes);
    return gossip_set_local(c->g, GOSSIP_APP_LOAD, t, (size_t)n);
}

bool cluster_schema_agrees(const cluster *c) {
    const uint8_t *mine, *theirs;
    size_t ml, tl;
    bool have = gossip_get_app(c->g, &c->local, GOSSIP_APP_SCHEMA, &mine, &ml, NULL) == 0;
    for (size_t i = 0; i < gossip_endpoint_count(c->g); i++) {
        const net_addr *ep = gossip_endpoint_at(c->g, i);
        if (net_addr_eq(ep, &c->local) || !gossip_is_alive(c->g, ep)) continue;
        if (!have || gossip_get_app(c->g, ep, GOSSIP_APP_SCHEMA, &theirs, &tl, NULL) != 0 || tl != ml ||
            memcmp(mine, theirs, ml) != 0)
            return false;
    }
    return true;
}

int cluster_add_listener(cluster *c, const cluster_listener *l) { return gossip_add_listener(c->g, l); }
net_service *cluster_messaging(cluster *c) { return c->ns; }
gossip *cluster_gossip(cluster *c) { return c->g; }

size_t cluster_peer_count(const cluster *c) {
    size_t n = gossip_endpoint_count(c->g);
    return n ? n - 1 : 0;
}

static int fill_peer(const cluster *cc, const net_addr *ep, cluster_peer *out) {
    cluster *c = (cluster *)cc;
    memset(out, 0, sizeof *out);
    out->addr = *ep;
    out->alive = gossip_is_alive(c->g, ep);
    const uint8_t *p;
    size_t l;
    if (gossip_get_app(c->g, ep, GOSSIP_APP_HOST_ID, &p, &l, NULL) == 0 && l == 16) {
        out->has_host_id = true;
        memcpy(out->host_id, p, 16);
    }
    get_text(c, ep, GOSSIP_APP_DC, out->dc, sizeof out->dc, SNITCH_DEFAULT_DC);
    get_text(c, ep, GOSSIP_APP_RACK, out->rack, sizeof out->rack, SNITCH_DEFAULT_RACK);
    char ip[64];
    get_text(c, ep, GOSSIP_APP_RPC_ADDRESS, out->rpc_address, sizeof out->rpc_address,
             net_addr_ip_str(ep, ip, sizeof ip));
    char port[16];
    get_text(c, ep, GOSSIP_APP_NATIVE_PORT, port, sizeof port, "9042");
    out->native_port = (uint16_t)atoi(port);
    get_text(c, ep, GOSSIP_APP_RELEASE_VERSION, out->release_version, sizeof out->release_version, "");
    get_text(c, ep, GOSSIP_APP_SCHEMA, out->schema_version, sizeof out->schema_version, "");
    get_text(c, ep, GOSSIP_APP_STATUS, out->status, sizeof out->status, "");
    char load[32];
    get_text(c, ep, GOSSIP_APP_LOAD, load, sizeof load, "0");
    out->load = strtoull(load, NULL, 10);
    gossip_get_heartbeat(c->g, ep, &out->generation, NULL);
    out->phi = gossip_phi(c->g, ep);
    if (gossip_get_app(c->g, ep, GOSSIP_APP_TOKENS, &p, &l, NULL) == 0 &&
        tokens_parse(p, l, c->scratch, TOKENS_MAX, &out->ntokens) == 0)
        out->tokens = c->scratch;
    else
        out->ntokens = 0;
    return 0;
}

int cluster_peer_get(const cluster *c, size_t i, cluster_peer *out) {
    size_t k = 0;
    for (size_t j = 0; j < gossip_endpoint_count(c->g); j++) {
        const net_addr *ep = gossip_endpoint_at(c->g, j);
        if (net_addr_eq(ep, &c->local)) continue;
        if (k++ == i) return fill_peer(c, ep, out);
    }
    return ILION_ENOTFOUND;
}

int cluster_peer_find(const cluster *c, const net_addr *ep, cluster_peer *out) {
    if (net_addr_eq(ep, &c->local) || !gossip_knows(c->g, ep)) return ILION_ENOTFOUND;
    return fill_peer(c, ep, out);
}

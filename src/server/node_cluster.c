/* The node's side of the cluster: see node_cluster.h. */
#include "node_cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "ilion/cluster/cluster.h"
#include "ilion/cluster/localstate.h"
#include "ilion/cql/frame.h"
#include "ilion/cql/schema_sync.h"
#include "ilion/cql/server.h"
#include "ilion/storage/engine.h"
#include "ilion/util/buf.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"

#define LOAD_INTERVAL_MS 10000
#define MAX_ANNOUNCED 4096

struct node_cluster {
    uv_loop_t *loop;
    cluster *c;
    storage_engine *engine;
    cql_server *server;
    cql_schema_sync *sync;
    uv_timer_t load_timer;
    bool timer_open, started, stopped;
    /* Peers a NEW_NODE event was sent for (so each is announced once per membership). */
    net_addr *announced;
    size_t nannounced;
};

static bool is_gossiping_snitch(const char *s) {
    return !strcmp(s, "GossipingPropertyFileSnitch") ||
           !strcmp(s, "org.apache.cassandra.locator.GossipingPropertyFileSnitch");
}

int node_cluster_create(uv_loop_t *loop, const server_config *c, const char *config_dir,
                        const node_identity *id, node_cluster **out) {
    node_cluster *nc = calloc(1, sizeof *nc);
    localstate *ls = calloc(1, sizeof *ls);
    const char **seeds = calloc(c->nseeds ? c->nseeds : 1, sizeof *seeds);
    if (nc) nc->announced = calloc(MAX_ANNOUNCED, sizeof *nc->announced);
    if (!nc || !ls || !seeds || !nc->announced) {
        if (nc) free(nc->announced);
        free(nc);
        free(ls);
        free(seeds);
        return -ENOMEM;
    }
    nc->loop = loop;
    /* The identity node.c loaded and saved (its generation already bumped). */
    memcpy(ls->host_id, id->host_id, 16);
    ls->generation = id->generation;
    ls->ntokens = id->ntokens > TOKENS_MAX ? TOKENS_MAX : id->ntokens;
    memcpy(ls->tokens, id->tokens, sizeof(int64_t) * ls->ntokens);
    size_t nl = strnlen(c->cluster_name, sizeof ls->cluster_name - 1);
    memcpy(ls->cluster_name, c->cluster_name, nl);
    ls->cluster_name[nl] = 0;
    for (uint32_t i = 0; i < c->nseeds; i++) seeds[i] = c->seeds[i];

    char rackdc[SERVER_CONFIG_PATH_MAX + 64];
    snprintf(rackdc, sizeof rackdc, "%s/cassandra-rackdc.properties",
             config_dir ? config_dir : ".");
    cluster_options o;
    cluster_options_default(&o);
    o.cluster_name = c->cluster_name;
    o.listen_address = c->listen_address;
    o.storage_port = c->storage_port;
    o.seeds = seeds;
    o.nseeds = c->nseeds;
    o.num_tokens = c->num_tokens;
    o.initial_token = c->initial_token[0] ? c->initial_token : NULL;
    o.dc = id->data_center;   /* node.c read the snitch already (dc suffix included) */
    o.rack = id->rack;
    o.rackdc_path = is_gossiping_snitch(c->endpoint_snitch) ? rackdc : NULL;
    o.data_dir = c->data_file_directories[0];
    o.phi_convict_threshold = c->phi_convict_threshold;
    o.rpc_address = c->rpc_address;
    o.native_port = c->native_transport_port;
    o.identity = ls;
    int r = cluster_create(loop, &o, &nc->c);
    free(ls);
    free(seeds);
    if (r) {
        LOG_ERROR("node", "cannot start the cluster service on %s:%u: %s", c->listen_address,
                  c->storage_port, r < 0 && r > -4096 ? uv_strerror(r) : ilion_strerror(r));
        free(nc->announced);
        free(nc);
        return r;
    }
    *out = nc;
    return 0;
}

cluster *node_cluster_get(node_cluster *nc) { return nc ? nc->c : NULL; }

cql_schema_sync *node_cluster_sync(node_cluster *nc) { return nc ? nc->sync : NULL; }

/* ---- client events ---------------------------------------------------------------------- */

/* The address clients use for ep: its gossiped rpc address and native port. */
static int event_addr(node_cluster *nc, const net_addr *ep, net_addr *out) {
    cluster_peer p;
    uint16_t port = 9042;
    if (cluster_peer_find(nc->c, ep, &p) == 0) {
        if (p.native_port) port = p.native_port;
        if (p.rpc_address[0] && net_addr_parse(p.rpc_address, port, out) == 0) return 0;
    }
    *out = *ep;
    out->port = port;
    return 0;
}

static void send_event(node_cluster *nc, bool topology, const char *change, const net_addr *ep) {
    if (!nc->server || nc->stopped) return;
    net_addr a;
    event_addr(nc, ep, &a);
    buf b;
    buf_init(&b);
    uint8_t len = a.family == 6 ? 16 : 4;
    if (topology) cqlf_event_topology_body(&b, change, a.ip, len, a.port);
    else cqlf_event_status_body(&b, change, a.ip, len, a.port);
    if (!b.oom)
        cql_server_broadcast_event(nc->server,
                                   topology ? CQLF_EVENT_TOPOLOGY_CHANGE : CQLF_EVENT_STATUS_CHANGE,
                                   b.data, b.len);
    buf_free(&b);
    char s[NET_ADDR_STRLEN];
    LOG_INFO("node", "event %s %s for %s", topology ? "TOPOLOGY_CHANGE" : "STATUS_CHANGE", change,
             net_addr_str(&a, s, sizeof s));
}

static ssize_t announced_index(node_cluster *nc, const net_addr *ep) {
    for (size_t i = 0; i < nc->nannounced; i++)
        if (net_addr_eq(&nc->announced[i], ep)) return (ssize_t)i;
    return -1;
}

static void on_up(void *arg, const net_addr *ep) { send_event(arg, false, "UP", ep); }
static void on_down(void *arg, const net_addr *ep) { send_event(arg, false, "DOWN", ep); }

static void on_change(void *arg, const net_addr *ep, enum gossip_app key, const uint8_t *value,
                      size_t len) {
    node_cluster *nc = arg;
    if (key != GOSSIP_APP_STATUS) return;
    ssize_t i = announced_index(nc, ep);
    bool normal = len == 6 && memcmp(value, "NORMAL", 6) == 0;
    bool gone = (len == 4 && memcmp(value, "LEFT", 4) == 0) ||
                (len == 7 && memcmp(value, "removed", 7) == 0);
    if (normal && i < 0) {
        if (nc->nannounced < MAX_ANNOUNCED) nc->announced[nc->nannounced++] = *ep;
        send_event(nc, true, "NEW_NODE", ep);
    } else if (gone && i >= 0) {
        nc->announced[i] = nc->announced[--nc->nannounced];
        send_event(nc, true, "REMOVED_NODE", ep);
    }
}

static void on_schema_event(void *arg, const uint8_t *body, size_t len) {
    node_cluster *nc = arg;
    if (nc->server && !nc->stopped)
        cql_server_broadcast_event(nc->server, CQLF_EVENT_SCHEMA_CHANGE, body, len);
}

/* ---- LOAD ----------------------------------------------------------------------------- */

static void on_load_timer(uv_timer_t *t) {
    node_cluster *nc = t->data;
    if (nc->engine) cluster_set_load(nc->c, storage_load_bytes(nc->engine));
}

int node_cluster_start(node_cluster *nc, storage_engine *e, cql_executor *x) {
    nc->engine = e;
    cluster_listener l;
    memset(&l, 0, sizeof l);
    l.on_up = on_up;
    l.on_down = on_down;
    l.on_change = on_change;
    l.arg = nc;
    int r = cluster_add_listener(nc->c, &l);
    if (r) return r;
    if ((r = cql_schema_sync_start(x, nc->loop, 0, on_schema_event, nc, &nc->sync))) {
        LOG_ERROR("node", "cannot start schema propagation: %s", ilion_strerror(r));
        return r;
    }
    uv_timer_init(nc->loop, &nc->load_timer);
    nc->load_timer.data = nc;
    nc->timer_open = true;
    cluster_set_load(nc->c, storage_load_bytes(e));
    uv_timer_start(&nc->load_timer, on_load_timer, LOAD_INTERVAL_MS, LOAD_INTERVAL_MS);
    if ((r = cluster_start(nc->c))) {
        LOG_ERROR("node", "cannot start gossip: %s", ilion_strerror(r));
        return r;
    }
    nc->started = true;
    return 0;
}

void node_cluster_set_server(node_cluster *nc, cql_server *s) { nc->server = s; }

void node_cluster_stop(node_cluster *nc) {
    if (!nc || nc->stopped) return;
    nc->stopped = true;
    if (nc->timer_open) uv_timer_stop(&nc->load_timer);
    if (nc->started) cluster_stop(nc->c);
}

void node_cluster_detach(node_cluster *nc) {
    if (!nc) return;
    nc->server = NULL;
    nc->engine = NULL;
    if (nc->sync) cql_schema_sync_detach(nc->sync);
}

static void load_timer_closed(uv_handle_t *h) {
    node_cluster *nc = h->data;
    free(nc->announced);
    free(nc);
}

void node_cluster_destroy(node_cluster *nc) {
    if (!nc) return;
    node_cluster_stop(nc);
    node_cluster_detach(nc);
    cluster_destroy(nc->c);
    nc->c = NULL;
    if (nc->sync) cql_schema_sync_free(nc->sync);
    nc->sync = NULL;
    if (nc->timer_open) {
        uv_close((uv_handle_t *)&nc->load_timer, load_timer_closed);
    } else {
        free(nc->announced);
        free(nc);
    }
}

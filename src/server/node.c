/* Node start-up and shutdown order: see include/ilion/server/node.h. */
#include "ilion/server/node.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "ilion/cluster/localstate.h"
#include "ilion/cluster/snitch.h"
#include "ilion/cluster/tokens.h"
#include "ilion/coord/coord.h"
#include "ilion/cql/exec.h"
#include "ilion/cql/frame.h"
#include "ilion/cql/server.h"
#include "ilion/paxos/paxos.h"
#include "ilion/storage/engine.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"
#include "ilion/server/admin.h"
#include "node_cluster.h"

#define NODE_DRAIN_MS 10000

static int random_bytes(void *p, size_t n) {
    uint8_t *b = p;
    while (n) {
        ssize_t r = getrandom(b, n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static void uuid_text(const uint8_t u[16], char out[37]) {
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
             u[13], u[14], u[15]);
}

/* mkdir -p */
static int make_dirs(const char *path) {
    char tmp[SERVER_CONFIG_PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp) return -EINVAL;
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] == '/' || tmp[i] == 0) {
            char c = tmp[i];
            tmp[i] = 0;
            if (mkdir(tmp, 0755) && errno != EEXIST) return -errno;
            tmp[i] = c;
        }
    }
    return 0;
}

static void load_snitch(const server_config *c, const char *config_dir, node_identity *id) {
    snitch_info si;
    snitch_defaults(&si);
    if (!strcmp(c->endpoint_snitch, "GossipingPropertyFileSnitch") ||
        !strcmp(c->endpoint_snitch, "org.apache.cassandra.locator.GossipingPropertyFileSnitch")) {
        char path[SERVER_CONFIG_PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/cassandra-rackdc.properties",
                 config_dir ? config_dir : ".");
        int r = snitch_load(path, &si);
        if (r == -ENOENT)
            LOG_WARN("node", "%s not found: using %s/%s", path, si.dc, si.rack);
        else if (r)
            LOG_WARN("node", "%s: %s; using %s/%s", path, ilion_strerror(r), si.dc, si.rack);
    } else if (strcmp(c->endpoint_snitch, "SimpleSnitch") &&
               strcmp(c->endpoint_snitch, "org.apache.cassandra.locator.SimpleSnitch")) {
        LOG_WARN("node", "endpoint_snitch %s is not supported; behaving as SimpleSnitch",
                 c->endpoint_snitch);
    }
    size_t dl = strlen(si.dc), sl = strlen(si.dc_suffix);
    memcpy(id->data_center, si.dc, dl);
    memcpy(id->data_center + dl, si.dc_suffix, sl);
    id->data_center[dl + sl] = 0;
    snprintf(id->rack, sizeof id->rack, "%s", si.rack);
}

int node_identity_load(const server_config *c, const char *config_dir, node_identity *id) {
    memset(id, 0, sizeof *id);
    const char *dir = c->data_file_directories[0];
    localstate *ls = calloc(1, sizeof *ls);
    if (!ls) return -ENOMEM;
    int r = localstate_load(dir, ls);
    int32_t now = (int32_t)time(NULL);
    if (r == -ENOENT) {
        /* First start: a random (version 4) host id and num_tokens random tokens. */
        uint64_t seed;
        if ((r = random_bytes(ls->host_id, 16)) || (r = random_bytes(&seed, sizeof seed))) {
            free(ls);
            return r;
        }
        ls->host_id[6] = (uint8_t)((ls->host_id[6] & 0x0f) | 0x40);
        ls->host_id[8] = (uint8_t)((ls->host_id[8] & 0x3f) | 0x80);
        if (c->initial_token[0]) {
            r = tokens_parse_text(c->initial_token, ls->tokens, TOKENS_MAX, &ls->ntokens);
            if (r == 0) r = tokens_normalize(ls->tokens, ls->ntokens);
        } else {
            ls->ntokens = c->num_tokens;
            r = tokens_generate(c->num_tokens, seed, ls->tokens);
        }
        if (r) {
            LOG_ERROR("node", "cannot choose tokens: %s", ilion_strerror(r));
            free(ls);
            return r;
        }
        if (strlen(c->cluster_name) >= sizeof ls->cluster_name) {
            LOG_ERROR("node", "cluster_name is longer than %zu characters",
                      sizeof ls->cluster_name - 1);
            free(ls);
            return ILION_EINVALID;
        }
        memcpy(ls->cluster_name, c->cluster_name, strlen(c->cluster_name) + 1);
        ls->generation = now;
        LOG_INFO("node", "first start: new host id and %u tokens", ls->ntokens);
    } else if (r) {
        LOG_ERROR("node", "cannot read the node identity in %s/system: %s", dir, ilion_strerror(r));
        free(ls);
        return r;
    } else {
        if (ls->cluster_name[0] && strcmp(ls->cluster_name, c->cluster_name)) {
            LOG_ERROR("node", "saved cluster name '%s' != configured name '%s'", ls->cluster_name,
                      c->cluster_name);
            free(ls);
            return ILION_EINVALID;
        }
        if (!c->initial_token[0] && ls->ntokens != c->num_tokens)
            LOG_WARN("node", "num_tokens is %u but this node already owns %u tokens; keeping them",
                     c->num_tokens, ls->ntokens);
        ls->generation = now > ls->generation ? now : ls->generation + 1;
    }
    if ((r = localstate_save(dir, ls))) {
        LOG_ERROR("node", "cannot save the node identity in %s/system: %s", dir, ilion_strerror(r));
        free(ls);
        return r;
    }
    memcpy(id->host_id, ls->host_id, 16);
    id->ntokens = ls->ntokens;
    id->generation = ls->generation;
    id->tokens = malloc(sizeof(int64_t) * (ls->ntokens ? ls->ntokens : 1));
    if (!id->tokens) {
        free(ls);
        return -ENOMEM;
    }
    memcpy(id->tokens, ls->tokens, sizeof(int64_t) * ls->ntokens);
    free(ls);
    load_snitch(c, config_dir, id);
    return 0;
}

void node_identity_free(node_identity *id) {
    free(id->tokens);
    id->tokens = NULL;
}

/* ---- running ---- */

typedef struct node {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    storage_engine *engine;
    coord *coord;
    paxos *paxos;
    cql_executor *exec;
    cql_server *server;
    node_cluster *nc;
    admin_server *admin;
    int signals;
    bool stopping;
} node;

static void node_finish(node *n) {
    admin_stop(n->admin);
    n->admin = NULL;
    node_cluster_detach(n->nc);
    if (n->exec) cql_executor_destroy(n->exec);
    n->exec = NULL;
    if (n->paxos) paxos_destroy(n->paxos);
    n->paxos = NULL;
    if (n->coord) coord_destroy(n->coord);
    n->coord = NULL;
    node_cluster_destroy(n->nc);
    n->nc = NULL;
    uv_close((uv_handle_t *)&n->sigterm, NULL);
    uv_close((uv_handle_t *)&n->sigint, NULL);
}

static void server_stopped(void *arg) {
    node *n = arg;
    cql_server_stats st;
    cql_server_stats_get(n->server, &st);
    LOG_INFO("node", "native transport stopped (%llu connections served, %llu requests)",
             (unsigned long long)st.connections_accepted, (unsigned long long)st.requests);
    node_cluster_set_server(n->nc, NULL);
    admin_set_cql_server(n->admin, NULL);
    cql_server_free(n->server);
    n->server = NULL;
    node_finish(n);
}

static void on_signal(uv_signal_t *h, int signum) {
    node *n = h->data;
    n->signals++;
    if (n->signals > 1) {
        LOG_WARN("node", "second signal (%s) during shutdown: exiting now",
                 signum == SIGINT ? "SIGINT" : "SIGTERM");
        _exit(1);
    }
    LOG_INFO("node", "%s received: shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    n->stopping = true;
    /* Peers first: they stop sending us requests before clients lose the node. */
    node_cluster_stop(n->nc);
    admin_detach(n->admin);
    if (n->server) cql_server_stop(n->server, NODE_DRAIN_MS, server_stopped, n);
    else node_finish(n);
}

static void close_walk(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

int node_run(const server_config *c, const char *config_dir) {
    node *n = calloc(1, sizeof *n);
    if (!n) return -ENOMEM;
    node_identity id;
    int r;
    char hid[37];

    signal(SIGPIPE, SIG_IGN);
    LOG_INFO("node", "starting Ilion node: cluster '%s', listen %s, rpc %s:%u",
             c->cluster_name, c->listen_address, c->rpc_address, c->native_transport_port);
    if (c->ndata_dirs > 1)
        LOG_WARN("node", "only the first of %u data_file_directories is used (%s)", c->ndata_dirs,
                 c->data_file_directories[0]);
    const char *dirs[] = {c->data_file_directories[0], c->commitlog_directory, c->hints_directory,
                          c->saved_caches_directory};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        if (dirs[i][0] && (r = make_dirs(dirs[i]))) {
            LOG_ERROR("node", "cannot create directory %s: %s", dirs[i], ilion_strerror(r));
            free(n);
            return r;
        }
    }
    if ((r = node_identity_load(c, config_dir, &id))) {
        free(n);
        return r;
    }
    uuid_text(id.host_id, hid);
    LOG_INFO("node", "host id %s, %u tokens, generation %d, %s/%s", hid, id.ntokens,
             id.generation, id.data_center, id.rack);

    uv_loop_init(&n->loop);
    storage_options so;
    server_config_storage_options(c, &so);
    LOG_INFO("node", "opening storage: data %s, commit log %s (%s sync)", so.data_dir,
             so.commitlog_dir,
             c->commitlog_sync == STORAGE_SYNC_BATCH ? "batch"
             : c->commitlog_sync == STORAGE_SYNC_GROUP ? "group" : "periodic");
    if ((r = storage_open(&so, &n->engine))) {
        LOG_ERROR("node", "cannot open the storage engine: %s", ilion_strerror(r));
        goto fail;
    }
    if ((r = node_cluster_create(&n->loop, c, config_dir, &id, &n->nc)))
        goto fail;
    coord_options co;
    coord_options_default(&co);
    co.write_request_timeout_ms = c->write_request_timeout_in_ms;
    co.read_request_timeout_ms = c->read_request_timeout_in_ms;
    co.range_request_timeout_ms = c->range_request_timeout_in_ms;
    co.hints_directory = c->hints_directory[0] ? c->hints_directory : NULL;
    co.hinted_handoff_enabled = c->hinted_handoff_enabled;
    co.max_hint_window_ms = c->max_hint_window_in_ms;
    if ((r = coord_create_ex(&n->loop, n->engine, node_cluster_get(n->nc), &co, &n->coord))) {
        LOG_ERROR("node", "cannot create the coordinator: %s", ilion_strerror(r));
        goto fail;
    }
    paxos_options po;
    paxos_options_default(&po);
    po.data_dir = so.data_dir;   /* state in <data_dir>/paxos/ */
    if (c->cas_contention_timeout_in_ms) po.cas_contention_timeout_ms = c->cas_contention_timeout_in_ms;
    po.request_timeout_ms = c->write_request_timeout_in_ms;
    if ((r = paxos_create(&n->loop, n->engine, node_cluster_get(n->nc), &po, &n->paxos))) {
        LOG_ERROR("node", "cannot open the paxos state: %s", ilion_strerror(r));
        goto fail;
    }
    cql_executor_options xo;
    memset(&xo, 0, sizeof xo);
    xo.loop = &n->loop;
    xo.coord = n->coord;
    xo.paxos = n->paxos;
    xo.engine = n->engine;
    xo.cluster = node_cluster_get(n->nc);
    xo.cluster_name = c->cluster_name;
    xo.listen_address = c->listen_address;
    xo.rpc_address = c->rpc_address;
    xo.native_port = c->native_transport_port;
    xo.data_center = id.data_center;
    xo.rack = id.rack;
    xo.host_id = id.host_id;
    xo.tokens = id.tokens;
    xo.ntokens = id.ntokens;
    if ((r = cql_executor_create(&xo, &n->exec))) {
        LOG_ERROR("node", "cannot load the schema / create the CQL executor: %s",
                  ilion_strerror(r));
        goto fail;
    }
    /* Gossip (and schema propagation) before clients: the ring is known when they arrive. */
    if ((r = node_cluster_start(n->nc, n->engine, n->exec))) goto fail;
    if (c->admin_http_port) {
        admin_options ao;
        memset(&ao, 0, sizeof ao);
        ao.loop = &n->loop;
        ao.host = c->listen_address;
        ao.port = c->admin_http_port;
        ao.cluster_name = c->cluster_name;
        ao.partitioner = c->partitioner;
        ao.snitch = c->endpoint_snitch;
        ao.cluster = node_cluster_get(n->nc);
        ao.engine = n->engine;
        ao.exec = n->exec;
        ao.started_ms = (int64_t)time(NULL) * 1000;
        int ar = admin_start(&ao, &n->admin);
        if (ar) /* not fatal: the node serves clients without its admin port */
            LOG_WARN("node", "admin interface not started on %s:%u: %s", c->listen_address,
                     c->admin_http_port, ar < 0 && ar > -4096 ? uv_strerror(ar) : ilion_strerror(ar));
        else
            LOG_INFO("node", "admin interface on http://%s:%d/", c->listen_address, admin_port(n->admin));
        admin_set_schema_sync(n->admin, node_cluster_sync(n->nc));
    }
    if (c->start_native_transport) {
        cql_server_options o;
        memset(&o, 0, sizeof o);
        o.loop = &n->loop;
        o.host = c->rpc_address;
        o.port = c->native_transport_port;
        o.max_frame_size = c->native_transport_max_frame_size_in_mb * 1024u * 1024u;
        cql_server_handler_executor(n->exec, &o.handler);
        if ((r = cql_server_start(&o, &n->server))) {
            LOG_ERROR("node", "cannot listen on %s:%u: %s", c->rpc_address,
                      c->native_transport_port, r < 0 && r > -4096 ? uv_strerror(r) : ilion_strerror(r));
            goto fail;
        }
        LOG_INFO("node", "native transport listening on %s:%d (protocol v3, v4; max frame %u MiB)",
                 c->rpc_address, cql_server_port(n->server), c->native_transport_max_frame_size_in_mb);
        node_cluster_set_server(n->nc, n->server);
        admin_set_cql_server(n->admin, n->server);
    } else {
        LOG_INFO("node", "start_native_transport is false: not serving CQL clients");
    }
    uv_signal_init(&n->loop, &n->sigterm);
    uv_signal_init(&n->loop, &n->sigint);
    n->sigterm.data = n->sigint.data = n;
    uv_signal_start(&n->sigterm, on_signal, SIGTERM);
    uv_signal_start(&n->sigint, on_signal, SIGINT);
    LOG_INFO("node", "ready");

    uv_run(&n->loop, UV_RUN_DEFAULT);
    LOG_INFO("node", "syncing the commit log and closing storage");
    storage_close(n->engine);
    n->engine = NULL;
    if (uv_loop_close(&n->loop) == UV_EBUSY) {
        uv_walk(&n->loop, close_walk, NULL);
        uv_run(&n->loop, UV_RUN_DEFAULT);
        uv_loop_close(&n->loop);
    }
    node_identity_free(&id);
    free(n);
    LOG_INFO("node", "stopped");
    return 0;

fail:
    admin_stop(n->admin);
    n->admin = NULL;
    node_cluster_detach(n->nc);
    if (n->exec) cql_executor_destroy(n->exec);
    if (n->paxos) paxos_destroy(n->paxos);
    if (n->coord) coord_destroy(n->coord);
    node_cluster_destroy(n->nc);
    n->nc = NULL;
    /* Let handles the parts opened close before the engine goes. */
    uv_walk(&n->loop, close_walk, NULL);
    uv_run(&n->loop, UV_RUN_DEFAULT);
    if (n->engine) storage_close(n->engine);
    uv_loop_close(&n->loop);
    node_identity_free(&id);
    free(n);
    return r;
}

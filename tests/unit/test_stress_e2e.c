/* ilion-stress against a real node: starts build/ilion on a private loopback address with a
 * temporary data directory, runs `ilion-stress write` then `read` (which checks every value),
 * a mixed run with lz4 and simple statements, and stops the node. Skipped when the node or the
 * stress binary was not built next to this test. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "../../tools/cqlclient/codec.c"
#include "../../tools/cqlclient/conn.c"

static char build_dir[PATH_MAX];
static char node_bin[PATH_MAX + 16], stress_bin[PATH_MAX + 32], sample[PATH_MAX + 64];
#define MAX_NODES 3
typedef struct tnode {
    pid_t pid;
    char ip[32];
    char dir[64];
} tnode;
static tnode nodes[MAX_NODES];
static int nnodes;
static char ip[32]; /* the first node: contact point of every run */

static bool find_binaries(void) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return false;
    exe[n] = 0;
    /* <build>/tests/test_stress_e2e */
    snprintf(build_dir, sizeof build_dir, "%s", dirname(dirname(exe)));
    snprintf(node_bin, sizeof node_bin, "%s/ilion", build_dir);
    snprintf(stress_bin, sizeof stress_bin, "%s/tools/ilion-stress", build_dir);
    /* The source tree: this file is <src>/tests/unit/test_stress_e2e.c. */
    char src[PATH_MAX];
    snprintf(src, sizeof src, "%s", __FILE__);
    snprintf(sample, sizeof sample, "%s/cassandra.yaml.sample", dirname(dirname(dirname(src))));
    return access(node_bin, X_OK) == 0 && access(stress_bin, X_OK) == 0 && access(sample, R_OK) == 0;
}

static int port_open(const char *host, int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* The sample configuration with the node's address, data directory, the first node as seed,
 * a cluster name of our own and the admin port. */
static void write_config(const char *path, const tnode *n) {
    FILE *in = fopen(sample, "r");
    FILE *out = fopen(path, "w");
    cr_assert(in && out);
    char line[1024];
    while (fgets(line, sizeof line, in)) {
        char *p;
        if (!strncmp(line, "listen_address:", 15)) fprintf(out, "listen_address: %s\n", n->ip);
        else if (!strncmp(line, "rpc_address:", 12)) fprintf(out, "rpc_address: %s\n", n->ip);
        else if (!strncmp(line, "cluster_name:", 13)) fprintf(out, "cluster_name: 'stress-e2e'\n");
        else if (!strncmp(line, "admin_http_port:", 16)) fprintf(out, "admin_http_port: 7199\n");
        else if ((p = strstr(line, "- seeds:"))) fprintf(out, "%.*s- seeds: \"%s\"\n", (int)(p - line), line, ip);
        else if ((p = strstr(line, "./.data/node1"))) fprintf(out, "%.*s%s%s", (int)(p - line), line, n->dir, p + 13);
        else fputs(line, out);
    }
    fclose(in);
    fclose(out);
}

static void start_one(tnode *n) {
    snprintf(n->dir, sizeof n->dir, "/tmp/test_stress_e2e_XXXXXX");
    cr_assert_not_null(mkdtemp(n->dir));
    char cfg[PATH_MAX], log[PATH_MAX];
    snprintf(cfg, sizeof cfg, "%s/cassandra.yaml", n->dir);
    snprintf(log, sizeof log, "%s/node.log", n->dir);
    write_config(cfg, n);
    n->pid = fork();
    cr_assert_geq(n->pid, 0);
    if (n->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a test killed by its timeout */
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(node_bin, node_bin, "--config", cfg, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 300 && !port_open(n->ip, 9042); i++) {
        int st;
        cr_assert_eq(waitpid(n->pid, &st, WNOHANG), 0, "node exited at start-up (see %s)", log);
        usleep(50000);
    }
    cr_assert(port_open(n->ip, 9042), "node did not listen on %s:9042", n->ip);
}

/* Nodes on loopback addresses of our own, so a developer's node on 127.0.0.1 does not
 * interfere: 127.0.A.B, 127.0.A.B+1, ... */
static void start_nodes(int n) {
    int a = 100 + getpid() % 100, b = 2 + getpid() % 200;
    for (int i = 0; i < n; i++) {
        nodes[i].pid = -1;
        snprintf(nodes[i].ip, sizeof nodes[i].ip, "127.0.%d.%d", a, b + i);
    }
    snprintf(ip, sizeof ip, "%s", nodes[0].ip);
    for (int i = 0; i < n; i++) {
        nnodes = i + 1;
        start_one(&nodes[i]);
    }
}

static void start_node(void) { start_nodes(1); }

static void stop_node(void) {
    for (int k = 0; k < nnodes; k++) {
        tnode *n = &nodes[k];
        if (n->pid > 0) {
            kill(n->pid, SIGTERM);
            for (int i = 0; i < 100; i++) {
                if (waitpid(n->pid, NULL, WNOHANG) == n->pid) {
                    n->pid = -1;
                    break;
                }
                usleep(50000);
            }
            if (n->pid > 0) {
                kill(n->pid, SIGKILL);
                waitpid(n->pid, NULL, 0);
                n->pid = -1;
            }
        }
        if (strncmp(n->dir, "/tmp/test_stress_e2e_", 21) == 0 && !strstr(n->dir, "XXXXXX")) {
            char cmd[PATH_MAX + 16];
            snprintf(cmd, sizeof cmd, "rm -rf '%s'", n->dir);
            if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", n->dir);
        }
    }
    nnodes = 0;
}

/* Runs ilion-stress with args (after the -node option); returns its exit status and keeps
 * its output in out. */
static int stress(const char *args, char *out, size_t outlen) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' %s -node %s 2>&1", stress_bin, args, ip);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static uint64_t field(const char *out, const char *label) {
    const char *p = strstr(out, label);
    if (!p) return UINT64_MAX;
    p = strchr(p, ':');
    return p ? strtoull(p + 1, NULL, 10) : UINT64_MAX;
}

Test(stress_e2e, write_then_verified_read, .timeout = 120, .fini = stop_node) {
    if (!find_binaries()) cr_skip_test("ilion or ilion-stress not built in %s", build_dir);
    start_node();
    static char out[1 << 16];
    int rc = stress("write n=20000 -pop seq=1..20000 -col n=3 'size=UNIFORM(10..120)' -rate threads=20",
                    out, sizeof out);
    cr_expect_eq(rc, 0, "write failed:\n%s", out);
    cr_expect_eq(field(out, "Total operations"), 20000, "%s", out);
    cr_expect_eq(field(out, "Errors"), 0);

    rc = stress("read n=20000 -pop seq=1..20000 -col n=3 'size=UNIFORM(10..120)' -rate threads=4 "
                "inflight=8 -mode native cql3 prepared connectionsPerHost=2 compression=lz4",
                out, sizeof out);
    cr_expect_eq(rc, 0, "read failed:\n%s", out);
    cr_expect_eq(field(out, "Read mismatches"), 0, "%s", out);
    cr_expect_eq(field(out, "Reads of missing rows"), 0, "%s", out);
    cr_expect_eq(field(out, "Total operations"), 20000);

    /* Reading with another value size must be caught as mismatches and fail the run. */
    rc = stress("read n=500 -pop seq=1..500 -col n=3 'size=FIXED(5)' -errors max=10", out, sizeof out);
    cr_expect_eq(rc, 1, "a wrong read was not detected:\n%s", out);
    cr_expect_gt(field(out, "Read mismatches"), 10);

    /* Keys never written are missing, not mismatched. */
    rc = stress("read n=200 -pop seq=900001..900200 -col n=3 'size=UNIFORM(10..120)'", out, sizeof out);
    cr_expect_eq(rc, 0, "%s", out);
    cr_expect_eq(field(out, "Reads of missing rows"), 200, "%s", out);

    rc = stress("mixed 'ratio(write=1,read=3)' duration=2s -pop 'dist=gaussian(1..20000)' "
                "-col n=3 'size=UNIFORM(10..120)' -rate threads=10 throttle=2000/s -mode simple",
                out, sizeof out);
    cr_expect_eq(rc, 0, "mixed failed:\n%s", out);
    cr_expect_eq(field(out, "Read mismatches"), 0, "%s", out);
    uint64_t ops = field(out, "Total operations");
    cr_expect(ops >= 3000 && ops <= 4500, "throttled to 2000/s for 2 s but did %llu ops",
              (unsigned long long)ops);
}

/* ---------------- the client library against the node ---------------- */

typedef struct lib_state {
    int step;
    int done;
    int rows_seen;
    int pages;
    uint8_t paging[256];
    int32_t paging_len;
    char failure[256];
} lib_state;

static lib_state ls;

static void lib_fail(const char *what, int status, const cqlc_result *res) {
    if (res && res->kind == CQLC_KIND_ERROR)
        snprintf(ls.failure, sizeof ls.failure, "%s: %s %s", what, cqlc_error_name(res->err_code), res->err_msg);
    else
        snprintf(ls.failure, sizeof ls.failure, "%s: status %d kind %d", what, status, res ? res->kind : -1);
    ls.done = 1;
}

static void lib_next(cqlc_conn *c);

static void lib_answer(cqlc_conn *c, int status, const cqlc_result *res, void *arg) {
    switch (ls.step) {
    case 0: /* system.local */
        if (status || res->kind != CQLC_KIND_ROWS || res->nrows != 1) { lib_fail("system.local", status, res); return; }
        {
            int ti = cqlc_result_column(res, "tokens"), ai = cqlc_result_column(res, "rpc_address");
            int vi = cqlc_result_column(res, "release_version");
            if (ti < 0 || ai < 0 || vi < 0) { lib_fail("system.local columns", 0, NULL); return; }
            size_t pos = 0;
            const uint8_t *e;
            int32_t el;
            int ntok = 0;
            while (cqlc_cell_collection_next(&res->cells[ti], &pos, &e, &el) == 1) ntok++;
            char addr[64], ver[32];
            if (ntok < 1 || cqlc_cell_inet(&res->cells[ai], addr, sizeof addr) < 0 || strcmp(addr, ip) ||
                cqlc_cell_text(&res->cells[vi], ver, sizeof ver) < 0)
                { lib_fail("system.local values", 0, NULL); return; }
            /* Every column the node serves renders with its declared type. */
            for (int32_t k = 0; k < res->meta.ncols; k++) {
                char txt[4096];
                const cqlc_column *col = &res->meta.cols[k];
                if (cqlc_cell_format(col->type, col->sub, &res->cells[k], txt, sizeof txt) < 0) {
                    snprintf(ls.failure, sizeof ls.failure, "system.local.%.60s (type 0x%x) = %.100s",
                             col->name, col->type, txt);
                    ls.done = 1;
                    return;
                }
            }
        }
        break;
    case 1: /* a syntax error is an ERROR frame, and the connection goes on */
        if (status || res->kind != CQLC_KIND_ERROR || res->err_code != 0x2000) { lib_fail("syntax error", status, res); return; }
        break;
    case 2: /* USE */
        if (status || res->kind != CQLC_KIND_SET_KEYSPACE || strcmp(res->keyspace, "keyspace1"))
            { lib_fail("USE", status, res); return; }
        break;
    default: /* pages of SELECT key FROM standard1 */
        if (status || res->kind != CQLC_KIND_ROWS) { lib_fail("paged SELECT", status, res); return; }
        ls.rows_seen += res->nrows;
        ls.pages++;
        if (res->nrows > 100) { lib_fail("page larger than page_size", 0, NULL); return; }
        if (!res->meta.paging_state || res->meta.paging_state_len > (int32_t)sizeof ls.paging) {
            ls.done = 1;
            return;
        }
        memcpy(ls.paging, res->meta.paging_state, (size_t)res->meta.paging_state_len);
        ls.paging_len = res->meta.paging_state_len;
        break;
    }
    ls.step++;
    lib_next(c);
}

static void lib_next(cqlc_conn *c) {
    cqlc_params p;
    cqlc_params_init(&p, CQLC_ONE);
    int rc;
    switch (ls.step) {
    case 0:
        rc = cqlc_query(c, "SELECT * FROM system.local WHERE key = 'local'", &p, lib_answer, NULL);
        break;
    case 1:
        rc = cqlc_query(c, "SELEKT nonsense", &p, lib_answer, NULL);
        break;
    case 2:
        rc = cqlc_query(c, "USE keyspace1", &p, lib_answer, NULL);
        break;
    default:
        p.page_size = 100;
        if (ls.paging_len) {
            p.paging_state = ls.paging;
            p.paging_state_len = ls.paging_len;
        }
        rc = cqlc_query(c, "SELECT key FROM standard1", &p, lib_answer, NULL);
        break;
    }
    if (rc < 0) lib_fail("send", rc, NULL);
}

static void lib_connected(cqlc_conn *c, int status, void *arg) {
    if (status) { lib_fail("connect", status, NULL); return; }
    lib_next(c);
}

Test(stress_e2e, client_library_queries_errors_and_paging, .timeout = 120, .fini = stop_node) {
    if (!find_binaries()) cr_skip_test("ilion or ilion-stress not built in %s", build_dir);
    start_node();
    static char out[1 << 16];
    int rc = stress("write n=1234 -pop seq=1..1234 -col n=1", out, sizeof out);
    cr_assert_eq(rc, 0, "%s", out);
    for (int lz = 0; lz < 2; lz++) {
        memset(&ls, 0, sizeof ls);
        uv_loop_t loop;
        uv_loop_init(&loop);
        cqlc_conn *c;
        cqlc_conn_opts o = {.host = ip, .port = 9042, .lz4 = lz};
        cr_assert_eq(cqlc_conn_open(&loop, &o, lib_connected, NULL, &c), 0);
        while (!ls.done && uv_run(&loop, UV_RUN_ONCE)) {}
        cr_expect_str_eq(ls.failure, "");
        cr_expect_eq(cqlc_conn_compressed(c), lz, "lz4 %d not negotiated", lz);
        cr_expect_eq(ls.rows_seen, 1234, "paged through %d rows in %d pages", ls.rows_seen, ls.pages);
        cr_expect_geq(ls.pages, 13);
        cqlc_conn_close(c, NULL, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        cr_expect_eq(uv_loop_close(&loop), 0);
    }
}

/* ---------------- token-aware routing on three nodes ---------------- */

/* Sum of ilion_internode_messages_total over the node's /metrics. */
static uint64_t internode_messages(const char *host) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(7199)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0, "admin port of %s", host);
    const char req[] = "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n";
    cr_assert_eq(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
    static char resp[1 << 20];
    size_t got = 0;
    ssize_t n;
    while (got < sizeof resp - 1 && (n = read(fd, resp + got, sizeof resp - 1 - got)) > 0) got += (size_t)n;
    close(fd);
    resp[got] = 0;
    uint64_t sum = 0;
    for (char *line = strtok(resp, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "ilion_internode_messages_total", 30)) continue;
        char *sp = strrchr(line, ' ');
        if (sp) sum += strtoull(sp + 1, NULL, 10);
    }
    return sum;
}

static uint64_t cluster_messages(void) {
    uint64_t t = 0;
    for (int i = 0; i < nnodes; i++) t += internode_messages(nodes[i].ip);
    return t;
}

Test(stress_e2e, token_aware_routing_sends_each_write_to_its_owner, .timeout = 180,
     .fini = stop_node) {
    if (!find_binaries()) cr_skip_test("ilion or ilion-stress not built in %s", build_dir);
    start_nodes(3);
    static char out[1 << 16];
    /* Wait until the contact point knows both peers and their tokens (gossip). */
    bool ring = false;
    for (int i = 0; i < 60 && !ring; i++) {
        stress("write n=1 -schema keyspace=ks_rf1 'replication(factor=1)' -col n=1", out, sizeof out);
        ring = strstr(out, "Connected to 3 node(s)") != NULL && strstr(out, " 0 ring token") == NULL;
        if (!ring) usleep(250000);
    }
    cr_assert(ring, "the ring never showed 3 nodes:\n%s", out);
    /* RF 1 at ONE: a write sent to its owner needs no internode message at all. */
    uint64_t before = cluster_messages();
    int rc = stress("write n=20000 -schema keyspace=ks_rf1 create=false -col n=1 -pop seq=1..20000",
                    out, sizeof out);
    uint64_t aware = cluster_messages() - before;
    cr_assert_eq(rc, 0, "%s", out);
    before = cluster_messages();
    rc = stress("write n=20000 -schema keyspace=ks_rf1 create=false -col n=1 -pop seq=1..20000 "
                "-mode tokenaware=false", out, sizeof out);
    uint64_t blind = cluster_messages() - before;
    cr_assert_eq(rc, 0, "%s", out);
    /* Gossip adds a few messages a second; forwarding would add two per misrouted write. */
    cr_expect_lt(aware, 400, "token-aware run caused %llu internode messages",
                 (unsigned long long)aware);
    cr_expect_gt(blind, 10000, "round-robin run caused only %llu internode messages",
                 (unsigned long long)blind);
}

/* ---------------- cas: conditional increments, checked by SERIAL reads ---------------- */

/* Runs two ilion-stress commands at the same time (both against the first node). */
static void stress_pair(const char *a, const char *b, int rc[2], char *out0, char *out1, size_t outlen) {
    char cmd[2][8192];
    snprintf(cmd[0], sizeof cmd[0], "'%s' %s -node %s 2>&1", stress_bin, a, ip);
    snprintf(cmd[1], sizeof cmd[1], "'%s' %s -node %s 2>&1", stress_bin, b, ip);
    FILE *p0 = popen(cmd[0], "r"), *p1 = popen(cmd[1], "r");
    cr_assert(p0 && p1);
    size_t n = fread(out0, 1, outlen - 1, p0);
    out0[n] = 0;
    n = fread(out1, 1, outlen - 1, p1);
    out1[n] = 0;
    int s0 = pclose(p0), s1 = pclose(p1);
    rc[0] = WIFEXITED(s0) ? WEXITSTATUS(s0) : -1;
    rc[1] = WIFEXITED(s1) ? WEXITSTATUS(s1) : -1;
}

Test(stress_e2e, cas_registers_hold_their_applied_increments, .timeout = 180, .fini = stop_node) {
    if (!find_binaries()) cr_skip_test("ilion or ilion-stress not built in %s", build_dir);
    start_node();
    static char out[1 << 16], out2[1 << 16];
    /* 16 clients on 10 registers: contention, [applied]=false answers carry the value. */
    int rc = stress("cas n=3000 -pop seq=1..10 -rate threads=16", out, sizeof out);
    cr_expect_eq(rc, 0, "cas failed:\n%s", out);
    cr_expect_eq(field(out, "Register violations"), 0, "%s", out);
    cr_expect_eq(field(out, "Registers checked (SERIAL)"), 10, "%s", out);
    cr_expect_gt(field(out, "CAS applied"), 0, "%s", out);
    cr_expect_eq(field(out, "CAS applied") + field(out, "CAS not applied"), field(out, "Total operations"));
    cr_expect_eq(field(out, "Errors"), 0, "%s", out);
    cr_expect(strstr(out, "applied  notappl unknown") != NULL, "no cas interval header:\n%s", out);

    /* Again on the same registers, simple statements and LOCAL_SERIAL: the registers start
     * from what the first run left. */
    rc = stress("cas duration=2s serial_cl=LOCAL_SERIAL cl=QUORUM -pop 'dist=uniform(1..10)' "
                "-rate threads=4 inflight=4 -mode simple", out, sizeof out);
    cr_expect_eq(rc, 0, "second cas run failed:\n%s", out);
    cr_expect_eq(field(out, "Register violations"), 0, "%s", out);
    cr_expect(strstr(out, "registers created 0)") != NULL, "registers were created again:\n%s", out);

    /* The check can fail: two runs on the same registers each see the other's increments as
     * values no outcome of their own explains. */
    int rcs[2];
    stress_pair("cas duration=2s -pop seq=1..5 -rate threads=4 -schema keyspace=ks_two",
                "cas duration=2s -pop seq=1..5 -rate threads=4 -schema keyspace=ks_two", rcs, out,
                out2, sizeof out);
    uint64_t v0 = field(out, "Register violations"), v1 = field(out2, "Register violations");
    cr_expect(v0 != UINT64_MAX && v1 != UINT64_MAX, "no summary:\n%s\n----\n%s", out, out2);
    cr_expect_gt(v0 + v1, 0, "two writers went unnoticed:\n%s\n----\n%s", out, out2);
    cr_expect(v0 == 0 || rcs[0] == 1, "violations but exit status %d", rcs[0]);
    cr_expect(v1 == 0 || rcs[1] == 1, "violations but exit status %d", rcs[1]);
    cr_expect(strstr(out, "violation: key") || strstr(out2, "violation: key"));
}

Test(stress_e2e, cas_on_three_nodes_rf3, .timeout = 180, .fini = stop_node) {
    if (!find_binaries()) cr_skip_test("ilion or ilion-stress not built in %s", build_dir);
    start_nodes(3);
    static char out[1 << 16];
    bool ring = false;
    for (int i = 0; i < 60 && !ring; i++) {
        stress("write n=1 -schema keyspace=ks_ring 'replication(factor=1)' -col n=1", out, sizeof out);
        ring = strstr(out, "Connected to 3 node(s)") != NULL && strstr(out, " 0 ring token") == NULL;
        if (!ring) usleep(250000);
    }
    cr_assert(ring, "the ring never showed 3 nodes:\n%s", out);
    /* Paxos among three replicas, commits at QUORUM, requests routed to a replica. */
    int rc = stress("cas n=2000 cl=QUORUM -pop seq=1..20 -rate threads=16 "
                    "-schema keyspace=ks_cas 'replication(factor=3)'", out, sizeof out);
    cr_expect_eq(rc, 0, "cas failed:\n%s", out);
    cr_expect_eq(field(out, "Register violations"), 0, "%s", out);
    cr_expect_eq(field(out, "Registers checked (SERIAL)"), 20, "%s", out);
    cr_expect_gt(field(out, "CAS applied"), 0, "%s", out);
    /* Round-robin: most requests reach a coordinator that forwards the rounds. */
    rc = stress("cas n=1000 cl=ONE -pop 'dist=uniform(1..20)' -rate threads=8 "
                "-schema keyspace=ks_cas create=false -mode tokenaware=false", out, sizeof out);
    cr_expect_eq(rc, 0, "round-robin cas failed:\n%s", out);
    cr_expect_eq(field(out, "Register violations"), 0, "%s", out);
}

/* The admin HTTP/JSON interface (server/admin.h) over a real socket: one node (engine, cluster
 * service, coordinator, executor) in this process; requests come from a client thread while
 * the main thread runs the loop. Answers, errors, and bad or oversized requests. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "ilion/cluster/cluster.h"
#include "ilion/coord/coord.h"
#include "ilion/cql/exec.h"
#include "ilion/server/admin.h"
#include "ilion/storage/engine.h"
#include "ilion/util/log.h"

#define IP "127.77.201.1"

static uv_loop_t loop;
static char tmpdir[64];
static storage_engine *eng;
static cluster *cl;
static coord *co;
static cql_executor *x;
static admin_server *adm;
static int port;

static void setup(void) {
    log_set_level(LOG_LEVEL_WARN);
    uv_loop_init(&loop);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ilion_adm_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    char data[128], clog[128];
    snprintf(data, sizeof data, "%s/data", tmpdir);
    snprintf(clog, sizeof clog, "%s/commitlog", tmpdir);
    storage_options so;
    storage_options_default(&so);
    so.data_dir = data;
    so.commitlog_dir = clog;
    cr_assert_eq(storage_open(&so, &eng), 0);
    cluster_options o;
    cluster_options_default(&o);
    o.cluster_name = "admin-test";
    o.listen_address = IP;
    o.storage_port = 0;
    o.data_dir = data;
    o.gossip_interval_ms = 100;
    cr_assert_eq(cluster_create(&loop, &o, &cl), 0);
    cr_assert_eq(coord_create(&loop, eng, cl, &co), 0);
    cql_executor_options xo;
    memset(&xo, 0, sizeof xo);
    xo.loop = &loop;
    xo.coord = co;
    xo.engine = eng;
    xo.cluster = cl;
    xo.cluster_name = "admin-test";
    xo.listen_address = IP;
    xo.host_id = cluster_host_id(cl);
    uint32_t nt;
    xo.tokens = cluster_local_tokens(cl, &nt);
    xo.ntokens = nt;
    cr_assert_eq(cql_executor_create(&xo, &x), 0);
    cr_assert_eq(cluster_start(cl), 0);
    admin_options ao;
    memset(&ao, 0, sizeof ao);
    ao.loop = &loop;
    ao.host = IP;
    ao.port = 0;
    ao.cluster_name = "admin-test";
    ao.cluster = cl;
    ao.engine = eng;
    ao.exec = x;
    ao.started_ms = (int64_t)time(NULL) * 1000;
    ao.idle_timeout_ms = 300;
    cr_assert_eq(admin_start(&ao, &adm), 0);
    port = admin_port(adm);
    cr_assert_gt(port, 0);
}

static void teardown(void) {
    admin_stop(adm);
    cluster_stop(cl);
    cql_executor_destroy(x);
    coord_destroy(co);
    cluster_destroy(cl);
    for (int i = 0; i < 200 && uv_run(&loop, UV_RUN_NOWAIT); i++) usleep(1000);
    storage_close(eng);
    cr_expect_eq(uv_loop_close(&loop), 0, "handles left open");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    cr_expect_eq(system(cmd), 0);
}

/* ---- a blocking client on its own thread --------------------------------------------- */

typedef struct req {
    const void *data;
    size_t len;
    char resp[65536];
    size_t rlen;
    atomic_bool done;
} req;

static void *client(void *arg) {
    req *r = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, IP, &sa.sin_addr);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        size_t off = 0;
        while (off < r->len) {
            ssize_t w = write(fd, (const char *)r->data + off, r->len - off);
            if (w <= 0) break;
            off += (size_t)w;
        }
        for (;;) {
            ssize_t n = read(fd, r->resp + r->rlen, sizeof r->resp - 1 - r->rlen);
            if (n <= 0) break;
            r->rlen += (size_t)n;
        }
    }
    r->resp[r->rlen] = 0;
    close(fd);
    atomic_store(&r->done, true);
    return NULL;
}

static void send_raw(req *r, const void *data, size_t len) {
    memset(r, 0, sizeof *r);
    r->data = data;
    r->len = len;
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, client, r), 0);
    for (int i = 0; i < 20000 && !atomic_load(&r->done); i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(250);
    }
    pthread_join(t, NULL);
}

static req R;

static int http(const char *method, const char *path) {
    static char line[1024];
    snprintf(line, sizeof line, "%s %s HTTP/1.1\r\nHost: x\r\n\r\n", method, path);
    send_raw(&R, line, strlen(line));
    int status = 0;
    sscanf(R.resp, "HTTP/1.1 %d", &status);
    return status;
}

static const char *body(void) {
    const char *b = strstr(R.resp, "\r\n\r\n");
    return b ? b + 4 : "";
}

TestSuite(admin, .init = setup, .fini = teardown, .timeout = 60);

Test(admin, endpoints_answer_json) {
    cr_assert_eq(http("GET", "/status"), 200, "%s", R.resp);
    cr_assert(strstr(body(), "\"cluster_name\":\"admin-test\""), "%s", body());
    cr_assert(strstr(body(), "\"address\":\"" IP "\""), "%s", body());
    cr_assert(strstr(body(), "\"tokens\":16"), "%s", body());
    cr_assert(strstr(body(), "\"owns\":1.000000"), "one node owns the whole ring: %s", body());
    cr_assert(strstr(R.resp, "Content-Type: application/json"));
    cr_assert_eq(http("GET", "/ring"), 200);
    size_t ntok = 0;
    for (const char *p = body(); (p = strstr(p, "\"token\":")); p++) ntok++;
    cr_assert_eq(ntok, 16);
    cr_assert_eq(http("GET", "/info"), 200);
    cr_assert(strstr(body(), "\"gossip_active\":true"), "%s", body());
    cr_assert(strstr(body(), "\"uptime_seconds\":"), "%s", body());
    cr_assert_eq(http("GET", "/describecluster"), 200);
    cr_assert(strstr(body(), "\"schema_versions\":{\""), "%s", body());
    cr_assert(strstr(body(), "\"unreachable\":[]"), "%s", body());
    cr_assert_eq(http("GET", "/metrics"), 200);
    cr_assert(strstr(body(), "ilion_gossip_rounds_total "), "%s", body());
    cr_assert(strstr(R.resp, "text/plain"));
    cr_assert_eq(http("POST", "/flush"), 200, "%s", R.resp);
    cr_assert(strstr(body(), "\"operation\":\"flush\""), "%s", body());
    cr_assert_eq(http("POST", "/compact"), 200, "%s", R.resp);
}

Test(admin, errors) {
    cr_assert_eq(http("GET", "/nope"), 404);
    cr_assert_eq(http("GET", "/flush"), 405, "flush needs POST");
    cr_assert_eq(http("DELETE", "/status"), 405);
    cr_assert_eq(http("POST", "/flush?keyspace=nope"), 404, "%s", R.resp);
    cr_assert(strstr(body(), "no such keyspace"));
    cr_assert_eq(http("POST", "/flush?keyspace=a%2Fb"), 400);
    cr_assert_eq(http("POST", "/flush?table=t"), 400, "a table needs its keyspace");
    cr_assert_eq(http("POST", "/compact?keyspace=system"), 404, "system keyspaces are not user tables");
}

Test(admin, bad_requests_never_crash) {
    static char big[9000];
    memset(big, 'A', sizeof big);
    send_raw(&R, big, sizeof big);
    int status = 0;
    sscanf(R.resp, "HTTP/1.1 %d", &status);
    cr_assert_eq(status, 431, "oversized request: %.80s", R.resp);
    const char *junk[] = {"\r\n\r\n", "GET\r\n\r\n", "GET status HTTP/1.1\r\n\r\n", "\x01\x02\x03\0\r\n\r\n",
                          "GET /status?" "keyspace=&table=&&&==\r\n\r\n"};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        send_raw(&R, junk[i], strlen(junk[i]) + (i == 3 ? 6 : 0));
        cr_assert(R.rlen == 0 || strncmp(R.resp, "HTTP/1.1 ", 9) == 0, "junk %zu: %.60s", i, R.resp);
    }
    srand(11);
    static char rnd[600];
    for (int k = 0; k < 30; k++) {
        size_t n = 1 + (size_t)(rand() % (int)(sizeof rnd - 5));
        for (size_t i = 0; i < n; i++) rnd[i] = (char)(rand() % 256);
        memcpy(rnd + n, "\r\n\r\n", 4);
        send_raw(&R, rnd, n + 4);
    }
    /* still serving */
    cr_assert_eq(http("GET", "/info"), 200);
}

Test(admin, silent_clients_are_closed) {
    /* A partial request and nothing more: closed after the idle timeout, without an answer. */
    const char *partial = "GET /sta";
    uint64_t t0 = uv_now(&loop);
    send_raw(&R, partial, strlen(partial));
    uv_update_time(&loop);
    cr_assert_eq(R.rlen, 0, "no answer to a partial request: %s", R.resp);
    cr_assert_lt(uv_now(&loop) - t0, 3000, "closed by the idle timeout, not the client's 5 s");
    cr_assert_eq(http("GET", "/info"), 200);
}

/* Internode messaging over real sockets: two (or three) services on 127.0.0.1 / 127.0.0.2 in one
 * process and one loop. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "ilion/net/messaging.h"
#include "ilion/util/err.h"

static uv_loop_t loop;

static void loop_setup(void) { uv_loop_init(&loop); }
static void loop_teardown(void) {
    for (int i = 0; i < 100 && uv_run(&loop, UV_RUN_NOWAIT); i++) usleep(1000);
    cr_expect_eq(uv_loop_close(&loop), 0, "handles left open");
}

/* Runs the loop until *flag is set or ms passed. */
static void run_until(volatile int *flag, uint64_t ms) {
    uint64_t end = uv_now(&loop) + ms;
    while (!*flag && uv_now(&loop) < end) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(200);
        uv_update_time(&loop);
    }
}

static void run_for(uint64_t ms) {
    int never = 0;
    run_until(&never, ms);
}

static net_service *mk(const char *ip, uint16_t port, const char *cluster, uint8_t idbyte) {
    net_options o;
    net_options_default(&o);
    o.cluster_name = cluster;
    cr_assert_eq(net_addr_parse(ip, port, &o.listen), 0);
    memset(o.host_id, idbyte, 16);
    o.backoff_initial_ms = 20;
    o.backoff_max_ms = 200;
    o.connect_timeout_ms = 500;
    net_service *ns = NULL;
    int rc = net_create(&loop, &o, &ns);
    cr_assert_eq(rc, 0, "net_create %s: %s", ip, ilion_strerror(rc));
    return ns;
}

typedef struct resp {
    int done;
    int err;
    uint8_t verb;
    uint8_t data[256];
    size_t len;
} resp;

static void resp_cb(void *arg, int err, uint8_t verb, const uint8_t *p, size_t len) {
    resp *r = arg;
    r->done++;
    r->err = err;
    r->verb = verb;
    r->len = len < sizeof r->data ? len : sizeof r->data;
    if (p && r->len) memcpy(r->data, p, r->len);
}

typedef struct srv {
    net_msg last;
    int calls;
} srv;

/* Answers READ with the payload reversed. */
static void reverse_handler(void *arg, net_service *ns, const net_msg *m, const uint8_t *p, size_t len) {
    srv *s = arg;
    s->last = *m;
    s->calls++;
    uint8_t out[256];
    for (size_t i = 0; i < len && i < sizeof out; i++) out[i] = p[len - 1 - i];
    net_respond(ns, m, NET_VERB_READ_RSP, out, len);
}

static void silent_handler(void *arg, net_service *ns, const net_msg *m, const uint8_t *p, size_t len) {
    ((srv *)arg)->calls++;
}

static void error_handler(void *arg, net_service *ns, const net_msg *m, const uint8_t *p, size_t len) {
    ((srv *)arg)->calls++;
    net_respond_error(ns, m, ILION_EOVERLOADED);
}

TestSuite(net, .init = loop_setup, .fini = loop_teardown, .timeout = 30);

Test(net, addr_parse_format) {
    net_addr a, b;
    char s[NET_ADDR_STRLEN];
    cr_assert_eq(net_addr_parse("127.0.0.2", 7000, &a), 0);
    cr_assert_str_eq(net_addr_str(&a, s, sizeof s), "127.0.0.2:7000");
    cr_assert_eq(net_addr_parse("::1", 7000, &b), 0);
    cr_assert_str_eq(net_addr_str(&b, s, sizeof s), "[::1]:7000");
    cr_assert_neq(net_addr_cmp(&a, &b), 0);
    cr_assert_lt(net_addr_parse("localhost", 1, &a), 0);
    cr_assert_lt(net_addr_parse("300.1.1.1", 1, &a), 0);
    cr_assert_str_eq(net_verb_name(NET_VERB_GOSSIP_ACK2), "GOSSIP_ACK2");
    net_options o;
    net_options_default(&o);
    o.cluster_name = "c";
    net_addr_parse("0.0.0.0", 0, &o.listen);
    net_service *ns;
    cr_assert_eq(net_create(&loop, &o, &ns), ILION_EINVALID);
}

Test(net, handshake_request_response) {
    net_service *a = mk("127.0.0.1", 0, "c1", 0xA1);
    net_service *b = mk("127.0.0.2", 0, "c1", 0xB2);
    srv s = {0};
    net_register(b, NET_VERB_READ, reverse_handler, &s);
    resp r = {0};
    uint64_t id = 0;
    cr_assert_eq(net_request(a, net_local_addr(b), NET_VERB_READ, "abc", 3, 2000, resp_cb, &r, &id), 0);
    run_until(&r.done, 3000);
    cr_assert_eq(r.done, 1);
    cr_assert_eq(r.err, 0, "%s", ilion_strerror(r.err));
    cr_assert_eq(r.verb, NET_VERB_READ_RSP);
    cr_assert_eq(r.len, 3);
    cr_assert_arr_eq(r.data, "cba", 3);
    /* The handler saw the sender's listen address and host id from the handshake. */
    cr_assert(net_addr_eq(&s.last.from, net_local_addr(a)));
    uint8_t hid[16];
    memset(hid, 0xA1, 16);
    cr_assert_arr_eq(s.last.from_host_id, hid, 16);
    cr_assert_eq(s.last.id, id);
    cr_assert(s.last.expects_reply);

    /* Many requests in flight, all answered once, in any order. */
    resp many[50];
    memset(many, 0, sizeof many);
    for (int i = 0; i < 50; i++) {
        uint8_t p[2] = {(uint8_t)i, 0xEE};
        cr_assert_eq(net_request(a, net_local_addr(b), NET_VERB_READ, p, 2, 2000, resp_cb, &many[i], NULL), 0);
    }
    int all = 0;
    for (int k = 0; k < 3000 && !all; k++) {
        run_for(1);
        all = 1;
        for (int i = 0; i < 50; i++) all &= many[i].done == 1;
    }
    for (int i = 0; i < 50; i++) {
        cr_assert_eq(many[i].done, 1);
        cr_assert_eq(many[i].data[0], 0xEE);
        cr_assert_eq(many[i].data[1], i);
    }
    net_stats st;
    net_get_stats(a, &st);
    cr_assert_eq(st.pending, 0);
    cr_assert_geq(st.handshakes_ok, 1);  /* a's outbound to b */
    net_destroy(a);
    net_destroy(b);
}

Test(net, timeout_and_error_response) {
    net_service *a = mk("127.0.0.1", 0, "c1", 1);
    net_service *b = mk("127.0.0.2", 0, "c1", 2);
    srv s = {0}, e = {0};
    net_register(b, NET_VERB_MUTATION, silent_handler, &s);
    net_register(b, NET_VERB_HINT, error_handler, &e);
    resp r = {0}, re = {0};
    uint64_t t0 = uv_now(&loop);
    cr_assert_eq(net_request(a, net_local_addr(b), NET_VERB_MUTATION, "x", 1, 150, resp_cb, &r, NULL), 0);
    cr_assert_eq(net_request(a, net_local_addr(b), NET_VERB_HINT, "y", 1, 2000, resp_cb, &re, NULL), 0);
    run_until(&r.done, 3000);
    cr_assert_eq(r.done, 1);
    cr_assert_eq(r.err, ILION_ETIMEOUT);
    cr_assert_geq(uv_now(&loop) - t0, 140);
    cr_assert_eq(s.calls, 1);
    run_until(&re.done, 3000);
    cr_assert_eq(re.err, ILION_EOVERLOADED);
    run_for(50);
    cr_assert_eq(r.done, 1, "callback called once only");
    net_stats st;
    net_get_stats(a, &st);
    cr_assert_eq(st.timeouts, 1);
    net_destroy(a);
    net_destroy(b);
}

static int refused_count;
static char refused_name[64];
static void on_refused(void *arg, const net_addr *peer, const char *their) {
    refused_count++;
    snprintf(refused_name, sizeof refused_name, "%s", their);
}

Test(net, refuses_other_cluster_name) {
    net_service *a = mk("127.0.0.1", 0, "Prod", 1);
    net_service *c = mk("127.0.0.2", 0, "Staging", 3);
    int refused_a = 0;
    (void)refused_a;
    refused_count = 0;
    net_set_refused_cb(a, on_refused, NULL);
    net_set_refused_cb(c, on_refused, NULL);
    srv s = {0};
    net_register(c, NET_VERB_READ, reverse_handler, &s);
    resp r = {0};
    cr_assert_eq(net_request(a, net_local_addr(c), NET_VERB_READ, "abc", 3, 2000, resp_cb, &r, NULL), 0);
    run_until(&r.done, 3000);
    cr_assert_eq(r.done, 1);
    cr_assert_eq(r.err, -ECONNREFUSED, "got %s", ilion_strerror(r.err));
    cr_assert_eq(s.calls, 0, "no message may pass a refused handshake");
    net_stats sa, sc;
    net_get_stats(a, &sa);
    net_get_stats(c, &sc);
    cr_assert_geq(sa.handshakes_refused, 1);
    cr_assert_geq(sc.handshakes_refused, 1);
    cr_assert_eq(refused_count, 2, "logged on both sides");
    net_destroy(a);
    net_destroy(c);
}

Test(net, down_peer_fails_at_once) {
    net_service *a = mk("127.0.0.1", 0, "c1", 1);
    net_service *b = mk("127.0.0.2", 0, "c1", 2);
    srv s = {0};
    net_register(b, NET_VERB_MUTATION, silent_handler, &s);
    resp r = {0};
    cr_assert_eq(net_request(a, net_local_addr(b), NET_VERB_MUTATION, "x", 1, 5000, resp_cb, &r, NULL), 0);
    run_until(&s.calls, 2000);
    cr_assert_eq(s.calls, 1);
    net_set_peer_down(a, net_local_addr(b), true);
    cr_assert_eq(r.done, 1, "pending request failed when the peer was marked down");
    cr_assert_eq(r.err, ILION_EUNAVAILABLE);
    resp r2 = {0};
    cr_assert_eq(net_request(a, net_local_addr(b), NET_VERB_MUTATION, "x", 1, 5000, resp_cb, &r2, NULL),
                 ILION_EUNAVAILABLE);
    cr_assert(net_peer_is_down(a, net_local_addr(b)));
    net_set_peer_down(a, net_local_addr(b), false);
    srv s2 = {0};
    net_register(b, NET_VERB_READ, reverse_handler, &s2);
    cr_assert_eq(net_request(a, net_local_addr(b), NET_VERB_READ, "ab", 2, 2000, resp_cb, &r2, NULL), 0);
    run_until(&r2.done, 3000);
    cr_assert_eq(r2.err, 0);
    net_destroy(a);
    net_destroy(b);
}

Test(net, reconnects_with_backoff) {
    net_service *a = mk("127.0.0.1", 0, "c1", 1);
    net_service *b = mk("127.0.0.2", 0, "c1", 2);
    net_addr baddr = *net_local_addr(b);
    net_destroy(b);
    run_for(20);
    /* Nobody listens now: connects fail and are retried with growing delays. */
    srv s = {0};
    resp r = {0};
    cr_assert_eq(net_request(a, &baddr, NET_VERB_READ, "hey", 3, 5000, resp_cb, &r, NULL), 0);
    run_for(400);
    net_stats st;
    net_get_stats(a, &st);
    cr_assert_geq(st.connect_failures, 2);
    /* 20, 40, 80, 160, 200 ms: at most ~6 attempts in 400 ms, not a busy loop. */
    cr_assert_leq(st.connect_failures, 8, "%llu attempts", (unsigned long long)st.connect_failures);
    cr_assert_eq(r.done, 0);
    /* The peer comes back on the same address: the queued request goes through. */
    char ip[64];
    net_addr_ip_str(&baddr, ip, sizeof ip);
    b = mk(ip, baddr.port, "c1", 2);
    net_register(b, NET_VERB_READ, reverse_handler, &s);
    run_until(&r.done, 3000);
    cr_assert_eq(r.done, 1);
    cr_assert_eq(r.err, 0, "%s", ilion_strerror(r.err));
    cr_assert_arr_eq(r.data, "yeh", 3);
    net_destroy(a);
    net_destroy(b);
}

Test(net, oneway_and_gossip_connection) {
    net_service *a = mk("127.0.0.1", 0, "c1", 1);
    net_service *b = mk("127.0.0.2", 0, "c1", 2);
    srv s = {0}, g = {0};
    net_register(b, NET_VERB_HINT, silent_handler, &s);
    net_register(b, NET_VERB_GOSSIP_SYN, silent_handler, &g);
    cr_assert_eq(net_send(a, net_local_addr(b), NET_VERB_HINT, "h", 1), 0);
    cr_assert_eq(net_send(a, net_local_addr(b), NET_VERB_GOSSIP_SYN, "g", 1), 0);
    int both = 0;
    for (int i = 0; i < 2000 && !both; i++) {
        run_for(1);
        both = s.calls == 1 && g.calls == 1;
    }
    cr_assert(both);
    net_stats st;
    net_get_stats(b, &st);
    cr_assert_eq(st.handshakes_ok, 2, "one gossip and one data connection");
    cr_assert_eq(net_send(a, net_local_addr(b), NET_VERB_NONE, "x", 1), ILION_EINVALID);
    net_destroy(a);
    net_destroy(b);
}

/* Garbage and oversized frames close the connection, nothing else. */
Test(net, bad_input_closes_connection) {
    net_service *a = mk("127.0.0.1", 0, "c1", 1);
    const net_addr *la = net_local_addr(a);
    const uint8_t *inputs[3];
    uint8_t huge[8] = {0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0};          /* length over the limit */
    uint8_t badcrc[12] = {0, 0, 0, 4, 1, 2, 3, 4, 'I', 'L', 'N', 'M'}; /* checksum wrong */
    uint8_t shorths[9];                                               /* valid CRC, truncated body */
    shorths[0] = 0; shorths[1] = 0; shorths[2] = 0; shorths[3] = 1;
    shorths[8] = 'I';
    {
        /* crc32 of len bytes ++ body, computed like the sender. */
        unsigned long c = crc32(0, NULL, 0);
        c = crc32(c, shorths, 4);
        c = crc32(c, shorths + 8, 1);
        shorths[4] = (uint8_t)(c >> 24); shorths[5] = (uint8_t)(c >> 16);
        shorths[6] = (uint8_t)(c >> 8); shorths[7] = (uint8_t)c;
    }
    inputs[0] = huge;
    inputs[1] = badcrc;
    inputs[2] = shorths;
    size_t lens[3] = {sizeof huge, sizeof badcrc, sizeof shorths};
    for (int i = 0; i < 3; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sin = {0};
        sin.sin_family = AF_INET;
        sin.sin_port = htons(la->port);
        memcpy(&sin.sin_addr, la->ip, 4);
        cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
        cr_assert_eq(write(fd, inputs[i], lens[i]), (ssize_t)lens[i]);
        run_for(50);
        uint8_t tmp[64];
        struct timeval tv = {0, 100000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ssize_t n = read(fd, tmp, sizeof tmp);
        cr_assert_eq(n, 0, "input %d: connection should be closed (read %zd)", i, n);
        close(fd);
    }
    net_stats st;
    net_get_stats(a, &st);
    cr_assert_eq(st.bad_frames, 3);
    net_destroy(a);
}

/* A connection that never sends its handshake is closed after connect_timeout_ms (500 here). */
Test(net, silent_inbound_connection_closed) {
    net_service *a = mk("127.0.0.1", 0, "c1", 1);
    const net_addr *la = net_local_addr(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {0};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(la->port);
    memcpy(&sin.sin_addr, la->ip, 4);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    run_for(200);
    struct timeval tv = {0, 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    uint8_t tmp[8];
    cr_assert_lt(read(fd, tmp, sizeof tmp), 0, "still open after 200 ms");
    run_for(1200);
    cr_assert_eq(read(fd, tmp, sizeof tmp), 0, "closed after the handshake deadline");
    close(fd);
    net_destroy(a);
}

/* Every request's callback runs exactly once, whatever happens meanwhile: answers, silence,
 * the peer going away and coming back on the same address, the peer marked down and up. */
static int chaos_calls[2000];
static int chaos_errs[2000];
static void chaos_cb(void *arg, int err, uint8_t verb, const uint8_t *p, size_t len) {
    int i = (int)(intptr_t)arg;
    chaos_calls[i]++;
    chaos_errs[i] = err;
}

static void maybe_answer(void *arg, net_service *ns, const net_msg *m, const uint8_t *p, size_t len) {
    if (len && p[0] % 2 == 0) net_respond(ns, m, NET_VERB_MUTATION_RSP, p, len);
}

Test(net, chaos_every_callback_once) {
    net_service *a = mk("127.0.0.1", 0, "c1", 1);
    net_service *b = mk("127.0.0.2", 0, "c1", 2);
    net_register(b, NET_VERB_MUTATION, maybe_answer, NULL);
    net_addr baddr = *net_local_addr(b);
    char bip[64];
    net_addr_ip_str(&baddr, bip, sizeof bip);
    memset(chaos_calls, 0, sizeof chaos_calls);
    uint64_t rs = 12345;
    int sent = 0, refused_at_once = 0;
    bool down = false;
    for (int step = 0; step < 200; step++) {
        for (int k = 0; k < 10; k++, sent++) {
            rs = rs * 6364136223846793005ull + 1442695040888963407ull;
            uint8_t p[1] = {(uint8_t)(rs >> 40)};
            uint32_t timeout = 20 + (uint32_t)((rs >> 20) % 200);
            int rc = net_request(a, &baddr, NET_VERB_MUTATION, p, 1, timeout, chaos_cb,
                                 (void *)(intptr_t)sent, NULL);
            if (rc < 0) {
                cr_assert_eq(rc, ILION_EUNAVAILABLE);
                cr_assert(down);
                chaos_calls[sent]++;  /* no callback will come: count the synchronous failure */
                chaos_errs[sent] = 1;
                refused_at_once++;
            }
        }
        run_for(2);
        rs = rs * 6364136223846793005ull + 1442695040888963407ull;
        int act = (int)((rs >> 33) % 100);
        if (act < 4 && b) {
            net_destroy(b);
            b = NULL;
        } else if (act < 10 && !b) {
            b = mk(bip, baddr.port, "c1", 2);
            net_register(b, NET_VERB_MUTATION, maybe_answer, NULL);
        } else if (act < 14) {
            down = !down;
            net_set_peer_down(a, &baddr, down);
        }
    }
    /* Every timeout has passed after 250 ms more. */
    run_for(400);
    int ok = 0, timeouts = 0, unavailable = 0;
    for (int i = 0; i < sent; i++) {
        cr_assert_eq(chaos_calls[i], 1, "request %d: %d callbacks", i, chaos_calls[i]);
        ok += chaos_errs[i] == 0;
        timeouts += chaos_errs[i] == ILION_ETIMEOUT;
        unavailable += chaos_errs[i] == ILION_EUNAVAILABLE;
    }
    cr_log_info("chaos: %d requests: %d answered, %d timed out, %d failed when marked down, %d refused "
                "at once", sent, ok, timeouts, unavailable, refused_at_once);
    cr_assert_eq(ok + timeouts + unavailable + refused_at_once, sent, "unexpected error codes");
    cr_assert_gt(ok, 0);
    cr_assert_gt(timeouts, 0);
    net_stats st;
    net_get_stats(a, &st);
    cr_assert_eq(st.pending, 0);
    net_destroy(a);
    if (b) net_destroy(b);
}

/* Large messages cross in pieces and come back whole; over the limit is refused at once. */
static size_t big_len;
static uint32_t big_sum;
static void big_cb(void *arg, int err, uint8_t verb, const uint8_t *p, size_t len) {
    resp *r = arg;
    r->done++;
    r->err = err;
    big_len = len;
    big_sum = 0;
    for (size_t i = 0; i < len; i++) big_sum = big_sum * 31 + p[i];
}
static void big_echo(void *arg, net_service *ns, const net_msg *m, const uint8_t *p, size_t len) {
    net_respond(ns, m, NET_VERB_READ_RSP, p, len);
}

Test(net, large_messages) {
    net_service *a = mk("127.0.0.1", 0, "c1", 1);
    net_service *b = mk("127.0.0.2", 0, "c1", 2);
    net_register(b, NET_VERB_READ, big_echo, NULL);
    size_t n = 3u << 20;
    uint8_t *p = malloc(n);
    uint32_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)(i * 2654435761u >> 24);
        sum = sum * 31 + p[i];
    }
    resp r = {0};
    cr_assert_eq(net_request(a, net_local_addr(b), NET_VERB_READ, p, n, 5000, big_cb, &r, NULL), 0);
    run_until(&r.done, 5000);
    cr_assert_eq(r.err, 0);
    cr_assert_eq(big_len, n);
    cr_assert_eq(big_sum, sum);
    free(p);
    cr_assert_eq(net_request(a, net_local_addr(b), NET_VERB_READ, "x", NET_DEFAULT_MAX_MESSAGE + 1, 5000,
                             big_cb, &r, NULL), ILION_ETOOBIG);
    net_destroy(a);
    net_destroy(b);
}

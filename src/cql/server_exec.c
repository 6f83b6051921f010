/* The request handler that forwards to the CQL executor (cql/exec.h). Kept apart from
 * server.c so the server links without the executor (protocol tests use their own handler). */
#include "ilion/cql/server.h"

static cql_session *h_session_new(void *ctx) { return cql_session_new(ctx); }

static void h_session_free(void *ctx, cql_session *s) {
    (void)ctx;
    cql_session_free(s);
}

static int h_query(void *ctx, cql_session *s, const char *q, size_t len,
                   const cql_query_params *p, cql_done_cb cb, void *arg) {
    return cql_exec_query(ctx, s, q, len, p, cb, arg);
}

static int h_prepare(void *ctx, cql_session *s, const char *q, size_t len, cql_done_cb cb,
                     void *arg) {
    return cql_exec_prepare(ctx, s, q, len, cb, arg);
}

static int h_execute(void *ctx, cql_session *s, const uint8_t *id, size_t idlen,
                     const cql_query_params *p, cql_done_cb cb, void *arg) {
    return cql_exec_execute(ctx, s, id, idlen, p, cb, arg);
}

static int h_batch(void *ctx, cql_session *s, const cql_batch *b, cql_done_cb cb, void *arg) {
    return cql_exec_batch(ctx, s, b, cb, arg);
}

void cql_server_handler_executor(cql_executor *x, cql_server_handler *h) {
    h->ctx = x;
    h->session_new = h_session_new;
    h->session_free = h_session_free;
    h->query = h_query;
    h->prepare = h_prepare;
    h->execute = h_execute;
    h->batch = h_batch;
}

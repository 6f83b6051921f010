/* RESULT and ERROR bodies, and handing them to the request's callback. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec_int.h"
#include "ilion/cql/wire.h"

void exec_reply(exec_req *r, cql_response *resp) {
    cql_done_cb cb = r->cb;
    void *arg = r->arg;
    exec_req_free(r);
    cb(arg, resp);
}

static void reply_buf(exec_req *r, uint8_t opcode, buf *b, buf *event) {
    cql_response resp;
    memset(&resp, 0, sizeof resp);
    if (b->oom) {
        buf_free(b);
        resp.opcode = 0x00;
        resp.body = cql_error_body(CQLE_SERVER, "out of memory building the response", &resp.len);
    } else {
        resp.opcode = opcode;
        resp.body = buf_steal(b, &resp.len);
    }
    if (event && !event->oom && event->len) {
        resp.event = buf_steal(event, &resp.event_len);
        resp.event_type = "SCHEMA_CHANGE";
    } else if (event) {
        buf_free(event);
    }
    exec_reply(r, &resp);
}

void exec_error(exec_req *r, uint32_t code, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    buf b;
    buf_init(&b);
    cqlw_error(&b, code, msg);
    reply_buf(r, 0x00, &b, NULL);
}

void exec_error_already_exists(exec_req *r, const char *ks, const char *table) {
    char msg[256];
    if (table && *table)
        snprintf(msg, sizeof msg, "Cannot add already existing table \"%s\" to keyspace \"%s\"", table, ks);
    else
        snprintf(msg, sizeof msg, "Cannot add existing keyspace \"%s\"", ks);
    buf b;
    buf_init(&b);
    cqlw_error(&b, CQLE_ALREADY_EXISTS, msg);
    cqlw_string(&b, ks);
    cqlw_string(&b, table ? table : "");
    reply_buf(r, 0x00, &b, NULL);
}

static const char *write_type_name(enum coord_write_type wt) {
    switch (wt) {
    case COORD_WT_BATCH: return "BATCH";
    case COORD_WT_UNLOGGED_BATCH: return "UNLOGGED_BATCH";
    case COORD_WT_COUNTER: return "COUNTER";
    case COORD_WT_BATCH_LOG: return "BATCH_LOG";
    case COORD_WT_CAS: return "CAS";
    default: return "SIMPLE";
    }
}

void exec_error_coord(exec_req *r, const coord_error *e) {
    buf b;
    buf_init(&b);
    cqlw_error(&b, e->code, e->message);
    switch (e->code) {
    case CQLE_UNAVAILABLE:
        buf_u16(&b, e->cl);
        buf_u32(&b, (uint32_t)e->required);
        buf_u32(&b, (uint32_t)e->alive);
        break;
    case CQLE_WRITE_TIMEOUT:
        buf_u16(&b, e->cl);
        buf_u32(&b, (uint32_t)e->received);
        buf_u32(&b, (uint32_t)e->blockfor);
        cqlw_string(&b, write_type_name(e->write_type));
        break;
    case CQLE_READ_TIMEOUT:
        buf_u16(&b, e->cl);
        buf_u32(&b, (uint32_t)e->received);
        buf_u32(&b, (uint32_t)e->blockfor);
        buf_u8(&b, e->data_present);
        break;
    case 0x1300: /* read failure: cl, received, blockfor, numfailures, data_present */
        buf_u16(&b, e->cl);
        buf_u32(&b, (uint32_t)e->received);
        buf_u32(&b, (uint32_t)e->blockfor);
        buf_u32(&b, 1);
        buf_u8(&b, e->data_present);
        break;
    case 0x1500: /* write failure: cl, received, blockfor, numfailures, write_type */
        buf_u16(&b, e->cl);
        buf_u32(&b, (uint32_t)e->received);
        buf_u32(&b, (uint32_t)e->blockfor);
        buf_u32(&b, 1);
        cqlw_string(&b, write_type_name(e->write_type));
        break;
    default: break;
    }
    reply_buf(r, 0x00, &b, NULL);
}

void exec_reply_coord_done(void *arg, const coord_error *e) {
    exec_req *r = arg;
    if (e) exec_error_coord(r, e);
    else exec_reply_void(r);
}

void exec_reply_void(exec_req *r) {
    buf b;
    buf_init(&b);
    buf_u32(&b, 1);
    reply_buf(r, 0x08, &b, NULL);
}

void exec_reply_set_keyspace(exec_req *r, const char *ks) {
    buf b;
    buf_init(&b);
    buf_u32(&b, 3);
    cqlw_string(&b, ks);
    reply_buf(r, 0x08, &b, NULL);
}

static void schema_change_body(buf *b, const char *change, const char *target, const char *ks,
                               const char *table) {
    cqlw_string(b, change);
    cqlw_string(b, target);
    cqlw_string(b, ks);
    if (table) cqlw_string(b, table);
}

void exec_schema_event_body(buf *out, const char *change, const char *target, const char *ks,
                            const char *table) {
    cqlw_string(out, "SCHEMA_CHANGE");
    schema_change_body(out, change, target, ks, table);
}

void exec_reply_schema_change(exec_req *r, const char *change, const char *target,
                              const char *ks, const char *table) {
    buf b, ev;
    buf_init(&b);
    buf_init(&ev);
    buf_u32(&b, 5);
    schema_change_body(&b, change, target, ks, table);
    cqlw_string(&ev, "SCHEMA_CHANGE");
    schema_change_body(&ev, change, target, ks, table);
    reply_buf(r, 0x08, &b, &ev);
}

void exec_reply_body(exec_req *r, buf *body) { reply_buf(r, 0x08, body, NULL); }

void exec_reply_error_buf(exec_req *r, buf *body) { reply_buf(r, 0x00, body, NULL); }

void rs_init(result_set *rs, const char *ks, const char *table, uint32_t ncols, rs_col *cols) {
    memset(rs, 0, sizeof *rs);
    rs->ks = ks;
    rs->table = table;
    rs->ncols = ncols;
    rs->cols = cols;
    buf_init(&rs->rows);
}

void rs_cell(result_set *rs, const void *v, int32_t len) {
    if (len < 0) buf_u32(&rs->rows, 0xFFFFFFFFu);
    else cqlw_bytes(&rs->rows, v, len);
}

void rs_row_done(result_set *rs) { rs->nrows++; }

void rs_free(result_set *rs) { buf_free(&rs->rows); }

void rs_write_metadata(buf *b, const char *ks, const char *table, uint32_t ncols,
                       const rs_col *cols, bool no_metadata, const uint8_t *paging,
                       uint32_t paging_len) {
    uint32_t flags = 0;
    if (no_metadata) flags |= 0x04;
    else if (ncols > 0) flags |= 0x01;
    if (paging) flags |= 0x02;
    buf_u32(b, flags);
    buf_u32(b, ncols);
    if (paging) cqlw_bytes(b, paging, (int32_t)paging_len);
    if (no_metadata) return;
    if (ncols > 0) {
        cqlw_string(b, ks);
        cqlw_string(b, table);
    }
    for (uint32_t i = 0; i < ncols; i++) {
        cqlw_string(b, cols[i].name);
        schema_type_write_option(&cols[i].type, b);
    }
}

void exec_reply_rows(exec_req *r, result_set *rs) {
    buf b;
    buf_init(&b);
    /* One allocation for the whole body in the common case (metadata is small). */
    buf_reserve(&b, 64 + rs->rows.len + (rs->no_metadata ? 0 : 128 + (size_t)rs->ncols * 48));
    buf_u32(&b, 2);
    rs_write_metadata(&b, rs->ks, rs->table, rs->ncols, rs->cols, rs->no_metadata, rs->paging,
                      rs->paging_len);
    buf_u32(&b, rs->nrows);
    buf_put(&b, rs->rows.data, rs->rows.len);
    if (rs->rows.oom) b.oom = true;
    rs_free(rs);
    reply_buf(r, 0x08, &b, NULL);
}

/* Native protocol frames and request bodies: see include/ilion/cql/frame.h. */
#include "ilion/cql/frame.h"

#include <lz4.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ilion/cql/wire.h"

/* Bodies shorter than this are sent uncompressed even on an lz4 connection: the 4-byte length
 * prefix and the LZ4 token overhead eat any gain, and the flag is per frame anyway. */
#define CQLF_COMPRESS_MIN 64

void cqlf_header_parse(const uint8_t p[CQLF_HEADER_LEN], cqlf_header *h) {
    h->version = p[0] & 0x7f;
    h->response = (p[0] & CQLF_RESPONSE) != 0;
    h->flags = p[1];
    h->stream = (int16_t)be16_get(p + 2);
    h->opcode = p[4];
    h->length = be32_get(p + 5);
}

void cqlf_header_put(uint8_t p[CQLF_HEADER_LEN], uint8_t version, uint8_t flags, int16_t stream,
                     uint8_t opcode, uint32_t length) {
    p[0] = (uint8_t)(version | CQLF_RESPONSE);
    p[1] = flags;
    be16_put(p + 2, (uint16_t)stream);
    p[4] = opcode;
    be32_put(p + 5, length);
}

const char *cqlf_opcode_name(uint8_t opcode) {
    switch (opcode) {
    case CQLF_OP_ERROR: return "ERROR";
    case CQLF_OP_STARTUP: return "STARTUP";
    case CQLF_OP_READY: return "READY";
    case CQLF_OP_AUTHENTICATE: return "AUTHENTICATE";
    case CQLF_OP_OPTIONS: return "OPTIONS";
    case CQLF_OP_SUPPORTED: return "SUPPORTED";
    case CQLF_OP_QUERY: return "QUERY";
    case CQLF_OP_RESULT: return "RESULT";
    case CQLF_OP_PREPARE: return "PREPARE";
    case CQLF_OP_EXECUTE: return "EXECUTE";
    case CQLF_OP_REGISTER: return "REGISTER";
    case CQLF_OP_EVENT: return "EVENT";
    case CQLF_OP_BATCH: return "BATCH";
    case CQLF_OP_AUTH_CHALLENGE: return "AUTH_CHALLENGE";
    case CQLF_OP_AUTH_RESPONSE: return "AUTH_RESPONSE";
    case CQLF_OP_AUTH_SUCCESS: return "AUTH_SUCCESS";
    default: return "UNKNOWN";
    }
}

int cqlf_lz4_compress(buf *out, const uint8_t *src, size_t len) {
    if (len > (size_t)LZ4_MAX_INPUT_SIZE) return -1;
    int bound = LZ4_compressBound((int)len);
    if (buf_reserve(out, 4 + (size_t)bound)) return -1;
    uint8_t *dst = out->data + out->len;
    be32_put(dst, (uint32_t)len);
    int n = LZ4_compress_default((const char *)src, (char *)dst + 4, (int)len, bound);
    if (n <= 0) return -1;
    out->len += 4 + (size_t)n;
    return 0;
}

int cqlf_lz4_decompress(const uint8_t *src, size_t len, size_t max_len, uint8_t **out,
                        size_t *out_len) {
    *out = NULL;
    if (len < 4) return -1;
    uint32_t ulen = be32_get(src);
    if (ulen > max_len || ulen > (uint32_t)LZ4_MAX_INPUT_SIZE || len - 4 > (size_t)INT32_MAX)
        return -1;
    uint8_t *dst = malloc(ulen ? ulen : 1);
    if (!dst) return -1;
    int n = LZ4_decompress_safe((const char *)src + 4, (char *)dst, (int)(len - 4), (int)ulen);
    if (n < 0 || (uint32_t)n != ulen) {
        free(dst);
        return -1;
    }
    *out = dst;
    *out_len = ulen;
    return 0;
}

void cqlf_frame_put(buf *out, uint8_t version, uint8_t flags, int16_t stream, uint8_t opcode,
                    const uint8_t *body, size_t len, bool compress) {
    size_t start = out->len;
    uint8_t h[CQLF_HEADER_LEN];
    if (compress && len >= CQLF_COMPRESS_MIN) {
        cqlf_header_put(h, version, flags | CQLF_FLAG_COMPRESSED, stream, opcode, 0);
        buf_put(out, h, sizeof h);
        if (!out->oom && cqlf_lz4_compress(out, body, len) == 0 &&
            out->len - start - CQLF_HEADER_LEN < len) {
            buf_patch_u32(out, start + 5, (uint32_t)(out->len - start - CQLF_HEADER_LEN));
            return;
        }
        if (out->oom) return;
        out->len = start;   /* incompressible: send it plain */
    }
    cqlf_header_put(h, version, flags & (uint8_t)~CQLF_FLAG_COMPRESSED, stream, opcode,
                    (uint32_t)len);
    buf_put(out, h, sizeof h);
    buf_put(out, body, len);
}

/* ---- request bodies ---- */

static bool str_eq(const char *s, size_t n, const char *lit) {
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static bool str_ieq(const char *s, size_t n, const char *lit) {
    return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

int cqlf_decode_startup(const uint8_t *body, size_t len, cqlf_startup *s, const char **err) {
    rd r;
    rd_init(&r, body, len);
    memset(s, 0, sizeof *s);
    uint16_t n;
    if (rd_u16(&r, &n)) goto bad;
    for (uint16_t i = 0; i < n; i++) {
        const char *k, *v;
        uint16_t kn, vn;
        if (cqlr_string(&r, &k, &kn) || cqlr_string(&r, &v, &vn)) goto bad;
        if (str_eq(k, kn, "CQL_VERSION")) {
            s->cql_version = v;
            s->cql_version_len = vn;
        } else if (str_eq(k, kn, "COMPRESSION")) {
            if (str_ieq(v, vn, "lz4")) {
                s->compression_lz4 = true;
            } else if (vn > 0) {
                *err = "Unsupported compression algorithm (supported: lz4)";
                return -1;
            }
        }
        /* DRIVER_NAME, DRIVER_VERSION, CLIENT_ID, APPLICATION_NAME, THROW_ON_OVERLOAD, ...:
         * informational, ignored. */
    }
    if (!s->cql_version) {
        *err = "Missing value CQL_VERSION in STARTUP message";
        return -1;
    }
    if (s->cql_version_len < 2 || s->cql_version[0] != '3' || s->cql_version[1] != '.') {
        *err = "Invalid or unsupported CQL version (supported: 3.4.5)";
        return -1;
    }
    return 0;
bad:
    *err = "Malformed STARTUP message";
    return -1;
}

unsigned cqlf_event_type_bit(const char *name, size_t len) {
    if (str_eq(name, len, "TOPOLOGY_CHANGE")) return CQLF_EVENT_TOPOLOGY_CHANGE;
    if (str_eq(name, len, "STATUS_CHANGE")) return CQLF_EVENT_STATUS_CHANGE;
    if (str_eq(name, len, "SCHEMA_CHANGE")) return CQLF_EVENT_SCHEMA_CHANGE;
    return 0;
}

int cqlf_decode_register(const uint8_t *body, size_t len, unsigned *mask, const char **err) {
    rd r;
    rd_init(&r, body, len);
    uint16_t n;
    *mask = 0;
    if (rd_u16(&r, &n)) goto bad;
    for (uint16_t i = 0; i < n; i++) {
        const char *s;
        uint16_t sn;
        if (cqlr_string(&r, &s, &sn)) goto bad;
        unsigned bit = cqlf_event_type_bit(s, sn);
        if (!bit) {
            *err = "Invalid event type in REGISTER (expected TOPOLOGY_CHANGE, STATUS_CHANGE or "
                   "SCHEMA_CHANGE)";
            return -1;
        }
        *mask |= bit;
    }
    return 0;
bad:
    *err = "Malformed REGISTER message";
    return -1;
}

int cqlf_skip_custom_payload(const uint8_t *body, size_t len, size_t *off, const char **err) {
    rd r;
    rd_init(&r, body, len);
    uint16_t n;
    if (rd_u16(&r, &n)) goto bad;
    for (uint16_t i = 0; i < n; i++) {
        const char *k;
        uint16_t kn;
        const uint8_t *v;
        int32_t vn;
        if (cqlr_string(&r, &k, &kn) || cqlr_bytes(&r, &v, &vn)) goto bad;
    }
    *off = len - rd_left(&r);
    return 0;
bad:
    *err = "Malformed custom payload";
    return -1;
}

static int read_values(rd *r, uint8_t version, bool named, st_arena *a, uint16_t *nout,
                       cql_value **out, const char **err) {
    uint16_t n;
    if (rd_u16(r, &n)) goto bad;
    cql_value *v = NULL;
    if (n) {
        /* Each value takes at least 4 bytes: refuse counts the body cannot hold before
         * allocating for them. */
        if ((size_t)n * 4 > rd_left(r)) goto bad;
        v = arena_alloc(a, (size_t)n * sizeof *v);
        if (!v) {
            *err = "Out of memory decoding values";
            return -1;
        }
    }
    for (uint16_t i = 0; i < n; i++) {
        v[i].name = NULL;
        v[i].name_len = 0;
        if (named) {
            const char *s;
            uint16_t sn;
            if (cqlr_string(r, &s, &sn)) goto bad;
            char *copy = arena_alloc(a, (size_t)sn + 1);
            if (!copy) {
                *err = "Out of memory decoding values";
                return -1;
            }
            memcpy(copy, s, sn);
            copy[sn] = 0;
            v[i].name = copy;
            v[i].name_len = sn;
        }
        if (cqlr_bytes(r, &v[i].data, &v[i].len)) goto bad;
        if (v[i].len == -2 && version < 4) {
            *err = "Unset values are not supported in protocol v3";
            return -1;
        }
    }
    *nout = n;
    *out = v;
    return 0;
bad:
    *err = "Malformed values";
    return -1;
}

static int read_consistency(rd *r, uint16_t *cl, const char **err) {
    if (rd_u16(r, cl)) {
        *err = "Malformed consistency level";
        return -1;
    }
    if (*cl > 10) {
        *err = "Unknown consistency level";
        return -1;
    }
    return 0;
}

static int read_serial_and_timestamp(rd *r, uint8_t flags, uint16_t *serial, int64_t *ts,
                                     const char **err) {
    *serial = 8;
    *ts = INT64_MIN;
    if (flags & 0x10) {
        if (read_consistency(r, serial, err)) return -1;
        if (*serial != 8 && *serial != 9) {
            *err = "Invalid serial consistency level (expected SERIAL or LOCAL_SERIAL)";
            return -2;
        }
    }
    if (flags & 0x20) {
        uint64_t u;
        if (rd_u64(r, &u)) {
            *err = "Malformed default timestamp";
            return -1;
        }
        if ((int64_t)u == INT64_MIN) {
            *err = "Out of bound timestamp, must be in [-9223372036854775807, "
                   "9223372036854775807]";
            return -1;
        }
        *ts = (int64_t)u;
    }
    return 0;
}

int cqlf_decode_query_params(rd *r, uint8_t version, st_arena *a, cql_query_params *p,
                             const char **err) {
    memset(p, 0, sizeof *p);
    p->page_size = -1;
    p->serial_consistency = 8;
    p->default_timestamp = INT64_MIN;
    if (read_consistency(r, &p->consistency, err)) return -1;
    if (rd_u8(r, &p->flags)) {
        *err = "Malformed query flags";
        return -1;
    }
    if (p->flags & 0x01) {
        if (read_values(r, version, (p->flags & 0x40) != 0, a, &p->nvalues, &p->values, err))
            return -1;
    }
    p->skip_metadata = (p->flags & 0x02) != 0;
    if (p->flags & 0x04) {
        uint32_t u;
        if (rd_u32(r, &u)) {
            *err = "Malformed page size";
            return -1;
        }
        p->page_size = (int32_t)u;
    }
    if (p->flags & 0x08) {
        const uint8_t *ps;
        int32_t psn;
        if (cqlr_bytes(r, &ps, &psn)) {
            *err = "Malformed paging state";
            return -1;
        }
        if (psn >= 0) {
            p->paging_state = ps;
            p->paging_state_len = psn;
        }
    }
    return read_serial_and_timestamp(r, p->flags, &p->serial_consistency, &p->default_timestamp,
                                     err);
}

int cqlf_decode_query(const uint8_t *body, size_t len, uint8_t version, st_arena *a,
                      cqlf_query *q, const char **err) {
    rd r;
    rd_init(&r, body, len);
    const char *s;
    int32_t n;
    if (cqlr_long_string(&r, &s, &n)) {
        *err = "Malformed QUERY message: bad query string";
        return -1;
    }
    q->query = s;
    q->len = (size_t)n;
    return cqlf_decode_query_params(&r, version, a, &q->params, err);
}

int cqlf_decode_prepare(const uint8_t *body, size_t len, cqlf_prepare *p, const char **err) {
    rd r;
    rd_init(&r, body, len);
    const char *s;
    int32_t n;
    if (cqlr_long_string(&r, &s, &n)) {
        *err = "Malformed PREPARE message: bad query string";
        return -1;
    }
    p->query = s;
    p->len = (size_t)n;
    return 0;
}

int cqlf_decode_execute(const uint8_t *body, size_t len, uint8_t version, st_arena *a,
                        cqlf_execute *e, const char **err) {
    rd r;
    rd_init(&r, body, len);
    const uint8_t *id;
    uint16_t n;
    if (cqlr_short_bytes(&r, &id, &n) || n == 0) {
        *err = "Malformed EXECUTE message: bad statement id";
        return -1;
    }
    e->id = id;
    e->idlen = n;
    return cqlf_decode_query_params(&r, version, a, &e->params, err);
}

int cqlf_decode_batch(const uint8_t *body, size_t len, uint8_t version, st_arena *a,
                      cql_batch *b, const char **err) {
    rd r;
    rd_init(&r, body, len);
    memset(b, 0, sizeof *b);
    uint16_t n;
    if (rd_u8(&r, &b->type) || rd_u16(&r, &n)) goto bad;
    if (b->type > 2) {
        *err = "Unknown batch type";
        return -1;
    }
    /* An entry takes at least 1 + 2 + 2 bytes. */
    if ((size_t)n * 5 > rd_left(&r)) goto bad;
    if (n) {
        b->entries = arena_alloc(a, (size_t)n * sizeof *b->entries);
        if (!b->entries) {
            *err = "Out of memory decoding BATCH";
            return -1;
        }
    }
    for (uint16_t i = 0; i < n; i++) {
        cql_batch_entry *e = &b->entries[i];
        uint8_t kind;
        if (rd_u8(&r, &kind)) goto bad;
        if (kind == 0) {
            const char *s;
            int32_t sn;
            if (cqlr_long_string(&r, &s, &sn)) goto bad;
            e->prepared = false;
            e->query_or_id = (const uint8_t *)s;
            e->len = (uint32_t)sn;
        } else if (kind == 1) {
            const uint8_t *id;
            uint16_t idn;
            if (cqlr_short_bytes(&r, &id, &idn)) goto bad;
            e->prepared = true;
            e->query_or_id = id;
            e->len = idn;
        } else {
            *err = "Invalid query kind in BATCH messages. Must be 0 or 1";
            return -1;
        }
        if (read_values(&r, version, false, a, &e->nvalues, &e->values, err)) return -1;
    }
    b->nentries = n;
    uint8_t flags;
    if (read_consistency(&r, &b->consistency, err)) return -1;
    if (rd_u8(&r, &flags)) goto bad;
    if (flags & 0x40) {
        *err = "Named values are not supported in BATCH";
        return -1;
    }
    return read_serial_and_timestamp(&r, flags, &b->serial_consistency, &b->default_timestamp,
                                     err);
bad:
    *err = "Malformed BATCH message";
    return -1;
}

/* ---- response bodies ---- */

void cqlf_supported_body(buf *b) {
    static const char *const cqlv[] = {"3.4.5"};
    static const char *const comp[] = {"lz4"};
    static const char *const vers[] = {"3/v3", "4/v4"};
    buf_u16(b, 3);
    cqlw_string(b, "CQL_VERSION");
    cqlw_string_list(b, cqlv, 1);
    cqlw_string(b, "COMPRESSION");
    cqlw_string_list(b, comp, 1);
    cqlw_string(b, "PROTOCOL_VERSIONS");
    cqlw_string_list(b, vers, 2);
}

void cqlf_event_topology_body(buf *b, const char *change, const uint8_t *addr, uint8_t addrlen,
                              int32_t port) {
    cqlw_string(b, "TOPOLOGY_CHANGE");
    cqlw_string(b, change);
    cqlw_inet(b, addr, addrlen, port);
}

void cqlf_event_status_body(buf *b, const char *change, const uint8_t *addr, uint8_t addrlen,
                            int32_t port) {
    cqlw_string(b, "STATUS_CHANGE");
    cqlw_string(b, change);
    cqlw_inet(b, addr, addrlen, port);
}

int cqlf_result_to_v3(const uint8_t *body, size_t len, uint8_t **out, size_t *out_len) {
    *out = NULL;
    rd r;
    rd_init(&r, body, len);
    uint32_t kind, flags, ncols, npk;
    const uint8_t *id;
    uint16_t idn;
    if (rd_u32(&r, &kind) || kind != 4) return 0;
    if (cqlr_short_bytes(&r, &id, &idn) || rd_u32(&r, &flags) || rd_u32(&r, &ncols)) return 0;
    size_t keep_to = len - rd_left(&r);    /* kind + id + flags + column count */
    if (rd_u32(&r, &npk) || npk > rd_left(&r) / 2) return 0;
    const uint8_t *skip;
    if (rd_bytes(&r, (size_t)npk * 2, &skip)) return 0;
    size_t rest = rd_left(&r);
    uint8_t *o = malloc(keep_to + rest + 1);
    if (!o) return -1;
    memcpy(o, body, keep_to);
    memcpy(o + keep_to, r.p, rest);
    *out = o;
    *out_len = keep_to + rest;
    return 0;
}

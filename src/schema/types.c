#include "ilion/schema/types.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bignum.h"
#include "ilion/util/err.h"

static const struct {
    const char *name;
    uint8_t id;
} type_names[] = {
    {"ascii", SCHEMA_T_ASCII},         {"bigint", SCHEMA_T_BIGINT},
    {"blob", SCHEMA_T_BLOB},           {"boolean", SCHEMA_T_BOOLEAN},
    {"counter", SCHEMA_T_COUNTER},     {"decimal", SCHEMA_T_DECIMAL},
    {"double", SCHEMA_T_DOUBLE},       {"float", SCHEMA_T_FLOAT},
    {"int", SCHEMA_T_INT},             {"timestamp", SCHEMA_T_TIMESTAMP},
    {"uuid", SCHEMA_T_UUID},           {"text", SCHEMA_T_VARCHAR},
    {"varchar", SCHEMA_T_VARCHAR},     {"varint", SCHEMA_T_VARINT},
    {"timeuuid", SCHEMA_T_TIMEUUID},   {"inet", SCHEMA_T_INET},
    {"date", SCHEMA_T_DATE},           {"time", SCHEMA_T_TIME},
    {"smallint", SCHEMA_T_SMALLINT},   {"tinyint", SCHEMA_T_TINYINT},
};

bool schema_type_is_collection(const schema_type *t) {
    return t->id == SCHEMA_T_LIST || t->id == SCHEMA_T_SET || t->id == SCHEMA_T_MAP;
}

static const char *scalar_name(uint8_t id) {
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
        if (type_names[i].id == id) return type_names[i].name;
    return "blob";
}

static void skip_ws(const char **p, const char *end) {
    while (*p < end && isspace((unsigned char)**p)) (*p)++;
}

static int parse_scalar(const char **p, const char *end, uint8_t *id) {
    skip_ws(p, end);
    const char *s = *p;
    while (*p < end && (isalnum((unsigned char)**p) || **p == '_')) (*p)++;
    size_t n = (size_t)(*p - s);
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
        if (strlen(type_names[i].name) == n && strncasecmp(type_names[i].name, s, n) == 0) {
            *id = type_names[i].id;
            return 0;
        }
    return ILION_EINVALID;
}

static bool eat(const char **p, const char *end, char c) {
    skip_ws(p, end);
    if (*p < end && **p == c) {
        (*p)++;
        return true;
    }
    return false;
}

static bool eat_word(const char **p, const char *end, const char *w) {
    skip_ws(p, end);
    size_t n = strlen(w);
    if ((size_t)(end - *p) >= n && strncasecmp(*p, w, n) == 0 &&
        ((size_t)(end - *p) == n || !isalnum((unsigned char)(*p)[n]))) {
        *p += n;
        return true;
    }
    return false;
}

static int parse_type(const char **p, const char *end, schema_type *t, int depth) {
    if (depth > 2) return ILION_EINVALID;
    if (eat_word(p, end, "frozen")) {
        if (!eat(p, end, '<')) return ILION_EINVALID;
        int rc = parse_type(p, end, t, depth + 1);
        if (rc) return rc;
        if (!eat(p, end, '>')) return ILION_EINVALID;
        t->frozen = true;
        return 0;
    }
    uint8_t cid = 0;
    if (eat_word(p, end, "list")) cid = SCHEMA_T_LIST;
    else if (eat_word(p, end, "set")) cid = SCHEMA_T_SET;
    else if (eat_word(p, end, "map")) cid = SCHEMA_T_MAP;
    if (cid) {
        memset(t, 0, sizeof *t);
        t->id = cid;
        if (!eat(p, end, '<')) return ILION_EINVALID;
        if (eat_word(p, end, "frozen")) { /* frozen scalar is just the scalar */
            if (!eat(p, end, '<') || parse_scalar(p, end, &t->sub[0]) || !eat(p, end, '>'))
                return ILION_EINVALID;
        } else if (parse_scalar(p, end, &t->sub[0])) {
            return ILION_EINVALID;
        }
        if (cid == SCHEMA_T_MAP) {
            if (!eat(p, end, ',') || parse_scalar(p, end, &t->sub[1])) return ILION_EINVALID;
        }
        if (!eat(p, end, '>')) return ILION_EINVALID;
        return 0;
    }
    memset(t, 0, sizeof *t);
    return parse_scalar(p, end, &t->id);
}

int schema_type_parse(const char *name, size_t n, schema_type *out) {
    const char *p = name, *end = name + n;
    schema_type t;
    int rc = parse_type(&p, end, &t, 0);
    if (rc) return rc;
    skip_ws(&p, end);
    if (p != end) return ILION_EINVALID;
    *out = t;
    return 0;
}

void schema_type_name(const schema_type *t, char *out, size_t cap) {
    const char *pre = t->frozen && schema_type_is_collection(t) ? "frozen<" : "";
    const char *post = *pre ? ">" : "";
    switch (t->id) {
    case SCHEMA_T_LIST: snprintf(out, cap, "%slist<%s>%s", pre, scalar_name(t->sub[0]), post); break;
    case SCHEMA_T_SET: snprintf(out, cap, "%sset<%s>%s", pre, scalar_name(t->sub[0]), post); break;
    case SCHEMA_T_MAP:
        snprintf(out, cap, "%smap<%s, %s>%s", pre, scalar_name(t->sub[0]), scalar_name(t->sub[1]), post);
        break;
    default: snprintf(out, cap, "%s", scalar_name(t->id)); break;
    }
}

void schema_type_write_option(const schema_type *t, buf *out) {
    buf_u16(out, t->id);
    if (t->id == SCHEMA_T_LIST || t->id == SCHEMA_T_SET) buf_u16(out, t->sub[0]);
    if (t->id == SCHEMA_T_MAP) {
        buf_u16(out, t->sub[0]);
        buf_u16(out, t->sub[1]);
    }
}

/* --- validation ------------------------------------------------------------------------- */

static bool utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xE0) == 0xC0) { k = 1; cp = c & 0x1F; }
        else if ((c & 0xF0) == 0xE0) { k = 2; cp = c & 0x0F; }
        else if ((c & 0xF8) == 0xF0) { k = 3; cp = c & 0x07; }
        else return false;
        if (i + k >= n) return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += k + 1;
    }
    return true;
}

static int fixed_len(uint8_t id) {
    switch (id) {
    case SCHEMA_T_BIGINT: case SCHEMA_T_COUNTER: case SCHEMA_T_DOUBLE: case SCHEMA_T_TIMESTAMP:
    case SCHEMA_T_TIME: return 8;
    case SCHEMA_T_INT: case SCHEMA_T_FLOAT: case SCHEMA_T_DATE: return 4;
    case SCHEMA_T_SMALLINT: return 2;
    case SCHEMA_T_TINYINT: case SCHEMA_T_BOOLEAN: return 1;
    case SCHEMA_T_UUID: case SCHEMA_T_TIMEUUID: return 16;
    default: return -1;
    }
}

static int validate_scalar(uint8_t id, const uint8_t *v, size_t len, char *err, size_t errlen) {
    int fl = fixed_len(id);
    if (fl >= 0) {
        if (len != (size_t)fl) {
            snprintf(err, errlen, "Expected %d byte %s value, got %zu bytes", fl, scalar_name(id), len);
            return ILION_EINVALID;
        }
        if (id == SCHEMA_T_TIME) {
            int64_t ns = (int64_t)be64_get(v);
            if (ns < 0 || ns >= 86400000000000LL) {
                snprintf(err, errlen, "time value out of range: %" PRId64 " ns (must be 0 to 86399999999999)", ns);
                return ILION_EINVALID;
            }
        }
        if (id == SCHEMA_T_TIMEUUID && (v[6] >> 4) != 1) {
            snprintf(err, errlen, "Unsupported UUID version %d for timeuuid (expected a version 1 UUID)", v[6] >> 4);
            return ILION_EINVALID;
        }
        return 0;
    }
    switch (id) {
    case SCHEMA_T_ASCII:
        for (size_t i = 0; i < len; i++)
            if (v[i] & 0x80) {
                snprintf(err, errlen, "Invalid byte 0x%02x at offset %zu for ascii value", v[i], i);
                return ILION_EINVALID;
            }
        return 0;
    case SCHEMA_T_VARCHAR:
        if (!utf8_valid(v, len)) {
            snprintf(err, errlen, "Invalid UTF-8 bytes in text value");
            return ILION_EINVALID;
        }
        return 0;
    case SCHEMA_T_BLOB: case SCHEMA_T_CUSTOM: return 0;
    case SCHEMA_T_VARINT:
        if (len == 0 || len > BIGNUM_MAX_BYTES) {
            snprintf(err, errlen, "Invalid varint value of %zu bytes (1 to %d allowed)", len, BIGNUM_MAX_BYTES);
            return ILION_EINVALID;
        }
        return 0;
    case SCHEMA_T_DECIMAL:
        if (len < 5 || len > BIGNUM_MAX_BYTES + 4) {
            snprintf(err, errlen, "Invalid decimal value of %zu bytes (expected a 4-byte scale and at least one byte)", len);
            return ILION_EINVALID;
        }
        return 0;
    case SCHEMA_T_INET:
        if (len != 4 && len != 16) {
            snprintf(err, errlen, "Expected 4 or 16 byte inet value, got %zu bytes", len);
            return ILION_EINVALID;
        }
        return 0;
    default:
        snprintf(err, errlen, "Unsupported type id 0x%02x", id);
        return ILION_EINVALID;
    }
}

static int validate_collection(const schema_type *t, const uint8_t *v, size_t len, char *err,
                               size_t errlen) {
    rd r;
    rd_init(&r, v, len);
    uint32_t n;
    if (rd_u32(&r, &n) || (int32_t)n < 0) goto bad;
    int per = t->id == SCHEMA_T_MAP ? 2 : 1;
    for (uint32_t i = 0; i < n; i++) {
        for (int k = 0; k < per; k++) {
            uint32_t l;
            const uint8_t *p;
            if (rd_u32(&r, &l) || (int32_t)l < 0 || rd_bytes(&r, l, &p)) goto bad;
            if (validate_scalar(t->sub[k], p, l, err, errlen)) return ILION_EINVALID;
        }
    }
    if (rd_left(&r) != 0) goto bad;
    return 0;
bad:
    snprintf(err, errlen, "Malformed collection value (%zu bytes)", len);
    return ILION_EINVALID;
}

int schema_value_validate(const schema_type *t, const uint8_t *v, size_t len, char *err,
                          size_t errlen) {
    if (schema_type_is_collection(t)) return validate_collection(t, v, len, err, errlen);
    return validate_scalar(t->id, v, len, err, errlen);
}

/* --- formatting ------------------------------------------------------------------------- */

static void put_str(buf *out, const char *s) { buf_put(out, s, strlen(s)); }

static void format_uuid(const uint8_t *v, buf *out) {
    char s[40];
    snprintf(s, sizeof s,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", v[0], v[1],
             v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15]);
    put_str(out, s);
}

static void format_scalar(uint8_t id, const uint8_t *v, size_t len, buf *out) {
    char tmp[128];
    char e[8];
    if (validate_scalar(id, v, len, e, sizeof e) != 0) id = SCHEMA_T_BLOB;
    switch (id) {
    case SCHEMA_T_ASCII: case SCHEMA_T_VARCHAR:
        buf_u8(out, '\'');
        for (size_t i = 0; i < len; i++) {
            if (v[i] == '\'') buf_u8(out, '\'');
            buf_u8(out, v[i]);
        }
        buf_u8(out, '\'');
        return;
    case SCHEMA_T_BIGINT: case SCHEMA_T_COUNTER: case SCHEMA_T_TIMESTAMP: case SCHEMA_T_TIME:
        snprintf(tmp, sizeof tmp, "%" PRId64, (int64_t)be64_get(v));
        break;
    case SCHEMA_T_INT: snprintf(tmp, sizeof tmp, "%" PRId32, (int32_t)be32_get(v)); break;
    case SCHEMA_T_SMALLINT: snprintf(tmp, sizeof tmp, "%d", (int16_t)be16_get(v)); break;
    case SCHEMA_T_TINYINT: snprintf(tmp, sizeof tmp, "%d", (int8_t)v[0]); break;
    case SCHEMA_T_DATE: snprintf(tmp, sizeof tmp, "%" PRId64, (int64_t)be32_get(v) - ((int64_t)1 << 31)); break;
    case SCHEMA_T_BOOLEAN: snprintf(tmp, sizeof tmp, "%s", v[0] ? "true" : "false"); break;
    case SCHEMA_T_DOUBLE: {
        uint64_t b = be64_get(v);
        double d;
        memcpy(&d, &b, 8);
        snprintf(tmp, sizeof tmp, "%.17g", d);
        break;
    }
    case SCHEMA_T_FLOAT: {
        uint32_t b = be32_get(v);
        float f;
        memcpy(&f, &b, 4);
        snprintf(tmp, sizeof tmp, "%.9g", (double)f);
        break;
    }
    case SCHEMA_T_UUID: case SCHEMA_T_TIMEUUID: format_uuid(v, out); return;
    case SCHEMA_T_INET:
        if (len == 4) snprintf(tmp, sizeof tmp, "'%u.%u.%u.%u'", v[0], v[1], v[2], v[3]);
        else {
            size_t o = 0;
            tmp[o++] = '\'';
            for (int i = 0; i < 8; i++)
                o += (size_t)snprintf(tmp + o, sizeof tmp - o, "%s%x", i ? ":" : "", be16_get(v + 2 * i));
            snprintf(tmp + o, sizeof tmp - o, "'");
        }
        break;
    case SCHEMA_T_VARINT: {
        bool neg = false;
        if (v[0] & 0x80) put_str(out, "-");
        bignum_to_decimal(v, len, &neg, out);
        return;
    }
    case SCHEMA_T_DECIMAL: {
        int32_t scale = (int32_t)be32_get(v);
        buf d;
        buf_init(&d);
        bool neg = false;
        bignum_to_decimal(v + 4, len - 4, &neg, &d);
        if (neg) put_str(out, "-");
        if (scale <= 0) {
            buf_put(out, d.data, d.len);
            if (scale < 0) {
                snprintf(tmp, sizeof tmp, "E+%" PRId64, -(int64_t)scale);
                put_str(out, tmp);
            }
        } else if ((size_t)scale < d.len) {
            buf_put(out, d.data, d.len - (size_t)scale);
            buf_u8(out, '.');
            buf_put(out, d.data + d.len - (size_t)scale, (size_t)scale);
        } else if (scale - (int64_t)d.len < 16) {
            put_str(out, "0.");
            for (int64_t i = 0; i < scale - (int64_t)d.len; i++) buf_u8(out, '0');
            buf_put(out, d.data, d.len);
        } else {
            buf_put(out, d.data, d.len);
            snprintf(tmp, sizeof tmp, "E-%" PRId32, scale);
            put_str(out, tmp);
        }
        buf_free(&d);
        return;
    }
    default:
        put_str(out, "0x");
        for (size_t i = 0; i < len; i++) {
            snprintf(tmp, sizeof tmp, "%02x", v[i]);
            put_str(out, tmp);
        }
        return;
    }
    put_str(out, tmp);
}

void schema_value_format(const schema_type *t, const uint8_t *v, size_t len, buf *out) {
    if (!schema_type_is_collection(t)) {
        format_scalar(t->id, v, len, out);
        return;
    }
    char e[8];
    if (validate_collection(t, v, len, e, sizeof e)) {
        format_scalar(SCHEMA_T_BLOB, v, len, out);
        return;
    }
    rd r;
    rd_init(&r, v, len);
    uint32_t n;
    rd_u32(&r, &n);
    buf_u8(out, t->id == SCHEMA_T_LIST ? '[' : '{');
    for (uint32_t i = 0; i < n; i++) {
        if (i) put_str(out, ", ");
        for (int k = 0; k < (t->id == SCHEMA_T_MAP ? 2 : 1); k++) {
            uint32_t l;
            const uint8_t *p;
            rd_u32(&r, &l);
            rd_bytes(&r, l, &p);
            if (k) put_str(out, ": ");
            format_scalar(t->sub[k], p, l, out);
        }
    }
    buf_u8(out, t->id == SCHEMA_T_LIST ? ']' : '}');
}

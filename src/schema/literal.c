/* CQL literal → serialized value, for statements with inline values. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bignum.h"
#include "ilion/schema/types.h"
#include "ilion/util/err.h"

static const char *kind_name(enum schema_lit_kind k) {
    switch (k) {
    case SCHEMA_LIT_STRING: return "STRING";
    case SCHEMA_LIT_INTEGER: return "INTEGER";
    case SCHEMA_LIT_FLOAT: return "FLOAT";
    case SCHEMA_LIT_UUID: return "UUID";
    case SCHEMA_LIT_BOOLEAN: return "BOOLEAN";
    default: return "HEX";
    }
}

static int bad(char *err, size_t errlen, enum schema_lit_kind k, const char *text, size_t n,
               const schema_type *t) {
    char tn[64];
    schema_type_name(t, tn, sizeof tn);
    snprintf(err, errlen, "Invalid %s constant (%.*s) for type %s", kind_name(k),
             (int)(n > 64 ? 64 : n), text, tn);
    return ILION_EINVALID;
}

/* Parses a decimal integer that fits int64. */
static int parse_i64(const char *s, size_t n, int64_t *out) {
    char tmp[32];
    if (n == 0 || n >= sizeof tmp) return -1;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)tmp[i]) && !(i == 0 && (tmp[i] == '-' || tmp[i] == '+')))
            return -1;
    char *end;
    errno = 0;
    long long v = strtoll(tmp, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = (char)tolower((unsigned char)c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static int parse_uuid(const char *s, size_t n, uint8_t out[16]) {
    if (n != 36) return -1;
    size_t k = 0;
    for (size_t i = 0; i < 36;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return -1;
            i++;
            continue;
        }
        int h = hexval(s[i]), l = hexval(s[i + 1]);
        if (h < 0 || l < 0) return -1;
        out[k++] = (uint8_t)(h << 4 | l);
        i += 2;
    }
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int num(const char **p, const char *end, int digits, int *out) {
    int v = 0;
    for (int i = 0; i < digits; i++) {
        if (*p >= end || !isdigit((unsigned char)**p)) return -1;
        v = v * 10 + (**p - '0');
        (*p)++;
    }
    *out = v;
    return 0;
}

static int parse_date(const char **p, const char *end, int64_t *days) {
    int y, m, d;
    bool neg = false;
    if (*p < end && **p == '-') { neg = true; (*p)++; }
    if (num(p, end, 4, &y) || *p >= end || **p != '-') return -1;
    (*p)++;
    if (num(p, end, 2, &m) || *p >= end || **p != '-') return -1;
    (*p)++;
    if (num(p, end, 2, &d) || m < 1 || m > 12 || d < 1 || d > 31) return -1;
    *days = days_from_civil(neg ? -y : y, (unsigned)m, (unsigned)d);
    return 0;
}

/* hh:mm[:ss[.fraction]] → nanoseconds. */
static int parse_time(const char **p, const char *end, int64_t *ns) {
    int h, mi, s = 0;
    if (num(p, end, 2, &h) || *p >= end || **p != ':') return -1;
    (*p)++;
    if (num(p, end, 2, &mi)) return -1;
    int64_t frac = 0;
    if (*p < end && **p == ':') {
        (*p)++;
        if (num(p, end, 2, &s)) return -1;
        if (*p < end && **p == '.') {
            (*p)++;
            int nd = 0;
            while (*p < end && isdigit((unsigned char)**p)) {
                if (nd < 9) frac = frac * 10 + (**p - '0'), nd++;
                (*p)++;
            }
            if (nd == 0) return -1;
            while (nd++ < 9) frac *= 10;
        }
    }
    if (h > 23 || mi > 59 || s > 59) return -1;
    *ns = ((int64_t)h * 3600 + mi * 60 + s) * 1000000000LL + frac;
    return 0;
}

static int parse_timestamp(const char *s, size_t n, int64_t *ms) {
    const char *p = s, *end = s + n;
    int64_t days, ns = 0;
    if (parse_date(&p, end, &days)) return -1;
    if (p < end && (*p == ' ' || *p == 'T')) {
        p++;
        if (parse_time(&p, end, &ns)) return -1;
    }
    int64_t off_min = 0;
    while (p < end && *p == ' ') p++;
    if (p < end) {
        if (*p == 'Z' || *p == 'z') p++;
        else if (*p == '+' || *p == '-') {
            int sign = *p == '-' ? -1 : 1, hh, mm = 0;
            p++;
            if (num(&p, end, 2, &hh)) return -1;
            if (p < end && *p == ':') p++;
            if (p < end && num(&p, end, 2, &mm)) return -1;
            off_min = sign * (hh * 60 + mm);
        } else return -1;
    }
    if (p != end) return -1;
    *ms = days * 86400000LL + ns / 1000000 - off_min * 60000;
    return 0;
}

static int parse_inet(const char *s, size_t n, buf *out) {
    char tmp[64];
    if (n >= sizeof tmp) return -1;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    uint8_t a[16];
    /* Plain parsers so schema/ stays free of socket headers. */
    unsigned o[4];
    char extra;
    if (sscanf(tmp, "%3u.%3u.%3u.%3u%c", &o[0], &o[1], &o[2], &o[3], &extra) == 4) {
        for (int i = 0; i < 4; i++) {
            if (o[i] > 255) return -1;
            a[i] = (uint8_t)o[i];
        }
        buf_put(out, a, 4);
        return 0;
    }
    /* IPv6: groups separated by ':', one '::' allowed; no embedded IPv4. */
    uint16_t g[8];
    int ng = 0, gap = -1;
    const char *p = tmp;
    if (p[0] == ':' && p[1] == ':') { gap = 0; p += 2; }
    while (*p) {
        if (ng >= 8) return -1;
        int v = 0, k = 0;
        while (hexval(*p) >= 0 && k < 4) { v = v * 16 + hexval(*p); p++; k++; }
        if (k == 0) return -1;
        g[ng++] = (uint16_t)v;
        if (*p == 0) break;
        if (*p != ':') return -1;
        p++;
        if (*p == ':') {
            if (gap >= 0) return -1;
            gap = ng;
            p++;
        } else if (*p == 0) return -1;
    }
    if (gap < 0 && ng != 8) return -1;
    if (gap >= 0 && ng > 7) return -1;
    memset(a, 0, 16);
    int tail = gap >= 0 ? ng - gap : 0;
    for (int i = 0; i < ng - tail; i++) be16_put(a + 2 * i, g[i]);
    for (int i = 0; i < tail; i++) be16_put(a + 2 * (8 - tail + i), g[gap + i]);
    buf_put(out, a, 16);
    return 0;
}

/* decimal text "[-]digits[.digits][e[+-]digits]" → serialized decimal. */
static int parse_decimal(const char *s, size_t n, buf *out) {
    const char *p = s, *end = s + n;
    bool neg = false;
    if (p < end && (*p == '-' || *p == '+')) neg = *p++ == '-';
    buf d;
    buf_init(&d);
    int64_t scale = 0;
    bool dot = false;
    while (p < end && (isdigit((unsigned char)*p) || (*p == '.' && !dot))) {
        if (*p == '.') dot = true;
        else {
            buf_u8(&d, (uint8_t)*p);
            if (dot) scale++;
        }
        p++;
    }
    int rc = -1;
    if (d.len == 0) goto out;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int64_t e;
        if (parse_i64(p, (size_t)(end - p), &e) || e > 1000000000 || e < -1000000000) goto out;
        scale -= e;
        p = end;
    }
    if (p != end || scale > INT32_MAX || scale < INT32_MIN) goto out;
    buf_u32(out, (uint32_t)(int32_t)scale);
    rc = bignum_from_decimal((const char *)d.data, d.len, neg, out);
out:
    buf_free(&d);
    return rc;
}

int schema_literal_convert(const schema_type *t, enum schema_lit_kind kind, const char *text,
                           size_t n, buf *out, char *err, size_t errlen) {
    int64_t v;
    size_t at = out->len;
    switch (t->id) {
    case SCHEMA_T_ASCII: case SCHEMA_T_VARCHAR:
        if (kind != SCHEMA_LIT_STRING) break;
        buf_put(out, text, n);
        if (schema_value_validate(t, out->data ? out->data + at : (const uint8_t *)"", n, err, errlen)) {
            out->len = at;
            return ILION_EINVALID;
        }
        return 0;
    case SCHEMA_T_TINYINT: case SCHEMA_T_SMALLINT: case SCHEMA_T_INT: case SCHEMA_T_BIGINT:
    case SCHEMA_T_COUNTER: {
        if (kind != SCHEMA_LIT_INTEGER || parse_i64(text, n, &v)) break;
        int64_t lo = t->id == SCHEMA_T_TINYINT ? INT8_MIN : t->id == SCHEMA_T_SMALLINT ? INT16_MIN
                   : t->id == SCHEMA_T_INT ? INT32_MIN : INT64_MIN;
        int64_t hi = t->id == SCHEMA_T_TINYINT ? INT8_MAX : t->id == SCHEMA_T_SMALLINT ? INT16_MAX
                   : t->id == SCHEMA_T_INT ? INT32_MAX : INT64_MAX;
        if (v < lo || v > hi) {
            char tn[16];
            schema_type_name(t, tn, sizeof tn);
            snprintf(err, errlen, "Value %.*s is out of range for type %s", (int)(n > 40 ? 40 : n), text, tn);
            return ILION_EINVALID;
        }
        if (t->id == SCHEMA_T_TINYINT) buf_u8(out, (uint8_t)v);
        else if (t->id == SCHEMA_T_SMALLINT) buf_u16(out, (uint16_t)v);
        else if (t->id == SCHEMA_T_INT) buf_u32(out, (uint32_t)v);
        else buf_u64(out, (uint64_t)v);
        return 0;
    }
    case SCHEMA_T_VARINT: {
        if (kind != SCHEMA_LIT_INTEGER || n == 0) break;
        bool neg = text[0] == '-';
        size_t skip = (text[0] == '-' || text[0] == '+') ? 1 : 0;
        if (bignum_from_decimal(text + skip, n - skip, neg, out)) break;
        return 0;
    }
    case SCHEMA_T_DECIMAL:
        if ((kind != SCHEMA_LIT_INTEGER && kind != SCHEMA_LIT_FLOAT) || parse_decimal(text, n, out)) {
            out->len = at;
            break;
        }
        return 0;
    case SCHEMA_T_FLOAT: case SCHEMA_T_DOUBLE: {
        if (kind != SCHEMA_LIT_INTEGER && kind != SCHEMA_LIT_FLOAT) break;
        char tmp[128];
        if (n >= sizeof tmp) break;
        memcpy(tmp, text, n);
        tmp[n] = 0;
        char *end;
        double d;
        if (strcmp(tmp, "NaN") == 0) d = NAN;
        else if (strcmp(tmp, "Infinity") == 0) d = INFINITY;
        else if (strcmp(tmp, "-Infinity") == 0) d = -INFINITY;
        else {
            d = strtod(tmp, &end);
            if (*end || end == tmp) break;
        }
        if (t->id == SCHEMA_T_FLOAT) {
            float f = (float)d;
            uint32_t b;
            memcpy(&b, &f, 4);
            buf_u32(out, b);
        } else {
            uint64_t b;
            memcpy(&b, &d, 8);
            buf_u64(out, b);
        }
        return 0;
    }
    case SCHEMA_T_BOOLEAN:
        if (kind == SCHEMA_LIT_BOOLEAN || kind == SCHEMA_LIT_STRING) {
            if (n == 4 && strncasecmp(text, "true", 4) == 0) { buf_u8(out, 1); return 0; }
            if (n == 5 && strncasecmp(text, "false", 5) == 0) { buf_u8(out, 0); return 0; }
        }
        break;
    case SCHEMA_T_BLOB: case SCHEMA_T_CUSTOM: {
        if (kind != SCHEMA_LIT_HEX) break;
        if (n >= 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) text += 2, n -= 2;
        if (n % 2) break;
        for (size_t i = 0; i < n; i += 2) {
            int h = hexval(text[i]), l = hexval(text[i + 1]);
            if (h < 0 || l < 0) {
                out->len = at;
                return bad(err, errlen, kind, text, n, t);
            }
            buf_u8(out, (uint8_t)(h << 4 | l));
        }
        return 0;
    }
    case SCHEMA_T_UUID: case SCHEMA_T_TIMEUUID: {
        uint8_t u[16];
        if ((kind != SCHEMA_LIT_UUID && kind != SCHEMA_LIT_STRING) || parse_uuid(text, n, u)) break;
        if (t->id == SCHEMA_T_TIMEUUID && (u[6] >> 4) != 1) {
            snprintf(err, errlen, "Unsupported UUID version %d for timeuuid (expected a version 1 UUID)", u[6] >> 4);
            return ILION_EINVALID;
        }
        buf_put(out, u, 16);
        return 0;
    }
    case SCHEMA_T_TIMESTAMP:
        if (kind == SCHEMA_LIT_INTEGER || (kind == SCHEMA_LIT_STRING && parse_i64(text, n, &v) == 0)) {
            if (parse_i64(text, n, &v)) break;
        } else if (kind != SCHEMA_LIT_STRING || parse_timestamp(text, n, &v)) {
            break;
        }
        buf_u64(out, (uint64_t)v);
        return 0;
    case SCHEMA_T_DATE: {
        if (kind == SCHEMA_LIT_INTEGER) {
            if (parse_i64(text, n, &v) || v < 0 || v > UINT32_MAX) break;
            buf_u32(out, (uint32_t)v);
            return 0;
        }
        const char *p = text;
        if (kind != SCHEMA_LIT_STRING || parse_date(&p, text + n, &v) || p != text + n) break;
        v += (int64_t)1 << 31;
        if (v < 0 || v > UINT32_MAX) break;
        buf_u32(out, (uint32_t)v);
        return 0;
    }
    case SCHEMA_T_TIME: {
        if (kind == SCHEMA_LIT_INTEGER) {
            if (parse_i64(text, n, &v) || v < 0 || v >= 86400000000000LL) break;
        } else {
            const char *p = text;
            if (kind != SCHEMA_LIT_STRING || parse_time(&p, text + n, &v) || p != text + n) break;
        }
        buf_u64(out, (uint64_t)v);
        return 0;
    }
    case SCHEMA_T_INET:
        if (kind != SCHEMA_LIT_STRING || parse_inet(text, n, out)) break;
        return 0;
    default: break;
    }
    out->len = at;
    return bad(err, errlen, kind, text, n, t);
}

/* A small JSON reader: see json.h. */
#include "json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 64

typedef struct jp {
    const char *p, *end;
    char *err;
    size_t errlen;
    int depth;
} jp;

static void fail(jp *s, const char *msg) {
    if (s->err && !s->err[0]) snprintf(s->err, s->errlen, "%s at offset %ld", msg, (long)(s->end - s->p));
}

static void ws(jp *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static json *newv(enum json_kind k) {
    json *j = calloc(1, sizeof *j);
    if (j) j->kind = k;
    return j;
}

static void put_utf8(char *out, size_t *n, uint32_t cp) {
    if (cp < 0x80) {
        out[(*n)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*n)++] = (char)(0xC0 | (cp >> 6));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*n)++] = (char)(0xE0 | (cp >> 12));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (cp & 0x3F));
    }
}

static char *parse_string(jp *s) {
    if (s->p >= s->end || *s->p != '"') {
        fail(s, "expected a string");
        return NULL;
    }
    s->p++;
    /* Output is never longer than the input. */
    const char *q = s->p;
    while (q < s->end && *q != '"') q += (*q == '\\' && q + 1 < s->end) ? 2 : 1;
    if (q >= s->end) {
        fail(s, "unterminated string");
        return NULL;
    }
    char *out = malloc((size_t)(q - s->p) + 1);
    if (!out) return NULL;
    size_t n = 0;
    while (s->p < q) {
        char c = *s->p++;
        if (c != '\\') {
            out[n++] = c;
            continue;
        }
        char e = *s->p++;
        switch (e) {
        case '"': case '\\': case '/': out[n++] = e; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u': {
            if (q - s->p < 4) {
                free(out);
                fail(s, "bad \\u escape");
                return NULL;
            }
            char hex[5] = {s->p[0], s->p[1], s->p[2], s->p[3], 0};
            char *endp;
            unsigned long cp = strtoul(hex, &endp, 16);
            if (*endp) {
                free(out);
                fail(s, "bad \\u escape");
                return NULL;
            }
            s->p += 4;
            /* 6 input bytes give at most 3 output bytes */
            put_utf8(out, &n, (uint32_t)cp);
            break;
        }
        default:
            free(out);
            fail(s, "bad escape");
            return NULL;
        }
    }
    out[n] = 0;
    s->p = q + 1;
    return out;
}

static json *parse_value(jp *s);

static int append(json *j, json *v, char *key) {
    json **items = realloc(j->items, (j->n + 1) * sizeof *items);
    if (!items) return -1;
    j->items = items;
    if (j->kind == JSON_OBJECT) {
        char **keys = realloc(j->keys, (j->n + 1) * sizeof *keys);
        if (!keys) return -1;
        j->keys = keys;
        j->keys[j->n] = key;
    }
    j->items[j->n++] = v;
    return 0;
}

static json *parse_container(jp *s, bool object) {
    if (++s->depth > JSON_MAX_DEPTH) {
        fail(s, "nested too deeply");
        return NULL;
    }
    s->p++;
    json *j = newv(object ? JSON_OBJECT : JSON_ARRAY);
    if (!j) return NULL;
    ws(s);
    char close = object ? '}' : ']';
    if (s->p < s->end && *s->p == close) {
        s->p++;
        s->depth--;
        return j;
    }
    for (;;) {
        char *key = NULL;
        ws(s);
        if (object) {
            if (!(key = parse_string(s))) goto bad;
            ws(s);
            if (s->p >= s->end || *s->p != ':') {
                free(key);
                fail(s, "expected ':'");
                goto bad;
            }
            s->p++;
        }
        json *v = parse_value(s);
        if (!v || append(j, v, key)) {
            free(key);
            json_free(v);
            goto bad;
        }
        ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == close) {
            s->p++;
            s->depth--;
            return j;
        }
        fail(s, object ? "expected ',' or '}'" : "expected ',' or ']'");
        goto bad;
    }
bad:
    json_free(j);
    return NULL;
}

static bool lit(jp *s, const char *w) {
    size_t n = strlen(w);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n)) return false;
    s->p += n;
    return true;
}

static json *parse_value(jp *s) {
    ws(s);
    if (s->p >= s->end) {
        fail(s, "unexpected end");
        return NULL;
    }
    char c = *s->p;
    if (c == '{') return parse_container(s, true);
    if (c == '[') return parse_container(s, false);
    if (c == '"') {
        char *str = parse_string(s);
        if (!str) return NULL;
        json *j = newv(JSON_STRING);
        if (!j) {
            free(str);
            return NULL;
        }
        j->str = str;
        return j;
    }
    if (lit(s, "true") || lit(s, "false")) {
        json *j = newv(JSON_BOOL);
        if (j) j->b = s->p[-1] == 'e' && s->p[-2] == 'u';
        return j;
    }
    if (lit(s, "null")) return newv(JSON_NULL);
    if (c == '-' || (c >= '0' && c <= '9')) {
        const char *q = s->p;
        while (q < s->end && strchr("+-0123456789.eE", *q)) q++;
        size_t n = (size_t)(q - s->p);
        json *j = newv(JSON_NUMBER);
        if (!j || !(j->str = malloc(n + 1))) {
            free(j);
            return NULL;
        }
        memcpy(j->str, s->p, n);
        j->str[n] = 0;
        char *endp;
        j->num = strtod(j->str, &endp);
        if (*endp || n == 0) {
            json_free(j);
            fail(s, "bad number");
            return NULL;
        }
        s->p = q;
        return j;
    }
    fail(s, "unexpected character");
    return NULL;
}

json *json_parse(const char *text, size_t len, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    jp s = {text, text + len, err, errlen, 0};
    json *j = parse_value(&s);
    if (!j) return NULL;
    ws(&s);
    if (s.p != s.end) {
        fail(&s, "trailing data");
        json_free(j);
        return NULL;
    }
    return j;
}

void json_free(json *j) {
    if (!j) return;
    for (size_t i = 0; i < j->n; i++) {
        json_free(j->items[i]);
        if (j->keys) free(j->keys[i]);
    }
    free(j->items);
    free(j->keys);
    free(j->str);
    free(j);
}

const json *json_get(const json *j, const char *key) {
    if (!j || j->kind != JSON_OBJECT) return NULL;
    for (size_t i = 0; i < j->n; i++)
        if (strcmp(j->keys[i], key) == 0) return j->items[i];
    return NULL;
}

const char *json_str(const json *j, const char *key, const char *dflt) {
    const json *v = json_get(j, key);
    return v && (v->kind == JSON_STRING || v->kind == JSON_NUMBER) ? v->str : dflt;
}

double json_num(const json *j, const char *key, double dflt) {
    const json *v = json_get(j, key);
    return v && v->kind == JSON_NUMBER ? v->num : dflt;
}

bool json_bool(const json *j, const char *key, bool dflt) {
    const json *v = json_get(j, key);
    return v && v->kind == JSON_BOOL ? v->b : dflt;
}

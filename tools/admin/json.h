/*
 * A small JSON reader for ilion-admin: parses a whole document (untrusted bytes, bounded
 * depth) into a tree of values. Numbers keep their text too (tokens are 64-bit). Not thread-safe
 * per tree; no global state.
 */
#ifndef ILION_ADMIN_JSON_H
#define ILION_ADMIN_JSON_H

#include <stdbool.h>
#include <stddef.h>

enum json_kind { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

typedef struct json json;
struct json {
    enum json_kind kind;
    bool b;
    double num;
    char *str;          /* string value, or the number's text */
    size_t n;           /* array / object element count */
    json **items;       /* elements (object: values) */
    char **keys;        /* object keys */
};

/* NULL on a syntax error (err gets a message) or out of memory. Free with json_free. */
json *json_parse(const char *text, size_t len, char *err, size_t errlen);
void json_free(json *j);

/* Member of an object, NULL when absent or j is not an object. */
const json *json_get(const json *j, const char *key);
/* Convenience readers with defaults. */
const char *json_str(const json *j, const char *key, const char *dflt);
double json_num(const json *j, const char *key, double dflt);
bool json_bool(const json *j, const char *key, bool dflt);

#endif

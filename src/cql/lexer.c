#include "lexer.h"

#include <string.h>

static const char *const kw_text[CQL_KW_COUNT_] = {
    [CQL_KW_NONE_] = "",
#define CQL_KW_TEXT(name, text, res) [CQL_KW_##name] = text,
    CQL_KEYWORDS(CQL_KW_TEXT)
#undef CQL_KW_TEXT
};

static const uint8_t kw_res[CQL_KW_COUNT_] = {
#define CQL_KW_RES(name, text, res) [CQL_KW_##name] = res,
    CQL_KEYWORDS(CQL_KW_RES)
#undef CQL_KW_RES
};

bool cql_kw_reserved(unsigned kw) { return kw > 0 && kw < CQL_KW_COUNT_ && kw_res[kw]; }
const char *cql_kw_text(unsigned kw) { return kw < CQL_KW_COUNT_ ? kw_text[kw] : ""; }

#define KW_MAXLEN 12

/* The table is in alphabetical order (CQL_KEYWORDS is written so); binary search on the
 * lower-cased identifier. */
static unsigned kw_lookup(const char *s, uint32_t n) {
    if (n < 2 || n > KW_MAXLEN) return 0;
    char low[KW_MAXLEN + 1];
    for (uint32_t i = 0; i < n; i++) {
        char c = s[i];
        low[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    low[n] = 0;
    unsigned lo = 1, hi = CQL_KW_COUNT_ - 1;
    while (lo <= hi) {
        unsigned mid = (lo + hi) / 2;
        int c = strcmp(low, kw_text[mid]);
        if (c == 0) return mid;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return 0;
}

static inline bool is_digit(int c) { return c >= '0' && c <= '9'; }
static inline bool is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static inline bool is_hex(int c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static inline bool is_ident_char(int c) { return is_alpha(c) || is_digit(c) || c == '_'; }

void cql_lex_init(cql_lexer *lx, const char *q, uint32_t len) {
    lx->q = q;
    lx->len = len;
    lx->off = 0;
}

/* 8-4-4-4-12 hex digits at s[0..], not followed by an identifier character. */
static bool at_uuid(const char *s, uint32_t left) {
    if (left < 36) return false;
    for (int i = 0; i < 36; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return false;
        } else if (!is_hex(c)) {
            return false;
        }
    }
    return left == 36 || !is_ident_char((unsigned char)s[36]);
}

void cql_lex_next(cql_lexer *lx, cql_tok *t) {
    const char *q = lx->q;
    uint32_t n = lx->len;
    uint32_t i = lx->off;
    t->kw = 0;
    t->err = 0;

    /* whitespace and comments */
    for (;;) {
        while (i < n && (q[i] == ' ' || q[i] == '\t' || q[i] == '\n' || q[i] == '\r' ||
                         q[i] == '\f' || q[i] == '\v'))
            i++;
        if (i + 1 < n && ((q[i] == '-' && q[i + 1] == '-') || (q[i] == '/' && q[i + 1] == '/'))) {
            while (i < n && q[i] != '\n') i++;
            continue;
        }
        if (i + 1 < n && q[i] == '/' && q[i + 1] == '*') {
            uint32_t start = i;
            i += 2;
            while (i + 1 < n && !(q[i] == '*' && q[i + 1] == '/')) i++;
            if (i + 1 >= n) {
                t->kind = CQL_TK_ERROR;
                t->err = CQL_LEXERR_COMMENT;
                t->pos = start;
                t->len = n - start;
                lx->off = start;   /* sticky */
                return;
            }
            i += 2;
            continue;
        }
        break;
    }
    t->pos = i;
    if (i >= n) {
        t->kind = CQL_TK_EOF;
        t->len = 0;
        lx->off = i;
        return;
    }
    unsigned char c = (unsigned char)q[i];
    uint32_t start = i;

    if (is_hex(c) && at_uuid(q + i, n - i)) {
        t->kind = CQL_TK_UUID;
        i += 36;
    } else if (is_alpha(c)) {
        while (i < n && is_ident_char((unsigned char)q[i])) i++;
        t->kind = CQL_TK_IDENT;
        t->kw = (uint8_t)kw_lookup(q + start, i - start);
    } else if (is_digit(c)) {
        if (c == '0' && i + 1 < n && (q[i + 1] == 'x' || q[i + 1] == 'X')) {
            i += 2;
            while (i < n && is_hex((unsigned char)q[i])) i++;
            t->kind = CQL_TK_HEX;
        } else {
            while (i < n && is_digit((unsigned char)q[i])) i++;
            t->kind = CQL_TK_INTEGER;
            if (i < n && q[i] == '.') {
                i++;
                while (i < n && is_digit((unsigned char)q[i])) i++;
                t->kind = CQL_TK_FLOAT;
            }
            if (i < n && (q[i] == 'e' || q[i] == 'E')) {
                uint32_t j = i + 1;
                if (j < n && (q[j] == '+' || q[j] == '-')) j++;
                if (j < n && is_digit((unsigned char)q[j])) {
                    while (j < n && is_digit((unsigned char)q[j])) j++;
                    i = j;
                    t->kind = CQL_TK_FLOAT;
                }
            }
        }
    } else if (c == '\'') {
        i++;
        for (;;) {
            if (i >= n) {
                t->kind = CQL_TK_ERROR;
                t->err = CQL_LEXERR_STRING;
                t->pos = n;
                t->len = 0;
                lx->off = start;
                return;
            }
            if (q[i] == '\'') {
                if (i + 1 < n && q[i + 1] == '\'') { i += 2; continue; }
                i++;
                break;
            }
            i++;
        }
        t->kind = CQL_TK_STRING;
    } else if (c == '"') {
        i++;
        for (;;) {
            if (i >= n) {
                t->kind = CQL_TK_ERROR;
                t->err = CQL_LEXERR_QIDENT;
                t->pos = n;
                t->len = 0;
                lx->off = start;
                return;
            }
            if (q[i] == '"') {
                if (i + 1 < n && q[i + 1] == '"') { i += 2; continue; }
                i++;
                break;
            }
            i++;
        }
        if (i - start == 2) {
            t->kind = CQL_TK_ERROR;
            t->err = CQL_LEXERR_QIDENT;
            t->len = 2;
            lx->off = start;
            return;
        }
        t->kind = CQL_TK_QIDENT;
    } else if (c == '$' && i + 1 < n && q[i + 1] == '$') {
        i += 2;
        for (;;) {
            if (i + 1 >= n) {
                t->kind = CQL_TK_ERROR;
                t->err = CQL_LEXERR_PGSTRING;
                t->pos = n;
                t->len = 0;
                lx->off = start;
                return;
            }
            if (q[i] == '$' && q[i + 1] == '$') { i += 2; break; }
            i++;
        }
        t->kind = CQL_TK_PGSTRING;
    } else {
        i++;
        char d = i < n ? q[i] : 0;
        switch (c) {
        case '(': t->kind = CQL_TK_LPAREN; break;
        case ')': t->kind = CQL_TK_RPAREN; break;
        case '{': t->kind = CQL_TK_LBRACE; break;
        case '}': t->kind = CQL_TK_RBRACE; break;
        case '[': t->kind = CQL_TK_LBRACKET; break;
        case ']': t->kind = CQL_TK_RBRACKET; break;
        case ',': t->kind = CQL_TK_COMMA; break;
        case ';': t->kind = CQL_TK_SEMI; break;
        case '.': t->kind = CQL_TK_DOT; break;
        case '*': t->kind = CQL_TK_STAR; break;
        case ':': t->kind = CQL_TK_COLON; break;
        case '?': t->kind = CQL_TK_QMARK; break;
        case '=': t->kind = CQL_TK_EQ; break;
        case '<':
            if (d == '=') { i++; t->kind = CQL_TK_LE; }
            else t->kind = CQL_TK_LT;
            break;
        case '>':
            if (d == '=') { i++; t->kind = CQL_TK_GE; }
            else t->kind = CQL_TK_GT;
            break;
        case '!':
            if (d == '=') { i++; t->kind = CQL_TK_NE; break; }
            goto bad;
        case '+':
            if (d == '=') { i++; t->kind = CQL_TK_PLUSEQ; }
            else t->kind = CQL_TK_PLUS;
            break;
        case '-':
            if (d == '=') { i++; t->kind = CQL_TK_MINUSEQ; }
            else t->kind = CQL_TK_MINUS;
            break;
        default:
        bad:
            t->kind = CQL_TK_ERROR;
            t->err = CQL_LEXERR_CHAR;
            t->len = 1;
            lx->off = start;
            return;
        }
    }
    t->len = i - start;
    lx->off = i;
}

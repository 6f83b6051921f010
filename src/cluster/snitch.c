#include "ilion/cluster/snitch.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/util/err.h"

void snitch_defaults(snitch_info *s) {
    memset(s, 0, sizeof *s);
    snprintf(s->dc, sizeof s->dc, "%s", SNITCH_DEFAULT_DC);
    snprintf(s->rack, sizeof s->rack, "%s", SNITCH_DEFAULT_RACK);
}

static int set_val(char *dst, const char *v, size_t n) {
    if (n >= SNITCH_NAME_MAX) return ILION_EINVALID;
    memcpy(dst, v, n);
    dst[n] = 0;
    return 0;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f'; }

int snitch_parse(const char *text, size_t len, snitch_info *out) {
    snitch_defaults(out);
    size_t i = 0;
    while (i < len) {
        size_t eol = i;
        while (eol < len && text[eol] != '\n') eol++;
        size_t a = i, b = eol;
        i = eol + 1;
        while (a < b && is_ws(text[a])) a++;
        while (b > a && is_ws(text[b - 1])) b--;
        if (a == b || text[a] == '#' || text[a] == '!') continue;
        size_t sep = a;
        while (sep < b && text[sep] != '=' && text[sep] != ':' && !is_ws(text[sep])) sep++;
        size_t kend = sep;
        while (sep < b && is_ws(text[sep])) sep++;
        if (sep < b && (text[sep] == '=' || text[sep] == ':')) sep++;
        while (sep < b && is_ws(text[sep])) sep++;
        const char *k = text + a;
        size_t kl = kend - a;
        const char *v = text + sep;
        size_t vl = b - sep;
        int rc = 0;
        if (kl == 2 && memcmp(k, "dc", 2) == 0) {
            if (vl == 0) return ILION_EINVALID;
            rc = set_val(out->dc, v, vl);
        } else if (kl == 4 && memcmp(k, "rack", 4) == 0) {
            if (vl == 0) return ILION_EINVALID;
            rc = set_val(out->rack, v, vl);
        } else if (kl == 9 && memcmp(k, "dc_suffix", 9) == 0) {
            rc = set_val(out->dc_suffix, v, vl);
        } else if (kl == 12 && memcmp(k, "prefer_local", 12) == 0) {
            out->prefer_local = vl == 4 && strncasecmp(v, "true", 4) == 0;
        }
        if (rc < 0) return rc;
    }
    return 0;
}

int snitch_load(const char *path, snitch_info *out) {
    snitch_defaults(out);
    FILE *f = fopen(path, "r");
    if (!f) return -errno;
    char text[65536];
    size_t n = fread(text, 1, sizeof text, f);
    int err = ferror(f) ? -EIO : 0;
    fclose(f);
    if (err) return err;
    if (n == sizeof text) return ILION_ETOOBIG;
    return snitch_parse(text, n, out);
}

/* The ilion node binary: `ilion --config PATH` runs one node in the foreground. */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/server/config.h"
#include "ilion/server/node.h"
#include "ilion/util/log.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: ilion --config PATH [--log-level debug|info|warn|error]\n"
            "Runs an Ilion node in the foreground; SIGTERM or SIGINT stops it cleanly.\n"
            "The configuration is a cassandra.yaml (Cassandra 4.0 key names);\n"
            "see cassandra.yaml.sample for every key and its default.\n");
}

int main(int argc, char **argv) {
    const char *config = NULL;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "--config") || !strcmp(argv[i], "-c")) && i + 1 < argc) {
            config = argv[++i];
        } else if (!strcmp(argv[i], "--log-level") && i + 1 < argc) {
            const char *l = argv[++i];
            if (!strcmp(l, "debug")) log_set_level(LOG_LEVEL_DEBUG);
            else if (!strcmp(l, "info")) log_set_level(LOG_LEVEL_INFO);
            else if (!strcmp(l, "warn")) log_set_level(LOG_LEVEL_WARN);
            else if (!strcmp(l, "error")) log_set_level(LOG_LEVEL_ERROR);
            else {
                fprintf(stderr, "ilion: unknown log level '%s'\n", l);
                return 2;
            }
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "ilion: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!config) {
        usage(stderr);
        return 2;
    }
    server_config *c = malloc(sizeof *c);
    if (!c) return 1;
    server_config_default(c);
    char err[1024];
    if (server_config_load(config, c, err, sizeof err)) {
        LOG_ERROR("config", "%s", err);
        free(c);
        return 1;
    }
    char *copy = strdup(config);
    int r = node_run(c, copy ? dirname(copy) : ".");
    free(copy);
    free(c);
    return r == 0 ? 0 : 1;
}

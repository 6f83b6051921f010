/* The node identity kept in the data directory: created once, found again, generation bumped. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ilion/server/config.h"
#include "ilion/server/node.h"
#include "ilion/util/err.h"

static char dir[256];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/ilion-identity-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static void config_for(server_config *c, const char *extra) {
    char y[1024];
    snprintf(y, sizeof y, "num_tokens: 8\ndata_file_directories:\n  - %s/data\n%s", dir, extra);
    server_config_default(c);
    char err[256];
    cr_assert_eq(server_config_parse(y, strlen(y), c, err, sizeof err), 0, "%s", err);
}

TestSuite(identity, .init = setup, .fini = teardown, .timeout = 30);

Test(identity, created_once_then_found_again) {
    server_config c;
    config_for(&c, "");
    node_identity a, b;
    cr_assert_eq(node_identity_load(&c, NULL, &a), 0);
    cr_assert_eq(a.ntokens, 8);
    cr_assert_eq(a.host_id[6] >> 4, 4, "version 4 UUID");
    cr_assert_eq(a.host_id[8] & 0xc0, 0x80, "RFC 4122 variant");
    for (uint32_t i = 1; i < a.ntokens; i++) cr_assert_lt(a.tokens[i - 1], a.tokens[i]);
    cr_assert_str_eq(a.data_center, "datacenter1");
    cr_assert_str_eq(a.rack, "rack1");

    /* num_tokens changed later: the node keeps its tokens. */
    c.num_tokens = 4;
    cr_assert_eq(node_identity_load(&c, NULL, &b), 0);
    cr_assert(memcmp(a.host_id, b.host_id, 16) == 0);
    cr_assert_eq(b.ntokens, 8);
    cr_assert(memcmp(a.tokens, b.tokens, 8 * sizeof(int64_t)) == 0);
    cr_assert_gt(b.generation, a.generation, "generation bumped on every start");
    node_identity_free(&a);
    node_identity_free(&b);
}

Test(identity, other_cluster_name_refused) {
    server_config c;
    config_for(&c, "");
    node_identity a;
    cr_assert_eq(node_identity_load(&c, NULL, &a), 0);
    node_identity_free(&a);
    config_for(&c, "cluster_name: Other\n");
    cr_assert_eq(node_identity_load(&c, NULL, &a), ILION_EINVALID);
}

Test(identity, initial_token_and_rackdc) {
    server_config c;
    config_for(&c, "initial_token: \"100, -5, 7\"\nendpoint_snitch: GossipingPropertyFileSnitch\n");
    char path[300];
    snprintf(path, sizeof path, "%s/cassandra-rackdc.properties", dir);
    FILE *f = fopen(path, "w");
    fputs("dc=east\nrack=r9\n", f);
    fclose(f);
    node_identity a;
    cr_assert_eq(node_identity_load(&c, dir, &a), 0);
    cr_assert_eq(a.ntokens, 3);
    cr_assert_eq(a.tokens[0], -5);
    cr_assert_eq(a.tokens[1], 7);
    cr_assert_eq(a.tokens[2], 100);
    cr_assert_str_eq(a.data_center, "east");
    cr_assert_str_eq(a.rack, "r9");
    node_identity_free(&a);
}

Test(identity, bad_initial_token_is_a_config_error) {
    server_config c;
    server_config_default(&c);
    char err[256];
    const char *y = "initial_token: 1,x\n";
    cr_assert_neq(server_config_parse(y, strlen(y), &c, err, sizeof err), 0);
    cr_assert(strstr(err, "initial_token"));
    y = "initial_token: 5,5\n";
    cr_assert_neq(server_config_parse(y, strlen(y), &c, err, sizeof err), 0);
}

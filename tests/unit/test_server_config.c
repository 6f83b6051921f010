/* cassandra.yaml parsing: defaults, the sample file, nested seeds, unknown keys, bad values. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ilion/server/config.h"

static int parse(const char *text, server_config *c, char *err) {
    server_config_default(c);
    return server_config_parse(text, strlen(text), c, err, 512);
}

Test(config, defaults) {
    server_config c;
    server_config_default(&c);
    cr_assert_str_eq(c.cluster_name, "Test Cluster");
    cr_assert_eq(c.native_transport_port, 9042);
    cr_assert_eq(c.native_transport_max_frame_size_in_mb, 16);
    cr_assert_eq(c.commitlog_sync, STORAGE_SYNC_PERIODIC);
    cr_assert_eq(c.ndata_dirs, 1);
}

Test(config, good_file) {
    const char *y =
        "cluster_name: 'Prod'\n"
        "num_tokens: 8\n"
        "listen_address: 127.0.0.2\n"
        "rpc_address: 127.0.0.3\n"
        "native_transport_port: 19042\n"
        "storage_port: 17000\n"
        "seed_provider:\n"
        "  - class_name: org.apache.cassandra.locator.SimpleSeedProvider\n"
        "    parameters:\n"
        "      - seeds: \"127.0.0.1, 127.0.0.2:7001,127.0.0.3\"\n"
        "data_file_directories:\n"
        "  - /tmp/a\n"
        "  - /tmp/b\n"
        "commitlog_directory: /tmp/cl\n"
        "hints_directory:\n"
        "saved_caches_directory: ~\n"
        "commitlog_sync: batch\n"
        "commitlog_sync_period_in_ms: 50\n"
        "commitlog_sync_group_window_in_ms: 3\n"
        "commitlog_segment_size_in_mb: 8\n"
        "commitlog_total_space_in_mb: 1024\n"
        "memtable_heap_space_in_mb: 128\n"
        "endpoint_snitch: GossipingPropertyFileSnitch\n"
        "phi_convict_threshold: 10.5\n"
        "native_transport_max_frame_size_in_mb: 32\n"
        "read_request_timeout_in_ms: 1000\n"
        "write_request_timeout_in_ms: 900\n"
        "request_timeout_in_ms: 3000\n"
        "max_hint_window_in_ms: 60000\n"
        "hinted_handoff_enabled: false\n"
        "commit_failure_policy: die\n"
        "disk_failure_policy: ignore\n"
        "concurrent_compactors: 2\n";
    server_config c;
    char err[512];
    cr_assert_eq(parse(y, &c, err), 0, "%s", err);
    cr_assert_str_eq(c.cluster_name, "Prod");
    cr_assert_eq(c.num_tokens, 8);
    cr_assert_str_eq(c.listen_address, "127.0.0.2");
    cr_assert_str_eq(c.rpc_address, "127.0.0.3");
    cr_assert_eq(c.native_transport_port, 19042);
    cr_assert_eq(c.storage_port, 17000);
    cr_assert_eq(c.nseeds, 3);
    cr_assert_str_eq(c.seeds[0], "127.0.0.1");
    cr_assert_str_eq(c.seeds[1], "127.0.0.2:7001");
    cr_assert_str_eq(c.seeds[2], "127.0.0.3");
    cr_assert_eq(c.ndata_dirs, 2);
    cr_assert_str_eq(c.data_file_directories[1], "/tmp/b");
    cr_assert_str_eq(c.commitlog_directory, "/tmp/cl");
    cr_assert_str_eq(c.hints_directory, "./.data/node1/hints");          /* null keeps default */
    cr_assert_str_eq(c.saved_caches_directory, "./.data/node1/saved_caches");
    cr_assert_eq(c.commitlog_sync, STORAGE_SYNC_BATCH);
    cr_assert_eq(c.commitlog_sync_period_in_ms, 50);
    cr_assert_eq(c.commitlog_sync_group_window_in_ms, 3);
    cr_assert_eq(c.commitlog_segment_size_in_mb, 8);
    cr_assert_eq(c.commitlog_total_space_in_mb, 1024);
    cr_assert_eq(c.memtable_heap_space_in_mb, 128);
    cr_assert_str_eq(c.endpoint_snitch, "GossipingPropertyFileSnitch");
    cr_assert_float_eq(c.phi_convict_threshold, 10.5, 1e-9);
    cr_assert_eq(c.native_transport_max_frame_size_in_mb, 32);
    cr_assert_eq(c.read_request_timeout_in_ms, 1000);
    cr_assert_eq(c.write_request_timeout_in_ms, 900);
    cr_assert_eq(c.request_timeout_in_ms, 3000);
    cr_assert_eq(c.max_hint_window_in_ms, 60000);
    cr_assert(!c.hinted_handoff_enabled);
    cr_assert_eq(c.commit_failure_policy, STORAGE_POLICY_DIE);
    cr_assert_eq(c.disk_failure_policy, STORAGE_POLICY_IGNORE);
    cr_assert_eq(c.concurrent_compactors, 2);
    cr_assert_eq(c.unknown_keys, 0);
}

Test(config, unknown_keys_warn_and_are_ignored) {
    const char *y =
        "cluster_name: X\n"
        "authenticator: AllowAllAuthenticator\n"
        "client_encryption_options:\n"
        "  enabled: false\n"
        "num_tokens: 4\n";
    server_config c;
    char err[512];
    cr_assert_eq(parse(y, &c, err), 0, "%s", err);
    cr_assert_eq(c.unknown_keys, 2);
    cr_assert_eq(c.num_tokens, 4);
}

static void expect_invalid(const char *y, const char *key) {
    server_config c;
    char err[512];
    cr_assert_neq(parse(y, &c, err), 0, "accepted: %s", y);
    cr_assert(strstr(err, key), "message '%s' does not name '%s'", err, key);
}

Test(config, invalid_values_name_the_key) {
    expect_invalid("num_tokens: abc\n", "num_tokens");
    expect_invalid("num_tokens: 0\n", "num_tokens");
    expect_invalid("num_tokens: -3\n", "num_tokens");
    expect_invalid("native_transport_port: 70000\n", "native_transport_port");
    expect_invalid("commitlog_sync: sometimes\n", "commitlog_sync");
    expect_invalid("hinted_handoff_enabled: maybe\n", "hinted_handoff_enabled");
    expect_invalid("phi_convict_threshold: 2\n", "phi_convict_threshold");
    expect_invalid("phi_convict_threshold: nan\n", "phi_convict_threshold");
    expect_invalid("partitioner: org.apache.cassandra.dht.RandomPartitioner\n", "partitioner");
    expect_invalid("data_file_directories: {a: b}\n", "data_file_directories");
    expect_invalid("seed_provider: 127.0.0.1\n", "seed_provider");
    expect_invalid("commit_failure_policy: stop_commit\n", "commit_failure_policy");
    expect_invalid("cluster_name: [a, b]\n", "cluster_name");
    expect_invalid("native_transport_max_frame_size_in_mb: 100000\n",
                   "native_transport_max_frame_size_in_mb");
}

Test(config, yaml_errors) {
    server_config c;
    char err[512];
    cr_assert_neq(parse("a: [unclosed\n", &c, err), 0);
    cr_assert(strstr(err, "line"), "%s", err);
    cr_assert_neq(parse("- just\n- a list\n", &c, err), 0);
    cr_assert_eq(parse("", &c, err), 0);     /* empty file: all defaults */
    cr_assert_eq(parse("# only comments\n", &c, err), 0);
    cr_assert_neq(server_config_load("/nonexistent/ilion.yaml", &c, err, sizeof err), 0);
    cr_assert(strstr(err, "/nonexistent/ilion.yaml"));
}

Test(config, sample_file_parses_with_no_unknown_keys) {
    /* The sample at the repository root documents every key with its default. */
    char path[1024];
    snprintf(path, sizeof path, "%s", __FILE__);
    char *p = strstr(path, "tests/unit/test_server_config.c");
    cr_assert_not_null(p);
    strcpy(p, "cassandra.yaml.sample");
    server_config c, d;
    char err[512];
    server_config_default(&c);
    cr_assert_eq(server_config_load(path, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c.unknown_keys, 0);
    server_config_default(&d);
    cr_assert(memcmp(&c, &d, sizeof c) == 0, "the sample's values differ from the defaults");
}

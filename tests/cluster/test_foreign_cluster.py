#!/usr/bin/python3
"""Cluster test 4: a node configured with another cluster_name is refused and never appears.

Nodes 1 and 2 form cluster 'ilion-test-foreign'; node 3 has cluster_name 'someone-else' and
node 1 as its seed. For OBSERVE_S seconds (several gossip rounds) neither node 1 nor node 2
lists node 3 in `ilion-admin status`, `ilion-admin ring` or system.peers, node 3 sees nobody,
and both sides log the refusal. Then node 3 is restarted with a fresh data directory and the
right name, and joins (the refusal was about the name, not the address).
"""
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import Cluster, NATIVE_PORT, log  # noqa: E402

OBSERVE_S = 6.0


def peers_via_driver(c, i):
    from cassandra.cluster import Cluster as DriverCluster
    from cassandra.policies import WhiteListRoundRobinPolicy
    dc = DriverCluster([c.ip(i)], port=NATIVE_PORT, protocol_version=4,
                       load_balancing_policy=WhiteListRoundRobinPolicy([c.ip(i)]))
    try:
        s = dc.connect()
        return sorted(str(r.peer) for r in s.execute("SELECT peer FROM system.peers"))
    finally:
        dc.shutdown()


def main():
    with Cluster("foreign", 3, subnet=4, seeds=1) as c:
        c.write_config(3, cluster_name="someone-else")
        c.start(1)
        c.start(2)
        c.start(3)
        intruder = c.ip(3)
        c.wait_until("nodes 1 and 2 see each other", lambda: all(
            len(c.status(i)) == 2 and all(nd["status"] == "UP" for nd in c.status(i).values())
            for i in (1, 2)), 15)
        t0 = time.time()
        while time.time() - t0 < OBSERVE_S:
            for i in (1, 2):
                st = c.status(i)
                assert intruder not in st, "node%d lists the foreign node: %r" % (i, st[intruder])
                ring = c.admin(i, "/ring")
                assert all(t["address"] != intruder for t in ring["tokens"]), "foreign node in the ring"
                assert len(ring["tokens"]) == 32, len(ring["tokens"])
            assert list(c.status(3)) == [intruder], "foreign node sees %r" % list(c.status(3))
            time.sleep(0.5)
        assert intruder not in peers_via_driver(c, 1)
        assert peers_via_driver(c, 3) == []
        refused = [i for i in (1, 3) if "someone-else" in c.log_text(i) and
                   ("refus" in c.log_text(i).lower() or "mismatch" in c.log_text(i).lower())]
        assert refused, "the refusal is logged (node1 or node3)"
        log("foreign node refused for %.0fs; logged by node(s) %s" % (OBSERVE_S, refused))

        # Same address, right name, fresh identity: it joins.
        c.stop(3)
        shutil.rmtree(c.node_dir(3) + "/data", ignore_errors=True)
        shutil.rmtree(c.node_dir(3) + "/commitlog", ignore_errors=True)
        c.write_config(3)
        c.start(3)
        took = c.wait_until("node3 joins under the right name", lambda: all(
            len(c.status(i)) == 3 and all(nd["status"] == "UP" for nd in c.status(i).values())
            for i in (1, 2, 3)), 15)
        log("node3 joined %.1fs after its restart with the right name" % took)
    log("PASS test_foreign_cluster")


if __name__ == "__main__":
    main()

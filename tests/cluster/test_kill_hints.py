#!/usr/bin/python3
"""Cluster test 1: 3 nodes, RF=3, one node SIGKILLed.

1. Writes at QUORUM go on while node 3 is dead (before and after it is convicted).
2. Once the others see node 3 DOWN, a write at ALL fails with Unavailable (not a timeout).
3. Node 3 restarts; the hints the others kept for it are delivered (their hint files go away).
   Commit log in group mode: acknowledged means synced on the acknowledging replicas.
4. Then nodes 1 and 2 are stopped, and a driver connected only to node 3
   (WhiteListRoundRobinPolicy) reads every acknowledged write at ONE: node 3 alone serves them.
"""
import glob
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import Cluster, NATIVE_PORT, log  # noqa: E402

from cassandra import ConsistencyLevel, Unavailable  # noqa: E402
from cassandra.cluster import Cluster as DriverCluster, ExecutionProfile, EXEC_PROFILE_DEFAULT  # noqa: E402
from cassandra.policies import WhiteListRoundRobinPolicy  # noqa: E402
from cassandra.query import SimpleStatement  # noqa: E402

DOWN_BOUND_S = 90.0
HINTS_BOUND_S = 60.0


def session_to(ips):
    prof = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy(ips),
                            consistency_level=ConsistencyLevel.QUORUM, request_timeout=20)
    dc = DriverCluster(ips, port=NATIVE_PORT, protocol_version=4,
                       execution_profiles={EXEC_PROFILE_DEFAULT: prof}, connect_timeout=10)
    return dc, dc.connect()


def main():
    # Group commit: an acknowledged write is on disk on every replica that acknowledged it, so
    # a SIGKILL loses nothing the test may expect back (periodic mode may lose up to a period).
    with Cluster("hints", 3, subnet=1, commitlog_sync="group") as c:
        c.start_all()
        c.wait_until("gossip convergence", lambda: all(
            sum(1 for nd in c.status(i).values() if nd["status"] == "UP") == 3 for i in (1, 2, 3)), 30)
        dc, s = session_to([c.ip(1), c.ip(2)])
        s.execute("CREATE KEYSPACE h WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}")
        s.execute("CREATE TABLE h.kv (k int PRIMARY KEY, v text)")
        ins = s.prepare("INSERT INTO h.kv (k, v) VALUES (?, ?)")
        ins.consistency_level = ConsistencyLevel.QUORUM
        acked = {}
        for k in range(0, 100):
            s.execute(ins, (k, "before-%d" % k))
            acked[k] = "before-%d" % k

        c.kill(3)
        t0 = time.time()
        # QUORUM writes go on while node 3 is dead but not yet convicted (its replica times
        # out, the two others answer).
        for k in range(100, 150):
            s.execute(ins, (k, "dead-%d" % k))
            acked[k] = "dead-%d" % k
        log("50 QUORUM writes with node 3 dead (not yet convicted) in %.1fs" % (time.time() - t0))
        took = c.wait_until("node 3 DOWN on nodes 1 and 2", lambda: all(
            c.status(i)[c.ip(3)]["status"] == "DOWN" for i in (1, 2)), DOWN_BOUND_S)
        log("node 3 convicted by nodes 1 and 2 %.1fs after SIGKILL" % (time.time() - t0))
        all_stmt = SimpleStatement("INSERT INTO h.kv (k, v) VALUES (999, 'all')",
                                   consistency_level=ConsistencyLevel.ALL)
        try:
            s.execute(all_stmt)
            raise AssertionError("a write at ALL succeeded with a replica down")
        except Unavailable as e:
            log("ALL with node 3 down: Unavailable (%s)" % e.summary if hasattr(e, "summary") else "ALL: Unavailable")
        for k in range(150, 250):
            s.execute(ins, (k, "down-%d" % k))
            acked[k] = "down-%d" % k
        hint_files = [f for i in (1, 2) for f in glob.glob(os.path.join(c.node_dir(i), "hints", "*.hints"))]
        assert hint_files, "nodes 1 and 2 keep hints for node 3"
        log("hint files while node 3 is down: %d" % len(hint_files))

        c.start(3)
        t1 = time.time()
        c.wait_until("node 3 UP on nodes 1 and 2", lambda: all(
            c.status(i)[c.ip(3)]["status"] == "UP" for i in (1, 2)), 20)

        def hints_gone():
            return not [f for i in (1, 2) for f in glob.glob(os.path.join(c.node_dir(i), "hints", "*.hints"))
                        if os.path.getsize(f) > 0]
        c.wait_until("hints delivered (hint files empty or gone)", hints_gone, HINTS_BOUND_S)
        log("hints delivered %.1fs after node 3 restarted" % (time.time() - t1))
        dc.shutdown()

        # Node 3 alone: stop the others, then read everything at ONE through node 3.
        c.stop(1)
        c.stop(2)
        c.wait_until("node 3 sees 1 and 2 DOWN", lambda: all(
            nd["status"] == "DOWN" for a, nd in c.status(3).items() if a != c.ip(3)), 15)
        dc3, s3 = session_to([c.ip(3)])
        sel = s3.prepare("SELECT v FROM h.kv WHERE k = ?")
        sel.consistency_level = ConsistencyLevel.ONE
        missing = []
        for k, v in sorted(acked.items()):
            row = s3.execute(sel, (k,)).one()
            if row is None or row.v != v:
                missing.append((k, v, row.v if row else None))
        dc3.shutdown()
        assert not missing, "%d acknowledged writes not on node 3, e.g. %r" % (len(missing), missing[:5])
        log("all %d acknowledged writes read at ONE from node 3 alone" % len(acked))
    log("PASS test_kill_hints")


if __name__ == "__main__":
    main()

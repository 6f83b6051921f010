#!/usr/bin/python3
"""Cluster test 2: a keyspace and table created through one node are usable through every
node, and the stock Python driver connected to all three completes schema agreement.

- 3 nodes; the driver's control connection goes to node 1 only for the DDL
  (WhiteListRoundRobinPolicy), so nodes 2 and 3 learn the schema by propagation;
- after each DDL the driver's own schema-agreement wait must return True (max 10 s), and
  every node must report the same schema_version in system.local within that bound;
- rows written through node 2 are read through node 3 (and the reverse);
- a DROP TABLE / CREATE TABLE of the same name on another node propagates too, and each
  node's clients get SCHEMA_CHANGE events for changes made elsewhere;
- a node stopped during a DDL has the new table soon after it restarts;
- the driver logs no warning at all (schema agreement timeout, invalid peer rows, ...).
"""
import logging
import sys
import time

sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
from clusterlib import Cluster, NATIVE_PORT, log  # noqa: E402

from cassandra import ConsistencyLevel  # noqa: E402
from cassandra.cluster import Cluster as DriverCluster, ExecutionProfile, EXEC_PROFILE_DEFAULT  # noqa: E402
from cassandra.policies import WhiteListRoundRobinPolicy  # noqa: E402
from cassandra.query import SimpleStatement  # noqa: E402

AGREEMENT_BOUND_S = 10.0


class WarnCatcher(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.msgs = []

    def emit(self, record):
        self.msgs.append(record.getMessage())


def session_to(c, ips, **kw):
    prof = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy(ips),
                            consistency_level=ConsistencyLevel.QUORUM, request_timeout=15)
    dc = DriverCluster(ips, port=NATIVE_PORT, protocol_version=4,
                       execution_profiles={EXEC_PROFILE_DEFAULT: prof},
                       max_schema_agreement_wait=AGREEMENT_BOUND_S, connect_timeout=10, **kw)
    return dc, dc.connect()


def versions(c):
    out = {}
    for i in range(1, c.n + 1):
        dc, s = session_to(c, [c.ip(i)])
        try:
            out[c.ip(i)] = str(s.execute("SELECT schema_version FROM system.local").one()[0])
        finally:
            dc.shutdown()
    return out


def main():
    catcher = WarnCatcher()
    logging.getLogger("cassandra").addHandler(catcher)
    with Cluster("agree", 3, subnet=2) as c:
        c.start_all()
        c.wait_until("gossip convergence", lambda: all(
            sum(1 for nd in c.status(i).values() if nd["status"] == "UP") == 3
            for i in (1, 2, 3)), 30)
        # A client of node 3 registered for schema events, to see remote DDL.
        events = []
        dc3, s3 = session_to(c, [c.ip(3)])
        dc3.control_connection._connection.register_watchers(
            {"SCHEMA_CHANGE": lambda ev: events.append(ev)}, register_timeout=5)

        dc1, s1 = session_to(c, [c.ip(1)])
        t0 = time.time()
        rs = s1.execute("CREATE KEYSPACE agree WITH replication = "
                        "{'class': 'SimpleStrategy', 'replication_factor': 3}")
        assert rs.response_future.is_schema_agreed, "schema agreement after CREATE KEYSPACE"
        rs = s1.execute("CREATE TABLE agree.kv (k int PRIMARY KEY, v text)")
        assert rs.response_future.is_schema_agreed, "schema agreement after CREATE TABLE"
        took = time.time() - t0
        log("two DDL statements with schema agreement in %.2fs" % took)
        assert dc1.control_connection.wait_for_schema_agreement(), "explicit agreement wait"
        vs = versions(c)
        assert len(set(vs.values())) == 1, "one schema version everywhere: %r" % vs
        log("schema versions: %r" % vs)

        # Usable through every node.
        dc2, s2 = session_to(c, [c.ip(2)])
        for k in range(20):
            s2.execute("INSERT INTO agree.kv (k, v) VALUES (%s, %s)", (k, "v%d" % k))
        rows = {r.k: r.v for r in s3.execute(SimpleStatement(
            "SELECT k, v FROM agree.kv", consistency_level=ConsistencyLevel.QUORUM))}
        assert rows == {k: "v%d" % k for k in range(20)}, "rows via node3: %r" % rows
        s3.execute("INSERT INTO agree.kv (k, v) VALUES (100, 'from3')")
        got = s1.execute("SELECT v FROM agree.kv WHERE k = 100").one()
        assert got and got.v == "from3", got

        # A drop and re-create through node 2 reaches node 1's and node 3's catalogs.
        rs = s2.execute("DROP TABLE agree.kv")
        assert rs.response_future.is_schema_agreed
        rs = s2.execute("CREATE TABLE agree.kv (k int PRIMARY KEY, n bigint)")
        assert rs.response_future.is_schema_agreed
        s1.execute("INSERT INTO agree.kv (k, n) VALUES (1, 42)")
        got = s3.execute("SELECT n FROM agree.kv WHERE k = 1").one()
        assert got and got.n == 42, got
        vs = versions(c)
        assert len(set(vs.values())) == 1, "one schema version after drop/create: %r" % vs

        # Node 3's client heard of the DDL made through nodes 1 and 2.
        deadline = time.time() + 5
        while time.time() < deadline and len(events) < 4:
            time.sleep(0.1)
        kinds = [(e.get("change_type"), e.get("target_type")) for e in events]
        log("SCHEMA_CHANGE events on node 3: %r" % kinds)
        assert ("CREATED", "KEYSPACE") in kinds and ("CREATED", "TABLE") in kinds, kinds
        assert ("DROPPED", "TABLE") in kinds, kinds

        # The driver connected to all three agrees too.
        dca, sa = session_to(c, [c.ip(i) for i in (1, 2, 3)])
        rs = sa.execute("CREATE TABLE agree.more (a int, b int, PRIMARY KEY (a, b))")
        assert rs.response_future.is_schema_agreed
        assert dca.control_connection.wait_for_schema_agreement()
        for d in (dc1, dc2, dc3, dca):
            d.shutdown()

        # No warning at all: not about schema agreement, nor about incomplete system.peers rows.
        assert not catcher.msgs, "driver warnings: %r" % catcher.msgs

        # A node that was down during a DDL catches up (pull) when it comes back.
        c.stop(3)
        c.wait_until("node 3 DOWN on node 1", lambda: c.status(1)[c.ip(3)]["status"] == "DOWN", 10)
        # (a driver that may connect to node 3 knows it is down and leaves it out of agreement)
        dc1, s1 = session_to(c, [c.ip(1), c.ip(2), c.ip(3)])
        rs = s1.execute("CREATE TABLE agree.late (k int PRIMARY KEY, v int)")
        assert rs.response_future.is_schema_agreed
        c.start(3)
        t_back = time.time()
        c.wait_until("one schema version after node 3 is back",
                     lambda: len(set(versions(c).values())) == 1, AGREEMENT_BOUND_S)
        log("restarted node agreed %.1fs after its start" % (time.time() - t_back))
        dc3, s3 = session_to(c, [c.ip(3)])
        s3.execute("INSERT INTO agree.late (k, v) VALUES (1, 2)")
        assert s1.execute("SELECT v FROM agree.late WHERE k = 1").one().v == 2
        dc1.shutdown()
        dc3.shutdown()
    log("PASS test_schema_agreement (2 DDL with agreement in %.2fs)" % took)


if __name__ == "__main__":
    main()

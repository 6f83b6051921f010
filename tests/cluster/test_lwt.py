#!/usr/bin/python3
"""Cluster test: lightweight transactions (Paxos) on 3 nodes, RF 3, with a node SIGKILLed.

- 6 client threads (stock Python driver, one session connected to all three nodes) increment
  one register with `UPDATE lwt.reg SET v = new WHERE k = 0 IF v = old` (serial consistency
  SERIAL, commit at QUORUM), learning the current value from each [applied]=false answer;
- halfway through, node 3 is SIGKILLed; it is restarted a few seconds later and the clients
  go on until the end;
- every answer is classified: applied, not applied, or unknown (WriteTimeout, client timeout,
  lost connection: the update may or may not have taken effect);
- at the end, a SERIAL read of the register must give applied <= v <= applied + unknown, and
  no two applied updates may have claimed the same old value (each value is taken once).
Loopback range 127.77.11.x. Bounded: about 40 s of load, every node stopped at the end.
"""
import collections
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import Cluster, NATIVE_PORT, log  # noqa: E402

from cassandra import ConsistencyLevel, OperationTimedOut, Unavailable, WriteTimeout  # noqa: E402
from cassandra.cluster import Cluster as DriverCluster, ExecutionProfile, EXEC_PROFILE_DEFAULT  # noqa: E402
from cassandra.cluster import NoHostAvailable  # noqa: E402
from cassandra.policies import RoundRobinPolicy  # noqa: E402
from cassandra.query import SimpleStatement, dict_factory  # noqa: E402

CLIENTS = 6
RUN_S = 30.0            # load duration; node 3 is killed at RUN_S / 2
DOWN_S = 4.0            # node 3 stays dead this long before its restart
SUBNET = 11


class Client(threading.Thread):
    def __init__(self, idx, session, upd, stop):
        super().__init__(name="client%d" % idx, daemon=True)
        self.idx = idx
        self.s = session
        self.upd = upd
        self.stop = stop
        self.applied = []       # (old value, time) of each applied update
        self.not_applied = 0
        self.unknown = 0
        self.definite_errors = 0
        self.errors = {}
        self.failure = None

    def note(self, e):
        k = type(e).__name__
        self.errors[k] = self.errors.get(k, 0) + 1

    def run(self):
        guess = 0
        while not self.stop.is_set():
            try:
                row = self.s.execute(self.upd, (guess + 1, guess)).one()
            except (WriteTimeout, OperationTimedOut) as e:
                self.unknown += 1    # the round may still be completed by the next proposer
                self.note(e)
                continue
            except Unavailable as e:
                self.definite_errors += 1   # refused before any Paxos message was sent
                self.note(e)
                time.sleep(0.05)
                continue
            except NoHostAvailable as e:
                # Each host's error decides: a request that never left is certain, one that was
                # on a connection that died is not. Be conservative: count it unknown.
                self.unknown += 1
                self.note(e)
                time.sleep(0.05)
                continue
            except Exception as e:  # connection reset while the request was in flight, ...
                self.unknown += 1
                self.note(e)
                time.sleep(0.05)
                continue
            if row["[applied]"]:
                self.applied.append((guess, time.time()))
                guess += 1
            else:
                self.not_applied += 1
                if row.get("v") is None:
                    self.failure = "[applied]=false without the current value: %r" % row
                    return
                guess = row["v"]


def main():
    with Cluster("lwt", 3, subnet=SUBNET, commitlog_sync="group") as c:
        c.start_all()
        c.wait_until("gossip convergence", lambda: all(
            sum(1 for nd in c.status(i).values() if nd["status"] == "UP") == 3 for i in (1, 2, 3)), 30)
        ips = [c.ip(i) for i in (1, 2, 3)]
        prof = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(),
                                consistency_level=ConsistencyLevel.QUORUM,
                                serial_consistency_level=ConsistencyLevel.SERIAL,
                                request_timeout=10, row_factory=dict_factory)
        dc = DriverCluster(ips, port=NATIVE_PORT, protocol_version=4, connect_timeout=10,
                           execution_profiles={EXEC_PROFILE_DEFAULT: prof})
        s = dc.connect()
        try:
            s.execute("CREATE KEYSPACE lwt WITH replication = "
                      "{'class': 'SimpleStrategy', 'replication_factor': 3}")
            s.execute("CREATE TABLE lwt.reg (k int PRIMARY KEY, v int)")
            dc.control_connection.wait_for_schema_agreement(wait_time=15)
            row = s.execute("INSERT INTO lwt.reg (k, v) VALUES (0, 0) IF NOT EXISTS").one()
            assert row["[applied]"], "register created: %r" % row
            upd = s.prepare("UPDATE lwt.reg SET v = ? WHERE k = 0 IF v = ?")
            upd.consistency_level = ConsistencyLevel.QUORUM
            upd.serial_consistency_level = ConsistencyLevel.SERIAL

            stop = threading.Event()
            clients = [Client(i, s, upd, stop) for i in range(CLIENTS)]
            t0 = time.time()
            for cl in clients:
                cl.start()
            time.sleep(RUN_S / 2)
            before_kill = sum(len(cl.applied) for cl in clients)
            log("%d increments applied before the kill" % before_kill)
            c.kill(3)
            t_kill = time.time()
            log("node 3 SIGKILLed at %.1fs" % (t_kill - t0))
            time.sleep(DOWN_S)
            c.start(3)
            t_up = time.time()
            log("node 3 restarted at %.1fs (native port open)" % (t_up - t0))
            rest = RUN_S - (time.time() - t0)
            if rest > 0:
                time.sleep(rest)
            stop.set()
            for cl in clients:
                cl.join(30)
                assert not cl.is_alive(), "%s did not stop" % cl.name
                assert cl.failure is None, "%s: %s" % (cl.name, cl.failure)

            applied = [a for cl in clients for a in cl.applied]
            unknown = sum(cl.unknown for cl in clients)
            not_applied = sum(cl.not_applied for cl in clients)
            errors = {}
            for cl in clients:
                for k, n in cl.errors.items():
                    errors[k] = errors.get(k, 0) + n
            after_up = sum(1 for _, t in applied if t > t_up)
            log("applied %d, not applied %d, unknown %d, refused %d; errors by type %r" % (
                len(applied), not_applied, unknown, sum(cl.definite_errors for cl in clients), errors))

            # SERIAL read: completes any round left in progress, then reads at QUORUM.
            final = None
            for attempt in range(10):
                try:
                    final = s.execute(SimpleStatement("SELECT v FROM lwt.reg WHERE k = 0",
                                                      consistency_level=ConsistencyLevel.SERIAL)).one()["v"]
                    break
                except (WriteTimeout, OperationTimedOut, Unavailable, NoHostAvailable) as e:
                    log("SERIAL read attempt %d: %r" % (attempt, e))
                    time.sleep(1)
            assert final is not None, "no SERIAL read of the register succeeded"
            log("SERIAL read: v = %d" % final)

            olds = [o for o, _ in applied]
            dup = sorted(o for o, n in collections.Counter(olds).items() if n > 1)
            assert not dup, "applied updates claimed the same old value: %r" % dup[:10]
            assert len(applied) <= final <= len(applied) + unknown, (
                "register holds %d; %d applied, %d unknown" % (final, len(applied), unknown))
            assert all(0 <= o < final for o in olds), "an applied old value is not below the final value"
            assert before_kill > 0, "nothing applied before the kill"
            assert after_up > 0, "nothing applied after node 3 came back"
            log("%d applied increments (%d after the restart), %d unknown: register = %d" % (
                len(applied), after_up, unknown, final))
        finally:
            dc.shutdown()
    log("PASS test_lwt")


if __name__ == "__main__":
    main()

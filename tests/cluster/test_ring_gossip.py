#!/usr/bin/python3
"""Cluster test 3: 5 nodes with num_tokens 16.

- gossip converges: every node's `ilion-admin status` lists all 5 nodes as UN with 16 tokens
  each, within CONVERGE_BOUND_S of the last node's start;
- every node owns a share of the ring in [OWN_MIN, OWN_MAX] (the bound test_cluster_ring.c
  established for 5 x 16 random vnodes over 50 seeded rings), as ilion-admin reports it and as
  computed independently from system.local + system.peers tokens;
- a SIGKILLed node is marked DN by every other node within DOWN_BOUND_S (the time is measured
  and printed: conviction with the default settings, gossip 1 s, phi 8), and UN again
  everywhere within UP_BOUND_S of its restart, with the same host id and tokens.
"""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import Cluster, NATIVE_PORT, ADMIN_PORT, admin_binary, log  # noqa: E402

N = 5
CONVERGE_BOUND_S = 15.0
OWN_MIN, OWN_MAX = 0.06, 0.40
DOWN_BOUND_S = 90.0
UP_BOUND_S = 15.0
LINE = re.compile(r"^([UD][NJLM?])\s+(\S+)\s+(\S+ \S+)\s+(\d+)\s+(\S+)%\s+(\S+)\s+(\S+)\s*$")


def admin_status(c, i):
    """{address: (state, tokens, owns, host_id)} parsed from `ilion-admin status` on node i."""
    tool = admin_binary()
    if tool:
        r = subprocess.run([tool, "-h", c.ip(i), "-p", str(ADMIN_PORT), "status"],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise OSError("ilion-admin status on node%d: %s" % (i, r.stderr.strip()))
        out = {}
        for line in r.stdout.splitlines():
            m = LINE.match(line)
            if m:
                out[m.group(2)] = (m.group(1), int(m.group(4)), float(m.group(5)) / 100, m.group(6))
        return out
    out = {}
    for a, nd in c.status(i).items():
        state = ("U" if nd["status"] == "UP" else "D") + "N"
        out[a] = (state, nd["tokens"], nd["owns"], nd["host_id"])
    return out


def ownership_from_tokens(tokmap):
    """Primary ownership per node from {node: [tokens]}: range (prev, t] belongs to t's node."""
    allt = sorted((t, nd) for nd, ts in tokmap.items() for t in ts)
    share = {nd: 0 for nd in tokmap}
    for idx, (t, nd) in enumerate(allt):
        prev = allt[idx - 1][0]
        span = (t - prev) % (1 << 64) if idx else (t - allt[-1][0]) % (1 << 64)
        share[nd] += span
    return {nd: v / float(1 << 64) for nd, v in share.items()}


def driver_tokens(c, i):
    from cassandra.cluster import Cluster as DriverCluster
    from cassandra.policies import WhiteListRoundRobinPolicy
    dc = DriverCluster([c.ip(i)], port=NATIVE_PORT, protocol_version=4,
                       load_balancing_policy=WhiteListRoundRobinPolicy([c.ip(i)]))
    try:
        s = dc.connect()
        local = s.execute("SELECT broadcast_address, tokens FROM system.local").one()
        tm = {str(local.broadcast_address or c.ip(i)): [int(t) for t in local.tokens]}
        for row in s.execute("SELECT peer, tokens, host_id, rpc_address, data_center FROM system.peers"):
            assert row.host_id and row.rpc_address and row.data_center, row
            tm[str(row.peer)] = [int(t) for t in row.tokens]
        return tm
    finally:
        dc.shutdown()


def main():
    with Cluster("ring", N, subnet=3) as c:
        c.start_all()
        t_started = time.time()

        def converged():
            for i in range(1, N + 1):
                st = admin_status(c, i)
                if len(st) != N or any(v[0] != "UN" or v[1] != 16 for v in st.values()):
                    return False
            return True
        took = c.wait_until("gossip convergence (5 x UN, 16 tokens, on every node)", converged,
                            CONVERGE_BOUND_S)
        log("converged %.2fs after the last start (bound %.0fs)" % (took, CONVERGE_BOUND_S))
        assert time.time() - t_started <= CONVERGE_BOUND_S + 5

        st = admin_status(c, 1)
        owns = {a: v[2] for a, v in st.items()}
        log("ownership (ilion-admin): %s" % ", ".join("%s %.1f%%" % (a, 100 * o) for a, o in sorted(owns.items())))
        assert abs(sum(owns.values()) - 1.0) < 0.01, owns
        for a, o in owns.items():
            assert OWN_MIN <= o <= OWN_MAX, "%s owns %.3f, outside [%.2f, %.2f]" % (a, o, OWN_MIN, OWN_MAX)
        tm = driver_tokens(c, 2)
        assert len(tm) == N and all(len(t) == 16 for t in tm.values()), {k: len(v) for k, v in tm.items()}
        computed = ownership_from_tokens(tm)
        for a, o in computed.items():
            assert abs(o - owns[a]) < 0.002, "ownership of %s: admin %.4f, system.peers %.4f" % (a, owns[a], o)

        # A client of node 1 registered for status events hears node 5 go DOWN and come UP.
        from cassandra.cluster import Cluster as DriverCluster
        from cassandra.policies import WhiteListRoundRobinPolicy
        events = []
        evc = DriverCluster([c.ip(1)], port=NATIVE_PORT, protocol_version=4,
                            load_balancing_policy=WhiteListRoundRobinPolicy([c.ip(1)]))
        evc.connect()
        evc.control_connection._connection.register_watchers(
            {"STATUS_CHANGE": lambda ev: events.append((ev["change_type"], ev["address"][0])),
             "TOPOLOGY_CHANGE": lambda ev: events.append((ev["change_type"], ev["address"][0]))},
            register_timeout=5)

        # SIGKILL node 5: every other node marks it DN.
        victim = c.ip(N)
        hid = st[victim][3]
        c.kill(N)
        t0 = time.time()
        seen = {}

        def all_down():
            for i in range(1, N):
                if i in seen:
                    continue
                if admin_status(c, i)[victim][0] == "DN":
                    seen[i] = time.time() - t0
            return len(seen) == N - 1
        c.wait_until("node5 DN on every node", all_down, DOWN_BOUND_S, step=0.5)
        log("SIGKILLed node convicted after %s s (first %.1f s, last %.1f s; bound %.0f s)" % (
            ", ".join("%.1f" % seen[i] for i in sorted(seen)), min(seen.values()), max(seen.values()),
            DOWN_BOUND_S))

        # Restart: UN again everywhere, same identity.
        c.start(N)
        t1 = time.time()
        c.wait_until("node5 UN again everywhere",
                     lambda: all(admin_status(c, i)[victim][0] == "UN" for i in range(1, N + 1)),
                     UP_BOUND_S)
        log("restarted node UP everywhere %.1f s after its start (bound %.0f s)" % (time.time() - t1, UP_BOUND_S))
        st2 = admin_status(c, 1)
        assert st2[victim][3] == hid, "host id kept across restart"
        c.wait_until("client events DOWN then UP for node5",
                     lambda: ("DOWN", victim) in events and ("UP", victim) in events[events.index(("DOWN", victim)):], 5)
        evc.shutdown()
        log("events on node 1's client: %r" % events)
        tm2 = driver_tokens(c, 1)
        assert sorted(tm2[victim]) == sorted(tm[victim]), "tokens kept across restart"
    log("PASS test_ring_gossip")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Stock DataStax Python driver (Debian python3-cassandra) against a running Ilion node.

Usage: test_python.py HOST PORT phase   (phase: main | after_restart)
Default driver settings (lz4 compression is on when python3-lz4 is installed). Exits non-zero
on the first failed check, naming it.
"""
import datetime
import decimal
import ipaddress
import socket
import struct
import sys
import time
import uuid

from cassandra import AlreadyExists, InvalidRequest
from cassandra.cluster import Cluster
from cassandra.protocol import SyntaxException
from cassandra.query import BatchStatement, SimpleStatement

HOST, PORT, PHASE = sys.argv[1], int(sys.argv[2]), sys.argv[3]
KS = "drv_py"
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        print("FAIL: %s" % what)
        sys.exit(1)


def expect_error(exc_type, fn, what):
    try:
        fn()
    except exc_type:
        check(True, what)
        return
    except Exception as e:  # noqa: BLE001
        check(False, "%s: got %s: %s" % (what, type(e).__name__, e))
    check(False, "%s: no error" % what)


ALL_TYPES = [
    ("a_ascii", "ascii"), ("a_bigint", "bigint"), ("a_blob", "blob"), ("a_boolean", "boolean"),
    ("a_date", "date"), ("a_decimal", "decimal"), ("a_double", "double"), ("a_float", "float"),
    ("a_inet", "inet"), ("a_int", "int"), ("a_smallint", "smallint"), ("a_text", "text"),
    ("a_time", "time"), ("a_timestamp", "timestamp"), ("a_timeuuid", "timeuuid"),
    ("a_tinyint", "tinyint"), ("a_uuid", "uuid"), ("a_varint", "varint"),
]
COLL_TYPES = [("a_list", "list<int>"), ("a_set", "set<text>"), ("a_map", "map<text, int>")]


def type_rows():
    """(id, values) rows: boundaries, ordinary values, and all nulls."""
    from cassandra.util import Date, Time
    lo = {
        "a_ascii": "", "a_bigint": -2**63, "a_blob": b"", "a_boolean": False,
        "a_date": Date(-2**31 + 1), "a_decimal": decimal.Decimal("-1E-30"),
        "a_double": -1.7976931348623157e308, "a_float": -3.4028234663852886e38,
        "a_inet": "0.0.0.0", "a_int": -2**31, "a_smallint": -2**15, "a_text": "",
        "a_time": Time(0), "a_timestamp": datetime.datetime(1900, 1, 1),
        "a_timeuuid": uuid.UUID("00000000-0000-1000-8000-000000000000"),
        "a_tinyint": -128, "a_uuid": uuid.UUID(int=0), "a_varint": -(2**100),
    }
    hi = {
        "a_ascii": "~" * 300, "a_bigint": 2**63 - 1, "a_blob": bytes(range(256)) * 40,
        "a_boolean": True, "a_date": Date(2**31 - 1), "a_decimal": decimal.Decimal("12345678901234567890.123456789"),
        "a_double": float("inf"), "a_float": 1.5, "a_inet": "2001:db8::ff00:42:8329",
        "a_int": 2**31 - 1, "a_smallint": 2**15 - 1, "a_text": "héllo wörld ✓ " * 50,
        "a_time": Time(86399999999999), "a_timestamp": datetime.datetime(2262, 4, 11, 23, 47, 16, 854000),
        "a_timeuuid": uuid.uuid1(), "a_tinyint": 127, "a_uuid": uuid.uuid4(), "a_varint": 2**200 + 7,
    }
    nulls = {name: None for name, _ in ALL_TYPES}
    return [(1, lo), (2, hi), (3, nulls)]


def norm(name, v):
    """What the driver gives back for what we sent (empty collections read back as None)."""
    if v is None:
        return None
    if name in ("a_list", "a_set", "a_map") and len(v) == 0:
        return None
    if name == "a_set":
        return set(v)
    if name == "a_map":
        return dict(v)
    if name == "a_list":
        return list(v)
    if name == "a_inet":
        return str(ipaddress.ip_address(v))
    return v


def raw_unprepared(host, port):
    """EXECUTE of an unknown id over a raw v4 connection: expect ERROR 0x2500."""
    s = socket.create_connection((host, port), timeout=10)

    def send(stream, op, body):
        s.sendall(struct.pack(">BBhBI", 4, 0, stream, op, len(body)) + body)

    def recv():
        hdr = b""
        while len(hdr) < 9:
            chunk = s.recv(9 - len(hdr))
            if not chunk:
                raise EOFError
            hdr += chunk
        _, _, stream, op, n = struct.unpack(">BBhBI", hdr)
        body = b""
        while len(body) < n:
            body += s.recv(n - len(body))
        return stream, op, body

    def string(x):
        return struct.pack(">H", len(x)) + x

    send(1, 0x01, struct.pack(">H", 1) + string(b"CQL_VERSION") + string(b"3.0.0"))
    check(recv()[1] == 0x02, "raw STARTUP answered READY")
    send(2, 0x0A, string(b"\xde\xad\xbe\xef") + struct.pack(">HB", 1, 0))
    stream, op, body = recv()
    s.close()
    return stream, op, struct.unpack(">i", body[:4])[0] if len(body) >= 4 else None


def main_phase(session):
    session.execute("DROP KEYSPACE IF EXISTS %s" % KS)
    session.execute("CREATE KEYSPACE %s WITH replication = {'class': 'SimpleStrategy', "
                    "'replication_factor': 1}" % KS)
    session.set_keyspace(KS)

    # Composite partition key + clustering.
    session.execute("CREATE TABLE events (tenant text, day int, seq int, body text, n bigint, "
                    "PRIMARY KEY ((tenant, day), seq))")
    ins = session.prepare("INSERT INTO events (tenant, day, seq, body, n) VALUES (?, ?, ?, ?, ?)")
    for i in range(20):
        session.execute(ins, ("acme", 20260101, i, "b%d" % i, i * 10))
    rows = list(session.execute("SELECT seq, body FROM events WHERE tenant = 'acme' AND day = 20260101"))
    check([r.seq for r in rows] == list(range(20)), "composite key rows in clustering order")
    # Clustering slice.
    sl = session.prepare("SELECT seq FROM events WHERE tenant = ? AND day = ? AND seq >= ? AND seq < ?")
    rows = list(session.execute(sl, ("acme", 20260101, 5, 9)))
    check([r.seq for r in rows] == [5, 6, 7, 8], "clustering slice [5, 9)")
    rows = list(session.execute("SELECT seq FROM events WHERE tenant = 'acme' AND day = 20260101 "
                                "AND seq > 15 ORDER BY seq DESC"))
    check([r.seq for r in rows] == [19, 18, 17, 16], "reversed slice")
    rows = list(session.execute("SELECT seq FROM events WHERE tenant = 'acme' AND day = 20260101 LIMIT 3"))
    check([r.seq for r in rows] == [0, 1, 2], "LIMIT")

    # Every type through prepared statements, read back equal.
    cols = ", ".join("%s %s" % (n, t) for n, t in ALL_TYPES)
    session.execute("CREATE TABLE types (id int PRIMARY KEY, %s)" % cols)
    names = [n for n, _ in ALL_TYPES]
    tins = session.prepare("INSERT INTO types (id, %s) VALUES (?, %s)" % (
        ", ".join(names), ", ".join("?" for _ in names)))
    sel = session.prepare("SELECT * FROM types WHERE id = ?")
    for rid, vals in type_rows():
        session.execute(tins, [rid] + [vals[n] for n in names])
        row = session.execute(sel, (rid,)).one()
        check(row is not None, "types row %d read back" % rid)
        for n in names:
            got, want = getattr(row, n), norm(n, vals[n])
            if n == "a_float" and want is not None:
                check(abs(got - want) <= abs(want) * 1e-6, "float row %d" % rid)
                continue
            check(norm(n, got) == want, "type %s row %d: got %r want %r" % (n, rid, got, want))

    # Paging: 10,000 rows in one partition, page size 100.
    session.execute("CREATE TABLE wide (k int, c int, v text, PRIMARY KEY (k, c))")
    wins = session.prepare("INSERT INTO wide (k, c, v) VALUES (1, ?, ?)")
    from cassandra.concurrent import execute_concurrent_with_args
    res = execute_concurrent_with_args(session, wins, [(i, "v%d" % i) for i in range(10000)],
                                       concurrency=100)
    check(all(ok for ok, _ in res), "10,000 concurrent prepared inserts")
    st = SimpleStatement("SELECT c FROM wide WHERE k = 1", fetch_size=100)
    rs = session.execute(st)
    first_page = len(rs.current_rows)
    seen = [r.c for r in rs]
    check(first_page == 100, "first page holds 100 rows (got %d)" % first_page)
    check(seen == list(range(10000)), "paged through 10,000 rows in order (got %d)" % len(seen))

    # TTL expiry.
    session.execute("CREATE TABLE kv (k text PRIMARY KEY, v text)")
    session.execute("INSERT INTO kv (k, v) VALUES ('ttl', 'x') USING TTL 1")
    check(session.execute("SELECT v FROM kv WHERE k = 'ttl'").one() is not None, "TTL row visible first")
    time.sleep(2.5)
    check(session.execute("SELECT v FROM kv WHERE k = 'ttl'").one() is None, "TTL row expired")

    # USING TIMESTAMP: the higher timestamp wins whatever the order of arrival.
    session.execute("INSERT INTO kv (k, v) VALUES ('ts', 'new') USING TIMESTAMP 2000")
    session.execute("INSERT INTO kv (k, v) VALUES ('ts', 'old') USING TIMESTAMP 1000")
    check(session.execute("SELECT v FROM kv WHERE k = 'ts'").one().v == "new", "USING TIMESTAMP ordering")

    # Batch (logged, mixed simple and prepared).
    b = BatchStatement()
    kins = session.prepare("INSERT INTO kv (k, v) VALUES (?, ?)")
    for i in range(10):
        b.add(kins, ("batch%d" % i, "v%d" % i))
    b.add(SimpleStatement("INSERT INTO kv (k, v) VALUES ('batch_simple', 's')"))
    session.execute(b)
    for i in range(10):
        check(session.execute(SimpleStatement("SELECT v FROM kv WHERE k = %s"), ("batch%d" % i,)).one().v
              == "v%d" % i, "batch row %d" % i)
    check(session.execute("SELECT v FROM kv WHERE k = 'batch_simple'").one().v == "s", "batch simple row")

    # Deletes: a column, a row, a clustering range.
    session.execute("DELETE body FROM events WHERE tenant = 'acme' AND day = 20260101 AND seq = 1")
    r = session.execute("SELECT body, n FROM events WHERE tenant = 'acme' AND day = 20260101 AND seq = 1").one()
    check(r is not None and r.body is None and r.n == 10, "column delete keeps the row")
    session.execute("DELETE FROM events WHERE tenant = 'acme' AND day = 20260101 AND seq = 2")
    check(session.execute("SELECT * FROM events WHERE tenant = 'acme' AND day = 20260101 AND seq = 2").one()
          is None, "row delete")
    session.execute("DELETE FROM kv WHERE k = 'batch0'")
    check(session.execute("SELECT * FROM kv WHERE k = 'batch0'").one() is None, "single-row partition delete")

    # Errors with their codes.
    expect_error(SyntaxException, lambda: session.execute("SELEKT * FROM kv"), "syntax error 0x2000")
    expect_error(InvalidRequest, lambda: session.execute("SELECT * FROM no_such_table"), "invalid 0x2200")
    expect_error(AlreadyExists, lambda: session.execute("CREATE TABLE kv (k text PRIMARY KEY, v text)"),
                 "already exists 0x2400")
    expect_error(AlreadyExists, lambda: session.execute(
        "CREATE KEYSPACE %s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}" % KS),
        "keyspace already exists 0x2400")
    stream, op, code = raw_unprepared(HOST, PORT)
    check(stream == 2 and op == 0x00 and code == 0x2500, "unprepared 0x2500 (got op %r code %r)" % (op, code))

    # Data for the restart check.
    session.execute("INSERT INTO kv (k, v) VALUES ('durable', 'yes')")

    # Collections last: everything above is checked even where they are not supported.
    session.execute("CREATE TABLE coll (id int PRIMARY KEY, %s)" % ", ".join(
        "%s %s" % (n, t) for n, t in COLL_TYPES))
    cins = session.prepare("INSERT INTO coll (id, a_list, a_set, a_map) VALUES (?, ?, ?, ?)")
    csel = session.prepare("SELECT * FROM coll WHERE id = ?")
    for rid, vals in [(1, ([1, -2, 3, 2**31 - 1], {"x", "y", "zzz"}, {"a": 1, "b": -1})),
                      (2, ([], set(), {})), (3, (None, None, None))]:
        session.execute(cins, (rid,) + vals)
        row = session.execute(csel, (rid,)).one()
        for n, v in zip(("a_list", "a_set", "a_map"), vals):
            check(norm(n, getattr(row, n)) == norm(n, v), "collection %s row %d: got %r" % (n, rid, getattr(row, n)))


def after_restart_phase(session):
    session.set_keyspace(KS)
    check(session.execute("SELECT v FROM kv WHERE k = 'durable'").one().v == "yes", "row found after restart")
    rows = list(session.execute("SELECT seq FROM events WHERE tenant = 'acme' AND day = 20260101"))
    check(len(rows) == 19, "events found after restart (%d rows)" % len(rows))
    st = SimpleStatement("SELECT c FROM wide WHERE k = 1", fetch_size=1000)
    check(len(list(session.execute(st))) == 10000, "10,000 rows found after restart")
    ks = session.cluster.metadata.keyspaces.get(KS)
    check(ks is not None and "types" in ks.tables, "schema found after restart")
    session.execute("INSERT INTO kv (k, v) VALUES ('after', 'ok')")
    check(session.execute("SELECT v FROM kv WHERE k = 'after'").one().v == "ok", "writes after restart")


def main():
    cluster = Cluster([HOST], port=PORT)
    session = cluster.connect()
    try:
        lv = session.execute("SELECT release_version, cluster_name FROM system.local WHERE key = 'local'").one()
        check(lv is not None and lv.release_version, "system.local answers")
        if PHASE == "main":
            main_phase(session)
        else:
            after_restart_phase(session)
    finally:
        cluster.shutdown()
    print("python driver: %s phase OK (%d checks, protocol v%d)" % (PHASE, checks, cluster.protocol_version))


if __name__ == "__main__":
    main()

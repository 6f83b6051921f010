"""Launcher for the real-process cluster tests: N `ilion` nodes on 127.77.T.1 … 127.77.T.N
(one loopback address range per test, so tests and other people's nodes never share an
address), each with its own cassandra.yaml, data directories and log, started and stopped by
the test. Python 3 standard library only; the node binary is $ILION_BIN.

    with Cluster("agree", 3, subnet=2) as c:
        c.start_all()
        c.wait_native_all()
        c.admin(1, "/status")

Leaving the `with` block stops every node it started (SIGTERM, then SIGKILL after 10 s) and
removes the directory unless ILION_KEEP=1.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

NATIVE_PORT = 9042
STORAGE_PORT = 7000
ADMIN_PORT = 7199

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


def node_binary():
    b = os.environ.get("ILION_BIN")
    if b:
        return b
    for cand in ("build/ilion",):
        p = os.path.join(ROOT, cand)
        if os.path.exists(p):
            return p
    raise SystemExit("set ILION_BIN to the node binary")


def admin_binary():
    b = os.environ.get("ILION_ADMIN")
    if b:
        return b
    d = os.path.dirname(node_binary())
    p = os.path.join(d, "tools", "ilion-admin")
    return p if os.path.exists(p) else None


def _on_sigterm(signum, frame):
    # A timeout's SIGTERM unwinds the test, so `with Cluster(...)` stops the nodes.
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _on_sigterm)


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


class Cluster:
    def __init__(self, name, n, subnet, num_tokens=16, cluster_name=None, seeds=2,
                 extra_yaml="", commitlog_sync="periodic"):
        self.name = name
        self.n = n
        self.subnet = subnet
        self.num_tokens = num_tokens
        self.cluster_name = cluster_name or ("ilion-test-" + name)
        self.nseeds = seeds
        self.extra_yaml = extra_yaml
        self.commitlog_sync = commitlog_sync
        self.bin = node_binary()
        self.dir = tempfile.mkdtemp(prefix="ilion-cluster-%s-" % name)
        self.procs = {}
        self.logs = {}
        for i in range(1, n + 1):
            self.write_config(i)

    # ---- layout -------------------------------------------------------------------------
    def ip(self, i):
        return "127.77.%d.%d" % (self.subnet, i)

    def node_dir(self, i):
        return os.path.join(self.dir, "node%d" % i)

    def write_config(self, i, cluster_name=None, seeds=None):
        d = self.node_dir(i)
        os.makedirs(os.path.join(d, "conf"), exist_ok=True)
        seeds = seeds or ",".join(self.ip(k) for k in range(1, min(self.nseeds, self.n) + 1))
        y = """cluster_name: '%(cn)s'
num_tokens: %(nt)d
listen_address: %(ip)s
rpc_address: %(ip)s
native_transport_port: %(np)d
storage_port: %(sp)d
admin_http_port: %(ap)d
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "%(seeds)s"
endpoint_snitch: SimpleSnitch
data_file_directories:
  - %(d)s/data
commitlog_directory: %(d)s/commitlog
hints_directory: %(d)s/hints
saved_caches_directory: %(d)s/saved_caches
commitlog_sync: %(sync)s
commitlog_sync_period_in_ms: 1000
commitlog_sync_group_window_in_ms: 5
%(extra)s
""" % dict(cn=cluster_name or self.cluster_name, nt=self.num_tokens, ip=self.ip(i),
           np=NATIVE_PORT, sp=STORAGE_PORT, ap=ADMIN_PORT, seeds=seeds, d=d,
           extra=self.extra_yaml, sync=self.commitlog_sync)
        with open(os.path.join(d, "conf", "cassandra.yaml"), "w") as f:
            f.write(y)

    # ---- processes ----------------------------------------------------------------------
    def start(self, i, wait=True, timeout=30):
        assert i not in self.procs or self.procs[i].poll() is not None, "node%d running" % i
        d = self.node_dir(i)
        os.makedirs(os.path.join(d, "logs"), exist_ok=True)
        logf = open(os.path.join(d, "logs", "system.log"), "ab")
        self.logs[i] = os.path.join(d, "logs", "system.log")
        args = [self.bin, "--config", os.path.join(d, "conf", "cassandra.yaml")]
        if os.environ.get("ILION_LOG_LEVEL"):
            args += ["--log-level", os.environ["ILION_LOG_LEVEL"]]
        p = subprocess.Popen(args,
                             stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        logf.close()
        self.procs[i] = p
        if wait:
            self.wait_native(i, timeout)
        return p

    def start_all(self, wait=True):
        for i in range(1, self.n + 1):
            self.start(i, wait=False)
        if wait:
            for i in range(1, self.n + 1):
                self.wait_native(i)

    def alive(self, i):
        p = self.procs.get(i)
        return p is not None and p.poll() is None

    def wait_native(self, i, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            if not self.alive(i):
                raise AssertionError("node%d exited (rc %s); log %s:\n%s" % (
                    i, self.procs[i].returncode, self.logs.get(i), self.tail(i)))
            try:
                with socket.create_connection((self.ip(i), NATIVE_PORT), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("node%d: native port not open after %ss\n%s" % (i, timeout, self.tail(i)))

    def kill(self, i):
        p = self.procs.get(i)
        if p and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()

    def stop(self, i, timeout=15):
        p = self.procs.get(i)
        if not p or p.poll() is not None:
            return
        p.send_signal(signal.SIGCONT)
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def stop_all(self):
        for i in list(self.procs):
            p = self.procs[i]
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
        end = time.time() + 10
        for i in list(self.procs):
            p = self.procs[i]
            try:
                p.wait(max(0.1, end - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def tail(self, i, n=30):
        try:
            with open(self.logs[i], "rb") as f:
                return b"".join(f.readlines()[-n:]).decode("utf-8", "replace")
        except (OSError, KeyError):
            return ""

    def log_text(self, i):
        try:
            with open(self.logs[i], "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, KeyError):
            return ""

    # ---- admin interface ----------------------------------------------------------------
    def admin(self, i, path, method="GET", timeout=5):
        req = urllib.request.Request("http://%s:%d%s" % (self.ip(i), ADMIN_PORT, path),
                                     method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read().decode())

    def status(self, i):
        """{address: node dict} as node i sees the cluster."""
        return {nd["address"]: nd for nd in self.admin(i, "/status")["nodes"]}

    def wait_until(self, what, fn, timeout, step=0.25):
        """Polls fn() until it is true; returns the seconds it took, fails after timeout."""
        t0 = time.time()
        last = None
        while time.time() - t0 < timeout:
            try:
                last = fn()
                if last:
                    return time.time() - t0
            except (OSError, urllib.error.URLError, ValueError, KeyError) as e:
                last = e
            time.sleep(step)
        raise AssertionError("%s: not within %ss (last: %r)" % (what, timeout, last))

    # ---- context manager ----------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop_all()
        if exc[0] is not None:
            for i in self.logs:
                sys.stderr.write("---- node%d log tail ----\n%s\n" % (i, self.tail(i, 40)))
        if os.environ.get("ILION_KEEP") == "1":
            log("kept %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return False

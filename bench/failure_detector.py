#!/usr/bin/env python3
"""Failure detection on real node processes (issue #4), driven by bench/failure_detector.sh.

Starts 3 `ilion` nodes with the default gossip and failure detector settings (gossip every
1 s, phi_convict_threshold 8) on their own loopback addresses and unusual ports, then
  1. conviction: SIGKILLs node 3, polls the /status of nodes 1 and 2 every 100 ms until each
     shows it DOWN, restarts it and waits until every node shows every node UP; N times;
  2. false convictions: runs nproc+1 busy processes (`sha256sum /dev/zero`, normal priority)
     for M minutes while polling every node's /status once per second, counting every DOWN
     seen for a node that was never killed, the largest phi seen, and the "is now DOWN/UP"
     lines the node logs wrote during the load;
and stops everything it started however it ends. Python 3 standard library only.
See docs/failure-detection.md.
"""
import argparse
import calendar
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

NODES = (1, 2, 3)
VICTIM = 3


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


class Bench:
    def __init__(self, a):
        self.a = a
        self.out = a.out
        self.procs = {}       # node -> Popen
        self.load = []        # Popen of the busy processes
        self.pidfile = os.path.join(self.out, "pids")
        self.cluster_name = "ilion-fdbench"

    # ---- layout ---------------------------------------------------------------------------
    def ip(self, i):
        return "%s.%d" % (self.a.net, i)

    def node_dir(self, i):
        return os.path.join(self.out, "node%d" % i)

    def log_path(self, i):
        return os.path.join(self.node_dir(i), "system.log")

    def write_config(self, i):
        d = self.node_dir(i)
        os.makedirs(d, exist_ok=True)
        seeds = "%s,%s" % (self.ip(1), self.ip(2))
        # Nothing about gossip or the detector is set except the documented default
        # threshold, written out so the run says what it measured.
        y = """cluster_name: '%(cn)s'
num_tokens: 16
listen_address: %(ip)s
rpc_address: %(ip)s
native_transport_port: %(np)d
storage_port: %(sp)d
admin_http_port: %(ap)d
phi_convict_threshold: 8
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
commitlog_sync: periodic
commitlog_sync_period_in_ms: 10000
""" % dict(cn=self.cluster_name, ip=self.ip(i), np=self.a.native_port, sp=self.a.storage_port,
           ap=self.a.admin_port, seeds=seeds, d=d)
        with open(os.path.join(d, "cassandra.yaml"), "w") as f:
            f.write(y)

    def check_free(self):
        for i in NODES:
            for port in (self.a.native_port, self.a.storage_port, self.a.admin_port):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                # As the node (libuv) does: TIME-WAIT leftovers of a previous run do not count.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((self.ip(i), port))
                except OSError as e:
                    raise SystemExit("%s:%d is not free (%s); pick others with --net/--*-port"
                                     % (self.ip(i), port, e))
                finally:
                    s.close()

    def save_pids(self):
        # For the shell's exit trap, in case this process dies without cleaning up.
        pids = [p.pid for p in self.procs.values() if p.poll() is None]
        pids += [p.pid for p in self.load if p.poll() is None]
        tmp = self.pidfile + ".tmp"
        with open(tmp, "w") as f:
            f.write("".join("%d\n" % p for p in pids))
        os.replace(tmp, self.pidfile)

    # ---- processes ------------------------------------------------------------------------
    def start(self, i):
        assert i not in self.procs or self.procs[i].poll() is not None
        logf = open(self.log_path(i), "ab")
        p = subprocess.Popen([self.a.bin, "--config", os.path.join(self.node_dir(i), "cassandra.yaml")],
                             stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        logf.close()
        self.procs[i] = p
        self.save_pids()
        return p

    def kill(self, i):
        p = self.procs[i]
        p.send_signal(signal.SIGKILL)
        p.wait()
        self.save_pids()

    def start_load(self, n):
        for _ in range(n):
            self.load.append(subprocess.Popen(["sha256sum", "/dev/zero"], stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                              start_new_session=True))
        self.save_pids()

    def stop_load(self):
        for p in self.load:
            if p.poll() is None:
                p.kill()
            p.wait()
        self.load = []
        self.save_pids()

    def stop_all(self):
        self.stop_load()
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)     # a paused node cannot act on SIGTERM
                p.send_signal(signal.SIGTERM)
        end = time.time() + 10
        for p in self.procs.values():
            try:
                p.wait(max(0.1, end - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.save_pids()

    # ---- views ----------------------------------------------------------------------------
    def status(self, i, timeout=2.0):
        """{ip: node dict} as node i sees the cluster; raises OSError/ValueError on failure."""
        url = "http://%s:%d/status" % (self.ip(i), self.a.admin_port)
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return {nd["address"]: nd for nd in json.loads(r.read().decode())["nodes"]}

    def all_up(self):
        for i in NODES:
            try:
                st = self.status(i)
            except (OSError, ValueError, KeyError):
                return False
            if any(self.ip(k) not in st or st[self.ip(k)]["status"] != "UP" for k in NODES):
                return False
        return True

    def wait_all_up(self, timeout):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            for i in NODES:
                if self.procs[i].poll() is not None:
                    raise SystemExit("node%d exited (rc %s), see %s" % (i, self.procs[i].returncode,
                                                                       self.log_path(i)))
            if self.all_up():
                return time.monotonic() - t0
            time.sleep(0.1)
        raise SystemExit("not all nodes UP everywhere within %ss (logs in %s)" % (timeout, self.out))

    # ---- phase 1: conviction time ---------------------------------------------------------
    def watch_down(self, obs, victim, t0, res, deadline):
        """Polls node obs every 100 ms until it shows victim DOWN. res gets the elapsed time
        (response arrival - t0), the phi samples, and the failed polls."""
        vip = self.ip(victim)
        samples = []
        fails = 0
        while time.monotonic() - t0 < deadline:
            tick = time.monotonic()
            try:
                nd = self.status(obs, timeout=1.0).get(vip)
                now = time.monotonic()
                if nd is not None:
                    samples.append((now - t0, nd.get("phi", 0.0)))
                    if nd["status"] == "DOWN":
                        res[obs] = dict(t=now - t0, samples=samples, fails=fails)
                        return
            except (OSError, ValueError, KeyError):
                fails += 1
            time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
        res[obs] = dict(t=None, samples=samples, fails=fails)

    @staticmethod
    def mean_from_phi(samples):
        """While no heartbeat arrives phi = (t - last) / mean / ln10 grows linearly: the slope
        of a least-squares line through the samples gives the detector's mean interval."""
        pts = [(t, p) for t, p in samples if p > 0.5]
        if len(pts) < 5:
            return None
        n = len(pts)
        mt = sum(t for t, _ in pts) / n
        mp = sum(p for _, p in pts) / n
        sxx = sum((t - mt) ** 2 for t, _ in pts)
        sxy = sum((t - mt) * (p - mp) for t, p in pts)
        if sxx <= 0 or sxy <= 0:
            return None
        slope = sxy / sxx
        last_arrival = mt - mp / slope           # where the line crosses phi = 0
        return 1.0 / (slope * 2.302585093), last_arrival

    def log_times(self, i, start_off, pattern):
        """Wall-clock times (epoch s) of log lines of node i after byte offset start_off that
        match pattern."""
        out = []
        try:
            with open(self.log_path(i), "rb") as f:
                f.seek(start_off)
                for line in f.read().decode("utf-8", "replace").splitlines():
                    if re.search(pattern, line):
                        m = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z", line)
                        if m:
                            y, mo, d, h, mi, s, ms = (int(x) for x in m.groups())
                            out.append(calendar.timegm((y, mo, d, h, mi, s)) + ms / 1000.0)
        except OSError:
            pass
        return out

    def log_size(self, i):
        try:
            return os.path.getsize(self.log_path(i))
        except OSError:
            return 0

    def conviction_phase(self):
        a = self.a
        down = []      # (run, observer, seconds by poll, seconds by log, est. mean interval)
        up = []
        vpat = re.escape(self.ip(VICTIM)) + r"(:\d+)?\b.*is now "
        for run in range(1, a.kills + 1):
            log("run %d: letting gossip settle %ds before the kill" % (run, a.settle))
            time.sleep(a.settle)
            if not self.all_up():
                raise SystemExit("run %d: not every node UP before the kill" % run)
            offs = {i: self.log_size(i) for i in NODES}
            res = {}
            observers = [i for i in NODES if i != VICTIM]
            t0 = time.monotonic()
            ths = [threading.Thread(target=self.watch_down, args=(o, VICTIM, t0, res, a.timeout))
                   for o in observers]
            for th in ths:
                th.start()
            # Let each observer take a sample or two of phi before the kill.
            time.sleep(0.25)
            tk = time.monotonic()
            wallk = time.time()
            self.kill(VICTIM)
            for th in ths:
                th.join()
            for o in observers:
                r = res[o]
                if r["t"] is None:
                    raise SystemExit("run %d: node%d never marked node%d DOWN within %ss"
                                     % (run, o, VICTIM, a.timeout))
                t_poll = r["t"] - (tk - t0)
                lt = [x for x in self.log_times(o, offs[o], vpat + "DOWN") if x >= wallk - 0.5]
                t_log = lt[0] - wallk if lt else None
                est = self.mean_from_phi([(t - (tk - t0), p) for t, p in r["samples"]])
                mean_iv, last = est if est else (None, None)
                down.append(dict(run=run, obs=o, poll=t_poll, log=t_log, mean=mean_iv,
                                 last=last, fails=r["fails"]))
                log("run %d: node%d marks node%d DOWN after %.2f s (poll), %s (its log); "
                    "mean interval from phi slope %s, last heartbeat news at %s from the kill"
                    % (run, o, VICTIM, t_poll, "%.3f s" % t_log if t_log is not None else "-",
                       "%.0f ms" % (mean_iv * 1000) if mean_iv else "-",
                       "%+.2f s" % last if last is not None else "-"))
            # Restart and wait until every node shows every node UP.
            self.start(VICTIM)
            t_up = self.wait_all_up(a.timeout)
            up.append(t_up)
            log("run %d: node%d restarted, UP everywhere after %.2f s" % (run, VICTIM, t_up))
        return down, up

    # ---- phase 3 (optional): how long a stall must be to convict ---------------------------
    def pause_phase(self):
        """SIGSTOPs node 3 for each length in --pauses (a GC pause, a frozen VM, a blocked event
        loop) and reports whether nodes 1 and 2 convicted it before the SIGCONT, and whether node
        3, back, wrongly convicted anyone (its own silence is not theirs)."""
        a = self.a
        rows = []
        observers = [i for i in NODES if i != VICTIM]
        for plen in a.pauses:
            log("pause %.1f s: letting gossip settle %ds" % (plen, a.settle))
            time.sleep(a.settle)
            if not self.all_up():
                raise SystemExit("pause %.1f s: not every node UP before it" % plen)
            offs = {i: self.log_size(i) for i in NODES}
            res = {}
            t0 = time.monotonic()
            ths = [threading.Thread(target=self.watch_down, args=(o, VICTIM, t0, res, plen))
                   for o in observers]
            p = self.procs[VICTIM]
            p.send_signal(signal.SIGSTOP)
            for th in ths:
                th.start()
            try:
                time.sleep(max(0.0, plen - (time.monotonic() - t0)))
            finally:
                p.send_signal(signal.SIGCONT)
            tc = time.monotonic() - t0
            for th in ths:
                th.join()
            lag = time.monotonic() - t0 - tc      # the watchers stop at their next poll
            t_up = lag + self.wait_all_up(a.timeout)
            time.sleep(3)       # let the resumed node run a few rounds of its own
            own = self.log_lines(VICTIM, offs[VICTIM], r"is now DOWN")
            guard = self.log_lines(VICTIM, offs[VICTIM], r"local pause of")
            conv = {o: res[o]["t"] for o in observers}
            rows.append(dict(plen=tc, conv=conv, up=t_up, own=len(own), guard=len(guard)))
            log("pause %.1f s: %s; UP everywhere %.2f s after SIGCONT; node3 after it: %d "
                "'is now DOWN', %d 'local pause'"
                % (tc, ", ".join("node%d %s" % (o, "DOWN after %.2f s" % t if t is not None
                                                else "never DOWN") for o, t in sorted(conv.items())),
                   t_up, len(own), len(guard)))
        return rows

    # ---- phase 2: false convictions under CPU load ----------------------------------------
    def load_phase(self):
        a = self.a
        nload = (os.cpu_count() or 1) + 1
        log("letting gossip settle %ds before the load" % a.settle)
        time.sleep(a.settle)
        if not self.all_up():
            raise SystemExit("not every node UP before the load")
        offs = {i: self.log_size(i) for i in NODES}
        rounds0 = {i: self.gossip_rounds(i) for i in NODES}
        la0 = os.getloadavg()
        log("load: %d x sha256sum /dev/zero for %.1f min, polling every node's /status each second"
            % (nload, a.load_minutes))
        self.start_load(nload)
        t0 = time.monotonic()
        dur = a.load_minutes * 60.0
        polls = fails = down_seen = 0
        episodes = []                      # (t, observer, peer) of each UP -> DOWN seen by poll
        last = {}                          # (obs, peer) -> last status seen
        maxphi = {}                        # (obs, peer) -> max phi seen
        slow = 0                           # polls that took over 1 s
        maxlat = 0.0
        loadavg = []
        nextt = t0
        try:
            while time.monotonic() - t0 < dur:
                for o in NODES:
                    if self.procs[o].poll() is not None:
                        raise SystemExit("node%d exited during the load (rc %s), see %s"
                                         % (o, self.procs[o].returncode, self.log_path(o)))
                    polls += 1
                    q0 = time.monotonic()
                    try:
                        st = self.status(o, timeout=5.0)
                    except (OSError, ValueError, KeyError):
                        fails += 1
                        continue
                    lat = time.monotonic() - q0
                    maxlat = max(maxlat, lat)
                    slow += lat > 1.0
                    for k in NODES:
                        if k == o:
                            continue
                        nd = st.get(self.ip(k))
                        s = nd["status"] if nd else "MISSING"
                        if nd:
                            maxphi[(o, k)] = max(maxphi.get((o, k), 0.0), nd.get("phi", 0.0))
                        if s != "UP":
                            down_seen += 1
                            if last.get((o, k)) == "UP" or (o, k) not in last:
                                episodes.append((time.monotonic() - t0, o, k))
                                log("FALSE CONVICTION: node%d sees node%d %s (t=%.1f s, phi %.2f)"
                                    % (o, k, s, time.monotonic() - t0, nd.get("phi", 0) if nd else 0))
                        last[(o, k)] = s
                el = time.monotonic() - t0
                if el >= 60.0 * (len(loadavg) + 1):
                    loadavg.append(os.getloadavg()[0])
                    log("load %.0f s: polls %d, failed %d, DOWN seen %d, load average %.2f"
                        % (el, polls, fails, down_seen, loadavg[-1]))
                nextt += 1.0
                time.sleep(max(0.0, nextt - time.monotonic()))
        finally:
            self.stop_load()
        la1 = os.getloadavg()
        el = time.monotonic() - t0
        rounds = {}
        for i in NODES:
            r1 = self.gossip_rounds(i)
            if r1 is not None and rounds0[i] is not None:
                rounds[i] = (r1 - rounds0[i]) / el
        # What the nodes themselves logged during the load.
        trans = {}
        pauses = {}
        for i in NODES:
            for k in NODES:
                if k != i:
                    pat = re.escape(self.ip(k)) + r"(:\d+)?\b.*is now (UP|DOWN)"
                    trans[(i, k)] = self.log_lines(i, offs[i], pat)
            pauses[i] = self.log_lines(i, offs[i], r"local pause of")
        return dict(nload=nload, polls=polls, fails=fails, down_seen=down_seen, episodes=episodes,
                    maxphi=maxphi, slow=slow, maxlat=maxlat, trans=trans, pauses=pauses,
                    la0=la0, la1=la1, loadavg=loadavg, rounds=rounds)

    def gossip_rounds(self, i):
        url = "http://%s:%d/metrics" % (self.ip(i), self.a.admin_port)
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                for ln in r.read().decode().splitlines():
                    if ln.startswith("ilion_gossip_rounds_total"):
                        return float(ln.split()[-1])
        except (OSError, ValueError):
            pass
        return None

    def log_lines(self, i, start_off, pattern):
        try:
            with open(self.log_path(i), "rb") as f:
                f.seek(start_off)
                return [ln for ln in f.read().decode("utf-8", "replace").splitlines()
                        if re.search(pattern, ln)]
        except OSError:
            return []

    # ---- main -----------------------------------------------------------------------------
    def run(self):
        a = self.a
        self.check_free()
        for i in NODES:
            self.write_config(i)
        log("3 nodes on %s.1-3, native %d, storage %d, admin %d; files in %s"
            % (a.net, a.native_port, a.storage_port, a.admin_port, self.out))
        for i in NODES:
            self.start(i)
        t = self.wait_all_up(60)
        log("all 3 nodes see each other UP after %.1f s" % t)
        down, up = self.conviction_phase() if a.kills > 0 else ([], [])
        ld = self.load_phase() if a.load_minutes > 0 else None
        pz = self.pause_phase() if a.pauses else []
        self.summary(down, up, ld, pz)
        return 0 if (ld is None or not ld["episodes"]) else 3

    def summary(self, down, up, ld, pz):
        def mmm(xs):
            xs = [x for x in xs if x is not None]
            if not xs:
                return "-"
            return "min %.2f  median %.2f  max %.2f  (n=%d)" % (min(xs), statistics.median(xs),
                                                                max(xs), len(xs))
        print("\n==== failure detection summary (3 nodes, gossip 1 s, phi_convict_threshold 8) ====")
        print("host: %d CPUs, load average at the end %.2f" % (os.cpu_count() or 0, os.getloadavg()[0]))
        if down:
            print("SIGKILL -> DOWN, s (seen by 100 ms /status polls): %s" % mmm([d["poll"] for d in down]))
            print("SIGKILL -> DOWN, s (the observer's 'is now DOWN' log line): %s"
                  % mmm([d["log"] for d in down]))
            print("mean heartbeat interval the detector used, ms (from phi slope): %s"
                  % mmm([d["mean"] * 1000 if d["mean"] else None for d in down]))
            print("expected silence before conviction = 8*ln10*mean: %s"
                  % mmm([8 * 2.302585093 * d["mean"] if d["mean"] else None for d in down]))
            print("last heartbeat news relative to the kill, s (negative: before it): %s"
                  % mmm([d["last"] for d in down]))
            print("silence the detector waited (DOWN log line - last heartbeat news), s: %s"
                  % mmm([d["log"] - d["last"] if d["log"] is not None and d["last"] is not None
                         else None for d in down]))
            for d in down:
                print("  run %d node%d: poll %.2f s  log %s  mean %s  last hb news %s"
                      % (d["run"], d["obs"], d["poll"],
                         "%.3f s" % d["log"] if d["log"] is not None else "-",
                         "%.0f ms" % (d["mean"] * 1000) if d["mean"] else "-",
                         "%+.2f s" % d["last"] if d["last"] is not None else "-"))
        if up:
            print("restart -> UP on every node, s: %s" % mmm(up))
        if ld:
            print("CPU load: %d x 'sha256sum /dev/zero' for %.1f min; load average %.2f before, "
                  "%.2f at the end; per minute: %s"
                  % (ld["nload"], self.a.load_minutes, ld["la0"][0], ld["la1"][0],
                     " ".join("%.1f" % x for x in ld["loadavg"])))
            print("/status polls: %d (%d failed, %d slower than 1 s, slowest %.2f s)"
                  % (ld["polls"], ld["fails"], ld["slow"], ld["maxlat"]))
            print("gossip rounds per second under load: %s"
                  % ", ".join("node%d %.3f" % (i, r) for i, r in sorted(ld["rounds"].items())))
            print("max phi seen under load (observer->peer): %s"
                  % ", ".join("node%d->node%d %.2f" % (o, k, p) for (o, k), p in sorted(ld["maxphi"].items())))
            print("FALSE CONVICTIONS (polls): %d episodes, %d DOWN observations"
                  % (len(ld["episodes"]), ld["down_seen"]))
            for t, o, k in ld["episodes"]:
                print("  t=%.1f s: node%d saw node%d DOWN" % (t, o, k))
            ntrans = sum(len(v) for v in ld["trans"].values())
            ndown = sum(1 for v in ld["trans"].values() for ln in v if ln.endswith("DOWN"))
            print("FALSE CONVICTIONS (node logs): %d 'is now DOWN', %d UP/DOWN transitions in all"
                  % (ndown, ntrans))
            for (i, k), lines in sorted(ld["trans"].items()):
                for ln in lines:
                    print("  node%d: %s" % (i, ln))
            npause = sum(len(v) for v in ld["pauses"].values())
            print("local pauses logged under load: %d" % npause)
            for i, lines in sorted(ld["pauses"].items()):
                for ln in lines:
                    print("  node%d: %s" % (i, ln))
        if pz:
            print("SIGSTOP of node3 (stall length -> convicted by node1/node2 during the stall?):")
            for r in pz:
                print("  %5.1f s: %s; UP again %.2f s after SIGCONT; node3 then logged %d 'is now "
                      "DOWN', %d 'local pause'"
                      % (r["plen"], ", ".join("node%d %s" % (o, "DOWN at %.2f s" % t if t is not None
                                                             else "up") for o, t in sorted(r["conv"].items())),
                         r["up"], r["own"], r["guard"]))
        print("logs and configs: %s" % self.out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the ilion node binary")
    ap.add_argument("--out", required=True, help="directory for node files and logs")
    ap.add_argument("--load-minutes", type=float, default=10.0)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--settle", type=int, default=20, help="seconds of steady gossip before each kill and the load")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--pauses", type=lambda v: [float(x) for x in v.split(",") if x], default=[],
                    help="comma-separated SIGSTOP lengths in seconds for node 3, after the load "
                         "(default none)")
    ap.add_argument("--net", default="127.0.5", help="first three octets of the node addresses")
    ap.add_argument("--native-port", type=int, default=19342)
    ap.add_argument("--storage-port", type=int, default=17300)
    ap.add_argument("--admin-port", type=int, default=17399)
    a = ap.parse_args()
    b = Bench(a)

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        return b.run()
    finally:
        b.stop_all()


if __name__ == "__main__":
    sys.exit(main())

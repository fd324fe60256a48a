#!/usr/bin/env python3
"""What the archive's metadata costs: store requests by kind (counted by the store itself,
versitygw's access log), wall and CPU time, for the situations of issue 13, with two binaries
side by side in one run (a baseline and the one under test).

    benches/metadata_cost.py [--base OLD_SEGVAULT] [--only steady,idle,ranges,backlog,one]

Env: SEGVAULT_BIN (the binary under test; default: build target/release/segvault),
     P_LIST (default "100,1000,5000"), R_LIST (default "10,1000,10000"),
     IDLE_SECONDS (default 180), BENCH_WORK (scratch dir; default a new dir, removed after).

Synthetic log dirs come from `harness wide` (clones of a real fixture segment; `segvault
verify` clean). Each binary gets stores of its own under one versitygw. Output: one line per
measurement on stdout, `scenario binary key=value ...`, and a summary table at the end.
CPU is user + system time: of the agent process between two pass counts (from /proc), and
of one-shot commands (their rusage).
"""
import argparse
import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
CLK = os.sysconf("SC_CLK_TCK")
KINDS = {
    "s3_ListObjectsV2": "LIST", "s3_ListObjects": "LIST", "s3_GetObject": "GET",
    "s3_HeadObject": "HEAD", "s3_PutObject": "PUT", "s3_DeleteObject": "DELETE",
    "s3_DeleteObjects": "DELETE",
}
RESULTS = []


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def build(args):
    subprocess.run(["cargo", "build", "--release"] + args, cwd=ROOT, check=True,
                   stdout=sys.stderr)


class S3:
    """versitygw on loopback (through `harness s3`), with its access log."""

    def __init__(self, harness, work):
        self.proc = subprocess.Popen([harness, "s3", "--bucket", "bench"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.env = {}
        self.access_log = None
        for line in self.proc.stdout:
            if line.startswith("export "):
                k, v = line[len("export "):].strip().split("=", 1)
                self.env[k] = v
            elif line.startswith("# access log"):
                self.access_log = line.split(": ", 1)[1].strip()
            elif line.startswith("# buckets"):
                break
        assert self.access_log and "AWS_ENDPOINT_URL" in self.env, "harness s3 did not start"
        self.pos = 0
        self.totals = collections.Counter()

    def _read(self):
        """Counts the lines logged since the last read (the log is only ever appended to)."""
        with open(self.access_log) as f:
            f.seek(self.pos)
            chunk = f.read()
        done = chunk.rfind("\n") + 1
        self.pos += len(chunk[:done].encode())
        for l in chunk[:done].splitlines():
            if l.strip() and not l.startswith("log starts"):
                op = l.split("] ", 1)[1].split()[3]
                self.totals[KINDS.get(op, op)] += 1

    def mark(self):
        self._read()
        return collections.Counter(self.totals)

    def since(self, mark):
        self._read()
        c = collections.Counter(self.totals)
        c.subtract(mark)
        return collections.Counter({k: v for k, v in c.items() if v})

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def metrics(port):
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    except OSError:
        return None
    out = {}
    for l in body.decode().splitlines():
        if l and not l.startswith("#"):
            k, v = l.split(" ", 1)
            out[k] = float(v)
    return out


def poll(what, f, within=1800):
    deadline = time.time() + within
    while time.time() < deadline:
        v = f()
        if v is not None:
            return v
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for l in f:
            if l.startswith("VmHWM:"):
                return int(l.split()[1])
    return 0


def run(cmd, env):
    """Runs a one-shot command under /usr/bin/time: (wall s, cpu s, max RSS KiB, exit code,
    stdout, stderr)."""
    with tempfile.NamedTemporaryFile() as t:
        t0 = time.time()
        p = subprocess.run(["/usr/bin/time", "-o", t.name, "-f", "%U %S %M", *cmd], env=env,
                           capture_output=True)
        wall = time.time() - t0
        last = open(t.name).read().strip().splitlines()[-1].split()
        user, system, rss = float(last[0]), float(last[1]), int(last[2])
        return wall, user + system, rss, p.returncode, p.stdout, p.stderr


def one_shot(s3, env, label, name, cmd, per=None):
    """Runs `cmd` once and records its requests (by kind), wall, CPU and peak RSS; with
    `per`, also the requests per unit (per range)."""
    m0 = s3.mark()
    wall, cpu, rss, rc, out, err = run(cmd, env)
    reqs = s3.since(m0)
    extra = {} if per is None else {"per_range": round(sum(reqs.values()) / per, 2)}
    record(label, name, rc=rc, requests=sum(reqs.values()), by_kind=dict(reqs),
           wall_s=round(wall, 2), cpu_s=round(cpu, 2), max_rss_mib=round(rss / 1024, 1),
           **extra)
    if rc != 0:
        log(err.decode()[-2000:])


def record(scenario, binary, **kv):
    RESULTS.append((scenario, binary, kv))
    print(scenario, binary, " ".join(f"{k}={v}" for k, v in kv.items()), flush=True)


def wide(harness, work, name, topics, partitions, segments):
    out = os.path.join(work, name)
    if not os.path.exists(out):
        subprocess.run([harness, "wide", "--out", out, "--topics", str(topics), "--partitions",
                        str(partitions), "--segments", str(segments), "--fixture",
                        os.path.join(ROOT, "fixtures/kafka-4.3.1/clean")],
                       check=True, stdout=subprocess.DEVNULL)
    return out


class Agent:
    def __init__(self, binary, logdir, store, env, work, extra=()):
        self.port = free_port()
        self.err = open(os.path.join(work, "agent.err"), "w")
        self.proc = subprocess.Popen(
            [binary, "agent", "--log-dir", logdir, "--store", store, "--metrics-addr",
             f"127.0.0.1:{self.port}", "--log-format", "json", *extra],
            env=env, stdout=subprocess.DEVNULL, stderr=self.err)

    def metric(self, name):
        m = metrics(self.port)
        if self.proc.poll() is not None:
            raise SystemExit(f"agent exited {self.proc.returncode}")
        return None if m is None else m.get(name)

    def wait(self, name, at_least):
        return poll(f"{name} >= {at_least}",
                    lambda: (lambda v: v if v is not None and v >= at_least else None)(
                        self.metric(name)))

    def cpu(self):
        return proc_cpu(self.proc.pid)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)


def steady(binaries, harness, s3, env, work, p):
    """A pass with nothing new, P partitions of one closed segment each."""
    logdir = wide(harness, work, f"steady-{p}", p // 5 or 1, min(p, 5), 1)
    for name, binary in binaries:
        store = f"s3://bench/{name}-steady-{p}"
        a = Agent(binary, logdir, store, env, work, ["--rescan-interval", "3"])
        a.wait("segvault_uploaded_segments_total", p)
        passes = a.wait("segvault_passes_total", 1)
        passes = a.wait("segvault_passes_total", passes + 1)
        m0, c0, t0 = s3.mark(), a.cpu(), time.time()
        passes2 = a.wait("segvault_passes_total", passes + 3)
        n = passes2 - passes
        reqs = s3.since(m0)
        cpu = (a.cpu() - c0) / n
        record(f"steady-pass P={p}", name, requests=sum(reqs.values()) / n,
               by_kind=dict((k, v / n) for k, v in reqs.items()), cpu_s=round(cpu, 3),
               rss_mib=round(proc_rss_kib(a.proc.pid) / 1024, 1))
        a.stop()


def idle(binaries, harness, s3, env, work, p, seconds):
    """The agent beside an idle broker that rewrites its checkpoint every 5 s."""
    logdir = wide(harness, work, f"steady-{p}", p // 5 or 1, min(p, 5), 1)
    cp = os.path.join(logdir, "replication-offset-checkpoint")
    for name, binary in binaries:
        store = f"s3://bench/{name}-idle-{p}"
        a = Agent(binary, logdir, store, env, work)
        a.wait("segvault_uploaded_segments_total", p)
        a.wait("segvault_passes_total", 1)
        m0, c0, t0 = s3.mark(), a.cpu(), time.time()
        while time.time() - t0 < seconds:
            with open(cp, "rb") as f:
                data = f.read()
            with open(cp + ".tmp", "wb") as f:
                f.write(data)
            os.rename(cp + ".tmp", cp)
            time.sleep(5)
        minutes = (time.time() - t0) / 60
        reqs = s3.since(m0)
        record(f"idle P={p} checkpoint every 5 s", name,
               requests_per_min=round(sum(reqs.values()) / minutes, 1),
               by_kind=dict(reqs), cpu_s_per_min=round((a.cpu() - c0) / minutes, 3),
               passes=a.metric("segvault_passes_total"))
        a.stop()


def reads(name, binary, s3, env, work, store, label, topic, partition, topic_id):
    """ls, restore --dry-run and restore of one partition."""
    to = os.path.join(work, f"restore-{name}")
    shutil.rmtree(to, ignore_errors=True)
    sel = ["--topic", f"^{topic}$", "--partition", str(partition)]
    ls = [binary, "ls", store, "--format", "json"]
    if not supports_ls_filters(binary):
        sel_ls, what_ls = [], "ls (whole archive: this binary's ls has no --topic)"
    else:
        sel_ls, what_ls = sel, "ls --topic --partition"
    for what, cmd in [
        (what_ls, ls + sel_ls),
        ("restore --dry-run", [binary, "restore", store, "--to", to, "--mode", "new-cluster",
                               "--topic-id", topic_id, "--dry-run", *sel]),
        ("restore", [binary, "restore", store, "--to", to, "--mode", "new-cluster",
                     "--topic-id", topic_id, *sel]),
    ]:
        one_shot(s3, env, f"{label} {what}", name, cmd)


def supports_ls_filters(binary):
    out = subprocess.run([binary, "ls", "--help"], capture_output=True, text=True).stdout
    return "--topic" in out


def topic_id_of(logdir, topic, partition):
    with open(os.path.join(logdir, f"{topic}-{partition}", "partition.metadata")) as f:
        return f.read().split("topic_id:")[1].strip()


def ranges(binaries, harness, s3, env, work, r):
    """One partition with R archived ranges: the backlog, a pass, ls and restores."""
    logdir = wide(harness, work, f"ranges-{r}", 1, 1, r)
    topic = "wide-00000"
    for name, binary in binaries:
        store = f"s3://bench/{name}-ranges-{r}"
        one_shot(s3, env, f"backlog R={r}", name,
                 [binary, "archive", "--once", "--log-dir", logdir, "--store", store], per=r)
        a = Agent(binary, logdir, store, env, work, ["--rescan-interval", "3"])
        passes = a.wait("segvault_passes_total", 1)
        m0, c0 = s3.mark(), a.cpu()
        passes2 = a.wait("segvault_passes_total", passes + 2)
        n = passes2 - passes
        reqs = s3.since(m0)
        record(f"R={r} steady pass", name, requests=sum(reqs.values()) / n,
               by_kind=dict((k, v / n) for k, v in reqs.items()),
               cpu_s=round((a.cpu() - c0) / n, 3))
        a.stop()
        reads(name, binary, s3, env, work, store, f"R={r}", topic, 0,
              topic_id_of(logdir, topic, 0))


def one_of_many(binaries, harness, s3, env, work, p):
    """ls of one topic and a restore of one partition from the P-partition archive."""
    logdir = wide(harness, work, f"steady-{p}", p // 5 or 1, min(p, 5), 1)
    topic = "wide-00007"
    for name, binary in binaries:
        store = f"s3://bench/{name}-one-{p}"
        one_shot(s3, env, f"P={p} first archive (archive --once)", name,
                 [binary, "archive", "--once", "--log-dir", logdir, "--store", store])
        if supports_ls_filters(binary):
            one_shot(s3, env, f"P={p} ls --topic (one topic of 5 partitions)", name,
                     [binary, "ls", store, "--format", "json", "--topic", f"^{topic}$"])
        reads(name, binary, s3, env, work, store, f"P={p} one partition", topic, 3,
              topic_id_of(logdir, topic, 3))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", help="a baseline segvault binary, measured beside the other")
    ap.add_argument("--only", default="steady,idle,ranges,one")
    args = ap.parse_args()
    binary = os.environ.get("SEGVAULT_BIN")
    if not binary:
        build(["--bin", "segvault"])
        binary = os.path.join(TARGET, "release/segvault")
    build(["-p", "segvault-harness", "--bin", "harness"])
    harness = os.path.join(TARGET, "release/harness")
    binaries = ([("base", args.base)] if args.base else []) + [("new", binary)]
    work = os.environ.get("BENCH_WORK") or tempfile.mkdtemp(prefix="segvault-meta.")
    os.makedirs(work, exist_ok=True)
    s3 = S3(harness, work)
    env = dict(os.environ, **s3.env)
    env.pop("RUST_LOG", None)
    only = set(args.only.split(","))
    ps = [int(x) for x in os.environ.get("P_LIST", "100,1000,5000").split(",")]
    rs = [int(x) for x in os.environ.get("R_LIST", "10,1000,10000").split(",")]
    log(f"load average {open('/proc/loadavg').read().split()[:3]}; {os.cpu_count()} cores")
    try:
        if "steady" in only:
            for p in ps:
                steady(binaries, harness, s3, env, work, p)
        if "one" in only:
            one_of_many(binaries, harness, s3, env, work, max(ps))
        if "idle" in only:
            idle(binaries, harness, s3, env, work, max(ps),
                 float(os.environ.get("IDLE_SECONDS", "180")))
        if "ranges" in only:
            for r in rs:
                ranges(binaries, harness, s3, env, work, r)
    finally:
        s3.stop()
        if not os.environ.get("BENCH_WORK"):
            shutil.rmtree(work, ignore_errors=True)
    log(f"load average after {open('/proc/loadavg').read().split()[:3]}")
    print("\n| situation | " + " | ".join(n for n, _ in binaries) + " |")
    print("|---|" + "---|" * len(binaries))
    rows = collections.OrderedDict()
    for scen, name, kv in RESULTS:
        rows.setdefault(scen, {})[name] = kv
    for scen, per in rows.items():
        cells = []
        for n, _ in binaries:
            kv = per.get(n, {})
            cells.append(", ".join(f"{k} {v}" for k, v in kv.items() if k != "by_kind")
                         + (f" ({kv['by_kind']})" if "by_kind" in kv else ""))
        print(f"| {scen} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

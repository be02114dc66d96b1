#!/usr/bin/env python3
"""Soak benchmark (issue 10): steady admin-override opens against 1,000
simulated locker banks for a quarter of an hour, then every command's final
state, the server's memory over time and the database bytes per open.

    cargo build --release -p lockstep -p locker-sim
    python3 server/sim/soak.py                        # SQLite, embedded broker
    python3 server/sim/soak.py --postgres postgres://postgres@127.0.0.1:5432

It starts `lockstep serve` (release, embedded MQTT broker) on a fresh
database, provisions the lockers with `locker-sim --doors`, sends
`POST /api/v1/compartments/{random}/open` at --rate per second for
--minutes, waits the open timeout plus a margin, and reads the outcome from
the database. The baselines it names: RSS at the end of warm-up (the drift
over the last ten minutes is measured against it) and the 15.0 KB per open
that issue 10 measured on the main of that day. Exits non-zero when a
command is stuck, a panic is logged, the workers reported a stall, or the
RSS drifted by 5 % or more over the last ten minutes.
Standard library only.
"""

import argparse
import collections
import http.client
import json
import os
import queue
import random
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPEN_TIMEOUT_S = 20
MARGIN_S = 10
OLD_BYTES_PER_OPEN = 15_000  # issue 10: 441 MB for 30,000 opens


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


class Database:
    """The server's database, read directly (SQLite file or psql)."""

    def __init__(self, sqlite_path=None, pg_url=None):
        self.sqlite_path, self.pg_url = sqlite_path, pg_url

    def rows(self, sql):
        if self.sqlite_path:
            with sqlite3.connect(self.sqlite_path, timeout=30) as c:
                return c.execute(sql).fetchall()
        out = subprocess.run(
            ["psql", self.pg_url, "-AtF", "\t", "-c", sql],
            check=True, capture_output=True, text=True,
        ).stdout
        return [tuple(line.split("\t")) for line in out.splitlines() if line]

    def scalar(self, sql):
        rows = self.rows(sql)
        return rows[0][0] if rows else None

    def size_bytes(self):
        if self.sqlite_path:
            with sqlite3.connect(self.sqlite_path, timeout=30) as c:
                c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            total = 0
            for suffix in ("", "-wal", "-shm"):
                p = self.sqlite_path + suffix
                if os.path.exists(p):
                    total += os.path.getsize(p)
            return total
        return int(self.scalar("SELECT pg_database_size(current_database())"))

    def tables(self):
        """Bytes per table (with its indexes)."""
        if self.sqlite_path:
            try:
                rows = self.rows(
                    "SELECT coalesce(i.tbl_name, d.name), SUM(d.pgsize) FROM dbstat d "
                    "LEFT JOIN sqlite_master i ON i.name = d.name GROUP BY 1 ORDER BY 2 DESC"
                )
            except sqlite3.Error:
                return []
        else:
            rows = self.rows(
                "SELECT relname, pg_total_relation_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 2 DESC"
            )
        return [(name, int(size)) for name, size in rows]


def wait_for(what, check, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.5)
    raise SystemExit(f"soak: gave up waiting for {what} after {timeout} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=15)
    ap.add_argument("--warmup-minutes", type=float, default=5)
    ap.add_argument("--rate", type=float, default=50, help="opens per second")
    ap.add_argument("--lockers", type=int, default=1000)
    ap.add_argument("--compartments", type=int, default=4)
    ap.add_argument("--postgres", help="a PostgreSQL server URL (a fresh database is made on it)")
    ap.add_argument("--bin", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="lockstep-soak.")
    http_port, mqtt_port = free_port(), free_port()
    env = dict(os.environ)
    env.update({
        "LOCKSTEP_DATA_DIR": os.path.join(work, "data"),
        "LOCKSTEP_ADDR": f"127.0.0.1:{http_port}",
        "LOCKSTEP_ADMIN_EMAIL": "admin@soak.test",
        "LOCKSTEP_ADMIN_PASSWORD": "soak-admin-password",
        "MQTT_EMBEDDED_ADDR": f"127.0.0.1:{mqtt_port}",
        "LOCKSTEP_OPEN_TIMEOUT_SECS": str(OPEN_TIMEOUT_S),
        "RUST_LOG": env.get("RUST_LOG", "warn"),
    })
    env.pop("MQTT_URL", None)
    pg_db = None
    if args.postgres:
        base = args.postgres.rstrip("/")
        pg_db = f"lockstep_soak_{os.getpid()}"
        subprocess.run(["psql", f"{base}/postgres", "-qc", f"CREATE DATABASE {pg_db}"], check=True)
        env["DATABASE_URL"] = f"{base}/{pg_db}"
        db = Database(pg_url=env["DATABASE_URL"])
        backend = "PostgreSQL"
    else:
        env.pop("DATABASE_URL", None)
        db = Database(sqlite_path=os.path.join(work, "data", "lockstep.db"))
        backend = "SQLite"
    os.makedirs(env["LOCKSTEP_DATA_DIR"], exist_ok=True)
    lockstep = os.path.join(args.bin, "lockstep")
    procs = []

    def cleanup():
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        if pg_db and not args.keep:
            subprocess.run(["psql", f"{args.postgres.rstrip('/')}/postgres", "-qc",
                            f"DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)"], check=False)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}" + (f"; database kept: {pg_db}" if pg_db else ""))

    try:
        return run(args, env, db, backend, lockstep, work, http_port, mqtt_port, procs)
    finally:
        cleanup()


def run(args, env, db, backend, lockstep, work, http_port, mqtt_port, procs):
    subprocess.run([lockstep, "migrate"], env=env, check=True, capture_output=True)
    log_path = os.path.join(work, "server.log")
    server = subprocess.Popen([lockstep, "serve"], env=env, stdout=open(log_path, "w"),
                              stderr=subprocess.STDOUT)
    procs.append(server)

    def ready():
        c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=2)
        c.request("GET", "/readyz")
        return c.getresponse().status == 200

    wait_for("the server", ready, 60)
    cli = lambda *a: subprocess.run([lockstep, *a], env=env, check=True, capture_output=True,
                                    text=True).stdout.strip().splitlines()[-1]
    key = cli("provisioning-key", "create", "--email", "admin@soak.test")
    token = cli("token", "create", "--email", "admin@soak.test", "--abilities", "*", "--name", "soak")

    sim_log = open(os.path.join(work, "sim.log"), "w")
    sim = subprocess.Popen([
        os.path.join(args.bin, "locker-sim"), "--lockers", str(args.lockers),
        "--compartments", str(args.compartments), "--heartbeat-secs", "10",
        "--latency-ms", "200", "--doors", "--provisioning-key", key,
        "--serial-prefix", "SOAK-",
        "--provisioning-url", f"mqtt://provisioning:lockstep-provisioning@127.0.0.1:{mqtt_port}",
        "--broker-url", f"mqtt://127.0.0.1:{mqtt_port}",
    ], env=env, stdout=sim_log, stderr=subprocess.STDOUT)
    procs.append(sim)
    t_prov = time.time()
    wait_for(f"{args.lockers} banks online",
             lambda: int(db.scalar("SELECT COUNT(*) FROM locker_banks WHERE online = 1")) >= args.lockers,
             600)
    print(f"[{backend}] {args.lockers} banks provisioned and online in {time.time() - t_prov:.0f} s",
          flush=True)
    compartments = [r[0] for r in db.rows("SELECT id FROM compartments")]
    size_before = db.size_bytes()
    opens_before = int(db.scalar("SELECT COUNT(*) FROM open_requests"))

    # The load: one ticket every 1/rate s, taken by a few keep-alive clients.
    tickets = queue.Queue()
    answers = {"accepted": 0, "denied": 0, "error": 0}
    latencies = []
    lock = threading.Lock()
    stop = threading.Event()
    body = json.dumps({"override": True, "reason": "soak"})
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}

    def client():
        conn = None
        while True:
            t = tickets.get()
            if t is None:
                return
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
                started = time.time()
                conn.request("POST", f"/api/v1/compartments/{random.choice(compartments)}/open",
                             body=body, headers=headers)
                res = conn.getresponse()
                answer = json.loads(res.read() or b"{}")
                kind = answer.get("status") if res.status in (202, 403, 409) else None
                with lock:
                    answers[kind if kind in answers else "error"] += 1
                    latencies.append(time.time() - started)
            except Exception:
                conn = None
                with lock:
                    answers["error"] += 1

    clients = [threading.Thread(target=client, daemon=True) for _ in range(16)]
    for c in clients:
        c.start()

    samples = []  # (seconds into the load, rss MB, cpu s)

    def sampler(t0):
        while not stop.is_set():
            samples.append((time.time() - t0, rss_mb(server.pid), cpu_s(server.pid)))
            stop.wait(10)

    duration = args.minutes * 60
    t0 = time.time()
    threading.Thread(target=sampler, args=(t0,), daemon=True).start()
    sent = 0
    next_report = 60
    while True:
        elapsed = time.time() - t0
        if elapsed >= duration:
            break
        due = int(elapsed * args.rate) + 1
        while sent < due:
            tickets.put(sent)
            sent += 1
        if elapsed >= next_report:
            next_report += 60
            pending = db.scalar("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")
            with lock:
                a = dict(answers)
            print(f"[{backend}] {elapsed / 60:4.1f} min: {sent} opens asked, {a}, outbox pending "
                  f"{pending}, server rss {rss_mb(server.pid):.0f} MB", flush=True)
        time.sleep(max(0.0, (sent / args.rate) - (time.time() - t0)))
    for _ in clients:
        tickets.put(None)
    for c in clients:
        c.join(timeout=60)
    load_s = time.time() - t0
    stop.set()
    samples.append((time.time() - t0, rss_mb(server.pid), cpu_s(server.pid)))

    # Every command must be final once its timeout (plus a margin) passed.
    time.sleep(OPEN_TIMEOUT_S + MARGIN_S)
    now_ms = int(time.time() * 1000)
    states = dict((s, int(n)) for s, n in db.rows(
        "SELECT status, COUNT(*) FROM open_requests GROUP BY status"))
    reasons = dict(((r or "-"), int(n)) for r, n in db.rows(
        "SELECT failure_reason, COUNT(*) FROM open_requests WHERE status = 'failed' GROUP BY failure_reason"))
    stuck = int(db.scalar(
        "SELECT COUNT(*) FROM open_requests WHERE status IN ('accepted', 'sent') "
        f"AND requested_at < {now_ms - (OPEN_TIMEOUT_S + MARGIN_S) * 1000}"))
    # What each stuck command went through: its events, its timer, its
    # outbox job, so a failure can be read without rerunning.
    stuck_detail = db.rows(
        "SELECT o.command_id, o.status, o.requested_at, o.sent_at, "
        "(SELECT string_agg(e.event_type || '@' || e.occurred_at, ' ' ORDER BY e.aggregate_version) "
        " FROM stored_events e WHERE e.aggregate_uuid = o.command_id), "
        "(SELECT t.due_at || '/' || coalesce(t.fired_at, -1) FROM timers t "
        " WHERE t.subject = o.command_id) "
        "FROM open_requests o WHERE o.status IN ('accepted', 'sent') "
        f"AND o.requested_at < {now_ms - (OPEN_TIMEOUT_S + MARGIN_S) * 1000} LIMIT 20"
        if not db.sqlite_path else
        "SELECT o.command_id, o.status, o.requested_at, o.sent_at, "
        "(SELECT group_concat(e.event_type || '@' || e.occurred_at, ' ') "
        " FROM stored_events e WHERE e.aggregate_uuid = o.command_id), "
        "(SELECT t.due_at || '/' || coalesce(t.fired_at, -1) FROM timers t "
        " WHERE t.subject = o.command_id) "
        "FROM open_requests o WHERE o.status IN ('accepted', 'sent') "
        f"AND o.requested_at < {now_ms - (OPEN_TIMEOUT_S + MARGIN_S) * 1000} LIMIT 20")
    outbox = dict((s, int(n)) for s, n in db.rows("SELECT status, COUNT(*) FROM outbox GROUP BY status"))
    opens = int(db.scalar("SELECT COUNT(*) FROM open_requests")) - opens_before
    size_after = db.size_bytes()
    tables = db.tables()
    with open(log_path) as f:
        log = f.read()
    panics = len(re.findall(r"panicked", log))
    stalls = len(re.findall(r"workers stalled", log))

    lat = sorted(latencies)
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else 0
    warm = args.warmup_minutes * 60
    window = [s for s in samples if s[0] >= max(warm, duration - 600)]
    base_rss = window[0][1] if window else 0
    end_rss = samples[-1][1]
    drift = (end_rss - base_rss) / base_rss * 100 if base_rss else 0
    peak = max(s[1] for s in window) if window else 0
    per_open = (size_after - size_before) / opens if opens else 0

    print(f"\n== soak results: {backend}, embedded broker, {args.lockers} banks x "
          f"{args.compartments} compartments, {args.rate:.0f} opens/s for {load_s / 60:.1f} min")
    print(f"answers: {answers}; answer latency p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms")
    print(f"final states: {states}; failure reasons: {reasons}")
    print(f"stuck (accepted or sent past timeout + {MARGIN_S} s): {stuck}")
    for row in stuck_detail:
        print("  stuck: command {} {} requested_at {} sent_at {} events [{}] timer due/fired {}".format(*row))
    print(f"outbox: {outbox}")
    print(f"log: {panics} panic lines, {stalls} stall reports")
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in log.splitlines()]
    warnings = collections.Counter(
        re.sub(r"^.*?(WARN|ERROR)\s+", r"\1 ", line).split(" error=")[0][:120]
        for line in plain if re.search(r"\b(WARN|ERROR)\b", line))
    for msg, n in warnings.most_common(8):
        print(f"  {n} x {msg}")
    print("server RSS (MB), every minute: " + " ".join(
        f"{s[1]:.0f}" for s in samples[::6]) + f" | end {end_rss:.0f}")
    print(f"RSS drift over the last 10 min (baseline: {base_rss:.0f} MB at the end of warm-up): "
          f"{drift:+.1f} % (peak {peak:.0f} MB)")
    print(f"server CPU: {samples[-1][2] - samples[0][2]:.0f} s over {load_s:.0f} s")
    print(f"database: {size_before / 1e6:.1f} MB -> {size_after / 1e6:.1f} MB for {opens} opens: "
          f"{per_open / 1000:.2f} KB per open (baseline: issue 10's "
          f"{OLD_BYTES_PER_OPEN / 1000:.1f} KB; ratio {per_open / OLD_BYTES_PER_OPEN:.2f}x)")
    print("largest tables: " + ", ".join(f"{n} {s / 1e6:.1f} MB" for n, s in tables[:8]))
    flat = abs(drift) < 5
    print(f"RSS flat (drift under 5 %): {'yes' if flat else 'no'}")
    ok = stuck == 0 and panics == 0 and stalls == 0 and answers["error"] == 0 and flat
    print("SOAK PASSED" if ok else "SOAK FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""doorman's benchmark: doorman, a no-auth axum ceiling, the same ceiling with the field's
production middleware around it (`ceiling-stack`: request id, access log, metrics, limits; still
no authentication) and the Django + simplejwt reference app under gunicorn, measured in one run
on this machine with wrk, and doorman's figures given as ratios against the peers measured in
the same run.

Started by bench/run, which builds the release binaries, installs wrk and the Django packages,
then runs this with the paths. Prints a table, the targets, and one `BENCH {json}` line per
measurement (also written to --out).
"""

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HS256_SECRET = "doorman-bench-only-hs256-secret-0123456789abcdef"  # a test key, never deployed
PASSWORD = "bench-password-1"
CORES = os.cpu_count() or 1


def log(*parts):
    print("#", *parts, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# With --pin: the servers on the first core, wrk on the others, so that neither is preempted
# by the other. Throughput then follows each server's own CPU per request.
PIN = False


def server_process():
    raise_fd_limit()
    if PIN:
        os.sched_setaffinity(0, {0})


def load_process():
    raise_fd_limit()
    if PIN:
        os.sched_setaffinity(0, set(range(1, CORES)))


def http(method, url, body=None, token=None, timeout=60):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def answers_http(port):
    """True once something on the port answers an HTTP request (any status)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/1.")
    except OSError:
        return False


def process_tree(pid):
    """pid and its descendants."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


def status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid):
    """(user, user + system) CPU seconds one process has used so far (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    user, system = int(fields[11]), int(fields[12])
    return user / tick, (user + system) / tick


def preemptions(pid):
    """Involuntary context switches of all of a process's threads so far: how often the
    scheduler took a core away from it while it still had work."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith("nonvoluntary_ctxt_switches:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class Server:
    """A server process (and its children, for gunicorn) on a loopback port."""

    def __init__(self, name, cmd, env, cwd, port, logfile):
        self.name, self.port = name, port
        self.log = open(logfile, "ab")
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=self.log, stderr=self.log,
            preexec_fn=server_process, start_new_session=True)
        deadline = time.time() + 60
        while not answers_http(port):
            if self.proc.poll() is not None:
                raise SystemExit(f"{name} exited with {self.proc.returncode}; see {logfile}")
            if time.time() > deadline:
                raise SystemExit(f"{name} did not answer on port {port}; see {logfile}")
            time.sleep(0.05)

    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def rss_mb(self, field="VmRSS"):
        """Resident memory of the whole process tree (VmHWM: each process's peak)."""
        return sum(status_kb(p, field) for p in process_tree(self.proc.pid)) / 1024

    def usage(self):
        """(user CPU s, total CPU s, involuntary context switches) of the process tree."""
        tree = process_tree(self.proc.pid)
        cpu = [cpu_seconds(p) for p in tree]
        return (sum(c[0] for c in cpu), sum(c[1] for c in cpu),
                sum(preemptions(p) for p in tree))

    def load(self, script, connections, seconds, threads=2, workdir=None):
        """wrk against this server, with the server's CPU per request (user, and user +
        system) and how often per 1000 requests its threads were preempted."""
        before = self.usage()
        r = wrk(self.base(), script, connections, seconds, threads=threads, workdir=workdir)
        after = self.usage()
        n = max(r["requests"], 1)
        r["cpu_us_per_req"] = round((after[1] - before[1]) * 1e6 / n, 2)
        r["user_us_per_req"] = round((after[0] - before[0]) * 1e6 / n, 2)
        r["preempted_per_1k"] = round((after[2] - before[2]) * 1000 / n, 1)
        return r

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.log.close()


# --- wrk scripts -------------------------------------------------------------------------------

REPORT_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def lua_string(s):
    return json.dumps(s)  # a JSON string literal is a valid Lua string literal here (ASCII)


def script_get(path, token):
    return (f'wrk.method = "GET"\nwrk.path = {lua_string(path)}\n'
            f'wrk.headers["Authorization"] = {lua_string("Bearer " + token)}\n' + REPORT_LUA)


def script_get_each(path, tokens):
    """GET `path` with each of `tokens` in turn (per wrk thread), as many clients would."""
    listed = ",\n".join(lua_string("Bearer " + t) for t in tokens)
    return (f"local tokens = {{ {listed} }}\nlocal i = 0\n"
            "request = function()\n  i = i % #tokens + 1\n"
            f"  return wrk.format(\"GET\", {lua_string(path)}, "
            "{[\"Authorization\"] = tokens[i]})\nend\n" + REPORT_LUA)


def script_post_each(path, field, tokens):
    """POST `{field: token}` to `path` with each of `tokens` in turn; each wrk thread starts at
    a different place in the list, so that no two send the same token at the same time."""
    listed = ",\n".join(lua_string(json.dumps({field: t})) for t in tokens)
    return (f"local bodies = {{ {listed} }}\n"
            "local i = tonumber(tostring({}):match('0x(%x+)') or '0', 16) % #bodies\n"
            "request = function()\n  i = i % #bodies + 1\n"
            f"  return wrk.format(\"POST\", {lua_string(path)}, "
            "{[\"Content-Type\"] = \"application/json\"}, bodies[i])\nend\n" + REPORT_LUA)


def mint_like(token, count, secret):
    """`count` HS256 tokens with `token`'s claims and a fresh `jti` each, signed with
    `secret`: as many refresh tokens as that many logins would have given."""
    import base64
    import hashlib
    import hmac
    import uuid

    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    header, payload, _ = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    minted = []
    for _ in range(count):
        claims["jti"] = uuid.uuid4().hex
        signing_input = f"{header}.{b64(json.dumps(claims, separators=(',', ':')).encode())}"
        signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
        minted.append(f"{signing_input}.{b64(signature)}")
    return minted


def script_post(path, body):
    return (f'wrk.method = "POST"\nwrk.path = {lua_string(path)}\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.body = {lua_string(json.dumps(body))}\n' + REPORT_LUA)


def script_rotating_refresh(path, seeds_per_thread):
    """Refresh with rotation: every refresh token is good once, so each thread keeps a pool of
    live tokens, spends one per request and puts back the one each answer carries."""
    seeds = ",\n".join(lua_string(" ".join(s)) for s in seeds_per_thread)
    return f"""
local seeds = {{ {seeds} }}
local n = 0
setup = function(thread) n = n + 1; thread:set("seed", seeds[n]) end
local pool = {{}}
init = function(args) for t in string.gmatch(seed, "%S+") do table.insert(pool, t) end end
request = function()
  local t = table.remove(pool) or "no-live-token-left"
  return wrk.format("POST", {lua_string(path)}, {{["Content-Type"] = "application/json"}},
                    '{{"refresh": "' .. t .. '"}}')
end
response = function(status, headers, body)
  local t = string.match(body, '"refresh"%s*:%s*"([^"]+)"')
  if t then table.insert(pool, t) end
end
""" + REPORT_LUA


def wrk(base, script, connections, seconds, threads=2, workdir=None):
    path = os.path.join(workdir, f"wrk-{time.time_ns()}.lua")
    with open(path, "w") as f:
        f.write(script)
    threads = min(threads, connections)
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
         "--timeout", "30s", "-s", path, base],
        capture_output=True, text=True, preexec_fn=load_process)
    line = next((l for l in out.stdout.splitlines() if l.startswith("WRK ")), None)
    if line is None:
        raise SystemExit(f"wrk failed: {out.stdout}\n{out.stderr}")
    r = json.loads(line[4:])
    secs = r["duration_us"] / 1e6
    errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return {
        "rps": round(r["requests"] / secs, 1),
        "ok_rps": round(max(r["requests"] - r["status"] - r["timeout"], 0) / secs, 1),
        "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000, "max_ms": r["max_us"] / 1000,
        "requests": r["requests"], "errors": errors,
    }


# --- the servers -------------------------------------------------------------------------------

class Run:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="doorman-bench-")
        self.results = []
        self.drop_afterwards = []
        self.out = open(args.out, "w") if args.out else None

    def record(self, server, workload, connections, r, **extra):
        entry = {"server": server, "workload": workload, "connections": connections, **r, **extra}
        self.results.append(entry)
        line = "BENCH " + json.dumps(entry)
        print(line, flush=True)
        if self.out:
            self.out.write(json.dumps(entry) + "\n")
            self.out.flush()

    def find(self, server, workload, connections=64):
        for e in self.results:
            if (e["server"], e["workload"], e.get("connections")) == (server, workload, connections):
                return e
        return None

    # doorman ------------------------------------------------------------------------------------

    def doorman_env(self, name, extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOORMAN_")}
        env.update({
            "DOORMAN_DATA_DIR": os.path.join(self.work, name),
            "DOORMAN_LOG_FORMAT": "json",
            "DOORMAN_PRUNE_INTERVAL": "0",
        })
        env.update(extra)
        return env

    def doorman(self, name, extra=None, prepare=True):
        env = self.doorman_env(name, extra or {})
        binary = self.args.doorman
        if prepare:
            subprocess.run([binary, "migrate"], env=env, check=True, capture_output=True)
            # `flood` is the login flood's user, so that the login runs measured after it
            # start from counters of their own.
            for user in ("bench", "flood"):
                subprocess.run([binary, "user", "create", user, "--password-stdin"], env=env,
                               input=PASSWORD + "\n", text=True, check=True,
                               capture_output=True)
        port = free_port()
        env["DOORMAN_BIND"] = f"127.0.0.1:{port}"
        return Server(f"doorman-{name}", [binary, "serve"], env, self.work, port,
                      os.path.join(self.work, f"doorman-{name}.log"))

    def login(self, server, path="/api/token/", username="bench", password=PASSWORD):
        status, body = http("POST", server.base() + path,
                            {"username": username, "password": password})
        if status != 200:
            raise SystemExit(f"login at {server.name} answered {status}: {body[:200]}")
        return json.loads(body)

    def logins(self, server, count):
        with ThreadPoolExecutor(max_workers=2 * CORES) as pool:
            return [p["refresh"] for p in pool.map(lambda _: self.login(server), range(count))]

    def workloads(self, server_name, server, access, refresh, rotating_seeds=None,
                  only=None):
        """The standard set, as far as `only` allows; `rotating_seeds(n)` makes n refresh
        tokens for a rotation run."""
        c_levels = self.args.connections
        plan = [
            ("hello", lambda c: script_get("/hello/", access)),
            ("verify", lambda c: script_post("/api/token/verify/", {"token": access})),
            # A refresh token's verify reads the blacklist; an access token's does not.
            ("verify_refresh", lambda c: script_post("/api/token/verify/", {"token": refresh})),
            ("refresh", lambda c: script_post("/api/token/refresh/", {"refresh": refresh})),
        ]
        for workload, make in plan:
            if only and workload not in only:
                continue
            for c in c_levels:
                r = server.load(make(c), c, self.args.seconds, workdir=self.work)
                self.record(server_name, workload, c, r, rss_peak_mb=round(server.rss_mb("VmHWM"), 1))

    def rotating(self, server_name, server, mint):
        for c in self.args.connections:
            threads = min(2, c)
            per_thread = c // threads + 8
            seeds = [mint(per_thread) for _ in range(threads)]
            r = server.load(script_rotating_refresh("/api/token/refresh/", seeds), c,
                            self.args.seconds, threads=threads, workdir=self.work)
            self.record(server_name, "refresh_rotate", c, r,
                        rss_peak_mb=round(server.rss_mb("VmHWM"), 1))

    def login_runs(self, server_name, server, username, password):
        body = {"username": username, "password": password}
        for c in self.args.connections:
            r = server.load(script_post("/api/token/", body), c, self.args.seconds,
                            workdir=self.work)
            self.record(server_name, "login", c, r, rss_peak_mb=round(server.rss_mb("VmHWM"), 1))

    def run_doorman(self):
        log("doorman, HS256")
        hs = self.doorman("hs256", {"DOORMAN_SIGNING_KEY": HS256_SECRET})
        idle = hs.rss_mb()
        pair = self.login(hs)
        self.record("doorman", "idle_rss", None, {"rss_mb": round(idle, 1)})
        self.workloads("doorman", hs, pair["access"], pair["refresh"])
        # /hello/ p99 alone, then during a login flood, back to back; three pairs, as one p99
        # on a shared 2-core machine moves a lot from run to run.
        c = 64
        for _ in range(self.args.flood_pairs):
            alone = wrk(hs.base(), script_get("/hello/", pair["access"]), c, self.args.seconds,
                        workdir=self.work)
            flood = subprocess.Popen(
                ["wrk", "-t", "1", "-c", "64", "-d", f"{self.args.seconds + 2}s",
                 "--timeout", "30s",
                 "-s", self.write_script(script_post("/api/token/", {
                     "username": "flood", "password": PASSWORD})),
                 hs.base()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                preexec_fn=load_process)
            time.sleep(1)
            during = wrk(hs.base(), script_get("/hello/", pair["access"]), c, self.args.seconds,
                         workdir=self.work)
            flood_out, _ = flood.communicate()
            flood_line = next((l for l in flood_out.splitlines() if l.startswith("WRK ")),
                              "WRK {}")
            self.record("doorman", "hello_alone", c, alone)
            self.record("doorman", "hello_during_login_flood", c, during,
                        flood=json.loads(flood_line[4:]))
        self.hash_time("before_login")
        self.login_runs("doorman", hs, "bench", PASSWORD)
        self.hash_time("after_login")
        self.record("doorman", "idle_rss_after_load", None, {"rss_mb": round(hs.rss_mb(), 1)})
        hs.stop()

        log("doorman, start-up on the existing database")
        times = []
        for _ in range(self.args.startups):
            times.append(self.startup_ms("hs256", {"DOORMAN_SIGNING_KEY": HS256_SECRET}))
        self.record("doorman", "startup", None, {
            "median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1),
            "runs": len(times)})

        log("doorman, EdDSA")
        ed = self.doorman("eddsa", {"DOORMAN_ALGORITHM": "EdDSA"})
        pair = self.login(ed)
        for c in self.args.connections:
            r = ed.load(script_get("/hello/", pair["access"]), c, self.args.seconds,
                        workdir=self.work)
            self.record("doorman", "hello_eddsa", c, r, rss_peak_mb=round(ed.rss_mb("VmHWM"), 1))
        ed.stop()

        log("doorman, rotation + blacklist")
        rot = self.doorman("rotate", {
            "DOORMAN_SIGNING_KEY": HS256_SECRET, "DOORMAN_ROTATE_REFRESH_TOKENS": "true",
            "DOORMAN_BLACKLIST_AFTER_ROTATION": "true"})
        self.rotating("doorman", rot, lambda n: self.logins(rot, n))
        rot.stop()

        log("doorman, 10 000 idle keep-alive connections")
        conns = self.doorman("conns", {"DOORMAN_SIGNING_KEY": HS256_SECRET,
                                       "DOORMAN_HEADER_READ_TIMEOUT": "120s"})
        before = conns.rss_mb()
        held = asyncio.run(hold_connections(conns.port, self.args.idle_connections,
                                            lambda: conns.rss_mb()))
        self.record("doorman", "idle_connections", None, {
            "connections": held["open"], "rss_mb": round(held["rss_mb"], 1),
            "rss_before_mb": round(before, 1)})
        conns.stop()

    def write_script(self, text):
        path = os.path.join(self.work, f"wrk-{time.time_ns()}.lua")
        with open(path, "w") as f:
            f.write(text)
        return path

    def startup_ms(self, name, extra):
        env = self.doorman_env(name, extra)
        port = free_port()
        env["DOORMAN_BIND"] = f"127.0.0.1:{port}"
        started = time.perf_counter()
        proc = subprocess.Popen([self.args.doorman, "serve"], env=env, cwd=self.work,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not answers_http(port):
            if proc.poll() is not None or time.perf_counter() - started > 30:
                raise SystemExit("doorman did not start")
            time.sleep(0.001)
        took = (time.perf_counter() - started) * 1000
        proc.terminate()
        proc.wait()
        return took

    # the peers ----------------------------------------------------------------------------------

    def ceiling(self, name="ceiling", busy_ns=None):
        """The bare ceiling (with `busy_ns`, spinning that long in each request), or with
        `name="ceiling-stack"` the one with production middleware."""
        binary = self.args.ceiling_stack if name == "ceiling-stack" else self.args.ceiling
        port = free_port()
        cmd = [binary, f"127.0.0.1:{port}"] + ([str(busy_ns)] if busy_ns else [])
        return Server(name, cmd, dict(os.environ), self.work, port,
                      os.path.join(self.work, f"{name}.log"))

    def handwritten(self, name, algorithm, key):
        """The hand-written JWT check (`handwritten`): `algorithm` HS256 with the secret, or
        EdDSA with the public key's JWK `x`."""
        port = free_port()
        return Server(name, [self.args.handwritten, f"127.0.0.1:{port}", algorithm, key],
                      dict(os.environ), self.work, port, os.path.join(self.work, f"{name}.log"))

    def run_ceiling(self):
        for name, what in (("ceiling", "axum, no authentication"),
                           ("ceiling-stack", "axum with tower-http's production middleware, "
                                             "no authentication")):
            log(f"{name} ({what})")
            server = self.ceiling(name)
            for c in self.args.connections:
                r = server.load(script_get("/hello/", "unused"), c, self.args.seconds,
                                workdir=self.work)
                self.record(name, "hello", c, r, rss_peak_mb=round(server.rss_mb("VmHWM"), 1))
            server.stop()
        # The same idle connections on the bare HTTP stack: what hyper itself holds per
        # connection, for comparison with doorman's figure.
        ceiling = self.ceiling()
        before = ceiling.rss_mb()
        held = asyncio.run(hold_connections(ceiling.port, self.args.idle_connections,
                                            lambda: ceiling.rss_mb()))
        self.record("ceiling", "idle_connections", None, {
            "connections": held["open"], "rss_mb": round(held["rss_mb"], 1),
            "rss_before_mb": round(before, 1)})
        ceiling.stop()

    def django(self, name, rotate):
        venv, app = self.args.django_venv, self.args.django_app
        env = dict(os.environ)
        env.update({"PEER_DB": os.path.join(self.work, f"django-{name}.sqlite3"),
                    "PEER_ROTATE": "1" if rotate else "0", "PYTHONDONTWRITEBYTECODE": "1"})
        py = os.path.join(venv, "bin/python")
        subprocess.run([py, "manage.py", "migrate", "-v", "0"], cwd=app, env=env, check=True)
        subprocess.run([py, "manage.py", "shell", "-c",
                        "from django.contrib.auth.models import User\n"
                        f"User.objects.create_user('alice', password='{PASSWORD}')"],
                       cwd=app, env=env, check=True)
        port = free_port()
        workers = 2 * CORES + 1
        server = Server(f"django-{name}", [
            os.path.join(venv, "bin/gunicorn"), "-w", str(workers), "-b", f"127.0.0.1:{port}",
            "--backlog", "2048", "--timeout", "60", "peerapi.wsgi"],
            env, app, port, os.path.join(self.work, f"django-{name}.log"))
        server.env, server.py = env, py
        return server

    def django_mint(self, server, count):
        """Refresh tokens for alice as simplejwt's login makes them (OutstandingToken rows
        included), minted in one process instead of `count` PBKDF2 logins."""
        code = ("from django.contrib.auth.models import User\n"
                "from rest_framework_simplejwt.tokens import RefreshToken\n"
                "u = User.objects.get(username='alice')\n"
                f"print(' '.join(str(RefreshToken.for_user(u)) for _ in range({count})))")
        out = subprocess.run([server.py, "manage.py", "shell", "-c", code],
                             cwd=self.args.django_app, env=server.env, check=True,
                             capture_output=True, text=True)
        return out.stdout.split()

    def run_django(self):
        log(f"Django + simplejwt under gunicorn ({2 * CORES + 1} workers)")
        dj = self.django("plain", rotate=False)
        pair = self.login(dj, username="alice")
        self.record("django", "idle_rss", None, {"rss_mb": round(dj.rss_mb(), 1)})
        self.workloads("django", dj, pair["access"], pair["refresh"])
        self.login_runs("django", dj, "alice", PASSWORD)
        dj.stop()
        dj = self.django("rotate", rotate=True)
        self.rotating("django", dj, lambda n: self.django_mint(dj, n))
        dj.stop()

    def paired(self):
        """The c=64 throughput ratios measured back to back. Each round runs the ceilings'
        `/hello/` (bare, with `--busy-ns` also bare plus that much work, then ceiling-stack),
        then doorman's `/hello/` (HS256 and EdDSA) and verify, then Django's `/hello/`,
        so that the machine's drift during the run falls on all of them alike; the targets take
        the median of the per-round ratios."""
        rounds, seconds, c = self.args.pair_rounds, self.args.pair_seconds, 64
        if rounds < 1:
            return
        log(f"paired: {rounds} rounds of {seconds} s per server and workload, c={c}")
        servers = []
        try:
            ceiling = self.ceiling()
            servers.append(ceiling)
            stack = self.ceiling("ceiling-stack")
            servers.append(stack)
            hs = self.doorman("paired-hs256", {"DOORMAN_SIGNING_KEY": HS256_SECRET})
            servers.append(hs)
            ed = self.doorman("paired-eddsa", {"DOORMAN_ALGORITHM": "EdDSA"})
            servers.append(ed)
            busy = []
            for ns in self.args.busy_ns:
                server = self.ceiling(f"ceiling-busy-{ns}", busy_ns=ns)
                servers.append(server)
                busy.append((f"ceiling-busy-{ns}", "hello", server,
                             script_get("/hello/", "unused")))
            hs_pair = self.login(hs)
            ed_pair = self.login(ed)
            hs_access, ed_access = hs_pair["access"], ed_pair["access"]
            # Distinct EdDSA access tokens, more than doorman's verified-token cache holds
            # (10 000), each from a refresh: every request then checks a signature, as for a
            # server with that many clients active at once.
            ed_many = self.access_tokens(ed, ed_pair["refresh"], self.args.distinct_tokens)
            # The hand-written check gets doorman's keys: the HS256 secret, and the EdDSA
            # instance's public key from its JWKS, so that it checks the very same tokens.
            status, body = http("GET", ed.base() + "/.well-known/jwks.json")
            if status != 200:
                raise SystemExit(f"doorman's JWKS answered {status}")
            ed_x = next(k["x"] for k in json.loads(body)["keys"] if k.get("crv") == "Ed25519")
            hw = self.handwritten("handwritten-hs256", "HS256", HS256_SECRET)
            servers.append(hw)
            hw_ed = self.handwritten("handwritten-eddsa", "EdDSA", ed_x)
            servers.append(hw_ed)
            plan = [
                ("ceiling", "hello", ceiling, script_get("/hello/", "unused")),
                *busy,
                ("ceiling-stack", "hello", stack, script_get("/hello/", "unused")),
                ("handwritten", "hello", hw, script_get("/hello/", hs_access)),
                ("handwritten", "hello_eddsa", hw_ed, script_get("/hello/", ed_access)),
                ("doorman", "hello", hs, script_get("/hello/", hs_access)),
                ("doorman", "hello_eddsa", ed, script_get("/hello/", ed_access)),
                ("handwritten", "hello_eddsa_distinct", hw_ed,
                 script_get_each("/hello/", ed_many)),
                ("doorman", "hello_eddsa_distinct", ed, script_get_each("/hello/", ed_many)),
                ("doorman", "verify", hs, script_post("/api/token/verify/", {"token": hs_access})),
                ("doorman", "verify_refresh", hs,
                 script_post("/api/token/verify/", {"token": hs_pair["refresh"]})),
                ("doorman", "refresh", hs,
                 script_post("/api/token/refresh/", {"refresh": hs_pair["refresh"]})),
            ]
            if self.args.postgres:
                # doorman on PostgreSQL, defaults otherwise (the user cache on): its refresh
                # and the verify of a refresh token against its own /hello/.
                pg = self.doorman("paired-pg", {"DOORMAN_SIGNING_KEY": HS256_SECRET,
                                                "DOORMAN_DATABASE_URL": self.postgres_database()})
                servers.append(pg)
                pg_pair = self.login(pg)
                # Besides one refresh token sent over and over (whose "not blacklisted" answer
                # doorman keeps for user_cache_ttl), distinct ones, each sent about once a
                # round, as clients refreshing their own tokens do: every check then asks
                # PostgreSQL.
                n = self.args.distinct_refresh
                refresh_many = mint_like(pg_pair["refresh"], n, HS256_SECRET)
                verify_many = mint_like(pg_pair["refresh"], n, HS256_SECRET)
                plan += [
                    ("doorman-pg", "hello", pg, script_get("/hello/", pg_pair["access"])),
                    ("doorman-pg", "verify_refresh", pg,
                     script_post("/api/token/verify/", {"token": pg_pair["refresh"]})),
                    ("doorman-pg", "refresh", pg,
                     script_post("/api/token/refresh/", {"refresh": pg_pair["refresh"]})),
                    ("doorman-pg", "verify_refresh_distinct", pg,
                     script_post_each("/api/token/verify/", "token", verify_many)),
                    ("doorman-pg", "refresh_distinct", pg,
                     script_post_each("/api/token/refresh/", "refresh", refresh_many)),
                ]
            if self.args.django_venv:
                dj = self.django("paired", rotate=False)
                servers.append(dj)
                plan.append(("django", "hello", dj,
                             script_get("/hello/", self.login(dj, username="alice")["access"])))
            for k in range(rounds):
                for server_name, workload, server, script in plan:
                    r = server.load(script, c, seconds, workdir=self.work)
                    self.record(server_name, f"paired_{workload}", c, r, round=k + 1)
        finally:
            for server in servers:
                server.stop()

    def access_tokens(self, server, refresh, count):
        """`count` distinct access tokens, each from a refresh of `refresh` (rotation off)."""
        def one(_):
            status, body = http("POST", server.base() + "/api/token/refresh/",
                                {"refresh": refresh})
            if status != 200:
                raise SystemExit(f"refresh at {server.name} answered {status}: {body[:200]}")
            return json.loads(body)["access"]
        with ThreadPoolExecutor(max_workers=2 * CORES) as pool:
            return list(pool.map(one, range(count)))

    def postgres_database(self):
        """A fresh database on the `--postgres` server for this run (dropped at its end); its
        URL."""
        name = f"doorman_bench_{os.getpid()}"
        base = self.args.postgres.rstrip("/")
        for sql in (f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}"):
            subprocess.run(["psql", "-q", f"{base}/postgres", "-c", sql], check=True,
                           capture_output=True)
        self.drop_afterwards.append((base, name))
        return f"{base}/{name}"

    def drop_databases(self):
        for base, name in self.drop_afterwards:
            subprocess.run(["psql", "-q", f"{base}/postgres", "-c",
                            f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], capture_output=True)

    def hash_time(self, when="start"):
        """The login yardstick: one password check timed alone, and checks on every core at
        once. Timed again right before and after doorman's login runs, as the machine's speed
        drifts over a run."""
        out = subprocess.run([self.args.hash_time], capture_output=True, text=True, check=True)
        ms, parallel = (float(x) for x in out.stdout.split())
        self.record("doorman", "single_hash", None,
                    {"ms": ms, "all_cores_per_s": parallel, "when": when})
        return ms


async def hold_connections(port, count, rss):
    """Opens `count` keep-alive connections, makes one request on each, holds them open, and
    reads the server's RSS while they are all held."""
    raise_fd_limit()
    held = []

    async def one():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n")
                           if l.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            held.append(writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass

    for start in range(0, count, 500):
        await asyncio.gather(*(one() for _ in range(min(500, count - start))))
    await asyncio.sleep(1)
    result = {"open": len(held), "rss_mb": rss()}
    for w in held:
        w.close()
    return result


# --- the report --------------------------------------------------------------------------------

def ratio(a, b):
    return round(a / b, 2) if a and b else None


def paired_rounds(results):
    """The paired measurements, one dict per round: (server, workload) -> ok req/s."""
    rounds = {}
    for e in results:
        if e["workload"].startswith("paired_"):
            workload = e["workload"][len("paired_"):]
            rounds.setdefault(e["round"], {})[(e["server"], workload)] = e["ok_rps"]
    return [rounds[k] for k in sorted(rounds)]


def report(run):
    res = run.results
    print()
    print(f"## Results ({CORES} cores, {run.args.seconds} s per run, wrk -t2, keep-alive)")
    print()
    if PIN:
        print("Pinned (--pin): every server on core 0, wrk on the others. The login and flood "
              "targets assume the server has all cores; read them from an unpinned run.")
        print()
    print("| server | workload | conns | req/s | ok req/s | p50 ms | p99 ms | max ms | errors "
          "| peak RSS MB | server CPU us/req | preempted /1k req |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for e in res:
        if ("rps" in e and e["workload"] not in ("hello_alone", "hello_during_login_flood")
                and not e["workload"].startswith("paired_")):
            print(f"| {e['server']} | {e['workload']} | {e['connections']} | {e['rps']:.0f} | "
                  f"{e['ok_rps']:.0f} | {e['p50_ms']:.2f} | {e['p99_ms']:.2f} | {e['max_ms']:.1f} | "
                  f"{e['errors']} | {e.get('rss_peak_mb', '')} | {e.get('cpu_us_per_req', '')} | "
                  f"{e.get('preempted_per_1k', '')} |")
    print()

    def ok(server, workload, c=64):
        e = run.find(server, workload, c)
        return e["ok_rps"] if e else None

    targets = []

    def target(name, value, limit, higher_is_better=True, unit="x"):
        if value is None:
            targets.append((name, "not measured", limit, "n/a"))
            return
        met = value >= limit if higher_is_better else value <= limit
        sign = ">=" if higher_is_better else "<="
        targets.append((name, f"{value}{unit}", f"{sign} {limit}{unit}", "met" if met else "MISSED"))

    c = 64
    rounds = paired_rounds(res)

    def against(workload, peer, server="doorman"):
        """The median over the paired rounds of `server`'s `workload` against the peer's
        `/hello/`; without paired rounds, the ratio of the figures from the table."""
        per_round = [ratio(r[(server, workload)], r[(peer, "hello")]) for r in rounds
                     if r.get((server, workload)) and r.get((peer, "hello"))]
        if per_round:
            return round(statistics.median(per_round), 2)
        return ratio(ok(server, workload), ok(peer, "hello"))

    def table_entry(server, workload):
        """The table's figure at c=64, else (--quick, --connections) at the most connections."""
        found = sorted((e for e in res if (e["server"], e["workload"]) == (server, workload)),
                       key=lambda e: (e["connections"] == c, e["connections"]))
        return found[-1] if found else None

    def against_same(workload, peer):
        """The median over the paired rounds of doorman's `workload` against the peer's same
        workload (the same tokens, the same algorithm)."""
        per_round = [ratio(r[("doorman", workload)], r[(peer, workload)]) for r in rounds
                     if r.get(("doorman", workload)) and r.get((peer, workload))]
        return round(statistics.median(per_round), 2) if per_round else None

    target("/hello/ HS256 / hand-written jsonwebtoken check", against_same("hello", "handwritten"),
           0.95)
    target(f"/hello/ EdDSA, {run.args.distinct_tokens} distinct tokens / hand-written "
           "jsonwebtoken check", against_same("hello_eddsa_distinct", "handwritten"), 0.95)
    # One token sent over and over: doorman checks its signature once (its verified-token
    # cache), the hand-written server on every request. Reported, not a target.
    one_token_eddsa = against_same("hello_eddsa", "handwritten")
    # The bare no-auth ceiling is reported below as the physical limit, not as a target: it
    # leaves a few hundred nanoseconds per request on a 2-core machine, less than any server
    # with an access log spends.
    target("/hello/ HS256 / Django", against("hello", "django"), 50)
    target("/hello/ EdDSA / Django", against("hello_eddsa", "django"), 50)
    def against_hello(workload, server="doorman"):
        """The median over the paired rounds of `server`'s `workload` against its own `/hello/`
        in the same round."""
        per_round = [ratio(r[(server, workload)], r[(server, "hello")]) for r in rounds
                     if r.get((server, workload)) and r.get((server, "hello"))]
        if per_round:
            return round(statistics.median(per_round), 2)
        return ratio(ok(server, workload), ok(server, "hello"))

    target("refresh, rotation off (SQLite) / doorman /hello/", against_hello("refresh"), 0.5)
    target("verify of a refresh token (SQLite) / doorman /hello/",
           against_hello("verify_refresh"), 0.5)
    if run.args.postgres:
        target("refresh, rotation off (PostgreSQL) / doorman /hello/ on PostgreSQL",
               against_hello("refresh", "doorman-pg"), 0.5)
        target("verify of a refresh token (PostgreSQL) / doorman /hello/ on PostgreSQL",
               against_hello("verify_refresh", "doorman-pg"), 0.5)
        n = run.args.distinct_refresh
        target(f"refresh, rotation off (PostgreSQL), {n} distinct tokens / doorman /hello/ on "
               "PostgreSQL", against_hello("refresh_distinct", "doorman-pg"), 0.5)
        target(f"verify of a refresh token (PostgreSQL), {n} distinct tokens / doorman /hello/ "
               "on PostgreSQL", against_hello("verify_refresh_distinct", "doorman-pg"), 0.5)
    target("refresh, rotation off (SQLite) / Django",
           ratio(ok("doorman", "refresh"), ok("django", "refresh")), 50)
    target("refresh rotation+blacklist (SQLite) / Django",
           ratio(ok("doorman", "refresh_rotate"), ok("django", "refresh_rotate")), 25)
    timings = [e for e in res if e["workload"] == "single_hash"]
    around = [e for e in timings if e.get("when") in ("before_login", "after_login")] or timings
    hashing = around and {
        "ms": statistics.mean(e["ms"] for e in around),
        "all_cores_per_s": statistics.mean(e["all_cores_per_s"] for e in around),
        "timings": len(around)}
    hash_ms = hashing and hashing["ms"]
    login = table_entry("doorman", "login")
    at = "" if not login or login["connections"] == c else f" at c={login['connections']}"
    if hash_ms:
        ideal = CORES / (hash_ms / 1000)
        target(f"login{at} / (cores / single hash = {ideal:.1f}/s)",
               ratio(login and login["ok_rps"], ideal), 0.9)
        target(f"login{at} / (hashes on all cores at once = {hashing['all_cores_per_s']:.1f}/s)",
               ratio(login and login["ok_rps"], hashing["all_cores_per_s"]), 0.9)
    alones = [e for e in res if e["workload"] == "hello_alone"]
    durings = [e for e in res if e["workload"] == "hello_during_login_flood"]
    flood_ratios = [ratio(d["p99_ms"], a["p99_ms"]) for a, d in zip(alones, durings)]
    target(f"/hello/ p99 during login flood / idle p99 (median of {len(flood_ratios)} pairs)",
           statistics.median(flood_ratios) if flood_ratios else None, 2, higher_is_better=False)
    idle = next((e["rss_mb"] for e in res if e["workload"] == "idle_rss" and e["server"] == "doorman"), None)
    target("RSS idle", idle, 20, higher_is_better=False, unit=" MB")
    conns = next((e for e in res if e["workload"] == "idle_connections"
                  and e["server"] == "doorman"), None)
    bare = next((e for e in res if e["workload"] == "idle_connections"
                 and e["server"] == "ceiling"), None)
    target(f"RSS with {conns['connections'] if conns else '?'} idle keep-alive connections",
           conns and conns["rss_mb"], 150, higher_is_better=False, unit=" MB")
    start = next((e for e in res if e["workload"] == "startup"), None)
    target("start-up to first answer (median)", start and start["median_ms"], 100,
           higher_is_better=False, unit=" ms")

    if rounds:
        print(f"## Paired rounds (c={c}, ok req/s; each round runs the servers back to back)")
        print()
        columns = [("ceiling", "hello"),
                   *((f"ceiling-busy-{ns}", "hello") for ns in run.args.busy_ns),
                   ("ceiling-stack", "hello"), ("handwritten", "hello"),
                   ("handwritten", "hello_eddsa"), ("handwritten", "hello_eddsa_distinct"),
                   ("doorman", "hello"), ("doorman", "hello_eddsa"),
                   ("doorman", "hello_eddsa_distinct"), ("doorman", "verify"),
                   ("doorman", "verify_refresh"), ("doorman", "refresh"),
                   ("doorman-pg", "hello"), ("doorman-pg", "verify_refresh"),
                   ("doorman-pg", "refresh"), ("doorman-pg", "verify_refresh_distinct"),
                   ("doorman-pg", "refresh_distinct"), ("django", "hello")]
        columns = [col for col in columns if any(col in r for r in rounds)]
        print("| round | " + " | ".join(f"{s} {w}" for s, w in columns) + " |")
        print("|---:|" + "---:|" * len(columns))
        for k, r in enumerate(rounds, 1):
            print(f"| {k} | " + " | ".join(f"{r[col]:.0f}" if r.get(col) else ""
                                            for col in columns) + " |")
        print()
    source = (f"medians of the ratios within each of the {len(rounds)} paired rounds"
              if rounds else "ratios of successful requests per second from this run")
    print(f"## Targets (c={c}; the throughput ratios are {source})")
    print()
    print("| target | measured | wanted | |")
    print("|---|---:|---:|---|")
    for name, value, limit, verdict in targets:
        print(f"| {name} | {value} | {limit} | {verdict} |")
    print()
    extra = []
    if one_token_eddsa:
        extra.append(f"/hello/ EdDSA with one token sent over and over / hand-written check: "
                     f"{one_token_eddsa}x (doorman checks that token's signature once; not a "
                     "target)")
    for a, d in zip(alones, durings):
        extra.append(f"/hello/ p99 idle {a['p99_ms']:.2f} ms, during the login flood "
                     f"{d['p99_ms']:.2f} ms ({d['ok_rps']:.0f} req/s then, "
                     f"{d['flood'].get('requests', 0)} logins)")
    bare_hello = run.find("ceiling", "hello", c)
    for workload in ("hello", "hello_eddsa", "verify"):
        e = run.find("doorman", workload, c)
        if e and bare_hello and e.get("cpu_us_per_req") and bare_hello.get("cpu_us_per_req"):
            extra.append(
                f"server CPU per request at c={c}, {workload}: doorman {e['cpu_us_per_req']} us "
                f"({e['user_us_per_req']} us user), the ceiling's /hello/ "
                f"{bare_hello['cpu_us_per_req']} us ({bare_hello['user_us_per_req']} us user): "
                f"{ratio(bare_hello['cpu_us_per_req'], e['cpu_us_per_req'])}x the ceiling's "
                f"efficiency; preempted {e['preempted_per_1k']} vs "
                f"{bare_hello['preempted_per_1k']} times per 1000 requests")
    if hash_ms:
        extra.append(f"single argon2id check: {hash_ms:.1f} ms, all cores at once "
                     f"{hashing['all_cores_per_s']:.1f}/s (mean of the {hashing['timings']} "
                     f"timings around doorman's login runs: "
                     + ", ".join(f"{e['ms']:.1f} ms and {e['all_cores_per_s']:.1f}/s"
                                 for e in around) + ")")
    if start:
        extra.append(f"start-up: median {start['median_ms']} ms, max {start['max_ms']} ms "
                     f"over {start['runs']} runs")
    if conns and bare:
        def per(e):
            return (e["rss_mb"] - e["rss_before_mb"]) * 1024 / max(e["connections"], 1)
        extra.append(f"{conns['connections']} idle keep-alive connections: doorman "
                     f"{conns['rss_mb']} MB ({per(conns):.1f} KiB each), the no-auth ceiling "
                     f"{bare['rss_mb']} MB ({per(bare):.1f} KiB each)")
    for line in extra:
        print(f"- {line}")

    # Not a target: the bare ceiling, the physical limit of this machine and load generator.
    if any(("ceiling", "hello") in r for r in rounds) or table_entry("ceiling", "hello"):
        print()
        print("## Beside the bare ceiling (the physical limit; not a target)")
        print()
        print("`ceiling`: axum answering `/hello/` with no authentication, no log and no metrics\n"
              "(`bench/peers/src/bin/ceiling.rs`). What is left between it and doorman is the\n"
              "access log, metrics, security headers and the token check.")
        print()
        print("| doorman workload | / ceiling /hello/ |")
        print("|---|---:|")
        for workload in ("hello", "hello_eddsa", "verify"):
            value = against(workload, "ceiling")
            print(f"| {workload} | {f'{value}x' if value else 'not measured'} |")

    # Not a target: what doorman costs against a server that does a production server's work
    # per request, so that the price of authentication shows apart from that of the rest.
    stack_hello = table_entry("ceiling-stack", "hello")
    if stack_hello or any(("ceiling-stack", "hello") in r for r in rounds):
        at_c = stack_hello["connections"] if stack_hello else c
        print()
        print("## Beside the production-stack ceiling (for comparison; not a target)")
        print()
        print("`ceiling-stack`: the ceiling with tower-http's request id, access log, security\n"
              "headers, panic catcher, deadline and concurrency limit and per-request metrics\n"
              "around it, still without authentication (`bench/peers/src/bin/ceiling-stack.rs`).")
        print()
        print(f"| doorman workload | / ceiling-stack /hello/ | server CPU us/req at c={at_c} "
              "(user), doorman | ceiling-stack /hello/ |")
        print("|---|---:|---:|---:|")

        def cpu(e):
            return (f"{e['cpu_us_per_req']} ({e['user_us_per_req']})"
                    if e and e.get("cpu_us_per_req") else "")
        for workload in ("hello", "hello_eddsa", "verify"):
            value = against(workload, "ceiling-stack")
            e = run.find("doorman", workload, at_c)
            print(f"| {workload} | {f'{value}x' if value else 'not measured'} | {cpu(e)} "
                  f"| {cpu(stack_hello)} |")

    # Not a target either: how far a known amount of work per request moves the bare ceiling,
    # i.e. how much a server may add per request and still reach a given ratio.
    busy = [ns for ns in run.args.busy_ns if any((f"ceiling-busy-{ns}", "hello") in r
                                                  for r in rounds)]
    if busy:
        print()
        print("## The ceiling with fixed work per request (calibration; not a target)")
        print()
        print("`ceiling BUSY_NS`: the bare ceiling spinning on the CPU for BUSY_NS in each "
              "request,\nin the same paired rounds (medians over the rounds).")
        print()
        print("| server | / ceiling | user CPU us/req | all CPU us/req |")
        print("|---|---:|---:|---:|")

        def paired_cpu(server, workload="hello"):
            rows = [e for e in res if (e["server"], e["workload"]) == (server, f"paired_{workload}")
                    and e.get("cpu_us_per_req")]
            if not rows:
                return "", ""
            return (round(statistics.median(e["user_us_per_req"] for e in rows), 2),
                    round(statistics.median(e["cpu_us_per_req"] for e in rows), 2))

        def calibration_row(label, server, workload="hello"):
            value = against(workload, "ceiling", server=server)
            user, total = paired_cpu(server, workload)
            print(f"| {label} | {f'{value}x' if value else 'not measured'} | {user} | {total} |")

        calibration_row("ceiling", "ceiling")
        for ns in busy:
            calibration_row(f"ceiling + {ns} ns of work", f"ceiling-busy-{ns}")
        calibration_row("doorman, /hello/ HS256", "doorman")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--doorman", required=True)
    p.add_argument("--ceiling", required=True)
    p.add_argument("--ceiling-stack", required=True)
    p.add_argument("--handwritten", required=True,
                   help="the hand-written axum + jsonwebtoken /hello/ (bench/peers)")
    p.add_argument("--busy-ns", default="",
                   type=lambda v: [int(n) for n in v.split(",") if n.strip()],
                   help="comma-separated nanoseconds: in the paired rounds, also the ceiling "
                        "with that much CPU work per request (calibrates the ratio targets)")
    p.add_argument("--hash-time", required=True)
    p.add_argument("--django-venv")
    p.add_argument("--django-app")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--connections", default="16,64,256")
    p.add_argument("--idle-connections", type=int, default=10000)
    p.add_argument("--startups", type=int, default=10)
    p.add_argument("--flood-pairs", type=int, default=3)
    p.add_argument("--pair-rounds", type=int, default=5,
                   help="rounds of the back-to-back measurements the throughput targets use")
    p.add_argument("--pair-seconds", type=int, default=5)
    p.add_argument("--distinct-tokens", type=int, default=12000,
                   help="distinct EdDSA access tokens in the paired rounds' distinct-token "
                        "workload (more than doorman's verified-token cache holds)")
    p.add_argument("--distinct-refresh", type=int, default=60000,
                   help="distinct refresh tokens in the PostgreSQL distinct-token workloads "
                        "(more than a round sends, so each is checked about once)")
    p.add_argument("--postgres", metavar="URL",
                   help="also doorman on this PostgreSQL server (postgres://user@host:port, a "
                        "database of its own is created and dropped) in the paired rounds: "
                        "its refresh and verify of a refresh token against its own /hello/")
    p.add_argument("--out")
    p.add_argument("--pin", action="store_true",
                   help="servers on the first core, wrk on the others (needs 2+ cores): "
                        "throughput then follows each server's own CPU per request")
    args = p.parse_args()
    global PIN
    PIN = args.pin and CORES > 1
    args.connections = [int(c) for c in args.connections.split(",")]
    raise_fd_limit()
    run = Run(args)
    try:
        run.hash_time()
        run.run_ceiling()
        run.run_doorman()
        if args.django_venv:
            run.run_django()
        else:
            log("Django peer skipped (no --django-venv)")
        run.paired()
    finally:
        run.drop_databases()
        shutil.rmtree(run.work, ignore_errors=True)
    report(run)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A login flood, measured from outside: capacity first (four clients logging in back to
back), then logins arriving open-loop at three times that rate, each on a connection of its
own, while one client checks a token on /hello/ and asks /healthz. Prints how the logins were
answered (200, 503, 429, none within the deadline) with their latencies, and whether the token
checks and the health checks were shed.

    python3 bench/login_flood.py --doorman target/release/doorman [--seconds 10] [--factor 3]

Default settings, SQLite, one user logging in with the right password.
"""

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

PASSWORD = "flood-password-1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def request(port, method, path, body=None, token=None, deadline=10.0):
    """One request on a connection of its own: (status or None, headers text, body, seconds)."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), deadline)
        data = json.dumps(body).encode() if body is not None else b""
        head = f"{method} {path} HTTP/1.1\r\nHost: doorman\r\nConnection: close\r\n"
        if token:
            head += f"Authorization: Bearer {token}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        writer.write(head.encode() + b"\r\n" + data)
        left = deadline - (time.monotonic() - started)
        answer = await asyncio.wait_for(reader.read(), max(left, 0.001))
        writer.close()
    except (asyncio.TimeoutError, OSError):
        return None, "", b"", time.monotonic() - started
    took = time.monotonic() - started
    head, _, rest = answer.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None, "", b"", took
    return status, head.decode("latin-1").lower(), rest, took


def login_body():
    return {"username": "flood", "password": PASSWORD}


def pct(samples, p):
    if not samples:
        return float("nan")
    samples = sorted(samples)
    return samples[min(len(samples) - 1, int(len(samples) * p / 100))]


async def capacity(port, seconds=5.0, clients=4):
    done = 0
    until = time.monotonic() + seconds

    async def one():
        nonlocal done
        while time.monotonic() < until:
            status, *_ = await request(port, "POST", "/api/token/", login_body())
            if status == 200:
                done += 1

    await asyncio.gather(*(one() for _ in range(clients)))
    return done / seconds


async def flood(port, rate, seconds, token):
    logins = []
    probes = {"/hello/": [], "/healthz": []}
    until = time.monotonic() + seconds

    async def login():
        logins.append(await request(port, "POST", "/api/token/", login_body()))

    async def probe():
        while time.monotonic() < until:
            for path in probes:
                status, _, _, took = await request(port, "GET", path, token=token)
                probes[path].append((status, took))
            await asyncio.sleep(0.01)

    prober = asyncio.ensure_future(probe())
    tasks = []
    start = time.monotonic()
    n = 0
    while time.monotonic() < until:
        tasks.append(asyncio.ensure_future(login()))
        n += 1
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
    await asyncio.gather(*tasks)
    await prober
    return logins, probes


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--doorman", required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--factor", type=float, default=3.0)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="doorman-login-flood-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOORMAN_")}
    env.update({"DOORMAN_DATA_DIR": work, "RUST_LOG": "error",
                "DOORMAN_PRUNE_INTERVAL": "0"})
    subprocess.run([args.doorman, "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([args.doorman, "user", "create", "flood", "--password-stdin"], env=env,
                   input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    port = free_port()
    env["DOORMAN_BIND"] = f"127.0.0.1:{port}"
    server = subprocess.Popen([args.doorman, "serve"], env=env, cwd=work,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        loop = asyncio.new_event_loop()
        status, _, body, _ = loop.run_until_complete(
            request(port, "POST", "/api/token/", login_body()))
        token = json.loads(body)["access"]
        cap = loop.run_until_complete(capacity(port))
        rate = cap * args.factor
        logins, probes = loop.run_until_complete(flood(port, rate, args.seconds, token))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    by_status = {}
    for status, head, _, took in logins:
        by_status.setdefault(status, []).append((took, "retry-after:" in head))
    print(f"capacity: {cap:.0f} logins/s; offered {rate:.0f}/s for {args.seconds:.0f} s: "
          f"{len(logins)} logins")
    for status, answers in sorted(by_status.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        times = [t for t, _ in answers]
        label = "no answer within 10 s" if status is None else str(status)
        with_retry = sum(1 for _, r in answers if r)
        print(f"  {label}: {len(answers)} (median {pct(times, 50):.3f} s, "
              f"p99 {pct(times, 99):.3f} s, max {max(times):.3f} s; "
              f"Retry-After on {with_retry})")
    for path, samples in probes.items():
        shed = sum(1 for s, _ in samples if s != 200)
        times = [t for _, t in samples]
        print(f"  {path}: {len(samples)} probes, {shed} not 200, "
              f"p50 {pct(times, 50) * 1000:.1f} ms, p99 {pct(times, 99) * 1000:.1f} ms")


if __name__ == "__main__":
    main()

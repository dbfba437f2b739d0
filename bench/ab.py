#!/usr/bin/env python3
"""Before/after on one machine: two doorman binaries side by side, `GET /hello/` (HS256),
`POST /api/token/verify/` (of the access token, and of the refresh token, which reads the
blacklist) and `POST /api/token/refresh/` (rotation off) at c=64, and
`POST /api/token/` (one user's right password, as a service's workers behind one address log
in) at c=16, alternated round by round so that the machine's drift falls on both. Reports, per binary and workload, the median requests per second and the median server
CPU per request (user, and user + system), read from /proc. User CPU per request is the
steadiest of them on a shared machine: it leaves out the kernel's share, which moves with how
often wrk has to be woken.

    python3 bench/ab.py OLD_DOORMAN NEW_DOORMAN [--rounds 6] [--seconds 4]

Build the old binary from a worktree, e.g.
    git worktree add /tmp/doorman-old COMMIT && (cd /tmp/doorman-old && cargo build --release -p doorman)
Needs wrk (bench/run installs it).
"""

import argparse
import os
import statistics
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("binaries", nargs=2, metavar="DOORMAN")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--seconds", type=int, default=4)
    args = p.parse_args()
    h.raise_fd_limit()
    run = h.Run(types.SimpleNamespace(doorman=None, seconds=args.seconds, connections=[64],
                                      out=None))
    servers = []
    try:
        for i, binary in enumerate(args.binaries):
            run.args.doorman = os.path.abspath(binary)
            server = run.doorman(f"ab{i}", {"DOORMAN_SIGNING_KEY": h.HS256_SECRET})
            servers.append(server)
            pair = run.login(server)
            access = pair["access"]
            scripts = [("hello", h.script_get("/hello/", access)),
                       ("verify", h.script_post("/api/token/verify/", {"token": access})),
                       ("verify_refresh", h.script_post("/api/token/verify/",
                                                        {"token": pair["refresh"]})),
                       ("refresh", h.script_post("/api/token/refresh/",
                                                 {"refresh": pair["refresh"]})),
                       ("login", h.script_post("/api/token/", {
                           "username": "bench", "password": h.PASSWORD}))]
            server.scripts = scripts
        results = {}
        for r in range(args.rounds):
            for i, server in enumerate(servers):
                for workload, script in server.scripts:
                    # Logins hash a password each: 16 connections already keep every core busy.
                    conns = 16 if workload == "login" else 64
                    w = server.load(script, conns, args.seconds, workdir=run.work)
                    row = (w["ok_rps"], w["user_us_per_req"], w["cpu_us_per_req"], w["errors"])
                    results.setdefault((i, workload), []).append(row)
                    h.log(f"round {r + 1}: {args.binaries[i]} {workload} {row[0]:.0f} req/s, "
                          f"{row[1]:.2f} us user / {row[2]:.2f} us total per request")
        print("| binary | workload | median ok req/s | median user CPU us/req "
              "| median total CPU us/req | errors |")
        print("|---|---|---:|---:|---:|---:|")
        for (i, workload), rows in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            med = lambda k: statistics.median(row[k] for row in rows)  # noqa: E731
            print(f"| {args.binaries[i]} | {workload} | {med(0):.0f} | {med(1):.2f} "
                  f"| {med(2):.2f} | {sum(row[3] for row in rows)} |")
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()

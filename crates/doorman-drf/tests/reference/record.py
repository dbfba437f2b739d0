#!/usr/bin/env python3
"""Re-records cases.json (beside this script) from the real reference stack.

The case inputs (Content-Type, Accept, query, fields, body) are read from the fixture itself, so it
stays their one source; every case is sent over raw HTTP to a probe view served by gunicorn, and
the fixture is rewritten with the status and body that came back. A case marked with a
`divergence` keeps doorman's chosen `status` and `answer`; only its `drf_status` is re-recorded.

The probe view is a DRF APIView under the reference app's settings (its REST_FRAMEWORK block:
default parsers, JSONRenderer only, JWT authentication). Its serializer has one CharField per
name in the case's `fields`; it answers the serializer's errors (400) or `{"validated": [...]}`,
the cleaned values in field order (200). Parse, media type, negotiation and format errors are
DRF's own answers.

The field names travel in the URL's path, never in its query string: the query is the case's
`query` and nothing else, because an empty one and a non-empty one are not the same request to
Django. With a charset that is not a text codec (`charset=base64`), building `request.GET`
from a non-empty query crashes Django before DRF sees the request, while an empty one lets
DRF answer "Unsupported charset".

Run it with the Python (3.11) of a venv holding the pinned versions of requirements.txt, from
the repository's root (see README.md):

    venv=$(mktemp -d)/venv
    python3.11 -m venv "$venv"
    "$venv/bin/pip" install -r crates/doorman-drf/tests/reference/requirements.txt
    "$venv/bin/python" crates/doorman-drf/tests/reference/record.py

The output depends only on the fixture's inputs and the stack's answers: running it twice gives
the same file.
"""

import base64
import importlib.metadata
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "cases.json"
REFERENCE_APP = HERE.parents[2] / "doorman" / "tests" / "interop" / "reference-app"

# What the fixture claims to be: error texts (Python's json module, Django's multipart parser)
# and even the depth at which deep nesting crashes change between these versions.
PINS = dict(
    line.split("==")
    for line in (HERE / "requirements.txt").read_text().split()
)
PYTHON = (3, 11)

# A run of one byte at least this long becomes a segment of its own, so that answers echoing
# long inputs (digits, indentation, boundaries) stay small.
MIN_RUN = 8

PROBE_SETTINGS = """\
from peerapi.settings import *  # noqa: F403 -- the reference app's settings, DRF config included

ROOT_URLCONF = "probe_urls"
"""

PROBE_URLS = """\
from django.urls import path
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView


class ProbeView(APIView):
    def post(self, request, fields):
        names = fields.split(",")
        declared = {name: serializers.CharField() for name in names}
        probe = type("Probe", (serializers.Serializer,), declared)
        serializer = probe(data=request.data)
        if serializer.is_valid():
            return Response({"validated": [serializer.validated_data[n] for n in names]})
        return Response(serializer.errors, status=400)


urlpatterns = [path("probe/<str:fields>/", ProbeView.as_view())]
"""

PROBE_WSGI = """\
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "probe_settings")
application = get_wsgi_application()
"""


def installed(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def check_versions():
    found = {name: installed(name) for name in PINS}
    wrong = {name: (found[name], pin) for name, pin in PINS.items() if found[name] != pin}
    if sys.version_info[:2] != PYTHON:
        wrong["Python"] = (sys.version.split()[0], ".".join(map(str, PYTHON)))
    if wrong:
        for name, (have, want) in wrong.items():
            print(f"{name}: {have} installed, {want} pinned", file=sys.stderr)
        sys.exit("install the pinned versions, or pin others on purpose (see README.md)")


def expand(segments):
    if segments is None:
        return None
    out = bytearray()
    for segment in segments:
        if "unit" in segment:
            unit = segment["unit"].encode("utf-8")
        else:
            unit = base64.b64decode(segment["unit_b64"], validate=True)
        out += unit * segment["times"]
    return bytes(out)


def segment(unit, times):
    try:
        return {"unit": unit.decode("utf-8"), "times": times}
    except UnicodeDecodeError:
        return {"unit_b64": base64.b64encode(unit).decode("ascii"), "times": times}


def compress(data):
    """Run-length segments of `data`: runs of MIN_RUN or more of one byte, the rest as text."""
    segments = []
    literal_start = 0
    i = 0
    while i < len(data):
        j = i
        while j < len(data) and data[j] == data[i]:
            j += 1
        if j - i >= MIN_RUN:
            if literal_start < i:
                segments.append(segment(data[literal_start:i], 1))
            segments.append(segment(data[i : i + 1], j - i))
            literal_start = j
        i = j
    if literal_start < len(data):
        segments.append(segment(data[literal_start:], 1))
    return segments


def dumps(fixture):
    """The fixture's layout: a case's keys one a line, each value on that line."""
    lines = ["{", '  "cases": [']
    cases = fixture["cases"]
    for i, case in enumerate(cases):
        lines.append("    {")
        items = list(case.items())
        for j, (key, value) in enumerate(items):
            comma = "," if j + 1 < len(items) else ""
            lines.append(f"      {json.dumps(key)}: {json.dumps(value)}{comma}")
        lines.append("    }" + ("," if i + 1 < len(cases) else ""))
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def request_bytes(case):
    target = "/probe/" + urllib.parse.quote(case["fields"], safe=",") + "/"
    if case["query"]:
        target += "?" + case["query"]
    body = expand(case["body"])
    head = [b"POST " + target.encode("ascii") + b" HTTP/1.1", b"Host: localhost"]
    content_type = expand(case["content_type"])
    if content_type is not None:
        head.append(b"Content-Type: " + content_type)
    accept = expand(case["accept"])
    if accept is not None:
        head.append(b"Accept: " + accept)
    head += [b"Content-Length: %d" % len(body), b"Connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def dechunk(data):
    out = bytearray()
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += data[:size]
        data = data[size + 2 :]


def exchange(sock_path, request):
    """Sends one request on a fresh connection; returns (status, body)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(60)
        conn.connect(sock_path)
        try:
            conn.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it may answer before reading the whole body; the answer is still there
        received = bytearray()
        while chunk := conn.recv(65536):
            received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    status = int(status_line.split(b" ")[1])
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = dechunk(body)
    elif b"content-length" in headers and int(headers[b"content-length"]) != len(body):
        raise RuntimeError(f"short answer: {len(body)} of {headers[b'content-length']} bytes")
    return status, body


def serve(project, sock_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(project), str(REFERENCE_APP)])
    env["DJANGO_SETTINGS_MODULE"] = "probe_settings"
    # The settings name a SQLite file; the probe never opens it, but keep it out of the repository.
    env["PEER_DB"] = str(project / "unused.sqlite3")
    # Launched by its own entry script, as the reference app is: the worker inherits the
    # arbiter's stack, so the launcher decides how deep a JSON body can nest before CPython's
    # recursion limit (the RecursionError cases).
    gunicorn = Path(sys.executable).with_name("gunicorn")
    command = [
        str(gunicorn),
        "--workers", "1",
        "--bind", f"unix:{sock_path}",
        "--no-control-socket",  # it would live in the home directory, shared between runs
        "probe_wsgi:application",
    ]
    with open(project / "gunicorn.log", "wb") as log:
        server = subprocess.Popen(
            command, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=log
        )
    ping = b"GET /probe/up/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    deadline = time.monotonic() + 30
    while True:
        if server.poll() is not None:
            failed = f"{shlex.join(command)} exited with {server.returncode}"
            sys.exit(failed + ":\n" + (project / "gunicorn.log").read_text(errors="replace"))
        try:
            status, _ = exchange(sock_path, ping)
            if status == 405:  # the probe answers only POST: it is up
                return server
        except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError):
            pass
        if time.monotonic() > deadline:
            server.terminate()
            server.wait()
            sys.exit("gunicorn did not come up in 30 s")
        time.sleep(0.2)


def main():
    check_versions()
    fixture_path = Path(sys.argv[1]) if len(sys.argv) > 1 else FIXTURE
    fixture = json.loads(fixture_path.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="doorman-drf-probe-") as tmp:
        project = Path(tmp)
        (project / "probe_settings.py").write_text(PROBE_SETTINGS)
        (project / "probe_urls.py").write_text(PROBE_URLS)
        (project / "probe_wsgi.py").write_text(PROBE_WSGI)
        sock_path = str(project / "probe.sock")
        server = serve(project, sock_path)
        try:
            recorded = []
            for i, case in enumerate(fixture["cases"]):
                status, body = exchange(sock_path, request_bytes(case))
                new = dict(case)
                new["drf_status"] = status
                if case["divergence"] is None:
                    new["status"] = status
                    new["answer"] = compress(body)
                elif status == case["status"] and body == expand(case["answer"]):
                    print(f"case {i}: DRF now answers as doorman does", file=sys.stderr)
                if new != case:
                    print(f"case {i}: DRF's answer changed", file=sys.stderr)
                recorded.append(new)
        finally:
            server.terminate()
            server.wait()
    fixture["cases"] = recorded
    fixture_path.write_text(dumps(fixture), encoding="utf-8")
    print(f"recorded {len(recorded)} cases into {fixture_path}", file=sys.stderr)


if __name__ == "__main__":
    main()

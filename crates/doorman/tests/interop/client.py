"""The simplejwt tutorial's client, as a user of the tutorial would write it with `requests`:
log in, call the protected view with `Authorization: Bearer <access>`, refresh, call it again.
It must work unchanged against the reference app and against doorman.

Usage: client.py BASE_URL USERNAME PASSWORD     (e.g. http://127.0.0.1:8000/ alice alice-password-1)
Prints each JSON answer; exits 1 at the first unexpected status or answer.
"""
import json
import sys

import requests


def expect(response, status, what):
    """Stops the script unless the server answered `status` with a JSON body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    print("%s: %d %s" % (what, response.status_code, json.dumps(body)))
    if response.status_code != status or not isinstance(body, dict):
        print("unexpected answer to %s: %d %r" % (what, response.status_code, response.text[:500]), file=sys.stderr)
        sys.exit(1)
    return body


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    url, username, password = sys.argv[1], sys.argv[2], sys.argv[3]
    if not url.endswith("/"):
        url += "/"

    tokens = expect(requests.post(url + "api/token/", json={"username": username, "password": password}, timeout=30),
                    200, "POST api/token/")
    if list(tokens) != ["refresh", "access"]:
        print("login answer keys %r, expected ['refresh', 'access']" % list(tokens), file=sys.stderr)
        sys.exit(1)
    access, refresh = tokens["access"], tokens["refresh"]

    hello = expect(requests.get(url + "hello/", headers={"Authorization": "Bearer " + access}, timeout=30),
                   200, "GET hello/")
    if hello != {"message": "Hello, World!"}:
        print("hello answered %r" % hello, file=sys.stderr)
        sys.exit(1)

    refreshed = expect(requests.post(url + "api/token/refresh/", json={"refresh": refresh}, timeout=30),
                       200, "POST api/token/refresh/")
    if "access" not in refreshed:
        print("refresh answer has no access token: %r" % refreshed, file=sys.stderr)
        sys.exit(1)

    hello = expect(requests.get(url + "hello/", headers={"Authorization": "Bearer " + refreshed["access"]}, timeout=30),
                   200, "GET hello/ (refreshed access)")
    if hello != {"message": "Hello, World!"}:
        print("hello answered %r" % hello, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

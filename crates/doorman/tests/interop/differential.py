"""Differential test: the same requests to the real Django + simplejwt app and to doorman.

Usage: differential.py DJANGO_URL DOORMAN_URL SECRET
Both servers must share the HS256 SECRET and have the reference users (alice / alice-password-1,
id 1, active; inactive / inactive-password-1, id 2). Every case is sent to both; status, body and
the headers Content-Type, Allow, WWW-Authenticate and Location must agree, except where doorman
deliberately does better (listed in DELIBERATE, with doorman's expected answer). Exits non-zero
listing every disagreement. Only the standard library and `requests` are used.
"""
import base64
import hashlib
import hmac
import json
import sys
import time

import requests

DJANGO, DOORMAN, SECRET = sys.argv[1].rstrip("/"), sys.argv[2].rstrip("/"), sys.argv[3].encode()
HEADERS = ["Content-Type", "Allow", "WWW-Authenticate", "Location"]
NOW = int(time.time())


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(payload, header='{"alg":"HS256","typ":"JWT"}', key=SECRET):
    """An HS256 token over exactly this header and payload text."""
    signing_input = b64(header.encode()) + "." + b64(payload.encode())
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(sig)


def claims(token_type="access", exp=NOW + 300, jti="j1", user_id='"1"', extra=""):
    parts = []
    if token_type is not None:
        parts.append('"token_type":"%s"' % token_type)
    if exp is not None:
        parts.append('"exp":%s' % exp)
    parts.append('"iat":%d' % NOW)
    if jti is not None:
        parts.append('"jti":"%s"' % jti)
    if user_id is not None:
        parts.append('"user_id":%s' % user_id)
    return "{" + ",".join(parts) + extra + "}"


ACCESS = mint(claims())
REFRESH = mint(claims("refresh", NOW + 3600, "r1"))
TOKENS = {
    "access": ACCESS,
    "access-numeric-user": mint(claims(user_id="1")),
    "refresh": REFRESH,
    "expired": mint(claims(exp=NOW - 1)),
    "exp-now": mint(claims(exp=NOW)),
    "wrong-key": mint(claims(), key=b"another-secret-another-secret-another"),
    "alg-none": b64(b'{"alg":"none","typ":"JWT"}') + "." + b64(claims().encode()) + ".",
    "hs512-header": mint(claims(), header='{"alg":"HS512","typ":"JWT"}'),
    "no-exp": mint(claims(exp=None)),
    "no-jti": mint(claims(jti=None)),
    "no-type": mint(claims(token_type=None)),
    "no-user": mint(claims(user_id=None)),
    "user-999": mint(claims(user_id='"999"')),
    "user-inactive": mint(claims(user_id='"2"')),
    "future-nbf": mint(claims(extra=',"nbf":%d' % (NOW + 3600))),
    "future-iat": mint('{"token_type":"access","exp":%d,"iat":%d,"jti":"j","user_id":"1"}' % (NOW + 7200, NOW + 3600)),
    "float-exp": mint(claims(exp="%d.5" % (NOW + 300))),
    "aud-iss": mint(claims(extra=',"aud":"x","iss":"y"')),
    "kid-int": mint(claims(), header='{"alg":"HS256","kid":1,"typ":"JWT"}'),
    # A Django service adding a kid: jwt.encode(..., headers={"kid": "x"}) writes exactly this
    # header. simplejwt ignores the kid, and so does doorman with its one HS256 secret.
    "kid-string": mint(claims(), header='{"alg":"HS256","kid":"x","typ":"JWT"}'),
    "kid-path": mint(claims(), header='{"alg":"HS256","kid":"../../../../dev/null","typ":"JWT"}'),
    "refresh-kid": mint(claims("refresh", NOW + 3600, "r4"), header='{"alg":"HS256","kid":"x","typ":"JWT"}'),
    "sliding": mint(claims("sliding", extra=',"refresh_exp":%d' % (NOW + 900))),
    "refresh-no-type": mint(claims(None, NOW + 3600, "r2")),
    "refresh-inactive": mint(claims("refresh", NOW + 3600, "r3", '"2"')),
    "garbage": "garbage",
    "two-parts": "abc.def",
}

J = {"Content-Type": "application/json"}
F = {"Content-Type": "application/x-www-form-urlencoded"}


def case(name, method, path, body=None, headers=None):
    return {"name": name, "method": method, "path": path, "body": body, "headers": headers or {}}


def j(obj):
    return json.dumps(obj).encode()


CASES = []
LOGIN = {"username": "alice", "password": "alice-password-1"}
for view, field in [("/api/token/", None), ("/api/token/refresh/", "refresh"), ("/api/token/verify/", "token"), ("/api/token/blacklist/", "refresh")]:
    CASES += [
        case("GET " + view, "GET", view),
        case("PUT " + view, "PUT", view, b"{}", J),
        case("DELETE " + view, "DELETE", view),
        case("PATCH " + view, "PATCH", view, b"{}", J),
        case("OPTIONS " + view, "OPTIONS", view),
        case("empty body " + view, "POST", view, b"", J),
        case("empty body no type " + view, "POST", view, b""),
        case("empty object " + view, "POST", view, b"{}", J),
        case("list " + view, "POST", view, b"[1,2]", J),
        case("string " + view, "POST", view, b'"x"', J),
        case("int " + view, "POST", view, b"3", J),
        case("float " + view, "POST", view, b"3.5", J),
        case("bool " + view, "POST", view, b"true", J),
        case("null " + view, "POST", view, b"null", J),
        case("text/plain " + view, "POST", view, b"x", {"Content-Type": "text/plain"}),
        case("no content type " + view, "POST", view, b"x"),
        case("vnd json " + view, "POST", view, b"{}", {"Content-Type": "application/vnd.api+json"}),
        case("accept html " + view, "POST", view, b"{}", dict(J, Accept="text/html")),
        case("accept empty " + view, "POST", view, b"{}", dict(J, Accept="")),
        case("accept indent " + view, "POST", view, b"{}", dict(J, Accept="application/json; indent=4")),
        case("accept star indent " + view, "POST", view, b"{}", dict(J, Accept="*/*; indent=2")),
        case("format xml " + view, "POST", view + "?format=xml", b"{}", J),
        case("no slash POST " + view, "POST", view.rstrip("/"), b"{}", J),
        case("no slash GET " + view, "GET", view.rstrip("/") + "?a=1"),
    ]
    if field:
        for token in TOKENS:
            CASES.append(case("%s %s" % (view, token), "POST", view, j({field: TOKENS[token]}), J))
        CASES += [
            case("blank %s" % view, "POST", view, j({field: "  "}), J),
            case("null %s" % view, "POST", view, j({field: None}), J),
            case("number %s" % view, "POST", view, j({field: 12}), J),
            case("list field %s" % view, "POST", view, j({field: ["a"]}), J),
            case("form %s" % view, "POST", view, ("%s=garbage" % field).encode(), F),
            case("padded %s" % view, "POST", view, j({field: " " + ACCESS + " "}), J),
        ]
CASES += [
    case("login ok", "POST", "/api/token/", j(LOGIN), J),
    case("login trimmed", "POST", "/api/token/", j({"username": " alice ", "password": "  alice-password-1 "}), J),
    case("login wrong", "POST", "/api/token/", j({"username": "alice", "password": "nope"}), J),
    case("login unknown", "POST", "/api/token/", j({"username": "zed", "password": "nope"}), J),
    case("login inactive", "POST", "/api/token/", j({"username": "inactive", "password": "inactive-password-1"}), J),
    case("login blank null", "POST", "/api/token/", j({"username": "", "password": None}), J),
    case("login types", "POST", "/api/token/", j({"username": True, "password": {"a": 1}}), J),
    case("login numbers", "POST", "/api/token/", j({"username": 12, "password": 1.5}), J),
    case("login nul", "POST", "/api/token/", b'{"username":"a\\u0000b","password":"x"}', J),
    case("login surrogate", "POST", "/api/token/", b'{"username":"a\\ud800","password":"x"}', J),
    case("login form", "POST", "/api/token/", b"username=alice&password=alice-password-1", F),
    case("login form repeated", "POST", "/api/token/", b"username=bob&username=alice&password=alice-password-1", F),
    case("login form blank", "POST", "/api/token/", b"username=&password", F),
    case("login multipart", "POST", "/api/token/", b'--b\r\nContent-Disposition: form-data; name="username"\r\n\r\nalice\r\n--b\r\nContent-Disposition: form-data; name="password"\r\n\r\nalice-password-1\r\n--b--\r\n', {"Content-Type": "multipart/form-data; boundary=b"}),
    case("login multipart no boundary", "POST", "/api/token/", b"--b\r\n", {"Content-Type": "multipart/form-data"}),
    case("json charset", "POST", "/api/token/", j(LOGIN), {"Content-Type": "application/json; charset=utf-8"}),
    case("json upper", "POST", "/api/token/", j(LOGIN), {"Content-Type": "APPLICATION/JSON"}),
    case("star content type", "POST", "/api/token/", j(LOGIN), {"Content-Type": "*/*"}),
    case("invalid utf-8", "POST", "/api/token/", b'{"username":"\xff"}', J),
    case("bom", "POST", "/api/token/", b"\xef\xbb\xbf{}", J),
]
for text in ["{", "nope", "{'a':1}", '{"a" 1}', '{"a":1 "b":2}', '{"a":1,}', "[1,]", '{"a":}', "{}\n x", '"abc', '"a\nb"', '"\\x"', '"\\u12"', "NaN", "[-Infinity]", "01", "[" * 50 + "]" * 50]:
    CASES.append(case("json %r" % text[:20], "POST", "/api/token/", text.encode(), J))
for header in [None, "Basic abc", "bearer " + ACCESS, "Bearer", "Bearer a b", "Bearer  " + ACCESS + "  ", "Bearer\t" + ACCESS, ""]:
    CASES.append(case("hello auth %r" % (header or "")[:16], "GET", "/hello/", None, {"Authorization": header} if header is not None else {}))
for token in TOKENS:
    CASES.append(case("hello " + token, "GET", "/hello/", None, {"Authorization": "Bearer " + TOKENS[token]}))
CASES += [
    case("hello POST anon", "POST", "/hello/", b"{}", J),
    case("hello POST auth", "POST", "/hello/", b"{}", dict(J, Authorization="Bearer " + ACCESS)),
    case("hello DELETE auth", "DELETE", "/hello/", None, {"Authorization": "Bearer " + ACCESS}),
    case("hello OPTIONS anon", "OPTIONS", "/hello/"),
    case("hello OPTIONS auth", "OPTIONS", "/hello/", None, {"Authorization": "Bearer " + ACCESS}),
    case("hello HEAD", "HEAD", "/hello/", None, {"Authorization": "Bearer " + ACCESS}),
    case("hello accept html", "GET", "/hello/", None, {"Authorization": "Bearer " + ACCESS, "Accept": "text/html"}),
    case("hello indent", "GET", "/hello/", None, {"Authorization": "Bearer " + ACCESS, "Accept": "application/json; indent=3"}),
    case("hello no slash", "GET", "/hello"),
]

# Deliberate differences (docs/wire-contract.md section 8): case name -> (status, body).
NOT_FOUND = (404, '{"detail":"Not found."}')
BAD_REQUEST_DEPTH = None  # Python answers 500 for a RecursionError only beyond ~900 levels; 50 is fine.
DELIBERATE = {
    "/api/token/refresh/ no-jti": (401, '{"detail":"Token has no id","code":"token_not_valid"}'),
    "/api/token/blacklist/ no-jti": (401, '{"detail":"Token has no id","code":"token_not_valid"}'),
    "/api/token/refresh/ float-exp": None,  # simplejwt: 200; doorman: 200 too (checked below)
}


def send(base, c):
    url = base + c["path"]
    return requests.request(c["method"], url, data=c["body"], headers=c["headers"], allow_redirects=False, timeout=10)


def shape(res):
    body = res.text
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict) and ("access" in parsed or "refresh" in parsed) and res.status_code == 200:
            body = "tokens:" + ",".join(parsed)  # fresh tokens differ; their keys and order must not
    except ValueError:
        pass
    return res.status_code, body, {h: res.headers.get(h) for h in HEADERS}


def main():
    failures = []
    for c in CASES:
        name = c["name"]
        dj, dm = shape(send(DJANGO, c)), shape(send(DOORMAN, c))
        if name in DELIBERATE:
            expected = DELIBERATE[name]
            if expected is not None and (dm[0], dm[1]) != expected:
                failures.append("%s: doorman %s %s, expected %s" % (name, dm[0], dm[1], expected))
            continue
        if dj[0] == 404 and dm[:2] == NOT_FOUND:
            continue  # Django's HTML 404 page; doorman's JSON one
        if dj[0] == 500:
            if dm[0] != 401:
                failures.append("%s: Django 500, doorman %s %s (expected a 401)" % (name, dm[0], dm[1]))
            continue
        if dj != dm:
            failures.append("%s:\n    django  %r\n    doorman %r" % (name, dj, dm))
    print("%d cases, %d disagreements" % (len(CASES), len(failures)))
    for f in failures:
        print(f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Records simplejwt's HTTP contract from the real reference app, for doorman's replay test.

What it does
    Reads the case list `cases.json` (beside this script), mints the tokens it describes, sends
    every case in file order to a running server and writes `simplejwt-5.5.1.json`: the case list
    plus, per case, the observed `response`. doorman's replay test mints the same tokens from the
    same declarations and expects the same answers, except where a case's `"doorman"` field says
    doorman deliberately answers otherwise (docs/wire-contract.md section 8).

How to re-record (from the workspace root; needs python3 with venv and pip, PyPI reachable)
    rm -f /tmp/cap-peer.sqlite3     # a fresh database: alice must be id 1, inactive id 2, and
                                    # the blacklist cases need their jtis unused
    PEER_DB=/tmp/cap-peer.sqlite3 crates/doorman/tests/interop/reference-app/setup.sh /tmp/djv-cap
    /tmp/djv-cap/bin/pip install -q requests PyJWT
    (cd crates/doorman/tests/interop/reference-app && \
     PEER_DB=/tmp/cap-peer.sqlite3 \
     PEER_SECRET_KEY=doorman-test-only-hs256-secret-0123456789abcdef \
     /tmp/djv-cap/bin/gunicorn -w 2 -b 127.0.0.1:8021 peerapi.wsgi &)
    /tmp/djv-cap/bin/python crates/doorman/tests/contract/capture.py http://127.0.0.1:8021
    # then stop gunicorn, and review the diff of simplejwt-5.5.1.json before committing it.
PEER_SECRET_KEY must be the `keys.test` secret of cases.json; PEER_ROTATE must be unset (the
contract recorded is simplejwt's defaults). Run it from the venv's python so that the versions of
the reference stack are recorded too.

Case list format (cases.json)
    keys:   {"test": SECRET, "other": SECRET}  HMAC secrets; "test" is the server's key.
    tokens: {NAME: {"header": JSON (default {"alg":"HS256","typ":"JWT"}),
                    "claims": JSON (usually an object; {"now": N} anywhere inside = run start
                              time in whole seconds + N, an int when N is an int, a float when N
                              is a float),
                    "key": "test" | "other" | "none" (empty signature),
                    "mangle": absent | "pad" | "flip-sig" | "strip-sig" | "two-segments"
                              | "four-segments"}}
        Minting: header and claims serialized as compact JSON (separators "," and ":"), key
        order as written, ASCII only; segments base64url without padding; the signature is
        HMAC over "header.payload" with SHA-256, or SHA-384/SHA-512 when the header's alg is
        HS384/HS512. Mangles: "pad" = standard `=` padding on all three segments, the signature
        computed over the *padded* header.payload (so only the padding is wrong); "flip-sig" =
        first signature byte XOR 0x01; "strip-sig" = "header.payload." (empty signature);
        "two-segments" = "header.payload"; "four-segments" = token + "." + signature segment.
    cases:  [{"name": unique, "covers": what it shows ("wire-contract N":
              section N of docs/wire-contract.md),
              "request": {"method", "path" (with any query),
                          "headers": {NAME: VALUE} (the only headers sent besides Host and
                                     Content-Length: no Accept, no User-Agent unless given),
                          and at most one body: "json": any JSON (sent compact, key order kept),
                          "text": a UTF-8 string sent as is, "base64": raw bytes;
                          no body key = no body (Content-Length: 0 on POST/PUT/PATCH)},
              "doorman": optional, where doorman deliberately differs: "why", and what replaces
                         the recorded answer: "status", "body", "headers" (merged over the
                         recorded ones; null = absent), "compare"}]
        `{token:NAME}` inside the body or a header value is replaced by that minted token.
        Cases run in file order against one fresh database: the blacklist cases come before
        the cases that observe the blacklist.

Recorded answer (simplejwt-5.5.1.json: everything in cases.json, plus "recorded" and per case
"response")
    response: {"status": int,
               "headers": {Content-Type, Allow, WWW-Authenticate, Location, Vary, Cache-Control:
                           the value or null},
               "body": text (or "body_base64" when not UTF-8),
               "compare": "exact" | "shape",
               for "shape" (a 200 carrying fresh tokens, compared by shape, not text):
               "body_keys": [keys in order],
               "tokens": {KEY: {"header": decoded header JSON text, "claim_keys": [in order],
                                "token_type": ..., "user_id": ..., "exp_minus_iat": int}}}
               (exp_minus_iat of an access token may be 299 as well as 300: wire-contract 3)

Uses only the standard library, `requests` and (for a self-check of the minting) `PyJWT`.
"""
import argparse
import base64
import copy
import datetime
import hashlib
import hmac
import json
import os
import re
import sys
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
RECORDED_HEADERS = ["Content-Type", "Allow", "WWW-Authenticate", "Location", "Vary", "Cache-Control"]
DEFAULT_HEADER = {"alg": "HS256", "typ": "JWT"}
DIGESTS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
TOKEN_REF = re.compile(r"\{token:([A-Za-z0-9_.-]+)\}")
JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")


def compact(value):
    # ensure_ascii=False: non-ASCII stays UTF-8, as serde_json writes it (the cases use none).
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def padded(segment):
    return segment + "=" * (-len(segment) % 4)


def resolve_times(value, now):
    """Replaces every {"now": N} with now + N."""
    if isinstance(value, dict):
        if list(value) == ["now"] and isinstance(value["now"], (int, float)) and not isinstance(value["now"], bool):
            return now + value["now"]
        return {k: resolve_times(v, now) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_times(v, now) for v in value]
    return value


def mint(spec, keys, now):
    header = spec.get("header", DEFAULT_HEADER)
    claims = resolve_times(spec.get("claims", {}), now)
    key = spec.get("key", "test")
    mangle = spec.get("mangle")
    alg = header.get("alg") if isinstance(header, dict) else None
    digest = DIGESTS.get(alg, hashlib.sha256)
    h, p = b64(compact(header).encode()), b64(compact(claims).encode())
    if mangle == "pad":
        h, p = padded(h), padded(p)
    signing_input = (h + "." + p).encode("ascii")
    if key == "none":
        sig_bytes = b""
    else:
        sig_bytes = hmac.new(keys[key].encode(), signing_input, digest).digest()
    if mangle == "flip-sig":
        sig_bytes = bytes([sig_bytes[0] ^ 0x01]) + sig_bytes[1:]
    s = b64(sig_bytes)
    if mangle == "pad":
        s = padded(s)
    if mangle == "strip-sig":
        return h + "." + p + "."
    if mangle == "two-segments":
        return h + "." + p
    if mangle == "four-segments":
        return h + "." + p + "." + s + "." + s
    if mangle not in (None, "pad", "flip-sig"):
        raise SystemExit("unknown mangle %r" % mangle)
    return h + "." + p + "." + s


def self_check(tokens, keys):
    """A plain HS256 token minted here must decode with PyJWT, or the minting is wrong."""
    try:
        import jwt
    except ImportError:
        print("note: PyJWT not installed, minting self-check skipped", file=sys.stderr)
        return
    for token, declared in tokens.values():
        if declared.get("key", "test") == "test" and declared.get("header", DEFAULT_HEADER) == DEFAULT_HEADER \
                and "mangle" not in declared and isinstance(declared.get("claims"), dict):
            jwt.decode(token, keys["test"], algorithms=["HS256"],
                       options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                                "verify_aud": False, "verify_iss": False, "verify_sub": False,
                                "verify_jti": False})


def substitute(text, tokens):
    def token(match):
        name = match.group(1)
        if name not in tokens:
            raise SystemExit("unknown token %r" % name)
        return tokens[name]
    return TOKEN_REF.sub(token, text)


def request_body(request, tokens):
    if "json" in request:
        return substitute(compact(request["json"]), tokens).encode("utf-8")
    if "text" in request:
        return substitute(request["text"], tokens).encode("utf-8")
    if "base64" in request:
        return base64.b64decode(request["base64"])
    return None


def token_shape(token):
    header_seg, payload_seg, _ = token.split(".")
    header = base64.urlsafe_b64decode(padded(header_seg)).decode()
    claims = json.loads(base64.urlsafe_b64decode(padded(payload_seg)))
    shape = {"header": header, "claim_keys": list(claims)}
    for name in ("token_type", "user_id"):
        if name in claims:
            shape[name] = claims[name]
    if isinstance(claims.get("exp"), int) and isinstance(claims.get("iat"), int):
        shape["exp_minus_iat"] = claims["exp"] - claims["iat"]
    return shape


def record(response):
    out = {"status": response.status_code,
           "headers": {h: response.headers.get(h) for h in RECORDED_HEADERS}}
    try:
        out["body"] = response.content.decode("utf-8")
    except UnicodeDecodeError:
        out["body_base64"] = base64.b64encode(response.content).decode("ascii")
    out["compare"] = "exact"
    if response.status_code == 200 and "body" in out:
        try:
            parsed = json.loads(out["body"])
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and any(isinstance(v, str) and JWT_SHAPE.match(v) for v in parsed.values()):
            out["compare"] = "shape"
            out["body_keys"] = list(parsed)
            out["tokens"] = {k: token_shape(v) for k, v in parsed.items() if isinstance(v, str) and JWT_SHAPE.match(v)}
    return out


def versions():
    found = {}
    try:
        from importlib import metadata
    except ImportError:
        return found
    for package in ("djangorestframework-simplejwt", "djangorestframework", "Django", "PyJWT", "gunicorn"):
        try:
            found[package] = metadata.version(package)
        except Exception:
            found[package] = None
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base_url", help="the running reference app, e.g. http://127.0.0.1:8021")
    parser.add_argument("--cases", default=os.path.join(HERE, "cases.json"))
    parser.add_argument("--out", default=os.path.join(HERE, "simplejwt-5.5.1.json"))
    args = parser.parse_args()
    base = args.base_url.rstrip("/")

    with open(args.cases, encoding="utf-8") as f:
        spec = json.load(f)
    names = [c["name"] for c in spec["cases"]]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SystemExit("duplicate case names: %s" % duplicates)

    now = int(time.time())
    minted = {name: (mint(t, spec["keys"], now), t) for name, t in spec["tokens"].items()}
    self_check(minted, spec["keys"])
    tokens = {name: pair[0] for name, pair in minted.items()}

    # No default headers: each case's headers are all the client sends (besides Host and
    # Content-Length), so the Rust replay can send exactly the same request.
    session = requests.Session()
    session.headers.clear()
    out = copy.deepcopy(spec)
    out["recorded"] = {
        "at": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "base_url": base,
        "versions": versions(),
    }
    for case in out["cases"]:
        request = case["request"]
        headers = {k: substitute(v, tokens) for k, v in request.get("headers", {}).items()}
        response = session.request(request["method"], base + request["path"], headers=headers,
                                   data=request_body(request, tokens), allow_redirects=False, timeout=30)
        case["response"] = record(response)
        print("%3d %-6s %-28s %s" % (response.status_code, request["method"], request["path"][:28], case["name"]))

    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("%d cases recorded in %s" % (len(out["cases"]), args.out))


if __name__ == "__main__":
    main()

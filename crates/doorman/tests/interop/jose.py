"""JOSE interop with an independent implementation: PyJWT on `cryptography`.

Usage: jose.py BASE_URL ACCESS_TOKEN PRIVATE_KEY_PEM_FILE
  1. Fetches BASE_URL/.well-known/openid-configuration, follows its jwks_uri, and verifies
     ACCESS_TOKEN (signed by doorman) with the JWK whose kid the token names: PyJWKClient, as
     any Python service would.
  2. Signs a simplejwt-layout access token for user "1" with the same private key, the JWK's
     alg and kid, and prints it on the last line, for doorman to verify.
Exits non-zero on any failure.
"""
import json
import sys
import time
import uuid

import jwt
import requests
from jwt import PyJWKClient

base, access, pem_file = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]

discovery = requests.get(base + "/.well-known/openid-configuration", timeout=10).json()
jwks_uri = discovery["jwks_uri"]
header = jwt.get_unverified_header(access)
signing_key = PyJWKClient(jwks_uri).get_signing_key_from_jwt(access)
claims = jwt.decode(access, signing_key.key, algorithms=[header["alg"]])
assert claims["token_type"] == "access" and claims["user_id"] == "1", claims
print("verified doorman's", header["alg"], "token, kid", header["kid"])

now = int(time.time())
payload = {"token_type": "access", "exp": now + 300, "iat": now, "jti": uuid.uuid4().hex, "user_id": "1"}
with open(pem_file, "rb") as f:
    private = f.read()
token = jwt.encode(payload, private, algorithm=header["alg"], headers={"kid": header["kid"]})
print(token)

"""Private keys made by an independent implementation (cryptography), handed to doorman as
JWK files, and doorman's tokens checked against them with PyJWT.

Usage:
  jwk.py make ALG DIR            writes DIR/private.jwk (with "alg") and DIR/public.pem
  jwk.py verify ALG DIR TOKEN    verifies TOKEN with DIR/public.pem; exits non-zero if it fails
"""
import json
import os
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

mode, alg, out = sys.argv[1], sys.argv[2], sys.argv[3]

if mode == "make":
    if alg.startswith(("RS", "PS")):
        key, to_jwk = rsa.generate_private_key(public_exponent=65537, key_size=2048), RSAAlgorithm.to_jwk
    elif alg == "ES256":
        key, to_jwk = ec.generate_private_key(ec.SECP256R1()), ECAlgorithm.to_jwk
    elif alg == "ES384":
        key, to_jwk = ec.generate_private_key(ec.SECP384R1()), ECAlgorithm.to_jwk
    elif alg == "EdDSA":
        key, to_jwk = ed25519.Ed25519PrivateKey.generate(), OKPAlgorithm.to_jwk
    else:
        raise SystemExit("unknown alg " + alg)
    jwk = to_jwk(key, as_dict=True)
    jwk["alg"] = alg
    with open(os.path.join(out, "private.jwk"), "w") as f:
        json.dump(jwk, f)
    with open(os.path.join(out, "public.pem"), "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    print("made", alg, "with members", sorted(jwk))
elif mode == "verify":
    with open(os.path.join(out, "public.pem"), "rb") as f:
        public = f.read()
    claims = jwt.decode(sys.argv[4], public, algorithms=[alg])
    assert claims["token_type"] == "access", claims
    print("verified", alg)
else:
    raise SystemExit("unknown mode " + mode)

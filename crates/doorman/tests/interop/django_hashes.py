"""Password hashes made by Django itself, for doorman's login tests: `make_password` with each
hasher, as a Django deployment's auth_user table holds them.

Usage: django_hashes.py defaults|variety
  defaults  one hash per hasher in Django's default PASSWORD_HASHERS, plus BCryptPasswordHasher
            and MD5PasswordHasher, each at Django's own cost settings
  variety   ASCII, unicode, long (over bcrypt's 72 bytes) and empty passwords for every hasher,
            the costs lowered in subclasses (as Django's own test settings do) so that many
            logins stay quick; plus argon2i as Django made it before 2.1, and the argon2 1.0
            (v=16) strings argon2-cffi wrote for Django 1.10
Prints a JSON list of {"hasher", "password", "encoded"}; "password" is null for
make_password(None), Django's unusable password. Every hash is checked with Django's own
verify before it is printed.
"""
import json
import sys

import django
from django.conf import settings

settings.configure()
django.setup()

import argon2  # noqa: E402
from django.contrib.auth import hashers  # noqa: E402
from django.contrib.auth.hashers import check_password, make_password  # noqa: E402


class FastPBKDF2(hashers.PBKDF2PasswordHasher):
    iterations = 1000


class FastPBKDF2SHA1(hashers.PBKDF2SHA1PasswordHasher):
    iterations = 1000


class FastArgon2(hashers.Argon2PasswordHasher):
    memory_cost = 1024
    parallelism = 2


class FastArgon2i(FastArgon2):
    """Django's Argon2PasswordHasher before 2.1 used argon2i."""

    def params(self):
        params = super().params()
        params.type = argon2.low_level.Type.I
        return params


class FastBCryptSHA256(hashers.BCryptSHA256PasswordHasher):
    rounds = 4


class FastBCrypt(hashers.BCryptPasswordHasher):
    rounds = 4


class FastScrypt(hashers.ScryptPasswordHasher):
    work_factor = 2**10
    parallelism = 2


DEFAULTS = [
    hashers.PBKDF2PasswordHasher(),
    hashers.PBKDF2SHA1PasswordHasher(),
    hashers.Argon2PasswordHasher(),
    hashers.BCryptSHA256PasswordHasher(),
    hashers.ScryptPasswordHasher(),
    hashers.BCryptPasswordHasher(),
    hashers.MD5PasswordHasher(),
]

FAST = [
    FastPBKDF2(),
    FastPBKDF2SHA1(),
    FastArgon2(),
    FastArgon2i(),
    FastBCryptSHA256(),
    FastScrypt(),
    FastBCrypt(),
    hashers.MD5PasswordHasher(),
]

PASSWORDS = [
    "django-password-1",
    "pässwörd-ünïcode-密码",
    # 84 bytes in UTF-8: bcrypt without SHA-256 reads the first 72.
    "ł" * 40 + "tail",
    "",
]


def made(hasher, password):
    encoded = make_password(password, hasher=hasher)
    assert hasher.verify(password, encoded), (hasher.algorithm, password)
    assert not hasher.verify(password + "x", encoded) or hasher.algorithm == "bcrypt"
    return {"hasher": type(hasher).__name__, "password": password, "encoded": encoded}


def argon2_v16(password):
    """argon2 1.0, as argon2-cffi wrote it before libargon2 moved to 1.3; Django checks it."""
    encoded = "argon2" + argon2.low_level.hash_secret(
        password.encode(),
        b"doorman-test-salt",
        time_cost=2,
        memory_cost=512,
        parallelism=2,
        hash_len=16,
        type=argon2.low_level.Type.I,
        version=16,
    ).decode("ascii")
    assert hashers.Argon2PasswordHasher().verify(password, encoded)
    return {"hasher": "argon2-cffi v=16", "password": password, "encoded": encoded}


def main():
    if sys.argv[1:] == ["defaults"]:
        out = [made(hasher, "django-password-1") for hasher in DEFAULTS]
    elif sys.argv[1:] == ["variety"]:
        out = []
        for hasher in FAST:
            for password in PASSWORDS:
                if hasher.algorithm == "md5" and not password:
                    continue  # Django's salted MD5 needs no cover for the empty password
                out.append(made(hasher, password))
        out += [argon2_v16(p) for p in PASSWORDS[:2]]
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    unusable = make_password(None)
    assert unusable.startswith("!") and not check_password("", unusable)
    out.append({"hasher": "unusable", "password": None, "encoded": unusable})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes doorman's settings for a Django project's SIMPLE_JWT, as doorman.toml lines.

Run it with the project's Python, from the project's directory (where manage.py is):

    python /path/to/simplejwt-to-doorman.py --settings mysite.settings \\
        --signing-key-file /etc/doorman/signing-key > /etc/doorman/doorman.toml

It prints `algorithm`, the signing key and a line for every SIMPLE_JWT setting the project
sets that doorman has (docs/migrating-from-django.md has the table). The signing key
(SIMPLE_JWT's SIGNING_KEY, by default Django's SECRET_KEY) is never printed: with
--signing-key-file FILE it is written to FILE (a new file, readable by its owner only) and
named by `signing_key_file`; without it a comment says how to give it to doorman.

A setting doorman can't carry (a value other than simplejwt's default where doorman has no
such setting, or a value doorman refuses) is named on stderr with the reason, and the exit
status is 1; the lines that could be written are printed all the same. Exit status 2: bad
usage, or project settings that can't be loaded.
"""
import argparse
import datetime
import json
import os
import sys

# doorman's setting for each SIMPLE_JWT key that has one, by kind of value.
DURATIONS = ("ACCESS_TOKEN_LIFETIME", "REFRESH_TOKEN_LIFETIME", "SLIDING_TOKEN_LIFETIME",
             "SLIDING_TOKEN_REFRESH_LIFETIME")
FLAGS = ("ROTATE_REFRESH_TOKENS", "BLACKLIST_AFTER_ROTATION", "UPDATE_LAST_LOGIN",
         "CHECK_USER_IS_ACTIVE")
CLAIMS = ("USER_ID_CLAIM", "TOKEN_TYPE_CLAIM", "JTI_CLAIM", "SLIDING_TOKEN_REFRESH_EXP_CLAIM")
ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
              "ES256", "ES384", "EdDSA")
HS_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
MAX_LEEWAY_MS = 60_000

# Why doorman has no setting for the rest: what it does instead.
NO_COUNTERPART = {
    "JSON_ENCODER": "doorman's claims are JSON values; it has no encoder to plug in",
    "JWK_URL": "doorman verifies with its own keys only",
    "AUTH_HEADER_NAME": "doorman always reads the Authorization header",
    "USER_ID_FIELD": "doorman names users by their numeric id; tokens naming them by another "
                     "field name nobody there, and those users log in once more",
    "USER_AUTHENTICATION_RULE": "doorman's rule is simplejwt's default (the user exists and, "
                                "with check_user_is_active, is active)",
    "AUTH_TOKEN_CLASSES": "doorman's /hello/ and doorman-guard accept access tokens only",
    "TOKEN_USER_CLASS": "a Python class; doorman-guard's Authenticated plays its part",
    "TOKEN_OBTAIN_SERIALIZER": "doorman's login is simplejwt's stock one; claims a custom "
                               "serializer adds are not in tokens from logins at doorman",
    "TOKEN_REFRESH_SERIALIZER": "doorman's refresh is simplejwt's stock one",
    "TOKEN_VERIFY_SERIALIZER": "doorman's verify is simplejwt's stock one",
    "TOKEN_BLACKLIST_SERIALIZER": "doorman's logout is simplejwt's stock one",
    "SLIDING_TOKEN_OBTAIN_SERIALIZER": "doorman's sliding login is simplejwt's stock one",
    "SLIDING_TOKEN_REFRESH_SERIALIZER": "doorman's sliding refresh is simplejwt's stock one",
    "CHECK_REVOKE_TOKEN": "doorman neither writes nor checks the password-hash claim; "
                          "`doorman user revoke NAME` ends a user's sessions",
    "REVOKE_TOKEN_CLAIM": "doorman neither writes nor checks the password-hash claim",
}


def fail(message):
    """Ends the run with exit status 2: bad usage, or settings that can't be loaded."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


class Problem(Exception):
    """A setting doorman can't carry, and why."""


def toml_string(text):
    # A JSON string is a TOML basic string for every text json.dumps writes.
    return json.dumps(text)


def duration(value):
    """A timedelta or a number of seconds as doorman's duration text."""
    if isinstance(value, datetime.timedelta):
        if value % datetime.timedelta(milliseconds=1):
            raise Problem(f"{value} is finer than the milliseconds doorman counts in")
        ms = value // datetime.timedelta(milliseconds=1)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if (value * 1000) != int(value * 1000):
            raise Problem(f"{value} s is finer than the milliseconds doorman counts in")
        ms = int(value * 1000)
    else:
        raise Problem(f"{value!r} is not a duration (a timedelta or seconds)")
    if ms < 0:
        raise Problem(f"{value} is negative")
    if ms == 0:
        return '"0"'
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000),
                       ("ms", 1)):
        if ms % size == 0:
            return f'"{ms // size}{unit}"'
    raise AssertionError(ms)


def setting_line(key, value):
    """doorman's line for `key` set to `value`, or None when it needs none."""
    name = key.lower()
    if key in DURATIONS:
        text = duration(value)
        if text == '"0"':
            raise Problem("a lifetime of 0 seconds")
        return f"{name} = {text}"
    if key in FLAGS:
        return f"{name} = {'true' if value else 'false'}"
    if key in CLAIMS:
        if not isinstance(value, str) or not value:
            raise Problem(f"{value!r}: doorman needs a claim name")
        return f"{name} = {toml_string(value)}"
    if key == "ISSUER":
        return None if value is None else f"issuer = {toml_string(str(value))}"
    if key == "AUDIENCE":
        if value is None:
            return None
        values = [value] if isinstance(value, str) else list(value)
        if len(values) != 1:
            raise Problem(f"{value!r}: doorman issues and requires one audience")
        return f"audience = {toml_string(str(values[0]))}"
    if key == "LEEWAY":
        if value is None:
            return None
        text = duration(value)
        if _as_timedelta(value) > datetime.timedelta(milliseconds=MAX_LEEWAY_MS):
            raise Problem(f"{value!r}: doorman allows at most 60 seconds")
        return f"leeway = {text}"
    if key == "AUTH_HEADER_TYPES":
        types = [value] if isinstance(value, str) else list(value)
        return "auth_header_types = [" + ", ".join(toml_string(t) for t in types) + "]"
    raise AssertionError(key)


def _as_timedelta(value):
    if isinstance(value, datetime.timedelta):
        return value
    return datetime.timedelta(seconds=value)


def normal(value):
    """Lists and tuples compare alike (simplejwt takes either)."""
    return tuple(value) if isinstance(value, list) else value


def signing_key_lines(algorithm, key, key_file):
    """The signing key's lines; writes the key to `key_file` when given."""
    if isinstance(key, bytes):
        key = key.decode()
    if not isinstance(key, str) or not key:
        raise Problem("there is no signing key (SIGNING_KEY and SECRET_KEY are empty)")
    if algorithm in HS_MIN_BYTES and len(key.encode()) < HS_MIN_BYTES[algorithm]:
        raise Problem(f"an {algorithm} secret needs at least {HS_MIN_BYTES[algorithm]} bytes "
                      f"for doorman, this one has {len(key.encode())}; the move needs a new key, "
                      "and everybody logs in once more")
    if key_file is None:
        return ["# signing_key: Django's signing key (SIMPLE_JWT's SIGNING_KEY, by default the",
                "# SECRET_KEY): give it as signing_key_file or DOORMAN_SIGNING_KEY, or run this",
                "# with --signing-key-file FILE to have it written to FILE."]
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        fail(f"{key_file} exists already; it is not overwritten")
    except OSError as e:
        fail(f"could not create {key_file}: {e.strerror}")
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return [f"signing_key_file = {toml_string(os.path.abspath(key_file))}"]


def convert(user, defaults, key_file):
    """doorman's lines and the problems, for the project's SIMPLE_JWT `user`."""
    lines, problems = [], []

    def merged(key):
        return user.get(key, defaults.get(key))

    algorithm = merged("ALGORITHM")
    if algorithm in ALGORITHMS:
        lines.append(f"algorithm = {toml_string(algorithm)}")
        try:
            lines += signing_key_lines(algorithm, merged("SIGNING_KEY"), key_file)
        except Problem as p:
            problems.append(("SIGNING_KEY", str(p)))
    else:
        problems.append(("ALGORITHM", f"{algorithm!r}: doorman signs with "
                                      + ", ".join(ALGORITHMS)))
    for key, value in user.items():
        if key in ("ALGORITHM", "SIGNING_KEY"):
            continue
        if key == "VERIFYING_KEY":
            if value:
                lines.append("# VERIFYING_KEY: doorman derives it from the signing key")
            continue
        if key not in defaults:
            problems.append((key, "not a setting of this simplejwt (it ignores it)"))
            continue
        if key in NO_COUNTERPART:
            if normal(value) != normal(defaults[key]):
                problems.append((key, NO_COUNTERPART[key]))
            continue
        try:
            line = setting_line(key, value)
        except Problem as p:
            problems.append((key, str(p)))
            continue
        if line is not None:
            lines.append(line)
    return lines, problems


def main():
    parser = argparse.ArgumentParser(
        description="Writes doorman's settings for a Django project's SIMPLE_JWT.")
    parser.add_argument("--settings", help="the settings module (default: "
                                           "DJANGO_SETTINGS_MODULE)")
    parser.add_argument("--signing-key-file", metavar="FILE",
                        help="write the signing key to FILE (created, mode 600)")
    args = parser.parse_args()
    if args.settings:
        os.environ["DJANGO_SETTINGS_MODULE"] = args.settings
    module = os.environ.get("DJANGO_SETTINGS_MODULE")
    if not module:
        fail("name the project's settings module with --settings or DJANGO_SETTINGS_MODULE")
    # As manage.py finds the project: from the directory it runs in.
    sys.path.insert(0, os.getcwd())
    try:
        import django
        from django.conf import settings

        django.setup()
        user = dict(getattr(settings, "SIMPLE_JWT", None) or {})
        from rest_framework_simplejwt.settings import DEFAULTS
    except Exception as e:  # noqa: BLE001 - any failure to load is the same answer
        fail(f"could not load the settings {module}: {type(e).__name__}: {e}")
    lines, problems = convert(user, DEFAULTS, args.signing_key_file)
    print(f"# doorman's settings for SIMPLE_JWT of {module}")
    for line in lines:
        print(line)
    for key, reason in problems:
        print(f"not carried: SIMPLE_JWT[{key!r}]: {reason}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Measures what docs/scaling.md quotes: how many requests per second one doorman instance
# sends to PostgreSQL at its peak, and how many of those requests' database work one
# PostgreSQL carries, on this machine, in one run.
#
# Usage: bench/scaling.sh [SECONDS]     (needs wrk and pgbench; PostgreSQL on 127.0.0.1:5432)
# Environment: PGURL (default postgres://postgres@127.0.0.1:5432), CONNECTIONS (default 64),
# USER_CACHE_TTL (default 1, doorman's default: the user cache and, on PostgreSQL, the blacklist
# held in memory on; 0 measures the per-request user lookup simplejwt makes).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
pgurl=${PGURL:-postgres://postgres@127.0.0.1:5432}
conns=${CONNECTIONS:-64}
cache_ttl=${USER_CACHE_TTL:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)"; exit 1; }
command -v pgbench >/dev/null || { echo "pgbench is missing (apt-get install postgresql-client)"; exit 1; }

cargo build --release -q -p doorman
bin=$CARGO_TARGET_DIR/release/doorman
db=doorman_scaling_$$
work=$(mktemp -d)
cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    psql -q "$pgurl/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
psql -q "$pgurl/postgres" -c "CREATE DATABASE $db" >/dev/null
export DOORMAN_DATABASE_URL=$pgurl/$db DOORMAN_DATA_DIR=$work/data DOORMAN_PRUNE_INTERVAL=0 DOORMAN_USER_CACHE_TTL=$cache_ttl
export DOORMAN_SIGNING_KEY=doorman-bench-only-hs256-secret-0123456789abcdef
"$bin" migrate >/dev/null
echo "bench-password-1" | "$bin" user create bench --password-stdin >/dev/null
"$bin" serve --bind 127.0.0.1:18090 2>"$work/log" &
pid=$!
for _ in $(seq 1 50); do curl -s -o /dev/null http://127.0.0.1:18090/hello/ && break; sleep 0.1; done
pair=$(curl -s -X POST -H 'Content-Type: application/json' \
    -d '{"username":"bench","password":"bench-password-1"}' http://127.0.0.1:18090/api/token/)
access=$(echo "$pair" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access"])')
refresh=$(echo "$pair" | python3 -c 'import json,sys; print(json.load(sys.stdin)["refresh"])')

# Requests per second from wrk's output; a run with any non-2xx answer or socket error fails.
rps() {
    local out
    out=$(cat)
    if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
        echo "wrk saw failed requests:" >&2
        echo "$out" >&2
        exit 1
    fi
    awk '/Requests\/sec/ {print int($2)}' <<<"$out"
}
# The database's committed transactions so far (each statement outside a transaction is one):
# what a run cost PostgreSQL, whatever doorman kept in memory.
commits() {
    psql -qtA "$pgurl/$db" -c "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
}
echo "== one doorman instance, wrk -c$conns -t2 -d${secs}s, user_cache_ttl=$cache_ttl"
c0=$(commits)
hello=$(wrk -c"$conns" -t2 -d"${secs}s" -H "Authorization: Bearer $access" \
    http://127.0.0.1:18090/hello/ | rps)
c1=$(commits)
cat >"$work/refresh.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"refresh": "$refresh"}'
LUA
c2=$(commits)
refresh_rps=$(wrk -c"$conns" -t2 -d"${secs}s" -s "$work/refresh.lua" \
    http://127.0.0.1:18090/api/token/refresh/ | rps)
c3=$(commits)
# Transactions per 1000 requests (the commit counter's own reads are a few of them).
per_1k() { awk -v d="$1" -v n="$2" 'BEGIN { printf "%.1f", (n > 0 ? d * 1000 / n : 0) }'; }
hello_tx=$(per_1k $((c1 - c0)) $((hello * secs)))
refresh_tx=$(per_1k $((c3 - c2)) $((refresh_rps * secs)))
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=

echo "== PostgreSQL alone, pgbench -c$conns -j2 -T$secs, doorman's statements"
# /hello/'s user lookup, and a refresh without rotation (blacklist check + user lookup).
cat >"$work/lookup.sql" <<'SQL'
SELECT id, username, password, is_active, is_superuser, last_login, date_joined FROM users WHERE id = 1;
SQL
cat >"$work/refresh.sql" <<'SQL'
SELECT 1 FROM blacklisted_tokens b JOIN outstanding_tokens o ON o.id = b.token_id WHERE o.jti = 'no-such-jti';
SELECT id, username, password, is_active, is_superuser, last_login, date_joined FROM users WHERE id = 1;
SQL
# A refresh with rotation and blacklisting: the checks, then the rotation transaction.
cat >"$work/rotate.sql" <<'SQL'
\set n random(1, 1000000000)
SELECT 1 FROM blacklisted_tokens b JOIN outstanding_tokens o ON o.id = b.token_id WHERE o.jti = 'old-' || :n;
SELECT id, username, password, is_active, is_superuser, last_login, date_joined FROM users WHERE id = 1;
BEGIN;
INSERT INTO outstanding_tokens (jti, user_id, created_at, expires_at) VALUES ('old-' || :client_id || '-' || :n, (SELECT id FROM users WHERE id = 1), 0, 4102444800) ON CONFLICT (jti) DO NOTHING;
INSERT INTO blacklisted_tokens (token_id, blacklisted_at) SELECT id, 0 FROM outstanding_tokens WHERE jti = 'old-' || :client_id || '-' || :n ON CONFLICT (token_id) DO NOTHING;
INSERT INTO outstanding_tokens (jti, user_id, created_at, expires_at) VALUES ('new-' || :client_id || '-' || :n, (SELECT id FROM users WHERE id = 1), 0, 4102444800) ON CONFLICT (jti) DO NOTHING;
COMMIT;
SQL
tps() { awk '/^tps/ {print int($3)}'; }
lookup_tps=$(pgbench -n -c"$conns" -j2 -T"$secs" -f "$work/lookup.sql" "$pgurl/$db" 2>/dev/null | tps)
refresh_tps=$(pgbench -n -c"$conns" -j2 -T"$secs" -f "$work/refresh.sql" "$pgurl/$db" 2>/dev/null | tps)
rotate_tps=$(pgbench -n -c"$conns" -j2 -T"$secs" -f "$work/rotate.sql" "$pgurl/$db" 2>/dev/null | tps)

echo
printf '%-52s %10s\n' "measure" "per second"
printf '%-52s %10s\n' "doorman GET /hello/" "$hello"
printf '%-52s %10s\n' "doorman POST /api/token/refresh/ (no rotation)" "$refresh_rps"
printf '%-52s %10s\n' "  PostgreSQL transactions per 1000 /hello/" "$hello_tx"
printf '%-52s %10s\n' "  PostgreSQL transactions per 1000 refreshes" "$refresh_tx"
printf '%-52s %10s\n' "PostgreSQL: /hello/'s user lookup" "$lookup_tps"
printf '%-52s %10s\n' "PostgreSQL: a refresh's queries (no rotation)" "$refresh_tps"
printf '%-52s %10s\n' "PostgreSQL: a refresh with rotation + blacklist" "$rotate_tps"
echo
# Instances one PostgreSQL carries: its capacity for the statements each request makes, over
# what one instance at full load sends it (the transactions counted above).
carried() {
    awk -v cap="$1" -v rps="$2" -v per1k="$3" 'BEGIN {
        sent = rps * per1k / 1000
        if (sent < 1) printf "not bounded by the database (%.1f transactions/s per instance)", sent
        else printf "%.1f", cap / sent }'
}
echo "instances one PostgreSQL carries at full /hello/ load: $(carried "$lookup_tps" "$hello" "$hello_tx")"
# pgbench counts a script as one transaction; refresh.sql is two statements, two commits.
echo "instances one PostgreSQL carries at full refresh load: $(carried $((refresh_tps * 2)) "$refresh_rps" "$refresh_tx")"
echo "scaling: user_cache_ttl=$cache_ttl hello=$hello refresh=$refresh_rps hello_tx_per_1k=$hello_tx refresh_tx_per_1k=$refresh_tx pg_lookup=$lookup_tps pg_refresh=$refresh_tps pg_rotate=$rotate_tps cores=$(nproc)"

#!/usr/bin/env bash
# The floor of one writer on PostgreSQL, with no Rust in the way: pgbench
# (C, prepared statements) runs event_core's plain loop and the grant's
# append (batch_end's one statement, as PostgreSQL logged it) against a
# scratch database with the migrations' schema, one client, alternating,
# and prints each one's latency and its ratio to the plain loop's, then
# the latency of each statement of the plain loop and of the append run
# in a transaction of its own (its statement and its COMMIT apart).
#
#   bash server/benches/pg_floor/run.sh            # 3 rounds of 8 s each
#   FLOOR_ROUNDS=5 FLOOR_SECONDS=10 bash server/benches/pg_floor/run.sh
#
# Needs psql and pgbench (Debian's postgresql-15 ships pgbench) and a server at
# LOCKSTEP_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432).
# docs/benchmarks.md, "Eleventh pass", says what it showed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
server="${LOCKSTEP_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432}"
server="${server%/}"
rounds="${FLOOR_ROUNDS:-3}"
seconds="${FLOOR_SECONDS:-8}"
db="lockstep_pg_floor_$$"
for tool in psql pgbench; do
  command -v "$tool" >/dev/null || { echo "pg_floor: $tool not found (Debian: postgresql-client, postgresql-15)" >&2; exit 1; }
done
psql "$server/postgres" -qAtc "CREATE DATABASE $db"
trap 'psql "$server/postgres" -qAtc "DROP DATABASE IF EXISTS $db" >/dev/null' EXIT
url="$server/$db"
for m in "$repo"/migrations/postgres/*.sql; do
  psql "$url" -q -v ON_ERROR_STOP=1 -f "$m" >/dev/null
done
# Ids that grow as UUIDv7 do (the store's are), and the time in ms.
psql "$url" -q -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
CREATE TABLE bench_plain (id TEXT PRIMARY KEY, payload TEXT NOT NULL, at BIGINT NOT NULL);
CREATE SEQUENCE floor_ids;
CREATE FUNCTION floor_id() RETURNS text LANGUAGE sql VOLATILE AS
  $$ SELECT '01a24dd0-' || lpad(to_hex(nextval('floor_ids')), 27, '0') $$;
CREATE FUNCTION floor_at() RETURNS bigint LANGUAGE sql STABLE AS
  $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;
SQL
scripts=(plain plain_alone event_only append)
declare -A total
for s in "${scripts[@]}"; do total[$s]=0; done
echo "pg_floor: one client, ${seconds} s per script, ${rounds} rounds; latency ms (ratio: the plain loop's latency ÷ this one's, as event_core's rows/s ratio)"
for r in $(seq 1 "$rounds"); do
  declare -A ms=()
  for s in "${scripts[@]}"; do
    out="$(pgbench -n -M prepared -c 1 -T "$seconds" -f "$here/$s.sql" "$url" 2>&1)" || { echo "$out" >&2; exit 1; }
    ms[$s]="$(sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p' <<<"$out")"
    [ -n "${ms[$s]}" ] || { echo "$out" >&2; exit 1; }
    total[$s]="$(awk -v a="${total[$s]}" -v b="${ms[$s]}" 'BEGIN { print a + b }')"
  done
  line="round $r:"
  for s in "${scripts[@]}"; do
    line+="$(awk -v n="$s" -v m="${ms[$s]}" -v p="${ms[plain]}" 'BEGIN { printf "  %s %.3f ms (%.2f)", n, m, p / m }')"
  done
  echo "$line"
done
line="mean:   "
for s in "${scripts[@]}"; do
  line+="$(awk -v n="$s" -v t="${total[$s]}" -v p="${total[plain]}" -v r="$rounds" 'BEGIN { printf "  %s %.3f ms (%.2f)", n, t / r, p / t }')"
done
echo "$line"
# Where each one's time goes: pgbench's latency per statement (-r), the
# plain loop's three against the append's statement and its COMMIT.
for s in plain append_in_tx; do
  out="$(pgbench -n -M prepared -c 1 -T "$seconds" -r -f "$here/$s.sql" "$url" 2>&1)" || { echo "$out" >&2; exit 1; }
  echo "$s, ms per statement:$(awk '/^ +[0-9.]+ +[0-9]+ +[A-Z]/ { printf "  %s %s", $3, $1 }' <<<"$out")"
done

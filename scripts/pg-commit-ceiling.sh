#!/usr/bin/env bash
# The database's own ceiling, for docs/PERFORMANCE.md: how many single-row write
# transactions per second the PostgreSQL server commits on this machine (pgbench, each
# transaction one INSERT, synchronous_commit as configured), in a database of its own that
# is dropped afterwards. Usage: scripts/pg-commit-ceiling.sh [SECONDS] [CLIENTS]
set -euo pipefail
SECONDS_RUN=${1:-10}
CLIENTS=${2:-8}
PGURL_ADMIN=${BANKTRANSFER_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB="bt_ceiling_$$"
psql -q "$PGURL_ADMIN" -c "CREATE DATABASE $DB"
trap 'psql -q "$PGURL_ADMIN" -c "DROP DATABASE IF EXISTS $DB" >/dev/null' EXIT
DBURL="${PGURL_ADMIN%/*}/$DB"
psql -q "$DBURL" -c "CREATE TABLE t (id BIGSERIAL PRIMARY KEY, v BIGINT NOT NULL)"
SCRIPT=$(mktemp)
echo 'INSERT INTO t (v) VALUES (1);' > "$SCRIPT"
pgbench -n -M prepared -c "$CLIENTS" -j 2 -T "$SECONDS_RUN" -f "$SCRIPT" "$DBURL" \
    | grep -E "clients|latency average|tps"
rm -f "$SCRIPT"

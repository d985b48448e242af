#!/usr/bin/env bash
# Drops databases left behind by integration tests that failed (a passing test drops its own).
set -euo pipefail
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
for db in $(psql -X -tA -d postgres -c "select datname from pg_database where datname like 'gt\_test\_%'"); do
  psql -X -q -d postgres -c "drop database if exists \"$db\" with (force)"
done

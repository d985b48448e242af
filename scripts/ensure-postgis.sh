#!/usr/bin/env bash
# Makes sure the local PostgreSQL can serve geotrack: installs the PostGIS package when the
# extension is not available, installs the extension into template1 (so every database created
# afterwards, including the per-test ones, starts with PostGIS and no CREATE EXTENSION cost), and
# creates the application database. Idempotent; safe to run before every `make run`/`make test`.
set -euo pipefail

PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
DB_NAME=${1:-geotrack}
PGOPTIONS="-c client_min_messages=warning"
export PGHOST PGPORT PGUSER PGOPTIONS

psql_q() { psql -X -q -v ON_ERROR_STOP=1 -tA "$@"; }

if ! psql_q -d postgres -c 'select 1' >/dev/null 2>&1; then
  echo "ensure-postgis: PostgreSQL does not answer at $PGHOST:$PGPORT as $PGUSER; trying to start it" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  for _ in $(seq 1 30); do psql_q -d postgres -c 'select 1' >/dev/null 2>&1 && break; sleep 1; done
fi

available=$(psql_q -d postgres -c "select count(*) from pg_available_extensions where name = 'postgis'")
if [ "$available" != "1" ]; then
  major=$(psql_q -d postgres -c "show server_version_num" | cut -c1-2)
  echo "ensure-postgis: installing postgresql-${major}-postgis-3 with apt" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "postgresql-${major}-postgis-3" >/dev/null
fi

psql_q -d template1 -c 'create extension if not exists postgis' >/dev/null
if [ "$(psql_q -d postgres -c "select count(*) from pg_database where datname = '$DB_NAME'")" = "0" ]; then
  psql_q -d postgres -c "create database \"$DB_NAME\"" >/dev/null
  echo "ensure-postgis: created database $DB_NAME" >&2
fi
psql_q -d "$DB_NAME" -c 'create extension if not exists postgis' >/dev/null
echo "ensure-postgis: PostGIS $(psql_q -d "$DB_NAME" -c 'select postgis_lib_version()') ready in database $DB_NAME" >&2

#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 with trust auth for
# user postgres and a database named `test`, installing and starting it from
# Debian's packages if needed. Used by .ci/run; safe to run repeatedly.
set -euo pipefail

host=127.0.0.1
port=5432
ready() { command -v pg_isready >/dev/null 2>&1 && pg_isready -h "$host" -p "$port" -q; }

if ! ready; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls -d /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "ensure-postgres: installing PostgreSQL from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql postgresql-client >/dev/null
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  if ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  fi
  echo "ensure-postgres: starting PostgreSQL $version" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true
  for _ in $(seq 1 120); do ready && break; sleep 0.5; done
fi

ready || { echo "ensure-postgres: PostgreSQL does not answer on $host:$port" >&2; exit 1; }

if ! psql -h "$host" -p "$port" -U postgres -d postgres -tAc "select 1 from pg_database where datname='test'" | grep -q 1; then
  psql -h "$host" -p "$port" -U postgres -d postgres -qc 'create database test'
fi
echo "ensure-postgres: ready at postgres://postgres@$host:$port/test" >&2

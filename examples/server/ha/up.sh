#!/usr/bin/env bash
# Three fleet servers on one PostgreSQL behind HAProxy, on this machine,
# with one command (no container registry needed):
#
#   bash examples/server/ha/up.sh      # then http://127.0.0.1:8080/
#   bash examples/server/ha/down.sh    # stops all of it
#
# Each replica serves the page, the API and the agents; pins and campaign
# steps reach every agent's long-poll whichever replica holds it (LISTEN/
# NOTIFY); one replica at a time runs the campaigns and the version checks
# and another takes over within seconds when it dies. Sessions and the
# audit log live in the database: a login on one replica holds on all.
#
# Settings (environment):
#   FLEET_HA_DIR      state, logs, the admin token (default: ./state here)
#   FLEET_HA_PORT     HAProxy's port (8080); replicas take the next three
#   FLEET_HA_DB       a postgres:// URL to use; default: a cluster made in
#                     FLEET_HA_DIR/pg on FLEET_HA_PG_PORT (55432)
#   FLEET_HA_BIN      the server binary; default: built from this repository
#
# Installs Debian's haproxy and postgresql when missing (as root).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
dir="${FLEET_HA_DIR:-$here/state}"
port="${FLEET_HA_PORT:-8080}"
pg_port="${FLEET_HA_PG_PORT:-55432}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
say() { echo "ha/up.sh: $*" >&2; }

need() {
  if ! command -v "$1" >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/"$1" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      say "installing Debian's $2"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    else
      say "needs $1 (Debian package $2)"; exit 1
    fi
  fi
}
need haproxy haproxy

bin="${FLEET_HA_BIN:-}"
if [ -z "$bin" ]; then
  say "building the server (cargo build --release -p container-upgrader-server)"
  (cd "$repo" && cargo build --release -q -p container-upgrader-server)
  bin="$repo/target/release/container-upgrader-server"
fi

db="${FLEET_HA_DB:-}"
if [ -z "$db" ]; then
  need initdb postgresql
  pgbin="$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n1 || command -v initdb)")"
  as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
  if [ ! -s "$dir/pg/data/PG_VERSION" ]; then
    mkdir -p "$dir/pg"
    [ "$(id -u)" = 0 ] && chown postgres "$dir/pg"
    as_pg "'$pgbin/initdb' -D '$dir/pg/data' -A trust -U postgres" >/dev/null
  fi
  if ! as_pg "'$pgbin/pg_ctl' -D '$dir/pg/data' status" >/dev/null 2>&1; then
    as_pg "'$pgbin/pg_ctl' -D '$dir/pg/data' -l '$dir/pg/log' -w -o \"-p $pg_port -k '$dir/pg' -c listen_addresses=127.0.0.1 -c max_connections=200\" start" >/dev/null
  fi
  as_pg "'$pgbin/psql' -h 127.0.0.1 -p $pg_port -U postgres -tAc \"SELECT 1 FROM pg_database WHERE datname = 'fleet'\"" | grep -q 1 \
    || as_pg "'$pgbin/psql' -h 127.0.0.1 -p $pg_port -U postgres -qc 'CREATE DATABASE fleet'"
  db="postgres://postgres@127.0.0.1:$pg_port/fleet"
fi

umask 077
if [ ! -s "$dir/admin.token" ]; then
  od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$dir/admin.token"
  say "made $dir/admin.token (the break-glass admin token)"
fi

healthy() {
  for _ in $(seq 1 150); do
    "$bin" healthcheck --url "$1/healthz" && return 0
    sleep 0.2
  done
  say "$1 did not come up; see the logs in $dir"; exit 1
}

for n in 1 2 3; do
  p=$((port + n))
  if [ -s "$dir/replica-$n.pid" ] && kill -0 "$(cat "$dir/replica-$n.pid")" 2>/dev/null; then
    continue
  fi
  mkdir -p "$dir/replica-$n"
  nohup "$bin" -v --listen "127.0.0.1:$p" --db "$db" --admin-token-file "$dir/admin.token" \
    --state-dir "$dir/replica-$n" --trusted-proxy 127.0.0.1 --max-connections-per-address 0 \
    </dev/null >"$dir/replica-$n.log" 2>&1 &
  echo $! >"$dir/replica-$n.pid"
done
for n in 1 2 3; do healthy "http://127.0.0.1:$((port + n))"; done

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
maxconn=$(( ($(ulimit -n) - 200) / 2 ))
[ "$maxconn" -gt 30000 ] && maxconn=30000
sed -e "s/@PORT@/$port/" -e "s/@MAXCONN@/$maxconn/" -e "s/@R1@/$((port + 1))/" -e "s/@R2@/$((port + 2))/" -e "s/@R3@/$((port + 3))/" \
  "$here/haproxy.cfg.in" >"$dir/haproxy.cfg"
if [ -s "$dir/haproxy.pid" ] && kill -0 "$(cat "$dir/haproxy.pid")" 2>/dev/null; then
  kill "$(cat "$dir/haproxy.pid")" 2>/dev/null || true
  sleep 0.5
fi
haproxy -f "$dir/haproxy.cfg" -D -p "$dir/haproxy.pid"
healthy "http://127.0.0.1:$port"
say "three replicas behind http://127.0.0.1:$port/ (admin token: $dir/admin.token, logs: $dir/replica-N.log)"

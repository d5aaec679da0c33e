#!/usr/bin/env bash
# Stops what up.sh started (same FLEET_HA_DIR); the data stays in it.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${FLEET_HA_DIR:-$here/state}"
pids=()
for f in "$dir"/haproxy.pid "$dir"/replica-*.pid; do
  [ -s "$f" ] || continue
  pid="$(cat "$f")"
  kill "$pid" 2>/dev/null && pids+=("$pid")
  rm -f "$f"
done
# The replicas give their leases back as they stop: the database stays up
# until they are gone (at most 15 s).
for _ in $(seq 1 75); do
  alive=0
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
  [ "$alive" = 0 ] && break
  sleep 0.2
done
if [ -s "$dir/pg/data/PG_VERSION" ]; then
  pg_ctl="$(ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n1 || command -v pg_ctl)"
  if [ "$(id -u)" = 0 ]; then
    su postgres -s /bin/sh -c "'$pg_ctl' -D '$dir/pg/data' -m fast stop" >/dev/null 2>&1
  else
    "$pg_ctl" -D "$dir/pg/data" -m fast stop >/dev/null 2>&1
  fi
fi
echo "ha/down.sh: stopped (data kept in $dir)" >&2

#!/usr/bin/env bash
# Starts the fleet server and PostgreSQL (compose.yaml), making the two
# secrets first when they are missing: a random admin token and database
# password in secrets/ (0600, never printed). Log in at
# http://127.0.0.1:8080/ with the token in secrets/admin.token.
set -euo pipefail
cd "$(dirname "$0")"

umask 077
mkdir -p secrets
for secret in admin.token db_password; do
  if [ ! -s "secrets/$secret" ]; then
    od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"secrets/$secret"
    echo "up.sh: made secrets/$secret" >&2
  fi
done
docker compose -f compose.yaml up -d --build "$@"
echo "up.sh: the server is starting on http://127.0.0.1:8080/ (admin token: $(pwd)/secrets/admin.token)" >&2

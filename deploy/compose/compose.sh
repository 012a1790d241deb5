#!/usr/bin/env bash
# `docker compose` (Compose v2) or `docker-compose` (v1, Debian's package),
# whichever is installed, on deploy/compose/docker-compose.yml under the
# project name $COMPOSE_PROJECT (default relais). Any compose command:
#   deploy/compose/compose.sh ps
#   deploy/compose/compose.sh exec relais-1 relaisctl members
set -euo pipefail
file=$(cd "$(dirname "$0")" && pwd)/docker-compose.yml
project=${COMPOSE_PROJECT:-relais}
if docker compose version >/dev/null 2>&1; then
  exec docker compose -p "$project" -f "$file" "$@"
elif command -v docker-compose >/dev/null; then
  exec docker-compose -p "$project" -f "$file" "$@"
else
  echo "relais: neither 'docker compose' nor 'docker-compose' is installed (Debian: apt-get install docker-compose)" >&2
  exit 1
fi

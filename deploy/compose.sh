#!/usr/bin/env bash
# Runs Docker Compose on deploy/compose.yaml with whichever Compose this machine has: the
# `docker compose` plugin (Compose v2) or the standalone `docker-compose` (Compose v1,
# 1.28 or later, which knows profiles). Every argument goes to Compose, after
# `-f deploy/compose.yaml`; it works from any directory.
#
# Usage: deploy/compose.sh up -d
#        deploy/compose.sh run --rm alice register alice@alpha.test --server http://alpha.test:8080
#        deploy/compose.sh --profile clients down -v
set -euo pipefail

file="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/compose.yaml"

if docker compose version >/dev/null 2>&1; then
    exec docker compose -f "$file" "$@"
elif command -v docker-compose >/dev/null 2>&1; then
    exec docker-compose -f "$file" "$@"
else
    echo "error: neither \`docker compose\` (Compose v2) nor \`docker-compose\` (Compose v1) is installed" >&2
    exit 127
fi

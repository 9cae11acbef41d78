#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server on loopback for the PostgreSQL store tests and prints
# the `export PD_TEST_POSTGRES_URL=…` line to use it. Installs PostgreSQL from Debian's
# packages when it is missing (root only). The cluster lives in a temporary directory owned
# by the `postgres` user and is stopped by `.ci/postgres.sh stop DIR`.
#
# Usage: eval "$(.ci/postgres.sh start)"     then, when done: .ci/postgres.sh stop "$PD_TEST_POSTGRES_DIR"
set -euo pipefail

# The first free port from here on (an explicit PD_TEST_POSTGRES_PORT is taken as it is).
port="${PD_TEST_POSTGRES_PORT:-54329}"

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

find_bin() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        if [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

as_postgres() {
    if [ "$(id -un)" = postgres ]; then
        "$@"
    else
        runuser -u postgres -- "$@"
    fi
}

case "${1:-start}" in
start)
    if ! bin="$(find_bin)"; then
        echo "installing PostgreSQL from Debian's packages" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update >&2
        apt-get install -y --no-install-recommends postgresql >&2
        bin="$(find_bin)"
    fi
    if [ -z "${PD_TEST_POSTGRES_PORT:-}" ]; then
        while port_in_use "$port"; do
            port=$((port + 1))
        done
    fi
    dir="$(mktemp -d /tmp/pd-postgres.XXXXXX)"
    chown postgres: "$dir"
    chmod 700 "$dir"
    as_postgres "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --no-instructions >&2
    as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c max_connections=200" start >&2
    echo "export PD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$port/postgres"
    echo "export PD_TEST_POSTGRES_DIR=$dir"
    ;;
stop)
    dir="${2:?usage: $0 stop DIR}"
    bin="$(find_bin)"
    as_postgres "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    rm -rf "$dir"
    ;;
*)
    echo "usage: $0 start | stop DIR" >&2
    exit 2
    ;;
esac

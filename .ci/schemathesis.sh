#!/usr/bin/env bash
# Property-based test of the node's HTTP API against its own OpenAPI document: schemathesis
# (from PyPI, pinned, in a virtual environment) generates requests from /openapi.json of a
# real pd-server and checks every answer: no server error, a documented status code, the
# documented content type, a body that matches the documented schema, the documented
# headers. Any failure fails the script.
#
# The node is the debug binary that `cargo test` builds (target/debug/pd-server, or
# $PD_SERVER_BIN), started on 127.0.0.1 with a throwaway data directory, public lookups,
# rate limits raised for the run (the generated traffic would otherwise be answered 429)
# and a trust policy that federates with no one, so that lookups of generated addresses
# at other domains are refused before any network traffic. It is stopped on every exit.
#
# Usage: .ci/schemathesis.sh            (from anywhere inside the repository)
# Environment: PD_SCHEMATHESIS_EXAMPLES (examples per operation in the fuzzing phase, default 50).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SCHEMATHESIS_VERSION=4.32.5
examples="${PD_SCHEMATHESIS_EXAMPLES:-50}"
server="${PD_SERVER_BIN:-target/debug/pd-server}"
if [ ! -x "$server" ]; then
    echo "schemathesis: $server not found; build it first (cargo test or cargo build -p pd-server)" >&2
    exit 1
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
    status=$?
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ] && [ -f "$work/pd-server.log" ]; then
        echo "--- last lines of the node's log ---" >&2
        tail -n 40 "$work/pd-server.log" >&2 || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The virtual environment is kept under target/ between runs of one checkout.
venv="$PWD/target/schemathesis-$SCHEMATHESIS_VERSION"
if [ ! -x "$venv/bin/schemathesis" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION"
fi
"$venv/bin/schemathesis" --version

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
base="http://127.0.0.1:$port"
cat >"$work/pd.toml" <<EOF
domain = "localhost"
listen = "127.0.0.1:$port"
data_dir = "$work/data"
lookup_access = "public"

[rate_limit]
writes_per_second = 100000
burst = 100000
lookups_per_second = 100000
lookup_burst = 100000

[trust]
mode = "allowlist"
EOF

"$server" --config "$work/pd.toml" >"$work/pd-server.log" 2>&1 &
server_pid=$!

for _ in $(seq 1 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('$base/healthz', timeout=1)" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "schemathesis: pd-server exited before it answered" >&2
        exit 1
    fi
    sleep 0.1
done

# One worker: with several, schemathesis parses its own sources from threads, which the
# Python 3.11 of the CI machine can fail ("AST constructor recursion depth mismatch").
# It runs in the temporary directory, where it keeps its own state (.schemathesis/).
started=$SECONDS
(cd "$work" && "$venv/bin/schemathesis" run "$base/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
    --phases examples,coverage,fuzzing \
    --max-examples "$examples" \
    --workers 1 \
    --seed 14 \
    --generation-database none \
    --no-color)
echo "schemathesis: passed in $((SECONDS - started)) s"

#!/usr/bin/env bash
# Instructions per local lookup of the real `pd-server` binary, counted by callgrind: a
# repeatable figure (same binary, same requests, same count whatever else the machine
# does), to see what a change to the hot path costs or saves when requests per second are
# too noisy to tell.
#
# Usage: bench/instructions.sh [OTHER_PD_SERVER_BINARY]
#   Builds this tree's pd-server and chat (release), and counts the instructions the node
#   executes for N lookups (default 3000; env LOOKUPS) of a local user with a presence
#   record, sent one after another on one keep-alive connection, with the node's default
#   logging (info, plain text: no request spans) and with request spans on
#   (RUST_LOG=info,pd_server::http=debug, which also logs each answer). Given another
#   pd-server binary (say, one built from an earlier commit), measures it the same way in
#   the same run and prints the ratio.
#
# Needs valgrind and curl.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
lookups=${LOOKUPS:-3000}
command -v valgrind >/dev/null || { echo "error: valgrind is not installed" >&2; exit 1; }
command -v curl >/dev/null || { echo "error: curl is not installed" >&2; exit 1; }

cargo build --release --quiet -p pd-server -p chat
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
this="$target/release/pd-server"
chat="$target/release/chat"
other=${1:-}

work=$(mktemp -d)
node_pid=
cleanup() {
    [ -n "$node_pid" ] && kill -9 "$node_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Counts the instructions of $lookups lookups on a fresh node; prints the count per lookup.
measure() {
    local bin=$1 log_level=$2 dir
    # measure runs in a command substitution, a subshell: the script's EXIT trap does not
    # reach the node it starts, so the subshell stops it itself, also on failure.
    trap '[ -z "$node_pid" ] || kill -9 "$node_pid" 2>/dev/null || true' EXIT
    dir=$(mktemp -d "$work/node.XXXX")
    # The lookup rate limit raised above the lookups sent: otherwise most answers would be
    # 429 refusals (and each refusal closes curl's connection).
    printf 'lookup_access = "public"\nlisten = "127.0.0.1:0"\ndata_dir = "%s/data"\n[rate_limit]\nlookups_per_second = 1000000\nlookup_burst = 1000000\n' "$dir" >"$dir/pd.toml"
    RUST_LOG=$log_level valgrind --tool=callgrind --callgrind-out-file="$dir/cg" \
        "$bin" --config "$dir/pd.toml" >"$dir/log" 2>&1 &
    node_pid=$!
    local addr=
    for _ in $(seq 600); do
        # Colour codes stripped, for binaries that colour their log regardless.
        addr=$(sed -e 's/\x1b\[[0-9;]*m//g' "$dir/log" |
            sed -n 's/.*node started.*listen\.addr=\([0-9.:]*\).*/\1/p' | head -n 1)
        [ -n "$addr" ] && break
        kill -0 "$node_pid" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$addr" ] || { echo "error: the node did not start:" >&2; cat "$dir/log" >&2; exit 1; }
    "$chat" --home "$dir/alice" register alice@localhost --server "http://$addr" >/dev/null
    "$chat" --home "$dir/alice" publish --endpoint tcp://127.0.0.1:7000 --ttl 1h >/dev/null
    local url="http://$addr/v1/lookup/alice@localhost"
    # One curl for all of them: one keep-alive connection.
    lookup_n() { curl -sf $(printf "$url %.0s" $(seq "$1")) >/dev/null; }
    lookup_n 50
    callgrind_control -z "$node_pid" >/dev/null 2>&1
    lookup_n "$lookups"
    callgrind_control -d "$node_pid" >/dev/null 2>&1
    kill -9 "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
    node_pid=
    local total
    total=$(callgrind_annotate "$dir"/cg.* 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d , | sort -n | tail -n 1)
    echo $((total / lookups))
}

printf '%-28s %12s %12s\n' "binary" "default log" "with spans"
a_log=$(measure "$this" info)
a_spans=$(measure "$this" "info,pd_server::http=debug")
printf '%-28s %12s %12s\n' "this tree" "$a_log" "$a_spans"
if [ -n "$other" ]; then
    b_log=$(measure "$other" info)
    b_spans=$(measure "$other" "info,pd_server::http=debug")
    printf '%-28s %12s %12s\n' "$(basename "$other") (other)" "$b_log" "$b_spans"
    awk -v a="$a_log" -v b="$b_log" -v c="$a_spans" -v d="$b_spans" \
        'BEGIN { printf "%-28s %12.3f %12.3f\n", "this / other", a / b, c / d }'
fi
echo "(instructions per lookup, $lookups lookups on one connection, counted by callgrind)"

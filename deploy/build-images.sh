#!/usr/bin/env bash
# Builds the container images of PD from this checkout: the node (pd-server:latest) and the
# client (pd-chat:latest), `FROM scratch` with statically linked binaries (see
# deploy/Dockerfile). Needs cargo, Docker and x86_64 Linux; pulls nothing.
#
# Usage: deploy/build-images.sh
#
# The static binaries are built in a target directory of their own, target/static (kept
# between runs), so that a second run only rebuilds what changed: the first build takes
# several minutes, later ones seconds. Ordinary builds (`cargo build --release -p pd-server
# -p chat`, in target/) and this one never touch each other's artifacts, whatever flags
# either is built with.
#
# Environment:
#   PD_IMAGE, CHAT_IMAGE   image names (default pd-server:latest, pd-chat:latest)
#   STATIC_TARGET_DIR      the static build's target directory (default target/static)
#   BIN_DIR                use the pd-server and chat binaries in this directory instead of
#                          building them (they must be statically linked)
#   CA_BUNDLE              the CA bundle to copy in (default /etc/ssl/certs/ca-certificates.crt)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target=x86_64-unknown-linux-gnu
pd_image="${PD_IMAGE:-pd-server:latest}"
chat_image="${CHAT_IMAGE:-pd-chat:latest}"
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

if [[ -z "${BIN_DIR:-}" ]]; then
    static_target_dir="${STATIC_TARGET_DIR:-$root/target/static}"
    if [[ ! -x "$static_target_dir/$target/release/pd-server" ]]; then
        echo "building static release binaries in $static_target_dir (several minutes the first time)" >&2
    fi
    (cd "$root" && CARGO_TARGET_DIR="$static_target_dir" RUSTFLAGS='-C target-feature=+crt-static' \
        cargo build --release --locked --target "$target" -p pd-server -p chat --bins)
    BIN_DIR="$static_target_dir/$target/release"
fi

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$BIN_DIR/pd-server" "$BIN_DIR/chat" "$context/"
if [[ -f "$ca_bundle" ]]; then
    cp "$ca_bundle" "$context/ca-certificates.crt"
else
    echo "warning: no CA bundle at $ca_bundle; the images rely on the roots built into the binaries" >&2
    : >"$context/ca-certificates.crt"
fi
echo "pd:x:10001:10001:PD:/home/pd:/sbin/nologin" >"$context/passwd"
echo "pd:x:10001:" >"$context/group"
mkdir "$context/empty"

docker build -q -f "$root/deploy/Dockerfile" --target pd-server -t "$pd_image" "$context"
docker build -q -f "$root/deploy/Dockerfile" --target chat -t "$chat_image" "$context"
echo "built $pd_image and $chat_image" >&2

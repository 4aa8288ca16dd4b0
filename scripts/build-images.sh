#!/usr/bin/env bash
# `make images`: one image per service, offline. Builds the four binaries static on the
# host (glibc linked in: a static-pie), checks that they are static and start, and wraps
# each in an empty image (deploy/images/Dockerfile.prebuilt) tagged with the git revision
# (`-dirty` when the work tree has changes) and `local` (what the dev overlay runs).
# Elsewhere, deploy/images/Dockerfile builds the same image from source.
#
# IMAGE_PREFIX (default banktransfer/) names the images: banktransfer/gateway-coordinator.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVICES=(gateway-coordinator mock-external-institution internal-balance-store reconciler)
TRIPLE=x86_64-unknown-linux-gnu
PREFIX=${IMAGE_PREFIX:-banktransfer/}
REVISION=$(scripts/image-tag.sh)
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN_DIR=$TARGET_DIR/$TRIPLE/release

scripts/ensure-docker.sh

# An explicit --target keeps RUSTFLAGS off build scripts and proc-macros (they run on the
# host, dynamically linked); banktransfer-pki comes along for the container smoke test.
packages=()
for service in "${SERVICES[@]}" banktransfer-pki; do packages+=(-p "$service"); done
RUSTFLAGS='-C target-feature=+crt-static' ${CARGO:-cargo} build --locked --release \
  --target "$TRIPLE" "${packages[@]}" --bins

context=$(mktemp -d)
build_log=$(mktemp)
trap 'rm -rf "$context" "$build_log"' EXIT
for service in "${SERVICES[@]}"; do
  binary=$BIN_DIR/$service
  kind=$(file -b "$binary")
  case "$kind" in
    *"static-pie linked"* | *"statically linked"*) ;;
    *) echo "build-images: $binary is not static: $kind" >&2; exit 1 ;;
  esac
  "$binary" --help >/dev/null
  rm -f "$context/service"
  cp "$binary" "$context/service"
  # The legacy builder (no buildx here) warns that it is deprecated: shown only on failure.
  docker build --quiet -f deploy/images/Dockerfile.prebuilt \
    --build-arg SERVICE="$service" --build-arg REVISION="$REVISION" \
    -t "$PREFIX$service:$REVISION" -t "$PREFIX$service:local" "$context" >"$build_log" 2>&1 \
    || { cat "$build_log" >&2; exit 1; }
  size=$(docker image inspect -f '{{.Size}}' "$PREFIX$service:$REVISION")
  printf '%s%s:%s  %s MB\n' "$PREFIX" "$service" "$REVISION" "$(awk "BEGIN{printf \"%.1f\", $size/1000000}")"
done

#!/usr/bin/env bash
# A reachable Docker daemon, or a failure saying why. Installs Debian's docker.io when
# there is no daemon binary, and starts dockerd in the background when none runs (the
# machines this runs on have no systemd). Idempotent: a running daemon is left alone.
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}
if ! command -v dockerd >/dev/null 2>&1; then
  echo "ensure-docker: installing docker.io" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >/dev/null \
    || { as_root apt-get update -q >/dev/null && \
         as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >/dev/null; }
fi
if ! pgrep -x dockerd >/dev/null 2>&1; then
  echo "ensure-docker: starting dockerd (log: /tmp/dockerd.log)" >&2
  as_root sh -c 'nohup dockerd >/tmp/dockerd.log 2>&1 &'
fi
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 0.5
done
echo "ensure-docker: the Docker daemon did not answer within 30 s; see /tmp/dockerd.log" >&2
exit 1

#!/usr/bin/env bash
# The images' tag: the short git revision, with `-dirty` when tracked files have changes.
set -euo pipefail
cd "$(dirname "$0")/.."
revision=$(git rev-parse --short HEAD)
if ! git diff --quiet HEAD -- 2>/dev/null; then
  revision="$revision-dirty"
fi
echo "$revision"

#!/bin/sh
# Builds the static roc-proxy binary. The Dockerfile, CI and bench/ all call
# this script, so what is tested and measured is what ships.
# Usage: scripts/build.sh OUTPUT [VERSION]
set -eu
out=${1:?usage: scripts/build.sh OUTPUT [VERSION]}
version=${2:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X github.com/roc-proxy/roc-proxy/internal/app.version=${version}" \
  -o "$out" ./cmd/roc-proxy

#!/bin/sh
# Builds the static roc-proxy binary. The Dockerfile, the packages
# (scripts/package.sh), CI and bench/ all call this script, so what is tested
# and measured is what ships.
# Usage: scripts/build.sh OUTPUT [VERSION [REVISION]]
# VERSION defaults to git describe, REVISION to the commit; both are stamped
# into the binary ("roc-proxy --version"). GOOS and GOARCH from the
# environment select the target (the Dockerfile sets them from TARGETOS and
# TARGETARCH).
set -eu
out=${1:?usage: scripts/build.sh OUTPUT [VERSION [REVISION]]}
version=${2:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
revision=${3:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
pkg=github.com/roc-proxy/roc-proxy/internal/version
CGO_ENABLED=0 go build -trimpath \
  -ldflags "-s -w -X ${pkg}.release=${version} -X ${pkg}.revision=${revision}" \
  -o "$out" ./cmd/roc-proxy

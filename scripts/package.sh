#!/bin/sh
# Builds the .deb and .rpm of roc-proxy into dist/ with nfpm (installed from
# the Go module proxy at a pinned version when absent), from the binary
# scripts/build.sh makes. Usage: scripts/package.sh [VERSION]
# VERSION: a package version starting with a digit; default: the last v*
# tag without its "v", else 0.0.0~git<short commit>. GOARCH selects the
# target (amd64, arm64).
set -eu
cd "$(dirname "$0")/.."
NFPM_VERSION=v2.48.0
version=${1:-}
if [ -z "$version" ]; then
  if tag=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
    version=${tag#v}
  else
    version="0.0.0~git$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  fi
fi
case "$version" in
  [0-9]*) ;;
  *) echo "scripts/package.sh: version $version must start with a digit" >&2; exit 2 ;;
esac
arch=${GOARCH:-$(go env GOARCH)}
if ! command -v nfpm >/dev/null 2>&1; then
  GOBIN="$(go env GOPATH)/bin" go install "github.com/goreleaser/nfpm/v2/cmd/nfpm@${NFPM_VERSION}"
  PATH="$PATH:$(go env GOPATH)/bin"
fi
mkdir -p dist
GOARCH="$arch" scripts/build.sh dist/roc-proxy "$version"
for packager in deb rpm; do
  ARCH="$arch" VERSION="$version" nfpm package --config packaging/nfpm.yaml --packager "$packager" --target dist/
done
ls -1 dist/*.deb dist/*.rpm

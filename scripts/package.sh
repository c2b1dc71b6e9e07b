#!/bin/sh
# Builds the .deb and .rpm of roc-proxy into dist/ with nfpm (installed from
# the Go module proxy at a pinned version when absent), from the binary
# scripts/build.sh makes. Usage: scripts/package.sh [VERSION]
# VERSION: a package version starting with a digit, without '-'; default:
# from the last v* tag and the commits since (see below), so that packages
# of successive commits upgrade in order. --print-version prints it and
# stops. GOARCH selects the target (amd64, arm64).
set -eu
cd "$(dirname "$0")/.."
NFPM_VERSION=v2.48.0
print_only=
if [ "${1:-}" = "--print-version" ]; then print_only=1; shift; fi
version=${1:-}
if [ -z "$version" ]; then
  # dpkg and rpm compare versions to decide an upgrade: packages built from
  # successive commits must compare in that order (a commit hash alone is
  # random), and an RPM version holds no '-'.
  #   tag v1.2.0                  1.2.0
  #   tag v1.3.0-rc1              1.3.0~rc1   (before 1.3.0)
  #   3 commits after v1.2.0      1.2.0+git3.gabc1234
  #   no tag, 57 commits          0.0.0~git57.gabc1234
  if desc=$(git describe --tags --long --match 'v[0-9]*' 2>/dev/null); then
    hash=${desc##*-}
    rest=${desc%-*}
    count=${rest##*-}
    tag=$(printf '%s' "${rest%-*}" | sed 's/^v//' | tr '-' '~')
    if [ "$count" = 0 ]; then version=$tag; else version="$tag+git$count.$hash"; fi
  else
    version="0.0.0~git$(git rev-list --count HEAD 2>/dev/null || echo 0).g$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  fi
fi
case "$version" in
  [0-9]*) ;;
  *) echo "scripts/package.sh: version $version must start with a digit" >&2; exit 2 ;;
esac
case "$version" in
  *-*) echo "scripts/package.sh: version $version holds a '-' (not an RPM version; dpkg reads a Debian revision): use ~ before a pre-release (1.3.0~rc1), + after (1.2.0+hotfix1)" >&2; exit 2 ;;
esac
if [ -n "$print_only" ]; then echo "$version"; exit 0; fi
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

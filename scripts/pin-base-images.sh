#!/bin/sh
# Pins the Dockerfile's base images by digest: reads the current digest of
# each ARG GO_IMAGE / ARG RUNTIME_IMAGE tag from its registry with crane and
# rewrites the line as NAME:TAG@sha256:DIGEST. Run it on a machine that
# reaches the registries, review the diff, commit.
#
# Usage: scripts/pin-base-images.sh          pin (or re-pin) both images
#        scripts/pin-base-images.sh --check  exit 1 unless both are pinned
#                                            (run before building a release)
set -eu
cd "$(dirname "$0")/.."
CRANE_VERSION=v0.22.1
images="GO_IMAGE RUNTIME_IMAGE"

current() { sed -n "s/^ARG $1=//p" Dockerfile; }

if [ "${1:-}" = "--check" ]; then
  status=0
  for arg in $images; do
    ref=$(current "$arg")
    if ! printf '%s\n' "$ref" | grep -Eq '^[^@ ]+:[^@ ]+@sha256:[0-9a-f]{64}$'; then
      echo "Dockerfile: ARG $arg=$ref is not pinned by digest: run scripts/pin-base-images.sh" >&2
      status=1
    fi
  done
  exit $status
fi

if ! command -v crane >/dev/null 2>&1; then
  go install "github.com/google/go-containerregistry/cmd/crane@${CRANE_VERSION}"
  PATH="$PATH:$(go env GOPATH)/bin"
fi
for arg in $images; do
  tag=$(current "$arg" | sed 's/@.*//')
  # The digest of the tag's index (all platforms), not of one platform's
  # manifest: buildx then picks each target platform's image from it.
  digest=$(crane digest "$tag")
  case "$digest" in
    sha256:????????????????????????????????????????????????????????????????) ;;
    *) echo "crane digest $tag: unexpected answer: $digest" >&2; exit 1 ;;
  esac
  sed -i "s|^ARG $arg=.*|ARG $arg=$tag@$digest|" Dockerfile
  echo "$arg=$tag@$digest"
done

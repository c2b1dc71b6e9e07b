#!/usr/bin/env bash
# Whole-process comparison of roc-proxy with nginx on the same mutual-TLS
# upstream, same certificates, same load generator, interleaved rounds, with
# net/http's floor (bench/floor) as a third contender in mode nginx.
# Bounded: 2 proxies (3 in mode nginx, 7 in mode all) x ROUNDS x DURATION of load (default
# 3 x 10 s each).
# Usage: bench/run.sh [--mode nginx|all|revocation|token|audit|ship|binary] [--binary-token] [--roc-revocation off|soft|hard] [--fsync=false] [--duration 10s] [--rounds 3] [--connections 32]
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} from Debian's packages" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"

mkdir -p bench/out
# The same build as the Dockerfile and CI.
scripts/build.sh bench/out/roc-proxy bench
# net/http's floor (bench/floor): mode nginx runs it in the same rounds.
CGO_ENABLED=0 go build -trimpath -o bench/out/floor ./bench/floor
exec go run ./bench/harness --roc-proxy bench/out/roc-proxy --floor bench/out/floor "$@"

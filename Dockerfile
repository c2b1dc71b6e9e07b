# roc-proxy container image: static binary on distroless, non-root, works with
# a read-only root filesystem, for linux/amd64 and linux/arm64:
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=v1.0.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ) \
#     -t ghcr.io/roc-proxy/roc-proxy:v1.0.0 .
#
# Base images. A tag can be moved to other content; a digest cannot, so a
# release pins both images by digest: GO_IMAGE and RUNTIME_IMAGE hold
# NAME:TAG@sha256:DIGEST. `scripts/pin-base-images.sh` reads the current
# digests from the registry (crane digest) and writes them into the two
# lines below; run it, review the diff and commit, to update (or let a bot
# such as Renovate do it).
# NOT PINNED YET: this repository is built and tested on machines that reach
# no container registry, and a digest not read from the registry would be
# made up. Until the script has run, the tags below are used as they are;
# `scripts/pin-base-images.sh --check` (CI of a release) refuses that.
ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

# The compiler runs on the build machine's platform and cross-compiles for
# the target one (no emulation): the binary is pure Go (CGO_ENABLED=0).
FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Set by BuildKit from --platform (the legacy builder leaves them empty).
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG REVISION=unknown
# The same script as CI, the packages and the benchmarks; it stamps the
# version and the revision (the build context has no .git folder).
RUN GOOS="${TARGETOS:-linux}" GOARCH="${TARGETARCH:-amd64}" scripts/build.sh /out/roc-proxy "${VERSION}" "${REVISION}"

FROM ${RUNTIME_IMAGE}
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
ARG RUNTIME_IMAGE
LABEL org.opencontainers.image.title="roc-proxy" \
      org.opencontainers.image.description="Establishment-side mutual-TLS and SAML proxy for ROC (AMC) and the DMP, in indirect authentication" \
      org.opencontainers.image.source="https://github.com/roc-proxy/roc-proxy" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"
COPY --from=build /out/roc-proxy /usr/local/bin/roc-proxy
# The public IGC-Santé chains, ready to use as trust bundles.
COPY config/bundles/ /etc/roc-proxy/bundles/
USER 65532:65532
# SIH listener and admin (metrics, health) listener; set listen.sih and
# listen.admin to 0.0.0.0:<port> in the mounted configuration.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/roc-proxy"]
CMD ["serve", "--config", "/etc/roc-proxy/roc-proxy.yaml"]

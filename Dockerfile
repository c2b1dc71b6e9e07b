# roc-proxy container image: static binary on distroless, non-root, works with
# a read-only root filesystem. Build: docker build --build-arg VERSION=v1.0.0 .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN scripts/build.sh /out/roc-proxy "${VERSION}"

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/roc-proxy /usr/local/bin/roc-proxy
# The public IGC-Santé chains, ready to use as trust bundles.
COPY config/bundles/ /etc/roc-proxy/bundles/
USER 65532:65532
# SIH listener and admin (metrics, health) listener; set listen.sih and
# listen.admin to 0.0.0.0:<port> in the mounted configuration.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/roc-proxy"]
CMD ["serve", "--config", "/etc/roc-proxy/roc-proxy.yaml"]

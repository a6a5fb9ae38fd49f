# syntax=docker/dockerfile:1
#
# MinIO built from source, for the bundled single-node store
# (k8s/base/minio.yaml). The last community image MinIO published on
# quay.io (RELEASE.2025-09-07T16-13-09Z) predates the fix of
# CVE-2025-62506 (GHSA-jjjj-jwhf-8rgr, a session-policy bypass for service
# accounts and STS credentials: commit c1a49490, #21642, released in
# RELEASE.2025-10-15T17-29-55Z), and no newer community image exists. This
# builds the commit the tests use (scripts/deps.sh, MINIO_VERSION):
# 7aac2a2c5b7c of 2026-02-12, a descendant of both that fix commit and the
# RELEASE.2025-10-15T17-29-55Z tag (git merge-base --is-ancestor, checked
# in a clone of github.com/minio/minio).
#
# The image also carries parley-minio-setup (deploy/miniosetup), which the
# MinIO pod runs beside the server to create Parley's own user. Both are
# AGPL programs (MinIO, and our tool through madmin-go); no Parley binary
# links either.
#
#   docker build -f deploy/docker/minio.Dockerfile -t ghcr.io/parleychat/minio:2026-02-12-7aac2a2c5b7c .
#
# Keep MINIO_VERSION and the tag in k8s/base/kustomization.yaml in step
# with scripts/deps.sh.

# Base images pinned by digest, as in deploy/docker/Dockerfile (deploy/pin-images.sh
# re-resolves them).
ARG GOLANG_IMAGE=golang:1.26.8@sha256:3c3e25a4da13fd0478eed2df1eb35a0e667094a7124d3993a6a1d30f71c17e79
ARG RUNTIME_IMAGE=gcr.io/distroless/static:nonroot@sha256:963fa6c544fe5ce420f1f54fb88b6fb01479f054c8056d0f74cc2c6000df5240

FROM --platform=$BUILDPLATFORM ${GOLANG_IMAGE} AS build
ARG TARGETOS=linux
ARG TARGETARCH
ARG MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
ARG MINIO_COMMIT=7aac2a2c5b7c882e68c1ce017d8256be2feea27f
ARG MINIO_DATE=2026-02-12T20:18:48Z
WORKDIR /src
COPY deploy/miniosetup/ deploy/miniosetup/
# go install of a module version (into $GOPATH/bin, or its GOOS_GOARCH
# subdirectory when cross-compiling: GOBIN refuses cross builds): the module's own go.mod and go.sum
# decide every dependency, checked against the Go checksum database.
# The -X values are what MinIO's Makefile sets (buildscripts/gen-ldflags.go),
# so `minio --version` names the commit instead of DEVELOPMENT.GOGET.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    set -eu; \
    tag="DEVELOPMENT.$(echo "$MINIO_DATE" | tr ':' '-')"; \
    mkdir -p /out/data; \
    CGO_ENABLED=0 GOOS="$TARGETOS" GOARCH="$TARGETARCH" GOFLAGS=-trimpath \
      go install -tags kqueue -ldflags "-s -w \
        -X github.com/minio/minio/cmd.Version=${MINIO_DATE} \
        -X github.com/minio/minio/cmd.ReleaseTag=${tag} \
        -X github.com/minio/minio/cmd.CommitID=${MINIO_COMMIT} \
        -X github.com/minio/minio/cmd.ShortCommitID=$(echo "$MINIO_COMMIT" | cut -c1-12)" \
        "github.com/minio/minio@${MINIO_VERSION}"; \
    bin="$(go env GOPATH)/bin"; \
    if [ ! -f "$bin/minio" ]; then bin="$bin/${TARGETOS}_${TARGETARCH}"; fi; \
    cp "$bin/minio" /out/minio; \
    cd /src/deploy/miniosetup; \
    CGO_ENABLED=0 GOOS="$TARGETOS" GOARCH="$TARGETARCH" GOWORK=off \
      go build -trimpath -buildvcs=false -ldflags "-s -w" -o /out/parley-minio-setup .

# No shell, CA certificates included; UID/GID 65532 (the restricted Pod
# Security Standard's non-root user, as for Parley's images).
FROM ${RUNTIME_IMAGE}
COPY --from=build /out/minio /usr/bin/minio
COPY --from=build /out/parley-minio-setup /usr/local/bin/parley-minio-setup
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
# MinIO keeps its config under $HOME; the root filesystem is read-only in
# Kubernetes, where /tmp is an emptyDir.
ENV HOME=/tmp MINIO_BROWSER=off
EXPOSE 9000
VOLUME ["/data"]
ENTRYPOINT ["/usr/bin/minio"]
CMD ["server", "/data", "--address", ":9000"]

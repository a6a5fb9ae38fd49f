#!/usr/bin/env bash
# Installs what the tests and `make generate` need when it is missing:
# redis-server, protoc, node and opusdec (opus-tools: the voice tests check
# our Ogg Opus recordings with a decoder nobody here wrote), coturn (the
# call benchmark's TURN peer) and the NAT lab's tools (iproute2, nftables,
# conntrack, procps) from Debian packages, protoc-gen-go and the MinIO
# server and kustomize (deploy/check.sh renders k8s/ with it) from the Go
# module proxy into .tools/bin. Safe to run again; does nothing when all is
# present.
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOC_GEN_GO_VERSION=v1.36.12
# MinIO is AGPL: the tests run it as a separate server process only; no Go
# package of it is ever imported.
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
# kustomize renders k8s/ for deploy/check.sh: one pinned version, so the
# render does not depend on which kubectl a machine has (kubectl's embedded
# kustomize differs between releases; Debian 12's kubectl is 1.20, far too
# old). v5.8.3 needs Go 1.27.
KUSTOMIZE_VERSION=v5.8.2
TOOLS="$PWD/.tools/bin"
mkdir -p "$TOOLS"

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# The TLS record layer is checked against openssl s_client (gateway/internal/transport).
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
command -v opusdec >/dev/null 2>&1 || need_apt+=(opus-tools)
# coturn: the call benchmark's peer TURN relay; its TURN client is tested
# against it (its service stays disabled: Debian's /etc/default/coturn).
command -v turnserver >/dev/null 2>&1 || need_apt+=(coturn)
# The NAT lab (libs/testenv/natlab, tests/natlab): network namespaces,
# veths and bridges (ip), nftables NATs, their bindings (conntrack) and
# ip_forward (sysctl). It needs root, as CI runs.
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
command -v conntrack >/dev/null 2>&1 || need_apt+=(conntrack)
command -v sysctl >/dev/null 2>&1 || need_apt+=(procps)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "deps: installing ${need_apt[*]} with apt-get"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # The Debian package starts a system redis on 6379; the tests start their
  # own on free ports and never use it.
fi

if ! "$TOOLS/protoc-gen-go" --version 2>/dev/null | grep -q "${PROTOC_GEN_GO_VERSION}"; then
  echo "deps: installing protoc-gen-go ${PROTOC_GEN_GO_VERSION}"
  GOBIN="$TOOLS" go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
fi

if ! "$TOOLS/kustomize" version 2>/dev/null | grep -qx "${KUSTOMIZE_VERSION}"; then
  echo "deps: installing kustomize ${KUSTOMIZE_VERSION} into .tools/bin"
  GOBIN="$TOOLS" go install "sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION}"
fi

# deploy/kubecheck (run by deploy/check.sh) links k8s.io/api and the CRD
# types: download and compile them once here, so check.sh finds them in
# the Go caches.
(cd deploy/kubecheck && GOWORK=off go build -o /dev/null .)

if [ ! -x "$TOOLS/minio" ]; then
  echo "deps: building the MinIO server ${MINIO_VERSION} into .tools/bin (takes a few minutes, ~150 MB)"
  GOBIN="$TOOLS" go install "github.com/minio/minio@${MINIO_VERSION}"
fi

# tus-js-client (npm), the third-party tus client the interoperability test
# runs with Node.js; installed into .tools/node.
TUS_JS_VERSION=4.3.1
if command -v node >/dev/null 2>&1 && ! grep -q "\"version\": \"${TUS_JS_VERSION}\"" .tools/node/node_modules/tus-js-client/package.json 2>/dev/null; then
  echo "deps: installing tus-js-client ${TUS_JS_VERSION} (npm) into .tools/node"
  npm install --prefix .tools/node --no-audit --no-fund --silent "tus-js-client@${TUS_JS_VERSION}" >/dev/null
fi

# The outsider client (tests/outsider: a Parley client in JavaScript written
# from docs/protocol.md alone, run by tests/e2e): its npm packages, pinned by
# its package-lock.json, into tests/outsider/node_modules. A copy of the lock
# file marks what is installed, so this runs npm only when the lock changed.
OUTSIDER=tests/outsider
if command -v npm >/dev/null 2>&1 && ! cmp -s "$OUTSIDER/package-lock.json" "$OUTSIDER/node_modules/.parley-lock.json"; then
  echo "deps: installing tests/outsider's npm packages (npm ci)"
  (cd "$OUTSIDER" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$OUTSIDER/package-lock.json" "$OUTSIDER/node_modules/.parley-lock.json"
fi
